// Fine-tuning data as the trainer takes it: JSONL rows rendered through the chat template,
// laid out in rows of seq_len (padded or packed), split into training and validation rows; and
// the checks that a teacher can be distilled from.

import Core
import Foundation
import JSON
import NN
import Platform
import TextData

/// Examples from fine-tuning JSONL rows: SFT rows through the chat template, and TRL's
/// language-modelling rows `{"text"}` (every token trained, end-of-text appended). A text row
/// longer than `seqLen` positions is cut into consecutive windows of seqLen + 1 ids that
/// overlap by one id, so every token is a target once and none is lost to truncation.
package func readExamples(
    _ paths: [String], chat: ChatStyle, tokenizer: ByteLevelBPETokenizer, endOfText: Int32?, seqLen: Int
) throws -> [RenderedExample] {
    precondition(seqLen >= 1, "seqLen must be >= 1, got \(seqLen)")
    let format = SFTFormat(chat)
    var out: [RenderedExample] = []
    for path in paths {
        try JSONLReader.forEach(path: path) { record in
            if case .string(let text)? = record.value("text"), record.value("messages") == nil,
                record.value("prompt") == nil
            {
                let ids = tokenizer.encode(text) + (endOfText.map { [$0] } ?? [])
                var start = 0
                repeat {
                    let window = Array(ids[start..<min(start + seqLen + 1, ids.count)])
                    out.append(RenderedExample(ids: window, trained: window.map { _ in true }))
                    start += seqLen
                } while start + 1 < ids.count
            } else {
                out.append(try SFTData.render(record, format: format, tokenizer: tokenizer))
            }
        }
    }
    return out
}

extension SFTSequences {
    /// Whether row `r` has at least one trained target.
    package func isTrained(_ r: Int) -> Bool {
        targets[(r * seqLen)..<((r + 1) * seqLen)].contains { $0 != SFTSequences.ignoreIndex }
    }

    /// Rows `rows` (any order) as one training batch with their segment ids.
    package func batch(_ rows: [Int]) -> TrainingBatch {
        var inputs: [Int32] = [], targets: [Int32] = [], segments: [Int32] = []
        for r in rows {
            let s = slice(r..<(r + 1))
            inputs += s.inputs
            targets += s.targets
            segments += s.segments
        }
        return TrainingBatch(inputs: inputs, targets: targets, batch: rows.count, length: seqLen, segments: segments)
    }
}

/// Examples laid out in rows, split into training and validation rows, rows without a
/// trained target dropped.
package struct SFTRows {
    package var sequences: SFTSequences
    package var train: [Int]
    package var validation: [Int]

    package init(_ examples: [RenderedExample], seqLen: Int, packing: Bool, fraction: Double, seed: UInt64, padID: Int32, path: String) throws {
        let split = holdOut(examples.count, fraction: fraction, seed: seed)
        let trainSeq = SFTSequences(split.train.map { examples[$0] }, seqLen: seqLen, layout: packing ? .packed : .padded, padID: padID)
        let valSeq = SFTSequences(split.validation.map { examples[$0] }, seqLen: seqLen, layout: packing ? .packed : .padded, padID: padID)
        // One table of rows: training rows then validation rows.
        var all = trainSeq
        all.rows += valSeq.rows
        all.inputs += valSeq.inputs
        all.targets += valSeq.targets
        all.segments += valSeq.segments
        all.positions += valSeq.positions
        all.truncated += valSeq.truncated
        sequences = all
        train = (0..<trainSeq.rows).filter { all.isTrained($0) }
        validation = (trainSeq.rows..<all.rows).filter { all.isTrained($0) }
        guard !train.isEmpty else {
            throw UserError(path: path, problem: "no training row has a trained token (\(examples.count) examples)", fix: "check the data rows and seq_len", kind: .badData)
        }
    }

    /// Validation batches of `batchSize` rows, at most `count`.
    package func validationBatches(batchSize: Int, count: Int) -> [[Int]] {
        stride(from: 0, to: validation.count, by: batchSize).prefix(count).map {
            Array(validation[$0..<min($0 + batchSize, validation.count)])
        }
    }
}

/// Refuses a teacher whose tokenizer differs from the student's: distillation compares the
/// two distributions id by id, so the vocabularies (and the merges that pick the ids) must be
/// the same. Cross-tokenizer distillation is out of scope.
package func requireSameTokenizer(
    student: ByteLevelBPETokenizer, studentPath: String, teacher: ByteLevelBPETokenizer, teacherPath: String,
    studentVocab: Int, teacherVocab: Int
) throws {
    func refuse(_ what: String) -> UserError {
        UserError(
            path: teacherPath,
            problem: "the teacher's tokenizer differs from the student's (\(studentPath)): \(what)",
            fix: "distill from a teacher trained with the same tokenizer.json (cross-tokenizer distillation is not supported)", kind: .usage)
    }
    guard studentVocab == teacherVocab else {
        throw refuse("the models' vocabularies have \(studentVocab) and \(teacherVocab) entries")
    }
    guard student.vocabSize == teacher.vocabSize else {
        throw refuse("\(student.vocabSize) tokens against \(teacher.vocabSize)")
    }
    for id in 0..<Int32(student.vocabSize) where student.token(for: id) != teacher.token(for: id) {
        throw refuse(
            "token \(id) is \(student.token(for: id).map { "\"\($0)\"" } ?? "unused") for the student and "
                + "\(teacher.token(for: id).map { "\"\($0)\"" } ?? "unused") for the teacher")
    }
    let a = student.model.merges, b = teacher.model.merges
    guard a.count == b.count, zip(a, b).allSatisfy({ $0 == $1 }) else {
        throw refuse("same vocabulary but different merges (\(a.count) against \(b.count))")
    }
}
