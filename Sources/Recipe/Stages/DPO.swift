// The `dpo` stage: preference optimisation on (prompt, chosen, rejected) pairs (docs/finetuning.md).

import JSON
import NN
import TextData
import Training

/// Preference optimisation on `{"prompt", "chosen", "rejected"}` rows.
package struct DPOStage: FineTuneStageSettings {
    package static let type = StageType.dpo
    package var name = "dpo"
    /// The policy's starting point, also the reference model. Default: the latest earlier
    /// checkpoint-producing stage.
    package var model = CheckpointSource.stage("sft")
    package var data = FineTuneData()
    package var template: ChatTemplate?
    /// Default `sigmoid`.
    package var loss: PreferenceLossKind = .sigmoid
    /// > 0. Default 0.1.
    package var beta: Double = 0.1
    /// In [0, 0.5). Default 0.
    package var labelSmoothing: Double = 0
    /// SimPO's margin γ, >= 0. Default 0.5.
    package var simpoGamma: Double = 0.5
    /// Weight of the chosen completions' next-token loss beside the preference loss (RPO), >= 0.
    /// Default 0 (off).
    package var sftWeight: Double = 0
    package var lora: LoRASettings?
    /// How the frozen base is held under LoRA (QLoRA): nil or f32, bf16, q8_0, q4_0, q4_1
    /// (converted at load), file (a quantized GGUF's own blocks). Default nil: f32.
    package var baseWeights: InferenceWeights?
    package var training = TrainingSettings.fineTuning
    /// Default `dpo.h5`.
    package var output = "dpo.h5"

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, model, data, template, loss, beta, labelSmoothing = "label_smoothing", simpoGamma = "simpo_gamma"
        case sftWeight = "sft_weight"
        case lora, baseWeights = "base_weights", training, output
    }

    package var checkpointInputs: [CheckpointSource] { [model] }

    package var lossConfig: PreferenceLossConfig {
        PreferenceLossConfig(
            kind: loss, beta: beta, labelSmoothing: labelSmoothing, simpoGamma: simpoGamma, sftWeight: sftWeight)
    }
}

extension DPOStage {
    package static func read(_ v: JSONValue, path: String, name: String, seed: Int, log: IssueLog) -> DPOStage {
        let r = ObjectReader<DPOStage.CodingKeys>(v, path: path, log: log, alsoAllowed: ["type"], nested: nestedKeys)
        var s = DPOStage()
        s.name = name
        readCommon(r, name: .name, output: .output, into: &s)
        readShared(
            r, model: .model, data: .data, template: .template, lora: .lora, baseWeights: .baseWeights, training: .training,
            into: &s)
        r.read(.loss, into: &s.loss)
        r.read(.beta, into: &s.beta, .positive)
        r.read(.labelSmoothing, into: &s.labelSmoothing, .halfOpen(0, 0.5))
        r.read(.simpoGamma, into: &s.simpoGamma, .atLeast(0))
        r.read(.sftWeight, into: &s.sftWeight, .atLeast(0))
        if r.has(.labelSmoothing), ![.conservative, .robust, .simpo].contains(s.loss) {
            log.add(
                .rule("label_smoothing applies to the losses conservative, robust and simpo, not \(s.loss.rawValue)"),
                at: r.path(.labelSmoothing))
        }
        return s
    }

    package var stage: Stage { .dpo(self) }
    package static let producesCheckpoint = true

    package mutating func link(_ l: StageLinker) { linkShared(l) }
}
