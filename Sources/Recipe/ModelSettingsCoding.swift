// Decoding `ModelSettings` from a stored resolved recipe. Keys added after a release
// (`layer_repeat`) may be absent from recipes stored in older checkpoints: they take their
// documented default instead of failing the whole recipe.

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
}
