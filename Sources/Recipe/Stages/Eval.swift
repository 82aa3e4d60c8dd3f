// The `eval` stage: loss and perplexity of a checkpoint on text, or, with `tasks`, task
// evaluation of one or more models (greedy accuracy, pass@k, maj@k, bootstrap intervals;
// docs/evaluation.md). Settings, reader and linking; the executor is in Sources/Pipeline/Stages.

import Foundation
import JSON
import NN
import Teacher
import TextData
import Verify

/// Which part of the data an evaluation reads.
package enum EvalSplit: String, Codable, Sendable, CaseIterable {
    /// The held-out `validation_fraction`, split exactly as pretrain splits it.
    case validation
    /// The rest.
    case train
    /// Everything.
    case all
}

/// Loss and perplexity of a checkpoint on text; with `tasks`, task evaluation of its arms.
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
    /// Default `eval.json`. Task evaluation writes its siblings beside it (`taskFiles`).
    package var output = "eval.json"
    /// Task evaluation when the recipe gives `tasks`; nil: loss and perplexity (the fields above
    /// but `name` and `output` are then unused and not written to the resolved recipe).
    package var taskEval: TaskEvalSettings?

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, checkpoint, data, split, batches, seqLen = "seq_len", output
        // Task evaluation.
        case tasks, model, arms, verifier, template, weights, cache
        case samples, temperature, topP = "top_p", maxTokens = "max_tokens", stop, seed, batchSize = "batch_size"
        case maxTasks = "max_tasks", logprobs, baseline
    }

    /// The keys of a loss evaluation, and of a task evaluation: each mode reads its own and
    /// refuses the other's with a reason (`CodingKeys` is their union, for the resolved recipe).
    enum LossKeys: String, CodingKey, CaseIterable {
        case name, checkpoint, data, split, batches, seqLen = "seq_len", output
    }

    enum TaskKeys: String, CodingKey, CaseIterable {
        case name, output, tasks, model, arms, verifier, template, weights, cache
        case samples, temperature, topP = "top_p", maxTokens = "max_tokens", stop, seed, batchSize = "batch_size"
        case maxTasks = "max_tasks", logprobs, baseline
    }

    package var checkpointInputs: [CheckpointSource] {
        guard let taskEval else { return [checkpoint] }
        return taskEval.arms.filter { !$0.model.isEmpty }.map { CheckpointSource($0.model) }
    }

    package var inputFiles: [String] {
        guard let t = taskEval else { return data.train }
        return [t.tasks] + t.arms.compactMap { $0.teacherPrompt?.examples }
    }

    /// The files task evaluation writes for `output` (`eval.json`): the report, the Markdown
    /// table, the chart and the per-task rows (`eval.json`, `eval.md`, `eval.svg`,
    /// `eval.tasks.jsonl`).
    package static func taskFiles(output: String) -> (json: String, markdown: String, chart: String, rows: String) {
        let stem = output.hasSuffix(".json") ? String(output.dropLast(5)) : output
        return (output, stem + ".md", stem + ".svg", stem + ".tasks.jsonl")
    }
}

/// One model of a task evaluation.
package struct EvalArm: Codable, Sendable, Equatable {
    /// Unique in the stage; its row in the table. Default: the stage the model names, or the
    /// model file's name without its extension.
    package var name: String
    /// `"@stage"` or a checkpoint, adapter checkpoint, Hugging Face directory or GGUF file;
    /// absolute after loading. Default (single `model` form): the latest earlier stage that
    /// produces a checkpoint.
    package var model: String
    /// The chat template for tasks with messages or tools; nil: the model's own (ChatML when it
    /// records none).
    package var template: ChatTemplate?
    /// What the model is shown beyond each task (a few-shot teacher arm; docs/teacher.md).
    package var teacherPrompt: TeacherPrompt?
    /// The weights generation runs on (nil: f32; bf16, q8_0, q4_0, q4_1 converted at load; file: a
    /// quantized GGUF's own blocks). Default: the stage's `weights`.
    package var weights: InferenceWeights?
    /// Constrained sampling (docs/teacher.md): every answer a sentence of this grammar.
    package var grammar: SamplingGrammar?

    package init(
        name: String, model: String, template: ChatTemplate? = nil, teacherPrompt: TeacherPrompt? = nil,
        weights: InferenceWeights? = nil, grammar: SamplingGrammar? = nil
    ) {
        self.name = name
        self.model = model
        self.template = template
        self.teacherPrompt = teacherPrompt
        self.weights = weights
        self.grammar = grammar
    }

    package enum CodingKeys: String, CodingKey, CaseIterable {
        case name, model, template, weights, grammar
        case teacherPrompt = "teacher_prompt"
    }
}

/// What task evaluation reads and how it generates (docs/evaluation.md).
package struct TaskEvalSettings: Codable, Sendable, Equatable {
    /// The task set (JSONL); absolute after loading.
    package var tasks = ""
    /// The models compared, in table order; at least one.
    package var arms: [EvalArm] = []
    /// Default `auto`.
    package var verifier = VerifierConfig()
    /// Greedy pass plus `samples` samples; `seed` defaults to the recipe's.
    package var sampling = TaskEvalConfig()
    /// The call cache (SQLite), relative to the run directory; default `teacher-cache.sqlite`,
    /// shared with the run's sample stages.
    package var cache = "teacher-cache.sqlite"
    /// Evaluate at most this many tasks, chosen by `TaskReader.subset` with the sampling seed.
    package var maxTasks: Int?
    /// An arm's name: every other arm is also reported as its difference from this one, paired
    /// over tasks. nil: none.
    package var baseline: String?

    package init() {}
}

extension EvalStage {
    package init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        output = try c.decode(String.self, forKey: .output)
        if c.contains(.tasks) {
            var t = TaskEvalSettings()
            t.tasks = try c.decode(String.self, forKey: .tasks)
            t.arms = try c.decode([EvalArm].self, forKey: .arms)
            t.verifier = try c.decode(VerifierConfig.self, forKey: .verifier)
            t.cache = try c.decode(String.self, forKey: .cache)
            t.maxTasks = try c.decodeIfPresent(Int.self, forKey: .maxTasks)
            t.baseline = try c.decodeIfPresent(String.self, forKey: .baseline)
            t.sampling = try TaskEvalConfig(from: decoder)
            taskEval = t
        } else {
            checkpoint = try c.decode(CheckpointSource.self, forKey: .checkpoint)
            data = try c.decode(DataSettings.self, forKey: .data)
            split = try c.decode(EvalSplit.self, forKey: .split)
            batches = try c.decode(Int.self, forKey: .batches)
            seqLen = try c.decodeIfPresent(Int.self, forKey: .seqLen)
        }
    }

    /// A loss evaluation encodes exactly the keys it always had (so its fingerprint is
    /// unchanged); a task evaluation only its own.
    package func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(output, forKey: .output)
        if let t = taskEval {
            try c.encode(t.tasks, forKey: .tasks)
            try c.encode(t.arms, forKey: .arms)
            try c.encode(t.verifier, forKey: .verifier)
            try c.encode(t.cache, forKey: .cache)
            try c.encodeIfPresent(t.maxTasks, forKey: .maxTasks)
            try c.encodeIfPresent(t.baseline, forKey: .baseline)
            try t.sampling.encode(to: encoder)
        } else {
            try c.encode(checkpoint, forKey: .checkpoint)
            try c.encode(data, forKey: .data)
            try c.encode(split, forKey: .split)
            try c.encode(batches, forKey: .batches)
            try c.encodeIfPresent(seqLen, forKey: .seqLen)
        }
    }
}

extension EvalStage {
    package static func read(_ v: JSONValue, path: String, name: String, seed: Int, log: IssueLog) -> EvalStage {
        var s = EvalStage()
        s.name = name
        if case .object(let o) = v, let tasks = o["tasks"], tasks != .null {
            var refused: [String: String] = [:]
            for key in LossKeys.allCases where TaskKeys(rawValue: key.rawValue) == nil {
                refused[key.rawValue] =
                    key == .checkpoint
                    ? "with \"tasks\", the model is \"model\" (or a list of \"arms\"); rename the key"
                    : "a setting of loss evaluation, not used with \"tasks\"; remove it"
            }
            let r = ObjectReader<TaskKeys>(
                v, path: path, log: log, alsoAllowed: ["type"], notAllowed: refused,
                nested: [("verifier", keys(VerifierConfig.CodingKeys.self))])
            readCommon(r, name: .name, output: .output, into: &s)
            s.taskEval = readTaskEval(r, seed: seed, log: log)
            return s
        }
        var refused: [String: String] = [:]
        for key in TaskKeys.allCases where LossKeys(rawValue: key.rawValue) == nil {
            refused[key.rawValue] = "a setting of task evaluation: give \"tasks\" (a task set) with it, or remove it"
        }
        let r = ObjectReader<LossKeys>(
            v, path: path, log: log, alsoAllowed: ["type"], notAllowed: refused,
            nested: [("data", keys(DataSettings.CodingKeys.self))])
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
        if var t = taskEval {
            Self.link(&t, l)
            taskEval = t
            return
        }
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

extension EvalStage {
    /// Task evaluation's keys: `tasks`, the model (`model`, or `arms`), `verifier`, `template`,
    /// `cache` and the sampling settings.
    static func readTaskEval(_ r: ObjectReader<TaskKeys>, seed: Int, log: IssueLog) -> TaskEvalSettings {
        var t = TaskEvalSettings()
        t.sampling.seed = seed
        if let tasks = r.string(.tasks) {
            if tasks.isEmpty { log.add(.rule("must not be empty"), at: r.path(.tasks)) } else { t.tasks = tasks }
        }
        var template: ChatTemplate?
        r.read(.template, into: &template)
        var weights: InferenceWeights?
        r.read(.weights, into: &weights)
        if r.has(.model) && r.has(.arms) {
            log.add(.rule("give either \"model\" (one model) or \"arms\" (several), not both"), at: r.path)
        }
        if let arms = r.value(.arms) {
            guard case .array(let items) = arms else {
                r.wrongType(.arms, "an array of {\"name\", \"model\", \"template\"} objects", arms)
                return t
            }
            if items.isEmpty { log.add(.rule("must list at least one arm"), at: r.path(.arms)) }
            for (i, item) in items.enumerated() {
                let ar = ObjectReader<EvalArm.CodingKeys>(
                    item, path: JSONPath.index(r.path(.arms), i), log: log,
                    nested: [("teacher_prompt", keys(TeacherPrompt.CodingKeys.self))])
                var arm = EvalArm(name: "", model: "", template: template, weights: weights)
                if let n = ar.string(.name) {
                    if n.isEmpty { log.add(.rule("must not be empty"), at: ar.path(.name)) } else { arm.name = n }
                }
                if let m = ar.string(.model) {
                    if m.isEmpty { log.add(.rule("must not be empty"), at: ar.path(.model)) } else { arm.model = m }
                } else {
                    ar.missing(
                        .model, hint: "\"@stage\", or a checkpoint, adapter, Hugging Face directory or .gguf file")
                }
                ar.read(.template, into: &arm.template)
                ar.read(.weights, into: &arm.weights)
                ar.read(.grammar, into: &arm.grammar)
                arm.teacherPrompt = ar.object(.teacherPrompt) { readTeacherPrompt($0, path: $1, log: log) }
                t.arms.append(arm)
            }
        } else {
            var arm = EvalArm(name: "", model: "", template: template, weights: weights)
            if let m = r.string(.model) {
                if m.isEmpty { log.add(.rule("must not be empty"), at: r.path(.model)) } else { arm.model = m }
            }
            t.arms = [arm]
        }
        if let verifier = r.object(.verifier, { readVerifier($0, path: $1, log: log) }) { t.verifier = verifier }
        r.read(.cache, into: &t.cache)
        r.read(.maxTasks, into: &t.maxTasks, .atLeast(1))
        if let b = r.string(.baseline) {
            if b.isEmpty { log.add(.rule("must not be empty"), at: r.path(.baseline)) } else { t.baseline = b }
        }
        var c = t.sampling
        r.read(.samples, into: &c.samples)
        r.read(.temperature, into: &c.temperature)
        r.read(.topP, into: &c.topP)
        r.read(.maxTokens, into: &c.maxTokens)
        if let stop = r.strings(.stop, acceptSingle: true) { c.stop = stop }
        r.read(.seed, into: &c.seed)
        r.read(.batchSize, into: &c.batchSize)
        r.read(.logprobs, into: &c.logprobs)
        logProblems(c.problems(), known: keys(TaskEvalConfig.CodingKeys.self), path: r.path, log: log)
        t.sampling = c
        return t
    }

    /// The task file made absolute, each arm's model resolved (the latest earlier checkpoint
    /// for a single `model` left out) and named, arm names unique, the cache in the run directory.
    static func link(_ t: inout TaskEvalSettings, _ l: StageLinker) {
        if !t.tasks.isEmpty { t.tasks = l.file(t.tasks, at: "tasks") }
        t.cache = l.inRunDirectory(t.cache)
        let listed = l.given.contains("arms")
        var seen: [String: Int] = [:]
        for i in t.arms.indices {
            let at = listed ? "arms[\(i)]." : ""
            var arm = t.arms[i]
            let given = !arm.model.isEmpty
            if listed && !given { continue }  // reported as missing when read
            if let resolved = l.source(CheckpointSource(arm.model), given: given, at: at + "model") {
                arm.model = resolved.description
                if arm.name.isEmpty {
                    switch resolved {
                    case .stage(let n): arm.name = n
                    case .file(let p):
                        let file = (p as NSString).lastPathComponent
                        arm.name =
                            file.hasSuffix(".h5") || file.hasSuffix(".gguf")
                            ? (file as NSString).deletingPathExtension : file
                    }
                }
            }
            if !arm.name.isEmpty {
                if let first = seen[arm.name] {
                    let hint = listed && t.arms[i].name.isEmpty ? " (named after its model)" : ""
                    l.log.add(
                        .rule(
                            "duplicate arm name \"\(arm.name)\"\(hint), also arms[\(first)]; give each arm a unique \"name\""
                        ),
                        at: JSONPath.child(l.path, at + "name"))
                } else {
                    seen[arm.name] = i
                }
            }
            if let examples = arm.teacherPrompt?.examples {
                arm.teacherPrompt?.examples = l.file(examples, at: at + "teacher_prompt.examples")
            }
            t.arms[i] = arm
        }
        if let b = t.baseline, !t.arms.contains(where: { $0.name == b }) {
            let names = t.arms.map(\.name).filter { !$0.isEmpty }.map { "\"\($0)\"" }.joined(separator: ", ")
            l.log.add(.rule("must name an arm (\(names)), got \"\(b)\""), at: JSONPath.child(l.path, "baseline"))
        }
    }
}
