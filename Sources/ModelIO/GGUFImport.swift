// Reading a llama.cpp GGUF model ("llama" architecture) into a distill model: the weights
// dequantized to f32 in Hugging Face layout, the config from the llama.* metadata, the
// tokenizer as an equivalent tokenizer.json (GGUFTokenizer.swift), the chat template
// recognised as a family distill renders (TextData/ChatTemplate.swift), and where it came
// from. The inverse of GGUFLlama.swift's export; docs/formats.md ("GGUF") lists the keys.
//
// Config (llama.cpp's key names; a key that is absent takes llama.cpp's default):
//   llama.block_count, embedding_length, feed_forward_length, attention.head_count  required
//   attention.head_count_kv (head_count), attention.key_length (embedding / heads; value_length
//   must equal it), rope.dimension_count (must be the head size: partial rotary is another
//   architecture), rope.freq_base (10000), attention.layer_norm_rms_epsilon (1e-5),
//   context_length (2048), vocab_size (the token embedding's rows)
//   rope.scaling.type other than "none" (linear, yarn) is refused.
// Llama 3's rope scaling: llama.cpp's converter stores it as the tensor rope_freqs.weight, one
// divisor per rotary pair (D/2 values, Sources/Core/Rope.swift), not as keys. distill keeps
// the scaling as its parameters (LlamaConfig.ropeScaling), so they are recovered from the
// divisors: factor is the largest divisor, and low_freq_factor, high_freq_factor and
// original_max_position_embeddings are searched, released models' values first (1, 4, 8192;
// Llama 3.1 and 3.2), then low in {1, 2, 0.5, 4}, high in {2, 4, 8, 16, 32} above it and the
// context in context_length and every power of two from 16 to 2^20. The first whose divisors
// all equal the file's within 1e-6 relative is taken; none is a refusal naming the tensor.
// Divisors that are all 1 are no scaling. The three parameters act only through the band edges
// O / L and O / H, so a match may be another spelling of the same scaling (O, L, H and 2O, 2L,
// 2H compute the same model).
// Tensors: ggml names map back to HF names; q and k rows go back from llama.cpp's
// neighbour-pair rotary layout to the rotate-half layout (the inverse of
// `LlamaGGUF.interleaveRotaryRows`); `output.weight` absent means tied embeddings. A tensor
// the importer does not know is refused: it means an architecture variant it would misread.
//
// Untrusted input: everything is checked against the header before a tensor is read (the
// GGUF reader's own checks, then shapes against the config and the f32 size against this
// machine's memory), so a hostile file fails with its name and the key before any large
// allocation.

import Core
import Foundation
import Formats
import JSON
import NN
import Platform
import TextData

/// A GGUF model read into memory, with what the checkpoint records about it.
package struct GGUFModel {
    package var config: LlamaConfig
    package var parameters: [String: Tensor]
    package var tokenizerJSON: String
    /// The chat template family and default system message, when the file's template was recognised.
    package var chat: ChatStyle?
    /// The file's `tokenizer.chat_template` when it has one (recognised or not).
    package var chatTemplateText: String?
    /// imported_from, source_sha256, source_tensor_types, and the chat keys (ChatStyle.metadata).
    package var metadata: [String: String]
    /// The tensors stored in a format the decode engine runs as is (Q8_0, Q4_0, Q4_1), as the
    /// file's blocks (rotary rows back in the rotate-half order), by distill name.
    package var blocks: [String: PackedMatrix] = [:]
}

extension LlamaGGUF {
    /// The distill (Hugging Face) name of a ggml tensor name: the inverse of `tensorName`.
    package static func hfName(_ ggmlName: String) -> String? {
        switch ggmlName {
        case "token_embd.weight": return "model.embed_tokens.weight"
        case "output_norm.weight": return "model.norm.weight"
        case "output.weight": return "lm_head.weight"
        default: break
        }
        let parts = ggmlName.split(separator: ".", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "blk", let layer = Int(parts[1]), layer >= 0 else { return nil }
        return layerTensors.first { $0.ggml == parts[2] }.map { "model.layers.\(layer).\($0.hf)" }
    }
}

extension LlamaGGUF {
    /// Llama 3's scaling whose llama.cpp divisors (`RopeScaling.frequencyFactors`) equal
    /// `factors` within 1e-6 relative: `.some(nil)` when they are all 1 (no scaling), nil when
    /// no parameters tried match (the search is in the file header).
    package static func llama3Scaling(matching factors: [Float], headDim: Int, theta: Float, contextLength: Int)
        -> RopeScaling??
    {
        func same(_ a: [Float], _ b: [Float]) -> Bool {
            a.count == b.count && zip(a, b).allSatisfy { abs(Double($0) - Double($1)) <= 1e-6 * abs(Double($1)) }
        }
        guard headDim > 0, factors.count == headDim / 2 else { return nil }
        if same(factors, [Float](repeating: 1, count: factors.count)) { return .some(nil) }
        guard let largest = factors.max(), largest >= 1 else { return nil }
        let plain = RopeTable.inverseFrequencies(headDim: headDim, theta: theta)
        var bands: [(low: Double, high: Double)] = [(1, 4)]
        for low in [1.0, 2, 0.5, 4] {
            for high in [2.0, 4, 8, 16, 32] where high > low && !(low == 1 && high == 4) { bands.append((low, high)) }
        }
        var contexts = [8192, contextLength]
        for k in 4...20 where !contexts.contains(1 << k) { contexts.append(1 << k) }
        for band in bands {
            for context in contexts where context >= 1 {
                let scaling = RopeScaling(
                    factor: Double(largest), lowFreqFactor: band.low, highFreqFactor: band.high,
                    originalMaxPositionEmbeddings: context)
                if same(scaling.frequencyFactors(plain), factors) { return .some(scaling) }
            }
        }
        return nil
    }
}

/// Reads a GGUF model file (see the file header for what is read and refused).
package func readGGUFModel(path: String) throws -> GGUFModel {
    let file = try GGUFFile(path: path)
    func refuse(_ field: String, _ hint: String) -> GGUFError {
        GGUFError(.unsupportedModel, file: path, field: field, hint: hint)
    }
    let architecture = file["general.architecture"]?.string
    guard architecture == "llama" else {
        throw refuse(
            "key 'general.architecture'",
            architecture.map { "is \"\($0)\"; distill imports the \"llama\" architecture (Llama, SmolLM, TinyLlama, Llama 3.x)" }
                ?? "is missing; a GGUF model names its architecture there")
    }
    if let type = file["general.type"]?.string, type != "model" {
        throw refuse(
            "key 'general.type'",
            type == "adapter"
                ? "is \"adapter\": this file is a LoRA adapter, not a model; import its base model instead"
                : "is \"\(type)\"; a model file says \"model\"")
    }
    var config = try ggufConfig(file, path: path)
    let problems = config.problems()
    if !problems.isEmpty {
        throw refuse("llama.* keys", "describe a model distill cannot build: " + problems.joined(separator: "; "))
    }

    // Every tensor known and shaped as the config says, before any is read.
    let expected = Dictionary(uniqueKeysWithValues: config.parameterShapes.map { ($0.0, $0.1) })
    var names: [(ggml: String, hf: String)] = []
    var ropeFactors: GGUFTensorInfo?
    for info in file.tensors {
        if info.name == "rope_freqs.weight" {
            ropeFactors = info
            continue
        }
        guard let hf = LlamaGGUF.hfName(info.name), let shape = expected[hf] else {
            throw refuse("tensor '\(info.name)'", "is not part of a \(config.numHiddenLayers)-layer Llama model; the file may be another architecture variant")
        }
        guard info.shape == shape else {
            throw refuse("tensor '\(info.name)'", "has shape \(info.shape) but the llama.* keys make it \(shape)")
        }
        names.append((info.name, hf))
    }
    let missing = Set(expected.keys).subtracting(names.map(\.hf))
    guard missing.isEmpty else {
        let ggml = missing.sorted().map { LlamaGGUF.tensorName($0) ?? $0 }
        throw refuse("tensors", "the file lacks \(ggml.prefix(4).joined(separator: ", "))\(ggml.count > 4 ? " and \(ggml.count - 4) more" : "")")
    }
    if let ropeFactors {
        let field = "tensor '\(ropeFactors.name)'"
        let half = config.headDim / 2
        guard ropeFactors.shape == [half] else {
            throw refuse(
                field, "has shape \(ropeFactors.shape); rope frequency factors hold one per rotary pair, [\(half)]")
        }
        let factors = try file.read(ropeFactors.name).values
        guard factors.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw refuse(field, "holds a factor that is not a positive number: \(factors)")
        }
        let found = LlamaGGUF.llama3Scaling(
            matching: factors, headDim: config.headDim, theta: Float(config.ropeTheta),
            contextLength: config.maxPositionEmbeddings)
        guard let found else {
            throw refuse(
                field,
                "holds rope frequency factors that are not Llama 3's scaling (rope_type llama3) with factor "
                    + "\(factors.max()!) and any low_freq_factor, high_freq_factor and original context distill tries; "
                    + "distill computes no other scaling")
        }
        config.ropeScaling = found
    }

    // The f32 weights must fit, with room to compute.
    let bytes = Double(file.tensors.reduce(0) { $0 + $1.elementCount }) * 4
    try MemoryBudget.require(
        bytes * 1.5, for: "loading its weights in f32 (\(MemoryBudget.format(bytes)), with half again to compute)",
        path: path, fix: "use a smaller model")
    let tokenizer = try GGUFTokenizer.tokenizerJSON(from: file)
    var parameters: [String: Tensor] = [:]
    var blocks: [String: PackedMatrix] = [:]
    let arena = HugePageArena()  // the weights in load order, on huge pages (HugePageArena)
    for (ggml, hf) in names {
        let heads = LlamaGGUF.rotaryHeads(hf, config)
        var t = try file.read(ggml, in: heads == nil ? arena : nil)
        if let i = t.firstNonFinite() {
            throw UserError(
                path: path, problem: "tensor \(ggml) holds a non-finite value (\(t.data[i]) at element \(i))",
                fix: "the model's weights are damaged; re-download them", kind: .badData)
        }
        if let heads { t = LlamaGGUF.deinterleaveRotaryRows(t, heads: heads, in: arena) }
        t.name = hf
        parameters[hf] = t
        if let info = file.tensor(ggml), let format = WeightFormat(ggml: info.type), info.shape.count == 2 {
            let (rows, columns) = (info.shape[0], info.shape[1])
            var raw = try file.rawBytes(ggml)
            if let heads { raw = LlamaGGUF.deinterleaveRotaryRows(raw, rows: rows, heads: heads) }
            blocks[hf] = raw.withUnsafeBytes { PackedMatrix(format: format, rows: rows, columns: columns, bytes: $0) }
        }
    }

    var types: [String: Int] = [:]
    for info in file.tensors { types[info.type.name, default: 0] += 1 }
    var metadata = [
        "imported_from": path,
        "source_sha256": try fileSHA256(path),
        "source_tensor_types": types.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }.joined(separator: ","),
    ]
    let templateText = file["tokenizer.chat_template"]?.string
    let chat = templateText.flatMap(ChatStyle.recognize)
    if let chat { metadata.merge(chat.metadata) { $1 } }
    return GGUFModel(
        config: config, parameters: parameters, tokenizerJSON: tokenizer.json, chat: chat, chatTemplateText: templateText,
        metadata: metadata, blocks: blocks)
}

/// The config the llama.* keys describe.
private func ggufConfig(_ file: GGUFFile, path: String) throws -> LlamaConfig {
    func integer(_ key: String, default value: Int? = nil) throws -> Int {
        guard let v = file["llama." + key] else {
            guard let value else {
                throw GGUFError(.unsupportedModel, file: path, field: "key 'llama.\(key)'", hint: "is missing; a llama model needs it")
            }
            return value
        }
        guard let i = v.int, i > 0 else {
            throw GGUFError(
                .unsupportedModel, file: path, field: "key 'llama.\(key)'",
                hint: "must be a positive integer (a per-layer array is another architecture), got \(v)")
        }
        return i
    }
    func real(_ key: String, default value: Double) throws -> Double {
        switch file["llama." + key] {
        case nil: return value
        case .float32(let f)?: return Double(f)
        case .float64(let f)?: return f
        case let v?:
            throw GGUFError(.unsupportedModel, file: path, field: "key 'llama.\(key)'", hint: "must be a float, got \(v)")
        }
    }
    if let scaling = file["llama.rope.scaling.type"]?.string, scaling != "none" {
        throw GGUFError(
            .unsupportedModel, file: path, field: "key 'llama.rope.scaling.type'",
            hint: "is \"\(scaling)\"; distill implements unscaled rope and Llama 3's frequency factors")
    }
    let hidden = try integer("embedding_length")
    let heads = try integer("attention.head_count")
    let headDim = try integer("attention.key_length", default: hidden / heads)
    let valueDim = try integer("attention.value_length", default: headDim)
    guard valueDim == headDim else {
        throw GGUFError(
            .unsupportedModel, file: path, field: "key 'llama.attention.value_length'",
            hint: "is \(valueDim) but key_length is \(headDim); distill's attention uses one head size")
    }
    let rotary = try integer("rope.dimension_count", default: headDim)
    guard rotary == headDim else {
        throw GGUFError(
            .unsupportedModel, file: path, field: "key 'llama.rope.dimension_count'",
            hint: "is \(rotary) but heads have \(headDim) dimensions; partial rotary embeddings are another architecture")
    }
    let embedding = file.tensor("token_embd.weight")
    let vocab = try integer("vocab_size", default: embedding?.shape.first ?? 0)
    return LlamaConfig(
        vocabSize: vocab, hiddenSize: hidden, intermediateSize: try integer("feed_forward_length"),
        numHiddenLayers: try integer("block_count"), numAttentionHeads: heads,
        numKeyValueHeads: try integer("attention.head_count_kv", default: heads), headDim: headDim,
        rmsNormEps: try real("attention.layer_norm_rms_epsilon", default: 1e-5), ropeTheta: try real("rope.freq_base", default: 10000),
        tieWordEmbeddings: file.tensor("output.weight") == nil, maxPositionEmbeddings: try integer("context_length", default: 2048),
        bosTokenId: file["tokenizer.ggml.bos_token_id"]?.int, eosTokenId: file["tokenizer.ggml.eos_token_id"]?.int)
}

/// Loads a GGUF model as a model with its tokenizer (not trainable unless asked).
func loadGGUFModel(path: String, trainable: Bool) throws -> LoadedModel {
    let imported = try readGGUFModel(path: path)
    let model = try LlamaModel(config: imported.config, parameters: imported.parameters)
    let tokenizer = try ByteLevelBPETokenizer(jsonData: Array(imported.tokenizerJSON.utf8))
    try checkVocabulary(tokenizer, imported.config, path: path)
    if trainable { for (_, p) in model.namedParameters() { p.requiresGrad = true } }
    var loaded = LoadedModel(model: model, tokenizer: tokenizer, tokenizerJSON: imported.tokenizerJSON, checkpoint: nil, path: path)
    loaded.chat = imported.chat
    loaded.sourceMetadata = imported.metadata
    loaded.fileBlocks = imported.blocks
    return loaded
}
