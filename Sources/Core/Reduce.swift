// Reductions over one axis or over everything: sum, mean, max.

import Foundation

extension Tensor {
    /// Sum over `axis` (nil: every element, giving shape []).
    public func sum(axis: Int? = nil, keepDims: Bool = false) -> Tensor { reduce(axis, keepDims, mean: false) }

    /// Mean over `axis` (nil: every element, giving shape []).
    public func mean(axis: Int? = nil, keepDims: Bool = false) -> Tensor { reduce(axis, keepDims, mean: true) }

    private func reducedShape(_ axis: Int?, _ keepDims: Bool) -> (shape: [Int], outer: Int, n: Int, inner: Int) {
        guard let axis else { return (keepDims ? shape.map { _ in 1 } : [], 1, count, 1) }
        let a = normalizedAxis(axis)
        let (outer, n, inner) = split3(a)
        var s = shape
        if keepDims { s[a] = 1 } else { s.remove(at: a) }
        return (s, outer, n, inner)
    }

    private func reduce(_ axis: Int?, _ keepDims: Bool, mean: Bool) -> Tensor {
        let (outShape, outer, n, inner) = reducedShape(axis, keepDims)
        let out = Tensor.empty(outShape)
        let px = data, po = out.data
        let scale: Float = mean ? 1 / Float(Swift.max(n, 1)) : 1
        for o in 0..<outer {
            for i in 0..<inner {
                // Accumulate in Double: sums over many elements stay accurate.
                var acc = 0.0
                for j in 0..<n { acc += Double(px[(o * n + j) * inner + i]) }
                po[o * inner + i] = Float(acc) * scale
            }
        }
        Tensor.record(out, [self]) { [self] g in
            let gx = gradBuffer()
            for o in 0..<outer {
                for j in 0..<n {
                    let row = gx + (o * n + j) * inner, grow = g + o * inner
                    for i in 0..<inner { row[i] += grow[i] * scale }
                }
            }
        }
        return out
    }

    /// Maximum over `axis` (nil: every element). The gradient goes to the first maximum.
    public func max(axis: Int? = nil, keepDims: Bool = false) -> Tensor {
        let (outShape, outer, n, inner) = reducedShape(axis, keepDims)
        precondition(n > 0, "max over an empty axis of \(shape)")
        let out = Tensor.empty(outShape)
        var argmax = [Int](repeating: 0, count: outer * inner)
        let px = data, po = out.data
        for o in 0..<outer {
            for i in 0..<inner {
                var best = px[o * n * inner + i], at = 0
                for j in 1..<n where px[(o * n + j) * inner + i] > best {
                    best = px[(o * n + j) * inner + i]
                    at = j
                }
                po[o * inner + i] = best
                argmax[o * inner + i] = (o * n + at) * inner + i
            }
        }
        Tensor.record(out, [self]) { [self] g in
            let gx = gradBuffer()
            for (k, src) in argmax.enumerated() { gx[src] += g[k] }
        }
        return out
    }
}
