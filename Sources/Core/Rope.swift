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
        let (b, t, h, d) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let perBatch = table.cos.count == b * t * (d / 2)
        let out = Tensor.empty(x.shape)
        rotate(x.data, out.data, table, b: b, t: t, h: h, d: d, perBatch: perBatch, sign: 1, accumulate: false)
        record(out, [x]) { g in
            rotate(g, x.gradBuffer(), table, b: b, t: t, h: h, d: d, perBatch: perBatch, sign: -1, accumulate: true)
        }
        return out
    }

    /// dst (+)= rotation of src by sign * angle.
    private static func rotate(
        _ src: UnsafeMutablePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ table: RopeTable,
        b: Int, t: Int, h: Int, d: Int, perBatch: Bool, sign: Float, accumulate: Bool
    ) {
        let half = d / 2
        table.cos.withUnsafeBufferPointer { cosp in
            table.sin.withUnsafeBufferPointer { sinp in
                parallelChunks(b * t, grain: 4) { rows in
                    for row in rows {
                        let p = perBatch ? row : row % t
                        let c = cosp.baseAddress! + p * half, s = sinp.baseAddress! + p * half
                        for head in 0..<h {
                            let xi = src + (row * h + head) * d, yo = dst + (row * h + head) * d
                            for i in 0..<half {
                                let x1 = xi[i], x2 = xi[i + half], si = sign * s[i]
                                let y1 = x1 * c[i] - x2 * si, y2 = x2 * c[i] + x1 * si
                                if accumulate {
                                    yo[i] += y1
                                    yo[i + half] += y2
                                } else {
                                    yo[i] = y1
                                    yo[i + half] = y2
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
