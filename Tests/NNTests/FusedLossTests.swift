// LlamaModel.loss runs the lm head fused with the cross-entropy, and LlamaModel.tokenLogProbs
// fused with the log-softmax; their gradients must be those of crossEntropy(logits(...)) and
// tokenLogProbs(logits(...)) for every parameter, a tied embedding summing both uses.

import Core
import Foundation
import NN
import Testing

@Suite struct FusedLossTests {
    /// Runs `fused` and `plain` (each a scalar of a model, ids and targets: B 3, T 11, every
    /// fourth target ignored) and checks value and every parameter's gradient agree.
    func compare(
        tied: Bool, frozenEmbedding: Bool,
        fused: (LlamaModel, [Int32], [Int32]) -> Tensor, plain: (LlamaModel, [Int32], [Int32]) -> Tensor
    ) {
        var rng = RNG(seed: 21)
        let m = LlamaModel(config: tinyConfig(tied: tied), rng: &rng)
        if frozenEmbedding { m.embedTokens.requiresGrad = false }
        let ids = (0..<33).map { _ in Int32(rng.next() % 97) }
        let targets = ids.enumerated().map { i, id in i % 4 == 2 ? -100 : (id + 5) % 97 }

        func gradients(_ loss: Tensor) -> (Float, [String: [Float]]) {
            for (_, p) in m.namedParameters() { p.grad = nil }
            (loss * 0.5).backward()
            return (loss.item, Dictionary(uniqueKeysWithValues: m.namedParameters().compactMap { n, p in p.grad.map { (n, $0.values) } }))
        }
        let (fusedLoss, fusedGrads) = gradients(fused(m, ids, targets))
        let (plainLoss, plainGrads) = gradients(plain(m, ids, targets))

        #expect(abs(fusedLoss - plainLoss) <= 1e-5 * abs(plainLoss))
        #expect(Set(fusedGrads.keys) == Set(plainGrads.keys))
        #expect(fusedGrads["model.embed_tokens.weight"] == nil || !frozenEmbedding)
        for (name, want) in plainGrads {
            let got = fusedGrads[name] ?? []
            let scale = want.map(abs).max() ?? 0
            #expect(maxDifference(got, want) <= 1e-5 * scale + 1e-8, "\(name)")
        }
    }

    @Test("model loss equals crossEntropy of the logits", arguments: [true, false], [false, true])
    func modelLossEqualsUnfused(tied: Bool, frozenEmbedding: Bool) {
        var rng = RNG(seed: 22)
        let weights = (0..<33).map { _ in Float(rng.uniform()) + 0.5 }
        compare(
            tied: tied, frozenEmbedding: frozenEmbedding,
            fused: { m, ids, targets in m.loss(ids: ids, targets: targets, batch: 3, length: 11, weights: weights) },
            plain: { m, ids, targets in
                Tensor.crossEntropy(m.logits(ids: ids, batch: 3, length: 11), targets: targets, weights: weights)
            })
    }

    /// Σ g ⊙ log-probs with a fixed g of mixed signs (DPO weights rows by sequence terms).
    @Test("model token log-probs equal tokenLogProbs of the logits", arguments: [true, false], [false, true])
    func modelTokenLogProbsEqualUnfused(tied: Bool, frozenEmbedding: Bool) {
        var rng = RNG(seed: 23)
        let g = Tensor.randn([3, 11], rng: &rng)
        compare(
            tied: tied, frozenEmbedding: frozenEmbedding,
            fused: { m, ids, targets in
                let lp = m.tokenLogProbs(ids: ids, targets: targets, batch: 3, length: 11)  // [B, T]
                #expect(lp.shape == [3, 11])
                return (lp * g).sum()
            },
            plain: { m, ids, targets in
                (Tensor.tokenLogProbs(m.logits(ids: ids, batch: 3, length: 11), targets: targets) * g).sum()
            })
    }
}
