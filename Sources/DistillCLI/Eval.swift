import ArgumentParser
import Foundation
import JSON
import Pipeline
import Teacher
import TextData
import Training
import Verify

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Loss and perplexity of a model on text, or its accuracy on a task set (greedy, pass@k, maj@k).",
        discussion: """
            With --text or --data: mean next-token loss and perplexity. With --tasks: a greedy completion and \
            --samples samples per task from the built-in engine, each verified (the task's verifier, or \
            --verifier-json), reported as greedy accuracy, pass@k, maj@k (majority vote over the verifier's \
            canonical answers), unique answers and tokens, with 95% bootstrap intervals over tasks \
            (docs/evaluation.md). The model may be a checkpoint, an adapter checkpoint (on the base it records, \
            --base, or --checkpoint BASE --adapter ADAPTER), a Hugging Face directory or a .gguf file.

            Examples:
              distill eval --checkpoint base.h5 --text valid.txt
              distill eval --checkpoint sft.h5 --tasks tasks.jsonl --samples 8 --json
              distill eval --checkpoint model.gguf --adapter sft.h5 --tasks fc.jsonl \\
                --max-tokens 128 --out eval-sft
            """)

    @OptionGroup var model: ModelOption
    @Option(help: "An adapter checkpoint to evaluate on --checkpoint as its base.") var adapter: String?
    @Option(help: "A plain text file to score.") var text: String?
    @Option(help: "A JSONL file with a \"text\" field per line.") var data: String?
    @Option(help: "Tokens per window (default: the model's max_position_embeddings).") var seqLen: Int?
    @Option(help: "At most this many batches of 8 windows (default 16).") var batches: Int?
    @Flag(help: "Include the logits at the last scored position in the JSON.") var lastLogits = false

    @Option(help: "A task set (JSONL, docs/teacher.md): evaluate greedy accuracy, pass@k and maj@k.") var tasks: String?
    @Option(
        help: "With --tasks: samples per task besides the greedy completion, 0...1000; 0 for greedy only (default 8).")
    var samples: Int?
    @Option(help: "With --tasks: the samples' temperature, > 0 (default 0.7).") var temperature: Double?
    @Option(help: "With --tasks: nucleus sampling mass, (0, 1] (default 1: off).") var topP: Double?
    @Option(help: "With --tasks: tokens per completion at most (default 256).") var maxTokens: Int?
    @Option(help: "With --tasks: stop a completion before this text (repeatable).") var stop: [String] = []
    @Option(help: "With --tasks: sample i of a task uses seed + i; also seeds the bootstrap (default 0).")
    var seed: Int?
    @Option(help: "With --tasks: rows generated together, 1...1024 (default 16).") var batchSize: Int?
    @Flag(help: "With --tasks: keep every sampled token's log-probability in eval.tasks.jsonl (for verdict tables).")
    var logprobs = false
    @Option(help: "With --tasks: evaluate at most this many tasks (a subset chosen by task id and --seed).")
    var maxTasks: Int?
    @Option(
        help:
            "With --tasks: the chat template (chatml, llama3) for tasks with messages or tools (default: the model's).")
    var template: ChatTemplate?
    @Option(help: "With --tasks: the verifier as JSON, as in a recipe (default {\"type\": \"auto\"}).")
    var verifierJson: String?
    @Option(help: "With --tasks: constrained sampling; python-calls keeps answers to typed calls of each task's tools.")
    var grammar: SamplingGrammar?
    @Option(
        help:
            "With --tasks: a folder for eval.json, eval.md, eval.svg, eval.tasks.jsonl and the call cache (an interrupted evaluation resumes from it); default: a temporary cache, nothing written."
    )
    var out: String?

    @Flag(help: "Print the result as JSON.") var json = false
    @OptionGroup var weights: WeightsOption
    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if [text, data, tasks].compactMap({ $0 }).count != 1 {
            throw ValidationError("give exactly one of --text FILE, --data FILE.jsonl or --tasks TASKS.jsonl")
        }
        if adapter != nil && model.base.base != nil {
            throw ValidationError("give the base either as --checkpoint with --adapter, or as --base, not both")
        }
        if tasks != nil {
            let loss = [("--seq-len", seqLen != nil), ("--batches", batches != nil), ("--last-logits", lastLogits)]
            if let (flag, _) = loss.first(where: { $0.1 }) {
                throw ValidationError("\(flag) is for --text or --data, not --tasks")
            }
            if let maxTasks, maxTasks < 1 { throw ValidationError("--max-tasks must be at least 1") }
            let problems = sampling().problems().map { "--" + $0.replacingOccurrences(of: "_", with: "-") }
            if !problems.isEmpty { throw ValidationError(problems.joined(separator: "; ")) }
            _ = try verifierConfig()
        } else {
            let taskOptions: [(String, Bool)] = [
                ("--samples", samples != nil), ("--temperature", temperature != nil), ("--top-p", topP != nil),
                ("--max-tokens", maxTokens != nil), ("--stop", !stop.isEmpty), ("--seed", seed != nil),
                ("--batch-size", batchSize != nil), ("--template", template != nil), ("--max-tasks", maxTasks != nil),
                ("--verifier-json", verifierJson != nil), ("--out", out != nil), ("--logprobs", logprobs),
                ("--grammar", grammar != nil),
            ]
            if let (flag, _) = taskOptions.first(where: { $0.1 }) { throw ValidationError("\(flag) is for --tasks") }
            if let seqLen, seqLen < 1 { throw ValidationError("--seq-len must be at least 1") }
            if let batches, batches < 1 { throw ValidationError("--batches must be at least 1") }
        }
    }

    /// The task evaluation settings: the defaults (TaskEvalConfig) with the options given.
    func sampling() -> TaskEvalConfig {
        var c = TaskEvalConfig()
        if let samples { c.samples = samples }
        if let temperature { c.temperature = temperature }
        if let topP { c.topP = topP }
        if let maxTokens { c.maxTokens = maxTokens }
        if !stop.isEmpty { c.stop = stop }
        if let seed { c.seed = seed }
        if let batchSize { c.batchSize = batchSize }
        c.logprobs = logprobs
        return c
    }

    func verifierConfig() throws -> VerifierConfig {
        guard let verifierJson else { return VerifierConfig() }
        let config: VerifierConfig
        do {
            config = try JSONDecoder().decode(VerifierConfig.self, from: Data(verifierJson.utf8))
        } catch {
            throw ValidationError("--verifier-json is not a verifier object: \(error)")
        }
        let problems = config.problems()
        if !problems.isEmpty { throw ValidationError("--verifier-json: " + problems.joined(separator: "; ")) }
        return config
    }

    func run() throws {
        compute.apply()
        if let tasks { return try runTasks(tasks) }
        // An adapter given with --adapter is loaded onto --checkpoint.
        let result = try evaluateFile(
            checkpoint: adapter ?? model.checkpoint, base: adapter != nil ? model.checkpoint : model.base.base,
            path: text ?? data!, jsonl: data != nil, seqLen: seqLen, batches: batches ?? 16, lastLogits: lastLogits,
            weights: weights.weights)
        if json {
            try printJSON(result)
        } else {
            print(
                String(
                    format: "loss %.6f  perplexity %.4f  (%d tokens, %d batches)", result.loss, result.perplexity,
                    result.tokens, result.batches))
        }
    }

    private func runTasks(_ tasks: String) throws {
        let path = adapter ?? model.checkpoint
        var name = (path as NSString).lastPathComponent
        if name.hasSuffix(".h5") || name.hasSuffix(".gguf") { name = (name as NSString).deletingPathExtension }
        let evaluated = TaskEvalModel(
            name: name, label: adapter.map { "\(model.checkpoint) + \($0)" } ?? path, path: path,
            base: adapter != nil ? model.checkpoint : model.base.base, template: template,
            weights: weights.weights == .f32 ? nil : weights.weights, grammar: grammar)
        // The cache lives in --out (so an interrupted evaluation resumes), else in a temporary folder.
        let folder =
            out ?? (NSTemporaryDirectory() as NSString).appendingPathComponent("distill-eval-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { if out == nil { try? FileManager.default.removeItem(atPath: folder) } }
        let cache = try CallCache(path: (folder as NSString).appendingPathComponent("eval-cache.sqlite"))
        // With --json, stdout is the report alone: progress goes to stderr.
        let progress = ProgressDisplay(toStandardError: json)
        let outcome: TaskEvalOutcome
        do {
            defer { progress.finish() }
            outcome = try runTaskEvaluation(
                tasks: tasks, models: [evaluated], verifier: try verifierConfig(), config: sampling(), cache: cache,
                maxTasks: maxTasks
            ) { event in
                switch event {
                case .progress(let step, let total, let metrics):
                    progress.show(stage: "eval", step: step, total: total, metrics: metrics)
                case .message(let text): progress.print("  " + text)
                case .checkpointCommitted: break
                }
            }
        }
        if let out {
            _ = try writeTaskEvaluation(outcome, output: (out as NSString).appendingPathComponent("eval.json"))
        }
        if json {
            print(outcome.report.json(), terminator: "")
        } else {
            print(outcome.report.markdown(chart: out != nil ? "eval.svg" : nil), terminator: "")
        }
    }
}

extension SamplingGrammar: ExpressibleByArgument {}
