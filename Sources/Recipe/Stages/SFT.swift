// The `sft` stage: supervised fine-tuning on rendered rows (docs/finetuning.md).

import JSON
import NN
import TextData
import Training

/// Supervised fine-tuning on TRL rows (prompt/completion, messages, text), loss on the
/// completion / assistant tokens only.
package struct SFTStage: FineTuneStageSettings {
    package static let type = StageType.sft
    package var name = "sft"
    /// The model to fine-tune: `"@stage"`, a distill .h5 or a Hugging Face directory. Default:
    /// the latest earlier stage that produces a checkpoint.
    package var model = CheckpointSource.stage("pretrain")
    /// Required.
    package var data = FineTuneData()
    /// Default `chatml`.
    package var template: ChatTemplate?
    /// Pack short examples into full rows (attention kept inside each); false pads one example
    /// per row. Default true.
    package var packing = true
    /// Default nil: full fine-tuning.
    package var lora: LoRASettings?
    /// How the frozen base is held under LoRA (QLoRA): nil or f32, bf16, q8_0, q4_0, q4_1
    /// (converted at load), file (a quantized GGUF's own blocks). Default nil: f32.
    package var baseWeights: InferenceWeights?
    package var training = TrainingSettings.fineTuning
    /// Default `sft.h5`.
    package var output = "sft.h5"

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, model, data, template, packing, lora, baseWeights = "base_weights", training, output
    }

    package var checkpointInputs: [CheckpointSource] { [model] }
}

extension SFTStage {
    package static func read(_ v: JSONValue, path: String, name: String, seed: Int, log: IssueLog) -> SFTStage {
        let r = ObjectReader<SFTStage.CodingKeys>(v, path: path, log: log, alsoAllowed: ["type"], nested: nestedKeys)
        var s = SFTStage()
        s.name = name
        readCommon(r, name: .name, output: .output, into: &s)
        readShared(
            r, model: .model, data: .data, template: .template, lora: .lora, baseWeights: .baseWeights, training: .training,
            into: &s)
        r.read(.packing, into: &s.packing)
        return s
    }

    package var stage: Stage { .sft(self) }
    package static let producesCheckpoint = true

    package mutating func link(_ l: StageLinker) { linkShared(l) }
}
