// Pretraining: next-token prediction on a corpus, from a fresh initialisation or from a
// checkpoint, through a TrainingSession. The pretrain stage runs one; the architecture sweeper
// runs one per trial.
//
// Resume: an interrupted run with the same fingerprint continues from its last committed
// checkpoint (weights, AdamW moments, step, the batcher's cursor and RNG), so the finished run
// equals an uninterrupted one bit for bit at the same thread count.

import Core
import Foundation
import JSON
import ModelIO
import NN
import Platform
import TextData

package struct PretrainRun {
    /// The stage (or trial) name, stored in the checkpoint.
    package var name: String
    package var data: DataSettings
    /// How the tokenizer is made when not taken from `initFrom`: an existing file or trained
    /// on the data. nil with `initFrom`.
    package var tokenizer: TokenizerSettings?
    /// The architecture of a fresh model; nil with `initFrom`.
    package var model: ModelSettings?
    /// A checkpoint (or HF directory) to continue training from, whose model and tokenizer are used.
    package var initFrom: String?
    package var training: TrainingSettings
    /// The checkpoint to commit and the metrics log to write.
    package var output: String
    package var metrics: String
    /// Inline text is written here; the token cache is its `cache` folder.
    package var runDirectory: String
    /// Seeds the initialisation, the validation split and the batch order.
    package var seed: Int
    /// Stored in the checkpoint; a resume requires the same fingerprint.
    package var fingerprint: String
    package var recipeJSON: String
    /// Continue a committed checkpoint at `output` when its fingerprint matches.
    package var resume: Bool

    package init(
        name: String, data: DataSettings, tokenizer: TokenizerSettings?, model: ModelSettings?, initFrom: String?,
        training: TrainingSettings, output: String, metrics: String, runDirectory: String, seed: Int,
        fingerprint: String, recipeJSON: String, resume: Bool
    ) {
        self.name = name
        self.data = data
        self.tokenizer = tokenizer
        self.model = model
        self.initFrom = initFrom
        self.training = training
        self.output = output
        self.metrics = metrics
        self.runDirectory = runDirectory
        self.seed = seed
        self.fingerprint = fingerprint
        self.recipeJSON = recipeJSON
        self.resume = resume
    }

    /// Trains and commits; returns the summary (steps, tokens, parameters, loss, val_loss).
    package func run(emit: @escaping (ProgressEvent) -> Void) throws -> [String: Scalar] {
        let t = training
        guard let steps = t.steps else { preconditionFailure("pretraining needs training.steps (the reader requires it)") }
        let session = try TrainingSession(
            name: name, output: output, metrics: metrics, fingerprint: fingerprint, recipeJSON: recipeJSON, resume: resume,
            emit: emit)
        let resumed = session.resumed
        let initial = try initFrom.map { try loadModel(from: $0, trainable: true) }

        // Tokenizer: resumed, from init, from a file, or trained on the corpus.
        let source = try data.corpusSource(runDirectory: runDirectory)
        let tokenizerJSON: String
        if let resumed, let text = resumed.tokenizer {
            tokenizerJSON = text
        } else if let initial {
            guard let text = initial.tokenizerJSON else {
                throw UserError(
                    path: initial.path, problem: "has no tokenizer to continue training with",
                    fix: "use a checkpoint written by distill or an HF directory with tokenizer.json", kind: .badData)
            }
            tokenizerJSON = text
        } else if let path = tokenizer?.path {
            tokenizerJSON = String(decoding: try readFile(path), as: UTF8.self)
        } else {
            let spec = tokenizer?.train ?? TokenizerTraining()
            emit(.message("training a \(spec.vocabSize)-token \(spec.style.rawValue) tokenizer"))
            tokenizerJSON = String(decoding: try spec.train(on: source), as: UTF8.self)
        }
        let tokenizer = try ByteLevelBPETokenizer(jsonData: Array(tokenizerJSON.utf8))
        let eot = tokenizer.id(for: "<|endoftext|>")

        // Data.
        let cache = URL(fileURLWithPath: runDirectory).appendingPathComponent("cache")
        let stream = try source.tokenStream(tokenizer: tokenizer, separator: eot, cacheDirectory: cache)
        emit(.message("\(stream.tokens.count) tokens from \(stream.documents) documents (token cache: \(stream.cacheStatus))"))
        var batcher = try TokenBatcher(
            tokens: stream.tokens,
            config: .init(batchSize: t.batchSize, seqLen: t.seqLen, validationFraction: data.validationFraction, splitSeed: UInt64(seed)),
            seed: UInt64(seed))
        if let resumed { try batcher.restore(try BatchCursor(jsonString: resumed.dataCursor ?? "", origin: output)) }

        // Model.
        let model: LlamaModel
        if let resumed {
            model = try LlamaModel(config: resumed.config, parameters: Dictionary(uniqueKeysWithValues: resumed.parameters))
            for (_, p) in model.namedParameters() { p.requiresGrad = true }
        } else if let initial {
            model = initial.model
        } else {
            var rng = RNG(seed: UInt64(seed))
            let config = (self.model ?? ModelSettings()).llamaConfig(
                vocabSize: tokenizer.vocabSize, bosTokenId: eot.map(Int.init), eosTokenId: eot.map(Int.init))
            try requireMemory(config, batch: t.batchSize, seqLen: t.seqLen, path: output)
            model = LlamaModel(config: config, rng: &rng)
        }

        let validation = batcher.validationBatches(count: t.evalBatches).map(\.training)
        var summary = try session.train(
            model: model, parameters: model.namedParameters(), settings: t, steps: steps, perplexity: true,
            run: { trainer, handle in
                try trainer.run(
                    nextBatch: { batcher.next().training }, validation: validation.isEmpty ? nil : { validation },
                    handle: handle)
            },
            contents: { commit in
                commit.contents(
                    model, rng: ["data": batcher.cursor.rng], dataCursor: batcher.cursor.jsonString(), tokenizer: tokenizerJSON)
            })
        summary["parameters"] = .int(model.config.parameterCount)
        return summary
    }
}

extension TokenBatch {
    /// The batch as the trainer takes it.
    package var training: TrainingBatch { TrainingBatch(inputs: inputs, targets: targets, batch: rows, length: seqLen) }
}

/// Bytes a training run of `config` needs at least: weights (4 bytes a parameter, or
/// `weightBytes` for a packed base), and for each of the `trainable` parameters (all when
/// nil) a gradient and two AdamW moments (12 more bytes), plus the activations one
/// micro-batch of `batch` sequences keeps for the backward (about 24 floats per position per
/// layer and width, and the logits' chunk; with `recomputeLayers` one layer's and each
/// layer's input). A lower bound, not a prediction; it only has to catch a model that cannot
/// possibly fit.
package func trainingMemoryEstimate(
    _ config: LlamaConfig, batch: Int, seqLen: Int, trainable: Int? = nil, weightBytes: Double? = nil,
    recomputeLayers: Bool = false
) -> Double {
    let positions = Double(batch) * Double(seqLen)
    let perLayer = Double(config.hiddenSize) * 24 + Double(config.intermediateSize) * 3
    let layers = Double(config.numHiddenLayers)
    let activations =
        positions * (recomputeLayers ? perLayer + Double(config.hiddenSize) * layers : perLayer * layers) * 4
    return (weightBytes ?? Double(config.parameterCount) * 4) + Double(trainable ?? config.parameterCount) * 12 + activations
}

/// Refuses (exit 2), before allocating anything, a training run that cannot fit the memory
/// budget (`MemoryBudget`), with the estimate and the limit.
package func requireMemory(
    _ config: LlamaConfig, batch: Int, seqLen: Int, trainable: Int? = nil, extra: Double = 0, path: String,
    suggestLoRA: Bool = false, weightBytes: Double? = nil, recomputeLayers: Bool = false
) throws {
    let need =
        trainingMemoryEstimate(
            config, batch: batch, seqLen: seqLen, trainable: trainable, weightBytes: weightBytes,
            recomputeLayers: recomputeLayers) + extra
    let trained = trainable.map { "\($0) of them trained" } ?? "all trained"
    try MemoryBudget.require(
        need,
        for: "training this model (\(config.parameterCount) parameters, \(trained): 4 bytes each for the weights "
            + "and 12 for each trained one's gradient and AdamW moments, plus activations of \(batch) x \(seqLen) tokens)",
        path: path,
        fix: suggestLoRA
            ? "train it through LoRA (a lora block), or lower training.batch_size or training.seq_len (grad_accum "
                + "keeps the tokens per step)"
            : "make the model smaller (hidden_size, num_hidden_layers, intermediate_size, vocabulary), or lower "
                + "training.batch_size or training.seq_len (grad_accum keeps the tokens per step)")
}
