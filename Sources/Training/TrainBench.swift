// `distill bench train`: full training steps (forward, backward, AdamW) of the reference
// configurations, reported as tokens/s, MFU against the sgemm peak measured in the same
// process, and peak resident memory.

import Core
import Foundation
import NN
import Platform
import TextData

/// A benchmark configuration in the keys of tools/bench_configs.json.
public struct BenchConfig: Codable, Sendable, Equatable {
    public var vocab, dim, layers, heads: Int
    public var kvHeads: Int
    public var ffn, seq, batch: Int

    enum CodingKeys: String, CodingKey {
        case vocab, dim, layers, heads, kvHeads = "kv_heads", ffn, seq, batch
    }

    public init(vocab: Int, dim: Int, layers: Int, heads: Int, kvHeads: Int, ffn: Int, seq: Int, batch: Int) {
        (self.vocab, self.dim, self.layers, self.heads) = (vocab, dim, layers, heads)
        (self.kvHeads, self.ffn, self.seq, self.batch) = (kvHeads, ffn, seq, batch)
    }

    /// The reference configurations (Llama-family, tied embeddings, RoPE theta 10000).
    public static let presets: [String: BenchConfig] = [
        "S": BenchConfig(vocab: 256, dim: 128, layers: 4, heads: 4, kvHeads: 2, ffn: 384, seq: 256, batch: 16),
        "M": BenchConfig(vocab: 4096, dim: 256, layers: 8, heads: 8, kvHeads: 2, ffn: 704, seq: 256, batch: 16),
        "L": BenchConfig(vocab: 8192, dim: 512, layers: 8, heads: 8, kvHeads: 4, ffn: 1408, seq: 512, batch: 8),
        // The reference real model's shape (30 layers, width 576, 9 heads / 3 KV heads).
        "SmolLM2-135M": BenchConfig(vocab: 49152, dim: 576, layers: 30, heads: 9, kvHeads: 3, ffn: 1536, seq: 512, batch: 4),
    ]

    /// Problems that make the configuration unusable, each naming its key.
    public func problems() -> [String] {
        var p: [String] = []
        for (key, value) in [
            ("vocab", vocab), ("dim", dim), ("layers", layers), ("heads", heads), ("kv_heads", kvHeads), ("ffn", ffn),
            ("seq", seq), ("batch", batch),
        ] where value < 1 {
            p.append("\(key) must be at least 1, got \(value)")
        }
        guard p.isEmpty else { return p }
        if dim % heads != 0 { p.append("dim (\(dim)) must be a multiple of heads (\(heads))") }
        if heads % kvHeads != 0 { p.append("heads (\(heads)) must be a multiple of kv_heads (\(kvHeads))") }
        if dim % heads == 0 && (dim / heads) % 2 != 0 {
            p.append("dim / heads (\(dim / heads)) must be even for rotary embeddings")
        }
        return p
    }

    public var model: LlamaConfig {
        LlamaConfig(
            vocabSize: vocab, hiddenSize: dim, intermediateSize: ffn, numHiddenLayers: layers, numAttentionHeads: heads,
            numKeyValueHeads: kvHeads, tieWordEmbeddings: true, maxPositionEmbeddings: seq)
    }
}

public struct TrainBenchResult: Codable, Sendable {
    public var config: String
    public var parameters: Int
    public var steps: Int
    public var tokensPerSecond: Double
    public var stepMs: Double
    /// Training FLOPs per token (`trainingFlopsPerToken`, or `adapterTrainingFlopsPerToken` with LoRA).
    public var flopsPerToken: Double
    /// Achieved FLOP/s over the sgemm peak measured in this process (the better of a
    /// measurement before and one after the timed steps).
    public var mfu: Double
    public var sgemmPeakGflops: Double
    /// Peak resident memory of the training steps (of the whole process when the system
    /// cannot reset the high-water mark), and of the setup before them.
    public var peakMemoryMB: Double
    public var setupPeakMemoryMB: Double
    public var threads: Int
    public var blasCore: String
    /// The adapters trained instead of the whole model (nil: full training).
    public var lora: LoRAConfig?
    /// How the frozen base is held under LoRA: f32, or packed (QLoRA).
    public var baseWeights: WeightFormat
    /// Layers recomputed in the backward pass instead of keeping their activations.
    public var gradientCheckpointing: Bool
    /// Parameters the optimizer updates (all of them, or the adapters').
    public var trainedParameters: Int
    /// The objective of the steps: `next-token` (the LM loss) or `dpo` (DPO's sigmoid loss on
    /// batch / 2 pairs, the reference log-probs computed once before the timed steps).
    public var objective: String
    /// With `dpo`: the reference model's pass over the batch (no tape), part of the setup.
    public var referenceMs: Double?
}

public enum TrainBench {
    /// Peak resident set size of this process so far, in MiB (Linux reports KiB).
    public static func peakMemoryMB() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_maxrss) / 1024
    }

    /// Resets the peak resident set size to the current one (Linux: `5` to
    /// /proc/self/clear_refs), so that a later `peakMemoryMB()` covers what follows.
    static func resetPeakMemory() {
        try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
    }

    /// Best of a few raw sgemms at [4096x512]x[512x1408], the largest benchmark shape.
    public static func sgemmPeakGflops() -> Double {
        let (m, k, n) = (4096, 512, 1408)
        var rng = RNG(seed: 9)
        let a = Tensor.randn([m, k], rng: &rng), b = Tensor.randn([n, k], rng: &rng), c = Tensor.empty([m, n])
        var best = 0.0
        for _ in 0..<6 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            BLAS.sgemm(transA: false, transB: true, m: m, n: n, k: k, a: a.data, lda: k, b: b.data, ldb: k, c: c.data, ldc: n)
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
            best = max(best, 2.0 * Double(m * n * k) / dt / 1e9)
        }
        return best
    }

    /// Trains a fresh model on uniform random tokens for at least `seconds` (and 3 steps)
    /// after 2 warm-up steps. With `lora`, the base is frozen and only the adapters train
    /// (as PEFT does: no base gradients, no optimizer state for the base), held in
    /// `baseWeights` (quantized: QLoRA, `LlamaModel.quantizedMatrices`); with
    /// `gradientCheckpointing` the layers run again in the backward pass. With `dpo` the
    /// steps are DPO's (`PreferenceObjective`, sigmoid loss, β 0.1) on `randomPairs`, against
    /// reference log-probs of the starting model computed once, as the dpo stage caches them.
    public static func run(
        name: String, config bc: BenchConfig, seconds: Double, lora: LoRAConfig? = nil, baseWeights: WeightFormat = .f32,
        gradientCheckpointing: Bool = false, dpo: Bool = false, progress: (String) -> Void = { _ in }
    ) throws -> TrainBenchResult {
        precondition(baseWeights == .f32 || lora != nil, "a packed base needs LoRA")
        precondition(!dpo || bc.batch % 2 == 0, "DPO needs an even batch (chosen and rejected rows), got \(bc.batch)")
        let peakBefore = sgemmPeakGflops()
        let (trainer, trained) = makeTrainer(bc, lora: lora, baseWeights: baseWeights)
        trainer.model.recomputeLayers = gradientCheckpointing
        let step: () throws -> StepReport
        var referenceMs: Double?
        if dpo {
            let sequences = randomPairs(bc)
            let t0 = DispatchTime.now().uptimeNanoseconds
            let reference = PreferenceObjective.referenceLogProbs(trainer.model, sequences)
            referenceMs = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-6
            let objective = PreferenceObjective(model: trainer.model, config: PreferenceLossConfig())
            let batch = PreferenceBatch(sequences: sequences, reference: reference)
            step = { try trainer.step([batch], objective: objective) }
        } else {
            let batch = randomBatch(bc)
            step = { try trainer.step([batch]) }
        }
        // The setup's peak (a packed base is quantized from a random f32 model; DPO's
        // reference pass) apart from the training steps'.
        let setupPeak = peakMemoryMB()
        resetPeakMemory()
        for _ in 0..<2 { _ = try step() }
        var steps = 0
        let start = DispatchTime.now().uptimeNanoseconds
        var elapsed = 0.0
        while elapsed < seconds || steps < 3 {
            let r = try step()
            steps += 1
            elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
            progress(String(format: "step %d  loss %.4f  %.0f ms", steps, r.loss, r.seconds * 1e3))
        }
        let tokensPerSecond = Double(steps * bc.batch * bc.seq) / elapsed
        // Measured on both sides of the timed steps, the better kept: on a shared machine a
        // single measurement caught in a busy moment made MFU read above 100%.
        let peak = max(peakBefore, sgemmPeakGflops())
        let trainedCount = trained.reduce(0) { $0 + $1.1.count }
        let flops = lora == nil
            ? bc.model.trainingFlopsPerToken(seqLen: bc.seq)
            : bc.model.adapterTrainingFlopsPerToken(seqLen: bc.seq, adapterParameters: trainedCount)
        return TrainBenchResult(
            config: name, parameters: bc.model.parameterCount, steps: steps, tokensPerSecond: tokensPerSecond,
            stepMs: elapsed / Double(steps) * 1e3, flopsPerToken: flops, mfu: flops * tokensPerSecond / (peak * 1e9),
            sgemmPeakGflops: peak, peakMemoryMB: peakMemoryMB(), setupPeakMemoryMB: setupPeak, threads: Threads.count, blasCore: BLAS.runtime.core,
            lora: lora, baseWeights: baseWeights, gradientCheckpointing: gradientCheckpointing, trainedParameters: trainedCount,
            objective: dpo ? "dpo" : "next-token", referenceMs: referenceMs)
    }

    /// A fresh model (seed 0, so every call starts from the same weights) and its trainer:
    /// AdamW over every parameter, or over the adapters only with `lora`.
    static func makeTrainer(_ bc: BenchConfig, lora: LoRAConfig?, baseWeights: WeightFormat = .f32) -> (Trainer, [(String, Tensor)]) {
        var rng = RNG(seed: 0)
        var model = LlamaModel(config: bc.model, rng: &rng)
        let trained = lora.map { model.addLoRA($0, rng: &rng) } ?? model.namedParameters()
        if baseWeights.isPacked {
            model = model.packed(model.quantizedMatrices(baseWeights))
            BufferPool.shared.releaseToSystem()  // the f32 matrices just dropped
        }
        let cfg = TrainerConfig(
            steps: Int.max, schedule: LearningRateSchedule(peak: 1e-3, warmupSteps: 0, totalSteps: 1_000_000, kind: .constant),
            optimizer: AdamWConfig(beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1), gradClip: 0)
        let trainer = Trainer(model: model, config: cfg, optimizer: AdamW(parameters: trained, config: cfg.optimizer) { _ in true })
        return (trainer, trained)
    }

    /// One batch of uniform random tokens (seed 1), inputs and next-token targets.
    static func randomBatch(_ bc: BenchConfig) -> TrainingBatch {
        var rng = RNG(seed: 1)
        let ids = (0..<(bc.batch * (bc.seq + 1))).map { _ in Int32(rng.next() % UInt64(bc.vocab)) }
        var inputs: [Int32] = [], targets: [Int32] = []
        for r in 0..<bc.batch {
            let row = ids[(r * (bc.seq + 1))..<((r + 1) * (bc.seq + 1))]
            inputs += row.dropLast()
            targets += row.dropFirst()
        }
        return TrainingBatch(inputs: inputs, targets: targets, batch: bc.batch, length: bc.seq)
    }

    /// batch / 2 preference pairs of uniform random tokens (seed 1), every row `seq` positions
    /// long: a prompt of seq / 4 tokens shared by the pair, then a completion of its own
    /// (the trained positions, as the dpo stage masks prompts).
    static func randomPairs(_ bc: BenchConfig) -> PreferenceSequences {
        var rng = RNG(seed: 1)
        func tokens(_ n: Int) -> [Int32] { (0..<n).map { _ in Int32(rng.next() % UInt64(bc.vocab)) } }
        let promptLength = bc.seq / 4
        let pairs = (0..<(bc.batch / 2)).map { _ in
            let prompt = tokens(promptLength)
            func example() -> RenderedExample {
                RenderedExample(
                    ids: prompt + tokens(bc.seq + 1 - promptLength), trained: (0...bc.seq).map { $0 >= promptLength })
            }
            return PreferencePair(chosen: example(), rejected: example())
        }
        return PreferenceSequences(pairs, maxLength: bc.seq)
    }

    /// Full training and LoRA training of the same model in one process, one step of each
    /// in turn (the order swapped every pair), for at least `seconds` of both together and
    /// 5 pairs after one warm-up pair. Adjacent steps see the same machine, so the ratio of
    /// a pair is not disturbed by the minutes-long swings of a shared host that separate
    /// two whole benchmark runs.
    public static func runPaired(
        name: String, config bc: BenchConfig, seconds: Double, lora: LoRAConfig, progress: (String) -> Void = { _ in }
    ) throws -> PairedBenchResult {
        let (full, _) = makeTrainer(bc, lora: nil)
        let (adapted, trained) = makeTrainer(bc, lora: lora)
        let batch = randomBatch(bc)
        func timed(_ trainer: Trainer) throws -> Double {
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try trainer.step([batch])
            return Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
        }
        _ = try timed(full)
        _ = try timed(adapted)
        var fullTimes: [Double] = [], loraTimes: [Double] = []
        var elapsed = 0.0
        while elapsed < seconds || fullTimes.count < 5 {
            let (f, l): (Double, Double)
            if fullTimes.count.isMultiple(of: 2) {
                f = try timed(full)
                l = try timed(adapted)
            } else {
                l = try timed(adapted)
                f = try timed(full)
            }
            fullTimes.append(f)
            loraTimes.append(l)
            elapsed += f + l
            progress(String(format: "pair %d  full %.0f ms  LoRA %.0f ms  ratio %.3f", fullTimes.count, f * 1e3, l * 1e3, f / l))
        }
        let ratios = zip(fullTimes, loraTimes).map { $0 / $1 }.sorted()
        let tokens = Double(bc.batch * bc.seq)
        let fullMedian = median(fullTimes), loraMedian = median(loraTimes)
        return PairedBenchResult(
            config: name, pairs: fullTimes.count, fullStepMs: fullMedian * 1e3, loraStepMs: loraMedian * 1e3,
            fullTokensPerSecond: tokens / fullMedian, loraTokensPerSecond: tokens / loraMedian, speedup: median(ratios),
            speedupQuartiles: [quantile(sorted: ratios, 0.25), quantile(sorted: ratios, 0.75)], lora: lora,
            trainedParameters: trained.reduce(0) { $0 + $1.1.count }, threads: Threads.count, blasCore: BLAS.runtime.core)
    }

}

/// `distill bench train --lora --against-full`: LoRA against full training, step by step.
public struct PairedBenchResult: Codable, Sendable {
    public var config: String
    public var pairs: Int
    /// Median step times and the tokens/s they give.
    public var fullStepMs: Double
    public var loraStepMs: Double
    public var fullTokensPerSecond: Double
    public var loraTokensPerSecond: Double
    /// Median over pairs of full step time / LoRA step time: LoRA's speed-up per token.
    public var speedup: Double
    /// First and third quartile of the per-pair ratios.
    public var speedupQuartiles: [Double]
    public var lora: LoRAConfig
    public var trainedParameters: Int
    public var threads: Int
    public var blasCore: String
}
