// The recipe as typed values. Every property's initialiser is its documented default; a recipe
// file is a small override of these (see docs/recipes.md). After loading, every default is
// filled in and every path is absolute, so the encoded `Recipe` is the resolved recipe that
// checkpoints store.
//
// Adding a stage type: a file in Stages/ with a struct conforming to `StageSettings` (its
// settings, reader and linking), a case in `Stage` and in `StageType`; its executor is one file
// in Sources/Pipeline/Stages (docs/architecture.md).

import JSON
import NN
import TextData

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
    case pretrain, eval, generate, export, merge, sft, dpo, kd, sample, sweep, route, cascade

    /// The settings type of stages of this type.
    package var settingsType: any StageSettings.Type {
        switch self {
        case .pretrain: PretrainStage.self
        case .eval: EvalStage.self
        case .generate: GenerateStage.self
        case .export: ExportStage.self
        case .merge: MergeStage.self
        case .sft: SFTStage.self
        case .dpo: DPOStage.self
        case .kd: KDStage.self
        case .sample: SampleStage.self
        case .sweep: SweepStage.self
        case .route: RouteStage.self
        case .cascade: CascadeStage.self
        }
    }

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
    /// Whether the output is a checkpoint later stages can read with `@name`.
    static var producesCheckpoint: Bool { get }
    /// The stage in its `Stage` case.
    var stage: Stage { get }
    /// Types of the earlier stages whose files this stage reads without naming them (the run's
    /// verdict table gathers every eval and sample stage's), so that a change to any of them runs
    /// it again. Default none.
    static var readsEarlierStages: [StageType] { get }

    /// Pass 1: reads the stage object at `path` on its own (keys, types, ranges, rules inside
    /// it), starting from the defaults with `name` and the recipe `seed`, logging every problem.
    static func read(_ v: JSONValue, path: String, name: String, seed: Int, log: IssueLog) -> Self
    /// Pass 2: resolves references to earlier stages and makes input paths absolute.
    mutating func link(_ l: StageLinker)
}

extension StageSettings {
    package static var readsEarlierStages: [StageType] { [] }

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
    case route(RouteStage)
    case cascade(CascadeStage)

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
        case .route(let s): return s
        case .cascade(let s): return s
        }
    }

    package var type: StageType { Swift.type(of: settings).type }
    package var name: String { settings.name }
    package var output: String { settings.output }

    /// Whether the stage's output is a checkpoint later stages can reference with `@name`.
    package var producesCheckpoint: Bool { Swift.type(of: settings).producesCheckpoint }
}

extension Stage: Codable {
    private enum TypeKey: String, CodingKey { case type }

    package init(from decoder: Decoder) throws {
        let type = try decoder.container(keyedBy: TypeKey.self).decode(StageType.self, forKey: .type)
        self = try type.settingsType.init(from: decoder).stage
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

    /// Whether this names an earlier stage's output.
    package var isStage: Bool { if case .stage = self { true } else { false } }

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

