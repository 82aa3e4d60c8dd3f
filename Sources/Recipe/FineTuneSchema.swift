// The fine-tuning stages' settings: `sft`, `dpo` and `kd`. Like RecipeSchema.swift, every
// property initialiser is the documented default (docs/finetuning.md, docs/recipes.md); the
// readers are in FineTuneDecoding.swift and the executors in Sources/Pipeline/Stages.

import NN
import TextData
import Training

/// LoRA adapters instead of full fine-tuning (PEFT's key names).
package struct LoRASettings: Codable, Sendable, Equatable {
    /// Rank, >= 1. Default 8.
    package var r: Int = 8
    /// > 0. Default 16.
    package var alpha: Double = 16
    /// Adapter input dropout, in [0, 1). Default 0.
    package var dropout: Double = 0
    /// Scale alpha / sqrt(r) instead of alpha / r. Default false.
    package var useRSLoRA: Bool = false
    /// A list as in peft: projection names (q_proj, k_proj, v_proj, o_proj, gate_proj,
    /// up_proj, down_proj) matching every layer's, module paths or their tails
    /// ("layers.0.mlp.down_proj"), or "all-linear" for all seven. Default ["q_proj", "v_proj"].
    package var targetModules: [String] = ["q_proj", "v_proj"]
    /// target_modules given as one string other than "all-linear": a regular expression a
    /// module's whole path must match (peft's re.fullmatch). Default none.
    package var targetPattern: String?

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case r, alpha, dropout, useRSLoRA = "use_rslora", targetModules = "target_modules"
    }

    /// The settings before they are resolved against a model (`LoRAConfig.resolved(layers:)`).
    package var config: LoRAConfig {
        LoRAConfig(rank: r, alpha: alpha, dropout: dropout, useRSLoRA: useRSLoRA, targetModules: targetModules, targetPattern: targetPattern)
    }

    // target_modules is a list or, for a regex, a string (as peft writes it).
    package init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        r = try c.decode(Int.self, forKey: .r)
        alpha = try c.decode(Double.self, forKey: .alpha)
        dropout = try c.decode(Double.self, forKey: .dropout)
        useRSLoRA = try c.decode(Bool.self, forKey: .useRSLoRA)
        if let pattern = try? c.decode(String.self, forKey: .targetModules) {
            targetPattern = pattern
            targetModules = []
        } else {
            targetModules = try c.decode([String].self, forKey: .targetModules)
        }
    }

    package func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(r, forKey: .r)
        try c.encode(alpha, forKey: .alpha)
        try c.encode(dropout, forKey: .dropout)
        try c.encode(useRSLoRA, forKey: .useRSLoRA)
        if let targetPattern { try c.encode(targetPattern, forKey: .targetModules) } else { try c.encode(targetModules, forKey: .targetModules) }
    }
}

/// Fine-tuning data: JSONL files and the share held out for validation.
package struct FineTuneData: Codable, Sendable, Equatable {
    /// Required. JSONL files (a single string is a list of one), relative to the recipe file's
    /// folder; absolute after loading.
    package var train: [String] = []
    /// Share of rows (examples or pairs) held out for validation, in [0, 0.5]. Default 0.05.
    package var validationFraction: Double = 0.05

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable { case train, validationFraction = "validation_fraction" }
}

/// What the three fine-tuning stages share.
package protocol FineTuneStageSettings: StageSettings {
    var model: CheckpointSource { get set }
    var data: FineTuneData { get set }
    var lora: LoRASettings? { get set }
    var training: TrainingSettings { get set }
    /// The chat template for conversational rows.
    var template: ChatTemplate { get set }
}

extension FineTuneStageSettings {
    package var inputFiles: [String] { data.train }
}

// MARK: - sft

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
    package var template: ChatTemplate = .chatml
    /// Pack short examples into full rows (attention kept inside each); false pads one example
    /// per row. Default true.
    package var packing = true
    /// Default nil: full fine-tuning.
    package var lora: LoRASettings?
    package var training = TrainingSettings.fineTuning
    /// Default `sft.h5`.
    package var output = "sft.h5"

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, model, data, template, packing, lora, training, output
    }

    package var checkpointInputs: [CheckpointSource] { [model] }
}

// MARK: - dpo

/// Preference optimisation on `{"prompt", "chosen", "rejected"}` rows.
package struct DPOStage: FineTuneStageSettings {
    package static let type = StageType.dpo
    package var name = "dpo"
    /// The policy's starting point, also the reference model. Default: the latest earlier
    /// checkpoint-producing stage.
    package var model = CheckpointSource.stage("sft")
    package var data = FineTuneData()
    package var template: ChatTemplate = .chatml
    /// Default `sigmoid`.
    package var loss: PreferenceLossKind = .sigmoid
    /// > 0. Default 0.1.
    package var beta: Double = 0.1
    /// In [0, 0.5). Default 0.
    package var labelSmoothing: Double = 0
    /// SimPO's margin γ, >= 0. Default 0.5.
    package var simpoGamma: Double = 0.5
    package var lora: LoRASettings?
    package var training = TrainingSettings.fineTuning
    /// Default `dpo.h5`.
    package var output = "dpo.h5"

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, model, data, template, loss, beta, labelSmoothing = "label_smoothing", simpoGamma = "simpo_gamma"
        case lora, training, output
    }

    package var checkpointInputs: [CheckpointSource] { [model] }

    package var lossConfig: PreferenceLossConfig {
        PreferenceLossConfig(kind: loss, beta: beta, labelSmoothing: labelSmoothing, simpoGamma: simpoGamma)
    }
}

// MARK: - kd

/// Distillation from a local teacher that shares the student's tokenizer.
package struct KDStage: FineTuneStageSettings {
    package static let type = StageType.kd
    package var name = "kd"
    /// The student. Default: the latest earlier checkpoint-producing stage.
    package var model = CheckpointSource.stage("pretrain")
    /// Required: `"@stage"`, a distill .h5 or a Hugging Face directory.
    package var teacher = CheckpointSource.file("")
    package var data = FineTuneData()
    package var template: ChatTemplate = .chatml
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
    package var training = TrainingSettings.fineTuning
    /// Default `kd.h5`.
    package var output = "kd.h5"

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, model, teacher, data, template, packing, loss, beta, temperature, alpha, topK = "top_k"
        case lora, training, output
    }

    package var checkpointInputs: [CheckpointSource] { [model, teacher] }

    package var distillationConfig: DistillationConfig {
        DistillationConfig(divergence: loss, beta: beta, temperature: temperature, kdWeight: alpha)
    }
}
