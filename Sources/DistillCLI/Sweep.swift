import ArgumentParser
import Core
import Foundation
import Platform
import Recipe
import Sweep

struct Sweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train many small models of different shapes and compare them (docs/sweep.md).",
        subcommands: [SweepRunCommand.self, SweepReportCommand.self], defaultSubcommand: SweepRunCommand.self)
}

struct SweepRunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a recipe's sweep stage: every trial not finished yet, resuming interrupted ones.",
        discussion: """
            Trials, results (results.jsonl, results.csv) and the report go to the stage's output folder in the \
            run directory. Finished trials are skipped; an interrupted one resumes from its checkpoint. With \
            --shard i/n (or inside a Slurm job array) this process runs trials i, i+n, i+2n, ... only; \
            `distill sweep report` merges the shards.

            Examples:
              distill sweep Recipes/sweep-depth-width.json --dry-run
              distill sweep Recipes/sweep-depth-width.json --set sweep.data.train=my.txt
              distill sweep Recipes/sweep-depth-width.json --shard 0/4
            """)

    @Argument(help: "The recipe file (JSON) with a sweep stage.") var recipe: String
    @Option(name: .customLong("set"), help: ArgumentHelp("Override a recipe value (as distill run).", valueName: "key=value"))
    var overrides: [String] = []
    @Option(help: ArgumentHelp("Run the deterministic subset i of n (0-based); default: SLURM_ARRAY_TASK_ID/COUNT when set, else all.", valueName: "i/n"))
    var shard: String?
    @Option(help: "The sweep stage to run (default: the first one).") var stage: String?
    @Flag(help: "List the trials and the invalid combinations with reasons; train nothing.") var dryRun = false
    @Option(help: "Threads (default: the recipe's threads, DISTILL_THREADS or all cores).") var threads: Int?

    func validate() throws {
        if let shard, SweepShard(shard) == nil { throw ValidationError("--shard must be i/n with 0 <= i < n, got \(shard)") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
    }

    func run() throws {
        let resolved = try Recipe.load(file: recipe, overrides: overrides)
        let sweeps = resolved.stages.compactMap { s -> SweepStage? in if case .sweep(let x) = s { return x } else { return nil } }
        guard let sweep = stage.map({ n in sweeps.first { $0.name == n } }) ?? sweeps.first else {
            throw UserError(
                path: recipe, problem: "no sweep stage\(stage.map { " named \"\($0)\"" } ?? "")",
                fix: "add {\"type\": \"sweep\", ...} (docs/sweep.md)", kind: .usage)
        }
        let shardValue = shard.flatMap(SweepShard.init) ?? SweepShard.fromEnvironment() ?? .all
        let runner = SweepRunner(recipe: resolved, stage: sweep, threads: threads, shard: shardValue)
        if dryRun {
            let plan = runner.plan()
            let mine = shardValue.select(plan.trials)
            print("sweep \(sweep.name) -> \(sweep.output) (\(sweep.strategy.rawValue), shard \(shardValue))")
            for t in mine {
                let n = t.model.llamaConfig(vocabSize: runner.plannedVocabSize()).nonEmbeddingParameterCount
                print("  \(t.id)  \(t.label)  seed \(t.seed)  steps \(t.training.steps == 0 ? "from the time budget" : String(t.training.steps ?? 0))  \(n) non-embedding params" + (t.solved.map { "  (\($0))" } ?? ""))
            }
            if sweep.strategy == .halving { print("  then \(sweep.rungs - 1) more rung(s), keeping 1/\(sweep.eta) each time") }
            for bad in plan.invalid {
                let what = bad.values.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
                print("  invalid \(what.isEmpty ? "base model" : what): " + bad.reasons.joined(separator: "; "))
            }
            return
        }
        try createDirectory(resolved.runDir)
        let progress = ProgressDisplay()
        var current = sweep.name
        let summary: SweepSummary
        do {
            defer { progress.finish() }
            summary = try runner.run { event in
                switch event {
                case .progress(let step, let total, let metrics): progress.show(stage: current, step: step, total: total, metrics: metrics)
                case .message(let text):
                    if text.hasPrefix("trial "), let id = text.split(separator: " ").dropFirst(2).first(where: { $0.hasSuffix(":") }) { current = "trial " + id.dropLast() }
                    progress.print("  " + text)
                case .checkpointCommitted: break
                }
            }
        }
        print("sweep: \(summary.ran) trial(s) run, \(summary.skipped) already finished, \(summary.invalid.count) invalid combination(s) skipped")
        let report = try SweepReport(directories: [summary.directory])
        for (i, c) in report.ranked.prefix(12).enumerated() {
            let label = c.label.padding(toLength: max(30, c.label.count), withPad: " ", startingAt: 0)
            print(String(format: "  %2d. ", i + 1) + label + String(format: "  val loss %.4f  decode %6.0f tok/s  ", c.meanLoss, c.meanDecode) + "\(c.first.nonEmbeddingParameters) non-emb params")
        }
        if shardValue.count == 1 {
            let written = try report.write(to: URL(fileURLWithPath: summary.directory), format: .html)
            print("report: \(written.report)" + (written.recipe.map { "\nbest configuration as a recipe: \($0)" } ?? ""))
        } else {
            print("shard \(shardValue) done; when every shard has finished: distill sweep report \(summary.directory)")
        }
    }
}

struct SweepReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Merge sweep results (every shard's) and write the report and the best configuration's recipe.")

    @Argument(help: "Sweep folders (the first holds sweep.json; more folders merge shards run elsewhere).")
    var directories: [String]
    @Option(help: "html (self-contained, figures inline) or md (figures in figures/).") var format: String = "html"
    @Option(help: "Folder for the report (default: the first sweep folder).") var output: String?
    @Option(help: "Steps of the full run in best-recipe.json (default: 10 x the trial's steps).") var fullSteps: Int?

    func validate() throws {
        if ReportFormat(rawValue: format) == nil { throw ValidationError("--format must be html or md, got \(format)") }
        if directories.isEmpty { throw ValidationError("give at least one sweep folder") }
        if let fullSteps, fullSteps < 2 { throw ValidationError("--full-steps must be at least 2") }
    }

    func run() throws {
        for dir in directories where !FileManager.default.fileExists(atPath: dir) {
            throw UserError(
                path: dir, problem: "no such sweep folder", fix: "give the stage's output folder (e.g. Checkpoints/<name>/sweep)",
                kind: .io)
        }
        let report = try SweepReport(directories: directories, fullSteps: fullSteps)
        if report.results.isEmpty {
            throw UserError(
                path: directories.joined(separator: ", "), problem: "no results*.jsonl rows yet", fix: "run the sweep first",
                kind: .badData)
        }
        let out = URL(fileURLWithPath: output ?? directories[0])
        try createDirectory(out)
        let written = try report.write(to: out, format: ReportFormat(rawValue: format)!)
        print("\(report.results.count) trials, \(report.ranked.count) configurations")
        print("report: \(written.report)")
        if let recipe = written.recipe { print("best configuration as a recipe: \(recipe)") }
    }
}
