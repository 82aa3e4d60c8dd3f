// Order statistics for the benchmarks and the sweep's reports.

/// The median: the middle value, or the mean of the two middle ones.
package func median(_ xs: [Double]) -> Double { quantile(sorted: xs.sorted(), 0.5) }

/// The q-quantile (0 ... 1) of sorted values, linearly interpolated between neighbours.
package func quantile(sorted: [Double], _ q: Double) -> Double {
    precondition(!sorted.isEmpty, "quantile of no values")
    let x = q * Double(sorted.count - 1)
    let i = Int(x), frac = x - Double(i)
    return i + 1 < sorted.count ? sorted[i] + frac * (sorted[i + 1] - sorted[i]) : sorted[i]
}
