// The fine-tuning pieces on a real (tiny) Llama: packed examples see only themselves, and a
// few DPO and distillation updates move the model the way the loss says.

import Core
import Foundation
import NN
import Platform
import Testing
import TextData

@testable import Training

private func fineTuneModel(seed: UInt64) -> LlamaModel {
    var rng = RNG(seed: seed)
    let config = LlamaConfig(
        vocabSize: 41, hiddenSize: 16, intermediateSize: 24, numHiddenLayers: 2, numAttentionHeads: 4,
        numKeyValueHeads: 2, tieWordEmbeddings: true, maxPositionEmbeddings: 64, initializerRange: 0.2)
    return LlamaModel(config: config, rng: &rng)
}

private func randomExample(_ n: Int, _ rng: inout RNG) -> RenderedExample {
    RenderedExample(ids: (0..<n).map { _ in Int32(rng.next() % 41) }, trained: (0..<n).map { $0 >= n / 2 })
}

@Suite struct FineTuneModelTests {
    /// Three examples packed into one row of 16 give, at every position, the logits each
    /// example gets alone: the segment ids stop attention at example boundaries. Without the
    /// restarted positions the logits still agree to rounding (rotary scores depend only on
    /// position differences).
    @Test func packedExamplesSeeOnlyThemselves() {
        var rng = RNG(seed: 11)
        let model = fineTuneModel(seed: 5)
        let examples = [randomExample(6, &rng), randomExample(5, &rng), randomExample(6, &rng)]
        let packed = SFTSequences(examples, seqLen: 16, layout: .packed)
        #expect(packed.rows == 1 && packed.segments == [1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 0, 0])
        let v = 41
        GradMode.withoutGrad {
            let together = model.logits(
                ids: packed.inputs, batch: 1, length: 16, positions: packed.positions, segments: packed.segments)
            let offset = model.logits(ids: packed.inputs, batch: 1, length: 16, segments: packed.segments)
            var start = 0
            for e in examples {
                let n = e.ids.count - 1
                let alone = model.logits(ids: Array(e.ids.prefix(n)), batch: 1, length: n).values
                let a = Array(together.values[(start * v)..<((start + n) * v)])
                let b = Array(offset.values[(start * v)..<((start + n) * v)])
                #expect(zip(a, alone).allSatisfy { abs($0 - $1) <= 1e-5 }, "example at \(start)")
                #expect(zip(b, alone).allSatisfy { abs($0 - $1) <= 1e-4 }, "example at \(start), unrestarted positions")
                start += n
            }
        }
    }

    /// One preference pair, the reference is the initial model (log-probs computed once):
    /// at step 0 the policy equals the reference, so the loss is log 2 and the margin 0;
    /// ten AdamW steps later the chosen completion's reward exceeds the rejected one's.
    @Test func dpoStepsOpenTheMargin() {
        let model = fineTuneModel(seed: 9)
        var rng = RNG(seed: 4)
        let prompt = (0..<4).map { _ in Int32(rng.next() % 41) }
        func example(_ completion: [Int32]) -> RenderedExample {
            RenderedExample(
                ids: prompt + completion, trained: prompt.map { _ in false } + completion.map { _ in true })
        }
        let batch = PreferenceSequences(
            [PreferencePair(chosen: example([3, 5, 7, 9]), rejected: example([4, 6, 8]))], maxLength: 16)
        #expect(batch.length == 7)
        let ids = batch.inputs, targets = batch.targets
        let config = PreferenceLossConfig(kind: .sigmoid, beta: 0.1)
        let reference: ReferenceLogProbs = GradMode.withoutGrad {
            let s = Tensor.sequenceLogProbs(model.logits(ids: ids, batch: 2, length: 7), targets: targets).sum.values
            return ReferenceLogProbs(chosen: [s[0]], rejected: [s[1]])
        }
        let opt = AdamW(parameters: model.namedParameters(), config: AdamWConfig(weightDecay: 0)) { _ in true }
        var first: PreferenceLoss?, last: PreferenceLoss?
        for _ in 0..<10 {
            opt.zeroGrad()
            let out = config.loss(
                logits: model.logits(ids: ids, batch: 2, length: 7), targets: targets, reference: reference)
            out.loss.backward()
            opt.update(lr: 1e-2)
            if first == nil { first = out }
            last = out
        }
        #expect(abs(first!.loss.item - Float(log(2.0))) < 1e-5)
        #expect(abs(first!.metrics.rewardsMargins) < 1e-6)
        #expect(last!.metrics.rewardsMargins > 0.05 && last!.metrics.rewardsAccuracies == 1)
        #expect(last!.loss.item < first!.loss.item)
    }

    /// A student distilled from a different teacher on the same inputs moves towards it: the
    /// forward KL falls over ten steps, with the full teacher and with its top-4.
    @Test func distillationReducesTheDivergence() {
        for topK in [false, true] {
            let student = fineTuneModel(seed: 1), teacher = fineTuneModel(seed: 2)
            let ids: [Int32] = (0..<12).map { Int32($0 * 5 % 41) }
            let targets = ids.enumerated().map { $0.offset < 4 ? -100 : ($0.element + 1) % 41 }
            let teacherLogits = GradMode.withoutGrad { teacher.logits(ids: ids, batch: 1, length: 12) }
            let dist: TeacherDistribution =
                topK ? .topK(TopKLogProbs(logits: teacherLogits, k: 4)) : .logits(teacherLogits)
            let config = DistillationConfig(divergence: .forwardKL)
            let opt = AdamW(parameters: student.namedParameters(), config: AdamWConfig(weightDecay: 0)) { _ in true }
            var losses: [Double] = []
            for _ in 0..<10 {
                opt.zeroGrad()
                let out = config.loss(
                    studentLogits: student.logits(ids: ids, batch: 1, length: 12), teacher: dist, targets: targets)
                out.loss.backward()
                opt.update(lr: 1e-2)
                losses.append(out.kd)
            }
            #expect(losses.last! < 0.7 * losses.first!, "top-k \(topK): \(losses)")
        }
    }
}

@Suite struct SFTBatchTests {
    /// Three one-example rows of length 2 in batches of 2: rows {0, 1} then {2}, segments kept.
    @Test func rowsGroupIntoBatches() {
        let e = RenderedExample(ids: [1, 2, 3], trained: [false, true, true])
        let s = SFTSequences([e, e, e], seqLen: 2, layout: .padded)
        let batches = s.trainingBatches(batchSize: 2)
        #expect(batches.map(\.batch) == [2, 1] && batches.allSatisfy { $0.length == 2 })
        #expect(batches[0].inputs == [1, 2, 1, 2] && batches[0].targets == [2, 3, 2, 3])
        #expect(batches[1].segments == [1, 1])
    }
}

/// Empty or single-row data is refused with a message, never a crash: the hold-out split of 0
/// or 1 items holds nothing out, and rows without a trained token are a data error (exit 65).
@Test func emptyFineTuneDataIsADataErrorNotACrash() {
    #expect(holdOut(0, fraction: 0.05, seed: 1) == ([], []))
    #expect(holdOut(1, fraction: 0.5, seed: 1) == ([0], []))
    #expect {
        try SFTRows([], seqLen: 8, packing: false, fraction: 0.05, seed: 1, padID: 0, path: "empty.jsonl")
    } throws: { error in
        (error as? UserError)?.kind == .badData && "\(error)".contains("empty.jsonl: no training row has a trained token (0 examples)")
    }
}
