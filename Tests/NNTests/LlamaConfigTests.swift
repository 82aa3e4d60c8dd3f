import Core
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

    // MARK: Rope scaling

    static let base = """
        "vocab_size": 512, "hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 2,
        "num_attention_heads": 4, "max_position_embeddings": 131072
        """

    static func decode(_ json: String) throws -> LlamaConfig {
        try JSONDecoder().decode(LlamaConfig.self, from: Data(json.utf8))
    }

    static let llama31 = RopeScaling(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192)

    /// Llama 3.1's settings in transformers 5's spelling and in the older rope_scaling one
    /// (with "rope_type" or "type", rope_theta beside it), all read the same.
    @Test(arguments: [
        #""rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}"#,
        #""rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}"#,
        #""rope_theta": 500000, "rope_scaling": {"type": "llama3", "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 8192}"#,
        // transformers takes rope_scaling over rope_parameters when both are set.
        #""rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_theta": 500000.0}"#,
    ])
    func llama3ScalingIsReadFromEitherSpelling(_ rope: String) throws {
        let c = try Self.decode("{\(Self.base), \(rope)}")
        #expect(c.ropeScaling == Self.llama31)
        #expect(c.ropeTheta == 500000)
        #expect(c.problems().isEmpty)
    }

    /// original_max_position_embeddings: a top-level key wins (transformers' exception for
    /// Phi-3-style configs), then the rope object's, then max_position_embeddings. An empty or
    /// null rope_scaling leaves rope_parameters in charge.
    @Test func originalContextAndEmptyScaling() throws {
        let rope = #""factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0"#
        let top = try Self.decode(
            "{\(Self.base), \"original_max_position_embeddings\": 4096, \"rope_parameters\": {\"rope_type\": \"llama3\", \(rope), \"original_max_position_embeddings\": 8192}}")
        #expect(top.ropeScaling?.originalMaxPositionEmbeddings == 4096)
        let none = try Self.decode("{\(Self.base), \"rope_parameters\": {\"rope_type\": \"llama3\", \(rope)}}")
        #expect(none.ropeScaling?.originalMaxPositionEmbeddings == 131072)
        for empty in ["{}", "null"] {
            let c = try Self.decode(
                "{\(Self.base), \"rope_scaling\": \(empty), \"rope_parameters\": {\"rope_type\": \"llama3\", \(rope), \"rope_theta\": 500000.0}}")
            #expect(c.ropeScaling?.factor == 8 && c.ropeTheta == 500000, "rope_scaling \(empty)")
        }
        let plain = try Self.decode("{\(Self.base), \"rope_scaling\": null}")
        #expect(plain.ropeScaling == nil && plain.ropeTheta == 10000)
    }

    /// Encoding writes transformers 5's form, which decodes back to an equal config; the
    /// scaling takes part in equality and hashing.
    @Test func llama3ScalingRoundTrips() throws {
        var c = LlamaConfig(vocabSize: 10, hiddenSize: 8, intermediateSize: 12, numHiddenLayers: 1, numAttentionHeads: 2,
            ropeTheta: 500000, ropeScaling: Self.llama31)
        let data = try JSONEncoder().encode(c)
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let rope = try #require(json["rope_parameters"] as? [String: Any])
        #expect(rope["rope_type"] as? String == "llama3")
        #expect(rope["factor"] as? Double == 8 && rope["low_freq_factor"] as? Double == 1 && rope["high_freq_factor"] as? Double == 4)
        #expect(rope["original_max_position_embeddings"] as? Int == 8192 && rope["rope_theta"] as? Double == 500000)
        #expect(json["rope_theta"] as? Double == 500000 && json["rope_scaling"] == nil)
        let back = try JSONDecoder().decode(LlamaConfig.self, from: data)
        #expect(back == c && back.hashValue == c.hashValue)
        c.ropeScaling = nil
        #expect(back != c)
        let plain = try JSONSerialization.jsonObject(with: JSONEncoder().encode(c)) as? [String: Any]
        #expect((plain?["rope_parameters"] as? [String: Any])?["rope_type"] as? String == "default")
        #expect((plain?["rope_parameters"] as? [String: Any])?["factor"] == nil)
    }

    /// Every other rope type is refused while decoding, naming the key and the value:
    /// computing it as unscaled rope would silently be another model.
    @Test(arguments: [
        (#""rope_scaling": {"type": "linear", "factor": 2.0}"#, "rope_scaling.type", "linear"),
        (#""rope_scaling": {"rope_type": "dynamic", "factor": 2.0}"#, "rope_scaling.rope_type", "dynamic"),
        (#""rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0}"#, "rope_parameters.rope_type", "yarn"),
        (#""rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0}"#, "rope_parameters.rope_type", "longrope"),
        (#""rope_parameters": {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "high_freq_factor": 4.0}"#, "rope_parameters.low_freq_factor", "missing"),
    ])
    func otherRopeTypesAreRefused(_ rope: String, _ key: String, _ word: String) throws {
        do {
            let c = try Self.decode("{\(Self.base), \(rope)}")
            Issue.record("decoded \(c)")
        } catch let error as RopeConfigError {
            #expect(error.key == key)
            #expect("\(error)".contains(key) && "\(error)".contains(word), "\(error)")
        }
    }

    @Test func meaninglessScalingIsAProblem() throws {
        let c = try Self.decode(
            "{\(Self.base), \"rope_parameters\": {\"rope_type\": \"llama3\", \"factor\": 0.5, \"low_freq_factor\": 4.0, \"high_freq_factor\": 1.0}}")
        let p = c.problems()
        #expect(p.contains { $0.contains("factor must be at least 1") } && p.contains { $0.contains("high_freq_factor") }, "\(p)")
    }
}
