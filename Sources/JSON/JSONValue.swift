import Platform

/// A small order-preserving JSON document model (tokenizer.json, recipes, tasks, configs).
///
/// Hugging Face writes `vocab` as an object ordered by id and distill keeps that order when it
/// writes files back, so objects are stored as ordered key/value lists instead of dictionaries.
/// Parsing is in JSONParser.swift.
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

    /// Appends `s` as a JSON string literal. Control characters without a short escape are
    /// written as lowercase `\u00xx`. `shortControlEscapes` also writes U+0008 and U+000C as
    /// `\b` and `\f` (as serde does); the canonical recipe form and safetensors headers pass
    /// false, and must keep doing so, since fingerprints hash that text.
    package static func writeString(_ s: String, to out: inout String, shortControlEscapes: Bool = true) {
        out.append("\"")
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out.append("\\\"")
            case "\\": out.append("\\\\")
            case "\n": out.append("\\n")
            case "\r": out.append("\\r")
            case "\t": out.append("\\t")
            case "\u{08}" where shortControlEscapes: out.append("\\b")
            case "\u{0C}" where shortControlEscapes: out.append("\\f")
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

/// A value of the wrong type at a JSON path (`model.merges[3]: expected a string, found number`).
package struct JSONShapeError: UserFacingError, Sendable, Equatable {
    package var path: String
    package var reason: String
    package var description: String { "\(path): \(reason)" }
    package var errorKind: ErrorKind { .badData }

    package init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
}

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

    private func mismatch(_ expected: String) -> JSONShapeError {
        JSONShapeError(path: path.isEmpty ? "(root)" : path, reason: "expected \(expected), found \(value.typeName)")
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

    package func bool() throws -> Bool {
        guard case .bool(let b) = value else { throw mismatch("a boolean") }
        return b
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
