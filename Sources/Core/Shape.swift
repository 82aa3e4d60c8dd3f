// Shape ops: reshape (a view), permute/transpose, slice, concat, split, expand.

import Foundation

extension Tensor {
    /// Same storage under a new shape with the same element count. One axis may be -1.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var resolved = newShape
        if let hole = newShape.firstIndex(of: -1) {
            let known = newShape.enumerated().filter { $0.offset != hole }.map(\.element).reduce(1, *)
            precondition(known > 0 && count % known == 0, "cannot reshape \(shape) to \(newShape)")
            resolved[hole] = count / known
        }
        precondition(Tensor.elementCount(resolved) == count, "cannot reshape \(shape) (\(count) elements) to \(newShape)")
        let out = Tensor(shape: resolved, storage: storage)
        Tensor.record(out, [self]) { [self] g in
            let gx = gradBuffer()
            for i in 0..<count { gx[i] += g[i] }
        }
        return out
    }

    /// Axes reordered: output axis i is input axis `perm[i]`.
    public func permuted(_ perm: [Int]) -> Tensor {
        precondition(perm.sorted() == Array(0..<rank), "permutation \(perm) invalid for rank \(rank)")
        let outShape = perm.map { shape[$0] }
        let out = Tensor.empty(outShape)
        let inStrides = Tensor.strides(shape)
        let srcStrides = perm.map { inStrides[$0] }  // input stride of each output axis
        Tensor.permuteCopy(from: data, to: out.data, outShape: outShape, srcStrides: srcStrides, accumulate: false)
        Tensor.record(out, [self]) { [self] g in
            // The gradient flows back through the inverse permutation.
            Tensor.permuteCopy(from: g, to: gradBuffer(), outShape: outShape, srcStrides: srcStrides, accumulate: true, scatter: true)
        }
        return out
    }

    /// Swaps two axes.
    public func transposed(_ a: Int = -2, _ b: Int = -1) -> Tensor {
        let a = a < 0 ? a + rank : a, b = b < 0 ? b + rank : b
        var perm = Array(0..<rank)
        perm.swapAt(a, b)
        return permuted(perm)
    }

    /// Row-major element strides.
    public static func strides(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            s[i] = acc
            acc *= shape[i]
        }
        return s
    }

    /// Walks the output in row-major order. Gather mode: out[o] (+)= src[offset(o)];
    /// scatter mode (used by backward): dst[offset(o)] (+)= src[o].
    static func permuteCopy(
        from src: UnsafeMutablePointer<Float>, to dst: UnsafeMutablePointer<Float>, outShape: [Int],
        srcStrides: [Int], accumulate: Bool, scatter: Bool = false
    ) {
        let zero = [Int](repeating: 0, count: outShape.count)
        forEachBroadcastRun(outShape, srcStrides, zero) { o, s, _, step, _, n in
            if scatter {
                for j in 0..<n { dst[s + j * step] += src[o + j] }
            } else if accumulate {
                for j in 0..<n { dst[o + j] += src[s + j * step] }
            } else {
                for j in 0..<n { dst[o + j] = src[s + j * step] }
            }
        }
    }

    /// Views the shape as [outer, n, inner] around `axis`.
    func split3(_ axis: Int) -> (outer: Int, n: Int, inner: Int) {
        (
            Tensor.elementCount(Array(shape[..<axis])), shape[axis],
            Tensor.elementCount(Array(shape[(axis + 1)...]))
        )
    }

    func normalizedAxis(_ axis: Int) -> Int {
        let a = axis < 0 ? axis + rank : axis
        precondition(a >= 0 && a < rank, "axis \(axis) out of range for shape \(shape)")
        return a
    }

    /// Elements `start..<end` along `axis`.
    public func slice(axis: Int, _ range: Range<Int>) -> Tensor {
        let axis = normalizedAxis(axis)
        precondition(range.lowerBound >= 0 && range.upperBound <= shape[axis], "slice \(range) out of bounds for axis \(axis) of \(shape)")
        var outShape = shape
        outShape[axis] = range.count
        let out = Tensor.empty(outShape)
        let (outer, n, inner) = split3(axis)
        let m = range.count * inner
        let px = data, po = out.data
        for o in 0..<outer {
            (po + o * m).update(from: px + o * n * inner + range.lowerBound * inner, count: m)
        }
        Tensor.record(out, [self]) { [self] g in
            let gx = gradBuffer()
            for o in 0..<outer {
                let dst = gx + o * n * inner + range.lowerBound * inner, src = g + o * m
                for j in 0..<m { dst[j] += src[j] }
            }
        }
        return out
    }

    /// Splits along `axis` into pieces of the given sizes (which must add up to the axis).
    public func split(axis: Int, sizes: [Int]) -> [Tensor] {
        let a = normalizedAxis(axis)
        precondition(sizes.reduce(0, +) == shape[a], "split sizes \(sizes) do not add up to axis \(a) of \(shape)")
        var start = 0
        return sizes.map { size in
            defer { start += size }
            return slice(axis: a, start..<(start + size))
        }
    }

    /// Joins tensors along `axis`; all other axes must agree.
    public static func concat(_ parts: [Tensor], axis: Int) -> Tensor {
        precondition(!parts.isEmpty, "concat of no tensors")
        let first = parts[0]
        let a = first.normalizedAxis(axis)
        for p in parts {
            precondition(
                p.rank == first.rank && (0..<p.rank).allSatisfy { $0 == a || p.shape[$0] == first.shape[$0] },
                "concat along axis \(a): shape \(p.shape) does not match \(first.shape)")
        }
        var outShape = first.shape
        outShape[a] = parts.reduce(0) { $0 + $1.shape[a] }
        let out = Tensor.empty(outShape)
        let outer = elementCount(Array(first.shape[..<a]))
        let inner = elementCount(Array(first.shape[(a + 1)...]))
        let rowOut = outShape[a] * inner
        var offset = 0
        var offsets: [Int] = []
        for p in parts {
            let m = p.shape[a] * inner
            for o in 0..<outer { (out.data + o * rowOut + offset).update(from: p.data + o * m, count: m) }
            offsets.append(offset)
            offset += m
        }
        record(out, parts) { g in
            for (p, off) in zip(parts, offsets) where p.requiresGrad {
                let m = p.shape[a] * inner
                let gp = p.gradBuffer()
                for o in 0..<outer {
                    let src = g + o * rowOut + off, dst = gp + o * m
                    for j in 0..<m { dst[j] += src[j] }
                }
            }
        }
        return out
    }

    /// Materialises the broadcast of this tensor to `target` (NumPy rules); the backward
    /// sums over the repeated axes.
    public func expanded(to target: [Int]) -> Tensor {
        guard broadcastShape(shape, target) == target else {
            preconditionFailure("cannot expand \(shape) to \(target)")
        }
        let out = Tensor.empty(target)
        let strides = broadcastStrides(shape, in: target)
        Tensor.permuteCopy(from: data, to: out.data, outShape: target, srcStrides: strides, accumulate: false)
        Tensor.record(out, [self]) { [self] g in
            Tensor.permuteCopy(from: g, to: gradBuffer(), outShape: target, srcStrides: strides, accumulate: true, scatter: true)
        }
        return out
    }
}
