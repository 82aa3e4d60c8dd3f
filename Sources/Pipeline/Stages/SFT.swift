// The `sft` stage: supervised fine-tuning on rendered rows (masked cross-entropy), full or
// through LoRA (docs/finetuning.md). The model side is Training's FineTuning.

import Core
import Foundation
import JSON
import Recipe
import TextData
import Training

struct SFTExecutor: StageExecutor {
    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        guard case .sft(let s) = stage else { mismatch(stage, .sft) }
        return try withoutActuallyEscaping(emit) { emit in
            let session = try s.fineTuning(context, emit: emit)
            let t = s.training
            try session.checkSeqLen(t.seqLen)
            try session.checkMemory()
            let examples = try readExamples(s.data.train, chat: session.chatStyle(s.template), tokenizer: session.tokenizer, endOfText: session.endOfText, seqLen: t.seqLen)
            let rows = try SFTRows(examples, seqLen: t.seqLen, packing: s.packing, fraction: s.data.validationFraction, seed: UInt64(context.seed), padID: session.endOfText ?? 0, path: s.data.train.first ?? "")
            emit(.message("\(examples.count) examples in \(rows.train.count) training and \(rows.validation.count) validation rows of \(t.seqLen) (\(rows.sequences.truncated) truncated)"))
            var order = EpochOrder(count: rows.train.count, batchSize: t.batchSize, seed: UInt64(context.seed))
            let objective = MaskedLanguageModeling(model: session.model)
            return session.outputs(
                try session.train(
                    objective: objective, batchesPerEpoch: order.batchesPerEpoch,
                    batch: { n in rows.sequences.batch(order.items(ofBatch: n).map { rows.train[$0] }) },
                    validation: rows.validationBatches(batchSize: t.batchSize, count: t.evalBatches).map { rows.sequences.batch($0) },
                    progressKeys: [], summary: ["examples": .int(examples.count)]))
        }
    }
}

extension FineTuneStageSettings {
    /// The stage's model loaded for training (through `FineTuning`), resuming its committed state.
    func fineTuning(_ context: RunContext, emit: @escaping (StageEvent) -> Void) throws -> FineTuning {
        if let threads = context.threads { Threads.set(threads) }
        return try FineTuning(
            name: name, modelPath: context.path(of: model), settings: training, lora: lora?.config,
            baseWeights: baseWeights ?? .f32, output: output,
            metrics: URL(fileURLWithPath: context.runDirectory).appendingPathComponent("\(name).metrics.jsonl").path,
            seed: context.seed, fingerprint: context.fingerprint, recipeJSON: context.recipeJSON, resume: context.resume,
            emit: emit)
    }
}

extension FineTuning {
    /// The stage outputs: the checkpoint and the metrics log, with the training summary.
    func outputs(_ summary: [String: Scalar]) -> StageOutputs {
        StageOutputs(files: [session.output.path, session.metricsURL.path], summary: summary)
    }
}

