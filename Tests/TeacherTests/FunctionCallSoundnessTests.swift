// The function-call verifier is the soundness signal distillation rests on: an answer is
// accepted only if every call in it was read and matched. Regression cases for each way it
// once accepted a wrong answer, typed checks against tool schemas, and a generated table of
// every call syntax the docs promise against every way to be wrong.

import Foundation
import JSON
import Testing
import Verify

private func verify(
    _ output: String, _ expected: [ExpectedCall], tools: [JSONValue]? = nil, types: VerifierConfig.TypeCheck = .schema
) -> Verdict {
    FunctionCallMatch.verify(output, expected: expected, tools: tools, types: types)
}

private let area = ExpectedCall(name: "area", arguments: [(name: "w", acceptable: [.int(5)]), (name: "h", acceptable: [.int(3)])])

@Suite struct UnreadableCallsTests {
    /// An extra call that cannot be read makes the answer wrong; it never just vanishes.
    @Test(arguments: [
        (#"[area(w=5, h=3), area(5, 3)]"#, "positional argument"),
        (#"[area(w=5, h=3), area(w=width, h=3)]"#, #""width" is not a literal"#),
        (#"area(w=5, h=3) and then area(w=5, h=)"#, "area(...) could not be read"),
        (#"[area(w=5, h=3), area(w=5, h=3, h=4)]"#, "given twice"),
    ])
    func anUnreadableCallFailsTheAnswer(output: String, named: String) {
        let v = verify(output, [area])
        #expect(!v.correct)
        #expect(v.reason.contains("could not be read") && v.reason.contains(named), "\(v.reason)")
    }

    /// A dictionary argument with a "name" key is data, not a call.
    @Test func aDictionaryArgumentIsNotACall() {
        let expected = ExpectedCall(
            name: "update_user",
            arguments: [(name: "user_id", acceptable: [.int(7)]), (name: "info", acceptable: [.obj(["name": .string("Ann")])])])
        for output in [
            #"update_user(user_id=7, info={"name": "Ann"})"#, #"update_user(user_id=7, info={'name': 'Ann'})"#,
            #"Sure: update_user(user_id=7, info={"name": "Ann", })."#,
        ] {
            let v = verify(output, [expected])
            #expect(v.correct, "\(output): \(v.reason)")
        }
        let wrong = verify(#"update_user(user_id=7, info={"name": "Bob"})"#, [expected])
        #expect(!wrong.correct && wrong.reason.hasPrefix("update_user: info"), "\(wrong.reason)")
    }
}

/// A JSON call object holds a name and arguments (OpenAI's id and type allowed): a call with
/// anything else in it, seen from SmolLM2 copying the schema's "required" into its call, is
/// not credited, and neither is one that gives both "arguments" and "parameters".
@Suite struct CallObjectKeysTests {
    @Test func extraKeysInACallObjectFailTheAnswer() {
        let ok = verify(#"<tool_call>[{"name": "area", "arguments": {"w": 5, "h": 3}}]</tool_call>"#, [area])
        #expect(ok.correct, "\(ok.reason)")
        let openAI = verify(#"{"id": "call_1", "type": "function", "function": {"name": "area", "arguments": "{\"w\": 5, \"h\": 3}"}}"#, [area])
        #expect(openAI.correct, "\(openAI.reason)")
        let junk = verify(#"<tool_call>[{"name": "area", "arguments": {"w": 5, "h": 3}, "required": ["w", "h"]}]</tool_call>"#, [area])
        #expect(!junk.correct && junk.reason.contains("unexpected key \"required\""), "\(junk.reason)")
        let both = verify(#"{"name": "area", "arguments": {"w": 5, "h": 3}, "parameters": {"w": 1}}"#, [area])
        #expect(!both.correct && both.reason.contains("both"), "\(both.reason)")
    }
}

@Suite struct PythonStringTests {
    private func string(_ literal: String) throws -> String? {
        guard case .calls(let calls) = CallParser.parse("f(s=\(literal))") else { return nil }
        return calls[0].arguments["s"]?.stringValue
    }

    /// Escapes decode as Python decodes them (each expected value checked against CPython).
    @Test(arguments: [
        (#"'S\xe3o Paulo'"#, "São Paulo"), (#""S\u00e3o Paulo""#, "São Paulo"), (#"'S\U000000e3o'"#, "São"),
        (#"'S\343o'"#, "São"), (#"'\N{LATIN SMALL LETTER A WITH TILDE}'"#, "ã"), (#"'a\tb\nc'"#, "a\tb\nc"),
        (#"'\a\b\f\v\0'"#, "\u{07}\u{08}\u{0C}\u{0B}\u{00}"), (#"'it\'s'"#, "it's"), (#""say \"hi\"""#, "say \"hi\""),
        (#"'back\\slash'"#, "back\\slash"), (#"'\d+'"#, "\\d+"), (#"r'\d+\n'"#, "\\d+\\n"), (#"u'x'"#, "x"),
        (#"'''tri'ple'''"#, "tri'ple"), (#""""a"b""""#, "a\"b"), ("'joined \\\nline'", "joined line"),
    ])
    func escapesDecodeAsInPython(literal: String, value: String) throws {
        #expect(try string(literal) == value)
    }

    @Test func malformedLiteralsAreUnreadable() {
        for literal in [#"'\x4'"#, #"'\N{NO SUCH NAME}'"#, #"f'{x}'"#, "'open", "'new\nline'"] {
            guard case .failure(let reason) = CallParser.parse("f(s=\(literal))") else {
                Issue.record("\(literal) was read")
                continue
            }
            #expect(reason.hasPrefix("f(...) could not be read"), "\(reason)")
        }
    }

    @Test func escapedValuesMatch() {
        let weather = ExpectedCall(name: "weather", arguments: [(name: "city", acceptable: [.string("São Paulo")])])
        for output in [#"weather(city='S\xe3o Paulo')"#, #"weather(city="S\u00e3o Paulo")"#] {
            #expect(verify(output, [weather]).correct, "\(output)")
        }
    }
}

/// A tool schema with every type the typed check knows.
private let bookTool: JSONValue = .obj([
    "name": .string("book"),
    "parameters": .obj([
        "type": .string("object"),
        "properties": .obj([
            "guests": .obj(["type": .string("integer")]),
            "budget": .obj(["type": .string("number")]),
            "breakfast": .obj(["type": .string("boolean")]),
            "city": .obj(["type": .string("string")]),
            "nights": .obj(["type": .string("array"), "items": .obj(["type": .string("integer")])]),
            "room": .obj(["type": .string("string"), "enum": .array([.string("single"), .string("double")])]),
            "note": .obj(["type": .string("string")]),
            "contact": .obj([
                "type": .string("dict"),
                "properties": .obj(["email": .obj(["type": .string("string")]), "phone": .obj(["type": .string("string")])]),
                "required": .array([.string("email")]),
            ]),
        ]),
        "required": .array([.string("guests"), .string("city"), .string("note")]),
    ]),
])

private let book = ExpectedCall(
    name: "book",
    arguments: [
        (name: "guests", acceptable: [.int(2)]), (name: "budget", acceptable: [.int(300), .string("")]),
        (name: "breakfast", acceptable: [.bool(true), .string("")]), (name: "city", acceptable: [.string("Oslo")]),
        (name: "nights", acceptable: [.array([.int(1), .int(2)]), .string("")]),
        (name: "room", acceptable: [.string("double"), .string("")]),
        // The possible answer says note may be omitted; the schema requires it.
        (name: "note", acceptable: [.string("late arrival"), .string("")]),
        (name: "contact", acceptable: [.obj(["email": .string("a@b.no")]), .string("")]),
    ])

@Suite struct ToolSchemaTests {
    private let good = #"book(guests=2, budget=300.0, breakfast=True, city="Oslo", nights=[1, 2], room="double", note="late arrival", contact={"email": "a@b.no"})"#

    @Test func aWellTypedCallPasses() {
        let v = verify(good, [book], tools: [bookTool])
        #expect(v.correct, "\(v.reason)")
    }

    @Test(arguments: [
        (#"guests=2"#, #"guests=2.0"#, "book.guests = 2.0 is a float, but the tool's schema says integer"),
        (#"budget=300.0"#, #"budget=True"#, "book.budget = true is a boolean, but the tool's schema says number"),
        (#"breakfast=True"#, #"breakfast=1"#, "book.breakfast = 1 is an integer, but the tool's schema says boolean"),
        (#"nights=[1, 2]"#, #"nights="1, 2""#, #"book.nights = "1, 2" is a string, but the tool's schema says array"#),
        (#"nights=[1, 2]"#, #"nights=[1, 2.5]"#, "book.nights[1] = 2.5 is a float, but the tool's schema says integer"),
        (#"room="double""#, #"room="suite""#, #"book.room = "suite" is not one of the allowed values ["single", "double"]"#),
        (#"note="late arrival", "#, "", "book: missing required argument note (required by the tool's schema)"),
        (#"guests=2"#, #"guests=2, pets=1"#, "book: unexpected argument pets (the tool's parameters are"),
        (#"contact={"email": "a@b.no"}"#, #"contact={"phone": "1"}"#, "book.contact: missing required key email"),
        (#"contact={"email": "a@b.no"}"#, #"contact={"email": "a@b.no", "fax": "2"}"#, "book.contact: unexpected key fax"),
    ])
    func aMistypedCallFails(replace: String, with replacement: String, reason: String) {
        let output = good.replacingOccurrences(of: replace, with: replacement)
        let v = verify(output, [book], tools: [bookTool])
        #expect(!v.correct)
        #expect(v.reason.hasPrefix(reason), "\(output): \(v.reason)")
        // A call breaking its tool's schema pairs with no expected call: it earns nothing.
        #expect(v.credit == 0, "\(output): credit \(v.credit)")
    }

    /// Lenient mode keeps the leaderboard's looser comparison: 2.0 is 2, the schema names only.
    @Test func lenientModeComparesNumerically() {
        let output = good.replacingOccurrences(of: "guests=2", with: "guests=2.0")
        #expect(verify(output, [book], tools: [bookTool], types: .lenient).correct)
        #expect(!verify(output.replacingOccurrences(of: "book(", with: "rent("), [book], tools: [bookTool], types: .lenient).correct)
    }

    /// `""` for an argument the possible answer marks optional counts as omitting it, as the
    /// leaderboard counts it; not when the schema requires the argument.
    @Test func anEmptyStringOmitsAnOptionalArgumentOnly() {
        let emptyRoom = good.replacingOccurrences(of: #"room="double""#, with: #"room="""#)
        #expect(verify(emptyRoom, [book], tools: [bookTool]).correct)
        #expect(verify(emptyRoom, [book]).correct)
        let emptyNote = good.replacingOccurrences(of: #"note="late arrival""#, with: #"note="""#)
        let v = verify(emptyNote, [book], tools: [bookTool])
        #expect(!v.correct && v.reason.hasPrefix(#"book: note = "" is not one of"#), "\(v.reason)")
        // Without a schema the possible answer alone decides: note may be omitted.
        #expect(verify(emptyNote, [book]).correct)
        // A required argument (no "" among its values) given as "" is wrong either way.
        let emptyCity = good.replacingOccurrences(of: #"city="Oslo""#, with: #"city="""#)
        #expect(!verify(emptyCity, [book]).correct)
    }
}

// MARK: - Every syntax against every way to be wrong

/// Made-up tools with every parameter kind, one of them with a dotted name.
private let tableTools: [JSONValue] = [
    .obj([
        "name": .string("convert"),
        "parameters": .obj([
            "type": .string("object"),
            "properties": .obj([
                "amount": .obj(["type": .string("number")]),
                "to": .obj(["type": .string("string"), "enum": .array([.string("usd"), .string("eur"), .string("nok")])]),
                "rounded": .obj(["type": .string("boolean")]),
            ]),
            "required": .array([.string("amount"), .string("to")]),
        ]),
    ]),
    .obj([
        "type": .string("function"),
        "function": .obj([
            "name": .string("schedule"),
            "parameters": .obj([
                "type": .string("object"),
                "properties": .obj([
                    "title": .obj(["type": .string("string")]),
                    "day": .obj(["type": .string("integer")]),
                    "attendees": .obj(["type": .string("array"), "items": .obj(["type": .string("string")])]),
                    "options": .obj([
                        "type": .string("object"),
                        "properties": .obj([
                            "remind": .obj(["type": .string("boolean")]), "minutes": .obj(["type": .string("integer")]),
                        ]),
                    ]),
                ]),
                "required": .array([.string("title"), .string("day")]),
            ]),
        ]),
    ]),
    .obj([
        "name": .string("math.factorial"),
        "parameters": .obj([
            "type": .string("object"), "properties": .obj(["n": .obj(["type": .string("integer")])]),
            "required": .array([.string("n")]),
        ]),
    ]),
]

/// A call as the generator builds it: a name and arguments in order.
private struct Call: Sendable {
    var name: String
    var arguments: [(String, JSONValue)]

    var expected: ExpectedCall { ExpectedCall(name: name, arguments: arguments.map { ($0.0, [$0.1]) }) }
    var argumentObject: JSONValue { .object(.init(arguments.map { (key: $0.0, value: $0.1) })) }
    var json: JSONValue { .obj(["name": .string(name), "arguments": argumentObject]) }
    var argumentsJSON: String { argumentObject.compact() }

    func python() -> String {
        func literal(_ v: JSONValue) -> String {
            switch v {
            case .null: return "None"
            case .bool(let b): return b ? "True" : "False"
            case .int(let i): return String(i)
            case .double(let d): return "\(d)"
            case .string(let s): return "'" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'"
            case .array(let items): return "[" + items.map(literal).joined(separator: ", ") + "]"
            case .object(let o): return "{" + o.entries.map { "'\($0.key)': " + literal($0.value) }.joined(separator: ", ") + "}"
            }
        }
        return name + "(" + arguments.map { "\($0.0)=" + literal($0.1) }.joined(separator: ", ") + ")"
    }
}

private let convertCall = Call(name: "convert", arguments: [("amount", .double(12.5)), ("to", .string("eur")), ("rounded", .bool(true))])
private let scheduleCall = Call(
    name: "schedule",
    arguments: [
        ("title", .string("Standup, daily")), ("day", .int(3)), ("attendees", .array([.string("Ann"), .string("Bo")])),
        ("options", .obj(["remind": .bool(true), "minutes": .int(10)])),
    ])
private let factorialCall = Call(name: "math.factorial", arguments: [("n", .int(5))])

/// The call syntaxes docs/teacher.md promises, each rendering a list of calls as a model might.
private let syntaxes: [(String, @Sendable ([Call]) -> String)] = [
    ("python", { $0.map { $0.python() }.joined(separator: "\n") }),
    ("python list", { "[" + $0.map { $0.python() }.joined(separator: ", ") + "]" }),
    ("json object", { $0.map { $0.json.compact() }.joined(separator: "\n") }),
    ("json list", { JSONValue.array($0.map(\.json)).compact() }),
    (
        "arguments as a JSON string",
        { calls in
            calls.map { c in
                JSONValue.obj(["name": .string(c.name), "arguments": .string(c.argumentsJSON)]).compact()
            }.joined(separator: " ")
        }
    ),
    (
        "openai tool_calls",
        { calls in
            JSONValue.obj([
                "tool_calls": .array(
                    calls.map { c in
                        .obj([
                            "type": .string("function"),
                            "function": .obj(["name": .string(c.name), "arguments": .string(c.argumentsJSON)]),
                        ])
                    })
            ]).compact()
        }
    ),
    ("tool_call tags", { $0.map { "<tool_call>\($0.json.compact())</tool_call>" }.joined(separator: "\n") }),
    ("code fence", { "```json\n" + JSONValue.array($0.map(\.json)).compact() + "\n```" }),
    ("prose around", { "Sure, here it is: " + $0.map { $0.python() }.joined(separator: " and ") + ". Let me know!" }),
]

/// Ways to be wrong, each turning the right calls into a wrong answer (an extra text appended
/// where the mistake is not a call at all).
private let mistakes: [(String, @Sendable ([Call]) -> (calls: [Call], extra: String))] = [
    ("extra call", { ($0 + [factorialCall], "") }),
    ("duplicate call", { ($0 + [$0[0]], "") }),
    ("missing call", { (Array($0.dropLast()), "") }),
    ("wrong name", { calls in var c = calls; c[0].name = "convert_v2"; return (c, "") }),
    ("missing required", { calls in var c = calls; c[0].arguments.removeFirst(); return (c, "") }),
    ("unknown argument", { calls in var c = calls; c[0].arguments.append(("verbose", .bool(true))); return (c, "") }),
    ("wrong type", { calls in var c = calls; c[1].arguments[1].1 = .string("3"); return (c, "") }),
    ("wrong value", { calls in var c = calls; c[0].arguments[1].1 = .string("usd"); return (c, "") }),
    (
        "nested value", { calls in var c = calls; c[1].arguments[3].1 = .obj(["remind": .bool(true), "minutes": .int(15)]); return (c, "") }
    ),
    (
        "nested extra key",
        { calls in
            var c = calls
            c[1].arguments[3].1 = .obj(["remind": .bool(true), "minutes": .int(10), "channel": .string("sms")])
            return (c, "")
        }
    ),
    ("unreadable call beside", { ($0, "\nconvert(12.5, 'eur')") }),
    ("unreadable argument beside", { ($0, "\nmath.factorial(n=five)") }),
]

@Suite struct CallSyntaxTableTests {
    fileprivate static let right = [convertCall, scheduleCall]

    @Test(arguments: syntaxes.map(\.0))
    func everySyntaxOfTheRightCallsIsAccepted(syntax: String) {
        let render = syntaxes.first { $0.0 == syntax }!.1
        let output = render(Self.right)
        for (tools, types) in [(tableTools, VerifierConfig.TypeCheck.schema), (tableTools, .lenient)] as [([JSONValue]?, VerifierConfig.TypeCheck)]
            + [(nil, .schema)]
        {
            let v = verify(output, Self.right.map(\.expected), tools: tools, types: types)
            #expect(v.correct, "\(syntax), tools \(tools != nil), \(types): \(output) -> \(v.reason)")
            #expect(v.credit == 1, "\(syntax): a correct answer's credit is 1, got \(v.credit)")
        }
        // A dotted tool name reads in every syntax too.
        let dotted = render([factorialCall])
        #expect(verify(dotted, [factorialCall.expected], tools: tableTools).correct, "\(dotted)")
    }

    /// The invariant: an answer is accepted only if every call in it was read and matched, in
    /// every syntax, with and without tool schemas.
    @Test(arguments: syntaxes.map(\.0))
    func everyMistakeInEverySyntaxIsRejected(syntax: String) {
        let render = syntaxes.first { $0.0 == syntax }!.1
        for (mistake, apply) in mistakes {
            let (calls, extra) = apply(Self.right)
            let output = render(calls) + extra
            for (tools, types) in [(tableTools, VerifierConfig.TypeCheck.schema), (tableTools, .lenient)] as [([JSONValue]?, VerifierConfig.TypeCheck)]
                + [(nil, .schema)]
            {
                let v = verify(output, Self.right.map(\.expected), tools: tools, types: types)
                #expect(!v.correct, "\(mistake) in \(syntax), tools \(tools != nil), \(types): \(output) accepted: \(v.reason)")
                // Partial credit is 1 exactly when the answer is accepted.
                #expect(v.credit < 1 && v.credit >= 0, "\(mistake) in \(syntax): credit \(v.credit)")
            }
        }
    }
}
