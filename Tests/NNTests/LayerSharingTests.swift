import Core
import Foundation
import NN
import Testing

/// Block-wise layer sharing (`layer_repeat`): checked against an independent reference, the
/// same model unrolled into ordinary layers holding copies of the shared weights.
@Suite struct LayerSharingTests {
    func shared() -> (LlamaModel, LlamaModel) {
        var c = tinyConfig(tied: false)
        c.layerRepeat = 2
        var rng = RNG(seed: 11)
        let m = LlamaModel(config: c, rng: &rng)
        // Unrolled: 4 ordinary layers, 0 and 1 copies of shared layer 0, 2 and 3 of layer 1.
        var u = c
        u.layerRepeat = 1
        u.numHiddenLayers = 4
        var tensors: [String: Tensor] = [:]
        for (name, p) in m.namedParameters() {
            guard name.hasPrefix("model.layers.") else {
                tensors[name] = Tensor(shape: p.shape, values: p.values)
                continue
            }
            let parts = name.split(separator: ".", maxSplits: 3)
            let i = Int(parts[2])!
            for pass in 0..<2 { tensors["model.layers.\(i * 2 + pass).\(parts[3])"] = Tensor(shape: p.shape, values: p.values) }
        }
        let unrolled = try! LlamaModel(config: u, parameters: tensors)
        for (_, p) in unrolled.namedParameters() { p.requiresGrad = true }
        return (m, unrolled)
    }

    @Test func countsStoreSharedWeightsOnceAndComputeTwice() {
        let (m, u) = shared()
        #expect(m.namedParameters().count == 1 + 2 * 9 + 2)
        #expect(m.config.parameterCount == m.namedParameters().reduce(0) { $0 + $1.1.count })
        #expect(m.config.nonEmbeddingParameterCount * 2 - 32 == u.config.nonEmbeddingParameterCount)
        #expect(m.config.trainingFlopsPerToken(seqLen: 64) == u.config.trainingFlopsPerToken(seqLen: 64))
        #expect(m.config.kvCacheBytesPerToken == u.config.kvCacheBytesPerToken)
        #expect(m.config.effectiveLayers == 4)
    }

    /// Same logits as the unrolled model; each shared weight's gradient is the sum of the
    /// gradients of its two unrolled copies (the weights are used twice, gradients add).
    @Test func forwardAndGradientsEqualTheUnrolledModel() {
        let (m, u) = shared()
        let ids = (0..<24).map { Int32($0 * 13 % 97) }
        let targets = ids.map { ($0 + 5) % 97 }
        let lm = m.loss(ids: ids, targets: targets, batch: 2, length: 12)
        let lu = u.loss(ids: ids, targets: targets, batch: 2, length: 12)
        #expect(abs(lm.values[0] - lu.values[0]) < 1e-6)
        lm.backward()
        lu.backward()
        let ug = Dictionary(uniqueKeysWithValues: u.namedParameters().map { ($0.0, $0.1.grad!.values) })
        for (name, p) in m.namedParameters() {
            let g = p.grad!.values
            let want: [Float]
            if name.hasPrefix("model.layers.") {
                let parts = name.split(separator: ".", maxSplits: 3)
                let i = Int(parts[2])!
                let a = ug["model.layers.\(2 * i).\(parts[3])"]!, b = ug["model.layers.\(2 * i + 1).\(parts[3])"]!
                want = zip(a, b).map { $0 + $1 }
            } else {
                want = ug[name]!
            }
            let scale = max(1, want.map(abs).max() ?? 0)
            #expect(maxDifference(g, want) / scale < 1e-5, "\(name)")
            #expect(g.contains { $0 != 0 }, "\(name) got no gradient")
        }
    }

    @Test func cachedDecodingMatchesTheFullForward() {
        let (m, _) = shared()
        let (b, t) = (1, 20)
        let ids = (0..<t).map { Int32($0 * 31 % 97) }
        let full = GradMode.withoutGrad { m.logits(ids: ids, batch: b, length: t) }
        let cache = KVCache(config: m.config, batch: b, capacity: t)
        #expect(cache.layers.count == 4)
        _ = GradMode.withoutGrad { m.logits(ids: Array(ids[0..<12]), batch: b, length: 12, cache: cache) }
        for i in 12..<t {
            let got = GradMode.withoutGrad { m.logits(ids: [ids[i]], batch: b, length: 1, cache: cache) }
            #expect(maxDifference(got.values, full.slice(axis: 1, i..<(i + 1)).values) < 1e-5, "position \(i)")
        }
    }

    /// `layer_repeat` survives a config.json round trip and is written only when above 1.
    @Test func configRoundTrip() throws {
        var c = tinyConfig()
        let plain = String(decoding: try JSONEncoder().encode(c), as: UTF8.self)
        #expect(!plain.contains("layer_repeat"))
        c.layerRepeat = 3
        let data = try JSONEncoder().encode(c)
        #expect(try JSONDecoder().decode(LlamaConfig.self, from: data).layerRepeat == 3)
        c.layerRepeat = 0
        #expect(c.problems().contains { $0.contains("layer_repeat") })
    }
}
