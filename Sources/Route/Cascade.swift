// Cascades and votes over a verdict table (docs/routing.md), from samples already recorded:
//
// - the cascade: the weak model answers m times (its first m samples, seed order); when no
//   answer parses, or when the most common readable answer (a tie going to the one given first)
//   has a share of the m answers below tau, the request goes to the strong model, which answers
//   once (or by the vote of its first k samples). The rule of `distill serve`'s cascade models. Accuracy, cost (tokens x parameters) and the share of strong calls over the (m, tau) grid,
//   with the Pareto front (Chen et al. 2023, FrugalGPT; Yue et al. 2024, cascades on answer
//   consistency);
// - votes at matched compute: the weak model's maj@k against one strong sample, by difficulty
//   bin (the weak model's pass rate, bins from the calibration split);
// - adaptive sampling: the weak model samples one at a time and stops as soon as `a` samples
//   agree; no agreement within the largest m goes to the strong model.
//
// A strong call is worth its expected accuracy, the strong model's share of correct samples on
// the task (the mean over its recorded samples, not one draw), and costs its prompt and its
// mean completion; with `strongK` > 1 it is the maj@k of its first k samples and costs their
// prompt and k completions. The weak model's m samples share one prefill (the engine prefills a prompt
// once for its samples), so m samples cost one prompt and m completions. Every mean comes with a
// percentile-bootstrap interval over the test tasks (Verify's `bootstrapIntervals`, one set of
// resamples for every column, so the intervals of different settings are paired).

import Charts
import Core
import Foundation
import Platform
import Verify

/// What the cascade analysis is asked.
package struct CascadeConfig: Sendable, Equatable, Codable {
    package var weak: String
    package var strong: String
    /// Weak samples per request, each at most the fewest the weak model has on a task.
    package var ms: [Int] = [1, 2, 4, 8]
    /// Thresholds on the winner's share of the m answers, 0...1.
    package var taus: [Double] = [0, 0.5, 0.625, 0.75, 0.875, 1]
    /// Adaptive sampling stops when this many samples agree.
    package var agree: [Int] = [2, 3]
    /// How the strong model answers a request: 1 is one sample (worth its share of correct
    /// samples on the task); k > 1 is the majority vote of its first k samples (maj@k).
    package var strongK: Int = 1
    /// Share of tasks in the calibration split (chosen by XXH64(seed, task id)), 0 ..< 1. With 0
    /// the difficulty bins are drawn from the test tasks themselves.
    package var calibration: Double = 0.5
    package var seed: Int = 0
    /// Parameter counts given on the command line; they win over the table's.
    package var parameters: [String: Int] = [:]
    package var bootstrap = BootstrapConfig()

    package init(weak: String, strong: String) {
        self.weak = weak
        self.strong = strong
    }

    enum CodingKeys: String, CodingKey {
        case weak, strong, ms, taus, agree, calibration, seed, parameters, bootstrap
        case strongK = "strong_k"
    }
}

/// A mean with its interval and, for costs, its share of the strong model's.
package struct CascadePoint: Sendable, Equatable, Codable {
    /// `cascade`, `weak`, `strong`, `adaptive` or `oracle`.
    package var kind: String
    package var label: String
    /// Weak samples (the largest drawn, for adaptive sampling), and the threshold.
    package var m: Int?
    package var tau: Double?
    /// Adaptive sampling: samples that must agree, and the mean drawn.
    package var agree: Int?
    package var meanSamples: Double?
    package var accuracy: Estimate
    /// Mean cost per request, in the report's unit.
    package var cost: Estimate
    /// cost / the strong model's alone.
    package var costShare: Double
    package var strongShare: Estimate
    /// (accuracy - weak's 1-sample accuracy) / (strong's - weak's); nil when the strong model is not better.
    package var gapRecovered: Double?
    package var pareto = false

    enum CodingKeys: String, CodingKey {
        case kind, label, m, tau, agree, accuracy, cost, pareto
        case meanSamples = "mean_samples"
        case costShare = "cost_share"
        case strongShare = "strong_share"
        case gapRecovered = "gap_recovered"
    }
}

/// Votes at matched compute in one difficulty bin.
package struct DifficultyBin: Sendable, Equatable, Codable {
    package struct Vote: Sendable, Equatable, Codable {
        package var k: Int
        package var accuracy: Estimate
        /// Mean cost of k weak samples / one strong answer's, over the bin's tasks.
        package var costShare: Double
        enum CodingKeys: String, CodingKey {
            case k, accuracy
            case costShare = "cost_share"
        }
    }
    /// `pass rate <= 0.25`, `0.25 < pass rate <= 0.5`, ...
    package var label: String
    package var tasks: Int
    package var weakMajority: [Vote]
    package var strongAccuracy: Estimate

    enum CodingKeys: String, CodingKey {
        case label, tasks
        case weakMajority = "weak_majority"
        case strongAccuracy = "strong_accuracy"
    }
}

package struct CascadeReport: Sendable, Equatable, Codable {
    package var settings: CascadeConfig
    /// `token-parameters` when both parameter counts are known, else `tokens`.
    package var costUnit: String
    package var parameters: [String: Int]
    package var calibrationTasks: Int
    package var testTasks: Int
    /// The cascade grid, then the references (weak alone, strong alone, oracle) and adaptive sampling.
    package var points: [CascadePoint]
    /// The largest k whose weak samples cost at most one strong answer, over the test tasks.
    package var matchedK: Int?
    package var bins: [DifficultyBin]
    package var notes: [String]

    enum CodingKeys: String, CodingKey {
        case settings, parameters, points, bins, notes
        case costUnit = "cost_unit"
        case calibrationTasks = "calibration_tasks"
        case testTasks = "test_tasks"
        case matchedK = "matched_k"
    }

    /// The cascade or adaptive setting that recovers the most of the gap at a cost share below
    /// `limit` (ties to the cheaper); nil without a gap or without such a setting.
    package func mostGapRecovered(costBelow limit: Double) -> CascadePoint? {
        points.filter { ($0.kind == "cascade" || $0.kind == "adaptive") && $0.costShare < limit && $0.gapRecovered != nil }
            .max { a, b in a.gapRecovered! == b.gapRecovered! ? a.costShare > b.costShare : a.gapRecovered! < b.gapRecovered! }
    }
}

package enum CascadeAnalysis {
    /// One task as the analysis sees it.
    struct Task {
        var id: String
        var weak: ModelCell
        var strong: ModelCell
    }

    /// Runs the analysis. Throws a usage error for unknown or equal models, settings out of
    /// range, or a table with no test task sampled by both models.
    package static func run(_ table: VerdictTable, _ config: CascadeConfig) throws -> CascadeReport {
        let weakModel = try table.model(config.weak, option: "--weak")
        let strongModel = try table.model(config.strong, option: "--strong")
        guard weakModel.name != strongModel.name else {
            throw UserError(
                path: "--strong", problem: "the strong model is the weak one", fix: "choose two models", kind: .usage)
        }
        guard (0..<1).contains(config.calibration) else {
            throw UserError(
                path: "--split", problem: "calibration share \(config.calibration) is not within 0 ..< 1",
                fix: "give the share of tasks that calibrate the bins, e.g. 0.5", kind: .usage)
        }
        var notes: [String] = []
        let both = table.rows.compactMap { row -> Task? in
            guard let w = row.models[weakModel.name], let s = row.models[strongModel.name], w.n > 0, s.n > 0 else {
                return nil
            }
            return Task(id: row.taskID, weak: w, strong: s)
        }
        if both.count < table.rows.count {
            notes.append(
                "\(table.rows.count - both.count) of \(table.rows.count) tasks lack samples of one of the two models and are left out"
            )
        }
        var calibration: [Task] = [], test: [Task] = []
        for t in both {
            if inCalibration(t.id, config) { calibration.append(t) } else { test.append(t) }
        }
        guard !test.isEmpty else {
            throw UserError(
                path: "--weak/--strong",
                problem:
                    "no test task has samples of both \"\(weakModel.name)\" and \"\(strongModel.name)\" (\(both.count) tasks have both, \(calibration.count) of them in the calibration split)",
                fix: "choose two models sampled on the same tasks, or a smaller --split", kind: .usage)
        }
        let fewest = test.map(\.weak.n).min()!
        let ms = config.ms.filter { $0 >= 1 && $0 <= fewest }.sorted()
        if ms.count < config.ms.count {
            notes.append("m above \(fewest) left out: the weak model has only \(fewest) samples on some test tasks")
        }
        guard !ms.isEmpty else {
            throw UserError(
                path: "--m", problem: "no m within 1...\(fewest)", fix: "give m values the weak model has samples for",
                kind: .usage)
        }

        // Cost: tokens x parameters when both counts are known.
        let pw = config.parameters[weakModel.name] ?? weakModel.parameters
        let ps = config.parameters[strongModel.name] ?? strongModel.parameters
        let unit: String
        let (cw, cs): (Double, Double)
        if let pw, let ps {
            (cw, cs, unit) = (Double(pw), Double(ps), "token-parameters")
        } else {
            (cw, cs, unit) = (1, 1, "tokens")
            notes.append(
                "parameter counts unknown for \([pw == nil ? weakModel.name : nil, ps == nil ? strongModel.name : nil].compactMap { $0 }.map { "\"\($0)\"" }.joined(separator: " and ")): costs are in tokens (give --parameters NAME=COUNT)"
            )
        }
        if test.allSatisfy({ $0.weak.samples.allSatisfy { $0.answer == nil } }) {
            notes.append(
                "\"\(weakModel.name)\": no readable answer on any test task (samples.jsonl written before canonical answers were recorded reads as all unreadable): every cascade escalates"
            )
        }
        for (name, cell) in [(weakModel.name, test.map(\.weak)), (strongModel.name, test.map(\.strong))]
        where cell.contains(where: { $0.samples.contains { $0.tokensIn == nil } }) {
            notes.append(
                "\"\(name)\": prompt tokens not recorded (files written before they were): its costs count generated tokens only"
            )
        }
        func prompt(_ c: ModelCell) -> Double { Double(c.samples.first?.tokensIn ?? 0) }
        func out(_ s: SampleVerdict) -> Double { Double(s.tokensOut ?? 0) }
        func weakCost(_ t: Task, _ m: Int) -> Double {
            cw * (prompt(t.weak) + t.weak.samples.prefix(m).map(out).reduce(0, +))
        }
        let k = config.strongK
        let strongFewest = test.map(\.strong.n).min()!
        guard k >= 1 && k <= strongFewest else {
            throw UserError(
                path: "--strong-k",
                problem:
                    "\(k) strong samples asked for; \"\(strongModel.name)\" has \(strongFewest) on some test tasks",
                fix: "give a k within 1...\(strongFewest)", kind: .usage)
        }
        let strongName = k == 1 ? "1 sample" : "maj@\(k)"
        // One strong answer: its expected accuracy over the recorded samples and their mean
        // completion; or the vote of its first k samples, which share one prompt.
        func strongAccuracy(_ t: Task) -> Double {
            k == 1 ? t.strong.passRate : (TaskStatistics.majorityVote(judged(t.strong, k)).correct ? 1 : 0)
        }
        func strongCost(_ t: Task) -> Double {
            let outs = t.strong.samples.map(out)
            return cs
                * (prompt(t.strong) + (k == 1 ? outs.reduce(0, +) / Double(t.strong.n) : outs.prefix(k).reduce(0, +)))
        }

        // Every setting as three columns over the test tasks: accuracy, cost, strong call.
        var specs: [(point: CascadePoint, columns: [[Double]])] = []
        func add(
            _ kind: String, _ label: String, m: Int? = nil, tau: Double? = nil, agree: Int? = nil,
            meanSamples: Double? = nil, _ perTask: (Task) -> (acc: Double, cost: Double, strong: Double)
        ) {
            let values = test.map(perTask)
            let zero = Estimate(value: 0, ciLow: 0, ciHigh: 0)
            let p = CascadePoint(
                kind: kind, label: label, m: m, tau: tau, agree: agree, meanSamples: meanSamples, accuracy: zero,
                cost: zero, costShare: 0, strongShare: zero)
            specs.append((p, [values.map(\.acc), values.map(\.cost), values.map(\.strong)]))
        }
        for m in ms {
            // Thresholds asking for the same number of agreeing answers make the same decisions:
            // each m keeps the first tau of every such group.
            var needed = Set<Int>()
            for tau in config.taus.sorted()
            where needed.insert(max(1, Int((tau * Double(m) - 1e-9).rounded(.up)))).inserted {
                let votes = max(1, Int((tau * Double(m) - 1e-9).rounded(.up)))
                add("cascade", "m=\(m) tau=\(String(format: "%g", tau)) (\(votes)+ of \(m) agree)", m: m, tau: tau) {
                    t in
                    guard let vote = cascadeVote(t.weak, m), Double(vote.votes) >= tau * Double(m) else {
                        return (strongAccuracy(t), weakCost(t, m) + strongCost(t), 1)
                    }
                    return (vote.correct ? 1 : 0, weakCost(t, m), 0)
                }
            }
        }
        add("weak", "weak alone, 1 sample", m: 1) { t in (t.weak.samples[0].correct ? 1 : 0, weakCost(t, 1), 0) }
        for m in ms where m > 1 {
            add("weak", "weak alone, maj@\(m)", m: m) { t in
                (TaskStatistics.majorityVote(judged(t.weak, m)).correct ? 1 : 0, weakCost(t, m), 0)
            }
        }
        add("strong", "strong alone, \(strongName)") { t in (strongAccuracy(t), strongCost(t), 1) }
        // The oracle asks the strong model exactly when the weak model's first sample is wrong.
        add("oracle", "oracle (strong only where weak's first sample is wrong)", m: 1) { t in
            t.weak.samples[0].correct ? (1, weakCost(t, 1), 0) : (strongAccuracy(t), weakCost(t, 1) + strongCost(t), 1)
        }
        let mMax = ms.last!
        for a in config.agree where a >= 2 && a <= mMax {
            let drawn = test.map { adaptive($0.weak, agree: a, upTo: mMax).drawn }
            add(
                "adaptive", "adaptive: stop when \(a) agree, up to \(mMax)", m: mMax, agree: a,
                meanSamples: Double(drawn.reduce(0, +)) / Double(test.count)
            ) { t in
                let r = adaptive(t.weak, agree: a, upTo: mMax)
                guard let correct = r.correct else {
                    return (strongAccuracy(t), weakCost(t, r.drawn) + strongCost(t), 1)
                }
                return (correct ? 1 : 0, weakCost(t, r.drawn), 0)
            }
        }

        let intervals = TaskStatistics.bootstrapIntervals(specs.flatMap(\.columns), config.bootstrap)
        func mean(_ xs: [Double]) -> Double { xs.reduce(0, +) / Double(xs.count) }
        var points: [CascadePoint] = specs.enumerated().map { i, spec in
            var p = spec.point
            let e = (0..<3).map { c in
                Estimate(
                    value: mean(spec.columns[c]), ciLow: intervals[3 * i + c].low, ciHigh: intervals[3 * i + c].high)
            }
            (p.accuracy, p.cost, p.strongShare) = (e[0], e[1], e[2])
            return p
        }
        let strongAlone = points.first { $0.kind == "strong" }!
        let weakAlone = points.first { $0.kind == "weak" }!
        let gap = strongAlone.accuracy.value - weakAlone.accuracy.value
        for i in points.indices {
            points[i].costShare = strongAlone.cost.value > 0 ? points[i].cost.value / strongAlone.cost.value : 0
            if gap > 0 { points[i].gapRecovered = (points[i].accuracy.value - weakAlone.accuracy.value) / gap }
        }
        let candidates = points.indices.filter { points[$0].kind != "oracle" }
        for f in paretoFront(
            lower: candidates.map { points[$0].cost.value }, higher: candidates.map { points[$0].accuracy.value })
        {
            points[candidates[f]].pareto = true
        }

        // Votes at matched compute, by difficulty bin.
        let meanStrong = mean(test.map(strongCost))
        let matched = ms.last { m in mean(test.map { weakCost($0, m) }) <= meanStrong }
        let edges = binEdges((calibration.isEmpty ? test : calibration).map(\.weak.passRate))
        if calibration.isEmpty {
            notes.append("no calibration split (--split 0): difficulty bins are drawn from the test tasks")
        }
        var bins: [DifficultyBin] = []
        for b in 0...edges.count {
            let lower = b > 0 ? edges[b - 1] : nil, upper = b < edges.count ? edges[b] : nil
            let members = test.filter { t in
                let p = t.weak.passRate
                return (lower.map { p > $0 } ?? true) && (upper.map { p <= $0 } ?? true)
            }
            guard !members.isEmpty else { continue }
            var columns = ms.map { m in
                members.map { TaskStatistics.majorityVote(judged($0.weak, m)).correct ? 1.0 : 0 }
            }
            columns.append(members.map(strongAccuracy))
            let ci = TaskStatistics.bootstrapIntervals(columns, config.bootstrap)
            func estimate(_ c: Int) -> Estimate {
                Estimate(value: mean(columns[c]), ciLow: ci[c].low, ciHigh: ci[c].high)
            }
            let strongMean = mean(members.map(strongCost))
            bins.append(
                DifficultyBin(
                    label: binLabel(lower, upper), tasks: members.count,
                    weakMajority: ms.enumerated().map { i, m in
                        .init(
                            k: m, accuracy: estimate(i),
                            costShare: strongMean > 0 ? mean(members.map { weakCost($0, m) }) / strongMean : 0)
                    },
                    strongAccuracy: estimate(ms.count)))
        }
        return CascadeReport(
            settings: config, costUnit: unit,
            parameters: [weakModel.name: pw, strongModel.name: ps].compactMapValues { $0 },
            calibrationTasks: calibration.count, testTasks: test.count, points: points, matchedK: matched, bins: bins,
            notes: notes)
    }

    /// Whether a task belongs to the calibration split: XXH64(seed, id) below the share of 2^64.
    static func inCalibration(_ id: String, _ config: CascadeConfig) -> Bool {
        guard config.calibration > 0 else { return false }
        let h = XXH64.hash(Array(id.utf8), seed: UInt64(bitPattern: Int64(config.seed)))
        return Double(h) / 18_446_744_073_709_551_616.0 < config.calibration
    }

    /// The cascade's vote over the first m samples, the rule `distill serve`'s cascade models
    /// apply: the most common readable answer, a tie going to the answer given first; its votes
    /// (its share is votes / m, unreadable samples counted in m) and whether its samples were all
    /// judged correct. nil when no sample gives a readable answer.
    static func cascadeVote(_ cell: ModelCell, _ m: Int) -> (votes: Int, correct: Bool)? {
        let first = cell.samples.prefix(m)
        return TaskStatistics.leadingAnswer(first.map(\.answer)).map { lead in
            (lead.votes, first.allSatisfy { $0.answer != lead.answer || $0.correct })
        }
    }

    /// The first m samples as the vote reads them.
    static func judged(_ cell: ModelCell, _ m: Int) -> [JudgedAnswer] {
        cell.samples.prefix(m).map { JudgedAnswer(correct: $0.correct, canonical: $0.answer) }
    }

    /// Adaptive sampling: samples drawn in seed order until `agree` of them share a readable
    /// answer (then `correct` says whether that answer's samples are all correct), or `upTo` are
    /// drawn without agreement (`correct` nil: the request escalates).
    static func adaptive(_ cell: ModelCell, agree: Int, upTo: Int) -> (drawn: Int, correct: Bool?) {
        var groups: [String: [Bool]] = [:]
        for (i, s) in cell.samples.prefix(upTo).enumerated() {
            guard let answer = s.answer else { continue }
            groups[answer, default: []].append(s.correct)
            if groups[answer]!.count >= agree { return (i + 1, groups[answer]!.allSatisfy { $0 }) }
        }
        return (min(upTo, cell.n), nil)
    }

    /// The tercile edges of the weak model's pass rates, equal ones merged: up to three bins.
    static func binEdges(_ passRates: [Double]) -> [Double] {
        guard !passRates.isEmpty else { return [] }
        let sorted = passRates.sorted()
        var edges: [Double] = []
        for q in [1.0 / 3, 2.0 / 3] {
            let e = quantile(sorted: sorted, q)
            if e < sorted.last!, edges.last.map({ e > $0 }) ?? true { edges.append(e) }
        }
        return edges
    }

    static func binLabel(_ lower: Double?, _ upper: Double?) -> String {
        func f(_ x: Double) -> String { String(format: "%.3g", x) }
        switch (lower, upper) {
        case (nil, nil): return "all"
        case (nil, let u?): return "pass rate <= \(f(u))"
        case (let l?, nil): return "pass rate > \(f(l))"
        case (let l?, let u?): return "\(f(l)) < pass rate <= \(f(u))"
        }
    }
}
