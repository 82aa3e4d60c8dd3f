// The `sample` stage's settings: a task set, a teacher, a verifier and how pairs are drawn.
// Read by `readSample` (SampleStageReading.swift), run by `SampleExecutor`.

import Teacher
import Verify

/// Which teacher a `sample` stage asks, with its settings. Written in a recipe as one object
/// with a `type` key: `{"type": "checkpoint", "checkpoint": "@pretrain", "samples": 8}`.
package enum TeacherSettings: Sendable, Equatable {
    case openai(OpenAITeacherConfig)
    case checkpoint(CheckpointTeacherConfig)
    case command(CommandTeacherConfig)

    package enum Kind: String, Sendable, CaseIterable {
        case openai, checkpoint, command
    }

    package var kind: Kind {
        switch self {
        case .openai: return .openai
        case .checkpoint: return .checkpoint
        case .command: return .command
        }
    }
}

extension TeacherSettings: Codable {
    private enum TypeKey: String, CodingKey { case type }

    package init(from decoder: Decoder) throws {
        let kind = try decoder.container(keyedBy: TypeKey.self).decode(String.self, forKey: .type)
        switch Kind(rawValue: kind) {
        case .openai: self = .openai(try OpenAITeacherConfig(from: decoder))
        case .checkpoint: self = .checkpoint(try CheckpointTeacherConfig(from: decoder))
        case .command: self = .command(try CommandTeacherConfig(from: decoder))
        case nil:
            throw DecodingError.dataCorruptedError(
                forKey: .type, in: try decoder.container(keyedBy: TypeKey.self),
                debugDescription: "unknown teacher type \(kind)")
        }
    }

    package func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: TypeKey.self)
        try c.encode(kind.rawValue, forKey: .type)
        switch self {
        case .openai(let t): try t.encode(to: encoder)
        case .checkpoint(let t): try t.encode(to: encoder)
        case .command(let t): try t.encode(to: encoder)
        }
    }
}

/// Sample a teacher on a task set, verify every sample, and write samples.jsonl, sft.jsonl,
/// pairs.jsonl and stats.json into the stage's output folder.
package struct SampleStage: StageSettings {
    package static let type = StageType.sample
    package var name = "sample"
    /// Required: the task set (JSONL); absolute after loading.
    package var tasks = ""
    /// Required.
    package var teacher = TeacherSettings.checkpoint(CheckpointTeacherConfig(checkpoint: ""))
    /// Default: `auto` (per task by its field).
    package var verifier = VerifierConfig()
    /// Default: all combinations, at most 4 per prompt, seeded with the recipe seed.
    package var pairs = PairingConfig()
    /// The call cache (SQLite). Default `teacher-cache.sqlite` in the run directory, shared by
    /// the run's sample stages; a relative path resolves against the run directory.
    package var cache = "teacher-cache.sqlite"
    /// A folder in the run directory. Default `sample`.
    package var output = "sample"

    package init() {}

    package enum CodingKeys: String, CodingKey, CaseIterable {
        case name, tasks, teacher, verifier, pairs, cache, output
    }

    package var checkpointInputs: [CheckpointSource] {
        if case .checkpoint(let t) = teacher, !t.checkpoint.isEmpty { return [CheckpointSource(t.checkpoint)] }
        return []
    }

    package var inputFiles: [String] { [tasks] }

    /// The files the stage writes inside `output`.
    package static let files = ["samples.jsonl", "sft.jsonl", "pairs.jsonl", "stats.json"]
}
