// The recipe as typed values. Every property's initialiser is its documented default; a recipe
// file is a small override of these (see docs/recipes.md). After loading, every default is
// filled in and every path is absolute, so the encoded `Recipe` is the resolved recipe that
// checkpoints store.
//
// Adding a stage type: a struct conforming to `StageSettings`, a case in `Stage` and in
// `StageType`, and its reader in RecipeDecoding.swift. Nothing else switches over stage types.

import NN
import TextData
import Training

/// A whole recipe: global settings and the ordered stages.
package struct Recipe: Codable, Sendable, Equatable {
    /// Required. `[A-Za-z0-9_.-]+`; names the default run directory.
    package var name: String
    /// Where every stage writes. Default `Checkpoints/<name>`; a relative path resolves against
    /// the recipe file's folder. Absolute after loading.
    package var runDir: String
    /// Seed for everything random (initialisation, data order, sampling), >= 0. Default 0.
    package var seed: Int = 0
    /// Compute threads, >= 1. Default nil: all cores (or DISTILL_THREADS). Not part of any
    /// fingerprint: changing it never re-runs a finished stage.
    package var threads: Int?
    /// Required, non-empty; run in order.
    package var stages: [Stage]

    package init(name: String, runDir: String, seed: Int = 0, threads: Int? = nil, stages: [Stage]) {
        self.name = name
        self.runDir = runDir
        self.seed = seed
        self.threads = threads
        self.stages = stages
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, runDir = "run_dir", seed, threads, stages
    }

    /// The stage called `name`.
    package func stage(named name: String) -> Stage? { stages.first { $0.name == name } }
}

/// Stage types this build understands.
package enum StageType: String, Codable, Sendable, CaseIterable, Hashable {
    case pretrain, eval, generate, export, merge, sft, dpo, kd, sample, sweep

    /// Types documented for later releases: a recipe using one gets a clear "not yet" message
    /// instead of an "unknown type" one.
    package static let planned: [String] = []
}

/// What every stage's settings provide to validation, fingerprints and the runner.
package protocol StageSettings: Codable, Sendable, Equatable {
    static var type: StageType { get }
    /// Unique within the recipe. Default: the type, then `<type>_2`, `<type>_3`, ...
    var name: String { get set }
    /// The stage's main artifact, relative to the run directory in a recipe file and absolute
    /// after loading.
    var output: String { get set }
    /// Checkpoints this stage reads (stage references or files).
    var checkpointInputs: [CheckpointSource] { get }
    /// Files outside the run this stage reads (data, tokenizer); hashed into the fingerprint.
    var inputFiles: [String] { get }
}

extension StageSettings {
    /// Names of the earlier stages this stage reads.
    package var stageReferences: [String] {
        checkpointInputs.compactMap { if case .stage(let n) = $0 { return n } else { return nil } }
    }

    /// Checkpoint files outside the run plus the data and tokenizer files.
    package var allInputFiles: [String] {
        checkpointInputs.compactMap { if case .file(let p) = $0 { return p } else { return nil } } + inputFiles
    }
}

/// One stage of a recipe. Encoded as its settings object plus a `"type"` key.
package enum Stage: Sendable, Equatable {
    case pretrain(PretrainStage)
    case eval(EvalStage)
    case generate(GenerateStage)
    case export(ExportStage)
    case merge(MergeStage)
    case sample(SampleStage)
    case sft(SFTStage)
    case dpo(DPOStage)
    case kd(KDStage)
    case sweep(SweepStage)

    package var settings: any StageSettings {
        switch self {
        case .pretrain(let s): return s
        case .eval(let s): return s
        case .generate(let s): return s
        case .export(let s): return s
        case .merge(let s): return s
        case .sample(let s): return s
        case .sft(let s): return s
        case .dpo(let s): return s
        case .kd(let s): return s
        case .sweep(let s): return s
        }
    }

    package var type: StageType { Swift.type(of: settings).type }
    package var name: String { settings.name }
    package var output: String { settings.output }

    /// Whether the stage's output is a checkpoint later stages can reference with `@name`.
    package var producesCheckpoint: Bool {
        switch self {
        case .pretrain, .merge, .sft, .dpo, .kd: return true
        case .eval, .generate, .export, .sample, .sweep: return false
        }
    }
}

extension Stage: Codable {
    private enum TypeKey: String, CodingKey { case type }

    package init(from decoder: Decoder) throws {
        let type = try decoder.container(keyedBy: TypeKey.self).decode(StageType.self, forKey: .type)
        switch type {
        case .pretrain: self = .pretrain(try PretrainStage(from: decoder))
        case .eval: self = .eval(try EvalStage(from: decoder))
        case .generate: self = .generate(try GenerateStage(from: decoder))
        case .export: self = .export(try ExportStage(from: decoder))
        case .merge: self = .merge(try MergeStage(from: decoder))
        case .sample: self = .sample(try SampleStage(from: decoder))
        case .sft: self = .sft(try SFTStage(from: decoder))
        case .dpo: self = .dpo(try DPOStage(from: decoder))
        case .kd: self = .kd(try KDStage(from: decoder))
        case .sweep: self = .sweep(try SweepStage(from: decoder))
        }
    }

    package func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: TypeKey.self)
        try c.encode(type, forKey: .type)
        try settings.encode(to: encoder)
    }
}

/// A checkpoint a stage reads: `"@name"` (the output of an earlier stage of this recipe) or a
/// file path (relative to the recipe file's folder; absolute after loading).
package enum CheckpointSource: Codable, Sendable, Equatable, Hashable, CustomStringConvertible {
    case stage(String)
    case file(String)

    package init(_ text: String) {
        self = text.hasPrefix("@") ? .stage(String(text.dropFirst())) : .file(text)
    }

    package var description: String {
        switch self {
        case .stage(let name): return "@" + name
        case .file(let path): return path
        }
    }

    package init(from decoder: Decoder) throws { self.init(try decoder.singleValueContainer().decode(String.self)) }

    package func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

// MARK: - Shared settings

// MARK: - pretrain

/// Continue from existing weights instead of a fresh initialisation. The checkpoint's model and
/// tokenizer are used, so `model` and `tokenizer` must be absent.
package struct InitSettings: Codable, Sendable, Equatable {
    /// Required. `"@stage"` or a checkpoint file.
    package var checkpoint: CheckpointSource

    enum CodingKeys: String, CodingKey, CaseIterable { case checkpoint }
}

/// Train a model from scratch (or from `init`) on text.
package struct PretrainStage: StageSettings {
    package static let type = StageType.pretrain
    package var name = "pretrain"
    /// Required: `train` files or inline `text`.
    package var data = DataSettings()
    /// Default: train a tokenizer with the defaults. nil when `init` is set.
    package var tokenizer: TokenizerSettings? = TokenizerSettings()
    /// Default: `ModelSettings()`. nil when `init` is set.
    package var model: ModelSettings? = ModelSettings()
    /// Default nil: fresh initialisation from `seed`.
    package var initFrom: InitSettings?
    /// Required (`steps` is required inside).
    package var training = TrainingSettings.pretraining(steps: 1)
    /// Default `base.h5`, in the run directory.
    package var output = "base.h5"

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, data, tokenizer, model, initFrom = "init", training, output
    }

    package var checkpointInputs: [CheckpointSource] { initFrom.map { [$0.checkpoint] } ?? [] }
    package var inputFiles: [String] { data.train + (tokenizer?.path.map { [$0] } ?? []) }
}

// MARK: - eval

/// Which part of the data an evaluation reads.
package enum EvalSplit: String, Codable, Sendable, CaseIterable {
    /// The held-out `validation_fraction`, split exactly as pretrain splits it.
    case validation
    /// The rest.
    case train
    /// Everything.
    case all
}

/// Loss and perplexity of a checkpoint on text.
package struct EvalStage: StageSettings {
    package static let type = StageType.eval
    package var name = "eval"
    /// Default: the latest earlier stage that produces a checkpoint.
    package var checkpoint = CheckpointSource.stage("pretrain")
    /// Default: the referenced pretrain stage's data (required otherwise).
    package var data = DataSettings()
    /// Default `validation`.
    package var split: EvalSplit = .validation
    /// Batches to evaluate, >= 1. Default 16.
    package var batches: Int = 16
    /// Default nil: the checkpoint's training seq_len.
    package var seqLen: Int?
    /// Default `eval.json`.
    package var output = "eval.json"

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, checkpoint, data, split, batches, seqLen = "seq_len", output
    }

    package var checkpointInputs: [CheckpointSource] { [checkpoint] }
    package var inputFiles: [String] { data.train }
}

// MARK: - generate

/// Sample continuations of prompts.
package struct GenerateStage: StageSettings {
    package static let type = StageType.generate
    package var name = "generate"
    /// Default: the latest earlier stage that produces a checkpoint.
    package var checkpoint = CheckpointSource.stage("pretrain")
    /// Required, non-empty.
    package var prompts: [String] = []
    /// New tokens per prompt, >= 1. Default 64.
    package var maxTokens: Int = 64
    /// >= 0; 0 is greedy. Default 0.8.
    package var temperature: Double = 0.8
    /// >= 0; 0 turns top-k off. Default 40.
    package var topK: Int = 40
    /// Nucleus mass, in (0, 1]; 1 turns it off. Default 1.0.
    package var topP: Double = 1.0
    /// >= 0. Default: the recipe's seed.
    package var seed: Int = 0
    /// Stop strings. Default none.
    package var stop: [String] = []
    /// JSONL, one `{"prompt", "completion"}` per prompt. Default `samples.jsonl`.
    package var output = "samples.jsonl"

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, checkpoint, prompts, maxTokens = "max_tokens", temperature, topK = "top_k", topP = "top_p"
        case seed, stop, output
    }

    package var checkpointInputs: [CheckpointSource] { [checkpoint] }
    package var inputFiles: [String] { [] }
}

// MARK: - export

/// Formats a checkpoint can be exported to.
package enum ExportFormat: String, Codable, Sendable, CaseIterable {
    /// A Hugging Face model folder: config.json, model.safetensors, tokenizer files (an
    /// adapter is merged into its base).
    case hf
    /// A PEFT LoRA folder (adapter_config.json, adapter_model.safetensors) of an adapter.
    case peft
    /// A llama.cpp GGUF file (F32): the base model with its tokenizer (an adapter is merged).
    case gguf

    /// Formats documented for later releases.
    package static let planned: [String] = []
}

/// Write a checkpoint in a format other tools load.
package struct ExportStage: StageSettings {
    package static let type = StageType.export
    package var name = "export"
    /// Default: the latest earlier stage that produces a checkpoint.
    package var checkpoint = CheckpointSource.stage("pretrain")
    /// Default `hf`.
    package var format: ExportFormat = .hf
    /// A folder in the run directory. Default `hf`.
    package var output = "hf"

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable { case name, checkpoint, format, output }

    package var checkpointInputs: [CheckpointSource] { [checkpoint] }
    package var inputFiles: [String] { [] }
}

/// Fold a LoRA adapter into its base: a whole-model checkpoint later stages can read.
package struct MergeStage: StageSettings {
    package static let type = StageType.merge
    package var name = "merge"
    /// The adapter. Default: the latest earlier stage that produces a checkpoint.
    package var checkpoint = CheckpointSource.stage("sft")
    /// The adapter's base, when not the one it records.
    package var base: CheckpointSource?
    /// Default `merged.h5`.
    package var output = "merged.h5"

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable { case name, checkpoint, base, output }

    package var checkpointInputs: [CheckpointSource] { [checkpoint] + (base.map { [$0] } ?? []) }
    package var inputFiles: [String] { [] }
}
