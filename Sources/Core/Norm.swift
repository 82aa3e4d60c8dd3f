// Fused RMSNorm and SwiGLU: one pass forward, one pass backward, nothing materialised but
// the per-row inverse RMS.

import Foundation

extension Tensor {
    /// RMSNorm over the last axis (Hugging Face LlamaRMSNorm):
    /// y = w * x / sqrt(mean(x²) + eps). x [..., C], weight [C].
    ///
    /// Backward, with r = 1/sqrt(mean(x²)+eps) per row:
    ///   dw += Σ_rows dy * x * r
    ///   dx = r * (w*dy) - x * r³ * mean(w*dy*x)
    public static func rmsNorm(_ x: Tensor, weight: Tensor, eps: Float) -> Tensor {
        let c = x.shape[x.rank - 1]
        precondition(weight.shape == [c], "rmsNorm weight \(weight.shape) does not match last axis of \(x.shape)")
        let n = x.count / Swift.max(c, 1)
        let out = Tensor.empty(x.shape)
        let rstd = Tensor.empty([n])
        let px = x.data, pw = weight.data, po = out.data, pr = rstd.data
        parallelChunks(n, grain: 8) { rows in
            for r in rows { pr[r] = rmsNormRow(px + r * c, pw, po + r * c, c, eps: eps) }
        }
        record(out, [x, weight]) { g in
            let pr = rstd.data  // the closure owns rstd: its buffer must not return to the pool
            if x.requiresGrad {
                let gx = x.gradBuffer()
                parallelChunks(n, grain: 8) { rows in
                    for r in rows {
                        let xr = px + r * c, dy = g + r * c, dx = gx + r * c
                        let inv = pr[r]
                        var dot: Float = 0
                        for j in 0..<c { dot += pw[j] * dy[j] * xr[j] }
                        let k = inv * inv * inv * dot / Float(c)
                        for j in 0..<c { dx[j] += inv * pw[j] * dy[j] - xr[j] * k }
                    }
                }
            }
            if weight.requiresGrad {
                // Column sums over rows, per-thread partials combined in a fixed order.
                let gw = weight.gradBuffer()
                let parts = Swift.min(Threads.count, Swift.max(1, n / 64))
                let partial = Tensor.zeros([parts, c])
                let per = (n + parts - 1) / parts
                parallelChunks(parts) { ps in
                    for p in ps {
                        let acc = partial.data + p * c
                        for r in (p * per)..<Swift.min(n, (p + 1) * per) {
                            let xr = px + r * c, dy = g + r * c, inv = pr[r]
                            for j in 0..<c { acc[j] += dy[j] * xr[j] * inv }
                        }
                    }
                }
                for p in 0..<parts { for j in 0..<c { gw[j] += partial.data[p * c + j] } }
            }
        }
        return out
    }

    /// silu(gate) * up, the SwiGLU gate of the Llama MLP. gate, up [..., F].
    public static func swiglu(gate: Tensor, up: Tensor) -> Tensor {
        precondition(gate.shape == up.shape, "swiglu gate \(gate.shape) and up \(up.shape) differ")
        let out = Tensor.empty(gate.shape)
        let count = out.count
        let pg = gate.data, pu = up.data, po = out.data
        parallelChunks(count, grain: 1 << 13) { r in
            swigluRow(pg + r.lowerBound, pu + r.lowerBound, po + r.lowerBound, r.count)
        }
        record(out, [gate, up]) { g in
            let gg = gate.requiresGrad ? gate.gradBuffer() : nil
            let gu = up.requiresGrad ? up.gradBuffer() : nil
            // d/dgate = up * s * (1 + gate * (1 - s)), d/dup = silu(gate), s = sigmoid(gate).
            // A missing gradient buffer is written to scratch so the loop stays branch-free.
            let scratch = (gg == nil || gu == nil) ? Tensor.empty([count]) : nil
            let dGate = gg ?? scratch!.data, dUp = gu ?? scratch!.data
            parallelChunks(count, grain: 1 << 13) { r in
                var i = r.lowerBound
                while i + 8 <= r.upperBound {
                    let x = UnsafeRawPointer(pg + i).loadUnaligned(as: SIMD8<Float>.self)
                    let u = UnsafeRawPointer(pu + i).loadUnaligned(as: SIMD8<Float>.self)
                    let gi = UnsafeRawPointer(g + i).loadUnaligned(as: SIMD8<Float>.self)
                    let s = 1 / (1 + expPoly(-x))
                    let dg = UnsafeMutableRawPointer(dGate + i), du = UnsafeMutableRawPointer(dUp + i)
                    du.storeBytes(of: du.loadUnaligned(as: SIMD8<Float>.self) + gi * x * s, as: SIMD8<Float>.self)
                    dg.storeBytes(
                        of: dg.loadUnaligned(as: SIMD8<Float>.self) + gi * u * s * (1 + x * (1 - s)), as: SIMD8<Float>.self)
                    i += 8
                }
                while i < r.upperBound {
                    let x = pg[i]
                    let s = 1 / (1 + fastExp(-x))
                    dUp[i] += g[i] * x * s
                    dGate[i] += g[i] * pu[i] * s * (1 + x * (1 - s))
                    i += 1
                }
            }
        }
        return out
    }

    /// silu(gate) * up where each row of `gateUp` [..., 2F] holds gate then up, as a fused
    /// gate/up projection produces them -> [..., F]. Same derivatives as `swiglu(gate:up:)`.
    public static func swiglu(gateUp: Tensor) -> Tensor {
        let f2 = gateUp.shape[gateUp.rank - 1]
        precondition(f2 % 2 == 0, "swiglu(gateUp:) needs an even last axis, got \(gateUp.shape)")
        let f = f2 / 2, n = gateUp.count / Swift.max(f2, 1)
        let out = Tensor.empty(Array(gateUp.shape.dropLast()) + [f])
        let px = gateUp.data, po = out.data
        parallelChunks(n, grain: 4) { rows in
            for r in rows { swigluRow(px + r * f2, px + r * f2 + f, po + r * f, f) }
        }
        record(out, [gateUp]) { dy in
            let dx = gateUp.gradBuffer()
            parallelChunks(n, grain: 4) { rows in
                for r in rows {
                    let g = px + r * f2, u = g + f, dg = dx + r * f2, du = dg + f, d = dy + r * f
                    var i = 0
                    while i + 8 <= f {
                        let x = UnsafeRawPointer(g + i).loadUnaligned(as: SIMD8<Float>.self)
                        let up = UnsafeRawPointer(u + i).loadUnaligned(as: SIMD8<Float>.self)
                        let gi = UnsafeRawPointer(d + i).loadUnaligned(as: SIMD8<Float>.self)
                        let s = 1 / (1 + expPoly(-x))
                        let pdu = UnsafeMutableRawPointer(du + i), pdg = UnsafeMutableRawPointer(dg + i)
                        pdu.storeBytes(of: pdu.loadUnaligned(as: SIMD8<Float>.self) + gi * x * s, as: SIMD8<Float>.self)
                        pdg.storeBytes(
                            of: pdg.loadUnaligned(as: SIMD8<Float>.self) + gi * up * s * (1 + x * (1 - s)),
                            as: SIMD8<Float>.self)
                        i += 8
                    }
                    while i < f {
                        let s = 1 / (1 + fastExp(-g[i]))
                        du[i] += d[i] * g[i] * s
                        dg[i] += d[i] * u[i] * s * (1 + g[i] * (1 - s))
                        i += 1
                    }
                }
            }
        }
        return out
    }
}
