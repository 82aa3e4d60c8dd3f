// The `kd` stage: distillation from a teacher with the same tokenizer, on its full logits or
// its top-k log-probs cached in the run directory (docs/finetuning.md).

import Core
import Foundation
import JSON
import ModelIO
import NN
import Platform
import Recipe
import TextData
import Training

struct KDExecutor: StageExecutor {
    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        guard case .kd(let s) = stage else { preconditionFailure("kd executor got a \(stage.type) stage") }
        return try withoutActuallyEscaping(emit) { emit in
            let session = try s.fineTuning(context, emit: emit)
            let t = s.training
            let teacherPath = context.path(of: s.teacher)
            let teacher = try loadModel(from: teacherPath)
            try requireSameTokenizer(
                student: session.tokenizer, studentPath: session.modelPath, teacher: try teacher.requireTokenizer(),
                teacherPath: teacherPath, studentVocab: session.model.config.vocabSize, teacherVocab: teacher.model.config.vocabSize)
            try session.checkSeqLen(t.seqLen)
            guard t.seqLen <= teacher.model.config.maxPositionEmbeddings else {
                throw UserError(path: teacherPath, problem: "training.seq_len \(t.seqLen) exceeds the teacher's max_position_embeddings (\(teacher.model.config.maxPositionEmbeddings))", fix: "lower training.seq_len", kind: .usage)
            }
            let examples = try readExamples(s.data.train, template: s.template, tokenizer: session.tokenizer, endOfText: session.endOfText, seqLen: t.seqLen)
            let rows = try SFTRows(examples, seqLen: t.seqLen, packing: s.packing, fraction: s.data.validationFraction, seed: UInt64(context.seed), padID: session.endOfText ?? 0, path: s.data.train.first ?? "")
            emit(.message("\(examples.count) examples in \(rows.train.count) training and \(rows.validation.count) validation rows of \(t.seqLen)"))
            var summary: [String: SummaryValue] = ["examples": .int(examples.count)]
            var topK: [TopKLogProbs]?
            if let k = s.topK {
                let (table, status) = try teacherTopK(rows.sequences, k: min(k, teacher.model.config.vocabSize), stage: s, teacher: teacher.model, runDirectory: context.runDirectory, emit: emit)
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

    /// The teacher's top-k log-probs for every row (training and validation), from the run
    /// directory's cache when its key (teacher weights, data, layout, k, temperature) matches.
    private func teacherTopK(
        _ seqs: SFTSequences, k: Int, stage s: KDStage, teacher: LlamaModel, runDirectory: String, emit: (StageEvent) -> Void
    ) throws -> ([TopKLogProbs], String) {
        var key = XXH64()
        key.update("kd-topk-v1")
        key.update(modelChecksum(teacher, includingAdapters: true))
        key.update(seqs.inputs.withUnsafeBytes { XXH64.hash($0) })
        key.update(seqs.segments.withUnsafeBytes { XXH64.hash($0) })
        key.update(UInt64(seqs.seqLen))
        key.update(UInt64(k))
        key.update(s.temperature.bitPattern)
        let fingerprint = hexDigits(key.finalize())
        let cache = URL(fileURLWithPath: runDirectory).appendingPathComponent("cache/teacher-topk-\(fingerprint).bin")
        let perRow = seqs.seqLen * k
        if let data = FileManager.default.contents(atPath: cache.path), let table = TopKTable(data: data, rows: seqs.rows, perRow: perRow) {
            emit(.message("teacher top-\(k): cached (\(cache.lastPathComponent))"))
            return ((0..<seqs.rows).map { table.row($0, k: k) }, "cached")
        }
        emit(.message("teacher top-\(k): computing for \(seqs.rows) rows"))
        var out: [TopKLogProbs] = []
        for start in stride(from: 0, to: seqs.rows, by: max(1, s.training.batchSize)) {
            let idx = Array(start..<min(start + s.training.batchSize, seqs.rows))
            let logits = DistillationObjective.teacherLogits(teacher, seqs.batch(idx))  // [B, T, V]
            let v = logits.shape[2]
            for (i, _) in idx.enumerated() {
                let row = Tensor(shape: [seqs.seqLen, v], values: Array(logits.values[(i * seqs.seqLen * v)..<((i + 1) * seqs.seqLen * v)]))
                out.append(TopKLogProbs(logits: row, k: k, temperature: s.temperature))
            }
        }
        try createDirectory(cache.deletingLastPathComponent())
        try writeAtomically(TopKTable.encode(out, perRow: perRow), to: cache.path)
        return (out, "computed")
    }
}

/// The top-k cache file: "DSTLTOPK", rows and entries per row (UInt64 LE), then every row's
/// ids (Int32 LE) and log-probs (Float32 LE).
private struct TopKTable {
    static let magic = Array("DSTLTOPK".utf8)
    var ids: [Int32]
    var logProbs: [Float]
    var perRow: Int

    init?(data: Data, rows: Int, perRow: Int) {
        let header = 8 + 16, n = rows * perRow
        guard data.count == header + n * 8, Array(data.prefix(8)) == Self.magic else { return nil }
        func u64(_ at: Int) -> UInt64 { data.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: UInt64.self) }.littleEndian }
        guard u64(8) == UInt64(rows), u64(16) == UInt64(perRow) else { return nil }
        var ids = [Int32](repeating: 0, count: n)
        var logProbs = [Float](repeating: 0, count: n)
        data.withUnsafeBytes { raw in
            ids.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[header..<(header + n * 4)])) }
            logProbs.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[(header + n * 4)...])) }
        }
        self.ids = ids
        self.logProbs = logProbs
        self.perRow = perRow
    }

    func row(_ r: Int, k: Int) -> TopKLogProbs {
        let range = (r * perRow)..<((r + 1) * perRow)
        return TopKLogProbs(k: k, ids: Array(ids[range]), logProbs: Array(logProbs[range]))
    }

    static func encode(_ rows: [TopKLogProbs], perRow: Int) -> Data {
        var data = Data(magic)
        withUnsafeBytes(of: UInt64(rows.count).littleEndian) { data.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt64(perRow).littleEndian) { data.append(contentsOf: $0) }
        for r in rows { r.ids.withUnsafeBytes { data.append(contentsOf: $0) } }
        for r in rows { r.logProbs.withUnsafeBytes { data.append(contentsOf: $0) } }
        return data
    }
}
