// `distill bench kernels`: the core's matmul against raw sgemm, and the fused attention.
// Timings alternate the two contenders in one process so machine noise hits both alike.

import Foundation

public struct KernelBenchResult: Codable, Sendable {
    public struct Matmul: Codable, Sendable {
        public var shape: String
        public var rawGflops: Double
        public var tensorGflops: Double
        /// Tensor API throughput over raw sgemm (target >= 0.9).
        public var ratio: Double
    }
    public struct Attention: Codable, Sendable {
        public var shape: String
        public var forwardMs: Double
        public var forwardBackwardMs: Double
        public var gflops: Double
    }
    public var blas: BLASRuntime
    public var threads: Int
    public var matmul: [Matmul]
    public var attention: Attention
}

public enum KernelBench {
    static func seconds(_ body: () -> Void) -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
    }

    /// Runs the kernel benchmark. `repeats` timed samples per contender, alternating.
    public static func run(repeats: Int = 10, progress: (String) -> Void = { _ in }) -> KernelBenchResult {
        var rng = RNG(seed: 1)
        var matmuls: [KernelBenchResult.Matmul] = []
        for (m, k, n) in [(4096, 256, 768), (4096, 512, 1408)] {
            let a = Tensor.randn([m, k], rng: &rng), w = Tensor.randn([n, k], rng: &rng)
            let c = Tensor.empty([m, n])
            let flops = 2.0 * Double(m * n * k)
            var raw: [Double] = [], api: [Double] = []
            let raw1 = {
                BLAS.sgemm(transA: false, transB: true, m: m, n: n, k: k, a: a.data, lda: k, b: w.data, ldb: k, c: c.data, ldc: n)
            }
            let api1 = { _ = GradMode.withoutGrad { Tensor.linear(a, w) } }
            raw1()
            api1()
            for _ in 0..<repeats {
                raw.append(seconds(raw1))
                api.append(seconds(api1))
            }
            let r = flops / median(raw) / 1e9, t = flops / median(api) / 1e9
            matmuls.append(.init(shape: "[\(m)x\(k)]x[\(k)x\(n)]", rawGflops: r, tensorGflops: t, ratio: t / r))
            progress(String(format: "matmul [%dx%d]x[%dx%d]: raw %.1f GFLOP/s, Tensor %.1f GFLOP/s (%.2f)", m, k, k, n, r, t, t / r))
        }

        let (b, t, h, g, d) = (16, 256, 8, 2, 32)
        let q = Tensor.randn([b, t, h, d], rng: &rng, requiresGrad: true)
        let k = Tensor.randn([b, t, g, d], rng: &rng, requiresGrad: true)
        let v = Tensor.randn([b, t, g, d], rng: &rng, requiresGrad: true)
        let seed = Tensor.randn([b, t, h, d], rng: &rng)
        var fwd: [Double] = [], both: [Double] = []
        let fwd1 = { _ = GradMode.withoutGrad { Tensor.attention(q: q, k: k, v: v) } }
        let both1 = {
            let o = Tensor.attention(q: q, k: k, v: v)
            o.backward(seed: seed)
        }
        fwd1()
        both1()
        for _ in 0..<repeats {
            fwd.append(seconds(fwd1))
            both.append(seconds(both1))
        }
        // Dense-equivalent FLOPs: QKᵀ and PV forward, four products backward.
        let flops = 2.0 * Double(b * h * t * t * d) * 6
        let attn = KernelBenchResult.Attention(
            shape: "B=\(b) T=\(t) H=\(h) G=\(g) D=\(d)", forwardMs: median(fwd) * 1e3, forwardBackwardMs: median(both) * 1e3,
            gflops: flops / median(both) / 1e9)
        progress(String(format: "attention %@: forward %.1f ms, forward+backward %.1f ms", attn.shape, attn.forwardMs, attn.forwardBackwardMs))
        return KernelBenchResult(blas: BLAS.runtime, threads: Threads.count, matmul: matmuls, attention: attn)
    }
}
