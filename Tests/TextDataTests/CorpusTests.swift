import Foundation
import JSON
import Platform
import Testing

@testable import TextData

/// A fresh directory under the system temporary directory, removed by `cleanup()`.
struct Scratch {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("distill-data-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    @discardableResult
    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        try Data(bytes).write(to: url.appendingPathComponent(name))
        return path(name)
    }

    @discardableResult
    func write(_ name: String, _ text: String) throws -> String { try write(name, Array(text.utf8)) }

    func files() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []).sorted()
    }

    func cleanup() { try? FileManager.default.removeItem(at: url) }
}

/// Reads every record; returns the error thrown, if any.
func readAll(_ path: String, field: String = "text") -> (texts: [String], lines: [Int], error: DataError?) {
    var texts: [String] = []
    var lines: [Int] = []
    do {
        try JSONLReader.forEach(path: path) { record in
            texts.append(try record.string(field))
            lines.append(record.line)
        }
    } catch let e as DataError {
        return (texts, lines, e)
    } catch {
        Issue.record("unexpected error type \(error)")
    }
    return (texts, lines, nil)
}

@Suite struct XXH64Tests {
    /// Reference digests from the `xxhash` Python package (xxhash 4.1, XXH64).
    @Test func matchesReference() {
        let cases: [([UInt8], UInt64, UInt64)] = [
            ([], 0xef46_db37_51d8_e999, 0x95f0_626f_6f0a_4409),
            (Array("a".utf8), 0xd24e_c4f1_a98c_6e5b, 0xdc63_49d4_89e0_f965),
            (Array("abc".utf8), 0x44bc_2cf5_ad77_0999, 0x9e75_5206_1566_76d7),
            (Array(repeating: UInt8(ascii: "x"), count: 31), 0x60dd_0d01_083b_99f0, 0x3781_cea7_cb1a_961e),
            (Array(repeating: UInt8(ascii: "y"), count: 32), 0x64da_1f1d_3495_ce66, 0x89ec_7e3f_c933_cd5f),
            (Array(repeating: UInt8(ascii: "z"), count: 33), 0xc524_1253_c64e_0268, 0x6e6a_54df_dc4c_5ea9),
            (Array(0..<100), 0x6ac1_e580_3216_6597, 0x8065_3e7e_9b88_7cdd),
            ((0..<768).map { UInt8($0 % 256) }, 0x8e03_c838_c596_036f, 0xb1e1_0f6c_5294_cd6b),
        ]
        for (bytes, seed0, seed7) in cases {
            #expect(XXH64.hash(bytes) == seed0, "length \(bytes.count)")
            #expect(XXH64.hash(bytes, seed: 7) == seed7, "length \(bytes.count)")
        }
    }

    /// Feeding in uneven pieces gives the one-shot digest.
    @Test func streamingEqualsOneShot() {
        let bytes = (0..<1000).map { UInt8(($0 * 7 + 3) % 256) }
        for step in [1, 3, 17, 31, 32, 33, 200] {
            var h = XXH64()
            var i = 0
            while i < bytes.count {
                h.update(Array(bytes[i..<min(bytes.count, i + step)]))
                i += step
            }
            #expect(h.finalize() == XXH64.hash(bytes), "step \(step)")
        }
    }
}

@Suite struct JSONLTests {
    @Test func readsRecordsSkippingBlankLines() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let path = try s.write("a.jsonl", "{\"text\": \"one\"}\n\n   \n{\"text\": \"two\", \"id\": 2}\n{\"text\":\"three\"}")
        let r = readAll(path)
        #expect(r.error == nil)
        #expect(r.texts == ["one", "two", "three"])
        #expect(r.lines == [1, 4, 5])
    }

    @Test func bomAndCRLF() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let body = Array("{\"text\": \"a\\r\\nb\"}\r\n\r\n{\"text\": \"é\"}\r\n".utf8)
        let path = try s.write("bom.jsonl", [0xEF, 0xBB, 0xBF] + body)
        let r = readAll(path)
        #expect(r.error == nil)
        #expect(r.texts == ["a\r\nb", "é"])
        #expect(r.lines == [1, 3])

        // Columns after a BOM count from the first character after it.
        let bad = try s.write("bombad.jsonl", [0xEF, 0xBB, 0xBF] + Array("{\"text\" 1}\r\n".utf8))
        #expect(readAll(bad).error == .malformed(
            file: bad, line: 1, column: 9, reason: "invalid JSON: expected ':'",
            hint: "each line must be one complete JSON object"))
    }

    @Test func veryLongLineAcrossChunks() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let long = String(repeating: "abcdefghij", count: 350_000)  // 3.5 MB, several read chunks
        let path = try s.write("long.jsonl", "{\"text\": \"x\"}\n{\"text\": \"\(long)\"}\n{\"text\": \"y\"}")
        let r = readAll(path)
        #expect(r.error == nil)
        #expect(r.texts.map(\.count) == [1, long.count, 1])
        #expect(r.lines == [1, 2, 3])
    }

    @Test func lineLimitIsEnforced() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let path = try s.write("huge.jsonl", "{\"text\": \"ok\"}\n" + String(repeating: "x", count: 3 << 20))
        var reader = try JSONLReader(path: path, maxLineBytes: 1 << 20)
        _ = try reader.next()
        #expect(throws: DataError.malformed(
            file: path, line: 2, column: 1, reason: "line is longer than 1 MiB",
            hint: "JSONL needs one record per line; check that this is a JSONL file")) { try reader.next() }
    }

    /// (file content, expected line, column, reason)
    static let malformed: [(String, Int, Int, String)] = [
        // Bad JSON in the middle of the file: the column of the offending character.
        ("{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": \"c\",}\n{\"text\": \"d\"}\n", 3, 14, "invalid JSON: expected a string key"),
        ("{\"text\": \"a\"}\n{\"text\": tru}\n", 2, 10, "invalid JSON: invalid literal"),
        ("{\"text\": \"a\"}\n{\"text\": \"unterminated}\n", 2, 24, "invalid JSON: unterminated string"),
        ("{\"text\": \"a\"} {\"text\": \"b\"}\n", 1, 15, "invalid JSON: unexpected content after the document"),
        // Non-ASCII before the error: columns count characters, not bytes.
        ("{\"text\": \"héllo\" \"x\"}\n", 1, 18, "invalid JSON: expected ',' or '}'"),
        // Not an object.
        ("{\"text\": \"a\"}\n  [\"text\", \"b\"]\n", 2, 3, "line is an array, not a JSON object"),
        ("\"just a string\"\n", 1, 1, "line is a string, not a JSON object"),
        // Wrong field type: the column of the value.
        ("{\"text\": \"a\"}\n{\"id\": 7, \"text\": 42}\n", 2, 19, "field \"text\" is a number, not a string"),
        ("{\"text\": null}\n", 1, 10, "field \"text\" is null, not a string"),
        ("{\"text\": [\"a\"]}\n", 1, 10, "field \"text\" is an array, not a string"),
        // Missing field.
        ("{\"text\": \"a\"}\n{\"content\": \"b\", \"id\": 1}\n", 2, 1,
         "missing field \"text\" (the object has \"content\", \"id\")"),
        ("{}\n", 1, 1, "missing field \"text\" (the object has no fields)"),
        // Duplicate key.
        ("{\"text\": \"a\", \"text\": \"b\"}\n", 1, 15, "duplicate key \"text\""),
    ]

    @Test(arguments: malformed.indices)
    func malformedLinesNameFileLineColumn(index: Int) throws {
        let (content, line, column, reason) = Self.malformed[index]
        let s = try Scratch()
        defer { s.cleanup() }
        let path = try s.write("bad.jsonl", content)
        let error = try #require(readAll(path).error)
        guard case .malformed(let file, let l, let c, let r, let hint) = error else {
            Issue.record("expected .malformed, got \(error)")
            return
        }
        #expect(file == path)
        #expect(l == line)
        #expect(c == column)
        #expect(r == reason)
        #expect(!hint.isEmpty)
        #expect(error.kind == .badData)
        #expect(error.description.hasPrefix("\(path):\(line):\(column): \(reason); "))
    }

    @Test func invalidUTF8() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let path = try s.write("utf8.jsonl", Array("{\"text\": \"ok\"}\n{\"text\": \"ab".utf8) + [0xC3, 0x28] + Array("\"}\n".utf8))
        #expect(readAll(path).error == .malformed(
            file: path, line: 2, column: 13, reason: "invalid UTF-8", hint: "re-encode the file as UTF-8"))
    }

    @Test func missingFileIsIO() throws {
        #expect(throws: DataError.io(path: "/nonexistent/x.jsonl", reason: "no such file")) {
            try JSONLReader(path: "/nonexistent/x.jsonl")
        }
        #expect(DataError.io(path: "p", reason: "r").kind == .io)
    }
}

@Suite struct CorpusTests {
    static func tokenizer() throws -> ByteLevelBPETokenizer { try Fixtures.tokenizer("gpt2_bpe.json") }

    @Test func formatsByExtensionAndDirectories() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        try s.write("b.txt", "bee")
        try s.write("a.jsonl", "{\"text\": \"ay\"}\n")
        try s.write("c.md", "see")
        try s.write("notes.csv", "ignored")
        let files = try CorpusSource(paths: [s.url.path]).files()
        #expect(files.map { ($0.path as NSString).lastPathComponent } == ["a.jsonl", "b.txt", "c.md"])
        #expect(files.map(\.format) == [.jsonl, .text, .text])
        var docs: [String] = []
        try CorpusSource(paths: [s.url.path]).forEachDocument { docs.append($0) }
        #expect(docs == ["ay", "bee", "see"])

        let csv = s.path("notes.csv")
        #expect(throws: DataError.self) { try CorpusSource(paths: [csv]).files() }
        #expect(try CorpusSource(paths: [csv], format: .text).files().map(\.format) == [.text])
        do {
            _ = try CorpusSource(paths: [s.path("missing.txt")]).files()
            Issue.record("expected an error")
        } catch let e as DataError {
            #expect(e.kind == .io)
        }
    }

    @Test func textFilesAreOneDocumentWithBOMAndCRLFNormalized() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let path = try s.write("w.txt", [0xEF, 0xBB, 0xBF] + Array("line one\r\nline two\r\n\r\nnext\r".utf8))
        var docs: [String] = []
        try CorpusSource(paths: [path]).forEachDocument { docs.append($0) }
        #expect(docs == ["line one\nline two\n\nnext\r"])

        let bad = try s.write("bad.txt", Array("ok\nfine\nab".utf8) + [0xFF] + Array("\n".utf8))
        #expect(throws: DataError.malformed(
            file: bad, line: 3, column: 3, reason: "invalid UTF-8",
            hint: "re-encode the file as UTF-8 (for example iconv -f latin1 -t utf-8)")) {
            try CorpusSource(paths: [bad]).forEachDocument { _ in }
        }
    }

    @Test func streamIsDocumentsEachFollowedBySeparator() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let tok = try Self.tokenizer()
        let eot = try #require(tok.id(for: "<|endoftext|>"))
        let a = try s.write("a.txt", "The cat sat.")
        let b = try s.write("b.jsonl", "{\"text\": \"A dog ran.\"}\n{\"text\": \"\"}\n{\"text\": \"Birds fly!\"}\n")
        let stream = try CorpusSource(paths: [a, b]).tokenStream(tokenizer: tok, separator: eot, cacheDirectory: nil)
        let expected =
            tok.encode("The cat sat.", addSpecialTokens: false) + [eot]
            + tok.encode("A dog ran.", addSpecialTokens: false) + [eot]
            + tok.encode("Birds fly!", addSpecialTokens: false) + [eot]
        #expect(stream.tokens == expected)
        #expect(stream.documents == 3)
        #expect(stream.cacheStatus == .uncached)
        #expect(tok.decode(stream.tokens) == "The cat sat.<|endoftext|>A dog ran.<|endoftext|>Birds fly!<|endoftext|>")

        #expect(throws: DataError.self) {
            try CorpusSource(paths: [a]).tokenStream(tokenizer: tok, separator: 100_000, cacheDirectory: nil)
        }
    }

    @Test func customTextFieldAndMalformedCorpusLine() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let tok = try Self.tokenizer()
        let p = try s.write("c.jsonl", "{\"body\": \"x\"}\n{\"body\": 3}\n")
        do {
            _ = try CorpusSource(paths: [p], textField: "body").tokenStream(tokenizer: tok, separator: nil, cacheDirectory: s.url)
            Issue.record("expected an error")
        } catch let e as DataError {
            #expect(e.description.hasPrefix("\(p):2:10: field \"body\" is a number, not a string; "))
        }
        // Nothing half-processed is left behind.
        #expect(s.files() == ["c.jsonl"])
    }
}

@Suite struct TokenCacheTests {
    static func setup(_ s: Scratch) throws -> (CorpusSource, ByteLevelBPETokenizer, Int32, URL) {
        let tok = try Fixtures.tokenizer("gpt2_bpe.json")
        let eot = try #require(tok.id(for: "<|endoftext|>"))
        let text = try s.write("corpus.txt", Fixtures.corpus)
        let jsonl = try s.write("more.jsonl", "{\"text\": \"Hello there.\"}\n{\"text\": \"General Kenobi!\"}\n")
        return (CorpusSource(paths: [text, jsonl]), tok, eot, s.url.appendingPathComponent("cache"))
    }

    @Test func secondLoadHitsAndMatches() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let (source, tok, eot, cache) = try Self.setup(s)
        let first = try source.tokenStream(tokenizer: tok, separator: eot, cacheDirectory: cache)
        #expect(first.cacheStatus == .built)
        let file = try #require(first.cacheFile)
        #expect(FileManager.default.fileExists(atPath: file.path))
        // Nothing but complete cache files: no temporary file of the atomic write is left.
        let names = try FileManager.default.contentsOfDirectory(atPath: file.deletingLastPathComponent().path)
        #expect(!names.contains { $0.contains(".tmp-") }, "\(names)")
        let second = try source.tokenStream(tokenizer: tok, separator: eot, cacheDirectory: cache)
        #expect(second.cacheStatus == .hit)
        #expect(second.tokens == first.tokens)
        #expect(second.documents == first.documents)
        let uncached = try source.tokenStream(tokenizer: tok, separator: eot, cacheDirectory: nil)
        #expect(uncached.tokens == first.tokens)
        // Header + 4 bytes per token + checksum.
        let size = try FileManager.default.attributesOfItem(atPath: file.path)[.size] as! NSNumber
        #expect(size.intValue == 40 + 4 * first.tokens.count + 8)
    }

    @Test func changesMiss() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let (source, tok, eot, cache) = try Self.setup(s)
        let base = try source.tokenStream(tokenizer: tok, separator: eot, cacheDirectory: cache)

        // A different separator, tokenizer or text field is a different stream.
        #expect(try source.tokenStream(tokenizer: tok, separator: nil, cacheDirectory: cache).cacheStatus == .built)
        let other = try Fixtures.tokenizer("llama3_bpe.json")
        let otherEOT = try #require(other.id(for: "<|endoftext|>"))
        let viaOther = try source.tokenStream(tokenizer: other, separator: otherEOT, cacheDirectory: cache)
        #expect(viaOther.cacheStatus == .built)
        #expect(viaOther.fingerprint != base.fingerprint)
        var renamed = source
        renamed.textField = "body"
        #expect(try renamed.fingerprint(tokenizer: tok, separator: eot) != base.fingerprint)

        // Same size, different content.
        let jsonl = s.path("more.jsonl")
        try s.write("more.jsonl", "{\"text\": \"Hello thera.\"}\n{\"text\": \"General Kenobi!\"}\n")
        let changed = try source.tokenStream(tokenizer: tok, separator: eot, cacheDirectory: cache)
        #expect(changed.cacheStatus == .built)
        #expect(changed.tokens != base.tokens)
        #expect(try source.tokenStream(tokenizer: tok, separator: eot, cacheDirectory: cache).cacheStatus == .hit)
        _ = jsonl
    }

    @Test func truncatedOrCorruptCacheIsRebuilt() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let (source, tok, eot, cache) = try Self.setup(s)
        let first = try source.tokenStream(tokenizer: tok, separator: eot, cacheDirectory: cache)
        let file = try #require(first.cacheFile)
        var bytes = try [UInt8](Data(contentsOf: file))

        // Truncated.
        try Data(bytes[0..<(bytes.count - 10)]).write(to: file)
        let truncated = try source.tokenStream(tokenizer: tok, separator: eot, cacheDirectory: cache)
        guard case .rebuilt(let reason) = truncated.cacheStatus else {
            Issue.record("expected a rebuild, got \(truncated.cacheStatus)")
            return
        }
        #expect(reason.contains("truncated"))
        #expect(truncated.tokens == first.tokens)
        #expect(try source.tokenStream(tokenizer: tok, separator: eot, cacheDirectory: cache).cacheStatus == .hit)

        // One flipped bit in the ids.
        bytes[100] ^= 0x04
        try Data(bytes).write(to: file)
        let flipped = try source.tokenStream(tokenizer: tok, separator: eot, cacheDirectory: cache)
        #expect(flipped.cacheStatus == .rebuilt(reason: "checksum mismatch"))
        #expect(flipped.tokens == first.tokens)

        // Empty file.
        try Data().write(to: file)
        if case .rebuilt = try source.tokenStream(tokenizer: tok, separator: eot, cacheDirectory: cache).cacheStatus {
        } else {
            Issue.record("an empty cache file must be rebuilt")
        }
    }

    @Test func crashMidWriteLeavesNoCacheFile() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let (source, tok, eot, cache) = try Self.setup(s)
        let fingerprint = try source.fingerprint(tokenizer: tok, separator: eot)
        let url = cache.appendingPathComponent(TokenCacheFile.name(fingerprint))
        struct Crash: Error {}
        let tokens = [Int32](repeating: 7, count: 1 << 20)  // several chunks
        var calls = 0
        #expect(throws: Crash.self) {
            try TokenCacheFile.write(tokens, documents: 1, fingerprint: fingerprint, to: url) { written in
                calls += 1
                #expect(written < 40 + 4 * tokens.count)
                throw Crash()
            }
        }
        #expect(calls == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: cache.path).isEmpty)

        // A killed process leaves at most a temporary file; it is not a cache.
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: url.deletingLastPathComponent().path + "/." + url.lastPathComponent + ".tmp-4194305-0000abcd"))
        let stream = try source.tokenStream(tokenizer: tok, separator: eot, cacheDirectory: cache)
        #expect(stream.cacheStatus == .built)
        #expect(try FileManager.default.contentsOfDirectory(atPath: cache.path) == [url.lastPathComponent])
    }
}
