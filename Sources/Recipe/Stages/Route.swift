// The `route` stage: a learned router between two models the run evaluated (docs/routing.md,
// *Learned routers*; docs/recipes.md).

import JSON

/// Train, calibrate and evaluate a learned router on the run's verdicts.
package struct RouteStage: StageSettings {
    package static let type = StageType.route
    package static let kinds = ["logistic", "knn", "kmeans"]
    package static let labels = ["weak", "margin", "credit"]
    package static let featureNames = ["embedding", "length", "agreement", "logprob", "logprob_quantiles"]

    package var name = "route"
    /// The weak model, which embeds the prompts. Required: `"@stage"` or a file.
    package var checkpoint = CheckpointSource.stage("")
    /// The two models' names in the run's verdict table (eval arms, sample stages). Required.
    package var weak = ""
    package var strong = ""
    /// `logistic`, `knn` or `kmeans`. Default `logistic`.
    package var kind = "logistic"
    /// `weak`, `margin` or `credit` (the weak model's mean partial credit). Default `weak`.
    package var label = "weak"
    /// The logistic router's features. Default embedding and length.
    package var features = ["embedding", "length"]
    /// >= 0. Default 1.
    package var l2: Double = 1
    /// kNN's neighbours, >= 1. Default 10.
    package var k: Int = 10
    /// k-means clusters, >= 1. Default 8.
    package var clusters: Int = 8
    /// k-means trade-off, (0, 1]. Default 1.
    package var alpha: Double = 1
    /// Shares of tasks that calibrate and test; their sum below 1. Default 0.25 each.
    package var calibration: Double = 0.25
    package var test: Double = 0.25
    /// Target shares of strong calls, each 0...1. Default 0.1 ... 0.9.
    package var shares: [Double] = (1...9).map { Double($0) / 10 }
    /// Seeds of random routing, >= 1. Default 10.
    package var randomSeeds: Int = 10
    /// Bootstrap resamples, >= 0. Default 2000.
    package var resamples: Int = 2000
    /// >= 0. Default: the recipe's seed. Seeds the split, k-means and the bootstrap.
    package var seed: Int = 0
    /// The router file; the verdict table (`verdicts.jsonl`) and the evaluation (`.eval.json`,
    /// `.md`, `.svg`) are written beside it. Default `router.h5`.
    package var output = "router.h5"

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, checkpoint, weak, strong, kind, label, features, l2, k, clusters, alpha, calibration, test, shares
        case randomSeeds = "random_seeds"
        case resamples, seed, output
    }

    package var checkpointInputs: [CheckpointSource] { [checkpoint] }
    package var inputFiles: [String] { [] }
}

extension RouteStage {
    package static func read(_ v: JSONValue, path: String, name: String, seed: Int, log: IssueLog) -> RouteStage {
        let r = ObjectReader<RouteStage.CodingKeys>(v, path: path, log: log, alsoAllowed: ["type"])
        var s = RouteStage()
        s.name = name
        s.seed = seed
        readCommon(r, name: .name, output: .output, into: &s)
        if let c = r.string(.checkpoint) {
            s.checkpoint = CheckpointSource(c)
        } else if !r.has(.checkpoint) {
            r.missing(.checkpoint, hint: "the weak model, e.g. \"@small\"")
        }
        readModelPair(r, weak: .weak, strong: .strong, into: &s.weak, &s.strong)
        if let kind = r.string(.kind) {
            if kinds.contains(kind) {
                s.kind = kind
            } else {
                log.add(.invalidValue(got: kind, allowed: kinds, suggestion: nil), at: r.path(.kind))
            }
        }
        if let label = r.string(.label) {
            if labels.contains(label) {
                s.label = label
            } else {
                log.add(.invalidValue(got: label, allowed: labels, suggestion: nil), at: r.path(.label))
            }
        }
        if let features = r.strings(.features, acceptSingle: true) {
            for f in features where !featureNames.contains(f) {
                log.add(.invalidValue(got: f, allowed: featureNames, suggestion: nil), at: r.path(.features))
            }
            if features.isEmpty { log.add(.rule("must list at least one feature"), at: r.path(.features)) }
            s.features = features
        }
        r.read(.l2, into: &s.l2, .atLeast(0))
        r.read(.k, into: &s.k, .atLeast(1))
        r.read(.clusters, into: &s.clusters, .atLeast(1))
        r.read(.alpha, into: &s.alpha, .leftOpen(0, 1))
        r.read(.calibration, into: &s.calibration, .leftOpen(0, 1))
        r.read(.test, into: &s.test, .leftOpen(0, 1))
        if s.calibration + s.test >= 1 {
            log.add(.rule("calibration + test must leave tasks to train on (their sum is below 1)"), at: r.path(.test))
        }
        if let shares = r.numbers(.shares, .closed(0, 1)) { s.shares = shares }
        r.read(.randomSeeds, into: &s.randomSeeds, .atLeast(1))
        r.read(.resamples, into: &s.resamples, .atLeast(0))
        r.read(.seed, into: &s.seed, .atLeast(0))
        return s
    }

    package var stage: Stage { .route(self) }
    package static let producesCheckpoint = false
    package static let readsEarlierStages: [StageType] = [.eval, .sample]

    package mutating func link(_ l: StageLinker) {
        if l.given.contains("checkpoint") { checkpoint = l.source(checkpoint, given: true, at: "checkpoint") ?? checkpoint }
    }
}

/// The `weak` and `strong` models of a stage that reads the run's verdict table: both required,
/// and not the same.
func readModelPair<K: CodingKey & CaseIterable & RawRepresentable<String>>(
    _ r: ObjectReader<K>, weak weakKey: K, strong strongKey: K, into weak: inout String, _ strong: inout String
) {
    for key in [weakKey, strongKey] {
        if let n = r.string(key) {
            if key.rawValue == weakKey.rawValue { weak = n } else { strong = n }
        } else if !r.has(key) {
            r.missing(key, hint: "a model of the run's verdict table: an eval arm's name or a sample stage's folder")
        }
    }
    if !weak.isEmpty && weak == strong { r.log.add(.rule("the strong model is the weak one"), at: r.path(strongKey)) }
}
