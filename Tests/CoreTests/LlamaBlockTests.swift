// The composed check: one Llama decoder layer built from distill's ops against
// transformers' LlamaDecoderLayer (tools/make_fixtures.py, float64), forward and every
// parameter gradient within 1e-4 relative.

import Core
import Foundation
import Testing

struct BlockFixture: Decodable {
    struct Config: Decodable {
        var batch, seqLen, hidden, heads, kvHeads, headDim, intermediate: Int
        var rmsNormEps, ropeTheta: Double
        var positions: [Int]
    }
    var config: Config
    var inputs: [String: FixtureTensor]
    var params: [String: FixtureTensor]
    var upstream: FixtureTensor
    var output: FixtureTensor
    var grads: [String: FixtureTensor]
}

/// RMSNorm -> GQA attention with RoPE -> residual -> RMSNorm -> SwiGLU MLP -> residual.
func llamaBlock(_ x: Tensor, _ p: [String: Tensor], _ c: BlockFixture.Config) -> Tensor {
    let (b, t) = (c.batch, c.seqLen)
    let eps = Float(c.rmsNormEps)
    let positions = c.positions.map(Int32.init)
    let h = Tensor.rmsNorm(x, weight: p["input_layernorm.weight"]!, eps: eps)  // [B, T, C]
    var q = Tensor.linear(h, p["self_attn.q_proj.weight"]!).reshaped([b, t, c.heads, c.headDim])  // [B, T, H, D]
    var k = Tensor.linear(h, p["self_attn.k_proj.weight"]!).reshaped([b, t, c.kvHeads, c.headDim])  // [B, T, G, D]
    let v = Tensor.linear(h, p["self_attn.v_proj.weight"]!).reshaped([b, t, c.kvHeads, c.headDim])  // [B, T, G, D]
    q = Tensor.rope(q, positions: positions, theta: Float(c.ropeTheta))
    k = Tensor.rope(k, positions: positions, theta: Float(c.ropeTheta))
    let attn = Tensor.attention(q: q, k: k, v: v).reshaped([b, t, c.heads * c.headDim])  // [B, T, H*D]
    let x1 = x + Tensor.linear(attn, p["self_attn.o_proj.weight"]!)
    let h2 = Tensor.rmsNorm(x1, weight: p["post_attention_layernorm.weight"]!, eps: eps)
    let gate = Tensor.linear(h2, p["mlp.gate_proj.weight"]!)  // [B, T, F]
    let up = Tensor.linear(h2, p["mlp.up_proj.weight"]!)  // [B, T, F]
    return x1 + Tensor.linear(Tensor.swiglu(gate: gate, up: up), p["mlp.down_proj.weight"]!)
}

@Suite struct LlamaBlockTests {
    @Test("decoder layer forward and all gradients match transformers", arguments: [1, 2])
    func matchesTransformers(threads: Int) {
        let before = Threads.count
        Threads.set(threads)
        defer { Threads.set(before) }
        let f = Fixtures.load(BlockFixture.self, "llama_block.json")
        let x = f.inputs["x"]!.tensor
        x.requiresGrad = true
        let params = f.params.mapValues { t -> Tensor in
            let p = t.tensor
            p.requiresGrad = true
            return p
        }
        let out = llamaBlock(x, params, f.config)
        let fwd = closeness(out.values, f.output.data, atol: 1e-6, rtol: 1e-4)
        #expect(fwd.ratio <= 1, "output[\(fwd.index)] off by \(fwd.ratio)x tolerance")
        out.backward(seed: f.upstream.tensor)
        let all = params.merging(["x": x]) { a, _ in a }
        #expect(Set(f.grads.keys) == Set(all.keys))
        for (name, want) in f.grads {
            let got = all[name]!.grad!
            // Relative to the gradient's scale: 1e-4 of its largest magnitude per element.
            let scale = want.data.map(abs).max()!
            let r = closeness(got.values, want.data, atol: 1e-4 * scale, rtol: 1e-4)
            #expect(r.ratio <= 1, "d[\(name)][\(r.index)] off by \(r.ratio)x tolerance")
        }
    }
}
