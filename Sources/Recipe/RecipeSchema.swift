// The recipe as typed values. Every property's initialiser is its documented default; a recipe
// file is a small override of these (see docs/recipes.md). After loading, every default is
// filled in and every path is absolute, so the encoded `Recipe` is the resolved recipe that
// checkpoints store.
//
// Adding a stage type: a struct conforming to `StageSettings`, a case in `Stage` and in
// `StageType`, and its reader in RecipeDecoding.swift. Nothing else switches over stage types.

import NN

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

/// How text files are read.
package enum DataFormat: String, Codable, Sendable, CaseIterable {
    /// `.jsonl` files as JSONL, everything else as plain text.
    case auto
    /// Plain UTF-8 text (how documents are delimited is the data pipeline's contract).
    case text
    /// One JSON object per line; `text_field` holds the text.
    case jsonl
}

/// Training or evaluation text: files (`train`) or inline text (`text`), exactly one.
package struct DataSettings: Codable, Sendable, Equatable {
    /// Files, relative to the recipe file's folder (absolute after loading). A single string is
    /// accepted as a list of one.
    package var train: [String] = []
    /// Inline text instead of files (handy for tests and tiny examples).
    package var text: String?
    /// Default `auto`.
    package var format: DataFormat = .auto
    /// The JSONL field holding the text. Default `"text"`.
    package var textField: String = "text"
    /// Share of the data held out for validation, in [0, 0.5]. Default 0.05.
    package var validationFraction: Double = 0.05

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case train, text, format, textField = "text_field", validationFraction = "validation_fraction"
    }
}

// MARK: - pretrain

/// Byte-level BPE tokenizer styles (pre-tokenizer regex and byte mapping of that family).
package enum TokenizerStyle: String, Codable, Sendable, CaseIterable {
    case gpt2, llama3, qwen2
}

/// Training a tokenizer on the stage's data.
package struct TokenizerTraining: Codable, Sendable, Equatable {
    /// Vocabulary size including the 256 byte tokens and the special tokens. Default 512;
    /// at least 256 + the number of special tokens.
    package var vocabSize: Int = 512
    /// Default `["<|endoftext|>"]`; the first one ends documents.
    package var specialTokens: [String] = ["<|endoftext|>"]
    /// Default `gpt2`.
    package var style: TokenizerStyle = .gpt2

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case vocabSize = "vocab_size", specialTokens = "special_tokens", style
    }
}

/// Either an existing `tokenizer.json` (`path`) or one trained on the data (`train`).
/// Default: `{"train": {}}`.
package struct TokenizerSettings: Codable, Sendable, Equatable {
    /// A Hugging Face tokenizer.json; absolute after loading.
    package var path: String?
    /// Present when the tokenizer is trained.
    package var train: TokenizerTraining?

    package init(path: String? = nil, train: TokenizerTraining? = TokenizerTraining()) {
        self.path = path
        self.train = path == nil ? train : nil
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case path, train }
}

/// The architecture, with Hugging Face LlamaConfig key names. `vocab_size` is not here: it comes
/// from the tokenizer. The defaults make a ~1M-parameter model (plus embeddings).
package struct ModelSettings: Codable, Sendable, Equatable {
    /// Default 128.
    package var hiddenSize: Int = 128
    /// SwiGLU width. Default 384.
    package var intermediateSize: Int = 384
    /// Default 4.
    package var numHiddenLayers: Int = 4
    /// Default 4.
    package var numAttentionHeads: Int = 4
    /// Default: num_attention_heads (no grouping); must divide num_attention_heads.
    package var numKeyValueHeads: Int = 4
    /// Default: hidden_size / num_attention_heads; must be even (rotary embeddings).
    package var headDim: Int = 32
    /// Default 1e-5, > 0.
    package var rmsNormEps: Double = 1e-5
    /// Default 10000, > 0.
    package var ropeTheta: Double = 10000
    /// Default true.
    package var tieWordEmbeddings: Bool = true
    /// Longest sequence the model accepts. Default 2048.
    package var maxPositionEmbeddings: Int = 2048
    /// Std of the normal initialisation. Default 0.02, > 0.
    package var initializerRange: Double = 0.02
    /// Runs of each layer in a row with shared weights (MobileLLM-style block sharing), >= 1.
    /// Default 1 (no sharing). Not exportable to Hugging Face when above 1.
    package var layerRepeat: Int = 1

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads", headDim = "head_dim", rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta", tieWordEmbeddings = "tie_word_embeddings"
        case maxPositionEmbeddings = "max_position_embeddings", initializerRange = "initializer_range"
        case layerRepeat = "layer_repeat"
    }

    /// The full model configuration once the tokenizer fixes the vocabulary.
    package func llamaConfig(vocabSize: Int, bosTokenId: Int? = nil, eosTokenId: Int? = nil) -> LlamaConfig {
        LlamaConfig(
            vocabSize: vocabSize, hiddenSize: hiddenSize, intermediateSize: intermediateSize,
            numHiddenLayers: numHiddenLayers, numAttentionHeads: numAttentionHeads, numKeyValueHeads: numKeyValueHeads,
            headDim: headDim, rmsNormEps: rmsNormEps, ropeTheta: ropeTheta, tieWordEmbeddings: tieWordEmbeddings,
            maxPositionEmbeddings: maxPositionEmbeddings, initializerRange: initializerRange,
            bosTokenId: bosTokenId, eosTokenId: eosTokenId, layerRepeat: layerRepeat)
    }
}

/// Continue from existing weights instead of a fresh initialisation. The checkpoint's model and
/// tokenizer are used, so `model` and `tokenizer` must be absent.
package struct InitSettings: Codable, Sendable, Equatable {
    /// Required. `"@stage"` or a checkpoint file.
    package var checkpoint: CheckpointSource

    enum CodingKeys: String, CodingKey, CaseIterable { case checkpoint }
}

/// Learning-rate schedule after warmup.
package enum LRSchedule: String, Codable, Sendable, CaseIterable {
    /// Cosine decay from lr to lr * min_lr_ratio at the last step.
    case cosine
    /// Linear decay from lr to lr * min_lr_ratio.
    case linear
    /// lr throughout.
    case constant
}

/// Optimiser (AdamW) and loop settings.
package struct TrainingSettings: Codable, Sendable, Equatable {
    /// Required, >= 1. Optimiser steps.
    package var steps: Int
    /// Sequences per micro-batch, >= 1. Default 16.
    package var batchSize: Int = 16
    /// Tokens per sequence, >= 1 and <= max_position_embeddings. Default 128.
    package var seqLen: Int = 128
    /// Micro-batches per optimiser step, >= 1. Default 1.
    package var gradAccum: Int = 1
    /// Peak learning rate, > 0. Default 3e-3.
    package var lr: Double = 3e-3
    /// Final lr as a fraction of lr, in [0, 1]. Default 0.1.
    package var minLRRatio: Double = 0.1
    /// Linear warmup steps, >= 0 and < steps. Default 20 (capped at steps - 1 when steps is small).
    package var warmupSteps: Int = 20
    /// Default `cosine`.
    package var schedule: LRSchedule = .cosine
    /// Decoupled weight decay, >= 0. Default 0.1.
    package var weightDecay: Double = 0.1
    /// Parameters whose name contains one of these get no weight decay. Default ["norm", "embed"].
    package var noDecay: [String] = ["norm", "embed"]
    /// Adam beta1, in [0, 1). Default 0.9.
    package var beta1: Double = 0.9
    /// Adam beta2, in [0, 1). Default 0.95.
    package var beta2: Double = 0.95
    /// Adam epsilon, > 0. Default 1e-8.
    package var eps: Double = 1e-8
    /// Global gradient-norm clip, >= 0; 0 turns clipping off. Default 1.0.
    package var gradClip: Double = 1.0
    /// Validation every this many steps, >= 0; 0 = only at the end. Default 50.
    package var evalEvery: Int = 50
    /// Validation batches per evaluation, >= 1. Default 8.
    package var evalBatches: Int = 8
    /// Commit a checkpoint every this many steps, >= 0; 0 = only at the end. Default 100.
    package var checkpointEvery: Int = 100
    /// Log every this many steps, >= 1. Default 10.
    package var logEvery: Int = 10

    package init(steps: Int) { self.steps = steps }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case steps, batchSize = "batch_size", seqLen = "seq_len", gradAccum = "grad_accum", lr
        case minLRRatio = "min_lr_ratio", warmupSteps = "warmup_steps", schedule, weightDecay = "weight_decay"
        case noDecay = "no_decay", beta1, beta2, eps, gradClip = "grad_clip", evalEvery = "eval_every"
        case evalBatches = "eval_batches", checkpointEvery = "checkpoint_every", logEvery = "log_every"
    }
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
    package var training = TrainingSettings(steps: 1)
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
