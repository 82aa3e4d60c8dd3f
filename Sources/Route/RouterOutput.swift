// The router evaluation as files: JSON (every number), Markdown (the tables) and an SVG plot of
// accuracy against the share of strong calls: the router's curve, random routing, the oracle,
// the weak and strong models alone as horizontal lines, and the calibrated thresholds.

import Charts
import Foundation
import Verify

extension RouterReport {
    package func json() -> String { reportJSON(self) }

    package func markdown(chart: String?) -> String {
        let (e, cell) = (formatEstimate, markdownCell)
        func optional(_ x: Estimate?) -> String { x.map(e) ?? "-" }
        let level = Int((settings.bootstrap.level * 100).rounded())
        var out = "# Router: \(kind.rawValue) over \(cell(weak)) -> \(cell(strong))\n\n"
        out += "Features: \(features.map(\.rawValue).joined(separator: ", "))"
        out += kind == .kmeans ? ". " : "; label: \(label.rawValue). "
        out +=
            "\(trainTasks) training, \(calibrationTasks) calibration and \(testTasks) test tasks (XXH64 split, seed \(split.seed)). "
        out += "A request's accuracy is the answering model's share of correct samples on the task. "
        out +=
            "In brackets: \(level)% bootstrap intervals over the test tasks (\(settings.bootstrap.resamples) resamples). docs/routing.md defines every column.\n\n"
        out += "| | accuracy |\n|---|---:|\n"
        out += "| weak alone | \(e(weakAccuracy)) |\n| strong alone | \(e(strongAccuracy)) |\n\n"
        out += "| router | APGR | CPT(50%) | CPT(80%) |\n|---|---:|---:|---:|\n"
        for a in arms {
            out += "| \(cell(a.name)) | \(optional(a.apgr)) | \(optional(a.cpt50)) | \(optional(a.cpt80)) |\n"
        }
        if let g = apgrOverRandom { out += "\nAPGR of the router minus random's (paired): \(e(g)).\n" }
        out += "\n## Accuracy against the share of strong calls\n\n"
        out += "| strong calls | " + arms.map { cell($0.name) }.joined(separator: " | ") + " |\n"
        out += "|---:|" + arms.map { _ in "---:|" }.joined() + "\n"
        for (j, point) in (arms.first?.sweep ?? []).enumerated() {
            out += String(format: "| %.2f | ", point.share) + arms.map { e($0.sweep[j].accuracy) }.joined(separator: " | ") + " |\n"
        }
        if !calibrated.isEmpty {
            out += "\n## Calibrated thresholds on the test split\n\n"
            out += "| threshold for | score below | share on calibration | share on test | accuracy |\n|---|---:|---:|---:|---:|\n"
            for c in calibrated {
                out += "| \(cell(c.label)) | \(String(format: "%.4g", c.threshold)) | "
                out += (c.calibrationShare.map { String(format: "%.3f", $0) } ?? "-") + " | \(e(c.testShare)) | \(e(c.accuracy)) |\n"
            }
        }
        if !notes.isEmpty { out += "\nNotes:\n\n" + notes.map { "- \($0)\n" }.joined() }
        if let chart { out += "\n![Accuracy against the share of strong calls](\(chart))\n" }
        return out
    }

    package func chart() -> SVGPlot {
        var plot = SVGPlot(
            title: "Router \(kind.rawValue): \(weak) -> \(strong) (\(testTasks) test tasks)", xLabel: "share of strong calls",
            yLabel: "accuracy")
        for (i, a) in arms.enumerated() {
            // The random arm's curve is one seed's; its sweep is the mean over seeds.
            let points = a.name.hasPrefix("random") ? a.sweep.map { ($0.share, $0.accuracy.value) } : a.curve.map { ($0[0], $0[1]) }
            plot.series.append(.init(name: a.name, points: points, color: SVGPlot.palette[[0, 7, 2][i % 3]], line: true, markers: false))
        }
        plot.series.append(
            .init(name: "weak alone", points: [(0, weakAccuracy.value), (1, weakAccuracy.value)], color: SVGPlot.palette[1], line: true, markers: false))
        plot.series.append(
            .init(
                name: "strong alone", points: [(0, strongAccuracy.value), (1, strongAccuracy.value)], color: SVGPlot.palette[3], line: true,
                markers: false))
        if !calibrated.isEmpty {
            plot.series.append(
                .init(
                    name: "calibrated", points: calibrated.map { ($0.testShare.value, $0.accuracy.value) }, color: SVGPlot.palette[4],
                    labels: calibrated.map { $0.target.map { "\(Int(($0 * 100).rounded()))%" } ?? "alpha" }))
        }
        return plot
    }
}
