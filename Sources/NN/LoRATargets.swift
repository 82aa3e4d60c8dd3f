// Which linear modules get LoRA adapters, chosen the way peft chooses them (peft 0.21,
// `check_target_module_exists`): `target_modules` is either a list, each entry matching the
// module whose full Hugging Face path equals it or ends with "." + entry (so "q_proj" is every
// layer's q_proj and "layers.0.mlp.down_proj" one module), or a single string, a regular
// expression the whole path must match (peft's re.fullmatch). "all-linear" is the seven
// projections of every layer, never lm_head.
//
// A spec is resolved once against the model's layer count into the explicit list of adapted
// module paths (`LoRAConfig.adaptedModules`); adapters are built, saved, exported and
// compared from that list, so layers may carry different sets of adapters, or none.

import Foundation
import Platform

/// A `target_modules` spec that selects nothing distill can adapt, or cannot be read.
public enum LoRATargetError: Error, Equatable, CustomStringConvertible {
    /// The regular expression does not compile; `message` is the parser's.
    case invalidPattern(pattern: String, message: String)
    /// `pattern` (a list entry or the regex) matches no module; `examples` are valid paths.
    case matchesNothing(pattern: String, layers: Int, examples: [String])
    /// `pattern` matches `module`, which is not one of the seven projections.
    case notAdaptable(pattern: String, module: String)
    /// A resolved module path that the model does not have.
    case unknownModule(path: String, layers: Int)
    case empty

    public var description: String {
        switch self {
        case .invalidPattern(let p, let message):
            return "target_modules regex \"\(p)\" does not compile: \(message)"
        case .matchesNothing(let p, let layers, let examples):
            return "target_modules \"\(p)\" matches no module of the model (\(layers) layers); module paths look like "
                + examples.joined(separator: ", ")
        case .notAdaptable(let p, let module):
            return "target_modules \"\(p)\" matches \(module), which is not a linear projection distill adapts "
                + "(\(LoRAConfig.moduleNames.joined(separator: ", ")))"
        case .unknownModule(let path, let layers):
            return "adapted module \(path) is not a projection of a model with \(layers) layers"
        case .empty:
            return "target_modules is empty"
        }
    }
}

extension LoRAConfig {
    /// peft's shorthand for every linear layer but the output head.
    public static let allLinear = "all-linear"

    /// The submodule a projection lives in: "self_attn" or "mlp".
    public static func group(of module: String) -> String {
        ["gate_proj", "up_proj", "down_proj"].contains(module) ? "mlp" : "self_attn"
    }

    /// `model.layers.<layer>.<self_attn|mlp>.<module>`.
    public static func modulePath(layer: Int, module: String) -> String {
        "model.layers.\(layer).\(group(of: module)).\(module)"
    }

    /// Every adaptable module of a model with `layers` layers, in layer then Llama order
    /// (the order of `adapterParameters()`).
    public static func modulePaths(layers: Int) -> [String] {
        (0..<layers).flatMap { i in moduleNames.map { modulePath(layer: i, module: $0) } }
    }

    /// (layer, module) of an adaptable module path, or nil.
    public static func parseModulePath(_ path: String) -> (layer: Int, module: String)? {
        let parts = path.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 5, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]), layer >= 0,
            String(layer) == parts[2], moduleNames.contains(parts[4]), parts[3] == group(of: parts[4])
        else { return nil }
        return (layer, parts[4])
    }

    /// The other modules of a Hugging Face LlamaForCausalLM (containers, norms, embeddings,
    /// lm_head): peft refuses to adapt them, so a spec matching one is refused too.
    static func otherModulePaths(layers: Int) -> [String] {
        var out = ["model", "model.embed_tokens", "model.layers", "model.norm", "model.rotary_emb", "lm_head"]
        for i in 0..<layers {
            let l = "model.layers.\(i)"
            out += [l, l + ".self_attn", l + ".mlp", l + ".mlp.act_fn", l + ".input_layernorm", l + ".post_attention_layernorm"]
        }
        return out
    }

    /// peft's list rule: `path` is `entry` or ends with "." + `entry`.
    public static func suffixMatches(_ entry: String, _ path: String) -> Bool {
        path == entry || path.hasSuffix("." + entry)
    }

    /// Compiles a target regex; the whole path must match it. Matched by `LinearRegex`, in time
    /// linear in the path, so no pattern can hang the recipe's validation.
    static func compile(_ pattern: String) throws(LoRATargetError) -> LinearRegex {
        do {
            return try LinearRegex(pattern)
        } catch {
            throw .invalidPattern(pattern: pattern, message: "\(error)")
        }
    }

    /// The adaptable module paths `targetPattern` or `targetModules` select in a model with
    /// `layers` layers. With `strict`, every list entry must select something (a typo is an
    /// error rather than a silently smaller adapter); without it, as peft does, only the
    /// whole spec must.
    public static func select(
        modules: [String], pattern: String?, layers: Int, strict: Bool = true
    ) throws(LoRATargetError) -> [String] {
        let paths = modulePaths(layers: layers)
        let others = otherModulePaths(layers: layers)
        let examples = [paths.first, paths.first { $0.hasSuffix("mlp.down_proj") }, paths.last].compactMap { $0 }
        if let pattern {
            let regex = try compile(pattern)
            func matches(_ path: String) -> Bool { regex.wholeMatches(path) }
            if let other = others.first(where: matches) { throw .notAdaptable(pattern: pattern, module: other) }
            let selected = paths.filter(matches)
            guard !selected.isEmpty else { throw .matchesNothing(pattern: pattern, layers: layers, examples: examples) }
            return selected
        }
        guard !modules.isEmpty else { throw .empty }
        if modules.contains(allLinear) { return paths }
        var chosen = Set<String>()
        for entry in modules {
            if let other = others.first(where: { suffixMatches(entry, $0) }) { throw .notAdaptable(pattern: entry, module: other) }
            let selected = paths.filter { suffixMatches(entry, $0) }
            if selected.isEmpty && strict { throw .matchesNothing(pattern: entry, layers: layers, examples: examples) }
            chosen.formUnion(selected)
        }
        guard !chosen.isEmpty else {
            throw .matchesNothing(pattern: modules.joined(separator: ", "), layers: layers, examples: examples)
        }
        return paths.filter(chosen.contains)
    }

    /// This config with `adaptedModules` filled in for a model with `layers` layers (checked
    /// against it when already filled in).
    public func resolved(layers: Int) throws(LoRATargetError) -> LoRAConfig {
        var out = self
        if let adapted = adaptedModules {
            let valid = Set(Self.modulePaths(layers: layers))
            if let bad = adapted.first(where: { !valid.contains($0) }) { throw .unknownModule(path: bad, layers: layers) }
            guard !adapted.isEmpty else { throw .empty }
            // Canonical order, whatever order they were recorded in.
            out.adaptedModules = Self.modulePaths(layers: layers).filter(Set(adapted).contains)
            return out
        }
        out.adaptedModules = try Self.select(modules: targetModules, pattern: targetPattern, layers: layers)
        return out
    }

    /// The projections adapted in layer `layer`, in Llama order; needs `adaptedModules`.
    public func modules(inLayer layer: Int) -> [String] {
        guard let adaptedModules else { preconditionFailure("LoRAConfig.modules(inLayer:) before resolved(layers:)") }
        return adaptedModules.compactMap { path in
            Self.parseModulePath(path).flatMap { $0.layer == layer ? $0.module : nil }
        }
    }

    /// The module names adapted in every layer when all `layers` layers carry the same set,
    /// else nil; needs `adaptedModules`.
    public func uniformModules(layers: Int) -> [String]? {
        let first = modules(inLayer: 0)
        guard adaptedModules?.count == first.count * layers else { return nil }
        return (1..<max(layers, 1)).allSatisfy { modules(inLayer: $0) == first } ? first : nil
    }

    /// What is wrong with the target spec without knowing the model: a regex that does not
    /// compile, a list entry that cannot name a projection of any Llama model, a resolved
    /// path that is not a projection path.
    func targetProblems() -> [String] {
        var p: [String] = []
        if let targetPattern {
            do { _ = try Self.compile(targetPattern) } catch { p.append(error.description) }
        } else if targetModules.isEmpty {
            p.append(LoRATargetError.empty.description)
        } else {
            for m in targetModules where m != Self.allLinear && !Self.canName(m) {
                p.append(
                    "target module \"\(m)\" is not one of \(Self.moduleNames.joined(separator: ", ")) or a path ending in one "
                        + "(layers.0.mlp.down_proj), nor \(Self.allLinear)")
            }
        }
        for path in adaptedModules ?? [] where Self.parseModulePath(path) == nil {
            p.append("adapted module \"\(path)\" is not a projection path like model.layers.0.self_attn.q_proj")
        }
        return p
    }

    /// Whether a list entry is the tail of some projection path (of a model deep enough).
    private static func canName(_ entry: String) -> Bool {
        let parts = entry.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard let module = parts.last, moduleNames.contains(module), parts.count <= 5 else { return false }
        let template = ["model", "layers", "#", group(of: module), module]
        for (part, expected) in zip(parts.reversed(), template.reversed()) {
            if expected == "#" {
                guard let n = Int(part), n >= 0, String(n) == part else { return false }
            } else if part != expected {
                return false
            }
        }
        return true
    }
}
