// Fused causal scaled-dot-product attention with grouped-query heads.
//
// Layout: q [B, T, H, D], k and v [B, S, G, D], output [B, T, H, D], where query head h
// reads key/value head h / (H/G). Heads are addressed in place through sgemm leading
// dimensions, so neither the [B, H, T, D] transpose nor the repeated K/V of a naive GQA
// is ever materialised. The softmax probabilities P [B, H, T, S] are kept for the backward
// (one sgemm cheaper than recomputing them); with grad mode off they live only in a
// per-worker scratch row block.
//
// Backward, per (b, h) with dO the output gradient:
//   dV += Pᵀ dO,  dP = dO Vᵀ,  dS = P ⊙ (dP - rowsum(P ⊙ dP)) * scale,
//   dQ += dS K,   dK += dSᵀ Q.

import Foundation

extension Tensor {
    /// Attention of T queries over S keys. The queries are the last T positions of the S
    /// (S == T in training; S > T when decoding with a KV cache): with `causal`, query i
    /// sees keys 0...(S - T + i). `segments` (B*S ids, S == T) restricts attention to keys
    /// of the same segment, for packed sequences; give padding its own segment id.
    /// `scale` defaults to 1/sqrt(D).
    ///
    /// With `timeMajorKV`, k and v are laid out [S, B, G, D] (a KV cache that grows along
    /// its first axis stays contiguous); `segments` then still lists B*S ids row-major
    /// by batch, the queries' ids being the last T of each row.
    public static func attention(
        q: Tensor, k: Tensor, v: Tensor, causal: Bool = true, scale: Float? = nil, segments: [Int32]? = nil,
        timeMajorKV: Bool = false
    ) -> Tensor {
        precondition(q.rank == 4 && k.rank == 4 && v.rank == 4, "attention expects rank-4 q, k, v: \(q.shape) \(k.shape) \(v.shape)")
        let (b, t, h, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3])
        let (s, kb0, g) = timeMajorKV ? (k.shape[0], k.shape[1], k.shape[2]) : (k.shape[1], k.shape[0], k.shape[2])
        precondition(k.shape == v.shape, "attention k \(k.shape) and v \(v.shape) differ")
        precondition(kb0 == b && k.shape[3] == d, "attention q \(q.shape) and k \(k.shape) disagree on batch or head dim")
        precondition(g > 0 && h % g == 0, "query heads \(h) must be a multiple of key/value heads \(g)")
        precondition(s >= t, "attention needs at least as many keys (\(s)) as queries (\(t))")
        if let segments { precondition(segments.count == b * s, "attention: \(segments.count) segment ids for B=\(b) x S=\(s) keys") }
        let scale = scale ?? 1 / Float(d).squareRoot()
        let group = h / g
        let keep = GradMode.isEnabled && (q.requiresGrad || k.requiresGrad || v.requiresGrad)
        let out = Tensor.empty(q.shape)
        let probs = keep ? Tensor.empty([b, h, t, s]) : nil
        let (pq, pk, pv, po) = (q.data, k.data, v.data, out.data)
        // kvRow: the sgemm leading dimension of one head's keys; kvBatch: where a batch
        // entry's keys start.
        let qRow = h * d
        let (kvRow, kvBatch) = timeMajorKV ? (b * g * d, g * d) : (g * d, s * g * d)

        // Work items are (batch, kv head) pairs: items never write the same memory.
        BLAS.singleThreaded {
            parallelChunks(b * g) { items in
                let scratch = probs == nil ? Tensor.empty([t, s]) : nil
                for item in items {
                    let (bi, gi) = (item / g, item % g)
                    let kb = pk + bi * kvBatch + gi * d, vb = pv + bi * kvBatch + gi * d
                    for hi in (gi * group)..<((gi + 1) * group) {
                        let p = probs.map { $0.data + (bi * h + hi) * t * s } ?? scratch!.data
                        let qb = pq + bi * t * qRow + hi * d, ob = po + bi * t * qRow + hi * d
                        for blk in rowBlocks(t: t, s: s, causal: causal) {
                            let (r0, rows, keys) = (blk.rows.lowerBound, blk.rows.count, blk.keys)
                            let pb = p + r0 * s
                            // P = scale * Q Kᵀ  // [rows, keys]
                            BLAS.sgemm(
                                transA: false, transB: true, m: rows, n: keys, k: d, alpha: scale, a: qb + r0 * qRow, lda: qRow,
                                b: kb, ldb: kvRow, c: pb, ldc: s, split: false)
                            maskedSoftmaxRows(p, blk.rows, keys: keys, t: t, s: s, causal: causal, segments: segments, batch: bi)
                            // O = P V  // [rows, D]
                            BLAS.sgemm(
                                transA: false, transB: false, m: rows, n: d, k: keys, a: pb, lda: s, b: vb, ldb: kvRow,
                                c: ob + r0 * qRow, ldc: qRow, split: false)
                        }
                    }
                }
            }
        }

        guard let probs else { return out }
        record(out, [q, k, v]) { gOut in
            let dq = q.requiresGrad ? q.gradBuffer() : nil
            let dk = k.requiresGrad ? k.gradBuffer() : nil
            let dv = v.requiresGrad ? v.gradBuffer() : nil
            BLAS.singleThreaded {
                parallelChunks(b * g) { items in
                    let dS = Tensor.empty([t, s])
                    for item in items {
                        let (bi, gi) = (item / g, item % g)
                        let kvOff = bi * kvBatch + gi * d
                        for hi in (gi * group)..<((gi + 1) * group) {
                            let p = probs.data + (bi * h + hi) * t * s
                            let qOff = bi * t * qRow + hi * d
                            for blk in rowBlocks(t: t, s: s, causal: causal) {
                                let (r0, rows, keys) = (blk.rows.lowerBound, blk.rows.count, blk.keys)
                                let pb = p + r0 * s, ds = dS.data + r0 * s
                                let dO = gOut + qOff + r0 * qRow, qb = pq + qOff + r0 * qRow
                                if let dv {  // dV += Pᵀ dO  // [keys, D]
                                    BLAS.sgemm(
                                        transA: true, transB: false, m: keys, n: d, k: rows, a: pb, lda: s, b: dO, ldb: qRow,
                                        beta: 1, c: dv + kvOff, ldc: kvRow, split: false)
                                }
                                // dP = dO Vᵀ  // [rows, keys]
                                BLAS.sgemm(
                                    transA: false, transB: true, m: rows, n: keys, k: d, a: dO, lda: qRow, b: pv + kvOff,
                                    ldb: kvRow, c: ds, ldc: s, split: false)
                                for i in 0..<rows {
                                    let pr = pb + i * s, dr = ds + i * s
                                    var dot: Float = 0
                                    for j in 0..<keys { dot += pr[j] * dr[j] }
                                    for j in 0..<keys { dr[j] = pr[j] * (dr[j] - dot) * scale }
                                }
                                if let dq {  // dQ += dS K  // [rows, D]
                                    BLAS.sgemm(
                                        transA: false, transB: false, m: rows, n: d, k: keys, a: ds, lda: s, b: pk + kvOff,
                                        ldb: kvRow, beta: 1, c: dq + qOff + r0 * qRow, ldc: qRow, split: false)
                                }
                                if let dk {  // dK += dSᵀ Q  // [keys, D]
                                    BLAS.sgemm(
                                        transA: true, transB: false, m: keys, n: d, k: rows, a: ds, lda: s, b: qb, ldb: qRow,
                                        beta: 1, c: dk + kvOff, ldc: kvRow, split: false)
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}

/// Query rows in blocks of 64 with the keys each block can see: under a causal mask the
/// block ending at row r1 needs only keys [0, S - T + r1), so the products skip the upper
/// triangle (10/16 of the dense work at T = 256).
struct RowBlock {
    var rows: Range<Int>
    var keys: Int
}

@inline(__always)
func rowBlocks(t: Int, s: Int, causal: Bool) -> [RowBlock] {
    let size = 64
    return stride(from: 0, to: t, by: size).map { r0 in
        let r1 = Swift.min(t, r0 + size)
        return RowBlock(rows: r0..<r1, keys: causal ? Swift.min(s, s - t + r1) : s)
    }
}

/// Softmax of score rows `rows` of p [T, S] over the first `keys` columns, in place, with
/// masked entries set to exactly 0. Query row i sits at key position S - T + i.
@inline(__always)
private func maskedSoftmaxRows(
    _ p: UnsafeMutablePointer<Float>, _ rows: Range<Int>, keys: Int, t: Int, s: Int, causal: Bool, segments: [Int32]?,
    batch: Int
) {
    let offset = s - t
    for i in rows {
        let row = p + i * s
        let limit = causal ? offset + i + 1 : s  // keys [0, limit) pass the causal test
        if let segments {
            let base = batch * s, mine = segments[base + offset + i]
            var m = -Float.infinity
            for j in 0..<limit where segments[base + j] == mine && row[j] > m { m = row[j] }
            var sum: Float = 0
            for j in 0..<limit {
                if segments[base + j] == mine {
                    let e = fastExp(row[j] - m)
                    row[j] = e
                    sum += e
                } else {
                    row[j] = 0
                }
            }
            let inv = sum > 0 ? 1 / sum : 0
            for j in 0..<limit { row[j] *= inv }
        } else {
            softmaxRow(row, row, limit)
        }
        for j in limit..<keys { row[j] = 0 }
    }
}
