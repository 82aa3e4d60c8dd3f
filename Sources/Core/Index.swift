// Index ops: embedding lookup (scatter-add backward), gather along the last axis,
// where/masked fill, and seeded dropout.

import Foundation

extension Tensor {
    /// Rows of `weight` [V, C] picked by `ids` (shape `idsShape`) -> [idsShape..., C].
    public static func embedding(_ weight: Tensor, ids: [Int32], shape idsShape: [Int]) -> Tensor {
        precondition(weight.rank == 2, "embedding weight must be [V, C], got \(weight.shape)")
        precondition(ids.count == elementCount(idsShape), "\(ids.count) ids for shape \(idsShape)")
        let (vocab, c) = (weight.shape[0], weight.shape[1])
        for id in ids { precondition(id >= 0 && Int(id) < vocab, "token id \(id) out of range for vocabulary \(vocab)") }
        let out = Tensor.empty(idsShape + [c])
        let pw = weight.data, po = out.data
        ids.withUnsafeBufferPointer { idp in
            parallelChunks(ids.count, grain: 64) { r in
                for i in r { (po + i * c).update(from: pw + Int(idp[i]) * c, count: c) }
            }
        }
        record(out, [weight]) { g in
            // Scatter-add: repeated ids accumulate, in id order, single-threaded for determinism.
            let gw = weight.gradBuffer()
            for (i, id) in ids.enumerated() {
                let dst = gw + Int(id) * c, src = g + i * c
                for j in 0..<c { dst[j] += src[j] }
            }
        }
        return out
    }

    /// out[i] = x[i, index[i]] over the last axis: [..., V] -> [...].
    public func gatherLast(_ index: [Int32]) -> Tensor {
        let v = shape[rank - 1], n = count / Swift.max(v, 1)
        precondition(index.count == n, "gatherLast: \(index.count) indices for \(n) rows of \(shape)")
        for i in index { precondition(i >= 0 && Int(i) < v, "gatherLast index \(i) out of range 0..<\(v)") }
        let out = Tensor.empty(Array(shape.dropLast()))
        for i in 0..<n { out.data[i] = data[i * v + Int(index[i])] }
        Tensor.record(out, [self]) { [self] g in
            let gx = gradBuffer()
            for i in 0..<n { gx[i * v + Int(index[i])] += g[i] }
        }
        return out
    }

    /// cond ? a : b elementwise; `cond` has one entry per element of a and b (same shape).
    public static func `where`(_ cond: [Bool], _ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.shape == b.shape && cond.count == a.count, "where: cond \(cond.count), a \(a.shape), b \(b.shape)")
        let out = Tensor.empty(a.shape)
        for i in 0..<a.count { out.data[i] = cond[i] ? a.data[i] : b.data[i] }
        record(out, [a, b]) { g in
            let ga = a.requiresGrad ? a.gradBuffer() : nil
            let gb = b.requiresGrad ? b.gradBuffer() : nil
            for i in 0..<a.count {
                if cond[i] { ga?[i] += g[i] } else { gb?[i] += g[i] }
            }
        }
        return out
    }

    /// Elements where `mask` is true replaced by `value` (no gradient flows to them).
    public func maskedFill(_ mask: [Bool], _ value: Float) -> Tensor {
        precondition(mask.count == count, "maskedFill: mask of \(mask.count) for \(shape)")
        let out = Tensor.empty(shape)
        for i in 0..<count { out.data[i] = mask[i] ? value : data[i] }
        Tensor.record(out, [self]) { [self] g in
            let gx = gradBuffer()
            for i in 0..<count where !mask[i] { gx[i] += g[i] }
        }
        return out
    }

    /// Inverted dropout: each element is zeroed with probability `p` and the rest scaled by
    /// 1/(1-p), so the expectation is unchanged. The mask comes from `rng` only.
    public func dropout(_ p: Float, rng: inout RNG) -> Tensor {
        precondition(p >= 0 && p < 1, "dropout probability must be in [0, 1), got \(p)")
        if p == 0 { return self }
        let scale = 1 / (1 - p)
        let threshold = Double(p)
        var keep = [Float](repeating: 0, count: count)
        for i in 0..<count { keep[i] = rng.uniform() >= threshold ? scale : 0 }
        let out = Tensor.empty(shape)
        for i in 0..<count { out.data[i] = data[i] * keep[i] }
        Tensor.record(out, [self]) { [self] g in
            let gx = gradBuffer()
            for i in 0..<count { gx[i] += g[i] * keep[i] }
        }
        return out
    }
}
