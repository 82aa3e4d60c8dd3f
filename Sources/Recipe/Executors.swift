// The stage executors this build ships: the one place a stage type is bound to the code that
// runs it. A type missing here makes `distill run` stop with "stage type X is not available in
// this build" (exit 2) before any stage runs; `--dry-run` works regardless.

import Core
import Foundation
import ModelIO
import NN
import Platform
import TextData
import Training

extension ExecutorRegistry {
    package static func builtIn() -> ExecutorRegistry {
        ExecutorRegistry([
            .pretrain: PretrainExecutor(), .eval: EvalExecutor(), .generate: GenerateExecutor(), .export: ExportExecutor(),
            .merge: MergeExecutor(), .sft: SFTExecutor(), .dpo: DPOExecutor(), .kd: KDExecutor(), .sample: SampleExecutor(),
            .sweep: SweepExecutor(),
        ])
    }
}

/// A stage handed to the wrong executor: a wiring bug.
func mismatch(_ stage: Stage, _ expected: StageType) -> Never {
    preconditionFailure("executor for \(expected) got a \(stage.type) stage")
}

/// The documents of `data`: its files, or its inline text written into the run directory
/// so that it is tokenized and cached like a file.
func corpus(_ data: DataSettings, runDirectory: String) throws -> CorpusSource {
    var paths = data.train
    if let text = data.text {
        let url = URL(fileURLWithPath: runDirectory).appendingPathComponent("inline-text.txt")
        if (try? String(contentsOf: url, encoding: .utf8)) != text {
            try writeAtomically(text, to: url.path)
        }
        paths.append(url.path)
    }
    let format: CorpusSource.Format
    switch data.format {
    case .auto: format = .auto
    case .text: format = .text
    case .jsonl: format = .jsonl
    }
    return CorpusSource(paths: paths, format: format, textField: data.textField)
}

// MARK: - pretrain

/// Trains a model from scratch (or from `init`) and commits checkpoints to the stage output.
/// An interrupted run with the same fingerprint continues from the last committed
/// checkpoint: weights, AdamW moments, step, data cursor; the per-step metrics log is cut
/// back to that step, so the finished run equals an uninterrupted one bit for bit at the
/// same thread count.
struct PretrainExecutor: StageExecutor {
    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        guard case .pretrain(let s) = stage else { mismatch(stage, .pretrain) }
        if let threads = context.threads { Threads.set(threads) }
        let runDir = URL(fileURLWithPath: context.runDirectory)
        let output = URL(fileURLWithPath: s.output)
        let metricsURL = runDir.appendingPathComponent("\(s.name).metrics.jsonl")
        let t = s.training

        // Committed state of an interrupted attempt with the same settings.
        var resumed: CheckpointContents?
        if context.resume, FileManager.default.fileExists(atPath: output.path) || FileManager.default.fileExists(atPath: output.path + ".prev") {
            let (contents, _) = try readCommittedCheckpoint(at: output)
            if contents.metadata["fingerprint"] == context.fingerprint, contents.optimizer != nil {
                resumed = contents
                if contents.threads != Threads.count {
                    emit(.message("resuming a run checkpointed with \(contents.threads) threads on \(Threads.count): results stay correct but are no longer bit-identical to an uninterrupted run"))
                }
            }
        }
        let initial = try s.initFrom.map { try loadModel(from: context.path(of: $0.checkpoint), trainable: true) }

        // Tokenizer: resumed, from init, from a file, or trained on the corpus.
        let source = try corpus(s.data, runDirectory: context.runDirectory)
        let tokenizerJSON: String
        if let resumed, let text = resumed.tokenizer {
            tokenizerJSON = text
        } else if let initial {
            guard let text = initial.tokenizerJSON else {
                throw UserError(path: initial.path, problem: "has no tokenizer to continue training with", fix: "use a checkpoint written by distill or an HF directory with tokenizer.json", kind: .badData)
            }
            tokenizerJSON = text
        } else if let path = s.tokenizer?.path {
            tokenizerJSON = try String(contentsOfFile: path, encoding: .utf8)
        } else {
            let spec = s.tokenizer?.train ?? TokenizerTraining()
            emit(.message("training a \(spec.vocabSize)-token \(spec.style.rawValue) tokenizer"))
            var texts: [String] = []
            try source.forEachDocument { texts.append($0) }
            let style = BPETrainer.Style(rawValue: spec.style.rawValue) ?? .gpt2
            let trained = try BPETrainer(.init(vocabSize: spec.vocabSize, specialTokens: spec.specialTokens, style: style)).train(texts: texts)
            tokenizerJSON = String(decoding: trained.jsonData(), as: UTF8.self)
        }
        let tokenizer = try ByteLevelBPETokenizer(jsonData: Array(tokenizerJSON.utf8))
        let eot = tokenizer.id(for: "<|endoftext|>")

        // Data.
        let stream = try source.tokenStream(tokenizer: tokenizer, separator: eot, cacheDirectory: runDir.appendingPathComponent("cache"))
        emit(.message("\(stream.tokens.count) tokens from \(stream.documents) documents (token cache: \(stream.cacheStatus))"))
        var batcher = try TokenBatcher(
            tokens: stream.tokens,
            config: .init(batchSize: t.batchSize, seqLen: t.seqLen, validationFraction: s.data.validationFraction, splitSeed: UInt64(context.seed)),
            seed: UInt64(context.seed))

        // Model.
        let model: LlamaModel
        if let resumed {
            model = try LlamaModel(config: resumed.config, parameters: Dictionary(uniqueKeysWithValues: resumed.parameters))
            for (_, p) in model.namedParameters() { p.requiresGrad = true }
        } else if let initial {
            model = initial.model
        } else {
            var rng = RNG(seed: UInt64(context.seed))
            let config = (s.model ?? ModelSettings()).llamaConfig(vocabSize: tokenizer.vocabSize, bosTokenId: eot.map(Int.init), eosTokenId: eot.map(Int.init))
            model = LlamaModel(config: config, rng: &rng)
        }

        // Optimizer and schedule.
        let noDecay = t.noDecay
        let trainerConfig = TrainerConfig(
            steps: t.steps, gradAccum: t.gradAccum,
            schedule: LearningRateSchedule(peak: t.lr, warmupSteps: t.warmupSteps, totalSteps: t.steps, minRatio: t.minLRRatio, kind: ScheduleKind(rawValue: t.schedule.rawValue) ?? .cosine),
            optimizer: AdamWConfig(beta1: t.beta1, beta2: t.beta2, eps: t.eps, weightDecay: t.weightDecay),
            gradClip: t.gradClip, evalEvery: t.evalEvery, checkpointEvery: t.checkpointEvery, logEvery: t.logEvery)
        let optimizer = AdamW(parameters: model.namedParameters(), config: trainerConfig.optimizer) { name in
            !noDecay.contains { name.contains($0) }
        }
        var tokensSeen = 0
        if let resumed, let state = resumed.optimizer {
            try restore(optimizer, from: state, path: output.path)
            try batcher.restore(try BatchCursor(jsonString: resumed.dataCursor ?? "", origin: output.path))
            tokensSeen = resumed.tokensSeen
            emit(.message("resuming at step \(resumed.step) of \(t.steps)"))
        }
        let metrics = try MetricsLog(url: metricsURL, keepThroughStep: resumed?.step ?? 0)

        func commit(step: Int) throws {
            let contents = CheckpointContents(
                config: model.config, parameters: model.namedParameters().map { ($0.0, $0.1) },
                optimizer: OptimizerState(kind: "adamw", step: optimizer.step, moments: [
                    "m": optimizer.slots.map { ($0.name, $0.m) }, "v": optimizer.slots.map { ($0.name, $0.v) },
                ]),
                step: step, tokensSeen: tokensSeen, rng: ["data": batcher.cursor.rng],
                dataCursor: batcher.cursor.jsonString(), recipe: context.recipeJSON,
                tokenizer: tokenizerJSON, threads: Threads.count,
                metadata: ["stage": s.name, "fingerprint": context.fingerprint])
            try writeCheckpoint(contents, to: output)
            emit(.checkpointCommitted(path: output.path, step: step))
        }

        let trainer = Trainer(model: model, config: trainerConfig, optimizer: optimizer)
        let validation = batcher.validationBatches(count: t.evalBatches).map(\.training)
        var lastLoss = Double.nan, lastValidation = Double.nan
        var window: (tokens: Int, seconds: Double) = (0, 0)
        try trainer.run(nextBatch: { batcher.next().training }, validation: { validation }) { event in
            switch event {
            case .step(let r):
                tokensSeen += r.tokens
                lastLoss = r.loss
                window.tokens += r.tokens
                window.seconds += r.seconds
                try metrics.append(["step": .int(r.step), "loss": .double(r.loss), "lr": .double(r.lr), "grad_norm": .double(r.gradNorm)])
                if r.step % max(1, t.logEvery) == 0 || r.step == t.steps || r.step == 1 {
                    emit(.progress(step: r.step, total: t.steps, metrics: ["loss": r.loss, "lr": r.lr, "tokens_per_s": Double(window.tokens) / max(window.seconds, 1e-9)]))
                    window = (0, 0)
                }
            case .evaluation(let step, let loss):
                lastValidation = loss
                try metrics.append(["step": .int(step), "val_loss": .double(loss), "val_ppl": .double(Foundation.exp(loss))])
                emit(.progress(step: step, total: t.steps, metrics: ["val_loss": loss, "val_ppl": Foundation.exp(loss)]))
            case .checkpointDue(let step):
                try commit(step: step)
            }
            return true
        }
        if t.checkpointEvery == 0 || trainer.optimizer.step % t.checkpointEvery != 0 { try commit(step: optimizer.step) }
        var summary: [String: SummaryValue] = ["steps": .int(optimizer.step), "tokens": .int(tokensSeen), "parameters": .int(model.config.parameterCount)]
        if lastLoss.isFinite { summary["loss"] = .double(lastLoss) }
        if lastValidation.isFinite { summary["val_loss"] = .double(lastValidation) }
        return StageOutputs(files: [output.path, metricsURL.path], summary: summary)
    }

    private func restore(_ optimizer: AdamW, from state: OptimizerState, path: String) throws {
        optimizer.step = state.step
        for (moment, keyPath) in [("m", \AdamW.Slot.m), ("v", \AdamW.Slot.v)] {
            let saved = Dictionary(uniqueKeysWithValues: (state.moments[moment] ?? []).map { ($0.name, $0.tensor) })
            for slot in optimizer.slots {
                guard let t = saved[slot.name], t.count == slot.parameter.count else {
                    throw UserError(path: path, problem: "optimizer moment \(moment) for \(slot.name) is missing or mis-shaped", fix: "delete the checkpoint to start the stage over", kind: .badData)
                }
                slot[keyPath: keyPath].data.update(from: t.data, count: t.count)
            }
        }
    }
}

extension TokenBatch {
    var training: TrainingBatch { TrainingBatch(inputs: inputs, targets: targets, batch: rows, length: seqLen) }
}

/// Append-only JSON lines of deterministic training metrics (no timings), cut back on resume
/// to the lines of steps that the resumed checkpoint contains.
final class MetricsLog {
    let url: URL
    private let handle: FileHandle

    init(url: URL, keepThroughStep step: Int) throws {
        self.url = url
        var kept = ""
        if step > 0, let text = try? String(contentsOf: url, encoding: .utf8) {
            for line in text.split(separator: "\n") {
                guard let data = line.data(using: .utf8),
                    let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                    let s = object["step"] as? Int, s <= step
                else { continue }
                kept += line + "\n"
            }
        }
        try writeAtomically(kept, to: url.path)
        handle = try FileHandle(forWritingTo: url)
        try handle.seekToEnd()
    }

    deinit { try? handle.close() }

    func append(_ fields: [String: SummaryValue]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var line = try encoder.encode(fields)
        line.append(0x0A)
        try handle.write(contentsOf: line)
    }
}

// MARK: - eval

struct EvalExecutor: StageExecutor {
    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        guard case .eval(let s) = stage else { mismatch(stage, .eval) }
        if let threads = context.threads { Threads.set(threads) }
        let loaded = try loadModel(from: context.path(of: s.checkpoint))
        let tokenizer = try loaded.requireTokenizer()
        let data = s.data.train.isEmpty && s.data.text == nil ? evaluatedData(s, context: context) : s.data
        let stream = try corpus(data, runDirectory: context.runDirectory).tokenStream(
            tokenizer: tokenizer, separator: loaded.endOfText, cacheDirectory: URL(fileURLWithPath: context.runDirectory).appendingPathComponent("cache"))
        let seqLen = s.seqLen ?? trainedSeqLen(loaded) ?? min(128, loaded.model.config.maxPositionEmbeddings)
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

// MARK: - generate

struct GenerateExecutor: StageExecutor {
    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        guard case .generate(let s) = stage else { mismatch(stage, .generate) }
        if let threads = context.threads { Threads.set(threads) }
        let loaded = try loadModel(from: context.path(of: s.checkpoint))
        let sampling = SamplingConfig(maxTokens: s.maxTokens, temperature: s.temperature, topK: s.topK, topP: s.topP, seed: UInt64(s.seed))
        let samples = try generateText(loaded, prompts: s.prompts, sampling: sampling, stop: s.stop)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var text = Data()
        for sample in samples {
            text.append(try encoder.encode(sample))
            text.append(0x0A)
            emit(.message("\(sample.prompt)\(sample.completion)"))
        }
        try writeAtomically(text, to: s.output)
        return StageOutputs(files: [s.output], summary: ["samples": .int(samples.count)])
    }
}

// MARK: - export

struct ExportExecutor: StageExecutor {
    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        guard case .export(let s) = stage else { mismatch(stage, .export) }
        let loaded = try loadModel(from: context.path(of: s.checkpoint))
        switch s.format {
        case .hf:
            try exportHF(loaded, to: s.output)
        case .peft:
            try exportPEFT(loaded, to: s.output)
        case .gguf:
            try exportGGUF(loaded, dtype: .f32, to: s.output)
        }
        emit(.message("wrote \(s.format.rawValue) export to \(s.output)"))
        return StageOutputs(files: [s.output], summary: ["format": .string(s.format.rawValue)])
    }
}
