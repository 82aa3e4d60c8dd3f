// From a sweep stage to its trials: the configurations (grid, configs, random draw), the
// parameter budget solved per configuration, invalid combinations with their reasons, steps
// from the training budget, stable trial ids, successive-halving rungs and shards.

import Core
import Foundation
import JSON
import ModelIO
import NN
import Platform
import Recipe
import TextData
import Training

/// A configuration that passed validation, before seeds and steps.
package struct SweepConfig: Codable, Sendable, Equatable {
    /// What the grid / configs set, by key (for labels and the report).
    package var values: [String: SweepValue]
    package var model: ModelSettings
    package var training: TrainingSettings
    /// What the budget solver chose, in words (nil without a parameter budget).
    package var solved: String?
    /// Hash of model + training (without seed and steps): equal shapes share it.
    package var id: String
    package var label: String
}

/// A combination that cannot be trained, with every reason.
package struct InvalidConfig: Codable, Sendable, Equatable, Error {
    package var values: [String: SweepValue]
    package var reasons: [String]
}

/// One model to train: a configuration, a seed, a rung, and its steps.
package struct SweepTrial: Codable, Sendable, Equatable {
    /// Stable id: the hash of everything that decides the trained weights.
    package var id: String
    package var configId: String
    package var label: String
    package var values: [String: SweepValue]
    package var solved: String?
    package var seed: Int
    /// Successive-halving round (0 for other strategies).
    package var rung: Int
    package var model: ModelSettings
    /// `steps` is final except with a time budget, where it is fixed at the trial's first start.
    package var training: TrainingSettings
    /// Wall-clock budget in seconds (budget.seconds), else nil.
    package var seconds: Double?

    enum CodingKeys: String, CodingKey {
        case id, configId = "config_id", label, values, solved, seed, rung, model, training, seconds
    }
}

/// Canonical JSON of an encodable value (sorted keys, normalised numbers).
func canonicalText(_ value: some Encodable) -> String {
    do {
        let data = try JSONEncoder().encode(value)
        return try JSONValue.parseWithSources(String(decoding: data, as: UTF8.self)).0.canonical
    } catch {
        preconditionFailure("sweep values always encode to JSON: \(error)")
    }
}

/// 12 hex digits of FNV-1a over `text`.
func shortHash(_ text: String) -> String { String(FNV1a64.hex(text).prefix(12)) }

package enum SweepPlanner {
    /// A short human label: `L8 d128 h4/kv2 ff344` (+ `x2` for layer_repeat, `untied`).
    package static func label(_ m: ModelSettings) -> String {
        var s = "L\(m.numHiddenLayers)" + (m.layerRepeat > 1 ? "x\(m.layerRepeat)" : "")
        s += " d\(m.hiddenSize) h\(m.numAttentionHeads)/kv\(m.numKeyValueHeads) ff\(m.intermediateSize)"
        if m.headDim * m.numAttentionHeads != m.hiddenSize { s += " hd\(m.headDim)" }
        if !m.tieWordEmbeddings { s += " untied" }
        return s
    }

    /// Parameters a budget counts.
    package static func counted(_ m: ModelSettings, vocabSize: Int, kind: ParameterCountKind) -> Int {
        let c = m.llamaConfig(vocabSize: vocabSize)
        return kind == .total ? c.parameterCount : c.nonEmbeddingParameterCount
    }

    /// Every combination in order: each of `configs` (or the base alone) with the grid's
    /// product applied, the first axis varying slowest.
    package static func combinations(_ s: SweepStage) -> [[String: SweepValue]] {
        var grid: [[String: SweepValue]] = [[:]]
        for axis in s.axes {
            grid = grid.flatMap { partial in
                axis.values.map { v in partial.merging([axis.key: v]) { $1 } }
            }
        }
        let bases = s.configs.isEmpty ? [[:]] : s.configs
        return bases.flatMap { c in grid.map { c.merging($0) { $1 } } }
    }

    /// The model and training settings for one combination, or the reasons it is invalid.
    package static func resolve(_ values: [String: SweepValue], stage s: SweepStage, vocabSize: Int)
        -> Result<SweepConfig, InvalidConfig>
    {
        var merged = s.model.merging(values) { $1 }
        var reasons: [String] = []
        // Training overrides (`training.lr`, ...).
        var training = s.training
        let trainingValues = merged.filter { $0.key.hasPrefix("training.") }
        if !trainingValues.isEmpty {
            var object = (try? JSONValue.parseWithSources(canonicalText(s.training)).0) ?? .null
            if case .object(var o) = object {
                for (k, v) in trainingValues.sorted(by: { $0.key < $1.key }) {
                    let key = String(k.dropFirst("training.".count))
                    o.entries.removeAll { $0.key == key }
                    o.entries.append((key: key, value: v.json))
                }
                object = .object(o)
            }
            let issues: [JSONIssue]
            (training, issues) = readTrainingSettings(object, path: "training")
            reasons += issues.map(\.description)
            for k in trainingValues.keys { merged[k] = nil }
        }
        let ratio = merged.removeValue(forKey: "mlp_ratio")?.number
        let budget = s.budget
        if budget.parameters != nil {
            let solvedKey = budget.solve.rawValue
            if values[solvedKey] != nil {
                reasons.append("\(solvedKey) is solved for by the parameter budget; do not set it in axes or configs")
            }
            if budget.solve == .intermediateSize && ratio != nil {
                reasons.append("mlp_ratio fixes intermediate_size, which the budget solves for; use budget.solve \"hidden_size\" with mlp_ratio")
            }
        }

        func make(hidden: Int?, intermediate: Int?) -> (ModelSettings, [String]) {
            var d = merged
            if let hidden { d["hidden_size"] = .int(hidden) }
            let c = (d["hidden_size"].flatMap(\.number)).map { Int($0) } ?? ModelSettings().hiddenSize
            if let intermediate {
                d["intermediate_size"] = .int(intermediate)
            } else if let ratio {
                d["intermediate_size"] = .int(max(8, Int((ratio * Double(c) / 8).rounded()) * 8))
            }
            let object = JSONValue.object(.init(d.sorted { $0.key < $1.key }.map { (key: $0.key, value: $0.value.json) }))
            let (m, issues) = readModelSettings(object, path: "model")
            var problems = issues.map { issue -> String in
                switch issue.kind {
                case .rule: return issue.message
                default: return issue.path.replacingOccurrences(of: "model.", with: "") + " " + issue.message
                }
            }
            if problems.isEmpty { problems = m.llamaConfig(vocabSize: max(vocabSize, 1)).problems() }
            if training.seqLen > m.maxPositionEmbeddings {
                problems.append("training.seq_len (\(training.seqLen)) exceeds max_position_embeddings (\(m.maxPositionEmbeddings))")
            }
            var unique: [String] = []
            for p in problems where !unique.contains(p) { unique.append(p) }
            return (m, unique)
        }

        var model: ModelSettings
        var solved: String?
        if let target = budget.parameters, reasons.isEmpty {
            let kind = budget.count
            let noun = kind == .total ? "parameters" : "non-embedding parameters"
            switch budget.solve {
            case .intermediateSize:
                let (m0, p0) = make(hidden: nil, intermediate: budget.multiple)
                if !p0.isEmpty { return .failure(InvalidConfig(values: values, reasons: p0)) }
                let base = counted(m0, vocabSize: vocabSize, kind: kind) - 3 * m0.hiddenSize * budget.multiple * m0.numHiddenLayers
                let per = 3 * m0.hiddenSize * m0.numHiddenLayers
                let f = Int((Double(target - base) / Double(per) / Double(budget.multiple)).rounded()) * budget.multiple
                if f < budget.multiple {
                    reasons.append("the budget of \(target) \(noun) is below what this shape needs without its MLP (\(base)); lower num_hidden_layers or hidden_size")
                    model = m0
                } else {
                    let (m, p) = make(hidden: nil, intermediate: f)
                    reasons += p
                    model = m
                    solved = "intermediate_size \(f)"
                }
            case .hiddenSize:
                let heads = merged["num_attention_heads"]?.number.map { Int($0) } ?? ModelSettings().numAttentionHeads
                let headDimGiven = merged["head_dim"] != nil
                let step = headDimGiven ? budget.multiple : lcm(budget.multiple, 2 * max(heads, 1))
                var best: (Int, ModelSettings, Int)?
                var c = step
                while c <= 1 << 16 {
                    let (m, p) = make(hidden: c, intermediate: nil)
                    if p.isEmpty {
                        let n = counted(m, vocabSize: vocabSize, kind: kind)
                        if best == nil || abs(n - target) < abs(best!.0 - target) { best = (n, m, c) }
                        if n > 2 * target { break }
                    }
                    c += step
                }
                guard let (_, m, h) = best else {
                    let (_, p) = make(hidden: step, intermediate: nil)
                    return .failure(InvalidConfig(values: values, reasons: p.isEmpty ? ["no hidden_size meets the budget"] : p))
                }
                model = m
                solved = "hidden_size \(h)" + (ratio != nil ? ", intermediate_size \(m.intermediateSize)" : "")
            }
            if reasons.isEmpty {
                let n = counted(model, vocabSize: vocabSize, kind: kind)
                let off = abs(Double(n - target)) / Double(target)
                solved = (solved ?? "") + " -> \(n) \(noun)"
                if off > budget.tolerance {
                    reasons.append(String(format: "closest size has %d %@, %.1f%% from the budget of %d (tolerance %.0f%%)", n, noun, off * 100, target, budget.tolerance * 100))
                }
            }
        } else {
            let (m, p) = make(hidden: nil, intermediate: nil)
            model = m
            reasons += p
        }
        guard reasons.isEmpty else { return .failure(InvalidConfig(values: values, reasons: reasons)) }
        var shape = training
        shape.steps = 0
        let id = shortHash(canonicalText(["model": canonicalText(model), "training": canonicalText(shape)]))
        return .success(SweepConfig(values: values, model: model, training: training, solved: solved, id: id, label: label(model)))
    }

    /// Valid configurations (duplicates of an earlier one dropped) and the invalid ones, for
    /// the strategy: every combination, or a seeded random draw of `samples` valid ones.
    package static func configurations(_ s: SweepStage, vocabSize: Int, seed: Int)
        -> (valid: [SweepConfig], invalid: [InvalidConfig])
    {
        var valid: [SweepConfig] = []
        var invalid: [InvalidConfig] = []
        var seen = Set<String>()
        for values in combinations(s) {
            switch resolve(values, stage: s, vocabSize: vocabSize) {
            case .success(let c):
                if seen.insert(c.id).inserted {
                    valid.append(c)
                } else {
                    invalid.append(InvalidConfig(values: values, reasons: ["same model as an earlier combination (\(c.label))"]))
                }
            case .failure(let f): invalid.append(f)
            }
        }
        if s.strategy == .random && valid.count > s.samples {
            var rng = RNG(seed: UInt64(seed) &+ 0x5eed)
            var indices = Array(valid.indices)
            for i in stride(from: indices.count - 1, to: 0, by: -1) {
                let j = Int(rng.next() % UInt64(i + 1))
                indices.swapAt(i, j)
            }
            valid = indices.prefix(s.samples).sorted().map { valid[$0] }
        }
        return (valid, invalid)
    }

    /// Tokens per optimiser step.
    static func tokensPerStep(_ t: TrainingSettings) -> Int { t.batchSize * t.seqLen * t.gradAccum }

    /// Steps of a configuration at full budget: from budget.tokens or budget.flops, else
    /// training.steps; nil with a time budget (decided when the trial starts).
    package static func fullSteps(_ c: SweepConfig, stage s: SweepStage, vocabSize: Int) -> Int? {
        let perStep = Double(tokensPerStep(c.training))
        if let tokens = s.budget.tokens { return max(1, Int((Double(tokens) / perStep).rounded())) }
        if let flops = s.budget.flops {
            let perToken = c.model.llamaConfig(vocabSize: vocabSize).trainingFlopsPerToken(seqLen: c.training.seqLen)
            return max(1, Int((flops / perToken / perStep).rounded()))
        }
        if s.budget.seconds != nil { return nil }
        return c.training.steps
    }

    /// Steps at `rung` of successive halving: the full steps divided by eta^(rungs-1-rung).
    package static func steps(full: Int, rung: Int, stage s: SweepStage) -> Int {
        guard s.strategy == .halving else { return full }
        var divisor = 1
        for _ in 0..<(s.rungs - 1 - rung) { divisor *= s.eta }
        return max(1, full / divisor)
    }

    /// The trials of `configs` at `rung`, one per seed, configurations outermost.
    package static func trials(_ configs: [SweepConfig], rung: Int, stage s: SweepStage, vocabSize: Int) -> [SweepTrial] {
        configs.flatMap { c in
            s.seeds.map { seed in
                var training = c.training
                let full = fullSteps(c, stage: s, vocabSize: vocabSize)
                let n = full.map { steps(full: $0, rung: rung, stage: s) } ?? 0
                training.steps = n
                if n > 0 { training.warmupSteps = min(training.warmupSteps, n - 1) }
                var seconds = s.budget.seconds
                if let x = seconds, s.strategy == .halving {
                    seconds = x / pow(Double(s.eta), Double(s.rungs - 1 - rung))
                }
                return trial(c, seed: seed, rung: rung, training: training, seconds: seconds, tokenizer: s.tokenizer)
            }
        }
    }

    static func trial(
        _ c: SweepConfig, seed: Int, rung: Int, training: TrainingSettings, seconds: Double?, tokenizer: TokenizerSettings
    ) -> SweepTrial {
        // The id covers what decides the weights; file paths are left out so that a moved
        // project or another data path with the same settings keeps its ids.
        var tok = tokenizer
        if tok.path != nil { tok.path = "file" }
        let identity: [String: String] = [
            "model": canonicalText(c.model), "training": canonicalText(training), "seed": String(seed),
            "tokenizer": canonicalText(tok), "seconds": seconds.map { "\($0)" } ?? "",
        ]
        return SweepTrial(
            id: shortHash(canonicalText(identity)), configId: c.id, label: c.label, values: c.values, solved: c.solved,
            seed: seed, rung: rung, model: c.model, training: training, seconds: seconds)
    }

    /// The configurations kept after a halving rung: the best ceil(n / eta) by mean best
    /// validation loss over their seeds (configurations without a result are dropped).
    package static func survivors(_ configs: [SweepConfig], results: [String: Double], eta: Int) -> [SweepConfig] {
        let scored = configs.compactMap { c in results[c.id].map { (c, $0) } }
        let keep = max(1, (configs.count + eta - 1) / eta)
        return scored.enumerated().sorted { ($0.element.1, $0.offset) < ($1.element.1, $1.offset) }.prefix(keep).map(\.element.0)
    }
}

/// Which part of a sweep this process runs: trial k of a list belongs to shard k mod count.
package struct SweepShard: Sendable, Equatable, CustomStringConvertible {
    package var index: Int
    package var count: Int

    package init(index: Int, count: Int) {
        precondition(count >= 1 && (0..<count).contains(index), "shard \(index)/\(count)")
        self.index = index
        self.count = count
    }

    package static let all = SweepShard(index: 0, count: 1)

    /// `i/n` with 0 <= i < n.
    package init?(_ text: String) {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]), n >= 1, (0..<n).contains(i) else { return nil }
        self.init(index: i, count: n)
    }

    /// From Slurm job-array variables (SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT, and
    /// SLURM_ARRAY_TASK_MIN when the array does not start at 0); nil outside an array.
    package static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) -> SweepShard? {
        guard let id = env["SLURM_ARRAY_TASK_ID"].flatMap({ Int($0) }),
            let count = env["SLURM_ARRAY_TASK_COUNT"].flatMap({ Int($0) }), count >= 1
        else { return nil }
        let index = id - (env["SLURM_ARRAY_TASK_MIN"].flatMap { Int($0) } ?? 0)
        guard (0..<count).contains(index) else { return nil }
        return SweepShard(index: index, count: count)
    }

    package func select<T>(_ items: [T]) -> [T] {
        items.enumerated().filter { $0.offset % count == index }.map(\.element)
    }

    /// Result files of this shard: `results.jsonl`, or `results.shard-i-of-n.jsonl`.
    package var resultsStem: String { count == 1 ? "results" : "results.shard-\(index)-of-\(count)" }

    package var description: String { "\(index)/\(count)" }
}

private func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
private func lcm(_ a: Int, _ b: Int) -> Int { a / gcd(a, b) * b }
