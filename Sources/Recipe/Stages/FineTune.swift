// What the fine-tuning stages (`sft`, `dpo`, `kd`) share: the model, data, chat template,
// LoRA and training settings, their readers and their linking. Every property initialiser is
// the documented default (docs/finetuning.md, docs/recipes.md); the executors are in
// Sources/Pipeline/Stages.

import JSON
import NN
import TextData
import Training

/// LoRA adapters instead of full fine-tuning (PEFT's key names).
package struct LoRASettings: Codable, Sendable, Equatable {
    /// Rank, >= 1. Default 8.
    package var r: Int = 8
    /// > 0. Default 16.
    package var alpha: Double = 16
    /// Adapter input dropout, in [0, 1). Default 0.
    package var dropout: Double = 0
    /// Scale alpha / sqrt(r) instead of alpha / r. Default false.
    package var useRSLoRA: Bool = false
    /// A list as in peft: projection names (q_proj, k_proj, v_proj, o_proj, gate_proj,
    /// up_proj, down_proj) matching every layer's, module paths or their tails
    /// ("layers.0.mlp.down_proj"), or "all-linear" for all seven. Default ["q_proj", "v_proj"].
    package var targetModules: [String] = ["q_proj", "v_proj"]
    /// target_modules given as one string other than "all-linear": a regular expression a
    /// module's whole path must match (peft's re.fullmatch). Default none.
    package var targetPattern: String?

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case r, alpha, dropout, useRSLoRA = "use_rslora", targetModules = "target_modules"
    }

    /// The settings before they are resolved against a model (`LoRAConfig.resolved(layers:)`).
    package var config: LoRAConfig {
        LoRAConfig(rank: r, alpha: alpha, dropout: dropout, useRSLoRA: useRSLoRA, targetModules: targetModules, targetPattern: targetPattern)
    }

    // target_modules is a list or, for a regex, a string (as peft writes it).
    package init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        r = try c.decode(Int.self, forKey: .r)
        alpha = try c.decode(Double.self, forKey: .alpha)
        dropout = try c.decode(Double.self, forKey: .dropout)
        useRSLoRA = try c.decode(Bool.self, forKey: .useRSLoRA)
        if let pattern = try? c.decode(String.self, forKey: .targetModules) {
            targetPattern = pattern
            targetModules = []
        } else {
            targetModules = try c.decode([String].self, forKey: .targetModules)
        }
    }

    package func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(r, forKey: .r)
        try c.encode(alpha, forKey: .alpha)
        try c.encode(dropout, forKey: .dropout)
        try c.encode(useRSLoRA, forKey: .useRSLoRA)
        if let targetPattern { try c.encode(targetPattern, forKey: .targetModules) } else { try c.encode(targetModules, forKey: .targetModules) }
    }
}

/// Fine-tuning data: JSONL files and the share held out for validation.
package struct FineTuneData: Codable, Sendable, Equatable {
    /// Required. JSONL files (a single string is a list of one), relative to the recipe file's
    /// folder; absolute after loading.
    package var train: [String] = []
    /// Share of rows (examples or pairs) held out for validation, in [0, 0.5]. Default 0.05.
    package var validationFraction: Double = 0.05

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable { case train, validationFraction = "validation_fraction" }
}

/// What the three fine-tuning stages share.
package protocol FineTuneStageSettings: StageSettings {
    var model: CheckpointSource { get set }
    var data: FineTuneData { get set }
    var lora: LoRASettings? { get set }
    /// How the frozen base is held under LoRA (nil: f32).
    var baseWeights: InferenceWeights? { get set }
    var training: TrainingSettings { get set }
    /// The chat template for conversational rows; nil: the model's own (ChatML when it records none).
    var template: ChatTemplate? { get set }
}

extension FineTuneStageSettings {
    package var inputFiles: [String] { data.train }
}

/// The child objects a fine-tuning stage accepts, so a key written one level too high is
/// pointed to its place.
let nestedKeys: [(key: String, accepts: [String])] = [
    ("training", keys(TrainingSettings.CodingKeys.self)), ("lora", keys(LoRASettings.CodingKeys.self)),
    ("data", keys(FineTuneData.CodingKeys.self)),
]

/// The keys every fine-tuning stage has: model, data, template, lora, base_weights, training.
func readShared<K: CodingKey & CaseIterable & RawRepresentable<String>, S: FineTuneStageSettings>(
    _ r: ObjectReader<K>, model: K, data: K, template: K, lora: K, baseWeights: K, training: K, into s: inout S
) {
    let log = r.log
    if let m = r.string(model) { s.model = CheckpointSource(m) }
    if let d = r.object(data, { readFineTuneData($0, path: $1, log: log) }) {
        s.data = d
    } else {
        r.missing(data, hint: "give {\"train\": [\"rows.jsonl\"]}")
    }
    r.read(template, into: &s.template)
    s.lora = r.object(lora) { readLoRA($0, path: $1, log: log) }
    r.read(baseWeights, into: &s.baseWeights)
    if let weights = s.baseWeights, weights != .f32, !r.has(lora) {
        log.add(
            .rule("\(weights.rawValue) holds a frozen base, which only LoRA has: add a lora block (QLoRA) or remove base_weights for full fine-tuning"),
            at: r.path(baseWeights))
    }
    if let t = r.object(training, { readTraining($0, path: $1, log: log, fineTuning: true) }) { s.training = t }
}

func readFineTuneData(_ v: JSONValue, path: String, log: IssueLog) -> FineTuneData {
    let r = ObjectReader<FineTuneData.CodingKeys>(v, path: path, log: log)
    var d = FineTuneData()
    if let files = r.strings(.train, acceptSingle: true) {
        if files.isEmpty { log.add(.rule("must list at least one file"), at: r.path(.train)) }
        for (i, f) in files.enumerated() where f.isEmpty {
            log.add(.rule("must not be empty"), at: JSONPath.index(r.path(.train), i))
        }
        d.train = files
    } else if !r.has(.train) {
        r.missing(.train, hint: "list the JSONL files")
    }
    r.read(.validationFraction, into: &d.validationFraction, .closed(0, 0.5))
    return d
}

/// The layer count a target regex is checked against before the model is known: a regex
/// that selects nothing even in a model this deep is a mistake; one that selects layers the
/// actual model lacks is reported when the stage loads it.
let lintLayers = 128

func readLoRA(_ v: JSONValue, path: String, log: IssueLog) -> LoRASettings {
    let r = ObjectReader<LoRASettings.CodingKeys>(v, path: path, log: log)
    var l = LoRASettings()
    r.read(.r, into: &l.r, .atLeast(1))
    r.read(.alpha, into: &l.alpha, .positive)
    r.read(.dropout, into: &l.dropout, .halfOpen(0, 1))
    r.read(.useRSLoRA, into: &l.useRSLoRA)
    if case .string(let pattern)? = r.value(.targetModules), pattern != LoRAConfig.allLinear {
        // One string is a regex over whole module paths, as in peft.
        l.targetModules = []
        l.targetPattern = pattern
        do {
            _ = try LoRAConfig.select(modules: [], pattern: pattern, layers: lintLayers)
        } catch {
            let hint = LoRAConfig.moduleNames.contains(pattern) ? "; a single string is a regex over whole module paths, as in peft: write [\"\(pattern)\"] for every layer's \(pattern)" : ""
            log.add(.rule("\(error)" + hint), at: r.path(.targetModules))
        }
    } else if let modules = r.strings(.targetModules, acceptSingle: true) {
        if modules == [LoRAConfig.allLinear] {
            l.targetModules = LoRAConfig.moduleNames
        } else if modules.isEmpty {
            log.add(.rule("must list at least one module"), at: r.path(.targetModules))
        } else {
            for (i, m) in modules.enumerated() {
                let problems = LoRAConfig(targetModules: [m]).problems()
                guard !problems.isEmpty else { continue }
                if !m.contains(".") {
                    let allowed = LoRAConfig.moduleNames + [LoRAConfig.allLinear]
                    log.add(
                        .invalidValue(got: m, allowed: allowed, suggestion: suggestion(for: m, among: allowed)),
                        at: JSONPath.index(r.path(.targetModules), i))
                } else {
                    log.add(.rule(problems.joined(separator: "; ")), at: JSONPath.index(r.path(.targetModules), i))
                }
            }
            var seen = Set<String>()
            l.targetModules = modules.filter { seen.insert($0).inserted }
        }
    }
    return l
}

extension FineTuneStageSettings {
    /// Resolves `model` (default: the latest earlier checkpoint) and the data files.
    mutating func linkShared(_ l: StageLinker) {
        model = l.source(model, given: l.given.contains("model"), at: "model") ?? model
        data.train = l.files(data.train, at: "data.train")
    }
}
