// The Llama-family model configuration. Field names map 1:1 onto Hugging Face
// config.json keys (LlamaConfig), so a config.json decodes into this type and back.
//
// Rotary embeddings are read as transformers 5 reads them (PreTrainedConfig's rope
// standardisation in modeling_rope_utils.py): the rope settings are the `rope_scaling` object
// when it is set (older configs) and `rope_parameters` otherwise; the type is its "rope_type"
// (or the older "type"), "default" when absent; rope_theta comes from that object, else the
// top-level key, else 10000. Type "llama3" reads factor, low_freq_factor and high_freq_factor
// (all required) and original_max_position_embeddings (the top-level key first, as transformers
// does, then the object's, then max_position_embeddings). Any other type (linear, dynamic,
// yarn, longrope, ...) is refused while decoding: computing it as unscaled rope would be a
// different model. Encoding writes transformers 5's form: rope_theta, and rope_parameters with
// rope_type "default", or "llama3" with its four parameters.

import Core
import Foundation

public struct LlamaConfig: Codable, Sendable, Equatable, Hashable {
    /// vocab_size
    public var vocabSize: Int
    /// hidden_size (C)
    public var hiddenSize: Int
    /// intermediate_size (F), the SwiGLU MLP width
    public var intermediateSize: Int
    /// num_hidden_layers
    public var numHiddenLayers: Int
    /// num_attention_heads (H)
    public var numAttentionHeads: Int
    /// num_key_value_heads (G); H must be a multiple of G
    public var numKeyValueHeads: Int
    /// head_dim (D); Hugging Face defaults it to hidden_size / num_attention_heads
    public var headDim: Int
    /// rms_norm_eps
    public var rmsNormEps: Double
    /// rope_theta (transformers 5 writes it inside rope_parameters; both are read)
    public var ropeTheta: Double
    /// Llama 3's rope scaling (rope_type "llama3" in rope_parameters or rope_scaling); nil is
    /// unscaled ("default") rope.
    public var ropeScaling: RopeScaling?
    /// tie_word_embeddings: lm_head shares model.embed_tokens.weight
    public var tieWordEmbeddings: Bool
    /// max_position_embeddings
    public var maxPositionEmbeddings: Int
    /// initializer_range: std of the normal initialisation
    public var initializerRange: Double
    public var bosTokenId: Int?
    public var eosTokenId: Int?
    /// layer_repeat (distill's extension, absent from Hugging Face configs): each stored
    /// layer runs this many times in a row with the same weights (block-wise sharing as in
    /// MobileLLM). 1 is an ordinary Llama; more multiplies depth and compute, not parameters.
    public var layerRepeat: Int = 1

    public init(
        vocabSize: Int, hiddenSize: Int, intermediateSize: Int, numHiddenLayers: Int, numAttentionHeads: Int,
        numKeyValueHeads: Int? = nil, headDim: Int? = nil, rmsNormEps: Double = 1e-5, ropeTheta: Double = 10000,
        ropeScaling: RopeScaling? = nil,
        tieWordEmbeddings: Bool = true, maxPositionEmbeddings: Int = 2048, initializerRange: Double = 0.02,
        bosTokenId: Int? = nil, eosTokenId: Int? = nil, layerRepeat: Int = 1
    ) {
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads
        self.numKeyValueHeads = numKeyValueHeads ?? numAttentionHeads
        self.headDim = headDim ?? hiddenSize / max(numAttentionHeads, 1)
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling
        self.tieWordEmbeddings = tieWordEmbeddings
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.initializerRange = initializerRange
        self.bosTokenId = bosTokenId
        self.eosTokenId = eosTokenId
        self.layerRepeat = layerRepeat
    }

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads", headDim = "head_dim", rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta", ropeParameters = "rope_parameters", tieWordEmbeddings = "tie_word_embeddings"
        case maxPositionEmbeddings = "max_position_embeddings", initializerRange = "initializer_range"
        case bosTokenId = "bos_token_id", eosTokenId = "eos_token_id", layerRepeat = "layer_repeat"
        case ropeScaling = "rope_scaling", originalMaxPositionEmbeddings = "original_max_position_embeddings"
    }

    /// Any key of an object, to see whether it has any.
    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// A rope_parameters or rope_scaling object: the keys distill reads (others are ignored).
    struct RopeParameters: Codable {
        var ropeType: String?
        var type: String?
        var ropeTheta: Double?
        var factor: Double?
        var lowFreqFactor: Double?
        var highFreqFactor: Double?
        var originalMaxPositionEmbeddings: Int?
        enum CodingKeys: String, CodingKey {
            case ropeType = "rope_type", type, ropeTheta = "rope_theta", factor, lowFreqFactor = "low_freq_factor"
            case highFreqFactor = "high_freq_factor", originalMaxPositionEmbeddings = "original_max_position_embeddings"
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let heads = try c.decode(Int.self, forKey: .numAttentionHeads)
        let hidden = try c.decode(Int.self, forKey: .hiddenSize)
        let maxPositions = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 2048
        // transformers takes rope_scaling when it is a non-empty object, else rope_parameters.
        var key = "rope_parameters"
        var rope = try c.decodeIfPresent(RopeParameters.self, forKey: .ropeParameters)
        if c.contains(.ropeScaling), try !c.decodeNil(forKey: .ropeScaling),
            try !c.nestedContainer(keyedBy: AnyKey.self, forKey: .ropeScaling).allKeys.isEmpty
        {
            key = "rope_scaling"
            rope = try c.decode(RopeParameters.self, forKey: .ropeScaling)
        }
        let type = rope?.ropeType ?? rope?.type ?? "default"
        var scaling: RopeScaling?
        switch type {
        case "default": break
        case "llama3":
            func required(_ value: Double?, _ name: String) throws -> Double {
                guard let value else {
                    throw RopeConfigError(key: "\(key).\(name)", problem: "is missing; rope_type \"llama3\" needs it")
                }
                return value
            }
            scaling = RopeScaling(
                factor: try required(rope?.factor, "factor"),
                lowFreqFactor: try required(rope?.lowFreqFactor, "low_freq_factor"),
                highFreqFactor: try required(rope?.highFreqFactor, "high_freq_factor"),
                originalMaxPositionEmbeddings: try c.decodeIfPresent(Int.self, forKey: .originalMaxPositionEmbeddings)
                    ?? rope?.originalMaxPositionEmbeddings ?? maxPositions)
        default:
            throw RopeConfigError(
                key: "\(key).\(rope?.ropeType != nil ? "rope_type" : "type")",
                problem: "is \"\(type)\"; distill computes only \"default\" and \"llama3\" rotary embeddings")
        }
        self.init(
            vocabSize: try c.decode(Int.self, forKey: .vocabSize), hiddenSize: hidden,
            intermediateSize: try c.decode(Int.self, forKey: .intermediateSize),
            numHiddenLayers: try c.decode(Int.self, forKey: .numHiddenLayers), numAttentionHeads: heads,
            numKeyValueHeads: try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads),
            headDim: try c.decodeIfPresent(Int.self, forKey: .headDim),
            rmsNormEps: try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? 1e-6,
            ropeTheta: try rope?.ropeTheta ?? c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? 10000,
            ropeScaling: scaling,
            tieWordEmbeddings: try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false,
            maxPositionEmbeddings: maxPositions,
            initializerRange: try c.decodeIfPresent(Double.self, forKey: .initializerRange) ?? 0.02,
            bosTokenId: try? c.decodeIfPresent(Int.self, forKey: .bosTokenId),
            eosTokenId: try? c.decodeIfPresent(Int.self, forKey: .eosTokenId),
            layerRepeat: try c.decodeIfPresent(Int.self, forKey: .layerRepeat) ?? 1)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(numKeyValueHeads, forKey: .numKeyValueHeads)
        try c.encode(headDim, forKey: .headDim)
        try c.encode(rmsNormEps, forKey: .rmsNormEps)
        try c.encode(ropeTheta, forKey: .ropeTheta)
        var rope = RopeParameters(ropeType: "default", ropeTheta: ropeTheta)
        if let s = ropeScaling {
            rope.ropeType = "llama3"
            rope.factor = s.factor
            rope.lowFreqFactor = s.lowFreqFactor
            rope.highFreqFactor = s.highFreqFactor
            rope.originalMaxPositionEmbeddings = s.originalMaxPositionEmbeddings
        }
        try c.encode(rope, forKey: .ropeParameters)
        try c.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encode(initializerRange, forKey: .initializerRange)
        try c.encodeIfPresent(bosTokenId, forKey: .bosTokenId)
        try c.encodeIfPresent(eosTokenId, forKey: .eosTokenId)
        // Written only when sharing is on, so ordinary configs stay plain HF configs.
        if layerRepeat != 1 { try c.encode(layerRepeat, forKey: .layerRepeat) }
    }

    /// Problems that make the configuration unusable, each naming its key.
    public func problems() -> [String] {
        var p: [String] = []
        for (key, value) in [
            ("vocab_size", vocabSize), ("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
            ("num_hidden_layers", numHiddenLayers), ("num_attention_heads", numAttentionHeads),
            ("num_key_value_heads", numKeyValueHeads), ("head_dim", headDim),
            ("max_position_embeddings", maxPositionEmbeddings), ("layer_repeat", layerRepeat),
        ] where value < 1 {
            p.append("\(key) must be at least 1, got \(value)")
        }
        // Bounds far above any model a CPU trains, checked before anything is sized by them: a
        // config.json with a billion layers is refused here, not after gigabytes of allocation.
        for (key, value, limit) in [
            ("vocab_size", vocabSize, 1 << 24), ("hidden_size", hiddenSize, 1 << 16),
            ("intermediate_size", intermediateSize, 1 << 18), ("num_hidden_layers", numHiddenLayers, 1 << 12),
            ("num_attention_heads", numAttentionHeads, 1 << 10), ("num_key_value_heads", numKeyValueHeads, 1 << 10),
            ("head_dim", headDim, 1 << 12), ("max_position_embeddings", maxPositionEmbeddings, 1 << 24),
            ("layer_repeat", layerRepeat, 1 << 6),
        ] where value > limit {
            p.append("\(key) must be at most \(limit), got \(value)")
        }
        if numKeyValueHeads >= 1 && numAttentionHeads % numKeyValueHeads != 0 {
            p.append("num_attention_heads (\(numAttentionHeads)) must be a multiple of num_key_value_heads (\(numKeyValueHeads))")
        }
        if headDim % 2 != 0 { p.append("head_dim must be even for rotary embeddings, got \(headDim)") }
        if !(rmsNormEps > 0) { p.append("rms_norm_eps must be positive, got \(rmsNormEps)") }
        if !(ropeTheta > 0) { p.append("rope_theta must be positive, got \(ropeTheta)") }
        if let ropeScaling { p += ropeScaling.problems() }
        return p
    }

    /// Hugging Face parameter names with their shapes ([out, in] for linear weights), in
    /// the order distill stores and iterates them.
    public var parameterShapes: [(name: String, shape: [Int])] {
        let (c, f, h, g, d) = (hiddenSize, intermediateSize, numAttentionHeads, numKeyValueHeads, headDim)
        var out: [(String, [Int])] = [("model.embed_tokens.weight", [vocabSize, c])]
        for i in 0..<numHiddenLayers {
            let p = "model.layers.\(i)."
            out += [
                (p + "input_layernorm.weight", [c]),
                (p + "self_attn.q_proj.weight", [h * d, c]),
                (p + "self_attn.k_proj.weight", [g * d, c]),
                (p + "self_attn.v_proj.weight", [g * d, c]),
                (p + "self_attn.o_proj.weight", [c, h * d]),
                (p + "post_attention_layernorm.weight", [c]),
                (p + "mlp.gate_proj.weight", [f, c]),
                (p + "mlp.up_proj.weight", [f, c]),
                (p + "mlp.down_proj.weight", [c, f]),
            ]
        }
        out.append(("model.norm.weight", [c]))
        if !tieWordEmbeddings { out.append(("lm_head.weight", [vocabSize, c])) }
        return out
    }
}

extension LlamaConfig {
    /// Every parameter, counting a tied embedding once.
    public var parameterCount: Int { parameterShapes.reduce(0) { $0 + $1.shape.reduce(1, *) } }

    /// The token embedding (and an untied lm_head, which is also a vocabulary table).
    public var embeddingParameterCount: Int { vocabSize * hiddenSize * (tieWordEmbeddings ? 1 : 2) }

    /// Everything else: attention, MLP and norm weights.
    public var nonEmbeddingParameterCount: Int { parameterCount - embeddingParameterCount }

    /// Training FLOPs per token at sequence length `seqLen` (forward + backward, the PaLM
    /// convention used for MFU): 6 per weight of every matrix product, the output
    /// projection included, plus 6 * 2 * L * H * D * T for the attention score and value
    /// products, with L the effective depth (a repeated layer counts once per pass). Causal masking is not discounted (the usual convention); distill's kernel
    /// skips most masked blocks, so its attention does fewer FLOPs than counted.
    public func trainingFlopsPerToken(seqLen: Int) -> Double {
        let attention = 2 * effectiveLayers * numAttentionHeads * headDim * seqLen
        return 6 * Double(matmulWeights) + 6 * Double(attention)
    }

    /// Training FLOPs per token of adapters on a frozen base, same convention: a frozen
    /// matrix costs 4 per weight (forward and input gradient, no weight gradient), an
    /// adapter matrix 6 per weight.
    public func adapterTrainingFlopsPerToken(seqLen: Int, adapterParameters: Int) -> Double {
        trainingFlopsPerToken(seqLen: seqLen) - 2 * Double(matmulWeights) + 6 * Double(adapterParameters)
    }

    /// Weights of the matrix products per token: every layer pass's projections and the
    /// output projection.
    var matmulWeights: Int {
        let layerMatmul = hiddenSize * (numAttentionHeads + 2 * numKeyValueHeads) * headDim
            + numAttentionHeads * headDim * hiddenSize + 3 * hiddenSize * intermediateSize
        return effectiveLayers * layerMatmul + vocabSize * hiddenSize
    }

    /// Key and value bytes per token in the KV cache at float32 (a repeated layer caches
    /// its keys and values once per pass).
    public var kvCacheBytesPerToken: Int { 2 * effectiveLayers * numKeyValueHeads * headDim * 4 }

    /// Layers a token passes through: num_hidden_layers x layer_repeat.
    public var effectiveLayers: Int { numHiddenLayers * layerRepeat }
}

extension LlamaConfig {
    /// What keeps a set of tensors (name -> shape) from being exactly this config's
    /// parameters: missing and mis-shaped names in parameter order, then unexpected names
    /// sorted. A tied model's lm_head.weight is left to the caller (`isTiedHead`).
    public func tensorProblems(_ shapes: [String: [Int]]) -> (problems: [String], tiedHead: Bool) {
        var problems: [String] = []
        let expected = parameterShapes
        for (name, shape) in expected {
            guard let got = shapes[name] else {
                problems.append("missing \(name) \(shape)")
                continue
            }
            if got != shape { problems.append("\(name) has shape \(got), expected \(shape)") }
        }
        let known = Set(expected.map(\.name))
        var tiedHead = false
        for name in shapes.keys.sorted() where !known.contains(name) {
            if name == "lm_head.weight" && tieWordEmbeddings {
                tiedHead = true
                continue
            }
            problems.append("unexpected \(name) \(shapes[name]!)")
        }
        return (problems, tiedHead)
    }
}

/// A config whose rotary embedding settings distill does not compute, naming the key.
public struct RopeConfigError: Error, CustomStringConvertible, Sendable {
    /// The JSON path, such as `rope_parameters.rope_type`.
    public var key: String
    public var problem: String

    public var description: String { "\(key) \(problem)" }
}
