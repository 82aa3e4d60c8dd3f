// The architecture as a recipe writes it, with Hugging Face LlamaConfig key names; the
// vocabulary comes from the tokenizer. Every property initialiser is the documented default.
//
// Coding: `layer_repeat` (added later) is written only when it is not 1, so every recipe
// written before it keeps its resolved JSON and therefore its fingerprints (finished stages
// stay finished); absent, it reads as 1.

/// The architecture, with Hugging Face LlamaConfig key names. `vocab_size` is not here: it comes
/// from the tokenizer. The defaults make a ~1M-parameter model (plus embeddings).
package struct ModelSettings: Codable, Sendable, Equatable {
    /// Default 128.
    package var hiddenSize: Int = 128
    /// SwiGLU width. Default 384.
    package var intermediateSize: Int = 384
    /// Default 4.
    package var numHiddenLayers: Int = 4
    /// Default 4.
    package var numAttentionHeads: Int = 4
    /// Default: num_attention_heads (no grouping); must divide num_attention_heads.
    package var numKeyValueHeads: Int = 4
    /// Default: hidden_size / num_attention_heads; must be even (rotary embeddings).
    package var headDim: Int = 32
    /// Default 1e-5, > 0.
    package var rmsNormEps: Double = 1e-5
    /// Default 10000, > 0.
    package var ropeTheta: Double = 10000
    /// Default true.
    package var tieWordEmbeddings: Bool = true
    /// Longest sequence the model accepts. Default 2048.
    package var maxPositionEmbeddings: Int = 2048
    /// Std of the normal initialisation. Default 0.02, > 0.
    package var initializerRange: Double = 0.02
    /// Runs of each layer in a row with shared weights (MobileLLM-style block sharing), >= 1.
    /// Default 1 (no sharing). Not exportable to Hugging Face when above 1.
    package var layerRepeat: Int = 1

    package init() {}

    package enum CodingKeys: String, CodingKey, CaseIterable {
        case hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads", headDim = "head_dim", rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta", tieWordEmbeddings = "tie_word_embeddings"
        case maxPositionEmbeddings = "max_position_embeddings", initializerRange = "initializer_range"
        case layerRepeat = "layer_repeat"
    }

    /// The full model configuration once the tokenizer fixes the vocabulary.
    package func llamaConfig(vocabSize: Int, bosTokenId: Int? = nil, eosTokenId: Int? = nil) -> LlamaConfig {
        LlamaConfig(
            vocabSize: vocabSize, hiddenSize: hiddenSize, intermediateSize: intermediateSize,
            numHiddenLayers: numHiddenLayers, numAttentionHeads: numAttentionHeads, numKeyValueHeads: numKeyValueHeads,
            headDim: headDim, rmsNormEps: rmsNormEps, ropeTheta: ropeTheta, tieWordEmbeddings: tieWordEmbeddings,
            maxPositionEmbeddings: maxPositionEmbeddings, initializerRange: initializerRange,
            bosTokenId: bosTokenId, eosTokenId: eosTokenId, layerRepeat: layerRepeat)
    }
}

extension ModelSettings {
    package init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
        numHiddenLayers = try c.decode(Int.self, forKey: .numHiddenLayers)
        numAttentionHeads = try c.decode(Int.self, forKey: .numAttentionHeads)
        numKeyValueHeads = try c.decode(Int.self, forKey: .numKeyValueHeads)
        headDim = try c.decode(Int.self, forKey: .headDim)
        rmsNormEps = try c.decode(Double.self, forKey: .rmsNormEps)
        ropeTheta = try c.decode(Double.self, forKey: .ropeTheta)
        tieWordEmbeddings = try c.decode(Bool.self, forKey: .tieWordEmbeddings)
        maxPositionEmbeddings = try c.decode(Int.self, forKey: .maxPositionEmbeddings)
        initializerRange = try c.decode(Double.self, forKey: .initializerRange)
        layerRepeat = try c.decodeIfPresent(Int.self, forKey: .layerRepeat) ?? 1
    }

    package func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(numKeyValueHeads, forKey: .numKeyValueHeads)
        try c.encode(headDim, forKey: .headDim)
        try c.encode(rmsNormEps, forKey: .rmsNormEps)
        try c.encode(ropeTheta, forKey: .ropeTheta)
        try c.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encode(initializerRange, forKey: .initializerRange)
        if layerRepeat != 1 { try c.encode(layerRepeat, forKey: .layerRepeat) }
    }
}
