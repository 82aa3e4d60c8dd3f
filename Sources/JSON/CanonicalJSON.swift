// Renderings of `JSONValue`: the short form used in messages and the canonical serialisation
// used for resolved recipes and fingerprints. Parsing with source positions
// (`parseWithSources`, `SourceMap`) lives next to the parser.



extension JSONValue {
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
        case .string(let s): JSONValue.writeString(s, to: &out, shortControlEscapes: false)
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
