// Order statistics and Pareto fronts for the benchmarks, the sweep's reports and the cascade analysis.

/// The median: the middle value, or the mean of the two middle ones.
package func median(_ xs: [Double]) -> Double { quantile(sorted: xs.sorted(), 0.5) }

/// The q-quantile (0 ... 1) of sorted values, linearly interpolated between neighbours.
package func quantile(sorted: [Double], _ q: Double) -> Double {
    precondition(!sorted.isEmpty, "quantile of no values")
    let x = q * Double(sorted.count - 1)
    let i = Int(x), frac = x - Double(i)
    return i + 1 < sorted.count ? sorted[i] + frac * (sorted[i + 1] - sorted[i]) : sorted[i]
}

/// Indices of the points not dominated by another: no other point has a `lower` value at most
/// as high and a `higher` value at least as high, with one of them strictly better. Sorted by
/// `higher`. The sweep passes (loss, decode speed), the cascade analysis (cost, accuracy).
package func paretoFront(lower: [Double], higher: [Double]) -> [Int] {
    precondition(lower.count == higher.count, "\(lower.count) values to lower for \(higher.count) to raise")
    let front = lower.indices.filter { i in
        !lower.indices.contains { j in
            j != i && lower[j] <= lower[i] && higher[j] >= higher[i] && (lower[j] < lower[i] || higher[j] > higher[i])
        }
    }
    return front.sorted { higher[$0] < higher[$1] }
}
