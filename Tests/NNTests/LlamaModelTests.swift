import Core
import Foundation
import NN
import Testing

func tinyConfig(tied: Bool = true) -> LlamaConfig {
    LlamaConfig(
        vocabSize: 97, hiddenSize: 32, intermediateSize: 48, numHiddenLayers: 2, numAttentionHeads: 4,
        numKeyValueHeads: 2, tieWordEmbeddings: tied, maxPositionEmbeddings: 256, initializerRange: 0.2)
}

func maxDifference(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { abs($0 - $1) }.max() ?? 0 }

@Suite struct LlamaModelTests {
    @Test func countsMatchTheParameters() {
        for tied in [true, false] {
            let c = tinyConfig(tied: tied)
            var rng = RNG(seed: 1)
            let m = LlamaModel(config: c, rng: &rng)
            #expect(m.namedParameters().reduce(0) { $0 + $1.1.count } == c.parameterCount)
            // Per layer: q 32*32, k and v 16*32 each, o 32*32, MLP 3*32*48, two norms of 32.
            let perLayer = 32 * 32 * 2 + 16 * 32 * 2 + 3 * 32 * 48 + 2 * 32
            #expect(c.nonEmbeddingParameterCount == 2 * perLayer + 32)
            #expect(c.embeddingParameterCount == 97 * 32 * (tied ? 1 : 2))
        }
    }

    /// Matrix weights per token: per layer q 32*32, k and v 16*32, o 32*32, MLP 3*32*48,
    /// so 2 * 7680 + the output head 97*32 = 18464. Attention: 2 * L * H * D * T
    /// = 2 * 2 * 4 * 8 * 16 = 2048. Full training: 6 * (18464 + 2048) = 123072. Adapters
    /// with 1000 weights on the frozen base: 123072 - 2 * 18464 + 6 * 1000 = 92144.
    @Test func trainingFlopsCountWeightGradientsOnlyForTrainedMatrices() {
        let c = tinyConfig()
        #expect(c.trainingFlopsPerToken(seqLen: 16) == 123_072)
        #expect(c.adapterTrainingFlopsPerToken(seqLen: 16, adapterParameters: 1000) == 92_144)
    }

    @Test func everyParameterReceivesAGradient() {
        var rng = RNG(seed: 2)
        let m = LlamaModel(config: tinyConfig(tied: false), rng: &rng)
        let ids = (0..<16).map { Int32($0 * 7 % 97) }
        m.loss(ids: ids, targets: ids.map { ($0 + 1) % 97 }, batch: 2, length: 8).backward()
        for (name, p) in m.namedParameters() {
            let g = p.grad?.values ?? []
            #expect(g.contains { $0 != 0 }, "\(name) got no gradient")
        }
    }

    /// Prefill of a prefix, then one token at a time through the KV cache, gives the
    /// logits of the full uncached forward at every position.
    @Test func cachedLogitsEqualUncachedLogits() {
        var rng = RNG(seed: 3)
        let c = tinyConfig()
        let m = LlamaModel(config: c, rng: &rng)
        let (b, t) = (2, 150)
        let ids = (0..<(b * t)).map { _ in Int32(rng.next() % 97) }
        let full = GradMode.withoutGrad { m.logits(ids: ids, batch: b, length: t) }  // [B, T, V]
        let cache = KVCache(config: c, batch: b, capacity: t)
        let prefix = 70
        func rows(_ range: Range<Int>) -> [Int32] { (0..<b).flatMap { r in range.map { ids[r * t + $0] } } }
        var got = GradMode.withoutGrad { m.logits(ids: rows(0..<prefix), batch: b, length: prefix, cache: cache) }
        #expect(maxDifference(got.values, full.slice(axis: 1, 0..<prefix).values) < 1e-5)
        for i in prefix..<t {
            got = GradMode.withoutGrad { m.logits(ids: rows(i..<(i + 1)), batch: b, length: 1, cache: cache) }
            let want = full.slice(axis: 1, i..<(i + 1))
            #expect(maxDifference(got.values, want.values) < 1e-5, "position \(i)")
        }
    }

    /// Left-padded batched generation equals generating each prompt alone.
    @Test("batched generation equals one prompt at a time", arguments: [0.0, 0.9])
    func batchedEqualsSingle(temperature: Double) {
        var rng = RNG(seed: 4)
        let m = LlamaModel(config: tinyConfig(), rng: &rng)
        let prompts: [[Int32]] = [[5, 9, 13, 2, 40, 41], [7], [90, 3, 3]]
        let s = SamplingConfig(maxTokens: 12, temperature: temperature, topK: 20, topP: 0.9, seed: 11)
        let batched = m.generate(prompts: prompts, sampling: s)
        for (r, p) in prompts.enumerated() {
            var alone = s
            alone.seed = s.seed
            // Row r of a batch samples from the generator of row r: compare against a batch
            // of one whose only row uses that generator by padding the list with dummies.
            let single = m.generate(prompts: Array(repeating: [1], count: r) + [p], sampling: alone)[r]
            #expect(single == batched[r], "row \(r)")
        }
        #expect(batched.allSatisfy { $0.count == 12 })
    }

    @Test func stopTokensEndARow() {
        var rng = RNG(seed: 5)
        let m = LlamaModel(config: tinyConfig(), rng: &rng)
        let greedy = m.generate(prompts: [[1, 2, 3]], sampling: SamplingConfig(maxTokens: 10, temperature: 0))[0]
        let stop = greedy[3]
        let cut = m.generate(prompts: [[1, 2, 3]], sampling: SamplingConfig(maxTokens: 10, temperature: 0, stopTokens: [stop]))[0]
        #expect(cut == Array(greedy[...greedy.firstIndex(of: stop)!]))
    }

    @Test func mismatchedTensorsAreListedTogether() {
        let c = tinyConfig()
        var tensors: [String: Tensor] = [:]
        for (name, shape) in c.parameterShapes { tensors[name] = Tensor.zeros(shape) }
        tensors["model.norm.weight"] = nil
        tensors["model.layers.0.mlp.up_proj.weight"] = Tensor.zeros([3, 3])
        tensors["model.extra.weight"] = Tensor.zeros([1])
        #expect {
            _ = try LlamaModel(config: c, parameters: tensors)
        } throws: { error in
            let text = "\(error)"
            return text.contains("missing model.norm.weight") && text.contains("up_proj.weight has shape [3, 3]")
                && text.contains("unexpected model.extra.weight")
        }
    }
}
