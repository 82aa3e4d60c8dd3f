// The `pretrain` stage: train a model from scratch (or from `init`) on text.

import Foundation
import JSON
import NN
import TextData
import Training

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

extension PretrainStage {
    package static func read(_ v: JSONValue, path: String, name: String, seed: Int, log: IssueLog) -> PretrainStage {
        let r = ObjectReader<PretrainStage.CodingKeys>(
            v, path: path, log: log, alsoAllowed: ["type"],
            nested: [
                ("training", keys(TrainingSettings.CodingKeys.self)), ("model", keys(ModelSettings.CodingKeys.self)),
                ("data", keys(DataSettings.CodingKeys.self)), ("tokenizer", keys(TokenizerSettings.CodingKeys.self)),
            ])
        var s = PretrainStage()
        s.name = name
        readCommon(r, name: .name, output: .output, into: &s)
        if let data = r.object(.data, { readData($0, path: $1, requireSource: true, log: log) }) {
            s.data = data
        } else {
            r.missing(.data, hint: "give {\"train\": [files]} or {\"text\": \"...\"}")
        }
        s.initFrom =
            r.object(.initFrom) { v, p in
                let ir = ObjectReader<InitSettings.CodingKeys>(v, path: p, log: log)
                guard let text = ir.string(.checkpoint) else {
                    if !ir.has(.checkpoint) { ir.missing(.checkpoint, hint: "\"@stage\" or a checkpoint file") }
                    return nil
                }
                return InitSettings(checkpoint: CheckpointSource(text))
            } ?? nil
        let tokenizer = r.object(.tokenizer) { readTokenizer($0, path: $1, log: log) }
        let model = r.object(.model) { readModel($0, path: $1, log: log) }
        if r.has(.initFrom) {
            // The checkpoint fixes architecture and vocabulary; a second description could only disagree.
            for key in [PretrainStage.CodingKeys.model, .tokenizer] where r.has(key) {
                log.add(
                    .notAllowed(reason: "comes from the init checkpoint; remove \"\(key.rawValue)\" or \"init\""),
                    at: r.path(key), atKey: true)
            }
            s.model = nil
            s.tokenizer = nil
        } else {
            s.model = model ?? ModelSettings()
            s.tokenizer = tokenizer ?? TokenizerSettings()
        }
        if let training = r.object(.training, { readTraining($0, path: $1, log: log) }) {
            s.training = training
            if let model = s.model, training.seqLen > model.maxPositionEmbeddings {
                log.add(
                    .outOfRange(
                        allowed: "<= model.max_position_embeddings (\(model.maxPositionEmbeddings))",
                        got: String(training.seqLen)),
                    at: JSONPath.child(r.path(.training), "seq_len"))
            }
        } else {
            r.missing(.training, hint: "at least {\"steps\": N}")
        }
        return s
    }

    package var stage: Stage { .pretrain(self) }
    package static let producesCheckpoint = true

    package mutating func link(_ l: StageLinker) {
        data.train = l.files(data.train, at: "data.train")
        if let p = tokenizer?.path { tokenizer?.path = l.file(p, at: "tokenizer.path") }
        if let initFrom, let resolved = l.source(initFrom.checkpoint, given: true, at: "init.checkpoint") {
            self.initFrom?.checkpoint = resolved
        }
    }
}
