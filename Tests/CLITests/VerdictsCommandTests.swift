// `distill verdicts build` and `distill verdicts cascade` as a user runs them: the files they
// write, the RouteLLM CSV, and the exit codes of mistakes (2 usage, 65 bad data, 74 missing
// files), each message naming the place.

import Foundation
import Testing

@Suite struct VerdictsCommandTests {
    /// An eval run directory with a weak and a strong arm on six tasks (4 samples each).
    func runDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distill-verdicts-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var tasks = "", rows = ""
        for t in 0..<6 {
            tasks += #"{"id": "t\#(t)", "prompt": "What is \#(t) + \#(t)?", "answer": "\#(2 * t)"}"# + "\n"
            for (arm, right) in [("weak", t % 3 == 0 ? 3 : 1), ("strong", 4)] {
                let samples = (0..<4).map { i in
                    let ok = i < right
                    return
                        #"{"seed":\#(i),"text":"x","correct":\#(ok),"canonical":"\#(ok ? String(2 * t) : "9\(i)")","reason":"","tokens":5,"finish_reason":"stop","prompt_tokens":12,"latency":0.1}"#
                }
                rows +=
                    #"{"arm":"\#(arm)","task_id":"t\#(t)","samples":[\#(samples.joined(separator: ","))],"correct":\#(right)}"#
                    + "\n"
            }
        }
        let tasksPath = dir.appendingPathComponent("tasks.jsonl").path
        try tasks.write(toFile: tasksPath, atomically: true, encoding: .utf8)
        try rows.write(to: dir.appendingPathComponent("eval.tasks.jsonl"), atomically: true, encoding: .utf8)
        let report =
            #"{"tasks": "\#(tasksPath)", "arms": [{"name": "weak", "model": "w", "checksum": "xxh64:1", "parameters": 1000}, {"name": "strong", "model": "s", "checksum": "xxh64:2", "parameters": 9000}]}"#
        try report.write(to: dir.appendingPathComponent("eval.json"), atomically: true, encoding: .utf8)
        return dir
    }

    @Test func buildThenCascadeWriteTheirFiles() throws {
        let dir = try runDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let table = dir.appendingPathComponent("v.jsonl").path, csv = dir.appendingPathComponent("v.csv").path
        let built = try distill(["verdicts", "build", dir.path, "-o", table, "--routellm-csv", csv])
        #expect(built.status == 0, "\(built.err)")
        #expect(
            built.out.contains("6 tasks, 2 models")
                && built.out.contains("weak (eval): 6 tasks, 24 samples, 10 correct"))
        let csvText = try String(contentsOfFile: csv, encoding: .utf8)
        #expect(csvText.hasPrefix("prompt,weak,strong\r\nWhat is 0 + 0?,True,True\r\n"))

        let prefix = dir.appendingPathComponent("c").path
        let run = try distill([
            "verdicts", "cascade", table, "--weak", "weak", "--strong", "strong", "--split", "0", "-o", prefix,
            "--json",
        ])
        #expect(run.status == 0, "\(run.err)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(run.out.utf8)) as? [String: Any])
        #expect(report["cost_unit"] as? String == "token-parameters" && report["test_tasks"] as? Int == 6)
        for ext in ["json", "md", "svg"] { #expect(FileManager.default.fileExists(atPath: prefix + "." + ext)) }
        // Every point's accuracy lies between 0 and 1, and strong alone is right everywhere.
        let points = try #require(report["points"] as? [[String: Any]])
        let strong = try #require(points.first { $0["kind"] as? String == "strong" })
        #expect((strong["accuracy"] as? [String: Any])?["value"] as? Double == 1)
    }

    @Test func mistakesExitWithTheirCodes() throws {
        let dir = try runDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let table = dir.appendingPathComponent("v.jsonl").path
        #expect(try distill(["verdicts", "build", dir.path, "-o", table]).status == 0)
        // An unknown model: 2, listing the table's.
        var r = try distill(["verdicts", "cascade", table, "--weak", "tiny", "--strong", "strong"])
        #expect(r.status == 2 && r.err.contains("--weak: no model \"tiny\"") && r.err.contains("\"weak\", \"strong\""))
        // Bad options: 2.
        r = try distill(["verdicts", "cascade", table, "--weak", "weak", "--strong", "strong", "--taus", "0.5,2"])
        #expect(r.status == 2 && r.err.contains("--taus"))
        // A damaged table: 65, naming the file, line and JSON path.
        var lines = try String(contentsOfFile: table, encoding: .utf8).split(separator: "\n").map(String.init)
        lines[2] = lines[2].replacingOccurrences(of: #""n":4"#, with: #""n":"four""#)
        try lines.joined(separator: "\n").write(toFile: table, atomically: true, encoding: .utf8)
        r = try distill(["verdicts", "cascade", table, "--weak", "weak", "--strong", "strong"])
        #expect(r.status == 65 && r.err.contains("v.jsonl:3:1: models.weak.n: expected an integer"), "\(r.err)")
        // Missing files: 74.
        r = try distill([
            "verdicts", "cascade", dir.appendingPathComponent("none.jsonl").path, "--weak", "a", "--strong", "b",
        ])
        #expect(r.status == 74)
        r = try distill(["verdicts", "build", dir.appendingPathComponent("none").path, "-o", table])
        #expect(r.status == 74)
    }
}
