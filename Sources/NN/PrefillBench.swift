// `distill bench prefill`: one batch of P prompts x k samples whose prompts open with a common
// block (a system message and few-shot examples), generated with each `PrefillSharing` in turn.
// The modes alternate within each round, so machine noise hits them alike; the median round
// is reported. Prompts are random ids (no tokenizer needed), no stop tokens, so every mode
// generates the same number of tokens.

import Core
import Foundation

package struct PrefillBenchSettings: Codable, Sendable {
    /// Distinct prompts (P).
    package var prompts = 4
    /// Rows per prompt (k).
    package var samples = 4
    /// Tokens per prompt.
    package var promptTokens = 1000
    /// Leading tokens all prompts share (< promptTokens).
    package var commonTokens = 500
    /// Tokens generated per row: 1 times the prefill and the first token only.
    package var maxTokens = 1
    /// Rounds (each runs every mode once).
    package var repeats = 3

    package init() {}

    /// Problems with the settings, each naming the option and the accepted range.
    package func problems(maxPositions: Int? = nil) -> [String] {
        var out: [String] = []
        if prompts < 1 { out.append("prompts must be >= 1, got \(prompts)") }
        if samples < 1 { out.append("samples must be >= 1, got \(samples)") }
        if promptTokens < 1 { out.append("prompt-tokens must be >= 1, got \(promptTokens)") }
        if !(0..<max(promptTokens, 1)).contains(commonTokens) {
            out.append("common-tokens must be within 0..<prompt-tokens (\(promptTokens)), got \(commonTokens)")
        }
        if maxTokens < 1 { out.append("max-tokens must be >= 1, got \(maxTokens)") }
        if repeats < 1 { out.append("repeats must be >= 1, got \(repeats)") }
        if let maxPositions, promptTokens + maxTokens > maxPositions {
            out.append(
                "prompt-tokens + max-tokens (\(promptTokens + maxTokens)) exceed the model's \(maxPositions) positions")
        }
        return out
    }
}

package struct PrefillBenchResult: Codable, Sendable {
    package struct Mode: Codable, Sendable {
        /// none, identical_prompts or common_prefix.
        package var sharing: String
        /// Tokens the prefill runs through the model (padding not counted).
        package var prefillTokens: Int
        /// The median round, and every round in order.
        package var seconds: Double
        package var rounds: [Double]
        package var samplesPerSecond: Double
        /// The unshared mode's median seconds over this one's.
        package var speedup: Double
        /// Every row's tokens equal the unshared mode's (first round).
        package var sameTokens: Bool
        /// Rows whose tokens differ from the unshared mode's (first round).
        package var rowsDiffering: Int
        /// The largest difference from the unshared mode's log-probability of the same token,
        /// over each row's tokens before the first that differs (first round): the rounding.
        package var maxLogProbDifference: Double
    }
    package var settings: PrefillBenchSettings
    package var rows: Int
    package var threads: Int
    package var modes: [Mode]
}

package enum PrefillBench {
    /// Runs every mode `settings.repeats` times, alternating; `progress` gets one line per run.
    package static func run(
        model: LlamaModel, settings s: PrefillBenchSettings, progress: (String) -> Void = { _ in }
    ) -> PrefillBenchResult {
        var rng = RNG(seed: 7)
        let v = UInt64(model.config.vocabSize)
        let common = (0..<s.commonTokens).map { _ in Int32(rng.next() % v) }
        let distinct = (0..<s.prompts).map { _ in
            common + (s.commonTokens..<s.promptTokens).map { _ in Int32(rng.next() % v) }
        }
        let prompts = distinct.flatMap { Array(repeating: $0, count: s.samples) }  // task-major, as the teacher
        let seeds = prompts.indices.map { UInt64($0) }
        let sampling = SamplingConfig(maxTokens: s.maxTokens, temperature: 0.7)
        let modes: [(PrefillSharing, String)] = [
            (.none, "none"), (.identicalPrompts, "identical_prompts"), (.commonPrefix, "common_prefix"),
        ]
        var times = [[Double]](repeating: [], count: modes.count)
        var tokens = [[[Int32]]](repeating: [], count: modes.count)
        var logProbs = [[[Double]]](repeating: [], count: modes.count)
        for round in 0..<s.repeats {
            for (i, (sharing, name)) in modes.enumerated() {
                let start = DispatchTime.now().uptimeNanoseconds
                let out = model.generateWithLogProbs(
                    prompts: prompts, sampling: sampling, rowSeeds: seeds, logProbs: true, sharing: sharing)
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
                times[i].append(seconds)
                if round == 0 { (tokens[i], logProbs[i]) = (out.ids, out.logProbs) }
                progress(
                    String(
                        format: "round %d %@: %.2f s, %.2f samples/s", round + 1, name, seconds,
                        Double(prompts.count) / seconds))
            }
        }
        let unshared = median(times[0])
        let result = modes.enumerated().map { i, mode -> PrefillBenchResult.Mode in
            let plan = PrefillPlan(prompts: prompts, sharing: mode.0)
            let prefill = plan.shared + plan.distinct.map { $0.count - plan.shared }.reduce(0, +)
            let seconds = median(times[i])
            var worst = 0.0
            for r in prompts.indices {
                for (j, (a, b)) in zip(tokens[i][r], tokens[0][r]).enumerated() {
                    guard a == b else { break }
                    worst = max(worst, abs(logProbs[i][r][j] - logProbs[0][r][j]))
                }
            }
            return PrefillBenchResult.Mode(
                sharing: mode.1, prefillTokens: prefill, seconds: seconds, rounds: times[i],
                samplesPerSecond: Double(prompts.count) / seconds, speedup: unshared / seconds,
                sameTokens: tokens[i] == tokens[0], rowsDiffering: prompts.indices.filter { tokens[i][$0] != tokens[0][$0] }.count,
                maxLogProbDifference: worst)
        }
        return PrefillBenchResult(settings: s, rows: prompts.count, threads: Threads.count, modes: result)
    }
}
