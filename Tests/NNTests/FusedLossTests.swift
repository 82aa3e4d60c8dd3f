// LlamaModel.loss runs the lm head fused with the cross-entropy; its gradients must be those
// of crossEntropy(logits(...)) for every parameter, a tied embedding summing both uses.

import Core
import Foundation
import NN
import Testing

@Suite struct FusedLossTests {
    @Test("model loss equals crossEntropy of the logits", arguments: [true, false], [false, true])
    func modelLossEqualsUnfused(tied: Bool, frozenEmbedding: Bool) {
        var rng = RNG(seed: 21)
        let m = LlamaModel(config: tinyConfig(tied: tied), rng: &rng)
        if frozenEmbedding { m.embedTokens.requiresGrad = false }
        let (b, t) = (3, 11)
        let ids = (0..<(b * t)).map { _ in Int32(rng.next() % 97) }
        let targets = ids.enumerated().map { i, id in i % 4 == 2 ? -100 : (id + 5) % 97 }
        let weights = (0..<(b * t)).map { _ in Float(rng.uniform()) + 0.5 }

        func gradients(_ loss: Tensor) -> (Float, [String: [Float]]) {
            for (_, p) in m.namedParameters() { p.grad = nil }
            (loss * 0.5).backward()
            return (loss.item, Dictionary(uniqueKeysWithValues: m.namedParameters().compactMap { n, p in p.grad.map { (n, $0.values) } }))
        }
        let (fusedLoss, fused) = gradients(m.loss(ids: ids, targets: targets, batch: b, length: t, weights: weights))
        let logits = m.logits(ids: ids, batch: b, length: t)
        let (plainLoss, plain) = gradients(Tensor.crossEntropy(logits, targets: targets, weights: weights))

        #expect(abs(fusedLoss - plainLoss) <= 1e-5 * abs(plainLoss))
        #expect(Set(fused.keys) == Set(plain.keys))
        #expect(fused["model.embed_tokens.weight"] == nil || !frozenEmbedding)
        for (name, want) in plain {
            let got = fused[name] ?? []
            let scale = want.map(abs).max() ?? 0
            #expect(maxDifference(got, want) <= 1e-5 * scale + 1e-8, "\(name)")
        }
    }
}
