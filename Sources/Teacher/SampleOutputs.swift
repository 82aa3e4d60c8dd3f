import Core
import Foundation
import JSON
import Platform
import TextData
import Verify

// What the `sample` stage writes from verified samples: samples.jsonl (every sample),
// sft.jsonl (correct samples, deduplicated), pairs.jsonl (correct vs incorrect) and
// stats.json. Everything here is a pure function of the tasks, the samples and the settings,
// so a re-run that takes every sample from the cache writes the same bytes.

/// How preference pairs are drawn from a prompt's distinct correct (C) and incorrect (I)
/// completions. Only prompts with mixed outcomes yield pairs.
package struct PairingConfig: Sendable, Equatable, Codable {
    package enum Strategy: String, Sendable, Codable, CaseIterable {
        /// Every (correct, incorrect) combination; above the cap, a seeded random subset (in order).
        case all
        /// Each correct completion with one incorrect completion drawn at random, up to the cap.
        case random
        /// One pair per prompt: a random correct and a random incorrect completion.
        case one
    }

    package var strategy: Strategy = .all
    /// Pairs per prompt at most, >= 1 (`one` makes one).
    package var maxPerPrompt: Int = 4
    /// Seeds the draws; each prompt draws from XXH64(task id, seed).
    package var seed: Int = 0

    package init(strategy: Strategy = .all, maxPerPrompt: Int = 4, seed: Int = 0) {
        self.strategy = strategy
        self.maxPerPrompt = maxPerPrompt
        self.seed = seed
    }

    package enum CodingKeys: String, CodingKey, CaseIterable {
        case strategy, seed
        case maxPerPrompt = "max_per_prompt"
    }
}

/// One sample after verification.
package struct VerifiedSample: Sendable {
    package var sample: TeacherSample
    /// nil when the call failed (no completion to judge).
    package var verdict: Verdict?
    /// The verifier that judged it (`exact`, `function-call`, ...).
    package var verifier: String

    package init(sample: TeacherSample, verdict: Verdict?, verifier: String) {
        self.sample = sample
        self.verdict = verdict
        self.verifier = verifier
    }
}

/// The outputs of a sampling run, as file contents.
package struct SampleOutputs: Sendable {
    package var samplesJSONL: String
    package var sftJSONL: String
    package var pairsJSONL: String
    package var stats: SampleStats

    /// Builds every output. `samples` are in task, then sample order.
    package static func build(
        tasks: [TeacherTask], samples: [VerifiedSample], teacher: String, settings: JSONValue, pairing: PairingConfig,
        samplesPerTask k: Int
    ) -> SampleOutputs {
        var samplesText = "", sftText = "", pairsText = ""
        var byTask = [[VerifiedSample]](repeating: [], count: tasks.count)
        for s in samples { byTask[s.sample.taskIndex].append(s) }

        var stats = SampleStats()
        stats.tasks = tasks.count
        stats.samplesPerTask = k
        stats.samples = samples.count
        var uniqueOutputs = 0, uniqueCorrect = 0
        var passAt: [Int: (sum: Double, tasks: Int)] = [:]
        let ks = TaskStatistics.passAtKs(k)

        for (t, task) in tasks.enumerated() {
            var correct: [String] = [], incorrect: [String] = []
            var distinct = Set<String>()
            var n = 0, c = 0
            for s in byTask[t] {
                samplesText += row(s, teacher: teacher, settings: settings).compact() + "\n"
                switch s.sample.result {
                case .failure(let error):
                    stats.failedCalls += 1
                    stats.failures[error.kind.rawValue, default: 0] += 1
                case .success(let completion):
                    n += 1
                    stats.promptTokens += completion.promptTokens ?? 0
                    stats.completionTokens += completion.completionTokens ?? 0
                    distinct.insert(completion.text)
                    if s.verdict?.correct == true {
                        c += 1
                        if !correct.contains(completion.text) { correct.append(completion.text) }
                    } else if !incorrect.contains(completion.text) {
                        incorrect.append(completion.text)
                    }
                }
            }
            stats.completions += n
            stats.correct += c
            uniqueOutputs += distinct.count
            uniqueCorrect += correct.count
            if c > 0 { stats.tasksSolved += 1 }
            if c > 0 && c < n { stats.mixedPrompts += 1 }
            for kk in ks where n >= kk {
                passAt[kk, default: (0, 0)].sum += TaskStatistics.passAtK(n: n, c: c, k: kk)
                passAt[kk, default: (0, 0)].tasks += 1
            }
            for text in correct {
                sftText += sftRow(task, text).compact() + "\n"
                stats.sftRows += 1
            }
            for (chosen, rejected) in pairs(task, correct: correct, incorrect: incorrect, pairing) {
                pairsText += pairRow(task, chosen: chosen, rejected: rejected).compact() + "\n"
                stats.pairs += 1
            }
        }
        stats.passRate = stats.completions > 0 ? Double(stats.correct) / Double(stats.completions) : 0
        stats.passAtK = ks.compactMap { kk in
            passAt[kk].map { SampleStats.PassAtK(k: kk, value: $0.sum / Double($0.tasks), tasks: $0.tasks) }
        }
        if stats.completions > 0 {
            stats.uniqueOutputsPerSample = Double(uniqueOutputs) / Double(stats.completions)
            stats.uniqueCorrectOutputsPerSample = Double(uniqueCorrect) / Double(stats.completions)
        }
        return SampleOutputs(samplesJSONL: samplesText, sftJSONL: sftText, pairsJSONL: pairsText, stats: stats)
    }

    /// One samples.jsonl row.
    static func row(_ s: VerifiedSample, teacher: String, settings: JSONValue) -> JSONValue {
        var e: [(key: String, value: JSONValue)] = [
            ("task_id", .string(s.sample.taskID)), ("sample", .int(s.sample.sampleIndex)),
            ("seed", .int(s.sample.seed)),
            ("teacher", .string(teacher)), ("settings", settings),
        ]
        switch s.sample.result {
        case .success(let c):
            e += [
                ("text", .string(c.text)), ("correct", .bool(s.verdict?.correct ?? false)),
                ("credit", s.verdict.map { .double($0.credit) } ?? .null),
                ("canonical", s.verdict?.canonical.map { .string($0) } ?? .null),
                ("reason", .string(s.verdict?.reason ?? "")), ("verifier", .string(s.verifier)),
                ("finish_reason", c.finishReason.map { .string($0) } ?? .null),
                ("prompt_tokens", c.promptTokens.map { .int($0) } ?? .null),
                ("completion_tokens", c.completionTokens.map { .int($0) } ?? .null), ("latency", .double(c.latency)),
            ]
            if let lp = c.logprobs { e.append(("logprobs", .array(lp.map { .double($0) }))) }
        case .failure(let error):
            e += [
                ("error", .string(error.kind.rawValue)), ("reason", .string(error.description)),
                ("attempts", .int(error.attempts)),
            ]
        }
        return .object(JSONValue.JSONObject(e))
    }

    /// The prompt side of a TRL row: the prompt string, or the conversation (with tools) for
    /// tasks with messages or tools.
    private static func promptFields(_ task: TeacherTask) -> (prompt: JSONValue, chat: Bool, tools: JSONValue?) {
        if case .text(let p) = task.prompt, task.tools == nil { return (.string(p), false, nil) }
        let messages = JSONValue.array(
            task.prompt.chatMessages.map { .obj(["role": .string($0.role), "content": .string($0.content)]) })
        return (messages, true, task.tools.map { .array($0) })
    }

    private static func completion(_ text: String, chat: Bool) -> JSONValue {
        chat ? .array([.obj(["role": .string("assistant"), "content": .string(text)])]) : .string(text)
    }

    /// An SFT row: `{"prompt", "completion"}`, strings or (conversational) message lists.
    static func sftRow(_ task: TeacherTask, _ text: String) -> JSONValue {
        let p = promptFields(task)
        var e: [(key: String, value: JSONValue)] = [
            ("prompt", p.prompt), ("completion", completion(text, chat: p.chat)),
        ]
        if let tools = p.tools { e.append(("tools", tools)) }
        return .object(JSONValue.JSONObject(e))
    }

    /// A preference row: `{"prompt", "chosen", "rejected"}`.
    static func pairRow(_ task: TeacherTask, chosen: String, rejected: String) -> JSONValue {
        let p = promptFields(task)
        var e: [(key: String, value: JSONValue)] = [
            ("prompt", p.prompt), ("chosen", completion(chosen, chat: p.chat)),
            ("rejected", completion(rejected, chat: p.chat)),
        ]
        if let tools = p.tools { e.append(("tools", tools)) }
        return .object(JSONValue.JSONObject(e))
    }

    /// The pairs of one prompt under `config`.
    static func pairs(_ task: TeacherTask, correct: [String], incorrect: [String], _ config: PairingConfig)
        -> [(String, String)]
    {
        guard !correct.isEmpty, !incorrect.isEmpty else { return [] }
        var rng = RNG(seed: XXH64.hash(Array(task.id.utf8), seed: UInt64(config.seed)))
        func below(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
        switch config.strategy {
        case .all:
            let all = correct.flatMap { c in incorrect.map { (c, $0) } }
            guard all.count > config.maxPerPrompt else { return all }
            // A seeded partial Fisher-Yates shuffle picks the subset; it is kept in order.
            var order = Array(all.indices)
            for i in 0..<config.maxPerPrompt { order.swapAt(i, i + below(order.count - i)) }
            return order.prefix(config.maxPerPrompt).sorted().map { all[$0] }
        case .random:
            return correct.prefix(config.maxPerPrompt).map { ($0, incorrect[below(incorrect.count)]) }
        case .one:
            return [(correct[below(correct.count)], incorrect[below(incorrect.count)])]
        }
    }
}

/// stats.json: everything derived from the samples (so equal on a re-run from the cache).
/// Counts of this run's requests, cache hits and retries are in the stage summary instead.
package struct SampleStats: Sendable, Equatable, Encodable {
    package struct PassAtK: Sendable, Equatable, Encodable {
        package var k: Int
        /// Mean over tasks with at least k completions of the unbiased estimator.
        package var value: Double
        /// Tasks counted (those with >= k completions).
        package var tasks: Int
    }

    package var tasks = 0
    package var samplesPerTask = 0
    /// Samples asked for: tasks x samples_per_task.
    package var samples = 0
    /// Samples with a completion (the others are failed calls).
    package var completions = 0
    package var correct = 0
    /// correct / completions.
    package var passRate = 0.0
    package var passAtK: [PassAtK] = []
    /// Tasks with at least one correct completion.
    package var tasksSolved = 0
    /// Tasks with both correct and incorrect completions: the only ones that yield pairs.
    package var mixedPrompts = 0
    /// Distinct completions per task, summed, over completions.
    package var uniqueOutputsPerSample = 0.0
    /// Distinct correct completions per task, summed, over completions (the diversity measure).
    package var uniqueCorrectOutputsPerSample = 0.0
    package var sftRows = 0
    package var pairs = 0
    package var promptTokens = 0
    package var completionTokens = 0
    package var failedCalls = 0
    /// Failed calls by class (`timeout`, `server`, `exit-status`, ...).
    package var failures: [String: Int] = [:]
    /// The checkpoint teacher's parameter count (its configuration's), for costs in verdict
    /// tables (docs/routing.md); absent for other teachers.
    package var teacherParameters: Int?

    package init() {}

    enum CodingKeys: String, CodingKey {
        case tasks, samples, completions, correct, pairs, failures
        case samplesPerTask = "samples_per_task"
        case passRate = "pass_rate"
        case passAtK = "pass_at_k"
        case tasksSolved = "tasks_solved"
        case mixedPrompts = "mixed_prompts"
        case uniqueOutputsPerSample = "unique_outputs_per_sample"
        case uniqueCorrectOutputsPerSample = "unique_correct_outputs_per_sample"
        case sftRows = "sft_rows"
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
        case failedCalls = "failed_calls"
        case teacherParameters = "teacher_parameters"
    }

    /// stats.json's text: sorted keys, two-space indents, a final newline.
    package func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try! encoder.encode(self), as: UTF8.self) + "\n"
    }

    /// The printed summary, a few lines.
    package func summaryLines() -> [String] {
        let pct = { (x: Double) in String(format: "%.1f%%", 100 * x) }
        var lines = [
            "\(completions)/\(samples) samples answered, \(correct) correct: pass rate \(pct(passRate)); "
                + passAtK.map { "pass@\($0.k) \(String(format: "%.3f", $0.value))" }.joined(separator: ", "),
            "\(tasksSolved)/\(tasks) tasks solved, \(mixedPrompts) with mixed outcomes; \(sftRows) sft rows, \(pairs) pairs",
            String(
                format: "unique outputs per sample %.3f, unique correct outputs per sample %.3f",
                uniqueOutputsPerSample, uniqueCorrectOutputsPerSample)
                + "; tokens \(promptTokens) prompt + \(completionTokens) completion",
        ]
        if failedCalls > 0 {
            lines.append(
                "\(failedCalls) failed calls: "
                    + failures.keys.sorted().map { "\($0) \(failures[$0]!)" }.joined(separator: ", "))
        }
        return lines
    }
}
