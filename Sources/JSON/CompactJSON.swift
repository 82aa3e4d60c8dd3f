import Foundation


extension JSONValue {
    /// One-line JSON. With `sortedKeys` objects are written in key order, which makes the text
    /// a canonical form (used for cache keys); otherwise file order is kept.
    package func compact(sortedKeys: Bool = false) -> String {
        var out = ""
        writeCompact(to: &out, sortedKeys: sortedKeys)
        return out
    }

    private func writeCompact(to out: inout String, sortedKeys: Bool) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d):
            // Integral doubles keep a ".0" so that a round trip keeps the type.
            out += d.isFinite ? (d == d.rounded() && abs(d) < 1e15 ? String(format: "%.1f", d) : "\(d)") : "null"
        case .string(let s): Self.writeString(s, to: &out, shortControlEscapes: false)
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                item.writeCompact(to: &out, sortedKeys: sortedKeys)
            }
            out += "]"
        case .object(let o):
            out += "{"
            let entries = sortedKeys ? o.entries.sorted { $0.key < $1.key } : o.entries
            for (i, e) in entries.enumerated() {
                if i > 0 { out += "," }
                Self.writeString(e.key, to: &out, shortControlEscapes: false)
                out += ":"
                e.value.writeCompact(to: &out, sortedKeys: sortedKeys)
            }
            out += "}"
        }
    }

    /// The string value, or nil.
    package var stringValue: String? { if case .string(let s) = self { s } else { nil } }

    /// The numeric value of an int or double, or nil.
    package var numberValue: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }
}

/// Any key, to list what a JSON object holds.
package struct AnyCodingKey: CodingKey {
    package var stringValue: String
    package var intValue: Int? { nil }
    package init(stringValue: String) { self.stringValue = stringValue }
    package init?(intValue: Int) { nil }
}

/// Refuses keys that `Keys` does not know, naming the key and the accepted ones, so a typo
/// such as "temprature" fails instead of silently keeping the default.
/// `also` lists keys accepted besides `Keys` (a recipe teacher's `type`).
package func rejectUnknownKeys<Keys: CodingKey & CaseIterable>(
    _ decoder: any Decoder, _: Keys.Type, in what: String, also: [String] = []
) throws {
    let container = try decoder.container(keyedBy: AnyCodingKey.self)
    let known = Keys.allCases.map(\.stringValue) + also
    for key in container.allKeys where !known.contains(key.stringValue) {
        throw DecodingError.dataCorruptedError(
            forKey: key, in: container,
            debugDescription:
                "unknown key \"\(key.stringValue)\" in the \(what); accepted keys: \(known.sorted().joined(separator: ", "))"
        )
    }
}
