// `distill verdicts build`: a verdict table from the files earlier runs wrote. Two kinds of
// source carry samples per task:
//
// - a task evaluation (the eval stage with `tasks`, `distill eval --tasks --out`):
//   `NAME.tasks.jsonl`, one row per arm and task, beside its report `NAME.json` (arms, model
//   checksums, parameter counts, the task file); every arm is a model of the table;
// - a sample stage: `samples.jsonl`, one row per sample; the stage's teacher is one model,
//   named after the stage's output folder; the task file comes from run.json's recipe.
//
// - a decision log of `distill serve` (`--decision-log`), given as a file, with the task file
//   its requests came from (`--tasks`): every routed model (`cascade:...`, `route:NAME@P`) is a
//   model of the table; a logged request is matched to the task whose request text (the prompt,
//   or a conversation's last user message) it sent, and its answer verified again.
//
// Fields older files lack (canonical answers in samples.jsonl, prompt tokens and latency in
// eval rows, parameter counts) are read as null. Failed teacher calls are left out.

import Foundation
import JSON
import Platform
import Verify

package enum VerdictSources {
    /// One file of samples found under a run directory.
    package struct Source: Sendable, Equatable {
        package enum Kind: String, Sendable { case eval, sample, decisions }
        package var kind: Kind
        /// `NAME.tasks.jsonl` or `samples.jsonl`.
        package var rows: String
        /// The eval report beside an eval's rows.
        package var report: String?
        /// The directory given on the command line, for names that would collide.
        package var runDirectory: String

        /// What a model's name is prefixed with when another source has a model of that name:
        /// the run directory's folder name, then for an eval in a subfolder that subfolder, and
        /// for a report not named eval.json its name (`run/cmp/base`, `run/other/base`).
        var prefix: String {
            var parts = [(runDirectory as NSString).lastPathComponent]
            if kind == .eval {
                let folder = (rows as NSString).deletingLastPathComponent
                if folder != runDirectory, folder.hasPrefix(runDirectory + "/") {
                    parts.append(String(folder.dropFirst(runDirectory.count + 1)))
                }
                let stem = String((rows as NSString).lastPathComponent.dropLast(".tasks.jsonl".count))
                if stem != "eval" { parts.append(stem) }
            }
            return parts.joined(separator: "/")
        }
    }

    /// The sources in `path`: a rows file itself, or a directory and its direct subfolders.
    /// Throws a usage error when there are none and an io error when `path` does not exist.
    package static func discover(_ path: String) throws -> [Source] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw UserError(path: path, problem: "no such file or directory", kind: .io)
        }
        if !isDir.boolValue {
            let dir = (path as NSString).deletingLastPathComponent
            if let source = source(file: path, runDirectory: dir.isEmpty ? "." : dir) { return [source] }
            if isDecisionLog(path) { return [Source(kind: .decisions, rows: path, report: nil, runDirectory: dir.isEmpty ? "." : dir)] }
            throw UserError(
                path: path, problem: "not a sample or evaluation rows file, nor a decision log",
                fix: "give samples.jsonl, an eval's NAME.tasks.jsonl, the run directory holding them, or distill serve's --decision-log",
                kind: .usage)
        }
        var found: [Source] = []
        var folders = [path]
        let entries = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
        for entry in entries where !entry.hasPrefix(".") {
            var sub: ObjCBool = false
            let full = (path as NSString).appendingPathComponent(entry)
            if FileManager.default.fileExists(atPath: full, isDirectory: &sub), sub.boolValue { folders.append(full) }
        }
        for folder in folders {
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).sorted()
            for file in files {
                if let s = source(file: (folder as NSString).appendingPathComponent(file), runDirectory: path) {
                    found.append(s)
                }
            }
        }
        guard !found.isEmpty else {
            throw UserError(
                path: path,
                problem:
                    "no samples.jsonl and no evaluation rows (NAME.tasks.jsonl beside NAME.json) here or in its folders",
                fix: "give the run directory of a recipe with a sample stage or an eval stage with tasks", kind: .usage)
        }
        return found
    }

    private static func source(file: String, runDirectory: String) -> Source? {
        let name = (file as NSString).lastPathComponent
        if name == "samples.jsonl" { return Source(kind: .sample, rows: file, report: nil, runDirectory: runDirectory) }
        if name.hasSuffix(".tasks.jsonl") {
            let report = String(file.dropLast(".tasks.jsonl".count)) + ".json"
            if FileManager.default.fileExists(atPath: report) {
                return Source(kind: .eval, rows: file, report: report, runDirectory: runDirectory)
            }
        }
        return nil
    }

    /// True when the file's first line is a decision of `distill serve` (an object whose
    /// `request` names its `route`).
    static func isDecisionLog(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        let head = handle.readData(ofLength: 1 << 16)
        let line = head.prefix { $0 != UInt8(ascii: "\n") }
        guard let value = try? JSONValue.parse(Array(line)) else { return false }
        return (try? JSONNode(value, path: "")["request"]["route"].string()) != nil
    }

    /// The table built from every source under `paths`, in the order given, with notes on what
    /// was missing (prompt texts, failed calls). `progress` gets a line per source. Decision
    /// logs are judged against `tasks` (required when a path is one).
    package static func build(
        paths: [String], tasks: String? = nil, reverify: Bool = false, progress: (String) -> Void = { _ in }
    ) throws -> (
        table: VerdictTable, notes: [String]
    ) {
        let sources = try paths.flatMap(discover)
        var parts: [(model: VerdictModel, prefix: String, cells: [(task: String, cell: ModelCell)])] = []
        var notes: [String] = []
        for source in sources {
            switch source.kind {
            case .eval:
                let read = try readEval(source, reverify: reverify)
                progress("\(source.rows): \(read.count) arms, \(read.first?.cells.count ?? 0) tasks each")
                parts += read.map { ($0.model, source.prefix, $0.cells) }
            case .sample:
                let read = try readSamples(source, reverify: reverify)
                progress("\(source.rows): \(read.cells.count) tasks")
                if read.failed > 0 {
                    notes.append("\(source.rows): \(read.failed) failed teacher calls left out (no answer to judge)")
                }
                parts.append((read.model, source.prefix, read.cells))
            case .decisions:
                guard let tasks else {
                    throw UserError(
                        path: source.rows, problem: "is a decision log, whose answers need their tasks to be judged",
                        fix: "give the task file its requests came from with --tasks T.jsonl", kind: .usage)
                }
                let read = try readDecisions(source, tasks: tasks)
                progress("\(source.rows): \(read.models.count) routed models, \(read.lines) decisions")
                if read.unmatched > 0 {
                    notes.append("\(source.rows): \(read.unmatched) decisions whose prompt is no task's in \(tasks), left out")
                }
                parts += read.models.map { ($0.model, source.prefix, $0.cells) }
            }
        }
        // Names that several sources share take their source's prefix.
        var count: [String: Int] = [:]
        for p in parts { count[p.model.name, default: 0] += 1 }
        for i in parts.indices where count[parts[i].model.name]! > 1 {
            parts[i].model.name = parts[i].prefix + "/" + parts[i].model.name
        }
        var names = Set<String>()
        for p in parts where !names.insert(p.model.name).inserted {
            throw UserError(
                path: p.model.source, problem: "a second model named \"\(p.model.name)\"",
                fix: "give run directories with different names, or the same run directory once", kind: .usage)
        }
        // Rows in the order tasks were first met; prompts from the models' task files.
        var rows: [VerdictRow] = []
        var index: [String: Int] = [:]
        for p in parts {
            for (task, cell) in p.cells {
                if index[task] == nil {
                    index[task] = rows.count
                    rows.append(VerdictRow(taskID: task, prompt: nil, models: [:]))
                }
                rows[index[task]!].models[p.model.name] = cell
            }
        }
        var prompts: [String: String] = [:]
        for file in Set(parts.compactMap(\.model.tasks)).sorted() {
            do {
                for task in try TaskReader.read(path: file) where prompts[task.id] == nil {
                    prompts[task.id] = requestText(task.prompt)
                }
            } catch {
                notes.append("\(file): not read (\(error)); its tasks have no prompt text")
            }
        }
        for i in rows.indices { rows[i].prompt = prompts[rows[i].taskID] }
        let missing = rows.filter { $0.prompt == nil }.count
        if missing > 0 {
            notes.append("\(missing) of \(rows.count) tasks have no prompt text (task file unknown or unreadable)")
        }
        return (VerdictTable(models: parts.map(\.model), rows: rows), notes)
    }

    /// The request a router sees: the prompt, or a conversation's last user message.
    static func requestText(_ prompt: TaskPrompt) -> String {
        switch prompt {
        case .text(let s): return s
        case .messages(let messages): return messages.last(where: { $0.role == "user" })?.content ?? ""
        }
    }

    /// A task id as rows write it: a string, or an integer.
    private static func taskID(_ n: JSONNode) throws -> String {
        if case .int(let i) = n.value { return String(i) }
        return try n.string()
    }

    private static func int(_ n: JSONNode) throws -> Int? { n.isNull ? nil : try n.int() }
    private static func double(_ n: JSONNode) throws -> Double? { n.isNull ? nil : try n.double() }
    private static func logprobs(_ n: JSONNode) throws -> [Double]? {
        n.isNull ? nil : try n.array().map { try $0.double() }
    }

    /// An eval's arms, each with its cells in task order.
    static func readEval(_ source: Source, reverify: Bool = false) throws -> [(model: VerdictModel, cells: [(task: String, cell: ModelCell)])] {
        let reportPath = source.report!
        let text: String
        do {
            text = try String(contentsOfFile: reportPath, encoding: .utf8)
        } catch {
            throw UserError(path: reportPath, problem: "cannot be read: \(error.localizedDescription)", kind: .io)
        }
        let fix = "give the eval report the rows were written with (`NAME.json` beside `NAME.tasks.jsonl`)"
        let report: JSONNode
        do {
            report = JSONNode(try JSONValue.parse(Array(text.utf8)), path: "")
        } catch {
            throw UserError(path: reportPath, problem: "not JSON: \(error)", fix: fix, kind: .badData)
        }
        var arms: [(model: VerdictModel, cells: [(task: String, cell: ModelCell)])] = []
        let rejudge = reverify
            ? try Rejudge(source: reportPath, tasks: try? report["tasks"].optionalString(), verifier: report.has("verifier") ? report["verifier"] : nil)
            : nil
        do {
            let tasks = try report["tasks"].optionalString()
            for arm in try report["arms"].array() {
                arms.append(
                    (
                        VerdictModel(
                            name: try arm["name"].string(), kind: "eval", source: source.rows, tasks: tasks,
                            identity: try arm["checksum"].optionalString(), parameters: try int(arm["parameters"])),
                        []
                    ))
            }
        } catch let e as JSONShapeError {
            throw UserError(path: "\(reportPath): \(e.path)", problem: e.reason, fix: fix, kind: .badData)
        }
        try JSONLReader.forEach(path: source.rows) { record in
            let root = JSONNode(.object(record.object), path: "")
            let hint = "give rows written by an eval with tasks (docs/evaluation.md, *Outputs*)"
            let (arm, task, cell) = try node(record, hint: hint) {
                let task = try taskID(root["task_id"])
                let samples = try root["samples"].array().map { s in
                    let sample = SampleVerdict(
                        correct: try s["correct"].bool(), answer: try s["canonical"].optionalString(),
                        credit: try VerdictTable.credit(s["credit"]),
                        tokensIn: try int(s["prompt_tokens"]), tokensOut: try int(s["tokens"]),
                        latency: try double(s["latency"])
                    ).withLogprobs(try logprobs(s["logprobs"]))
                    return try rejudge?.judge(sample, text: try s["text"].string(), task: task, record: record) ?? sample
                }
                return (try root["arm"].string(), task, ModelCell(samples: samples))
            }
            guard let a = arms.firstIndex(where: { $0.model.name == arm }) else {
                throw record.error("arm \"\(arm)\" is not in \(reportPath)", at: "arm", hint: fix)
            }
            arms[a].cells.append((task, cell))
        }
        return arms
    }

    /// A decision log's routed models, each with its answers verified against the task their
    /// prompt matches (the auto verifier, as the eval stage's default), in task order; the
    /// decisions read, and those matching no task.
    static func readDecisions(_ source: Source, tasks path: String) throws -> (
        models: [(model: VerdictModel, cells: [(task: String, cell: ModelCell)])], lines: Int, unmatched: Int
    ) {
        let rejudge = try Rejudge(source: source.rows, tasks: path, verifier: nil)
        var byPrompt: [String: TeacherTask] = [:]
        for task in rejudge.ordered where byPrompt[requestText(task.prompt)] == nil { byPrompt[requestText(task.prompt)] = task }
        var models: [(model: VerdictModel, cells: [(task: String, cell: ModelCell)])] = []
        var lines = 0, unmatched = 0
        let hint = "give a decision log written by distill serve --decision-log (docs/serving.md)"
        try JSONLReader.forEach(path: source.rows) { record in
            let root = JSONNode(.object(record.object), path: "")
            let (route, prompt, text, sample) = try node(record, hint: hint) {
                let teacherTokens = try int(root["teacher_usage"]["completion_tokens"])
                return (
                    try root["request"]["route"].string(), try root["prompt"].string(), try root["text"].optionalString(),
                    SampleVerdict(
                        correct: false, answer: nil, tokensIn: try int(root["prompt_tokens"]),
                        tokensOut: try int(root["student_completion_tokens"]).map { $0 + (teacherTokens ?? 0) },
                        latency: try double(root["latency_s"]))
                )
            }
            lines += 1
            guard let task = byPrompt[prompt] else {
                unmatched += 1
                return
            }
            // An answer the server could not read (null) stays wrong, with no canonical form.
            let judged = try text.map { try rejudge.judge(sample, text: $0, task: task.id, record: record) } ?? sample
            if !models.contains(where: { $0.model.name == route }) {
                models.append(
                    (VerdictModel(name: route, kind: "served", source: source.rows, tasks: path, identity: route), []))
            }
            let m = models.firstIndex { $0.model.name == route }!
            if let c = models[m].cells.firstIndex(where: { $0.task == task.id }) {
                models[m].cells[c].cell.samples.append(judged)
            } else {
                models[m].cells.append((task.id, ModelCell(samples: [judged])))
            }
        }
        return (models, lines, unmatched)
    }

    /// A sample stage's teacher and its cells in task order, and the failed calls left out.
    static func readSamples(_ source: Source, reverify: Bool = false) throws -> (
        model: VerdictModel, cells: [(task: String, cell: ModelCell)], failed: Int
    ) {
        let folder = (source.rows as NSString).deletingLastPathComponent
        let stage = sampleStage(runDirectory: source.runDirectory, output: folder)
        let rejudge = reverify
            ? try Rejudge(source: source.rows, tasks: try? stage?["tasks"].string(), verifier: stage?["verifier"]) : nil
        var cells: [(task: String, cell: ModelCell)] = []
        var index: [String: Int] = [:]
        var teacher: String?
        var failed = 0
        let hint = "give a samples.jsonl written by a sample stage (docs/teacher.md, *Outputs*)"
        try JSONLReader.forEach(path: source.rows) { record in
            let root = JSONNode(.object(record.object), path: "")
            let parsed: (task: String, sample: SampleVerdict?) = try node(record, hint: hint) {
                if teacher == nil { teacher = try root["teacher"].optionalString() }
                let task = try taskID(root["task_id"])
                if root.has("error") { return (task, nil) }
                return (
                    task,
                    SampleVerdict(
                        correct: try root["correct"].bool(), answer: try root["canonical"].optionalString(),
                        credit: try VerdictTable.credit(root["credit"]),
                        tokensIn: try int(root["prompt_tokens"]), tokensOut: try int(root["completion_tokens"]),
                        latency: try double(root["latency"])
                    ).withLogprobs(try logprobs(root["logprobs"]))
                )
            }
            guard var sample = parsed.sample else {
                failed += 1
                return
            }
            if let rejudge {
                let text = try node(record, hint: hint) { try root["text"].string() }
                sample = try rejudge.judge(sample, text: text, task: parsed.task, record: record)
            }
            if index[parsed.task] == nil {
                index[parsed.task] = cells.count
                cells.append((parsed.task, ModelCell(samples: [])))
            }
            cells[index[parsed.task]!].cell.samples.append(sample)
        }
        // stats.json beside it gives a checkpoint teacher's parameter count (since docs/routing.md).
        let stats = (folder as NSString).appendingPathComponent("stats.json")
        let parameters = (try? String(contentsOfFile: stats, encoding: .utf8))
            .flatMap { try? JSONValue.parse(Array($0.utf8)) }
            .flatMap { try? JSONNode($0, path: "")["teacher_parameters"].int() }
        let model = VerdictModel(
            name: (folder as NSString).lastPathComponent, kind: "sample", source: source.rows,
            tasks: try? stage?["tasks"].string(), identity: teacher,
            parameters: parameters)
        return (model, cells, failed)
    }

    /// The task file of the sample stage whose output is `output`, from run.json's recipe.
    static func sampleTasks(runDirectory: String, output: String) -> String? {
        try? sampleStage(runDirectory: runDirectory, output: output)?["tasks"].string()
    }

    /// The recipe's sample stage whose output is `output`, from run.json.
    static func sampleStage(runDirectory: String, output: String) -> JSONNode? {
        let runJSON = (runDirectory as NSString).appendingPathComponent("run.json")
        guard let text = try? String(contentsOfFile: runJSON, encoding: .utf8),
            let state = try? JSONValue.parse(Array(text.utf8)),
            let recipeText = try? JSONNode(state, path: "")["recipe"].string(),
            let recipe = try? JSONValue.parse(Array(recipeText.utf8)),
            let stages = try? JSONNode(recipe, path: "")["stages"].array()
        else { return nil }
        let name = (output as NSString).lastPathComponent
        for stage in stages {
            guard (try? stage["type"].string()) == "sample", let out = try? stage["output"].string(),
                (out as NSString).lastPathComponent == name
            else { continue }
            return stage
        }
        return nil
    }

    /// Today's verdicts on recorded texts (`--reverify`): the task file and verifier settings
    /// a source was judged with, applied again, so that samples written before canonical
    /// answers (or before a verifier fix) read as today's verifiers read them.
    struct Rejudge {
        /// The task file's tasks, in file order, and by id.
        let ordered: [TeacherTask]
        let tasks: [String: TeacherTask]
        let verifier: Verifier

        /// `tasks` is nil when the source does not record its task file.
        init(source: String, tasks path: String?, verifier settings: JSONNode?) throws {
            guard let path else {
                throw UserError(
                    path: source, problem: "cannot be judged again: its task file is not recorded (run.json or the eval report)",
                    fix: "leave out --reverify, or give the run directory with its run.json", kind: .usage)
            }
            ordered = try TaskReader.read(path: path)
            var byID: [String: TeacherTask] = [:]
            for task in ordered { byID[task.id] = task }
            tasks = byID
            var config = VerifierConfig()
            if let settings, !settings.isNull {
                do {
                    config = try JSONDecoder().decode(VerifierConfig.self, from: Data(settings.value.compact().utf8))
                } catch {
                    throw UserError(path: source, problem: "its verifier settings cannot be read: \(error)", kind: .badData)
                }
            }
            verifier = Verifier(config)
        }

        /// `sample` with its correctness, canonical answer and credit from today's verifier.
        func judge(_ sample: SampleVerdict, text: String, task: String, record: JSONLRecord) throws -> SampleVerdict {
            guard let t = tasks[task] else {
                throw record.error("task \"\(task)\" is not in the task file", at: "task_id", hint: "give the task file the samples were drawn from")
            }
            let verdict = verifier.verify(text, for: t)
            var judged = sample
            (judged.correct, judged.answer, judged.credit) = (verdict.correct, verdict.canonical, verdict.credit)
            return judged
        }
    }
}
