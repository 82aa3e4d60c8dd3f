// Softmax and log-softmax over the last axis, max-subtracted for stability.

import Foundation

extension Tensor {
    /// Softmax over the last axis. Backward: dx = y * (dy - sum(dy * y)).
    public func softmax() -> Tensor {
        let v = shape[rank - 1], n = count / Swift.max(v, 1)
        let out = Tensor.empty(shape)
        let px = data, po = out.data
        parallelChunks(n, grain: 16) { rows in
            for r in rows { softmaxRow(px + r * v, po + r * v, v) }
        }
        Tensor.record(out, [self]) { [self] g in
            let gx = gradBuffer()
            parallelChunks(n, grain: 16) { rows in
                for r in rows {
                    let y = po + r * v, dy = g + r * v, dx = gx + r * v
                    var dot: Float = 0
                    for j in 0..<v { dot += dy[j] * y[j] }
                    for j in 0..<v { dx[j] += y[j] * (dy[j] - dot) }
                }
            }
        }
        return out
    }

    /// log(softmax(x)) over the last axis. Backward: dx = dy - softmax(x) * sum(dy).
    public func logSoftmax() -> Tensor {
        let v = shape[rank - 1], n = count / Swift.max(v, 1)
        let out = Tensor.empty(shape)
        let px = data, po = out.data
        parallelChunks(n, grain: 16) { rows in
            for r in rows {
                let x = px + r * v, y = po + r * v
                let lse = logSumExp(x, v)
                for j in 0..<v { y[j] = x[j] - lse }
            }
        }
        Tensor.record(out, [self]) { [self] g in
            let gx = gradBuffer()
            parallelChunks(n, grain: 16) { rows in
                for r in rows {
                    let y = po + r * v, dy = g + r * v, dx = gx + r * v
                    var total: Float = 0
                    for j in 0..<v { total += dy[j] }
                    for j in 0..<v { dx[j] += dy[j] - fastExp(y[j]) * total }
                }
            }
        }
        return out
    }
}

/// log(sum(exp(x[0..<n]))), max-subtracted.
@inline(__always)
package func logSumExp(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    let m = maxOf(x, n)
    if m == -.infinity { return m }
    return m + Foundation.log(expShiftedSumOnly(x, n, shift: m))
}

/// y = softmax(x) over n entries; x and y may alias.
@inline(__always)
package func softmaxRow(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    let m = maxOf(x, n)
    let inv = 1 / expShiftedSum(x, y, n, shift: m)
    for j in 0..<n { y[j] *= inv }
}
