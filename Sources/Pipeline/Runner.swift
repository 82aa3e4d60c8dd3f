// The runner: decides per stage whether to skip, resume or (re-)run it, calls the stage's
// executor, and keeps run.json current. It prints nothing; the caller receives typed events.
//
// Rules (docs/recipes.md, "Skipping and resuming"):
//   done, same fingerprint, outputs present -> skipped
//   done, but fingerprint changed or an output is missing -> run again from scratch
//   running or failed with the same fingerprint -> run again with `resume = true`: the executor
//     continues from its last committed state (its own checkpoint)
//   running or failed with another fingerprint -> run from scratch (`resume = false`)
// A stage's fingerprint includes the fingerprints of the stages it reads, so a changed stage
// re-runs every later stage that depends on it, and only those.

import Foundation
import JSON
import NN
import Platform
import Recipe
import TextData
import Training

/// Progress an executor reports while it runs: a training session's events.
package typealias StageEvent = ProgressEvent

/// What an executor gets besides its stage's settings.
package struct RunContext: Sendable {
    /// Absolute; exists when the executor is called.
    package var runDirectory: String
    /// The recipe seed (generate has its own resolved `seed`).
    package var seed: Int
    /// The recipe's `threads`; nil means all cores.
    package var threads: Int?
    /// The resolved recipe.
    package var recipe: Recipe
    /// `recipe.resolvedJSON`: store it in every checkpoint the stage writes.
    package var recipeJSON: String
    /// Outputs of the earlier stages (run or skipped in this run), by stage name.
    package var outputs: [String: StageOutputs]
    /// This stage's fingerprint; store it with committed state so a resume can check it.
    package var fingerprint: String
    /// True when an earlier attempt with the same fingerprint was interrupted or failed: continue
    /// from the stage's last committed state if there is one. False: ignore any partial state.
    package var resume: Bool

    /// The file a checkpoint source names: an earlier stage's main output, or the file itself.
    package func path(of source: CheckpointSource) -> String {
        switch source {
        case .file(let path): return path
        case .stage(let name):
            guard let stage = recipe.stage(named: name) else { preconditionFailure("validated reference @\(name)") }
            return outputs[name]?.files.first ?? stage.output
        }
    }
}

/// Runs one type of stage. Implementations live above Recipe's validation (the lead's
/// pretrain/eval/generate/export); tests plug in fakes.
package protocol StageExecutor {
    /// Runs `stage` and returns what it wrote. Throw to fail the stage; errors that conform to
    /// `UserFacingError` choose the process exit code.
    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs
}

/// Executors by stage type. A type without one cannot run in this build.
package struct ExecutorRegistry {
    package var executors: [StageType: any StageExecutor]

    package init(_ executors: [StageType: any StageExecutor] = [:]) { self.executors = executors }

    package subscript(type: StageType) -> (any StageExecutor)? {
        get { executors[type] }
        set { executors[type] = newValue }
    }
}

/// What the runner reports. No printing happens inside the runner.
package enum RunEvent: Sendable {
    case stageSkipped(name: String, reason: String)
    case stageStarted(name: String, type: StageType, reason: String, resume: Bool)
    case stageProgress(name: String, event: StageEvent)
    case stageFinished(name: String, outputs: StageOutputs)
    case stageFailed(name: String, error: any Error)
    /// Something about the run as a whole worth telling (a cleaned-up leftover file).
    case notice(String)
}

/// Errors of a run (recipe problems are `RecipeError`, thrown before a runner exists).
package enum RunError: Error, Sendable, UserFacingError {
    /// Stage types the plan needs but the registry lacks.
    case executorsUnavailable([StageType])
    /// An input could not be read while fingerprinting.
    case input(InputError)
    /// run.json could not be read or written.
    case state(path: String, reason: String)
    /// A stage's executor failed.
    case stageFailed(name: String, error: any Error)

    package var description: String {
        switch self {
        case .executorsUnavailable(let types):
            return types.map { "stage type \($0.rawValue) is not available in this build" }.joined(separator: "\n")
        case .input(let e): return "cannot read an input: \(e)"
        case .state(let path, let reason): return "\(path): \(reason)"
        case .stageFailed(let name, let error): return "stage \"\(name)\" failed: \(error)"
        }
    }

    package var errorKind: ErrorKind {
        switch self {
        case .executorsUnavailable: .usage
        case .input(let e): e.kind
        case .state: .io
        case .stageFailed(_, let error): (error as? any UserFacingError)?.errorKind ?? .internal
        }
    }

    /// A failed stage exits with its error's code (1 for an error of no known kind).
    package var exitCode: Int32 {
        if case .stageFailed(_, let error) = self { return Platform.exitCode(for: error) }
        return errorKind.exitCode
    }
}

/// One stage of a plan: what the runner will do with it and why.
package struct PlannedStage: Codable, Sendable, Equatable {
    package enum Action: String, Codable, Sendable { case skip, run }

    package var name: String
    package var type: StageType
    package var action: Action
    /// `"finished, unchanged"`, `"not run before"`, `"settings changed (training.steps: 300 -> 50)"`.
    package var reason: String
    package var resume: Bool
    package var fingerprint: StageFingerprint
    /// The stage's main output (absolute).
    package var output: String
}

/// The decisions for a whole recipe, computed without running anything.
package struct RunPlan: Codable, Sendable, Equatable {
    package var runDirectory: String
    package var stages: [PlannedStage]
    /// The resolved recipe the plan is for.
    package var recipe: Recipe

    enum CodingKeys: String, CodingKey { case runDirectory = "run_dir", stages, recipe }
}

/// Runs a resolved recipe's stages in order. It takes no lock; the caller holds the run
/// directory's lock while planning and running.
package final class Runner {
    package let recipe: Recipe
    package let registry: ExecutorRegistry
    private let now: () -> Date

    package init(recipe: Recipe, registry: ExecutorRegistry, now: @escaping () -> Date = Date.init) {
        self.recipe = recipe
        self.registry = registry
        self.now = now
    }

    /// Decides what `run` would do. Reads run.json and the input files; writes nothing.
    package func plan() throws(RunError) -> RunPlan {
        var state = try RunState.load(runDirectory: recipe.runDir)
        return try plan(&state)
    }

    private func plan(_ state: inout RunState) throws(RunError) -> RunPlan {
        var digester = FileDigester(cache: state.files)
        var fingerprints: [String: StageFingerprint] = [:]
        var produced: [String: String] = [:]
        var planned: [PlannedStage] = []
        for (index, stage) in recipe.stages.enumerated() {
            let fp: StageFingerprint
            do {
                fp = try StageFingerprint.compute(
                    stage, seed: recipe.seed, upstream: fingerprints, produced: produced,
                    earlier: Array(recipe.stages[..<index]), digester: &digester)
            } catch {
                throw .input(error)
            }
            fingerprints[stage.name] = fp
            produced[stage.output] = stage.name
            let (action, reason, resume) = decide(stage, fp, state.stages[stage.name])
            if action != .skip, let problem = preflight(stage, path: "stages[\(index)]") {
                throw .stageFailed(name: stage.name, error: problem)
            }
            planned.append(
                PlannedStage(
                    name: stage.name, type: stage.type, action: action, reason: reason, resume: resume, fingerprint: fp,
                    output: stage.output))
        }
        state.files = digester.cache
        return RunPlan(runDirectory: recipe.runDir, stages: planned, recipe: recipe)
    }

    /// What makes a stage impossible to run, found from the recipe alone before any stage
    /// runs (and by `--dry-run`): a pretraining model that cannot fit the memory budget. The
    /// vocabulary of a tokenizer file is not known yet and counts as its 256 bytes.
    private func preflight(_ stage: Stage, path: String) -> UserError? {
        guard case .pretrain(let s) = stage, s.initFrom == nil else { return nil }
        let vocab = s.tokenizer?.path == nil ? (s.tokenizer?.train ?? TokenizerTraining()).vocabSize : 256
        let config = (s.model ?? ModelSettings()).llamaConfig(vocabSize: vocab, bosTokenId: nil, eosTokenId: nil)
        // The recipe reader bounds every size; a config it let through is estimated safely.
        guard config.problems().isEmpty else { return nil }
        do {
            try requireMemory(
                config, batch: s.training.batchSize, seqLen: s.training.seqLen,
                path: "\(path).model and .training of the recipe (\(s.output))")
        } catch {
            return error as? UserError
        }
        return nil
    }

    private func decide(_ stage: Stage, _ fp: StageFingerprint, _ record: StageRecord?) -> (
        PlannedStage.Action, String, Bool
    ) {
        guard let record, record.status != .pending else { return (.run, "not run before", false) }
        let same = record.fingerprint?.value == fp.value
        var changes = "changed"
        if let old = record.fingerprint, !same {
            var list = fp.changes(since: old)
            if let i = list.firstIndex(of: "settings changed"), let oldSettings = record.settings {
                let diffs = settingsDiff(old: oldSettings, new: stage.resolvedJSON)
                if !diffs.isEmpty { list[i] = "settings changed (\(diffs.joined(separator: ", ")))" }
            }
            if !list.isEmpty { changes = list.joined(separator: "; ") }
        }
        switch record.status {
        case .pending: return (.run, "not run before", false)
        case .running:
            return same
                ? (.run, "interrupted; resuming", true)
                : (.run, "interrupted, and since then \(changes); starting over", false)
        case .failed:
            let last = record.error.map { " (\($0))" } ?? ""
            return same
                ? (.run, "failed last time\(last); retrying", true)
                : (.run, "failed last time, and since then \(changes)", false)
        case .done:
            if !same { return (.run, changes, false) }
            let expected = [stage.output] + (record.outputs?.files ?? [])
            if let gone = expected.first(where: { !FileManager.default.fileExists(atPath: $0) }) {
                return (.run, "output missing: \(gone)", false)
            }
            return (.skip, "finished, unchanged", false)
        }
    }

    /// Runs the plan: skips, resumes or runs each stage in order, saving run.json before and
    /// after every stage. Stops at the first failing stage. Returns the final state.
    @discardableResult
    package func run(onEvent: (RunEvent) -> Void) throws(RunError) -> RunState {
        var state = try RunState.load(runDirectory: recipe.runDir)
        let plan = try plan(&state)
        let missing = Set(plan.stages.filter { $0.action == .run && registry[$0.type] == nil }.map(\.type))
        if !missing.isEmpty {
            throw .executorsUnavailable(StageType.allCases.filter(missing.contains))
        }
        let recipeJSON = recipe.resolvedJSON
        state.recipe = recipeJSON
        try state.save(runDirectory: recipe.runDir)

        var outputs: [String: StageOutputs] = [:]
        for (stage, step) in zip(recipe.stages, plan.stages) {
            if step.action == .skip {
                outputs[stage.name] = state.stages[stage.name]?.outputs ?? StageOutputs(files: [stage.output])
                onEvent(.stageSkipped(name: stage.name, reason: step.reason))
                continue
            }
            guard let executor = registry[stage.type] else { preconditionFailure("checked above") }
            var record = StageRecord(type: stage.type.rawValue, status: .running)
            record.fingerprint = step.fingerprint
            record.settings = stage.resolvedJSON
            record.started = now()
            state.stages[stage.name] = record
            try state.save(runDirectory: recipe.runDir)
            onEvent(.stageStarted(name: stage.name, type: stage.type, reason: step.reason, resume: step.resume))

            let context = RunContext(
                runDirectory: recipe.runDir, seed: recipe.seed, threads: recipe.threads, recipe: recipe,
                recipeJSON: recipeJSON, outputs: outputs, fingerprint: step.fingerprint.value, resume: step.resume)
            let result: StageOutputs
            do {
                result = try executor.run(stage, context: context) {
                    onEvent(.stageProgress(name: stage.name, event: $0))
                }
                if let gone = result.files.first(where: { !FileManager.default.fileExists(atPath: $0) }) {
                    throw InputError(
                        path: gone, reason: "reported as an output of stage \"\(stage.name)\" but does not exist")
                }
            } catch {
                record.status = .failed
                record.error = "\(error)"
                record.finished = now()
                state.stages[stage.name] = record
                try state.save(runDirectory: recipe.runDir)
                onEvent(.stageFailed(name: stage.name, error: error))
                throw .stageFailed(name: stage.name, error: error)
            }
            record.status = .done
            record.outputs = result
            record.error = nil
            record.finished = now()
            state.stages[stage.name] = record
            try state.save(runDirectory: recipe.runDir)
            outputs[stage.name] = result
            onEvent(.stageFinished(name: stage.name, outputs: result))
        }
        return state
    }
}

/// Leaf-level differences between two canonical settings documents, as
/// `training.steps: 300 -> 50` (at most `limit`, then "...").
func settingsDiff(old: String, new: String, limit: Int = 3) -> [String] {
    guard let a = try? JSONValue.parseWithSources(old).0, let b = try? JSONValue.parseWithSources(new).0 else {
        return []
    }
    var out: [String] = []
    func walk(_ x: JSONValue?, _ y: JSONValue?, _ path: String) {
        if case .object(let ox)? = x, case .object(let oy)? = y {
            var keys = ox.entries.map(\.key)
            for k in oy.entries.map(\.key) where !keys.contains(k) { keys.append(k) }
            for k in keys.sorted() { walk(ox[k], oy[k], JSONPath.child(path, k)) }
        } else if x != y {
            out.append("\(path): \(x?.canonical ?? "absent") -> \(y?.canonical ?? "absent")")
        }
    }
    walk(a, b, "")
    return out.count > limit ? Array(out.prefix(limit)) + ["..."] : out
}

extension Runner {
    /// Runs the recipe holding the run directory's lock (a second `distill run` on the same
    /// directory is refused, exit 75) after removing temporary files of killed writers.
    package func runLocked(onEvent: (RunEvent) -> Void) throws -> RunState {
        let directory = URL(fileURLWithPath: recipe.runDir)
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw RunError.state(path: directory.path, reason: "cannot create the run directory: \(error.localizedDescription)")
        }
        let lock = try RunDirectoryLock(directory: directory)
        defer { lock.release() }
        for orphan in try sweepOrphanedTemporaries(in: directory) {
            onEvent(.notice("removed \(orphan.lastPathComponent), left by an interrupted write"))
        }
        return try run(onEvent: onEvent)
    }
}
