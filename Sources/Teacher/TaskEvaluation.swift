// Task evaluation of one model (an arm): a greedy completion and k samples per task from the
// checkpoint teacher's engine (batched, each sample seeded on its own, every result committed
// to the call cache before use), each verified, then the metrics of Verify/Scoring.swift and
// the rows of eval.tasks.jsonl. The eval stage and `distill eval --tasks` run it for every arm
// (docs/evaluation.md).

import Core
import Foundation
import JSON
import NN
import Platform
import TextData
import Verify

/// How task evaluation generates: one greedy completion per task, then `samples` samples at
/// `temperature`. Defaults as documented in docs/evaluation.md.
package struct TaskEvalConfig: Sendable, Equatable, Codable {
    /// k samples per task, 0...1000; 0 evaluates greedy decoding only. Sample i uses seed `seed + i`.
    package var samples: Int = 8
    /// > 0 for the samples (the greedy pass is temperature 0).
    package var temperature: Double = 0.7
    /// (0, 1]; 1 turns nucleus sampling off.
    package var topP: Double = 1.0
    /// >= 1, per completion.
    package var maxTokens: Int = 256
    /// Generation stops at the first of these strings, which is cut off.
    package var stop: [String] = []
    /// >= 0. Also seeds the bootstrap.
    package var seed: Int = 0
    /// Rows generated together, 1...1024.
    package var batchSize: Int = 16
    /// Keep the log-probability of every sampled token (the samples, not the greedy pass).
    package var logprobs: Bool = false

    package init() {}

    package enum CodingKeys: String, CodingKey, CaseIterable {
        case samples, temperature, stop, seed, logprobs
        case topP = "top_p"
        case maxTokens = "max_tokens"
        case batchSize = "batch_size"
    }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        samples = try c.decode(Int.self, forKey: .samples)
        temperature = try c.decode(Double.self, forKey: .temperature)
        topP = try c.decode(Double.self, forKey: .topP)
        maxTokens = try c.decode(Int.self, forKey: .maxTokens)
        stop = try c.decode([String].self, forKey: .stop)
        seed = try c.decode(Int.self, forKey: .seed)
        batchSize = try c.decode(Int.self, forKey: .batchSize)
        logprobs = try c.decodeIfPresent(Bool.self, forKey: .logprobs) ?? false
    }

    /// `logprobs` is written only when on, so the resolved recipes, fingerprints and eval.json
    /// of evaluations without it stay what they were before it existed.
    package func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(samples, forKey: .samples)
        try c.encode(temperature, forKey: .temperature)
        try c.encode(topP, forKey: .topP)
        try c.encode(maxTokens, forKey: .maxTokens)
        try c.encode(stop, forKey: .stop)
        try c.encode(seed, forKey: .seed)
        try c.encode(batchSize, forKey: .batchSize)
        if logprobs { try c.encode(logprobs, forKey: .logprobs) }
    }

    /// Problems with the settings, each starting with the key.
    package func problems() -> [String] {
        var out: [String] = []
        if !(0...1000).contains(samples) { out.append("samples must be within 0...1000, got \(samples)") }
        if !(temperature > 0) {
            out.append("temperature must be > 0 (the greedy pass is already temperature 0), got \(temperature)")
        }
        if !(topP > 0 && topP <= 1) { out.append("top_p must be within (0, 1], got \(topP)") }
        if maxTokens < 1 { out.append("max_tokens must be >= 1, got \(maxTokens)") }
        if seed < 0 { out.append("seed must be >= 0, got \(seed)") }
        if !(1...1024).contains(batchSize) { out.append("batch_size must be within 1...1024, got \(batchSize)") }
        if stop.contains("") { out.append("stop strings must not be empty") }
        return out
    }

    /// The checkpoint teacher's settings for the greedy pass (one sample at temperature 0) or
    /// the sampled pass.
    package func teacherConfig(
        greedy: Bool, template: ChatTemplate?, weights: InferenceWeights? = nil, grammar: SamplingGrammar? = nil
    ) -> CheckpointTeacherConfig {
        var c = CheckpointTeacherConfig(checkpoint: "(eval)")
        c.weights = weights
        c.grammar = grammar
        c.samples = greedy ? 1 : samples
        c.temperature = greedy ? 0 : temperature
        c.topP = greedy ? 1 : topP
        c.seed = seed
        c.maxTokens = maxTokens
        c.stop = stop
        c.batchSize = batchSize
        c.template = template
        c.logprobs = !greedy && logprobs
        return c
    }
}

/// One verified completion of an evaluation.
package struct EvalSample: Sendable, Equatable {
    package var seed: Int
    package var text: String
    package var verdict: Verdict
    /// Tokens generated (the end-of-text token included when it was generated).
    package var tokens: Int
    package var finishReason: String?
    /// Tokens of the rendered prompt, and seconds of the call (for the checkpoint teacher, of its
    /// batch), as the teacher reported them; nil when it did not.
    package var promptTokens: Int? = nil
    package var latency: Double? = nil
    /// The sampled tokens' log-probabilities, with `logprobs` on.
    package var logprobs: [Double]? = nil

    var judged: JudgedAnswer {
        JudgedAnswer(correct: verdict.correct, canonical: verdict.canonical, text: text, tokens: tokens)
    }

    var json: JSONValue {
        var entries: [(key: String, value: JSONValue)] = [
            ("seed", .int(seed)), ("text", .string(text)), ("correct", .bool(verdict.correct)),
            ("credit", .double(verdict.credit)),
            ("canonical", verdict.canonical.map { .string($0) } ?? .null), ("reason", .string(verdict.reason)),
            ("tokens", .int(tokens)), ("finish_reason", finishReason.map { .string($0) } ?? .null),
            ("prompt_tokens", promptTokens.map { .int($0) } ?? .null),
            ("latency", latency.map { .double($0) } ?? .null),
        ]
        if let logprobs { entries.append(("logprobs", .array(logprobs.map { .double($0) }))) }
        return .object(JSONValue.JSONObject(entries))
    }
}

/// An evaluated arm: per task, the greedy completion and the k samples, verified.
package struct ArmEvaluation: Sendable {
    /// The checkpoint teacher's model checksum (`xxh64:…`).
    package var checksum: String
    package var greedy: [EvalSample]
    package var samples: [[EvalSample]]
    /// Completions generated now, and taken from the cache.
    package var generated = 0
    package var cacheHits = 0

    package func metrics(_ bootstrap: BootstrapConfig) -> ArmMetrics {
        ArmMetrics.compute(
            greedy: greedy.map(\.judged), samples: samples.map { $0.map(\.judged) }, bootstrap: bootstrap)
    }

    /// eval.tasks.jsonl's rows of this arm, one per task in task order: `arm`, `task_id`,
    /// `greedy`, `samples` (each `seed`, `text`, `correct`, `credit`, `canonical`, `reason`, `tokens`,
    /// `finish_reason`, `prompt_tokens`, `latency`, and `logprobs` when asked for), `correct`
    /// (correct samples) and `vote` (the majority vote).
    package func taskRows(arm: String, tasks: [TeacherTask]) -> String {
        var out = ""
        for (t, task) in tasks.enumerated() {
            let vote = TaskStatistics.majorityVote(samples[t].map(\.judged))
            let row = JSONValue.object(
                JSONValue.JSONObject([
                    ("arm", .string(arm)), ("task_id", .string(task.id)), ("greedy", greedy[t].json),
                    ("samples", .array(samples[t].map(\.json))),
                    ("correct", .int(samples[t].filter(\.verdict.correct).count)),
                    (
                        "vote",
                        .obj([
                            "answer": vote.answer.map { .string($0) } ?? .null, "votes": .int(vote.votes),
                            "tie": .bool(vote.tie), "correct": .bool(vote.correct),
                        ])
                    ),
                ]))
            out += row.compact(sortedKeys: true) + "\n"
        }
        return out
    }
}

package enum TaskEvaluation {
    /// Evaluates one model on `tasks`: the greedy pass, then the sampled pass, through the
    /// checkpoint teacher and `cache`, every completion verified with `verifier`. `progress`
    /// gets the completions done so far (of tasks x (1 + k)) after each batch. Throws
    /// `DataError` for settings out of range or a task the model's chat template cannot render,
    /// before anything is generated.
    package static func evaluate(
        tasks: [TeacherTask], verifier: Verifier, config: TaskEvalConfig, template: ChatTemplate?, model: LlamaModel,
        tokenizer: ByteLevelBPETokenizer, tokenizerJSON: String, endOfText: Int32?, modelChat: ChatStyle?,
        weights: InferenceWeights? = nil, blocks: [String: PackedMatrix] = [:], cache: CallCache,
        prompt: TeacherPrompt = TeacherPrompt(), grammar: SamplingGrammar? = nil, progress: (Int) -> Void = { _ in }
    ) throws -> ArmEvaluation {
        try refuseProblems(config.problems())
        // The model is shown each task through `prompt` (a few-shot teacher arm); verdicts use the task.
        let examples = try prompt.loadExamples()
        let shown = tasks.map { prompt.apply($0, examples: examples) }
        let greedyTeacher = try CheckpointTeacher(
            config: config.teacherConfig(greedy: true, template: template, weights: weights, grammar: grammar), model: model,
            tokenizer: tokenizer, tokenizerJSON: tokenizerJSON, endOfText: endOfText, modelChat: modelChat,
            blocks: blocks, cache: cache)
        try greedyTeacher.validate(shown)
        var done = 0
        let greedy = try greedyTeacher.sampleSync(shown) { _ in
            done += 1
            progress(done)
        }
        var sampled: [TeacherSample] = []
        var counters = (greedyTeacher.counters.requests, greedyTeacher.counters.cacheHits)
        if config.samples > 0 {
            // The same weights: the greedy teacher's checksum and engine are reused, not made again.
            let teacher = try CheckpointTeacher(
                config: config.teacherConfig(greedy: false, template: template, weights: weights, grammar: grammar), model: model,
                tokenizer: tokenizer, tokenizerJSON: tokenizerJSON, endOfText: endOfText, modelChat: modelChat,
                cache: cache, checksum: greedyTeacher.checksum, engine: greedyTeacher.engine)
            sampled = try teacher.sampleSync(shown) { _ in
                done += 1
                progress(done)
            }
            counters.0 += teacher.counters.requests
            counters.1 += teacher.counters.cacheHits
        }
        // Verified on all cores (a command verifier runs a program per completion), kept in order.
        let all = greedy + sampled
        let verdicts = Slots<Verdict>(count: all.count)
        DispatchQueue.concurrentPerform(iterations: all.count) { i in
            if case .success(let completion) = all[i].result {
                verdicts[i] = verifier.verify(completion.text, for: tasks[all[i].taskIndex])
            }
        }
        func evalSample(_ i: Int) -> EvalSample {
            // The checkpoint teacher's results are always successes (it throws only for the cache).
            let completion = try! all[i].result.get()
            return EvalSample(
                seed: all[i].seed, text: completion.text, verdict: verdicts[i]!,
                tokens: completion.completionTokens ?? 0,
                finishReason: completion.finishReason, promptTokens: completion.promptTokens,
                latency: completion.latency,
                logprobs: completion.logprobs)
        }
        let k = config.samples
        return ArmEvaluation(
            checksum: greedyTeacher.checksum, greedy: tasks.indices.map(evalSample),
            samples: tasks.indices.map { t in (0..<k).map { evalSample(tasks.count + t * k + $0) } },
            generated: counters.0, cacheHits: counters.1)
    }
}

/// eval.json of task evaluation: the settings and every arm's metrics. Everything in it is a
/// function of the tasks, the models and the settings, so a re-run from the cache writes the
/// same bytes (timings and cache hits go to the stage summary instead).
package struct EvalReport: Sendable, Equatable, Codable {
    package struct Arm: Sendable, Equatable, Codable {
        package var name: String
        /// The model as given (a checkpoint, adapter, Hugging Face directory or GGUF file).
        package var model: String
        /// The checkpoint teacher's checksum of the weights and tokenizer (`xxh64:…`).
        package var checksum: String
        /// The model's parameters (its configuration's count; LoRA adapters not included), for
        /// costs in tokens x parameters (docs/routing.md). Absent in reports written before it was.
        package var parameters: Int?
        package var metrics: ArmMetrics

        package init(name: String, model: String, checksum: String, parameters: Int? = nil, metrics: ArmMetrics) {
            self.name = name
            self.model = model
            self.checksum = checksum
            self.parameters = parameters
            self.metrics = metrics
        }
    }

    /// One arm against the baseline arm on the same tasks: mean per-task differences, each
    /// with a paired bootstrap interval (both arms' tasks resampled together).
    package struct Paired: Sendable, Equatable, Codable {
        package var arm: String
        package var baseline: String
        /// Greedy accuracy minus the baseline's.
        package var greedy: Estimate
        /// pass@1 (each task's share of correct samples) minus the baseline's; nil without samples.
        package var passAt1: Estimate?
        /// Tasks whose greedy answer is right for this arm and wrong for the baseline, and the reverse.
        package var gained: Int
        package var lost: Int

        package init(arm: String, baseline: String, greedy: Estimate, passAt1: Estimate?, gained: Int, lost: Int) {
            self.arm = arm
            self.baseline = baseline
            self.greedy = greedy
            self.passAt1 = passAt1
            self.gained = gained
            self.lost = lost
        }

        enum CodingKeys: String, CodingKey {
            case arm, baseline, greedy, gained, lost
            case passAt1 = "pass_at_1"
        }
    }

    /// The task file.
    package var tasks: String
    package var taskCount: Int
    package var settings: TaskEvalConfig
    package var verifier: VerifierConfig
    package var bootstrap: BootstrapConfig
    package var arms: [Arm]
    /// With a baseline arm: every other arm against it, in arm order. Absent otherwise.
    package var paired: [Paired]?

    package init(
        tasks: String, taskCount: Int, settings: TaskEvalConfig, verifier: VerifierConfig, bootstrap: BootstrapConfig,
        arms: [Arm]
    ) {
        self.tasks = tasks
        self.taskCount = taskCount
        self.settings = settings
        self.verifier = verifier
        self.bootstrap = bootstrap
        self.arms = arms
    }

    enum CodingKeys: String, CodingKey {
        case tasks, settings, verifier, bootstrap, arms, paired
        case taskCount = "task_count"
    }

    /// Each arm but `baseline` against it, from per-task columns (greedy right as 0/1, and each
    /// task's share of correct samples when there are samples), in `columns` order.
    package static func paired(
        baseline: String, columns: [(arm: String, greedy: [Double], passAt1: [Double]?)], bootstrap: BootstrapConfig
    ) -> [Paired] {
        guard let base = columns.first(where: { $0.arm == baseline }) else { return [] }
        func difference(_ a: [Double], _ b: [Double]) -> Estimate {
            let d = zip(a, b).map { $0 - $1 }
            let interval = TaskStatistics.bootstrapIntervals([d], bootstrap)[0]
            return Estimate(
                value: d.isEmpty ? 0 : d.reduce(0, +) / Double(d.count), ciLow: interval.low, ciHigh: interval.high)
        }
        return columns.filter { $0.arm != baseline }.map { c in
            Paired(
                arm: c.arm, baseline: baseline, greedy: difference(c.greedy, base.greedy),
                passAt1: c.passAt1.flatMap { a in base.passAt1.map { difference(a, $0) } },
                gained: zip(c.greedy, base.greedy).filter { $0 > $1 }.count,
                lost: zip(c.greedy, base.greedy).filter { $0 < $1 }.count)
        }
    }

    /// eval.json's text: sorted keys, two-space indents, a final newline.
    package func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try! encoder.encode(self), as: UTF8.self) + "\n"
    }

    /// eval.md: what was run, one table row per arm, and the chart when `chart` names one.
    package func markdown(chart: String?) -> String {
        func cell(_ name: String) -> String { name.replacingOccurrences(of: "|", with: "\\|") }
        let k = settings.samples
        let name = (tasks as NSString).lastPathComponent
        func value(_ e: Estimate) -> String { String(format: "%.3f [%.3f, %.3f]", e.value, e.ciLow, e.ciHigh) }
        func number(_ x: Double) -> String { String(format: "%.3f", x) }
        var out = "# Task evaluation: \(name)\n\n"
        out += "\(taskCount) tasks from `\(tasks)`, verifier `\(verifier.type.rawValue)`. "
        out += "Greedy decoding (max_tokens \(settings.maxTokens))"
        if k > 0 {
            out += String(
                format: ", then %d samples per task at temperature %g (top_p %g, seeds %d...%d)", k,
                settings.temperature, settings.topP, settings.seed, settings.seed + k - 1)
        }
        out += ". In brackets: \(Int((bootstrap.level * 100).rounded()))% percentile-bootstrap intervals over tasks "
        out +=
            "(\(bootstrap.resamples) resamples, seed \(bootstrap.seed)); docs/evaluation.md defines every column.\n\n"
        var header = ["arm", "greedy"]
        if k > 0 {
            header +=
                ["pass@1"] + (k > 1 ? ["pass@\(k)"] : []) + [
                    "maj@\(k)", "valid answers", "unique valid / sample", "unique texts / sample", "tokens / sample",
                ]
        } else {
            header += ["tokens / task"]
        }
        out += "| " + header.joined(separator: " | ") + " |\n"
        out += "|" + header.map { $0 == "arm" ? "---" : "---:" }.joined(separator: "|") + "|\n"
        for arm in arms {
            let m = arm.metrics
            var cells = [cell(arm.name), value(m.greedyAccuracy)]
            if k > 0, let first = m.passAtK.first, let last = m.passAtK.last, let maj = m.majAtK {
                let passCells = [first] + (k > 1 ? [last] : [])
                cells += passCells.map { value(Estimate(value: $0.value, ciLow: $0.ciLow, ciHigh: $0.ciHigh)) }
                cells += [
                    value(maj), number(m.validAnswerRate), number(m.uniqueValidAnswersPerSample),
                    number(m.uniqueOutputsPerSample), String(format: "%.1f", m.tokensPerSample),
                ]
            } else {
                cells.append(String(format: "%.1f", m.greedyTokensPerTask))
            }
            out += "| " + cells.joined(separator: " | ") + " |\n"
        }
        if let paired, let baseline = paired.first?.baseline {
            out += "\nAgainst \(cell(baseline)), paired over tasks (both arms' tasks resampled together); gained and lost: "
            out += "tasks whose greedy answer is right for the arm and wrong for \(cell(baseline)), and the reverse.\n\n"
            let samples = k > 0
            out += "| arm | greedy minus \(cell(baseline))'s |" + (samples ? " pass@1 minus \(cell(baseline))'s |" : "")
            out += " gained | lost |\n|---|---:|" + (samples ? "---:|" : "") + "---:|---:|\n"
            for p in paired {
                func signed(_ e: Estimate) -> String { String(format: "%+.3f [%+.3f, %+.3f]", e.value, e.ciLow, e.ciHigh) }
                out += "| \(cell(p.arm)) | \(signed(p.greedy)) |" + (p.passAt1.map { " \(signed($0)) |" } ?? "")
                out += " \(p.gained) | \(p.lost) |\n"
            }
        }
        out += "\nModels:\n\n"
        for arm in arms { out += "- \(arm.name): `\(arm.model)` (\(arm.checksum))\n" }
        if let chart { out += "\n![Accuracy by arm](\(chart))\n" }
        return out
    }
}
