// Loading a model with its tokenizer from either kind of source distill reads: a distill
// HDF5 checkpoint or a Hugging Face model directory. Shared by the stages and the CLI.

import Core
import Formats
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
        let model = try LlamaModel(config: config, parameters: tensors)
        let text = tokenizerData.map { String(decoding: $0, as: UTF8.self) }
        let tokenizer = try tokenizerData.map { try ByteLevelBPETokenizer(jsonData: $0) }
        if trainable { for (_, p) in model.namedParameters() { p.requiresGrad = true } }
        return LoadedModel(model: model, tokenizer: tokenizer, tokenizerJSON: text, checkpoint: nil, path: path)
    }
    guard exists || FileManager.default.fileExists(atPath: path + ".prev") else {
        throw UserError(
            path: path, problem: "no such checkpoint or model directory",
            fix: "give a distill .h5 checkpoint or a Hugging Face model directory", kind: .io)
    }
    let (contents, _) = try readCommittedCheckpoint(at: URL(fileURLWithPath: path))
    if contents.kind == .adapter { return try loadAdapter(contents, path: path, base: base, trainable: trainable) }
    let model = try LlamaModel(config: contents.config, parameters: Dictionary(uniqueKeysWithValues: contents.parameters))
    let tokenizer = try contents.tokenizer.map { try ByteLevelBPETokenizer(jsonData: Array($0.utf8)) }
    if trainable { for (_, p) in model.namedParameters() { p.requiresGrad = true } }
    return LoadedModel(model: model, tokenizer: tokenizer, tokenizerJSON: contents.tokenizer, checkpoint: contents, path: path)
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
        loaded.tokenizer = try ByteLevelBPETokenizer(jsonData: Array(text.utf8))
        loaded.tokenizerJSON = text
    }
    loaded.checkpoint = contents
    loaded.path = path
    loaded.adapter = info
    loaded.basePath = basePath
    return loaded
}

/// Mean next-token loss of `model` over `batches`, with perplexity and token count.
package struct EvalResult: Codable, Sendable {
    package var loss: Double
    package var perplexity: Double
    package var tokens: Int
    package var batches: Int
    /// Logits at the last scored position (only when asked for).
    package var lastLogits: [Float]?

    enum CodingKeys: String, CodingKey { case loss, perplexity, tokens, batches, lastLogits = "last_logits" }
}

package func evaluate(_ model: LlamaModel, batches: [TokenBatch]) -> EvalResult {
    var total = 0.0
    var tokens = 0
    GradMode.withoutGrad {
        for b in batches {
            let loss = model.loss(ids: b.inputs, targets: b.targets, batch: b.rows, length: b.seqLen)
            total += Double(loss.item) * Double(b.rows * b.seqLen)
            tokens += b.rows * b.seqLen
        }
    }
    let mean = tokens > 0 ? total / Double(tokens) : .nan
    return EvalResult(loss: mean, perplexity: Foundation.exp(mean), tokens: tokens, batches: batches.count, lastLogits: nil)
}

/// One generated continuation.
package struct Sample: Codable, Sendable {
    package var prompt: String
    package var completion: String
    package var promptIds: [Int32]
    package var ids: [Int32]

    enum CodingKeys: String, CodingKey { case prompt, completion, promptIds = "prompt_ids", ids }
}

/// Continues each prompt; the completion is cut before the first stop string and the
/// end-of-text token ends a row (unless `ignoreEndOfText`).
package func generateText(
    _ loaded: LoadedModel, prompts: [String], sampling: SamplingConfig, stop: [String], ignoreEndOfText: Bool = false
) throws -> [Sample] {
    let tokenizer = try loaded.requireTokenizer()
    var sampling = sampling
    if !ignoreEndOfText, let eot = loaded.endOfText, !sampling.stopTokens.contains(eot) { sampling.stopTokens.append(eot) }
    let encoded = prompts.map { p -> [Int32] in
        let ids = tokenizer.encode(p)
        return ids.isEmpty ? [loaded.endOfText ?? 0] : ids
    }
    let outputs = loaded.model.generate(prompts: encoded, sampling: sampling) { _, generated in
        guard !stop.isEmpty else { return false }
        let text = tokenizer.decode(generated)
        return stop.contains { text.contains($0) }
    }
    return zip(zip(prompts, encoded), outputs).map { pair, ids in
        var text = tokenizer.decode(ignoreEndOfText ? ids : ids.filter { $0 != loaded.endOfText })
        for s in stop { if let r = text.range(of: s) { text = String(text[..<r.lowerBound]) } }
        return Sample(prompt: pair.0, completion: text, promptIds: pair.1, ids: ids)
    }
}

/// Scores a text (or JSONL "text") file: its tokens in consecutive windows of up to
/// `seqLen`+1 (the last one may be shorter), full windows 8 to a batch, at most `batches`
/// batches. A text file is scored as it is (no end-of-text appended), so a short text is
/// one window whose loss equals transformers' `labels=ids` loss. With `lastLogits`, the
/// logits at the final position scored are returned too.
package func evaluateFile(
    checkpoint: String, base: String? = nil, path: String, jsonl: Bool, seqLen: Int?, batches: Int, lastLogits: Bool = false
) throws -> EvalResult {
    let loaded = try loadModel(from: checkpoint, base: base)
    let tokenizer = try loaded.requireTokenizer()
    let source = CorpusSource(paths: [path], format: jsonl ? .jsonl : .text)
    let stream = try source.tokenStream(tokenizer: tokenizer, separator: jsonl ? loaded.endOfText : nil, cacheDirectory: nil)
    let tokens = stream.tokens
    let length = seqLen ?? loaded.model.config.maxPositionEmbeddings
    guard tokens.count >= 2 else {
        throw DataError.insufficient(reason: "\(path) has \(tokens.count) token(s); scoring needs at least 2", hint: "use a longer text")
    }
    var windows: [TokenBatch] = []
    var start = 0
    var full: (inputs: [Int32], targets: [Int32], rows: Int) = ([], [], 0)
    while start + 1 < tokens.count && windows.count < batches {
        let n = min(length, tokens.count - 1 - start)
        let inputs = Array(tokens[start..<(start + n)]), targets = Array(tokens[(start + 1)...(start + n)])
        if n == length {
            full.inputs += inputs
            full.targets += targets
            full.rows += 1
            if full.rows == 8 {
                windows.append(TokenBatch(rows: 8, seqLen: n, inputs: full.inputs, targets: full.targets))
                full = ([], [], 0)
            }
        } else {
            if full.rows > 0 { windows.append(TokenBatch(rows: full.rows, seqLen: length, inputs: full.inputs, targets: full.targets)) }
            full = ([], [], 0)
            windows.append(TokenBatch(rows: 1, seqLen: n, inputs: inputs, targets: targets))
        }
        start += n
    }
    if full.rows > 0 && windows.count < batches {
        windows.append(TokenBatch(rows: full.rows, seqLen: length, inputs: full.inputs, targets: full.targets))
    }
    var result = evaluate(loaded.model, batches: windows)
    if lastLogits, let last = windows.last {
        // The last row of the last window followed by its final target: the logits after
        // the whole scored text, which is what transformers reports as logits[0, -1].
        let ids = Array(last.inputs.suffix(last.seqLen)) + [last.targets.last!]
        let logits = GradMode.withoutGrad { loaded.model.logits(ids: ids, batch: 1, length: ids.count) }
        let v = loaded.model.config.vocabSize
        result.lastLogits = Array(logits.values[(logits.count - v)...])
    }
    return result
}

/// Imports a Hugging Face directory into a distill checkpoint (model, config, tokenizer).
package func importHF(directory: String, to output: String) throws {
    let loaded = try loadModel(from: directory)
    let contents = CheckpointContents(
        config: loaded.model.config, parameters: loaded.model.namedParameters().map { ($0.0, $0.1) },
        tokenizer: loaded.tokenizerJSON, threads: Threads.count, metadata: ["imported_from": directory])
    try writeCheckpoint(contents, to: URL(fileURLWithPath: output))
}
