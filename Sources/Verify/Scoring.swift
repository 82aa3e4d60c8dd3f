import Core
import Foundation
import JSON

/// `distill verify`: scores completions already on disk with the same verifiers the sampling
/// stage uses.
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
        /// The verdict's partial credit (`Verdict.credit`).
        package var credit: Double
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
        /// Mean over scored tasks of its outputs' mean credit (pass@1 with partial credit).
        package var meanCredit: Double

        enum CodingKeys: String, CodingKey {
            case outputs, correct
            case meanCredit = "mean_credit"
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
                credit: verdict.credit, reason: verdict.reason)
        }
        return VerifyReport(rows: rows, summary: summarize(rows, taskCount: tasks.count))
    }

    static func summarize(_ rows: [Row], taskCount: Int) -> Summary {
        typealias Tally = (n: Int, correct: Int, credit: Double)
        var perTask: [String: Tally] = [:]
        for row in rows {
            perTask[row.id, default: (0, 0, 0)].n += 1
            perTask[row.id]!.credit += row.credit
            if row.correct { perTask[row.id]!.correct += 1 }
        }
        let correct = rows.filter(\.correct).count
        func meanOverTasks(_ value: (Tally) -> Double) -> Double {
            perTask.isEmpty ? 0 : perTask.values.map(value).reduce(0, +) / Double(perTask.count)
        }
        return Summary(
            outputs: rows.count, correct: correct, passRate: rows.isEmpty ? 0 : Double(correct) / Double(rows.count),
            tasksScored: perTask.count, tasksSolved: perTask.values.filter { $0.correct > 0 }.count,
            tasksWithoutOutputs: taskCount - perTask.count,
            passAt1: meanOverTasks { Double($0.correct) / Double($0.n) },
            meanCredit: meanOverTasks { $0.credit / Double($0.n) })
    }
}

/// A fixed number of slots filled from several threads.
package final class Slots<Value: Sendable>: @unchecked Sendable {
    // @unchecked: every access holds `lock`.
    private let lock = NSLock()
    private var values: [Value?]

    package init(count: Int) { values = Array(repeating: nil, count: count) }

    package subscript(i: Int) -> Value? {
        get { lock.withLock { values[i] } }
        set { lock.withLock { values[i] = newValue } }
    }
}

// MARK: - Statistics of k samples per task: pass@k, majority votes, bootstrap intervals
//
// Used by the sample stage's stats.json and by task evaluation (docs/evaluation.md). Pure
// functions of verdicts, so a re-run from the cache reports the same numbers.

/// One judged completion as the statistics need it.
package struct JudgedAnswer: Sendable, Equatable {
    package var correct: Bool
    /// The verifier's canonical answer (`Verdict.canonical`); nil when none could be read.
    package var canonical: String?
    package var text: String
    /// Tokens generated.
    package var tokens: Int

    package init(correct: Bool, canonical: String?, text: String = "", tokens: Int = 0) {
        self.correct = correct
        self.canonical = canonical
        self.text = text
        self.tokens = tokens
    }
}

/// The outcome of a majority vote over one task's samples (maj@k).
package struct MajorityVote: Sendable, Equatable, Codable {
    /// The winning canonical answer; nil when nothing wins (a tie, unreadable answers most
    /// common, or no samples).
    package var answer: String?
    /// Samples in the largest group (unreadable ones count as one group).
    package var votes: Int
    /// Whether two or more groups share the largest count.
    package var tie: Bool
    /// Whether the vote is right: a single winning answer whose samples were all judged correct.
    package var correct: Bool

    package init(answer: String?, votes: Int, tie: Bool, correct: Bool) {
        self.answer = answer
        self.votes = votes
        self.tie = tie
        self.correct = correct
    }
}

/// A mean over tasks with its bootstrap confidence interval.
package struct Estimate: Sendable, Equatable, Codable {
    package var value: Double
    package var ciLow: Double
    package var ciHigh: Double

    package init(value: Double, ciLow: Double, ciHigh: Double) {
        self.value = value
        self.ciLow = ciLow
        self.ciHigh = ciHigh
    }

    enum CodingKeys: String, CodingKey {
        case value
        case ciLow = "ci_low"
        case ciHigh = "ci_high"
    }
}

/// How confidence intervals are drawn: a percentile bootstrap over tasks.
package struct BootstrapConfig: Sendable, Equatable, Codable {
    /// Resamples of the task set, each n tasks drawn with replacement.
    package var resamples: Int = 2000
    /// Two-sided coverage: the interval runs from the (1-level)/2 to the (1+level)/2 quantile.
    package var level: Double = 0.95
    /// Seeds the draws (xoshiro256**); one seed gives the same resamples for every metric and arm.
    package var seed: Int = 0

    package init(resamples: Int = 2000, level: Double = 0.95, seed: Int = 0) {
        self.resamples = resamples
        self.level = level
        self.seed = seed
    }
}

package enum TaskStatistics {
    /// The k reported for `samples` per task: 1, 2, 4, ... below `samples`, and `samples` itself.
    package static func passAtKs(_ samples: Int) -> [Int] {
        var out: [Int] = []
        var k = 1
        while k < samples {
            out.append(k)
            k *= 2
        }
        return out + [max(1, samples)]
    }

    /// The unbiased pass@k estimator of Chen et al. 2021 (Codex paper), for n samples of which
    /// c are correct: 1 - C(n-c, k) / C(n, k), computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i).
    package static func passAtK(n: Int, c: Int, k: Int) -> Double {
        precondition(
            k >= 1 && k <= n && c >= 0 && c <= n, "pass@k needs 1 <= k <= n, 0 <= c <= n (n \(n), c \(c), k \(k))")
        if n - c < k { return 1 }
        var fail = 1.0
        for i in (n - c + 1)..<(n + 1) { fail *= 1 - Double(k) / Double(i) }
        return 1 - fail
    }

    /// maj@k for one task: samples are grouped by canonical answer (all unreadable ones form one
    /// group); the largest group wins. When two groups share the largest count, or the largest
    /// is the unreadable one, nothing wins and the vote is wrong: ties and unreadable answers
    /// never win. A winning answer is right when every sample in its group was judged correct
    /// (equal canonical answers are judged alike unless a verifier looks past the answer, as a
    /// command checker may).
    package static func majorityVote(_ samples: [JudgedAnswer]) -> MajorityVote {
        var counts: [String?: Int] = [:]
        for s in samples { counts[s.canonical, default: 0] += 1 }
        guard let top = counts.values.max() else {
            return MajorityVote(answer: nil, votes: 0, tie: false, correct: false)
        }
        let leaders = counts.filter { $0.value == top }.map(\.key)
        guard leaders.count == 1, let answer = leaders[0] else {
            return MajorityVote(answer: nil, votes: top, tie: leaders.count > 1, correct: false)
        }
        let correct = samples.allSatisfy { $0.canonical != answer || $0.correct }
        return MajorityVote(answer: answer, votes: top, tie: false, correct: correct)
    }

    /// A cascade's vote over k answers (canonical forms, nil for unreadable ones): the most
    /// common readable answer, a tie going to the answer given first, with its votes and the index
    /// of its first sample; nil when none is readable. Unlike `majorityVote`, unreadable answers
    /// never win: they only count in the share votes / k that a cascade compares with tau
    /// (docs/routing.md).
    package static func leadingAnswer(_ answers: [String?]) -> (answer: String, votes: Int, first: Int)? {
        var counts: [String: Int] = [:]
        for case let a? in answers { counts[a, default: 0] += 1 }
        var best: (answer: String, votes: Int, first: Int)?
        for (i, a) in answers.enumerated() {
            guard let a, best == nil || counts[a]! > best!.votes else { continue }
            best = (a, counts[a]!, i)
        }
        return best
    }

    /// Percentile-bootstrap intervals of the means of `columns` (one value per task each, all of
    /// one length n): `config.resamples` times, n task indices are drawn with replacement from a
    /// generator seeded with `config.seed`, and every column's mean over them is recorded; the
    /// interval is the pair of quantiles (1-level)/2 and (1+level)/2 of those means (linear
    /// interpolation between order statistics, R's type 7). All columns share the resamples, so
    /// intervals of different metrics and of arms on the same tasks are paired. Empty columns
    /// give (0, 0).
    package static func bootstrapIntervals(
        _ columns: [[Double]], _ config: BootstrapConfig
    ) -> [(low: Double, high: Double)] {
        guard let n = columns.first?.count, n > 0, config.resamples > 0 else {
            return columns.map { _ in (0, 0) }
        }
        precondition(columns.allSatisfy { $0.count == n }, "bootstrap columns of unequal length")
        var rng = RNG(seed: UInt64(config.seed))
        var means = [[Double]](repeating: [Double](repeating: 0, count: config.resamples), count: columns.count)
        var sums = [Double](repeating: 0, count: columns.count)
        for b in 0..<config.resamples {
            for c in sums.indices { sums[c] = 0 }
            for _ in 0..<n {
                let i = min(n - 1, Int(rng.uniform() * Double(n)))
                for c in columns.indices { sums[c] += columns[c][i] }
            }
            for c in columns.indices { means[c][b] = sums[c] / Double(n) }
        }
        let tail = (1 - config.level) / 2
        return means.map { column in
            let sorted = column.sorted()
            return (quantile(sorted: sorted, tail), quantile(sorted: sorted, 1 - tail))
        }
    }

    /// Percentile-bootstrap intervals of statistics that are not means of one column (a router's
    /// APGR, its CPT): the same resamples as `bootstrapIntervals(_:_:)` with the same config (n
    /// task indices drawn with replacement, in the same order), each handed to `statistics`,
    /// which returns one value per statistic, nil where a resample leaves it undefined (a
    /// resample without a gap to recover). A statistic's interval is over the resamples that
    /// define it; nil when none does.
    package static func bootstrapIntervals(
        tasks n: Int, _ config: BootstrapConfig, _ statistics: ([Int]) -> [Double?]
    ) -> [(low: Double, high: Double)?] {
        guard n > 0, config.resamples > 0 else { return statistics(Array(0..<n)).map { _ in nil } }
        var rng = RNG(seed: UInt64(config.seed))
        var values: [[Double]] = []
        var indices = [Int](repeating: 0, count: n)
        for _ in 0..<config.resamples {
            for j in 0..<n { indices[j] = min(n - 1, Int(rng.uniform() * Double(n))) }
            let s = statistics(indices)
            if values.isEmpty { values = s.map { _ in [] } }
            for (c, v) in s.enumerated() { if let v { values[c].append(v) } }
        }
        let tail = (1 - config.level) / 2
        return values.map { column in
            guard !column.isEmpty else { return nil }
            let sorted = column.sorted()
            return (quantile(sorted: sorted, tail), quantile(sorted: sorted, 1 - tail))
        }
    }
}

/// What task evaluation reports for one model (an arm) over a task set, each mean over tasks
/// with its bootstrap interval (docs/evaluation.md has the definitions).
package struct ArmMetrics: Sendable, Equatable, Codable {
    package struct PassAtK: Sendable, Equatable, Codable {
        package var k: Int
        package var value: Double
        package var ciLow: Double
        package var ciHigh: Double

        package init(k: Int, value: Double, ciLow: Double, ciHigh: Double) {
            self.k = k
            self.value = value
            self.ciLow = ciLow
            self.ciHigh = ciHigh
        }

        enum CodingKeys: String, CodingKey {
            case k, value
            case ciLow = "ci_low"
            case ciHigh = "ci_high"
        }
    }

    package var tasks = 0
    /// k.
    package var samplesPerTask = 0
    /// Tasks whose greedy completion is correct, / tasks.
    package var greedyAccuracy = Estimate(value: 0, ciLow: 0, ciHigh: 0)
    /// pass@k for k = 1, 2, 4, ..., samples (pass@1 is the mean share of correct samples).
    package var passAtK: [PassAtK] = []
    /// maj@k, k = samples; nil without samples.
    package var majAtK: Estimate?
    /// Tasks whose vote tied, and tasks where unreadable answers were the most common.
    package var majTies = 0
    package var majUnreadable = 0
    /// Samples with a readable (canonical) answer, / samples.
    package var validAnswerRate = 0.0
    /// Distinct readable canonical answers per task, summed, / samples.
    package var uniqueValidAnswersPerSample = 0.0
    /// Distinct completion texts per task, summed, / samples.
    package var uniqueOutputsPerSample = 0.0
    /// Mean tokens generated by a greedy completion, and by a sample.
    package var greedyTokensPerTask = 0.0
    package var tokensPerSample = 0.0
    /// Every token generated, greedy and samples.
    package var tokensGenerated = 0

    package init() {}

    enum CodingKeys: String, CodingKey {
        case tasks
        case samplesPerTask = "samples_per_task"
        case greedyAccuracy = "greedy_accuracy"
        case passAtK = "pass_at_k"
        case majAtK = "maj_at_k"
        case majTies = "maj_ties"
        case majUnreadable = "maj_unreadable"
        case validAnswerRate = "valid_answer_rate"
        case uniqueValidAnswersPerSample = "unique_valid_answers_per_sample"
        case uniqueOutputsPerSample = "unique_outputs_per_sample"
        case greedyTokensPerTask = "greedy_tokens_per_task"
        case tokensPerSample = "tokens_per_sample"
        case tokensGenerated = "tokens_generated"
    }

    /// The metrics of one arm from its tasks' greedy answers and k samples each (every task with
    /// the same k).
    package static func compute(greedy: [JudgedAnswer], samples: [[JudgedAnswer]], bootstrap: BootstrapConfig)
        -> ArmMetrics
    {
        precondition(greedy.count == samples.count, "one greedy answer per task")
        let n = greedy.count
        let k = samples.first?.count ?? 0
        precondition(samples.allSatisfy { $0.count == k }, "every task has k samples")
        var m = ArmMetrics()
        m.tasks = n
        m.samplesPerTask = k
        let ks = k > 0 ? TaskStatistics.passAtKs(k) : []
        var columns: [[Double]] = [greedy.map { $0.correct ? 1 : 0 }]
        for kk in ks {
            columns.append(samples.map { s in TaskStatistics.passAtK(n: k, c: s.filter(\.correct).count, k: kk) })
        }
        let votes = samples.map(TaskStatistics.majorityVote)
        if k > 0 { columns.append(votes.map { $0.correct ? 1 : 0 }) }
        let intervals = TaskStatistics.bootstrapIntervals(columns, bootstrap)
        func estimate(_ c: Int) -> Estimate {
            Estimate(
                value: n > 0 ? columns[c].reduce(0, +) / Double(n) : 0, ciLow: intervals[c].low,
                ciHigh: intervals[c].high)
        }
        m.greedyAccuracy = estimate(0)
        m.passAtK = ks.enumerated().map { i, kk in
            let e = estimate(1 + i)
            return PassAtK(k: kk, value: e.value, ciLow: e.ciLow, ciHigh: e.ciHigh)
        }
        if k > 0 { m.majAtK = estimate(columns.count - 1) }
        m.majTies = votes.filter(\.tie).count
        m.majUnreadable = votes.filter { !$0.tie && $0.answer == nil && $0.votes > 0 }.count
        let all = samples.flatMap { $0 }
        if !all.isEmpty {
            let count = Double(all.count)
            m.validAnswerRate = Double(all.filter { $0.canonical != nil }.count) / count
            m.uniqueValidAnswersPerSample =
                Double(samples.map { Set($0.compactMap(\.canonical)).count }.reduce(0, +)) / count
            m.uniqueOutputsPerSample = Double(samples.map { Set($0.map(\.text)).count }.reduce(0, +)) / count
            m.tokensPerSample = Double(all.map(\.tokens).reduce(0, +)) / count
        }
        if n > 0 { m.greedyTokensPerTask = Double(greedy.map(\.tokens).reduce(0, +)) / Double(n) }
        m.tokensGenerated = greedy.map(\.tokens).reduce(0, +) + all.map(\.tokens).reduce(0, +)
        return m
    }
}
