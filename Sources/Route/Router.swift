// Learned routers (docs/routing.md, *Learned routers*): from what the weak model gives for free
// on a request (the mean of its final hidden states over the prompt, the prompt's length, and
// offline, for cascades, its samples' agreement and token log-probabilities: mean, minimum and
// quantiles), a score that predicts
// how well the weak model answers it. Requests scoring below a threshold go to the strong model;
// calibration (RouterCalibration.swift) sets the thresholds for target shares of strong calls.
//
// Three models (Ong et al. 2024, RouteLLM, for the learned routers against random routing;
// Zhang et al. 2025, Avengers-Pro, for the cluster router):
//
// - logistic regression on the standardised features, with L2 (not on the bias) and the weak
//   model's pass rate on a task as a soft label, fitted by Newton's method: its score is the
//   predicted probability that a weak sample is right;
// - k nearest neighbours by cosine similarity of the embeddings: the mean pass rate of the k
//   most similar training tasks;
// - k-means clusters of the normalised embeddings, each with the weak and the strong model's
//   mean accuracy on its training tasks: the score of a request is its nearest cluster's
//   utility difference alpha (acc_weak - acc_strong) + (1 - alpha) (cost_strong - cost_weak),
//   with costs normalised to weak 0 and strong 1 (divided by alpha, so alpha = 1 ranks by the
//   accuracy difference alone). A threshold of 0 is the trade-off's own decision; calibrated
//   thresholds move along the same order.
//
// Every score is "higher keeps the weak model". Features, standardisation and labels are
// Double; embeddings are Float as the model computes them.
//
// Shapes: n training tasks, d features, e embedding width, c clusters.

import Core
import Foundation
import Platform

/// What a router sees of one request.
package struct RouterInput: Sendable, Equatable {
    /// The weak model's mean final hidden state over the prompt tokens: [e].
    package var embedding: [Float]
    /// Tokens of the prompt as embedded.
    package var promptTokens: Int
    /// Offline features of a cascade's samples, by name (`agreement`, `logprob_mean`,
    /// `logprob_min`, `logprob_q10`, `logprob_q25`, `logprob_median`); absent when not known.
    package var extra: [String: Double] = [:]

    package init(embedding: [Float], promptTokens: Int, extra: [String: Double] = [:]) {
        (self.embedding, self.promptTokens, self.extra) = (embedding, promptTokens, extra)
    }
}

/// The features a logistic router reads besides the embedding.
package enum RouterFeature: String, Sendable, CaseIterable, Codable {
    /// The embedding's e values.
    case embedding
    /// log(1 + prompt tokens).
    case length
    /// The share of the weak model's samples giving its most common readable answer.
    case agreement
    /// The first sample's mean and minimum token log-probability.
    case logprob
    /// The first sample's 10% and 25% quantiles and median token log-probability.
    case logprobQuantiles = "logprob_quantiles"

    /// Whether a live request has it without sampling (serving needs this).
    package var isFree: Bool { self == .embedding || self == .length }

    /// The values it adds to a feature vector, or nil when `input` lacks them.
    func values(_ input: RouterInput) -> [Double]? {
        switch self {
        case .embedding: return input.embedding.map(Double.init)
        case .length: return [log(1 + Double(input.promptTokens))]
        case .agreement: return input.extra["agreement"].map { [$0] }
        case .logprob:
            guard let mean = input.extra["logprob_mean"], let min = input.extra["logprob_min"] else { return nil }
            return [mean, min]
        case .logprobQuantiles:
            let values = ["logprob_q10", "logprob_q25", "logprob_median"].compactMap { input.extra[$0] }
            return values.count == 3 ? values : nil
        }
    }
}

package enum RouterKind: String, Sendable, CaseIterable, Codable {
    case logistic, knn, kmeans
}

/// L2-normalised copy of `v` (a zero vector stays zero).
func normalised(_ v: [Float]) -> [Float] {
    var s: Float = 0
    for x in v { s += x * x }
    let r = s > 0 ? 1 / s.squareRoot() : 0
    return v.map { $0 * r }
}

func dot(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "dot of [\(a.count)] and [\(b.count)]")
    var s: Float = 0
    for i in a.indices { s += a[i] * b[i] }
    return s
}

// MARK: - Logistic regression

/// p(weak right | x) = sigmoid(w . standardise(x) + b).
package struct LogisticRouter: Sendable, Equatable {
    package var features: [RouterFeature]
    /// Standardisation: x' = (x - mean) / scale, per feature value.
    package var mean: [Double]
    package var scale: [Double]
    package var weights: [Double]
    package var bias: Double
    package var l2: Double

    /// The standardised feature vector of `input` (nil when a feature is missing).
    func vector(_ input: RouterInput) -> [Double]? {
        var x: [Double] = []
        for f in features {
            guard let v = f.values(input) else { return nil }
            x += v
        }
        return x
    }

    package func score(_ input: RouterInput) -> Double? {
        guard let x = vector(input), x.count == weights.count else { return nil }
        var z = bias
        for i in x.indices { z += weights[i] * (x[i] - mean[i]) / scale[i] }
        return sigmoid(z)
    }

    /// Fits w and b to minimise the mean soft-label cross-entropy + (l2 / 2) |w|^2 over the
    /// rows of `x` ([n, d], already standardised) with labels `y` in 0...1. Newton's method with
    /// step halving: the objective is convex (strictly in w for l2 > 0), so it converges in a
    /// few steps; stops when the largest gradient entry is below 1e-9 or after 50 steps.
    package static func fit(x: [[Double]], y: [Double], l2: Double) -> (weights: [Double], bias: Double) {
        precondition(x.count == y.count && !x.isEmpty, "\(x.count) rows for \(y.count) labels")
        let n = x.count, d = x[0].count, p = d + 1  // the bias is parameter d
        // Rows with a trailing 1, as Float for the Hessian's product: [n, p].
        var rows = [Float](repeating: 0, count: n * p)
        for i in 0..<n {
            for j in 0..<d { rows[i * p + j] = Float(x[i][j]) }
            rows[i * p + d] = 1
        }
        var theta = [Double](repeating: 0, count: p)
        func margins(_ t: [Double]) -> [Double] {
            (0..<n).map { i in
                var z = t[d]
                for j in 0..<d { z += t[j] * x[i][j] }
                return z
            }
        }
        func objective(_ t: [Double]) -> Double {
            let z = margins(t)
            var loss = 0.0
            // -y log s(z) - (1 - y) log(1 - s(z)) = softplus(z) - y z, stable for any z.
            for i in 0..<n { loss += softplus(z[i]) - y[i] * z[i] }
            var penalty = 0.0
            for j in 0..<d { penalty += t[j] * t[j] }
            return loss / Double(n) + l2 / 2 * penalty
        }
        var current = objective(theta)
        for _ in 0..<50 {
            let z = margins(theta)
            let s = z.map(sigmoid)
            var g = [Double](repeating: 0, count: p)
            for i in 0..<n {
                let r = (s[i] - y[i]) / Double(n)
                for j in 0..<d { g[j] += r * x[i][j] }
                g[d] += r
            }
            for j in 0..<d { g[j] += l2 * theta[j] }
            guard g.map(abs).max()! > 1e-9 else { break }
            // H = Xᵀ diag(s (1 - s) / n) X + l2 I (not on the bias): [p, p].
            var weighted = rows
            for i in 0..<n {
                let wgt = Float(max(s[i] * (1 - s[i]), 1e-12) / Double(n))
                for j in 0..<p { weighted[i * p + j] *= wgt }
            }
            var h32 = [Float](repeating: 0, count: p * p)
            weighted.withUnsafeBufferPointer { a in
                rows.withUnsafeBufferPointer { b in
                    h32.withUnsafeMutableBufferPointer { c in
                        BLAS.sgemm(
                            transA: true, transB: false, m: p, n: p, k: n, a: a.baseAddress!, lda: p, b: b.baseAddress!,
                            ldb: p, c: c.baseAddress!, ldc: p)  // [p, n] x [n, p]
                    }
                }
            }
            var h = h32.map(Double.init)
            for j in 0..<d { h[j * p + j] += l2 }
            h[d * p + d] += 1e-9  // keeps the bias's pivot positive when every row is certain
            guard let step = solveSymmetric(h, g, p) else { break }
            var t = 1.0
            var next = theta
            var improved = false
            for _ in 0..<30 {
                for j in 0..<p { next[j] = theta[j] - t * step[j] }
                let value = objective(next)
                if value <= current { (theta, current, improved) = (next, value, true); break }
                t /= 2
            }
            if !improved { break }
        }
        return (Array(theta[0..<d]), theta[d])
    }

    /// Trains on `inputs` with labels `y`: standardises each feature value over the inputs
    /// (a constant one keeps scale 1), then `fit`.
    package static func train(
        _ inputs: [RouterInput], labels y: [Double], features: [RouterFeature], l2: Double
    ) throws -> LogisticRouter {
        var router = LogisticRouter(features: features, mean: [], scale: [], weights: [], bias: 0, l2: l2)
        var x: [[Double]] = []
        for (i, input) in inputs.enumerated() {
            guard let v = router.vector(input) else {
                throw UserError(
                    path: "--features", problem: "training task \(i + 1) lacks a feature of \(features.map(\.rawValue))",
                    fix: "drop agreement and the logprob features, or use a table whose weak samples record log-probabilities "
                        + "(tables written before the quantiles: build them again with `distill verdicts build`)", kind: .usage)
            }
            x.append(v)
        }
        let d = x[0].count, n = Double(x.count)
        router.mean = (0..<d).map { j in x.map { $0[j] }.reduce(0, +) / n }
        router.scale = (0..<d).map { j in
            let m = router.mean[j]
            let v = x.map { ($0[j] - m) * ($0[j] - m) }.reduce(0, +) / n
            return v > 1e-12 ? v.squareRoot() : 1
        }
        let standardised = x.map { row in (0..<d).map { (row[$0] - router.mean[$0]) / router.scale[$0] } }
        (router.weights, router.bias) = fit(x: standardised, y: y, l2: l2)
        return router
    }
}

func sigmoid(_ z: Double) -> Double { z >= 0 ? 1 / (1 + exp(-z)) : exp(z) / (1 + exp(z)) }
func softplus(_ z: Double) -> Double { z > 0 ? z + log1p(exp(-z)) : log1p(exp(z)) }

/// Solves A x = b for a symmetric positive definite A ([p, p], row-major) by Cholesky; nil
/// when A is not positive definite.
func solveSymmetric(_ a: [Double], _ b: [Double], _ p: Int) -> [Double]? {
    var l = [Double](repeating: 0, count: p * p)
    for i in 0..<p {
        for j in 0...i {
            var s = a[i * p + j]
            for k in 0..<j { s -= l[i * p + k] * l[j * p + k] }
            if i == j {
                guard s > 0 else { return nil }
                l[i * p + i] = s.squareRoot()
            } else {
                l[i * p + j] = s / l[j * p + j]
            }
        }
    }
    var y = b
    for i in 0..<p {
        for k in 0..<i { y[i] -= l[i * p + k] * y[k] }
        y[i] /= l[i * p + i]
    }
    for i in stride(from: p - 1, through: 0, by: -1) {
        for k in (i + 1)..<p { y[i] -= l[k * p + i] * y[k] }
        y[i] /= l[i * p + i]
    }
    return y
}

// MARK: - k nearest neighbours

/// The mean label of the k training tasks whose embeddings are most similar (cosine).
package struct NeighbourRouter: Sendable, Equatable {
    package var k: Int
    /// Normalised training embeddings, [n][e], and their labels.
    package var embeddings: [[Float]]
    package var labels: [Double]

    /// `normalise: false` for embeddings already normalised (read back from a router file).
    package init(k: Int, embeddings: [[Float]], labels: [Double], normalise: Bool = true) {
        self.k = min(max(1, k), embeddings.count)
        self.embeddings = normalise ? embeddings.map(normalised) : embeddings
        self.labels = labels
    }

    package func score(_ input: RouterInput) -> Double? {
        guard let width = embeddings.first?.count, input.embedding.count == width else { return nil }
        let q = normalised(input.embedding)
        // The k largest similarities; ties to the earlier training task.
        let order = embeddings.indices.map { (i: $0, s: dot(q, embeddings[$0])) }
            .sorted { $0.s != $1.s ? $0.s > $1.s : $0.i < $1.i }
        return order.prefix(k).map { labels[$0.i] }.reduce(0, +) / Double(k)
    }
}

// MARK: - k-means clusters

/// Avengers-Pro's router for one weak and one strong model.
package struct ClusterRouter: Sendable, Equatable {
    /// Normalised centroids, [c][e].
    package var centroids: [[Float]]
    /// The weak and the strong model's mean accuracy on each cluster's training tasks (for an
    /// empty cluster, over all training tasks).
    package var weakAccuracy: [Double]
    package var strongAccuracy: [Double]
    /// The quality/cost trade-off, 0 < alpha <= 1 (1: accuracy alone).
    package var alpha: Double

    /// The nearest centroid by cosine similarity (ties to the lower index).
    package func cluster(_ embedding: [Float]) -> Int {
        let q = normalised(embedding)
        var best = 0
        var bestSimilarity = -Float.infinity
        for (c, centroid) in centroids.enumerated() {
            let s = dot(q, centroid)
            if s > bestSimilarity { (best, bestSimilarity) = (c, s) }
        }
        return best
    }

    package func score(_ input: RouterInput) -> Double? {
        guard let width = centroids.first?.count, input.embedding.count == width else { return nil }
        let c = cluster(input.embedding)
        return weakAccuracy[c] - strongAccuracy[c] + (1 - alpha) / alpha
    }

    /// k-means (spherical: normalised embeddings, cosine similarity) with k-means++ seeding from
    /// `seed`, Lloyd's iterations until no assignment changes (at most 100); then each
    /// cluster's mean weak and strong accuracy.
    package static func train(
        embeddings: [[Float]], weak: [Double], strong: [Double], clusters: Int, alpha: Double, seed: Int
    ) -> ClusterRouter {
        precondition(!embeddings.isEmpty && embeddings.count == weak.count && weak.count == strong.count)
        let points = embeddings.map(normalised)
        let n = points.count, c = min(max(1, clusters), n)
        var rng = RNG(seed: UInt64(bitPattern: Int64(seed)) ^ 0x6B6D_6561_6E73)
        var centroids = [points[min(n - 1, Int(rng.uniform() * Double(n)))]]
        while centroids.count < c {
            // Next seed with probability proportional to the squared distance (2 - 2 cos) to
            // the nearest chosen one.
            let d2 = points.map { p in centroids.map { max(0, 2 - 2 * Double(dot(p, $0))) }.min()! }
            let total = d2.reduce(0, +)
            guard total > 0 else { break }
            var r = rng.uniform() * total
            var pick = n - 1
            for (i, v) in d2.enumerated() {
                r -= v
                if r < 0 { pick = i; break }
            }
            centroids.append(points[pick])
        }
        var router = ClusterRouter(centroids: centroids, weakAccuracy: [], strongAccuracy: [], alpha: alpha)
        var assignment = [Int](repeating: -1, count: n)
        for _ in 0..<100 {
            let next = points.map { router.cluster($0) }
            if next == assignment { break }
            assignment = next
            for k in router.centroids.indices {
                let members = points.indices.filter { assignment[$0] == k }
                guard !members.isEmpty else { continue }
                var sum = [Float](repeating: 0, count: points[0].count)
                for i in members { for j in sum.indices { sum[j] += points[i][j] } }
                router.centroids[k] = normalised(sum)
            }
        }
        let allWeak = weak.reduce(0, +) / Double(n), allStrong = strong.reduce(0, +) / Double(n)
        for k in router.centroids.indices {
            let members = points.indices.filter { assignment[$0] == k }
            router.weakAccuracy.append(
                members.isEmpty ? allWeak : members.map { weak[$0] }.reduce(0, +) / Double(members.count))
            router.strongAccuracy.append(
                members.isEmpty ? allStrong : members.map { strong[$0] }.reduce(0, +) / Double(members.count))
        }
        return router
    }
}

// MARK: - The router

/// A trained router: its model, what it was trained for, and its calibrated thresholds.
package struct Router: Sendable, Equatable {
    package enum Model: Sendable, Equatable {
        case logistic(LogisticRouter)
        case knn(NeighbourRouter)
        case kmeans(ClusterRouter)

        package var kind: RouterKind {
            switch self {
            case .logistic: .logistic
            case .knn: .knn
            case .kmeans: .kmeans
            }
        }
    }

    /// A threshold for a target share of strong calls: requests scoring below it escalate.
    package struct Threshold: Sendable, Equatable, Codable {
        /// The share asked for, 0...1.
        package var target: Double
        package var threshold: Double
        /// The share of calibration tasks it escalates.
        package var calibrationShare: Double

        package init(target: Double, threshold: Double, calibrationShare: Double) {
            (self.target, self.threshold, self.calibrationShare) = (target, threshold, calibrationShare)
        }

        enum CodingKeys: String, CodingKey {
            case target, threshold
            case calibrationShare = "calibration_share"
        }
    }

    package var model: Model
    package var weak: String
    package var strong: String
    /// The weak model's checksum (`xxh64:…`, as CheckpointTeacher computes it), whose
    /// embeddings the router reads; serving refuses another model.
    package var weakChecksum: String
    /// The verdict table's identities of the two models, when it records them.
    package var weakIdentity: String?
    package var strongIdentity: String?
    /// How tasks were split: calibration and test shares of XXH64(seed, task id).
    package var split: RouterSplit
    /// What the logistic and kNN models were trained to predict.
    package var label: RouterLabel = .weak
    package var thresholds: [Threshold] = []
    /// The embeddings of every task of the table the router was trained on, by task id, so
    /// calibration and evaluation need no model.
    package var cache: [String: RouterInput] = [:]

    package init(
        model: Model, weak: String, strong: String, weakChecksum: String, weakIdentity: String? = nil,
        strongIdentity: String? = nil, split: RouterSplit
    ) {
        (self.model, self.weak, self.strong, self.weakChecksum) = (model, weak, strong, weakChecksum)
        (self.weakIdentity, self.strongIdentity, self.split) = (weakIdentity, strongIdentity, split)
    }

    /// Higher keeps the weak model; nil when the input lacks a feature the model reads.
    package func score(_ input: RouterInput) -> Double? {
        switch model {
        case .logistic(let m): m.score(input)
        case .knn(let m): m.score(input)
        case .kmeans(let m): m.score(input)
        }
    }

    /// Whether the router reads only what a live request has (no samples' agreement or log-probabilities).
    package var servable: Bool {
        guard case .logistic(let m) = model else { return true }
        return m.features.allSatisfy(\.isFree)
    }

    /// The calibrated threshold whose target share is nearest `share` (ties to the lower share).
    package func threshold(forShare share: Double) -> Threshold? {
        thresholds.min { a, b in
            let (da, db) = (abs(a.target - share), abs(b.target - share))
            return abs(da - db) > 1e-9 ? da < db : a.target < b.target
        }
    }
}

/// Which tasks train, calibrate and test a router: u = XXH64(seed, task id) / 2^64; u below
/// `calibration` calibrates, below `calibration + test` tests, the rest trains.
package struct RouterSplit: Sendable, Equatable, Codable {
    package var calibration: Double = 0.25
    package var test: Double = 0.25
    package var seed: Int = 0

    package init(calibration: Double = 0.25, test: Double = 0.25, seed: Int = 0) {
        (self.calibration, self.test, self.seed) = (calibration, test, seed)
    }

    package enum Part: String, Sendable { case train, calibration, test }

    package func part(_ id: String) -> Part {
        let h = XXH64.hash(Array(id.utf8), seed: UInt64(bitPattern: Int64(seed)))
        let u = Double(h) / 18_446_744_073_709_551_616.0
        return u < calibration ? .calibration : u < calibration + test ? .test : .train
    }

    package func check() throws {
        guard calibration > 0, test > 0, calibration + test < 1 else {
            throw UserError(
                path: "--calibration/--test",
                problem: "shares \(calibration) and \(test) leave no task to train on, or none to calibrate or test",
                fix: "give two positive shares adding up to less than 1, e.g. 0.25 and 0.25", kind: .usage)
        }
    }
}
