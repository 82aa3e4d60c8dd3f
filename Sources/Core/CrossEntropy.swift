// Fused cross-entropy and per-token log-probabilities: log-softmax, the value and its
// gradient without a [N, V] probability tensor. The forward keeps one log-sum-exp per row;
// the backward recomputes the softmax row by row from the logits (which the model keeps
// anyway). LinearCrossEntropy.swift fuses both with the lm head as well.

import Foundation

extension Tensor {
    /// Mean token cross-entropy of `logits` [..., V] against `targets` (one per row).
    ///
    /// loss = Σ_i w_i * (lse_i - x[i, t_i]) / Σ_i w_i over rows whose target is not
    /// `ignoreIndex`; w_i = 1 without `weights`. With no counted row the loss is 0 (and so is
    /// the gradient), not NaN. Backward: dx[i, j] = g * w_i / W * (softmax_ij - [j == t_i]).
    public static func crossEntropy(
        _ logits: Tensor, targets: [Int32], ignoreIndex: Int32 = -100, weights: [Float]? = nil
    ) -> Tensor {
        let v = logits.shape[logits.rank - 1], n = logits.count / Swift.max(v, 1)
        precondition(targets.count == n, "crossEntropy: \(targets.count) targets for \(n) rows of \(logits.shape)")
        if let weights { precondition(weights.count == n, "crossEntropy: \(weights.count) weights for \(n) rows") }
        for t in targets where t != ignoreIndex {
            precondition(t >= 0 && Int(t) < v, "target \(t) out of range for vocabulary \(v)")
        }
        let px = logits.data
        var lse = [Float](repeating: 0, count: n)
        var total = 0.0, weightSum = 0.0
        lse.withUnsafeMutableBufferPointer { lp in
            let l = lp.baseAddress!
            parallelChunks(n, grain: 8) { rows in
                for r in rows where targets[r] != ignoreIndex { l[r] = logSumExp(px + r * v, v) }
            }
        }
        for r in 0..<n where targets[r] != ignoreIndex {
            let w = Double(weights?[r] ?? 1)
            total += w * Double(lse[r] - px[r * v + Int(targets[r])])
            weightSum += w
        }
        let out = Tensor(shape: [], values: [weightSum > 0 ? Float(total / weightSum) : 0])
        record(out, [logits]) { g in
            let gx = logits.gradBuffer()
            guard weightSum > 0 else { return }
            let scale = g[0] / Float(weightSum)
            lse.withUnsafeBufferPointer { lp in
                parallelChunks(n, grain: 8) { rows in
                    for r in rows where targets[r] != ignoreIndex {
                        let x = px + r * v, dx = gx + r * v
                        let k = scale * (weights?[r] ?? 1), m = lp[r]
                        var j = 0
                        while j + 8 <= v {
                            let e = expNonPositive(UnsafeRawPointer(x + j).loadUnaligned(as: SIMD8<Float>.self) - m)
                            let d = UnsafeMutableRawPointer(dx + j)
                            d.storeBytes(of: d.loadUnaligned(as: SIMD8<Float>.self) + k * e, as: SIMD8<Float>.self)
                            j += 8
                        }
                        while j < v {
                            dx[j] += k * fastExp(x[j] - m)
                            j += 1
                        }
                        dx[Int(targets[r])] -= k
                    }
                }
            }
        }
        return out
    }

    /// log softmax(logits)[target] per row of `logits` [..., V] -> [...], 0 (and no gradient)
    /// where the target is `ignoreIndex`.
    ///
    /// Fused like crossEntropy, and for the same reason: the composition
    /// logSoftmax().gatherLast() materialises a [N, V] log-softmax and, in the backward, an
    /// [N, V] gradient for it, several hundred MB for a DPO batch at a 32k vocabulary. The
    /// forward keeps one log-sum-exp per row; the backward recomputes the softmax row by row:
    /// dx[i, j] = g_i ([j == t_i] - softmax_ij).
    public static func tokenLogProbs(_ logits: Tensor, targets: [Int32], ignoreIndex: Int32 = -100) -> Tensor {
        let v = logits.shape[logits.rank - 1], n = logits.count / Swift.max(v, 1)
        precondition(targets.count == n, "tokenLogProbs: \(targets.count) targets for \(n) rows of \(logits.shape)")
        for t in targets where t != ignoreIndex {
            precondition(t >= 0 && Int(t) < v, "target \(t) out of range for vocabulary \(v)")
        }
        let out = Tensor.zeros(Array(logits.shape.dropLast()))
        var lse = [Float](repeating: 0, count: n)
        let px = logits.data, po = out.data
        lse.withUnsafeMutableBufferPointer { lp in
            let l = lp.baseAddress!
            parallelChunks(n, grain: 8) { rows in
                for r in rows where targets[r] != ignoreIndex {
                    l[r] = logSumExp(px + r * v, v)
                    po[r] = px[r * v + Int(targets[r])] - l[r]
                }
            }
        }
        record(out, [logits]) { g in
            let gx = logits.gradBuffer()
            parallelChunks(n, grain: 8) { rows in
                for r in rows where targets[r] != ignoreIndex && g[r] != 0 {
                    let x = px + r * v, dx = gx + r * v, m = lse[r], k = g[r]
                    for j in 0..<v { dx[j] -= k * Foundation.exp(x[j] - m) }
                    dx[Int(targets[r])] += k
                }
            }
        }
        return out
    }
}
