// Fused causal scaled-dot-product attention with grouped-query heads.
//
// Layout: q [B, T, H, D], k and v [B, S, G, D], output [B, T, H, D], where query head h
// reads key/value head h / (H/G). Heads are read in place through row strides, so neither
// the [B, H, T, D] transpose nor the repeated K/V of a naive GQA is ever materialised.
//
// The products run on `smallGemm` tiles of 6 query rows, each over just the keys its rows
// can see (the causal triangle to within a few columns, instead of whole 64-row blocks),
// with the softmax applied to the tile's scores while they are in cache. One transposed
// copy of the kv head's keys (forward) or values (backward), shared by its H/G query
// heads, turns the two products that reduce along D into row-broadcast products.
//
// The softmax probabilities P [B, H, T, S'] (S' = S rounded up to 8) are kept for the
// backward, one product cheaper than recomputing them; with grad mode off they live only
// in a per-worker tile. Backward, per (b, h) with dO the output gradient:
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
        let geometry = AttentionTiles(t: t, s: s, causal: causal)
        let sp = geometry.rowStride
        let scale = scale ?? 1 / Float(d).squareRoot()
        let group = h / g
        let keep = GradMode.isEnabled && (q.requiresGrad || k.requiresGrad || v.requiresGrad)
        let out = Tensor.empty(q.shape)
        let probs = keep ? Tensor.empty([b, h, t, sp]) : nil
        let (pq, pk, pv, po) = (q.data, k.data, v.data, out.data)
        // kvRow: the row stride of one head's keys; kvBatch: where a batch entry's keys start.
        let qRow = h * d
        let (kvRow, kvBatch) = timeMajorKV ? (b * g * d, g * d) : (g * d, s * g * d)

        // Work items are (batch, kv head) pairs: items never write the same memory.
        parallelChunks(b * g) { items in
            let kt = Tensor.zeros([d, sp])  // Kᵀ of one kv head, zero past S
            let scratch = probs == nil ? Tensor.empty([AttentionTiles.rows, sp]) : nil
            for item in items {
                let (bi, gi) = (item / g, item % g)
                let kb = pk + bi * kvBatch + gi * d, vb = pv + bi * kvBatch + gi * d
                transposeBlock(kb, lds: kvRow, rows: s, cols: d, into: kt.data, ldd: sp)  // [D, S']
                for hi in (gi * group)..<((gi + 1) * group) {
                    let p = probs.map { $0.data + (bi * h + hi) * t * sp }
                    let qb = pq + bi * t * qRow + hi * d, ob = po + bi * t * qRow + hi * d
                    for tile in geometry.tiles {
                        let pt = p.map { $0 + tile.first * sp } ?? scratch!.data
                        // P = scale * Q Kᵀ  // [rows, width]
                        smallGemm(
                            m: tile.rows, n: tile.width, k: d, alpha: scale, a: qb + tile.first * qRow, aRow: qRow, aCol: 1,
                            b: kt.data, ldb: sp, c: pt, ldc: sp, accumulate: false)
                        maskedSoftmaxRows(pt, tile, geometry, segments: segments, batch: bi)
                        // O = P V  // [rows, D]
                        smallGemm(
                            m: tile.rows, n: d, k: tile.keys, a: pt, aRow: sp, aCol: 1, b: vb, ldb: kvRow,
                            c: ob + tile.first * qRow, ldc: qRow, accumulate: false)
                    }
                }
            }
        }

        guard let probs else { return out }
        record(out, [q, k, v]) { gOut in
            let dq = q.requiresGrad ? q.gradBuffer() : nil
            let dk = k.requiresGrad ? k.gradBuffer() : nil
            let dv = v.requiresGrad ? v.gradBuffer() : nil
            parallelChunks(b * g) { items in
                let vt = Tensor.zeros([d, sp])  // Vᵀ of one kv head, zero past S
                let dS = Tensor.empty([t, sp])
                for item in items {
                    let (bi, gi) = (item / g, item % g)
                    let kvOff = bi * kvBatch + gi * d
                    if dq != nil || dk != nil {
                        transposeBlock(pv + kvOff, lds: kvRow, rows: s, cols: d, into: vt.data, ldd: sp)  // [D, S']
                    }
                    for hi in (gi * group)..<((gi + 1) * group) {
                        let p = probs.data + (bi * h + hi) * t * sp
                        let qOff = bi * t * qRow + hi * d
                        let dO = gOut + qOff
                        if let dv {  // dV += Pᵀ dO  // [S, D]
                            geometry.forKeyTiles { j0, keys, r0 in
                                smallGemm(
                                    m: keys, n: d, k: t - r0, a: p + r0 * sp + j0, aRow: 1, aCol: sp, b: dO + r0 * qRow,
                                    ldb: qRow, c: dv + kvOff + j0 * kvRow, ldc: kvRow, accumulate: true)
                            }
                        }
                        guard dq != nil || dk != nil else { continue }
                        for tile in geometry.tiles {
                            let pt = p + tile.first * sp, ds = dS.data + tile.first * sp
                            // dP = dO Vᵀ  // [rows, width]
                            smallGemm(
                                m: tile.rows, n: tile.width, k: d, a: dO + tile.first * qRow, aRow: qRow, aCol: 1,
                                b: vt.data, ldb: sp, c: ds, ldc: sp, accumulate: false)
                            for i in 0..<tile.rows {
                                softmaxBackwardRow(pt + i * sp, ds + i * sp, tile.width, scale: scale)
                            }
                            if let dq {  // dQ += dS K  // [rows, D]
                                smallGemm(
                                    m: tile.rows, n: d, k: tile.keys, a: ds, aRow: sp, aCol: 1, b: pk + kvOff, ldb: kvRow,
                                    c: dq + qOff + tile.first * qRow, ldc: qRow, accumulate: true)
                            }
                        }
                        if let dk {  // dK += dSᵀ Q  // [S, D]
                            geometry.forKeyTiles { j0, keys, r0 in
                                smallGemm(
                                    m: keys, n: d, k: t - r0, a: dS.data + r0 * sp + j0, aRow: 1, aCol: sp,
                                    b: pq + qOff + r0 * qRow, ldb: qRow, c: dk + kvOff + j0 * kvRow, ldc: kvRow,
                                    accumulate: true)
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}

/// How one (batch, head) of attention is cut into tiles, and which scores each tile holds.
///
/// Query rows go in tiles of `rows`. Under the causal mask row i sees the first
/// `S - T + i + 1` keys; a tile's `keys` is what its last row sees (the k of its P V
/// product) and its `width` the score columns it computes and stores: `keys` plus 5,
/// rounded up to 8 and capped at the row stride, with every column past a row's own keys
/// set to exactly 0. The extra 5 columns let the backward's key tiles (6 keys, over the
/// rows that see their first key) read only stored entries.
struct AttentionTiles {
    static let rows = 6

    struct Tile {
        var first: Int
        var rows: Int
        var keys: Int
        var width: Int
    }

    let t: Int, s: Int, causal: Bool
    /// Score row stride: S rounded up to 8 (the columns past S are computed against zero
    /// keys and then zeroed).
    let rowStride: Int
    let tiles: [Tile]

    init(t: Int, s: Int, causal: Bool) {
        self.t = t
        self.s = s
        self.causal = causal
        let stride = (s + 7) & ~7
        rowStride = stride
        tiles = Swift.stride(from: 0, to: t, by: Self.rows).map { first in
            let rows = Swift.min(Self.rows, t - first)
            let keys = causal ? s - t + first + rows : s
            return Tile(first: first, rows: rows, keys: keys, width: causal ? Swift.min(stride, (keys + 5 + 7) & ~7) : stride)
        }
    }

    /// Keys row i of the (batch, head) may see before any segment mask.
    @inline(__always) func visibleKeys(row i: Int) -> Int { causal ? s - t + i + 1 : s }

    /// Calls `body(firstKey, keys, firstRow)` for key tiles of 6: the rows from `firstRow`
    /// on are all that can see any of the tile's keys.
    @inline(__always) func forKeyTiles(_ body: (Int, Int, Int) -> Void) {
        var j0 = 0
        while j0 < s {
            body(j0, Swift.min(Self.rows, s - j0), causal ? Swift.max(0, j0 - (s - t)) : 0)
            j0 += Self.rows
        }
    }
}

/// Softmax of a tile's score rows over each row's visible keys, in place, with every other
/// column up to the tile's width set to exactly 0. Query row i sits at key position S - T + i.
/// Masked entries are set to -inf first, so one vector pass over the (8-aligned) width does
/// every row: exp(-inf - max) is exactly 0.
@inline(__always)
private func maskedSoftmaxRows(
    _ p: UnsafeMutablePointer<Float>, _ tile: AttentionTiles.Tile, _ geometry: AttentionTiles, segments: [Int32]?,
    batch: Int
) {
    let (s, sp, width) = (geometry.s, geometry.rowStride, tile.width)
    for li in 0..<tile.rows {
        let i = tile.first + li
        let row = p + li * sp
        let limit = geometry.visibleKeys(row: i)
        for j in limit..<width { row[j] = -.infinity }
        if let segments {
            let base = batch * s, mine = segments[base + s - geometry.t + i]
            for j in 0..<limit where segments[base + j] != mine { row[j] = -.infinity }
        }
        let raw = UnsafeMutableRawPointer(row)
        var m = SIMD8<Float>(repeating: -.infinity)
        for j in stride(from: 0, to: width, by: 8) {
            let v = raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self)
            m.replace(with: v, where: v .> m)
        }
        let shift = SIMD8<Float>(repeating: horizontalMax(m))
        var sum = SIMD8<Float>()
        for j in stride(from: 0, to: width, by: 8) {
            let e = expNonPositive(raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self) - shift)
            raw.storeBytes(of: e, toByteOffset: j * 4, as: SIMD8<Float>.self)
            sum += e
        }
        let inv = SIMD8<Float>(repeating: 1 / sum.sum())
        for j in stride(from: 0, to: width, by: 8) {
            raw.storeBytes(of: raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self) * inv, toByteOffset: j * 4, as: SIMD8<Float>.self)
        }
    }
}

/// ds = p ⊙ (ds - Σ p ⊙ ds) * scale over n entries, in place (ds holds dP on entry).
@inline(__always)
private func softmaxBackwardRow(_ p: UnsafePointer<Float>, _ ds: UnsafeMutablePointer<Float>, _ n: Int, scale: Float) {
    var acc = SIMD8<Float>()
    var j = 0
    while j + 8 <= n {
        acc = acc.addingProduct(
            UnsafeRawPointer(p + j).loadUnaligned(as: SIMD8<Float>.self),
            UnsafeRawPointer(ds + j).loadUnaligned(as: SIMD8<Float>.self))
        j += 8
    }
    var dot = acc.sum()
    while j < n {
        dot += p[j] * ds[j]
        j += 1
    }
    let shift = SIMD8<Float>(repeating: dot), sc = SIMD8<Float>(repeating: scale)
    j = 0
    while j + 8 <= n {
        let pv = UnsafeRawPointer(p + j).loadUnaligned(as: SIMD8<Float>.self)
        let dv = UnsafeRawPointer(ds + j).loadUnaligned(as: SIMD8<Float>.self)
        UnsafeMutableRawPointer(ds + j).storeBytes(of: pv * (dv - shift) * sc, as: SIMD8<Float>.self)
        j += 8
    }
    while j < n {
        ds[j] = p[j] * (ds[j] - dot) * scale
        j += 1
    }
}
