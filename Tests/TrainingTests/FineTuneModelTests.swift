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

    /// DPO through the fused head (`PreferenceObjective`: `LlamaModel.tokenLogProbs`, no
    /// [2P, T, V] logits) gives the loss, metrics and trained gradients of the logits path it
    /// replaced (`loss(logits: model.logits(...))`), and `referenceLogProbs` the same sums:
    /// full training (the tied head trained: logits recomputed in the backward), LoRA (head
    /// frozen: hidden gradient in the forward) and LoRA on a q8_0 base (packed head). Two pairs
    /// of different lengths (padding), prompts masked, the reference moved off the policy so
    /// the pairs' margins differ.
    @Test("DPO through the fused head equals the logits path", arguments: ["full", "lora", "qlora"])
    func dpoFusedHeadEqualsLogitsPath(variant: String) throws {
        var rng = RNG(seed: 7)
        let config = LlamaConfig(
            vocabSize: 41, hiddenSize: 32, intermediateSize: 64, numHiddenLayers: 2, numAttentionHeads: 4,
            numKeyValueHeads: 2, tieWordEmbeddings: true, maxPositionEmbeddings: 64, initializerRange: 0.2)
        var model = LlamaModel(config: config, rng: &rng)
        var trained = model.namedParameters()
        if variant != "full" {
            trained = model.addLoRA(LoRAConfig(rank: 4, alpha: 8, targetModules: ["q_proj", "v_proj"]), rng: &rng)
            for (_, p) in trained {  // B starts at 0: give every adapter weight a value
                let r = Tensor.randn(p.shape, std: 0.1, rng: &rng)
                p.data.update(from: r.data, count: p.count)
            }
            if variant == "qlora" {
                model = model.packed(model.quantizedMatrices(.q8_0))
                #expect(model.lmHead.packed != nil)
            }
        }
        func example(_ prompt: Int, _ completion: Int) -> RenderedExample {
            let ids = (0..<(prompt + completion)).map { _ in Int32(rng.next() % 41) }
            return RenderedExample(ids: ids, trained: ids.indices.map { $0 >= prompt })
        }
        let s = PreferenceSequences(
            [PreferencePair(chosen: example(4, 5), rejected: example(4, 3)), PreferencePair(chosen: example(3, 6), rejected: example(3, 4))],
            maxLength: 16)
        let (ids, targets, rows) = (s.inputs, s.targets, 2 * s.pairs)
        func maxDifference(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { abs($0 - $1) }.max() ?? 0 }

        let reference = PreferenceObjective.referenceLogProbs(model, s)
        let unfusedSums = GradMode.withoutGrad {
            Tensor.sequenceLogProbs(model.logits(ids: ids, batch: rows, length: s.length), targets: targets).sum.values
        }
        #expect(maxDifference(reference.chosen + reference.rejected, unfusedSums) <= 1e-5 * (unfusedSums.map(abs).max() ?? 0))
        let moved = ReferenceLogProbs(chosen: reference.chosen.map { $0 + 0.7 }, rejected: reference.rejected.map { $0 - 0.4 })

        let loss = PreferenceLossConfig(kind: .sigmoid, beta: 0.5)
        func gradients(_ run: () throws -> (Tensor, [String: Double])) rethrows -> (Float, [[Float]], [String: Double]) {
            for (_, p) in trained { p.grad = nil }
            let (value, metrics) = try run()
            value.backward()
            return (value.item, trained.map { $0.1.grad?.values ?? [] }, metrics)
        }
        let fused = try gradients {
            let out = try PreferenceObjective(model: model, config: loss).loss(PreferenceBatch(sequences: s, reference: moved))
            return (out.loss, out.metrics)
        }
        let plain = gradients {
            let out = loss.loss(logits: model.logits(ids: ids, batch: rows, length: s.length), targets: targets, reference: moved)
            return (out.loss, Dictionary(uniqueKeysWithValues: out.metrics.named))
        }
        #expect(abs(fused.0 - plain.0) <= 1e-5 * abs(plain.0), "loss \(fused.0) vs \(plain.0)")
        #expect(Set(fused.2.keys) == Set(plain.2.keys))
        for (name, value) in plain.2 {
            let got = fused.2[name] ?? .nan
            #expect(abs(got - value) <= 1e-5 * max(1, abs(value)), "\(name): \(got) vs \(value)")
        }
        for ((name, _), (got, want)) in zip(trained, zip(fused.1, plain.1)) {
            #expect(!want.isEmpty && want.contains { $0 != 0 }, "\(name) has a gradient")
            #expect(maxDifference(got, want) <= 1e-5 * (want.map(abs).max() ?? 0) + 1e-8, "\(name)")
        }
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
