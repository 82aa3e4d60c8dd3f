// Training, calibrating and evaluating a learned router over a verdict table (docs/routing.md,
// *Learned routers*), with RouteLLM's measures (Ong et al. 2024):
//
// - a request's accuracy is the expected accuracy of one answer: the weak model's share of
//   correct samples on the task when it answers, the strong model's when the request
//   escalates (so the weak and strong lines are their pass@1, and the oracle, which escalates
//   exactly the tasks where the strong model does better, reaches the mean of the larger);
// - the sweep: escalating the test tasks in order of rising score traces accuracy against the
//   share of strong calls, one point per run of equal scores, linear in between (the expected
//   accuracy of breaking a tie at random);
// - PGR(x) = (acc(x) - weak) / (strong - weak); APGR is its integral over the share 0..1
//   (exact on the piecewise-linear curve, so random routing's expected APGR is 0.5); CPT(p) is
//   the least share reaching weak + p (strong - weak);
// - random routing escalates in the order of XXH64(seed, task id), 10 seeds, averaged;
// - intervals: Verify's percentile bootstrap over the test tasks (2000 resamples by default),
//   one set of resamples for every statistic, so router and random are paired.

import Core
import Foundation
import Platform
import Verify

/// One task as the router sees it: its input, the two models' pass rates, and the weak model's
/// mean credit (nil when a sample of it lacks credit).
package struct RouteTask: Sendable, Equatable {
    package var id: String
    package var input: RouterInput
    package var weak: Double
    package var strong: Double
    package var weakCredit: Double? = nil
}

/// What `distill route train` is asked.
package struct RouterTrainConfig: Sendable, Equatable {
    package var weak: String
    package var strong: String
    package var kind: RouterKind = .logistic
    /// What the logistic and kNN routers learn to predict.
    package var label: RouterLabel = .weak
    /// Where `label` was given, for messages: the option, or a recipe stage's JSON path.
    package var labelSource = "--label"
    /// The logistic router's features; kNN and k-means read the embedding alone.
    package var features: [RouterFeature] = [.embedding, .length]
    /// L2 strength on the standardised weights (the objective is the mean cross-entropy + l2/2 |w|^2).
    package var l2: Double = 1
    /// Neighbours of the kNN router.
    package var neighbours: Int = 10
    /// Clusters and trade-off of the k-means router.
    package var clusters: Int = 8
    package var alpha: Double = 1
    package var split = RouterSplit()
    /// Target shares of strong calls calibrated.
    package var shares: [Double] = (1...9).map { Double($0) / 10 }

    package init(weak: String, strong: String) { (self.weak, self.strong) = (weak, strong) }
}

/// The soft label of a training task, in 0...1, higher where the weak model should answer.
package enum RouterLabel: String, Sendable, CaseIterable, Codable {
    /// The weak model's pass rate: the probability that one weak answer is right.
    case weak
    /// (1 + weak - strong) / 2 of the two pass rates: 1 where only the weak model is right, 0
    /// where only the strong one is, 0.5 where they do as well (RouteLLM's labels are the
    /// strong model's win; this is their soft, graded form for one sample each).
    case margin
    /// The weak model's mean credit over its samples: the graded form of `weak` where the
    /// verifier gives partial credit (docs/teacher.md, *Partial credit*), equal to it elsewhere.
    case credit

    /// The label from the two pass rates and the weak model's mean credit; nil for `credit`
    /// without one.
    package func value(weak: Double, strong: Double, weakCredit: Double? = nil) -> Double? {
        switch self {
        case .weak: weak
        case .margin: (1 + weak - strong) / 2
        case .credit: weakCredit
        }
    }
}

package enum RouterTraining {
    /// The tasks with samples of both models and a cached input, in table order; a note when
    /// some are left out.
    package static func tasks(
        _ table: VerdictTable, weak: String, strong: String, cache: [String: RouterInput]
    ) throws -> (tasks: [RouteTask], notes: [String]) {
        let w = try table.model(weak, option: "--weak").name, s = try table.model(strong, option: "--strong").name
        guard w != s else {
            throw UserError(path: "--strong", problem: "the strong model is the weak one", fix: "choose two models", kind: .usage)
        }
        var tasks: [RouteTask] = [], notes: [String] = []
        var noSamples = 0, noInput = 0
        for row in table.rows {
            guard let wc = row.models[w], let sc = row.models[s], wc.n > 0, sc.n > 0 else {
                noSamples += 1
                continue
            }
            guard var input = cache[row.taskID] else {
                noInput += 1
                continue
            }
            input.extra = extras(wc)
            tasks.append(
                RouteTask(id: row.taskID, input: input, weak: wc.passRate, strong: sc.passRate, weakCredit: wc.meanCredit))
        }
        if noSamples > 0 { notes.append("\(noSamples) tasks lack samples of one of the two models and are left out") }
        if noInput > 0 { notes.append("\(noInput) tasks have no embedding (no prompt text in the table) and are left out") }
        return (tasks, notes)
    }

    /// Refuses the `credit` label when a sample of the weak model on a task with samples of both
    /// models records no credit (its source predates it), before anything is embedded.
    package static func checkLabel(_ table: VerdictTable, _ config: RouterTrainConfig) throws {
        guard config.label == .credit else { return }
        var samples = 0, missing = 0
        for row in table.rows {
            guard let wc = row.models[config.weak], let sc = row.models[config.strong], wc.n > 0, sc.n > 0 else { continue }
            samples += wc.n
            missing += wc.samples.filter { $0.credit == nil }.count
        }
        guard missing > 0 else { return }
        throw UserError(
            path: config.labelSource,
            problem: "label \"credit\" needs the weak model's partial credit, but the verdict table records none for "
                + "\(missing) of \"\(config.weak)\"'s \(samples) samples (written before verdicts carried credit)",
            fix: "rebuild the table with `distill verdicts build --reverify`, re-run the stage that wrote the samples, "
                + "or use label \"weak\" or \"margin\"", kind: .usage)
    }

    /// The tasks a router embeds: those with samples of both models and a prompt, in table order.
    package static func prompts(_ table: VerdictTable, weak: String, strong: String) -> [(id: String, prompt: String)] {
        table.rows.compactMap { row in
            guard let p = row.prompt, (row.models[weak]?.n ?? 0) > 0, (row.models[strong]?.n ?? 0) > 0 else { return nil }
            return (row.taskID, p)
        }
    }

    /// The cascade features of the weak model's samples: the share of the most common readable
    /// answer among them (0 when none is readable), and the first sample's log-probability
    /// mean and minimum, and its quantiles, each pair or triple when recorded.
    static func extras(_ cell: ModelCell) -> [String: Double] {
        var out: [String: Double] = [:]
        out["agreement"] = TaskStatistics.leadingAnswer(cell.samples.map(\.answer)).map { Double($0.votes) / Double(cell.n) } ?? 0
        if let first = cell.samples.first, let mean = first.logprobMean, let min = first.logprobMin {
            out["logprob_mean"] = mean
            out["logprob_min"] = min
        }
        if let first = cell.samples.first, let q10 = first.logprobQ10, let q25 = first.logprobQ25,
            let median = first.logprobMedian
        {
            (out["logprob_q10"], out["logprob_q25"], out["logprob_median"]) = (q10, q25, median)
        }
        return out
    }

    /// Trains a router on the training split and calibrates it on the calibration split.
    /// `cache` holds every task's input (the embeddings); it is stored with the router.
    package static func train(
        _ table: VerdictTable, _ config: RouterTrainConfig, cache: [String: RouterInput], weakChecksum: String
    ) throws -> (router: Router, notes: [String]) {
        try config.split.check()
        try checkLabel(table, config)
        let (all, notes) = try tasks(table, weak: config.weak, strong: config.strong, cache: cache)
        let train = all.filter { config.split.part($0.id) == .train }
        guard train.count >= 2 else {
            throw UserError(
                path: "--weak/--strong", problem: "\(train.count) training tasks (\(all.count) tasks have samples of both models and a prompt)",
                fix: "give a table with more tasks, or smaller --calibration and --test shares", kind: .usage)
        }
        let model: Router.Model
        // checkLabel leaves every training task a label.
        let labels = train.map { config.label.value(weak: $0.weak, strong: $0.strong, weakCredit: $0.weakCredit)! }
        switch config.kind {
        case .logistic:
            model = .logistic(
                try LogisticRouter.train(train.map(\.input), labels: labels, features: config.features, l2: config.l2))
        case .knn:
            model = .knn(NeighbourRouter(k: config.neighbours, embeddings: train.map(\.input.embedding), labels: labels))
        case .kmeans:
            guard config.alpha > 0 && config.alpha <= 1 else {
                throw UserError(path: "--alpha", problem: "alpha \(config.alpha) is not within 0 < alpha <= 1", kind: .usage)
            }
            model = .kmeans(
                ClusterRouter.train(
                    embeddings: train.map(\.input.embedding), weak: train.map(\.weak), strong: train.map(\.strong),
                    clusters: config.clusters, alpha: config.alpha, seed: config.split.seed))
        }
        let weakModel = try table.model(config.weak, option: "--weak"), strongModel = try table.model(config.strong, option: "--strong")
        var router = Router(
            model: model, weak: weakModel.name, strong: strongModel.name, weakChecksum: weakChecksum,
            weakIdentity: weakModel.identity, strongIdentity: strongModel.identity, split: config.split)
        router.cache = cache
        router.label = config.label
        _ = try calibrate(&router, table, shares: config.shares)  // its notes are the ones above
        return (router, notes)
    }

    /// Sets the router's thresholds for `shares` (each 0...1) from the scores of the calibration
    /// split's tasks: for a share q of n tasks, the threshold halfway between the j-th and the
    /// (j+1)-th lowest score, j = round(q n), so that the j lowest escalate (fewer when scores tie
    /// there: each threshold records the share it gives).
    package static func calibrate(_ router: inout Router, _ table: VerdictTable, shares: [Double]) throws -> [String] {
        guard !shares.isEmpty, shares.allSatisfy({ (0...1).contains($0) }) else {
            throw UserError(path: "--shares", problem: "give shares of strong calls within 0...1", kind: .usage)
        }
        let (all, notes) = try tasks(table, weak: router.weak, strong: router.strong, cache: router.cache)
        let calibration = all.filter { router.split.part($0.id) == .calibration }
        let scores = try calibration.map { t in
            guard let s = router.score(t.input) else { throw missingFeature(t.id) }
            return s
        }.sorted()
        guard !scores.isEmpty else {
            throw UserError(
                path: "--calibration", problem: "no calibration task (\(all.count) tasks in the table)",
                fix: "give a larger --calibration share or a table with more tasks", kind: .usage)
        }
        let n = scores.count
        router.thresholds = shares.sorted().map { q in
            let j = min(n, max(0, Int((q * Double(n)).rounded())))
            let t = j == 0 ? scores[0] - 1 : j == n ? scores[n - 1] + 1 : (scores[j - 1] + scores[j]) / 2
            return Router.Threshold(
                target: q, threshold: t, calibrationShare: Double(scores.filter { $0 < t }.count) / Double(n))
        }
        return notes
    }

    static func missingFeature(_ id: String) -> UserError {
        UserError(
            path: id, problem: "the router reads a feature this task lacks (agreement or log-probabilities)",
            fix: "evaluate on a table whose weak samples record them", kind: .badData)
    }
}

// MARK: - Evaluation

package struct RouterEvalConfig: Sendable, Equatable, Codable {
    /// Shares of strong calls at which the sweep's accuracy is reported (the curve itself has a
    /// point per test task).
    package var shares: [Double] = (0...20).map { Double($0) / 20 }
    package var randomSeeds: Int = 10
    package var bootstrap = BootstrapConfig()

    package init() {}

    enum CodingKeys: String, CodingKey {
        case shares, bootstrap
        case randomSeeds = "random_seeds"
    }
}

/// One router (or reference) over the test split.
package struct RouterArm: Sendable, Equatable, Codable {
    package struct Point: Sendable, Equatable, Codable {
        package var share: Double
        package var accuracy: Estimate
    }
    /// `router`, `random` or `oracle`.
    package var name: String
    /// nil when the strong model is not better on the test split (no gap to recover).
    package var apgr: Estimate?
    package var cpt50: Estimate?
    package var cpt80: Estimate?
    /// Accuracy at the configured shares (interpolated on the curve).
    package var sweep: [Point]
    /// The curve itself: (share of strong calls, accuracy) at every run of equal scores.
    package var curve: [[Double]]

    enum CodingKeys: String, CodingKey {
        case name, apgr, sweep, curve
        case cpt50 = "cpt_50"
        case cpt80 = "cpt_80"
    }
}

/// A calibrated threshold applied to the test split.
package struct CalibratedPoint: Sendable, Equatable, Codable {
    package var label: String
    package var target: Double?
    package var threshold: Double
    package var calibrationShare: Double?
    package var testShare: Estimate
    package var accuracy: Estimate

    enum CodingKeys: String, CodingKey {
        case label, target, threshold, accuracy
        case calibrationShare = "calibration_share"
        case testShare = "test_share"
    }
}

package struct RouterReport: Sendable, Equatable, Codable {
    package var kind: RouterKind
    package var weak: String
    package var strong: String
    package var label: RouterLabel
    package var features: [RouterFeature]
    package var split: RouterSplit
    package var settings: RouterEvalConfig
    package var trainTasks: Int
    package var calibrationTasks: Int
    package var testTasks: Int
    package var weakAccuracy: Estimate
    package var strongAccuracy: Estimate
    /// The learned router, random routing (the mean of the seeds) and the oracle.
    package var arms: [RouterArm]
    /// The router's APGR minus random's, paired over the same resamples.
    package var apgrOverRandom: Estimate?
    package var calibrated: [CalibratedPoint]
    package var notes: [String]

    enum CodingKeys: String, CodingKey {
        case kind, weak, strong, label, features, split, settings, arms, calibrated, notes
        case trainTasks = "train_tasks"
        case calibrationTasks = "calibration_tasks"
        case testTasks = "test_tasks"
        case weakAccuracy = "weak_accuracy"
        case strongAccuracy = "strong_accuracy"
        case apgrOverRandom = "apgr_over_random"
    }
}

package enum RouterEvaluation {
    /// The accuracy-against-strong-share curve of escalating tasks in `order` (indices sorted by
    /// rising `scores`), each task counted `weights[i]` times: a point per run of equal scores.
    static func curve(order: [Int], scores: [Double], weak: [Double], strong: [Double], weights: [Double]) -> [(x: Double, y: Double)] {
        let total = weights.reduce(0, +)
        guard total > 0 else { return [] }
        var y = 0.0
        for i in order { y += weights[i] * weak[i] }
        y /= total
        var x = 0.0
        var points = [(x: 0.0, y: y)]
        var k = 0
        while k < order.count {
            var end = k
            var (dx, dy) = (0.0, 0.0)
            while end < order.count && scores[order[end]] == scores[order[k]] {
                let i = order[end]
                dx += weights[i]
                dy += weights[i] * (strong[i] - weak[i])
                end += 1
            }
            if dx > 0 {
                x += dx / total
                y += dy / total
                points.append((x, y))
            }
            k = end
        }
        points[points.count - 1].x = 1  // every task escalated, whatever the rounding
        return points
    }

    /// Accuracy at share `x` on a piecewise-linear curve.
    static func accuracy(_ curve: [(x: Double, y: Double)], at x: Double) -> Double {
        for j in 1..<curve.count where curve[j].x >= x {
            let (a, b) = (curve[j - 1], curve[j])
            return b.x > a.x ? a.y + (x - a.x) / (b.x - a.x) * (b.y - a.y) : b.y
        }
        return curve.last!.y
    }

    /// The area under (acc - weak) / (strong - weak) over the share 0..1, weak and strong being
    /// the curve's ends; nil without a gap.
    static func apgr(_ curve: [(x: Double, y: Double)]) -> Double? {
        let (weak, strong) = (curve.first!.y, curve.last!.y)
        guard strong - weak > 1e-12 else { return nil }
        var area = 0.0
        for j in 1..<curve.count {
            area += (curve[j].x - curve[j - 1].x) * ((curve[j].y + curve[j - 1].y) / 2 - weak)
        }
        return area / (strong - weak)
    }

    /// The least share whose accuracy reaches weak + p (strong - weak); nil without a gap.
    static func cpt(_ curve: [(x: Double, y: Double)], _ p: Double) -> Double? {
        let (weak, strong) = (curve.first!.y, curve.last!.y)
        guard strong - weak > 1e-12 else { return nil }
        let target = weak + p * (strong - weak)
        if curve[0].y >= target - 1e-12 { return 0 }
        for j in 1..<curve.count where curve[j].y >= target - 1e-12 {
            let (a, b) = (curve[j - 1], curve[j])
            return b.y > a.y ? a.x + (target - a.y) / (b.y - a.y) * (b.x - a.x) : b.x
        }
        return 1
    }

    /// Indices sorted by rising score, ties by index.
    static func order(_ scores: [Double]) -> [Int] {
        scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] < scores[$1] : $0 < $1 }
    }

    /// Random routing's score of a task for one seed.
    static func randomScore(_ id: String, seed: Int) -> Double {
        Double(XXH64.hash(Array(id.utf8), seed: 0x52414E44 &+ UInt64(seed)))
    }

    /// Evaluates `router` on the test split of `table`.
    package static func run(_ router: Router, _ table: VerdictTable, _ config: RouterEvalConfig = RouterEvalConfig()) throws -> RouterReport {
        var (all, notes) = try RouterTraining.tasks(table, weak: router.weak, strong: router.strong, cache: router.cache)
        let test = all.filter { router.split.part($0.id) == .test }
        guard !test.isEmpty else {
            throw UserError(
                path: "--test", problem: "no test task (\(all.count) tasks have samples of both models and an embedding)",
                fix: "give a table with more tasks", kind: .usage)
        }
        let n = test.count
        let weak = test.map(\.weak), strong = test.map(\.strong)
        let scores = try test.map { t in
            guard let s = router.score(t.input) else { throw RouterTraining.missingFeature(t.id) }
            return s
        }
        let seeds = max(1, config.randomSeeds)
        let randomScores = (0..<seeds).map { s in test.map { randomScore($0.id, seed: s) } }
        let oracleScores = test.map { $0.weak - $0.strong }
        let orders = (router: order(scores), random: randomScores.map(order), oracle: order(oracleScores))

        // Every statistic of one (re)sample of the test tasks, given each task's weight.
        let shares = config.shares
        func statistics(_ w: [Double]) -> (arms: [[Double?]], curves: [[(x: Double, y: Double)]]) {
            let r = curve(order: orders.router, scores: scores, weak: weak, strong: strong, weights: w)
            let o = curve(order: orders.oracle, scores: oracleScores, weak: weak, strong: strong, weights: w)
            let randoms = (0..<seeds).map {
                curve(order: orders.random[$0], scores: randomScores[$0], weak: weak, strong: strong, weights: w)
            }
            func mean(_ xs: [Double?]) -> Double? {
                let v = xs.compactMap { $0 }
                return v.count == xs.count ? v.reduce(0, +) / Double(v.count) : nil
            }
            let random: [Double?] =
                [mean(randoms.map(apgr)), mean(randoms.map { cpt($0, 0.5) }), mean(randoms.map { cpt($0, 0.8) })]
                + shares.map { x in randoms.map { accuracy($0, at: x) }.reduce(0, +) / Double(seeds) }
            func arm(_ c: [(x: Double, y: Double)]) -> [Double?] {
                [apgr(c), cpt(c, 0.5), cpt(c, 0.8)] + shares.map { accuracy(c, at: $0) }
            }
            return ([arm(r), random, arm(o)], [r, randoms[0], o])
        }
        let full = statistics([Double](repeating: 1, count: n))
        let width = 3 + shares.count
        let intervals = TaskStatistics.bootstrapIntervals(tasks: n, config.bootstrap) { indices in
            var w = [Double](repeating: 0, count: n)
            for i in indices { w[i] += 1 }
            let s = statistics(w).arms
            let gain: Double? = s[0][0].flatMap { a in s[1][0].map { a - $0 } }
            return s.flatMap { $0 } + [gain]
        }
        func estimate(_ value: Double?, _ k: Int) -> Estimate? {
            value.map { v in Estimate(value: v, ciLow: intervals[k]?.low ?? v, ciHigh: intervals[k]?.high ?? v) }
        }
        let names = ["router", "random", "oracle"]
        var arms: [RouterArm] = []
        for a in 0..<3 {
            let s = full.arms[a], base = a * width
            // The random arm's curve is the first seed's; its sweep is the mean over seeds.
            arms.append(
                RouterArm(
                    name: names[a] + (a == 1 ? " (\(seeds) seeds)" : ""), apgr: estimate(s[0], base),
                    cpt50: estimate(s[1], base + 1), cpt80: estimate(s[2], base + 2),
                    sweep: shares.enumerated().map { j, x in .init(share: x, accuracy: estimate(s[3 + j], base + 3 + j)!) },
                    curve: full.curves[a].map { [$0.x, $0.y] }))
        }
        let gain = full.arms[0][0].flatMap { a in full.arms[1][0].map { a - $0 } }
        if gain == nil {
            notes.append("the strong model is not better than the weak one on the test split: no gap to recover, so no APGR or CPT")
        }

        // The calibrated thresholds on the test split, and the cluster router's own decision.
        var points: [(label: String, threshold: Double, target: Double?, calibration: Double?)] = router.thresholds.map {
            ("\(Int(($0.target * 100).rounded()))% strong calls", $0.threshold, $0.target, $0.calibrationShare)
        }
        if case .kmeans(let m) = router.model {
            points.append(("alpha = \(String(format: "%g", m.alpha)) decision (threshold 0)", 0, nil, nil))
        }
        var columns = [weak, strong]
        for p in points {
            let escalate = scores.map { $0 < p.threshold }
            columns.append(escalate.map { $0 ? 1 : 0 })
            columns.append(test.indices.map { escalate[$0] ? strong[$0] : weak[$0] })
        }
        let ci = TaskStatistics.bootstrapIntervals(columns, config.bootstrap)
        func meanEstimate(_ c: Int) -> Estimate {
            Estimate(value: columns[c].reduce(0, +) / Double(n), ciLow: ci[c].low, ciHigh: ci[c].high)
        }
        let calibrated = points.enumerated().map { i, p in
            CalibratedPoint(
                label: p.label, target: p.target, threshold: p.threshold, calibrationShare: p.calibration,
                testShare: meanEstimate(2 + 2 * i), accuracy: meanEstimate(3 + 2 * i))
        }
        let features: [RouterFeature]
        if case .logistic(let m) = router.model { features = m.features } else { features = [.embedding] }
        return RouterReport(
            kind: router.model.kind, weak: router.weak, strong: router.strong, label: router.label, features: features, split: router.split,
            settings: config, trainTasks: all.filter { router.split.part($0.id) == .train }.count,
            calibrationTasks: all.filter { router.split.part($0.id) == .calibration }.count, testTasks: n,
            weakAccuracy: meanEstimate(0), strongAccuracy: meanEstimate(1), arms: arms,
            apgrOverRandom: estimate(gain, 3 * width), calibrated: calibrated, notes: notes)
    }
}
