// LoRA (Hu et al., 2021): y = x Wᵀ + s · dropout(x) Aᵀ Bᵀ with A [r, in] random, B [out, r]
// zero, so a fresh adapter leaves the model unchanged. s = alpha / r, or alpha / sqrt(r)
// with rsLoRA (Kalajdzievski, 2023). The base weight is frozen; only A and B train.
// An adapter can be disabled (the layer is then exactly the base, which doubles as the
// DPO reference model) and merged into the base weight.

import Core
import Foundation

public struct LoRAConfig: Codable, Sendable, Equatable {
    /// Rank r >= 1.
    public var rank: Int = 8
    public var alpha: Double = 16
    /// Dropout on the adapter's input during training, in [0, 1).
    public var dropout: Double = 0
    /// Scale by alpha / sqrt(r) instead of alpha / r.
    public var useRSLoRA: Bool = false
    /// Modules to adapt, as peft's list form of target_modules: projection names (q_proj,
    /// k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj), module paths or their tails
    /// ("layers.0.mlp.down_proj"), or "all-linear". Empty when `targetPattern` is set.
    public var targetModules: [String] = ["q_proj", "v_proj"]
    /// peft's string form of target_modules: a regular expression a module's whole path
    /// (`model.layers.3.self_attn.q_proj`) must match.
    public var targetPattern: String?
    /// The adapted modules' paths once the spec is resolved against a model
    /// (`resolved(layers:)`), in layer then Llama order; nil before. LoRATargets.swift.
    public var adaptedModules: [String]?

    public init(
        rank: Int = 8, alpha: Double = 16, dropout: Double = 0, useRSLoRA: Bool = false,
        targetModules: [String] = ["q_proj", "v_proj"], targetPattern: String? = nil, adaptedModules: [String]? = nil
    ) {
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout
        self.useRSLoRA = useRSLoRA
        self.targetModules = targetPattern == nil ? targetModules : []
        self.targetPattern = targetPattern
        self.adaptedModules = adaptedModules
    }

    /// Same adapters (rank, scale, dropout and resolved modules), whatever spec chose them.
    public func sameAdapters(as other: LoRAConfig) -> Bool {
        rank == other.rank && alpha == other.alpha && dropout == other.dropout && useRSLoRA == other.useRSLoRA
            && adaptedModules != nil && adaptedModules == other.adaptedModules
    }

    /// The target spec as written: the regex, or the list joined by ", ".
    public var targetDescription: String {
        targetPattern.map { "regex \"\($0)\"" } ?? targetModules.joined(separator: ", ")
    }

    public var scale: Float { Float(useRSLoRA ? alpha / Double(rank).squareRoot() : alpha / Double(rank)) }

    public static let moduleNames = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

    /// Settings that cannot work, naming the key.
    public func problems() -> [String] {
        var p: [String] = []
        if rank < 1 { p.append("rank must be at least 1, got \(rank)") }
        if !(alpha > 0) { p.append("alpha must be positive, got \(alpha)") }
        if !(dropout >= 0 && dropout < 1) { p.append("dropout must be in [0, 1), got \(dropout)") }
        return p + targetProblems()
    }
}

/// A linear layer with a low-rank adapter. Found by type (`layer as? LoRALinear`).
public final class LoRALinear: Linear {
    public let a: Tensor  // [r, in]
    public let b: Tensor  // [out, r]
    public let scale: Float
    public let dropout: Float
    /// false: the layer computes exactly the base product.
    public var enabled = true
    /// Draws dropout masks while training (`GradMode.isEnabled`); nil turns dropout off.
    public var rng: RNG?

    /// Wraps `base` (whose weight is frozen) with a fresh adapter: A ~ Kaiming-uniform as
    /// PEFT initialises it (bound 1/sqrt(in)), B = 0.
    public init(wrapping base: Linear, config: LoRAConfig, rng: inout RNG) {
        base.dense?.requiresGrad = false
        let bound = 1 / Float(base.inFeatures).squareRoot()
        a = Tensor.uniform([config.rank, base.inFeatures], low: -bound, high: bound, rng: &rng, requiresGrad: true)
        b = Tensor.zeros([base.outFeatures, config.rank], requiresGrad: true)
        scale = config.scale
        dropout = Float(config.dropout)
        self.rng = config.dropout > 0 ? rng.split() : nil
        super.init(sameWeightAs: base)
    }

    /// An adapter over `base` sharing `other`'s A and B storage, with gradient slots of
    /// its own (for data-parallel replicas). Dropout draws from a generator split off
    /// `other`'s.
    private init(sharing other: LoRALinear, base: Linear) {
        a = Tensor(shape: other.a.shape, storage: other.a.storage, requiresGrad: other.a.requiresGrad)
        b = Tensor(shape: other.b.shape, storage: other.b.storage, requiresGrad: other.b.requiresGrad)
        scale = other.scale
        dropout = other.dropout
        enabled = other.enabled
        rng = other.rng.map { var r = $0; return r.split() }
        super.init(sameWeightAs: base)
    }

    /// `other`'s adapter itself (the same A and B tensors, gradients and dropout stream) over
    /// another base: `LlamaModel.packed(_:)` moves adapters onto the packed weights.
    private init(moving other: LoRALinear, base: Linear) {
        (a, b, scale, dropout, enabled, rng) = (other.a, other.b, other.scale, other.dropout, other.enabled, other.rng)
        super.init(sameWeightAs: base)
    }

    /// This adapter moved onto `base` (see `init(moving:base:)`).
    func moved(over base: Linear) -> LoRALinear { LoRALinear(moving: self, base: base) }

    /// This adapter over a replica's `base` layer (see `LlamaModel.replica()`).
    func replica(over base: Linear) -> LoRALinear { LoRALinear(sharing: self, base: base) }

    /// [..., in] -> [..., out]
    public override func callAsFunction(_ x: Tensor) -> Tensor {
        guard enabled else { return super.callAsFunction(x) }
        let updates = [update(input: x, columns: 0..<outFeatures)]
        if let packed { return Tensor.linear(x, packed, updates: updates) }
        return Tensor.linear(x, weight, updates: updates)
    }

    /// The adapter as a low-rank update of output columns `columns` of a product whose
    /// input is `x` (dropout applied here while training), for fused products.
    public func update(input x: Tensor, columns: Range<Int>) -> LowRankUpdate {
        var input = x
        if dropout > 0, GradMode.isEnabled, var r = rng {
            input = x.dropout(dropout, rng: &r)
            rng = r
        }
        return LowRankUpdate(columns: columns, input: input, a: a, b: b, scale: scale)
    }

    /// W + s · B A: the weight that computes what the adapted layer computes.
    public func mergedWeight() -> Tensor {
        GradMode.withoutGrad { weight + Tensor.matmul(b, a) * scale }
    }
}

extension LlamaModel {
    /// Wraps the modules `config` selects (resolved against this model's layers when it is
    /// not yet; callers taking user input resolve first to report a bad spec) with fresh
    /// adapters, layer by layer in Llama order, and freezes every base parameter; returns
    /// the adapters under PEFT-style names (`model.layers.0.self_attn.q_proj.lora_A.weight`).
    @discardableResult
    public func addLoRA(_ config: LoRAConfig, rng: inout RNG) -> [(String, Tensor)] {
        precondition(config.problems().isEmpty, "invalid LoRA config: \(config.problems().joined(separator: "; "))")
        let resolved: LoRAConfig
        do {
            resolved = try config.resolved(layers: layers.count)
        } catch {
            preconditionFailure("LoRA targets do not fit the model: \(error)")
        }
        for (_, p) in namedParameters() { p.requiresGrad = false }
        for (i, layer) in layers.enumerated() {
            for module in resolved.modules(inLayer: i) {
                layer.replace(module) { LoRALinear(wrapping: $0, config: config, rng: &rng) }
            }
        }
        return adapterParameters()
    }

    /// The adapters' trainable tensors under PEFT-style names, in layer and module order.
    public func adapterParameters() -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        for (i, layer) in layers.enumerated() {
            for (name, linear) in layer.modules {
                guard let lora = linear as? LoRALinear else { continue }
                let prefix = "model.layers.\(i).\(name)"
                out += [(prefix + ".lora_A.weight", lora.a), (prefix + ".lora_B.weight", lora.b)]
            }
        }
        return out
    }

    /// The paths of the adapted modules (`model.layers.0.self_attn.q_proj`), in
    /// `adapterParameters()` order.
    public func adaptedModulePaths() -> [String] {
        layers.enumerated().flatMap { i, layer in
            layer.modules.compactMap { name, linear in linear is LoRALinear ? "model.layers.\(i).\(name)" : nil }
        }
    }

    /// Takes every adapter off, leaving the base's own linear layers (the same weight tensors):
    /// the model is the base again and can take another adapter.
    public func removeAdapters() {
        for layer in layers {
            for (name, m) in layer.modules where m is LoRALinear {
                layer.replace(String(name.split(separator: ".").last!)) { Linear(sameWeightAs: $0) }
            }
        }
    }

    /// Turns every adapter on or off (off: the model is exactly the base).
    public func setAdapters(enabled: Bool) {
        for layer in layers { for (_, m) in layer.modules { (m as? LoRALinear)?.enabled = enabled } }
    }

    /// Folds every adapter into its base weight (in place) and removes the adapters.
    public func mergeAdapters() {
        for layer in layers {
            for (name, m) in layer.modules {
                guard let lora = m as? LoRALinear else { continue }
                let merged = lora.mergedWeight()
                lora.weight.data.update(from: merged.data, count: merged.count)
                layer.replace(String(name.split(separator: ".").last!)) { _ in Linear(weight: lora.weight) }
            }
        }
    }
}
