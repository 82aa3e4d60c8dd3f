import Foundation
import JSON
import Platform

/// A function call found in a completion.
package struct ParsedCall: Sendable, Equatable {
    package var name: String
    package var arguments: JSONValue.JSONObject
}

/// Finds function calls in model output: every call in it, or a failure naming what could not
/// be read. Nothing call-shaped is silently dropped.
///
/// Accepted forms:
/// - JSON: `{"name": "f", "arguments": {...}}` (also `"parameters"`, arguments given as a JSON
///   string as OpenAI's `tool_calls` do, `{"function": {...}}` wrappers, `{"tool_calls": [...]}`),
///   one object, an array of them, or several objects anywhere in the text (inside code fences
///   or `<tool_call>` tags, say). A JSON value that is not call-shaped is data and is skipped
///   whole; a call-shaped one whose arguments cannot be read fails the answer.
/// - Python: `f(a=1, b="x")` or `[f(a=1), g(b=[1, 2])]` with keyword arguments whose values are
///   Python literals (numbers, strings with Python's escapes and prefixes, True/False/None,
///   lists, tuples, dicts), anywhere outside the JSON values. An identifier directly followed by
///   "(" is a call: if its arguments cannot be read, the answer is unreadable.
package enum CallParser {
    package enum Outcome: Sendable, Equatable {
        case calls([ParsedCall])
        /// Nothing call-shaped was found, or what was found could not be read; the reason says which.
        case failure(String)
    }

    package static func parse(_ text: String) -> Outcome {
        // The whole text as one JSON document first.
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if let whole = try? JSONValue.parse(Array(trimmed.utf8)) {
            switch calls(in: whole) {
            case .success(let c) where !c.isEmpty: return .calls(c)
            case .failure(let p): return .failure(p)
            default: break
            }
        }
        // Then every balanced {...} / [...] standing in the text, each read whole (a nested
        // {"name": ...} is data) and blanked out so that the Python pass below cannot read into it.
        var bytes = Array(text.utf8)
        var found: [ParsedCall] = []
        var i = 0
        while i < bytes.count {
            // A Python call's argument list is the call's, never a JSON call of its own: a
            // dictionary argument with a "name" key is data (`f(info={"name": "Ann"})`).
            if let end = pythonCallEnd(bytes, from: i) {
                i = end
                continue
            }
            guard bytes[i] == UInt8(ascii: "{") || bytes[i] == UInt8(ascii: "["),
                let end = balancedEnd(bytes, from: i),
                let value = try? JSONValue.parse(bytes[i..<end])
            else {
                i += 1
                continue
            }
            switch calls(in: value) {
            case .success(let c): found += c
            case .failure(let p): return .failure(p)
            }
            for k in i..<end { bytes[k] = UInt8(ascii: " ") }
            i = end
        }
        // Python-style calls in the rest: beside JSON calls they are calls too, and one that
        // cannot be read makes the whole answer unreadable.
        switch PythonCalls.parse(String(decoding: bytes, as: UTF8.self)) {
        case .failure(let p): return .failure(p)
        case .calls(let c): found += c
        }
        if found.isEmpty {
            return .failure("no function call found (expected JSON {\"name\", \"arguments\"} or f(a=1, b=\"x\"))")
        }
        return .calls(found)
    }

    private enum Found { case success([ParsedCall]), failure(String) }

    /// The keys a JSON call object may have.
    private static let callObjectKeys: Set<String> = ["name", "arguments", "parameters", "id", "type"]

    /// Calls in a JSON value; empty when the value is not call-shaped at all.
    private static func calls(in value: JSONValue) -> Found {
        switch value {
        case .array(let items):
            var out: [ParsedCall] = []
            for item in items {
                switch calls(in: item) {
                case .success(let c): out += c
                case .failure(let p): return .failure(p)
                }
            }
            return .success(out)
        case .object(let o):
            if case .array? = o["tool_calls"] { return calls(in: o["tool_calls"]!) }
            if case .object(let f)? = o["function"], f["name"] != nil { return calls(in: .object(f)) }
            guard case .string(let name)? = o["name"] else { return .success([]) }
            // A call object holds its name and arguments (and OpenAI's id and type); anything
            // else in it (a schema's "required" copied into the call, say) is not a call the
            // model can be credited with.
            if let extra = o.entries.first(where: { !callObjectKeys.contains($0.key) }) {
                return .failure("call \(name): unexpected key \"\(extra.key)\" in the call object")
            }
            if o["arguments"] != nil && o["parameters"] != nil {
                return .failure("call \(name): both \"arguments\" and \"parameters\" given")
            }
            let rawArgs = o["arguments"] ?? o["parameters"] ?? .object(.init())
            switch rawArgs {
            case .object(let args): return .success([ParsedCall(name: name, arguments: args)])
            case .string(let s):
                // OpenAI's tool_calls carry arguments as a JSON string.
                guard let parsed = try? JSONValue.parse(Array(s.utf8)), case .object(let args) = parsed else {
                    return .failure("call \(name): arguments string is not a JSON object: \(clip(s))")
                }
                return .success([ParsedCall(name: name, arguments: args)])
            default:
                return .failure("call \(name): arguments are \(rawArgs.typeName), not an object")
            }
        default: return .success([])
        }
    }

    /// When an identifier (dots allowed) starts at `start` and is directly followed by "(", the
    /// index after the matching ")" (strings in either quote skipped; the end of the text when
    /// it never closes); else nil.
    private static func pythonCallEnd(_ b: [UInt8], from start: Int) -> Int? {
        func ident(_ c: UInt8) -> Bool {
            c == UInt8(ascii: "_") || c >= 0x80 || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z"))
                || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z")) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
        }
        guard ident(b[start]), !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b[start]),
            start == 0 || !(ident(b[start - 1]) || b[start - 1] == UInt8(ascii: "."))
        else { return nil }
        var i = start
        while i < b.count && (ident(b[i]) || b[i] == UInt8(ascii: ".")) { i += 1 }
        guard i < b.count, b[i] == UInt8(ascii: "(") else { return nil }
        var depth = 0
        var quote: UInt8?
        while i < b.count {
            let c = b[i]
            if let q = quote {
                if c == UInt8(ascii: "\\") { i += 1 } else if c == q { quote = nil }
            } else if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
                quote = c
            } else if c == UInt8(ascii: "(") {
                depth += 1
            } else if c == UInt8(ascii: ")") {
                depth -= 1
                if depth == 0 { return i + 1 }
            }
            i += 1
        }
        return b.count
    }

    /// The index after the bracket closing the one at `start`, strings skipped, or nil.
    private static func balancedEnd(_ b: [UInt8], from start: Int) -> Int? {
        var depth = 0
        var i = start
        var inString = false
        while i < b.count {
            let c = b[i]
            if inString {
                if c == UInt8(ascii: "\\") { i += 1 } else if c == UInt8(ascii: "\"") { inString = false }
            } else if c == UInt8(ascii: "\"") {
                inString = true
            } else if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") {
                depth += 1
            } else if c == UInt8(ascii: "}") || c == UInt8(ascii: "]") {
                depth -= 1
                if depth == 0 { return i + 1 }
            }
            i += 1
        }
        return nil
    }
}

/// Python-style calls: `name(kw=literal, ...)`, alone or in a list; none found is no calls, a
/// call-shaped `name(` whose arguments cannot be read is a failure.
enum PythonCalls {
    static func parse(_ text: String) -> CallParser.Outcome {
        let s = Array(text.unicodeScalars)
        var calls: [ParsedCall] = []
        var i = 0
        while i < s.count {
            // A call starts at an identifier (dots allowed) directly followed by "(".
            guard isIdentStart(s[i]), i == 0 || !(isIdent(s[i - 1]) || s[i - 1] == ".") else {
                i += 1
                continue
            }
            var j = i
            while j < s.count && (isIdent(s[j]) || s[j] == ".") { j += 1 }
            guard j < s.count, s[j] == "(" else {
                i = j
                continue
            }
            let name = String(String.UnicodeScalarView(s[i..<j]))
            var p = PyParser(s: s, pos: j + 1)
            do {
                let args = try p.keywordArguments()
                calls.append(ParsedCall(name: name, arguments: args))
                i = p.pos
            } catch let e as PyParser.Failure {
                // A call that cannot be read makes the answer unreadable: it never just vanishes
                // beside the calls that could be read.
                return .failure("\(name)(...) could not be read: \(e.reason)")
            } catch {
                preconditionFailure("the Python literal reader throws only PyParser.Failure: \(error)")
            }
        }
        return .calls(calls)
    }

    static func isIdentStart(_ c: Unicode.Scalar) -> Bool { c == "_" || c.properties.isAlphabetic }
    static func isIdent(_ c: Unicode.Scalar) -> Bool { isIdentStart(c) || ("0"..."9").contains(c) }
}

/// A recursive-descent reader for Python literals inside a call's parentheses.
struct PyParser {
    struct Failure: Error { var reason: String }
    let s: [Unicode.Scalar]
    var pos: Int
    var depth = 0

    mutating func skip() { while pos < s.count && s[pos].properties.isWhitespace { pos += 1 } }

    func fail(_ reason: String) -> Failure { Failure(reason: reason) }

    /// `kw=value, ...)`; consumes the closing parenthesis.
    mutating func keywordArguments() throws -> JSONValue.JSONObject {
        var args = JSONValue.JSONObject()
        skip()
        if pos < s.count && s[pos] == ")" {
            pos += 1
            return args
        }
        while true {
            skip()
            let start = pos
            while pos < s.count && PythonCalls.isIdent(s[pos]) { pos += 1 }
            guard pos > start else { throw fail("expected an argument name at \"\(rest())\"") }
            let key = String(String.UnicodeScalarView(s[start..<pos]))
            skip()
            guard pos < s.count, s[pos] == "=" else {
                throw fail("positional argument \"\(key)\"; arguments must be named (name=value)")
            }
            pos += 1
            let value = try literal()
            if args[key] != nil { throw fail("argument \(key) given twice") }
            args.entries.append((key: key, value: value))
            skip()
            guard pos < s.count else { throw fail("missing \")\"") }
            if s[pos] == ")" {
                pos += 1
                return args
            }
            guard s[pos] == "," else { throw fail("expected \",\" or \")\" at \"\(rest())\"") }
            pos += 1
            skip()
            if pos < s.count && s[pos] == ")" {
                pos += 1
                return args
            }
        }
    }

    /// Whether a string prefix (`r`, `b`, `u`, `f`, `rb`, ...) and a quote start at `pos`.
    func isStringPrefix() -> Bool {
        var i = pos
        while i < s.count, i - pos < 2, "rRuUbBfF".unicodeScalars.contains(s[i]) { i += 1 }
        return i > pos && i < s.count && (s[i] == "\"" || s[i] == "'")
    }

    func rest() -> String { String(String.UnicodeScalarView(s[pos..<min(s.count, pos + 20)])) }

    mutating func literal() throws -> JSONValue {
        skip()
        guard pos < s.count else { throw fail("missing value") }
        depth += 1
        defer { depth -= 1 }
        guard depth < 64 else { throw fail("nesting too deep") }
        let c = s[pos]
        switch c {
        case "\"", "'": return .string(try string())
        case _ where isStringPrefix():
            return .string(try string())
        case "[", "(":
            let close: Unicode.Scalar = c == "[" ? "]" : ")"
            pos += 1
            var items: [JSONValue] = []
            while true {
                skip()
                if pos < s.count && s[pos] == close {
                    pos += 1
                    return .array(items)
                }
                items.append(try literal())
                skip()
                guard pos < s.count else { throw fail("missing \"\(close)\"") }
                if s[pos] == "," { pos += 1 } else if s[pos] != close { throw fail("expected \",\" at \"\(rest())\"") }
            }
        case "{":
            pos += 1
            var o = JSONValue.JSONObject()
            while true {
                skip()
                if pos < s.count && s[pos] == "}" {
                    pos += 1
                    return .object(o)
                }
                guard case .string(let key) = try literal() else { throw fail("dictionary keys must be strings") }
                skip()
                guard pos < s.count, s[pos] == ":" else { throw fail("expected \":\" in a dictionary") }
                pos += 1
                o.entries.append((key: key, value: try literal()))
                skip()
                guard pos < s.count else { throw fail("missing \"}\"") }
                if s[pos] == "," { pos += 1 } else if s[pos] != "}" { throw fail("expected \",\" at \"\(rest())\"") }
            }
        default:
            let start = pos
            while pos < s.count && (PythonCalls.isIdent(s[pos]) || "+-.".unicodeScalars.contains(s[pos])) { pos += 1 }
            let word = String(String.UnicodeScalarView(s[start..<pos]))
            switch word {
            case "True", "true": return .bool(true)
            case "False", "false": return .bool(false)
            case "None", "null": return .null
            default:
                if let i = Int(word) { return .int(i) }
                if let d = Double(word), d.isFinite { return .double(d) }
                throw fail(word.isEmpty ? "unexpected \"\(rest())\"" : "\"\(word)\" is not a literal")
            }
        }
    }

    /// A Python string literal at `pos`, with its prefix (`r`, `u`, `b` and their combinations;
    /// f-strings are not literals), single, double or triple quoted. Escapes are decoded as
    /// Python decodes them: `\\ \' \" \a \b \f \n \r \t \v`, octal `\ooo`, `\xhh`, `\uXXXX`,
    /// `\UXXXXXXXX`, `\N{NAME}`, a backslash before a newline joins the lines, and any other
    /// backslash is kept with the character after it. Raw strings decode nothing.
    mutating func string() throws -> String {
        var raw = false
        while pos < s.count, s[pos] != "\"", s[pos] != "'" {
            switch s[pos] {
            case "r", "R": raw = true
            case "u", "U", "b", "B": break
            case "f", "F": throw fail("f-strings are not literals")
            default: throw fail("unexpected \"\(rest())\"")
            }
            pos += 1
        }
        guard pos < s.count else { throw fail("unterminated string") }
        let quote = s[pos]
        let triple = pos + 2 < s.count && s[pos + 1] == quote && s[pos + 2] == quote
        pos += triple ? 3 : 1
        var out = String.UnicodeScalarView()
        while pos < s.count {
            let c = s[pos]
            if c == quote && (!triple || (pos + 2 < s.count && s[pos + 1] == quote && s[pos + 2] == quote)) {
                pos += triple ? 3 : 1
                return String(out)
            }
            pos += 1
            if !triple && (c == "\n" || c == "\r") { throw fail("newline in a string (unterminated string)") }
            guard c == "\\", pos < s.count else {
                out.append(c)
                continue
            }
            if raw {
                // A raw string keeps the backslash; it still escapes the quote.
                out.append(c)
                out.append(s[pos])
                pos += 1
                continue
            }
            let e = s[pos]
            pos += 1
            switch e {
            case "\n": break  // line continuation
            case "\\", "'", "\"": out.append(e)
            case "a": out.append("\u{07}")
            case "b": out.append("\u{08}")
            case "f": out.append("\u{0C}")
            case "n": out.append("\n")
            case "r": out.append("\r")
            case "t": out.append("\t")
            case "v": out.append("\u{0B}")
            case "0"..."7":
                var value = Int(e.value - 48)
                var digits = 1
                while digits < 3, pos < s.count, ("0"..."7").contains(s[pos]) {
                    value = value * 8 + Int(s[pos].value - 48)
                    pos += 1
                    digits += 1
                }
                out.append(try scalar(value))
            case "x", "u", "U":
                let count = e == "x" ? 2 : e == "u" ? 4 : 8
                guard pos + count <= s.count,
                    let value = Int(String(String.UnicodeScalarView(s[pos..<(pos + count)])), radix: 16)
                else { throw fail("truncated \\\(e) escape: needs \(count) hex digits") }
                pos += count
                out.append(try scalar(value))
            case "N":
                guard pos < s.count, s[pos] == "{", let close = s[pos...].firstIndex(of: "}") else {
                    throw fail("malformed \\N{...} escape")
                }
                let name = String(String.UnicodeScalarView(s[(pos + 1)..<close]))
                guard let named = "\\N{\(name)}".applyingTransform(StringTransform("Name-Any"), reverse: false),
                    named.unicodeScalars.count == 1
                else { throw fail("unknown character name \\N{\(name)}") }
                out.append(contentsOf: named.unicodeScalars)
                pos = close + 1
            default:
                out.append("\\")
                out.append(e)
            }
        }
        throw fail("unterminated string")
    }

    func scalar(_ value: Int) throws -> Unicode.Scalar {
        guard let u = Unicode.Scalar(UInt32(clamping: value)) else {
            throw fail("escape \(String(value, radix: 16)) is not a Unicode scalar")
        }
        return u
    }
}

/// The `function-call` verifier: calls in the output against expected calls in possible-answer
/// form, following the Berkeley Function Calling Leaderboard's AST checker: names equal, no
/// unexpected argument, every argument without `""` among its acceptable values present, each
/// value one of the acceptable ones. Strings compare case-insensitively ignoring whitespace and
/// `,./-_*^` (the leaderboard's standardisation); integers and floats compare numerically;
/// lists element by element; dictionaries key by key. Parallel calls match in any order.
///
/// With `types: .schema` and a task that gives tool schemas, every call is first checked
/// against its tool's `parameters` (ToolSchema.swift). An argument given as `""` where the
/// possible answer lists `""` (may be omitted) counts as omitted, as the leaderboard counts it,
/// unless the schema requires it. The invariant: an answer is accepted only if every call in it
/// was read and matched.
package enum FunctionCallMatch {
    package static func verify(
        _ completion: String, expected: [ExpectedCall], tools: [JSONValue]?, types: VerifierConfig.TypeCheck = .schema
    ) -> Verdict {
        let found: [ParsedCall]
        switch CallParser.parse(completion) {
        case .failure(let reason): return .incorrect("malformed: \(reason)")
        case .calls(let c): found = c
        }
        var verdict = judge(found, expected: expected, tools: tools, types: types)
        verdict.canonical = canonical(found)
        verdict.credit = credit(found, expected: expected, tools: tools, types: types)
        return verdict
    }

    /// Partial credit of calls that were read, in 0...1 (docs/teacher.md, *Partial credit*): the
    /// share of (call, argument) units right, best over the pairings of produced to expected calls.
    ///
    /// - Units: an expected call counts one unit per argument its possible answer lists (optional
    ///   ones included), a produced call one per argument it gives; a call without arguments
    ///   counts one unit, the call itself.
    /// - Pairing: one to one, a produced call only with an expected call of the same name. A call
    ///   to a function the task's tools lack, or (with `types: .schema`) one breaking its tool's
    ///   schema, pairs with none.
    /// - A pair scores the expected arguments the produced call satisfies as `mismatch` checks
    ///   them (given with an acceptable value, or optional and omitted), or 1 for a call without
    ///   arguments; its surplus is the produced call's arguments the expected call does not list.
    ///   An unpaired produced call's surplus is all its units; an unpaired expected call scores 0.
    /// - credit = max over pairings of (units scored) / (expected units + surplus).
    ///
    /// So a right call with 2 of its 3 arguments right scores 2/3, the right call beside an extra
    /// one-argument call 2/3 for a two-argument call, a wrong function name 0, and the credit is 1
    /// exactly when the answer is correct. The pairings are searched exhaustively, best-scoring
    /// pairs first; past 10,000 complete pairings (many calls to one function) the best found so
    /// far is kept.
    package static func credit(
        _ found: [ParsedCall], expected: [ExpectedCall], tools: [JSONValue]?, types: VerifierConfig.TypeCheck = .schema
    ) -> Double {
        func units(_ count: Int) -> Int { max(1, count) }
        var schemas: [String: JSONValue] = [:]
        var pairable = [Bool](repeating: true, count: found.count)
        if let tools {
            let known = Set(tools.compactMap(ToolSchema.name))
            if types == .schema { schemas = ToolSchema.parameters(tools) }
            for (j, call) in found.enumerated() {
                if !known.contains(call.name) {
                    pairable[j] = false
                } else if let schema = schemas[call.name],
                    ToolSchema.problem(arguments: call.arguments, schema: schema, path: call.name) != nil
                {
                    pairable[j] = false
                }
            }
        }
        // Per expected call i, the produced calls it may pair with and what each pair scores.
        typealias Pair = (call: Int, scored: Int, surplus: Int, freed: Int)
        let candidates: [[Pair]] = expected.map { want in
            found.indices.compactMap { j -> Pair? in
                let call = found[j]
                guard pairable[j], call.name == want.name else { return nil }
                let required = Set(schemas[call.name].map(ToolSchema.required) ?? [])
                let scored =
                    want.arguments.isEmpty
                    ? 1 : want.arguments.filter { argumentProblem(call, $0, required: required) == nil }.count
                let surplus = call.arguments.entries.filter { arg in
                    !want.arguments.contains { $0.name == arg.key }
                }.count
                return (j, scored, surplus, units(call.arguments.entries.count))
            }.sorted { ($0.scored, -$0.surplus, -$0.call) > ($1.scored, -$1.surplus, -$1.call) }
        }
        let expectedUnits = expected.map { units($0.arguments.count) }.reduce(0, +)
        let producedUnits = found.map { units($0.arguments.entries.count) }.reduce(0, +)
        var used = [Bool](repeating: false, count: found.count)
        var best = 0.0
        var leaves = 0
        // scored: units scored so far; kept: units of produced calls paired so far, less their surplus.
        func search(_ i: Int, scored: Int, kept: Int) {
            guard leaves < 10_000 else { return }
            if i == expected.count {
                leaves += 1
                // Unpaired produced calls are surplus whole: producedUnits - kept of them.
                let denominator = expectedUnits + producedUnits - kept
                if denominator > 0 { best = max(best, Double(scored) / Double(denominator)) }
                return
            }
            for pair in candidates[i] where !used[pair.call] {
                used[pair.call] = true
                search(i + 1, scored: scored + pair.scored, kept: kept + pair.freed - pair.surplus)
                used[pair.call] = false
            }
            search(i + 1, scored: scored, kept: kept)
        }
        search(0, scored: 0, kept: 0)
        return best
    }

    /// Parsed calls as votes compare them: canonical JSON of the calls sorted by name, then by
    /// their arguments, each `{"arguments": {...}, "name": ...}` with keys sorted at every level,
    /// strings standardised as the matcher compares them (lowercase, without whitespace and
    /// `,./-_*^`) and numbers as numbers (`3` and `3.0` alike). Arguments are kept as given: an
    /// omitting `""` is a value here, so `f(a=1)` and `f(a=1, unit="")` are different answers.
    package static func canonical(_ calls: [ParsedCall]) -> String {
        func normalized(_ v: JSONValue) -> JSONValue {
            switch v {
            case .string(let s): return .string(standardize(s))
            case .array(let items): return .array(items.map(normalized))
            case .object(let o):
                return .object(JSONValue.JSONObject(o.entries.map { (key: $0.key, value: normalized($0.value)) }))
            default: return v
            }
        }
        let rendered = calls.map { call in
            (name: call.name, arguments: normalized(.object(call.arguments)).canonical)
        }.sorted { ($0.name, $0.arguments) < ($1.name, $1.arguments) }
        let items = rendered.map { "{\"arguments\":\($0.arguments),\"name\":\(JSONValue.string($0.name).canonical)}" }
        return "[" + items.joined(separator: ",") + "]"
    }

    /// The verdict on calls that were read.
    private static func judge(
        _ found: [ParsedCall], expected: [ExpectedCall], tools: [JSONValue]?, types: VerifierConfig.TypeCheck
    ) -> Verdict {
        var schemas: [String: JSONValue] = [:]
        if let tools {
            let known = Set(tools.compactMap(ToolSchema.name))
            if let unknown = found.first(where: { !known.contains($0.name) }) {
                return .incorrect(
                    "unknown function \(unknown.name) (the task offers \(known.sorted().joined(separator: ", ")))")
            }
            if types == .schema {
                schemas = ToolSchema.parameters(tools)
                for call in found {
                    guard let schema = schemas[call.name] else { continue }
                    if let problem = ToolSchema.problem(arguments: call.arguments, schema: schema, path: call.name) {
                        return .incorrect(problem)
                    }
                }
            }
        }
        func mismatch(_ call: ParsedCall, _ expected: ExpectedCall) -> String? {
            Self.mismatch(call, expected, required: Set(schemas[call.name].map(ToolSchema.required) ?? []))
        }
        guard found.count == expected.count else {
            return .incorrect("expected \(expected.count) call\(expected.count == 1 ? "" : "s"), found \(found.count)")
        }
        if expected.count == 1 {
            if let problem = mismatch(found[0], expected[0]) { return .incorrect(problem) }
            return .correct("\(found[0].name) called with acceptable arguments")
        }
        // Parallel calls: find an assignment of found calls to expected ones (tiny n: backtracking).
        var used = [Bool](repeating: false, count: expected.count)
        func assign(_ k: Int) -> Bool {
            if k == found.count { return true }
            for e in expected.indices where !used[e] && mismatch(found[k], expected[e]) == nil {
                used[e] = true
                if assign(k + 1) { return true }
                used[e] = false
            }
            return false
        }
        if assign(0) { return .correct("\(found.count) calls match the expected calls in some order") }
        for call in found where !expected.contains(where: { mismatch(call, $0) == nil }) {
            let sameName = expected.filter { $0.name == call.name }
            if let first = sameName.first, let problem = mismatch(call, first) {
                return .incorrect("no expected call matches: \(problem)")
            }
            return .incorrect("no expected call matches \(call.name)")
        }
        return .incorrect("calls cannot be paired one-to-one with the expected calls (a duplicate?)")
    }

    /// Why `call` does not satisfy `expected`, or nil when it does. `required` are the arguments
    /// the tool's schema requires (they may not be omitted, nor given as an omitting `""`).
    static func mismatch(_ call: ParsedCall, _ expected: ExpectedCall, required: Set<String> = []) -> String? {
        guard call.name == expected.name else { return "called \(call.name), expected \(expected.name)" }
        for arg in call.arguments.entries where !expected.arguments.contains(where: { $0.name == arg.key }) {
            return "\(call.name): unexpected argument \(arg.key)"
        }
        for want in expected.arguments {
            if let problem = argumentProblem(call, want, required: required) { return problem }
        }
        return nil
    }

    /// Why `call` does not satisfy one expected argument, or nil when it gives an acceptable
    /// value or may omit it and does.
    static func argumentProblem(
        _ call: ParsedCall, _ want: (name: String, acceptable: [JSONValue]), required: Set<String>
    ) -> String? {
        let optional = want.acceptable.contains(.string("")) && !required.contains(want.name)
        guard let got = call.arguments[want.name], !(optional && got == .string("")) else {
            return optional ? nil : "\(call.name): missing required argument \(want.name)"
        }
        if !want.acceptable.contains(where: { $0 != .string("") && matches(got, $0) }) {
            let options = want.acceptable.map { $0.compact() }.joined(separator: ", ")
            return "\(call.name): \(want.name) = \(clip(got.compact())) is not one of [\(options)]"
        }
        return nil
    }

    /// Whether an output value equals an acceptable value.
    static func matches(_ got: JSONValue, _ want: JSONValue) -> Bool {
        switch (got, want) {
        case (.string(let a), .string(let b)): return standardize(a) == standardize(b)
        case (.int, .int), (.int, .double), (.double, .int), (.double, .double):
            return got.numberValue! == want.numberValue!
        case (.array(let a), .array(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { matches($0, $1) }
        case (.object(let a), .object(let b)):
            for e in a.entries where b[e.key] == nil { return false }
            for e in b.entries {
                // Nested possible-answer dictionaries list acceptable values too.
                let acceptable: [JSONValue]
                if case .array(let options) = e.value { acceptable = options } else { acceptable = [e.value] }
                guard let v = a[e.key] else {
                    if acceptable.contains(.string("")) { continue }
                    return false
                }
                if !acceptable.contains(where: { matches(v, $0) }) && !matches(v, e.value) { return false }
            }
            return true
        default: return got == want
        }
    }

    /// The leaderboard's string standardisation: lowercase, no whitespace, no `,./-_*^`.
    static func standardize(_ s: String) -> String {
        String(
            s.lowercased().unicodeScalars.filter {
                !$0.properties.isWhitespace && !",./-_*^".unicodeScalars.contains($0)
            })
    }
}
