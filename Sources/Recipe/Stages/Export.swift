// The `export` stage: write a checkpoint in a format other tools load.

import JSON

/// Formats a checkpoint can be exported to.
package enum ExportFormat: String, Codable, Sendable, CaseIterable {
    /// A Hugging Face model folder: config.json, model.safetensors, tokenizer files (an
    /// adapter is merged into its base).
    case hf
    /// A PEFT LoRA folder (adapter_config.json, adapter_model.safetensors) of an adapter.
    case peft
    /// A llama.cpp GGUF file (F32): the base model with its tokenizer (an adapter is merged).
    case gguf
    /// A llama.cpp GGUF LoRA adapter (F32) of an adapter checkpoint, for its base (the original
    /// .gguf file when the adapter was trained on one).
    case ggufAdapter = "gguf-adapter"

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

extension ExportStage {
    package static func read(_ v: JSONValue, path: String, name: String, seed: Int, log: IssueLog) -> ExportStage {
        let r = ObjectReader<ExportStage.CodingKeys>(v, path: path, log: log, alsoAllowed: ["type"])
        var s = ExportStage()
        s.name = name
        readCommon(r, name: .name, output: .output, into: &s)
        if let c = r.string(.checkpoint) { s.checkpoint = CheckpointSource(c) }
        if let f = r.string(.format), ExportFormat(rawValue: f) == nil, ExportFormat.planned.contains(f) {
            let available = ExportFormat.allCases.map(\.rawValue).joined(separator: ", ")
            log.add(.rule("export format \"\(f)\" is not available in this version (available: \(available))"), at: r.path(.format))
        } else {
            r.read(.format, into: &s.format)
        }
        return s
    }

    package var stage: Stage { .export(self) }
    package static let producesCheckpoint = false

    package mutating func link(_ l: StageLinker) {
        checkpoint = l.source(checkpoint, given: l.given.contains("checkpoint"), at: "checkpoint") ?? checkpoint
    }
}
