// The trainer's objective hook: a custom objective runs through the same loop as next-token
// training (accumulation, clipping, schedule, events), a non-finite objective stops the run
// before the weights move, and metrics are averaged over micro-batches.

import Core
import Foundation
import NN
import Testing

@testable import Training

private func hookModel() -> LlamaModel {
    var rng = RNG(seed: 21)
    let config = LlamaConfig(
        vocabSize: 37, hiddenSize: 16, intermediateSize: 24, numHiddenLayers: 1, numAttentionHeads: 2,
        numKeyValueHeads: 1, maxPositionEmbeddings: 32, initializerRange: 0.2)
    return LlamaModel(config: config, rng: &rng)
}

/// One row of 8 positions: a single row never takes the data-parallel path, so the built-in
/// step and the hook compute the same products in the same order.
private func hookBatch(_ k: Int) -> TrainingBatch {
    let ids = (0..<8).map { Int32(($0 * 7 + k * 3) % 37) }
    return TrainingBatch(inputs: ids, targets: ids.map { ($0 + 1) % 37 }, batch: 1, length: 8)
}

/// Cross-entropy through the hook, with a metric that is the micro-batch index.
private struct IndexedCE: TrainingObjective {
    let model: LlamaModel
    func loss(_ b: (Int, TrainingBatch)) throws -> ObjectiveOutput {
        let l = model.loss(ids: b.1.inputs, targets: b.1.targets, batch: 1, length: 8)
        return ObjectiveOutput(loss: l, tokens: 8, metrics: ["index": Double(b.0)])
    }
}

private struct NaNObjective: TrainingObjective {
    let model: LlamaModel
    func loss(_ b: TrainingBatch) throws -> ObjectiveOutput {
        ObjectiveOutput(loss: model.loss(ids: b.inputs, targets: b.targets, batch: 1, length: 8) * Float.nan, tokens: 8)
    }
}

@Suite struct TrainerHookTests {
    private func config(steps: Int) -> TrainerConfig {
        TrainerConfig(
            steps: steps, gradAccum: 2, schedule: LearningRateSchedule(peak: 0.05, warmupSteps: 1, totalSteps: steps),
            gradClip: 0.5, evalEvery: 2, checkpointEvery: 3)
    }

    /// Four steps of two micro-batches through `run(objective:)` leave exactly the weights,
    /// losses, norms and events of the built-in next-token `run`.
    @Test func aCustomObjectiveRunsTheSameLoop() throws {
        let a = hookModel(), b = hookModel()
        let optA = AdamW(parameters: a.namedParameters(), config: AdamWConfig()) { _ in true }
        let optB = AdamW(parameters: b.namedParameters(), config: AdamWConfig()) { _ in true }
        let trainerA = Trainer(model: a, config: config(steps: 4), optimizer: optA)
        let trainerB = Trainer(model: b, config: config(steps: 4), optimizer: optB)
        var eventsA: [String] = [], eventsB: [String] = []
        var metrics: [[String: Double]] = []
        func describe(_ e: TrainingEvent) -> String {
            switch e {
            case .step(let r): return "step \(r.step) \(r.loss) \(r.gradNorm) \(r.lr) \(r.tokens)"
            case .evaluation(let s, let l): return "eval \(s) \(l)"
            case .checkpointDue(let s): return "checkpoint \(s)"
            }
        }
        var n = 0
        try trainerA.run(nextBatch: {
            defer { n += 1 }
            return hookBatch(n)
        }, validation: { [hookBatch(100)] }) {
            eventsA.append(describe($0))
            return true
        }
        var m = 0
        try trainerB.run(
            objective: IndexedCE(model: b),
            nextBatch: {
                defer { m += 1 }
                return (m, hookBatch(m))
            }, validation: { [(7, hookBatch(100))] }
        ) { event in
            eventsB.append(describe(event))
            if case .step(let r) = event { metrics.append(r.metrics) }
            return true
        }
        #expect(eventsA == eventsB)
        #expect(eventsA.filter { $0.hasPrefix("eval") }.count == 2 && eventsA.contains("checkpoint 3") && eventsA.contains("checkpoint 4"))
        for ((name, x), (_, y)) in zip(a.namedParameters(), b.namedParameters()) {
            #expect(x.values == y.values, "\(name)")
        }
        // Micro-batches 0,1 then 2,3 ...: the metric is their mean.
        #expect(metrics.map { $0["index"]! } == [0.5, 2.5, 4.5, 6.5])
        #expect(trainerB.lastEvaluationMetrics == ["index": 7])
    }

    @Test func aNonFiniteObjectiveStopsBeforeTheUpdate() throws {
        let model = hookModel()
        let before = model.namedParameters().map { $0.1.values }
        let opt = AdamW(parameters: model.namedParameters(), config: AdamWConfig()) { _ in true }
        let trainer = Trainer(model: model, config: config(steps: 2), optimizer: opt)
        #expect(throws: TrainingError.self) {
            try trainer.run(objective: NaNObjective(model: model), nextBatch: { hookBatch(0) }) { _ in true }
        }
        #expect(opt.step == 0)
        #expect(model.namedParameters().map { $0.1.values } == before)
    }
}
