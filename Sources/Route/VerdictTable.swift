// Verdict tables (docs/routing.md): for every task, what each model sampled on it answered.
// One JSONL file: a header line naming the models, then one row per task with, per model, the
// samples in seed order (correct or not, partial credit, the verifier's canonical answer, tokens in and out,
// latency, token log-probability mean, minimum and quantiles). Routers, cascades and vote analyses read
// only this table, so they never depend on which stage or run produced the samples.

import Core
import Foundation
import JSON
import Platform

/// One sample of one model on one task. Every optional is nil when its source did not record it
/// (files written before the field existed, teachers that report no token counts or log-probabilities).
package struct SampleVerdict: Sendable, Equatable {
    package var correct: Bool
    /// The verifier's partial credit in 0...1 (docs/teacher.md, *Partial credit*); nil in files
    /// written before verdicts carried it (`distill verdicts build --reverify` fills it).
    package var credit: Double?
    /// The verifier's canonical answer (docs/evaluation.md, *Canonical answers*); nil when none
    /// could be read.
    package var answer: String?
    /// Tokens of the rendered prompt, and tokens generated.
    package var tokensIn: Int?
    package var tokensOut: Int?
    /// Seconds of the call (for the built-in engine, of the batch it was generated in).
    package var latency: Double?
    /// Mean and minimum log-probability of the generated tokens.
    package var logprobMean: Double?
    package var logprobMin: Double?
    /// The 10% and 25% quantiles and the median of the generated tokens' log-probabilities
    /// (Core's `quantile`: linear between order statistics); nil in tables written before them.
    package var logprobQ10: Double?
    package var logprobQ25: Double?
    package var logprobMedian: Double?

    package init(
        correct: Bool, answer: String?, credit: Double? = nil, tokensIn: Int? = nil, tokensOut: Int? = nil,
        latency: Double? = nil, logprobMean: Double? = nil, logprobMin: Double? = nil
    ) {
        self.correct = correct
        self.answer = answer
        self.credit = credit
        self.tokensIn = tokensIn
        self.tokensOut = tokensOut
        self.latency = latency
        self.logprobMean = logprobMean
        self.logprobMin = logprobMin
    }

    /// This sample with the mean, minimum, 10% and 25% quantiles and median of a completion's
    /// token log-probabilities (all nil for none).
    package func withLogprobs(_ logprobs: [Double]?) -> SampleVerdict {
        var s = self
        guard let logprobs, !logprobs.isEmpty else { return s }
        let sorted = logprobs.sorted()
        s.logprobMean = logprobs.reduce(0, +) / Double(logprobs.count)
        s.logprobMin = sorted[0]
        (s.logprobQ10, s.logprobQ25, s.logprobMedian) = (
            quantile(sorted: sorted, 0.1), quantile(sorted: sorted, 0.25), quantile(sorted: sorted, 0.5)
        )
        return s
    }
}

/// One model's samples on one task, in seed order.
package struct ModelCell: Sendable, Equatable {
    package var samples: [SampleVerdict]

    package init(samples: [SampleVerdict]) { self.samples = samples }

    /// Samples n, and correct ones c.
    package var n: Int { samples.count }
    package var c: Int { samples.filter(\.correct).count }
    /// c / n (0 without samples).
    package var passRate: Double { n == 0 ? 0 : Double(c) / Double(n) }
    /// The samples' mean credit; nil without samples or when one lacks credit.
    package var meanCredit: Double? {
        let credits = samples.compactMap(\.credit)
        guard n > 0, credits.count == n else { return nil }
        return credits.reduce(0, +) / Double(n)
    }
}

/// One task: its id, its request text when the task file could be read, and the models sampled on it.
package struct VerdictRow: Sendable, Equatable {
    package var taskID: String
    /// The task's prompt, or for a conversation its last user message.
    package var prompt: String?
    /// By model name; a model not sampled on this task is absent.
    package var models: [String: ModelCell]

    package init(taskID: String, prompt: String?, models: [String: ModelCell]) {
        self.taskID = taskID
        self.prompt = prompt
        self.models = models
    }
}

/// A model of the table: where its verdicts come from and what is known about it.
package struct VerdictModel: Sendable, Equatable, Codable {
    /// Unique in the table: an eval arm's name, a sample stage's folder, prefixed with the run
    /// directory's name when two sources would share it.
    package var name: String
    /// `eval` (an arm of a task evaluation) or `sample` (the teacher of a sample stage).
    package var kind: String
    /// The file its samples were read from.
    package var source: String
    /// The task file, when known.
    package var tasks: String?
    /// The model checksum (`xxh64:…`) of an eval arm, or the teacher's name (`checkpoint xxh64:…`,
    /// `openai MODEL at URL`) of a sample stage.
    package var identity: String?
    /// Parameter count, when the source records it (eval reports do since docs/routing.md).
    package var parameters: Int?

    package init(
        name: String, kind: String, source: String, tasks: String? = nil, identity: String? = nil,
        parameters: Int? = nil
    ) {
        self.name = name
        self.kind = kind
        self.source = source
        self.tasks = tasks
        self.identity = identity
        self.parameters = parameters
    }
}

package struct VerdictTable: Sendable, Equatable {
    /// The header line's marker and the format's version.
    package static let marker = "distill_verdicts"
    package static let version = 1

    package var models: [VerdictModel]
    /// In the order tasks were first met.
    package var rows: [VerdictRow]

    package init(models: [VerdictModel], rows: [VerdictRow]) {
        self.models = models
        self.rows = rows
    }

    /// The model named `name`, or a usage error listing the table's models.
    package func model(_ name: String, option: String) throws -> VerdictModel {
        if let m = models.first(where: { $0.name == name }) { return m }
        throw UserError(
            path: option, problem: "no model \"\(name)\" in the verdict table",
            fix: "choose one of " + models.map { "\"\($0.name)\"" }.joined(separator: ", "), kind: .usage)
    }

    // MARK: Writing

    /// The file's text: the header line, then one line per task (compact JSON, keys in a fixed
    /// order, models in the header's order).
    package func jsonl() -> String {
        let header = JSONValue.object(
            JSONValue.JSONObject([
                (Self.marker, .int(Self.version)),
                ("models", .array(models.map(Self.modelJSON))),
            ]))
        var out = header.compact() + "\n"
        for row in rows {
            let cells = models.compactMap { m in row.models[m.name].map { (key: m.name, value: Self.cellJSON($0)) } }
            let line = JSONValue.object(
                JSONValue.JSONObject([
                    ("task_id", .string(row.taskID)), ("prompt", row.prompt.map { .string($0) } ?? .null),
                    ("models", .object(JSONValue.JSONObject(cells))),
                ]))
            out += line.compact() + "\n"
        }
        return out
    }

    private static func modelJSON(_ m: VerdictModel) -> JSONValue {
        .object(
            JSONValue.JSONObject([
                ("name", .string(m.name)), ("kind", .string(m.kind)), ("source", .string(m.source)),
                ("tasks", m.tasks.map { .string($0) } ?? .null), ("identity", m.identity.map { .string($0) } ?? .null),
                ("parameters", m.parameters.map { .int($0) } ?? .null),
            ]))
    }

    private static func cellJSON(_ cell: ModelCell) -> JSONValue {
        func int(_ x: Int?) -> JSONValue { x.map { .int($0) } ?? .null }
        func double(_ x: Double?) -> JSONValue { x.map { .double($0) } ?? .null }
        let samples = cell.samples.map { s in
            JSONValue.object(
                JSONValue.JSONObject([
                    ("correct", .bool(s.correct)), ("answer", s.answer.map { .string($0) } ?? .null),
                    ("credit", double(s.credit)),
                    ("tokens_in", int(s.tokensIn)), ("tokens_out", int(s.tokensOut)), ("latency", double(s.latency)),
                    ("logprob_mean", double(s.logprobMean)), ("logprob_min", double(s.logprobMin)),
                    ("logprob_q10", double(s.logprobQ10)), ("logprob_q25", double(s.logprobQ25)),
                    ("logprob_median", double(s.logprobMedian)),
                ]))
        }
        return .object(JSONValue.JSONObject([("n", .int(cell.n)), ("c", .int(cell.c)), ("samples", .array(samples))]))
    }

    // MARK: Reading

    /// Reads a verdict table. Throws `DataError` naming the file, line and JSON path of the first
    /// problem (exit 65), or `.io` when the file cannot be read (74).
    package static func read(path: String) throws -> VerdictTable {
        var models: [VerdictModel]? = nil
        var rows: [VerdictRow] = []
        var seen: [String: Int] = [:]
        let rebuild = "rebuild it with `distill verdicts build`"
        try JSONLReader.forEach(path: path) { record in
            let root = JSONNode(.object(record.object), path: "")
            guard let known = models else {
                guard root.has(marker) else {
                    throw record.error(
                        "the first line is not a verdict table header (no \"\(marker)\" field)",
                        hint: "give a file written by `distill verdicts build`")
                }
                models = try node(record, hint: rebuild) {
                    let version = try root[marker].int()
                    guard version == Self.version else {
                        throw JSONShapeError(
                            path: marker, reason: "version \(version); this distill reads version \(Self.version)")
                    }
                    return try root["models"].array().map { m in
                        VerdictModel(
                            name: try m["name"].string(), kind: try m["kind"].string(),
                            source: try m["source"].string(),
                            tasks: try m["tasks"].optionalString(), identity: try m["identity"].optionalString(),
                            parameters: m["parameters"].isNull ? nil : try m["parameters"].int())
                    }
                }
                var names = Set<String>()
                for m in models! where !names.insert(m.name).inserted {
                    throw record.error("model \"\(m.name)\" is listed twice", at: "models", hint: rebuild)
                }
                return
            }
            let row = try node(record, hint: rebuild) {
                let id = try root["task_id"].string()
                var cells: [String: ModelCell] = [:]
                for (name, cell) in try root["models"].object() {
                    guard known.contains(where: { $0.name == name }) else {
                        throw JSONShapeError(path: cell.path, reason: "model \"\(name)\" is not in the header")
                    }
                    cells[name] = try readCell(cell)
                }
                return VerdictRow(taskID: id, prompt: try root["prompt"].optionalString(), models: cells)
            }
            if let first = seen[row.taskID] {
                throw record.error(
                    "task \"\(row.taskID)\" has a second row (the first is line \(first))", at: "task_id", hint: rebuild
                )
            }
            seen[row.taskID] = record.line
            rows.append(row)
        }
        guard let models else {
            throw DataError.malformed(
                file: path, line: 1, column: 1, reason: "empty file: no verdict table header",
                hint: "give a file written by `distill verdicts build`")
        }
        return VerdictTable(models: models, rows: rows)
    }

    /// A recorded credit: null (or absent, in files written before it was) or a number in 0...1.
    static func credit(_ n: JSONNode) throws -> Double? {
        guard !n.isNull else { return nil }
        let c = try n.double()
        guard (0...1).contains(c) else { throw JSONShapeError(path: n.path, reason: "credit \(c) is outside 0...1") }
        return c
    }

    private static func readCell(_ cell: JSONNode) throws -> ModelCell {
        func int(_ n: JSONNode) throws -> Int? { n.isNull ? nil : try n.int() }
        func double(_ n: JSONNode) throws -> Double? { n.isNull ? nil : try n.double() }
        let samples = try cell["samples"].array().map { s in
            var sample = SampleVerdict(
                correct: try s["correct"].bool(), answer: try s["answer"].optionalString(),
                credit: try credit(s["credit"]), tokensIn: try int(s["tokens_in"]),
                tokensOut: try int(s["tokens_out"]), latency: try double(s["latency"]),
                logprobMean: try double(s["logprob_mean"]), logprobMin: try double(s["logprob_min"]))
            // Absent from tables written before the quantiles were recorded: null.
            (sample.logprobQ10, sample.logprobQ25, sample.logprobMedian) = (
                try double(s["logprob_q10"]), try double(s["logprob_q25"]), try double(s["logprob_median"])
            )
            return sample
        }
        let out = ModelCell(samples: samples)
        // n and c are there for people and other tools; they must agree with the samples.
        if cell.has("n"), try cell["n"].int() != out.n {
            throw JSONShapeError(
                path: cell["n"].path, reason: "says \(try cell["n"].int()) samples, the list has \(out.n)")
        }
        if cell.has("c"), try cell["c"].int() != out.c {
            throw JSONShapeError(
                path: cell["c"].path, reason: "says \(try cell["c"].int()) correct, the list has \(out.c)")
        }
        return out
    }
}

/// Runs `body` on a record's root, turning a JSON shape error into one naming file:line and the
/// JSON path.
func node<T>(_ record: JSONLRecord, hint: String, _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let e as JSONShapeError {
        throw record.error("\(e.path): \(e.reason)", hint: hint)
    }
}
