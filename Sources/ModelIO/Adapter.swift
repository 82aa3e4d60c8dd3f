// Adapter-only checkpoints: a LoRA adapter's tensors (and, while training, their AdamW
// moments) in a distill checkpoint of kind "adapter". The file names the base model it was
// trained on by a checksum of the base's weights and remembers where the base was; loading
// it onto any other base is refused. Layout: docs/checkpoints.md, "Adapter checkpoints".

import Core
import Foundation
import JSON
import NN
import Platform

package enum AdapterMetadata {
    /// Metadata key holding the LoRA settings as JSON, in PEFT's key names.
    package static let lora = "lora"
    /// Metadata key holding the base model's path: relative to the adapter file's folder
    /// when the two share an ancestor other than the root, else absolute.
    package static let basePath = "base_path"
}

// MARK: - Base identity

/// The identity of a model's weights: XXH64 over every parameter's HF name, shape and
/// float32 bytes, in `namedParameters()` order, written `xxh64:<16 hex digits>`; a model
/// holding packed matrices (QLoRA's base) adds each one's name, shape, format and blocks. A LoRA
/// model's checksum is its base's (adapters are not parameters of the base); merging
/// changes it. `includingAdapters` adds the adapters' tensors after the base's: the identity
/// of everything that shapes the logits (the cache key of DPO reference log-probs and KD
/// teacher top-k). Adapter checkpoints store the base form; it must not change.
package func modelChecksum(_ model: LlamaModel, includingAdapters: Bool = false) -> String {
    var hasher = XXH64()
    for (name, tensor) in model.namedParameters() + (includingAdapters ? model.adapterParameters() : []) {
        hasher.update(name)
        for d in tensor.shape { hasher.update(Int64(d)) }
        hasher.update(UnsafeRawBufferPointer(start: tensor.data, count: tensor.count * MemoryLayout<Float>.size))
    }
    for (name, matrix) in model.packedParameters() {
        hasher.update(name + ":" + matrix.format.rawValue + (matrix.interleaved ? ":interleaved" : ""))
        for d in [matrix.rows, matrix.columns] { hasher.update(Int64(d)) }
        withExtendedLifetime(matrix) {
            hasher.update(UnsafeRawBufferPointer(start: matrix.blockStorage, count: matrix.bytes))
        }
    }
    return "xxh64:" + hexDigits(hasher.finalize())
}

// MARK: - LoRA settings as JSON

extension LoRAConfig {
    /// `{"adapted_modules", "lora_alpha", "lora_dropout", "r", "target_modules", "use_rslora"}`,
    /// keys sorted: target_modules as written (a list, or a regex string as in peft) and
    /// adapted_modules the resolved module paths (absent in files from before per-module
    /// targets, which resolve their list on loading).
    package var metadataJSON: String {
        var fields: [String: JSONValue] = [
            "lora_alpha": .double(alpha), "lora_dropout": .double(dropout), "r": .int(rank),
            "target_modules": targetPattern.map { .string($0) } ?? .array(targetModules.map { .string($0) }),
            "use_rslora": .bool(useRSLoRA),
        ]
        if let adaptedModules { fields["adapted_modules"] = .array(adaptedModules.map { .string($0) }) }
        return JSONValue.object(.init(fields.sorted { $0.key < $1.key }.map { (key: $0.key, value: $0.value) })).serialized()
    }

    /// Reads `metadataJSON`; `path` names the file in errors.
    package init(metadataJSON text: String, path: String) throws {
        func bad(_ problem: String) -> CheckpointError {
            CheckpointError(
                .malformed, path: path, problem: "metadata \(AdapterMetadata.lora): \(problem)",
                fix: "the adapter file is damaged or was not written by distill")
        }
        let root: JSONNode
        do {
            root = JSONNode(try JSONValue.parse(Array(text.utf8)), path: "")
        } catch {
            throw bad("not JSON (\(error))")
        }
        do {
            var modules: [String] = [], pattern: String?
            if case .string(let p) = root["target_modules"].value { pattern = p } else {
                modules = try root["target_modules"].array().map { try $0.string() }
            }
            let adapted = root["adapted_modules"].isNull ? nil : try root["adapted_modules"].array().map { try $0.string() }
            self.init(
                rank: try root["r"].int(), alpha: try root["lora_alpha"].double(),
                dropout: root["lora_dropout"].isNull ? 0 : try root["lora_dropout"].double(),
                useRSLoRA: try root["use_rslora"].bool(default: false), targetModules: modules, targetPattern: pattern,
                adaptedModules: adapted)
        } catch {
            throw bad("\(error)")
        }
        let problems = problems()
        guard problems.isEmpty else { throw bad(problems.joined(separator: "; ")) }
    }
}

// MARK: - Reading and writing

/// What an adapter checkpoint says about itself beyond its tensors.
package struct AdapterInfo: Sendable, Equatable {
    package var lora: LoRAConfig
    package var baseChecksum: String
    /// The base as recorded (relative to the adapter's folder, or absolute); nil when unknown.
    package var basePath: String?

    package init(lora: LoRAConfig, baseChecksum: String, basePath: String?) {
        self.lora = lora
        self.baseChecksum = baseChecksum
        self.basePath = basePath
    }

    /// Reads the adapter fields of `contents`, which must be of kind adapter.
    package init(_ contents: CheckpointContents, path: String) throws {
        guard contents.kind == .adapter else {
            throw CheckpointError(
                .malformed, path: path, problem: "is a whole model, not an adapter",
                fix: "give an adapter checkpoint (written by a LoRA stage or `distill import peft`)")
        }
        guard let checksum = contents.baseChecksum else {
            throw CheckpointError(
                .malformed, path: path, problem: "adapter without base_checksum",
                fix: "the adapter file is damaged or was not written by distill")
        }
        guard let json = contents.metadata[AdapterMetadata.lora] else {
            throw CheckpointError(
                .malformed, path: path, problem: "adapter without its LoRA settings (metadata \(AdapterMetadata.lora))",
                fix: "the adapter file is damaged or was not written by distill")
        }
        self.init(lora: try LoRAConfig(metadataJSON: json, path: path), baseChecksum: checksum, basePath: contents.metadata[AdapterMetadata.basePath])
    }

    /// The metadata entries an adapter checkpoint written at `adapterPath` carries, the
    /// base path made relative to the adapter's folder where that is possible.
    package func metadata(adapterPath: String) -> [String: String] {
        var out = [AdapterMetadata.lora: lora.metadataJSON]
        if let basePath { out[AdapterMetadata.basePath] = relativePath(basePath, from: adapterFolder(adapterPath)) }
        return out
    }

    /// The recorded base path resolved against the folder of the adapter at `adapterPath`.
    package func resolvedBasePath(adapterPath: String) -> String? {
        guard let basePath else { return nil }
        if basePath.hasPrefix("/") { return basePath }
        return URL(fileURLWithPath: basePath, relativeTo: URL(fileURLWithPath: adapterFolder(adapterPath), isDirectory: true))
            .standardizedFileURL.path
    }
}

private func adapterFolder(_ adapterPath: String) -> String {
    URL(fileURLWithPath: adapterPath).standardizedFileURL.deletingLastPathComponent().path
}

/// `path` relative to `folder` ("../base.h5"), or `path` itself (absolute) when the two
/// share no ancestor but the root.
package func relativePath(_ path: String, from folder: String) -> String {
    let target = URL(fileURLWithPath: path).standardizedFileURL.pathComponents
    let base = URL(fileURLWithPath: folder).standardizedFileURL.pathComponents
    var common = 0
    while common < min(target.count, base.count) && target[common] == base[common] { common += 1 }
    guard common > 1 else { return URL(fileURLWithPath: path).standardizedFileURL.path }
    let parts = Array(repeating: "..", count: base.count - common) + target[common...]
    return parts.isEmpty ? "." : parts.joined(separator: "/")
}

/// An adapter checkpoint's contents for `model` (which carries LoRA layers added with
/// `lora`): the adapter tensors, the base's checksum and path, and any training state.
/// `baseChecksum` overrides the model's own: a packed base records its f32 source's, so the
/// adapter loads onto that.
package func adapterContents(
    _ model: LlamaModel, lora: LoRAConfig, basePath: String?, adapterPath: String, threads: Int,
    optimizer: OptimizerState? = nil, step: Int = 0, tokensSeen: Int = 0, rng: [String: RNG] = [:],
    dataCursor: String? = nil, recipe: String? = nil, tokenizer: String? = nil, metadata: [String: String] = [:],
    baseChecksum: String? = nil
) -> CheckpointContents {
    var lora = lora
    lora.adaptedModules = model.adaptedModulePaths()  // what the file's tensors are, whatever the spec
    let info = AdapterInfo(lora: lora, baseChecksum: baseChecksum ?? modelChecksum(model), basePath: basePath)
    return CheckpointContents(
        kind: .adapter, config: model.config, parameters: model.adapterParameters().map { ($0.0, $0.1) },
        optimizer: optimizer, step: step, tokensSeen: tokensSeen, rng: rng, dataCursor: dataCursor, recipe: recipe,
        tokenizer: tokenizer, threads: threads, metadata: metadata.merging(info.metadata(adapterPath: adapterPath)) { $1 },
        baseChecksum: info.baseChecksum)
}

extension LlamaModel {
    /// Adds adapters as `info.lora` describes (its resolved modules, or for older files its
    /// target list resolved against this model) and loads `tensors` (PEFT-style names, as
    /// `adapterParameters()` gives them) into them, after checking that this model is the
    /// base the adapter was trained on. `path` and `basePath` name the files in errors.
    /// The adapters are trainable unless `trainable` is false. Returns the LoRA settings
    /// with `adaptedModules` filled in.
    @discardableResult
    package func attachAdapter(
        _ tensors: [(name: String, tensor: Tensor)], info: AdapterInfo, path: String, basePath: String,
        trainable: Bool = false
    ) throws -> LoRAConfig {
        let checksum = modelChecksum(self)
        guard checksum == info.baseChecksum else {
            throw CheckpointError(
                .wrongBase, path: path,
                problem: "was trained on the base with checksum \(info.baseChecksum), but \(basePath) has \(checksum)",
                fix: "give the base it was trained on (--base), not a different or merged model")
        }
        let lora: LoRAConfig
        do {
            lora = try info.lora.resolved(layers: layers.count)
        } catch {
            throw CheckpointError(
                .shapeMismatch, path: path, problem: "its adapted modules do not fit \(basePath): \(error)",
                fix: "give the base it was trained on (--base)")
        }
        var rng = RNG(seed: 0)
        let fresh = addLoRA(lora, rng: &rng)
        let given = Dictionary(tensors.map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
        let expected = Set(fresh.map(\.0))
        let missing = fresh.map(\.0).filter { given[$0] == nil }
        let unexpected = tensors.map(\.name).filter { !expected.contains($0) }
        guard missing.isEmpty && unexpected.isEmpty else {
            var parts: [String] = []
            if !missing.isEmpty { parts.append("missing \(listed(missing))") }
            if !unexpected.isEmpty { parts.append("unexpected \(listed(unexpected))") }
            throw CheckpointError(
                .shapeMismatch, path: path, problem: "adapter tensors do not match its LoRA settings: " + parts.joined(separator: "; "),
                fix: "the adapter file is damaged or was not written by distill")
        }
        for (name, parameter) in fresh {
            let value = given[name]!
            guard value.shape == parameter.shape else {
                throw CheckpointError(
                    .shapeMismatch, path: path,
                    problem: "adapter tensor \(name) has shape \(value.shape), the model needs \(parameter.shape)",
                    fix: "the adapter belongs to a model of another shape")
            }
            parameter.data.update(from: value.data, count: value.count)
            parameter.requiresGrad = trainable
        }
        return lora
    }
}

private func listed(_ names: [String]) -> String {
    names.count <= 3 ? names.joined(separator: ", ") : names.prefix(3).joined(separator: ", ") + " and \(names.count - 3) more"
}

extension LlamaModel {
    /// The parameters of the model this one computes, adapters folded in (`W + s·BA` for
    /// every enabled LoRA layer), without changing the model.
    package func mergedParameters() -> [(String, Tensor)] {
        var merged: [ObjectIdentifier: Tensor] = [:]
        for layer in layers {
            for (_, m) in layer.modules {
                if let lora = m as? LoRALinear, lora.enabled { merged[ObjectIdentifier(lora.weight)] = lora.mergedWeight() }
            }
        }
        return namedParameters().map { ($0.0, merged[ObjectIdentifier($0.1)] ?? $0.1) }
    }
}
