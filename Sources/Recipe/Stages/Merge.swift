// The `merge` stage: fold a LoRA adapter into its base.

import JSON

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

extension MergeStage {
    package static func read(_ v: JSONValue, path: String, name: String, seed: Int, log: IssueLog) -> MergeStage {
        let r = ObjectReader<MergeStage.CodingKeys>(v, path: path, log: log, alsoAllowed: ["type"])
        var s = MergeStage()
        s.name = name
        readCommon(r, name: .name, output: .output, into: &s)
        if let c = r.string(.checkpoint) { s.checkpoint = CheckpointSource(c) }
        if let b = r.string(.base) { s.base = CheckpointSource(b) }
        return s
    }

    package var stage: Stage { .merge(self) }
    package static let producesCheckpoint = true

    package mutating func link(_ l: StageLinker) {
        checkpoint = l.source(checkpoint, given: l.given.contains("checkpoint"), at: "checkpoint") ?? checkpoint
        if let base { self.base = l.source(base, given: true, at: "base") ?? base }
    }
}
