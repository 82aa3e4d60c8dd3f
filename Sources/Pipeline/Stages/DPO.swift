// The `dpo` stage: the DPO family of preference losses on (prompt, chosen, rejected) pairs,
// with the reference model's log-probs cached in the run directory (docs/finetuning.md).

import Foundation
import JSON
import ModelIO
import NN
import Platform
import Recipe
import TextData
import Training

struct DPOExecutor: StageExecutor {
    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        guard case .dpo(let s) = stage else { preconditionFailure("dpo executor got a \(stage.type) stage") }
        return try withoutActuallyEscaping(emit) { emit in
            let session = try s.fineTuning(context, emit: emit)
            let t = s.training
            try session.checkSeqLen(t.seqLen)
            let format = SFTFormat(template: s.template)
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
                let (ref, status) = try referenceLogProbs(pairs, stage: s, session: session, runDirectory: context.runDirectory, padID: padID, emit: emit)
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

    /// The reference model's summed completion log-probs for every pair (file order), from the
    /// cache in the run directory when its key matches, else computed (adapters disabled for
    /// LoRA; the untouched starting model for full fine-tuning) and stored.
    private func referenceLogProbs(
        _ pairs: [PreferencePair], stage s: DPOStage, session: FineTuning, runDirectory: String, padID: Int32, emit: (StageEvent) -> Void
    ) throws -> (ReferenceLogProbs, String) {
        var key = XXH64()
        key.update("dpo-reference-v1")
        key.update(session.startDigest)
        for path in s.data.train { key.update(try fileDigest(path)) }
        key.update(s.template.rawValue)
        key.update(UInt64(s.training.seqLen))
        key.update(UInt64(s.training.batchSize))
        let fingerprint = hexDigits(key.finalize())
        let cache = URL(fileURLWithPath: runDirectory).appendingPathComponent("cache/reference-\(fingerprint).json")
        if let data = FileManager.default.contents(atPath: cache.path),
            let stored = try? JSONDecoder().decode(StoredReference.self, from: data),
            stored.fingerprint == fingerprint, stored.logProbs.chosen.count == pairs.count
        {
            emit(.message("reference log-probs: cached (\(cache.lastPathComponent))"))
            return (stored.logProbs, "cached")
        }
        emit(.message("reference log-probs: computing for \(pairs.count) pairs"))
        // The reference is the stage's starting model: the base with fresh adapters disabled
        // (exactly the base, no second copy), else the model as loaded while it is untrained,
        // else a fresh load of it.
        let model: LlamaModel
        let disable = session.lora != nil && !session.continuesAdapter
        if disable {
            model = session.model
            model.setAdapters(enabled: false)
        } else if session.resumed == nil {
            model = session.model
        } else {
            let loaded = try loadModel(from: session.modelPath)
            if session.lora == nil && loaded.adapter != nil { loaded.model.mergeAdapters() }
            model = loaded.model
        }
        defer { if disable { session.model.setAdapters(enabled: true) } }
        var chosen: [Float] = [], rejected: [Float] = []
        for start in stride(from: 0, to: pairs.count, by: s.training.batchSize) {
            let chunk = Array(pairs[start..<min(start + s.training.batchSize, pairs.count)])
            let r = PreferenceObjective.referenceLogProbs(model, PreferenceSequences(chunk, maxLength: s.training.seqLen, padID: padID))
            chosen += r.chosen
            rejected += r.rejected
        }
        let result = ReferenceLogProbs(chosen: chosen, rejected: rejected)
        try createDirectory(cache.deletingLastPathComponent())
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try writeAtomically(try encoder.encode(StoredReference(fingerprint: fingerprint, logProbs: result)), to: cache.path)
        return (result, "computed")
    }
}

/// The reference cache file: its key and the log-probs.
private struct StoredReference: Codable {
    var fingerprint: String
    var logProbs: ReferenceLogProbs
}

extension PreferenceMetrics {
    /// TRL's metric names, in its logging order.
    static let names = ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"]
}

