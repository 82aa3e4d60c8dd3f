// The verifiers on hand-written completions: what is extracted, how it is normalised, which
// calls match the possible answers, and what the checker program decides.

import Foundation
import JSON
import Platform
import Testing
import TextData
import Verify

@testable import Teacher

@Suite struct ExactMatchTests {
    @Test(
        "correct answers",
        arguments: [
            ("She has 6 * 7 = 42 apples.\n#### 42", "42"),
            ("#### 1,234", "1234"),
            ("so the total is $1,234.00.", "1234"),
            ("The answer is \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
            ("\\boxed{42.0}", "42"),
            ("first 3, then 5, finally -7", "-7"),
            ("#### Paris ", "paris"),
            ("#### New   York", "new york"),
            ("answer: 0.5", "0.50"),
            ("#### 18 dollars", "18"),
            ("#### -3,000 units", "-3000"),
        ])
    func correct(completion: String, answer: String) {
        let v = ExactMatch.verify(completion, answer: answer, extraction: .auto, pattern: nil, caseSensitive: false)
        #expect(v.correct, "\(v.reason)")
    }

    @Test(
        "incorrect answers",
        arguments: [
            ("#### 41", "42", "#### answer 41, expected 42"),
            ("no digits here", "42", "no final answer found (auto extraction)"),
            ("\\boxed{43} but 42", "42", "boxed answer 43, expected 42"),
            ("#### 1,23", "123", "#### answer \"1,23\", expected \"123\""),
        ])
    func incorrect(completion: String, answer: String, reason: String) {
        let v = ExactMatch.verify(completion, answer: answer, extraction: .auto, pattern: nil, caseSensitive: false)
        #expect(!v.correct)
        #expect(v.reason == reason)
    }

    @Test func modesAndCase() {
        #expect(ExactMatch.extract("x 12 #### 5", .lastNumber, pattern: nil)?.text == "5")
        #expect(ExactMatch.extract("#### 5 and 6", .gsm8k, pattern: nil)?.text == "5 and 6")
        #expect(ExactMatch.extract("The answer is B.", .regex, pattern: "answer is ([A-D])")?.text == "B")
        #expect(ExactMatch.extract("\\boxed{a{b}c}", .boxed, pattern: nil)?.text == "a{b}c")
        let sensitive = ExactMatch.verify(
            "#### Paris", answer: "paris", extraction: .auto, pattern: nil, caseSensitive: true)
        #expect(!sensitive.correct)
    }
}

@Suite struct RegexMatchTests {
    @Test func fullAndSearch() {
        #expect(RegexMatch.verify("  42\n", pattern: "\\d+", mode: .full).correct)
        #expect(!RegexMatch.verify("it is 42", pattern: "\\d+", mode: .full).correct)
        let found = RegexMatch.verify("it is 42", pattern: "\\d+", mode: .search)
        #expect(found == .correct("found \"42\" matching /\\d+/", canonical: "42"))
        #expect(!RegexMatch.verify("none", pattern: "\\d+", mode: .search).correct)
    }

    /// A task's pattern that backtracks catastrophically (`(a+)+$` against "aaa...b" takes 2^n
    /// steps in a backtracking engine) gives its verdict at once: distill matches in linear time.
    @Test func catastrophicPatternsGiveTheirVerdict() {
        let text = String(repeating: "a", count: 3000)
        for mode in [VerifierConfig.MatchMode.full, .search] {
            #expect(!RegexMatch.verify(text + "b", pattern: "(a+)+$", mode: mode).correct)
            #expect(!RegexMatch.verify(text, pattern: "(a|aa)+b", mode: mode).correct)
            #expect(RegexMatch.verify(text, pattern: "(a+)+$", mode: mode).correct)
        }
        #expect(ExactMatch.extract(text + "!", .regex, pattern: "((a|aa)+)!$")?.text == text)
    }

    /// Constructs that need backtracking are refused where the pattern is read: a tasks file
    /// names the line and the construct (exit 65); a verifier's settings list the problem.
    @Test func backtrackingOnlyConstructsAreRefusedAtLoad() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("tasks-\(UUID().uuidString).jsonl")
        defer { try? FileManager.default.removeItem(at: url) }
        try Data(#"{"id": "t1", "prompt": "p", "pattern": "(a)\\1"}"#.utf8 + [10]).write(to: url)
        #expect {
            _ = try TaskReader.read(path: url.path)
        } throws: { error in
            let text = "\(error)"
            return text.contains(url.path) && text.contains("backreference") && (error as? any UserFacingError)?.exitCode == 65
        }
        var config = VerifierConfig(type: .regex)
        config.pattern = "(?>a+)b"
        #expect(config.problems().contains { $0.contains("atomic group") })
    }
}

let weather = ExpectedCall(
    name: "get_weather",
    arguments: [
        (name: "city", acceptable: [.string("Oslo"), .string("Oslo, Norway")]),
        (name: "unit", acceptable: [.string("celsius"), .string("")]),
        (name: "days", acceptable: [.int(3)]),
    ])
let time = ExpectedCall(name: "get_time", arguments: [(name: "zone", acceptable: [.string("CET")])])

@Suite struct FunctionCallTests {
    @Test(
        "accepted",
        arguments: [
            #"{"name": "get_weather", "arguments": {"city": "Oslo", "days": 3}}"#,
            #"<tool_call>{"name":"get_weather","arguments":{"city":"oslo, norway","unit":"Celsius","days":3.0}}</tool_call>"#,
            #"{"name": "get_weather", "arguments": "{\"city\": \"Oslo\", \"days\": 3}"}"#,
            #"```json\n[{"function": {"name": "get_weather", "arguments": {"city": "Oslo", "days": 3}}}]\n```"#,
            #"get_weather(city="Oslo", days=3)"#,
            #"[get_weather(city='Oslo', unit="celsius", days=3)]"#,
            #"I will call get_weather(city = "Oslo" , days = 3, )"#,
            #"Context {"user": {"name": "Bob"}} then get_weather(city="Oslo", days=3)"#,
        ])
    func accepted(output: String) {
        let v = FunctionCallMatch.verify(output, expected: [weather], tools: nil)
        #expect(v.correct, "\(v.reason)")
    }

    @Test(
        "rejected with a reason",
        arguments: [
            (
                #"get_weather(city="Bergen", days=3)"#,
                #"get_weather: city = "Bergen" is not one of ["Oslo", "Oslo, Norway"]"#
            ),
            (#"get_weather(city="Oslo")"#, "get_weather: missing required argument days"),
            (#"get_weather(city="Oslo", days=3, verbose=True)"#, "get_weather: unexpected argument verbose"),
            (#"get_weather(city="Oslo", days="3")"#, #"get_weather: days = "3" is not one of [3]"#),
            (#"get_forecast(city="Oslo", days=3)"#, "called get_forecast, expected get_weather"),
            (
                "The weather is nice.",
                #"malformed: no function call found (expected JSON {"name", "arguments"} or f(a=1, b="x"))"#
            ),
            (
                #"get_weather("Oslo", days=3)"#,
                "malformed: get_weather(...) could not be read: expected an argument name at \"\"Oslo\", days=3)\""
            ),
            (
                #"{"name": "get_weather", "arguments": "{not json"}"#,
                "malformed: call get_weather: arguments string is not a JSON object: {not json"
            ),
            (#"get_weather(city="Oslo", days=3) get_time(zone="CET")"#, "expected 1 call, found 2"),
        ])
    func rejected(output: String, reason: String) {
        let v = FunctionCallMatch.verify(output, expected: [weather], tools: nil)
        #expect(!v.correct)
        #expect(v.reason == reason)
    }

    @Test func parallelCallsMatchInAnyOrder() {
        let output = #"[get_time(zone="cet"), get_weather(city="Oslo", days=3)]"#
        #expect(FunctionCallMatch.verify(output, expected: [weather, time], tools: nil).correct)
        let wrong = FunctionCallMatch.verify(
            #"[get_time(zone="UTC"), get_weather(city="Oslo", days=3)]"#, expected: [weather, time], tools: nil)
        #expect(
            wrong
                == .incorrect(
                    #"no expected call matches: get_time: zone = "UTC" is not one of ["CET"]"#,
                    canonical: #"[{"arguments":{"zone":"utc"},"name":"get_time"},{"arguments":{"city":"oslo","days":3},"name":"get_weather"}]"#,
                    credit: 3.0 / 4))
    }

    @Test func unknownFunctionsAreRejectedWhenToolsAreGiven() {
        let tools: [JSONValue] = [
            .obj(["name": .string("get_weather")]),
            .obj(["type": .string("function"), "function": .obj(["name": .string("get_time")])]),
        ]
        let v = FunctionCallMatch.verify(#"delete_all(confirm=True)"#, expected: [weather], tools: tools)
        #expect(
            v
                == .incorrect(
                    "unknown function delete_all (the task offers get_time, get_weather)",
                    canonical: #"[{"arguments":{"confirm":true},"name":"delete_all"}]"#))
    }

    /// Partial credit, by hand. Units: get_weather lists 3 arguments (city, unit which may be
    /// omitted, days), get_time 1; a produced call counts the arguments it gives, at least 1.
    /// credit = units right / (expected units + surplus units), best over pairings.
    static let creditCases: [(output: String, expected: [ExpectedCall], credit: Double)] = [
        // Right call, 2 of 3 units right (city wrong; unit omitted, as allowed): 2 / 3.
        (#"get_weather(city="Bergen", days=3)"#, [weather], 2.0 / 3),
        // days missing: city and unit right, 2 / 3.
        (#"get_weather(city="Oslo")"#, [weather], 2.0 / 3),
        // All three right plus an unexpected argument: 3 / (3 + 1).
        (#"get_weather(city="Oslo", days=3, verbose=True)"#, [weather], 3.0 / 4),
        // The right call and an extra get_time call (1 surplus unit): 3 / (3 + 1).
        (#"get_weather(city="Oslo", days=3) get_time(zone="CET")"#, [weather], 3.0 / 4),
        // A wrong function name scores nothing: 0 / (3 + 2).
        (#"get_forecast(city="Oslo", days=3)"#, [weather], 0),
        // Two expected calls, only get_weather given: 3 / 4.
        (#"get_weather(city="Oslo", days=3)"#, [weather, time], 3.0 / 4),
        // get_time twice: one pairs (1 unit right), the other is surplus; get_weather missed: 1 / (4 + 1).
        (#"[get_time(zone="CET"), get_time(zone="CET")]"#, [weather, time], 1.0 / 5),
        // Unparseable: 0.
        ("The weather is nice.", [weather], 0),
        (#"get_weather("Oslo", days=3)"#, [weather], 0),
        // Correct: 1.
        (#"[get_time(zone="cet"), get_weather(city="Oslo", days=3)]"#, [weather, time], 1),
    ]

    @Test("partial credit", arguments: creditCases)
    func partialCredit(case c: (output: String, expected: [ExpectedCall], credit: Double)) {
        let (output, expected, credit) = c
        let v = FunctionCallMatch.verify(output, expected: expected, tools: nil)
        #expect(abs(v.credit - credit) < 1e-12, "\(output): \(v.credit), expected \(credit) (\(v.reason))")
        #expect((v.credit == 1) == v.correct)
    }

    /// A call without arguments is one unit, the call itself; the best pairing is searched.
    @Test func creditOfCallsWithoutArgumentsAndTheBestPairing() {
        let ping = ExpectedCall(name: "ping", arguments: [])
        #expect(FunctionCallMatch.verify("ping()", expected: [ping], tools: nil).credit == 1)
        // ping() pairs (1 unit), its argument is surplus: 1 / (1 + 1).
        #expect(FunctionCallMatch.verify("ping(host=1)", expected: [ping], tools: nil).credit == 0.5)
        // Two get_time calls expected, CET and UTC; the produced UTC call must pair with the UTC
        // one, not the first listed: 2 / 2 only with the better pairing.
        let utc = ExpectedCall(name: "get_time", arguments: [(name: "zone", acceptable: [.string("UTC")])])
        let v = FunctionCallMatch.verify(
            #"[get_time(zone="UTC"), get_time(zone="PST")]"#, expected: [time, utc], tools: nil)
        #expect(!v.correct && v.credit == 0.5, "\(v.credit)")
    }

    /// Unknown functions (tools given) pair with nothing; exact, regex and command give 0 or 1.
    @Test func creditIsZeroOrOneOutsideFunctionCalls() {
        let tools: [JSONValue] = [.obj(["name": .string("get_weather")])]
        #expect(
            FunctionCallMatch.verify(#"get_weather(city="Oslo", days=3) delete_all()"#, expected: [weather], tools: tools)
                .credit == 3.0 / 4)
        let exact = Verifier(VerifierConfig(type: .exact))
        let task = TeacherTask(id: "a", prompt: .text("6*7?"), answer: "42")
        #expect(exact.verify("#### 42", for: task).credit == 1)
        #expect(exact.verify("#### 41", for: task).credit == 0)
        #expect(RegexMatch.verify("7", pattern: "[2357]", mode: .full).credit == 1)
        #expect(RegexMatch.verify("9", pattern: "[2357]", mode: .full).credit == 0)
    }

    @Test func pythonLiterals() throws {
        guard case .calls(let calls) = CallParser.parse(#"f(a=[1, 2.5, -3], b={"k": (True, None)}, c='it\'s')"#) else {
            Issue.record("not parsed")
            return
        }
        #expect(calls[0].arguments["a"] == .array([.int(1), .double(2.5), .int(-3)]))
        #expect(calls[0].arguments["b"] == .obj(["k": .array([.bool(true), .null])]))
        #expect(calls[0].arguments["c"] == .string("it's"))
    }
}

@Suite struct CommandCheckTests {
    @Test func exitStatusDecidesAndTheCompletionArrivesOnStdinOrInAFile() {
        var config = VerifierConfig(type: .command)
        config.command = ["sh", "-c", "grep -q 42"]
        let task = TeacherTask(id: "t", prompt: .text("p"), check: [])
        #expect(
            Verifier(config).verify("the answer is 42", for: task)
                == .correct("checker exited 0", canonical: "the answer is 42"))
        #expect(
            Verifier(config).verify("the answer is 41", for: task)
                == .incorrect("checker exited 1", canonical: "the answer is 41"))

        // File mode: the task's check arguments, then the completion file's path.
        config.command = ["sh", "-c", "echo checking $1 for $DISTILL_TASK_ID; grep -q \"$1\" \"$2\"", "sh"]
        config.input = .file
        let withArgs = TeacherTask(id: "t7", prompt: .text("p"), check: ["$(rm -rf nothing) 42"])
        let v = Verifier(config).verify("x $(rm -rf nothing) 42 y", for: withArgs)
        #expect(v.reason == "checker exited 0: checking $(rm -rf nothing) 42 for t7")
        #expect(v.correct && v.canonical == "x $(rm -rf nothing) 42 y")
    }

    @Test func aSlowCheckerIsKilledAtTheTimeout() {
        var config = VerifierConfig(type: .command)
        config.command = ["sleep", "30"]
        config.timeoutSeconds = 1
        let started = Date()
        let v = Verifier(config).verify("x", for: TeacherTask(id: "t", prompt: .text("p")))
        #expect(v == .incorrect("checker timed out after 1 s", canonical: "x"))
        #expect(Date().timeIntervalSince(started) < 5)
    }

    @Test func aMissingProgramIsIncorrectWithAReason() {
        var config = VerifierConfig(type: .command)
        config.command = ["distill-no-such-checker"]
        let v = Verifier(config).verify("x", for: TeacherTask(id: "t", prompt: .text("p")))
        #expect(!v.correct && v.reason.hasPrefix("checker distill-no-such-checker not found on PATH"), "\(v.reason)")
    }
}

@Suite struct TaskReaderTests {
    func write(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tasks-\(UUID().uuidString).jsonl")
            .path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func readsEveryField() throws {
        let path = try write(
            """
            {"id": "a", "prompt": "6*7?", "answer": 42}
            {"id": 7, "messages": [{"role": "user", "content": "hi"}], "pattern": "h.*"}

            {"id": "c", "prompt": "w", "tools": [{"name": "get_time"}], "calls": [{"get_time": {"zone": ["CET", ""]}}]}
            {"id": "d", "prompt": "code", "check": ["tests/t.py", "-q"]}
            """)
        let tasks = try TaskReader.read(path: path)
        #expect(tasks.map(\.id) == ["a", "7", "c", "d"])
        #expect(tasks[0].answer == "42" && tasks[0].line == 1)
        #expect(tasks[1].prompt == .messages([ChatMessage(role: "user", content: "hi")]))
        #expect(
            tasks[2].calls == [
                ExpectedCall(name: "get_time", arguments: [(name: "zone", acceptable: [.string("CET"), .string("")])])
            ])
        #expect(tasks[2].line == 4)
        #expect(tasks[3].check == ["tests/t.py", "-q"])
    }

    @Test(
        "errors name file:line:column and the fix",
        arguments: [
            (#"{"prompt": "x"}"#, ":1:1: missing field \"id\""),
            (#"{"id": "a", "prompt": 5}"#, ":1:23: field \"prompt\" is a number, not a string"),
            (#"{"id": "a"}"#, ":1:1: task \"a\" has neither \"prompt\" nor \"messages\""),
            (
                #"{"id": "a", "prompt": "x", "calls": [{"f": {"x": 1}}]}"#,
                ":1:37: calls[0].f.x must be a non-empty array of acceptable values; wrap a single value in brackets: [1]"
            ),
            (
                #"{"id": "a", "prompt": "x", "pattern": "("}"#,
                ":1:39: field \"pattern\" is not a valid regular expression"
            ),
            (#"{"id": "a", "prompt": "x", "answr": "1"}"#, ":1:37: unknown field \"answr\""),
            (
                #"{"id": "a", "prompt": "x", "tools": [{"name": "f"}], "calls": [{"g": {}}]}"#,
                ":1:63: expected call g is not among the task's tools (f)"
            ),
            (
                "{\"id\": \"a\", \"prompt\": \"x\"}\n{\"id\": \"a\", \"prompt\": \"y\"}",
                ":2:8: duplicate task id \"a\" (first on line 1)"
            ),
        ])
    func errors(text: String, message: String) throws {
        let path = try write(text)
        do {
            _ = try TaskReader.read(path: path)
            Issue.record("accepted \(text)")
        } catch let error as DataError {
            #expect(error.description.hasPrefix(path + message), "\(error)")
            #expect(error.kind == .badData)
        }
    }

    @Test func configsRefuseUnknownKeys() throws {
        let verifier = #"{"type": "exact", "extrct": "boxed"}"#
        let error = #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(VerifierConfig.self, from: Data(verifier.utf8))
        }
        #expect(
            String(describing: error).contains(#"unknown key "extrct" in the verifier; accepted keys: case_sensitive"#))
        let teacher = #"{"base_url": "http://h/v1", "model": "m", "temprature": 0}"#
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(OpenAITeacherConfig.self, from: Data(teacher.utf8))
        }
        let ok = try JSONDecoder().decode(
            OpenAITeacherConfig.self, from: Data(#"{"base_url": "http://h/v1", "model": "m", "top_p": 0.9}"#.utf8))
        #expect(ok.topP == 0.9 && ok.concurrency == 8 && ok.samples == 1)
    }

    @Test func verifierRequirementsAreCheckedBeforeSampling() throws {
        let tasks = [TeacherTask(id: "a", prompt: .text("x"), answer: "1", file: "t.jsonl", line: 3)]
        #expect(
            throws: DataError.malformed(
                file: "t.jsonl", line: 3, column: 1,
                reason: "task \"a\" has no \"calls\", which the function-call verifier needs",
                hint: "add the field, or choose the verifier that matches the task set")
        ) { try Verifier(VerifierConfig(type: .functionCall)).validate(tasks) }
        #expect(throws: Never.self) { try Verifier(VerifierConfig()).validate(tasks) }
    }
}
