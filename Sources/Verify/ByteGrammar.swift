// A context-free grammar over bytes, and the set-of-stacks matcher that feeds it a byte at a
// time: what constrained decoding asks of a grammar (docs/teacher.md, *Constrained
// sampling*) is only "may this text continue to a sentence?" and "is it one already?".
//
// A grammar is rules; a rule is alternatives; an alternative is a sequence of elements, each a
// set of bytes or a reference to a rule. All elements of all alternatives are laid out in one
// array, each alternative closed by an end marker, so a position in the grammar is one index.
// The matcher's state is a set of stacks of positions: the top of a stack is the next byte set
// to match, the positions under it are where the enclosing rules go on. Feeding a byte keeps
// the stacks whose top set holds it, advances them and expands rule references at the new
// tops until every top is a byte set again (or the stack is empty: a complete sentence).
// Ambiguity costs stacks, not backtracking.
//
// A position whose next element is the end of its alternative is never pushed (the tail call
// is dropped), so right recursion (`digits := digit digits | digit`) keeps the stacks short.
// Left recursion and rules that can loop on no input are not allowed: the builder's grammars
// have none.

/// A set of bytes, 256 bits.
package struct ByteSet: Hashable, Sendable {
    private var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    package init() {}

    /// The bytes of `text`, or with `except`, every byte but those.
    package init(_ text: String, except: Bool = false) {
        for b in text.utf8 { insert(b) }
        if except { invert() }
    }

    /// The bytes `low`...`high`.
    package init(_ low: UInt8, through high: UInt8) {
        for b in low...high { insert(b) }
    }

    package mutating func insert(_ b: UInt8) {
        let bit = UInt64(1) << UInt64(b & 63)
        switch b >> 6 {
        case 0: words.0 |= bit
        case 1: words.1 |= bit
        case 2: words.2 |= bit
        default: words.3 |= bit
        }
    }

    package func contains(_ b: UInt8) -> Bool {
        let bit = UInt64(1) << UInt64(b & 63)
        switch b >> 6 {
        case 0: return words.0 & bit != 0
        case 1: return words.1 & bit != 0
        case 2: return words.2 & bit != 0
        default: return words.3 & bit != 0
        }
    }

    package mutating func invert() { words = (~words.0, ~words.1, ~words.2, ~words.3) }

    package static func == (a: ByteSet, b: ByteSet) -> Bool {
        a.words.0 == b.words.0 && a.words.1 == b.words.1 && a.words.2 == b.words.2 && a.words.3 == b.words.3
    }

    package func hash(into h: inout Hasher) {
        h.combine(words.0)
        h.combine(words.1)
        h.combine(words.2)
        h.combine(words.3)
    }
}

package struct ByteGrammar: Sendable {
    package enum Element: Hashable, Sendable {
        case bytes(ByteSet)
        case rule(Int)
    }

    enum Slot: Sendable {
        case bytes(ByteSet)
        case rule(Int)
        case end
    }

    /// Every alternative's elements, each alternative followed by `.end`.
    let slots: [Slot]
    /// The first position of each alternative of each rule.
    let alternatives: [[Int32]]
    let root: Int

    /// `rules[r]` are rule r's alternatives; `root` is the sentence rule.
    package init(rules: [[[Element]]], root: Int) {
        var slots: [Slot] = []
        var alternatives: [[Int32]] = []
        for rule in rules {
            var starts: [Int32] = []
            for alternative in rule {
                starts.append(Int32(slots.count))
                for e in alternative {
                    switch e {
                    case .bytes(let set): slots.append(.bytes(set))
                    case .rule(let r):
                        precondition(rules.indices.contains(r), "rule \(r) is referenced but not defined")
                        slots.append(.rule(r))
                    }
                }
                slots.append(.end)
            }
            alternatives.append(starts)
        }
        self.slots = slots
        self.alternatives = alternatives
        self.root = root
    }

    /// The matcher before any byte.
    package var start: State {
        var out = Set<[Int32]>()
        for a in alternatives[root] { expand([a], into: &out) }
        return State(stacks: Array(out))
    }

    /// Where the matcher may be: each stack's last position is the next byte set to match.
    package struct State: Hashable, Sendable {
        package fileprivate(set) var stacks: [[Int32]]

        /// No continuation is possible: the bytes fed are not the start of a sentence.
        package var isDead: Bool { stacks.isEmpty }
    }

    /// True when the bytes fed so far are a whole sentence.
    package func isComplete(_ state: State) -> Bool { state.stacks.contains { $0.isEmpty } }

    /// True when the bytes fed so far are a whole sentence that nothing can continue.
    package func isClosed(_ state: State) -> Bool { !state.stacks.isEmpty && state.stacks.allSatisfy(\.isEmpty) }

    /// The state after `byte`; dead when no stack takes it.
    package func feed(_ state: State, _ byte: UInt8) -> State {
        var out = Set<[Int32]>()
        for stack in state.stacks {
            guard let top = stack.last, case .bytes(let set) = slots[Int(top)], set.contains(byte) else { continue }
            var next = stack
            next.removeLast()
            if case .end = slots[Int(top) + 1] {} else { next.append(top + 1) }
            expand(next, into: &out)
        }
        return State(stacks: out.sorted { $0.lexicographicallyPrecedes($1) })
    }

    /// The state after every byte of `bytes`, stopping early once dead.
    package func feed<S: Sequence>(_ state: State, bytes: S) -> State where S.Element == UInt8 {
        var s = state
        for b in bytes {
            s = feed(s, b)
            if s.isDead { break }
        }
        return s
    }

    /// True when `text` is a whole sentence of the grammar.
    package func matches(_ text: String) -> Bool { isComplete(feed(start, bytes: text.utf8)) }

    /// A random sentence (for tests and fuzzing): each rule takes a random alternative, and
    /// past `depth` nested rules the one with the fewest elements, so recursion ends; each byte
    /// set gives a random member, printable ASCII when it has one.
    package func sample(using rng: inout some RandomNumberGenerator, depth: Int = 12) -> [UInt8] {
        var out: [UInt8] = []
        func emit(rule r: Int, level: Int) {
            let starts = alternatives[r]
            func length(_ a: Int32) -> Int {
                var n = 0
                while true {
                    if case .end = slots[Int(a) + n] { return n }
                    n += 1
                }
            }
            var at = Int(level < depth ? starts.randomElement(using: &rng)! : starts.min { length($0) < length($1) }!)
            while true {
                switch slots[at] {
                case .end: return
                case .rule(let inner): emit(rule: inner, level: level + 1)
                case .bytes(let set):
                    let printable = (32...126).map(UInt8.init).filter(set.contains)
                    out.append(printable.randomElement(using: &rng) ?? (0...255).map(UInt8.init).first(where: set.contains)!)
                }
                at += 1
            }
        }
        emit(rule: root, level: 0)
        return out
    }

    /// Rewrites `stack` until its top is a byte set (or it is empty) and adds each result.
    private func expand(_ stack: [Int32], into out: inout Set<[Int32]>) {
        guard let top = stack.last else {
            out.insert(stack)
            return
        }
        switch slots[Int(top)] {
        case .bytes: out.insert(stack)
        case .end:
            var s = stack
            s.removeLast()
            expand(s, into: &out)
        case .rule(let r):
            var s = stack
            s.removeLast()
            if case .end = slots[Int(top) + 1] {} else { s.append(top + 1) }
            for a in alternatives[r] {
                var t = s
                t.append(a)
                expand(t, into: &out)
            }
        }
    }
}

/// Writes a grammar rule by rule, with forward references for recursion.
package final class GrammarBuilder {
    private var rules: [[[ByteGrammar.Element]]?] = []

    package init() {}

    /// A new rule, to be defined later.
    package func declare() -> Int {
        rules.append(nil)
        return rules.count - 1
    }

    package func define(_ rule: Int, _ alternatives: [[ByteGrammar.Element]]) {
        precondition(rules[rule] == nil, "rule \(rule) is defined twice")
        rules[rule] = alternatives
    }

    /// A new rule with these alternatives, as an element.
    package func rule(_ alternatives: [[ByteGrammar.Element]]) -> ByteGrammar.Element {
        let r = declare()
        define(r, alternatives)
        return .rule(r)
    }

    /// The bytes of `text`, one element each.
    package func literal(_ text: String) -> [ByteGrammar.Element] {
        text.utf8.map { b in
            var set = ByteSet()
            set.insert(b)
            return .bytes(set)
        }
    }

    /// `elements` or nothing.
    package func optional(_ elements: [ByteGrammar.Element]) -> ByteGrammar.Element { rule([elements, []]) }

    /// `elements` once or more.
    package func oneOrMore(_ elements: [ByteGrammar.Element]) -> ByteGrammar.Element {
        let r = declare()
        define(r, [elements + [.rule(r)], elements])
        return .rule(r)
    }

    /// `elements` any number of times.
    package func zeroOrMore(_ elements: [ByteGrammar.Element]) -> ByteGrammar.Element {
        let r = declare()
        define(r, [elements + [.rule(r)], []])
        return .rule(r)
    }

    /// `elements` at most `count` times.
    package func atMost(_ count: Int, _ elements: [ByteGrammar.Element]) -> ByteGrammar.Element {
        var tail = rule([[]])
        for _ in 0..<count { tail = optional(elements + [tail]) }
        return tail
    }

    /// One of several texts.
    package func oneOf(_ texts: [String]) -> ByteGrammar.Element { rule(texts.map(literal)) }

    /// The grammar whose sentences are `root`'s.
    package func build(root: ByteGrammar.Element) -> ByteGrammar {
        let start: Int
        switch root {
        case .rule(let r): start = r
        case .bytes: start = declare(); define(start, [[root]])
        }
        return ByteGrammar(
            rules: rules.enumerated().map { i, r in
                guard let r else { preconditionFailure("rule \(i) is declared but never defined") }
                return r
            }, root: start)
    }
}
