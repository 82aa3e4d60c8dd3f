// The Llama-family decoder with Hugging Face LlamaForCausalLM semantics: RMSNorm,
// rotary embeddings (rotate_half), grouped-query attention, SwiGLU MLP, optional tied
// embeddings, no biases. Parameter names are Hugging Face names.
//
// Shapes: B batch, T time, C hidden, H query heads, G kv heads, D head dim, F MLP width,
// V vocabulary, N = B*T rows.

import Core
import Foundation
import Platform

public final class LlamaLayer {
    public let inputLayernorm: Tensor  // [C]
    public private(set) var qProj, kProj, vProj, oProj: Linear
    public let postAttentionLayernorm: Tensor  // [C]
    public private(set) var gateProj, upProj, downProj: Linear

    /// The layer over its norm weights `p` and its projections `linear`, both by their names
    /// relative to `model.layers.i.`.
    init(_ p: (String) -> Tensor, _ linear: (String) -> Linear) {
        inputLayernorm = p("input_layernorm.weight")
        qProj = linear("self_attn.q_proj.weight")
        kProj = linear("self_attn.k_proj.weight")
        vProj = linear("self_attn.v_proj.weight")
        oProj = linear("self_attn.o_proj.weight")
        postAttentionLayernorm = p("post_attention_layernorm.weight")
        gateProj = linear("mlp.gate_proj.weight")
        upProj = linear("mlp.up_proj.weight")
        downProj = linear("mlp.down_proj.weight")
    }

    /// The linear modules under their Hugging Face names relative to `model.layers.i.`.
    public var modules: [(String, Linear)] {
        [
            ("self_attn.q_proj", qProj), ("self_attn.k_proj", kProj), ("self_attn.v_proj", vProj),
            ("self_attn.o_proj", oProj), ("mlp.gate_proj", gateProj), ("mlp.up_proj", upProj),
            ("mlp.down_proj", downProj),
        ]
    }

    /// Replaces the module named `name` (q_proj ... down_proj) with `make(current)`.
    public func replace(_ name: String, with make: (Linear) -> Linear) {
        switch name {
        case "q_proj": qProj = make(qProj)
        case "k_proj": kProj = make(kProj)
        case "v_proj": vProj = make(vProj)
        case "o_proj": oProj = make(oProj)
        case "gate_proj": gateProj = make(gateProj)
        case "up_proj": upProj = make(upProj)
        case "down_proj": downProj = make(downProj)
        default: preconditionFailure("no module \(name) in a Llama layer")
        }
    }

    /// The layer's f32 parameters under their names relative to `model.layers.i.` (packed
    /// projections are in `packedParameters`).
    public var namedParameters: [(String, Tensor)] {
        var out = [("input_layernorm.weight", inputLayernorm)]
        for (name, linear) in modules {
            if name == "mlp.gate_proj" { out.append(("post_attention_layernorm.weight", postAttentionLayernorm)) }
            if let w = linear.dense { out.append((name + ".weight", w)) }
        }
        return out
    }

    /// The packed projections under their names relative to `model.layers.i.`.
    public var packedParameters: [(String, PackedMatrix)] {
        modules.compactMap { name, linear in linear.packed.map { (name + ".weight", $0) } }
    }

    /// x [B, T, C] -> [B, T, C]. With `cache`, k/v of these positions are appended to it
    /// and attention runs over everything cached so far.
    func callAsFunction(_ x: Tensor, _ c: LlamaConfig, rope: RopeTable, segments: [Int32]?, cache: KVCache.Layer?)
        -> Tensor
    {
        let (b, t) = (x.shape[0], x.shape[1])
        let eps = Float(c.rmsNormEps)
        let (nh, ng, d) = (c.numAttentionHeads, c.numKeyValueHeads, c.headDim)
        let h = Tensor.rmsNorm(x, weight: inputLayernorm, eps: eps)  // [B, T, C]
        var q: Tensor, k: Tensor, v: Tensor
        if let qkv = fusedLinear(h, [qProj, kProj, vProj]) {
            // One product for q, k and v: h is packed for sgemm once, not three times. The
            // fused weight is a per-step copy of the three (small next to the activations);
            // adapters add their low-rank updates to their blocks of columns.
            let qkv = qkv.reshaped([b, t, nh + 2 * ng, d])  // [B, T, H+2G, D]
            q = Tensor.headSlice(qkv, heads: 0..<nh, rope: rope)  // [B, T, H, D]
            k = Tensor.headSlice(qkv, heads: nh..<(nh + ng), rope: rope)  // [B, T, G, D]
            v = Tensor.headSlice(qkv, heads: (nh + ng)..<(nh + 2 * ng), rope: nil)  // [B, T, G, D]
        } else {
            q = Tensor.rope(qProj(h).reshaped([b, t, nh, d]), table: rope)
            k = Tensor.rope(kProj(h).reshaped([b, t, ng, d]), table: rope)
            v = vProj(h).reshaped([b, t, ng, d])
        }
        if let cache { (k, v) = cache.append(k: k, v: v) }  // [S, B, G, D]
        let attn = Tensor.attention(q: q, k: k, v: v, segments: segments, timeMajorKV: cache != nil)
            .reshaped([b, t, c.numAttentionHeads * c.headDim])  // [B, T, H*D]
        let x1 = x + oProj(attn)
        let h2 = Tensor.rmsNorm(x1, weight: postAttentionLayernorm, eps: eps)
        let mlp: Tensor
        if let gateUp = fusedLinear(h2, [gateProj, upProj]) {
            mlp = Tensor.swiglu(gateUp: gateUp)  // [B, T, F]
        } else {
            mlp = Tensor.swiglu(gate: gateProj(h2), up: upProj(h2))
        }
        return x1 + downProj(mlp)  // [B, T, C]
    }

    /// x through `layers` side by side as one product over their concatenated weights
    /// [..., Σ out], or nil when a layer is neither a plain `Linear` nor a `LoRALinear`.
    /// Enabled adapters become low-rank updates of their layer's columns; a disabled
    /// adapter adds none, so it takes exactly the base model's path, bit for bit.
    private func fusedLinear(_ x: Tensor, _ layers: [Linear]) -> Tensor? {
        guard layers.allSatisfy({ (type(of: $0) == Linear.self || $0 is LoRALinear) && $0.packed == nil }) else { return nil }
        var updates: [LowRankUpdate] = []
        var column = 0
        for layer in layers {
            if let lora = layer as? LoRALinear, lora.enabled {
                updates.append(lora.update(input: x, columns: column..<(column + layer.outFeatures)))
            }
            column += layer.outFeatures
        }
        let w = Tensor.concat(layers.map(\.weight), axis: 0)  // [Σ out, C]
        return Tensor.linear(x, w, updates: updates)
    }
}

public final class LlamaModel {
    public let config: LlamaConfig
    /// The token embedding [V, C] as a matrix, f32 or packed (`embedTokens` when f32).
    public let embedding: Linear
    public let layers: [LlamaLayer]
    public let norm: Tensor  // [C]
    /// The output projection: a separate [V, C] matrix, or the embedding when tied.
    public let lmHead: Linear
    /// Activation checkpointing while training: each layer keeps only its input on the tape
    /// and runs again in the backward pass (one more forward per step, a fraction of the
    /// activation memory). The values and gradients are those of the plain model.
    public var recomputeLayers = false

    /// Random initialisation as transformers does it: every linear and embedding weight
    /// Normal(0, initializer_range), norm weights 1. Parameters require gradients.
    public convenience init(config: LlamaConfig, rng: inout RNG) {
        precondition(config.problems().isEmpty, "invalid model config: \(config.problems().joined(separator: "; "))")
        var tensors: [String: Tensor] = [:]
        for (name, shape) in config.parameterShapes {
            tensors[name] =
                name.hasSuffix("norm.weight")
                ? Tensor.full(shape, 1) : Tensor.randn(shape, std: Float(config.initializerRange), rng: &rng)
        }
        try! self.init(config: config, parameters: tensors)
        for (_, p) in namedParameters() { p.requiresGrad = true }
    }

    /// A model over existing tensors (imported or loaded), named as `config.parameterShapes`;
    /// matrices named in `packed` (frozen, QLoRA's base) are held packed instead.
    public init(config: LlamaConfig, parameters: [String: Tensor], packed: [String: PackedMatrix] = [:]) throws {
        let problems = config.problems()
        guard problems.isEmpty else { throw ModelError.invalidConfig(problems) }
        // A tied model ignores an lm_head.weight (Hugging Face files may carry a copy).
        let shapes = parameters.mapValues(\.shape).merging(packed.mapValues { [$0.rows, $0.columns] }) { _, p in p }
        let issues = config.tensorProblems(shapes).problems
        guard issues.isEmpty else { throw ModelError.parameterMismatch(issues) }
        self.config = config
        func linear(_ name: String) -> Linear { packed[name].map(Linear.init(packed:)) ?? Linear(weight: parameters[name]!) }
        embedding = linear("model.embed_tokens.weight")
        layers = (0..<config.numHiddenLayers).map { i in
            LlamaLayer({ parameters["model.layers.\(i).\($0)"]! }, { linear("model.layers.\(i).\($0)") })
        }
        norm = parameters["model.norm.weight"]!
        lmHead = config.tieWordEmbeddings ? Linear(sameWeightAs: embedding) : linear("lm_head.weight")
    }

    /// The token embedding [V, C] in f32 (a model whose embedding is packed has none).
    public var embedTokens: Tensor { embedding.weight }

    /// A model over the same weight storage with gradient slots of its own: for running
    /// several batches at once on separate threads, each replica accumulating its own
    /// gradients (which the caller then adds up). Frozen parameters stay frozen; LoRA
    /// adapters are carried over (same storage, own gradients), in `adapterParameters()`
    /// order.
    public func replica() -> LlamaModel {
        let shared = Dictionary(uniqueKeysWithValues: namedParameters().map { name, p in
            (name, Tensor(shape: p.shape, storage: p.storage, requiresGrad: p.requiresGrad))
        })
        return copy(parameters: shared, packed: Dictionary(uniqueKeysWithValues: packedParameters())) { $0.replica(over: $1) }
    }

    /// A model of this config over `parameters` and `packed`, with this model's settings and
    /// its adapters carried over by `adapter(lora, newBase)`.
    private func copy(
        parameters: [String: Tensor], packed: [String: PackedMatrix], adapter: (LoRALinear, Linear) -> LoRALinear
    ) -> LlamaModel {
        let copy = try! LlamaModel(config: config, parameters: parameters, packed: packed)
        copy.recomputeLayers = recomputeLayers
        for (layer, target) in zip(layers, copy.layers) {
            for (name, module) in layer.modules {
                guard let lora = module as? LoRALinear else { continue }
                target.replace(String(name.split(separator: ".").last!)) { adapter(lora, $0) }
            }
        }
        return copy
    }

    /// Every f32 parameter once, under its Hugging Face name, in `config.parameterShapes`
    /// order: all of them unless the model holds some packed (`packedParameters()`).
    public func namedParameters() -> [(String, Tensor)] {
        var out: [(String, Tensor)] = embedding.dense.map { [("model.embed_tokens.weight", $0)] } ?? []
        for (i, layer) in layers.enumerated() {
            out += layer.namedParameters.map { ("model.layers.\(i).\($0.0)", $0.1) }
        }
        out.append(("model.norm.weight", norm))
        if !config.tieWordEmbeddings, let head = lmHead.dense { out.append(("lm_head.weight", head)) }
        return out
    }

    /// The packed (frozen, quantized) matrices under their Hugging Face names, in
    /// `config.parameterShapes` order; empty for an f32 model.
    public func packedParameters() -> [(String, PackedMatrix)] {
        var out: [(String, PackedMatrix)] = embedding.packed.map { [("model.embed_tokens.weight", $0)] } ?? []
        for (i, layer) in layers.enumerated() {
            out += layer.packedParameters.map { ("model.layers.\(i).\($0.0)", $0.1) }
        }
        if !config.tieWordEmbeddings, let head = lmHead.packed { out.append(("lm_head.weight", head)) }
        return out
    }

    /// Every f32 matrix of this model (projections, embedding, an untied head) in `format`
    /// for `packed(_:)`, by Hugging Face name; the embedding and head take Q8_0 under the
    /// 4-bit formats (`WeightFormat.forMatrix`), and a matrix whose rows are not whole blocks
    /// stays f32. A matrix of `blocks` already in its target format (a quantized file's own,
    /// in row layout) is used as it is. f32: none.
    public func quantizedMatrices(_ format: WeightFormat, reusing blocks: [String: PackedMatrix] = [:]) -> [String: PackedMatrix] {
        guard format.isPacked else { return [:] }
        var out: [String: PackedMatrix] = [:]
        for (name, tensor) in namedParameters() where tensor.rank == 2 {
            let target = WeightFormat.forMatrix(name, format)
            guard target.fits(columns: tensor.shape[1]) else { continue }
            if let stored = blocks[name], stored.format == target, !stored.interleaved {
                out[name] = stored
            } else {
                out[name] = PackedMatrix(tensor, format: target)
            }
        }
        return out
    }

    /// This model with the matrices in `matrices` held packed (QLoRA's frozen base): the
    /// other parameters are shared as they are, and the adapters (the same tensors, with their
    /// gradients and dropout streams) move onto the packed layers. A packed matrix must
    /// stand for a frozen parameter of the same shape.
    public func packed(_ matrices: [String: PackedMatrix]) -> LlamaModel {
        let dense = namedParameters()
        for (name, p) in dense where matrices[name] != nil {
            precondition(!p.requiresGrad, "\(name) is trained; only frozen weights can be packed")
        }
        let kept = Dictionary(uniqueKeysWithValues: dense.filter { matrices[$0.0] == nil })
        let all = matrices.merging(packedParameters()) { new, _ in new }
        return copy(parameters: kept, packed: all) { $0.moved(over: $1) }
    }

    /// Final hidden states [B, T, C] for `ids` (B*T ids, row-major).
    /// - positions: T entries (shared) or B*T (per row); default 0..<T, or continuing the
    ///   cache when one is given.
    /// - segments: B*T ids confining attention to equal ids (packed sequences).
    public func hidden(
        ids: [Int32], batch: Int, length: Int, positions: [Int32]? = nil, segments: [Int32]? = nil,
        cache: KVCache? = nil
    ) -> Tensor {
        precondition(ids.count == batch * length, "\(ids.count) ids for batch \(batch) x length \(length)")
        let start = cache?.length ?? 0
        let pos = positions ?? (0..<length).map { Int32(start + $0) }
        let rope = RopeTable(
            positions: pos, headDim: config.headDim, theta: Float(config.ropeTheta), scaling: config.ropeScaling)
        var x =
            embedding.packed.map { Tensor.embedding($0, ids: ids, shape: [batch, length]) }
            ?? Tensor.embedding(embedTokens, ids: ids, shape: [batch, length])  // [B, T, C]
        // With layer_repeat r, layer i runs r times in a row (passes i*r ..< (i+1)*r), each
        // pass with its own cache slot; the shared weights' gradients add up over the passes.
        let r = config.layerRepeat
        for (i, layer) in layers.enumerated() {
            for pass in 0..<r {
                if recomputeLayers && cache == nil {
                    x = checkpointed(layer, x, rope: rope, segments: segments)
                } else {
                    x = layer(x, config, rope: rope, segments: segments, cache: cache?.layers[i * r + pass])
                }
            }
        }
        cache?.advance(by: length)
        return Tensor.rmsNorm(x, weight: norm, eps: Float(config.rmsNormEps))
    }

    /// `layer` on x through `Tensor.checkpointed`. The adapters' dropout streams are replayed:
    /// the second run draws the first run's masks, and the streams then continue from where
    /// they were when it started (so passes of a repeated layer replay in any order).
    private func checkpointed(_ layer: LlamaLayer, _ x: Tensor, rope: RopeTable, segments: [Int32]?) -> Tensor {
        let adapters = layer.modules.compactMap { $0.1 as? LoRALinear }
        let trainable = (layer.namedParameters.map(\.1) + adapters.flatMap { [$0.a, $0.b] }).filter(\.requiresGrad)
        let start = adapters.map(\.rng)
        var replay = false
        let config = self.config
        return Tensor.checkpointed(x, parameters: trainable) { input in
            let current = adapters.map(\.rng)
            for (a, r) in zip(adapters, start) { a.rng = r }
            let y = layer(input, config, rope: rope, segments: segments, cache: nil)
            if replay { for (a, r) in zip(adapters, current) { a.rng = r } }
            replay = true
            return y
        }
    }

    /// Next-token logits [B, T, V].
    public func logits(
        ids: [Int32], batch: Int, length: Int, positions: [Int32]? = nil, segments: [Int32]? = nil,
        cache: KVCache? = nil
    ) -> Tensor {
        lmHead(hidden(ids: ids, batch: batch, length: length, positions: positions, segments: segments, cache: cache))
    }

    /// Mean cross-entropy of `targets` (B*T, `ignoreIndex` to skip) given `ids`.
    ///
    /// The lm head and the loss run fused (`Tensor.linearCrossEntropy`): the [B, T, V] logits
    /// are never materialised. Same value and gradients as `crossEntropy(logits(...))`; a
    /// tied head's gradient adds to the embedding's as before.
    public func loss(
        ids: [Int32], targets: [Int32], batch: Int, length: Int, segments: [Int32]? = nil, weights: [Float]? = nil,
        ignoreIndex: Int32 = -100
    ) -> Tensor {
        let h = hidden(ids: ids, batch: batch, length: length, segments: segments)  // [B, T, C]
        return fusedHead(
            h,
            unfused: { Tensor.crossEntropy($0, targets: targets, ignoreIndex: ignoreIndex, weights: weights) },
            dense: { Tensor.linearCrossEntropy(h, $0, targets: targets, ignoreIndex: ignoreIndex, weights: weights) },
            packed: { Tensor.linearCrossEntropy(h, $0, targets: targets, ignoreIndex: ignoreIndex, weights: weights) })
    }

    /// log p(targets[i] | ids up to position i) for each of the B*T positions, [B, T]: 0 (and
    /// no gradient) where the target is `ignoreIndex`. What DPO sums over a completion.
    ///
    /// The lm head runs fused with the log-softmax (`Tensor.linearTokenLogProbs`): the
    /// [B, T, V] logits are never materialised. Same values and gradients as
    /// `tokenLogProbs(logits(...))`; a tied head's gradient adds to the embedding's.
    public func tokenLogProbs(
        ids: [Int32], targets: [Int32], batch: Int, length: Int, segments: [Int32]? = nil, ignoreIndex: Int32 = -100
    ) -> Tensor {
        let h = hidden(ids: ids, batch: batch, length: length, segments: segments)  // [B, T, C]
        return fusedHead(
            h,
            unfused: { Tensor.tokenLogProbs($0, targets: targets, ignoreIndex: ignoreIndex) },
            dense: { Tensor.linearTokenLogProbs(h, $0, targets: targets, ignoreIndex: ignoreIndex) },
            packed: { Tensor.linearTokenLogProbs(h, $0, targets: targets, ignoreIndex: ignoreIndex) })
    }

    /// A function of the logits of h [B, T, C] through the lm head: fused with the head over
    /// its f32 or packed weight, or `unfused` on `lmHead(h)` for a head subclass, which keeps
    /// its own forward.
    private func fusedHead(
        _ h: Tensor, unfused: (Tensor) -> Tensor, dense: (Tensor) -> Tensor, packed: (PackedMatrix) -> Tensor
    ) -> Tensor {
        guard type(of: lmHead) == Linear.self else { return unfused(lmHead(h)) }
        if let p = lmHead.packed { return packed(p) }
        return dense(lmHead.weight)
    }
}

public enum ModelError: Error, CustomStringConvertible {
    case invalidConfig([String])
    case parameterMismatch([String])

    public var description: String {
        switch self {
        case .invalidConfig(let p): return "invalid model config: " + p.joined(separator: "; ")
        case .parameterMismatch(let p):
            return "the tensors do not match the model config:\n  " + p.joined(separator: "\n  ")
        }
    }
}

extension ModelError: UserFacingError {
    package var errorKind: ErrorKind { .badData }
}
