// The `kd` stage: distillation from a teacher with the same tokenizer, on its full logits or
// its top-k log-probs cached in the run directory (docs/finetuning.md).

import Core
import Foundation
import JSON
import ModelIO
import Platform
import Recipe
import TextData
import Training

struct KDExecutor: StageExecutor {
    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        guard case .kd(let s) = stage else { mismatch(stage, .kd) }
        return try withoutActuallyEscaping(emit) { emit in
            let session = try s.fineTuning(context, emit: emit)
            let t = s.training
            let teacherPath = context.path(of: s.teacher)
            let teacher = try loadModel(from: teacherPath)
            try requireSameTokenizer(
                student: session.tokenizer, studentPath: session.modelPath, teacher: try teacher.requireTokenizer(),
                teacherPath: teacherPath, studentVocab: session.model.config.vocabSize, teacherVocab: teacher.model.config.vocabSize)
            try session.checkSeqLen(t.seqLen)
            try session.checkMemory(
                extra: inferenceMemoryEstimate(teacher.model.config, rows: t.batchSize, positions: t.seqLen, allLogits: true))
            guard t.seqLen <= teacher.model.config.maxPositionEmbeddings else {
                throw UserError(path: teacherPath, problem: "training.seq_len \(t.seqLen) exceeds the teacher's max_position_embeddings (\(teacher.model.config.maxPositionEmbeddings))", fix: "lower training.seq_len", kind: .usage)
            }
            let examples = try readExamples(s.data.train, chat: session.chatStyle(s.template), tokenizer: session.tokenizer, endOfText: session.endOfText, seqLen: t.seqLen)
            let rows = try SFTRows(examples, seqLen: t.seqLen, packing: s.packing, fraction: s.data.validationFraction, seed: UInt64(context.seed), padID: session.endOfText ?? 0, path: s.data.train.first ?? "")
            emit(.message("\(examples.count) examples in \(rows.train.count) training and \(rows.validation.count) validation rows of \(t.seqLen)"))
            var summary: [String: SummaryValue] = ["examples": .int(examples.count)]
            var topK: [TopKLogProbs]?
            if let k = s.topK {
                let (table, status) = try teacherTopK(
                    rows.sequences, k: min(k, teacher.model.config.vocabSize), temperature: s.temperature,
                    batchSize: t.batchSize, teacher: teacher.model,
                    cacheDirectory: URL(fileURLWithPath: context.runDirectory).appendingPathComponent("cache").path, emit: emit)
                topK = table
                summary["teacher_top_k"] = .string(status)
            }
            func batch(_ idx: [Int]) -> DistillationBatch {
                let b = rows.sequences.batch(idx)
                guard let topK else { return DistillationBatch(batch: b, teacherTopK: nil) }
                let k = topK[0].k
                return DistillationBatch(batch: b, teacherTopK: TopKLogProbs(k: k, ids: idx.flatMap { topK[$0].ids }, logProbs: idx.flatMap { topK[$0].logProbs }))
            }
            var order = EpochOrder(count: rows.train.count, batchSize: t.batchSize, seed: UInt64(context.seed))
            let objective = DistillationObjective(student: session.model, teacher: topK == nil ? teacher.model : nil, config: s.distillationConfig)
            return session.outputs(
                try session.train(
                    objective: objective, batchesPerEpoch: order.batchesPerEpoch,
                    batch: { n in batch(order.items(ofBatch: n).map { rows.train[$0] }) },
                    validation: rows.validationBatches(batchSize: t.batchSize, count: t.evalBatches).map { batch($0) },
                    progressKeys: s.alpha < 1 ? ["kd", "ce"] : ["kd"], summary: summary))
        }
    }

}

