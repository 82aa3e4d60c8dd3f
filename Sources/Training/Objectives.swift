// The fine-tuning objectives the trainer's loop runs (`TrainingObjective`): masked
// cross-entropy for SFT, a preference loss against reference log-probabilities for DPO and its
// family, and a divergence from a teacher's logits for distillation.
//
// Shapes: B rows, T positions, V vocabulary, P pairs (2P rows: chosen then rejected).

import Core
import NN
import TextData

/// Next-token cross-entropy over the positions whose target is not -100 (SFT: assistant
/// tokens only), packed examples kept apart by their segment ids.
package struct MaskedLanguageModeling: TrainingObjective {
    package let model: LlamaModel

    package init(model: LlamaModel) { self.model = model }

    package func loss(_ b: TrainingBatch) throws -> ObjectiveOutput {
        let loss = model.loss(ids: b.inputs, targets: b.targets, batch: b.batch, length: b.length, segments: b.segments)
        return ObjectiveOutput(loss: loss, tokens: b.batch * b.length)
    }
}

/// P preference pairs with the reference model's sequence log-probabilities for them (nil for
/// reference-free losses).
package struct PreferenceBatch {
    package var sequences: PreferenceSequences
    package var reference: ReferenceLogProbs?

    package init(sequences: PreferenceSequences, reference: ReferenceLogProbs?) {
        self.sequences = sequences
        self.reference = reference
    }
}

/// The DPO family: one forward pass over chosen and rejected rows, the loss of `config`,
/// metrics under TRL's names.
package struct PreferenceObjective: TrainingObjective {
    package let model: LlamaModel
    package let config: PreferenceLossConfig

    package init(model: LlamaModel, config: PreferenceLossConfig) {
        self.model = model
        self.config = config
    }

    package func loss(_ b: PreferenceBatch) throws -> ObjectiveOutput {
        let s = b.sequences
        let out = config.loss(sequences: Self.sequenceLogProbs(model, s), reference: b.reference)
        return ObjectiveOutput(
            loss: out.loss, tokens: 2 * s.pairs * s.length, metrics: Dictionary(uniqueKeysWithValues: out.metrics.named))
    }

    /// Summed completion log-probabilities of each row of `s` under `model` without the tape:
    /// what the reference model contributes (computed once, then stored).
    package static func referenceLogProbs(_ model: LlamaModel, _ s: PreferenceSequences) -> ReferenceLogProbs {
        GradMode.withoutGrad {
            let sums = sequenceLogProbs(model, s).sum.values  // [2P]
            return ReferenceLogProbs(chosen: Array(sums[0..<s.pairs]), rejected: Array(sums[s.pairs...]))
        }
    }

    /// The completion log-probs of the 2P rows of `s` under `model`, through the lm head fused
    /// with the log-softmax (`LlamaModel.tokenLogProbs`): no [2P, T, V] logits.
    static func sequenceLogProbs(_ model: LlamaModel, _ s: PreferenceSequences) -> SequenceLogProbs {
        let perToken = model.tokenLogProbs(ids: s.inputs, targets: s.targets, batch: 2 * s.pairs, length: s.length)  // [2P, T]
        return SequenceLogProbs(perToken: perToken, targets: s.targets)
    }
}

/// Rows of next-token data with, optionally, the teacher's stored top-k log-probabilities for
/// every position (else the teacher runs on the batch).
package struct DistillationBatch {
    package var batch: TrainingBatch
    package var teacherTopK: TopKLogProbs?

    package init(batch: TrainingBatch, teacherTopK: TopKLogProbs?) {
        self.batch = batch
        self.teacherTopK = teacherTopK
    }
}

/// Distillation from a local teacher sharing the student's tokenizer: α·KD + (1-α)·CE over the
/// positions whose target is not -100. Metrics `kd` and (when α < 1) `ce`.
package struct DistillationObjective: TrainingObjective {
    package let student: LlamaModel
    /// Runs when a batch carries no stored top-k.
    package let teacher: LlamaModel?
    package let config: DistillationConfig

    package init(student: LlamaModel, teacher: LlamaModel?, config: DistillationConfig) {
        self.student = student
        self.teacher = teacher
        self.config = config
    }

    package func loss(_ d: DistillationBatch) throws -> ObjectiveOutput {
        let b = d.batch
        let distribution: TeacherDistribution
        if let top = d.teacherTopK {
            distribution = .topK(top)
        } else {
            guard let teacher else { preconditionFailure("distillation batch without top-k and no teacher model") }
            distribution = .logits(Self.teacherLogits(teacher, b))
        }
        let logits = student.logits(ids: b.inputs, batch: b.batch, length: b.length, segments: b.segments)  // [B, T, V]
        let out = config.loss(studentLogits: logits, teacher: distribution, targets: b.targets)
        var metrics = ["kd": out.kd]
        if let ce = out.ce { metrics["ce"] = ce }
        return ObjectiveOutput(loss: out.loss, tokens: b.batch * b.length, metrics: metrics)
    }

    /// The teacher's logits for `b` [B, T, V], without the tape.
    package static func teacherLogits(_ teacher: LlamaModel, _ b: TrainingBatch) -> Tensor {
        GradMode.withoutGrad { teacher.logits(ids: b.inputs, batch: b.batch, length: b.length, segments: b.segments) }
    }
}
