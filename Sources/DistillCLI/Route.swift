import ArgumentParser
import Core
import Foundation
import ModelIO
import Pipeline
import Platform
import Route
import Verify

struct RouteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "route",
        abstract: "Learned routers between a weak and a strong model: train, calibrate, evaluate (docs/routing.md).",
        subcommands: [RouteTrain.self, RouteCalibrate.self, RouteEval.self])
}

/// Progress and notes for people, on stderr so stdout stays the command's result.
private func note(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// Comma-separated shares of strong calls, each within 0...1.
private func shareList(_ text: String) throws -> [Double] {
    let values = text.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
    guard !values.isEmpty, values.allSatisfy({ $0.map { (0...1).contains($0) } ?? false }) else {
        throw ValidationError("--shares: give comma-separated shares within 0...1, got \"\(text)\"")
    }
    return values.map { $0! }
}

private func printThresholds(_ router: Router) {
    print("thresholds (calibration split): score below the threshold goes to \(router.strong)")
    for t in router.thresholds {
        print(String(format: "  %3.0f%% strong calls: threshold %.5g (%.3f of calibration tasks)", t.target * 100, t.threshold, t.calibrationShare))
    }
}

struct RouteTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a router on a verdict table with the weak model's prompt embeddings, and calibrate it.",
        discussion: """
            Every task of the table with samples of both models and a prompt is embedded by the weak model \
            (--checkpoint): the mean of its final hidden states over the prompt rendered as one user turn with its \
            chat template. Tasks are split by XXH64(seed, task id) into training, calibration (--calibration) and \
            test (--test) parts; the router learns on the first, its thresholds for the --shares of strong calls \
            come from the second, and `distill route eval` reports on the third. The router file keeps the \
            embeddings, so calibrate and eval need no model; --embeddings takes them (and the model checksum) \
            from an earlier router file instead of --checkpoint.

            Examples:
              distill route train v.jsonl --weak student --strong teacher --checkpoint student.h5 -o r.h5
              distill route train v.jsonl --weak student --strong teacher --embeddings r.h5 --kind kmeans -o rk.h5
            """)

    @Argument(help: "The verdict table (from `distill verdicts build`).") var table: String
    @Option(help: "The weak (cheap) model's name in the table.") var weak: String
    @Option(help: "The strong model's name.") var strong: String
    @Option(help: "The weak model (a checkpoint, adapter, Hugging Face directory or GGUF file) that embeds the prompts.")
    var checkpoint: String?
    @OptionGroup var base: BaseOption
    @Option(help: "Take the prompt embeddings and the weak model's checksum from this router file instead of --checkpoint.")
    var embeddings: String?
    @Option(name: [.short, .customLong("output")], help: "The router file to write (.h5).") var output: String
    @Option(help: "logistic (regression on the features), knn (nearest neighbours) or kmeans (cluster router).")
    var kind: RouterKind = .logistic
    @Option(
        help:
            "What the logistic and knn routers predict: weak (the weak model's pass rate), margin ((1 + weak - strong) / 2 of the pass rates) or credit (the weak model's mean partial credit; the table must record it)."
    )
    var label: RouterLabel = .weak
    @Option(
        help: "The logistic router's features, comma-separated: embedding, length, agreement, logprob, logprob_quantiles.")
    var features: String = "embedding,length"
    @Option(help: "L2 strength of the logistic router (on standardised features).") var l2: Double = 1
    @Option(name: .customLong("k"), help: "Neighbours of the knn router.") var neighbours: Int = 10
    @Option(help: "Clusters of the kmeans router.") var clusters: Int = 8
    @Option(help: "The kmeans router's quality/cost trade-off, 0 < alpha <= 1 (1: accuracy alone).") var alpha: Double = 1
    @Option(help: "Share of tasks that calibrate the thresholds.") var calibration: Double = 0.25
    @Option(help: "Share of tasks kept for `distill route eval`.") var test: Double = 0.25
    @Option(help: "Seeds the split and the k-means seeding.") var seed: Int = 0
    @Option(help: "Target shares of strong calls to calibrate, comma-separated.") var shares: String = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9"
    @Flag(help: "Print the summary as JSON.") var json = false
    @OptionGroup var compute: ComputeOptions

    func config() throws -> RouterTrainConfig {
        var c = RouterTrainConfig(weak: weak, strong: strong)
        c.kind = kind
        c.label = label
        c.features = try features.split(separator: ",").map { name in
            guard let f = RouterFeature(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError(
                    "--features: unknown feature \"\(name)\"; choose from "
                        + RouterFeature.allCases.map(\.rawValue).joined(separator: ", "))
            }
            return f
        }
        (c.l2, c.neighbours, c.clusters, c.alpha) = (l2, neighbours, clusters, alpha)
        c.split = RouterSplit(calibration: calibration, test: test, seed: seed)
        c.shares = try shareList(shares)
        return c
    }

    func validate() throws {
        _ = try config()
        if (checkpoint == nil) == (embeddings == nil) { throw ValidationError("give --checkpoint (the weak model) or --embeddings (a router file)") }
        if !(l2 >= 0) { throw ValidationError("--l2 must be >= 0") }
        if neighbours < 1 || clusters < 1 { throw ValidationError("--k and --clusters must be >= 1") }
        if !(alpha > 0 && alpha <= 1) { throw ValidationError("--alpha must be within 0 < alpha <= 1") }
        if seed < 0 { throw ValidationError("--seed must be >= 0") }
    }

    func run() throws {
        compute.apply()
        let verdicts = try VerdictTable.read(path: table)
        try RouterTraining.checkLabel(verdicts, config())  // before any prompt is embedded
        let cache: [String: RouterInput]
        let checksum: String
        if let embeddings {
            let earlier = try Router.read(path: embeddings)
            (cache, checksum) = (earlier.cache, earlier.weakChecksum)
            note("  \(cache.count) embeddings from \(embeddings)")
        } else {
            let loaded = try loadModel(from: checkpoint!, base: base.base)
            let started = Date()
            (cache, checksum) = try routerEmbeddings(verdicts, weak: weak, strong: strong, model: loaded) { done, total in
                note(String(format: "  embedded %d of %d prompts (%.1f s)", done, total, Date().timeIntervalSince(started)))
            }
        }
        let (router, notes) = try RouterTraining.train(verdicts, config(), cache: cache, weakChecksum: checksum)
        try router.write(to: output)
        let parts = Dictionary(grouping: cache.keys, by: { router.split.part($0) }).mapValues(\.count)
        if json {
            struct Summary: Encodable {
                var output: String, kind: String, weak: String, strong: String
                var weakChecksum: String, tasks: [String: Int], thresholds: [Router.Threshold], notes: [String]
                enum CodingKeys: String, CodingKey {
                    case output, kind, weak, strong, tasks, thresholds, notes
                    case weakChecksum = "weak_checksum"
                }
            }
            try printJSON(
                Summary(
                    output: output, kind: kind.rawValue, weak: router.weak, strong: router.strong, weakChecksum: checksum,
                    tasks: Dictionary(uniqueKeysWithValues: parts.map { ($0.key.rawValue, $0.value) }), thresholds: router.thresholds,
                    notes: notes))
            return
        }
        print(
            "\(output): \(kind.rawValue) router for \(router.weak) (\(checksum)) -> \(router.strong); embedded tasks: "
                + "\(parts[.train] ?? 0) training, \(parts[.calibration] ?? 0) calibration, \(parts[.test] ?? 0) test")
        printThresholds(router)
        for n in notes { print("note: " + n) }
    }
}

struct RouteCalibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calibrate",
        abstract: "Set a router's thresholds for target shares of strong calls from its calibration split.",
        discussion: """
            For each share q of the calibration split's n tasks, the threshold halfway between the round(q n)-th \
            and the next lowest score. Rewrites the router file (or writes -o).

            Example:
              distill route calibrate r.h5 v.jsonl --shares 0.1,0.3,0.5
            """)

    @Argument(help: "The router file.") var router: String
    @Argument(help: "The verdict table it was trained on.") var table: String
    @Option(help: "Target shares of strong calls, comma-separated.") var shares: String = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9"
    @Option(name: [.short, .customLong("output")], help: "Write the calibrated router here (default: in place).") var output: String?

    func validate() throws { _ = try shareList(shares) }

    func run() throws {
        var r = try Router.read(path: router)
        let notes = try RouterTraining.calibrate(&r, try VerdictTable.read(path: table), shares: try shareList(shares))
        try r.write(to: output ?? router)
        printThresholds(r)
        for n in notes { print("note: " + n) }
    }
}

struct RouteEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate a router on its test split: accuracy against strong calls, APGR, CPT, against random and the oracle.",
        discussion: """
            Sweeps the threshold over the test tasks: accuracy against the share of strong calls, with random \
            routing (--seeds seeds), the oracle and each model alone as references; APGR, CPT(50%) and CPT(80%) \
            with percentile-bootstrap intervals over the test tasks; the calibrated thresholds applied to the test \
            split. Writes PREFIX.json, PREFIX.md and PREFIX.svg (PREFIX: the router's path without .h5, then .eval).

            Example:
              distill route eval r.h5 v.jsonl
            """)

    @Argument(help: "The router file.") var router: String
    @Argument(help: "The verdict table it was trained on.") var table: String
    @Option(help: "Seeds of random routing.") var seeds: Int = 10
    @Option(help: "Bootstrap resamples.") var resamples: Int = 2000
    @Option(help: "Seeds the bootstrap.") var seed: Int = 0
    @Option(name: [.short, .customLong("output")], help: "Prefix of the files written.") var output: String?
    @Flag(help: "Print the report as JSON instead of Markdown.") var json = false

    func validate() throws {
        if seeds < 1 { throw ValidationError("--seeds must be >= 1") }
        if resamples < 0 { throw ValidationError("--resamples must be >= 0") }
        if seed < 0 { throw ValidationError("--seed must be >= 0") }
    }

    func run() throws {
        let r = try Router.read(path: router)
        let verdicts = try VerdictTable.read(path: table)
        var config = RouterEvalConfig()
        config.randomSeeds = seeds
        config.bootstrap = BootstrapConfig(resamples: resamples, seed: seed)
        note("  evaluating the \(r.model.kind.rawValue) router of \(router) on \(table)")
        let report = try RouterEvaluation.run(r, verdicts, config)
        let prefix = output ?? (router.hasSuffix(".h5") ? String(router.dropLast(3)) : router) + ".eval"
        let chart = prefix + ".svg"
        let markdown = report.markdown(chart: (chart as NSString).lastPathComponent)
        try writeAtomically(report.json(), to: prefix + ".json")
        try writeAtomically(markdown, to: prefix + ".md")
        try writeAtomically(report.chart().render(), to: chart)
        if json { print(report.json(), terminator: "") } else { print(markdown, terminator: "") }
        note("  wrote \(prefix).json, \(prefix).md, \(chart)")
    }
}

extension RouterKind: ExpressibleByArgument {}
extension RouterLabel: ExpressibleByArgument {}
