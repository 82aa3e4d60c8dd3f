// One scalar JSON value with its type kept: a sweep axis value, a stage summary entry, a
// metrics field. Decoding tries Bool, then Int, then Double, then String, so 2 stays an
// integer and 2.5 a double.

import Foundation

package enum Scalar: Codable, Sendable, Hashable, CustomStringConvertible {
    case int(Int)
    case double(Double)
    case bool(Bool)
    case string(String)

    package init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? c.decode(Int.self) {
            self = .int(i)
        } else if let d = try? c.decode(Double.self) {
            self = .double(d)
        } else {
            self = .string(try c.decode(String.self))
        }
    }

    package func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .int(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        case .bool(let b): try c.encode(b)
        case .string(let s): try c.encode(s)
        }
    }

    /// A scalar JSON value; an integral double becomes an int. nil for null, arrays, objects.
    package init?(_ v: JSONValue) {
        switch v {
        case .int(let i): self = .int(i)
        case .double(let d): self = d == d.rounded() && abs(d) < 1e15 ? .int(Int(d)) : .double(d)
        case .bool(let b): self = .bool(b)
        case .string(let s): self = .string(s)
        default: return nil
        }
    }

    package var json: JSONValue {
        switch self {
        case .int(let i): return .int(i)
        case .double(let d): return .double(d)
        case .bool(let b): return .bool(b)
        case .string(let s): return .string(s)
        }
    }

    package var number: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    /// For people: doubles to 4 significant digits, strings unquoted (`json.canonical` is exact).
    package var description: String {
        switch self {
        case .int(let i): return String(i)
        case .double(let d): return String(format: "%.4g", d)
        case .string(let s): return s
        case .bool(let b): return String(b)
        }
    }
}

/// A value in a stage summary or a metrics line (`loss`, `tokens`, `format`).
package typealias SummaryValue = Scalar

/// A value a sweep axis (or a base model key) takes.
package typealias SweepValue = Scalar
