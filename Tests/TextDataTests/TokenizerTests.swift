import Foundation
import JSON
import Platform
import Testing

@testable import TextData

// Fixtures come from tools/make_tokenizer_fixtures.py (Hugging Face `tokenizers` 0.23): three
// tokenizer.json files trained by HF and the ids / decodes / pre-tokenizer splits HF produced.

struct EncodeCase: Decodable {
    var text: String
    var ids: [Int32]
    var ids_no_special: [Int32]
    var decoded: String
    var decoded_skip: String
}

struct DecodeCase: Decodable {
    var ids: [Int32]
    var decoded: String
}

struct TokenizerCases: Decodable {
    var encode: [EncodeCase]
    var decode: [DecodeCase]
    var vocab_size: Int
}

struct SplitCase: Decodable {
    var text: String
    var pieces: [String]
}

struct Cases: Decodable {
    var tokenizers: [String: TokenizerCases]
    var pretokenizers: [String: [SplitCase]]
}

enum Fixtures {
    static func url(_ name: String) -> URL {
        let base = (name as NSString).deletingPathExtension
        let ext = (name as NSString).pathExtension
        guard let url = Bundle.module.url(forResource: base, withExtension: ext, subdirectory: "Fixtures") else {
            preconditionFailure("missing fixture \(name); run tools/make_tokenizer_fixtures.py")
        }
        return url
    }

    static let cases: Cases = {
        let data = try! Data(contentsOf: url("cases.json"))
        return try! JSONDecoder().decode(Cases.self, from: data)
    }()

    static func tokenizer(_ name: String) throws -> ByteLevelBPETokenizer {
        try ByteLevelBPETokenizer(contentsOf: url(name))
    }

    static var corpus: String { try! String(contentsOf: url("corpus.txt"), encoding: .utf8) }
}

let tokenizerFiles = ["gpt2_bpe.json", "llama3_bpe.json", "qwen2_bpe.json"]

@Suite struct HuggingFaceParity {
    @Test(arguments: tokenizerFiles)
    func encodeMatchesHF(file: String) throws {
        let tok = try Fixtures.tokenizer(file)
        let cases = try #require(Fixtures.cases.tokenizers[file])
        #expect(cases.encode.count > 100)
        for c in cases.encode {
            #expect(tok.encode(c.text) == c.ids, "text \(c.text.debugDescription)")
            #expect(tok.encode(c.text, addSpecialTokens: false) == c.ids_no_special, "text \(c.text.debugDescription)")
        }
    }

    @Test(arguments: tokenizerFiles)
    func decodeMatchesHF(file: String) throws {
        let tok = try Fixtures.tokenizer(file)
        let cases = try #require(Fixtures.cases.tokenizers[file])
        for c in cases.encode {
            #expect(tok.decode(c.ids) == c.decoded, "ids \(c.ids)")
            #expect(tok.decode(c.ids, skipSpecialTokens: true) == c.decoded_skip, "ids \(c.ids)")
        }
        // Random ids: partial UTF-8 sequences, unknown ids, special tokens.
        for c in cases.decode {
            #expect(tok.decode(c.ids) == c.decoded, "ids \(c.ids)")
        }
        #expect(tok.vocabSize == cases.vocab_size)
    }

    @Test(arguments: tokenizerFiles)
    func decodeInvertsEncode(file: String) throws {
        let tok = try Fixtures.tokenizer(file)
        for c in try #require(Fixtures.cases.tokenizers[file]).encode {
            let expected = tok.normalization == .nfc ? c.text.precomposedStringWithCanonicalMapping : c.text
            let ids = tok.encode(c.text, addSpecialTokens: false)
            #expect(tok.decode(ids).unicodeScalars.elementsEqual(expected.unicodeScalars))
        }
    }

    @Test func llama3TemplateAddsBOS() throws {
        let tok = try Fixtures.tokenizer("llama3_bpe.json")
        let bos = try #require(tok.id(for: "<|begin_of_text|>"))
        #expect(tok.templatePrefix == [bos])
        #expect(tok.encode("hi").first == bos)
        #expect(tok.encode("hi", addSpecialTokens: false).first != bos)
        #expect(tok.model.ignoreMerges)
    }
}

@Suite struct PreTokenizers {
    static let patterns: [String: SplitPattern] = [
        "gpt2": .gpt2, "llama3": .llama3(maxDigits: 3), "qwen2": .llama3(maxDigits: 1),
    ]

    /// The hand-written scanners against HF's Oniguruma regexes on fixed and random strings.
    @Test(arguments: ["gpt2", "llama3", "qwen2"])
    func scannerMatchesOniguruma(name: String) throws {
        let pattern = try #require(Self.patterns[name])
        let pre = PreTokenizer(steps: [.split(pattern, .isolated, invert: false)])
        let cases = try #require(Fixtures.cases.pretokenizers[name])
        #expect(cases.count > 200)
        for c in cases {
            #expect(pre.split(c.text) == c.pieces, "text \(c.text.debugDescription)")
        }
    }

    /// The three patterns run by LinearRegex (the path of any other Split pattern) against
    /// Oniguruma's pieces: the engine follows the backtracking engines' priorities exactly,
    /// lookahead and case-insensitive groups included.
    @Test(arguments: ["gpt2", "llama3", "qwen2"])
    func linearRegexMatchesOniguruma(name: String) throws {
        let source = [
            "gpt2": SplitPatterns.gpt2, "llama3": SplitPatterns.llama3, "qwen2": SplitPatterns.qwen2,
        ][name]!
        let linear = PreTokenizer(steps: [.split(.regex(try LinearRegex(source)), .isolated, invert: false)])
        for c in try #require(Fixtures.cases.pretokenizers[name]) {
            #expect(linear.split(c.text) == c.pieces, "text \(c.text.debugDescription)")
        }
    }

    @Test func knownPatternsAreRecognised() throws {
        guard case .gpt2 = try SplitPattern.forRegex(SplitPatterns.gpt2) else { Issue.record("gpt2"); return }
        guard case .llama3(3) = try SplitPattern.forRegex(SplitPatterns.llama3) else { Issue.record("llama3"); return }
        guard case .llama3(1) = try SplitPattern.forRegex(SplitPatterns.qwen2) else { Issue.record("qwen2"); return }
        guard case .regex = try SplitPattern.forRegex(#"\d+"#) else { Issue.record("fallback"); return }
    }

    /// HF's documented example for `Split(" -", behavior)` on "the-final--countdown".
    @Test(arguments: [
        (SplitBehavior.removed, ["the", "final", "countdown"]),
        (.isolated, ["the", "-", "final", "-", "-", "countdown"]),
        (.mergedWithPrevious, ["the-", "final-", "-", "countdown"]),
        (.mergedWithNext, ["the", "-final", "-", "-countdown"]),
        (.contiguous, ["the", "-", "final", "--", "countdown"]),
    ])
    func splitBehaviors(behavior: SplitBehavior, expected: [String]) {
        let pre = PreTokenizer(steps: [.split(.literal(Array("-".utf8)), behavior, invert: false)])
        #expect(pre.split("the-final--countdown") == expected)
    }

    @Test func byteLevelPrefixSpaceAppliesPerPiece() {
        // Matches HF: add_prefix_space after a Split prefixes every split piece.
        let pre = PreTokenizer(steps: [
            .split(.llama3(maxDigits: 3), .isolated, invert: false), .byteLevel(addPrefixSpace: true, useRegex: false),
        ])
        #expect(pre.split("it's 12345") == [" it", " 's", " ", " 123", " 45"])
    }
}

@Suite struct SaveAndTrain {
    @Test(arguments: tokenizerFiles)
    func savedFileReloadsIdentically(file: String) throws {
        let tok = try Fixtures.tokenizer(file)
        let reloaded = try ByteLevelBPETokenizer(jsonData: tok.jsonData())
        #expect(reloaded.jsonValue() == tok.jsonValue())
        for c in try #require(Fixtures.cases.tokenizers[file]).encode {
            #expect(reloaded.encode(c.text) == c.ids)
        }
    }

    @Test(arguments: BPETrainer.Style.allCases)
    func trainedTokenizerRoundTrips(style: BPETrainer.Style) throws {
        let config = BPETrainer.Config(
            vocabSize: 420, specialTokens: ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], minFrequency: 1,
            style: style, bosToken: style == .llama3 ? "<|endoftext|>" : nil)
        let tok = try BPETrainer(config).train(Fixtures.corpus)
        #expect(tok.vocabSize == 420)
        #expect(tok.id(for: "<|endoftext|>") == 0)
        #expect(tok.id(for: "<|im_end|>") == 2)
        let space: Int32? = tok.id(for: "\u{120}")
        #expect(space == Int32(3 + 0x20))
        #expect(tok.model.merges.count == 420 - 259)

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distill-tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("tokenizer.json")
        try tok.write(to: url)
        let reloaded = try ByteLevelBPETokenizer(contentsOf: url)
        for c in try #require(Fixtures.cases.tokenizers["gpt2_bpe.json"]).encode {
            let ids = tok.encode(c.text)
            #expect(reloaded.encode(c.text) == ids)
            let body = tok.encode(c.text, addSpecialTokens: false)
            let expected = style == .qwen2 ? c.text.precomposedStringWithCanonicalMapping : c.text
            #expect(tok.decode(body).unicodeScalars.elementsEqual(expected.unicodeScalars))
        }
        if style == .llama3 { #expect(tok.encode("x").first == 0) }
        // Special tokens in the text are matched whole, never merged.
        #expect(tok.encode("a<|im_end|>", addSpecialTokens: false).last == 2)
    }

    @Test func trainingIsDeterministic() throws {
        let config = BPETrainer.Config(vocabSize: 400, specialTokens: ["<|endoftext|>"])
        let a = try BPETrainer(config).train(Fixtures.corpus).jsonValue()
        let b = try BPETrainer(config).train(Fixtures.corpus).jsonValue()
        #expect(a == b)
    }

    /// Worked by hand. "abab" is one word; its pairs are (a,b) twice and (b,a) once, so the first
    /// merge is (a,b) -> "ab"; then (ab,ab) occurs once and becomes "abab".
    /// "cd ab" gives words "cd" and "Ġab"; (c,d), (Ġ,a), (a,b) each occur once, and the tie goes
    /// to the smallest id pair: Ġ is byte 0x20, so (Ġ,a) < (a,b) < (c,d). Merging (Ġ,a) creates id
    /// 257, so the surviving pair (Ġa,b) now ranks after (c,d).
    @Test func mergeOrderAndTieBreak() throws {
        let small = BPETrainer.Config(vocabSize: 258, specialTokens: ["<s>"], minFrequency: 1)
        let tok = try BPETrainer(small).train("abab")
        #expect(tok.model.merges.map { "\($0.0) \($0.1)" } == ["a b"])
        var two = small
        two.vocabSize = 259
        #expect(try BPETrainer(two).train("abab").model.merges.map { "\($0.0) \($0.1)" } == ["a b", "ab ab"])
        var three = small
        three.vocabSize = 260
        let tie = try BPETrainer(three).train("cd ab")
        #expect(tie.model.merges.map { "\($0.0) \($0.1)" } == ["Ġ a", "c d", "Ġa b"])
    }

    @Test func trainerRejectsTooSmallVocab() {
        #expect(throws: TokenizerError.self) { try BPETrainer(.init(vocabSize: 100)).train("abc") }
    }
}

@Suite struct Errors {
    static func base() throws -> JSONValue {
        try JSONValue.parse(Data(contentsOf: Fixtures.url("llama3_bpe.json")))
    }

    static func message(_ json: JSONValue) -> String {
        do {
            _ = try ByteLevelBPETokenizer(json: json)
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    static func replacing(_ json: JSONValue, _ path: [String], with value: JSONValue) -> JSONValue {
        guard let head = path.first, case .object(var o) = json else { return value }
        if let i = o.entries.firstIndex(where: { $0.key == head }) {
            o.entries[i].value = replacing(o.entries[i].value, Array(path.dropFirst()), with: value)
        }
        return .object(o)
    }

    @Test func malformedJSONNamesLineAndColumn() {
        let bad = "{\n  \"model\": {\n    \"type\": \"BPE\",,\n  }\n}"
        #expect(throws: TokenizerError.malformedJSON(line: 3, column: 19, reason: "expected a string key")) {
            _ = try ByteLevelBPETokenizer(jsonData: Array(bad.utf8))
        }
        #expect(throws: JSONSyntaxError.self) { _ = try JSONValue.parse(Array("[1, 2".utf8)) }
        #expect(throws: JSONSyntaxError.self) { _ = try JSONValue.parse(Array("\"\\ud800\"".utf8)) }
    }

    @Test func unsupportedPreTokenizerNamesPath() throws {
        let metaspace = JSONValue.obj([
            "type": .string("Sequence"),
            "pretokenizers": .array([
                .obj(["type": .string("Digits"), "individual_digits": .bool(true)]),
                .obj(["type": .string("Metaspace"), "replacement": .string("▁")]),
            ]),
        ])
        let msg = Self.message(Self.replacing(try Self.base(), ["pre_tokenizer"], with: metaspace))
        #expect(
            msg
                == #"pre_tokenizer.pretokenizers[1].type: "Metaspace" is not supported; distill reads byte-level BPE tokenizers (GPT-2 / Llama-3 / Qwen2 family)"#
        )
    }

    /// A Split regex that needs a backtracking engine is refused where it is read, naming its
    /// JSON path and the construct; a catastrophic one is accepted and runs in linear time.
    @Test func splitRegexesAreLinearOrRefused() throws {
        func split(_ pattern: String) -> JSONValue {
            .obj([
                "type": .string("Sequence"),
                "pretokenizers": .array([
                    .obj([
                        "type": .string("Split"), "pattern": .obj(["Regex": .string(pattern)]),
                        "behavior": .string("Isolated"), "invert": .bool(false),
                    ]),
                    .obj(["type": .string("ByteLevel"), "add_prefix_space": .bool(false), "use_regex": .bool(false)]),
                ]),
            ])
        }
        let msg = Self.message(Self.replacing(try Self.base(), ["pre_tokenizer"], with: split(#"(\w)\1"#)))
        #expect(msg.hasPrefix("pre_tokenizer.pretokenizers[0].pattern.Regex: invalid regex: a backreference"), "\(msg)")
        let json = Self.replacing(try Self.base(), ["pre_tokenizer"], with: split(#"(a+)+$|\s+"#))
        let tokenizer = try ByteLevelBPETokenizer(jsonData: Array(json.compact().utf8))
        let text = String(repeating: "a", count: 20000) + "b c"
        #expect(tokenizer.decode(tokenizer.encode(text, addSpecialTokens: false)) == text)
    }

    @Test func unsupportedComponentsNamePaths() throws {
        let base = try Self.base()
        #expect(Self.message(Self.replacing(base, ["model", "type"], with: .string("WordPiece"))).hasPrefix("model.type: \"WordPiece\""))
        #expect(Self.message(Self.replacing(base, ["decoder"], with: .obj(["type": .string("Metaspace")]))).hasPrefix("decoder.type: \"Metaspace\""))
        #expect(Self.message(Self.replacing(base, ["normalizer"], with: .obj(["type": .string("NFKC")]))).hasPrefix("normalizer.type: \"NFKC\""))
        #expect(Self.message(Self.replacing(base, ["model", "byte_fallback"], with: .bool(true))).hasPrefix("model.byte_fallback"))
        #expect(Self.message(Self.replacing(base, ["pre_tokenizer"], with: .null)).hasPrefix("pre_tokenizer: null"))
        #expect(Self.message(Self.replacing(base, ["post_processor"], with: .obj(["type": .string("Weird")]))).hasPrefix("post_processor.type"))
    }

    @Test func invalidMergesAndVocabNamePaths() throws {
        let base = try Self.base()
        let msg = Self.message(Self.replacing(base, ["model", "merges"], with: .array([.string("Ġ nosuchtoken")])))
        #expect(msg.hasPrefix("model.merges[0]: token \"nosuchtoken\" is not in the vocabulary"))
        let msg2 = Self.message(Self.replacing(base, ["model", "merges"], with: .array([.int(3)])))
        #expect(msg2.hasPrefix("model.merges[0]: expected a string or a pair"))
        let msg3 = Self.message(Self.replacing(base, ["model", "vocab"], with: .array([])))
        #expect(msg3.hasPrefix("model.vocab: expected an object, found an array"))
    }

    @Test func fileErrorsNameTheFile() {
        let url = URL(fileURLWithPath: "/nonexistent/tokenizer.json")
        #expect(throws: TokenizerError.self) { _ = try ByteLevelBPETokenizer(contentsOf: url) }
    }
}

/// Timing on a real corpus, opt-in: DISTILL_TOKENIZER_BENCH=/path/to/text swift test -c release
/// --filter TextDataTests.Benchmark
@Suite struct Benchmark {
    @Test func encodeAndTrainSpeed() throws {
        guard let path = ProcessInfo.processInfo.environment["DISTILL_TOKENIZER_BENCH"] else { return }
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let mb = Double(text.utf8.count) / 1e6
        let clock = ContinuousClock()
        var tok: ByteLevelBPETokenizer?
        let trainTime = try clock.measure {
            tok = try BPETrainer(.init(vocabSize: 4096, specialTokens: ["<|endoftext|>"])).train(text)
        }
        let tokenizer = try #require(tok)
        var ids: [Int32] = []
        let encodeTime = clock.measure { ids = tokenizer.encode(text) }
        let fresh = try ByteLevelBPETokenizer(jsonData: tokenizer.jsonData())
        let coldTime = clock.measure { _ = fresh.encode(text) }
        #expect(tokenizer.decode(ids) == text)
        func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }
        print(
            "bench: \(String(format: "%.2f", mb)) MB; train to 4096: \(String(format: "%.2f", seconds(trainTime))) s; "
                + "encode (cold cache) \(String(format: "%.1f", mb / seconds(coldTime))) MB/s, "
                + "(warm) \(String(format: "%.1f", mb / seconds(encodeTime))) MB/s; \(ids.count) tokens")
        if let out = ProcessInfo.processInfo.environment["DISTILL_TOKENIZER_BENCH_OUT"] {
            try tokenizer.write(to: URL(fileURLWithPath: out))
        }
    }
}

/// Opt-in cross-check with HF `tokenizers` (run by hand, not in CI):
///   DISTILL_TOKENIZER_CROSSCHECK=DIR DISTILL_TOKENIZER_BENCH=corpus.txt swift test -c release \
///     -Xswiftc -enable-testing --filter TextDataTests.CrossCheck
///   /tmp/distill-ref/bin/python tools/make_tokenizer_fixtures.py --crosscheck DIR corpus.txt
/// Writes DIR/swift_<style>.json trained by distill plus, for those and for every DIR/*.json made
/// elsewhere (e.g. by tiny_llama.py), the ids distill produces for the corpus in <name>.ids.json.
@Suite struct CrossCheck {
    @Test func writeTokenizersAndIDs() throws {
        let env = ProcessInfo.processInfo.environment
        guard let dir = env["DISTILL_TOKENIZER_CROSSCHECK"], let corpusPath = env["DISTILL_TOKENIZER_BENCH"] else { return }
        let text = try String(contentsOfFile: corpusPath, encoding: .utf8)
        let base = URL(fileURLWithPath: dir)
        for style in BPETrainer.Style.allCases {
            let config = BPETrainer.Config(
                vocabSize: style == .gpt2 ? 4096 : 2048, specialTokens: ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                style: style, bosToken: style == .llama3 ? "<|endoftext|>" : nil)
            try BPETrainer(config).train(text).write(to: base.appendingPathComponent("swift_\(style.rawValue).json"))
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter {
            $0.hasSuffix(".json") && !$0.hasSuffix(".ids.json")
        }
        // The corpus plus the fixture strings (special tokens, unicode, whitespace runs).
        let extras = Fixtures.cases.tokenizers["gpt2_bpe.json"]!.encode.map(\.text)
        for name in files {
            let tok = try ByteLevelBPETokenizer(contentsOf: base.appendingPathComponent(name))
            let ids = [tok.encode(text).map(Int.init)] + extras.map { tok.encode($0).map(Int.init) }
            let data = try JSONSerialization.data(withJSONObject: ["texts": [text] + extras, "ids": ids])
            try data.write(to: base.appendingPathComponent(name.replacingOccurrences(of: ".json", with: ".ids.json")))
        }
    }
}
