// Mean next-token loss and perplexity of a model: on prepared batches (the `eval` stage) or
// on a text file scored the way transformers scores `labels=ids` (`distill eval`).

import Core
import Foundation
import JSON
import ModelIO
import NN
import Platform
import TextData

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

package func evaluate(_ model: LlamaModel, batches: [TokenBatch], engine: DecodeEngine? = nil) -> EvalResult {
    var total = 0.0
    var tokens = 0
    GradMode.withoutGrad {
        for b in batches {
            if let engine {
                total += engine.totalLoss(ids: b.inputs, targets: b.targets, rows: b.rows, length: b.seqLen)
            } else {
                let loss = model.loss(ids: b.inputs, targets: b.targets, batch: b.rows, length: b.seqLen)
                total += Double(loss.item) * Double(b.rows * b.seqLen)
            }
            tokens += b.rows * b.seqLen
        }
    }
    let mean = tokens > 0 ? total / Double(tokens) : .nan
    return EvalResult(loss: mean, perplexity: Foundation.exp(mean), tokens: tokens, batches: batches.count, lastLogits: nil)
}

/// Scores a text (or JSONL "text") file: its tokens in consecutive windows of up to
/// `seqLen`+1 (the last one may be shorter), full windows 8 to a batch, at most `batches`
/// batches. A text file is scored as it is (no end-of-text appended), so a short text is
/// one window whose loss equals transformers' `labels=ids` loss. With `lastLogits`, the
/// logits at the final position scored are returned too. `weights` other than f32 score
/// through the decode engine on those weights (the f32 path is the autograd model's loss).
package func evaluateFile(
    checkpoint: String, base: String? = nil, path: String, jsonl: Bool, seqLen: Int?, batches: Int, lastLogits: Bool = false,
    weights: InferenceWeights = .f32
) throws -> EvalResult {
    let loaded = try loadModel(from: checkpoint, base: base)
    let engine = weights == .f32 ? nil : try loaded.decodeEngine(weights)
    let tokenizer = try loaded.requireTokenizer()
    let source = CorpusSource(paths: [path], format: jsonl ? .jsonl : .text)
    let stream = try source.tokenStream(tokenizer: tokenizer, separator: jsonl ? loaded.endOfText : nil, cacheDirectory: nil)
    let tokens = stream.tokens
    let length = seqLen ?? loaded.model.config.maxPositionEmbeddings
    try requireSeqLen(length, fits: loaded.model, path: checkpoint, setting: "--seq-len")
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
    try requireEvaluationMemory(loaded.model.config, windows, path: checkpoint, setting: "--seq-len")
    var result = evaluate(loaded.model, batches: windows, engine: engine)
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

/// Refuses a window longer than the model's positions (`max_position_embeddings`), naming the
/// setting that asked for it.
/// Refuses (exit 2) evaluating `batches` when the largest cannot fit the memory budget.
package func requireEvaluationMemory(_ config: LlamaConfig, _ batches: [TokenBatch], path: String, setting: String) throws {
    guard let largest = batches.max(by: { $0.rows * $0.seqLen < $1.rows * $1.seqLen }) else { return }
    try requireInferenceMemory(
        config, rows: largest.rows, positions: largest.seqLen, allLogits: true, what: "evaluating", path: path,
        fix: "lower \(setting), or use a machine with more memory")
}

package func requireSeqLen(_ seqLen: Int, fits model: LlamaModel, path: String, setting: String) throws {
    let limit = model.config.maxPositionEmbeddings
    guard seqLen <= limit else {
        throw UserError(
            path: path, problem: "\(setting) \(seqLen) exceeds the model's max_position_embeddings (\(limit))",
            fix: "set \(setting) <= \(limit)", kind: .usage)
    }
}
