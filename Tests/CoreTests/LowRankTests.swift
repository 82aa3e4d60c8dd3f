// The fused low-rank linear (LoRA's product) against the same function composed from
// primitive ops (linear, slice, scale, add, concat), forward and every gradient; and the
// work it must skip for frozen weights and inputs that need no gradient.

import Core
import Foundation
import Testing

@Suite struct LowRankTests {
    /// y = x Wᵀ with s_i (u_i A_iᵀ) B_iᵀ added to columns [c0_i, c1_i), composed from ops.
    func composed(_ x: Tensor, _ w: Tensor, _ updates: [LowRankUpdate]) -> Tensor {
        let base = Tensor.linear(x, w)  // [N, out]
        let out = w.shape[0]
        var pieces: [Tensor] = []
        var column = 0
        for u in updates.sorted(by: { $0.columns.lowerBound < $1.columns.lowerBound }) {
            if u.columns.lowerBound > column { pieces.append(base.slice(axis: 1, column..<u.columns.lowerBound)) }
            let delta = Tensor.linear(Tensor.linear(u.input, u.a), u.b) * u.scale
            pieces.append(base.slice(axis: 1, u.columns) + delta)
            column = u.columns.upperBound
        }
        if column < out { pieces.append(base.slice(axis: 1, column..<out)) }
        return Tensor.concat(pieces, axis: 1)
    }

    func maxDiff(_ a: Tensor?, _ b: Tensor?) -> Float {
        guard let a, let b else { return .infinity }
        return zip(a.values, b.values).map { abs($0 - $1) }.max() ?? 0
    }

    /// Out 24 = blocks [0, 8) adapted (input x), [8, 14) plain, [14, 24) adapted with its
    /// own input (as dropout gives); every tensor trains.
    @Test func matchesTheComposedOpsForwardAndBackward() {
        var rng = RNG(seed: 11)
        let (n, inF, out) = (7, 10, 24)
        func make(_ shape: [Int]) -> Tensor { Tensor.randn(shape, std: 0.5, rng: &rng, requiresGrad: true) }
        let x = make([n, inF]), u = make([n, inF]), w = make([out, inF])
        let a1 = make([3, inF]), b1 = make([8, 3]), a2 = make([2, inF]), b2 = make([10, 2])
        let seed = Tensor.randn([n, out], rng: &rng)
        let updates = [
            LowRankUpdate(columns: 0..<8, input: x, a: a1, b: b1, scale: 1.5),
            LowRankUpdate(columns: 14..<24, input: u, a: a2, b: b2, scale: -0.75),
        ]
        let leaves = [x, u, w, a1, b1, a2, b2]
        let fused = Tensor.linear(x, w, updates: updates)
        fused.backward(seed: seed)
        let fusedGrads = leaves.map { $0.grad }
        for p in leaves { p.grad = nil }
        let reference = composed(x, w, updates)
        reference.backward(seed: seed)
        #expect(fused.shape == [n, out])
        #expect(maxDiff(fused, reference) < 1e-5)
        for (i, p) in leaves.enumerated() {
            #expect(maxDiff(fusedGrads[i], p.grad) < 1e-5, "gradient \(i) differs")
        }
    }

    /// LoRA's case: the base weight is frozen and (first layer, frozen embeddings) the
    /// input needs no gradient. The backward must create no gradient buffer for either:
    /// no dW product and no dx product run, only the adapters' own.
    @Test func frozenWeightAndInputGetNoGradientWork() {
        var rng = RNG(seed: 12)
        let x = Tensor.randn([2, 5, 6], rng: &rng)  // [B, T, in], needs no gradient
        let w = Tensor.randn([9, 6], rng: &rng)  // frozen
        let a = Tensor.randn([4, 6], rng: &rng, requiresGrad: true)
        let b = Tensor.randn([9, 4], rng: &rng, requiresGrad: true)
        let y = Tensor.linear(x, w, updates: [LowRankUpdate(columns: 0..<9, input: x, a: a, b: b, scale: 2)])
        #expect(y.shape == [2, 5, 9])
        y.sum().backward()
        #expect(x.grad == nil, "dx computed for an input that needs no gradient")
        #expect(w.grad == nil, "dW computed for a frozen weight")
        #expect(a.grad != nil && b.grad != nil)
        // d/dB of Σ y = s Σ_rows z, z = x Aᵀ: check one entry by hand.
        let z = Tensor.linear(x, a).values  // [10, 4]
        let want = 2 * (0..<10).reduce(Float(0)) { $0 + z[$1 * 4 + 1] }
        #expect(abs(b.grad!.values[3 * 4 + 1] - want) < 1e-4 * max(1, abs(want)))
    }

    @Test func withoutUpdatesItIsTheLinearBitForBit() {
        var rng = RNG(seed: 13)
        let x = Tensor.randn([5, 8], rng: &rng), w = Tensor.randn([3, 8], rng: &rng)
        #expect(Tensor.linear(x, w, updates: []).values == Tensor.linear(x, w).values)
    }
}
