// Register-blocked matrix products for the small, cache-resident blocks inside fused kernels
// (attention), where an sgemm call would pack both operands for a product of a few hundred
// thousand FLOPs, and its transposed-operand variants reduce along the short head dim.
//
// A is read in place through two strides, so Aᵀ (or a head inside a wider row) costs
// nothing; B's rows are contiguous vectors, the last n % 8 columns read and written with
// masked loads and stores (head dims need not be multiples of 8). The micro-tile is 6 rows
// of C by 16 columns: 12 accumulators of 8 lanes, the Haswell/Zen register budget (the
// BLIS layout). Each element of C sums its k products in order with fused multiply-adds,
// so results depend only on the shapes, never on threads.

import CHost


/// C[m, n] = alpha * A B, or C += alpha * A B with `accumulate`. A's element (i, p) is
/// `a[i * aRow + p * aCol]`; B's row p is `b[p * ldb ..< p * ldb + n]`; C's row i is
/// `c[i * ldc ..< i * ldc + n]`.
package func smallGemm(
    m: Int, n: Int, k: Int, alpha: Float = 1, a: UnsafePointer<Float>, aRow: Int, aCol: Int, b: UnsafePointer<Float>,
    ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool
) {
    guard m > 0, n > 0 else { return }
    let n16 = n & ~15, n8 = n & ~7
    var i = 0
    while i < m {
        let rows = Swift.min(6, m - i)
        let ai = a + i * aRow, ci = c + i * ldc
        @inline(__always) func tile(_ j: Int, wide: Bool, lanes: Int) {
            tile6(
                wide: wide, lanes: lanes, rows: rows, k: k, alpha: alpha, a: ai, aRow: aRow, aCol: aCol, b: b + j, ldb: ldb,
                c: ci + j, ldc: ldc, accumulate: accumulate)
        }
        var j = 0
        while j < n16 {
            tile(j, wide: true, lanes: 8)
            j += 16
        }
        if j < n8 {
            tile(j, wide: false, lanes: 8)
            j += 8
        }
        // The last n % 8 columns: masked loads and stores touch nothing past them.
        if j < n { tile(j, wide: false, lanes: n - j) }
        i += 6
    }
}

/// One tile of up to 6 rows by 16 (`wide`) or 8 columns, of which only the first `lanes`
/// (1...8, not wide) exist. Rows past `rows` re-read the last valid row of A (never out of
/// bounds) and are not stored.
@inline(__always)
private func tile6(
    wide: Bool, lanes: Int, rows: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, aRow: Int, aCol: Int,
    b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool
) {
    typealias V = SIMD8<Float>
    let last = rows - 1
    let o1 = Swift.min(1, last) * aRow, o2 = Swift.min(2, last) * aRow, o3 = Swift.min(3, last) * aRow
    let o4 = Swift.min(4, last) * aRow, o5 = Swift.min(5, last) * aRow
    var c0 = V(), c1 = V(), c2 = V(), c3 = V(), c4 = V(), c5 = V()
    var d0 = V(), d1 = V(), d2 = V(), d3 = V(), d4 = V(), d5 = V()
    var ap = a, bp = b
    // Written out row by row so that every accumulator is a named local, which the
    // optimiser keeps in a vector register for the whole loop (12 of the 16).
    for _ in 0..<k {
        let x = lanes == 8 ? UnsafeRawPointer(bp).loadUnaligned(as: V.self) : distill_load_first(bp, lanes)
        let y = wide ? UnsafeRawPointer(bp + 8).loadUnaligned(as: V.self) : V()
        var s = V(repeating: ap[0])
        c0 = fused(s, x, c0)
        if wide { d0 = fused(s, y, d0) }
        s = V(repeating: ap[o1])
        c1 = fused(s, x, c1)
        if wide { d1 = fused(s, y, d1) }
        s = V(repeating: ap[o2])
        c2 = fused(s, x, c2)
        if wide { d2 = fused(s, y, d2) }
        s = V(repeating: ap[o3])
        c3 = fused(s, x, c3)
        if wide { d3 = fused(s, y, d3) }
        s = V(repeating: ap[o4])
        c4 = fused(s, x, c4)
        if wide { d4 = fused(s, y, d4) }
        s = V(repeating: ap[o5])
        c5 = fused(s, x, c5)
        if wide { d5 = fused(s, y, d5) }
        ap += aCol
        bp += ldb
    }
    let scale = V(repeating: alpha)
    @inline(__always) func put(_ lo: V, _ hi: V, _ row: Int) {
        let p = c + row * ldc
        if lanes == 8 {
            let q = UnsafeMutableRawPointer(p)
            q.storeBytes(of: accumulate ? fused(scale, lo, q.loadUnaligned(as: V.self)) : scale * lo, as: V.self)
        } else {
            distill_store_first(p, accumulate ? fused(scale, lo, distill_load_first(p, lanes)) : scale * lo, lanes)
        }
        if wide {
            let r = UnsafeMutableRawPointer(p + 8)
            r.storeBytes(of: accumulate ? fused(scale, hi, r.loadUnaligned(as: V.self)) : scale * hi, as: V.self)
        }
    }
    put(c0, d0, 0)
    if rows > 1 { put(c1, d1, 1) }
    if rows > 2 { put(c2, d2, 2) }
    if rows > 3 { put(c3, d3, 3) }
    if rows > 4 { put(c4, d4, 4) }
    if rows > 5 { put(c5, d5, 5) }
}

/// dst[j * ldd + i] = src[i * lds + j] for i < rows, j < cols: a strided block of rows
/// written out as columns, eight rows at a time so the stores are whole vectors.
@inline(__always)
package func transposeBlock(
    _ src: UnsafePointer<Float>, lds: Int, rows: Int, cols: Int, into dst: UnsafeMutablePointer<Float>, ldd: Int
) {
    var i = 0
    while i + 8 <= rows {
        let s = src + i * lds
        for j in 0..<cols {
            let column = SIMD8<Float>(
                s[j], s[lds + j], s[2 * lds + j], s[3 * lds + j], s[4 * lds + j], s[5 * lds + j], s[6 * lds + j],
                s[7 * lds + j])
            UnsafeMutableRawPointer(dst + j * ldd + i).storeBytes(of: column, as: SIMD8<Float>.self)
        }
        i += 8
    }
    while i < rows {
        for j in 0..<cols { dst[j * ldd + i] = src[i * lds + j] }
        i += 1
    }
}
