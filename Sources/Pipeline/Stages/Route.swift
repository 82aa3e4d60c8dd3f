// The `route` stage: the run's verdict table (every eval arm and sample stage of the run
// directory), the weak model's prompt embeddings, a learned router trained and calibrated on
// them, and its evaluation on the test split (docs/routing.md, *Learned routers*).
// `distill route train` embeds through the same `routerEmbeddings`.

import Core
import Foundation
import JSON
import ModelIO
import Platform
import Recipe
import Route
import Teacher

/// The prompt embeddings of every task of `table` with samples of `weak` and `strong` and a
/// prompt, by the weak model `loaded` (f32 weights), and its checksum. Refuses a model whose
/// checksum is not the table's identity of `weak` (an eval arm's `xxh64:…`, "+FORMAT" for
/// quantized weights ignored). `progress` hears (done, total) every 50 prompts and at the end.
package func routerEmbeddings(
    _ table: VerdictTable, weak: String, strong: String, model loaded: LoadedModel, progress: (Int, Int) -> Void = { _, _ in }
) throws -> (cache: [String: RouterInput], checksum: String) {
    let weakModel = try table.model(weak, option: "--weak")
    _ = try table.model(strong, option: "--strong")
    let checksum = CheckpointTeacher.checksum(loaded.model, tokenizerJSON: loaded.tokenizerJSON ?? "")
    if let identity = weakModel.identity, identity.hasPrefix("xxh64:"), identity.split(separator: "+").first.map(String.init) != checksum {
        throw UserError(
            path: loaded.path,
            problem: "is not the model \"\(weakModel.name)\" of the verdict table (\(identity)); its checksum is \(checksum)",
            fix: "give the checkpoint the table's weak model was evaluated from", kind: .usage)
    }
    let embedder = try PromptEmbedder(loaded)
    let prompts = RouterTraining.prompts(table, weak: weak, strong: strong)
    var cache: [String: RouterInput] = [:]
    for (i, p) in prompts.enumerated() {
        let e = embedder.embed(p.prompt)
        cache[p.id] = RouterInput(embedding: e.embedding, promptTokens: e.tokens)
        if (i + 1) % 50 == 0 || i + 1 == prompts.count { progress(i + 1, prompts.count) }
    }
    return (cache, checksum)
}

/// Runs `body`; an error whose path names command-line flags (`--weak`, `--weak/--strong`),
/// every one of them in `keys`, is rethrown naming the stage's keys instead (`stages[3].weak`).
func namingStageKeys<T>(
    _ stage: Stage, in context: RunContext, _ keys: [String: String], _ body: () throws -> T
) throws -> T {
    do {
        return try body()
    } catch var error as UserError {
        let flags = error.path.split(separator: "/").map(String.init)
        guard !flags.isEmpty, flags.allSatisfy({ keys[$0] != nil }) else { throw error }
        error.path = flags.map { stagePath(stage.name, in: context) + "." + keys[$0]! }.joined(separator: ", ")
        throw error
    }
}

/// The JSON path of the stage called `name` in the run's recipe.
func stagePath(_ name: String, in context: RunContext) -> String {
    "stages[\(context.recipe.stages.firstIndex { $0.name == name }.map(String.init) ?? "?")]"
}

struct RouteExecutor: StageExecutor {
    static let flagKeys = [
        "--weak": "weak", "--strong": "strong", "--calibration": "calibration", "--test": "test", "--shares": "shares",
        "--features": "features", "--alpha": "alpha",
    ]

    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        try namingStageKeys(stage, in: context, Self.flagKeys) { try train(stage, context: context, emit: emit) }
    }

    private func train(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        guard case .route(let s) = stage else { mismatch(stage, .route) }
        if let threads = context.threads { Threads.set(threads) }
        let folder = (s.output as NSString).deletingLastPathComponent
        let prefix = s.output.hasSuffix(".h5") ? String(s.output.dropLast(3)) : s.output
        let (table, notes) = try VerdictSources.build(paths: [context.runDirectory])
        for n in notes { emit(.message("verdicts: " + n)) }
        let verdicts = (folder as NSString).appendingPathComponent("verdicts.jsonl")
        try writeAtomically(table.jsonl(), to: verdicts)
        var config = RouterTrainConfig(weak: s.weak, strong: s.strong)
        config.kind = RouterKind(rawValue: s.kind)!
        config.label = RouterLabel(rawValue: s.label)!
        config.labelSource = stagePath(s.name, in: context) + ".label"
        config.features = s.features.map { RouterFeature(rawValue: $0)! }
        (config.l2, config.neighbours, config.clusters, config.alpha) = (s.l2, s.k, s.clusters, s.alpha)
        config.split = RouterSplit(calibration: s.calibration, test: s.test, seed: s.seed)
        config.shares = s.shares
        try RouterTraining.checkLabel(table, config)
        let loaded = try loadModel(from: context.path(of: s.checkpoint))
        let (cache, checksum) = try routerEmbeddings(table, weak: s.weak, strong: s.strong, model: loaded) { done, total in
            emit(.progress(step: done, total: total, metrics: [:]))
        }
        let (router, trainNotes) = try RouterTraining.train(table, config, cache: cache, weakChecksum: checksum)
        for n in trainNotes { emit(.message(n)) }
        try router.write(to: s.output)
        var evalConfig = RouterEvalConfig()
        evalConfig.randomSeeds = s.randomSeeds
        evalConfig.bootstrap = .init(resamples: s.resamples, seed: s.seed)
        let report = try RouterEvaluation.run(router, table, evalConfig)
        let chart = prefix + ".eval.svg"
        try writeAtomically(report.json(), to: prefix + ".eval.json")
        try writeAtomically(report.markdown(chart: (chart as NSString).lastPathComponent), to: prefix + ".eval.md")
        try writeAtomically(report.chart().render(), to: chart)
        var summary: [String: SummaryValue] = ["test_tasks": .int(report.testTasks)]
        if let apgr = report.arms[0].apgr { summary["apgr"] = .double(apgr.value) }
        if let apgr = report.arms[1].apgr { summary["random_apgr"] = .double(apgr.value) }
        if let gain = report.apgrOverRandom { summary["apgr_over_random_low"] = .double(gain.ciLow) }
        emit(.message("router: wrote \(s.output), \(prefix).eval.md; " + summary.keys.sorted().map { "\($0) \(summary[$0]!)" }.joined(separator: ", ")))
        return StageOutputs(
            files: [s.output, verdicts, prefix + ".eval.json", prefix + ".eval.md", chart], summary: summary)
    }
}
