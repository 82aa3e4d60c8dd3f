// The `eval` stage: mean next-token loss and perplexity of a checkpoint on the held-out
// split (or the training windows, or all) of its data, written to eval.json; or, with
// `tasks`, task evaluation of every arm (greedy accuracy, pass@k, maj@k with bootstrap
// intervals) written to eval.json, eval.md, eval.svg and eval.tasks.jsonl. Task evaluation
// generates through the call cache, so a killed stage re-runs without regenerating finished
// batches. `distill eval --tasks` runs the same `runTaskEvaluation`.

import Charts
import Core
import Foundation
import JSON
import ModelIO
import NN
import Platform
import Recipe
import Sweep
import Teacher
import TextData
import Training
import Verify

struct EvalExecutor: StageExecutor {
    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        guard case .eval(let s) = stage else { mismatch(stage, .eval) }
        if let threads = context.threads { Threads.set(threads) }
        if let t = s.taskEval { return try runTasks(s, t, context: context, emit: emit) }
        let loaded = try loadModel(from: context.path(of: s.checkpoint))
        let tokenizer = try loaded.requireTokenizer()
        let data = s.data.train.isEmpty && s.data.text == nil ? evaluatedData(s, context: context) : s.data
        let stream = try data.corpusSource(runDirectory: context.runDirectory).tokenStream(
            tokenizer: tokenizer, separator: loaded.endOfText, cacheDirectory: URL(fileURLWithPath: context.runDirectory).appendingPathComponent("cache"))
        let seqLen = s.seqLen ?? trainedSeqLen(loaded) ?? min(128, loaded.model.config.maxPositionEmbeddings)
        try requireSeqLen(seqLen, fits: loaded.model, path: loaded.path, setting: "seq_len")
        let batches = try evaluationBatches(stream.tokens, seqLen: seqLen, batches: s.batches, split: s.split, fraction: data.validationFraction, seed: UInt64(context.seed))
        try requireEvaluationMemory(loaded.model.config, batches, path: loaded.path, setting: "seq_len")
        let result = evaluate(loaded.model, batches: batches)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeAtomically(try encoder.encode(result), to: s.output)
        emit(.progress(step: result.batches, total: result.batches, metrics: ["loss": result.loss, "perplexity": result.perplexity]))
        return StageOutputs(files: [s.output], summary: ["loss": .double(result.loss), "perplexity": .double(result.perplexity), "tokens": .int(result.tokens)])
    }

    private func runTasks(_ s: EvalStage, _ t: TaskEvalSettings, context: RunContext, emit: (StageEvent) -> Void)
        throws -> StageOutputs
    {
        try FileManager.default.createDirectory(
            atPath: (t.cache as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let cache = try CallCache(path: t.cache)
        let models = t.arms.map { arm in
            TaskEvalModel(
                name: arm.name, label: arm.model, path: context.path(of: CheckpointSource(arm.model)),
                template: arm.template, prompt: arm.teacherPrompt ?? TeacherPrompt(), weights: arm.weights,
                grammar: arm.grammar)
        }
        let outcome = try runTaskEvaluation(
            tasks: t.tasks, models: models, verifier: t.verifier, config: t.sampling, cache: cache, maxTasks: t.maxTasks,
            baseline: t.baseline, emit: emit)
        let files = try writeTaskEvaluation(outcome, output: s.output)
        var summary: [String: SummaryValue] = [
            "tasks": .int(outcome.report.taskCount), "generated": .int(outcome.generated),
            "cache_hits": .int(outcome.cacheHits), "seconds": .double(outcome.seconds),
        ]
        for arm in outcome.report.arms {
            summary["\(arm.name).greedy"] = .double(arm.metrics.greedyAccuracy.value)
            if let maj = arm.metrics.majAtK { summary["\(arm.name).maj_at_k"] = .double(maj.value) }
            if let p = arm.metrics.passAtK.last { summary["\(arm.name).pass_at_k"] = .double(p.value) }
        }
        return StageOutputs(files: files, summary: summary)
    }

    /// Without its own data, eval reads the data of the pretrain stage that made its checkpoint.
    private func evaluatedData(_ s: EvalStage, context: RunContext) -> DataSettings {
        if case .stage(let name) = s.checkpoint, case .pretrain(let p)? = context.recipe.stage(named: name) { return p.data }
        return s.data
    }

    private func trainedSeqLen(_ loaded: LoadedModel) -> Int? {
        guard let recipe = loaded.checkpoint?.recipe, let r = try? Recipe.decodeResolved(recipe),
            let stage = loaded.checkpoint?.metadata["stage"], case .pretrain(let p)? = r.stage(named: stage)
        else { return nil }
        return p.training.seqLen
    }
}

/// Windows of `seqLen`+1 tokens: the validation split the pretrain stage held out (same
/// seed and fraction), the training windows, or all of them; at most `batches` batches of 8.
func evaluationBatches(_ tokens: [Int32], seqLen: Int, batches: Int, split: EvalSplit, fraction: Double, seed: UInt64) throws -> [TokenBatch] {
    let rows = 8
    switch split {
    case .validation:
        let batcher = try TokenBatcher(tokens: tokens, config: .init(batchSize: 1, seqLen: seqLen, validationFraction: fraction, splitSeed: seed), seed: seed)
        return Array(batcher.validationBatches().prefix(batches))
    case .train, .all:
        var out: [TokenBatch] = []
        var start = 0
        while out.count < batches && start + rows * seqLen + 1 <= tokens.count {
            var inputs: [Int32] = [], targets: [Int32] = []
            for r in 0..<rows {
                let base = start + r * seqLen
                inputs += tokens[base..<(base + seqLen)]
                targets += tokens[(base + 1)..<(base + seqLen + 1)]
            }
            out.append(TokenBatch(rows: rows, seqLen: seqLen, inputs: inputs, targets: targets))
            start += rows * seqLen
        }
        return out
    }
}

// MARK: - Task evaluation (the stage and `distill eval --tasks`)

/// One model a task evaluation compares.
package struct TaskEvalModel: Sendable {
    /// Its row in the table.
    package var name: String
    /// The model as the user gave it (`@sft`, a path), for the report.
    package var label: String
    /// The file or directory to load: a checkpoint, an adapter checkpoint, a Hugging Face
    /// directory or a GGUF file.
    package var path: String
    /// For an adapter: its base, when not the one it records.
    package var base: String?
    /// nil: the model's own chat template.
    package var template: ChatTemplate?
    /// What the model is shown beyond each task (a few-shot arm).
    package var prompt: TeacherPrompt
    /// The weights generation runs on (nil: f32).
    package var weights: InferenceWeights?
    /// Constrained sampling (nil: none).
    package var grammar: SamplingGrammar?

    package init(
        name: String, label: String, path: String, base: String? = nil, template: ChatTemplate? = nil,
        prompt: TeacherPrompt = TeacherPrompt(), weights: InferenceWeights? = nil, grammar: SamplingGrammar? = nil
    ) {
        self.prompt = prompt
        self.weights = weights
        self.grammar = grammar
        self.name = name
        self.label = label
        self.path = path
        self.base = base
        self.template = template
    }
}

/// A finished task evaluation: the report, the per-task rows, and what this run did.
package struct TaskEvalOutcome: Sendable {
    package var report: EvalReport
    /// eval.tasks.jsonl: every arm's rows, arm by arm.
    package var rows: String
    /// Completions generated by this run, and served from the cache.
    package var generated = 0
    package var cacheHits = 0
    package var seconds = 0.0
}

/// Evaluates every model on the task set, one model in memory at a time: the tasks and the
/// verifier are checked first (before any model is loaded), then each model's greedy and
/// sampled passes run through `cache`. Progress: one `.progress` event per second at most
/// (completions done of models x tasks x (1 + k)) and a message per model. With `baseline` (a
/// model's name) the report also has every other model's paired difference from it.
package func runTaskEvaluation(
    tasks path: String, models: [TaskEvalModel], verifier config: VerifierConfig, config sampling: TaskEvalConfig,
    cache: CallCache, maxTasks: Int? = nil, baseline: String? = nil, emit: (StageEvent) -> Void
) throws -> TaskEvalOutcome {
    let tasks = TaskReader.subset(try TaskReader.read(path: path), count: maxTasks, seed: sampling.seed)
    let verifier = Verifier(config)
    try verifier.validate(tasks)
    let bootstrap = BootstrapConfig(seed: sampling.seed)
    let perModel = tasks.count * (1 + sampling.samples)
    let total = models.count * perModel
    let started = Date()
    var lastReport = Date.distantPast
    var arms: [EvalReport.Arm] = []
    var columns: [(arm: String, greedy: [Double], passAt1: [Double]?)] = []
    var outcome = TaskEvalOutcome(
        report: EvalReport(
            tasks: path, taskCount: tasks.count, settings: sampling, verifier: config, bootstrap: bootstrap, arms: []),
        rows: "")
    for (m, model) in models.enumerated() {
        let loaded = try loadModel(from: model.path, base: model.base)
        let tokenizer = try loaded.requireTokenizer()
        emit(.message("\(model.name): \(model.label), \(tasks.count) tasks x (greedy + \(sampling.samples) samples)"))
        let evaluation = try TaskEvaluation.evaluate(
            tasks: tasks, verifier: verifier, config: sampling, template: model.template, model: loaded.model,
            tokenizer: tokenizer, tokenizerJSON: loaded.tokenizerJSON ?? "", endOfText: loaded.endOfText,
            modelChat: loaded.chat, weights: model.weights, blocks: loaded.fileBlocks, cache: cache, prompt: model.prompt,
            grammar: model.grammar
        ) { done in
            let now = Date()
            let step = m * perModel + done
            guard step == total || now.timeIntervalSince(lastReport) >= 1 else { return }
            lastReport = now
            emit(
                .progress(
                    step: step, total: total,
                    metrics: ["samples_per_s": Double(step) / max(now.timeIntervalSince(started), 1e-9)]))
        }
        let metrics = evaluation.metrics(bootstrap)
        arms.append(
            EvalReport.Arm(
                name: model.name, model: model.label, checksum: evaluation.checksum,
                parameters: loaded.model.config.parameterCount, metrics: metrics))
        columns.append(
            (
                model.name, evaluation.greedy.map { $0.verdict.correct ? 1 : 0 },
                sampling.samples > 0
                    ? evaluation.samples.map { s in Double(s.filter(\.verdict.correct).count) / Double(s.count) } : nil
            ))
        outcome.rows += evaluation.taskRows(arm: model.name, tasks: tasks)
        outcome.generated += evaluation.generated
        outcome.cacheHits += evaluation.cacheHits
        emit(.message(summaryLine(model.name, metrics)))
    }
    outcome.report.arms = arms
    if let baseline { outcome.report.paired = EvalReport.paired(baseline: baseline, columns: columns, bootstrap: bootstrap) }
    outcome.seconds = Date().timeIntervalSince(started)
    return outcome
}

/// `base: greedy 0.450 [0.300, 0.600], pass@8 0.900, maj@8 0.550 [0.400, 0.700]`.
func summaryLine(_ name: String, _ m: ArmMetrics) -> String {
    func e(_ x: Estimate) -> String { String(format: "%.3f [%.3f, %.3f]", x.value, x.ciLow, x.ciHigh) }
    var parts = ["greedy " + e(m.greedyAccuracy)]
    if let p1 = m.passAtK.first { parts.append(String(format: "pass@1 %.3f", p1.value)) }
    if let pk = m.passAtK.last, pk.k > 1 { parts.append(String(format: "pass@%d %.3f", pk.k, pk.value)) }
    if let maj = m.majAtK { parts.append("maj@\(m.samplesPerTask) " + e(maj)) }
    return "\(name): " + parts.joined(separator: ", ")
}

/// Writes eval.json, eval.md, eval.svg and eval.tasks.jsonl (names from `output`), each
/// atomically; returns their paths, the report first.
package func writeTaskEvaluation(_ outcome: TaskEvalOutcome, output: String) throws -> [String] {
    let files = EvalStage.taskFiles(output: output)
    try FileManager.default.createDirectory(
        atPath: (output as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    let chartName = (files.chart as NSString).lastPathComponent
    try writeAtomically(outcome.report.json(), to: files.json)
    try writeAtomically(outcome.report.markdown(chart: chartName), to: files.markdown)
    try writeAtomically(evalChart(outcome.report).render(), to: files.chart)
    try writeAtomically(outcome.rows, to: files.rows)
    return [files.json, files.markdown, files.chart, files.rows]
}

/// The arms' greedy accuracy, pass@k and maj@k as grouped bars with their intervals.
package func evalChart(_ report: EvalReport) -> SVGBarChart {
    let k = report.settings.samples
    let level = Int((report.bootstrap.level * 100).rounded())
    var chart = SVGBarChart(
        title: "Accuracy by arm (\(report.taskCount) tasks, \(level)% intervals)", yLabel: "accuracy",
        categories: report.arms.map(\.name), yMax: 1)
    func bar(_ e: Estimate?) -> SVGBarChart.Bar? { e.map { .init(value: $0.value, low: $0.ciLow, high: $0.ciHigh) } }
    chart.series.append(
        .init(name: "greedy", color: SVGPlot.palette[0], bars: report.arms.map { bar($0.metrics.greedyAccuracy) }))
    if k > 0 {
        chart.series.append(
            .init(
                name: "pass@\(k)", color: SVGPlot.palette[2],
                bars: report.arms.map { arm in
                    bar(arm.metrics.passAtK.last.map { Estimate(value: $0.value, ciLow: $0.ciLow, ciHigh: $0.ciHigh) })
                }))
        chart.series.append(
            .init(name: "maj@\(k)", color: SVGPlot.palette[1], bars: report.arms.map { bar($0.metrics.majAtK) }))
    }
    return chart
}
