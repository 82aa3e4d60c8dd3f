// The tokenizer of a llama.cpp GGUF file as a Hugging Face tokenizer.json: the reading
// direction of the tokenizer.ggml.* keys GGUFLlama.swift writes.
//
// A GGUF carries no tokenizer.json. llama.cpp rebuilds its tokenizer from metadata
// (llama.cpp's src/llama-vocab.cpp, `llama_vocab::impl::load`; the keys below are gguf-py's
// names for the same fields):
// - tokenizer.ggml.model: "gpt2" is byte-level BPE, the one kind distill reads. "llama" is
//   SentencePiece, "bert" WordPiece, "t5" Unigram; those are refused.
// - tokenizer.ggml.tokens: token strings by id. Ordinary tokens are spelled in GPT-2's
//   byte-level alphabet; added tokens (CONTROL, USER_DEFINED) as the raw text they match.
// - tokenizer.ggml.token_type (i32 per token): 1 normal, 2 unknown, 3 control (a special
//   added token), 4 user-defined (a non-special added token), 5 unused (the "[PAD<i>]" fill
//   convert_hf_to_gguf.py writes for ids its vocabulary lacks), 6 byte. Absent: all normal.
// - tokenizer.ggml.merges: "left right" strings in rank order; llama.cpp splits each at its
//   first space after the first byte.
// - tokenizer.ggml.{bos,eos,unknown,padding,...}_token_id; tokenizer.ggml.add_bos_token and
//   add_eos_token (bools), whose defaults depend on the pre-tokenizer (below).
// - tokenizer.ggml.pre: which splitting regexes llama.cpp applies before BPE. Several names
//   share one list; the families distill implements, with llama.cpp's names for each:
//     gpt-2   GPT-2's regex alone (ByteLevel with use_regex): gpt-2, phi-2, mpt, olmo, jais,
//             trillion, exaone4, gigachat, a.x-4.0, mellum, granite-docling
//     llama3  the Llama-3 regex, merges ignored for pieces that are whole tokens, BOS added
//             unless add_bos_token says otherwise: llama3, llama-v3, llama-bpe, falcon3,
//             falcon-h1, pixtral, midm-2.0, lfm2, jina-v5-nano
//             (dbrx and smaug-bpe: the same regex, merges applied, no default BOS)
//     qwen2   the Qwen2 regex (single digits): qwen2, deepseek-r1-qwen, kormo, f2llmv2,
//             megrez, stablelm2, hunyuan, solar-open
//     smollm  every \p{N} scalar split off, then GPT-2's regex (Hugging Face's
//             Sequence[Digits(individual_digits), ByteLevel], as SmolLM2's tokenizer.json
//             declares): smollm, starcoder, refact, command-r, codeshell, exaone, minerva-7b,
//             mellum2
//     default llama.cpp's fallback when the key is absent or "default": the regexes
//             [\p{P}\$\+<=>\^~\|]+, GPT-2's, \p{N}+ and [0-9][0-9][0-9], one after another
//             (llama.cpp warns that such a file degrades generation; so does `warnings`)
//   Each regex list becomes Split(regex, Isolated) steps before ByteLevel(use_regex: false),
//   which is how llama.cpp's successive splits behave. llama.cpp writes the case-insensitive
//   contractions of the Llama-3 and Qwen2 regexes as explicit [sS] classes, so "'ſ" (which
//   Unicode case folding matches) is the one place its reading and the Hugging Face regex
//   distill runs part.
//
// What the tokenizer.json holds: a BPE model whose vocab is every token (an added token
// whose text is outside the byte-level alphabet stays out of the vocab and lives in
// added_tokens alone; any other such token is respelled into the alphabet from its UTF-8, as
// transformers does), the merges as pairs, no unk_token (llama.cpp and transformers both drop
// a byte the vocabulary lacks rather than emit the unknown token); added_tokens for CONTROL
// and UNKNOWN tokens (special) and USER_DEFINED ones (not special), all `normalized: false`
// with no stripping, as transformers adds them; no normalizer (llama.cpp applies none, not
// even Qwen2's NFC); the pre-tokenizer of the family; a TemplateProcessing post-processor
// when BOS or EOS is added; a ByteLevel decoder.
//
// Where Hugging Face transformers' own GGUF reader (transformers/integrations/gguf/
// gguf_tokenizer_mapping.py) differs, distill follows llama.cpp, the format's reference: for
// "smollm" and its family transformers keeps GPT-2's regex without the digit split, so
// " Ⅻ" (a space before a numeral outside ASCII) can tokenize differently; for the llama3
// family it applies merges to whole-token pieces; it treats "default" as GPT-2.
//
// The file is untrusted: every id must name a token, token_type must have one entry per
// token, each merge must join two tokens into a third, tokens must be non-empty and unique,
// and counts stay under the tokenizer's id bound. Problems are `UserError`s naming the file
// and the key.

import Formats
import Foundation
import JSON
import Platform
import TextData

/// The tokenizer.* metadata keys (gguf-py's names), shared by import and export.
package enum GGUFTokenizerKey {
    package static let model = "tokenizer.ggml.model"
    package static let pre = "tokenizer.ggml.pre"
    package static let tokens = "tokenizer.ggml.tokens"
    package static let tokenType = "tokenizer.ggml.token_type"
    package static let merges = "tokenizer.ggml.merges"
    package static let bosTokenID = "tokenizer.ggml.bos_token_id"
    package static let eosTokenID = "tokenizer.ggml.eos_token_id"
    package static let unknownTokenID = "tokenizer.ggml.unknown_token_id"
    package static let paddingTokenID = "tokenizer.ggml.padding_token_id"
    package static let addBOSToken = "tokenizer.ggml.add_bos_token"
    package static let addEOSToken = "tokenizer.ggml.add_eos_token"
    package static let addSEPToken = "tokenizer.ggml.add_sep_token"
    package static let chatTemplate = "tokenizer.chat_template"
}

/// What a GGUF file says about its tokenizer beyond the tokenizer.json itself.
package struct GGUFTokenizerInfo: Sendable, Equatable {
    /// tokenizer.ggml.pre as written ("default" when the key is absent).
    package var preTokenizer: String
    /// Token count: the ids are 0..<tokenCount.
    package var tokenCount: Int
    package var bosTokenID: Int32?
    package var eosTokenID: Int32?
    package var unknownTokenID: Int32?
    package var paddingTokenID: Int32?
    /// Whether encoding adds BOS (or EOS), after the pre-tokenizer's default.
    package var addBOS: Bool
    package var addEOS: Bool
    /// tokenizer.chat_template (Jinja), when present.
    package var chatTemplate: String?
    /// Things the caller should tell the user (a missing pre-tokenizer name).
    package var warnings: [String]
}

package enum GGUFTokenizer {
    /// The most tokens (and merges) accepted; the tokenizer's own id bound.
    package static let maxTokens = 16_000_000

    /// The splitting a tokenizer.ggml.pre name stands for.
    enum Family {
        case gpt2
        case llama3(ignoreMerges: Bool, addsBOS: Bool)
        case qwen2
        case smollm
        case llamaCppDefault
    }

    /// tokenizer.ggml.pre names and their families, from llama.cpp's llama-vocab.cpp.
    static let families: [String: Family] = {
        var table: [String: Family] = [:]
        for name in [
            "gpt-2", "phi-2", "mpt", "olmo", "jais", "trillion", "exaone4", "gigachat", "a.x-4.0", "mellum",
            "granite-docling",
        ] { table[name] = .gpt2 }
        for name in [
            "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano",
        ] {
            table[name] = .llama3(ignoreMerges: true, addsBOS: true)
        }
        for name in ["dbrx", "smaug-bpe"] { table[name] = .llama3(ignoreMerges: false, addsBOS: false) }
        for name in ["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan", "solar-open"] {
            table[name] = .qwen2
        }
        for name in ["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b", "mellum2"] {
            table[name] = .smollm
        }
        table["default"] = .llamaCppDefault
        return table
    }()

    /// The supported tokenizer.ggml.pre names, sorted.
    package static var supportedPreTokenizers: [String] { families.keys.sorted() }

    /// The tokenizer.json text equivalent to `file`'s tokenizer.* metadata, and the facts
    /// around it (special ids, BOS/EOS flags, chat template).
    package static func tokenizerJSON(from file: GGUFFile) throws -> (json: String, info: GGUFTokenizerInfo) {
        let converted = try convert(file)
        return (converted.json, converted.info)
    }

    /// As `tokenizerJSON(from:)`, with the tokenizer that text loads as.
    package static func tokenizer(
        from file: GGUFFile
    ) throws -> (tokenizer: ByteLevelBPETokenizer, json: String, info: GGUFTokenizerInfo) {
        try convert(file)
    }

    // MARK: Conversion

    private static func convert(
        _ file: GGUFFile
    ) throws -> (tokenizer: ByteLevelBPETokenizer, json: String, info: GGUFTokenizerInfo) {
        let path = file.path
        func bad(_ key: String, _ problem: String, _ fix: String = "") -> UserError {
            UserError(path: path, problem: "key '\(key)': \(problem)", fix: fix, kind: .badData)
        }
        typealias Key = GGUFTokenizerKey

        // The kind of tokenizer.
        guard let modelValue = file[Key.model] else {
            throw UserError(
                path: path, problem: "the file has no '\(Key.model)' key, so it carries no tokenizer",
                fix: "use a GGUF written by llama.cpp's convert_hf_to_gguf.py, which stores the tokenizer",
                kind: .badData)
        }
        guard let model = modelValue.string else { throw bad(Key.model, "expected a string, found \(modelValue.type)") }
        guard model == "gpt2" else {
            let kinds = [
                "llama": "a SentencePiece tokenizer (Llama 1/2, Mistral, Gemma and their kin)",
                "bert": "a WordPiece tokenizer",
                "t5": "a Unigram tokenizer", "rwkv": "an RWKV tokenizer",
            ]
            let what = kinds[model].map { " is \($0)" } ?? ""
            var fix =
                "distill reads byte-level BPE tokenizers only (tokenizer.ggml.model \"gpt2\": GPT-2, Llama 3, Qwen2, SmolLM)"
            if model == "llama" {
                fix +=
                    "; importing the model's Hugging Face directory instead meets the same limit (its tokenizer.json is SentencePiece-style BPE with byte fallback, which distill does not read either)"
            }
            throw UserError(
                path: path,
                problem: "key '\(Key.model)' is \(clip(model).debugDescription)\(what), which distill does not read",
                fix: fix, kind: .badData)
        }

        // The pre-tokenizer.
        var warnings: [String] = []
        let pre: String
        switch file[Key.pre] {
        case nil:
            pre = "default"
            warnings.append(
                "\(path): no '\(Key.pre)' key; using llama.cpp's default splitting, which llama.cpp itself warns degrades generation (reconvert the model with a current convert_hf_to_gguf.py)"
            )
        case .string(let s)?: pre = s
        case let other?: throw bad(Key.pre, "expected a string, found \(other.type)")
        }
        guard let family = families[pre] else {
            throw UserError(
                path: path,
                problem:
                    "key '\(Key.pre)' is \(clip(pre).debugDescription), a pre-tokenizer distill does not implement",
                fix: "supported: \(supportedPreTokenizers.joined(separator: ", "))", kind: .badData)
        }

        // Tokens and their types.
        guard case .array(let tokenArray)? = file[Key.tokens], case .string(let tokens) = tokenArray else {
            throw bad(Key.tokens, file[Key.tokens] == nil ? "missing" : "expected an array of strings")
        }
        guard !tokens.isEmpty, tokens.count <= maxTokens else {
            throw bad(Key.tokens, "\(tokens.count) tokens; expected 1 to \(maxTokens)")
        }
        var types = [Int32](repeating: GGUFTokenType.normal.rawValue, count: tokens.count)
        if let value = file[Key.tokenType] {
            guard case .array(.int32(let given)) = value else {
                throw bad(Key.tokenType, "expected an array of i32, found \(value.type)")
            }
            guard given.count == tokens.count else {
                throw bad(Key.tokenType, "\(given.count) entries for \(tokens.count) tokens; expected one per token")
            }
            if let i = given.firstIndex(where: { GGUFTokenType(rawValue: $0) == nil }) {
                throw bad(Key.tokenType, "entry \(i) is \(given[i]); token types are 1 to 6")
            }
            types = given
        }

        // Special ids and flags.
        func id(_ key: String) throws -> Int32? {
            guard let value = file[key] else { return nil }
            guard let v = value.int else { throw bad(key, "expected an integer id, found \(value.type)") }
            guard v >= 0, v < tokens.count else { throw bad(key, "id \(v) is outside the \(tokens.count) tokens") }
            return Int32(v)
        }
        for (key, _) in file.metadata where key.hasPrefix("tokenizer.ggml.") && key.hasSuffix("_token_id") {
            _ = try id(key)
        }
        func flag(_ key: String) throws -> Bool? {
            guard let value = file[key] else { return nil }
            guard case .bool(let b) = value else { throw bad(key, "expected a bool, found \(value.type)") }
            return b
        }
        var defaultBOS = false
        if case .llama3(_, let addsBOS) = family { defaultBOS = addsBOS }
        let addBOS = try flag(Key.addBOSToken) ?? defaultBOS
        let addEOS = try flag(Key.addEOSToken) ?? false
        if try flag(Key.addSEPToken) == true {
            throw UserError(
                path: path, problem: "key '\(Key.addSEPToken)' is true: encoding appends a separator token",
                fix: "distill's tokenizer does not append SEP (an embedding-model feature)", kind: .badData)
        }
        let bos = try id(Key.bosTokenID), eos = try id(Key.eosTokenID)
        if addBOS && bos == nil { throw bad(Key.bosTokenID, "missing, but encoding adds BOS") }
        if addEOS && eos == nil { throw bad(Key.eosTokenID, "missing, but encoding adds EOS") }
        var chatTemplate: String?
        if let value = file[Key.chatTemplate] {
            guard let s = value.string else { throw bad(Key.chatTemplate, "expected a string, found \(value.type)") }
            chatTemplate = s
        }

        // The vocabulary: every token under its byte-level spelling; added tokens whose text
        // is outside the alphabet only in added_tokens.
        var vocab: [(key: String, value: JSONValue)] = []
        vocab.reserveCapacity(tokens.count)
        var vocabIDs = [String: Int](minimumCapacity: tokens.count)
        var seen = [String: Int](minimumCapacity: tokens.count)
        var added: [JSONValue] = []
        for (i, token) in tokens.enumerated() {
            guard !token.isEmpty else { throw bad(Key.tokens, "token \(i) is empty") }
            if let first = seen.updateValue(i, forKey: token) {
                throw bad(Key.tokens, "token \(i) \(clip(token).debugDescription) repeats token \(first)")
            }
            let type = GGUFTokenType(rawValue: types[i])!
            let isAdded = type == .control || type == .userDefined || type == .unknown
            if isAdded {
                added.append(
                    .obj([
                        "id": .int(i), "content": .string(token), "single_word": .bool(false), "lstrip": .bool(false),
                        "rstrip": .bool(false), "normalized": .bool(false), "special": .bool(type != .userDefined),
                    ]))
            }
            var key = token
            if ByteLevelAlphabet.decode(token) == nil {
                if isAdded { continue }
                key = ByteLevelAlphabet.encode(token.utf8)
            }
            if let first = vocabIDs.updateValue(i, forKey: key) {
                throw bad(
                    Key.tokens,
                    "token \(i) \(clip(token).debugDescription) spells the same bytes as token \(first) in the byte-level alphabet"
                )
            }
            vocab.append((key, .int(i)))
        }

        // Merges: "left right", split at the first space after the first byte, as llama.cpp does.
        guard case .array(let mergeArray)? = file[Key.merges], case .string(let mergeLines) = mergeArray else {
            throw bad(
                Key.merges,
                file[Key.merges] == nil
                    ? "missing; a byte-level BPE tokenizer needs its merges" : "expected an array of strings")
        }
        guard mergeLines.count <= maxTokens else {
            throw bad(Key.merges, "\(mergeLines.count) merges; at most \(maxTokens)")
        }
        var merges: [JSONValue] = []
        merges.reserveCapacity(mergeLines.count)
        for (i, line) in mergeLines.enumerated() {
            let bytes = Array(line.utf8)
            guard bytes.count >= 3, let space = bytes[1...].firstIndex(of: 0x20) else {
                throw bad(Key.merges, "merge \(i) \(clip(line).debugDescription) is not \"left right\"")
            }
            let left = String(decoding: bytes[..<space], as: UTF8.self)
            let right = String(decoding: bytes[(space + 1)...], as: UTF8.self)
            for part in [left, right, left + right] where vocabIDs[part] == nil {
                throw bad(
                    Key.merges,
                    "merge \(i) \(clip(line).debugDescription): \(clip(part).debugDescription) is not a token")
            }
            merges.append(.array([.string(left), .string(right)]))
        }

        // The pipeline.
        func split(_ regex: String) -> JSONValue {
            .obj([
                "type": .string("Split"), "pattern": .obj(["Regex": .string(regex)]), "behavior": .string("Isolated"),
                "invert": .bool(false),
            ])
        }
        func byteLevel(useRegex: Bool) -> JSONValue {
            .obj([
                "type": .string("ByteLevel"), "add_prefix_space": .bool(false), "trim_offsets": .bool(true),
                "use_regex": .bool(useRegex),
            ])
        }
        func sequence(_ steps: [JSONValue]) -> JSONValue {
            .obj(["type": .string("Sequence"), "pretokenizers": .array(steps)])
        }
        let preTokenizer: JSONValue
        var ignoreMerges = false
        switch family {
        case .gpt2:
            preTokenizer = byteLevel(useRegex: true)
        case .llama3(let ignore, _):
            preTokenizer = sequence([split(SplitPatterns.llama3), byteLevel(useRegex: false)])
            ignoreMerges = ignore
        case .qwen2:
            preTokenizer = sequence([split(SplitPatterns.qwen2), byteLevel(useRegex: false)])
        case .smollm:
            preTokenizer = sequence([
                .obj(["type": .string("Digits"), "individual_digits": .bool(true)]), byteLevel(useRegex: true),
            ])
        case .llamaCppDefault:
            preTokenizer = sequence([
                split(#"[\p{P}\$\+<=>\^~\|]+"#), split(SplitPatterns.gpt2), split(#"\p{N}+"#), split("[0-9][0-9][0-9]"),
                byteLevel(useRegex: false),
            ])
        }
        var postProcessor = JSONValue.null
        if addBOS || addEOS {
            var single: [JSONValue] = []
            var pair: [JSONValue] = []
            var specials: [(key: String, value: JSONValue)] = []
            func special(_ id: Int32, typeID: Int) -> JSONValue {
                let name = tokens[Int(id)]
                if !specials.contains(where: { $0.key == name }) {
                    specials.append(
                        (
                            name,
                            .obj([
                                "id": .string(name), "ids": .array([.int(Int(id))]), "tokens": .array([.string(name)]),
                            ])
                        ))
                }
                return .obj(["SpecialToken": .obj(["id": .string(name), "type_id": .int(typeID)])])
            }
            func sequenceItem(_ name: String, typeID: Int) -> JSONValue {
                .obj(["Sequence": .obj(["id": .string(name), "type_id": .int(typeID)])])
            }
            for (name, typeID) in [("A", 0), ("B", 1)] {
                var items: [JSONValue] = []
                if addBOS, let bos { items.append(special(bos, typeID: typeID)) }
                items.append(sequenceItem(name, typeID: typeID))
                if addEOS, let eos { items.append(special(eos, typeID: typeID)) }
                if name == "A" { single = items }
                pair += items
            }
            postProcessor = .obj([
                "type": .string("TemplateProcessing"), "single": .array(single), "pair": .array(pair),
                "special_tokens": .object(JSONValue.JSONObject(specials)),
            ])
        }
        let document = JSONValue.obj([
            "version": .string("1.0"),
            "truncation": .null,
            "padding": .null,
            "added_tokens": .array(added),
            "normalizer": .null,
            "pre_tokenizer": preTokenizer,
            "post_processor": postProcessor,
            "decoder": .obj([
                "type": .string("ByteLevel"), "add_prefix_space": .bool(true), "trim_offsets": .bool(true),
                "use_regex": .bool(true),
            ]),
            "model": .obj([
                "type": .string("BPE"), "dropout": .null, "unk_token": .null, "continuing_subword_prefix": .null,
                "end_of_word_suffix": .null, "fuse_unk": .bool(false), "byte_fallback": .bool(false),
                "ignore_merges": .bool(ignoreMerges), "vocab": .object(JSONValue.JSONObject(vocab)),
                "merges": .array(merges),
            ]),
        ])
        let tokenizer: ByteLevelBPETokenizer
        do {
            tokenizer = try ByteLevelBPETokenizer(json: document)
        } catch let error as TokenizerError {
            throw UserError(
                path: path, problem: "the tokenizer its metadata describes does not load: \(error)", kind: .badData)
        }
        let info = GGUFTokenizerInfo(
            preTokenizer: pre, tokenCount: tokens.count, bosTokenID: bos, eosTokenID: eos,
            unknownTokenID: try id(Key.unknownTokenID), paddingTokenID: try id(Key.paddingTokenID), addBOS: addBOS,
            addEOS: addEOS, chatTemplate: chatTemplate, warnings: warnings)
        return (tokenizer, document.serialized(), info)
    }
}
