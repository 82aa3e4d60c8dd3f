// The `sample` stage: a task set, a teacher, a verifier and how pairs are drawn; every sample
// is verified and the outputs are samples.jsonl, sft.jsonl, pairs.jsonl and stats.json
// (docs/teacher.md). Settings, reader and linking; the executor is in Sources/Pipeline/Stages.

import Foundation
import JSON
import Teacher
import Verify

/// Sample a teacher on a task set, verify every sample, and write samples.jsonl, sft.jsonl,
/// pairs.jsonl and stats.json into the stage's output folder.
package struct SampleStage: StageSettings {
    package static let type = StageType.sample
    package var name = "sample"
    /// Required: the task set (JSONL); absolute after loading.
    package var tasks = ""
    /// Required.
    package var teacher = TeacherSettings.checkpoint(CheckpointTeacherConfig(checkpoint: ""))
    /// Default: `auto` (per task by its field).
    package var verifier = VerifierConfig()
    /// Default: all combinations, at most 4 per prompt, seeded with the recipe seed.
    package var pairs = PairingConfig()
    /// The call cache (SQLite). Default `teacher-cache.sqlite` in the run directory, shared by
    /// the run's sample stages; a relative path resolves against the run directory.
    package var cache = "teacher-cache.sqlite"
    /// The share of teacher calls that may fail (after their retries) with the stage still done,
    /// in [0, 1]. Default (nil) 0: any failed call fails the stage, and the next run retries
    /// exactly the failed calls (the others come from the cache). Absent from the resolved
    /// recipe unless set, so recipes written before it keep their fingerprints.
    package var maxFailedFraction: Double?
    /// What the teacher is shown beyond each task (system message, worked examples, where tools
    /// go); the student's rows keep the task's own form. Absent from the resolved recipe unless set.
    package var teacherPrompt: TeacherPrompt?
    /// Sample at most this many tasks, chosen by `TaskReader.subset` with `pairs.seed` (the
    /// recipe seed unless set). Absent from the resolved recipe unless set.
    package var maxTasks: Int?
    /// A folder in the run directory. Default `sample`.
    package var output = "sample"

    package init() {}

    package enum CodingKeys: String, CodingKey, CaseIterable {
        case name, tasks, teacher, verifier, pairs, cache, output
        case maxFailedFraction = "max_failed_fraction"
        case teacherPrompt = "teacher_prompt"
        case maxTasks = "max_tasks"
    }

    package var checkpointInputs: [CheckpointSource] {
        if case .checkpoint(let t) = teacher, !t.checkpoint.isEmpty { return [CheckpointSource(t.checkpoint)] }
        return []
    }

    package var inputFiles: [String] { [tasks] + (teacherPrompt?.examples.map { [$0] } ?? []) }

    /// The files the stage writes inside `output`.
    package static let files = ["samples.jsonl", "sft.jsonl", "pairs.jsonl", "stats.json"]
}

extension SampleStage {
    package static func read(_ v: JSONValue, path: String, name: String, seed: Int, log: IssueLog) -> SampleStage {
        let teacherKeys = Set(
            keys(OpenAITeacherConfig.CodingKeys.self) + keys(CheckpointTeacherConfig.CodingKeys.self)
                + keys(CommandTeacherConfig.CodingKeys.self))
        let r = ObjectReader<SampleStage.CodingKeys>(
            v, path: path, log: log, alsoAllowed: ["type"],
            nested: [
                ("teacher", teacherKeys.sorted()), ("verifier", keys(VerifierConfig.CodingKeys.self)),
                ("pairs", keys(PairingConfig.CodingKeys.self)), ("teacher_prompt", keys(TeacherPrompt.CodingKeys.self)),
            ])
        var s = SampleStage()
        s.name = name
        s.pairs.seed = seed
        readCommon(r, name: .name, output: .output, into: &s)
        if let t = r.string(.tasks) {
            if t.isEmpty { log.add(.rule("must not be empty"), at: r.path(.tasks)) } else { s.tasks = t }
        } else if !r.has(.tasks) {
            r.missing(.tasks, hint: "the task set (JSONL), e.g. \"Data/arithmetic/tasks.jsonl\"")
        }
        if let teacher = r.object(.teacher, { readTeacher($0, path: $1, log: log) }) {
            if let teacher { s.teacher = teacher }
        } else {
            r.missing(
                .teacher, hint: "e.g. {\"type\": \"checkpoint\", \"checkpoint\": \"@pretrain\", \"samples\": 8}")
        }
        if let verifier = r.object(.verifier, { readVerifier($0, path: $1, log: log) }) { s.verifier = verifier }
        if let pairs = r.object(
            .pairs,
            { v, p in
                let pr = ObjectReader<PairingConfig.CodingKeys>(v, path: p, log: log)
                var c = s.pairs
                pr.read(.strategy, into: &c.strategy)
                pr.read(.maxPerPrompt, into: &c.maxPerPrompt, .atLeast(1))
                pr.read(.seed, into: &c.seed, .atLeast(0))
                return c
            })
        {
            s.pairs = pairs
        }
        r.read(.cache, into: &s.cache)
        r.read(.maxFailedFraction, into: &s.maxFailedFraction, .closed(0, 1))
        s.teacherPrompt = r.object(.teacherPrompt) { readTeacherPrompt($0, path: $1, log: log) }
        r.read(.maxTasks, into: &s.maxTasks, .atLeast(1))
        return s
    }

    package var stage: Stage { .sample(self) }
    package static let producesCheckpoint = false

    package mutating func link(_ l: StageLinker) {
        if !tasks.isEmpty { tasks = l.file(tasks, at: "tasks") }
        cache = l.inRunDirectory(cache)
        if let examples = teacherPrompt?.examples { teacherPrompt?.examples = l.file(examples, at: "teacher_prompt.examples") }
        if case .checkpoint(var t) = teacher {
            if let resolved = l.source(CheckpointSource(t.checkpoint), given: !t.checkpoint.isEmpty, at: "teacher.checkpoint") {
                t.checkpoint = resolved.description
            }
            teacher = .checkpoint(t)
        }
    }
}

/// Which teacher a `sample` stage asks, with its settings. Written in a recipe as one object
/// with a `type` key: `{"type": "checkpoint", "checkpoint": "@pretrain", "samples": 8}`.
package enum TeacherSettings: Sendable, Equatable {
    case openai(OpenAITeacherConfig)
    case checkpoint(CheckpointTeacherConfig)
    case command(CommandTeacherConfig)

    package enum Kind: String, Sendable, CaseIterable {
        case openai, checkpoint, command
    }

    package var kind: Kind {
        switch self {
        case .openai: return .openai
        case .checkpoint: return .checkpoint
        case .command: return .command
        }
    }
}

extension TeacherSettings: Codable {
    private enum TypeKey: String, CodingKey { case type }

    package init(from decoder: Decoder) throws {
        let kind = try decoder.container(keyedBy: TypeKey.self).decode(String.self, forKey: .type)
        switch Kind(rawValue: kind) {
        case .openai: self = .openai(try OpenAITeacherConfig(from: decoder))
        case .checkpoint: self = .checkpoint(try CheckpointTeacherConfig(from: decoder))
        case .command: self = .command(try CommandTeacherConfig(from: decoder))
        case nil:
            throw DecodingError.dataCorruptedError(
                forKey: .type, in: try decoder.container(keyedBy: TypeKey.self),
                debugDescription: "unknown teacher type \(kind)")
        }
    }

    package func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: TypeKey.self)
        try c.encode(kind.rawValue, forKey: .type)
        switch self {
        case .openai(let t): try t.encode(to: encoder)
        case .checkpoint(let t): try t.encode(to: encoder)
        case .command(let t): try t.encode(to: encoder)
        }
    }
}

/// Settings problems from a config's `problems()` (each starts with its key name) logged at the
/// key's path when the first word is one of `known`, else at the object.
func logProblems(_ problems: [String], known: [String], path: String, log: IssueLog) {
    for p in problems {
        let first = String(p.prefix { !$0.isWhitespace })
        log.add(.rule(p), at: known.contains(first) ? JSONPath.child(path, first) : path)
    }
}

func readTeacher(_ v: JSONValue, path: String, log: IssueLog) -> TeacherSettings? {
    guard case .object(let o) = v else {
        log.add(.wrongType(expected: "a teacher object", got: v.quoted), at: path)
        return nil
    }
    let typePath = JSONPath.child(path, "type")
    let kinds = TeacherSettings.Kind.allCases.map(\.rawValue)
    guard let typeValue = o["type"], typeValue != .null else {
        log.add(.missing(hint: "one of " + kinds.map { "\"\($0)\"" }.joined(separator: ", ")), at: typePath)
        return nil
    }
    guard case .string(let typeName) = typeValue, let kind = TeacherSettings.Kind(rawValue: typeName) else {
        let got = typeValue.stringValue ?? typeValue.quoted
        log.add(.invalidValue(got: got, allowed: kinds, suggestion: suggestion(for: got, among: kinds)), at: typePath)
        return nil
    }
    switch kind {
    case .openai:
        let r = ObjectReader<OpenAITeacherConfig.CodingKeys>(v, path: path, log: log, alsoAllowed: ["type"])
        var c = OpenAITeacherConfig(baseURL: "http://127.0.0.1:8080/v1", model: "model")
        if let url = r.string(.baseURL) {
            c.baseURL = url
        } else if !r.has(.baseURL) {
            r.missing(.baseURL, hint: "the API root, e.g. \"http://127.0.0.1:8080/v1\"")
        }
        if let model = r.string(.model) { c.model = model } else if !r.has(.model) { r.missing(.model) }
        r.read(.endpoint, into: &c.endpoint)
        if let env = r.string(.apiKeyEnv) { c.apiKeyEnv = env }
        r.read(.samples, into: &c.samples)
        r.read(.seed, into: &c.seed)
        r.read(.temperature, into: &c.temperature)
        r.read(.topP, into: &c.topP)
        r.read(.maxTokens, into: &c.maxTokens)
        r.read(.logprobs, into: &c.logprobs)
        r.read(.concurrency, into: &c.concurrency)
        r.read(.timeoutSeconds, into: &c.timeoutSeconds)
        r.read(.maxAttempts, into: &c.maxAttempts)
        r.read(.backoffBaseSeconds, into: &c.backoffBaseSeconds)
        r.read(.backoffMaxSeconds, into: &c.backoffMaxSeconds)
        r.read(.maxRetryAfterSeconds, into: &c.maxRetryAfterSeconds)
        logProblems(c.problems(), known: keys(OpenAITeacherConfig.CodingKeys.self), path: path, log: log)
        return .openai(c)
    case .checkpoint:
        let r = ObjectReader<CheckpointTeacherConfig.CodingKeys>(v, path: path, log: log, alsoAllowed: ["type"])
        var c = CheckpointTeacherConfig(checkpoint: "")
        if let ck = r.string(.checkpoint) {
            if ck.isEmpty { log.add(.rule("must not be empty"), at: r.path(.checkpoint)) } else { c.checkpoint = ck }
        }
        r.read(.samples, into: &c.samples)
        r.read(.seed, into: &c.seed)
        r.read(.temperature, into: &c.temperature)
        r.read(.topP, into: &c.topP)
        r.read(.topK, into: &c.topK)
        r.read(.maxTokens, into: &c.maxTokens)
        if let stop = r.strings(.stop, acceptSingle: true) { c.stop = stop }
        r.read(.logprobs, into: &c.logprobs)
        r.read(.batchSize, into: &c.batchSize)
        r.read(.template, into: &c.template)
        r.read(.weights, into: &c.weights)
        r.read(.grammar, into: &c.grammar)
        let problems = c.problems().filter { !$0.hasPrefix("checkpoint ") }  // defaulted in pass 2
        logProblems(problems, known: keys(CheckpointTeacherConfig.CodingKeys.self), path: path, log: log)
        return .checkpoint(c)
    case .command:
        let r = ObjectReader<CommandTeacherConfig.CodingKeys>(v, path: path, log: log, alsoAllowed: ["type"])
        var c = CommandTeacherConfig(command: [])
        let argv = r.strings(.command, acceptSingle: false)
        if let argv {
            c.command = argv
        } else if !r.has(.command) {
            r.missing(.command, hint: "the program's argv, e.g. [\"python3\", \"teacher.py\"]")
        }
        r.read(.samples, into: &c.samples)
        r.read(.seed, into: &c.seed)
        r.read(.timeoutSeconds, into: &c.timeoutSeconds)
        r.read(.concurrency, into: &c.concurrency)
        r.read(.maxAttempts, into: &c.maxAttempts)
        r.read(.template, into: &c.template)
        // A missing or mistyped command is reported above.
        let problems = argv != nil ? c.problems() : c.problems().filter { !$0.hasPrefix("command ") }
        logProblems(problems, known: keys(CommandTeacherConfig.CodingKeys.self), path: path, log: log)
        return .command(c)
    }
}

func readVerifier(_ v: JSONValue, path: String, log: IssueLog) -> VerifierConfig {
    let r = ObjectReader<VerifierConfig.CodingKeys>(v, path: path, log: log)
    var c = VerifierConfig()
    r.read(.type, into: &c.type)
    r.read(.extract, into: &c.extract)
    if let p = r.string(.extractPattern) { c.extractPattern = p }
    r.read(.caseSensitive, into: &c.caseSensitive)
    r.read(.mode, into: &c.mode)
    r.read(.types, into: &c.types)
    if let p = r.string(.pattern) { c.pattern = p }
    if let argv = r.strings(.command) { c.command = argv }
    r.read(.input, into: &c.input)
    r.read(.timeoutSeconds, into: &c.timeoutSeconds)
    logProblems(c.problems(), known: keys(VerifierConfig.CodingKeys.self), path: path, log: log)
    return c
}

/// A `teacher_prompt` object: {"system"?, "examples"?, "tools_in"?}.
func readTeacherPrompt(_ v: JSONValue, path: String, log: IssueLog) -> TeacherPrompt {
    let r = ObjectReader<TeacherPrompt.CodingKeys>(v, path: path, log: log)
    var p = TeacherPrompt()
    if let system = r.string(.system) { p.system = system }
    if let examples = r.string(.examples) {
        if examples.isEmpty { log.add(.rule("must not be empty"), at: r.path(.examples)) } else { p.examples = examples }
    }
    r.read(.toolsIn, into: &p.toolsIn)
    r.read(.toolsFormat, into: &p.toolsFormat)
    for problem in p.problems() { log.add(.rule(problem), at: path) }
    return p
}
