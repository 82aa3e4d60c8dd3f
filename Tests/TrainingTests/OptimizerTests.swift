import Core
import Foundation
import NN
import Testing
import Training

@Suite struct AdamWTests {
    /// Two updates of one scalar, worked by hand (torch.optim.AdamW's arithmetic):
    /// p0 = 1, g = 0.5 both steps, lr = 0.1, b1 = 0.9, b2 = 0.99, eps = 1e-8, wd = 0.1.
    /// step 1: p = 1 * (1 - 0.1*0.1) = 0.99; m = 0.05; v = 0.0025
    ///         m̂ = 0.05/0.1 = 0.5; v̂ = 0.0025/0.01 = 0.25; p = 0.99 - 0.1 * 0.5/0.5 = 0.89
    /// step 2: p = 0.89 * 0.99 = 0.8811; m = 0.045 + 0.05 = 0.095; v = 0.002475 + 0.0025 = 0.004975
    ///         m̂ = 0.095/0.19 = 0.5; v̂ = 0.004975/0.0199 = 0.25; p = 0.8811 - 0.1 = 0.7811
    @Test func matchesHandComputedUpdates() {
        let p = Tensor(shape: [1], values: [1], requiresGrad: true)
        let opt = AdamW(parameters: [("w", p)], config: AdamWConfig(beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1)) { _ in true }
        for expected: Float in [0.89, 0.7811] {
            opt.zeroGrad()
            (p * 0.5).sum().backward()  // dL/dp = 0.5
            opt.update(lr: 0.1)
            #expect(abs(p.item - expected) < 1e-6, "got \(p.item), want \(expected)")
        }
    }

    @Test func noDecayParametersAreNotShrunk() {
        let p = Tensor(shape: [1], values: [2], requiresGrad: true)
        let opt = AdamW(parameters: [("model.norm.weight", p)], config: AdamWConfig(weightDecay: 0.5)) { !$0.contains("norm") }
        p.grad = Tensor.zeros([1])
        opt.update(lr: 0.1)
        // Zero gradient: m = v = 0, so only decay could move p.
        #expect(p.item == 2)
    }

    @Test func frozenParametersHaveNoOptimizerState() {
        let a = Tensor(shape: [2], values: [1, 2], requiresGrad: true)
        let frozen = Tensor(shape: [2], values: [1, 2])
        let opt = AdamW(parameters: [("a", a), ("frozen", frozen)], config: AdamWConfig()) { _ in true }
        #expect(opt.slots.map(\.name) == ["a"])
    }

    @Test func gradientNormAndClipping() {
        let a = Tensor(shape: [2], values: [0, 0], requiresGrad: true)
        let b = Tensor(shape: [1], values: [0], requiresGrad: true)
        a.grad = Tensor(shape: [2], values: [3, 0])
        b.grad = Tensor(shape: [1], values: [4])
        let opt = AdamW(parameters: [("a", a), ("b", b)], config: AdamWConfig()) { _ in true }
        #expect(opt.gradientNorm() == 5)
        opt.scaleGradients(0.2)
        #expect(abs(opt.gradientNorm() - 1) < 1e-6)
    }
}

@Suite struct ScheduleTests {
    /// warmup 10 of 110 steps, peak 1, floor 0.1: step 4 -> 0.5; step 10 (first after
    /// warmup) -> 1; the middle of the decay (step 59.5) -> 0.55; the last step -> 0.1.
    @Test func cosineWithWarmup() {
        let s = LearningRateSchedule(peak: 1, warmupSteps: 10, totalSteps: 110, minRatio: 0.1, kind: .cosine)
        #expect(abs(s.rate(at: 4) - 0.5) < 1e-12)
        #expect(abs(s.rate(at: 10) - 1) < 1e-12)
        #expect(abs(s.rate(at: 109) - 0.1) < 1e-12)
        let mid = 0.1 + 0.9 * 0.5 * (1 + cos(Double.pi * 49.0 / 99.0))
        #expect(abs(s.rate(at: 59) - mid) < 1e-12)
        let linear = LearningRateSchedule(peak: 1, warmupSteps: 0, totalSteps: 11, minRatio: 0, kind: .linear)
        #expect(abs(linear.rate(at: 5) - 0.5) < 1e-12)
    }
}

func tinyModel(seed: UInt64) -> LlamaModel {
    var rng = RNG(seed: seed)
    let c = LlamaConfig(vocabSize: 31, hiddenSize: 16, intermediateSize: 32, numHiddenLayers: 2, numAttentionHeads: 4,
        numKeyValueHeads: 2, maxPositionEmbeddings: 64)
    return LlamaModel(config: c, rng: &rng)
}

@Suite struct TrainerTests {
    func batch(_ rows: [[Int32]]) -> TrainingBatch {
        let t = rows[0].count - 1
        return TrainingBatch(inputs: rows.flatMap { $0.dropLast() }, targets: rows.flatMap { $0.dropFirst() }, batch: rows.count, length: t)
    }

    @Test func memorisesASmallBatch() throws {
        let m = tinyModel(seed: 1)
        let cfg = TrainerConfig(steps: 60, schedule: LearningRateSchedule(peak: 1e-2, warmupSteps: 5, totalSteps: 60))
        let trainer = Trainer(model: m, config: cfg, optimizer: AdamW(parameters: m.namedParameters(), config: cfg.optimizer) { _ in true })
        let data = batch([[1, 2, 3, 4, 5, 6, 7, 8, 9], [9, 8, 7, 6, 5, 4, 3, 2, 1]])
        var losses: [Double] = []
        try trainer.run(nextBatch: { data }) { event in
            if case .step(let r) = event { losses.append(r.loss) }
            return true
        }
        #expect(losses.count == 60)
        // Uniform guessing over 31 tokens costs ln 31 = 3.43.
        #expect(losses[0] > 3)
        #expect(losses.last! < 0.5)
    }

    /// Two micro-batches of one row give the update of one batch of two rows.
    @Test func accumulationEqualsTheFullBatch() throws {
        let rows: [[Int32]] = [[1, 5, 9, 2, 6], [3, 3, 7, 1, 0]]
        func train(accum: Bool) throws -> [Float] {
            let m = tinyModel(seed: 3)
            let cfg = TrainerConfig(steps: 1, gradAccum: accum ? 2 : 1, schedule: LearningRateSchedule(peak: 1e-2, warmupSteps: 0, totalSteps: 1))
            let t = Trainer(model: m, config: cfg, optimizer: AdamW(parameters: m.namedParameters(), config: cfg.optimizer) { _ in true })
            _ = try t.step(accum ? [batch([rows[0]]), batch([rows[1]])] : [batch(rows)])
            return m.namedParameters().flatMap { $0.1.values }
        }
        let a = try train(accum: true), b = try train(accum: false)
        #expect(zip(a, b).map { abs($0 - $1) }.max()! < 1e-6)
    }

    /// With two threads a step splits the batch over two replicas; the update must equal
    /// the serial one on the same batch (to float rounding: the sums run in another order).
    @Test func dataParallelStepEqualsTheSerialStep() throws {
        let rows: [[Int32]] = [[1, 5, 9, 2, 6], [3, 3, 7, 1, 0], [4, 8, 15, 16, 23], [2, 2, 2, 9, 9]]
        func train(threads: Int) throws -> ([Float], Double) {
            let before = Threads.count
            Threads.set(threads)
            defer { Threads.set(before) }
            let m = tinyModel(seed: 5)
            let cfg = TrainerConfig(steps: 2, gradAccum: 2, schedule: LearningRateSchedule(peak: 1e-2, warmupSteps: 0, totalSteps: 2))
            let t = Trainer(model: m, config: cfg, optimizer: AdamW(parameters: m.namedParameters(), config: cfg.optimizer) { _ in true })
            var loss = 0.0
            for _ in 0..<2 { loss = try t.step([batch(Array(rows[0..<3])), batch(Array(rows[1..<4]))]).loss }
            return (m.namedParameters().flatMap { $0.1.values }, loss)
        }
        let (serial, serialLoss) = try train(threads: 1)
        let (parallel, parallelLoss) = try train(threads: 2)
        #expect(zip(serial, parallel).map { abs($0 - $1) }.max()! < 1e-5)
        #expect(abs(serialLoss - parallelLoss) < 1e-5)
    }

    @Test func nonFiniteLossStopsBeforeTheUpdate() throws {
        let m = tinyModel(seed: 4)
        let cfg = TrainerConfig(steps: 5, schedule: LearningRateSchedule(peak: 1e-2, warmupSteps: 0, totalSteps: 5))
        let t = Trainer(model: m, config: cfg, optimizer: AdamW(parameters: m.namedParameters(), config: cfg.optimizer) { _ in true })
        m.norm.data[0] = .nan
        let before = m.namedParameters().map { $0.1.values }
        #expect(throws: TrainingError.self) { try t.step([batch([[1, 2, 3]])]) }
        let after = m.namedParameters().map { $0.1.values }
        #expect(zip(before, after).allSatisfy { zip($0, $1).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) } })
        #expect(t.optimizer.step == 0)
    }
}
