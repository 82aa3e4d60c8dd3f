// `distill verify`: scores a small mixed task set, prints JSON, and exits 65/74/64 on bad
// rows, missing files and bad options.

import Foundation
import Platform
import Testing

@Suite struct VerifyCommandTests {
    func files(tasks: String, outputs: String) throws -> (tasks: String, outputs: String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distill-verify-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let t = dir.appendingPathComponent("tasks.jsonl").path
        let o = dir.appendingPathComponent("outputs.jsonl").path
        try tasks.write(toFile: t, atomically: true, encoding: .utf8)
        try outputs.write(toFile: o, atomically: true, encoding: .utf8)
        return (t, o)
    }

    let tasks = """
        {"id": "a", "prompt": "6*7?", "answer": "42"}
        {"id": "b", "prompt": "weather", "calls": [{"get_weather": {"city": ["Oslo"], "unit": ["celsius", ""]}}]}
        {"id": "c", "prompt": "a prime", "pattern": "[2357]"}
        {"id": "d", "prompt": "unused", "answer": "1"}
        """

    struct Report: Decodable {
        struct Row: Decodable {
            var line: Int
            var id: String
            var verifier: String
            var correct: Bool
            var credit: Double
            var reason: String
        }
        struct Summary: Decodable {
            var outputs: Int
            var correct: Int
            var pass_rate: Double
            var tasks_solved: Int
            var tasks_without_outputs: Int
            var pass_at_1: Double
            var mean_credit: Double
        }
        var rows: [Row]
        var summary: Summary
    }

    @Test func scoresMixedVerifiers() throws {
        let f = try files(
            tasks: tasks,
            outputs: """
                {"id": "a", "completion": "6*7 = 42\\n#### 42"}
                {"id": "a", "completion": "#### 41"}
                {"task_id": "b", "text": "get_weather(city=\\"Oslo\\")"}
                {"task_id": "b", "text": "get_weather(city=\\"Bergen\\")"}
                {"id": "c", "completion": "9"}
                """)
        let r = try distill(["verify", "--tasks", f.tasks, "--outputs", f.outputs, "--json"])
        #expect(r.status == 0, "\(r.err)")
        let report = try JSONDecoder().decode(Report.self, from: Data(r.out.utf8))
        #expect(report.rows.map(\.correct) == [true, false, true, false, false])
        #expect(report.rows.map(\.verifier) == ["exact", "exact", "function-call", "function-call", "regex"])
        #expect(report.rows[1].reason == "#### answer 41, expected 42")
        // Bergen: of get_weather's 2 units, the omitted optional unit is right and city is wrong.
        #expect(report.rows.map(\.credit) == [1, 0, 1, 0.5, 0])
        #expect(report.summary.outputs == 5 && report.summary.correct == 2 && report.summary.tasks_without_outputs == 1)
        // pass@1 = mean over tasks a (1/2), b (1/2), c (0) = 1/3; mean credit: a 1/2, b 3/4, c 0 -> 5/12
        #expect(abs(report.summary.pass_at_1 - 1.0 / 3) < 1e-12)
        #expect(abs(report.summary.mean_credit - 5.0 / 12) < 1e-12)

        let text = try distill(["verify", "--tasks", f.tasks, "--outputs", f.outputs])
        #expect(text.out.contains("incorrect (credit 0.500)  get_weather: city"))
        #expect(
            text.out.contains(
                "2/5 correct (40.0%), pass@1 0.333, mean credit 0.417; 2 of 3 tasks solved; 1 task without outputs"))
    }

    @Test func commandVerifierGetsTheCompletionOnStdin() throws {
        let f = try files(
            tasks: #"{"id": "p", "prompt": "say ok", "check": ["ok"]}"#,
            outputs: #"{"id": "p", "completion": "ok then"}"# + "\n" + #"{"id": "p", "completion": "no"}"#)
        let r = try distill([
            "verify", "--tasks", f.tasks, "--outputs", f.outputs, "--json", "--verifier", "command", "--command",
            "grep -q",
        ])
        #expect(r.status == 0, "\(r.err)")
        let report = try JSONDecoder().decode(Report.self, from: Data(r.out.utf8))
        #expect(report.rows.map(\.correct) == [true, false])
    }

    @Test func helpDescribesTheOutputsFormat() throws {
        let r = try distill(["verify", "--help"])
        #expect(r.status == 0)
        #expect(r.out.contains("USAGE:") && r.out.contains("task_id"))
    }

    @Test func errorsNameTheLineAndExitWithTheirClass() throws {
        let f = try files(tasks: tasks, outputs: #"{"id": "zz", "completion": "x"}"#)
        let unknown = try distill(["verify", "--tasks", f.tasks, "--outputs", f.outputs])
        #expect(unknown.status == 65)
        #expect(unknown.err.contains("outputs.jsonl:1:8: no task with id \"zz\""))

        let missing = try distill(["verify", "--tasks", f.tasks + ".missing", "--outputs", f.outputs])
        #expect(missing.status == 74)

        let wrongVerifier = try distill(["verify", "--tasks", f.tasks, "--outputs", f.outputs, "--verifier", "exact"])
        #expect(wrongVerifier.status == 65)

        let badOption = try distill(["verify", "--tasks", f.tasks, "--outputs", f.outputs, "--mode", "fuzzy"])
        #expect(badOption.status == 2)
        #expect(badOption.err.contains("--mode must be one of full, search"))
    }
}
