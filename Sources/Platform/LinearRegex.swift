// LinearRegex.swift: the regular expressions users give distill (a tokenizer.json `Split`
// pattern, a task's `pattern` and `extract_pattern`), matched in time linear in the text.
//
// Why. Backtracking engines (ICU behind NSRegularExpression, Swift's Regex, Oniguruma) take
// exponential time on patterns such as `(a+)+$` against "aaaa...b": a hostile or careless
// pattern hangs the process. This engine gives the same answers as a backtracking engine
// (Perl's leftmost-first semantics: alternatives and greedy or lazy quantifiers in their
// priority order, the first capture group as they would set it) but never explores a state
// twice: a state is an instruction of the compiled pattern at a position of the text, and
// one bit per state records that it was already explored (the "bit-state" backtracker of
// RE2). Exploring in priority order, a state met again was already tried by a preferred path
// and failed, so it is skipped. A search costs at most (instructions x positions) steps.
// Across the successive searches of `matches(in:)` the failed states are kept (whether a
// state can reach a match does not depend on where the search started), so finding every
// match of a text is linear too; states on a successful path, and those at the match's end,
// are cleared before the next search.
//
// Supported: literals and escapes (\n \r \t \f \v \e \0 \xHH \x{H...} \uHHHH and escaped
// punctuation), `.`, classes `[...]` with ranges and negation, \d \D \s \S \w \W \h, Unicode
// general categories \p{L} \p{Lu} ... \p{N} \p{P} \p{S} \p{Z} \p{C} (and \P{...}, \p{^...},
// long names Letter, Number, ..., Alphabetic, White_Space), groups ( ) (?: ) (?<name> )
// (?P<name> ), flags (?i) (?s) (?m) and (?i: ... ), alternation, quantifiers * + ? {n} {n,}
// {n,m} and their lazy forms, anchors ^ $ \A \z \Z \b \B, and lookahead or lookbehind
// (?= ) (?! ) (?<= ) (?<! ) over a fixed sequence of characters or classes (`(?!\S)`).
// Refused when the pattern is read, naming the construct: backreferences, atomic groups,
// possessive quantifiers, conditionals, Unicode scripts (\p{Han}), nested classes and
// variable-length lookaround, and a pattern larger than 20,000 instructions once its counted
// repetitions are expanded.
//
// Memory: one bit per state of the text being matched, (instructions x (scalars + 1)) / 8
// bytes: 3.75 MB for a 100-instruction pattern over a 300,000-scalar text.

package struct LinearRegexError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What is wrong and where in the pattern (scalar offset).
    package var message: String
    package var description: String { message }
}

/// A compiled pattern. Immutable and thread-safe; each match allocates its own state.
package struct LinearRegex: Sendable {
    package let pattern: String
    /// Capture groups, not counting the whole match.
    package let captureCount: Int
    private let search: [Op]
    private let whole: [Op]
    private let sets: [CharSet]
    private let looks: [Look]

    package init(_ pattern: String) throws(LinearRegexError) {
        self.pattern = pattern
        var parser = Parser(Array(pattern.unicodeScalars.map(\.value)))
        let node = try parser.parseAll()
        captureCount = parser.captures
        var compiler = Compiler()
        compiler.sets = parser.sets  // the lookarounds' classes, by the indices their steps hold
        // Unanchored search: a lazy any-character prefix, then the pattern as group 0.
        compiler.ops = [.split(3, 1), .anyAll, .jump(0)]
        compiler.emit(.save(0))
        try compiler.compile(node)
        compiler.emit(.save(1))
        compiler.emit(.match)
        search = compiler.ops
        compiler.ops = [.save(0)]
        try compiler.compile(node)
        compiler.ops += [.assert(.textEnd), .save(1), .match]
        whole = compiler.ops
        sets = compiler.sets
        looks = compiler.looks
        guard search.count + whole.count <= 40_000 else {
            throw LinearRegexError(message: "the pattern is too large once its counted repetitions are expanded")
        }
    }

    /// The first match at or after scalar `start`: capture slots as scalar offsets, `[2k]` and
    /// `[2k+1]` the start and end of group k (group 0 the whole match), -1 when a group did not
    /// take part. nil when there is none.
    package func firstMatch(in text: [UInt32], from start: Int = 0) -> [Int]? {
        var machine = Machine(ops: search, sets: sets, looks: looks, text: text, slots: 2 * (captureCount + 1))
        return machine.run(from: start)
    }

    /// A match of the whole text (as `^(?:pattern)\z`), or nil.
    package func wholeMatch(in text: [UInt32]) -> [Int]? {
        var machine = Machine(ops: whole, sets: sets, looks: looks, text: text, slots: 2 * (captureCount + 1))
        return machine.run(from: 0)
    }

    /// Every non-overlapping match, leftmost first, as scalar ranges; after an empty match the
    /// next search starts one scalar later. Linear in the text for the whole scan.
    package func matches(in text: [UInt32]) -> [Range<Int>] {
        var machine = Machine(ops: search, sets: sets, looks: looks, text: text, slots: 2)
        var out: [Range<Int>] = []
        var start = 0
        while start <= text.count, let slots = machine.run(from: start) {
            out.append(slots[0]..<slots[1])
            start = slots[1] > slots[0] ? slots[1] : slots[1] + 1
        }
        return out
    }

    // MARK: - String conveniences (Verify)

    /// The first match in `text`: the whole match's range and the first group's when it took part.
    package func firstMatch(in text: String) -> (whole: Range<String.Index>, group1: Range<String.Index>?)? {
        let (scalars, indices) = Self.scalars(text)
        guard let slots = firstMatch(in: scalars) else { return nil }
        return (indices[slots[0]]..<indices[slots[1]], captureCount >= 1 && slots[2] >= 0 ? indices[slots[2]]..<indices[slots[3]] : nil)
    }

    package func wholeMatches(_ text: String) -> Bool { wholeMatch(in: Self.scalars(text).0) != nil }

    private static func scalars(_ text: String) -> ([UInt32], [String.Index]) {
        var values: [UInt32] = []
        var indices: [String.Index] = []
        var i = text.unicodeScalars.startIndex
        while i < text.unicodeScalars.endIndex {
            values.append(text.unicodeScalars[i].value)
            indices.append(i)
            i = text.unicodeScalars.index(after: i)
        }
        indices.append(text.endIndex)
        return (values, indices)
    }
}

// MARK: - Program

private enum Anchor: Sendable {
    case textStart, textEnd, textEndOrFinalNewline, lineStart, lineEnd, wordBoundary, notWordBoundary
}

private enum Op: Sendable {
    case char(UInt32)
    /// Case-insensitive literal: the scalar's simple case fold.
    case charFold(UInt32)
    case set(Int)
    /// Any scalar but a line terminator.
    case any
    case anyAll
    /// Try the first target, then the second.
    case split(Int, Int)
    case jump(Int)
    case save(Int)
    case assert(Anchor)
    case look(Int)
    case match
}

/// One character position of a lookaround.
private enum Step: Sendable {
    case char(UInt32, fold: Bool)
    case set(Int)
    case any(dotAll: Bool)
}

private struct Look: Sendable {
    var ahead: Bool
    var negative: Bool
    /// Alternatives, each a fixed sequence.
    var branches: [[Step]]
}

private enum ClassKind: Sendable {
    case digit, space, word, horizontalSpace, alphabetic
    case categories(Set<UInt8>)
}

private struct CharSet: Sendable {
    var ranges: [ClosedRange<UInt32>] = []
    var kinds: [(kind: ClassKind, negated: Bool)] = []
    var negated = false
    var fold = false

    func contains(_ c: UInt32) -> Bool {
        var found = matchesRaw(c)
        if !found, fold {
            for v in caseVariants(c) where v != c && matchesRaw(v) {
                found = true
                break
            }
        }
        return found != negated
    }

    private func matchesRaw(_ c: UInt32) -> Bool {
        for r in ranges where r.contains(c) { return true }
        for (kind, negated) in kinds where classContains(kind, c) != negated { return true }
        return false
    }
}

private func isLineTerminator(_ c: UInt32) -> Bool {
    c == 0x0A || c == 0x0D || c == 0x0B || c == 0x0C || c == 0x85 || c == 0x2028 || c == 0x2029
}

/// General categories numbered in `Unicode.GeneralCategory`'s declaration order.
private func categoryIndex(_ c: UInt32) -> UInt8 {
    guard let s = Unicode.Scalar(c) else { return 29 }  // a surrogate: Cs
    switch s.properties.generalCategory {
    case .uppercaseLetter: return 0
    case .lowercaseLetter: return 1
    case .titlecaseLetter: return 2
    case .modifierLetter: return 3
    case .otherLetter: return 4
    case .nonspacingMark: return 5
    case .spacingMark: return 6
    case .enclosingMark: return 7
    case .decimalNumber: return 8
    case .letterNumber: return 9
    case .otherNumber: return 10
    case .connectorPunctuation: return 11
    case .dashPunctuation: return 12
    case .openPunctuation: return 13
    case .closePunctuation: return 14
    case .initialPunctuation: return 15
    case .finalPunctuation: return 16
    case .otherPunctuation: return 17
    case .mathSymbol: return 18
    case .currencySymbol: return 19
    case .modifierSymbol: return 20
    case .otherSymbol: return 21
    case .spaceSeparator: return 22
    case .lineSeparator: return 23
    case .paragraphSeparator: return 24
    case .control: return 25
    case .format: return 26
    case .privateUse: return 27
    case .unassigned: return 28
    case .surrogate: return 29
    @unknown default: return 28
    }
}

private let categoryNames: [String: Set<UInt8>] = {
    let single: [String] = [
        "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po",
        "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Co", "Cn", "Cs",
    ]
    var names: [String: Set<UInt8>] = [:]
    for (i, name) in single.enumerated() {
        names[name.lowercased(), default: []].insert(UInt8(i))
        names[String(name.first!).lowercased(), default: []].insert(UInt8(i))
    }
    names["l&"] = [0, 1, 2]
    names["lc"] = [0, 1, 2]
    for (long, short) in [
        ("letter", "l"), ("mark", "m"), ("number", "n"), ("punctuation", "p"), ("symbol", "s"), ("separator", "z"),
        ("other", "c"), ("uppercaseletter", "lu"), ("lowercaseletter", "ll"), ("decimalnumber", "nd"),
        ("spaceseparator", "zs"), ("control", "cc"),
    ] {
        names[long] = names[short]
    }
    return names
}()

private func classContains(_ kind: ClassKind, _ c: UInt32) -> Bool {
    switch kind {
    case .digit: return c < 128 ? (0x30...0x39).contains(c) : categoryIndex(c) == 8
    case .space:
        if c < 128 { return (0x09...0x0D).contains(c) || c == 0x20 }
        return Unicode.Scalar(c)?.properties.isWhitespace ?? false
    case .horizontalSpace: return c == 0x09 || (c != 0x0A && categoryIndex(c) == 22)
    case .word:
        if c < 128 {
            return (0x30...0x39).contains(c) || (0x41...0x5A).contains(c) || (0x61...0x7A).contains(c) || c == 0x5F
        }
        guard let s = Unicode.Scalar(c) else { return false }
        if s.properties.isAlphabetic || c == 0x200C || c == 0x200D { return true }
        return [5, 6, 7, 8, 11].contains(categoryIndex(c))
    case .alphabetic: return Unicode.Scalar(c)?.properties.isAlphabetic ?? false
    case .categories(let set): return set.contains(categoryIndex(c))
    }
}

/// The scalar's simple lowercase and uppercase mappings (single scalars only), and itself.
private func caseVariants(_ c: UInt32) -> [UInt32] {
    if c < 128 {
        if (0x41...0x5A).contains(c) { return [c, c + 32] }
        if (0x61...0x7A).contains(c) { return [c, c - 32] }
        return [c]
    }
    guard let s = Unicode.Scalar(c) else { return [c] }
    var out = [c]
    for mapped in [s.properties.lowercaseMapping, s.properties.uppercaseMapping, s.properties.titlecaseMapping] {
        let scalars = mapped.unicodeScalars
        if scalars.count == 1, let v = scalars.first?.value, !out.contains(v) { out.append(v) }
    }
    if c == 0x17F { out.append(0x73) }  // ſ folds to s
    return out
}

private func fold(_ c: UInt32) -> UInt32 {
    if c < 128 { return (0x41...0x5A).contains(c) ? c + 32 : c }
    if c == 0x17F { return 0x73 }
    guard let s = Unicode.Scalar(c) else { return c }
    let lower = s.properties.lowercaseMapping.unicodeScalars
    return lower.count == 1 ? lower.first!.value : c
}

// MARK: - Parser

private struct Flags {
    var ignoreCase = false
    var dotAll = false
    var multiline = false
}

private indirect enum Node {
    case empty
    case char(UInt32, fold: Bool)
    case set(CharSet)
    case any(dotAll: Bool)
    case concat([Node])
    case alternation([Node])
    case repetition(Node, min: Int, max: Int?, greedy: Bool)
    case group(Node, capture: Int?)
    case assert(Anchor)
    case look(Look)
}

private struct Parser {
    let p: [UInt32]
    var i = 0
    var captures = 0
    var flags = Flags()

    init(_ p: [UInt32]) { self.p = p }

    private func error(_ text: String) -> LinearRegexError {
        LinearRegexError(message: "\(text) at offset \(i)")
    }

    private func unsupported(_ what: String) -> LinearRegexError {
        LinearRegexError(
            message: "\(what) at offset \(i) is not supported (distill matches user patterns in linear time; "
                + "see docs/tokenizer.md, *Regular expressions*)")
    }

    private var atEnd: Bool { i >= p.count }
    private func peek(_ k: Int = 0) -> UInt32? { i + k < p.count ? p[i + k] : nil }
    private func isChar(_ c: Character, at k: Int = 0) -> Bool { peek(k) == c.unicodeScalars.first!.value }

    mutating func parseAll() throws(LinearRegexError) -> Node {
        let node = try parseAlternation()
        if !atEnd { throw error(isChar(")") ? "unbalanced )" : "unexpected character") }
        return node
    }

    mutating func parseAlternation() throws(LinearRegexError) -> Node {
        var branches = [try parseConcat()]
        while isChar("|") {
            i += 1
            branches.append(try parseConcat())
        }
        return branches.count == 1 ? branches[0] : .alternation(branches)
    }

    mutating func parseConcat() throws(LinearRegexError) -> Node {
        var items: [Node] = []
        while !atEnd, !isChar("|"), !isChar(")") {
            if let atom = try parseAtom() { items.append(try parseQuantifier(atom)) }
        }
        return items.count == 1 ? items[0] : items.isEmpty ? .empty : .concat(items)
    }

    mutating func parseQuantifier(_ atom: Node) throws(LinearRegexError) -> Node {
        var node = atom
        while let c = peek() {
            var bounds: (Int, Int?)
            switch c {
            case 0x2A: bounds = (0, nil)  // *
            case 0x2B: bounds = (1, nil)  // +
            case 0x3F: bounds = (0, 1)  // ?
            case 0x7B:  // {
                guard let counted = try countedBounds() else { return node }
                bounds = counted
            default: return node
            }
            if case .assert = node { throw error("a quantifier after an anchor") }
            if case .look = node { throw error("a quantifier after a lookaround") }
            if c != 0x7B { i += 1 }
            var greedy = true
            if isChar("?") {
                greedy = false
                i += 1
            } else if isChar("+") {
                throw unsupported("a possessive quantifier")
            }
            node = .repetition(node, min: bounds.0, max: bounds.1, greedy: greedy)
        }
        return node
    }

    /// `{n}`, `{n,}`, `{n,m}` at `i` (consumed), or nil (then `{` is a literal).
    mutating func countedBounds() throws(LinearRegexError) -> (Int, Int?)? {
        var j = i + 1
        func number() -> Int? {
            var value = 0
            let begin = j
            while j < p.count, (0x30...0x39).contains(p[j]) {
                value = min(value * 10 + Int(p[j] - 0x30), 100_000)
                j += 1
            }
            return j > begin ? value : nil
        }
        guard let low = number() else { return nil }
        var high: Int? = low
        if j < p.count, p[j] == 0x2C {
            j += 1
            high = number()
        }
        guard j < p.count, p[j] == 0x7D else { return nil }
        if let high, high < low { throw error("a counted repetition {\(low),\(high)} with max below min") }
        guard low <= 1000, (high ?? 0) <= 1000 else { throw error("a counted repetition above 1000") }
        i = j + 1
        return (low, high)
    }

    mutating func parseAtom() throws(LinearRegexError) -> Node? {
        let c = p[i]
        switch c {
        case 0x28: return try parseGroup()  // (
        case 0x5B:  // [
            i += 1
            return .set(try parseClass())
        case 0x2E:  // .
            i += 1
            return .any(dotAll: flags.dotAll)
        case 0x5E:  // ^
            i += 1
            return .assert(flags.multiline ? .lineStart : .textStart)
        case 0x24:  // $
            i += 1
            return .assert(flags.multiline ? .lineEnd : .textEndOrFinalNewline)
        case 0x5C:  // backslash
            return try parseEscape()
        case 0x2A, 0x2B, 0x3F: throw error("a quantifier with nothing to repeat")
        default:
            i += 1
            return .char(flags.ignoreCase ? fold(c) : c, fold: flags.ignoreCase)
        }
    }

    mutating func parseGroup() throws(LinearRegexError) -> Node? {
        i += 1  // (
        var capture: Int?
        let saved = flags
        if isChar("?") {
            i += 1
            guard let c = peek() else { throw error("an unfinished group") }
            switch c {
            case 0x3A: i += 1  // (?:
            case 0x3D, 0x21:  // (?= (?!
                i += 1
                return try parseLook(ahead: true, negative: c == 0x21)
            case 0x3C:  // (?< : lookbehind or a named group
                if isChar("=", at: 1) || isChar("!", at: 1) {
                    let negative = isChar("!", at: 1)
                    i += 2
                    return try parseLook(ahead: false, negative: negative)
                }
                i += 1
                try skipName(until: 0x3E)
                captures += 1
                capture = captures
            case 0x50 where isChar("<", at: 1):  // (?P<name>
                i += 2
                try skipName(until: 0x3E)
                captures += 1
                capture = captures
            case 0x3E: throw unsupported("an atomic group (?>...)")
            case 0x28: throw unsupported("a conditional (?(...)...)")
            case 0x23: throw unsupported("a comment group (?#...)")
            default:
                // Flags: (?i) for the rest of the enclosing group, (?i:...) for this one.
                var on = true
                var local = flags
                while let f = peek(), f != 0x29, f != 0x3A {
                    switch f {
                    case 0x2D: on = false
                    case 0x69: local.ignoreCase = on
                    case 0x73: local.dotAll = on
                    case 0x6D: local.multiline = on
                    case 0x78: throw unsupported("the extended-syntax flag (?x)")
                    default: throw error("an unknown group or flag")
                    }
                    i += 1
                }
                guard let end = peek() else { throw error("an unfinished group") }
                i += 1
                if end == 0x29 {  // (?i): applies to the rest of the enclosing group
                    flags = local
                    return nil
                }
                flags = local  // (?i:...): for the group's body, parsed below
            }
        } else {
            captures += 1
            capture = captures
        }
        let body = try parseAlternation()
        guard isChar(")") else { throw error("a group without its )") }
        i += 1
        flags = saved
        return .group(body, capture: capture)
    }

    mutating func skipName(until end: UInt32) throws(LinearRegexError) {
        while let c = peek(), c != end { i += 1 }
        guard !atEnd else { throw error("an unfinished group name") }
        i += 1
    }

    /// A lookaround whose alternatives are fixed sequences of characters or classes.
    mutating func parseLook(ahead: Bool, negative: Bool) throws(LinearRegexError) -> Node {
        let body = try parseAlternation()
        guard isChar(")") else { throw error("a lookaround without its )") }
        i += 1
        func steps(_ node: Node) -> [Step]? {
            switch node {
            case .empty: return []
            case .char(let c, let f): return [.char(c, fold: f)]
            case .set(let s):
                sets.append(s)
                return [.set(sets.count - 1)]
            case .any(let dotAll): return [.any(dotAll: dotAll)]
            case .group(let inner, _): return steps(inner)
            case .concat(let items):
                var out: [Step] = []
                for item in items {
                    guard let s = steps(item) else { return nil }
                    out += s
                }
                return out
            case .repetition(let inner, let min, let max, _) where max == min:
                guard let s = steps(inner) else { return nil }
                return Array(repeating: s, count: min).flatMap { $0 }
            default: return nil
            }
        }
        let branches: [Node]
        if case .alternation(let list) = body { branches = list } else { branches = [body] }
        var sequences: [[Step]] = []
        for branch in branches {
            guard let s = steps(branch) else {
                throw unsupported("a lookaround that is not a fixed sequence of characters or classes")
            }
            sequences.append(s)
        }
        return .look(Look(ahead: ahead, negative: negative, branches: sequences))
    }

    /// Sets used by lookarounds (moved into the compiler's table when compiled).
    var sets: [CharSet] = []

    mutating func parseEscape() throws(LinearRegexError) -> Node {
        i += 1
        guard let c = peek() else { throw error("a trailing backslash") }
        // \A \z \Z \b \B
        let anchors: [UInt32: Anchor] = [
            0x41: .textStart, 0x7A: .textEnd, 0x5A: .textEndOrFinalNewline, 0x62: .wordBoundary, 0x42: .notWordBoundary,
        ]
        if let anchor = anchors[c] {
            i += 1
            return .assert(anchor)
        }
        switch try escapeItem() {
        case .scalar(let v): return .char(flags.ignoreCase ? fold(v) : v, fold: flags.ignoreCase)
        case .kind(let kind, let negated):
            var set = CharSet()
            set.kinds = [(kind, negated)]
            return .set(set)
        }
    }

    enum EscapeItem {
        case scalar(UInt32)
        case kind(ClassKind, negated: Bool)
    }

    /// The escape after a backslash (at `i`), consumed: a scalar or a class.
    mutating func escapeItem() throws(LinearRegexError) -> EscapeItem {
        guard let c = peek() else { throw error("a trailing backslash") }
        i += 1
        switch c {
        case 0x64: return .kind(.digit, negated: false)  // d
        case 0x44: return .kind(.digit, negated: true)
        case 0x73: return .kind(.space, negated: false)  // s
        case 0x53: return .kind(.space, negated: true)
        case 0x77: return .kind(.word, negated: false)  // w
        case 0x57: return .kind(.word, negated: true)
        case 0x68: return .kind(.horizontalSpace, negated: false)  // h
        case 0x48: return .kind(.horizontalSpace, negated: true)
        case 0x70, 0x50:  // p P
            guard isChar("{") else { throw error("\\p without {name}") }
            i += 1
            var name = ""
            while let ch = peek(), ch != 0x7D {
                name.unicodeScalars.append(Unicode.Scalar(ch) ?? "?")
                i += 1
            }
            guard !atEnd else { throw error("an unfinished \\p{") }
            i += 1
            var negated = c == 0x50
            if name.hasPrefix("^") {
                negated.toggle()
                name.removeFirst()
            }
            let key = name.lowercased().replacingOccurrences(of: "_", with: "").replacingOccurrences(of: " ", with: "")
                .replacingOccurrences(of: "generalcategory=", with: "").replacingOccurrences(of: "gc=", with: "")
            if let set = categoryNames[key] { return .kind(.categories(set), negated: negated) }
            if key == "alphabetic" || key == "alpha" { return .kind(.alphabetic, negated: negated) }
            if key == "whitespace" || key == "space" { return .kind(.space, negated: negated) }
            throw unsupported("the Unicode property \\p{\(name)} (general categories only)")
        case 0x6E: return .scalar(0x0A)  // n
        case 0x72: return .scalar(0x0D)  // r
        case 0x74: return .scalar(0x09)  // t
        case 0x66: return .scalar(0x0C)  // f
        case 0x76: return .scalar(0x0B)  // v
        case 0x65: return .scalar(0x1B)  // e
        case 0x61: return .scalar(0x07)  // a
        case 0x30: return .scalar(0)  // \0
        case 0x78:  // x
            if isChar("{") {
                i += 1
                return .scalar(try hex(maxDigits: 8, until: 0x7D))
            }
            return .scalar(try hex(exactly: 2))
        case 0x75: return .scalar(try hex(exactly: 4))  // u
        case 0x55: return .scalar(try hex(exactly: 8))  // U
        case 0x31...0x39: throw unsupported("a backreference \\\(Character(Unicode.Scalar(c)!))")
        case 0x6B: throw unsupported("a named backreference \\k")
        case 0x47: throw unsupported("\\G")
        case 0x51: throw unsupported("a quoted literal \\Q...\\E")
        case 0x58: throw unsupported("\\X (a grapheme cluster)")
        case 0x52: throw unsupported("\\R (a line break sequence)")
        default:
            if (0x41...0x5A).contains(c) || (0x61...0x7A).contains(c) {
                throw unsupported("the escape \\\(Character(Unicode.Scalar(c)!))")
            }
            return .scalar(c)
        }
    }

    mutating func hex(exactly count: Int) throws(LinearRegexError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<count {
            guard let c = peek(), let d = hexDigit(c) else { throw error("a malformed hex escape") }
            value = value * 16 + d
            i += 1
        }
        guard value <= 0x10FFFF else { throw error("a hex escape beyond U+10FFFF") }
        return value
    }

    mutating func hex(maxDigits: Int, until end: UInt32) throws(LinearRegexError) -> UInt32 {
        var value: UInt32 = 0
        var digits = 0
        while let c = peek(), c != end {
            guard let d = hexDigit(c), digits < maxDigits else { throw error("a malformed hex escape") }
            value = value * 16 + d
            digits += 1
            i += 1
        }
        guard !atEnd, digits > 0, value <= 0x10FFFF else { throw error("a malformed hex escape") }
        i += 1
        return value
    }

    private func hexDigit(_ c: UInt32) -> UInt32? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }

    /// A class after `[` (consumed), up to and including `]`.
    mutating func parseClass() throws(LinearRegexError) -> CharSet {
        var set = CharSet()
        set.fold = flags.ignoreCase
        if isChar("^") {
            set.negated = true
            i += 1
        }
        var first = true
        while true {
            guard let c = peek() else { throw error("a class without its ]") }
            if c == 0x5D, !first {  // ]
                i += 1
                return set
            }
            first = false
            if c == 0x5B, isChar(":", at: 1) { throw unsupported("a POSIX class [:name:]") }
            if c == 0x5B { throw unsupported("a nested class") }
            if c == 0x26, isChar("&", at: 1) { throw unsupported("class intersection &&") }
            let low: UInt32
            if c == 0x5C {
                i += 1
                switch try escapeItem() {
                case .kind(let kind, let negated):
                    set.kinds.append((kind, negated))
                    continue
                case .scalar(let v): low = v
                }
            } else {
                i += 1
                low = c
            }
            // A range low-high (a "-" before "]" is literal).
            if isChar("-"), let next = peek(1), next != 0x5D {
                i += 1
                let high: UInt32
                if next == 0x5C {
                    i += 1
                    guard case .scalar(let v) = try escapeItem() else { throw error("a class as a range's end") }
                    high = v
                } else {
                    i += 1
                    high = next
                }
                guard low <= high else { throw error("a range out of order") }
                set.ranges.append(low...high)
            } else {
                set.ranges.append(low...low)
            }
        }
    }
}

// MARK: - Compiler

private struct Compiler {
    var ops: [Op] = []
    var sets: [CharSet] = []
    var looks: [Look] = []

    mutating func emit(_ op: Op) { ops.append(op) }

    mutating func compile(_ node: Node) throws(LinearRegexError) {
        guard ops.count <= 20_000 else {
            throw LinearRegexError(message: "the pattern is too large once its counted repetitions are expanded")
        }
        switch node {
        case .empty: break
        case .char(let c, let f): emit(f ? .charFold(c) : .char(c))
        case .set(let s):
            sets.append(s)
            emit(.set(sets.count - 1))
        case .any(let dotAll): emit(dotAll ? .anyAll : .any)
        case .concat(let items): for item in items { try compile(item) }
        case .alternation(let branches):
            // split L1, next; L1: a; jump end; next: split L2, ...
            var jumps: [Int] = []
            for (k, branch) in branches.enumerated() {
                if k < branches.count - 1 {
                    let split = ops.count
                    emit(.split(split + 1, -1))
                    try compile(branch)
                    jumps.append(ops.count)
                    emit(.jump(-1))
                    ops[split] = .split(split + 1, ops.count)
                } else {
                    try compile(branch)
                }
            }
            for j in jumps { ops[j] = .jump(ops.count) }
        case .group(let inner, let capture):
            if let capture { emit(.save(2 * capture)) }
            try compile(inner)
            if let capture { emit(.save(2 * capture + 1)) }
        case .assert(let anchor): emit(.assert(anchor))
        case .look(let look):
            looks.append(look)
            emit(.look(looks.count - 1))
        case .repetition(let inner, let min, let max, let greedy):
            for _ in 0..<min { try compile(inner) }
            if let max {
                // (inner (inner (...)?)?)? for max - min optional copies.
                var exits: [Int] = []
                for _ in min..<max {
                    let split = ops.count
                    emit(.split(-1, -1))
                    exits.append(split)
                    try compile(inner)
                }
                for s in exits { ops[s] = greedy ? .split(s + 1, ops.count) : .split(ops.count, s + 1) }
            } else {
                // L: split body, end; body; jump L
                let split = ops.count
                emit(.split(-1, -1))
                try compile(inner)
                emit(.jump(split))
                ops[split] = greedy ? .split(split + 1, ops.count) : .split(ops.count, split + 1)
            }
        }
    }
}

// MARK: - Machine

private struct Machine {
    let ops: [Op]
    let sets: [CharSet]
    let looks: [Look]
    let text: [UInt32]
    let slotCount: Int
    /// One bit per (position, instruction): explored already (failed, or on the current path).
    var visited: [UInt64]
    /// Cells visited on the current path, in order; popping back to a choice point marks the
    /// cells after it as failed for good.
    var path: [Int] = []
    var slots: [Int]
    var stack: [Job] = []
    /// Lookaround results by (position, lookaround): 0 unknown, 1 true, 2 false.
    var lookCache: [Int: Bool] = [:]

    enum Job {
        case run(pc: Int, pos: Int, pathLength: Int)
        case restore(slot: Int, value: Int)
    }

    init(ops: [Op], sets: [CharSet], looks: [Look], text: [UInt32], slots: Int) {
        self.ops = ops
        self.sets = sets
        self.looks = looks
        self.text = text
        slotCount = slots
        let cells = ops.count * (text.count + 1)
        visited = [UInt64](repeating: 0, count: (cells + 63) / 64)
        self.slots = [Int](repeating: -1, count: slots)
    }

    @inline(__always) private func cell(_ pc: Int, _ pos: Int) -> Int { pos * ops.count + pc }

    mutating func run(from start: Int) -> [Int]? {
        guard start <= text.count else { return nil }
        for k in slots.indices { slots[k] = -1 }
        stack.removeAll(keepingCapacity: true)
        path.removeAll(keepingCapacity: true)
        stack.append(.run(pc: 0, pos: start, pathLength: 0))
        while let job = stack.popLast() {
            switch job {
            case .restore(let slot, let value): slots[slot] = value
            case .run(var pc, var pos, let pathLength):
                path.removeSubrange(pathLength...)  // what was explored since failed: keep it marked
                thread: while true {
                    let c = cell(pc, pos)
                    if visited[c >> 6] & (1 << UInt64(c & 63)) != 0 { break thread }
                    visited[c >> 6] |= 1 << UInt64(c & 63)
                    path.append(c)
                    switch ops[pc] {
                    case .char(let v):
                        guard pos < text.count, text[pos] == v else { break thread }
                        pc += 1
                        pos += 1
                    case .charFold(let v):
                        guard pos < text.count, fold(text[pos]) == v else { break thread }
                        pc += 1
                        pos += 1
                    case .set(let k):
                        guard pos < text.count, sets[k].contains(text[pos]) else { break thread }
                        pc += 1
                        pos += 1
                    case .any:
                        guard pos < text.count, !isLineTerminator(text[pos]) else { break thread }
                        pc += 1
                        pos += 1
                    case .anyAll:
                        guard pos < text.count else { break thread }
                        pc += 1
                        pos += 1
                    case .split(let first, let second):
                        stack.append(.run(pc: second, pos: pos, pathLength: path.count))
                        pc = first
                    case .jump(let target): pc = target
                    case .save(let slot):
                        if slot < slotCount {
                            stack.append(.restore(slot: slot, value: slots[slot]))
                            slots[slot] = pos
                        }
                        pc += 1
                    case .assert(let anchor):
                        guard holds(anchor, at: pos) else { break thread }
                        pc += 1
                    case .look(let k):
                        guard lookHolds(k, at: pos) else { break thread }
                        pc += 1
                    case .match:
                        // The cells of the successful path are not failures: clear them, and
                        // every cell at the match's end, where the next search begins.
                        for c in path { visited[c >> 6] &= ~(1 << UInt64(c & 63)) }
                        for k in 0..<ops.count {
                            let c = cell(k, pos)
                            visited[c >> 6] &= ~(1 << UInt64(c & 63))
                        }
                        return slots
                    }
                }
            }
        }
        return nil
    }

    private func isWord(_ pos: Int) -> Bool { pos >= 0 && pos < text.count && classContains(.word, text[pos]) }

    private func holds(_ anchor: Anchor, at pos: Int) -> Bool {
        switch anchor {
        case .textStart: return pos == 0
        case .textEnd: return pos == text.count
        case .textEndOrFinalNewline: return pos == text.count || (pos == text.count - 1 && text[pos] == 0x0A)
        case .lineStart: return pos == 0 || isLineTerminator(text[pos - 1])
        case .lineEnd: return pos == text.count || isLineTerminator(text[pos])
        case .wordBoundary: return isWord(pos - 1) != isWord(pos)
        case .notWordBoundary: return isWord(pos - 1) == isWord(pos)
        }
    }

    private mutating func lookHolds(_ k: Int, at pos: Int) -> Bool {
        let key = pos &* looks.count &+ k
        if let known = lookCache[key] { return known }
        let look = looks[k]
        var any = false
        for steps in look.branches {
            let begin = look.ahead ? pos : pos - steps.count
            guard begin >= 0, begin + steps.count <= text.count else { continue }
            var ok = true
            for (j, step) in steps.enumerated() {
                let c = text[begin + j]
                switch step {
                case .char(let v, let f): ok = f ? fold(c) == v : c == v
                case .set(let s): ok = sets[s].contains(c)
                case .any(let dotAll): ok = dotAll || !isLineTerminator(c)
                }
                if !ok { break }
            }
            if ok {
                any = true
                break
            }
        }
        let result = any != look.negative
        lookCache[key] = result
        return result
    }
}
