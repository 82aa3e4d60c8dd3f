// Analysis of finished trials: a Chinchilla-style power law
// L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, eq. 2) over non-embedding
// parameters N and training tokens D.
//
// The fit uses variable projection: for fixed exponents the loss is linear in (E, A, B), so
// those come from a non-negative least-squares solve, and only (alpha, beta) are searched, on a
// coarse grid and then on grids zoomed around the best point. That cannot diverge the way a
// five-parameter Gauss-Newton started far away can, and on exact synthetic data it recovers
// the coefficients (Tests/RecipeTests/SweepAnalysisTests).

import Foundation

/// L(N, D) = E + A / N^alpha + B / D^beta; without variation in D, L(N) = E + A / N^alpha.
package struct ScalingFit: Codable, Sendable, Equatable {
    package var e: Double
    package var a: Double
    package var alpha: Double
    /// nil when every trial saw the same number of tokens.
    package var b: Double?
    package var beta: Double?
    package var r2: Double
    package var rmse: Double
    package var points: Int

    package func predict(n: Double, d: Double) -> Double {
        e + a / pow(n, alpha) + ((b != nil && beta != nil) ? b! / pow(d, beta!) : 0)
    }

    package var formula: String {
        var s = String(format: "L(N, D) = %.4g + %.4g / N^%.3f", e, a, alpha)
        if let b, let beta { s += String(format: " + %.4g / D^%.3f", b, beta) } else { s = s.replacingOccurrences(of: "L(N, D)", with: "L(N)") }
        return s
    }

    /// Fits the law, or explains why not (too few points or too little variation).
    package static func fit(n: [Double], d: [Double], loss: [Double]) -> Result<ScalingFit, SweepFitUnavailable> {
        precondition(n.count == d.count && d.count == loss.count, "unequal lengths")
        let distinctN = Set(n).count, distinctD = Set(d).count
        let useD = distinctD >= 2
        // Three parameters (E, A, alpha) need four distinct sizes to leave a residual; five
        // need six trials spanning three sizes and two token counts.
        let (needed, neededN) = useD ? (6, 3) : (4, 4)
        guard n.count >= needed, distinctN >= neededN else {
            return .failure(SweepFitUnavailable(reason: "needs at least \(needed) finished trials with \(neededN) or more distinct parameter counts (have \(n.count) trials, \(distinctN) distinct N, \(distinctD) distinct D)"))
        }
        // Over a narrow range of sizes (an equal-parameter sweep) the exponent is not identified.
        if let lo = n.min(), let hi = n.max(), lo > 0, hi / lo < 2 {
            return .failure(SweepFitUnavailable(reason: String(format: "the parameter counts span only %.2fx (%.0f to %.0f); a power law in N needs sizes at least 2x apart", hi / lo, lo, hi)))
        }
        guard n.allSatisfy({ $0 > 0 }), d.allSatisfy({ $0 > 0 }), loss.allSatisfy(\.isFinite) else {
            return .failure(SweepFitUnavailable(reason: "non-positive sizes or non-finite losses"))
        }
        // Exponents are searched in [0.01, 3].
        func solve(_ alpha: Double, _ beta: Double) -> (coef: [Double], sse: Double) {
            var columns: [[Double]] = [Array(repeating: 1, count: n.count), n.map { pow($0, -alpha) }]
            if useD { columns.append(d.map { pow($0, -beta) }) }
            return nonNegativeLeastSquares(columns, loss)
        }
        var best = (alpha: 0.3, beta: 0.3, sse: Double.infinity)
        let coarse = stride(from: 0.05, through: 3.0, by: 0.1).map { $0 }
        for alpha in coarse {
            for beta in useD ? coarse : [0] {
                let s = solve(alpha, beta).sse
                if s < best.sse { best = (alpha, beta, s) }
            }
        }
        var half = 0.1
        for _ in 0..<10 {
            let center = best
            for i in -5...5 {
                let alpha = center.alpha + half * Double(i) / 5
                guard alpha > 0.005 else { continue }
                for j in useD ? Array(-5...5) : [0] {
                    let beta = center.beta + half * Double(j) / 5
                    guard !useD || beta > 0.005 else { continue }
                    let s = solve(alpha, beta).sse
                    if s < best.sse { best = (alpha, beta, s) }
                }
            }
            half /= 4
        }
        let (coef, sse) = solve(best.alpha, best.beta)
        let mean = loss.reduce(0, +) / Double(loss.count)
        let sst = loss.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }
        return .success(
            ScalingFit(
                e: coef[0], a: coef[1], alpha: best.alpha, b: useD ? coef[2] : nil, beta: useD ? best.beta : nil,
                r2: sst > 0 ? 1 - sse / sst : 1, rmse: (sse / Double(loss.count)).squareRoot(), points: loss.count))
    }
}

package struct SweepFitUnavailable: Error, Equatable {
    package var reason: String
}

/// min ||X c - y||^2 subject to c >= 0 for a handful of columns: the best of the
/// unconstrained solves over every subset of columns whose solution is non-negative.
func nonNegativeLeastSquares(_ columns: [[Double]], _ y: [Double]) -> (coef: [Double], sse: Double) {
    let k = columns.count
    var best: (coef: [Double], sse: Double) = (Array(repeating: 0, count: k), y.reduce(0) { $0 + $1 * $1 })
    // A feasible unconstrained solution is the constrained optimum; else try the subsets.
    let masks = leastSquares(columns, y).map { $0.allSatisfy { $0 >= 0 } } == true ? [(1 << k) - 1] : Array(1..<(1 << k))
    for mask in masks {
        let chosen = (0..<k).filter { mask & (1 << $0) != 0 }
        guard let c = leastSquares(chosen.map { columns[$0] }, y), c.allSatisfy({ $0 >= 0 }) else { continue }
        var full = Array(repeating: 0.0, count: k)
        for (i, j) in chosen.enumerated() { full[j] = c[i] }
        var sse = 0.0
        for r in y.indices {
            var p = 0.0
            for j in 0..<k { p += full[j] * columns[j][r] }
            sse += (y[r] - p) * (y[r] - p)
        }
        if sse < best.sse { best = (full, sse) }
    }
    return best
}

/// Unconstrained least squares through the normal equations (Gaussian elimination with
/// partial pivoting); nil when singular.
func leastSquares(_ columns: [[Double]], _ y: [Double]) -> [Double]? {
    let k = columns.count
    var m = Array(repeating: Array(repeating: 0.0, count: k + 1), count: k)
    for i in 0..<k {
        for j in 0..<k { m[i][j] = zip(columns[i], columns[j]).reduce(0) { $0 + $1.0 * $1.1 } }
        m[i][k] = zip(columns[i], y).reduce(0) { $0 + $1.0 * $1.1 }
    }
    for col in 0..<k {
        guard let pivot = (col..<k).max(by: { abs(m[$0][col]) < abs(m[$1][col]) }), abs(m[pivot][col]) > 1e-300 else { return nil }
        m.swapAt(col, pivot)
        for r in 0..<k where r != col {
            let f = m[r][col] / m[col][col]
            for c in col...k { m[r][c] -= f * m[col][c] }
        }
    }
    let x = (0..<k).map { m[$0][k] / m[$0][$0] }
    return x.allSatisfy(\.isFinite) ? x : nil
}
