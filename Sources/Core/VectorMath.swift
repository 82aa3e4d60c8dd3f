// Vectorised exp for the softmax-shaped kernels (attention, cross-entropy, SwiGLU), where a
// scalar libm call per element would cost more than the sgemms around it.
//
// exp(x) = 2^n * e^r with n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2]
// (Cody-Waite split of ln 2), e^r by its Taylor polynomial to degree 7: truncation error
// below 6e-9 relative, so the result is within 2 ulp of the correctly rounded value.
// Inputs below -87.3 (where the result leaves the normal range) give 0, above 88.7 +inf,
// NaN gives NaN. The steps are fused multiply-adds (`fused`): Swift does not contract
// `a * b + c` by itself, and the polynomial is one dependent chain.

import CHost


@usableFromInline let expLow: Float = -87.33654
@usableFromInline let expHigh: Float = 88.72283

/// a * b + c on 8 lanes, one vfmadd in native builds (see CHost/include/vector.h).
@inline(__always)
@usableFromInline
func fused(_ a: SIMD8<Float>, _ b: SIMD8<Float>, _ c: SIMD8<Float>) -> SIMD8<Float> { distill_fma8(a, b, c) }

/// e^r for r in [-ln2/2, ln2/2] (Taylor, degree 7) and the reduction of x to it:
/// returns (e^r, the bits of round(x / ln 2) + 1.5 * 2^23).
@inline(__always)
@usableFromInline
func expReduced(_ c: SIMD8<Float>) -> (poly: SIMD8<Float>, shifted: SIMD8<Float>) {
    // Round to nearest even and convert in one step: adding 1.5 * 2^23 leaves the integer
    // in the low mantissa bits (valid for |n| < 2^22; here |n| <= 128).
    let magic = SIMD8<Float>(repeating: 12_582_912)
    let shifted = fused(c, SIMD8(repeating: 1.442_695_04), magic)
    let n = shifted - magic
    let r = fused(n, SIMD8(repeating: -1.428_606_8e-6), fused(n, SIMD8(repeating: -0.693_145_75), c))
    var p = fused(r, SIMD8(repeating: 1.0 / 40320), SIMD8(repeating: 1.0 / 5040))
    p = fused(r, p, SIMD8(repeating: 1.0 / 720))
    p = fused(r, p, SIMD8(repeating: 1.0 / 120))
    p = fused(r, p, SIMD8(repeating: 1.0 / 24))
    p = fused(r, p, SIMD8(repeating: 1.0 / 6))
    p = fused(r, p, SIMD8(repeating: 0.5))
    p = fused(r, p, SIMD8(repeating: 1))
    p = fused(r, p, SIMD8(repeating: 1))
    return (p, shifted)
}

@inline(__always)
@usableFromInline
func expPoly(_ x: SIMD8<Float>) -> SIMD8<Float> {
    // Lane masks rather than clamped(): the generic min/max are not inlined.
    var c = x
    c.replace(with: expLow, where: x .< expLow)
    c.replace(with: expHigh, where: x .> expHigh)
    let (p, shifted) = expReduced(c)
    // 2^n as 2^(n/2) * 2^(n - n/2), each built in the exponent field: n reaches 128 near
    // the top of the range, where 2^n alone would overflow before p scales it back.
    let ni = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000
    let half = ni &>> 1
    let s1 = unsafeBitCast((half &+ 127) &<< 23, to: SIMD8<Float>.self)
    let s2 = unsafeBitCast((ni &- half &+ 127) &<< 23, to: SIMD8<Float>.self)
    var result = p * s1 * s2
    result.replace(with: 0, where: x .< expLow)
    result.replace(with: .infinity, where: x .> expHigh)
    result.replace(with: .nan, where: x .!= x)
    return result
}

/// exp(x) for x <= 0 (max-shifted softmax scores; correct up to x = 88), equal to
/// `expPoly` there: -inf and anything below -87.3 give exactly 0, NaN stays NaN. Half the lane masks of `expPoly`,
/// and 2^n in one step (n >= -126 is a normal number).
@inline(__always)
@usableFromInline
func expNonPositive(_ x: SIMD8<Float>) -> SIMD8<Float> {
    var c = x
    c.replace(with: expLow, where: x .< expLow)
    let (p, shifted) = expReduced(c)
    let ni = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000
    var result = p * unsafeBitCast((ni &+ 127) &<< 23, to: SIMD8<Float>.self)
    result.replace(with: 0, where: x .< expLow)
    return result
}

/// exp of one value, bit-identical to the vector path.
@inline(__always)
public func fastExp(_ x: Float) -> Float { expPoly(SIMD8(repeating: x))[0] }

/// y[i] = exp((x[i] - shift) * scale) for i in 0..<n (shift at least the largest x, scale
/// > 0), returning Σ y (accumulated in Float, in a fixed order: the result depends only on
/// the inputs). x and y may alias.
@inline(__always)
public func expShiftedSum(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, shift: Float, scale: Float = 1
) -> Float {
    var acc = SIMD8<Float>(repeating: 0)
    var i = 0
    let s = SIMD8<Float>(repeating: shift), k = SIMD8<Float>(repeating: scale)
    while i + 8 <= n {
        let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
        let e = expNonPositive((v - s) * k)
        UnsafeMutableRawPointer(y + i).storeBytes(of: e, as: SIMD8<Float>.self)
        acc += e
        i += 8
    }
    var total = acc.sum()
    while i < n {
        let e = fastExp((x[i] - shift) * scale)
        y[i] = e
        total += e
        i += 1
    }
    return total
}

/// Σ exp(x[i] - shift) without storing the terms.
@inline(__always)
public func expShiftedSumOnly(_ x: UnsafePointer<Float>, _ n: Int, shift: Float) -> Float {
    var acc = SIMD8<Float>(repeating: 0)
    var i = 0
    let s = SIMD8<Float>(repeating: shift)
    while i + 8 <= n {
        acc += expNonPositive(UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self) - s)
        i += 8
    }
    var total = acc.sum()
    while i < n {
        total += fastExp(x[i] - shift)
        i += 1
    }
    return total
}

/// Largest of x[0..<n] (-inf for n == 0).
@inline(__always)
public func maxOf(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var m = SIMD8<Float>(repeating: -.infinity)
    var i = 0
    while i + 8 <= n {
        let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
        m.replace(with: v, where: v .> m)
        i += 8
    }
    var best = horizontalMax(m)
    while i < n {
        if x[i] > best { best = x[i] }
        i += 1
    }
    return best
}

/// The largest lane (the generic `max()` is an out-of-line call).
@inline(__always)
@usableFromInline
func horizontalMax(_ v: SIMD8<Float>) -> Float {
    var a = v.lowHalf
    let b = v.highHalf
    a.replace(with: b, where: b .> a)
    var c = a.lowHalf
    let d = a.highHalf
    c.replace(with: d, where: d .> c)
    return c[0] > c[1] ? c[0] : c[1]
}
