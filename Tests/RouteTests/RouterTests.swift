// Learned routers: the logistic fit against its closed form and finite differences, the
// sweep's APGR and CPT on a curve worked out by hand, calibration hitting its target shares,
// the router file's round trip and its refusal of another model, and kNN / k-means beating
// random routing on separable synthetic data.

import Core
import Foundation
import Platform
import Testing
import Verify

@testable import Route

/// A synthetic table: task i has weak pass rate `weak[i]` and strong pass rate `strong[i]`
/// (as correct samples out of 4), and `embeddings[i]` as its cached input.
func syntheticTable(weak: [Double], strong: [Double]) -> VerdictTable {
    func cell(_ rate: Double) -> ModelCell {
        let c = Int((rate * 4).rounded())
        return ModelCell(samples: (0..<4).map { SampleVerdict(correct: $0 < c, answer: $0 < c ? "right" : "wrong") })
    }
    return VerdictTable(
        models: [
            VerdictModel(name: "W", kind: "eval", source: "w", identity: "xxh64:weak"),
            VerdictModel(name: "S", kind: "eval", source: "s", identity: "xxh64:strong"),
        ],
        rows: weak.indices.map { i in
            VerdictRow(taskID: "task-\(i)", prompt: "prompt \(i)", models: ["W": cell(weak[i]), "S": cell(strong[i])])
        })
}

/// Two kinds of task: near direction A the weak model is right (pass rate 1, strong 1); near
/// direction B it is wrong and the strong model right (0 against 1). Embeddings in 8
/// dimensions with noise.
func separable(_ n: Int, seed: UInt64) -> (table: VerdictTable, cache: [String: RouterInput]) {
    var rng = RNG(seed: seed)
    var weak: [Double] = [], strong: [Double] = [], cache: [String: RouterInput] = [:]
    for i in 0..<n {
        let easy = rng.uniform() < 0.5
        var e = (0..<8).map { _ in Float(rng.normal() * 0.3) }
        e[easy ? 0 : 1] += 1
        weak.append(easy ? 1 : 0)
        strong.append(1)
        cache["task-\(i)"] = RouterInput(embedding: e, promptTokens: 10 + i % 7)
    }
    return (syntheticTable(weak: weak, strong: strong), cache)
}

struct RouterTests {
    /// With no features (every x is 0) the weights stay 0 and the objective is the mean of
    /// softplus(b) - y b, minimised where sigmoid(b) = mean(y): b = log(m / (1 - m)).
    @Test func logisticFitWithoutFeaturesIsTheLogitOfTheMeanLabel() {
        let y = [1, 0, 0.5, 1]  // mean 0.625
        let fit = LogisticRouter.fit(x: Array(repeating: [0.0, 0.0], count: 4), y: y, l2: 0.5)
        #expect(abs(fit.bias - log(0.625 / 0.375)) < 1e-9)
        #expect(fit.weights.allSatisfy { abs($0) < 1e-12 })
    }

    /// At the fitted parameters every partial derivative of the objective, taken by central
    /// differences in Double on an objective written out here, is zero.
    @Test func logisticFitIsAStationaryPointByFiniteDifferences() {
        var rng = RNG(seed: 3)
        let x = (0..<40).map { _ in (0..<3).map { _ in rng.normal() } }
        let y = x.map { sigmoid(1.5 * $0[0] - $0[1] + 0.3) > rng.uniform() ? 1.0 : 0.25 }  // soft labels
        let l2 = 0.1
        let fit = LogisticRouter.fit(x: x, y: y, l2: l2)
        func objective(_ w: [Double], _ b: Double) -> Double {
            var loss = 0.0
            for (xi, yi) in zip(x, y) {
                let p = 1 / (1 + exp(-(zip(w, xi).map { $0 * $1 }.reduce(0, +) + b)))
                loss -= yi * log(p) + (1 - yi) * log(1 - p)
            }
            return loss / Double(x.count) + l2 / 2 * w.map { $0 * $0 }.reduce(0, +)
        }
        let h = 1e-5
        for j in 0...3 {
            var up = fit.weights, down = fit.weights
            var (bu, bd) = (fit.bias, fit.bias)
            if j < 3 { up[j] += h; down[j] -= h } else { bu += h; bd -= h }
            let derivative = (objective(up, bu) - objective(down, bd)) / (2 * h)
            #expect(abs(derivative) < 1e-6, "d/d theta[\(j)] = \(derivative)")
        }
        #expect(fit.weights[0] > 0 && fit.weights[1] < 0)
    }

    /// Four tasks, weak pass rates (1, 0, 0, 0.5), strong (1, 1, 0, 1), scores escalating t2,
    /// t4, t3, t1 in that order. Weak alone 0.375, strong 0.75, gap 0.375. The curve:
    /// (0, 0.375), (0.25, 0.625), (0.5, 0.75), (0.75, 0.75), (1, 0.75); PGR 0, 2/3, 1, 1, 1.
    /// APGR = 0.25 (0 + 2/3)/2 + 0.25 (2/3 + 1)/2 + 0.25 + 0.25 = 19/24.
    /// CPT(50%): 0.5625 is reached on the first segment at 0.25 x 0.1875/0.25 = 0.1875.
    /// CPT(80%): 0.675 on the second at 0.25 + 0.25 x 0.05/0.125 = 0.35.
    @Test func apgrAndCptOnAHandWorkedCurve() throws {
        let weak = [1, 0, 0, 0.5], strong = [1.0, 1, 0, 1], scores = [0.9, 0.1, 0.3, 0.2]
        let c = RouterEvaluation.curve(
            order: RouterEvaluation.order(scores), scores: scores, weak: weak, strong: strong, weights: [1, 1, 1, 1])
        #expect(c.map(\.x) == [0, 0.25, 0.5, 0.75, 1])
        #expect(c.map(\.y) == [0.375, 0.625, 0.75, 0.75, 0.75])
        #expect(abs(try #require(RouterEvaluation.apgr(c)) - 19.0 / 24) < 1e-12)
        #expect(abs(try #require(RouterEvaluation.cpt(c, 0.5)) - 0.1875) < 1e-12)
        #expect(abs(try #require(RouterEvaluation.cpt(c, 0.8)) - 0.35) < 1e-12)
        // Tied scores make one step (a random order within the tie, in expectation), and a
        // task counted twice (a bootstrap resample) weighs twice.
        let tied = RouterEvaluation.curve(
            order: RouterEvaluation.order([0, 0, 1, 1]), scores: [0, 0, 1, 1], weak: weak, strong: strong, weights: [1, 2, 1, 0])
        #expect(tied.map(\.x) == [0, 0.75, 1])
        #expect(tied.map(\.y) == [0.25, 0.75, 0.75])
        // No gap, no APGR.
        #expect(RouterEvaluation.apgr([(0, 0.5), (1, 0.5)]) == nil)
    }

    /// The bootstrap of arbitrary statistics draws the resamples the column version draws:
    /// a mean gets the same interval.
    @Test func statisticBootstrapMatchesTheColumnBootstrapOnAMean() throws {
        let column = (0..<30).map { Double($0 % 7) }
        let config = BootstrapConfig(resamples: 300, seed: 4)
        let columns = TaskStatistics.bootstrapIntervals([column], config)[0]
        let general = try #require(
            TaskStatistics.bootstrapIntervals(tasks: 30, config) { idx in [idx.map { column[$0] }.reduce(0, +) / 30] }[0])
        #expect(abs(columns.low - general.low) < 1e-12 && abs(columns.high - general.high) < 1e-12)
    }

    /// Calibrated thresholds escalate their target share of the calibration split (to within
    /// one task: every score differs), and about that share of the test split.
    @Test func calibrationHitsItsTargetShares() throws {
        let (table, cache) = separable(800, seed: 1)
        var config = RouterTrainConfig(weak: "W", strong: "S")
        config.features = [.embedding, .length]
        let router = try RouterTraining.train(table, config, cache: cache, weakChecksum: "xxh64:w").router
        let calibrationTasks = table.rows.filter { router.split.part($0.taskID) == .calibration }.count
        #expect(router.thresholds.map(\.target) == (1...9).map { Double($0) / 10 })
        for t in router.thresholds {
            #expect(abs(t.calibrationShare - t.target) <= 1.0 / Double(calibrationTasks) + 1e-12)
        }
        var eval = RouterEvalConfig()
        eval.bootstrap.resamples = 100
        let report = try RouterEvaluation.run(router, table, eval)
        for c in report.calibrated { #expect(abs(c.testShare.value - c.target!) < 0.08, "\(c.label): \(c.testShare.value)") }
    }

    /// On separable data each learned router's APGR is above random routing's, the intervals
    /// apart; random's is near its expectation 0.5.
    @Test(arguments: [RouterKind.logistic, .knn, .kmeans])
    func learnedRoutersBeatRandomOnSeparableData(_ kind: RouterKind) throws {
        let (table, cache) = separable(400, seed: 2)
        var config = RouterTrainConfig(weak: "W", strong: "S")
        config.kind = kind
        config.clusters = 4
        let router = try RouterTraining.train(table, config, cache: cache, weakChecksum: "xxh64:w").router
        var eval = RouterEvalConfig()
        eval.bootstrap.resamples = 200
        let report = try RouterEvaluation.run(router, table, eval)
        let learned = try #require(report.arms[0].apgr), random = try #require(report.arms[1].apgr)
        #expect(learned.ciLow > random.ciHigh, "\(kind): \(learned) against \(random)")
        #expect(abs(random.value - 0.5) < 0.1)
        #expect(try #require(report.apgrOverRandom).ciLow > 0)
        let oracle = try #require(report.arms[2].apgr)
        #expect(oracle.value >= learned.value - 1e-12)
        // The files are written from the report.
        #expect(report.markdown(chart: "r.svg").contains("| router | APGR | CPT(50%) | CPT(80%) |"))
        #expect(report.chart().render().hasPrefix("<svg"))
        #expect(report.json().contains("\"apgr_over_random\""))
    }

    /// Where the weak model is never right and the strong model only near direction B, the
    /// weak model's pass rate is 0 everywhere and says nothing; the margin label
    /// (1 + weak - strong) / 2 is 0.5 near A and 0 near B, and the router learns to escalate B.
    @Test func theMarginLabelRoutesWhereOnlyTheStrongModelsGainVaries() throws {
        #expect(RouterLabel.margin.value(weak: 1, strong: 0) == 1 && RouterLabel.margin.value(weak: 0.5, strong: 0.5) == 0.5)
        #expect(RouterLabel.margin.value(weak: 0, strong: 1) == 0 && RouterLabel.weak.value(weak: 0.25, strong: 1) == 0.25)
        var rng = RNG(seed: 6)
        var strong: [Double] = [], cache: [String: RouterInput] = [:]
        for i in 0..<400 {
            let gain = rng.uniform() < 0.5
            var e = (0..<8).map { _ in Float(rng.normal() * 0.3) }
            e[gain ? 1 : 0] += 1
            strong.append(gain ? 1 : 0)
            cache["task-\(i)"] = RouterInput(embedding: e, promptTokens: 10)
        }
        let table = syntheticTable(weak: Array(repeating: 0, count: 400), strong: strong)
        var config = RouterTrainConfig(weak: "W", strong: "S")
        config.label = .margin
        let router = try RouterTraining.train(table, config, cache: cache, weakChecksum: "x").router
        var eval = RouterEvalConfig()
        eval.bootstrap.resamples = 100
        let report = try RouterEvaluation.run(router, table, eval)
        #expect(report.label == .margin)
        // Half the tasks gain 1, half 0: the oracle recovers the gap by share 0.5, APGR
        // 0.5 x 0.5 + 0.5 x 1 = 0.75; random's is 0.5. The router comes within 0.05 of the oracle.
        let learned = try #require(report.arms[0].apgr), oracle = try #require(report.arms[2].apgr)
        #expect(abs(oracle.value - 0.75) < 0.05 && learned.value > oracle.value - 0.05, "\(learned) against \(oracle)")
        #expect(try #require(report.apgrOverRandom).ciLow > 0.15)
    }

    /// The credit label: the weak model is never right, but its answers earn partial credit
    /// near direction A (0.5, 0.5, 0.25, 0.75: mean 0.5) and none near B. `weak` is 0 everywhere
    /// and says nothing; `credit` is 0.5 near A and 0 near B, and the logistic router learns it.
    @Test func theCreditLabelIsTheWeakModelsMeanCredit() throws {
        var rng = RNG(seed: 7)
        var rows: [VerdictRow] = [], cache: [String: RouterInput] = [:], partial: [String: Bool] = [:]
        for i in 0..<200 {
            let id = "task-\(i)"
            partial[id] = rng.uniform() < 0.5
            var e = (0..<8).map { _ in Float(rng.normal() * 0.3) }
            e[partial[id]! ? 0 : 1] += 1
            let credits = partial[id]! ? [0.5, 0.5, 0.25, 0.75] : [0, 0, 0, 0]
            let weak = ModelCell(samples: credits.map { SampleVerdict(correct: false, answer: "x", credit: $0) })
            let strong = ModelCell(samples: [SampleVerdict(correct: true, answer: "a", credit: 1)])
            rows.append(VerdictRow(taskID: id, prompt: "p", models: ["W": weak, "S": strong]))
            cache[id] = RouterInput(embedding: e, promptTokens: 5)
        }
        var table = VerdictTable(
            models: [VerdictModel(name: "W", kind: "eval", source: "w"), VerdictModel(name: "S", kind: "eval", source: "s")],
            rows: rows)
        #expect(RouterLabel.credit.value(weak: 0, strong: 1, weakCredit: 0.5) == 0.5)
        #expect(RouterLabel.credit.value(weak: 0, strong: 1) == nil)
        var config = RouterTrainConfig(weak: "W", strong: "S")
        (config.kind, config.label, config.neighbours) = (.knn, .credit, 1)
        let trained = try RouterTraining.train(table, config, cache: cache, weakChecksum: "x").router
        guard case .knn(let knn) = trained.model else {
            Issue.record("not a kNN router")
            return
        }
        // The kNN router keeps its training labels: each task's mean credit, 0.5 or 0.
        #expect(Set(knn.labels) == [0, 0.5])
        (config.kind, config.l2) = (.logistic, 0.01)
        let logistic = try RouterTraining.train(table, config, cache: cache, weakChecksum: "x").router
        for id in ["task-0", "task-1", "task-2", "task-3"] {
            let score = try #require(logistic.score(cache[id]!))
            #expect(partial[id]! ? (0.35...0.65).contains(score) : score < 0.15, "\(id): \(score)")
        }
        // A sample without credit (a source older than credit): refused before training, naming the option.
        table.rows[3].models["W"]!.samples[2].credit = nil
        #expect {
            try RouterTraining.train(table, config, cache: cache, weakChecksum: "x")
        } throws: { error in
            guard let e = error as? UserError else { return false }
            return e.path == "--label" && e.kind == .usage && e.problem.contains("none for 1 of \"W\"'s 800 samples")
        }
    }

    /// A cascade's offline feature: where the weak model's 4 samples agree it is right, where
    /// they scatter it is wrong. A router on agreement alone ranks every scattered task first
    /// (APGR 0.75, the oracle's, with half the tasks gaining 1); it cannot be served.
    @Test func agreementAmongTheWeakSamplesIsAFeatureOfflineOnly() throws {
        var rows: [VerdictRow] = [], cache: [String: RouterInput] = [:]
        for i in 0..<200 {
            let agree = i % 2 == 0
            let weak = ModelCell(samples: (0..<4).map { j in SampleVerdict(correct: agree, answer: agree ? "a" : "x\(j)") })
            let strong = ModelCell(samples: [SampleVerdict(correct: true, answer: "a")])
            rows.append(VerdictRow(taskID: "task-\(i)", prompt: "p", models: ["W": weak, "S": strong]))
            cache["task-\(i)"] = RouterInput(embedding: [1, 0], promptTokens: 5)
        }
        let table = VerdictTable(
            models: [VerdictModel(name: "W", kind: "eval", source: "w"), VerdictModel(name: "S", kind: "eval", source: "s")], rows: rows)
        var config = RouterTrainConfig(weak: "W", strong: "S")
        config.features = [.agreement]
        let router = try RouterTraining.train(table, config, cache: cache, weakChecksum: "x").router
        #expect(!router.servable)
        var eval = RouterEvalConfig()
        eval.bootstrap.resamples = 100
        let report = try RouterEvaluation.run(router, table, eval)
        let learned = try #require(report.arms[0].apgr).value, oracle = try #require(report.arms[2].apgr).value
        #expect(abs(learned - oracle) < 1e-9 && learned > 0.6, "\(learned) against the oracle's \(oracle)")
    }

    /// Token log-probability quantiles, offline: the weak model's first sample on the tasks it
    /// gets right has log-probabilities [-3, -0.5 x 9], on those it gets wrong [-3, -1 x 3,
    /// -0.25 x 6]: the same mean (-0.75) and minimum (-3), but q25 -0.5 against -1 and median
    /// -0.5 against -0.25. The logprob feature (mean, minimum) sees no difference (every score
    /// ties: APGR 0.5, random's); logprob_quantiles ranks every wrong task first (the oracle's 0.75).
    @Test func logprobQuantilesSeeWhatTheMeanAndMinimumMiss() throws {
        let right = [-3] + Array(repeating: -0.5, count: 9)
        let wrong = [-3, -1, -1, -1] + Array(repeating: -0.25, count: 6)
        let q = SampleVerdict(correct: false, answer: nil).withLogprobs(wrong)
        // Sorted, 10 values: q10 at h = 0.9, q25 at h = 2.25, the median at h = 4.5.
        #expect(q.logprobMean == -0.75 && q.logprobMin == -3)
        #expect(abs(q.logprobQ10! - (-3 + 0.9 * 2)) < 1e-12 && q.logprobQ25 == -1 && q.logprobMedian == -0.25)
        #expect(SampleVerdict(correct: false, answer: nil).withLogprobs([]).logprobQ10 == nil)
        var rows: [VerdictRow] = [], cache: [String: RouterInput] = [:]
        for i in 0..<200 {
            let good = i % 2 == 0
            let weak = ModelCell(
                samples: (0..<2).map { _ in SampleVerdict(correct: good, answer: "a").withLogprobs(good ? right : wrong) })
            let strong = ModelCell(samples: [SampleVerdict(correct: true, answer: "a")])
            rows.append(VerdictRow(taskID: "task-\(i)", prompt: "p", models: ["W": weak, "S": strong]))
            cache["task-\(i)"] = RouterInput(embedding: [1, 0], promptTokens: 5)
        }
        let table = VerdictTable(
            models: [VerdictModel(name: "W", kind: "eval", source: "w"), VerdictModel(name: "S", kind: "eval", source: "s")], rows: rows)
        var eval = RouterEvalConfig()
        eval.bootstrap.resamples = 100
        var apgr: [RouterFeature: Double] = [:]
        for feature in [RouterFeature.logprob, .logprobQuantiles] {
            var config = RouterTrainConfig(weak: "W", strong: "S")
            config.features = [feature]
            let router = try RouterTraining.train(table, config, cache: cache, weakChecksum: "x").router
            #expect(!router.servable)
            apgr[feature] = try #require(RouterEvaluation.run(router, table, eval).arms[0].apgr).value
        }
        #expect(abs(apgr[.logprob]! - 0.5) < 1e-9 && abs(apgr[.logprobQuantiles]! - 0.75) < 0.02, "\(apgr)")
        // A table without quantiles (written before them): refused, naming the option.
        var old = table
        for r in old.rows.indices { old.rows[r].models["W"]!.samples[0].logprobMedian = nil }
        var config = RouterTrainConfig(weak: "W", strong: "S")
        config.features = [.logprobQuantiles]
        #expect { try RouterTraining.train(old, config, cache: cache, weakChecksum: "x") } throws: {
            ($0 as? UserError)?.path == "--features"
        }
    }

    /// A router file reads back as the router written, and refuses another weak model.
    @Test(arguments: [RouterKind.logistic, .knn, .kmeans])
    func routerFileRoundTripsAndRefusesAnotherModel(_ kind: RouterKind) throws {
        let (table, cache) = separable(60, seed: 5)
        var config = RouterTrainConfig(weak: "W", strong: "S")
        (config.kind, config.clusters, config.neighbours, config.alpha, config.label) = (kind, 3, 5, 0.8, .margin)
        let router = try RouterTraining.train(table, config, cache: cache, weakChecksum: "xxh64:0123").router
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("router-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("r.h5").path
        try router.write(to: path)
        let back = try Router.read(path: path)
        #expect(back == router)
        #expect(back.weakIdentity == "xxh64:weak" && back.strongIdentity == "xxh64:strong" && back.label == .margin)
        try back.requireWeak(checksum: "xxh64:0123", name: "--model")
        #expect(throws: UserError.self) { try back.requireWeak(checksum: "xxh64:4567", name: "--model") }
        // A damaged file is refused as bad data before HDF5 reads it.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[bytes.count / 2] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: path))
        #expect { try Router.read(path: path) } throws: { ($0 as? UserError)?.kind == .badData }
    }

    @Test func theNearestCalibratedShareAnswersAServingTarget() throws {
        var router = Router(
            model: .knn(NeighbourRouter(k: 1, embeddings: [[1]], labels: [1])), weak: "W", strong: "S", weakChecksum: "x",
            split: RouterSplit())
        router.thresholds = [0.1, 0.3, 0.5].map { Router.Threshold(target: $0, threshold: $0, calibrationShare: $0) }
        #expect(router.threshold(forShare: 0.3)?.target == 0.3)
        #expect(router.threshold(forShare: 0.42)?.target == 0.5)
        #expect(router.threshold(forShare: 0.2)?.target == 0.1)  // a tie goes to the lower share
        #expect(router.threshold(forShare: 0.95)?.target == 0.5)
    }
}
