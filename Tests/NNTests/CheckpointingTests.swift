// Activation checkpointing (`LlamaModel.recomputeLayers`) against the same model keeping its
// activations: the same losses and gradients over steps, with LoRA dropout (the masks must be
// replayed, and the streams left where the plain model leaves them), with a repeated layer,
// for full training and on a packed base.

import Core
import Foundation
import NN
import Testing

@Suite struct CheckpointingTests {
    let ids: [Int32] = (0..<24).map { Int32(($0 * 13 + 5) % 97) }

    enum Case: String, CaseIterable { case loraDropout, repeatedLayer, full, packedBase }

    func model(_ c: Case) -> (LlamaModel, [(String, Tensor)]) {
        var rng = RNG(seed: 41)
        var config = tinyConfig()
        if c == .repeatedLayer { config.layerRepeat = 2 }
        if c == .packedBase { (config.hiddenSize, config.intermediateSize) = (64, 96) }
        let m = LlamaModel(config: config, rng: &rng)
        if c == .full { return (m, m.namedParameters()) }
        let adapters = m.addLoRA(
            LoRAConfig(rank: 4, alpha: 8, dropout: 0.2, targetModules: ["q_proj", "v_proj", "down_proj"]), rng: &rng)
        return (c == .packedBase ? m.packed(m.quantizedMatrices(.q4_1)) : m, adapters)
    }

    /// Three SGD steps; the losses and every trained tensor's gradient at each step.
    func steps(_ m: LlamaModel, _ trained: [(String, Tensor)]) -> [(Float, [[Float]])] {
        (0..<3).map { _ in
            for (_, p) in trained { p.zeroGrad() }
            let loss = m.loss(ids: ids, targets: ids.map { ($0 + 1) % 97 }, batch: 2, length: 12)
            loss.backward()
            let grads = trained.map { $0.1.grad?.values ?? [] }
            for (_, p) in trained {
                guard let g = p.grad else { continue }
                for i in 0..<p.count { p.data[i] -= 0.3 * g.data[i] }
            }
            return (loss.item, grads)
        }
    }

    @Test("recomputed layers give the plain model's losses and gradients", arguments: Case.allCases)
    func sameAsKeepingActivations(_ c: Case) {
        let (plain, plainTrained) = model(c)
        let (recomputed, recomputedTrained) = model(c)
        recomputed.recomputeLayers = true
        let a = steps(plain, plainTrained), b = steps(recomputed, recomputedTrained)
        for (step, (x, y)) in zip(a, b).enumerated() {
            #expect(x.0 == y.0, "loss at step \(step): \(x.0) vs \(y.0)")
            for (i, (g, h)) in zip(x.1, y.1).enumerated() {
                #expect(!g.isEmpty && maxDifference(g, h) <= 1e-6 * max(g.map(abs).max()!, 1e-6), "\(plainTrained[i].0) at step \(step)")
            }
        }
        let streams = { (m: LlamaModel) in m.layers.flatMap { $0.modules.compactMap { ($0.1 as? LoRALinear)?.rng } } }
        #expect(streams(plain) == streams(recomputed), "dropout streams must end where the plain model's do")
    }
}
