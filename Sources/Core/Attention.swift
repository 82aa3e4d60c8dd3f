// Fused causal scaled-dot-product attention with grouped-query heads.
//
// Layout: q [B, T, H, D], k and v [B, S, G, D], output [B, T, H, D], where query head h
// reads key/value head h / (H/G). Heads are read in place through row strides, so neither
// the [B, H, T, D] transpose nor the repeated K/V of a naive GQA is ever materialised.
//
// The products run on `smallGemm` tiles of 6 query rows, each over just the keys its rows
// can see (the causal triangle to within a few columns),
// with the softmax applied to the tile's scores while they are in cache. One transposed
// copy of the kv head's keys and values, shared by its H/G query heads, turns the
// products that reduce along D into row-broadcast products.
//
// Like FlashAttention, the forward keeps only each row's log-sum-exp, not the [B, H, T, S]
// probabilities: the backward recomputes one head's P = exp(scale Q Kᵀ - lse) into a
// per-worker scratch that stays in cache, one extra QKᵀ product for no probability
// tensor (config M: 256 MiB less at peak, L: 512 MiB). Backward, per (b, h) with dO the
// output gradient:
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
        attention(q: q, k: k, v: v, causal: causal, scale: scale, segments: segments, timeMajorKV: timeMajorKV, scratchBytes: 2 << 20)
    }

    /// `scratchBytes`: what one block of the backward's P and dS may take (tests make it
    /// small to run many blocks).
    package static func attention(
        q: Tensor, k: Tensor, v: Tensor, causal: Bool, scale: Float?, segments: [Int32]?, timeMajorKV: Bool,
        scratchBytes: Int
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
        let logSumExp = keep ? Tensor.empty([b, h, t]) : nil  // of each row's scaled scores
        let (pq, pk, pv, po) = (q.data, k.data, v.data, out.data)
        // kvRow: the row stride of one head's keys; kvBatch: where a batch entry's keys start.
        let qRow = h * d
        let (kvRow, kvBatch) = timeMajorKV ? (b * g * d, g * d) : (g * d, s * g * d)
        let rows = AttentionTiles.rows

        // A few query rows (decoding from a KV cache): transposing every kv head's keys
        // would cost as much as the products, and the 6-row tiles would mostly compute
        // copies of the last row, so the two products run as single-threaded sgemms on K
        // and V in place. Measured at B=8, S=1024, H=8, G=2, D=64: tiles 0.96 ms, sgemm 0.37.
        let direct = t < rows
        // Work items are (batch, kv head) pairs: items never write the same memory.
        let forward = {
            parallelChunks(b * g) { items in
                let kt = direct ? nil : Tensor.zeros([d, sp])  // Kᵀ of one kv head, zero past S
                let scores = Tensor.empty([rows, sp])
                for item in items {
                    let (bi, gi) = (item / g, item % g)
                    let kb = pk + bi * kvBatch + gi * d, vb = pv + bi * kvBatch + gi * d
                    if let kt { transposeBlock(kb, lds: kvRow, rows: s, cols: d, into: kt.data, ldd: sp) }  // [D, S']
                    for hi in (gi * group)..<((gi + 1) * group) {
                        let lse = logSumExp.map { $0.data + (bi * h + hi) * t }
                        let qb = pq + bi * t * qRow + hi * d, ob = po + bi * t * qRow + hi * d
                        for tile in geometry.tiles {
                            let pt = scores.data, qt = qb + tile.first * qRow, ot = ob + tile.first * qRow
                            // P = scale * Q Kᵀ  // [rows, width]; the mask fills the columns past S
                            if let kt {
                                smallGemm(
                                    m: tile.rows, n: tile.width, k: d, alpha: scale, a: qt, aRow: qRow, aCol: 1, b: kt.data,
                                    ldb: sp, c: pt, ldc: sp, accumulate: false)
                            } else {
                                BLAS.sgemm(
                                    transA: false, transB: true, m: tile.rows, n: Swift.min(tile.width, s), k: d, alpha: scale,
                                    a: qt, lda: qRow, b: kb, ldb: kvRow, c: pt, ldc: sp, split: false)
                            }
                            for li in 0..<tile.rows {
                                let row = pt + li * sp
                                geometry.mask(row, row: tile.first + li, width: tile.width, segments: segments, batch: bi)
                                let rowLSE = softmaxInPlace(row, tile.width)
                                lse?[tile.first + li] = rowLSE
                            }
                            // O = P V  // [rows, D]
                            if direct {
                                BLAS.sgemm(
                                    transA: false, transB: false, m: tile.rows, n: d, k: tile.keys, a: pt, lda: sp, b: vb,
                                    ldb: kvRow, c: ot, ldc: qRow, split: false)
                            } else {
                                smallGemm(
                                    m: tile.rows, n: d, k: tile.keys, a: pt, aRow: sp, aCol: 1, b: vb, ldb: kvRow, c: ot,
                                    ldc: qRow, accumulate: false)
                            }
                        }
                    }
                }
            }
        }
        if direct { BLAS.singleThreaded(forward) } else { forward() }

        guard let logSumExp else { return out }
        record(out, [q, k, v]) { gOut in
            let dq = q.requiresGrad ? q.gradBuffer() : nil
            let dk = k.requiresGrad ? k.gradBuffer() : nil
            let dv = v.requiresGrad ? v.gradBuffer() : nil
            // The backward walks each head in blocks of query rows whose P and dS (the
            // scratch) stay within `scratchBytes` (2 MiB: one block for T up to 1024 at S = T,
            // several beyond), so the key-tile products read their strips from cache, not
            // memory (T = 2048, D = 64, one core: 151 ms with one block per head, 115 in blocks,
            // 110-125 for the earlier sgemm kernel).
            let fit = scratchBytes / (8 * sp)  // rows of P and dS the budget holds
            let blockRows = fit >= t ? Swift.max(t, 1) : Swift.max(rows, fit / rows * rows)
            parallelChunks(b * g) { items in
                let kt = Tensor.zeros([d, sp]), vt = Tensor.zeros([d, sp])  // Kᵀ, Vᵀ of one kv head
                let probs = Tensor.empty([blockRows, sp]), dS = Tensor.empty([blockRows, sp])  // a block's P, dS
                for item in items {
                    let (bi, gi) = (item / g, item % g)
                    let kvOff = bi * kvBatch + gi * d
                    transposeBlock(pk + kvOff, lds: kvRow, rows: s, cols: d, into: kt.data, ldd: sp)  // [D, S']
                    transposeBlock(pv + kvOff, lds: kvRow, rows: s, cols: d, into: vt.data, ldd: sp)
                    for hi in (gi * group)..<((gi + 1) * group) {
                        let lse = logSumExp.data + (bi * h + hi) * t
                        let qOff = bi * t * qRow + hi * d
                        let qb = pq + qOff, dO = gOut + qOff
                        for block in stride(from: 0, to: t, by: blockRows) {
                            let blockEnd = Swift.min(t, block + blockRows)
                            // Scratch row i holds query row block + i.
                            let p0 = probs.data - block * sp, ds0 = dS.data - block * sp
                            for tile in geometry.tiles[(block / rows)..<((blockEnd + rows - 1) / rows)] {
                                let pt = p0 + tile.first * sp, ds = ds0 + tile.first * sp
                                // P = exp(scale * Q Kᵀ - lse), as the forward had it  // [rows, width]
                                smallGemm(
                                    m: tile.rows, n: tile.width, k: d, alpha: scale, a: qb + tile.first * qRow, aRow: qRow,
                                    aCol: 1, b: kt.data, ldb: sp, c: pt, ldc: sp, accumulate: false)
                                for li in 0..<tile.rows {
                                    let row = pt + li * sp
                                    geometry.mask(row, row: tile.first + li, width: tile.width, segments: segments, batch: bi)
                                    expInPlace(row, tile.width, shift: lse[tile.first + li])
                                }
                                guard dq != nil || dk != nil else { continue }
                                // dP = dO Vᵀ  // [rows, width]
                                smallGemm(
                                    m: tile.rows, n: tile.width, k: d, a: dO + tile.first * qRow, aRow: qRow, aCol: 1,
                                    b: vt.data, ldb: sp, c: ds, ldc: sp, accumulate: false)
                                for li in 0..<tile.rows {
                                    softmaxBackwardRow(pt + li * sp, ds + li * sp, tile.width, scale: scale)
                                }
                                if let dq {  // dQ += dS K  // [rows, D]
                                    smallGemm(
                                        m: tile.rows, n: d, k: tile.keys, a: ds, aRow: sp, aCol: 1, b: pk + kvOff, ldb: kvRow,
                                        c: dq + qOff + tile.first * qRow, ldc: qRow, accumulate: true)
                                }
                            }
                            // grad[keys] += scratchᵀ x [block rows], one key tile at a time over the
                            // block's rows that see it  // [S, D]
                            func addTransposed(
                                _ scratch: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                                into grad: UnsafeMutablePointer<Float>
                            ) {
                                geometry.forKeyTiles(rows: block..<blockEnd) { j0, keys, r0 in
                                    smallGemm(
                                        m: keys, n: d, k: blockEnd - r0, a: scratch + r0 * sp + j0, aRow: 1, aCol: sp,
                                        b: x + r0 * qRow, ldb: qRow, c: grad + kvOff + j0 * kvRow, ldc: kvRow,
                                        accumulate: true)
                                }
                            }
                            if let dv { addTransposed(p0, dO, into: dv) }  // dV += Pᵀ dO
                            if let dk { addTransposed(ds0, qb, into: dk) }  // dK += dSᵀ Q
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

    /// Calls `body(firstKey, keys, firstRow)` for the key tiles of 6 that query rows `rows`
    /// can see: of those rows, the ones from `firstRow` on see some of the tile's keys.
    @inline(__always) func forKeyTiles(rows: Range<Int>, _ body: (Int, Int, Int) -> Void) {
        guard !rows.isEmpty else { return }
        let visible = visibleKeys(row: rows.upperBound - 1)
        var j0 = 0
        while j0 < visible {
            body(j0, Swift.min(Self.rows, s - j0), causal ? Swift.max(rows.lowerBound, j0 - (s - t)) : rows.lowerBound)
            j0 += Self.rows
        }
    }
}

extension AttentionTiles {
    /// Sets the scores row i may not see to -inf: columns [visible keys, width) and, with
    /// `segments`, keys of other segments. Query row i sits at key position S - T + i.
    @inline(__always)
    func mask(_ row: UnsafeMutablePointer<Float>, row i: Int, width: Int, segments: [Int32]?, batch: Int) {
        let limit = visibleKeys(row: i)
        for j in limit..<width { row[j] = -.infinity }
        guard let segments else { return }
        let base = batch * s, mine = segments[base + s - t + i]
        for j in 0..<limit where segments[base + j] != mine { row[j] = -.infinity }
    }
}

/// Softmax over `width` (a multiple of 8) scores in place, masked (-inf) entries becoming
/// exactly 0; returns the row's log-sum-exp (max + log Σ exp(x - max)).
@inline(__always)
private func softmaxInPlace(_ row: UnsafeMutablePointer<Float>, _ width: Int) -> Float {
    let raw = UnsafeMutableRawPointer(row)
    var m = SIMD8<Float>(repeating: -.infinity)
    for j in stride(from: 0, to: width, by: 8) {
        let v = raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self)
        m.replace(with: v, where: v .> m)
    }
    let top = horizontalMax(m), shift = SIMD8<Float>(repeating: top)
    var acc = SIMD8<Float>()
    for j in stride(from: 0, to: width, by: 8) {
        let e = expNonPositive(raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self) - shift)
        raw.storeBytes(of: e, toByteOffset: j * 4, as: SIMD8<Float>.self)
        acc += e
    }
    let sum = acc.sum(), inv = SIMD8<Float>(repeating: 1 / sum)
    for j in stride(from: 0, to: width, by: 8) {
        raw.storeBytes(of: raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self) * inv, toByteOffset: j * 4, as: SIMD8<Float>.self)
    }
    return top + Foundation.log(sum)
}

/// x = exp(x - shift) over `width` (a multiple of 8) entries in place: the softmax again
/// from the row's log-sum-exp.
@inline(__always)
private func expInPlace(_ row: UnsafeMutablePointer<Float>, _ width: Int, shift: Float) {
    let raw = UnsafeMutableRawPointer(row), s = SIMD8<Float>(repeating: shift)
    for j in stride(from: 0, to: width, by: 8) {
        let e = expNonPositive(raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self) - s)
        raw.storeBytes(of: e, toByteOffset: j * 4, as: SIMD8<Float>.self)
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
