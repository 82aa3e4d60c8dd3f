import Foundation
import JSON
import Platform

/// A function call found in a completion.
package struct ParsedCall: Sendable, Equatable {
    package var name: String
    package var arguments: JSONValue.JSONObject
}

/// Finds function calls in model output.
///
/// Accepted forms, tried in this order:
/// - JSON: `{"name": "f", "arguments": {...}}` (also `"parameters"`, arguments given as a JSON
///   string as OpenAI's `tool_calls` do, `{"function": {...}}` wrappers, `{"tool_calls": [...]}`),
///   one object, an array of them, or several objects anywhere in the text (inside code fences
///   or `<tool_call>` tags, say).
/// - Python: `f(a=1, b="x")` or `[f(a=1), g(b=[1, 2])]` with keyword arguments whose values are
///   Python literals (numbers, strings, True/False/None, lists, tuples, dicts).
package enum CallParser {
    package enum Outcome: Sendable, Equatable {
        case calls([ParsedCall])
        /// Nothing call-shaped was found, or what was found could not be read; the reason says which.
        case failure(String)
    }

    package static func parse(_ text: String) -> Outcome {
        let bytes = Array(text.utf8)
        var jsonCalls: [ParsedCall] = []
        var jsonProblem: String?
        // The whole text as one JSON document first, then every balanced {...} / [...] in it.
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if let whole = try? JSONValue.parse(Array(trimmed.utf8)) {
            switch calls(in: whole) {
            case .success(let c) where !c.isEmpty: return .calls(c)
            case .failure(let p): jsonProblem = p
            default: break
            }
        }
        if jsonProblem == nil {
            var i = 0
            while i < bytes.count {
                guard bytes[i] == UInt8(ascii: "{") || bytes[i] == UInt8(ascii: "["),
                    let end = balancedEnd(bytes, from: i),
                    let value = try? JSONValue.parse(bytes[i..<end])
                else {
                    i += 1
                    continue
                }
                switch calls(in: value) {
                case .success(let c) where !c.isEmpty:
                    jsonCalls += c
                    i = end
                case .failure(let p):
                    jsonProblem = jsonProblem ?? p
                    i = end
                default: i = end  // JSON, but not a call: skip it whole (a nested {"name": ...} is data)
                }
            }
        }
        if let jsonProblem { return .failure(jsonProblem) }
        if !jsonCalls.isEmpty { return .calls(jsonCalls) }
        return PythonCalls.parse(text)
    }

    private enum Found { case success([ParsedCall]), failure(String) }

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

/// Python-style calls: `name(kw=literal, ...)`, alone or in a list.
enum PythonCalls {
    static func parse(_ text: String) -> CallParser.Outcome {
        let s = Array(text.unicodeScalars)
        var calls: [ParsedCall] = []
        var firstProblem: String?
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
                if firstProblem == nil { firstProblem = "\(name)(...) could not be read: \(e.reason)" }
                i = j
            } catch {
                i = j
            }
        }
        if !calls.isEmpty { return .calls(calls) }
        return .failure(
            firstProblem ?? "no function call found (expected JSON {\"name\", \"arguments\"} or f(a=1, b=\"x\"))")
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

    mutating func string() throws -> String {
        let quote = s[pos]
        pos += 1
        var out = String.UnicodeScalarView()
        while pos < s.count {
            let c = s[pos]
            pos += 1
            if c == quote { return String(out) }
            if c == "\\" {
                guard pos < s.count else { break }
                let e = s[pos]
                pos += 1
                switch e {
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                default: out.append(e)
                }
            } else {
                out.append(c)
            }
        }
        throw fail("unterminated string")
    }
}

/// The `function-call` verifier: calls in the output against expected calls in possible-answer
/// form, following the Berkeley Function Calling Leaderboard's AST checker: names equal, no
/// unexpected argument, every argument without `""` among its acceptable values present, each
/// value one of the acceptable ones. Strings compare case-insensitively ignoring whitespace and
/// `,./-_*^` (the leaderboard's standardisation); integers and floats compare numerically;
/// lists element by element; dictionaries key by key. Parallel calls match in any order.
package enum FunctionCallMatch {
    package static func verify(_ completion: String, expected: [ExpectedCall], tools: [JSONValue]?) -> Verdict {
        let found: [ParsedCall]
        switch CallParser.parse(completion) {
        case .failure(let reason): return .incorrect("malformed: \(reason)")
        case .calls(let c): found = c
        }
        if let tools {
            let known = Set(tools.compactMap(toolName))
            if let unknown = found.first(where: { !known.contains($0.name) }) {
                return .incorrect(
                    "unknown function \(unknown.name) (the task offers \(known.sorted().joined(separator: ", ")))")
            }
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

    static func toolName(_ tool: JSONValue) -> String? {
        guard case .object(let o) = tool else { return nil }
        if case .object(let f)? = o["function"] { return f["name"]?.stringValue }
        return o["name"]?.stringValue
    }

    /// Why `call` does not satisfy `expected`, or nil when it does.
    static func mismatch(_ call: ParsedCall, _ expected: ExpectedCall) -> String? {
        guard call.name == expected.name else { return "called \(call.name), expected \(expected.name)" }
        for arg in call.arguments.entries where !expected.arguments.contains(where: { $0.name == arg.key }) {
            return "\(call.name): unexpected argument \(arg.key)"
        }
        for want in expected.arguments {
            guard let got = call.arguments[want.name] else {
                if want.acceptable.contains(.string("")) { continue }
                return "\(call.name): missing required argument \(want.name)"
            }
            if !want.acceptable.contains(where: { $0 != .string("") && matches(got, $0) }) {
                let options = want.acceptable.map { $0.compact() }.joined(separator: ", ")
                return "\(call.name): \(want.name) = \(clip(got.compact())) is not one of [\(options)]"
            }
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
