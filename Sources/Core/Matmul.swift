// Matrix products, straight to sgemm: transposes are BLAS flags, leading axes of an
// activation fold into the row count, nothing is copied. Gradients accumulate into the
// gradient buffers with beta = 1.

import Foundation

extension Tensor {
    /// op(a) @ op(b).
    ///
    /// - a [M, K] (or [K, M] with `transposeA`), b [K, N] (or [N, K] with `transposeB`) -> [M, N]
    /// - a [..., M, K] with 2-D b: leading axes fold into M (a linear layer) -> [..., N]
    ///   (not with `transposeA`)
    /// - a [Bt, M, K], b [Bt, K, N]: one product per batch entry -> [Bt, M, N]
    public static func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false) -> Tensor {
        precondition(a.rank >= 2 && b.rank >= 2, "matmul needs rank >= 2 operands, got \(a.shape) and \(b.shape)")
        if b.rank == 2 && (a.rank == 2 || !transposeA) {
            let k = transposeA ? a.shape[0] : a.shape[a.rank - 1]
            let m = a.count / Swift.max(k, 1)
            let (kb, n) = transposeB ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
            precondition(k == kb, "matmul inner dimensions differ: \(a.shape)\(transposeA ? "ᵀ" : "") x \(b.shape)\(transposeB ? "ᵀ" : "")")
            let outShape = a.rank == 2 ? [m, n] : Array(a.shape.dropLast()) + [n]
            return product(a, b, outShape, batch: 1, m: m, n: n, k: k, transposeA, transposeB)
        }
        precondition(
            a.rank == 3 && b.rank == 3 && a.shape[0] == b.shape[0],
            "batched matmul needs [Bt, M, K] x [Bt, K, N], got \(a.shape) and \(b.shape)")
        let (m, k) = transposeA ? (a.shape[2], a.shape[1]) : (a.shape[1], a.shape[2])
        let (kb, n) = transposeB ? (b.shape[2], b.shape[1]) : (b.shape[1], b.shape[2])
        precondition(k == kb, "batched matmul inner dimensions differ: \(a.shape) x \(b.shape)")
        return product(a, b, [a.shape[0], m, n], batch: a.shape[0], m: m, n: n, k: k, transposeA, transposeB)
    }

    /// x @ wᵀ with w stored [out, in] as in Hugging Face: [..., in] -> [..., out].
    public static func linear(_ x: Tensor, _ weight: Tensor) -> Tensor { matmul(x, weight, transposeB: true) }

    private static func product(
        _ a: Tensor, _ b: Tensor, _ outShape: [Int], batch: Int, m: Int, n: Int, k: Int, _ tA: Bool, _ tB: Bool
    ) -> Tensor {
        let out = Tensor.empty(outShape)
        let lda = tA ? m : k, ldb = tB ? k : n
        let sa = m * k, sb = b.rank == 2 ? 0 : k * n, sc = m * n
        for i in 0..<batch {
            BLAS.sgemm(
                transA: tA, transB: tB, m: m, n: n, k: k, a: a.data + i * sa, lda: lda, b: b.data + i * sb, ldb: ldb,
                c: out.data + i * sc, ldc: n)
        }
        record(out, [a, b]) { g in
            for i in 0..<batch {
                let gc = g + i * sc
                if a.requiresGrad {
                    let ga = a.gradBuffer() + i * sa
                    if !tA {  // dA[m, k] += dC op(B)ᵀ
                        BLAS.sgemm(
                            transA: false, transB: !tB, m: m, n: k, k: n, a: gc, lda: n, b: b.data + i * sb, ldb: ldb,
                            beta: 1, c: ga, ldc: k)
                    } else {  // dA[k, m] += op(B) dCᵀ
                        BLAS.sgemm(
                            transA: tB, transB: true, m: k, n: m, k: n, a: b.data + i * sb, lda: ldb, b: gc, ldb: n,
                            beta: 1, c: ga, ldc: m)
                    }
                }
                if b.requiresGrad {
                    let gb = b.gradBuffer() + i * sb
                    if !tB {  // dB[k, n] += op(A)ᵀ dC
                        BLAS.sgemm(
                            transA: !tA, transB: false, m: k, n: n, k: m, a: a.data + i * sa, lda: lda, b: gc, ldb: n,
                            beta: 1, c: gb, ldc: n)
                    } else {  // dB[n, k] += dCᵀ op(A)
                        BLAS.sgemm(
                            transA: true, transB: tA, m: n, n: k, k: m, a: gc, lda: n, b: a.data + i * sa, ldb: lda,
                            beta: 1, c: gb, ldc: k)
                    }
                }
            }
        }
        return out
    }
}
