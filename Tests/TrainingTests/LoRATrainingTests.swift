// Training adapters on a frozen base: only the adapters get gradients and optimizer
// state, the Trainer's steps work for narrow models (where full training goes
// data-parallel), and `distill bench train --lora` trains exactly the adapters.

import Core
import Foundation
import NN
import Testing
import Training

@Suite struct LoRATrainingTests {
    let config = LlamaConfig(
        vocabSize: 61, hiddenSize: 32, intermediateSize: 48, numHiddenLayers: 2, numAttentionHeads: 4,
        numKeyValueHeads: 2, tieWordEmbeddings: true, maxPositionEmbeddings: 16)

    @Test func onlyAdaptersGetGradientsAndOptimizerState() throws {
        var rng = RNG(seed: 5)
        let model = LlamaModel(config: config, rng: &rng)
        let adapters = model.addLoRA(LoRAConfig(rank: 4, alpha: 8, targetModules: ["q_proj", "v_proj", "down_proj"]), rng: &rng)
        let optimizer = AdamW(parameters: model.namedParameters() + adapters, config: AdamWConfig()) { _ in true }
        #expect(optimizer.slots.map(\.name) == adapters.map(\.0), "frozen parameters must get no optimizer state")
        let trainer = Trainer(
            model: model,
            config: TrainerConfig(steps: 8, schedule: LearningRateSchedule(peak: 1e-2, warmupSteps: 0, totalSteps: 8, kind: .constant)),
            optimizer: optimizer)
        // Batch 4 >= threads: full training of this narrow model would go data-parallel.
        let ids: [Int32] = (0..<48).map { (i: Int) -> Int32 in Int32((i * 7 + 3) % 61) }
        let targets: [Int32] = ids.map { (id: Int32) -> Int32 in (id + 1) % 61 }
        let batch = TrainingBatch(inputs: ids, targets: targets, batch: 4, length: 12)
        var losses: [Double] = []
        for _ in 0..<8 { losses.append(try trainer.step([batch]).loss) }
        for (name, p) in model.namedParameters() { #expect(p.grad == nil, "\(name) is frozen but got a gradient buffer") }
        #expect(adapters.allSatisfy { $0.1.grad != nil })
        #expect(losses.last! < losses.first! - 0.05, "adapters did not learn: \(losses)")
    }

    @Test func benchTrainsExactlyTheAdapters() throws {
        let bc = BenchConfig(vocab: 61, dim: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 48, seq: 8, batch: 2)
        let lora = LoRAConfig(rank: 4, alpha: 8, targetModules: ["q_proj", "v_proj"])
        let r = try TrainBench.run(name: "tiny", config: bc, seconds: 0, lora: lora)
        // Per layer: q A [4, 32] + B [32, 4], v A [4, 32] + B [16, 4] (2 kv heads of 8).
        let perLayer = 4 * 32 + 32 * 4 + 4 * 32 + 16 * 4
        #expect(r.trainedParameters == 2 * perLayer)
        #expect(r.steps >= 3 && r.tokensPerSecond > 0)
        let full = try TrainBench.run(name: "tiny", config: bc, seconds: 0)
        #expect(full.trainedParameters == bc.model.parameterCount)
    }

    /// `bench train --dpo`: DPO steps on batch / 2 random pairs (prompt seq / 4 masked) after
    /// one reference pass; with LoRA only the adapters train, as in next-token steps.
    @Test func benchRunsDPOSteps() throws {
        let bc = BenchConfig(vocab: 61, dim: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 48, seq: 8, batch: 4)
        let r = try TrainBench.run(name: "tiny", config: bc, seconds: 0, dpo: true)
        #expect(r.objective == "dpo" && (r.referenceMs ?? -1) >= 0)
        #expect(r.steps >= 3 && r.tokensPerSecond > 0 && r.trainedParameters == bc.model.parameterCount)
        let lora = try TrainBench.run(
            name: "tiny", config: bc, seconds: 0, lora: LoRAConfig(rank: 4, alpha: 8, targetModules: ["q_proj"]), dpo: true)
        #expect(lora.trainedParameters == 2 * (4 * 32 + 32 * 4))
        let next = try TrainBench.run(name: "tiny", config: bc, seconds: 0)
        #expect(next.objective == "next-token" && next.referenceMs == nil)
    }

    /// `bench train --lora --against-full`: both contenders step in turn, and the speed-up
    /// is the median of the per-pair ratios, inside their quartiles.
    @Test func pairedBenchStepsBothContendersInTurn() throws {
        let bc = BenchConfig(vocab: 61, dim: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 48, seq: 8, batch: 2)
        let lora = try LoRAConfig(rank: 4, alpha: 8, targetModules: ["q_proj", "v_proj"]).resolved(layers: bc.layers)
        var lines: [String] = []
        let r = try TrainBench.runPaired(name: "tiny", config: bc, seconds: 0, lora: lora) { lines.append($0) }
        #expect(r.pairs == 5 && lines.count == 5)
        #expect(r.trainedParameters == 2 * (4 * 32 + 32 * 4 + 4 * 32 + 16 * 4))
        #expect(r.fullStepMs > 0 && r.loraStepMs > 0)
        #expect(abs(r.loraTokensPerSecond * r.loraStepMs / 1e3 - Double(bc.batch * bc.seq)) < 1e-6)
        #expect(r.speedupQuartiles.count == 2)
        #expect(r.speedupQuartiles[0] <= r.speedup && r.speedup <= r.speedupQuartiles[1])
    }
}

extension LoRATrainingTests {
    /// A narrow adapted model takes the data-parallel path with two threads (replicas carry
    /// the adapters); the update must equal the serial one to float rounding.
    @Test func dataParallelAdapterStepEqualsTheSerialStep() throws {
        let ids: [Int32] = (0..<48).map { (i: Int) -> Int32 in Int32((i * 11 + 5) % 61) }
        let targets: [Int32] = ids.map { (id: Int32) -> Int32 in (id + 3) % 61 }
        let batch = TrainingBatch(inputs: ids, targets: targets, batch: 4, length: 12)
        func train(threads: Int) throws -> ([Float], Double) {
            let before = Threads.count
            Threads.set(threads)
            defer { Threads.set(before) }
            var rng = RNG(seed: 9)
            let model = LlamaModel(config: config, rng: &rng)
            let adapters = model.addLoRA(LoRAConfig(rank: 4, alpha: 8, targetModules: ["q_proj", "v_proj", "up_proj"]), rng: &rng)
            // B starts at zero; make it non-zero so A's gradient is not zero either.
            for (name, p) in adapters where name.hasSuffix("lora_B.weight") {
                for i in 0..<p.count { p.data[i] = Float(i % 7) * 0.01 - 0.03 }
            }
            let cfg = TrainerConfig(steps: 2, schedule: LearningRateSchedule(peak: 1e-2, warmupSteps: 0, totalSteps: 2, kind: .constant))
            let t = Trainer(model: model, config: cfg, optimizer: AdamW(parameters: adapters, config: cfg.optimizer) { _ in true })
            var loss = 0.0
            for _ in 0..<2 { loss = try t.step([batch]).loss }
            for (name, p) in model.namedParameters() { #expect(p.grad == nil, "\(name) is frozen but got a gradient buffer") }
            return (adapters.flatMap { $0.1.values }, loss)
        }
        let (serial, serialLoss) = try train(threads: 1)
        let (parallel, parallelLoss) = try train(threads: 2)
        #expect(zip(serial, parallel).map { abs($0 - $1) }.max()! < 1e-5)
        #expect(abs(serialLoss - parallelLoss) < 1e-5)
    }
}

/// The bench presets are the reference shapes of tools/bench_configs.json; SmolLM2-135M's
/// parameter count is the one Hugging Face reports for SmolLM2-135M-Instruct (134,515,008).
@Test func benchPresetsMatchTheReferenceShapes() {
    for (name, preset) in BenchConfig.presets { #expect(preset.problems().isEmpty, "\(name)") }
    let smol = BenchConfig.presets["SmolLM2-135M"]!
    #expect(smol.model.parameterCount == 134_515_008)
    #expect(smol.model.headDim == 64 && smol.model.numKeyValueHeads == 3)
}
