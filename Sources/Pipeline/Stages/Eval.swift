// The `eval` stage: mean next-token loss and perplexity of a checkpoint on the held-out
// split (or the training windows, or all) of its data, written to eval.json.

import Core
import Foundation
import ModelIO
import Platform
import Recipe
import TextData
import Training

struct EvalExecutor: StageExecutor {
    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        guard case .eval(let s) = stage else { mismatch(stage, .eval) }
        if let threads = context.threads { Threads.set(threads) }
        let loaded = try loadModel(from: context.path(of: s.checkpoint))
        let tokenizer = try loaded.requireTokenizer()
        let data = s.data.train.isEmpty && s.data.text == nil ? evaluatedData(s, context: context) : s.data
        let stream = try data.corpusSource(runDirectory: context.runDirectory).tokenStream(
            tokenizer: tokenizer, separator: loaded.endOfText, cacheDirectory: URL(fileURLWithPath: context.runDirectory).appendingPathComponent("cache"))
        let seqLen = s.seqLen ?? trainedSeqLen(loaded) ?? min(128, loaded.model.config.maxPositionEmbeddings)
        try requireSeqLen(seqLen, fits: loaded.model, path: loaded.path, setting: "seq_len")
        let batches = try evaluationBatches(stream.tokens, seqLen: seqLen, batches: s.batches, split: s.split, fraction: data.validationFraction, seed: UInt64(context.seed))
        let result = evaluate(loaded.model, batches: batches)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeAtomically(try encoder.encode(result), to: s.output)
        emit(.progress(step: result.batches, total: result.batches, metrics: ["loss": result.loss, "perplexity": result.perplexity]))
        return StageOutputs(files: [s.output], summary: ["loss": .double(result.loss), "perplexity": .double(result.perplexity), "tokens": .int(result.tokens)])
    }

    /// Without its own data, eval reads the data of the pretrain stage that made its checkpoint.
    private func evaluatedData(_ s: EvalStage, context: RunContext) -> DataSettings {
        if case .stage(let name) = s.checkpoint, case .pretrain(let p)? = context.recipe.stage(named: name) { return p.data }
        return s.data
    }

    private func trainedSeqLen(_ loaded: LoadedModel) -> Int? {
        guard let recipe = loaded.checkpoint?.recipe, let r = try? Recipe.decodeResolved(recipe),
            let stage = loaded.checkpoint?.metadata["stage"], case .pretrain(let p)? = r.stage(named: stage)
        else { return nil }
        return p.training.seqLen
    }
}

/// Windows of `seqLen`+1 tokens: the validation split the pretrain stage held out (same
/// seed and fraction), the training windows, or all of them; at most `batches` batches of 8.
func evaluationBatches(_ tokens: [Int32], seqLen: Int, batches: Int, split: EvalSplit, fraction: Double, seed: UInt64) throws -> [TokenBatch] {
    let rows = 8
    switch split {
    case .validation:
        let batcher = try TokenBatcher(tokens: tokens, config: .init(batchSize: 1, seqLen: seqLen, validationFraction: fraction, splitSeed: seed), seed: seed)
        return Array(batcher.validationBatches().prefix(batches))
    case .train, .all:
        var out: [TokenBatch] = []
        var start = 0
        while out.count < batches && start + rows * seqLen + 1 <= tokens.count {
            var inputs: [Int32] = [], targets: [Int32] = []
            for r in 0..<rows {
                let base = start + r * seqLen
                inputs += tokens[base..<(base + seqLen)]
                targets += tokens[(base + 1)..<(base + seqLen + 1)]
            }
            out.append(TokenBatch(rows: rows, seqLen: seqLen, inputs: inputs, targets: targets))
            start += rows * seqLen
        }
        return out
    }
}
