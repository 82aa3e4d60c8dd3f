import Foundation
import Platform
import TextData

/// The `exact` verifier: extract a final answer, normalise it and the reference, compare.
///
/// Normalisation: surrounding whitespace trimmed, inner runs of whitespace collapsed to one
/// space, case folded (unless case-sensitive), a trailing period and surrounding `$` dropped.
/// When both sides then read as numbers (thousands separators `1,234` allowed) they are
/// compared as numbers, so `42`, `42.0` and `42.000` are equal; the tolerance is 1e-9 relative,
/// for answers that went through a float. When the reference is a number and the extracted
/// text is not (`#### 18 dollars`), the first number in the extracted text is compared.
package enum ExactMatch {
    package static func verify(
        _ completion: String, answer: String, extraction: VerifierConfig.Extraction, pattern: String?,
        caseSensitive: Bool
    ) -> Verdict {
        guard let extracted = extract(completion, extraction, pattern: pattern) else {
            return .incorrect("no final answer found (\(extraction.rawValue) extraction)")
        }
        var got = normalize(extracted.text, caseSensitive: caseSensitive)
        let want = normalize(answer, caseSensitive: caseSensitive)
        if number(want) != nil, number(got) == nil, let first = firstNumber(got) { got = first }
        if let a = number(got), let b = number(want) {
            let equal = a == b || abs(a - b) <= 1e-9 * max(1, abs(a), abs(b))
            let canonical = canonicalNumber(a)
            return equal
                ? .correct("\(extracted.how) \(clip(extracted.text)) equals \(answer) numerically", canonical: canonical)
                : .incorrect("\(extracted.how) \(clip(extracted.text)), expected \(answer)", canonical: canonical)
        }
        return got == want
            ? .correct("\(extracted.how) \"\(clip(extracted.text))\" matches", canonical: got)
            : .incorrect("\(extracted.how) \"\(clip(extracted.text))\", expected \"\(answer)\"", canonical: got)
    }

    /// A number as votes compare it: integral values as integers (`42`, `1234`), others in
    /// Swift's shortest round-trip form (`0.5`). Values the comparison's 1e-9 tolerance equates
    /// but whose doubles differ (`0.30000000000000004` and `0.3`) stay distinct answers here.
    static func canonicalNumber(_ v: Double) -> String {
        if v == v.rounded(), abs(v) < 1e15 { return String(Int(v)) }
        return "\(v)"
    }

    /// The final answer and how it was found, or nil when the completion has none.
    package static func extract(
        _ text: String, _ mode: VerifierConfig.Extraction, pattern: String?
    ) -> (text: String, how: String)? {
        switch mode {
        case .none: return (text, "answer")
        case .gsm8k: return gsm8k(text).map { ($0, "#### answer") }
        case .boxed: return boxed(text).map { ($0, "boxed answer") }
        case .lastNumber: return lastNumber(text).map { ($0, "last number") }
        case .regex:
            // LinearRegex: linear time whatever the pattern (docs/teacher.md, *Verifiers*).
            guard let pattern, let regex = try? LinearRegex(pattern), let m = regex.firstMatch(in: text) else {
                return nil
            }
            return (String(text[m.group1 ?? m.whole]), "extracted answer")
        case .auto:
            if let g = gsm8k(text) { return (g, "#### answer") }
            if let b = boxed(text) { return (b, "boxed answer") }
            return lastNumber(text).map { ($0, "last number") }
        }
    }

    /// The text after the last `####`, to the end of its line.
    static func gsm8k(_ text: String) -> String? {
        guard let marker = text.range(of: "####", options: .backwards) else { return nil }
        let rest = text[marker.upperBound...]
        let line = rest.prefix { $0 != "\n" }.trimmingCharacters(in: .whitespaces)
        return line.isEmpty ? nil : line
    }

    /// The contents of the last `\boxed{...}` (or `\fbox{...}`), nested braces balanced.
    static func boxed(_ text: String) -> String? {
        var best: String?
        for opener in ["\\boxed{", "\\fbox{"] {
            var searchEnd = text.endIndex
            while let r = text.range(of: opener, options: .backwards, range: text.startIndex..<searchEnd) {
                var depth = 1
                var i = r.upperBound
                while i < text.endIndex {
                    if text[i] == "{" { depth += 1 } else if text[i] == "}" { depth -= 1; if depth == 0 { break } }
                    i = text.index(after: i)
                }
                if depth == 0 {
                    best = String(text[r.upperBound..<i])
                    break
                }
                searchEnd = r.lowerBound
            }
            if best != nil { return best }
        }
        return best
    }

    /// The last number: an optional sign, digits with optional thousands separators, decimals.
    static func lastNumber(_ text: String) -> String? {
        let chars = Array(text)
        var i = chars.count - 1
        while i >= 0 && !chars[i].isASCIIDigit { i -= 1 }
        guard i >= 0 else { return nil }
        let end = i + 1
        var start = i
        while start > 0 {
            let c = chars[start - 1]
            if c.isASCIIDigit || c == "." || (c == "," && start >= 2 && chars[start - 2].isASCIIDigit) {
                start -= 1
            } else {
                break
            }
        }
        while start < end && (chars[start] == "." || chars[start] == ",") { start += 1 }
        if start > 0 && chars[start - 1] == "-" { start -= 1 }
        return String(chars[start..<end])
    }

    /// The first number in `text` (the same shape `lastNumber` reads), or nil.
    static func firstNumber(_ text: String) -> String? {
        guard let start = text.firstIndex(where: { $0.isASCIIDigit }) else { return nil }
        var end = start
        while end < text.endIndex {
            let c = text[end]
            let next = text.index(after: end)
            let digitFollows = next < text.endIndex && text[next].isASCIIDigit
            guard c.isASCIIDigit || ((c == "," || c == ".") && digitFollows) else { break }
            end = next
        }
        var from = start
        if from > text.startIndex, text[text.index(before: from)] == "-" { from = text.index(before: from) }
        return String(text[from..<end])
    }

    static func normalize(_ s: String, caseSensitive: Bool) -> String {
        var t = s.split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
        if !caseSensitive { t = t.lowercased() }
        while t.hasSuffix(".") { t.removeLast() }
        if t.hasPrefix("$") && t.hasSuffix("$") && t.count >= 2 { t = String(t.dropFirst().dropLast()) }
        if t.hasPrefix("$") { t.removeFirst() }
        return t.trimmingCharacters(in: .whitespaces)
    }

    /// The value of `s` when it is a plain number, thousands separators allowed (`1,234.5`).
    static func number(_ s: String) -> Double? {
        var t = s
        if t.contains(",") {
            // Separators only in groups of three after the first group.
            let parts = t.split(separator: ".", maxSplits: 1)
            let groups = parts[0].split(separator: ",", omittingEmptySubsequences: false)
            let head = groups[0].hasPrefix("-") ? groups[0].dropFirst() : groups[0]
            guard (1...3).contains(head.count), groups.dropFirst().allSatisfy({ $0.count == 3 }) else { return nil }
            t = t.replacingOccurrences(of: ",", with: "")
        }
        guard !t.isEmpty, t.allSatisfy({ $0.isASCIIDigit || $0 == "." || $0 == "-" || $0 == "+" || $0 == "e" }),
            let v = Double(t), v.isFinite
        else { return nil }
        return v
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
