// Rotary position embeddings in Hugging Face's rotate_half layout: dimension j pairs with
// j + D/2 (not the interleaved (2j, 2j+1) layout of the original paper and llama.cpp).
//
// Frequencies. Pair i (i < D/2) turns by angle pos * inv_freq[i], inv_freq[i] = 1 / theta^(2i/D).
// Llama 3's scaling (transformers' rope_type "llama3", `_compute_llama3_parameters` in
// modeling_rope_utils.py) slows the low frequencies down for a longer context. With
// wavelength w = 2π / inv_freq, O = original_max_position_embeddings, L = low_freq_factor,
// H = high_freq_factor:
//   w < O / H         (high frequencies)    unchanged
//   w > O / L         (low frequencies)     inv_freq / factor
//   otherwise         (in between)          (1 - s) · inv_freq / factor + s · inv_freq,
//                                           s = (O / w - L) / (H - L)
// so s runs from 0 at w = O / L to 1 at w = O / H and the two ends meet the other bands.
// Everything is float32 in transformers' order of operations, and that order is kept here
// (torch computes `a / tensor` as reciprocal(tensor) · a, and casts the Python-double
// thresholds O / L and O / H to float32 before comparing), so the inverse frequencies are
// transformers' bit for bit wherever theta^(2i/D) is (powf and torch's pow may differ by an ulp).
//
// llama.cpp keeps the unscaled frequencies and divides each by a stored factor
// (`rope_freqs.weight`, one per pair): 1, factor, or 1 / ((1 - s) / factor + s) in the three
// bands, which is the same scaling. `RopeScaling.frequencyFactors` computes them as
// llama.cpp's converter (convert_hf_to_gguf.py) does, in float32.

import Foundation

/// Llama 3's rope scaling (Hugging Face rope_type "llama3"): the one scaling distill computes.
/// Llama 3.1 and 3.2 use factor 8 (3.2 small models 32), low_freq_factor 1,
/// high_freq_factor 4, original_max_position_embeddings 8192.
public struct RopeScaling: Sendable, Hashable {
    /// Divisor of the low frequencies (at least 1).
    public var factor: Double
    /// Wavelengths above original_max_position_embeddings / low_freq_factor are divided by `factor`.
    public var lowFreqFactor: Double
    /// Wavelengths below original_max_position_embeddings / high_freq_factor are unchanged.
    public var highFreqFactor: Double
    /// The context length the model was pretrained with before the scaling.
    public var originalMaxPositionEmbeddings: Int

    public init(factor: Double, lowFreqFactor: Double, highFreqFactor: Double, originalMaxPositionEmbeddings: Int) {
        self.factor = factor
        self.lowFreqFactor = lowFreqFactor
        self.highFreqFactor = highFreqFactor
        self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
    }

    /// What makes the parameters meaningless, each naming its key (transformers warns about
    /// the same conditions; distill refuses them).
    public func problems() -> [String] {
        var p: [String] = []
        if !(factor >= 1 && factor.isFinite) { p.append("rope factor must be at least 1, got \(factor)") }
        if !(lowFreqFactor > 0 && lowFreqFactor.isFinite) {
            p.append("rope low_freq_factor must be positive, got \(lowFreqFactor)")
        }
        if !(highFreqFactor.isFinite && highFreqFactor > lowFreqFactor) {
            p.append(
                "rope high_freq_factor (\(highFreqFactor)) must be greater than low_freq_factor (\(lowFreqFactor))")
        }
        if originalMaxPositionEmbeddings < 1 {
            p.append("rope original_max_position_embeddings must be at least 1, got \(originalMaxPositionEmbeddings)")
        }
        return p
    }

    /// The three bands of `inverseFrequencies` for pair frequencies `inv` (float32, as
    /// transformers compares them): wavelength, whether it is low or in between, and s.
    private func bands(_ inv: Float) -> (wavelength: Float, low: Bool, medium: Bool, smooth: Float) {
        let o = Double(originalMaxPositionEmbeddings)
        let lowWavelength = Float(o / lowFreqFactor), highWavelength = Float(o / highFreqFactor)
        let w = (1 / inv) * Float(2 * Double.pi)
        let low = w > lowWavelength
        let medium = !(w < highWavelength) && !low
        let s = ((1 / w) * Float(o) - Float(lowFreqFactor)) / Float(highFreqFactor - lowFreqFactor)
        return (w, low, medium, s)
    }

    /// transformers' llama3 inverse frequencies from the unscaled ones (file header).
    public func scale(_ inverseFrequencies: [Float]) -> [Float] {
        let f = Float(factor)
        return inverseFrequencies.map { inv in
            let b = bands(inv)
            let scaled = b.low ? inv / f : inv
            return b.medium ? (1 - b.smooth) * scaled / f + b.smooth * scaled : scaled
        }
    }

    /// llama.cpp's per-pair divisors (`rope_freqs.weight`) for the unscaled inverse
    /// frequencies `inverseFrequencies`: 1, factor, or 1 / ((1 - s) / factor + s).
    public func frequencyFactors(_ inverseFrequencies: [Float]) -> [Float] {
        let f = Float(factor)
        return inverseFrequencies.map { inv in
            let b = bands(inv)
            if b.medium { return 1 / ((1 - b.smooth) / f + b.smooth) }
            return b.low ? f : 1
        }
    }
}

/// cos/sin tables for a list of positions, computed the way transformers does in float32:
/// inv_freq[i] = 1 / theta^(2i/D) (scaled when the model says so), angle = pos * inv_freq[i].
public struct RopeTable: Sendable {
    public let headDim: Int
    public let cos: [Float]  // [P, D/2]
    public let sin: [Float]  // [P, D/2]

    /// The D/2 inverse frequencies 1 / theta^(2i/D), then `scaling` applied.
    public static func inverseFrequencies(headDim: Int, theta: Float, scaling: RopeScaling? = nil) -> [Float] {
        precondition(headDim % 2 == 0, "rotary head dim must be even, got \(headDim)")
        let plain = (0..<(headDim / 2)).map { i in 1 / Foundation.pow(theta, Float(2 * i) / Float(headDim)) }
        return scaling?.scale(plain) ?? plain
    }

    public init(positions: [Int32], headDim: Int, theta: Float, scaling: RopeScaling? = nil) {
        let inverseFrequencies = Self.inverseFrequencies(headDim: headDim, theta: theta, scaling: scaling)
        self.init(positions: positions, inverseFrequencies: inverseFrequencies)
    }

    /// Tables for the D/2 inverse frequencies `inverseFrequencies` (D = twice their count).
    public init(positions: [Int32], inverseFrequencies: [Float]) {
        let half = inverseFrequencies.count
        var c = [Float](repeating: 0, count: positions.count * half)
        var s = c
        for (i, invFreq) in inverseFrequencies.enumerated() {
            for (p, pos) in positions.enumerated() {
                let angle = Float(pos) * invFreq
                c[p * half + i] = Foundation.cos(angle)
                s[p * half + i] = Foundation.sin(angle)
            }
        }
        self.headDim = 2 * half
        cos = c
        sin = s
    }
}

extension Tensor {
    /// Rotates x [B, T, H, D] by position. `positions` holds T entries (shared by the batch)
    /// or B*T entries (one row per sequence, for packed or offset sequences).
    ///   out1 = x1 cos - x2 sin,  out2 = x2 cos + x1 sin   (x1 = x[..<D/2], x2 = x[D/2...])
    /// The backward is the inverse rotation of the gradient.
    public static func rope(_ x: Tensor, positions: [Int32], theta: Float, scaling: RopeScaling? = nil) -> Tensor {
        precondition(x.rank == 4, "rope expects [B, T, H, D], got \(x.shape)")
        let (b, t, d) = (x.shape[0], x.shape[1], x.shape[3])
        precondition(positions.count == t || positions.count == b * t, "rope: \(positions.count) positions for [B=\(b), T=\(t)]")
        let table = RopeTable(positions: positions, headDim: d, theta: theta, scaling: scaling)
        return rope(x, table: table)
    }

    /// As `rope(_:positions:theta:scaling:)` with a precomputed table.
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
