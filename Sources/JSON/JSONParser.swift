/// The one JSON parser (RFC 8259) behind `JSONValue.parse`, `parseRecordingMembers` and
/// `parseWithSources`. Input is treated as untrusted: nesting depth is bounded and every error
/// carries a line and column (1-based; columns count characters, not bytes).
///
/// Positions are reported to a `JSONParseRecorder` as byte offsets. The parser is generic over
/// it, so plain parsing (`NoRecording`, whose hooks are empty) compiles to a parser that records
/// nothing and builds no paths.

import Platform

/// A parse failure: 1-based position and reason.
package struct JSONSyntaxError: UserFacingError, Sendable, Equatable {
    package var line: Int
    package var column: Int
    package var reason: String
    package var description: String { "malformed JSON at line \(line), column \(column): \(reason)" }
    package var errorKind: ErrorKind { .badData }
}

extension JSONValue {
    /// Parses a complete JSON document. Throws `JSONSyntaxError`.
    package static func parse<Bytes: Collection>(_ bytes: Bytes) throws -> JSONValue
    where Bytes.Element == UInt8 {
        var recorder = NoRecording()
        return try JSONParser.parseDocument(Array(bytes), recorder: &recorder)
    }

    /// Parses a complete document like `parse`, and when the root is an object also returns
    /// the byte offsets of each member's key and value, in entry order, so that a JSONL reader
    /// can point at the column of a field whose value is wrong.
    package static func parseRecordingMembers(
        _ bytes: [UInt8]
    ) throws -> (value: JSONValue, members: [(key: Int, value: Int)]) {
        var recorder = RootMemberRecorder()
        let value = try JSONParser.parseDocument(bytes, recorder: &recorder)
        return (value, recorder.members)
    }
}

/// Hooks the parser calls with byte offsets as it reads. `Location` is whatever the recorder
/// needs to know where it is (a JSON path, say); the parser only threads it through.
protocol JSONParseRecorder {
    associatedtype Location
    var root: Location { get }
    /// An object member's key starts at `offset`; returns the location of its value.
    /// `depth` is the object's own nesting depth (0 for the root).
    mutating func member(_ key: String, at offset: Int, in object: Location, depth: Int) -> Location
    /// The location of array element `index`.
    func element(_ index: Int, in array: Location) -> Location
    /// A value at `location` starts at `offset`.
    mutating func value(at offset: Int, _ location: Location)
}

/// Records nothing; the parser specialised for it does no bookkeeping.
struct NoRecording: JSONParseRecorder {
    var root: Void { () }
    @inline(__always) func member(_ key: String, at offset: Int, in object: Void, depth: Int) {}
    @inline(__always) func element(_ index: Int, in array: Void) {}
    @inline(__always) func value(at offset: Int, _ location: Void) {}
}

/// Records the key and value offsets of the root object's members. A location is the key
/// offset of the root member it belongs to, nil below the root's members.
private struct RootMemberRecorder: JSONParseRecorder {
    var members: [(key: Int, value: Int)] = []
    var root: Int? { nil }
    func member(_ key: String, at offset: Int, in object: Int?, depth: Int) -> Int? { depth == 0 ? offset : nil }
    func element(_ index: Int, in array: Int?) -> Int? { nil }
    mutating func value(at offset: Int, _ location: Int?) {
        if let key = location { members.append((key: key, value: offset)) }
    }
}

struct JSONParser<Recorder: JSONParseRecorder> {
    let bytes: [UInt8]
    var pos = 0
    /// Documents nested deeper than this are rejected.
    let maxDepth: Int
    /// Whether an object may repeat a key (tokenizer.json and JSONL readers decide for
    /// themselves; recipes reject it here).
    let rejectsDuplicateKeys: Bool
    var recorder: Recorder

    /// Parses `bytes` as one document with nothing but whitespace around it.
    static func parseDocument(
        _ bytes: [UInt8], recorder: inout Recorder, maxDepth: Int = 256, rejectsDuplicateKeys: Bool = false
    ) throws(JSONSyntaxError) -> JSONValue {
        var parser = JSONParser(
            bytes: bytes, maxDepth: maxDepth, rejectsDuplicateKeys: rejectsDuplicateKeys, recorder: recorder)
        parser.skipWhitespace()
        let value = try parser.parseValue(recorder.root, depth: 0)
        parser.skipWhitespace()
        if parser.pos < parser.bytes.count { throw parser.error("unexpected content after the document") }
        recorder = parser.recorder
        return value
    }

    func error(_ reason: String) -> JSONSyntaxError {
        let (line, column) = UTF8Text.position(of: pos, in: bytes)
        return JSONSyntaxError(line: line, column: column, reason: reason)
    }

    mutating func skipWhitespace() {
        while pos < bytes.count {
            switch bytes[pos] {
            case 0x20, 0x09, 0x0A, 0x0D: pos += 1
            default: return
            }
        }
    }

    mutating func literal(_ text: StaticString, _ value: JSONValue) throws(JSONSyntaxError) -> JSONValue {
        let matches = text.withUTF8Buffer { lit in
            pos + lit.count <= bytes.count && bytes[pos..<pos + lit.count].elementsEqual(lit)
        }
        guard matches else { throw error("invalid literal") }
        pos += text.utf8CodeUnitCount
        return value
    }

    mutating func parseValue(_ location: Recorder.Location, depth: Int) throws(JSONSyntaxError) -> JSONValue {
        guard depth < maxDepth else { throw error("nesting deeper than \(maxDepth)") }
        guard pos < bytes.count else { throw error("unexpected end of input") }
        recorder.value(at: pos, location)
        switch bytes[pos] {
        case UInt8(ascii: "{"):
            pos += 1
            var entries: [(key: String, value: JSONValue)] = []
            skipWhitespace()
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") {
                pos += 1
                return .object(JSONValue.JSONObject(entries))
            }
            while true {
                skipWhitespace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else {
                    throw error("expected a string key")
                }
                let keyStart = pos
                let key = try parseString()
                if rejectsDuplicateKeys, entries.contains(where: { $0.key == key }) {
                    throw error("duplicate key \"\(key)\"")
                }
                let valueLocation = recorder.member(key, at: keyStart, in: location, depth: depth)
                skipWhitespace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { throw error("expected ':'") }
                pos += 1
                skipWhitespace()
                entries.append((key: key, value: try parseValue(valueLocation, depth: depth + 1)))
                if try endOfContainer("}", "an object") { return .object(JSONValue.JSONObject(entries)) }
            }
        case UInt8(ascii: "["):
            pos += 1
            var items: [JSONValue] = []
            skipWhitespace()
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") {
                pos += 1
                return .array(items)
            }
            while true {
                skipWhitespace()
                items.append(try parseValue(recorder.element(items.count, in: location), depth: depth + 1))
                if try endOfContainer("]", "an array") { return .array(items) }
            }
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): return try literal("true", .bool(true))
        case UInt8(ascii: "f"): return try literal("false", .bool(false))
        case UInt8(ascii: "n"): return try literal("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw error("unexpected character")
        }
    }

    /// After a member or element: consumes `,` (false: more follow) or `close` (true: done).
    mutating func endOfContainer(_ close: Unicode.Scalar, _ name: String) throws(JSONSyntaxError) -> Bool {
        skipWhitespace()
        guard pos < bytes.count else { throw error("unexpected end of input in \(name)") }
        if bytes[pos] == UInt8(ascii: ",") {
            pos += 1
            return false
        }
        guard bytes[pos] == UInt8(ascii: close) else { throw error("expected ',' or '\(close)'") }
        pos += 1
        return true
    }

    /// Skips decimal digits and returns how many there were.
    mutating func digits() -> Int {
        let start = pos
        while pos < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[pos]) { pos += 1 }
        return pos - start
    }

    /// Integers that fit in `Int` stay exact; anything else is a `Double`, which must be finite
    /// (as serde_json, `1e999` is "number out of range" rather than infinity).
    mutating func parseNumber() throws(JSONSyntaxError) -> JSONValue {
        let start = pos
        var integral = true
        if bytes[pos] == UInt8(ascii: "-") { pos += 1 }
        let intStart = pos
        let n = digits()
        if n == 0 { throw error("invalid number") }
        if bytes[intStart] == UInt8(ascii: "0"), n > 1 { throw error("leading zero in number") }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: ".") {
            integral = false
            pos += 1
            if digits() == 0 { throw error("invalid number") }
        }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E") {
            integral = false
            pos += 1
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-") { pos += 1 }
            if digits() == 0 { throw error("invalid number") }
        }
        let text = String(decoding: bytes[start..<pos], as: UTF8.self)
        if integral, let i = Int(text) { return .int(i) }
        guard let d = Double(text), d.isFinite else { throw error("number out of range") }
        return .double(d)
    }

    mutating func parseHex4() throws(JSONSyntaxError) -> UInt32 {
        guard pos + 4 <= bytes.count else { throw error("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[pos]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw error("invalid \\u escape")
            }
            v = v << 4 | d
            pos += 1
        }
        return v
    }

    mutating func parseString() throws(JSONSyntaxError) -> String {
        pos += 1  // the opening quote
        let start = pos
        // Fast path: no escapes.
        while pos < bytes.count {
            let b = bytes[pos]
            if b == UInt8(ascii: "\"") {
                let s = String(decoding: bytes[start..<pos], as: UTF8.self)
                pos += 1
                return s
            }
            if b == UInt8(ascii: "\\") { break }
            if b < 0x20 { throw error("control character in string") }
            pos += 1
        }
        var out = Array(bytes[start..<pos])
        while pos < bytes.count {
            let b = bytes[pos]
            if b == UInt8(ascii: "\"") {
                pos += 1
                return String(decoding: out, as: UTF8.self)
            }
            if b < 0x20 { throw error("control character in string") }
            if b != UInt8(ascii: "\\") {
                out.append(b)
                pos += 1
                continue
            }
            pos += 1
            guard pos < bytes.count else { break }
            let e = bytes[pos]
            pos += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var code = try parseHex4()
                if (0xD800..<0xDC00).contains(code) {
                    // A high surrogate must be followed by an escaped low surrogate.
                    guard pos + 2 <= bytes.count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u")
                    else { throw error("unpaired surrogate") }
                    pos += 2
                    let low = try parseHex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired surrogate") }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(code) {
                    throw error("unpaired surrogate")
                }
                // Surrogates are excluded above, so every remaining code is a scalar.
                out.append(contentsOf: String(Unicode.Scalar(code)!).utf8)
            default:
                throw error("invalid escape")
            }
        }
        throw error("unterminated string")
    }
}
