// The `generate` stage: sample continuations of prompts.

import JSON

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

extension GenerateStage {
    package static func read(_ v: JSONValue, path: String, name: String, seed: Int, log: IssueLog) -> GenerateStage {
        let r = ObjectReader<GenerateStage.CodingKeys>(v, path: path, log: log, alsoAllowed: ["type"])
        var s = GenerateStage()
        s.name = name
        s.seed = seed
        readCommon(r, name: .name, output: .output, into: &s)
        if let c = r.string(.checkpoint) { s.checkpoint = CheckpointSource(c) }
        if let prompts = r.strings(.prompts, acceptSingle: true) {
            if prompts.isEmpty { log.add(.rule("must list at least one prompt"), at: r.path(.prompts)) }
            s.prompts = prompts
        } else if !r.has(.prompts) {
            r.missing(.prompts, hint: "e.g. [\"Once upon a time\"]")
        }
        r.read(.maxTokens, into: &s.maxTokens, .atLeast(1))
        r.read(.temperature, into: &s.temperature, .atLeast(0))
        r.read(.topK, into: &s.topK, .atLeast(0))
        r.read(.topP, into: &s.topP, .leftOpen(0, 1))
        r.read(.seed, into: &s.seed, .atLeast(0))
        if let stop = r.strings(.stop, acceptSingle: true) { s.stop = stop }
        return s
    }

    package var stage: Stage { .generate(self) }
    package static let producesCheckpoint = false

    package mutating func link(_ l: StageLinker) {
        checkpoint = l.source(checkpoint, given: l.given.contains("checkpoint"), at: "checkpoint") ?? checkpoint
    }
}
