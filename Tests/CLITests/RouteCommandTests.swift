// `distill route train`, `calibrate` and `eval` as a user runs them, over a hand-written verdict
// table of 40 tasks and tiny_chat.gguf as the weak model: the files they write, and the exit
// codes of mistakes (2 usage, 65 bad data, 74 missing files); the route and cascade stages
// over a hand-written run directory.

import Foundation
import Testing

@Suite struct RouteCommandTests {
    static let tinyChat = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("FormatsTests/Fixtures/gguf/tiny_chat.gguf").path

    /// A verdict table: W right on tasks whose number is even, S always; `identity` is W's.
    func table(_ dir: URL, identity: String = "null") throws -> String {
        var text = #"{"distill_verdicts":1,"models":[{"name":"W","kind":"eval","source":"w","tasks":null,"identity":\#(identity),"parameters":null},{"name":"S","kind":"eval","source":"s","tasks":null,"identity":null,"parameters":null}]}"# + "\n"
        for t in 0..<40 {
            func cell(_ right: Bool) -> String {
                #"{"n":2,"c":\#(right ? 2 : 0),"samples":[{"correct":\#(right),"answer":"a","tokens_in":5,"tokens_out":2,"latency":null,"logprob_mean":null,"logprob_min":null},{"correct":\#(right),"answer":"a","tokens_in":5,"tokens_out":2,"latency":null,"logprob_mean":null,"logprob_min":null}]}"#
            }
            text += #"{"task_id":"t\#(t)","prompt":"What is \#(t) plus \#(t)?","models":{"W":\#(cell(t % 2 == 0)),"S":\#(cell(true))}}"# + "\n"
        }
        let path = dir.appendingPathComponent(identity == "null" ? "v.jsonl" : "other.jsonl").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func trainCalibrateAndEvalWriteTheirFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distill-route-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let v = try table(dir), router = dir.appendingPathComponent("r.h5").path
        let trained = try distill(["route", "train", v, "--weak", "W", "--strong", "S", "--checkpoint", Self.tinyChat, "-o", router, "--json"])
        #expect(trained.status == 0, "\(trained.err)")
        #expect(trained.out.contains("\"weak_checksum\" : \"xxh64:") && trained.out.contains("\"target\" : 0.5"))
        #expect(trained.err.contains("embedded 40 of 40 prompts"))
        // Another kind on the same embeddings, no model needed.
        let clusters = dir.appendingPathComponent("k.h5").path
        let k = try distill(["route", "train", v, "--weak", "W", "--strong", "S", "--embeddings", router, "--kind", "kmeans", "--clusters", "3", "-o", clusters])
        #expect(k.status == 0 && k.out.contains("kmeans router"), "\(k.err)")
        let calibrated = try distill(["route", "calibrate", router, v, "--shares", "0.3"])
        #expect(calibrated.status == 0 && calibrated.out.contains("30% strong calls"), "\(calibrated.err)")
        let evaluated = try distill(["route", "eval", router, v, "--resamples", "50"])
        #expect(evaluated.status == 0, "\(evaluated.err)")
        #expect(evaluated.out.contains("| router | APGR | CPT(50%) | CPT(80%) |"))
        for ext in ["json", "md", "svg"] {
            #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("r.eval.\(ext)").path))
        }
    }

    @Test func mistakesExitWithTheirKindsCodes() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distill-route-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let v = try table(dir), router = dir.appendingPathComponent("r.h5").path
        let unknown = try distill(["route", "train", v, "--weak", "nope", "--strong", "S", "--checkpoint", Self.tinyChat, "-o", router])
        #expect(unknown.status == 2 && unknown.err.contains("no model \"nope\""), "\(unknown.err)")
        // The table says W is another model: its checkpoint is refused.
        let other = try table(dir, identity: #""xxh64:0000000000000000""#)
        let refused = try distill(["route", "train", other, "--weak", "W", "--strong", "S", "--checkpoint", Self.tinyChat, "-o", router])
        #expect(refused.status == 2 && refused.err.contains("is not the model \"W\""), "\(refused.err)")
        // The credit label on a table without credit: refused before any prompt is embedded.
        let noCredit = try distill(["route", "train", v, "--weak", "W", "--strong", "S", "--checkpoint", Self.tinyChat, "--label", "credit", "-o", router])
        #expect(noCredit.status == 2 && noCredit.err.contains("--label") && noCredit.err.contains("verdicts build --reverify"), "\(noCredit.err)")
        #expect(!noCredit.err.contains("embedded"))
        let missing = try distill(["route", "eval", dir.appendingPathComponent("none.h5").path, v])
        #expect(missing.status == 74, "\(missing.err)")
        try Data("not a router".utf8).write(to: URL(fileURLWithPath: router))
        let damaged = try distill(["route", "eval", router, v])
        #expect(damaged.status == 65, "\(damaged.err)")
    }

    /// A scratch folder holding a run directory `run` with an eval report of arms W and S; the
    /// caller writes its rows (`eval.tasks.jsonl`) and removes the folder.
    func runDirectory() throws -> (folder: URL, run: URL) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distill-route-\(UUID().uuidString)")
        let run = dir.appendingPathComponent("run")
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        try #"{"tasks": null, "arms": [{"name": "W", "model": "w", "checksum": null}, {"name": "S", "model": "s", "checksum": null}]}"#
            .write(to: run.appendingPathComponent("eval.json"), atomically: true, encoding: .utf8)
        return (dir, run)
    }

    /// The cascade stage over a run's eval rows: W agrees with itself and is right on three tasks
    /// in four and splits its two samples on the fourth, where only S is right; so the cascade
    /// that escalates disagreement recovers the whole gap with a quarter of the requests sent on.
    @Test func theCascadeStageWritesItsReport() throws {
        let (dir, run) = try runDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var rows = ""
        for t in 0..<40 {
            let agrees = t % 4 != 3
            let w = (0..<2).map { i in
                #"{"seed": \#(i), "text": "x", "correct": \#(agrees), "canonical": "\#(agrees ? "r" : "w\(i)")", "tokens": 1}"#
            }
            let s = (0..<2).map { i in #"{"seed": \#(i), "text": "y", "correct": true, "canonical": "r", "tokens": 10}"# }
            rows += #"{"arm": "W", "task_id": "t\#(t)", "samples": [\#(w.joined(separator: ", "))]}"# + "\n"
            rows += #"{"arm": "S", "task_id": "t\#(t)", "samples": [\#(s.joined(separator: ", "))]}"# + "\n"
        }
        try rows.write(to: run.appendingPathComponent("eval.tasks.jsonl"), atomically: true, encoding: .utf8)
        let recipe = dir.appendingPathComponent("r.json")
        try #"{"name": "r", "run_dir": "run", "stages": [{"type": "cascade", "weak": "W", "strong": "S", "m": [2], "taus": [1], "split": 0, "resamples": 50, "parameters": {"W": 10, "S": 100}}]}"#
            .write(to: recipe, atomically: true, encoding: .utf8)
        let r = try distill(["run", recipe.path])
        #expect(r.status == 0, "\(r.err)")
        for name in ["cascade.json", "cascade.md", "cascade.svg", "verdicts.jsonl"] {
            #expect(FileManager.default.fileExists(atPath: run.appendingPathComponent(name).path), "\(name)")
        }
        let markdown = try String(contentsOf: run.appendingPathComponent("cascade.md"), encoding: .utf8)
        #expect(markdown.contains("| m=2 tau=1 (2+ of 2 agree) | 1.000 [1.000, 1.000] |"), "\(markdown)")
        #expect(markdown.contains("Below half the strong model's cost, the most of the gap a setting recovers is 1.00 (m=2 tau=1"))
        #expect(r.out.contains("gap_recovered_under_half_cost=1"), "\(r.out)")
        // More weak samples than the run has, and a model it lacks: the stage's keys are named.
        for (stage, key) in [(#""weak": "W", "strong": "S", "m": [4]"#, "m"), (#""weak": "X", "strong": "S""#, "weak")] {
            try #"{"name": "r", "run_dir": "run", "stages": [{"type": "cascade", \#(stage), "output": "c2.json"}]}"#
                .write(to: recipe, atomically: true, encoding: .utf8)
            let bad = try distill(["run", recipe.path])
            #expect(bad.status == 2 && bad.err.contains("stages[0].\(key)"), "\(bad.err)")
        }
    }

    /// The route stage refuses the credit label on a run whose eval rows record no credit, naming
    /// the stage's key, before loading the weak model.
    @Test func theRouteStageRefusesTheCreditLabelWithoutCredit() throws {
        let (dir, run) = try runDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var rows = ""
        for arm in ["W", "S"] {
            for t in 0..<4 {
                rows += #"{"arm": "\#(arm)", "task_id": "t\#(t)", "samples": [{"seed": 0, "text": "x", "correct": \#(arm == "S"), "canonical": "x", "tokens": 1}]}"# + "\n"
            }
        }
        try rows.write(to: run.appendingPathComponent("eval.tasks.jsonl"), atomically: true, encoding: .utf8)
        let recipe = dir.appendingPathComponent("r.json")
        try #"{"name": "r", "run_dir": "run", "stages": [{"type": "route", "checkpoint": "\#(Self.tinyChat)", "weak": "W", "strong": "S", "label": "credit"}]}"#
            .write(to: recipe, atomically: true, encoding: .utf8)
        let r = try distill(["run", recipe.path])
        #expect(r.status == 2 && r.err.contains("stages[0].label") && r.err.contains("partial credit"), "\(r.err)")
    }
}
