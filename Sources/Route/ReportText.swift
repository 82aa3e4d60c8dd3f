// What the Route reports (cascades, routers) share when written as files: the JSON encoding and
// the Markdown cells.

import Foundation
import Verify

/// `value` as JSON: sorted keys, two-space indents, slashes unescaped, a final newline.
func reportJSON<T: Encodable>(_ value: T) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try! encoder.encode(value), as: UTF8.self) + "\n"
}

/// `0.123 [0.100, 0.150]`: a mean and its interval.
func formatEstimate(_ x: Estimate) -> String { String(format: "%.3f [%.3f, %.3f]", x.value, x.ciLow, x.ciHigh) }

/// Text for a Markdown table cell (pipes escaped).
func markdownCell(_ s: String) -> String { s.replacingOccurrences(of: "|", with: "\\|") }
