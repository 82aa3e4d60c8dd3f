// The `kd` stage: distillation from a teacher with the same tokenizer (docs/finetuning.md).

import JSON
import NN
import TextData
import Training

/// Distillation from a local teacher that shares the student's tokenizer.
package struct KDStage: FineTuneStageSettings {
    package static let type = StageType.kd
    package var name = "kd"
    /// The student. Default: the latest earlier checkpoint-producing stage.
    package var model = CheckpointSource.stage("pretrain")
    /// Required: `"@stage"`, a distill .h5 or a Hugging Face directory.
    package var teacher = CheckpointSource.file("")
    package var data = FineTuneData()
    package var template: ChatTemplate?
    /// Default true.
    package var packing = true
    /// Default `forward_kl`.
    package var loss: DivergenceKind = .forwardKL
    /// JSD interpolation, in (0, 1). Default 0.5.
    package var beta: Double = 0.5
    /// > 0. Default 1.
    package var temperature: Double = 1
    /// Weight of the divergence: loss = alpha·KD + (1 − alpha)·CE, in [0, 1]. Default 1.
    package var alpha: Double = 1
    /// Keep the teacher's top k log-probs per position, computed once and stored in the run
    /// directory's cache; >= 1. Default nil: the full teacher runs at every step.
    package var topK: Int?
    package var lora: LoRASettings?
    /// How the frozen base is held under LoRA (QLoRA): nil or f32, bf16, q8_0, q4_0, q4_1
    /// (converted at load), file (a quantized GGUF's own blocks). Default nil: f32.
    package var baseWeights: InferenceWeights?
    package var training = TrainingSettings.fineTuning
    /// Default `kd.h5`.
    package var output = "kd.h5"

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, model, teacher, data, template, packing, loss, beta, temperature, alpha, topK = "top_k"
        case lora, baseWeights = "base_weights", training, output
    }

    package var checkpointInputs: [CheckpointSource] { [model, teacher] }

    package var distillationConfig: DistillationConfig {
        DistillationConfig(divergence: loss, beta: beta, temperature: temperature, kdWeight: alpha)
    }
}

extension KDStage {
    package static func read(_ v: JSONValue, path: String, name: String, seed: Int, log: IssueLog) -> KDStage {
        let r = ObjectReader<KDStage.CodingKeys>(v, path: path, log: log, alsoAllowed: ["type"], nested: nestedKeys)
        var s = KDStage()
        s.name = name
        readCommon(r, name: .name, output: .output, into: &s)
        readShared(
            r, model: .model, data: .data, template: .template, lora: .lora, baseWeights: .baseWeights, training: .training,
            into: &s)
        if let t = r.string(.teacher) {
            s.teacher = CheckpointSource(t)
        } else if !r.has(.teacher) {
            r.missing(.teacher, hint: "\"@stage\", a distill .h5 or a Hugging Face directory with the same tokenizer")
        }
        r.read(.packing, into: &s.packing)
        r.read(.loss, into: &s.loss)
        r.read(.beta, into: &s.beta, NumericRange(lower: 0, lowerInclusive: false, upper: 1, upperInclusive: false))
        r.read(.temperature, into: &s.temperature, .positive)
        r.read(.alpha, into: &s.alpha, .closed(0, 1))
        r.read(.topK, into: &s.topK, .atLeast(1))
        return s
    }

    package var stage: Stage { .kd(self) }
    package static let producesCheckpoint = true

    package mutating func link(_ l: StageLinker) {
        linkShared(l)
        guard l.given.contains("teacher") else { return }  // reported in pass 1
        teacher = l.source(teacher, given: true, at: "teacher") ?? teacher
    }
}
