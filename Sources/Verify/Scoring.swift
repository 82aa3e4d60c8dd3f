import Foundation
import JSON

/// `distill verify`: scores completions already on disk with the same verifiers the sampling
/// stage uses (and eval will use).
///
/// Outputs are JSONL rows naming their task by `id` (or `task_id`, as samples.jsonl writes it)
/// and carrying the completion as `completion` (or `text`). Several rows may name one task
/// (k samples); tasks without rows are counted, not errors.
package struct VerifyReport: Sendable, Codable, Equatable {
    package struct Row: Sendable, Codable, Equatable {
        /// Line in the outputs file.
        package var line: Int
        package var id: String
        package var verifier: String
        package var correct: Bool
        package var reason: String
    }

    package struct Summary: Sendable, Codable, Equatable {
        package var outputs: Int
        package var correct: Int
        /// correct / outputs (0 when there are none).
        package var passRate: Double
        /// Tasks with at least one output.
        package var tasksScored: Int
        /// Tasks with at least one correct output.
        package var tasksSolved: Int
        /// Tasks in the task file without any output.
        package var tasksWithoutOutputs: Int
        /// Mean over scored tasks of the fraction of its outputs that are correct (pass@1).
        package var passAt1: Double

        enum CodingKeys: String, CodingKey {
            case outputs, correct
            case passRate = "pass_rate"
            case tasksScored = "tasks_scored"
            case tasksSolved = "tasks_solved"
            case tasksWithoutOutputs = "tasks_without_outputs"
            case passAt1 = "pass_at_1"
        }
    }

    package var rows: [Row]
    package var summary: Summary

    /// Reads both files, checks the verifier's requirements on the tasks that have outputs,
    /// verifies every row. Throws `DataError` naming file:line:column for bad rows or ids.
    package static func score(tasksPath: String, outputsPath: String, verifier: Verifier) throws -> VerifyReport {
        let tasks = try TaskReader.read(path: tasksPath)
        var byID: [String: TeacherTask] = [:]
        for task in tasks { byID[task.id] = task }
        var pending: [(line: Int, task: TeacherTask, completion: String)] = []
        try JSONLReader.forEach(path: outputsPath) { record in
            let idKey = record.value("id") != nil ? "id" : "task_id"
            let id: String
            switch try record.require(idKey, hint: "each output row names its task with \"id\" (or \"task_id\")") {
            case .string(let s): id = s
            case .int(let i): id = String(i)
            case let v:
                throw record.error(
                    "field \"\(idKey)\" is \(v.typeName)", at: idKey, hint: "write the task id as a string")
            }
            guard let task = byID[id] else {
                throw record.error(
                    "no task with id \"\(id)\" in \(tasksPath)", at: idKey,
                    hint: "score outputs against the task file they were sampled from")
            }
            let textKey = record.value("completion") != nil ? "completion" : "text"
            let completion = try record.string(
                textKey, missingHint: "each output row carries its completion as \"completion\" (or \"text\")")
            if let problem = verifier.requirementProblem(task) {
                throw DataError.malformed(
                    file: task.file, line: task.line, column: 1, reason: problem,
                    hint: "add the field, or choose the verifier that matches the task set")
            }
            pending.append((record.line, task, completion))
        }
        let settings = verifier.config.problems()
        if !settings.isEmpty {
            throw DataError.badConfig(
                reason: "verifier: " + settings.joined(separator: "; "), hint: "fix the verifier settings")
        }
        // Rows are independent; checker programs dominate when there are any, so rows are
        // verified on all cores and kept in file order.
        let verdicts = Slots<Verdict>(count: pending.count)
        let work = pending
        DispatchQueue.concurrentPerform(iterations: work.count) { i in
            verdicts[i] = verifier.verify(work[i].completion, for: work[i].task)
        }
        let rows = pending.indices.map { i in
            let verdict = verdicts[i]!
            return Row(
                line: pending[i].line, id: pending[i].task.id,
                verifier: verifier.kind(for: pending[i].task)?.rawValue ?? "none", correct: verdict.correct,
                reason: verdict.reason)
        }
        return VerifyReport(rows: rows, summary: summarize(rows, taskCount: tasks.count))
    }

    static func summarize(_ rows: [Row], taskCount: Int) -> Summary {
        var perTask: [String: (n: Int, correct: Int)] = [:]
        for row in rows { perTask[row.id, default: (0, 0)].n += 1; if row.correct { perTask[row.id]!.correct += 1 } }
        let correct = rows.filter(\.correct).count
        let fractions = perTask.values.map { Double($0.correct) / Double($0.n) }
        return Summary(
            outputs: rows.count, correct: correct, passRate: rows.isEmpty ? 0 : Double(correct) / Double(rows.count),
            tasksScored: perTask.count, tasksSolved: perTask.values.filter { $0.correct > 0 }.count,
            tasksWithoutOutputs: taskCount - perTask.count,
            passAt1: fractions.isEmpty ? 0 : fractions.reduce(0, +) / Double(fractions.count))
    }
}

/// A fixed number of slots filled from several threads.
final class Slots<Value: Sendable>: @unchecked Sendable {
    // @unchecked: every access holds `lock`.
    private let lock = NSLock()
    private var values: [Value?]

    init(count: Int) { values = Array(repeating: nil, count: count) }

    subscript(i: Int) -> Value? {
        get { lock.withLock { values[i] } }
        set { lock.withLock { values[i] = newValue } }
    }
}
