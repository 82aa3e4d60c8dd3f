// AdamW with decoupled weight decay (Loshchilov and Hutter, 2019), as torch.optim.AdamW
// computes it:
//   p <- p * (1 - lr * wd)                       (only for parameters that decay)
//   m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g²
//   p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

import Core
import Foundation

public struct AdamWConfig: Codable, Sendable, Equatable {
    public var beta1: Double = 0.9
    public var beta2: Double = 0.95
    public var eps: Double = 1e-8
    public var weightDecay: Double = 0.1

    public init(beta1: Double = 0.9, beta2: Double = 0.95, eps: Double = 1e-8, weightDecay: Double = 0.1) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
    }
}

public final class AdamW {
    public struct Slot {
        public let name: String
        public let parameter: Tensor
        public let decays: Bool
        /// First and second moments, same shape as the parameter.
        public let m: Tensor, v: Tensor
    }

    public let config: AdamWConfig
    public private(set) var slots: [Slot]
    /// Updates applied so far (the t of the bias corrections).
    public var step = 0

    /// - decays: whether a parameter (by name) gets weight decay.
    public init(parameters: [(String, Tensor)], config: AdamWConfig, decays: (String) -> Bool) {
        self.config = config
        slots = parameters.filter { $0.1.requiresGrad }.map { name, p in
            Slot(name: name, parameter: p, decays: decays(name), m: Tensor.zeros(p.shape), v: Tensor.zeros(p.shape))
        }
    }

    /// Zeroes every trained parameter's gradient, keeping the buffers.
    public func zeroGrad() { for s in slots { s.parameter.zeroGrad() } }

    /// The global L2 norm of all gradients (accumulated in Double).
    public func gradientNorm() -> Double {
        var total = 0.0
        for s in slots {
            guard let g = s.parameter.grad else { continue }
            var acc: Float = 0
            var part = 0.0
            for i in 0..<g.count {
                acc += g.data[i] * g.data[i]
                if i & 4095 == 4095 {
                    part += Double(acc)
                    acc = 0
                }
            }
            total += part + Double(acc)
        }
        return total.squareRoot()
    }

    /// Scales all gradients by `factor`.
    public func scaleGradients(_ factor: Float) {
        for s in slots {
            guard let g = s.parameter.grad else { continue }
            let p = g.data
            parallelChunks(g.count, grain: 1 << 14) { r in for i in r { p[i] *= factor } }
        }
    }

    /// One update with learning rate `lr`. Parameters without a gradient are left alone.
    public func update(lr: Double) {
        step += 1
        let t = Double(step)
        let b1 = Float(config.beta1), b2 = Float(config.beta2)
        let stepSize = Float(lr / (1 - Foundation.pow(config.beta1, t)))
        let bc2 = Float((1 - Foundation.pow(config.beta2, t)).squareRoot())
        let eps = Float(config.eps)
        for s in slots {
            guard let g = s.parameter.grad else { continue }
            let decay = s.decays ? Float(1 - lr * config.weightDecay) : 1
            let p = s.parameter.data, m = s.m.data, v = s.v.data, gp = g.data
            parallelChunks(s.parameter.count, grain: 1 << 14) { r in
                for i in r {
                    let gi = gp[i]
                    let mi = b1 * m[i] + (1 - b1) * gi
                    let vi = b2 * v[i] + (1 - b2) * gi * gi
                    m[i] = mi
                    v[i] = vi
                    p[i] = p[i] * decay - stepSize * mi / (vi.squareRoot() / bc2 + eps)
                }
            }
        }
    }
}
