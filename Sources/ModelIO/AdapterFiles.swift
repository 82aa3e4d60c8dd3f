// Moving LoRA adapters between distill and other tools, and folding them into their base:
// `distill merge`, `distill export peft`, `distill import peft`, and the `merge` stage.

import Core
import Foundation
import NN
import Platform

extension LoadedModel {
    /// The adapter settings, or an error saying the source is a whole model.
    package func requireAdapter(for command: String) throws -> AdapterInfo {
        guard let adapter else {
            throw UserError(
                path: path, problem: "is a whole model, not an adapter",
                fix: "\(command) takes an adapter checkpoint (from a LoRA stage or `distill import peft`)", kind: .usage)
        }
        return adapter
    }
}

/// Folds the adapter of `loaded` into its base and writes the result as a whole-model
/// checkpoint (with the tokenizer) at `output`.
package func mergeAdapter(_ loaded: LoadedModel, to output: String) throws {
    _ = try loaded.requireAdapter(for: "merge")
    var metadata = ["merged_from": loaded.path]
    if let base = loaded.basePath { metadata["base"] = base }
    let contents = CheckpointContents(
        config: loaded.model.config, parameters: loaded.model.mergedParameters().map { ($0.0, $0.1) },
        tokenizer: loaded.tokenizerJSON, threads: Threads.count, metadata: metadata)
    try writeCheckpoint(contents, to: URL(fileURLWithPath: output))
}

/// Writes the adapter of `loaded` as a PEFT directory at `output`. PEFT loads adapters onto
/// a Hugging Face model, so base_model_name_or_path names one, relative to `output`:
/// `baseHF` when given (exported there first when it does not exist yet), else the base
/// itself when it is a Hugging Face directory, else `output/base`, where the base is
/// exported. Returns the Hugging Face base directory.
@discardableResult
package func exportPEFT(_ loaded: LoadedModel, to output: String, baseHF: String? = nil) throws -> String {
    let info = try loaded.requireAdapter(for: "export peft")
    var isDirectory: ObjCBool = false
    let directory = URL(fileURLWithPath: output).standardizedFileURL
    let base: String
    if let baseHF {
        base = URL(fileURLWithPath: baseHF).standardizedFileURL.path
    } else if let path = loaded.basePath, FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
        base = URL(fileURLWithPath: path).standardizedFileURL.path
    } else {
        base = directory.appendingPathComponent("base").path
    }
    if !FileManager.default.fileExists(atPath: base) {
        try HFModelDirectory.write(
            config: loaded.model.config, tensors: Dictionary(uniqueKeysWithValues: loaded.model.namedParameters()),
            tokenizerJSON: loaded.tokenizerJSON.map { Data($0.utf8) }, to: URL(fileURLWithPath: base))
    }
    try PEFTAdapter.write(
        loaded.model.adapterParameters().map { (name: $0.0, tensor: $0.1) }, lora: info.lora,
        layers: loaded.model.layers.count, basePath: relativePath(base, from: directory.path), to: directory)
    return base
}

/// Reads the PEFT adapter in `directory` for the base model at `base` and writes it as a
/// distill adapter checkpoint at `output` (recording `base` as its base).
package func importPEFT(directory: String, base: String, to output: String) throws {
    let loaded = try loadModel(from: base)
    guard loaded.adapter == nil else {
        throw UserError(
            path: base, problem: "is itself an adapter; an adapter's base must be a whole model",
            fix: "merge it first with `distill merge`", kind: .usage)
    }
    let peft = try PEFTAdapter.read(at: URL(fileURLWithPath: directory), config: loaded.model.config)
    let info = AdapterInfo(lora: peft.lora, baseChecksum: modelChecksum(loaded.model), basePath: base)
    try loaded.model.attachAdapter(peft.tensors, info: info, path: directory, basePath: base)
    let contents = adapterContents(
        loaded.model, lora: peft.lora, basePath: URL(fileURLWithPath: base).standardizedFileURL.path, adapterPath: output,
        threads: Threads.count, metadata: ["imported_from": directory])
    try writeCheckpoint(contents, to: URL(fileURLWithPath: output))
}
