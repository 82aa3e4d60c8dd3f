/// A small order-preserving JSON document model used for `tokenizer.json`.
///
/// Hugging Face writes `vocab` as an object ordered by id and distill keeps that order when it
/// writes files back, so objects are stored as ordered key/value lists instead of dictionaries.
/// The parser validates its input as untrusted: nesting depth is bounded and every error carries
/// a line and column.
package enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// An ordered JSON object. Lookups are linear; tokenizer.json objects other than `vocab`
    /// have a handful of keys, and `vocab` is only ever iterated.
    package struct JSONObject: Sendable, Equatable {
        package var entries: [(key: String, value: JSONValue)]

        package init(_ entries: [(key: String, value: JSONValue)] = []) { self.entries = entries }

        package subscript(key: String) -> JSONValue? {
            for entry in entries where entry.key == key { return entry.value }
            return nil
        }

        package static func == (a: JSONObject, b: JSONObject) -> Bool {
            a.entries.count == b.entries.count
                && zip(a.entries, b.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        }
    }

    /// Builds an object from literal pairs, keeping their order.
    package static func obj(_ pairs: KeyValuePairs<String, JSONValue>) -> JSONValue {
        .object(JSONObject(pairs.map { (key: $0.key, value: $0.value) }))
    }

    package var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int, .double: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

// MARK: - Parsing

extension JSONValue {
    /// Parses a complete JSON document (RFC 8259). Throws `TokenizerError.malformedJSON`.
    package static func parse<Bytes: Collection>(_ bytes: Bytes) throws -> JSONValue
    where Bytes.Element == UInt8 {
        var parser = JSONParser(bytes: Array(bytes))
        parser.skipWhitespace()
        let value = try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        if parser.pos < parser.bytes.count { throw parser.error("unexpected content after the document") }
        return value
    }

    /// Parses a complete document like `parse`, and when the root is an object also returns
    /// the byte offsets of each member's key and value, in entry order, so that a JSONL reader
    /// can point at the column of a field whose value is wrong.
    package static func parseRecordingMembers(
        _ bytes: [UInt8]
    ) throws -> (value: JSONValue, members: [(key: Int, value: Int)]) {
        var parser = JSONParser(bytes: bytes)
        parser.recordMembers = true
        parser.skipWhitespace()
        let value = try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        if parser.pos < parser.bytes.count { throw parser.error("unexpected content after the document") }
        return (value, parser.members)
    }
}

private struct JSONParser {
    let bytes: [UInt8]
    var pos = 0
    static let maxDepth = 256
    /// When set, the key and value offsets of the root object's members are kept in `members`.
    var recordMembers = false
    var members: [(key: Int, value: Int)] = []

    init(bytes: [UInt8]) { self.bytes = bytes }

    func error(_ reason: String) -> TokenizerError {
        var line = 1
        var column = 1
        for b in bytes[..<min(pos, bytes.count)] {
            if b == UInt8(ascii: "\n") {
                line += 1
                column = 1
            } else if b & 0xC0 != 0x80 {
                column += 1
            }
        }
        return .malformedJSON(line: line, column: column, reason: reason)
    }

    mutating func skipWhitespace() {
        while pos < bytes.count {
            switch bytes[pos] {
            case 0x20, 0x09, 0x0A, 0x0D: pos += 1
            default: return
            }
        }
    }

    mutating func expect(_ literal: StaticString, _ value: JSONValue) throws -> JSONValue {
        let lit = literal.withUTF8Buffer { Array($0) }
        guard pos + lit.count <= bytes.count, Array(bytes[pos..<pos + lit.count]) == lit else {
            throw error("invalid literal")
        }
        pos += lit.count
        return value
    }

    mutating func parseValue(depth: Int) throws -> JSONValue {
        guard depth < JSONParser.maxDepth else { throw error("nesting deeper than \(JSONParser.maxDepth)") }
        guard pos < bytes.count else { throw error("unexpected end of input") }
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
                skipWhitespace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { throw error("expected ':'") }
                pos += 1
                skipWhitespace()
                if recordMembers && depth == 0 { members.append((key: keyStart, value: pos)) }
                let value = try parseValue(depth: depth + 1)
                entries.append((key: key, value: value))
                skipWhitespace()
                guard pos < bytes.count else { throw error("unexpected end of input in an object") }
                if bytes[pos] == UInt8(ascii: ",") {
                    pos += 1
                } else if bytes[pos] == UInt8(ascii: "}") {
                    pos += 1
                    return .object(JSONValue.JSONObject(entries))
                } else {
                    throw error("expected ',' or '}'")
                }
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
                items.append(try parseValue(depth: depth + 1))
                skipWhitespace()
                guard pos < bytes.count else { throw error("unexpected end of input in an array") }
                if bytes[pos] == UInt8(ascii: ",") {
                    pos += 1
                } else if bytes[pos] == UInt8(ascii: "]") {
                    pos += 1
                    return .array(items)
                } else {
                    throw error("expected ',' or ']'")
                }
            }
        case UInt8(ascii: "\""):
            return .string(try parseString())
        case UInt8(ascii: "t"): return try expect("true", .bool(true))
        case UInt8(ascii: "f"): return try expect("false", .bool(false))
        case UInt8(ascii: "n"): return try expect("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return try parseNumber()
        default:
            throw error("unexpected character")
        }
    }

    mutating func parseNumber() throws -> JSONValue {
        let start = pos
        var isInteger = true
        if bytes[pos] == UInt8(ascii: "-") { pos += 1 }
        let digitsStart = pos
        while pos < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[pos]) { pos += 1 }
        if pos == digitsStart { throw error("invalid number") }
        if bytes[digitsStart] == UInt8(ascii: "0"), pos - digitsStart > 1 { throw error("leading zero in number") }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: ".") {
            isInteger = false
            pos += 1
            let fracStart = pos
            while pos < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[pos]) { pos += 1 }
            if pos == fracStart { throw error("invalid number") }
        }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E") {
            isInteger = false
            pos += 1
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-") { pos += 1 }
            let expStart = pos
            while pos < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[pos]) { pos += 1 }
            if pos == expStart { throw error("invalid number") }
        }
        let text = String(decoding: bytes[start..<pos], as: UTF8.self)
        if isInteger, let i = Int(text) { return .int(i) }
        guard let d = Double(text) else { throw error("invalid number") }
        return .double(d)
    }

    mutating func parseHex4() throws -> UInt32 {
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

    mutating func parseString() throws -> String {
        pos += 1  // opening quote
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
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var code = try parseHex4()
                if (0xD800..<0xDC00).contains(code) {
                    // A high surrogate must be followed by an escaped low surrogate.
                    if pos + 6 <= bytes.count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") {
                        pos += 2
                        let low = try parseHex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired surrogate") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        throw error("unpaired surrogate")
                    }
                } else if (0xDC00..<0xE000).contains(code) {
                    throw error("unpaired surrogate")
                }
                out.append(contentsOf: Array(String(Unicode.Scalar(code)!).utf8))
            default:
                throw error("invalid escape")
            }
        }
        throw error("unterminated string")
    }
}

// MARK: - Writing

extension JSONValue {
    /// Serialises with two-space indentation; arrays holding only scalars stay on one line
    /// (so each merge is one line) and non-ASCII text is written as UTF-8, as serde does.
    package func serialized() -> String {
        var out = ""
        write(to: &out, indent: 0)
        out.append("\n")
        return out
    }

    private var isScalar: Bool {
        switch self {
        case .array, .object: return false
        default: return true
        }
    }

    private func write(to out: inout String, indent: Int) {
        switch self {
        case .null: out.append("null")
        case .bool(let b): out.append(b ? "true" : "false")
        case .int(let i): out.append(String(i))
        case .double(let d): out.append(d.isFinite ? "\(d)" : "null")
        case .string(let s): JSONValue.writeString(s, to: &out)
        case .array(let items):
            if items.isEmpty {
                out.append("[]")
            } else if items.allSatisfy(\.isScalar) {
                out.append("[")
                for (i, item) in items.enumerated() {
                    if i > 0 { out.append(", ") }
                    item.write(to: &out, indent: indent)
                }
                out.append("]")
            } else {
                out.append("[\n")
                let pad = String(repeating: " ", count: indent + 2)
                for (i, item) in items.enumerated() {
                    out.append(pad)
                    item.write(to: &out, indent: indent + 2)
                    out.append(i + 1 < items.count ? ",\n" : "\n")
                }
                out.append(String(repeating: " ", count: indent))
                out.append("]")
            }
        case .object(let object):
            if object.entries.isEmpty {
                out.append("{}")
                return
            }
            out.append("{\n")
            let pad = String(repeating: " ", count: indent + 2)
            for (i, entry) in object.entries.enumerated() {
                out.append(pad)
                JSONValue.writeString(entry.key, to: &out)
                out.append(": ")
                entry.value.write(to: &out, indent: indent + 2)
                out.append(i + 1 < object.entries.count ? ",\n" : "\n")
            }
            out.append(String(repeating: " ", count: indent))
            out.append("}")
        }
    }

    private static func writeString(_ s: String, to out: inout String) {
        out.append("\"")
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out.append("\\\"")
            case "\\": out.append("\\\\")
            case "\n": out.append("\\n")
            case "\r": out.append("\\r")
            case "\t": out.append("\\t")
            case "\u{08}": out.append("\\b")
            case "\u{0C}": out.append("\\f")
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out.append("\\u" + String(repeating: "0", count: 4 - hex.count) + hex)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out.append("\"")
    }
}

// MARK: - Path-aware reading

/// A JSON value together with its path from the document root, so that every validation error
/// can say where it happened (`pre_tokenizer.pretokenizers[1].type`).
package struct JSONNode: Sendable {
    package let value: JSONValue
    package let path: String

    package init(_ value: JSONValue, path: String) {
        self.value = value
        self.path = path
    }

    package var isNull: Bool { if case .null = value { return true } else { return false } }

    /// The member `key`, or a null node when absent (HF treats most absent fields as defaults).
    package subscript(key: String) -> JSONNode {
        let childPath = path.isEmpty ? key : "\(path).\(key)"
        if case .object(let o) = value, let v = o[key] { return JSONNode(v, path: childPath) }
        return JSONNode(.null, path: childPath)
    }

    package func has(_ key: String) -> Bool {
        if case .object(let o) = value { return o[key] != nil }
        return false
    }

    private func mismatch(_ expected: String) -> TokenizerError {
        .invalid(path: path.isEmpty ? "(root)" : path, reason: "expected \(expected), found \(value.typeName)")
    }

    package func string() throws -> String {
        guard case .string(let s) = value else { throw mismatch("a string") }
        return s
    }

    package func optionalString() throws -> String? { isNull ? nil : try string() }

    package func int() throws -> Int {
        switch value {
        case .int(let i): return i
        case .double(let d) where d == d.rounded() && abs(d) < 1e15: return Int(d)
        default: throw mismatch("an integer")
        }
    }

    package func double() throws -> Double {
        switch value {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: throw mismatch("a number")
        }
    }

    package func bool(default defaultValue: Bool) throws -> Bool {
        if isNull { return defaultValue }
        guard case .bool(let b) = value else { throw mismatch("a boolean") }
        return b
    }

    package func array() throws -> [JSONNode] {
        guard case .array(let items) = value else { throw mismatch("an array") }
        return items.enumerated().map { JSONNode($1, path: "\(path)[\($0)]") }
    }

    package func object() throws -> [(key: String, node: JSONNode)] {
        guard case .object(let o) = value else { throw mismatch("an object") }
        return o.entries.map { (key: $0.key, node: JSONNode($0.value, path: "\(path).\($0.key)")) }
    }

    /// The object's `"type"` tag, or nil when the field is absent.
    package func typeTag() throws -> String? {
        guard case .object = value else { throw mismatch("an object") }
        return try self["type"].optionalString()
    }
}
