// Training products over a frozen bf16 weight (LoRA's base at half the bytes) against sgemm on
// the same bf16 operands widened to f32: the weight decoded, the activations (x, or dy for the
// input gradient) rounded to bf16 and widened. Products of two bf16 values are exact in f32,
// so the two may differ only by float summation order. Both paths run: the AVX-512 BF16
// kernel where the CPU has it, and the sgemm fallback (the AVX2 level) everywhere.

import CKernels
import Core
import Foundation
import Testing

@Suite struct BF16ProductTests {
    /// The levels to run: the fallback, and the bf16 kernel when this CPU has it.
    static let levels: [KernelLevel] = {
        let kernel = KernelLevel.with(.avx512vnni) { dk_bf16_gemm_available() != 0 }
        return kernel ? [.avx2, .avx512vnni] : [.avx2]
    }()

    /// Values rounded to bf16 and widened back, by the scalar path (the reference rounding).
    func rounded(_ v: [Float]) -> [Float] {
        KernelLevel.with(.scalar) {
            var half = [UInt16](repeating: 0, count: v.count)
            var out = [Float](repeating: 0, count: v.count)
            dk_bf16_from_f32(v, v.count, &half)
            dk_bf16_to_f32(half, v.count, &out)
            return out
        }
    }

    func relative(_ a: [Float], _ b: [Float]) -> Float {
        let diff = zip(a, b).map { abs($0 - $1) }.max() ?? 0
        return diff / max(b.map(abs).max() ?? 1, 1e-12)
    }

    @Test func roundingIsNearestEvenWithTheCPUsSpecialCases() {
        func bits(_ f: Float, _ level: KernelLevel) -> UInt16 {
            KernelLevel.with(level) {
                var h: UInt16 = 0
                dk_bf16_from_f32([f], 1, &h)
                return h
            }
        }
        let cases: [(Float, UInt16)] = [
            (1.00390625, 0x3F80),  // a tie: to even (down)
            (1.01171875, 0x3F82),  // a tie: to even (up)
            (Float(bitPattern: 0x3F80_8001), 0x3F81),  // above the tie
            (Float(bitPattern: 0x0001_16C2), 0x0000), (Float(bitPattern: 0x8001_16C2), 0x8000),  // denormals: signed zeros
            (Float(bitPattern: 0x0080_0000), 0x0080),  // the smallest normal stays
            (3.4e38, 0x7F80),  // rounds up to infinity
            (-0.0, 0x8000), (.infinity, 0x7F80),
            (Float(bitPattern: 0x7F80_0001), 0x7FC0),  // a signalling NaN, quieted
        ]
        for level in Self.levels + [.scalar] {
            for (f, want) in cases {
                #expect(bits(f, level) == want, "\(f.bitPattern) at \(level)")
            }
        }
        // The vector path and the scalar one agree bit for bit, across the 32-value steps and a tail.
        var rng = RNG(seed: 40)
        let v = (0..<1000).map { _ in Float(rng.normal()) * Float(1 << (rng.next() % 40)) / Float(1 << 20) }
        let byLevel = (Self.levels + [.scalar]).map { level in
            KernelLevel.with(level) {
                var out = [UInt16](repeating: 0, count: v.count)
                dk_bf16_from_f32(v, v.count, &out)
                return out
            }
        }
        #expect(byLevel.allSatisfy { $0 == byLevel[0] })
    }

    /// y = x Wᵀ and dx = beta dx + dy W for shapes with every kind of edge: a single row,
    /// rows past the kernel's 12, columns past its panels of 32, an inner dimension past its
    /// blocks of 160 pairs, strided y and dy, and an input gradient whose W is packed in
    /// three blocks of rows (K = 4096: 256 rows a block, the last short).
    @Test("products equal sgemm on the rounded operands", arguments: levels)
    func productsMatchRoundedSgemm(level: KernelLevel) {
        let shapes: [(m: Int, r: Int, k: Int)] = [(1, 2, 2), (5, 30, 64), (13, 70, 130), (37, 96, 400), (7, 600, 4096)]
        var rng = RNG(seed: 41)
        for (m, r, k) in shapes {
            let w = Tensor.randn([r, k], std: 0.05, rng: &rng)
            let packed = PackedMatrix(w, format: .bf16)
            let decoded = packed.decoded()
            #expect(relative(decoded.values, w.values) > 0, "bf16 must change the weight, or the test proves nothing")
            let x = Tensor.randn([m, k], rng: &rng)
            let (ldy, lddy) = (r + 3, r + 5)
            let dy = (0..<(m * lddy)).map { _ in Float(rng.normal()) }
            let start = (0..<(m * k)).map { _ in Float(rng.normal()) }

            // References: sgemm on the widened operands.
            let xr = rounded(x.values), dyr = rounded(dy)
            var yRef = [Float](repeating: 0, count: m * ldy)
            BLAS.sgemm(transA: false, transB: true, m: m, n: r, k: k, a: xr, lda: k, b: decoded.data, ldb: k, c: &yRef, ldc: ldy)
            var dxRef = start
            BLAS.sgemm(transA: false, transB: false, m: m, n: k, k: r, a: dyr, lda: lddy, b: decoded.data, ldb: k, beta: 0.5, c: &dxRef, ldc: k)

            let (y, dx) = KernelLevel.with(level) { () -> ([Float], [Float]) in
                var y = [Float](repeating: .nan, count: m * ldy)
                var dx = start
                let weight = ProductWeight.packed(packed)
                x.values.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer { weight.forward(xp.baseAddress!, m: m, into: $0.baseAddress!, ldy: ldy) }
                }
                dy.withUnsafeBufferPointer { dp in
                    dx.withUnsafeMutableBufferPointer {
                        weight.backward(dp.baseAddress!, m: m, lddy: lddy, into: $0.baseAddress!, beta: 0.5)
                    }
                }
                return (y, dx)
            }
            let columns = { (v: [Float]) in (0..<m).flatMap { i in v[(i * ldy)..<(i * ldy + r)] } }
            #expect(relative(columns(y), columns(yRef)) < 1e-5, "y \(m)x\(r)x\(k) at \(level)")
            #expect((0..<m).allSatisfy { i in y[(i * ldy + r)..<((i + 1) * ldy)].allSatisfy { $0.isNaN } }, "y's padding is not written")
            #expect(relative(dx, dxRef) < 1e-5, "dx \(m)x\(r)x\(k) at \(level)")
        }
    }

    /// Both threads' halves of a product and one thread's whole give the same numbers, and
    /// so do the kernel and the fallback (to summation order).
    @Test func splitAndLevelsAgree() {
        var rng = RNG(seed: 42)
        let (m, r, k) = (64, 200, 256)
        let packed = PackedMatrix(Tensor.randn([r, k], std: 0.05, rng: &rng), format: .bf16)
        let x = Tensor.randn([m, k], rng: &rng)
        func forward(_ level: KernelLevel, split: Bool) -> [Float] {
            KernelLevel.with(level) {
                var y = [Float](repeating: 0, count: m * r)
                x.values.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer {
                        ProductWeight.packed(packed).forward(xp.baseAddress!, m: m, into: $0.baseAddress!, ldy: r, split: split)
                    }
                }
                return y
            }
        }
        let best = Self.levels.last!
        #expect(forward(best, split: true) == forward(best, split: false), "each output sums in one order")
        #expect(relative(forward(.avx2, split: true), forward(best, split: true)) < 1e-5)
    }

    /// The lm head fused with the loss over a bf16 head: within bf16's rounding of the hidden
    /// states and the logits' gradient of f32 on the decoded head.
    @Test("lm head and loss are f32's on the decoded head within bf16 rounding", arguments: levels)
    func headWithinRounding(level: KernelLevel) {
        var rng = RNG(seed: 43)
        let (n, c, v) = (10, 256, 700)
        let packed = PackedMatrix(Tensor.randn([v, c], std: 0.05, rng: &rng), format: .bf16)
        let decoded = packed.decoded()
        let targets = (0..<n).map { _ in Int32(rng.next() % UInt64(v)) }
        func run(_ loss: (Tensor) -> Tensor) -> (Float, [Float]) {
            var local = RNG(seed: 7)
            let h = Tensor.randn([2, 5, c], rng: &local, requiresGrad: true)
            let l = loss(h)
            l.backward()
            return (l.item, h.grad!.values)
        }
        let b = KernelLevel.with(level) { run { Tensor.linearCrossEntropy($0, packed, targets: targets, rowsPerChunk: 4) } }
        let f = run { Tensor.linearCrossEntropy($0, decoded, targets: targets) }
        #expect(abs(b.0 - f.0) < 2e-3 * abs(f.0), "loss \(b.0) vs \(f.0)")
        #expect(relative(b.1, f.1) < 2e-2, "dh")
        #expect(relative(b.1, f.1) > 0, "the activations are rounded, or the bf16 path did not run")
    }

    /// The decode engine's bf16 products round their activations to bf16 as the training ones
    /// do: the f32 product on the decoded matrix and the rounded inputs, to summation order, at
    /// each level and batch (the matrix-vector kernel, the f32 kernel on widened rows from 8
    /// inputs, the bf16 kernel from 16, sgemm from 64 where the CPU lacks it). A copy placed in
    /// an arena computes the same.
    @Test("decode products are f32 on the decoded matrix and the rounded inputs", arguments: levels + [.scalar])
    func decodeProductsMatchDecoded(level: KernelLevel) {
        var rng = RNG(seed: 44)
        let (r, k) = (40, 100)
        let packed = PackedMatrix(Tensor.randn([r, k], std: 0.05, rng: &rng), format: .bf16)
        let decoded = PackedMatrix(packed.decoded(), format: .f32)
        let arena = HugePageArena()
        let placed = PackedMatrix(packed.decoded(), format: .bf16, interleave: true, in: arena)  // rows, in the arena
        #expect(!placed.interleaved)
        for n in [1, 3, 16, 70] {
            let x = (0..<(n * k)).map { _ in Float(rng.normal()) }
            func product(_ p: PackedMatrix, _ input: [Float]) -> [Float] {
                KernelLevel.with(level) {
                    var y = [Float](repeating: 0, count: n * r)
                    y.withUnsafeMutableBufferPointer { yp in
                        PackedMatrix.multiply(input, n: n, [PackedProduct(p, into: yp.baseAddress!)], scratch: ProductScratch())
                    }
                    return y
                }
            }
            let reference = product(decoded, rounded(x))
            #expect(relative(product(packed, x), reference) < 1e-5, "n \(n)")
            #expect(relative(product(packed, x), product(decoded, x)) > 0, "n \(n): the inputs are rounded")
            #expect(product(placed, x) == product(packed, x), "the arena's copy is the same matrix")
        }
        #expect(packed.bytes == r * k * 2)
    }
}
