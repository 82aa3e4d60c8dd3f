// A linear layer with low-rank updates on blocks of its output columns (LoRA):
//   y = x Wᵀ,  y[:, cols_i] += s_i · (u_i A_iᵀ) B_iᵀ
// with u_i the adapter's input (x itself, or x after dropout), A_i [r, in], B_i [cols, r].
//
// Fused, with a hand-written backward, because composing it from linear, scale and add
// costs three extra passes over [N, out] and a gradient buffer each way, and because a
// fused q/k/v (or gate/up) product with adapters on some of its blocks then still packs
// x for sgemm once. Nothing is computed for a frozen W (no dW product) or an input that
// needs no gradient (no dX product). Backward, with dY [N, out] and z_i = u_i A_iᵀ kept
// from the forward:
//   dB_i += s_i dY[:, cols_i]ᵀ z_i,   dZ_i = s_i dY[:, cols_i] B_i,
//   dA_i += dZ_iᵀ u_i,                du_i += dZ_i A_i,
//   dx += dY W,                       dW += dYᵀ x.

import Foundation

/// A low-rank update s · (input Aᵀ) Bᵀ added to output columns `columns` of a linear layer.
public struct LowRankUpdate {
    /// Output features the update adds to; `b` has one row per column.
    public var columns: Range<Int>
    /// The update's input [..., in], the layer's input or a dropout of it.
    public var input: Tensor
    public var a: Tensor  // [r, in]
    public var b: Tensor  // [cols, r]
    public var scale: Float

    public init(columns: Range<Int>, input: Tensor, a: Tensor, b: Tensor, scale: Float) {
        self.columns = columns
        self.input = input
        self.a = a
        self.b = b
        self.scale = scale
    }
}

extension Tensor {
    /// x Wᵀ plus the low-rank `updates` on their column blocks: x [..., in], weight
    /// [out, in] -> [..., out]. Without updates this is exactly `linear(x, weight)`.
    public static func linear(_ x: Tensor, _ weight: Tensor, updates: [LowRankUpdate]) -> Tensor {
        if updates.isEmpty { return linear(x, weight) }
        precondition(weight.rank == 2 && x.rank >= 1, "linear weight must be [out, in], got \(weight.shape)")
        return linear(x, .dense(weight), updates: updates)
    }

    /// The product over a dense or packed weight (PackedProducts.swift), with its updates.
    static func linear(_ x: Tensor, _ weight: ProductWeight, updates: [LowRankUpdate]) -> Tensor {
        let (out, inF) = (weight.rows, weight.columns)
        precondition(x.shape.last == inF, "linear input \(x.shape) does not end in \(inF) features of weight [\(out), \(inF)]")
        let n = x.count / Swift.max(inF, 1)
        for u in updates {
            let r = u.a.shape[0]
            precondition(
                u.columns.lowerBound >= 0 && u.columns.upperBound <= out && u.a.shape == [r, inF]
                    && u.b.shape == [u.columns.count, r] && u.input.shape == x.shape,
                "low-rank update on columns \(u.columns) of [\(out), \(inF)]: A \(u.a.shape), B \(u.b.shape), input \(u.input.shape) for x \(x.shape)"
            )
        }
        let y = Tensor.empty(Array(x.shape.dropLast()) + [out])  // [..., out]
        weight.forward(x.data, m: n, into: y.data, ldy: out)
        // z_i = u_i A_iᵀ [N, r], kept for dB.
        let z = updates.map { u -> Tensor in
            let r = u.a.shape[0]
            let z = Tensor.empty([n, r])
            BLAS.sgemm(transA: false, transB: true, m: n, n: r, k: inF, a: u.input.data, lda: inF, b: u.a.data, ldb: inF, c: z.data, ldc: r)
            // y[:, cols] += s z Bᵀ
            BLAS.sgemm(
                transA: false, transB: true, m: n, n: u.columns.count, k: r, alpha: u.scale, a: z.data, lda: r, b: u.b.data,
                ldb: r, beta: 1, c: y.data + u.columns.lowerBound, ldc: out)
            return z
        }
        let inputs = [x] + weight.inputs + updates.flatMap { [$0.input, $0.a, $0.b] }
        record(y, inputs) { dy in
            for (u, z) in zip(updates, z) {
                let r = u.a.shape[0], cols = u.columns.count, dyc = dy + u.columns.lowerBound
                if u.b.requiresGrad {  // dB += s dY[:, cols]ᵀ z  // [cols, r]
                    BLAS.sgemm(
                        transA: true, transB: false, m: cols, n: r, k: n, alpha: u.scale, a: dyc, lda: out, b: z.data, ldb: r,
                        beta: 1, c: u.b.gradBuffer(), ldc: r)
                }
                guard u.a.requiresGrad || u.input.requiresGrad else { continue }
                let dz = Tensor.empty([n, r])  // s dY[:, cols] B  // [N, r]
                BLAS.sgemm(
                    transA: false, transB: false, m: n, n: r, k: cols, alpha: u.scale, a: dyc, lda: out, b: u.b.data, ldb: r,
                    c: dz.data, ldc: r)
                if u.a.requiresGrad {  // dA += dZᵀ u  // [r, in]
                    BLAS.sgemm(
                        transA: true, transB: false, m: r, n: inF, k: n, a: dz.data, lda: r, b: u.input.data, ldb: inF, beta: 1,
                        c: u.a.gradBuffer(), ldc: inF)
                }
                if u.input.requiresGrad {  // du += dZ A  // [N, in]
                    BLAS.sgemm(
                        transA: false, transB: false, m: n, n: inF, k: r, a: dz.data, lda: r, b: u.a.data, ldb: inF, beta: 1,
                        c: u.input.gradBuffer(), ldc: inF)
                }
            }
            if x.requiresGrad {  // dx += dY W  // [N, in]
                weight.backward(dy, m: n, lddy: out, into: x.gradBuffer(), beta: 1)
            }
            if let weight = weight.trainable {  // dW += dYᵀ x  // [out, in]
                BLAS.sgemm(
                    transA: true, transB: false, m: out, n: inF, k: n, a: dy, lda: out, b: x.data, ldb: inF, beta: 1,
                    c: weight.gradBuffer(), ldc: inF)
            }
        }
        return y
    }
}
