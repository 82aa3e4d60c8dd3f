// Rotary position embeddings in Hugging Face's rotate_half layout: dimension j pairs with
// j + D/2 (not the interleaved (2j, 2j+1) layout of the original paper and llama.cpp).

import Foundation

/// cos/sin tables for a list of positions, computed the way transformers does in float32:
/// inv_freq[i] = 1 / theta^(2i/D), angle = pos * inv_freq[i].
public struct RopeTable: Sendable {
    public let headDim: Int
    public let cos: [Float]  // [P, D/2]
    public let sin: [Float]  // [P, D/2]

    public init(positions: [Int32], headDim: Int, theta: Float) {
        precondition(headDim % 2 == 0, "rotary head dim must be even, got \(headDim)")
        let half = headDim / 2
        var c = [Float](repeating: 0, count: positions.count * half)
        var s = c
        for i in 0..<half {
            let invFreq = 1 / Foundation.pow(theta, Float(2 * i) / Float(headDim))
            for (p, pos) in positions.enumerated() {
                let angle = Float(pos) * invFreq
                c[p * half + i] = Foundation.cos(angle)
                s[p * half + i] = Foundation.sin(angle)
            }
        }
        self.headDim = headDim
        cos = c
        sin = s
    }
}

extension Tensor {
    /// Rotates x [B, T, H, D] by position. `positions` holds T entries (shared by the batch)
    /// or B*T entries (one row per sequence, for packed or offset sequences).
    ///   out1 = x1 cos - x2 sin,  out2 = x2 cos + x1 sin   (x1 = x[..<D/2], x2 = x[D/2...])
    /// The backward is the inverse rotation of the gradient.
    public static func rope(_ x: Tensor, positions: [Int32], theta: Float) -> Tensor {
        precondition(x.rank == 4, "rope expects [B, T, H, D], got \(x.shape)")
        let (b, t, d) = (x.shape[0], x.shape[1], x.shape[3])
        precondition(positions.count == t || positions.count == b * t, "rope: \(positions.count) positions for [B=\(b), T=\(t)]")
        let table = RopeTable(positions: positions, headDim: d, theta: theta)
        return rope(x, table: table)
    }

    /// As `rope(_:positions:theta:)` with a precomputed table.
    public static func rope(_ x: Tensor, table: RopeTable) -> Tensor {
        headSlice(x, heads: 0..<x.shape[2], rope: table)
    }

    /// Heads `heads` of x [B, T, Htot, D] as a new [B, T, n, D] tensor, rotated by `rope`
    /// when given. Reading a slice of a fused q/k/v projection this way replaces a slice
    /// copy and a rotation pass with one pass; the backward writes into the slice.
    public static func headSlice(_ x: Tensor, heads: Range<Int>, rope table: RopeTable?) -> Tensor {
        precondition(x.rank == 4, "headSlice expects [B, T, H, D], got \(x.shape)")
        let (b, t, total, d) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        precondition(heads.lowerBound >= 0 && heads.upperBound <= total, "heads \(heads) out of range for \(x.shape)")
        if let table {
            precondition(table.headDim == d, "rope table for head dim \(table.headDim) applied to head dim \(d)")
            precondition(table.cos.count == t * (d / 2) || table.cos.count == b * t * (d / 2), "rope table does not match [B=\(b), T=\(t)]")
        }
        let n = heads.count
        let out = Tensor.empty([b, t, n, d])
        let layout = HeadLayout(rows: b * t, t: t, heads: n, d: d, srcOffset: heads.lowerBound * d, srcRow: total * d, dstRow: n * d)
        copyHeads(x.data, out.data, layout, table, sign: 1, forward: true)
        record(out, [x]) { g in
            copyHeads(g, x.gradBuffer(), layout, table, sign: -1, forward: false)
        }
        return out
    }

    /// Rows of heads inside a fused source ([rows, srcRow] with the slice at srcOffset)
    /// and a packed destination ([rows, dstRow]).
    struct HeadLayout {
        var rows, t, heads, d, srcOffset, srcRow, dstRow: Int
    }

    /// forward: dst = rotate(src slice); backward: src slice += rotate⁻¹(dst).
    private static func copyHeads(
        _ from: UnsafeMutablePointer<Float>, _ to: UnsafeMutablePointer<Float>, _ l: HeadLayout, _ table: RopeTable?,
        sign: Float, forward: Bool
    ) {
        let half = l.d / 2
        let perBatch = (table?.cos.count ?? 0) == l.rows * half
        let cosp = table?.cos ?? [], sinp = table?.sin ?? []
        cosp.withUnsafeBufferPointer { cosb in
            sinp.withUnsafeBufferPointer { sinb in
                parallelChunks(l.rows, grain: 4) { rows in
                    for row in rows {
                        let p = perBatch ? row : row % l.t
                        for head in 0..<l.heads {
                            let packed = row * l.dstRow + head * l.d
                            let fused = row * l.srcRow + l.srcOffset + head * l.d
                            // forward reads the fused source, backward the packed gradient.
                            let xi = forward ? from + fused : from + packed
                            let yo = forward ? to + packed : to + fused
                            guard table != nil else {
                                if forward {
                                    yo.update(from: xi, count: l.d)
                                } else {
                                    for i in 0..<l.d { yo[i] += xi[i] }
                                }
                                continue
                            }
                            let c = cosb.baseAddress! + p * half, s = sinb.baseAddress! + p * half
                            for i in 0..<half {
                                let x1 = xi[i], x2 = xi[i + half], si = sign * s[i]
                                let y1 = x1 * c[i] - x2 * si, y2 = x2 * c[i] + x1 * si
                                if forward {
                                    yo[i] = y1
                                    yo[i + half] = y2
                                } else {
                                    yo[i] += y1
                                    yo[i + half] += y2
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
