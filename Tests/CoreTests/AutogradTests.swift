// Tape semantics: accumulation, no-grad scope, frozen parameters, shared inputs, views,
// buffer reuse across steps.

import Core
import Foundation
import Testing

@Suite struct AutogradTests {
    @Test func gradientsAccumulateAcrossBackwardCallsUntilZeroed() {
        let w = Tensor(shape: [3], values: [1, 2, 3], requiresGrad: true)
        // L = Σ w² -> dL/dw = 2w, twice -> 4w.
        (w * w).sum().backward()
        (w * w).sum().backward()
        #expect(w.grad!.values == [4, 8, 12])
        w.zeroGrad()
        #expect(w.grad!.values == [0, 0, 0])
    }

    @Test func sharedInputSumsItsGradients() {
        let x = Tensor(shape: [2], values: [3, -1], requiresGrad: true)
        // L = Σ (x * x + 3x) -> dL/dx = 2x + 3.
        ((x * x) + x * 3).sum().backward()
        #expect(x.grad!.values == [9, 1])
    }

    @Test func noGradScopeRecordsNothing() {
        let x = Tensor(shape: [2], values: [1, 2], requiresGrad: true)
        let y = GradMode.withoutGrad { (x * x).sum() }
        #expect(!y.requiresGrad)
        #expect(GradMode.isEnabled)
    }

    @Test func frozenParametersGetNoGradient() {
        var rng = RNG(seed: 7)
        let frozen = Tensor.randn([4, 3], rng: &rng)
        let trained = Tensor.randn([4, 3], rng: &rng, requiresGrad: true)
        let x = Tensor.randn([5, 3], rng: &rng)
        (Tensor.linear(x, frozen) * Tensor.linear(x, trained)).sum().backward()
        #expect(frozen.grad == nil)
        #expect(trained.grad != nil)
    }

    @Test func reshapeIsAViewAndPassesGradientsThrough() {
        let x = Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6], requiresGrad: true)
        let y = x.reshaped([3, -1])
        #expect(y.shape == [3, 2])
        #expect(y.storage === x.storage)
        (y * Tensor(shape: [3, 2], values: [1, 2, 3, 4, 5, 6])).sum().backward()
        #expect(x.grad!.values == [1, 2, 3, 4, 5, 6])
    }

    @Test func splitPiecesRejoinToTheInput() {
        var rng = RNG(seed: 2)
        let x = Tensor.randn([2, 5, 3], rng: &rng, requiresGrad: true)
        let parts = x.split(axis: 1, sizes: [2, 3])
        #expect(parts.map(\.shape) == [[2, 2, 3], [2, 3, 3]])
        let back = Tensor.concat(parts, axis: 1)
        #expect(back.values == x.values)
        back.sum().backward()
        #expect(x.grad!.values.allSatisfy { $0 == 1 })
    }

    @Test func expandSumsOverRepeatedAxes() {
        let x = Tensor(shape: [3, 1], values: [1, 2, 3], requiresGrad: true)
        let y = x.expanded(to: [2, 3, 4])
        #expect(y.values[4..<8].allSatisfy { $0 == 2 })
        y.sum().backward()
        #expect(x.grad!.values == [8, 8, 8])
    }

    @Test func maskedFillBlocksGradient() {
        let x = Tensor(shape: [4], values: [1, 2, 3, 4], requiresGrad: true)
        let y = x.maskedFill([false, true, false, true], -.infinity)
        #expect(y.values == [1, -.infinity, 3, -.infinity])
        y.softmax().gatherLast([2]).backward()
        #expect(x.grad!.values[1] == 0 && x.grad!.values[3] == 0)
    }

    /// Sizes no other test uses (tests run in parallel and share the pool): logits and
    /// their gradient are 13*67 floats, the weight gradient 67*29.
    @Test func aRepeatedStepAllocatesNothingNew() {
        var rng = RNG(seed: 11)
        let w = Tensor.randn([67, 29], rng: &rng, requiresGrad: true)
        let x = Tensor.randn([13, 29], rng: &rng)
        func step() {
            w.zeroGrad()
            let logits = Tensor.linear(x, w)
            Tensor.crossEntropy(logits, targets: (0..<13).map { Int32($0 % 67) }).backward()
        }
        step()
        step()
        let sizes = [13 * 67, 67 * 29]
        let before = sizes.map(BufferPool.shared.systemAllocations(count:))
        for _ in 0..<3 { step() }
        #expect(sizes.map(BufferPool.shared.systemAllocations(count:)) == before)
    }

    @Test func crossEntropyWithEveryTargetIgnoredIsZero() {
        let logits = Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6], requiresGrad: true)
        let loss = Tensor.crossEntropy(logits, targets: [-100, -100])
        #expect(loss.item == 0)
        loss.backward()
        #expect(logits.grad!.values.allSatisfy { $0 == 0 })
    }
}

@Suite struct AttentionTests {
    /// The inference path (no probabilities kept) and a KV-cache style call with S > T
    /// (the last T queries over all S keys) give the rows of the full causal attention.
    @Test func decodeRowsEqualFullAttention() {
        var rng = RNG(seed: 5)
        let (b, s, h, g, d) = (2, 140, 4, 2, 8)
        let q = Tensor.randn([b, s, h, d], rng: &rng)
        let k = Tensor.randn([b, s, g, d], rng: &rng)
        let v = Tensor.randn([b, s, g, d], rng: &rng)
        let full = GradMode.withoutGrad { Tensor.attention(q: q, k: k, v: v) }
        // 80 rows go through the tiles, 3 and 1 (decoding) through sgemms on K and V in place.
        for first in [60, 137, 139] {
            let last = GradMode.withoutGrad { Tensor.attention(q: q.slice(axis: 1, first..<140), k: k, v: v) }
            let want = full.slice(axis: 1, first..<140)
            #expect(closeness(last.values, want.values.map(Double.init), atol: 1e-6, rtol: 0).ratio <= 1, "from \(first)")
        }
    }

    /// Attention written with primitive ops (each checked against PyTorch): per (b, h),
    /// softmax(scale * Q Kᵀ + mask) V with the kv head h / (H/G).
    static func composed(_ q: Tensor, _ k: Tensor, _ v: Tensor, segments: [Int32]?, causal: Bool = true) -> Tensor {
        let (b, t, h, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3])
        let (s, g) = (k.shape[1], k.shape[2])
        let qh = q.permuted([0, 2, 1, 3]).split(axis: 1, sizes: Array(repeating: 1, count: h))  // H x [B, 1, T, D]
        let kh = k.permuted([0, 2, 1, 3]).split(axis: 1, sizes: Array(repeating: 1, count: g))
        let vh = v.permuted([0, 2, 1, 3]).split(axis: 1, sizes: Array(repeating: 1, count: g))
        var masked = [Bool](repeating: false, count: b * t * s)
        for bi in 0..<b { for i in 0..<t { for j in 0..<s {
            let qi = s - t + i
            masked[(bi * t + i) * s + j] = (causal && j > qi) || (segments.map { $0[bi * s + j] != $0[bi * s + qi] } ?? false)
        } } }
        let heads = (0..<h).map { hi -> Tensor in
            let gi = hi / (h / g)
            let scores = Tensor.matmul(qh[hi].reshaped([b, t, d]), kh[gi].reshaped([b, s, d]), transposeB: true) * (1 / Float(d).squareRoot())
            let p = scores.maskedFill(masked, -.infinity).softmax()  // [B, T, S]
            return Tensor.matmul(p, vh[gi].reshaped([b, s, d])).reshaped([b, 1, t, d])
        }
        return Tensor.concat(heads, axis: 1).permuted([0, 2, 1, 3])  // [B, T, H, D]
    }

    @Test("fused attention equals composed ops over several row blocks", arguments: [false, true])
    func fusedEqualsComposed(packed: Bool) {
        var rng = RNG(seed: 21)
        let (b, t, h, g, d) = (2, 150, 4, 2, 8)
        let q = Tensor.randn([b, t, h, d], rng: &rng, requiresGrad: true)
        let k = Tensor.randn([b, t, g, d], rng: &rng, requiresGrad: true)
        let v = Tensor.randn([b, t, g, d], rng: &rng, requiresGrad: true)
        let seed = Tensor.randn([b, t, h, d], rng: &rng)
        let segments: [Int32]? = packed ? (0..<(b * t)).map { Int32(($0 % t) / 40) } : nil
        Self.expectSameOutputsAndGradients(q, k, v, seed: seed) { q, k, v, fused in
            fused ? Tensor.attention(q: q, k: k, v: v, segments: segments) : Self.composed(q, k, v, segments: segments)
        }
    }

    /// Runs `attention(q, k, v, fused)` fused and composed, backward from `seed`, and expects
    /// the outputs and the three input gradients to agree within 1e-7 + 1e-3 |composed|
    /// everywhere (NaN fails).
    static func expectSameOutputsAndGradients(
        _ q: Tensor, _ k: Tensor, _ v: Tensor, seed: Tensor, _ attention: (Tensor, Tensor, Tensor, Bool) -> Tensor
    ) {
        func run(fused: Bool) -> [Float] {
            q.zeroGrad(); k.zeroGrad(); v.zeroGrad()
            let o = attention(q, k, v, fused)
            o.backward(seed: seed)
            return o.values + q.grad!.values + k.grad!.values + v.grad!.values
        }
        let (ratio, at) = closeness(run(fused: true), run(fused: false).map(Double.init), atol: 1e-7, rtol: 1e-3)
        #expect(ratio <= 1, "worst at \(at): \(ratio) of the tolerance")
    }

    /// Shapes off the kernel's tiles: head dims with a scalar remainder (5, 12), query
    /// counts not a multiple of the 6-row tile, key counts not a multiple of 8, fewer
    /// queries than keys (the last T of S), and no causal mask.
    @Test(
        "fused attention equals composed ops on ragged shapes",
        arguments: [
            (1, 13, 13, 2, 1, 5, true), (2, 11, 11, 4, 2, 12, true), (1, 7, 20, 2, 2, 12, true),
            (2, 9, 9, 2, 1, 8, false), (1, 5, 19, 3, 1, 16, false), (1, 1, 23, 4, 2, 12, true), (1, 20, 27, 2, 1, 8, true),
        ])
    func fusedEqualsComposedOnRaggedShapes(shape: (Int, Int, Int, Int, Int, Int, Bool)) {
        let (b, t, s, h, g, d, causal) = shape
        var rng = RNG(seed: UInt64(t * 100 + s))
        let q = Tensor.randn([b, t, h, d], rng: &rng, requiresGrad: true)
        let k = Tensor.randn([b, s, g, d], rng: &rng, requiresGrad: true)
        let v = Tensor.randn([b, s, g, d], rng: &rng, requiresGrad: true)
        let seed = Tensor.randn([b, t, h, d], rng: &rng)
        Self.expectSameOutputsAndGradients(q, k, v, seed: seed) { q, k, v, fused in
            fused
                ? Tensor.attention(q: q, k: k, v: v, causal: causal)
                : Self.composed(q, k, v, segments: nil, causal: causal)
        }
    }

    /// The backward in blocks of 6, 12 and 18 query rows (a scratch budget for 1-3 tiles)
    /// equals the one-block backward, with causal and segment masks and T < S.
    @Test("backward in row blocks equals one block", arguments: [6, 12, 18])
    func backwardInRowBlocksEqualsOneBlock(blockRows: Int) {
        var rng = RNG(seed: UInt64(blockRows))
        let (b, t, s, h, g, d) = (2, 29, 35, 4, 2, 12)
        let q = Tensor.randn([b, t, h, d], rng: &rng, requiresGrad: true)
        let k = Tensor.randn([b, s, g, d], rng: &rng, requiresGrad: true)
        let v = Tensor.randn([b, s, g, d], rng: &rng, requiresGrad: true)
        let seed = Tensor.randn([b, t, h, d], rng: &rng)
        let segments = (0..<(b * s)).map { Int32(($0 % s) / 11) }
        func run(scratchBytes: Int) -> [Float] {
            q.zeroGrad(); k.zeroGrad(); v.zeroGrad()
            let o = Tensor.attention(
                q: q, k: k, v: v, causal: true, scale: nil, segments: segments, timeMajorKV: false, scratchBytes: scratchBytes)
            o.backward(seed: seed)
            return o.values + q.grad!.values + k.grad!.values + v.grad!.values
        }
        let sp = 40  // S rounded up to 8
        let blocked = run(scratchBytes: blockRows * 8 * sp), whole = run(scratchBytes: 1 << 30)
        #expect(closeness(blocked, whole.map(Double.init), atol: 1e-6, rtol: 1e-5).ratio <= 1)
    }

    /// Keys and values laid out time-major ([S, B, G, D], a KV cache) give the same output.
    @Test func timeMajorKeysEqualBatchMajor() {
        var rng = RNG(seed: 17)
        let (b, t, s, h, g, d) = (3, 4, 21, 4, 2, 12)
        let q = Tensor.randn([b, t, h, d], rng: &rng)
        let k = Tensor.randn([b, s, g, d], rng: &rng)
        let v = Tensor.randn([b, s, g, d], rng: &rng)
        let want = GradMode.withoutGrad { Tensor.attention(q: q, k: k, v: v) }
        let got = GradMode.withoutGrad {
            Tensor.attention(
                q: q, k: k.permuted([1, 0, 2, 3]).copy(), v: v.permuted([1, 0, 2, 3]).copy(), timeMajorKV: true)
        }
        #expect(zip(got.values, want.values).allSatisfy { abs($0 - $1) < 1e-6 })
    }

    @Test func groupedHeadsEqualRepeatedKeyValueHeads() {
        var rng = RNG(seed: 9)
        let (b, t, h, g, d) = (1, 5, 4, 2, 4)
        let q = Tensor.randn([b, t, h, d], rng: &rng)
        let k = Tensor.randn([b, t, g, d], rng: &rng)
        let v = Tensor.randn([b, t, g, d], rng: &rng)
        // Materialise repeat_kv: kv head j serves query heads 2j and 2j+1.
        func repeated(_ x: Tensor) -> Tensor {
            Tensor.concat(x.split(axis: 2, sizes: [1, 1]).flatMap { [$0, $0] }, axis: 2)
        }
        let gqa = Tensor.attention(q: q, k: k, v: v)
        let mha = Tensor.attention(q: q, k: repeated(k), v: repeated(v))
        #expect(zip(gqa.values, mha.values).allSatisfy { abs($0 - $1) < 1e-6 })
    }

    @Test func resultsDoNotDependOnThreadCount() {
        var rng = RNG(seed: 4)
        let q = Tensor.randn([3, 6, 4, 8], rng: &rng, requiresGrad: true)
        let k = Tensor.randn([3, 6, 2, 8], rng: &rng, requiresGrad: true)
        let v = Tensor.randn([3, 6, 2, 8], rng: &rng, requiresGrad: true)
        func run(_ threads: Int) -> [Float] {
            let before = Threads.count
            Threads.set(threads)
            defer { Threads.set(before) }
            q.zeroGrad(); k.zeroGrad(); v.zeroGrad()
            let o = Tensor.attention(q: q, k: k, v: v)
            (o * o).sum().backward()
            return o.values + q.grad!.values + k.grad!.values + v.grad!.values
        }
        #expect(run(1) == run(2))
    }
}

@Suite struct RandomTests {
    @Test func sameSeedSameStreamDifferentSeedDifferentStream() {
        var a = RNG(seed: 42), b = RNG(seed: 42), c = RNG(seed: 43)
        let xa = (0..<8).map { _ in a.next() }, xb = (0..<8).map { _ in b.next() }, xc = (0..<8).map { _ in c.next() }
        #expect(xa == xb)
        #expect(xa != xc)
    }

    @Test func normalDrawsHaveUnitMoments() {
        var rng = RNG(seed: 1)
        let n = 200_000
        let xs = (0..<n).map { _ in rng.normal() }
        let mean = xs.reduce(0, +) / Double(n)
        let variance = xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n)
        // Standard errors: 1/sqrt(n) = 0.0022 for the mean, sqrt(2/n) = 0.0032 for the variance.
        #expect(abs(mean) < 0.01)
        #expect(abs(variance - 1) < 0.015)
    }

    @Test func dropoutIsSeededAndUnbiased() {
        let x = Tensor.full([10_000], 1, requiresGrad: true)
        var r1 = RNG(seed: 8), r2 = RNG(seed: 8)
        let a = x.dropout(0.25, rng: &r1), b = x.dropout(0.25, rng: &r2)
        #expect(a.values == b.values)
        let kept = a.values.filter { $0 != 0 }
        #expect(kept.allSatisfy { abs($0 - 1 / 0.75) < 1e-6 })
        // Kept fraction ~ Binomial(10000, 0.75): sd 0.0043.
        #expect(abs(Double(kept.count) / 10_000 - 0.75) < 0.02)
        a.sum().backward()
        #expect(zip(x.grad!.values, a.values).allSatisfy { $0 == $1 })
    }
}

@Suite struct BLASTests {
    @Test func kernelChoiceFollowsCPUFeatures() {
        let avx512: Set = ["avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq"]
        #expect(BLAS.preferredCore(vendor: "GenuineIntel", flags: avx512) == "SkylakeX")
        #expect(BLAS.preferredCore(vendor: "GenuineIntel", flags: avx512.union(["avx512_bf16"])) == "Cooperlake")
        #expect(BLAS.preferredCore(vendor: "AuthenticAMD", flags: avx512) == "SkylakeX")
        #expect(BLAS.preferredCore(vendor: "GenuineIntel", flags: ["avx", "avx2", "fma"]) == "Haswell")
        #expect(BLAS.preferredCore(vendor: "AuthenticAMD", flags: ["avx", "avx2", "fma"]) == "Zen")
        #expect(BLAS.preferredCore(vendor: "GenuineIntel", flags: ["sse3", "avx"]) == "SandyBridge")
        #expect(BLAS.preferredCore(vendor: "GenuineIntel", flags: ["sse3"]) == nil)
    }

    /// The process (this test runner included) runs the kernel its CPU deserves, never
    /// Prescott on a CPU with AVX.
    @Test func runtimeIsNotPrescottOnAnAVXMachine() throws {
        let cpu = try #require(CPUInfo.current)
        let runtime = BLAS.runtime
        if runtime.source != .user, let want = BLAS.preferredCore(vendor: cpu.vendor, flags: cpu.flags) {
            #expect(runtime.core.lowercased() == want.lowercased(), "\(runtime)")
        }
        if cpu.flags.contains("avx") { #expect(runtime.core != "Prescott") }
    }

    @Test func sgemmHonoursLeadingDimensionsAndTransposes() {
        // A 2x2 block inside a 2x3 row-major matrix, times its own transpose.
        let a: [Float] = [1, 2, 9, 3, 4, 9]
        var c = [Float](repeating: 0, count: 4)
        a.withUnsafeBufferPointer { pa in
            c.withUnsafeMutableBufferPointer { pc in
                BLAS.sgemm(
                    transA: false, transB: true, m: 2, n: 2, k: 2, a: pa.baseAddress!, lda: 3, b: pa.baseAddress!, ldb: 3,
                    c: pc.baseAddress!, ldc: 2)
            }
        }
        #expect(c == [5, 11, 11, 25])
    }
}

@Suite struct VectorMathTests {
    /// Against libm's expf (correctly rounded within 1 ulp) over the whole useful range,
    /// including the clamps and the special values.
    @Test func fastExpIsWithinTwoUlpOfLibm() {
        var x: Float = -87
        var worst: Float = 0
        while x < 88.5 {
            let want = Foundation.exp(x), got = fastExp(x)
            worst = max(worst, abs(got - want) / want.ulp)
            x += 0.0137
        }
        #expect(worst <= 2, "worst error \(worst) ulp")
        #expect(fastExp(0) == 1)
        #expect(fastExp(-.infinity) == 0)
        #expect(fastExp(-100) == 0)
        #expect(fastExp(.infinity) == .infinity)
        #expect(fastExp(89) == .infinity)
        #expect(fastExp(.nan).isNaN)
    }

    @Test func nonFiniteLogitsGiveANonFiniteLoss() {
        let logits = Tensor(shape: [2, 9], values: [1, 2, .nan, 4, 5, 6, 7, 8, 9] + Array(repeating: 0, count: 9))
        #expect(!Tensor.crossEntropy(logits, targets: [0, 1]).item.isFinite)
    }
}

@Suite struct FusedProjectionTests {
    /// headSlice of a fused [B, T, Htot, D] tensor equals slicing the heads and rotating
    /// them, forward and backward.
    @Test("headSlice equals slice then rope", arguments: [true, false])
    func headSliceEqualsSliceThenRope(rotate: Bool) {
        var rng = RNG(seed: 31)
        let x = Tensor.randn([2, 5, 7, 8], rng: &rng, requiresGrad: true)
        let seed = Tensor.randn([2, 5, 3, 8], rng: &rng)
        let table = RopeTable(positions: (0..<5).map { Int32($0 + 2) }, headDim: 8, theta: 10000)
        let fused = Tensor.headSlice(x, heads: 2..<5, rope: rotate ? table : nil)
        fused.backward(seed: seed)
        let gFused = x.grad!.values
        x.zeroGrad()
        let sliced = x.slice(axis: 2, 2..<5)
        let reference = rotate ? Tensor.rope(sliced, table: table) : sliced
        reference.backward(seed: seed)
        #expect(maxAbs(fused.values, reference.values) < 1e-6)
        #expect(maxAbs(gFused, x.grad!.values) < 1e-6)
    }

    @Test func swigluOfFusedGateUpEqualsSeparate() {
        var rng = RNG(seed: 32)
        let gu = Tensor.randn([3, 4, 2 * 13], rng: &rng, requiresGrad: true)
        let seed = Tensor.randn([3, 4, 13], rng: &rng)
        let fused = Tensor.swiglu(gateUp: gu)
        fused.backward(seed: seed)
        let gFused = gu.grad!.values
        gu.zeroGrad()
        let parts = gu.split(axis: 2, sizes: [13, 13])
        let separate = Tensor.swiglu(gate: parts[0], up: parts[1])
        separate.backward(seed: seed)
        #expect(maxAbs(fused.values, separate.values) < 1e-6)
        #expect(maxAbs(gFused, gu.grad!.values) < 1e-6)
    }
}

func maxAbs(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { abs($0 - $1) }.max() ?? 0 }
