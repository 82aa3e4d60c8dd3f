import Foundation
import Testing

@testable import JSON

/// The one parser behind `parse`, `parseRecordingMembers` and `parseWithSources`: what each
/// entry point records, and where the strict (recipe) and lenient (tokenizer, JSONL) modes part.
struct JSONParserTests {
    // Columns count characters: "é" is two bytes but one column.
    static let nested = "{\n  \"a\": [1, {\"é\": true}],\n  \"b\": \"x\"\n}"

    @Test func sourceMapRecordsEveryKeyAndValueByPath() throws {
        let (value, map) = try JSONValue.parseWithSources(Self.nested)
        #expect(value == (try JSONValue.parse(Array(Self.nested.utf8))))
        #expect(
            map.values == [
                "": .file(line: 1, column: 1), "a": .file(line: 2, column: 8), "a[0]": .file(line: 2, column: 9),
                "a[1]": .file(line: 2, column: 12), "a[1].é": .file(line: 2, column: 18),
                "b": .file(line: 3, column: 8),
            ])
        #expect(
            map.keys == [
                "a": .file(line: 2, column: 3), "a[1].é": .file(line: 2, column: 13), "b": .file(line: 3, column: 3),
            ])
    }

    @Test func membersAreRecordedOnlyForARootObject() throws {
        let (_, members) = try JSONValue.parseRecordingMembers(Array(#"{"a": {"b": 1}, "c": 2}"#.utf8))
        #expect(members.map(\.key) == [1, 16])
        #expect(members.map(\.value) == [6, 21])
        #expect(try JSONValue.parseRecordingMembers(Array(#"[{"a": 1}]"#.utf8)).members.isEmpty)
    }

    @Test func duplicateKeysAreKeptByParseAndRejectedWithSources() throws {
        let text = #"{"a": 1, "a": 2}"#
        guard case .object(let o) = try JSONValue.parse(Array(text.utf8)) else {
            Issue.record("not an object")
            return
        }
        #expect(o.entries.map(\.key) == ["a", "a"])
        // Reported just after the repeated key: offset 12, column 13.
        #expect(throws: JSONSyntaxError(line: 1, column: 13, reason: "duplicate key \"a\"")) {
            _ = try JSONValue.parseWithSources(text)
        }
    }

    @Test func depthLimitIs256ForParseAnd64WithSources() throws {
        func nested(_ n: Int) -> String { String(repeating: "[", count: n) + String(repeating: "]", count: n) }
        _ = try JSONValue.parse(Array(nested(256).utf8))
        _ = try JSONValue.parseWithSources(nested(64))
        // The 65th "[" sits at depth 64, column 65.
        #expect(throws: JSONSyntaxError(line: 1, column: 65, reason: "nesting deeper than 64")) {
            _ = try JSONValue.parseWithSources(nested(65))
        }
        #expect(throws: JSONSyntaxError(line: 1, column: 257, reason: "nesting deeper than 256")) {
            _ = try JSONValue.parse(Array(nested(257).utf8))
        }
    }

    @Test func numbersBeyondDoubleAreOutOfRange() throws {
        #expect(throws: JSONSyntaxError(line: 1, column: 6, reason: "number out of range")) {
            _ = try JSONValue.parse(Array("1e999".utf8))
        }
        #expect(throws: JSONSyntaxError(line: 1, column: 6, reason: "number out of range")) {
            _ = try JSONValue.parseWithSources("1e999")
        }
        // Integers past Int become doubles rather than errors.
        #expect(try JSONValue.parse(Array("99999999999999999999".utf8)) == .double(1e20))
    }

    @Test(arguments: [
        (#""\ud83d\ude00""#, JSONValue.string("😀")),
        (#""a\/b\"\\\n""#, .string("a/b\"\\\n")),
        ("[true, false, null, -0.5, 12]", .array([.bool(true), .bool(false), .null, .double(-0.5), .int(12)])),
    ])
    func scalarsAndEscapes(text: String, expected: JSONValue) throws {
        #expect(try JSONValue.parse(Array(text.utf8)) == expected)
        #expect(try JSONValue.parseWithSources(text).0 == expected)
    }

    @Test func stringWriterControlEscapes() {
        let s = "\u{08}\u{0C}\u{01}é\""
        var short = ""
        JSONValue.writeString(s, to: &short)
        #expect(short == #""\b\f\u0001é\"""#)
        var long = ""
        JSONValue.writeString(s, to: &long, shortControlEscapes: false)
        #expect(long == #""\u0008\u000c\u0001é\"""#)
    }
}
