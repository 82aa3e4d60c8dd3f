import ArgumentParser
import Foundation
import Platform
import Route

struct Verdicts: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Verdict tables across models, and cascade and vote analyses over them (docs/routing.md).",
        subcommands: [VerdictsBuild.self, VerdictsCascade.self])
}

/// Progress and notes for people, on stderr so stdout stays the command's result.
private func note(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

struct VerdictsBuild: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build",
        abstract: "Collect every model's verified samples per task from run directories into one verdict table.",
        discussion: """
            Each RUN_DIR (or a file in it) is searched, with its direct subfolders, for evaluation rows \
            (NAME.tasks.jsonl beside its report NAME.json: every arm is a model) and sample stage outputs \
            (samples.jsonl: the teacher is a model named after its folder). The table has a header line naming \
            the models, then one row per task: per model the samples n, correct c and each sample's canonical \
            answer, tokens in and out, latency and log-probability mean and minimum (null where not recorded). \
            A decision log of distill serve (--decision-log) is read with --tasks: each routed model is a model, \
            each logged answer judged again against the task whose prompt it answered.

            Examples:
              distill verdicts build Checkpoints/function-calls-v2 -o fc.verdicts.jsonl
              distill verdicts build decisions.jsonl --tasks Data/function-calls/test.jsonl -o served.jsonl
              distill verdicts build runs/a runs/b -o v.jsonl --routellm-csv v.routellm.csv
            """)

    @Argument(
        help: ArgumentHelp("Run directories, samples.jsonl / NAME.tasks.jsonl files, or decision logs.", valueName: "RUN_DIR"))
    var runs: [String]
    @Option(help: "The task file a decision log's requests came from: its answers are judged against it.")
    var tasks: String?
    @Flag(
        help:
            "Judge every recorded text again with today's verifiers (the task file and verifier settings the source records), for files written before canonical answers or a verifier fix."
    )
    var reverify = false
    @Option(name: [.short, .customLong("output")], help: "The verdict table to write (JSONL).") var output: String
    @Option(
        name: .customLong("routellm-csv"),
        help: "Also write RouteLLM's benchmark CSV (prompt, then True/False per model from its first sample).")
    var routellmCSV: String?
    @Option(
        name: .customLong("routellm-models"),
        help: "The CSV's model columns, comma-separated (default: every model; tasks lacking one are left out).")
    var routellmModels: String?
    @Flag(help: "Print the summary as JSON.") var json = false

    func validate() throws {
        if runs.isEmpty { throw ValidationError("give at least one run directory") }
        if routellmModels != nil && routellmCSV == nil {
            throw ValidationError("--routellm-models needs --routellm-csv")
        }
    }

    func run() throws {
        let (table, notes) = try VerdictSources.build(paths: runs, tasks: tasks, reverify: reverify) { note("  read " + $0) }
        try writeAtomically(table.jsonl(), to: output)
        var skipped: Int?
        if let routellmCSV {
            let names = routellmModels?.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            for name in names ?? [] { _ = try table.model(name, option: "--routellm-models") }
            let csv = RouteLLMCSV.write(table, models: names)
            try writeAtomically(csv.text, to: routellmCSV)
            skipped = csv.skipped
        }
        struct ModelSummary: Encodable {
            var name: String, kind: String, tasks: Int, samples: Int, correct: Int
            var readable: Int
            var parameters: Int?
        }
        let summaries = table.models.map { m in
            let cells = table.rows.compactMap { $0.models[m.name] }
            return ModelSummary(
                name: m.name, kind: m.kind, tasks: cells.count, samples: cells.map(\.n).reduce(0, +),
                correct: cells.map(\.c).reduce(0, +),
                readable: cells.map { $0.samples.filter { $0.answer != nil }.count }.reduce(0, +),
                parameters: m.parameters)
        }
        if json {
            struct Summary: Encodable {
                var output: String, tasks: Int, models: [ModelSummary], notes: [String]
                var routellmCSV: String?, routellmSkipped: Int?
                enum CodingKeys: String, CodingKey {
                    case output, tasks, models, notes
                    case routellmCSV = "routellm_csv"
                    case routellmSkipped = "routellm_skipped"
                }
            }
            try printJSON(
                Summary(
                    output: output, tasks: table.rows.count, models: summaries, notes: notes, routellmCSV: routellmCSV,
                    routellmSkipped: skipped))
            return
        }
        print("\(output): \(table.rows.count) tasks, \(table.models.count) models")
        for s in summaries {
            print(
                String(
                    format: "  %@ (%@): %d tasks, %d samples, %d correct (%.1f%%), %d with a readable answer", s.name,
                    s.kind, s.tasks, s.samples, s.correct,
                    s.samples > 0 ? 100 * Double(s.correct) / Double(s.samples) : 0,
                    s.readable))
        }
        if let routellmCSV, let skipped {
            print(
                "\(routellmCSV): RouteLLM CSV, \(table.rows.count - skipped) rows (\(skipped) tasks left out: no prompt text or a model without samples)"
            )
        }
        for n in notes { print("note: " + n) }
    }
}

struct VerdictsCascade: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cascade",
        abstract: "Cascade, votes at matched compute and adaptive sampling of a weak and a strong model.",
        discussion: """
            From the samples recorded in the table (nothing is generated): the weak model answers m times; when \
            its majority vote has no winner or the winner's share is below tau, the strong model answers once. \
            Reports accuracy, cost (tokens x parameters) and the share of strong calls over the (m, tau) grid \
            with the Pareto front, the weak model's maj@k against one strong sample by difficulty bin, and \
            adaptive sampling. Writes PREFIX.json, PREFIX.md and PREFIX.svg.

            Examples:
              distill verdicts cascade fc.verdicts.jsonl --weak "SFT then DPO" --strong "few-shot teacher"
              distill verdicts cascade v.jsonl --weak small --strong large --split 0.3 --parameters small=1000000
            """)

    @Argument(help: "The verdict table (from `distill verdicts build`).") var table: String
    @Option(help: "The weak (cheap) model's name in the table.") var weak: String
    @Option(help: "The strong model's name.") var strong: String
    @Option(
        help:
            "Share of tasks (by a seeded hash of their id) that calibrate the difficulty bins, 0 ..< 1; the rest are the test split."
    )
    var split: Double = 0.5
    @Option(help: "Seeds the split and the bootstrap.") var seed: Int = 0
    @Option(help: "Weak samples per request, comma-separated.") var m: String = "1,2,4,8"
    @Option(help: "Thresholds on the majority share, comma-separated, each within 0...1.") var taus: String =
        "0,0.5,0.625,0.75,0.875,1"
    @Option(
        name: .customLong("strong-k"),
        help: "The strong model answers by the majority vote of its first k samples (1: one sample).")
    var strongK: Int = 1
    @Option(help: "Adaptive sampling: stop when this many samples agree, comma-separated, each >= 2.") var agree:
        String = "2,3"
    @Option(
        name: .customLong("parameters"),
        help: ArgumentHelp(
            "A model's parameter count, for models whose source does not record it.", valueName: "NAME=COUNT"))
    var parameters: [String] = []
    @Option(
        name: [.short, .customLong("output")],
        help: "Prefix of the files written (default: the table's path without .jsonl, then .cascade).")
    var output: String?
    @Flag(help: "Print the report as JSON instead of Markdown.") var json = false

    private func list<T>(_ text: String, _ flag: String, _ parse: (String) -> T?, _ ok: (T) -> Bool) throws -> [T] {
        let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let values = items.map(parse)
        guard !items.isEmpty, values.allSatisfy({ $0.map(ok) ?? false }) else {
            throw ValidationError(
                "--\(flag): give comma-separated values (\(flag == "taus" ? "each within 0...1" : flag == "m" ? "each >= 1" : "each >= 2")), got \"\(text)\""
            )
        }
        return values.map { $0! }
    }

    func config() throws -> CascadeConfig {
        var c = CascadeConfig(weak: weak, strong: strong)
        c.ms = try list(m, "m", { Int($0) }, { $0 >= 1 })
        c.taus = try list(taus, "taus", { Double($0) }, { (0...1).contains($0) })
        c.agree = try list(agree, "agree", { Int($0) }, { $0 >= 2 })
        c.calibration = split
        c.strongK = strongK
        c.seed = seed
        c.bootstrap.seed = seed
        for p in parameters {
            let parts = p.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let n = Int(parts[1]), n > 0 else {
                throw ValidationError("--parameters: give NAME=COUNT with a positive count, got \"\(p)\"")
            }
            c.parameters[parts[0]] = n
        }
        return c
    }

    func validate() throws {
        _ = try config()
        if !(0..<1).contains(split) { throw ValidationError("--split must be within 0 ..< 1, got \(split)") }
        if seed < 0 { throw ValidationError("--seed must be >= 0, got \(seed)") }
    }

    func run() throws {
        let verdicts = try VerdictTable.read(path: table)
        note("  analysing \(verdicts.rows.count) tasks of \(table)")
        let report = try CascadeAnalysis.run(verdicts, config())
        let prefix = output ?? (table.hasSuffix(".jsonl") ? String(table.dropLast(6)) : table) + ".cascade"
        let chart = prefix + ".svg"
        let markdown = report.markdown(chart: (chart as NSString).lastPathComponent)
        try writeAtomically(report.json(), to: prefix + ".json")
        try writeAtomically(markdown, to: prefix + ".md")
        try writeAtomically(report.chart().render(), to: chart)
        if json { print(report.json(), terminator: "") } else { print(markdown, terminator: "") }
        note("  wrote \(prefix).json, \(prefix).md, \(chart)")
    }
}
