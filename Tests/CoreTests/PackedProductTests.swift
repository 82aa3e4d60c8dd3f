// Training products over a frozen packed weight (QLoRA) against the f32 products on the
// decoded weight, which are the independent reference: the blocks decode to exactly those
// floats, so the two may differ only by float summation order (the tiles cut the sums of the
// input gradient). Forward, input gradient and the adapters' gradients; the lm head fused with
// the loss; the embedding lookup.

import Core
import Foundation
import Testing

@Suite struct PackedProductTests {
    static let formats: [WeightFormat] = [.q8_0, .q4_0, .q4_1]

    func relative(_ a: Tensor?, _ b: Tensor?) -> Float {
        guard let a, let b else { return .infinity }
        let diff = zip(a.values, b.values).map { abs($0 - $1) }.max() ?? 0
        return diff / max(b.values.map(abs).max() ?? 1, 1e-12)
    }

    /// x [5, 1024] through W [300, 1024] (tiles of 128 rows: three of them, the last short)
    /// with a LoRA update on columns [40, 240): y, dx, dA and dB as on the decoded W.
    @Test("linear with adapters equals f32 on the decoded weight", arguments: formats)
    func linearMatchesDecoded(format: WeightFormat) {
        var rng = RNG(seed: 21)
        let (n, inF, out, r) = (5, 1024, 300, 4)
        let w = Tensor.randn([out, inF], std: 0.05, rng: &rng)
        let packed = PackedMatrix(w, format: format)
        let decoded = packed.decoded()
        #expect(relative(decoded, w) > 0, "the quantization must change the weight, or the test proves nothing")
        let seed = Tensor.randn([n, out], rng: &rng)
        func run(_ product: (Tensor, [LowRankUpdate]) -> Tensor) -> (Tensor, Tensor, Tensor, Tensor) {
            var local = RNG(seed: 5)
            let x = Tensor.randn([n, inF], rng: &local, requiresGrad: true)
            let a = Tensor.randn([r, inF], std: 0.1, rng: &local, requiresGrad: true)
            let b = Tensor.randn([200, r], std: 0.1, rng: &local, requiresGrad: true)
            let y = product(x, [LowRankUpdate(columns: 40..<240, input: x, a: a, b: b, scale: 2)])
            (y * seed).sum().backward()
            return (y, x.grad!, a.grad!, b.grad!)
        }
        let q = run { Tensor.linear($0, packed, updates: $1) }
        let f = run { Tensor.linear($0, decoded, updates: $1) }
        #expect(relative(q.0, f.0) < 1e-5, "y")
        #expect(relative(q.1, f.1) < 1e-5, "dx")
        #expect(relative(q.2, f.2) < 1e-5, "dA")
        #expect(relative(q.3, f.3) < 1e-5, "dB")
        // Without updates the product is the plain layer; a frozen x records nothing.
        let x = Tensor.randn([n, inF], rng: &rng)
        #expect(relative(Tensor.linear(x, packed), Tensor.linear(x, decoded)) < 1e-5)
        #expect(Tensor.linear(x, packed).requiresGrad == false)
    }

    /// The lm head fused with the loss, over a packed [V, C] head: V = 700 crosses tiles of
    /// 256 rows (C = 512), 9 counted rows in chunks of 4 cross chunks and workers; one ignored
    /// target. Loss and hidden gradient as on the decoded head; so are the fused token
    /// log-probs against the unfused ones on the decoded head.
    @Test("lm head and loss equal f32 on the decoded head", arguments: formats)
    func headMatchesDecoded(format: WeightFormat) {
        var rng = RNG(seed: 22)
        let (n, c, v) = (10, 512, 700)
        let w = Tensor.randn([v, c], std: 0.05, rng: &rng)
        let packed = PackedMatrix(w, format: format)
        let decoded = packed.decoded()
        var targets = (0..<n).map { _ in Int32(rng.next() % UInt64(v)) }
        targets[3] = -100
        func run(_ loss: (Tensor) -> Tensor) -> (Tensor, Tensor) {
            var local = RNG(seed: 6)
            let h = Tensor.randn([2, 5, c], rng: &local, requiresGrad: true)
            let l = loss(h)
            l.backward()
            return (l, h.grad!)
        }
        let q = run { Tensor.linearCrossEntropy($0, packed, targets: targets, rowsPerChunk: 4) }
        let f = run { Tensor.linearCrossEntropy($0, decoded, targets: targets) }
        #expect(abs(q.0.item - f.0.item) < 1e-5 * abs(f.0.item), "loss \(q.0.item) vs \(f.0.item)")
        #expect(relative(q.1, f.1) < 1e-5, "dh")
        #expect(q.1.values[(3 * c)..<(4 * c)].allSatisfy { $0 == 0 }, "an ignored row gets no gradient")

        // Token log-probs through the same head, weighted by g per row: Σ g_i lp_i.
        let g = Tensor.randn([2, 5], rng: &rng)
        let lq = run { (Tensor.linearTokenLogProbs($0, packed, targets: targets, rowsPerChunk: 4) * g).sum() }
        let lf = run { (Tensor.tokenLogProbs(Tensor.linear($0, decoded), targets: targets) * g).sum() }
        #expect(abs(lq.0.item - lf.0.item) < 1e-5 * abs(lf.0.item), "Σ g lp \(lq.0.item) vs \(lf.0.item)")
        #expect(relative(lq.1, lf.1) < 1e-5, "dh of the log-probs")
        #expect(lq.1.values[(3 * c)..<(4 * c)].allSatisfy { $0 == 0 }, "an ignored row gets no gradient")
    }

    @Test("embedding rows are the decoded rows", arguments: formats)
    func embeddingMatchesDecoded(format: WeightFormat) {
        var rng = RNG(seed: 23)
        let table = PackedMatrix(Tensor.randn([50, 64], rng: &rng), format: format)
        let ids: [Int32] = [3, 49, 0, 3, 17, 8]
        let rows = Tensor.embedding(table, ids: ids, shape: [2, 3])
        #expect(rows.shape == [2, 3, 64])
        #expect(rows.values == Tensor.embedding(table.decoded(), ids: ids, shape: [2, 3]).values)
    }
}
