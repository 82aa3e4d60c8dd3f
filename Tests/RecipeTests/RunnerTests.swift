// The runner with fake executors: skip finished stages, re-run changed ones and their
// dependents (only those), resume failed and interrupted ones, keep run.json atomic.

import Foundation
import JSON
import ModelIO
import Pipeline
import Platform
import Recipe
import Testing

/// Two independent chains: pretrain -> eval, and b -> generate.
let twoChains = """
    {"name": "run", "stages": [
      {"type": "pretrain", "data": {"train": ["a.txt"]}, "training": {"steps": 300}},
      {"type": "eval"},
      {"type": "pretrain", "name": "b", "data": {"train": ["b.txt"]}, "training": {"steps": 10}, "output": "b.h5"},
      {"type": "generate", "checkpoint": "@b", "prompts": ["hi"]}
    ]}
    """

struct FakeFailure: Error, CustomStringConvertible {
    var description: String { "fake failure" }
}

/// Records calls; fails the stages named in `failing`.
final class Calls {
    var names: [String] = []
    var resumes: [String: Bool] = [:]
    var failing: Set<String> = []
    var statusSeenWhileRunning: [String: StageStatus] = [:]
}

struct FakeExecutor: StageExecutor {
    let calls: Calls

    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        calls.names.append(stage.name)
        calls.resumes[stage.name] = context.resume
        // run.json says "running" before the executor starts, so a crash here is seen as one.
        calls.statusSeenWhileRunning[stage.name] = try RunState.load(runDirectory: context.runDirectory).stages[
            stage.name]?.status
        for source in stage.settings.checkpointInputs {
            guard FileManager.default.fileExists(atPath: context.path(of: source)) else { throw FakeFailure() }
        }
        #expect(try Recipe.decodeResolved(context.recipeJSON) == context.recipe)
        emit(.progress(step: 1, total: 1, metrics: ["loss": 2.5]))
        if calls.failing.contains(stage.name) { throw FakeFailure() }
        try Data("\(stage.name) \(context.fingerprint)\n".utf8).write(to: URL(fileURLWithPath: stage.output))
        return StageOutputs(files: [stage.output], summary: ["loss": .double(2.5), "stage": .string(stage.name)])
    }
}

func registry(_ calls: Calls, except missing: [StageType] = []) -> ExecutorRegistry {
    var r = ExecutorRegistry()
    for type in StageType.allCases where !missing.contains(type) { r[type] = FakeExecutor(calls: calls) }
    return r
}

/// Runs `recipe` and returns the executed stage names and the events.
@discardableResult
func run(_ recipe: Recipe, _ calls: Calls = Calls()) throws -> (names: [String], events: [RunEvent]) {
    var events: [RunEvent] = []
    try Runner(recipe: recipe, registry: registry(calls)).run { events.append($0) }
    return (calls.names, events)
}

func skipped(_ events: [RunEvent]) -> [String] {
    events.compactMap { if case .stageSkipped(let name, _) = $0 { return name } else { return nil } }
}

@Suite struct RunnerTests {
    func setUp() -> Scratch {
        let dir = Scratch()
        dir.write("a.txt", "alpha corpus\n")
        dir.write("b.txt", "beta corpus\n")
        return dir
    }

    @Test func runsEverythingOnceThenSkipsEverything() throws {
        let dir = setUp()
        let recipe = try dir.load(twoChains)
        let first = try run(recipe)
        #expect(first.names == ["pretrain", "eval", "b", "generate"])
        let kinds = first.events.map { event -> String in
            switch event {
            case .stageStarted(let name, _, let reason, _): return "start \(name): \(reason)"
            case .stageProgress(let name, _): return "progress \(name)"
            case .stageFinished(let name, _): return "done \(name)"
            case .stageSkipped(let name, _): return "skip \(name)"
            case .stageFailed(let name, _): return "fail \(name)"
            case .notice(let text): return "note \(text)"
            }
        }
        #expect(kinds.prefix(3) == ["start pretrain: not run before", "progress pretrain", "done pretrain"])
        #expect(kinds.count == 12)

        let state = try RunState.load(runDirectory: recipe.runDir)
        #expect(state.stages.count == 4 && state.stages.values.allSatisfy { $0.status == .done })
        #expect(
            state.stages["eval"]?.outputs
                == StageOutputs(
                    files: [recipe.runDir + "/eval.json"], summary: ["loss": .double(2.5), "stage": .string("eval")]))
        #expect(state.stages["eval"]?.started != nil && state.stages["eval"]?.finished != nil)
        #expect(state.recipe == recipe.resolvedJSON)
        #expect(Set(state.files.keys) == [dir.file("a.txt"), dir.file("b.txt")])
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: recipe.runDir).sorted()
                == ["b.h5", "base.h5", "eval.json", "run.json", "samples.jsonl"], "no temp file left behind")

        let second = try run(recipe)
        #expect(second.names.isEmpty)
        #expect(skipped(second.events) == ["pretrain", "eval", "b", "generate"])
        if case .stageSkipped(_, let reason) = second.events[0] { #expect(reason == "finished, unchanged") }
    }

    @Test func aChangedStageReRunsWithItsDependentsOnly() throws {
        let dir = setUp()
        try run(try dir.load(twoChains))
        let changed = try dir.load(twoChains, ["pretrain.training.steps=50"])
        let plan = try Runner(recipe: changed, registry: ExecutorRegistry()).plan()
        #expect(plan.stages.map(\.action) == [.run, .run, .skip, .skip])
        #expect(plan.stages[0].reason == "settings changed (training.steps: 300 -> 50)")
        #expect(plan.stages[1].reason == #"input stage "pretrain" changed"#)
        let r = try run(changed)
        #expect(r.names == ["pretrain", "eval"])
        #expect(skipped(r.events) == ["b", "generate"])
        #expect(try run(changed).names.isEmpty)
    }

    @Test func changedInputContentReRunsButAnUnchangedRewriteDoesNot() throws {
        let dir = setUp()
        let recipe = try dir.load(twoChains)
        try run(recipe)
        dir.write("b.txt", "beta corpus\n")  // same bytes, new mtime
        #expect(try run(recipe).names.isEmpty)
        dir.write("b.txt", "beta corpus, edited\n")
        let plan = try Runner(recipe: recipe, registry: ExecutorRegistry()).plan()
        #expect(plan.stages[2].reason == "\(dir.file("b.txt")) changed")
        #expect(try run(recipe).names == ["b", "generate"])
    }

    @Test func aMissingOutputReRunsItsStage() throws {
        let dir = setUp()
        let recipe = try dir.load(twoChains)
        try run(recipe)
        try FileManager.default.removeItem(atPath: recipe.runDir + "/eval.json")
        let plan = try Runner(recipe: recipe, registry: ExecutorRegistry()).plan()
        #expect(plan.stages[1].reason == "output missing: \(recipe.runDir)/eval.json")
        #expect(try run(recipe).names == ["eval"])
    }

    @Test func aFailedStageStopsTheRunAndResumesNextTime() throws {
        let dir = setUp()
        let recipe = try dir.load(twoChains)
        let calls = Calls()
        calls.failing = ["eval"]
        var events: [RunEvent] = []
        #expect {
            try Runner(recipe: recipe, registry: registry(calls)).run { events.append($0) }
        } throws: { error in
            guard let e = error as? RunError, case .stageFailed(let name, _) = e else { return false }
            return name == "eval" && e.exitCode == 1 && e.description == #"stage "eval" failed: fake failure"#
        }
        #expect(calls.names == ["pretrain", "eval"], "stages after a failure do not run")
        if case .stageFailed(let name, let error)? = events.last {
            let message = "\(error)"
            #expect(name == "eval" && message == "fake failure")
        }
        let state = try RunState.load(runDirectory: recipe.runDir)
        #expect(state.stages["eval"]?.status == .failed && state.stages["eval"]?.error == "fake failure")
        #expect(state.stages["b"] == nil)

        let plan = try Runner(recipe: recipe, registry: ExecutorRegistry()).plan()
        #expect(plan.stages[1].reason == "failed last time (fake failure); retrying" && plan.stages[1].resume)
        let again = Calls()
        #expect(try run(recipe, again).names == ["eval", "b", "generate"])
        #expect(again.resumes == ["eval": true, "b": false, "generate": false])
    }

    @Test func anInterruptedStageResumesWhenUnchangedAndRestartsWhenChanged() throws {
        let dir = setUp()
        let recipe = try dir.load(twoChains)
        let calls = Calls()
        try run(recipe, calls)
        #expect(calls.statusSeenWhileRunning.values.allSatisfy { $0 == .running })

        // A process killed mid-stage leaves the stage "running" in run.json.
        var state = try RunState.load(runDirectory: recipe.runDir)
        state.stages["b"]?.status = .running
        try state.save(runDirectory: recipe.runDir)
        let resumed = Calls()
        #expect(try run(recipe, resumed).names == ["b"])
        #expect(resumed.resumes == ["b": true])

        state.stages["b"]?.status = .running
        try state.save(runDirectory: recipe.runDir)
        let changed = try dir.load(twoChains, ["b.training.lr=0.01"])
        let plan = try Runner(recipe: changed, registry: ExecutorRegistry()).plan()
        #expect(
            plan.stages[2].reason
                == "interrupted, and since then settings changed (training.lr: 0.003 -> 0.01); starting over")
        let restarted = Calls()
        #expect(try run(changed, restarted).names == ["b", "generate"])
        #expect(restarted.resumes == ["b": false, "generate": false])
    }

    @Test func missingExecutorsAreReportedBeforeAnythingRuns() throws {
        let dir = setUp()
        let recipe = try dir.load(twoChains)
        let calls = Calls()
        #expect {
            try Runner(recipe: recipe, registry: registry(calls, except: [.eval, .generate])).run { _ in }
        } throws: { error in
            (error as? RunError)?.description
                == "stage type eval is not available in this build\nstage type generate is not available in this build"
                && (error as? RunError)?.exitCode == 2
        }
        #expect(calls.names.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: recipe.runDir + "/run.json"))
    }

    @Test func onlyStagesThatRunNeedAnExecutor() throws {
        let dir = setUp()
        let recipe = try dir.load(twoChains)
        try run(recipe)
        let calls = Calls()
        try Runner(recipe: recipe, registry: ExecutorRegistry()).run { _ in }
        #expect(calls.names.isEmpty)
    }

    /// run.json goes through Platform's atomic write (tested there); a run state that cannot be
    /// written is a run error naming the path, exit 74.
    @Test func runStateIsWrittenAtomically() throws {
        let dir = Scratch()
        var state = RunState()
        state.recipe = "{}"
        try state.save(runDirectory: dir.path)
        try state.save(runDirectory: dir.path)
        #expect(try RunState.load(runDirectory: dir.path) == state)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["run.json"])

        dir.write("file", "not a folder")
        #expect {
            try state.save(runDirectory: dir.file("file/run"))
        } throws: { error in
            guard let e = error as? RunError, case .state(let path, _) = e else { return false }
            return path.hasPrefix(dir.file("file/run")) && e.exitCode == 74
        }
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: dir.path)) == ["run.json", "file"])
    }

    @Test func aDamagedRunStateIsReported() throws {
        let dir = Scratch()
        dir.write("run.json", "{not json")
        #expect {
            try RunState.load(runDirectory: dir.path)
        } throws: { error in
            guard let e = error as? RunError, case .state(let path, _) = e else { return false }
            return path == dir.file("run.json") && e.exitCode == 74
        }
    }
}

/// One exit-code table: a checkpoint error exits with the same code whether `distill inspect`
/// reports it directly or a stage that hit it fails (they used to disagree: 74/65 against
/// 75/70).
@Test func checkpointErrorsExitAlikeDirectlyAndThroughAStage() {
    let expected: [CheckpointError.Kind: Int32] = [
        .io: 74, .verificationFailed: 74, .notCheckpoint: 65, .newerVersion: 65, .malformed: 65, .shapeMismatch: 65,
        .checksumMismatch: 65, .wrongBase: 65, .locked: 75, .invalidContents: 70,
    ]
    for (kind, code) in expected {
        let error = CheckpointError(kind, path: "model.h5", problem: "p")
        #expect(exitCode(for: error) == code, "\(kind)")
        #expect(exitCode(for: RunError.stageFailed(name: "s", error: error)) == code, "\(kind)")
    }
}

/// `@stage/file` names a file an earlier stage writes into its output folder: the recipe loads
/// before the file exists, and the reading stage's fingerprint follows the writer's.
@Suite struct StageFileReferenceTests {
    static let recipe = """
        {"name": "r", "stages": [
          {"type": "sample", "tasks": "tasks.jsonl", "teacher": {"type": "command", "command": ["./t"]}},
          {"type": "sft", "model": "m.h5", "data": {"train": ["@sample/sft.jsonl"]}, "training": {"epochs": 1}},
          {"type": "dpo", "model": "@sft", "data": {"train": ["@sample/pairs.jsonl"]}, "training": {"epochs": 1}}
        ]}
        """

    @Test func aLaterStageReadsAnEarlierStagesFile() throws {
        let dir = Scratch()
        dir.write("tasks.jsonl", "{\"id\": \"1\", \"prompt\": \"1+1?\", \"answer\": \"2\"}\n")
        dir.write("m.h5", "")
        let recipe = try dir.load(Self.recipe)
        guard case .sft(let sft) = recipe.stages[1] else { Issue.record("not sft"); return }
        #expect(sft.data.train == [dir.file("Checkpoints/r/sample/sft.jsonl")])
        let plan = try Runner(recipe: recipe, registry: ExecutorRegistry()).plan()
        let part = plan.stages[1].fingerprint.parts["file:" + dir.file("Checkpoints/r/sample/sft.jsonl")]
        #expect(part == "written by sample (\(dir.file("Checkpoints/r/sample"))) at \(plan.stages[0].fingerprint.value)")
        // A changed sample stage changes what reads its files.
        let changed = try dir.load(Self.recipe.replacingOccurrences(of: "[\"./t\"]", with: "[\"./u\"]"))
        let replanned = try Runner(recipe: changed, registry: ExecutorRegistry()).plan()
        #expect(replanned.stages[1].fingerprint != plan.stages[1].fingerprint)
    }

    @Test func aReferenceMustNameAnEarlierStageAndAFile() throws {
        let dir = Scratch()
        dir.write("tasks.jsonl", "{\"id\": \"1\", \"prompt\": \"1+1?\", \"answer\": \"2\"}\n")
        dir.write("m.h5", "")
        for (bad, words) in [("@smple/sft.jsonl", "did you mean \"@sample/...\""), ("@sample", "must be \"@stage/file\""), ("@dpo/x.jsonl", "earlier stage")] {
            do {
                _ = try dir.load(Self.recipe.replacingOccurrences(of: "@sample/sft.jsonl", with: bad))
                Issue.record("\(bad) was accepted")
            } catch {
                #expect("\(error)".contains(words) && "\(error)".contains("stages[1].data.train[0]"), "\(error)")
            }
        }
    }
}
