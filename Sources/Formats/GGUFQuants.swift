// GGUFQuants: ggml's tensor block formats decoded to Float32, bit for bit as gguf-py's
// `gguf.quants.dequantize` (gguf 0.19.0, numpy, Float32 arithmetic) decodes them.
//
// A tensor of a block type is a sequence of blocks, each `elements` values in `bytes` bytes
// (`GGUFTensorType.blockLayout`); a row (ne[0]) is a whole number of blocks. Multi-byte
// fields are little-endian. f16 is IEEE binary16, widened to Float32 (exactly) before any
// arithmetic; quants and sub-block scales are small integers, exact in Float32. Every
// operation below is one Float32 operation rounded to nearest even, in the order written,
// which is numpy's order. The result cannot depend on that order: an f16 significand has
// 11 bits, the integer factors of a product at most 12 significant bits together (Q6_K:
// 127 x 31), and a non-zero product lies between 2^-24 and 65504 x 128 x 32 in magnitude,
// far from Float32's subnormals and overflow, so every product is exact and only the final
// `+ m` or `- dmin * m` rounds (a fused multiply-add would give the same bits). The one
// exception is a block whose d and m (or dmin) are both NaN: which payload survives depends
// on the operand order of that last operation. Value i of a block is written to out[i].
//
//   F32   4 bytes.   F16  binary16.   BF16  the high 16 bits of a Float32 (bits kept as they
//   are, NaN payloads too).   F64  binary64 rounded to Float32 (not in gguf-py; numpy's
//   float32 cast rounds the same way, overflow becoming an infinity).
//
//   32-value blocks; d and m are f16, qs[j] holds value j in its low nibble and value
//   j + 16 in its high nibble:
//   Q8_0   34 bytes: d | q[32] (int8)                       x = q * d
//   Q4_0   18 bytes: d | qs[16]                              x = d * (q - 8)
//   Q4_1   20 bytes: d | m | qs[16]                          x = d * q + m
//   Q5_0   22 bytes: d | qh (u32) | qs[16]; bit j of qh is bit 4 of value j
//                                                            x = d * (q - 16)
//   Q5_1   24 bytes: d | m | qh | qs[16]                     x = d * q + m
//
//   K-quants: 256-value super-blocks of 16 sub-blocks of 16 (Q2_K, Q3_K, Q6_K) or 8 of 32
//   (Q4_K, Q5_K), each sub-block with its own integer scale (and min), times the
//   super-block's f16 d (and dmin). Below, value v = 128h + 32k + l (h < 2, k < 4, l < 32)
//   is in sub-block v / 16 or v / 32.
//   Q2_K   84 bytes: scales[16] | qs[64] | d | dmin. q (0...3) is bits 2k, 2k+1 of
//          qs[32h + l]; sub-block s has sc = scales[s] & 15, m = scales[s] >> 4.
//                                                            x = (d * sc) * q - dmin * m
//   Q3_K  110 bytes: hmask[32] | qs[64] | scales[12] | d. The low two bits of q as Q2_K;
//          bit (4h + k) of hmask[l] set means q = low bits, clear means low bits - 4
//          (-4...3). Sub-block s has a 6-bit scale: low four bits the low nibble of
//          scales[s] (s < 8) or the high nibble of scales[s - 8], high two bits bits
//          2(s / 4), 2(s / 4) + 1 of scales[8 + s % 4]; sc = that - 32.
//                                                            x = (d * sc) * q
//   Q4_K  144 bytes: d | dmin | scales[12] | qs[128]. Value 64g + 32n + l (g < 4, n < 2) is
//          nibble n of qs[32g + l], in sub-block j = 2g + n, whose 6-bit sc and m are
//          scales[j] & 63 and scales[j + 4] & 63 for j < 4, and for j >= 4
//          sc = scales[j + 4] & 15 | (scales[j - 4] >> 6) << 4,
//          m = scales[j + 4] >> 4 | (scales[j] >> 6) << 4.
//                                                            x = (d * sc) * q - dmin * m
//   Q5_K  176 bytes: d | dmin | scales[12] | qh[32] | qs[128]. As Q4_K, and bit 4 of value
//          32j + l is bit j of qh[l] (0...31).               x = (d * sc) * q - dmin * m
//   Q6_K  210 bytes: ql[128] | qh[64] | scales[16] (int8) | d. q's low four bits are
//          nibble k / 2 of ql[64h + 32(k % 2) + l], its high two bits bits 2k, 2k+1 of
//          qh[32h + l]; q = that - 32 (-32...31); sc = scales[v / 16].
//                                                            x = (d * sc) * q
//
// Sources of the facts: the byte layouts are ggml's block structs as gguf-py 0.19.0's
// quants.py reads them (`dequantize_blocks` of each type, which also fixes the order of
// operations); Tests/FormatsTests/Fixtures/gguf/quants.json holds gguf-py's results for one
// tensor of each type (tools/make_gguf_quant_fixture.py), which the tests compare bit for bit.

/// Block decoders for the GGUF tensor types distill converts to Float32.
package enum GGUFQuants {
    /// The types `dequantize` converts, in the order error messages list them.
    package static let supportedTypes: [GGUFTensorType] = [
        .f32, .f16, .bf16, .f64, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K,
    ]

    /// Whether `dequantize` converts `type`.
    package static func supports(_ type: GGUFTensorType) -> Bool {
        switch type {
        case .f32, .f16, .bf16, .f64, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K: return true
        default: return false
        }
    }

    /// Decodes `count` values of `type` from `blocks`, which must hold exactly
    /// count / elements whole blocks of the type (`GGUFTensorType.blockLayout`), into `out`.
    /// A row range of a tensor is decoded by passing its bytes: rows are whole blocks.
    /// `type` must be one `supports` accepts.
    package static func dequantize(
        _ type: GGUFTensorType, blocks: UnsafeRawBufferPointer, into out: UnsafeMutablePointer<Float>, count: Int
    ) {
        precondition(supports(type), "\(type.name) has no decoder; check GGUFQuants.supports first")
        let (elements, bytes) = type.blockLayout
        precondition(
            count >= 0 && count % elements == 0 && blocks.count == count / elements * bytes,
            "\(count) values of \(type.name) need \(count / elements) blocks of \(bytes) bytes, given \(blocks.count) bytes"
        )
        guard count > 0 else { return }
        let p = blocks.bindMemory(to: UInt8.self).baseAddress!
        let n = count / elements
        switch type {
        case .f32:
            for i in 0..<n { out[i] = Float(bitPattern: u32(p + 4 * i)) }
        case .f16:
            for i in 0..<n { out[i] = HalfPrecision.float(fromBits: u16(p + 2 * i)) }
        case .bf16:
            for i in 0..<n { out[i] = Float(bitPattern: UInt32(u16(p + 2 * i)) << 16) }
        case .f64:
            for i in 0..<n {
                out[i] = Float(Double(bitPattern: UInt64(u32(p + 8 * i)) | UInt64(u32(p + 8 * i + 4)) << 32))
            }
        case .q8_0: for b in 0..<n { q8_0(p + 34 * b, out + 32 * b) }
        case .q4_0: for b in 0..<n { q4_0(p + 18 * b, out + 32 * b) }
        case .q4_1: for b in 0..<n { q4_1(p + 20 * b, out + 32 * b) }
        case .q5_0: for b in 0..<n { q5_0(p + 22 * b, out + 32 * b) }
        case .q5_1: for b in 0..<n { q5_1(p + 24 * b, out + 32 * b) }
        case .q2_K: for b in 0..<n { q2_K(p + 84 * b, out + 256 * b) }
        case .q3_K: for b in 0..<n { q3_K(p + 110 * b, out + 256 * b) }
        case .q4_K: for b in 0..<n { q4_K(p + 144 * b, out + 256 * b) }
        case .q5_K: for b in 0..<n { q5_K(p + 176 * b, out + 256 * b) }
        case .q6_K: for b in 0..<n { q6_K(p + 210 * b, out + 256 * b) }
        default: preconditionFailure("supports(_:) and this switch list the same types")
        }
    }

    // MARK: Fields

    @inline(__always)
    private static func u16(_ p: UnsafePointer<UInt8>) -> UInt16 { UInt16(p[0]) | UInt16(p[1]) << 8 }

    @inline(__always)
    private static func u32(_ p: UnsafePointer<UInt8>) -> UInt32 {
        UInt32(p[0]) | UInt32(p[1]) << 8 | UInt32(p[2]) << 16 | UInt32(p[3]) << 24
    }

    /// The f16 at `p` as Float32.
    @inline(__always)
    private static func half(_ p: UnsafePointer<UInt8>) -> Float { HalfPrecision.float(fromBits: u16(p)) }

    // MARK: 32-value blocks

    private static func q8_0(_ p: UnsafePointer<UInt8>, _ y: UnsafeMutablePointer<Float>) {
        let d = half(p)
        for j in 0..<32 { y[j] = Float(Int8(bitPattern: p[2 + j])) * d }
    }

    private static func q4_0(_ p: UnsafePointer<UInt8>, _ y: UnsafeMutablePointer<Float>) {
        let d = half(p)
        let qs = p + 2
        for j in 0..<16 {
            y[j] = d * Float(Int32(qs[j] & 0x0F) - 8)
            y[j + 16] = d * Float(Int32(qs[j] >> 4) - 8)
        }
    }

    private static func q4_1(_ p: UnsafePointer<UInt8>, _ y: UnsafeMutablePointer<Float>) {
        let d = half(p), m = half(p + 2)
        let qs = p + 4
        for j in 0..<16 {
            y[j] = d * Float(qs[j] & 0x0F) + m
            y[j + 16] = d * Float(qs[j] >> 4) + m
        }
    }

    private static func q5_0(_ p: UnsafePointer<UInt8>, _ y: UnsafeMutablePointer<Float>) {
        let d = half(p), qh = u32(p + 2)
        let qs = p + 6
        for j in 0..<16 {
            let lo = Int32(qs[j] & 0x0F) | Int32((qh >> UInt32(j)) & 1) << 4
            let hi = Int32(qs[j] >> 4) | Int32((qh >> UInt32(j + 16)) & 1) << 4
            y[j] = d * Float(lo - 16)
            y[j + 16] = d * Float(hi - 16)
        }
    }

    private static func q5_1(_ p: UnsafePointer<UInt8>, _ y: UnsafeMutablePointer<Float>) {
        let d = half(p), m = half(p + 2), qh = u32(p + 4)
        let qs = p + 8
        for j in 0..<16 {
            let lo = UInt32(qs[j] & 0x0F) | ((qh >> UInt32(j)) & 1) << 4
            let hi = UInt32(qs[j] >> 4) | ((qh >> UInt32(j + 16)) & 1) << 4
            y[j] = d * Float(lo) + m
            y[j + 16] = d * Float(hi) + m
        }
    }

    // MARK: K-quants (256-value super-blocks)

    private static func q2_K(_ p: UnsafePointer<UInt8>, _ y: UnsafeMutablePointer<Float>) {
        let scales = p, qs = p + 16
        let d = half(p + 80), dmin = half(p + 82)
        for h in 0..<2 {
            for k in 0..<4 {
                let shift = UInt8(2 * k)
                for half16 in 0..<2 {
                    let v0 = 128 * h + 32 * k + 16 * half16
                    let s = scales[v0 / 16]
                    let dl = d * Float(s & 0x0F), ml = dmin * Float(s >> 4)
                    let q = qs + 32 * h + 16 * half16
                    for l in 0..<16 { y[v0 + l] = dl * Float((q[l] >> shift) & 3) - ml }
                }
            }
        }
    }

    private static func q3_K(_ p: UnsafePointer<UInt8>, _ y: UnsafeMutablePointer<Float>) {
        let hmask = p, qs = p + 32, packed = p + 96
        let d = half(p + 108)
        for h in 0..<2 {
            for k in 0..<4 {
                let shift = UInt8(2 * k), bit = UInt8(1) << UInt8(4 * h + k)
                for half16 in 0..<2 {
                    let v0 = 128 * h + 32 * k + 16 * half16
                    let s = v0 / 16
                    let low = s < 8 ? packed[s] & 0x0F : packed[s - 8] >> 4
                    let high = (packed[8 + s % 4] >> UInt8(2 * (s / 4))) & 3
                    let dl = d * Float(Int32(low | high << 4) - 32)
                    let q = qs + 32 * h + 16 * half16, m = hmask + 16 * half16
                    for l in 0..<16 {
                        let value = Int32((q[l] >> shift) & 3) - (m[l] & bit != 0 ? 0 : 4)
                        y[v0 + l] = dl * Float(value)
                    }
                }
            }
        }
    }

    /// Sub-block j's 6-bit scale and min of Q4_K and Q5_K from their 12 packed bytes.
    @inline(__always)
    private static func scaleMin(_ s: UnsafePointer<UInt8>, _ j: Int) -> (sc: UInt8, m: UInt8) {
        if j < 4 { return (s[j] & 63, s[j + 4] & 63) }
        return (s[j + 4] & 0x0F | (s[j - 4] >> 6) << 4, s[j + 4] >> 4 | (s[j] >> 6) << 4)
    }

    private static func q4_K(_ p: UnsafePointer<UInt8>, _ y: UnsafeMutablePointer<Float>) {
        let d = half(p), dmin = half(p + 2)
        let packed = p + 4, qs = p + 16
        for g in 0..<4 {
            let q = qs + 32 * g
            let (sc0, m0) = scaleMin(packed, 2 * g), (sc1, m1) = scaleMin(packed, 2 * g + 1)
            let d0 = d * Float(sc0), dm0 = dmin * Float(m0)
            let d1 = d * Float(sc1), dm1 = dmin * Float(m1)
            let out = y + 64 * g
            for l in 0..<32 {
                out[l] = d0 * Float(q[l] & 0x0F) - dm0
                out[l + 32] = d1 * Float(q[l] >> 4) - dm1
            }
        }
    }

    private static func q5_K(_ p: UnsafePointer<UInt8>, _ y: UnsafeMutablePointer<Float>) {
        let d = half(p), dmin = half(p + 2)
        let packed = p + 4, qh = p + 16, qs = p + 48
        for g in 0..<4 {
            let q = qs + 32 * g
            let (sc0, m0) = scaleMin(packed, 2 * g), (sc1, m1) = scaleMin(packed, 2 * g + 1)
            let d0 = d * Float(sc0), dm0 = dmin * Float(m0)
            let d1 = d * Float(sc1), dm1 = dmin * Float(m1)
            let shift0 = UInt8(2 * g), shift1 = UInt8(2 * g + 1)
            let out = y + 64 * g
            for l in 0..<32 {
                let lo = q[l] & 0x0F | ((qh[l] >> shift0) & 1) << 4
                let hi = q[l] >> 4 | ((qh[l] >> shift1) & 1) << 4
                out[l] = d0 * Float(lo) - dm0
                out[l + 32] = d1 * Float(hi) - dm1
            }
        }
    }

    private static func q6_K(_ p: UnsafePointer<UInt8>, _ y: UnsafeMutablePointer<Float>) {
        let ql = p, qh = p + 128, scales = p + 192
        let d = half(p + 208)
        for h in 0..<2 {
            for k in 0..<4 {
                let low = ql + 64 * h + 32 * (k % 2), nibble = UInt8(4 * (k / 2)), shift = UInt8(2 * k)
                let high = qh + 32 * h
                for half16 in 0..<2 {
                    let v0 = 128 * h + 32 * k + 16 * half16
                    let dl = d * Float(Int8(bitPattern: scales[v0 / 16]))
                    for l in (16 * half16)..<(16 * half16 + 16) {
                        let q = (low[l] >> nibble) & 0x0F | ((high[l] >> shift) & 3) << 4
                        y[128 * h + 32 * k + l] = dl * Float(Int32(q) - 32)
                    }
                }
            }
        }
    }
}
