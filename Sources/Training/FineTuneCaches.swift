// The two caches fine-tuning keeps in the run directory, so a re-run or resume never repeats
// a pass over the data with a frozen model: the DPO reference model's log-probs and the KD
// teacher's top-k log-probs. Each file's name is the XXH64 key of everything it depends on;
// a file whose key or shape does not match is recomputed and replaced (atomically).

import Core
import Foundation
import ModelIO
import NN
import Platform
import TextData

extension FineTuning {
    /// The reference model's summed completion log-probs for every pair (file order), from
    /// `cacheDirectory` when its key (starting weights, data, template, layout) matches, else
    /// computed (adapters disabled for LoRA; the untouched starting model for full
    /// fine-tuning) and stored.
    package func referenceLogProbs(
        _ pairs: [PreferencePair], dataFiles: [String], chat: ChatStyle, seqLen: Int, batchSize: Int, padID: Int32,
        cacheDirectory: String, emit: (ProgressEvent) -> Void
    ) throws -> (ReferenceLogProbs, String) {
        var key = XXH64()
        key.update("dpo-reference-v1")
        key.update(startDigest)
        for path in dataFiles { key.update(try fileDigest(path)) }
        key.update(chat.template.rawValue)
        if let system = chat.defaultSystem { key.update(system) }
        key.update(UInt64(seqLen))
        key.update(UInt64(batchSize))
        let fingerprint = hexDigits(key.finalize())
        let cache = URL(fileURLWithPath: cacheDirectory).appendingPathComponent("reference-\(fingerprint).json")
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
        let disable = lora != nil && !continuesAdapter
        if disable {
            model = self.model
            model.setAdapters(enabled: false)
        } else if resumed == nil {
            model = self.model
        } else {
            let loaded = try loadModel(from: self.modelPath)
            if lora == nil && loaded.adapter != nil { loaded.model.mergeAdapters() }
            model = loaded.model
        }
        defer { if disable { self.model.setAdapters(enabled: true) } }
        var chosen: [Float] = [], rejected: [Float] = []
        var progress = PassProgress()
        for start in stride(from: 0, to: pairs.count, by: batchSize) {
            let chunk = Array(pairs[start..<min(start + batchSize, pairs.count)])
            let r = PreferenceObjective.referenceLogProbs(model, PreferenceSequences(chunk, maxLength: seqLen, padID: padID))
            chosen += r.chosen
            rejected += r.rejected
            if chosen.count < pairs.count, let seconds = progress.due() {
                emit(.message("reference log-probs: \(chosen.count)/\(pairs.count) pairs, \(seconds) s"))
            }
        }
        let result = ReferenceLogProbs(chosen: chosen, rejected: rejected)
        try createDirectory(cache.deletingLastPathComponent())
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try writeAtomically(try encoder.encode(StoredReference(fingerprint: fingerprint, logProbs: result)), to: cache.path)
        return (result, "computed")
    }
}

/// When a pass over the data with a frozen model (no training steps to report) should say how
/// far it is: every 15 seconds.
private struct PassProgress {
    let started = Date()
    var reported = Date()

    /// The whole seconds since the pass started, when 15 have passed since the last report.
    mutating func due() -> Int? {
        let now = Date()
        guard now.timeIntervalSince(reported) >= 15 else { return nil }
        reported = now
        return Int(now.timeIntervalSince(started))
    }
}

/// The reference cache file: its key and the log-probs.
private struct StoredReference: Codable {
    var fingerprint: String
    var logProbs: ReferenceLogProbs
}

/// The teacher's top-k log-probs for every row (training and validation), from
/// `cacheDirectory` when its key (teacher weights, data, layout, k, temperature) matches.
package func teacherTopK(
_ seqs: SFTSequences, k: Int, temperature: Double, batchSize: Int, teacher: LlamaModel, cacheDirectory: String,
emit: (ProgressEvent) -> Void
) throws -> ([TopKLogProbs], String) {
    var key = XXH64()
    key.update("kd-topk-v1")
    key.update(modelChecksum(teacher, includingAdapters: true))
    key.update(seqs.inputs.withUnsafeBytes { XXH64.hash($0) })
    key.update(seqs.segments.withUnsafeBytes { XXH64.hash($0) })
    key.update(UInt64(seqs.seqLen))
    key.update(UInt64(k))
    key.update(temperature.bitPattern)
    let fingerprint = hexDigits(key.finalize())
    let cache = URL(fileURLWithPath: cacheDirectory).appendingPathComponent("teacher-topk-\(fingerprint).bin")
    let perRow = seqs.seqLen * k
    if let data = FileManager.default.contents(atPath: cache.path), let table = TopKTable(data: data, rows: seqs.rows, perRow: perRow) {
        emit(.message("teacher top-\(k): cached (\(cache.lastPathComponent))"))
        return ((0..<seqs.rows).map { table.row($0, k: k) }, "cached")
    }
    emit(.message("teacher top-\(k): computing for \(seqs.rows) rows"))
    var out: [TopKLogProbs] = []
    var progress = PassProgress()
    for start in stride(from: 0, to: seqs.rows, by: max(1, batchSize)) {
        let idx = Array(start..<min(start + batchSize, seqs.rows))
        let logits = DistillationObjective.teacherLogits(teacher, seqs.batch(idx))  // [B, T, V]
        let v = logits.shape[2]
        for (i, _) in idx.enumerated() {
            let row = Tensor(shape: [seqs.seqLen, v], values: Array(logits.values[(i * seqs.seqLen * v)..<((i + 1) * seqs.seqLen * v)]))
            out.append(TopKLogProbs(logits: row, k: k, temperature: temperature))
        }
        if out.count < seqs.rows, let seconds = progress.due() {
            emit(.message("teacher top-\(k): \(out.count)/\(seqs.rows) rows, \(seconds) s"))
        }
    }
    try createDirectory(cache.deletingLastPathComponent())
    try writeAtomically(TopKTable.encode(out, perRow: perRow), to: cache.path)
    return (out, "computed")
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
