// The fused lm head + cross-entropy against the composition it replaces
// (crossEntropy(linear(hidden, weight))), and against finite differences of the loss written
// out in Double.

import Core
import Foundation
import Testing

@Suite struct LinearCrossEntropyTests {
    /// Largest |a - b| over (1e-5 * max|b| + 1e-7): ≤ 1 means equal to ~1e-5 relative.
    func relative(_ a: [Float], _ b: [Float]) -> Float {
        let scale = b.map(abs).max() ?? 0
        return maxAbs(a, b) / (1e-5 * scale + 1e-7)
    }

    struct Case: CustomTestStringConvertible, Sendable {
        var rows: Int, width: Int, vocabulary: Int, chunk: Int
        var ignoreEvery: Int?  // every k-th target ignored
        var weighted: Bool
        var testDescription: String {
            "N \(rows) C \(width) V \(vocabulary) chunk \(chunk) ignore \(ignoreEvery.map(String.init) ?? "-") weighted \(weighted)"
        }
    }

    /// Inputs of a case: hidden [2, N/2, C] when N is even (leading axes fold into rows).
    func inputs(_ c: Case, seed: UInt64) -> (Tensor, Tensor, [Int32], [Float]?) {
        var rng = RNG(seed: seed)
        let shape = c.rows % 2 == 0 ? [2, c.rows / 2, c.width] : [c.rows, c.width]
        let hidden = Tensor.randn(shape, rng: &rng, requiresGrad: true)
        let weight = Tensor.randn([c.vocabulary, c.width], std: 0.5, rng: &rng, requiresGrad: true)
        let targets = (0..<c.rows).map { i -> Int32 in
            if let k = c.ignoreEvery, i % k == 1 { return -100 }
            return Int32(rng.next() % UInt64(c.vocabulary))
        }
        let weights = c.weighted ? (0..<c.rows).map { _ in Float(rng.uniform()) * 2 } : nil
        return (hidden, weight, targets, weights)
    }

    static let cases: [Case] = [
        Case(rows: 45, width: 24, vocabulary: 67, chunk: 8, ignoreEvery: 3, weighted: true),  // 45 = 5*8 + 5
        Case(rows: 45, width: 24, vocabulary: 67, chunk: 8, ignoreEvery: nil, weighted: false),  // rows in place
        Case(rows: 64, width: 16, vocabulary: 131, chunk: 7, ignoreEvery: 4, weighted: false),
        Case(rows: 3, width: 8, vocabulary: 11, chunk: 2, ignoreEvery: nil, weighted: true),
        Case(rows: 40, width: 32, vocabulary: 300, chunk: 1024, ignoreEvery: 5, weighted: true),  // one chunk
    ]

    /// Loss, dHidden and dW equal crossEntropy(linear(hidden, weight)) with the same inputs,
    /// including the scaled (1/accum) backward and accumulation into existing gradients.
    @Test("equals the unfused composition", arguments: cases)
    func equalsUnfused(_ c: Case) {
        let (hidden, weight, targets, weights) = inputs(c, seed: 11)
        let fused = Tensor.linearCrossEntropy(
            hidden, weight, targets: targets, ignoreIndex: -100, weights: weights, rowsPerChunk: c.chunk)
        fused.backward()
        let (fh, fw) = (hidden.grad!.values, weight.grad!.values)
        hidden.grad = nil
        weight.grad = nil
        let reference = Tensor.crossEntropy(Tensor.linear(hidden, weight), targets: targets, weights: weights)
        reference.backward()
        let (rh, rw) = (hidden.grad!.values, weight.grad!.values)
        #expect(abs(fused.item - reference.item) <= 1e-5 * abs(reference.item))
        #expect(relative(fh, rh) <= 1, "dHidden")
        #expect(relative(fw, rw) <= 1, "dWeight")
        if let k = c.ignoreEvery {  // ignored rows get exactly no gradient
            for i in stride(from: 1, to: c.rows, by: k) { #expect(fh[(i * c.width)..<((i + 1) * c.width)].allSatisfy { $0 == 0 }) }
        }

        // A scaled loss on top of gradients already there: g * pieces added.
        let again = Tensor.linearCrossEntropy(
            hidden, weight, targets: targets, ignoreIndex: -100, weights: weights, rowsPerChunk: c.chunk)
        (again * 0.25).backward()
        #expect(relative(hidden.grad!.values, rh.map { $0 * 1.25 }) <= 1, "accumulated dHidden")
        #expect(relative(weight.grad!.values, rw.map { $0 * 1.25 }) <= 1, "accumulated dWeight")
    }

    /// The public entry (default chunk height) and the no-grad path give the same loss.
    @Test func defaultChunkAndNoGradGiveTheSameLoss() {
        let c = Case(rows: 45, width: 24, vocabulary: 67, chunk: 8, ignoreEvery: 3, weighted: true)
        let (hidden, weight, targets, weights) = inputs(c, seed: 12)
        let reference = GradMode.withoutGrad {
            Tensor.crossEntropy(Tensor.linear(hidden, weight), targets: targets, weights: weights).item
        }
        let plain = Tensor.linearCrossEntropy(hidden, weight, targets: targets, weights: weights)
        let noGrad = GradMode.withoutGrad { Tensor.linearCrossEntropy(hidden, weight, targets: targets, weights: weights) }
        #expect(!noGrad.requiresGrad)
        #expect(abs(plain.item - reference) <= 1e-5 * abs(reference))
        #expect(noGrad.item == plain.item)
    }

    @Test func everyTargetIgnoredIsZeroWithZeroGradients() {
        var rng = RNG(seed: 13)
        let hidden = Tensor.randn([4, 6], rng: &rng, requiresGrad: true)
        let weight = Tensor.randn([9, 6], rng: &rng, requiresGrad: true)
        let loss = Tensor.linearCrossEntropy(hidden, weight, targets: [-100, -100, -100, -100])
        #expect(loss.item == 0)
        loss.backward()
        #expect(hidden.grad!.values.allSatisfy { $0 == 0 })
        #expect(weight.grad!.values.allSatisfy { $0 == 0 })
    }

    /// A frozen weight (LoRA freezes the tied embedding) gets no gradient and the hidden
    /// gradient is unchanged; a hidden state that needs none leaves only dW.
    @Test("frozen weight or hidden", arguments: [true, false])
    func frozenInput(freezeWeight: Bool) {
        let c = Case(rows: 45, width: 24, vocabulary: 67, chunk: 8, ignoreEvery: 3, weighted: false)
        let (hidden, weight, targets, _) = inputs(c, seed: 14)
        let (frozen, trained) = freezeWeight ? (weight, hidden) : (hidden, weight)
        frozen.requiresGrad = false
        Tensor.linearCrossEntropy(hidden, weight, targets: targets, ignoreIndex: -100, weights: nil, rowsPerChunk: 8)
            .backward()
        #expect(frozen.grad == nil)
        let fused = trained.grad!.values
        trained.grad = nil
        Tensor.crossEntropy(Tensor.linear(hidden, weight), targets: targets).backward()
        #expect(relative(fused, trained.grad!.values) <= 1)
    }

    /// Central differences (h = 1e-4, in Double) of the loss written out:
    /// L = Σ_i w_i (log Σ_j exp(h_i · W_j) - h_i · W_{t_i}) / Σ_i w_i over counted rows.
    @Test func gradientsMatchFiniteDifferences() {
        let (n, c, v) = (5, 3, 7)
        var rng = RNG(seed: 15)
        let hidden = Tensor.randn([n, c], rng: &rng, requiresGrad: true)
        let weight = Tensor.randn([v, c], rng: &rng, requiresGrad: true)
        let targets: [Int32] = [3, -100, 0, 6, 2]
        let weights: [Float] = [0.5, 1, 2, 1.5, 0.25]
        let loss = Tensor.linearCrossEntropy(
            hidden, weight, targets: targets, ignoreIndex: -100, weights: weights, rowsPerChunk: 2)
        loss.backward()

        func reference(_ h: [Double], _ w: [Double]) -> Double {
            var total = 0.0, sum = 0.0
            for i in 0..<n where targets[i] != -100 {
                let z = (0..<v).map { j in (0..<c).reduce(0.0) { $0 + h[i * c + $1] * w[j * c + $1] } }
                let m = z.max()!
                let lse = m + log(z.reduce(0.0) { $0 + exp($1 - m) })
                total += Double(weights[i]) * (lse - z[Int(targets[i])])
                sum += Double(weights[i])
            }
            return total / sum
        }
        let h0 = hidden.values.map(Double.init), w0 = weight.values.map(Double.init)
        #expect(abs(Double(loss.item) - reference(h0, w0)) < 1e-6)
        func check(_ analytic: [Float], perturb: (Int, Double) -> Double) {
            for k in 0..<analytic.count {
                let fd = (perturb(k, 1e-4) - perturb(k, -1e-4)) / 2e-4
                #expect(abs(fd - Double(analytic[k])) <= 1e-5 + 1e-4 * abs(fd), "d[\(k)]: \(analytic[k]) vs \(fd)")
            }
        }
        check(hidden.grad!.values) { k, e in
            var h = h0
            h[k] += e
            return reference(h, w0)
        }
        check(weight.grad!.values) { k, e in
            var w = w0
            w[k] += e
            return reference(h0, w)
        }
        #expect(hidden.grad!.values[c..<(2 * c)].allSatisfy { $0 == 0 })  // the ignored row
    }
}
