import ArgumentParser
import Foundation
import Pipeline
import Recipe

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a recipe's stages in order, skipping finished ones and resuming interrupted ones.",
        discussion: """
            A recipe is JSON: {"name": ..., "run_dir": ..., "seed": ..., "threads": ..., "stages": [...]}, \
            stage types \(StageType.allCases.map(\.rawValue).joined(separator: ", ")). Every problem in the \
            recipe is reported at once with its JSON path and line:column (exit code 2). The full schema, \
            defaults and the skip/resume rules are in docs/recipes.md.

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
        let resolved = try Recipe.load(file: recipe, overrides: overrides)
        let runner = Runner(recipe: resolved, registry: .builtIn())
        if dryRun {
            let plan = try runner.plan()
            if json { try printJSON(plan) } else { print(plan.text(recipe: resolved.name)) }
            return
        }
        try execute(runner, json: json)
    }
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
