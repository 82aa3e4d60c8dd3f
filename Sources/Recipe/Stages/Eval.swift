// The `eval` stage: loss and perplexity of a checkpoint on text.

import Foundation
import JSON
import TextData

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

extension EvalStage {
    package static func read(_ v: JSONValue, path: String, name: String, seed: Int, log: IssueLog) -> EvalStage {
        let r = ObjectReader<EvalStage.CodingKeys>(
            v, path: path, log: log, alsoAllowed: ["type"], nested: [("data", keys(DataSettings.CodingKeys.self))])
        var s = EvalStage()
        s.name = name
        readCommon(r, name: .name, output: .output, into: &s)
        if let c = r.string(.checkpoint) { s.checkpoint = CheckpointSource(c) }
        if let d = r.object(.data, { readData($0, path: $1, requireSource: true, log: log) }) { s.data = d }
        r.read(.split, into: &s.split)
        r.read(.batches, into: &s.batches, .atLeast(1))
        r.read(.seqLen, into: &s.seqLen, .atLeast(1))
        return s
    }

    package var stage: Stage { .eval(self) }
    package static let producesCheckpoint = false

    /// The checkpoint (default: the latest earlier one); the data, by default the data of the
    /// pretrain stage that made the checkpoint.
    package mutating func link(_ l: StageLinker) {
        let resolved = l.source(checkpoint, given: l.given.contains("checkpoint"), at: "checkpoint")
        checkpoint = resolved ?? checkpoint
        var pretrain: PretrainStage?
        if case .stage(let n)? = resolved, case .pretrain(let p)? = l.earlier.first(where: { $0.name == n }) {
            pretrain = p
        }
        if l.given.contains("data") {
            data.train = l.files(data.train, at: "data.train")
        } else if let pretrain {
            data = pretrain.data
        } else if resolved != nil {
            l.log.add(
                .missing(hint: "required unless checkpoint is a pretrain stage (whose data is then used)"),
                at: JSONPath.child(l.path, "data"))
        }
        if let seqLen, let model = pretrain?.model, seqLen > model.maxPositionEmbeddings {
            l.log.add(
                .outOfRange(
                    allowed: "<= max_position_embeddings of \"\(pretrain!.name)\" (\(model.maxPositionEmbeddings))",
                    got: String(seqLen)),
                at: JSONPath.child(l.path, "seq_len"))
        }
    }
}
