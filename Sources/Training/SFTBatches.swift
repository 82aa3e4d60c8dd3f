// SFT rows as training batches: what the trainer consumes.

import Foundation
import TextData

extension SFTSequences {
    /// Consecutive groups of `batchSize` rows (the last may be smaller) as training batches
    /// carrying the segment ids, so packed examples stay separate in attention. Positions are
    /// not passed: with rotary embeddings the segment-confined scores do not depend on them
    /// (docs/finetuning.md).
    package func trainingBatches(batchSize: Int) -> [TrainingBatch] {
        precondition(batchSize >= 1, "batchSize must be >= 1, got \(batchSize)")
        return stride(from: 0, to: rows, by: batchSize).map { start in
            let range = start..<Swift.min(start + batchSize, rows)
            let s = slice(range)
            return TrainingBatch(
                inputs: s.inputs, targets: s.targets, batch: range.count, length: seqLen, segments: s.segments)
        }
    }
}
