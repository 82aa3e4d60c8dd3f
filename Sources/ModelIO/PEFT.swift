// PEFT LoRA adapter directories: adapter_config.json + adapter_model.safetensors, as
// peft's `save_pretrained` writes them and `PeftModel.from_pretrained` reads them. Tensor
// names are distill's adapter names under peft's `base_model.model.` prefix. Writing names
// the adapted modules so peft rebuilds exactly them: the projection names when every layer
// has the same set, else the full module paths. Reading accepts what distill's LoRA computes
// (plain LoRA on any of the seven Llama projections of any layers, chosen by a list, a
// regex or layers_to_transform, the tensors agreeing with the choice) and refuses everything
// else by name: DoRA, biases, per-module ranks, extra trained modules.

import Core
import Formats
import Foundation
import JSON
import NN
import Platform
import TextData

package enum PEFTAdapter {
    package static let configFile = "adapter_config.json"
    package static let weightsFile = "adapter_model.safetensors"
    /// peft's prefix in front of the model's own module names.
    package static let prefix = "base_model.model."

    // MARK: Writing

    /// Writes `adapters` (distill adapter names, as `adapterParameters()` gives them, of a
    /// model with `layers` layers) with `lora`'s settings into `directory`. `basePath` is
    /// written as base_model_name_or_path.
    package static func write(
        _ adapters: [(name: String, tensor: Tensor)], lora: LoRAConfig, layers: Int, basePath: String, to directory: URL
    ) throws {
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw HFModelError(.io, file: directory.path, hint: "cannot create directory (\(error.localizedDescription))")
        }
        // The adapted modules, as the tensors show them.
        var adapted: [String] = []
        for (name, _) in adapters where name.hasSuffix(".lora_A.weight") {
            adapted.append(String(name.dropLast(".lora_A.weight".count)))
        }
        let resolved = LoRAConfig(adaptedModules: adapted)
        let targets = resolved.uniformModules(layers: layers) ?? adapted
        let alpha: JSONValue = lora.alpha == lora.alpha.rounded() && abs(lora.alpha) < 1e9 ? .int(Int(lora.alpha)) : .double(lora.alpha)
        let config = JSONValue.obj([
            "alpha_pattern": .object(.init()), "base_model_name_or_path": .string(basePath), "bias": .string("none"),
            "fan_in_fan_out": .bool(false), "inference_mode": .bool(true), "init_lora_weights": .bool(true),
            "layers_to_transform": .null, "lora_alpha": alpha, "lora_dropout": .double(lora.dropout),
            "modules_to_save": .null, "peft_type": .string("LORA"), "r": .int(lora.rank), "rank_pattern": .object(.init()),
            "target_modules": .array(targets.map { .string($0) }), "task_type": .string("CAUSAL_LM"),
            "use_dora": .bool(false), "use_rslora": .bool(lora.useRSLoRA),
        ])
        try Safetensors.write(
            adapters.map { (name: prefix + $0.name, tensor: $0.tensor) }, metadata: ["format": "pt"],
            to: directory.appendingPathComponent(weightsFile).path)
        let text = Array((config.serialized() + "\n").utf8)
        try Safetensors.writeAtomically(to: directory.appendingPathComponent(configFile).path) { sink in
            try text.withUnsafeBytes { try sink($0) }
        }
    }

    // MARK: Reading

    /// Reads a PEFT LoRA directory: its settings and its tensors under distill's adapter
    /// names, checked against `config` (the base's) for layer count and shapes.
    package static func read(at directory: URL, config base: LlamaConfig) throws -> (
        lora: LoRAConfig, tensors: [(name: String, tensor: Tensor)], basePath: String?
    ) {
        let configURL = directory.appendingPathComponent(configFile)
        func refuse(_ hint: String, _ problems: [String] = []) -> HFModelError {
            HFModelError(.unsupportedConfig, file: configURL.path, hint: hint, problems: problems)
        }
        guard let data = FileManager.default.contents(atPath: configURL.path) else {
            throw HFModelError(.io, file: configURL.path, hint: "missing or unreadable; a PEFT adapter directory holds \(configFile) and \(weightsFile)")
        }
        let root: JSONNode
        do {
            root = JSONNode(try JSONValue.parse(data), path: "")
        } catch {
            throw HFModelError(.invalidConfig, file: configURL.path, hint: "not valid JSON: \(error)")
        }
        let lora: LoRAConfig
        let layers = base.numHiddenLayers
        // What target_modules (with layers_to_transform) selects; nil when it cannot be told here.
        var selected: Set<String>?
        var regex: String?  // target_modules' regex, kept as the spec when it reads the same here
        var problems: [String] = []
        do {
            let type = try root["peft_type"].optionalString()
            guard type == "LORA" else { throw refuse("peft_type is \(type.map { "\"\($0)\"" } ?? "missing"); distill reads LORA adapters") }
            if let task = try root["task_type"].optionalString(), task != "CAUSAL_LM" {
                throw refuse("task_type is \"\(task)\"; distill reads CAUSAL_LM adapters")
            }
            var unsupported: [String] = []
            if try root["use_dora"].bool(default: false) { unsupported.append("use_dora: DoRA is not supported") }
            if try root["fan_in_fan_out"].bool(default: false) { unsupported.append("fan_in_fan_out: only Llama's Linear layers are supported") }
            if let bias = try root["bias"].optionalString(), bias != "none" { unsupported.append("bias \"\(bias)\": adapters with biases are not supported") }
            if try root["lora_bias"].bool(default: false) { unsupported.append("lora_bias: adapters with biases are not supported") }
            for key in ["rank_pattern", "alpha_pattern"] where !root[key].isNull {
                if try root[key].object().isEmpty { continue }
                unsupported.append("\(key): per-module ranks and alphas are not supported")
            }
            for key in ["modules_to_save", "layer_replication", "trainable_token_indices", "exclude_modules", "target_parameters"]
            where !root[key].isNull {
                if case .array(let items) = root[key].value, items.isEmpty { continue }
                unsupported.append("\(key): distill adapts projections chosen by target_modules and trains nothing else")
            }
            // layers_to_transform: an index or a list of them, under peft's default layers_pattern.
            var onlyLayers: Set<Int>?
            switch root["layers_to_transform"].value {
            case .null: break
            case .array: onlyLayers = Set(try root["layers_to_transform"].array().map { try $0.int() })
            default: onlyLayers = [try root["layers_to_transform"].int()]
            }
            switch root["layers_pattern"].value {
            case .null: break
            case .string("layers"): break
            case .array(let items) where items.isEmpty || items == [.string("layers")]: break
            default: unsupported.append("layers_pattern: distill's layers are model.layers.<i>")
            }
            if !unsupported.isEmpty { throw refuse("the adapter uses features distill does not compute", unsupported) }
            do {
                switch root["target_modules"].value {
                case .string(let pattern) where pattern == LoRAConfig.allLinear:
                    selected = Set(LoRAConfig.modulePaths(layers: layers))
                case .string(let pattern):
                    // peft ignores layers_to_transform for a regex.
                    selected = Set(try LoRAConfig.select(modules: [], pattern: pattern, layers: layers))
                    regex = pattern
                case .array:
                    let list = try root["target_modules"].array().map { try $0.string() }
                    let paths = try LoRAConfig.select(modules: list, pattern: nil, layers: layers, strict: false)
                    // peft applies layers_to_transform to suffix matches, not to paths given in full.
                    selected = Set(paths.filter { list.contains($0) || onlyLayers?.contains(LoRAConfig.parseModulePath($0)!.layer) ?? true })
                default: break
                }
            } catch LoRATargetError.invalidPattern {
                // Python's regex dialect is not Swift's; the tensors then say which modules are adapted.
            } catch {
                problems.append("\(error)")
            }
            lora = LoRAConfig(
                rank: try root["r"].int(), alpha: try root["lora_alpha"].double(),
                dropout: root["lora_dropout"].isNull ? 0 : try root["lora_dropout"].double(),
                useRSLoRA: try root["use_rslora"].bool(default: false), targetModules: [])
        } catch let error as HFModelError {
            throw error
        } catch {
            throw HFModelError(.invalidConfig, file: configURL.path, hint: "\(error)")
        }

        let weightsURL = directory.appendingPathComponent(weightsFile)
        guard FileManager.default.fileExists(atPath: weightsURL.path) else {
            let hint = FileManager.default.fileExists(atPath: directory.appendingPathComponent("adapter_model.bin").path)
                ? "missing; the adapter is in pickle form (adapter_model.bin): save it again with safe_serialization=True"
                : "missing; a PEFT adapter directory holds \(configFile) and \(weightsFile)"
            throw HFModelError(.io, file: weightsURL.path, hint: hint)
        }
        let tensors = try SafetensorsFile(path: weightsURL.path).readAll()

        // Names: base_model.model.model.layers.<i>.<self_attn|mlp>.<module>.lora_<A|B>[.<adapter>].weight
        var found: [String: Tensor] = [:]
        var modules = Set<String>()  // adapted module paths, as the tensors show them
        for (name, tensor) in tensors.sorted(by: { $0.key < $1.key }) {
            guard let parsed = parseName(name, layers: layers) else {
                problems.append("\(name): not a LoRA A or B matrix of a Llama projection distill adapts")
                continue
            }
            modules.insert(parsed.module)
            found[parsed.distillName] = tensor
        }
        if let selected {
            for path in LoRAConfig.modulePaths(layers: layers) where selected.contains(path) && !modules.contains(path) {
                problems.append("\(prefix + path).lora_A/lora_B are missing: target_modules selects \(path)")
            }
            for path in LoRAConfig.modulePaths(layers: layers) where modules.contains(path) && !selected.contains(path) {
                problems.append("\(prefix + path) has LoRA tensors, but target_modules does not select it")
            }
        }
        if modules.isEmpty && problems.isEmpty { problems.append("no LoRA tensors") }
        let adapted = LoRAConfig.modulePaths(layers: layers).filter(modules.contains)
        var result = lora
        result.adaptedModules = adapted
        result.targetModules = result.uniformModules(layers: layers) ?? adapted
        if let regex { (result.targetPattern, result.targetModules) = (regex, []) }
        if !adapted.isEmpty { problems += result.problems().map { "\($0)" } }
        // In `adapterParameters()` order: layer, then module in Llama order, then A, B.
        var ordered: [(name: String, tensor: Tensor)] = []
        for path in adapted {
            let (inputs, outputs) = projectionShape(LoRAConfig.parseModulePath(path)!.module, config: base)
            for (part, shape) in [("lora_A", [lora.rank, inputs]), ("lora_B", [outputs, lora.rank])] {
                let name = "\(path).\(part).weight"
                guard let tensor = found[name] else {
                    problems.append("\(prefix + name) is missing: an adapted module needs both lora_A and lora_B")
                    continue
                }
                if tensor.shape != shape { problems.append("\(prefix + name) has shape \(tensor.shape), expected \(shape) (r \(lora.rank))") }
                ordered.append((name, tensor))
            }
        }
        if !problems.isEmpty {
            throw HFModelError(.tensorMismatch, file: weightsURL.path, hint: "the adapter does not fit the base model", problems: problems)
        }
        return (result, ordered, try root["base_model_name_or_path"].optionalString())
    }

    /// distill's name and module for a PEFT tensor name, or nil when it is not one distill adapts.
    /// `module` is the adapted module's path (`model.layers.0.self_attn.q_proj`).
    private static func parseName(_ name: String, layers: Int) -> (distillName: String, module: String)? {
        guard name.hasPrefix(prefix + "model.layers.") else { return nil }
        var parts = name.dropFirst(prefix.count).split(separator: ".").map(String.init)
        // An adapter name between lora_A/B and weight ("lora_A.default.weight") is dropped.
        if parts.count == 8 { parts.remove(at: 6) }
        guard parts.count == 7, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]), layer >= 0, layer < layers,
            parts[6] == "weight", parts[5] == "lora_A" || parts[5] == "lora_B", LoRAConfig.moduleNames.contains(parts[4])
        else { return nil }
        guard parts[3] == LoRAConfig.group(of: parts[4]) else { return nil }
        let module = LoRAConfig.modulePath(layer: layer, module: parts[4])
        return ("\(module).\(parts[5]).weight", module)
    }

    /// (in, out) features of a Llama projection.
    private static func projectionShape(_ module: String, config c: LlamaConfig) -> (Int, Int) {
        let q = c.numAttentionHeads * c.headDim, kv = c.numKeyValueHeads * c.headDim
        switch module {
        case "q_proj": return (c.hiddenSize, q)
        case "k_proj", "v_proj": return (c.hiddenSize, kv)
        case "o_proj": return (q, c.hiddenSize)
        case "gate_proj", "up_proj": return (c.hiddenSize, c.intermediateSize)
        default: return (c.intermediateSize, c.hiddenSize)
        }
    }
}
