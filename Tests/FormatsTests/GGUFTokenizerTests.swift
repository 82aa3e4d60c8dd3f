// Tests for Sources/ModelIO/GGUFTokenizer.swift: the tokenizer.json distill builds from a
// GGUF's tokenizer.* metadata encodes like the references. Fixtures/gguf/tiny_chat.gguf and
// tiny_chat.json come from tools/make_gguf_chat_fixture.py: a SmolLM2-style file (pre
// "smollm", ChatML control tokens, a user-defined token, unused "[PAD<i>]" fill) and, for
// tricky texts, the ids of the pipeline SmolLM2's tokenizer.json declares (what llama.cpp
// applies for "smollm") next to the ids of transformers' own GGUF tokenizer, which agree
// except on one text the script marks. Export then import of distill's own tokenizer
// fixtures gives back the same encodings. Hostile metadata, written with GGUFWriter, is
// refused naming the file and the key.

import Foundation
import JSON
import ModelIO
import NN
import Platform
import Testing
import TextData

@testable import Formats

private struct TinyChat: Decodable {
    struct Case: Decodable {
        var text: String
        var smollm_ids: [Int32]
        var transformers_ids: [Int32]
        var decoded: String
    }
    struct Chat: Decodable {
        var text: String
        var ids: [Int32]
    }
    struct Tokenizer: Decodable {
        var bos_token_id: Int32
        var eos_token_id: Int32
        var unknown_token_id: Int32
        var padding_token_id: Int32
        var add_bos_token: Bool
        var chat_template: String
        var control: [String]
        var user_defined: [String]
        var unused: [String]
    }
    struct Config: Decodable { var vocab_size: Int }
    var texts: [Case]
    var chat: Chat
    var tokenizer: Tokenizer
    var config: Config
    var logits_ids: [Int32]
    var loss_ids: [Int32]
}

/// A GGUF holding `metadata` only, opened for reading.
private func ggufFile(_ metadata: [(String, GGUFValue)], in dir: URL, name: String = "t.gguf") throws -> GGUFFile {
    var writer = GGUFWriter()
    writer.add("general.architecture", .string("llama"))
    for (key, value) in metadata { writer.add(key, value) }
    let path = dir.appendingPathComponent(name).path
    try writer.write(to: path)
    return try GGUFFile(path: path)
}

@Suite struct GGUFTokenizerFromFixture {
    private let reference: TinyChat = {
        let url = try! ggufFixture("tiny_chat.json")
        return try! JSONDecoder().decode(TinyChat.self, from: Data(contentsOf: url))
    }()

    private func converted() throws -> (tokenizer: ByteLevelBPETokenizer, json: String, info: GGUFTokenizerInfo) {
        try GGUFTokenizer.tokenizer(from: GGUFFile(path: try ggufFixture("tiny_chat.gguf").path))
    }

    /// Every text encodes to the smollm pipeline's ids, which are transformers' ids for all
    /// texts but the one with a space before non-ASCII numerals; each decodes back.
    @Test func textsEncodeAsTheReferences() throws {
        let (tokenizer, _, _) = try converted()
        var differing: [String] = []
        for c in reference.texts {
            let ids = tokenizer.encode(c.text, addSpecialTokens: true)
            #expect(ids == c.smollm_ids, "\(c.text.debugDescription)")
            if c.transformers_ids != c.smollm_ids {
                differing.append(c.text)
            } else {
                #expect(ids == c.transformers_ids, "\(c.text.debugDescription)")
            }
            #expect(tokenizer.decode(ids) == c.decoded, "\(c.text.debugDescription)")
            #expect(tokenizer.decode(ids) == c.text, "\(c.text.debugDescription)")
        }
        #expect(differing == ["x²+y³ = ⅫⅣ ٣٤٥"])
        #expect(reference.texts.count - differing.count >= 20)
    }

    /// The chat transformers rendered with the file's template (default system message and
    /// generation prompt included) encodes to its ids; so do the model fixture's sequences.
    @Test func chatAndModelSequences() throws {
        let (tokenizer, _, info) = try converted()
        #expect(tokenizer.encode(reference.chat.text) == reference.chat.ids)
        #expect(reference.chat.text.hasPrefix("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"))
        #expect(reference.chat.text.hasSuffix("<|im_start|>assistant\n"))
        #expect(info.chatTemplate == reference.tokenizer.chat_template)
        let logitsText = tokenizer.decode(reference.logits_ids)
        #expect(tokenizer.encode(logitsText) == reference.logits_ids)
        #expect(tokenizer.encode(tokenizer.decode(reference.loss_ids)) == reference.loss_ids)
    }

    /// Special ids, flags, token kinds and the JSON text itself.
    @Test func structure() throws {
        let (tokenizer, json, info) = try converted()
        let t = reference.tokenizer
        #expect(info.preTokenizer == "smollm" && info.tokenCount == reference.config.vocab_size)
        #expect(info.bosTokenID == t.bos_token_id && info.eosTokenID == t.eos_token_id)
        #expect(info.unknownTokenID == t.unknown_token_id && info.paddingTokenID == t.padding_token_id)
        #expect(info.addBOS == t.add_bos_token && !info.addEOS && info.warnings.isEmpty)
        #expect(tokenizer.vocabSize == reference.config.vocab_size)
        #expect(tokenizer.templatePrefix.isEmpty)
        for name in t.control {
            let id = try #require(tokenizer.id(for: name))
            #expect(tokenizer.isSpecial(id), "\(name)")
        }
        for name in t.user_defined {
            let id = try #require(tokenizer.id(for: name))
            #expect(!tokenizer.isSpecial(id) && tokenizer.addedTokens.contains { $0.id == id && !$0.normalized })
        }
        // Unused fill keeps its ids and is plain vocabulary, not matched in text.
        for name in t.unused {
            let id = try #require(tokenizer.id(for: name))
            #expect(tokenizer.token(for: id) == name && !tokenizer.addedTokens.contains { $0.id == id })
        }
        // Digits are split off before GPT-2's regex.
        #expect(tokenizer.preTokenizer.split("a 12 Ⅻ") == ["a", " ", "1", "2", " ", "Ⅻ"])
        // The text is a tokenizer.json that loads to the same tokenizer and writes back as itself.
        let reloaded = try ByteLevelBPETokenizer(jsonData: Array(json.utf8))
        for c in reference.texts { #expect(reloaded.encode(c.text) == c.smollm_ids) }
        #expect(String(decoding: reloaded.jsonData(), as: UTF8.self) == json)
    }
}

@Suite struct GGUFTokenizerRoundTrip {
    private static let textData = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent()
        .appendingPathComponent("TextDataTests/Fixtures")

    private struct Cases: Decodable {
        struct Encode: Decodable { var text: String }
        struct Set: Decodable { var encode: [Encode] }
        var tokenizers: [String: Set]
    }

    /// A Sequence[Digits(individual_digits), ByteLevel] tokenizer over the GPT-2 fixture's vocabulary.
    private static func digitsTokenizer() throws -> ByteLevelBPETokenizer {
        var json = try JSONValue.parse(Array(try Data(contentsOf: textData.appendingPathComponent("gpt2_bpe.json"))))
        guard case .object(var root) = json else {
            throw UserError(path: "gpt2_bpe.json", problem: "not an object", kind: .badData)
        }
        let i = try #require(root.entries.firstIndex { $0.key == "pre_tokenizer" })
        root.entries[i].value = .obj([
            "type": .string("Sequence"),
            "pretokenizers": .array([
                .obj(["type": .string("Digits"), "individual_digits": .bool(true)]),
                .obj([
                    "type": .string("ByteLevel"), "add_prefix_space": .bool(false), "trim_offsets": .bool(true),
                    "use_regex": .bool(true),
                ]),
            ]),
        ])
        json = .object(root)
        return try ByteLevelBPETokenizer(json: json)
    }

    /// distill's export of a tokenizer, read back, encodes every fixture text as the original
    /// (Qwen2 loses its NFC normalizer, which llama.cpp does not apply: texts NFC changes are
    /// skipped there) and names the same tokens.
    @Test(arguments: [
        ("gpt2_bpe.json", "gpt-2"), ("llama3_bpe.json", "llama-bpe"), ("qwen2_bpe.json", "qwen2"), ("digits", "smollm"),
    ])
    func exportThenImport(_ name: String, _ pre: String) throws {
        let original =
            name == "digits"
            ? try Self.digitsTokenizer()
            : try ByteLevelBPETokenizer(contentsOf: Self.textData.appendingPathComponent(name))
        let cases = try JSONDecoder().decode(
            Cases.self, from: Data(contentsOf: Self.textData.appendingPathComponent("cases.json")))
        let texts =
            (cases.tokenizers[name == "digits" ? "gpt2_bpe.json" : name]?.encode.map(\.text) ?? [])
            + ["12345 and 2024-05-17", "x²+y³ Ⅻ", RoundTripText.sample]
        let vocabSize = original.vocabSize + 3  // [PAD<i>] fill, as an embedding with spare rows
        let config = LlamaConfig(
            vocabSize: vocabSize, hiddenSize: 8, intermediateSize: 8, numHiddenLayers: 1, numAttentionHeads: 2)
        try scratch { dir in
            let metadata = try LlamaGGUF.tokenizerMetadata(
                original, vocabSize: vocabSize, config: config, path: "x.gguf")
            #expect(metadata.contains { $0.0 == GGUFTokenizerKey.pre && $0.1 == .string(pre) })
            let (imported, _, info) = try GGUFTokenizer.tokenizer(from: ggufFile(metadata, in: dir))
            #expect(info.tokenCount == vocabSize && info.preTokenizer == pre)
            #expect(imported.templatePrefix == original.templatePrefix)
            for text in texts {
                if name == "qwen2_bpe.json" && !text.precomposedStringWithCanonicalMapping.utf8.elementsEqual(text.utf8)
                {
                    continue
                }
                #expect(imported.encode(text) == original.encode(text), "\(name): \(text.debugDescription)")
                #expect(
                    imported.encode(text, addSpecialTokens: false) == original.encode(text, addSpecialTokens: false))
            }
            for id in 0..<Int32(original.vocabSize) {
                #expect(imported.token(for: id) == original.token(for: id), "\(name): id \(id)")
                #expect(imported.isSpecial(id) == original.isSpecial(id), "\(name): id \(id)")
            }
            #expect(imported.token(for: Int32(vocabSize - 1)) == "[PAD\(vocabSize - 1)]")
        }
    }
}

private enum RoundTripText {
    static let sample = "First Citizen:\nBefore we proceed any further, hear me speak.\n  DON'T SHOUT! It's 12:30."
}

@Suite struct GGUFTokenizerFamilies {
    /// A small byte-level vocabulary: the 256 byte tokens, merges a+b and ab+c, and ChatML.
    private static func base(pre: String?) -> [(String, GGUFValue)] {
        var tokens = (0..<256).map { ByteLevelAlphabet.encode([UInt8($0)]) }
        tokens += ["ab", "abc", "<|im_start|>", "<|im_end|>"]
        var types = [Int32](repeating: 1, count: tokens.count)
        types[types.count - 2] = 3
        types[types.count - 1] = 3
        var out: [(String, GGUFValue)] = [
            (GGUFTokenizerKey.model, .string("gpt2")),
            (GGUFTokenizerKey.tokens, .array(.string(tokens))),
            (GGUFTokenizerKey.tokenType, .array(.int32(types))),
            (GGUFTokenizerKey.merges, .array(.string(["a b", "ab c"]))),
            (GGUFTokenizerKey.bosTokenID, .uint32(258)),
            (GGUFTokenizerKey.eosTokenID, .uint32(259)),
        ]
        if let pre { out.append((GGUFTokenizerKey.pre, .string(pre))) }
        return out
    }

    private func convert(_ metadata: [(String, GGUFValue)]) throws -> (ByteLevelBPETokenizer, GGUFTokenizerInfo) {
        try scratch { dir in
            let (tokenizer, _, info) = try GGUFTokenizer.tokenizer(from: ggufFile(metadata, in: dir))
            return (tokenizer, info)
        }
    }

    /// llama.cpp's default splitting (absent key or "default"): punctuation runs, GPT-2's
    /// regex, number runs, then groups of three ASCII digits, one after another.
    @Test func llamaCppDefault() throws {
        for pre in [nil, "default"] {
            let (tokenizer, info) = try convert(Self.base(pre: pre))
            #expect(
                tokenizer.preTokenizer.split("a 12345, b!! 6789") == [
                    "a", " ", "123", "45", ",", " b", "!!", " ", "678", "9",
                ])
            #expect(info.preTokenizer == "default")
            #expect(info.warnings.count == (pre == nil ? 1 : 0))
        }
    }

    /// The Llama-3 family adds BOS by default (add_bos_token overrides it) and skips merges for
    /// pieces that are whole tokens; dbrx shares the regex without either.
    @Test func llama3Defaults() throws {
        let (llama, info) = try convert(Self.base(pre: "llama-bpe"))
        #expect(info.addBOS && llama.templatePrefix == [258] && llama.model.ignoreMerges)
        #expect(llama.encode("abc") == [258, 257])
        #expect(llama.encode("abc", addSpecialTokens: false) == [257])
        let (off, offInfo) = try convert(Self.base(pre: "llama3") + [(GGUFTokenizerKey.addBOSToken, .bool(false))])
        #expect(!offInfo.addBOS && off.templatePrefix.isEmpty)
        let (dbrx, dbrxInfo) = try convert(Self.base(pre: "dbrx"))
        #expect(!dbrxInfo.addBOS && !dbrx.model.ignoreMerges)
        // add_eos_token appends EOS after the text.
        let (both, _) = try convert(
            Self.base(pre: "gpt-2") + [
                (GGUFTokenizerKey.addBOSToken, .bool(true)), (GGUFTokenizerKey.addEOSToken, .bool(true)),
            ])
        #expect(both.encode("<|im_start|>abc") == [258, 258, 257, 259])
    }

    /// Qwen2 single digits; the smollm family's aliases split digits too.
    @Test func qwen2AndAliases() throws {
        let (qwen, _) = try convert(Self.base(pre: "qwen2"))
        #expect(qwen.preTokenizer.split("ab 123") == ["ab", " ", "1", "2", "3"])
        for pre in ["starcoder", "command-r", "minerva-7b"] {
            let (t, _) = try convert(Self.base(pre: pre))
            #expect(t.preTokenizer.split("x 42") == ["x", " ", "4", "2"], "\(pre)")
        }
        let (gpt2, _) = try convert(Self.base(pre: "olmo"))
        #expect(gpt2.preTokenizer.split("x 42") == ["x", " 42"])
    }

    /// An added token whose text is outside the byte-level alphabet stays out of the BPE vocab
    /// and still matches in text; a normal one is respelled from its UTF-8.
    @Test func rawTextTokens() throws {
        var metadata = Self.base(pre: "gpt-2")
        guard case .array(.string(var tokens)) = metadata[1].1, case .array(.int32(var types)) = metadata[2].1 else {
            Issue.record("fixture layout")
            return
        }
        tokens += ["<｜end▁of▁sentence｜>", "my token"]
        types += [3, 4]
        metadata[1].1 = .array(.string(tokens))
        metadata[2].1 = .array(.int32(types))
        let (t, _) = try convert(metadata)
        #expect(t.encode("ab<｜end▁of▁sentence｜>my token") == [256, 260, 261])
        #expect(t.isSpecial(260) && !t.isSpecial(261))
        #expect(t.model.token(of: 260) == nil)
        #expect(t.decode([256, 260, 261]) == "ab<｜end▁of▁sentence｜>my token")
    }
}

@Suite struct GGUFTokenizerRefusals {
    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        /// Replaces (or, when absent, adds) keys of the base metadata; nil removes the key.
        var change: [String: GGUFValue?]
        /// Substrings the message must contain (besides the file's path).
        var mentions: [String]
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(
            name: "SentencePiece", change: [GGUFTokenizerKey.model: .string("llama")],
            mentions: ["tokenizer.ggml.model", "SentencePiece", "Hugging Face directory"]),
        Case(
            name: "WordPiece", change: [GGUFTokenizerKey.model: .string("bert")],
            mentions: ["tokenizer.ggml.model", "\"bert\""]),
        Case(
            name: "no tokenizer", change: [GGUFTokenizerKey.model: nil],
            mentions: ["tokenizer.ggml.model", "no tokenizer"]),
        Case(
            name: "unknown pre", change: [GGUFTokenizerKey.pre: .string("tekken")],
            mentions: ["tokenizer.ggml.pre", "\"tekken\"", "smollm", "llama-bpe", "qwen2"]),
        Case(
            name: "bos out of range", change: [GGUFTokenizerKey.bosTokenID: .uint32(260)],
            mentions: ["bos_token_id", "260"]),
        Case(
            name: "padding out of range", change: [GGUFTokenizerKey.paddingTokenID: .int32(-1)],
            mentions: ["padding_token_id", "-1"]),
        Case(
            name: "other id out of range", change: ["tokenizer.ggml.eot_token_id": .uint32(4_000_000_000)],
            mentions: ["eot_token_id"]),
        Case(
            name: "id of wrong type", change: [GGUFTokenizerKey.eosTokenID: .string("2")],
            mentions: ["eos_token_id", "integer"]),
        Case(
            name: "token_type count", change: [GGUFTokenizerKey.tokenType: .array(.int32([1, 1, 3]))],
            mentions: ["token_type", "3 entries for 260 tokens"]),
        Case(
            name: "token_type type",
            change: [GGUFTokenizerKey.tokenType: .array(.uint32(Array(repeating: 1, count: 260)))],
            mentions: ["token_type", "i32"]),
        Case(
            name: "token_type value",
            change: [GGUFTokenizerKey.tokenType: .array(.int32(Array(repeating: 1, count: 259) + [9]))],
            mentions: ["token_type", "entry 259 is 9"]),
        Case(
            name: "merge of unknown", change: [GGUFTokenizerKey.merges: .array(.string(["a b", "ab q"]))],
            mentions: ["merges", "\"abq\""]),
        Case(
            name: "merge without space", change: [GGUFTokenizerKey.merges: .array(.string(["ab"]))],
            mentions: ["merges", "merge 0"]),
        Case(name: "no merges", change: [GGUFTokenizerKey.merges: nil], mentions: ["merges", "missing"]),
        Case(
            name: "tokens not strings", change: [GGUFTokenizerKey.tokens: .array(.int32([1, 2]))],
            mentions: ["tokenizer.ggml.tokens", "array of strings"]),
        Case(
            name: "add_bos without bos",
            change: [GGUFTokenizerKey.bosTokenID: nil, GGUFTokenizerKey.addBOSToken: .bool(true)],
            mentions: ["bos_token_id", "adds BOS"]),
        Case(name: "add_sep", change: [GGUFTokenizerKey.addSEPToken: .bool(true)], mentions: ["add_sep_token"]),
        Case(
            name: "add_bos not a bool", change: [GGUFTokenizerKey.addBOSToken: .uint8(1)],
            mentions: ["add_bos_token", "bool"]),
    ]

    private static func base() -> [(String, GGUFValue)] {
        var tokens = (0..<256).map { ByteLevelAlphabet.encode([UInt8($0)]) }
        tokens += ["ab", "abc", "<|im_start|>", "<|im_end|>"]
        var types = [Int32](repeating: 1, count: tokens.count)
        types[258] = 3
        types[259] = 3
        return [
            (GGUFTokenizerKey.model, .string("gpt2")), (GGUFTokenizerKey.pre, .string("gpt-2")),
            (GGUFTokenizerKey.tokens, .array(.string(tokens))), (GGUFTokenizerKey.tokenType, .array(.int32(types))),
            (GGUFTokenizerKey.merges, .array(.string(["a b", "ab c"]))), (GGUFTokenizerKey.bosTokenID, .uint32(258)),
            (GGUFTokenizerKey.eosTokenID, .uint32(259)),
        ]
    }

    private static func refusal(_ metadata: [(String, GGUFValue)]) throws -> (UserError?, String) {
        try scratch { dir in
            let file = try ggufFile(metadata, in: dir)
            do {
                _ = try GGUFTokenizer.tokenizerJSON(from: file)
                return (nil, file.path)
            } catch let error as UserError {
                return (error, file.path)
            }
        }
    }

    @Test func baseIsAccepted() throws {
        let (error, _) = try Self.refusal(Self.base())
        #expect(error == nil)
    }

    @Test(arguments: cases)
    func refused(_ c: Case) throws {
        var metadata = Self.base()
        for (key, value) in c.change {
            if let i = metadata.firstIndex(where: { $0.0 == key }) {
                if let value { metadata[i].1 = value } else { metadata.remove(at: i) }
            } else if let value {
                metadata.append((key, value))
            }
        }
        let (error, path) = try Self.refusal(metadata)
        let e = try #require(error, "\(c.name) was accepted")
        #expect(e.kind == .badData && e.path == path)
        for m in c.mentions { #expect(e.description.contains(m), "\(c.name): \(e.description)") }
    }

    /// Two tokens that are the same text, or the same bytes once spelled in the alphabet.
    @Test func duplicates() throws {
        let metadata = Self.base()
        for (extra, type, mention) in [
            ("ab", Int32(1), "repeats token 256"), (" ", 1, "same bytes as token 32"), ("", 1, "empty"),
        ] {
            var m = metadata
            guard case .array(.string(let tokens)) = m[2].1, case .array(.int32(let types)) = m[3].1 else { return }
            m[2].1 = .array(.string(tokens + [extra]))
            m[3].1 = .array(.int32(types + [type]))
            let (error, _) = try Self.refusal(m)
            let e = try #require(error, "\(extra.debugDescription) accepted")
            #expect(e.description.contains(mention), "\(e.description)")
        }
    }
}
