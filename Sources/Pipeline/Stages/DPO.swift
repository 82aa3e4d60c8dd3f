// The `dpo` stage: the DPO family of preference losses on (prompt, chosen, rejected) pairs,
// with the reference model's log-probs cached in the run directory (docs/finetuning.md).

import Foundation
import JSON
import Platform
import Recipe
import TextData
import Training

struct DPOExecutor: StageExecutor {
    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        guard case .dpo(let s) = stage else { mismatch(stage, .dpo) }
        return try withoutActuallyEscaping(emit) { emit in
            let session = try s.fineTuning(context, emit: emit)
            let t = s.training
            try session.checkSeqLen(t.seqLen)
            try session.checkMemory(sequencesPerRow: 2)
            let format = SFTFormat(session.chatStyle(s.template))
            var pairs: [PreferencePair] = []
            for path in s.data.train { pairs += try PreferenceData.read(path: path, format: format, tokenizer: session.tokenizer) }
            guard !pairs.isEmpty else {
                throw UserError(path: s.data.train.first ?? "", problem: "no preference pairs", fix: "add {\"prompt\", \"chosen\", \"rejected\"} rows", kind: .badData)
            }
            let padID = session.endOfText ?? 0
            let config = s.lossConfig
            var summary: [String: SummaryValue] = ["pairs": .int(pairs.count)]
            var reference: ReferenceLogProbs?
            if config.kind.needsReference {
                let (ref, status) = try session.referenceLogProbs(
                    pairs, dataFiles: s.data.train, chat: session.chatStyle(s.template), seqLen: t.seqLen, batchSize: t.batchSize, padID: padID,
                    cacheDirectory: URL(fileURLWithPath: context.runDirectory).appendingPathComponent("cache").path, emit: emit)
                reference = ref
                summary["reference"] = .string(status)
            }
            let split = holdOut(pairs.count, fraction: s.data.validationFraction, seed: UInt64(context.seed))
            func batch(_ idx: [Int]) -> PreferenceBatch {
                PreferenceBatch(
                    sequences: PreferenceSequences(idx.map { pairs[$0] }, maxLength: t.seqLen, padID: padID),
                    reference: reference.map { r in ReferenceLogProbs(chosen: idx.map { r.chosen[$0] }, rejected: idx.map { r.rejected[$0] }) })
            }
            emit(.message("\(pairs.count) pairs: \(split.train.count) training, \(split.validation.count) validation"))
            var order = EpochOrder(count: split.train.count, batchSize: t.batchSize, seed: UInt64(context.seed))
            let validation = stride(from: 0, to: split.validation.count, by: t.batchSize).prefix(t.evalBatches).map {
                batch(Array(split.validation[$0..<min($0 + t.batchSize, split.validation.count)]))
            }
            return session.outputs(
                try session.train(
                    objective: PreferenceObjective(model: session.model, config: config), batchesPerEpoch: order.batchesPerEpoch,
                    batch: { n in batch(order.items(ofBatch: n).map { split.train[$0] }) }, validation: validation,
                    progressKeys: PreferenceMetrics.names, summary: summary))
        }
    }

}


extension PreferenceMetrics {
    /// TRL's metric names, in its logging order.
    static let names = ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"]
}

