// The `export` stage: write a checkpoint in a format other tools load.

import JSON
import Verify

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

/// What an arm of a task evaluation is ranked by: the greedy answers' accuracy, pass@k or
/// maj@k (k the evaluation's samples).
package enum ArmRanking: Sendable, Equatable, Hashable, CustomStringConvertible {
    case greedy
    case passAt(Int)
    case majority

    /// `greedy`, `pass@K` (K >= 1) or `maj@k`; nil otherwise.
    package init?(_ text: String) {
        if text == "greedy" {
            self = .greedy
        } else if text == "maj@k" {
            self = .majority
        } else if text.hasPrefix("pass@"), let k = Int(text.dropFirst(5)), k >= 1 {
            self = .passAt(k)
        } else {
            return nil
        }
    }

    package var description: String {
        switch self {
        case .greedy: "greedy"
        case .passAt(let k): "pass@\(k)"
        case .majority: "maj@k"
        }
    }
}

/// Which arm of an earlier task evaluation an export takes: the best by `metric` among
/// `arms` (docs/recipes.md, *export*).
package struct BestArmSelection: Codable, Sendable, Equatable {
    /// The eval stage (with `tasks`), by name.
    package var eval: String
    package var metric: ArmRanking = .greedy
    /// The candidates, by arm name, in order of preference on ties. Default (empty when read):
    /// the arms whose model is a stage of this recipe, in the evaluation's order.
    package var arms: [String] = []

    package init(eval: String, metric: ArmRanking = .greedy, arms: [String] = []) {
        self.eval = eval
        self.metric = metric
        self.arms = arms
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case eval, metric, arms }

    package init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let e = try c.decode(String.self, forKey: .eval)
        eval = e.hasPrefix("@") ? String(e.dropFirst()) : e
        let m = try c.decode(String.self, forKey: .metric)
        guard let metric = ArmRanking(m) else {
            throw DecodingError.dataCorruptedError(forKey: .metric, in: c, debugDescription: "unknown metric \(m)")
        }
        self.metric = metric
        arms = try c.decode([String].self, forKey: .arms)
    }

    package func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("@" + eval, forKey: .eval)
        try c.encode(metric.description, forKey: .metric)
        try c.encode(arms, forKey: .arms)
    }
}

/// Write a checkpoint in a format other tools load.
package struct ExportStage: StageSettings {
    package static let type = StageType.export
    package var name = "export"
    /// Default: the latest earlier stage that produces a checkpoint. Unused with `bestOf`.
    package var checkpoint = CheckpointSource.stage("pretrain")
    /// Instead of `checkpoint`: the model of the best arm of an earlier task evaluation.
    package var bestOf: BestArmSelection?
    /// Default `hf`.
    package var format: ExportFormat = .hf
    /// A folder in the run directory. Default `hf`.
    package var output = "hf"

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, checkpoint, bestOf = "best_of", format, output
    }

    /// With `bestOf`, the evaluation: its fingerprint covers every arm's model.
    package var checkpointInputs: [CheckpointSource] { bestOf.map { [.stage($0.eval)] } ?? [checkpoint] }
    package var inputFiles: [String] { [] }
}

extension ExportStage {
    package init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        bestOf = try c.decodeIfPresent(BestArmSelection.self, forKey: .bestOf)
        if bestOf == nil { checkpoint = try c.decode(CheckpointSource.self, forKey: .checkpoint) }
        format = try c.decode(ExportFormat.self, forKey: .format)
        output = try c.decode(String.self, forKey: .output)
    }

    /// `checkpoint` or `best_of`, whichever the stage reads (so a recipe without `best_of`
    /// keeps the resolved JSON, and fingerprint, it always had).
    package func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        if let bestOf { try c.encode(bestOf, forKey: .bestOf) } else { try c.encode(checkpoint, forKey: .checkpoint) }
        try c.encode(format, forKey: .format)
        try c.encode(output, forKey: .output)
    }
}

extension ExportStage {
    package static func read(_ v: JSONValue, path: String, name: String, seed: Int, log: IssueLog) -> ExportStage {
        let r = ObjectReader<ExportStage.CodingKeys>(
            v, path: path, log: log, alsoAllowed: ["type"], nested: [("best_of", keys(BestArmSelection.CodingKeys.self))])
        var s = ExportStage()
        s.name = name
        readCommon(r, name: .name, output: .output, into: &s)
        if let c = r.string(.checkpoint) { s.checkpoint = CheckpointSource(c) }
        if r.has(.checkpoint) && r.has(.bestOf) {
            log.add(.rule("give either \"checkpoint\" or \"best_of\", not both"), at: r.path)
        }
        s.bestOf = r.object(.bestOf) { v, p in readBestArm(v, path: p, log: log) } ?? nil
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
        if let best = bestOf {
            bestOf = linkBestArm(best, l)
        } else {
            checkpoint = l.source(checkpoint, given: l.given.contains("checkpoint"), at: "checkpoint") ?? checkpoint
        }
    }
}

/// `best_of`: `{"eval": "@stage", "metric"?, "arms"?}`.
private func readBestArm(_ v: JSONValue, path: String, log: IssueLog) -> BestArmSelection? {
    let r = ObjectReader<BestArmSelection.CodingKeys>(v, path: path, log: log)
    var s = BestArmSelection(eval: "")
    if let e = r.string(.eval) {
        if e.hasPrefix("@") && e.count > 1 {
            s.eval = String(e.dropFirst())
        } else {
            log.add(.rule("must be \"@stage\", an earlier eval stage with \"tasks\", got \"\(e)\""), at: r.path(.eval))
        }
    } else if !r.has(.eval) {
        r.missing(.eval, hint: "the task evaluation whose arms are compared, e.g. \"@validate\"")
    }
    if let m = r.string(.metric) {
        if let metric = ArmRanking(m) {
            s.metric = metric
        } else {
            log.add(.rule("must be \"greedy\", \"pass@K\" (K >= 1) or \"maj@k\", got \"\(m)\""), at: r.path(.metric))
        }
    }
    if let arms = r.strings(.arms) {
        if arms.isEmpty { log.add(.rule("must list at least one arm"), at: r.path(.arms)) }
        s.arms = arms
    }
    return s.eval.isEmpty ? nil : s
}

/// Checks `best` against the earlier stages: an eval stage with tasks, the metric one its
/// settings report, candidate arms it has (by default the arms whose model is a stage).
private func linkBestArm(_ best: BestArmSelection, _ l: StageLinker) -> BestArmSelection {
    var best = best
    let at = JSONPath.child(l.path, "best_of")
    guard let stage = l.earlier.first(where: { $0.name == best.eval }) else {
        l.log.add(.rule("\"@\(best.eval)\" does not name an earlier stage"), at: JSONPath.child(at, "eval"))
        return best
    }
    guard case .eval(let e) = stage, let t = e.taskEval else {
        l.log.add(
            .rule("stage \"\(best.eval)\" is not a task evaluation (an eval stage with \"tasks\")"),
            at: JSONPath.child(at, "eval"))
        return best
    }
    let k = t.sampling.samples
    switch best.metric {
    case .greedy: break
    case .majority where k == 0, .passAt(_) where k == 0:
        l.log.add(
            .rule("\(best.metric) needs samples; stage \"\(best.eval)\" runs greedy only (samples 0)"),
            at: JSONPath.child(at, "metric"))
    case .passAt(let p) where !TaskStatistics.passAtKs(k).contains(p):
        let ks = TaskStatistics.passAtKs(k).map { "pass@\($0)" }.joined(separator: ", ")
        l.log.add(.rule("stage \"\(best.eval)\" reports \(ks), not \(best.metric)"), at: JSONPath.child(at, "metric"))
    default: break
    }
    if best.arms.isEmpty {
        best.arms = t.arms.filter { CheckpointSource($0.model).isStage }.map(\.name)
        if best.arms.isEmpty {
            l.log.add(
                .rule("stage \"\(best.eval)\" has no arm whose model is a stage of this recipe; list the candidates in \"arms\""),
                at: at)
        }
    }
    for (i, name) in best.arms.enumerated() where !t.arms.contains(where: { $0.name == name }) {
        let names = t.arms.map(\.name).joined(separator: ", ")
        l.log.add(
            .rule("stage \"\(best.eval)\" has no arm \"\(name)\" (its arms: \(names))"),
            at: JSONPath.index(JSONPath.child(at, "arms"), i))
    }
    return best
}
