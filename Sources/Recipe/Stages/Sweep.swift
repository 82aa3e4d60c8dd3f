// The `sweep` stage: train one small model per configuration and seed from one base on one
// corpus, each in its own folder, and collect one result row per finished trial
// (docs/sweep.md). Settings, reader and linking; the sweeper itself is the Sweep module.

import Foundation
import JSON
import NN
import Teacher
import TextData
import Training
import Verify

/// Trains one small model per configuration and seed and collects the results.
package struct SweepStage: StageSettings {
    package static let type = StageType.sweep
    package var name = "sweep"
    /// Required, as in pretrain; every trial reads exactly these tokens in the same order.
    package var data = DataSettings()
    /// Trained once for all trials (or a file). Default `{"train": {}}`.
    package var tokenizer = TokenizerSettings()
    /// The base architecture: model keys as written (so derived defaults such as head_dim
    /// are derived again per trial), plus `mlp_ratio`.
    package var model: [String: SweepValue] = [:]
    /// Required (`steps`, unless a training budget gives the steps).
    package var training = TrainingSettings.pretraining(steps: 1)
    /// The grid: every combination of these values (an empty list: the base alone).
    package var axes: [SweepAxis] = []
    /// Explicit configurations (partial model objects); the grid is applied to each. Default: one,
    /// the base.
    package var configs: [[String: SweepValue]] = []
    package var budget = SweepBudget()
    /// Default `grid`.
    package var strategy: SweepStrategy = .grid
    /// random: configurations drawn. Default 8.
    package var samples: Int = 8
    /// halving: rounds, >= 1. Default 3.
    package var rungs: Int = 3
    /// halving: keep 1/eta of the configurations each round and train them eta times longer. Default 2.
    package var eta: Int = 2
    /// Seeds per configuration (initialisation and data order). Default: the recipe seed.
    package var seeds: [Int] = [0]
    package var measure = SweepMeasure()
    /// A folder in the run directory. Default `sweep`.
    package var output = "sweep"

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, data, tokenizer, model, training, axes, configs, budget, strategy, samples, rungs, eta, seeds
        case measure, output
    }

    package var checkpointInputs: [CheckpointSource] { [] }
    package var inputFiles: [String] {
        data.train + (tokenizer.path.map { [$0] } ?? []) + (measure.tasks.map { [$0] } ?? [])
    }

    /// Keys a configuration may set: the model keys and `mlp_ratio` (intermediate_size =
    /// ratio x hidden_size, rounded to a multiple of 8).
    package static let modelKeys = ModelSettings.CodingKeys.allCases.map(\.rawValue) + ["mlp_ratio"]
    static let intKeys: Set<String> = [
        "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
        "head_dim", "max_position_embeddings", "layer_repeat",
    ]
    static let boolKeys: Set<String> = ["tie_word_embeddings"]
}

extension SweepStage {
/// The `sweep` stage (pass 1).
        package static func read(_ v: JSONValue, path: String, name: String, seed: Int, log: IssueLog) -> SweepStage {
        let r = ObjectReader<SweepStage.CodingKeys>(v, path: path, log: log, alsoAllowed: ["type"])
        var s = SweepStage()
        s.name = name
        s.seeds = [seed]
        if let n = r.string(.name) { s.name = n }
        if let out = r.string(.output) {
            if out.isEmpty || out.hasPrefix("/") || out.hasPrefix("~") || out.split(separator: "/").contains("..") {
                log.add(
                    .rule("must be a relative path inside the run directory, got \(JSONValue.string(out).canonical)"),
                    at: r.path(.output))
            } else {
                s.output = out
            }
        }
        if let data = r.object(.data, { readData($0, path: $1, requireSource: true, log: log) }) {
            s.data = data
        } else {
            r.missing(.data, hint: "give {\"train\": [files]} or {\"text\": \"...\"}")
        }
        if let t = r.object(.tokenizer, { readTokenizer($0, path: $1, log: log) }) { s.tokenizer = t }
        if let m = r.object(.model, { readModelValues($0, path: $1, log: log) }) { s.model = m }
        let budget = r.object(.budget) { readBudget($0, path: $1, log: log) } ?? SweepBudget()
        s.budget = budget
        let hasTrainingBudget = budget.tokens != nil || budget.flops != nil || budget.seconds != nil
        if let tv = r.value(.training) {
            var trainingValue = tv
            // With a training budget the steps come from it; a placeholder keeps `steps` optional.
            if hasTrainingBudget, case .object(var o) = tv, o["steps"] == nil {
                o.entries.append((key: "steps", value: .int(1_000_000)))
                trainingValue = .object(o)
            }
            s.training = readTraining(trainingValue, path: r.path(.training), log: log)
        } else if hasTrainingBudget {
            s.training = TrainingSettings.pretraining(steps: 1_000_000)
        } else {
            r.missing(.training, hint: "at least {\"steps\": N}, or a training budget (budget.tokens, flops or seconds)")
        }
        if let axes = r.value(.axes) {
            if case .object(let o) = axes {
                for (key, values) in o.entries {
                    let p = JSONPath.child(r.path(.axes), key)
                    let list: [JSONValue]
                    if case .array(let items) = values { list = items } else { list = [values] }
                    if list.isEmpty { log.add(.rule("must list at least one value"), at: p) }
                    var parsed: [SweepValue] = []
                    if key.hasPrefix("training.") {
                        let tkey = String(key.dropFirst("training.".count))
                        let accepted = TrainingSettings.CodingKeys.allCases.map(\.rawValue)
                        guard accepted.contains(tkey) else {
                            let hint = suggestion(for: tkey, among: accepted).map { "training." + $0 }
                            log.add(.unknownKey(suggestion: hint, accepted: accepted.map { "training." + $0 }), at: p, atKey: true)
                            continue
                        }
                        for (i, item) in list.enumerated() {
                            guard let value = SweepValue(item) else {
                                log.add(.wrongType(expected: "a number, boolean or string", got: item.quoted), at: JSONPath.index(p, i))
                                continue
                            }
                            parsed.append(value)
                        }
                    } else if key == "vocab_size" {
                        log.add(.notAllowed(reason: "vocab_size comes from the tokenizer; sweep tokenizer.train.vocab_size in separate sweeps"), at: p, atKey: true)
                        continue
                    } else if !SweepStage.modelKeys.contains(key) {
                        let accepted = SweepStage.modelKeys + ["training.<key>"]
                        log.add(.unknownKey(suggestion: suggestion(for: key, among: SweepStage.modelKeys), accepted: accepted), at: p, atKey: true)
                        continue
                    } else {
                        for (i, item) in list.enumerated() {
                            if let value = checkModelValue(key, item, at: JSONPath.index(p, i), log: log) { parsed.append(value) }
                        }
                    }
                    s.axes.append(SweepAxis(key: key, values: parsed))
                }
            } else {
                r.wrongType(.axes, "an object of key: [values]", axes)
            }
        }
        if let configs = r.value(.configs) {
            if case .array(let items) = configs {
                s.configs = items.enumerated().map { readModelValues($1, path: JSONPath.index(r.path(.configs), $0), log: log) }
            } else {
                r.wrongType(.configs, "an array of model objects", configs)
            }
        }
        r.read(.strategy, into: &s.strategy)
        r.read(.samples, into: &s.samples, .atLeast(1))
        r.read(.rungs, into: &s.rungs, .atLeast(1))
        r.read(.eta, into: &s.eta, .atLeast(2))
        if let seeds = r.value(.seeds) {
            switch seeds {
            case .array(let items):
                var list: [Int] = []
                for (i, item) in items.enumerated() {
                    if let x = ObjectReader<SweepStage.CodingKeys>.integer(item), x >= 0 {
                        list.append(x)
                    } else {
                        log.add(.wrongType(expected: "an integer >= 0", got: item.quoted), at: JSONPath.index(r.path(.seeds), i))
                    }
                }
                if items.isEmpty { log.add(.rule("must list at least one seed"), at: r.path(.seeds)) }
                if Set(list).count != list.count { log.add(.rule("seeds must be distinct"), at: r.path(.seeds)) }
                if !list.isEmpty { s.seeds = list }
            default:
                if let n = r.int(.seeds, .atLeast(1)) { s.seeds = (0..<n).map { seed + $0 } }
            }
        }
        if let m = r.object(.measure, { readMeasure($0, path: $1, log: log) }) { s.measure = m }
        return s
    }

    package var stage: Stage { .sweep(self) }
    package static let producesCheckpoint = false

    package mutating func link(_ l: StageLinker) {
        data.train = l.files(data.train, at: "data.train")
        if let p = tokenizer.path { tokenizer.path = l.file(p, at: "tokenizer.path") }
        if let p = measure.tasks { measure.tasks = l.file(p, at: "measure.tasks") }
    }
}

/// One searched setting and the values it takes, in the order written.
package struct SweepAxis: Codable, Sendable, Equatable {
    /// A model key (`num_hidden_layers`, `layer_repeat`, ...), `mlp_ratio`, or `training.<key>`.
    package var key: String
    package var values: [SweepValue]

    package init(key: String, values: [SweepValue]) {
        self.key = key
        self.values = values
    }
}

/// Which parameters a parameter budget counts.
package enum ParameterCountKind: String, Codable, Sendable, CaseIterable {
    /// Attention, MLP and norm weights (the usual scaling-law N).
    case nonEmbedding = "non_embedding"
    /// Everything, the embedding (and an untied head) included.
    case total
}

/// The size the sweeper solves for to meet a parameter budget.
package enum SolvedSize: String, Codable, Sendable, CaseIterable {
    case intermediateSize = "intermediate_size"
    case hiddenSize = "hidden_size"
}

/// Budgets: a parameter target (the shape), and at most one training budget per trial.
package struct SweepBudget: Codable, Sendable, Equatable {
    /// Target parameter count; nil: none (every size as given).
    package var parameters: Int?
    /// Default `non_embedding`.
    package var count: ParameterCountKind = .nonEmbedding
    /// Accepted relative distance from `parameters`, in (0, 1]. Default 0.1.
    package var tolerance: Double = 0.1
    /// Default `intermediate_size` (or `hidden_size`, keeping `mlp_ratio` when given).
    package var solve: SolvedSize = .intermediateSize
    /// The solved size is a multiple of this, >= 1. Default 8 (for `hidden_size`, also a
    /// multiple of 2 x num_attention_heads unless head_dim is given).
    package var multiple: Int = 8
    /// Training tokens per trial (steps = tokens / (batch_size x seq_len x grad_accum)).
    package var tokens: Int?
    /// Training FLOPs per trial (tokens = flops / training FLOPs per token of that shape).
    package var flops: Double?
    /// Wall-clock seconds per trial: steps from a short timing of that shape on this
    /// machine, fixed at the trial's first start (kept on resume).
    package var seconds: Double?

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case parameters, count, tolerance, solve, multiple, tokens, flops, seconds
    }
}

/// How configurations are picked.
package enum SweepStrategy: String, Codable, Sendable, CaseIterable {
    /// Every combination.
    case grid
    /// `samples` combinations drawn without replacement with the recipe seed.
    case random
    /// Successive halving: every configuration trains briefly, the best 1/eta go on
    /// with eta times the steps, for `rungs` rounds (the last one at the full budget).
    case halving
}

/// Speed and quality measurements after training.
package struct SweepMeasure: Codable, Sendable, Equatable {
    /// Prompt tokens for the prefill timing (batch 1). Default 64, >= 1.
    package var prefillTokens: Int = 64
    /// Tokens decoded one at a time through the KV cache. Default 32, >= 1.
    package var decodeTokens: Int = 32
    /// Timings repeated, best kept. Default 3, >= 1.
    package var repeats: Int = 3
    /// Optional task file (`distill verify` format); the score is the share of tasks whose
    /// greedy completion the verifier accepts.
    package var tasks: String?
    /// Default: chosen per task by its fields (`auto`).
    package var verifier: VerifierConfig?
    /// New tokens per task completion. Default 32.
    package var taskMaxTokens: Int = 32
    /// Time prefill and decode on one core (serial kernels). Default true: batch-1 inference of
    /// small models gains little from a fork/join per op, which also waits for every core when
    /// other jobs share the machine; false uses the run's threads.
    package var serial: Bool = true

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case prefillTokens = "prefill_tokens", decodeTokens = "decode_tokens", repeats, tasks, verifier
        case taskMaxTokens = "task_max_tokens", serial
    }

    package init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        prefillTokens = try c.decode(Int.self, forKey: .prefillTokens)
        decodeTokens = try c.decode(Int.self, forKey: .decodeTokens)
        repeats = try c.decode(Int.self, forKey: .repeats)
        tasks = try c.decodeIfPresent(String.self, forKey: .tasks)
        verifier = try c.decodeIfPresent(VerifierConfig.self, forKey: .verifier)
        taskMaxTokens = try c.decode(Int.self, forKey: .taskMaxTokens)
        serial = try c.decodeIfPresent(Bool.self, forKey: .serial) ?? true
    }
}

// MARK: - Reading

/// Checks one configuration value's type (ranges and rules between keys are checked per
/// trial, where a bad combination is listed and skipped instead of failing the recipe).
func checkModelValue(_ key: String, _ v: JSONValue, at path: String, log: IssueLog) -> SweepValue? {
    guard let value = SweepValue(v) else {
        log.add(.wrongType(expected: "a number, boolean or string", got: v.quoted), at: path)
        return nil
    }
    if SweepStage.intKeys.contains(key), case .int = value { return value }
    if SweepStage.intKeys.contains(key) {
        log.add(.wrongType(expected: "an integer", got: v.quoted), at: path)
        return nil
    }
    if SweepStage.boolKeys.contains(key) {
        guard case .bool = value else {
            log.add(.wrongType(expected: "true or false", got: v.quoted), at: path)
            return nil
        }
        return value
    }
    guard let x = value.number else {
        log.add(.wrongType(expected: "a number", got: v.quoted), at: path)
        return nil
    }
    if !(x > 0) { log.add(.outOfRange(allowed: "> 0", got: v.canonical), at: path) }
    return value
}

/// A partial model object (`model`, or one of `configs`).
func readModelValues(_ v: JSONValue, path: String, log: IssueLog) -> [String: SweepValue] {
    guard case .object(let o) = v else {
        log.add(.wrongType(expected: "an object of model keys", got: v.quoted), at: path)
        return [:]
    }
    var out: [String: SweepValue] = [:]
    for (key, value) in o.entries {
        let p = JSONPath.child(path, key)
        if case .null = value { continue }
        if key == "vocab_size" {
            log.add(.notAllowed(reason: "vocab_size comes from the tokenizer; remove it"), at: p, atKey: true)
        } else if !SweepStage.modelKeys.contains(key) {
            log.add(
                .unknownKey(suggestion: suggestion(for: key, among: SweepStage.modelKeys), accepted: SweepStage.modelKeys),
                at: p, atKey: true)
        } else if let s = checkModelValue(key, value, at: p, log: log) {
            out[key] = s
        }
    }
    return out
}

func readBudget(_ v: JSONValue, path: String, log: IssueLog) -> SweepBudget {
    let r = ObjectReader<SweepBudget.CodingKeys>(v, path: path, log: log)
    var b = SweepBudget()
    r.read(.parameters, into: &b.parameters, .atLeast(1))
    r.read(.count, into: &b.count)
    r.read(.tolerance, into: &b.tolerance, .leftOpen(0, 1))
    r.read(.solve, into: &b.solve)
    r.read(.multiple, into: &b.multiple, .atLeast(1))
    r.read(.tokens, into: &b.tokens, .atLeast(1))
    if r.has(.flops) {
        var f = 0.0
        r.read(.flops, into: &f, .positive)
        if f > 0 { b.flops = f }
    }
    if r.has(.seconds) {
        var x = 0.0
        r.read(.seconds, into: &x, .positive)
        if x > 0 { b.seconds = x }
    }
    let given = [SweepBudget.CodingKeys.tokens, .flops, .seconds].filter { r.has($0) }
    if given.count > 1 {
        log.add(.rule("give at most one training budget: " + given.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")), at: path)
    }
    if (r.has(.solve) || r.has(.tolerance) || r.has(.count)) && !r.has(.parameters) {
        log.add(.missing(hint: "solve, tolerance and count apply to a parameter budget; give \"parameters\""), at: r.path(.parameters))
    }
    return b
}

func readMeasure(_ v: JSONValue, path: String, log: IssueLog) -> SweepMeasure {
    let r = ObjectReader<SweepMeasure.CodingKeys>(v, path: path, log: log)
    var m = SweepMeasure()
    r.read(.prefillTokens, into: &m.prefillTokens, .atLeast(1))
    r.read(.decodeTokens, into: &m.decodeTokens, .atLeast(1))
    r.read(.repeats, into: &m.repeats, .atLeast(1))
    r.read(.taskMaxTokens, into: &m.taskMaxTokens, .atLeast(1))
    r.read(.serial, into: &m.serial)
    m.tasks = r.string(.tasks)
    if let verifier = r.value(.verifier) {
        do {
            let config = try JSONDecoder().decode(VerifierConfig.self, from: Data(verifier.serialized().utf8))
            let problems = config.problems()
            for p in problems { log.add(.rule(p), at: r.path(.verifier)) }
            if problems.isEmpty { m.verifier = config }
        } catch {
            log.add(.rule("not a verifier object (see docs/teacher.md): \(error)"), at: r.path(.verifier))
        }
    }
    if r.has(.verifier) && !r.has(.tasks) {
        log.add(.missing(hint: "a verifier scores a task file; give \"tasks\""), at: r.path(.tasks))
    }
    return m
}
