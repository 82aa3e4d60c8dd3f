import ArgumentParser
import Foundation
import Pipeline
import Recipe

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a recipe's stages in order, skipping finished ones and resuming interrupted ones.",
        discussion: """
            A recipe is JSON: {"name": ..., "run_dir": ..., "seed": ..., "threads": ..., "stages": [...]}, \
            stage types pretrain, eval, generate, export. Every problem in the recipe is reported at once \
            with its JSON path and line:column (exit code 2). The full schema, defaults and the skip/resume \
            rules are in docs/recipes.md.

            Examples:
              distill run recipe.json --dry-run
              distill run recipe.json --set pretrain.training.steps=50 --set seed=3
              distill run recipe.json --set 'stages[2].prompts=["Once upon a time"]'
            """)

    @Argument(help: "The recipe file (JSON). Relative paths inside it resolve against its folder.")
    var recipe: String

    @Option(
        name: .customLong("set"),
        help: ArgumentHelp(
            "Override a recipe value before validation: a dotted path with [index] or a stage name first, and a JSON value (else a string).",
            valueName: "key=value"))
    var overrides: [String] = []

    @Flag(help: "Validate, then print what would run or be skipped and why, with fingerprints; run nothing.")
    var dryRun = false

    @Flag(help: "Print the plan (with --dry-run) or one JSON object per event.")
    var json = false

    func run() throws {
        let resolved: Recipe
        resolved = try Recipe.load(file: recipe, overrides: overrides)
        let runner = Runner(recipe: resolved, registry: .builtIn())
        if dryRun {
            let plan = try runner.plan()
            if json { try printJSON(plan) } else { print(plan.text(recipe: resolved.name)) }
            return
        }
        try execute(runner, json: json)
    }
}

/// Runs `runner` showing progress (or JSON events); the progress line is closed before an
/// error reaches the reporter.
func execute(_ runner: Runner, json: Bool) throws {
    let progress = ProgressDisplay()
    defer { progress.finish() }
    _ = try runner.runLocked { event in
        if json {
            try? printJSONLine(RunEventLine(event))
        } else if case .stageProgress(let name, .progress(let step, let total, let metrics)) = event {
            progress.show(stage: name, step: step, total: total, metrics: metrics)
        } else if let line = event.text {
            progress.print(line)
        }
    }
}

private func printJSONLine<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

extension RunPlan {
    func text(recipe: String) -> String {
        let width = stages.map(\.name.count).max() ?? 0
        var lines = ["recipe \(recipe) -> \(runDirectory)"]
        for (i, s) in stages.enumerated() {
            let name = s.name.padding(toLength: width, withPad: " ", startingAt: 0)
            let action = s.action == .skip ? "skip" : s.resume ? "resume" : "run"
            lines.append(
                "  \(i + 1). \(name)  \(s.type.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)) \(action.padding(toLength: 6, withPad: " ", startingAt: 0)) \(s.fingerprint.value)  \(s.reason)"
            )
        }
        return lines.joined(separator: "\n")
    }
}

extension StageOutputs {
    var summaryText: String { summary.keys.sorted().map { "\($0)=\(summary[$0]!)" }.joined(separator: " ") }
}

extension RunEvent {
    /// One line for the terminal, or nil for events not shown.
    var text: String? {
        switch self {
        case .stageSkipped(let name, let reason): return "skip   \(name): \(reason)"
        case .stageStarted(let name, let type, let reason, let resume):
            return "\(resume ? "resume" : "run   ") \(name) (\(type.rawValue)): \(reason)"
        case .stageProgress(let name, .progress(let step, let total, let metrics)):
            let of = total.map { "/\($0)" } ?? ""
            return "  \(name) step \(step)\(of) "
                + metrics.keys.sorted().map { "\($0)=\(String(format: "%.4g", metrics[$0]!))" }.joined(separator: " ")
        case .stageProgress(let name, .checkpointCommitted(let path, let step)):
            return "  \(name) checkpoint at step \(step): \(path)"
        case .stageProgress(let name, .message(let text)): return "  \(name): \(text)"
        case .stageFinished(let name, let outputs): return "done   \(name) \(outputs.summaryText)"
        case .stageFailed: return nil  // the error that ends the run is printed once, on stderr
        case .notice(let text): return "note   \(text)"
        }
    }
}

/// A run event as one JSON object.
struct RunEventLine: Encodable {
    var event: String
    var stage: String
    var type: String?
    var reason: String?
    var resume: Bool?
    var step: Int?
    var total: Int?
    var metrics: [String: Double]?
    var path: String?
    var message: String?
    var outputs: StageOutputs?

    init(_ e: RunEvent) {
        switch e {
        case .stageSkipped(let name, let reason): (event, stage, self.reason) = ("skipped", name, reason)
        case .stageStarted(let name, let type, let reason, let resume):
            (event, stage, self.type, self.reason, self.resume) = ("started", name, type.rawValue, reason, resume)
        case .stageProgress(let name, .progress(let step, let total, let metrics)):
            (event, stage, self.step, self.total, self.metrics) = ("progress", name, step, total, metrics)
        case .stageProgress(let name, .checkpointCommitted(let path, let step)):
            (event, stage, self.path, self.step) = ("checkpoint", name, path, step)
        case .stageProgress(let name, .message(let text)): (event, stage, message) = ("message", name, text)
        case .stageFinished(let name, let outputs): (event, stage, self.outputs) = ("finished", name, outputs)
        case .stageFailed(let name, let error): (event, stage, message) = ("failed", name, "\(error)")
        case .notice(let text): (event, stage, message) = ("notice", "", text)
        }
    }
}
