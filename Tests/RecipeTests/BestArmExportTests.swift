// The export stage's `best_of`: the model of the best arm of an earlier task evaluation,
// resolved and checked in the recipe, chosen from the evaluation's report when the stage runs.

import Foundation
import JSON
import ModelIO
import Platform
import Teacher
import Testing
import Verify

@testable import Pipeline
@testable import Recipe

private let gguf = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("FormatsTests/Fixtures/gguf")

/// A task evaluation of two GGUF models (`a`, `b`) and a stage checkpoint, then `export`.
private func recipe(export: String, evalExtra: String = #""samples": 4"#) -> String {
    """
    {"name": "best", "stages": [
      {"type": "pretrain", "data": {"train": ["a.txt"]}, "training": {"steps": 3}},
      {"type": "eval", "name": "validate", "tasks": "tasks.jsonl", \(evalExtra),
       "arms": [{"name": "a", "model": "a.gguf"}, {"name": "b", "model": "b.gguf"}, {"name": "p", "model": "@pretrain"}]},
      \(export)
    ]}
    """
}

private func scratch() -> Scratch {
    let dir = Scratch()
    dir.write("a.txt", "text")
    dir.write("tasks.jsonl", "{\"id\": \"1\", \"prompt\": \"1+1?\", \"answer\": \"2\"}\n")
    for (name, fixture) in [("a.gguf", "tiny_chat.gguf"), ("b.gguf", "tiny_llama_f16.gguf")] {
        try! FileManager.default.copyItem(
            atPath: gguf.appendingPathComponent(fixture).path, toPath: dir.file(name))
    }
    return dir
}

/// An eval.json whose arms score `greedy` and pass@1 as given.
private func report(_ scores: [(String, greedy: Double, pass1: Double)]) -> String {
    EvalReport(
        tasks: "tasks.jsonl", taskCount: 1, settings: TaskEvalConfig(), verifier: VerifierConfig(),
        bootstrap: BootstrapConfig(seed: 1),
        arms: scores.map { name, greedy, pass1 in
            var m = ArmMetrics()
            m.greedyAccuracy = Estimate(value: greedy, ciLow: greedy, ciHigh: greedy)
            m.passAtK = [.init(k: 1, value: pass1, ciLow: pass1, ciHigh: pass1)]
            return EvalReport.Arm(name: name, model: name, checksum: "xxh64:0", metrics: m)
        }
    ).json()
}

/// Runs the export stage of `r` (the last) with the real executor.
private func runExport(_ r: Recipe) throws -> (StageOutputs, [String]) {
    let stage = try #require(r.stages.last)
    var messages: [String] = []
    let context = RunContext(
        runDirectory: r.runDir, seed: 1, threads: 1, recipe: r, recipeJSON: r.resolvedJSON, outputs: [:],
        fingerprint: "f", resume: false)
    try FileManager.default.createDirectory(atPath: r.runDir, withIntermediateDirectories: true)
    let out = try ExportExecutor().run(stage, context: context) { if case .message(let m) = $0 { messages.append(m) } }
    return (out, messages)
}

@Suite struct BestArmExportTests {
    @Test func bestOfResolvesToTheEvaluationAndItsStageArms() throws {
        let dir = scratch()
        let r = try dir.load(recipe(export: #"{"type": "export", "best_of": {"eval": "@validate"}, "format": "peft"}"#))
        guard case .export(let e) = r.stages[2] else {
            Issue.record("an export stage")
            return
        }
        #expect(e.bestOf == BestArmSelection(eval: "validate", metric: .greedy, arms: ["p"]))
        #expect(e.checkpointInputs == [.stage("validate")] && Stage.export(e).settings.stageReferences == ["validate"])
        #expect(try Recipe.decodeResolved(r.resolvedJSON) == r)
        #expect(r.resolvedJSON.contains(#""best_of":{"arms":["p"],"eval":"@validate","metric":"greedy"}"#))
        #expect(!r.resolvedJSON.contains(#""checkpoint":"@pretrain""#), "best_of replaces checkpoint")
        let listed = try dir.load(
            recipe(export: #"{"type": "export", "best_of": {"eval": "@validate", "metric": "pass@4", "arms": ["b", "a"]}}"#))
        guard case .export(let l) = listed.stages[2] else { return }
        #expect(l.bestOf == BestArmSelection(eval: "validate", metric: .passAt(4), arms: ["b", "a"]))
    }

    @Test func mistakesAreReportedWithTheirPaths() throws {
        let dir = scratch()
        func issues(_ export: String, evalExtra: String = #""samples": 4"#) throws -> [String: [String]] {
            let error = try #require(recipeError { try dir.load(recipe(export: export, evalExtra: evalExtra)) })
            return Dictionary(grouping: error.issues, by: \.path).mapValues { $0.map(\.message) }
        }
        #expect(
            try issues(#"{"type": "export", "checkpoint": "@pretrain", "best_of": {"eval": "@validate"}}"#)["stages[2]"]
                == [#"give either "checkpoint" or "best_of", not both"#])
        #expect(
            try issues(#"{"type": "export", "best_of": {"eval": "@pretrain"}}"#)["stages[2].best_of.eval"]
                == [#"stage "pretrain" is not a task evaluation (an eval stage with "tasks")"#])
        #expect(
            try issues(#"{"type": "export", "best_of": {"eval": "validate"}}"#)["stages[2].best_of.eval"]
                == [#"must be "@stage", an earlier eval stage with "tasks", got "validate""#])
        #expect(
            try issues(#"{"type": "export", "best_of": {"eval": "@validate", "metric": "best"}}"#)["stages[2].best_of.metric"]
                == [#"must be "greedy", "pass@K" (K >= 1) or "maj@k", got "best""#])
        #expect(
            try issues(#"{"type": "export", "best_of": {"eval": "@validate", "metric": "pass@3"}}"#)[
                "stages[2].best_of.metric"] == [#"stage "validate" reports pass@1, pass@2, pass@4, not pass@3"#])
        #expect(
            try issues(#"{"type": "export", "best_of": {"eval": "@validate", "metric": "maj@k"}}"#, evalExtra: #""samples": 0"#)[
                "stages[2].best_of.metric"] == [#"maj@k needs samples; stage "validate" runs greedy only (samples 0)"#])
        #expect(
            try issues(#"{"type": "export", "best_of": {"eval": "@validate", "arms": ["a", "c"]}}"#)[
                "stages[2].best_of.arms[1]"] == [#"stage "validate" has no arm "c" (its arms: a, b, p)"#])
        #expect(
            try issues(#"{"type": "export", "best_of": {"eval": "@validate", "metirc": "greedy"}}"#)["stages[2].best_of.metirc"]?
                .first?.contains("did you mean \"metric\"") == true)
    }

    @Test func theBestArmsModelIsExportedAndTiesGoToTheFirstListed() throws {
        let dir = scratch()
        let r = try dir.load(
            recipe(export: #"{"type": "export", "best_of": {"eval": "@validate", "metric": "pass@1", "arms": ["a", "b"]}, "output": "best"}"#))
        guard case .eval(let e) = r.stages[1], case .export(let x) = r.stages[2] else { return }
        try FileManager.default.createDirectory(atPath: r.runDir, withIntermediateDirectories: true)
        // b wins on pass@1 though a wins on greedy: the export is b's model.
        try Data(report([("a", 0.9, 0.2), ("b", 0.1, 0.5), ("p", 1, 1)]).utf8).write(to: URL(fileURLWithPath: e.output))
        let (out, messages) = try runExport(r)
        #expect(out.summary["chosen_arm"] == .string("b"))
        #expect(messages.first == "best of @validate by pass@1: b 0.500 (a 0.200)")
        let exported = try loadModel(from: x.output)
        let b = try loadModel(from: dir.file("b.gguf"))
        #expect(exported.model.config == b.model.config)

        // A tie goes to the arm listed first.
        try Data(report([("a", 0, 0.5), ("b", 0, 0.5), ("p", 0, 0)]).utf8).write(to: URL(fileURLWithPath: e.output))
        try FileManager.default.removeItem(atPath: x.output)
        #expect(try runExport(r).0.summary["chosen_arm"] == .string("a"))
    }

    @Test func anUnreadableReportIsRefusedByPath() throws {
        let dir = scratch()
        let r = try dir.load(recipe(export: #"{"type": "export", "best_of": {"eval": "@validate"}, "output": "best"}"#))
        guard case .eval(let e) = r.stages[1] else { return }
        try FileManager.default.createDirectory(atPath: r.runDir, withIntermediateDirectories: true)
        try Data("{\"arms\": ".utf8).write(to: URL(fileURLWithPath: e.output))
        do {
            _ = try runExport(r)
            Issue.record("a damaged report was accepted")
        } catch let error as UserError {
            #expect(error.path == e.output && error.kind == .badData)
            #expect(error.fix.contains("delete it and run the recipe again"))
        }
        // A report without a candidate arm is refused too.
        try Data(report([("a", 1, 1)]).utf8).write(to: URL(fileURLWithPath: e.output))
        #expect(throws: UserError.self) { try runExport(r) }
    }
}
