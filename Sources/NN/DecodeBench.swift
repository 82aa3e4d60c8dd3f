// `distill bench decode`: prefill and decode speed of the decode engine on each weight format
// asked for, B rows of random prompts (no tokenizer needed), every row decoding the same number
// of tokens (no stop tokens). The formats alternate within each round, so machine noise hits
// them alike; the median round is reported, and the time spent choosing tokens (sampling)
// apart from the model's forward.

import Core
import Foundation

package struct DecodeBenchSettings: Codable, Sendable {
    /// Rows decoded together (B), each with its own prompt.
    package var batch = 1
    /// Tokens per prompt.
    package var promptTokens = 128
    /// Tokens decoded per row after the prefill.
    package var decodeTokens = 128
    /// 0: greedy; otherwise sampled at this temperature with `topK`.
    package var temperature = 0.0
    package var topK = 40
    /// Rounds (each runs every format once).
    package var repeats = 3

    package init() {}

    /// Problems with the settings, each naming the option and the accepted range.
    package func problems(maxPositions: Int? = nil) -> [String] {
        var out: [String] = []
        if batch < 1 { out.append("batch must be >= 1, got \(batch)") }
        if promptTokens < 1 { out.append("prompt-tokens must be >= 1, got \(promptTokens)") }
        if decodeTokens < 1 { out.append("decode-tokens must be >= 1, got \(decodeTokens)") }
        if !(temperature >= 0) { out.append("temperature must be >= 0, got \(temperature)") }
        if topK < 0 { out.append("top-k must be >= 0, got \(topK)") }
        if repeats < 1 { out.append("repeats must be >= 1, got \(repeats)") }
        if let maxPositions, promptTokens + decodeTokens > maxPositions {
            out.append(
                "prompt-tokens + decode-tokens (\(promptTokens + decodeTokens)) exceed the model's \(maxPositions) positions")
        }
        return out
    }
}

package struct DecodeBenchResult: Codable, Sendable {
    package struct Weights: Codable, Sendable {
        package var weights: String
        package var weightBytes: Int
        /// Prompt tokens per second of the prefill (all rows), median round.
        package var prefillTokensPerSecond: Double
        /// Generated tokens per second over all rows after the prefill, median round.
        package var decodeTokensPerSecond: Double
        /// Share of the decode time spent choosing tokens (sampling), median round.
        package var samplingShare: Double
        /// Decode seconds of every round, in order.
        package var rounds: [Double]
    }
    package var settings: DecodeBenchSettings
    package var threads: Int
    package var kernels: String
    package var results: [Weights]
}

package enum DecodeBench {
    /// Runs every engine `settings.repeats` times, alternating; `progress` gets one line per run.
    package static func run(
        engines: [(name: String, engine: DecodeEngine)], settings s: DecodeBenchSettings,
        progress: (String) -> Void = { _ in }
    ) -> DecodeBenchResult {
        guard let config = engines.first?.engine.config else {
            return DecodeBenchResult(settings: s, threads: Threads.count, kernels: "\(KernelLevel.current)", results: [])
        }
        var rng = RNG(seed: 11)
        let v = config.vocabSize
        let prompts = (0..<s.batch).map { _ in (0..<s.promptTokens).map { _ in Int32(rng.next() % UInt64(v)) } }
        let sampling = SamplingConfig(maxTokens: s.decodeTokens, temperature: s.temperature, topK: s.topK)
        let sampler = TokenSampler(vocabulary: v)
        var prefill = [[Double]](repeating: [], count: engines.count)
        var decode = prefill, choosing = prefill
        for round in 0..<s.repeats {
            for (i, (name, engine)) in engines.enumerated() {
                let state = DecodeState(engine: engine, slots: s.batch, capacity: s.promptTokens + s.decodeTokens)
                var rngs = (0..<s.batch).map { RNG(seed: UInt64($0)) }
                let t0 = DispatchTime.now().uptimeNanoseconds
                var logits = state.step(
                    ids: prompts.flatMap { $0 }, slots: (0..<s.batch).flatMap { Array(repeating: $0, count: s.promptTokens) },
                    outputs: (1...s.batch).map { $0 * s.promptTokens - 1 })
                let t1 = DispatchTime.now().uptimeNanoseconds
                var sampleNanos: UInt64 = 0
                for step in 0..<s.decodeTokens {
                    let c0 = DispatchTime.now().uptimeNanoseconds
                    let next = (0..<s.batch).map { r in sampler.pick(logits + r * v, sampling, &rngs[r]) }
                    sampleNanos += DispatchTime.now().uptimeNanoseconds - c0
                    if step + 1 < s.decodeTokens {
                        logits = state.step(ids: next, slots: Array(0..<s.batch), outputs: Array(0..<s.batch))
                    }
                }
                let t2 = DispatchTime.now().uptimeNanoseconds
                prefill[i].append(Double(t1 - t0) * 1e-9)
                decode[i].append(Double(t2 - t1) * 1e-9)
                choosing[i].append(Double(sampleNanos) * 1e-9)
                progress(
                    String(
                        format: "round %d %@: prefill %.1f tok/s, decode %.1f tok/s", round + 1, name,
                        Double(s.batch * s.promptTokens) / prefill[i].last!, Double(s.batch * s.decodeTokens) / decode[i].last!))
            }
        }
        let results = engines.enumerated().map { i, e in
            DecodeBenchResult.Weights(
                weights: e.name, weightBytes: e.engine.weightBytes,
                prefillTokensPerSecond: Double(s.batch * s.promptTokens) / median(prefill[i]),
                decodeTokensPerSecond: Double(s.batch * s.decodeTokens) / median(decode[i]),
                samplingShare: median(zip(choosing[i], decode[i]).map { $0 / $1 }), rounds: decode[i])
        }
        return DecodeBenchResult(settings: s, threads: Threads.count, kernels: "\(KernelLevel.current)", results: results)
    }
}
