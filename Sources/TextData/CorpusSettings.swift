// The settings of a training corpus and its tokenizer, as a recipe writes them (key names are
// the recipe's). Every property initialiser is the documented default (docs/recipes.md); the
// recipe reader overwrites what a recipe gives.

import Foundation
import Platform

/// How text files are read.
package enum DataFormat: String, Codable, Sendable, CaseIterable {
    /// `.jsonl` files as JSONL, everything else as plain text.
    case auto
    /// Plain UTF-8 text (how documents are delimited is the data pipeline's contract).
    case text
    /// One JSON object per line; `text_field` holds the text.
    case jsonl
}

/// Training or evaluation text: files (`train`) or inline text (`text`), exactly one.
package struct DataSettings: Codable, Sendable, Equatable {
    /// Files, relative to the recipe file's folder (absolute after loading). A single string is
    /// accepted as a list of one.
    package var train: [String] = []
    /// Inline text instead of files (handy for tests and tiny examples).
    package var text: String?
    /// Default `auto`.
    package var format: DataFormat = .auto
    /// The JSONL field holding the text. Default `"text"`.
    package var textField: String = "text"
    /// Share of the data held out for validation, in [0, 0.5]. Default 0.05.
    package var validationFraction: Double = 0.05

    package init() {}

    package enum CodingKeys: String, CodingKey, CaseIterable {
        case train, text, format, textField = "text_field", validationFraction = "validation_fraction"
    }
}

extension DataSettings {
    /// The documents: the files, plus the inline text written into `runDirectory` (only when it
    /// changed) so that it is tokenized and cached like a file.
    package func corpusSource(runDirectory: String) throws -> CorpusSource {
        var paths = train
        if let text {
            let path = (runDirectory as NSString).appendingPathComponent("inline-text.txt")
            if (try? String(contentsOfFile: path, encoding: .utf8)) != text { try writeAtomically(text, to: path) }
            paths.append(path)
        }
        let corpusFormat: CorpusSource.Format
        switch format {
        case .auto: corpusFormat = .auto
        case .text: corpusFormat = .text
        case .jsonl: corpusFormat = .jsonl
        }
        return CorpusSource(paths: paths, format: corpusFormat, textField: textField)
    }
}

/// Byte-level BPE tokenizer styles (pre-tokenizer regex and byte mapping of that family).
package enum TokenizerStyle: String, Codable, Sendable, CaseIterable {
    case gpt2, llama3, qwen2
}

/// Training a tokenizer on the stage's data.
package struct TokenizerTraining: Codable, Sendable, Equatable {
    /// Vocabulary size including the 256 byte tokens and the special tokens. Default 512;
    /// at least 256 + the number of special tokens.
    package var vocabSize: Int = 512
    /// Default `["<|endoftext|>"]`; the first one ends documents.
    package var specialTokens: [String] = ["<|endoftext|>"]
    /// Default `gpt2`.
    package var style: TokenizerStyle = .gpt2

    package init() {}

    package enum CodingKeys: String, CodingKey, CaseIterable {
        case vocabSize = "vocab_size", specialTokens = "special_tokens", style
    }
}

/// Either an existing `tokenizer.json` (`path`) or one trained on the data (`train`).
/// Default: `{"train": {}}`.
package struct TokenizerSettings: Codable, Sendable, Equatable {
    /// A Hugging Face tokenizer.json; absolute after loading.
    package var path: String?
    /// Present when the tokenizer is trained.
    package var train: TokenizerTraining?

    package init(path: String? = nil, train: TokenizerTraining? = TokenizerTraining()) {
        self.path = path
        self.train = path == nil ? train : nil
    }

    package enum CodingKeys: String, CodingKey, CaseIterable { case path, train }
}

extension TokenizerTraining {
    /// A byte-level BPE tokenizer trained on every document of `source`, as tokenizer.json bytes.
    package func train(on source: CorpusSource) throws -> Data {
        var texts: [String] = []
        try source.forEachDocument { texts.append($0) }
        let trainer = BPETrainer(.init(vocabSize: vocabSize, specialTokens: specialTokens, style: BPETrainer.Style(rawValue: style.rawValue) ?? .gpt2))
        return try trainer.train(texts: texts).jsonData()
    }
}
