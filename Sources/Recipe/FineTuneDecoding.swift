// Reading and linking the fine-tuning stages (`sft`, `dpo`, `kd`): pass 1 reads each stage
// object on its own, pass 2 (`link`) resolves the model and teacher checkpoints and makes the
// data paths absolute. Problems are logged with their JSON path, like every other stage's.

import JSON
import NN
import Training


/// The child objects a fine-tuning stage accepts, so a key written one level too high is
/// pointed to its place.
private let nestedKeys: [(key: String, accepts: [String])] = [
    ("training", keys(TrainingSettings.CodingKeys.self)), ("lora", keys(LoRASettings.CodingKeys.self)),
    ("data", keys(FineTuneData.CodingKeys.self)),
]

func readSFT(_ v: JSONValue, path: String, name: String, log: IssueLog) -> SFTStage {
    let r = ObjectReader<SFTStage.CodingKeys>(v, path: path, log: log, alsoAllowed: ["type"], nested: nestedKeys)
    var s = SFTStage()
    s.name = name
    readCommon(r, name: .name, output: .output, into: &s)
    readShared(r, model: .model, data: .data, template: .template, lora: .lora, training: .training, into: &s)
    r.read(.packing, into: &s.packing)
    return s
}

func readDPO(_ v: JSONValue, path: String, name: String, log: IssueLog) -> DPOStage {
    let r = ObjectReader<DPOStage.CodingKeys>(v, path: path, log: log, alsoAllowed: ["type"], nested: nestedKeys)
    var s = DPOStage()
    s.name = name
    readCommon(r, name: .name, output: .output, into: &s)
    readShared(r, model: .model, data: .data, template: .template, lora: .lora, training: .training, into: &s)
    r.read(.loss, into: &s.loss)
    r.read(.beta, into: &s.beta, .positive)
    r.read(.labelSmoothing, into: &s.labelSmoothing, .halfOpen(0, 0.5))
    r.read(.simpoGamma, into: &s.simpoGamma, .atLeast(0))
    if r.has(.labelSmoothing), ![.conservative, .robust, .simpo].contains(s.loss) {
        log.add(
            .rule("label_smoothing applies to the losses conservative, robust and simpo, not \(s.loss.rawValue)"),
            at: r.path(.labelSmoothing))
    }
    return s
}

func readKD(_ v: JSONValue, path: String, name: String, log: IssueLog) -> KDStage {
    let r = ObjectReader<KDStage.CodingKeys>(v, path: path, log: log, alsoAllowed: ["type"], nested: nestedKeys)
    var s = KDStage()
    s.name = name
    readCommon(r, name: .name, output: .output, into: &s)
    readShared(r, model: .model, data: .data, template: .template, lora: .lora, training: .training, into: &s)
    if let t = r.string(.teacher) {
        s.teacher = CheckpointSource(t)
    } else if !r.has(.teacher) {
        r.missing(.teacher, hint: "\"@stage\", a distill .h5 or a Hugging Face directory with the same tokenizer")
    }
    r.read(.packing, into: &s.packing)
    r.read(.loss, into: &s.loss)
    r.read(.beta, into: &s.beta, NumericRange(lower: 0, lowerInclusive: false, upper: 1, upperInclusive: false))
    r.read(.temperature, into: &s.temperature, .positive)
    r.read(.alpha, into: &s.alpha, .closed(0, 1))
    r.read(.topK, into: &s.topK, .atLeast(1))
    return s
}

/// The keys every fine-tuning stage has: model, data, template, lora, training.
private func readShared<K: CodingKey & CaseIterable & RawRepresentable<String>, S: FineTuneStageSettings>(
    _ r: ObjectReader<K>, model: K, data: K, template: K, lora: K, training: K, into s: inout S
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
    if let t = r.object(training, { readTraining($0, path: $1, log: log, fineTuning: true) }) { s.training = t }
}

private func readFineTuneData(_ v: JSONValue, path: String, log: IssueLog) -> FineTuneData {
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
private let lintLayers = 128

private func readLoRA(_ v: JSONValue, path: String, log: IssueLog) -> LoRASettings {
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

// MARK: - Pass 2

/// What pass 2 lends a fine-tuning stage: its JSON path, which keys were written, and the
/// linker's file and checkpoint resolution.
struct StageLinker {
    var path: String
    var given: Set<String>
    /// Absolute path of an input file (logging a missing one).
    var file: (_ path: String, _ jsonPath: String) -> String
    /// A resolved checkpoint source, or nil after logging why it is unusable.
    var source: (_ source: CheckpointSource, _ given: Bool, _ jsonPath: String) -> CheckpointSource?
}

extension FineTuneStageSettings {
    /// Resolves `model` (default: the latest earlier checkpoint) and the data files.
    mutating func linkShared(_ l: StageLinker) {
        let modelPath = JSONPath.child(l.path, "model")
        model = l.source(model, l.given.contains("model"), modelPath) ?? model
        data.train = data.train.enumerated().map {
            l.file($1, JSONPath.index(JSONPath.child(l.path, "data.train"), $0))
        }
    }
}

extension KDStage {
    mutating func link(_ l: StageLinker) {
        linkShared(l)
        guard l.given.contains("teacher") else { return }  // reported in pass 1
        teacher = l.source(teacher, true, JSONPath.child(l.path, "teacher")) ?? teacher
    }
}
