// Loading a model with its tokenizer from any source distill reads: a distill HDF5
// checkpoint, a Hugging Face model directory or a llama.cpp GGUF file (by its .gguf name;
// GGUFImport.swift). Shared by the stages and the CLI.

import Core
import Foundation
import JSON
import NN
import Platform
import TextData

package struct LoadedModel {
    package var model: LlamaModel
    package var tokenizer: ByteLevelBPETokenizer?
    /// The tokenizer.json text as stored, for writing it back unchanged.
    package var tokenizerJSON: String?
    /// The checkpoint when the source was one (nil for a Hugging Face directory).
    package var checkpoint: CheckpointContents?
    package var path: String
    /// For an adapter checkpoint: its LoRA settings and base identity, and the base it was
    /// loaded onto (the model then carries the adapter's LoRA layers).
    package var adapter: AdapterInfo?
    package var basePath: String?
    /// The model's chat template family and default system message, when its source records
    /// one (a checkpoint's metadata, a GGUF file's or a Hugging Face directory's recognised template).
    package var chat: ChatStyle?
    /// For a model read from a foreign file (GGUF): what a checkpoint of it records about its source.
    package var sourceMetadata: [String: String] = [:]
    /// For a quantized GGUF file: its Q8_0, Q4_0 and Q4_1 tensors as stored, by distill name
    /// (`--weights file`).
    package var fileBlocks: [String: PackedMatrix] = [:]

    /// The tokenizer, or an error saying the source has none.
    package func requireTokenizer() throws -> ByteLevelBPETokenizer {
        guard let tokenizer else {
            throw UserError(path: path, problem: "has no tokenizer", fix: "add tokenizer.json to the directory or train through a recipe", kind: .badData)
        }
        return tokenizer
    }

    /// The end-of-text id: the config's eos_token_id, else the tokenizer's first special token.
    package var endOfText: Int32? {
        if let eos = model.config.eosTokenId { return Int32(eos) }
        return tokenizer?.id(for: "<|endoftext|>")
    }
}

/// Reads a distill checkpoint (`.h5`, or its `.prev` when a commit was interrupted) or a
/// Hugging Face directory (config.json + safetensors + optional tokenizer.json). An adapter
/// checkpoint is loaded onto its base: `base` when given, else the base path it records;
/// the base's checksum must match. `trainable` makes the weights trainable, or only the
/// adapter's when the source is an adapter.
package func loadModel(from path: String, base: String? = nil, trainable: Bool = false) throws -> LoadedModel {
    var isDirectory: ObjCBool = false
    let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
    if exists && isDirectory.boolValue {
        let (config, tensors, tokenizerData) = try HFModelDirectory.read(at: URL(fileURLWithPath: path))
        // A checkpoint's tensors carry checksums; a foreign file's NaN or Inf would only surface as a
        // NaN loss much later, so it is refused here, naming the tensor.
        for name in tensors.keys.sorted() {
            let t = tensors[name]!
            if let i = t.firstNonFinite() {
                throw UserError(
                    path: path, problem: "tensor \(name) holds a non-finite value (\(t.data[i]) at element \(i))",
                    fix: "the model's weights are damaged; re-download or re-export them", kind: .badData)
            }
        }
        let model = try LlamaModel(config: config, parameters: tensors)
        let text = tokenizerData.map { String(decoding: $0, as: UTF8.self) }
        let tokenizer = try tokenizerData.map { try ByteLevelBPETokenizer(jsonData: $0) }
        try checkVocabulary(tokenizer, config, path: URL(fileURLWithPath: path).appendingPathComponent("tokenizer.json").path)
        if trainable { for (_, p) in model.namedParameters() { p.requiresGrad = true } }
        var loaded = LoadedModel(model: model, tokenizer: tokenizer, tokenizerJSON: text, checkpoint: nil, path: path)
        loaded.chat = try HFModelDirectory.chatTemplate(in: URL(fileURLWithPath: path)).flatMap(ChatStyle.recognize)
        loaded.sourceMetadata = ["imported_from": path].merging(loaded.chat?.metadata ?? [:]) { $1 }
        return loaded
    }
    if exists && path.lowercased().hasSuffix(".gguf") { return try loadGGUFModel(path: path, trainable: trainable) }
    guard exists || FileManager.default.fileExists(atPath: path + ".prev") else {
        throw UserError(
            path: path, problem: "no such checkpoint or model directory",
            fix: "give a distill .h5 checkpoint, a Hugging Face model directory or a .gguf model file", kind: .io)
    }
    let (contents, _) = try readCommittedCheckpoint(at: URL(fileURLWithPath: path))
    if contents.kind == .adapter { return try loadAdapter(contents, path: path, base: base, trainable: trainable) }
    let model = try LlamaModel(config: contents.config, parameters: Dictionary(uniqueKeysWithValues: contents.parameters))
    let tokenizer = try contents.tokenizer.map { try ByteLevelBPETokenizer(jsonData: Array($0.utf8)) }
    try checkVocabulary(tokenizer, contents.config, path: path)
    if trainable { for (_, p) in model.namedParameters() { p.requiresGrad = true } }
    var loaded = LoadedModel(model: model, tokenizer: tokenizer, tokenizerJSON: contents.tokenizer, checkpoint: contents, path: path)
    loaded.chat = ChatStyle(metadata: contents.metadata)
    return loaded
}

private func loadAdapter(_ contents: CheckpointContents, path: String, base: String?, trainable: Bool) throws -> LoadedModel {
    var info = try AdapterInfo(contents, path: path)
    guard let basePath = base ?? info.resolvedBasePath(adapterPath: path) else {
        throw UserError(
            path: path, problem: "is an adapter that records no base model",
            fix: "name the base it was trained on with --base", kind: .usage)
    }
    var loaded: LoadedModel
    do {
        loaded = try loadModel(from: basePath)
    } catch let error as UserError where error.kind == .io && base == nil {
        throw UserError(
            path: path, problem: "is an adapter whose base \(basePath) is missing",
            fix: "name the base it was trained on with --base", kind: .io)
    }
    guard loaded.adapter == nil else {
        throw UserError(
            path: basePath, problem: "is itself an adapter; an adapter's base must be a whole model",
            fix: "merge the first adapter with `distill merge` and train the next one on the merged model", kind: .badData)
    }
    guard loaded.model.config == contents.config else {
        throw CheckpointError(
            .wrongBase, path: path, problem: "was trained on a model with another config than \(basePath)",
            fix: "give the base it was trained on (--base)")
    }
    info.lora = try loaded.model.attachAdapter(contents.parameters, info: info, path: path, basePath: basePath, trainable: trainable)
    if let text = contents.tokenizer {
        let tokenizer = try ByteLevelBPETokenizer(jsonData: Array(text.utf8))
        try checkVocabulary(tokenizer, contents.config, path: path)
        loaded.tokenizer = tokenizer
        loaded.tokenizerJSON = text
    }
    loaded.checkpoint = contents
    loaded.chat = ChatStyle(metadata: contents.metadata) ?? loaded.chat
    loaded.path = path
    loaded.adapter = info
    loaded.basePath = basePath
    return loaded
}

/// Attaches the adapter checkpoint at `path` to `loaded` (a whole model, which must be the
/// adapter's base: same config and checksum) and returns what the adapter records. The model
/// then computes base plus adapter until `model.removeAdapters()`; the base's weights are
/// shared, so one loaded base serves several adapters in turn.
package func attachAdapterFile(_ path: String, to loaded: LoadedModel) throws -> AdapterInfo {
    guard FileManager.default.fileExists(atPath: path) || FileManager.default.fileExists(atPath: path + ".prev") else {
        throw UserError(path: path, problem: "no such adapter checkpoint", fix: "give an adapter .h5 written by distill", kind: .io)
    }
    let (contents, _) = try readCommittedCheckpoint(at: URL(fileURLWithPath: path))
    guard contents.kind == .adapter else {
        throw UserError(
            path: path, problem: "is a whole model, not an adapter",
            fix: "serve it as a model of its own (--model NAME=PATH)", kind: .usage)
    }
    guard loaded.adapter == nil else {
        throw UserError(path: loaded.path, problem: "is itself an adapter", fix: "give a whole model as the base", kind: .usage)
    }
    guard loaded.model.config == contents.config else {
        throw CheckpointError(
            .wrongBase, path: path, problem: "was trained on a model with another config than \(loaded.path)",
            fix: "attach it to the base it was trained on")
    }
    var info = try AdapterInfo(contents, path: path)
    info.lora = try loaded.model.attachAdapter(contents.parameters, info: info, path: path, basePath: loaded.path)
    return info
}

/// Imports a Hugging Face directory or a GGUF file into a distill checkpoint (model, config,
/// tokenizer, chat style and where it came from). `template` names the chat template family
/// when the source's is not recognised (or to override it); the source's default system
/// message is kept when the family is the same.
package func importModel(from source: String, to output: String, template: ChatTemplate? = nil) throws -> LoadedModel {
    var loaded = try loadModel(from: source)
    guard loaded.adapter == nil, loaded.checkpoint == nil else {
        throw UserError(
            path: source, problem: "is already a distill checkpoint", fix: "import a Hugging Face directory or a .gguf file", kind: .usage)
    }
    loaded.chat = loaded.chatStyle(template)
    if let chat = loaded.chat, let tokenizer = loaded.tokenizer { try chat.template.check(tokenizer) }
    var metadata = loaded.sourceMetadata.filter { $0.key != ChatStyle.templateKey && $0.key != ChatStyle.defaultSystemKey }
    metadata.merge(loaded.chat?.metadata ?? [:]) { $1 }
    let contents = CheckpointContents(
        config: loaded.model.config, parameters: loaded.model.namedParameters().map { ($0.0, $0.1) },
        tokenizer: loaded.tokenizerJSON, threads: Threads.count, metadata: metadata)
    try writeCheckpoint(contents, to: URL(fileURLWithPath: output))
    return loaded
}

/// Writes a Hugging Face directory (config.json, model.safetensors, tokenizer.json); an
/// adapter is folded into its base first (PEFT export keeps it separate).
package func exportHF(_ loaded: LoadedModel, to path: String) throws {
    let tensors = Dictionary(uniqueKeysWithValues: loaded.model.mergedParameters())
    try HFModelDirectory.write(
        config: loaded.model.config, tensors: tensors, tokenizerJSON: loaded.tokenizerJSON.map { Data($0.utf8) },
        to: URL(fileURLWithPath: path))
}

/// Refuses ids the model has no embedding row for: every id of the tokenizer (its vocabulary
/// and added tokens) and the config's BOS and EOS ids must be below vocab_size. Reading past
/// the table would give a wrong loss or a crash, never an error.
func checkVocabulary(_ tokenizer: ByteLevelBPETokenizer?, _ config: LlamaConfig, path: String) throws {
    let rows = config.vocabSize
    var ids: [(String, Int)] = []
    if let tokenizer, tokenizer.vocabSize > rows {
        let top = Int32(tokenizer.vocabSize - 1)
        ids.append(("token id \(top)\(tokenizer.token(for: top).map { " (\"\($0)\")" } ?? "")", Int(top)))
    }
    if let bos = config.bosTokenId, bos >= rows || bos < 0 { ids.append(("bos_token_id \(bos)", bos)) }
    if let eos = config.eosTokenId, eos >= rows || eos < 0 { ids.append(("eos_token_id \(eos)", eos)) }
    guard let (what, _) = ids.first else { return }
    throw UserError(
        path: path, problem: "\(what) is outside the model's vocabulary of \(rows) embeddings",
        fix: "use the tokenizer and config the model was trained with", kind: .badData)
}
