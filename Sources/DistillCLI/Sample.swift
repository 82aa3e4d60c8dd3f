import ArgumentParser
import Foundation
import JSON
import ModelIO
import Pipeline
import Recipe

/// `distill sample`: the `sample` stage from a recipe (with the stages it depends on) or from
/// arguments, through the same runner, cache and outputs as `distill run`.
struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sample a teacher on a task set, verify the samples, and write SFT data and preference pairs.",
        discussion: """
            With a recipe, runs its stages up to its last sample stage (earlier stages are skipped when \
            finished, as with distill run). Without one, --tasks, --teacher-json and --out describe a single \
            sample stage whose outputs (samples.jsonl, sft.jsonl, pairs.jsonl, stats.json) go into --out. \
            Teacher calls are cached (SQLite); an interrupted run resumes without repeating a finished call. \
            Teachers, verifiers and outputs: docs/teacher.md.

            Examples:
              distill sample Recipes/sample-arithmetic.json
              distill sample --tasks tasks.jsonl --out runs/s1 \\
                --teacher-json '{"type": "openai", "base_url": "http://127.0.0.1:8080/v1", "model": "m", "samples": 4}'
              distill sample --tasks tasks.jsonl --out runs/s2 \\
                --teacher-json '{"type": "checkpoint", "checkpoint": "base.h5", "samples": 8, "temperature": 0.7}'
            """)

    @Argument(help: "A recipe file (JSON) with at least one sample stage.")
    var recipe: String?

    @Option(
        name: .customLong("set"),
        help: ArgumentHelp("Override a recipe value (as with distill run).", valueName: "key=value"))
    var overrides: [String] = []

    @Option(help: "Without a recipe: the task set (JSONL).") var tasks: String?
    @Option(help: "Without a recipe: the teacher object, e.g. {\"type\": \"checkpoint\", \"checkpoint\": \"base.h5\"}.")
    var teacherJson: String?
    @Option(help: "Without a recipe: the verifier object (default {\"type\": \"auto\"}).") var verifierJson: String?
    @Option(help: "Without a recipe: the pairing object, e.g. {\"strategy\": \"one\", \"seed\": 3}.") var pairsJson:
        String?
    @Option(help: "Without a recipe: the teacher prompt object, e.g. {\"system\": \"...\", \"examples\": \"shots.jsonl\", \"tools_in\": \"user\"}.")
    var teacherPromptJson: String?
    @Option(help: "Without a recipe: the output folder (also holds run.json and the call cache).") var out: String?
    @Option(help: "Without a recipe: the seed for pairing.") var seed: Int = 0

    @Flag(help: "Print one JSON object per event.") var json = false

    func validate() throws {
        if recipe != nil {
            if tasks != nil || teacherJson != nil || out != nil || verifierJson != nil || pairsJson != nil || teacherPromptJson != nil {
                throw ValidationError("give either a recipe or --tasks/--teacher-json/--out, not both")
            }
        } else if tasks == nil || teacherJson == nil || out == nil {
            throw ValidationError("give a recipe, or --tasks, --teacher-json and --out")
        }
    }

    func run() throws {
        let resolved: Recipe
        if let recipe {
            resolved = try Recipe.load(file: recipe, overrides: overrides)
        } else {
            resolved = try Recipe.load(
                text: argumentRecipe(), file: "(distill sample arguments)",
                baseDirectory: FileManager.default.currentDirectoryPath, overrides: overrides)
        }
        guard let last = resolved.stages.lastIndex(where: { $0.type == .sample }) else {
            throw usageError("\(recipe ?? "the recipe") has no sample stage; add {\"type\": \"sample\", ...}")
        }
        var upTo = resolved
        upTo.stages = Array(resolved.stages[...last])
        try execute(Runner(recipe: upTo, registry: .builtIn()), json: json)
    }

    /// A one-stage recipe from the arguments; the JSON objects are spliced in as written, so
    /// their problems are reported with recipe paths (stages[0].teacher.samples).
    private func argumentRecipe() -> String {
        func quoted(_ s: String) -> String { JSONValue.string(s).canonical }
        var stage =
            "{\"type\": \"sample\", \"output\": \".\", \"tasks\": \(quoted(tasks!)), \"teacher\": \(teacherJson!)"
        if let verifierJson { stage += ", \"verifier\": \(verifierJson)" }
        if let pairsJson { stage += ", \"pairs\": \(pairsJson)" }
        if let teacherPromptJson { stage += ", \"teacher_prompt\": \(teacherPromptJson)" }
        stage += "}"
        return "{\"name\": \"sample\", \"run_dir\": \(quoted(out!)), \"seed\": \(seed), \"stages\": [\(stage)]}"
    }
}
