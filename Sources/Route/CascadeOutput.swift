// The cascade report as files: JSON (every number), Markdown (the tables) and an SVG plot of
// accuracy against cost relative to the strong model, the Pareto front drawn as a line.

import Charts
import Foundation
import Verify

extension CascadeReport {
    /// Sorted keys, two-space indents, a final newline.
    package func json() -> String { reportJSON(self) }

    /// The report as Markdown; `chart` names the SVG to embed.
    package func markdown(chart: String?) -> String {
        let (e, cell) = (formatEstimate, markdownCell)
        let level = Int((settings.bootstrap.level * 100).rounded())
        var out = "# Cascade: \(cell(settings.weak)) -> \(cell(settings.strong))\n\n"
        out +=
            "\(testTasks) test tasks (\(calibrationTasks) more calibrate the difficulty bins; split \(settings.calibration), seed \(settings.seed)). "
        out +=
            "The weak model answers m times; when no answer parses, or the most common readable one (ties to the first given) has a share of the m below tau, the strong model answers. "
        out += "Cost per request in \(costUnit)"
        if !parameters.isEmpty {
            out +=
                " (" + parameters.keys.sorted().map { "\($0): \(parameters[$0]!) parameters" }.joined(separator: ", ")
                + ")"
        }
        out +=
            "; cost share is relative to the strong model alone. In brackets: \(level)% bootstrap intervals over test tasks "
        out +=
            "(\(settings.bootstrap.resamples) resamples). * marks the Pareto front. docs/routing.md defines every column.\n\n"
        out +=
            "| setting | accuracy | cost share | strong calls | gap recovered | Pareto |\n|---|---:|---:|---:|---:|:---:|\n"
        for p in points {
            var label = p.label
            if let s = p.meanSamples { label += String(format: " (%.2f samples)", s) }
            out +=
                "| \(cell(label)) | \(e(p.accuracy)) | \(String(format: "%.3f", p.costShare)) | \(e(p.strongShare)) | "
            out += (p.gapRecovered.map { String(format: "%.2f", $0) } ?? "-") + " | \(p.pareto ? "*" : "") |\n"
        }
        if points.contains(where: { $0.gapRecovered != nil }) {
            out += "\nBelow half the strong model's cost, "
            out +=
                mostGapRecovered(costBelow: 0.5).map {
                    "the most of the gap a setting recovers is \(String(format: "%.2f", $0.gapRecovered!)) (\(cell($0.label)), cost share \(String(format: "%.3f", $0.costShare)))."
                } ?? "no cascade or adaptive setting costs that little."
            out += "\n"
        }
        if !bins.isEmpty, let ks = bins.first?.weakMajority.map(\.k) {
            out += "\n## Votes at matched compute\n\n"
            out += "The weak model's majority vote over its first k samples against one strong answer, by difficulty "
            out += "(the weak model's pass rate on each task; bin edges from the calibration split). "
            out +=
                matchedK.map { "k = \($0) costs at most one strong answer on average." }
                ?? "Even one weak sample costs more than a strong answer."
            out += " Each cell: accuracy, then the cost of the k samples relative to one strong answer.\n\n"
            out +=
                "| bin | tasks | " + ks.map { "weak maj@\($0)" }.joined(separator: " | ")
                + " | strong, \(settings.strongK == 1 ? "1 sample" : "maj@\(settings.strongK)") |\n"
            out += "|---|---:|" + ks.map { _ in "---:|" }.joined() + "---:|\n"
            for b in bins {
                out += "| \(b.label) | \(b.tasks) | "
                out += b.weakMajority.map { e($0.accuracy) + String(format: " (x%.2f)", $0.costShare) }.joined(
                    separator: " | ")
                out += " | \(e(b.strongAccuracy)) |\n"
            }
        }
        if !notes.isEmpty { out += "\nNotes:\n\n" + notes.map { "- \($0)\n" }.joined() }
        if let chart { out += "\n![Accuracy against cost](\(chart))\n" }
        return out
    }

    /// Accuracy against cost share: the grid by m, the references, adaptive sampling, the front.
    package func chart() -> SVGPlot {
        var plot = SVGPlot(
            title: "Cascade \(settings.weak) -> \(settings.strong) (\(testTasks) test tasks)",
            xLabel: "cost relative to the strong model", yLabel: "accuracy")
        func xy(_ ps: [CascadePoint]) -> [(x: Double, y: Double)] { ps.map { ($0.costShare, $0.accuracy.value) } }
        let ms = Array(Set(points.filter { $0.kind == "cascade" }.compactMap(\.m))).sorted()
        for (i, m) in ms.enumerated() {
            plot.series.append(
                .init(
                    name: "cascade m=\(m)", points: xy(points.filter { $0.kind == "cascade" && $0.m == m }),
                    color: SVGPlot.palette[i % 4]))
        }
        let refs = points.filter { $0.kind != "cascade" && $0.kind != "adaptive" }
        plot.series.append(
            .init(
                name: "alone / oracle", points: xy(refs), color: SVGPlot.palette[7],
                labels: refs.map { $0.kind == "weak" && ($0.m ?? 1) > 1 ? "maj@\($0.m!)" : $0.kind }))
        let adaptive = points.filter { $0.kind == "adaptive" }
        if !adaptive.isEmpty {
            plot.series.append(
                .init(
                    name: "adaptive", points: xy(adaptive), color: SVGPlot.palette[4],
                    labels: adaptive.map { "a=\($0.agree ?? 0)" }))
        }
        let front = points.filter(\.pareto).sorted { $0.costShare < $1.costShare }
        plot.series.append(
            .init(name: "Pareto front", points: xy(front), color: SVGPlot.palette[5], line: true, markers: false))
        return plot
    }
}
