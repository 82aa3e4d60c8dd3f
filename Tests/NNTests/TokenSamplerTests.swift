// TokenSampler against the distributions it promises, written out here: softmax(logits / T),
// cut to the k largest logits (ties to the smaller id) and renormalised, then to the fewest
// most likely tokens holding probability p. Frequencies over 40,000 draws must match those
// probabilities within 0.01, and tokens outside a cut must never appear.

import Core
import Foundation
@testable import NN
import Testing

@Suite struct TokenSamplerTests {
    /// Ten tokens: 7 and 2 tie for the largest logit, the rest spread below.
    static let logits: [Float] = [0.5, -1, 2, 0.1, -3, 1.2, 0.7, 2, -0.4, 1.5]

    /// The promised probabilities for `s`, by id.
    static func expected(_ s: SamplingConfig) -> [Double] {
        let order = logits.indices.sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        let k = s.topK > 0 ? min(s.topK, logits.count) : logits.count
        let kept = Array(order.prefix(k))
        let top = Double(logits[order[0]])
        var p = kept.map { exp((Double(logits[$0]) - top) / s.temperature) }
        let total = p.reduce(0, +)
        p = p.map { $0 / total }
        var n = p.count
        if s.topP < 1 {
            var acc = 0.0
            n = 0
            while n < p.count && acc < s.topP {
                acc += p[n]
                n += 1
            }
        }
        let mass = p.prefix(n).reduce(0, +)
        var out = [Double](repeating: 0, count: logits.count)
        for i in 0..<n { out[kept[i]] = p[i] / mass }
        return out
    }

    @Test(
        "draws follow the promised distribution",
        arguments: [
            SamplingConfig(temperature: 1), SamplingConfig(temperature: 0.5), SamplingConfig(temperature: 1, topK: 3),
            SamplingConfig(temperature: 1, topP: 0.8), SamplingConfig(temperature: 0.7, topK: 5, topP: 0.9),
            SamplingConfig(temperature: 1, topK: 1),
        ])
    func drawsFollowTheDistribution(s: SamplingConfig) {
        let sampler = TokenSampler(vocabulary: Self.logits.count)
        var rng = RNG(seed: 3)
        var counts = [Int](repeating: 0, count: Self.logits.count)
        let draws = 40_000
        Self.logits.withUnsafeBufferPointer { l in
            for _ in 0..<draws { counts[Int(sampler.pick(l.baseAddress!, s, &rng))] += 1 }
        }
        let want = Self.expected(s)
        for (id, c) in counts.enumerated() {
            if want[id] == 0 { #expect(c == 0, "token \(id) is outside the cut but was drawn \(c) times") }
            #expect(abs(Double(c) / Double(draws) - want[id]) < 0.01, "token \(id): \(c) of \(draws), expected \(want[id])")
        }
    }

    /// Greedy takes the first of the tied largest logits; a top-k of 1 takes the same token.
    @Test func greedyTakesTheFirstLargest() {
        let sampler = TokenSampler(vocabulary: Self.logits.count)
        var rng = RNG(seed: 1)
        Self.logits.withUnsafeBufferPointer { l in
            #expect(sampler.pick(l.baseAddress!, SamplingConfig(temperature: 0), &rng) == 2)
            #expect(sampler.pick(l.baseAddress!, SamplingConfig(temperature: 1, topK: 1), &rng) == 2)
        }
    }
}
