// Training products over a frozen packed weight (QLoRA's base): the activations stay f32 and
// the weight is decoded a tile of rows at a time into a scratch buffer that lives for one
// call, so no f32 copy of the matrix outlives the product. Both directions read the blocks:
//   y = x Wᵀ                   tile by tile: y[:, tile] = x W_tileᵀ
//   dx (+)= dy W               tile by tile: dx += dy[:, tile] W_tile
// W never gets a gradient. With W the decoded blocks these are exactly the f32 products on
// the decoded matrix up to float summation order (the tiles cut the dx sum).
//
// Shapes: W [R, K] (R outputs, K inputs), x [N, K], y [N, R].

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
    func forward(_ x: UnsafePointer<Float>, m: Int, into y: UnsafeMutablePointer<Float>, ldy: Int, split: Bool = true) {
        let k = columns
        switch self {
        case .dense(let w):
            BLAS.sgemm(
                transA: false, transB: true, m: m, n: w.shape[0], k: k, a: x, lda: k, b: w.data, ldb: k, c: y, ldc: ldy,
                split: split)
        case .packed(let p):
            p.tiles { rows, tile in  // y[:, rows] = x W_rowsᵀ
                BLAS.sgemm(
                    transA: false, transB: true, m: m, n: rows.count, k: k, a: x, lda: k, b: tile, ldb: k,
                    c: y + rows.lowerBound, ldc: ldy, split: split)
            }
        }
    }

    /// dx[m, K] = beta dx + dy[m, R] W (rows of dy `lddy` apart).
    func backward(
        _ dy: UnsafePointer<Float>, m: Int, lddy: Int, into dx: UnsafeMutablePointer<Float>, beta: Float, split: Bool = true
    ) {
        let k = columns
        switch self {
        case .dense(let w):
            BLAS.sgemm(
                transA: false, transB: false, m: m, n: k, k: w.shape[0], a: dy, lda: lddy, b: w.data, ldb: k, beta: beta,
                c: dx, ldc: k, split: split)
        case .packed(let p):
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
