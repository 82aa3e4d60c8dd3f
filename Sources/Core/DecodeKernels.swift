// Row kernels shared by the autograd ops and the decode engine (which runs the same math on
// its own buffers, without a tape): RMSNorm, SwiGLU, the rotary rotation and one token's
// attention over a KV cache.

import CKernels
import Foundation

/// y = w * x / sqrt(mean(x²) + eps) for one row of c values; returns 1/sqrt(mean(x²) + eps).
@inline(__always)
package func rmsNormRow(
    _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ c: Int, eps: Float
) -> Float {
    var ss: Float = 0
    for j in 0..<c { ss += x[j] * x[j] }
    let inv = 1 / (ss / Float(c) + eps).squareRoot()
    for j in 0..<c { y[j] = w[j] * (x[j] * inv) }
    return inv
}

/// o = silu(g) * u for f values.
@inline(__always)
package func swigluRow(
    _ g: UnsafePointer<Float>, _ u: UnsafePointer<Float>, _ o: UnsafeMutablePointer<Float>, _ f: Int
) {
    var i = 0
    while i + 8 <= f {
        let x = UnsafeRawPointer(g + i).loadUnaligned(as: SIMD8<Float>.self)
        let y = x / (1 + expPoly(-x)) * UnsafeRawPointer(u + i).loadUnaligned(as: SIMD8<Float>.self)
        UnsafeMutableRawPointer(o + i).storeBytes(of: y, as: SIMD8<Float>.self)
        i += 8
    }
    while i < f {
        o[i] = g[i] / (1 + fastExp(-g[i])) * u[i]
        i += 1
    }
}

/// Rotates `heads` heads of d values in place (rotate_half: the pairs are i and i + d/2)
/// by the angles whose cosines and sines are `cos` and `sin` (d/2 each).
@inline(__always)
package func rotateHeads(
    _ x: UnsafeMutablePointer<Float>, heads: Int, d: Int, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>
) {
    let half = d / 2
    for head in 0..<heads {
        let p = x + head * d
        for i in 0..<half {
            let x1 = p[i], x2 = p[i + half]
            p[i] = x1 * cos[i] - x2 * sin[i]
            p[i + half] = x2 * cos[i] + x1 * sin[i]
        }
    }
}

/// One query token's attention with grouped-query heads: q [h, d]; `keys` cached positions
/// of keys and values, each [g, d] and `stride` floats apart; out [h, d]; `scratch` holds at
/// least `keys` floats. Scale 1/sqrt(d). With `stats`, head i's softmax maximum and sum of
/// exponentials go to stats[2i] and stats[2i + 1] (for merging with attention over other keys:
/// `mergeAttention`).
package func attendToken(
    q: UnsafePointer<Float>, heads h: Int, kvHeads g: Int, headDim d: Int, keys: UnsafePointer<Float>,
    values: UnsafePointer<Float>, count: Int, stride: Int, out: UnsafeMutablePointer<Float>,
    scratch: UnsafeMutablePointer<Float>, stats: UnsafeMutablePointer<Float>? = nil
) {
    dk_attend(
        q, Int32(h), Int32(g), Int32(d), keys, values, Int32(count), Int32(stride), 1 / Float(d).squareRoot(), out,
        scratch, stats)
}

/// Merges two attentions of one query head over disjoint sets of keys into the attention over
/// both: `out` [d] holds the second part's normalised output, whose softmax had maximum `top`
/// and sum `total`; `weighted` [d] is the first part's unnormalised sum of exp(s - `firstTop`)
/// times the values, with sum of exponentials `firstTotal`. Writes the merged output to `out`
/// and returns the merged softmax's maximum and sum, for merging further parts.
@inline(__always)
package func mergeAttention(
    _ out: UnsafeMutablePointer<Float>, top: Float, total: Float, weighted: UnsafePointer<Float>, firstTop: Float,
    firstTotal: Float, d: Int
) -> (top: Float, total: Float) {
    let m = max(top, firstTop)
    let a = exp(firstTop - m), b = total * exp(top - m)
    let sum = a * firstTotal + b
    let inverse = 1 / sum
    for i in 0..<d { out[i] = (a * weighted[i] + b * out[i]) * inverse }
    return (m, sum)
}
