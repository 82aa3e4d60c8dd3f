// The fused lm heads against the compositions they replace (crossEntropy(linear(hidden,
// weight)) and tokenLogProbs(linear(hidden, weight))), and against finite differences of the
// loss written out in Double.

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
        let expected = reference(hidden.values.map(Double.init), weight.values.map(Double.init))
        #expect(abs(Double(loss.item) - expected) < 1e-6)
        #expect(weight.grad != nil)
        expectFiniteDifferences(hidden, weight, reference)
        #expect(hidden.grad!.values[c..<(2 * c)].allSatisfy { $0 == 0 })  // the ignored row
    }

    /// Central differences (step 1e-4, in Double) of f(hidden, weight) against the analytic
    /// gradient of `hidden`, and of `weight` when it has one.
    func expectFiniteDifferences(_ hidden: Tensor, _ weight: Tensor, _ f: ([Double], [Double]) -> Double) {
        let h0 = hidden.values.map(Double.init), w0 = weight.values.map(Double.init)
        func check(_ analytic: [Float], at base: [Double], _ eval: ([Double]) -> Double) {
            for k in analytic.indices {
                var (up, down) = (base, base)
                up[k] += 1e-4
                down[k] -= 1e-4
                let fd = (eval(up) - eval(down)) / 2e-4
                #expect(abs(fd - Double(analytic[k])) <= 1e-5 + 1e-4 * abs(fd), "d[\(k)]: \(analytic[k]) vs \(fd)")
            }
        }
        check(hidden.grad!.values, at: h0) { f($0, w0) }
        if let g = weight.grad { check(g.values, at: w0) { f(h0, $0) } }
    }

    // MARK: - Token log-probs

    /// A case of `cases` at a thread count (1: one worker; 2: two workers with partial weight
    /// gradients), with the weight trained (logits recomputed in the backward) or frozen (the
    /// hidden gradient computed in the forward for g = 1).
    struct LogProbCase: CustomTestStringConvertible, Sendable {
        var c: Case, threads: Int, trainedWeight: Bool
        var testDescription: String { "\(c.testDescription) threads \(threads) weight \(trainedWeight ? "trained" : "frozen")" }
    }

    static let logProbCases: [LogProbCase] = cases.flatMap { c in
        [1, 2].flatMap { t in [true, false].map { LogProbCase(c: c, threads: t, trainedWeight: $0) } }
    }

    /// Values and the gradients of Σ_i g_i lp_i (random g, one per row) w.r.t. hidden and
    /// weight equal tokenLogProbs(linear(hidden, weight)); ignored rows give exactly 0 and no
    /// hidden gradient; a second pass adds to the gradients already there.
    @Test("token log-probs equal the unfused composition", arguments: logProbCases)
    func tokenLogProbsEqualUnfused(_ p: LogProbCase) {
        let before = Threads.count
        Threads.set(p.threads)
        defer { Threads.set(before) }
        let c = p.c
        let (hidden, weight, targets, _) = inputs(c, seed: 31)
        weight.requiresGrad = p.trainedWeight
        var rng = RNG(seed: 32)
        let g = Tensor.randn(Array(hidden.shape.dropLast()), rng: &rng)  // dL/dlp, one per row
        func fused() -> Tensor {
            Tensor.linearTokenLogProbs(hidden, weight, targets: targets, ignoreIndex: -100, rowsPerChunk: c.chunk)
        }
        let lp = fused()
        lp.backward(seed: g)
        let (fh, fw) = (hidden.grad!.values, weight.grad?.values)
        hidden.grad = nil
        weight.grad = nil
        let reference = Tensor.tokenLogProbs(Tensor.linear(hidden, weight), targets: targets)
        reference.backward(seed: g)
        let (rh, rw) = (hidden.grad!.values, weight.grad?.values)
        #expect(lp.shape == reference.shape)
        #expect(relative(lp.values, reference.values) <= 1, "values")
        #expect(relative(fh, rh) <= 1, "dHidden")
        if p.trainedWeight {
            #expect(fw != nil && relative(fw ?? [], rw ?? []) <= 1, "dWeight")
        } else {
            #expect(fw == nil && rw == nil, "a frozen weight gets no gradient")
        }
        if let k = c.ignoreEvery {
            for i in stride(from: 1, to: c.rows, by: k) {
                #expect(lp.values[i] == 0)
                #expect(fh[(i * c.width)..<((i + 1) * c.width)].allSatisfy { $0 == 0 })
            }
        }

        // g/4 on top of the gradients already there: 1.25 times the pieces.
        fused().backward(seed: g * 0.25)
        #expect(relative(hidden.grad!.values, rh.map { $0 * 1.25 }) <= 1, "accumulated dHidden")
        if p.trainedWeight { #expect(relative(weight.grad!.values, (rw ?? []).map { $0 * 1.25 }) <= 1, "accumulated dWeight") }
    }

    /// The public entry (default chunk height) and the no-grad path give the same values, and
    /// the no-grad path records nothing.
    @Test func tokenLogProbsDefaultChunkAndNoGrad() {
        let c = Case(rows: 45, width: 24, vocabulary: 67, chunk: 8, ignoreEvery: 3, weighted: false)
        let (hidden, weight, targets, _) = inputs(c, seed: 33)
        let reference = GradMode.withoutGrad { Tensor.tokenLogProbs(Tensor.linear(hidden, weight), targets: targets).values }
        let plain = Tensor.linearTokenLogProbs(hidden, weight, targets: targets)
        let noGrad = GradMode.withoutGrad { Tensor.linearTokenLogProbs(hidden, weight, targets: targets) }
        #expect(plain.requiresGrad && !noGrad.requiresGrad)
        #expect(relative(plain.values, reference) <= 1)
        #expect(noGrad.values == plain.values)
    }

    /// Central differences (h = 1e-4, in Double) of L = Σ_i g_i lp_i written out, with
    /// lp_i = h_i · W_{t_i} - log Σ_j exp(h_i · W_j) on counted rows (0 on the ignored one):
    /// dL/dh_i = g_i (W_{t_i} - Σ_j softmax_ij W_j), dL/dW_j = Σ_i g_i ([j = t_i] - softmax_ij) h_i.
    /// Trained weight (recomputed logits) and frozen weight (hidden gradient in the forward).
    @Test("token log-prob gradients match finite differences", arguments: [true, false])
    func tokenLogProbsMatchFiniteDifferences(trainedWeight: Bool) {
        let (n, c, v) = (5, 3, 7)
        var rng = RNG(seed: 34)
        let hidden = Tensor.randn([n, c], rng: &rng, requiresGrad: true)
        let weight = Tensor.randn([v, c], rng: &rng, requiresGrad: trainedWeight)
        let targets: [Int32] = [3, -100, 0, 6, 2]
        let g: [Float] = [0.5, 2, -1, 1.5, 0.25]
        let lp = Tensor.linearTokenLogProbs(hidden, weight, targets: targets, ignoreIndex: -100, rowsPerChunk: 2)
        lp.backward(seed: Tensor(shape: [n], values: g))

        func logProbs(_ h: [Double], _ w: [Double]) -> [Double] {
            (0..<n).map { i in
                guard targets[i] != -100 else { return 0 }
                let z = (0..<v).map { j in (0..<c).reduce(0.0) { $0 + h[i * c + $1] * w[j * c + $1] } }
                let m = z.max()!
                return z[Int(targets[i])] - (m + log(z.reduce(0.0) { $0 + exp($1 - m) }))
            }
        }
        func objective(_ h: [Double], _ w: [Double]) -> Double {
            zip(g, logProbs(h, w)).reduce(0.0) { $0 + Double($1.0) * $1.1 }
        }
        let expected = logProbs(hidden.values.map(Double.init), weight.values.map(Double.init))
        for (got, want) in zip(lp.values, expected) { #expect(abs(Double(got) - want) < 1e-5) }
        #expect((weight.grad != nil) == trainedWeight, "a frozen weight gets no gradient")
        expectFiniteDifferences(hidden, weight, objective)
        #expect(hidden.grad!.values[c..<(2 * c)].allSatisfy { $0 == 0 })  // the ignored row
    }
}
