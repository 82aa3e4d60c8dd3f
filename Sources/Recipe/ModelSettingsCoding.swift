// Coding `ModelSettings` in the resolved recipe. `layer_repeat` (added later) is written only
// when it is not 1, so every recipe written before it keeps its resolved JSON and therefore
// its fingerprints (finished stages stay finished); absent, it reads as 1.

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
