// Recipe JSON with positions: a parser that returns TextData's `JSONValue` together with the
// line:column of every key and value, so validation can point at the offending text, and the
// canonical serialisation used for the resolved recipe and fingerprints.

import TextData

/// Where a value in the (possibly overridden) recipe came from.
package enum ValueOrigin: Sendable, Equatable, CustomStringConvertible {
    /// 1-based line and column (in characters) in the recipe file.
    case file(line: Int, column: Int)
    /// A `--set` argument, quoted as the user wrote it.
    case override(String)

    package var description: String {
        switch self {
        case .file(let line, let column): return "\(line):\(column)"
        case .override(let argument): return "--set \(argument)"
        }
    }
}

/// JSON paths in the form issues print them: `stages[0].training.lr`; the root is "".
package enum JSONPath {
    package static func child(_ path: String, _ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
    package static func index(_ path: String, _ i: Int) -> String { "\(path)[\(i)]" }

    /// The enclosing path, or nil at the root.
    package static func parent(_ path: String) -> String? {
        if path.isEmpty { return nil }
        if path.hasSuffix("]"), let open = path.lastIndex(of: "[") { return String(path[..<open]) }
        if let dot = path.lastIndex(of: ".") { return String(path[..<dot]) }
        return ""
    }
}

/// The origin of every key and value of a document, by JSON path.
package struct SourceMap: Sendable {
    package var values: [String: ValueOrigin] = [:]
    package var keys: [String: ValueOrigin] = [:]

    package init() {}

    /// The origin of the value at `path`, or of its nearest ancestor that has one (values made by
    /// an override have an origin only at the overridden path).
    package func origin(ofValue path: String) -> ValueOrigin? {
        var p: String? = path
        while let current = p {
            if let o = values[current] { return o }
            p = JSONPath.parent(current)
        }
        return nil
    }

    /// The origin of the key naming `path` (where an unknown key is written).
    package func origin(ofKey path: String) -> ValueOrigin? { keys[path] ?? origin(ofValue: path) }

    /// Forgets everything at and below `path` and records `origin` for it.
    package mutating func replace(_ path: String, with origin: ValueOrigin) {
        func isUnder(_ p: String) -> Bool {
            p == path || p.hasPrefix(path + ".") || p.hasPrefix(path + "[")
        }
        values = values.filter { !isUnder($0.key) }
        keys = keys.filter { !isUnder($0.key) || $0.key == path }
        values[path] = origin
    }
}

/// A parse failure: 1-based position and reason.
package struct JSONSyntaxError: Error, Sendable, Equatable {
    package var line: Int
    package var column: Int
    package var reason: String
}

extension JSONValue {
    /// Parses a complete JSON document and records where each key and value starts.
    package static func parseWithSources(_ text: String) throws(JSONSyntaxError) -> (JSONValue, SourceMap) {
        var parser = SourceParser(bytes: Array(text.utf8))
        parser.skipWhitespace()
        let value = try parser.value(path: "", depth: 0)
        parser.skipWhitespace()
        if parser.pos < parser.bytes.count { throw parser.error("unexpected content after the document") }
        return (value, parser.map)
    }

    /// A short rendering for messages: `string "3e-3"`, `number 1.5`, `an array`.
    package var quoted: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return "boolean \(b)"
        case .int(let i): return "number \(i)"
        case .double(let d): return "number \(d)"
        case .string(let s): return "string \(JSONValue.string(s).canonical)"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

private struct SourceParser {
    let bytes: [UInt8]
    var pos = 0
    var map = SourceMap()
    /// Byte offsets at which each line starts.
    let lineStarts: [Int]
    static let maxDepth = 64

    init(bytes: [UInt8]) {
        self.bytes = bytes
        var starts = [0]
        for (i, b) in bytes.enumerated() where b == UInt8(ascii: "\n") { starts.append(i + 1) }
        lineStarts = starts
    }

    func position(_ offset: Int) -> (line: Int, column: Int) {
        // The last line start <= offset.
        var lo = 0, hi = lineStarts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if lineStarts[mid] <= offset { lo = mid } else { hi = mid - 1 }
        }
        let column = bytes[lineStarts[lo]..<min(offset, bytes.count)].reduce(1) { $1 & 0xC0 == 0x80 ? $0 : $0 + 1 }
        return (lo + 1, column)
    }

    func origin() -> ValueOrigin {
        let p = position(pos)
        return .file(line: p.line, column: p.column)
    }

    func error(_ reason: String) -> JSONSyntaxError {
        let p = position(pos)
        return JSONSyntaxError(line: p.line, column: p.column, reason: reason)
    }

    mutating func skipWhitespace() {
        while pos < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[pos]) { pos += 1 }
    }

    mutating func literal(_ text: String, _ value: JSONValue) throws(JSONSyntaxError) -> JSONValue {
        let lit = Array(text.utf8)
        guard pos + lit.count <= bytes.count, Array(bytes[pos..<pos + lit.count]) == lit else {
            throw error("invalid literal")
        }
        pos += lit.count
        return value
    }

    mutating func value(path: String, depth: Int) throws(JSONSyntaxError) -> JSONValue {
        guard depth < SourceParser.maxDepth else { throw error("nesting deeper than \(SourceParser.maxDepth)") }
        guard pos < bytes.count else { throw error("unexpected end of input") }
        map.values[path] = origin()
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
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else { throw error("expected a string key") }
                let keyOrigin = origin()
                let key = try string()
                if entries.contains(where: { $0.key == key }) { throw error("duplicate key \"\(key)\"") }
                let childPath = JSONPath.child(path, key)
                map.keys[childPath] = keyOrigin
                skipWhitespace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { throw error("expected ':'") }
                pos += 1
                skipWhitespace()
                entries.append((key: key, value: try value(path: childPath, depth: depth + 1)))
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
                items.append(try value(path: JSONPath.index(path, items.count), depth: depth + 1))
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
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): return try literal("true", .bool(true))
        case UInt8(ascii: "f"): return try literal("false", .bool(false))
        case UInt8(ascii: "n"): return try literal("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw error("unexpected character")
        }
    }

    mutating func digits() -> Int {
        let start = pos
        while pos < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[pos]) { pos += 1 }
        return pos - start
    }

    mutating func number() throws(JSONSyntaxError) -> JSONValue {
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

    mutating func hex4() throws(JSONSyntaxError) -> UInt32 {
        guard pos + 4 <= bytes.count else { throw error("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard let d = Character(Unicode.Scalar(bytes[pos])).hexDigitValue else { throw error("invalid \\u escape") }
            v = v << 4 | UInt32(d)
            pos += 1
        }
        return v
    }

    mutating func string() throws(JSONSyntaxError) -> String {
        pos += 1  // the opening quote
        var out: [UInt8] = []
        while pos < bytes.count {
            let b = bytes[pos]
            pos += 1
            if b == UInt8(ascii: "\"") { return String(decoding: out, as: UTF8.self) }
            if b < 0x20 { throw error("control character in string") }
            if b != UInt8(ascii: "\\") {
                out.append(b)
                continue
            }
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
                var code = try hex4()
                if (0xD800..<0xDC00).contains(code) {
                    guard pos + 2 <= bytes.count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u")
                    else { throw error("unpaired surrogate") }
                    pos += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired surrogate") }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(code) {
                    throw error("unpaired surrogate")
                }
                guard let scalar = Unicode.Scalar(code) else { throw error("invalid \\u escape") }
                out.append(contentsOf: Array(String(scalar).utf8))
            default:
                throw error("invalid escape")
            }
        }
        throw error("unterminated string")
    }
}

// MARK: - Canonical form

extension JSONValue {
    /// Compact JSON with object keys sorted by their UTF-8 bytes: equal documents give equal
    /// strings whatever their key order or whitespace, so this is what fingerprints hash.
    package var canonical: String {
        var out = ""
        writeCanonical(to: &out)
        return out
    }

    private func writeCanonical(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d):
            // Integral doubles print as integers so that 1e3 and 1000 hash alike.
            if d == d.rounded(), abs(d) < 1e15 { out += String(Int(d)) } else { out += d.isFinite ? "\(d)" : "null" }
        case .string(let s):
            out += "\""
            for scalar in s.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                default:
                    if scalar.value < 0x20 {
                        let hex = String(scalar.value, radix: 16)
                        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                    } else {
                        out.unicodeScalars.append(scalar)
                    }
                }
            }
            out += "\""
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                item.writeCanonical(to: &out)
            }
            out += "]"
        case .object(let object):
            out += "{"
            let sorted = object.entries.sorted { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
            for (i, entry) in sorted.enumerated() {
                if i > 0 { out += "," }
                JSONValue.string(entry.key).writeCanonical(to: &out)
                out += ":"
                entry.value.writeCanonical(to: &out)
            }
            out += "}"
        }
    }

    /// The same document with object keys sorted at every level (for readable output).
    package var sortedKeys: JSONValue {
        switch self {
        case .array(let items): return .array(items.map(\.sortedKeys))
        case .object(let o):
            let entries = o.entries.sorted { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
            return .object(JSONObject(entries.map { (key: $0.key, value: $0.value.sortedKeys) }))
        default: return self
        }
    }
}
