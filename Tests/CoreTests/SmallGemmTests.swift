// The register-blocked products under the fused attention, against a Double triple loop,
// and the softmax exp against the general one.

import Core
import Foundation
import Testing

@testable import Core

@Suite struct SmallGemmTests {
    /// C = alpha·A·B (+ C) for shapes that exercise every tile and tail: rows in tiles of 6
    /// with 1-5 left over, columns in tiles of 16 and 8 with 1-7 scalar columns left over,
    /// A row-major with padded rows or read transposed in place.
    @Test(
        "smallGemm equals a Double triple loop",
        arguments: [
            (1, 1, 1), (6, 16, 32), (13, 33, 7), (5, 8, 64), (7, 24, 3), (12, 5, 9), (1, 40, 130), (25, 19, 0),
        ])
    func matchesReference(shape: (Int, Int, Int)) {
        let (m, n, k) = shape
        var rng = RNG(seed: UInt64(m * 10_000 + n * 100 + k))
        let ldb = n + 3, ldc = n + 5
        let b = Tensor.randn([max(k, 1) * ldb], rng: &rng)
        for transposed in [false, true] {
            for accumulate in [false, true] {
                // A as stored: [m, k + 2] row-major, or [k, m + 1] read transposed.
                let (aRow, aCol) = transposed ? (1, m + 1) : (k + 2, 1)
                let a = Tensor.randn([max(m, 1) * (k + 2) + max(k, 1) * (m + 1)], rng: &rng)
                let c0 = Tensor.randn([m * ldc], rng: &rng)
                let c = c0.copy()
                let alpha: Float = 0.75
                smallGemm(
                    m: m, n: n, k: k, alpha: alpha, a: a.data, aRow: aRow, aCol: aCol, b: b.data, ldb: ldb, c: c.data,
                    ldc: ldc, accumulate: accumulate)
                var worst = 0.0
                for i in 0..<m {
                    for j in 0..<n {
                        var sum = 0.0
                        for p in 0..<k { sum += Double(a.data[i * aRow + p * aCol]) * Double(b.data[p * ldb + j]) }
                        let want = Double(alpha) * sum + (accumulate ? Double(c0.data[i * ldc + j]) : 0)
                        worst = max(worst, abs(Double(c.data[i * ldc + j]) - want) / (1 + abs(want)))
                    }
                    // Padding between rows of C is never written.
                    for j in n..<ldc { #expect(c.data[i * ldc + j] == c0.data[i * ldc + j]) }
                }
                #expect(worst < 1e-5, "m=\(m) n=\(n) k=\(k) transposed=\(transposed) accumulate=\(accumulate): \(worst)")
            }
        }
    }

    @Test func transposeBlockWritesColumns() {
        let (rows, cols, lds, ldd) = (19, 5, 7, 24)
        let src = Tensor(shape: [rows * lds], values: (0..<(rows * lds)).map(Float.init))
        let dst = Tensor.zeros([cols * ldd])
        transposeBlock(src.data, lds: lds, rows: rows, cols: cols, into: dst.data, ldd: ldd)
        for j in 0..<cols {
            for i in 0..<ldd { #expect(dst.data[j * ldd + i] == (i < rows ? Float(i * lds + j) : 0)) }
        }
    }

    /// The softmax exp is the general one on x <= 0, bit for bit, including its limits.
    @Test func expNonPositiveEqualsExpPoly() {
        var x: Float = -100
        var lanes: [Float] = []
        while x <= 0 {
            lanes.append(x)
            x += 0.00917
        }
        lanes += [0, -0.0, -87.33654, -87.3365, -.infinity, -.greatestFiniteMagnitude, -Float.leastNonzeroMagnitude]
        while lanes.count % 8 != 0 { lanes.append(-1) }
        for i in stride(from: 0, to: lanes.count, by: 8) {
            let v = SIMD8<Float>(lanes[i..<(i + 8)])
            #expect(expNonPositive(v) == expPoly(v), "at \(v)")
        }
        #expect(expNonPositive(SIMD8(repeating: -.infinity)) == SIMD8(repeating: 0))
        #expect(expNonPositive(SIMD8(repeating: .nan))[0].isNaN)
    }
}
