// Training products over a frozen packed weight (QLoRA's base): the activations stay f32 and
// the weight is decoded a tile of rows at a time into a scratch buffer that lives for one
// call, so no f32 copy of the matrix outlives the product. Both directions read the blocks:
//   y = x Wᵀ                   tile by tile: y[:, tile] = x W_tileᵀ
//   dx (+)= dy W               tile by tile: dx += dy[:, tile] W_tile
// W never gets a gradient. With W the decoded blocks these are exactly the f32 products on
// the decoded matrix up to float summation order (the tiles cut the dx sum).
//
// A bf16 W (LoRA's base at half the bytes) runs both products in bf16 with f32 sums: x or dy
// is rounded to bf16 too, and on AVX-512 BF16 the products run on vdpbf16ps, at twice the
// multiply-adds per instruction of f32 (Sources/CKernels/bf16.c). Elsewhere the same products
// run as sgemm on the decoded tiles and the rounded activations, equal up to summation order.
//
// Shapes: W [R, K] (R outputs, K inputs), x [N, K], y [N, R].

import CKernels
import Foundation

/// The weight of a training product, W [R, K]: an f32 tensor (trainable or frozen) or a
/// frozen packed matrix.
public enum ProductWeight {
    case dense(Tensor)
    case packed(PackedMatrix)

    public var rows: Int {
        switch self {
        case .dense(let w): w.shape[0]
        case .packed(let p): p.rows
        }
    }

    public var columns: Int {
        switch self {
        case .dense(let w): w.shape[1]
        case .packed(let p): p.columns
        }
    }

    /// The tensor when dense and trainable (the one case with a weight gradient).
    var trainable: Tensor? {
        if case .dense(let w) = self, w.requiresGrad { return w }
        return nil
    }

    /// The tensors the tape must keep as inputs of the product (none for a packed weight).
    var inputs: [Tensor] {
        if case .dense(let w) = self { return [w] }
        return []
    }

    /// y[m, R] = x[m, K] Wᵀ (rows of y `ldy` apart). `split` as `BLAS.sgemm`.
    package func forward(_ x: UnsafePointer<Float>, m: Int, into y: UnsafeMutablePointer<Float>, ldy: Int, split: Bool = true) {
        let k = columns
        switch self {
        case .dense(let w):
            BLAS.sgemm(
                transA: false, transB: true, m: m, n: w.shape[0], k: k, a: x, lda: k, b: w.data, ldb: k, c: y, ldc: ldy,
                split: split)
        case .packed(let p):
            if p.format == .bf16, p.bf16Forward(x, m: m, into: y, ldy: ldy, split: split) { return }
            let rounded = p.format == .bf16 ? PackedMatrix.bf16Rounded(x, rows: m, columns: k, stride: k, split: split) : nil
            defer { rounded?.deallocate() }
            let x = rounded.map { UnsafePointer($0) } ?? x
            p.tiles { rows, tile in  // y[:, rows] = x W_rowsᵀ
                BLAS.sgemm(
                    transA: false, transB: true, m: m, n: rows.count, k: k, a: x, lda: k, b: tile, ldb: k,
                    c: y + rows.lowerBound, ldc: ldy, split: split)
            }
        }
    }

    /// dx[m, K] = beta dx + dy[m, R] W (rows of dy `lddy` apart).
    package func backward(
        _ dy: UnsafePointer<Float>, m: Int, lddy: Int, into dx: UnsafeMutablePointer<Float>, beta: Float, split: Bool = true
    ) {
        let k = columns
        switch self {
        case .dense(let w):
            BLAS.sgemm(
                transA: false, transB: false, m: m, n: k, k: w.shape[0], a: dy, lda: lddy, b: w.data, ldb: k, beta: beta,
                c: dx, ldc: k, split: split)
        case .packed(let p):
            if p.format == .bf16, p.bf16Backward(dy, m: m, lddy: lddy, into: dx, beta: beta, split: split) { return }
            let rounded = p.format == .bf16 ? PackedMatrix.bf16Rounded(dy, rows: m, columns: p.rows, stride: lddy, split: split) : nil
            defer { rounded?.deallocate() }
            let (dy, lddy) = rounded.map { (UnsafePointer($0), p.rows) } ?? (dy, lddy)
            p.tiles { rows, tile in  // dx += dy[:, rows] W_rows
                BLAS.sgemm(
                    transA: false, transB: false, m: m, n: k, k: rows.count, a: dy + rows.lowerBound, lda: lddy, b: tile,
                    ldb: k, beta: rows.lowerBound == 0 ? beta : 1, c: dx, ldc: k, split: split)
            }
        }
    }
}

extension PackedMatrix {
    /// Rows decoded per tile: about 128 Ki floats (512 KiB, cache-sized), a multiple of 8, at
    /// least 8.
    var tileRows: Int { Swift.min(rows, Swift.max(8, (1 << 17) / Swift.max(columns, 1) / 8 * 8)) }

    /// Calls `body` on each tile of rows in order with the tile decoded to f32 [rows, K], in
    /// one scratch buffer reused across the tiles and freed on return.
    func tiles(_ body: (Range<Int>, UnsafePointer<Float>) -> Void) {
        let height = tileRows
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: height * columns)
        defer { scratch.deallocate() }
        for start in stride(from: 0, to: rows, by: height) {
            let range = start..<Swift.min(start + height, rows)
            decode(rows: range, into: scratch)
            body(range, scratch)
        }
    }
}

extension PackedMatrix {
    /// Rows of W whose packed copy a bf16 input gradient builds at a time: about 1 Mi values
    /// (2 MiB), an even number.
    var bf16PackRows: Int { Swift.min(rows, Swift.max(2, (1 << 20) / Swift.max(columns, 1) / 2 * 2)) }

    /// y[m, R] = x[m, K] Wᵀ on the bf16 kernel: xᵀ packed (rounded) once, the rows of W split
    /// over the threads, each writing its columns of y. False, doing nothing, when the kernel
    /// is unavailable or K is odd.
    func bf16Forward(_ x: UnsafePointer<Float>, m: Int, into y: UnsafeMutablePointer<Float>, ldy: Int, split: Bool) -> Bool {
        let k = columns
        guard m > 0, k > 0, k % 2 == 0, dk_bf16_gemm_available() != 0, let w = bf16Values else { return false }
        let packed = UnsafeMutablePointer<UInt16>.allocate(capacity: dk_bf16_packed_count(Int32(k), Int32(m)))
        defer { packed.deallocate() }
        let panel = dk_bf16_packed_count(Int32(k), 32)  // values per panel of 32 inputs
        Self.work((m + 31) / 32, split: split) { panels in
            let first = panels.lowerBound * 32, count = Swift.min(m, panels.upperBound * 32) - first
            dk_bf16_pack_transposed(x + first * k, Int32(count), Int32(k), Int32(k), packed + panels.lowerBound * panel)
        }
        Self.work(rows, split: split, grain: 48) { r in  // yᵀ[r, :] = W[r, :] xᵀ
            _ = dk_bf16_gemm(
                Int32(r.count), Int32(m), Int32(k), w + r.lowerBound * k, Int32(k), packed, 0, y + r.lowerBound,
                Int32(ldy), 1)
        }
        return true
    }

    /// dx[m, K] = beta dx + dy[m, R] W on the bf16 kernel: dy rounded to bf16 once, W packed
    /// `bf16PackRows` rows at a time, the inputs split over the threads. False, doing nothing,
    /// when the kernel is unavailable or R is odd.
    func bf16Backward(
        _ dy: UnsafePointer<Float>, m: Int, lddy: Int, into dx: UnsafeMutablePointer<Float>, beta: Float, split: Bool
    ) -> Bool {
        let k = columns
        guard m > 0, k > 0, rows > 0, rows % 2 == 0, dk_bf16_gemm_available() != 0, let w = bf16Values else { return false }
        let a = UnsafeMutablePointer<UInt16>.allocate(capacity: m * rows)
        defer { a.deallocate() }
        Self.work(m, split: split, grain: 16) { r in
            for i in r { dk_bf16_from_f32(dy + i * lddy, rows, a + i * rows) }
        }
        let height = bf16PackRows
        let packed = UnsafeMutablePointer<UInt16>.allocate(capacity: dk_bf16_packed_count(Int32(height), Int32(k)))
        defer { packed.deallocate() }
        for start in stride(from: 0, to: rows, by: height) {
            let count = Swift.min(height, rows - start)
            let panel = dk_bf16_packed_count(Int32(count), 32)  // values per panel of 32 columns
            Self.work((k + 31) / 32, split: split) { panels in
                let first = panels.lowerBound * 32, columns = Swift.min(k, panels.upperBound * 32) - first
                dk_bf16_pack(w + start * k + first, Int32(count), Int32(columns), Int32(k), packed + panels.lowerBound * panel)
            }
            Self.work(m, split: split, grain: 48) { r in
                _ = dk_bf16_gemm(
                    Int32(r.count), Int32(k), Int32(count), a + r.lowerBound * rows + start, Int32(rows), packed,
                    start == 0 ? beta : 1, dx + r.lowerBound * k, Int32(k), 0)
            }
        }
        return true
    }

    /// Rows of floats (`stride` apart) rounded to bf16 and widened back, in a new buffer
    /// [rows, columns] the caller deallocates: the activations of the bf16 products where
    /// they run as sgemm.
    static func bf16Rounded(
        _ x: UnsafePointer<Float>, rows: Int, columns: Int, stride: Int, split: Bool
    ) -> UnsafeMutablePointer<Float> {
        let out = UnsafeMutablePointer<Float>.allocate(capacity: rows * columns)
        work(rows, split: split, grain: 16) { r in
            var half = [UInt16](repeating: 0, count: columns)
            for i in r {
                dk_bf16_from_f32(x + i * stride, columns, &half)
                dk_bf16_to_f32(half, columns, out + i * columns)
            }
        }
        return out
    }

    /// `parallelChunks` when `split`, else the whole range on this thread.
    private static func work(_ count: Int, split: Bool, grain: Int = 1, _ body: (Range<Int>) -> Void) {
        if split { parallelChunks(count, grain: grain, body) } else if count > 0 { body(0..<count) }
    }
}

extension Tensor {
    /// x Wᵀ for a frozen packed W [out, in]: x [..., in] -> [..., out], with the low-rank
    /// `updates` on their column blocks (LoRA on a quantized base). The input gradient
    /// reads the blocks again; W gets none.
    public static func linear(_ x: Tensor, _ weight: PackedMatrix, updates: [LowRankUpdate] = []) -> Tensor {
        linear(x, .packed(weight), updates: updates)
    }

    /// The rows `ids` of a packed embedding table [V, C], decoded: [ids.shape..., C]. The
    /// table is frozen, so nothing is recorded.
    public static func embedding(_ table: PackedMatrix, ids: [Int32], shape idsShape: [Int]) -> Tensor {
        precondition(ids.count == elementCount(idsShape), "\(ids.count) ids for shape \(idsShape)")
        let (vocab, c) = (table.rows, table.columns)
        for id in ids { precondition(id >= 0 && Int(id) < vocab, "token id \(id) out of range for vocabulary \(vocab)") }
        let out = Tensor.empty(idsShape + [c])
        let po = out.data
        ids.withUnsafeBufferPointer { idp in
            parallelChunks(ids.count, grain: 64) { r in
                for i in r { table.decode(rows: Int(idp[i])..<(Int(idp[i]) + 1), into: po + i * c) }
            }
        }
        return out
    }
}
