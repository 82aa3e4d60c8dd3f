import Foundation
import JSON
import Platform

// Pre-tokenization: splitting text into the pieces that BPE encodes independently.
//
// Hugging Face `tokenizers` runs its split patterns with Oniguruma. The three patterns used by
// the byte-level family (GPT-2, Llama-3, Qwen2) are implemented here as hand-written scanners
// over Unicode scalars that follow the regex's alternation order and backtracking exactly
// (including the `\s+(?!\S)` lookahead and the case-insensitive contractions, where Unicode case
// folding makes `ſ` match `s`). They are checked against the regex in the tests. Any other
// pattern runs on LinearRegex (LinearRegex.swift), whose time is linear in the text whatever the
// pattern (a backtracking engine hangs on `(a+)+$`); the tests check it against Oniguruma's
// pieces for the three patterns too.

/// Known pattern strings, as they appear in tokenizer.json (after JSON unescaping).
package enum SplitPatterns {
    /// GPT-2; also what `ByteLevel(use_regex: true)` applies.
    package static let gpt2 =
        #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    /// Llama-3 (numbers in groups of up to three digits).
    package static let llama3 =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    /// Qwen2 (single digits).
    package static let qwen2 =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
}

// MARK: - Scalar classes

private let classLetter: UInt8 = 1  // \p{L}
private let classNumber: UInt8 = 2  // \p{N}
private let classSpace: UInt8 = 4  // \s (Unicode White_Space)

private let asciiClasses: [UInt8] = (0..<128).map { v -> UInt8 in
    switch v {
    case 0x09...0x0D, 0x20: return classSpace
    case 0x30...0x39: return classNumber
    case 0x41...0x5A, 0x61...0x7A: return classLetter
    default: return 0
    }
}

@inline(__always)
private func scalarClass(_ v: UInt32) -> UInt8 {
    if v < 128 { return asciiClasses[Int(v)] }
    guard let scalar = Unicode.Scalar(v) else { return 0 }
    let properties = scalar.properties
    if properties.isWhitespace { return classSpace }
    switch properties.generalCategory {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
        return classLetter
    case .decimalNumber, .letterNumber, .otherNumber:
        return classNumber
    default:
        return 0
    }
}

/// The scalars of one piece with their classes and byte offsets; reused between pieces.
package struct ScalarBuffer {
    var values: [UInt32] = []
    var classes: [UInt8] = []
    /// `offsets[i]` is the index of scalar i's first byte in the source; `offsets[count]` the end.
    var offsets: [Int] = []
    var count: Int { values.count }

    package init() {}

    /// Decodes well-formed UTF-8 (pieces always come from a Swift String).
    mutating func load(_ bytes: ArraySlice<UInt8>) {
        values.removeAll(keepingCapacity: true)
        classes.removeAll(keepingCapacity: true)
        offsets.removeAll(keepingCapacity: true)
        var i = bytes.startIndex
        let end = bytes.endIndex
        while i < end {
            let b0 = bytes[i]
            var v: UInt32
            var len: Int
            if b0 < 0x80 {
                v = UInt32(b0)
                len = 1
            } else if b0 < 0xE0 {
                v = UInt32(b0 & 0x1F)
                len = 2
            } else if b0 < 0xF0 {
                v = UInt32(b0 & 0x0F)
                len = 3
            } else {
                v = UInt32(b0 & 0x07)
                len = 4
            }
            if i + len > end { len = end - i }
            var k = 1
            while k < len {
                v = v << 6 | UInt32(bytes[i + k] & 0x3F)
                k += 1
            }
            values.append(v)
            classes.append(scalarClass(v))
            offsets.append(i)
            i += len
        }
        offsets.append(end)
    }
}

// MARK: - Split patterns

/// What a `Split` pre-tokenizer searches for.
package enum SplitPattern: Sendable {
    case gpt2
    /// Llama-3 (`maxDigits` 3) and Qwen2 (`maxDigits` 1).
    case llama3(maxDigits: Int)
    /// A literal string (`{"String": " "}` in tokenizer.json).
    case literal([UInt8])
    /// Any other regex, run by `LinearRegex` (linear time: no pattern can hang it).
    case regex(LinearRegex)
    /// `Digits` pre-tokenizer: runs of `\p{N}` (or single digits).
    case digits(individual: Bool)

    /// Picks the scanner for a regex string.
    package static func forRegex(_ pattern: String) throws -> SplitPattern {
        switch pattern {
        case SplitPatterns.gpt2: return .gpt2
        case SplitPatterns.llama3: return .llama3(maxDigits: 3)
        case SplitPatterns.qwen2: return .llama3(maxDigits: 1)
        default: return .regex(try LinearRegex(pattern))
        }
    }

    /// Appends the byte ranges (in `bytes`' indices) of the non-overlapping matches, in order.
    func matches(in bytes: ArraySlice<UInt8>, buffer: inout ScalarBuffer, into out: inout [Range<Int>]) {
        switch self {
        case .gpt2:
            buffer.load(bytes)
            scanGPT2(buffer, into: &out)
        case .llama3(let maxDigits):
            buffer.load(bytes)
            scanLlama3(buffer, maxDigits: maxDigits, into: &out)
        case .digits(let individual):
            buffer.load(bytes)
            var i = 0
            let n = buffer.count
            while i < n {
                if buffer.classes[i] == classNumber {
                    var j = i + 1
                    if !individual { while j < n, buffer.classes[j] == classNumber { j += 1 } }
                    out.append(buffer.offsets[i]..<buffer.offsets[j])
                    i = j
                } else {
                    i += 1
                }
            }
        case .literal(let needle):
            guard !needle.isEmpty else { return }
            var i = bytes.startIndex
            while i + needle.count <= bytes.endIndex {
                if bytes[i] == needle[0], bytes[i..<i + needle.count].elementsEqual(needle) {
                    out.append(i..<i + needle.count)
                    i += needle.count
                } else {
                    i += 1
                }
            }
        case .regex(let regex):
            buffer.load(bytes)
            for r in regex.matches(in: buffer.values) where !r.isEmpty {
                out.append(buffer.offsets[r.lowerBound]..<buffer.offsets[r.upperBound])
            }
        }
    }
}

@inline(__always)
private func run(_ b: ScalarBuffer, from i: Int, of cls: UInt8) -> Int {
    var j = i
    let n = b.count
    while j < n, b.classes[j] == cls { j += 1 }
    return j
}

/// Length in scalars of a contraction (`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d`) at i, or 0.
@inline(__always)
private func contraction(_ b: ScalarBuffer, at i: Int, caseInsensitive: Bool) -> Int {
    let n = b.count
    guard b.values[i] == 0x27, i + 1 < n else { return 0 }
    func fold(_ v: UInt32) -> UInt32 {
        guard caseInsensitive else { return v }
        if v >= 0x41 && v <= 0x5A { return v + 32 }
        if v == 0x17F { return 0x73 }  // ſ folds to s under Unicode case folding
        return v
    }
    switch fold(b.values[i + 1]) {
    case 0x73, 0x74, 0x6D, 0x64: return 2  // s t m d
    case 0x72, 0x76: return i + 2 < n && fold(b.values[i + 2]) == 0x65 ? 3 : 0  // re ve
    case 0x6C: return i + 2 < n && fold(b.values[i + 2]) == 0x6C ? 3 : 0  // ll
    default: return 0
    }
}

/// End of `\s+(?!\S)|\s+` starting at whitespace i: the whole run at end of text, otherwise the
/// run minus its last scalar (which then prefixes the next word), or one scalar.
@inline(__always)
private func whitespaceEnd(_ b: ScalarBuffer, at i: Int) -> Int {
    let r = run(b, from: i, of: classSpace)
    if r == b.count { return r }
    return r - i >= 2 ? r - 1 : i + 1
}

/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
private func scanGPT2(_ b: ScalarBuffer, into out: inout [Range<Int>]) {
    let n = b.count
    var i = 0
    while i < n {
        var end = i + contraction(b, at: i, caseInsensitive: false)
        if end == i {
            let j = b.values[i] == 0x20 ? i + 1 : i
            if j < n, b.classes[j] != classSpace {
                end = run(b, from: j, of: b.classes[j])  // letters, numbers or "other" run
            } else {
                end = whitespaceEnd(b, at: i)
            }
        }
        out.append(b.offsets[i]..<b.offsets[end])
        i = end
    }
}

/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,maxDigits}|
///  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
private func scanLlama3(_ b: ScalarBuffer, maxDigits: Int, into out: inout [Range<Int>]) {
    let n = b.count
    @inline(__always) func isNewline(_ k: Int) -> Bool { b.values[k] == 0x0A || b.values[k] == 0x0D }
    var i = 0
    while i < n {
        var end = i + contraction(b, at: i, caseInsensitive: true)
        if end == i {
            let c = b.classes[i]
            if c != classLetter && c != classNumber && !isNewline(i) && i + 1 < n
                && b.classes[i + 1] == classLetter
            {
                end = run(b, from: i + 1, of: classLetter)
            } else if c == classLetter {
                end = run(b, from: i, of: classLetter)
            } else if c == classNumber {
                end = min(run(b, from: i, of: classNumber), i + maxDigits)
            } else {
                let j = b.values[i] == 0x20 ? i + 1 : i
                if j < n, b.classes[j] == 0 {
                    end = run(b, from: j, of: 0)
                    while end < n, isNewline(end) { end += 1 }
                } else {
                    // Whitespace: `\s*[\r\n]+` ends after the run's last newline.
                    let r = run(b, from: i, of: classSpace)
                    var lastNewline = -1
                    var k = r - 1
                    while k >= i {
                        if isNewline(k) {
                            lastNewline = k
                            break
                        }
                        k -= 1
                    }
                    end = lastNewline >= 0 ? lastNewline + 1 : whitespaceEnd(b, at: i)
                }
            }
        }
        out.append(b.offsets[i]..<b.offsets[end])
        i = end
    }
}

// MARK: - Pre-tokenizer pipeline

/// How a `Split` pre-tokenizer treats the matched delimiters (HF `SplitDelimiterBehavior`).
package enum SplitBehavior: String, Sendable, CaseIterable {
    case removed = "Removed"
    case isolated = "Isolated"
    case mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext"
    case contiguous = "Contiguous"
}

/// One supported pre-tokenizer. A pipeline is any number of splits followed by exactly one
/// `byteLevel`, which must come last because it changes the alphabet.
package enum PreTokenizerStep: Sendable {
    case split(SplitPattern, SplitBehavior, invert: Bool)
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)

    /// Splits every piece; pieces are byte slices of the (normalized) text.
    func apply(
        to pieces: [ArraySlice<UInt8>], buffer: inout ScalarBuffer, ranges: inout [Range<Int>]
    ) -> [ArraySlice<UInt8>] {
        var out: [ArraySlice<UInt8>] = []
        out.reserveCapacity(pieces.count * 4)
        switch self {
        case .byteLevel(let addPrefixSpace, let useRegex):
            for var piece in pieces {
                if addPrefixSpace, piece.first != 0x20 {
                    piece = ArraySlice([0x20] + piece)
                }
                if useRegex {
                    ranges.removeAll(keepingCapacity: true)
                    SplitPattern.gpt2.matches(in: piece, buffer: &buffer, into: &ranges)
                    for r in ranges { out.append(piece[r]) }
                } else if !piece.isEmpty {
                    out.append(piece)
                }
            }
        case .split(let pattern, let behavior, let invert):
            for piece in pieces {
                ranges.removeAll(keepingCapacity: true)
                pattern.matches(in: piece, buffer: &buffer, into: &ranges)
                // Cover the piece with (range, isMatch) segments, as HF's find_matches does.
                var segments: [(Range<Int>, Bool)] = []
                var prev = piece.startIndex
                for r in ranges {
                    if prev < r.lowerBound { segments.append((prev..<r.lowerBound, invert)) }
                    segments.append((r, !invert))
                    prev = r.upperBound
                }
                if prev < piece.endIndex { segments.append((prev..<piece.endIndex, invert)) }
                for r in PreTokenizerStep.applyBehavior(behavior, to: segments) where !r.isEmpty {
                    out.append(piece[r])
                }
            }
        }
        return out
    }

    static func applyBehavior(_ behavior: SplitBehavior, to segments: [(Range<Int>, Bool)]) -> [Range<Int>] {
        switch behavior {
        case .isolated:
            return segments.map(\.0)
        case .removed:
            return segments.filter { !$0.1 }.map(\.0)
        case .mergedWithPrevious:
            var out: [Range<Int>] = []
            var previousMatch = false
            for (r, isMatch) in segments {
                if isMatch && !previousMatch, let last = out.last {
                    out[out.count - 1] = last.lowerBound..<r.upperBound
                } else {
                    out.append(r)
                }
                previousMatch = isMatch
            }
            return out
        case .mergedWithNext:
            var out: [Range<Int>] = []
            var previousMatch = false
            for (r, isMatch) in segments.reversed() {
                if isMatch && !previousMatch, let last = out.last {
                    out[out.count - 1] = r.lowerBound..<last.upperBound
                } else {
                    out.append(r)
                }
                previousMatch = isMatch
            }
            return out.reversed()
        case .contiguous:
            var out: [Range<Int>] = []
            var previousMatch = false
            for (r, isMatch) in segments {
                if isMatch == previousMatch, let last = out.last {
                    out[out.count - 1] = last.lowerBound..<r.upperBound
                } else {
                    out.append(r)
                }
                previousMatch = isMatch
            }
            return out
        }
    }
}

/// Applies a pipeline of pre-tokenizer steps to one segment of text.
package struct PreTokenizer: Sendable {
    package var steps: [PreTokenizerStep]

    package init(steps: [PreTokenizerStep]) { self.steps = steps }

    /// The pieces of `segment`, as slices sharing its storage where possible.
    package func pieces(of segment: ArraySlice<UInt8>, buffer: inout ScalarBuffer) -> [ArraySlice<UInt8>] {
        var pieces = [segment]
        var ranges: [Range<Int>] = []
        for step in steps {
            pieces = step.apply(to: pieces, buffer: &buffer, ranges: &ranges)
        }
        return pieces
    }

    /// Convenience for tests and tools: the pieces of `text` as strings.
    package func split(_ text: String) -> [String] {
        var buffer = ScalarBuffer()
        return pieces(of: ArraySlice(Array(text.utf8)), buffer: &buffer).map {
            String(decoding: $0, as: UTF8.self)
        }
    }
}
