import Foundation
import NN
import Testing

@Suite struct LlamaConfigTests {
    /// A transformers 5 config.json (rope_theta inside rope_parameters, extra keys ignored).
    @Test func decodesAHuggingFaceConfig() throws {
        let json = """
            {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 512,
             "hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
             "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"},
             "tie_word_embeddings": true, "max_position_embeddings": 256, "hidden_act": "silu"}
            """
        let c = try JSONDecoder().decode(LlamaConfig.self, from: Data(json.utf8))
        #expect(c.headDim == 16)
        #expect(c.ropeTheta == 500000)
        #expect(c.problems().isEmpty)
        let back = try JSONDecoder().decode(LlamaConfig.self, from: JSONEncoder().encode(c))
        #expect(back == c)
    }

    @Test func parameterNamesAreHuggingFaceNames() {
        let c = LlamaConfig(vocabSize: 10, hiddenSize: 8, intermediateSize: 12, numHiddenLayers: 1, numAttentionHeads: 2,
            numKeyValueHeads: 1, tieWordEmbeddings: false)
        let shapes = Dictionary(uniqueKeysWithValues: c.parameterShapes.map { ($0.name, $0.shape) })
        #expect(shapes["model.layers.0.self_attn.k_proj.weight"] == [4, 8])
        #expect(shapes["model.layers.0.mlp.down_proj.weight"] == [8, 12])
        #expect(shapes["lm_head.weight"] == [10, 8])
        #expect(shapes.count == 12)
    }

    @Test func problemsNameTheKey() {
        let c = LlamaConfig(vocabSize: 10, hiddenSize: 8, intermediateSize: 12, numHiddenLayers: 1, numAttentionHeads: 3,
            numKeyValueHeads: 2, headDim: 3)
        let p = c.problems()
        #expect(p.contains { $0.contains("num_key_value_heads") })
        #expect(p.contains { $0.contains("head_dim must be even") })
    }
}
