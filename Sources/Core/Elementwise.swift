// Elementwise ops: binary with NumPy broadcasting, scalar ops, unary activations.
//
// Broadcasting is explicit in the kernels: each input is addressed through strides that
// are 0 along broadcast axes, and the backward accumulates through the same strides, so a
// broadcast input's gradient is summed over the axes it was repeated along without a
// separate reduction pass.

import Foundation

/// The broadcast shape of two shapes (NumPy rules), or nil when they are incompatible.
public func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int]? {
    let rank = max(a.count, b.count)
    var out = [Int](repeating: 1, count: rank)
    for i in 0..<rank {
        let da = i < rank - a.count ? 1 : a[i - (rank - a.count)]
        let db = i < rank - b.count ? 1 : b[i - (rank - b.count)]
        if da == db || db == 1 {
            out[i] = da
        } else if da == 1 {
            out[i] = db
        } else {
            return nil
        }
    }
    return out
}

/// Element strides of `shape` viewed inside `outShape` (0 on broadcast axes).
func broadcastStrides(_ shape: [Int], in outShape: [Int]) -> [Int] {
    let rank = outShape.count
    var strides = [Int](repeating: 0, count: rank)
    var s = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) {
        let axis = i + (rank - shape.count)
        strides[axis] = shape[i] == 1 && outShape[axis] != 1 ? 0 : s
        s *= shape[i]
    }
    return strides
}

/// Calls `body(outOffset, aOffset, bOffset, aStep, bStep, length)` for each innermost run of
/// the broadcast iteration over `outShape`; within a run, offsets advance by the steps.
func forEachBroadcastRun(
    _ outShape: [Int], _ aStrides: [Int], _ bStrides: [Int],
    _ body: (Int, Int, Int, Int, Int, Int) -> Void
) {
    let rank = outShape.count
    if rank == 0 {
        body(0, 0, 0, 0, 0, 1)
        return
    }
    let inner = outShape[rank - 1]
    let outer = Tensor.elementCount(Array(outShape.dropLast()))
    if inner == 0 || outer == 0 { return }
    var index = [Int](repeating: 0, count: rank - 1)
    var offA = 0, offB = 0
    for run in 0..<outer {
        body(run * inner, offA, offB, aStrides[rank - 1], bStrides[rank - 1], inner)
        // Odometer increment over the outer axes.
        var axis = rank - 2
        while axis >= 0 {
            index[axis] += 1
            offA += aStrides[axis]
            offB += bStrides[axis]
            if index[axis] < outShape[axis] { break }
            offA -= aStrides[axis] * outShape[axis]
            offB -= bStrides[axis] * outShape[axis]
            index[axis] = 0
            axis -= 1
        }
    }
}

enum BinaryKind { case add, sub, mul, div }

func binary(_ a: Tensor, _ b: Tensor, _ kind: BinaryKind) -> Tensor {
    guard let shape = broadcastShape(a.shape, b.shape) else {
        preconditionFailure("cannot broadcast shapes \(a.shape) and \(b.shape) for \(kind)")
    }
    let out = Tensor.empty(shape)
    let pa = a.data, pb = b.data, po = out.data
    if a.shape == shape && b.shape == shape {
        parallelChunks(out.count, grain: 1 << 15) { r in
            switch kind {
            case .add: for i in r { po[i] = pa[i] + pb[i] }
            case .sub: for i in r { po[i] = pa[i] - pb[i] }
            case .mul: for i in r { po[i] = pa[i] * pb[i] }
            case .div: for i in r { po[i] = pa[i] / pb[i] }
            }
        }
    } else {
        let sa = broadcastStrides(a.shape, in: shape), sb = broadcastStrides(b.shape, in: shape)
        forEachBroadcastRun(shape, sa, sb) { o, ia, ib, da, db, n in
            switch kind {
            case .add: for j in 0..<n { po[o + j] = pa[ia + j * da] + pb[ib + j * db] }
            case .sub: for j in 0..<n { po[o + j] = pa[ia + j * da] - pb[ib + j * db] }
            case .mul: for j in 0..<n { po[o + j] = pa[ia + j * da] * pb[ib + j * db] }
            case .div: for j in 0..<n { po[o + j] = pa[ia + j * da] / pb[ib + j * db] }
            }
        }
    }
    Tensor.record(out, [a, b]) { g in
        let sa = broadcastStrides(a.shape, in: shape), sb = broadcastStrides(b.shape, in: shape)
        let ga = a.requiresGrad ? a.gradBuffer() : nil
        let gb = b.requiresGrad ? b.gradBuffer() : nil
        forEachBroadcastRun(shape, sa, sb) { o, ia, ib, da, db, n in
            for j in 0..<n {
                let gj = g[o + j], x = pa[ia + j * da], y = pb[ib + j * db]
                switch kind {
                case .add:
                    ga?[ia + j * da] += gj
                    gb?[ib + j * db] += gj
                case .sub:
                    ga?[ia + j * da] += gj
                    gb?[ib + j * db] -= gj
                case .mul:
                    ga?[ia + j * da] += gj * y
                    gb?[ib + j * db] += gj * x
                case .div:
                    ga?[ia + j * da] += gj / y
                    gb?[ib + j * db] -= gj * x / (y * y)
                }
            }
        }
    }
    return out
}

extension Tensor {
    public static func + (a: Tensor, b: Tensor) -> Tensor { binary(a, b, .add) }
    public static func - (a: Tensor, b: Tensor) -> Tensor { binary(a, b, .sub) }
    public static func * (a: Tensor, b: Tensor) -> Tensor { binary(a, b, .mul) }
    public static func / (a: Tensor, b: Tensor) -> Tensor { binary(a, b, .div) }

    public static func + (a: Tensor, s: Float) -> Tensor { a.affine(scale: 1, shift: s) }
    public static func - (a: Tensor, s: Float) -> Tensor { a.affine(scale: 1, shift: -s) }
    public static func * (a: Tensor, s: Float) -> Tensor { a.affine(scale: s, shift: 0) }
    public static func / (a: Tensor, s: Float) -> Tensor { a.affine(scale: 1 / s, shift: 0) }
    public static func * (s: Float, a: Tensor) -> Tensor { a.affine(scale: s, shift: 0) }
    public static func + (s: Float, a: Tensor) -> Tensor { a.affine(scale: 1, shift: s) }
    public static func - (s: Float, a: Tensor) -> Tensor { a.affine(scale: -1, shift: s) }
    public static prefix func - (a: Tensor) -> Tensor { a.affine(scale: -1, shift: 0) }

    /// scale * x + shift.
    public func affine(scale: Float, shift: Float) -> Tensor {
        let out = Tensor.empty(shape)
        let px = data, po = out.data
        parallelChunks(count, grain: 1 << 15) { r in for i in r { po[i] = scale * px[i] + shift } }
        Tensor.record(out, [self]) { [self] g in
            let gx = gradBuffer()
            for i in 0..<count { gx[i] += scale * g[i] }
        }
        return out
    }

    /// x ** p elementwise (x > 0 unless p is a whole number).
    public func pow(_ p: Float) -> Tensor {
        let out = Tensor.empty(shape)
        let px = data, po = out.data
        for i in 0..<count { po[i] = Foundation.pow(px[i], p) }
        Tensor.record(out, [self]) { [self] g in
            let gx = gradBuffer()
            for i in 0..<count { gx[i] += g[i] * p * Foundation.pow(px[i], p - 1) }
        }
        return out
    }
}

// MARK: - Unary

/// Pointwise functions whose derivative is computed from the input x and output y.
public enum UnaryKind: String, Sendable, CaseIterable {
    case exp, log, sqrt, rsqrt, relu, gelu, geluTanh, silu, sigmoid, tanh, neg

    @inline(__always)
    func forward(_ x: Float) -> Float {
        switch self {
        case .exp: return Foundation.exp(x)
        case .log: return Foundation.log(x)
        case .sqrt: return x.squareRoot()
        case .rsqrt: return 1 / x.squareRoot()
        case .relu: return x > 0 ? x : 0
        case .gelu: return 0.5 * x * (1 + erf(x * 0.70710678118654752))
        case .geluTanh:
            let u = 0.79788456080286536 * (x + 0.044715 * x * x * x)
            return 0.5 * x * (1 + Foundation.tanh(u))
        case .silu: return x / (1 + Foundation.exp(-x))
        case .sigmoid: return 1 / (1 + Foundation.exp(-x))
        case .tanh: return Foundation.tanh(x)
        case .neg: return -x
        }
    }

    /// dy/dx at x (with y = forward(x) given to save recomputation).
    @inline(__always)
    func derivative(_ x: Float, _ y: Float) -> Float {
        switch self {
        case .exp: return y
        case .log: return 1 / x
        case .sqrt: return 0.5 / y
        case .rsqrt: return -0.5 * y * y * y
        case .relu: return x > 0 ? 1 : 0
        case .gelu:
            // d/dx [x Phi(x)] = Phi(x) + x phi(x)
            let cdf = 0.5 * (1 + erf(x * 0.70710678118654752))
            let pdf = 0.39894228040143268 * Foundation.exp(-0.5 * x * x)
            return cdf + x * pdf
        case .geluTanh:
            let u = 0.79788456080286536 * (x + 0.044715 * x * x * x)
            let t = Foundation.tanh(u)
            let du = 0.79788456080286536 * (1 + 3 * 0.044715 * x * x)
            return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du
        case .silu:
            let s = 1 / (1 + Foundation.exp(-x))
            return s * (1 + x * (1 - s))
        case .sigmoid: return y * (1 - y)
        case .tanh: return 1 - y * y
        case .neg: return -1
        }
    }
}

extension Tensor {
    public func unary(_ kind: UnaryKind) -> Tensor {
        let out = Tensor.empty(shape)
        let px = data, po = out.data
        parallelChunks(count, grain: 1 << 13) { r in for i in r { po[i] = kind.forward(px[i]) } }
        Tensor.record(out, [self]) { [self] g in
            let gx = gradBuffer()
            parallelChunks(count, grain: 1 << 13) { r in
                for i in r { gx[i] += g[i] * kind.derivative(px[i], po[i]) }
            }
        }
        return out
    }

    public func exp() -> Tensor { unary(.exp) }
    public func log() -> Tensor { unary(.log) }
    public func sqrt() -> Tensor { unary(.sqrt) }
    public func rsqrt() -> Tensor { unary(.rsqrt) }
    public func relu() -> Tensor { unary(.relu) }
    /// Exact GELU, x * Phi(x) (PyTorch's default).
    public func gelu() -> Tensor { unary(.gelu) }
    /// GELU with the tanh approximation (PyTorch's approximate="tanh").
    public func geluTanh() -> Tensor { unary(.geluTanh) }
    public func silu() -> Tensor { unary(.silu) }
    public func sigmoid() -> Tensor { unary(.sigmoid) }
    public func tanh() -> Tensor { unary(.tanh) }
}
