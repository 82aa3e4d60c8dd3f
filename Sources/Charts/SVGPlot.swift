// A small SVG chart writer for reports: axes with "nice" ticks (1-2-5 steps, or decades on a
// log scale), points, lines, point labels, a legend. Output is plain SVG 1.1 text with no
// scripts or external references, so a report embedding it stays self-contained.

import Foundation

package struct SVGPlot {
    package struct Series {
        package var name: String
        package var points: [(x: Double, y: Double)]
        package var color: String
        package var line = false
        package var markers = true
        /// Drawn next to each point when given (same count as points).
        package var labels: [String]?
        /// Marker radius.
        package var radius = 3.5

        package init(name: String, points: [(x: Double, y: Double)], color: String, line: Bool = false, markers: Bool = true, labels: [String]? = nil) {
            self.name = name
            self.points = points
            self.color = color
            self.line = line
            self.markers = markers
            self.labels = labels
        }
    }

    package var title: String
    package var xLabel: String
    package var yLabel: String
    package var xLog = false
    package var yLog = false
    package var width = 720.0
    package var height = 420.0
    package var series: [Series] = []

    package init(title: String, xLabel: String, yLabel: String, xLog: Bool = false, yLog: Bool = false) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.xLog = xLog
        self.yLog = yLog
    }

    /// A colour per series index (colour-blind friendly palette).
    package static let palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]

    package func render() -> String {
        let margin = (left: 70.0, right: 170.0, top: 36.0, bottom: 52.0)
        let plotW = width - margin.left - margin.right, plotH = height - margin.top - margin.bottom
        let usable = series.map { s in s.points.filter { (!xLog || $0.x > 0) && (!yLog || $0.y > 0) && $0.x.isFinite && $0.y.isFinite } }
        let xs = usable.flatMap { $0.map(\.x) }, ys = usable.flatMap { $0.map(\.y) }
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(fmt(width))\" height=\"\(fmt(height))\" viewBox=\"0 0 \(fmt(width)) \(fmt(height))\" font-family=\"sans-serif\" font-size=\"11\">\n"
        out += "<rect x=\"0\" y=\"0\" width=\"\(fmt(width))\" height=\"\(fmt(height))\" fill=\"white\"/>\n"
        out += "<text x=\"\(fmt(margin.left))\" y=\"20\" font-size=\"14\" font-weight=\"bold\">\(escapeXML(title))</text>\n"
        guard !xs.isEmpty else {
            out += "<text x=\"\(fmt(width / 2))\" y=\"\(fmt(height / 2))\" text-anchor=\"middle\">no data</text>\n</svg>\n"
            return out
        }
        let xAxis = Axis(values: xs, log: xLog), yAxis = Axis(values: ys, log: yLog)
        func px(_ x: Double) -> Double { margin.left + xAxis.fraction(x) * plotW }
        func py(_ y: Double) -> Double { margin.top + (1 - yAxis.fraction(y)) * plotH }
        // Frame, grid and ticks.
        out += "<rect x=\"\(fmt(margin.left))\" y=\"\(fmt(margin.top))\" width=\"\(fmt(plotW))\" height=\"\(fmt(plotH))\" fill=\"none\" stroke=\"#444\"/>\n"
        for t in xAxis.ticks {
            let x = px(t)
            out += "<line x1=\"\(fmt(x))\" y1=\"\(fmt(margin.top))\" x2=\"\(fmt(x))\" y2=\"\(fmt(margin.top + plotH))\" stroke=\"#e4e4e4\"/>\n"
            out += "<line x1=\"\(fmt(x))\" y1=\"\(fmt(margin.top + plotH))\" x2=\"\(fmt(x))\" y2=\"\(fmt(margin.top + plotH + 5))\" stroke=\"#444\"/>\n"
            out += "<text x=\"\(fmt(x))\" y=\"\(fmt(margin.top + plotH + 17))\" text-anchor=\"middle\">\(escapeXML(tickLabel(t)))</text>\n"
        }
        for t in yAxis.ticks {
            let y = py(t)
            out += "<line x1=\"\(fmt(margin.left))\" y1=\"\(fmt(y))\" x2=\"\(fmt(margin.left + plotW))\" y2=\"\(fmt(y))\" stroke=\"#e4e4e4\"/>\n"
            out += "<line x1=\"\(fmt(margin.left - 5))\" y1=\"\(fmt(y))\" x2=\"\(fmt(margin.left))\" y2=\"\(fmt(y))\" stroke=\"#444\"/>\n"
            out += "<text x=\"\(fmt(margin.left - 8))\" y=\"\(fmt(y + 4))\" text-anchor=\"end\">\(escapeXML(tickLabel(t)))</text>\n"
        }
        out += "<text x=\"\(fmt(margin.left + plotW / 2))\" y=\"\(fmt(height - 12))\" text-anchor=\"middle\">\(escapeXML(xLabel + (xLog ? " (log)" : "")))</text>\n"
        out += "<text transform=\"translate(16 \(fmt(margin.top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\">\(escapeXML(yLabel + (yLog ? " (log)" : "")))</text>\n"
        // Data.
        for (s, points) in zip(series, usable) {
            if s.line && points.count > 1 {
                let path = points.map { "\(fmt(px($0.x))),\(fmt(py($0.y)))" }.joined(separator: " ")
                out += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"1.8\"/>\n"
            }
            if s.markers {
                for p in points {
                    out += "<circle cx=\"\(fmt(px(p.x)))\" cy=\"\(fmt(py(p.y)))\" r=\"\(fmt(s.radius))\" fill=\"\(s.color)\" fill-opacity=\"0.85\"/>\n"
                }
            }
            if let labels = s.labels, labels.count == s.points.count {
                for (p, label) in zip(s.points, labels) where points.contains(where: { $0.x == p.x && $0.y == p.y }) && !label.isEmpty {
                    out += "<text x=\"\(fmt(px(p.x) + 5))\" y=\"\(fmt(py(p.y) - 5))\" font-size=\"9\" fill=\"#333\">\(escapeXML(label))</text>\n"
                }
            }
        }
        // Legend.
        for (i, s) in series.enumerated() where !s.name.isEmpty {
            let y = margin.top + 8 + Double(i) * 16
            let x = margin.left + plotW + 12
            if s.line { out += "<line x1=\"\(fmt(x))\" y1=\"\(fmt(y))\" x2=\"\(fmt(x + 16))\" y2=\"\(fmt(y))\" stroke=\"\(s.color)\" stroke-width=\"1.8\"/>\n" }
            if s.markers { out += "<circle cx=\"\(fmt(x + 8))\" cy=\"\(fmt(y))\" r=\"3.5\" fill=\"\(s.color)\"/>\n" }
            out += "<text x=\"\(fmt(x + 22))\" y=\"\(fmt(y + 4))\">\(escapeXML(s.name))</text>\n"
        }
        out += "</svg>\n"
        return out
    }

    /// A numeric axis: the data range padded by 5% (in log space on a log axis) and its ticks.
    struct Axis {
        let log: Bool
        let lo: Double, hi: Double
        let ticks: [Double]

        init(values: [Double], log: Bool) {
            self.log = log
            let t = values.map { log ? Foundation.log10($0) : $0 }
            var a = t.min()!, b = t.max()!
            if a == b { (a, b) = (a - (a == 0 ? 1 : abs(a) * 0.1), b + (b == 0 ? 1 : abs(b) * 0.1)) }
            let pad = (b - a) * 0.05
            lo = a - pad
            hi = b + pad
            ticks = log ? Axis.logTicks(lo, hi) : Axis.linearTicks(lo, hi)
        }

        /// Position in [0, 1] of a data value.
        func fraction(_ v: Double) -> Double { ((log ? Foundation.log10(v) : v) - lo) / (hi - lo) }

        /// Multiples of 1, 2 or 5 x 10^k, about five of them.
        static func linearTicks(_ lo: Double, _ hi: Double) -> [Double] {
            let raw = (hi - lo) / 5
            let magnitude = pow(10, floor(Foundation.log10(raw)))
            // The 1-2-5 step whose tick count is closest to five.
            let step = [1.0, 2, 5, 10].map { $0 * magnitude }.min { abs((hi - lo) / $0 - 5) < abs((hi - lo) / $1 - 5) }!
            var out: [Double] = []
            var k = ceil(lo / step)
            while k * step <= hi + step * 1e-9 {
                // Printed and parsed back at 12 digits: 3 x 0.2 is 0.6, not 0.6000000000000001.
                out.append(k == 0 ? 0 : Double(String(format: "%.12g", k * step))!)
                k += 1
            }
            return out
        }

        /// Decades; with fewer than three in range, 1-2-5 per decade; then 1..9; for a range
        /// narrower still, linear 1-2-5 ticks.
        static func logTicks(_ lo: Double, _ hi: Double) -> [Double] {
            for mantissas in [[1.0], [1, 2, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]] {
                var out: [Double] = []
                for k in Int(floor(lo))...Int(ceil(hi)) {
                    for m in mantissas {
                        let v = m * pow(10, Double(k))
                        let l = Foundation.log10(v)
                        if l >= lo && l <= hi { out.append(v) }
                    }
                }
                if out.count >= 3 { return out }
            }
            return linearTicks(pow(10, lo), pow(10, hi)).filter { $0 > 0 }
        }
    }
}

/// A grouped bar chart with interval whiskers: one group per category (an evaluation's arms),
/// one bar per series (its metrics), the value printed above each bar. Plain SVG 1.1 like
/// `SVGPlot`.
package struct SVGBarChart {
    package struct Bar {
        package var value: Double
        /// The interval drawn as a whisker, when there is one.
        package var low: Double?
        package var high: Double?

        package init(value: Double, low: Double? = nil, high: Double? = nil) {
            self.value = value
            self.low = low
            self.high = high
        }
    }

    package struct Series {
        package var name: String
        package var color: String
        /// One per category; nil leaves the category's slot empty.
        package var bars: [Bar?]

        package init(name: String, color: String, bars: [Bar?]) {
            self.name = name
            self.color = color
            self.bars = bars
        }
    }

    package var title: String
    package var yLabel: String
    package var categories: [String]
    package var series: [Series] = []
    /// The top of the value axis (1 for accuracies); nil: the data's largest value or interval end.
    package var yMax: Double?
    package var width = 720.0
    package var height = 420.0

    package init(title: String, yLabel: String, categories: [String], yMax: Double? = nil) {
        self.title = title
        self.yLabel = yLabel
        self.categories = categories
        self.yMax = yMax
    }

    package func render() -> String {
        let margin = (left: 70.0, right: 170.0, top: 36.0, bottom: 60.0)
        let plotW = width - margin.left - margin.right, plotH = height - margin.top - margin.bottom
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(fmt(width))\" height=\"\(fmt(height))\" viewBox=\"0 0 \(fmt(width)) \(fmt(height))\" font-family=\"sans-serif\" font-size=\"11\">\n"
        out += "<rect x=\"0\" y=\"0\" width=\"\(fmt(width))\" height=\"\(fmt(height))\" fill=\"white\"/>\n"
        out += "<text x=\"\(fmt(margin.left))\" y=\"20\" font-size=\"14\" font-weight=\"bold\">\(escapeXML(title))</text>\n"
        let ends = series.flatMap { $0.bars.compactMap { $0.map { max($0.value, $0.high ?? $0.value) } } }.filter(\.isFinite)
        guard !categories.isEmpty, !ends.isEmpty else {
            out += "<text x=\"\(fmt(width / 2))\" y=\"\(fmt(height / 2))\" text-anchor=\"middle\">no data</text>\n</svg>\n"
            return out
        }
        let top = yMax ?? max(ends.max()! * 1.05, 1e-9)
        func py(_ y: Double) -> Double { margin.top + (1 - min(max(y, 0), top) / top) * plotH }
        out += "<rect x=\"\(fmt(margin.left))\" y=\"\(fmt(margin.top))\" width=\"\(fmt(plotW))\" height=\"\(fmt(plotH))\" fill=\"none\" stroke=\"#444\"/>\n"
        for t in SVGPlot.Axis.linearTicks(0, top) where t >= 0 && t <= top * (1 + 1e-9) {
            let y = py(t)
            out += "<line x1=\"\(fmt(margin.left))\" y1=\"\(fmt(y))\" x2=\"\(fmt(margin.left + plotW))\" y2=\"\(fmt(y))\" stroke=\"#e4e4e4\"/>\n"
            out += "<line x1=\"\(fmt(margin.left - 5))\" y1=\"\(fmt(y))\" x2=\"\(fmt(margin.left))\" y2=\"\(fmt(y))\" stroke=\"#444\"/>\n"
            out += "<text x=\"\(fmt(margin.left - 8))\" y=\"\(fmt(y + 4))\" text-anchor=\"end\">\(escapeXML(tickLabel(t)))</text>\n"
        }
        out += "<text transform=\"translate(16 \(fmt(margin.top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\">\(escapeXML(yLabel))</text>\n"
        let groupW = plotW / Double(categories.count)
        let barW = groupW * 0.8 / Double(max(series.count, 1))
        for (c, category) in categories.enumerated() {
            let left = margin.left + Double(c) * groupW + groupW * 0.1
            out += "<text x=\"\(fmt(left + groupW * 0.4))\" y=\"\(fmt(margin.top + plotH + 18))\" text-anchor=\"middle\">\(escapeXML(category))</text>\n"
            for (s, series) in series.enumerated() {
                guard c < series.bars.count, let bar = series.bars[c], bar.value.isFinite else { continue }
                let x = left + Double(s) * barW, mid = x + barW / 2
                out += "<rect x=\"\(fmt(x + 1))\" y=\"\(fmt(py(bar.value)))\" width=\"\(fmt(max(barW - 2, 1)))\" height=\"\(fmt(py(0) - py(bar.value)))\" fill=\"\(series.color)\" fill-opacity=\"0.85\"/>\n"
                if let low = bar.low, let high = bar.high, low.isFinite, high.isFinite {
                    let cap = min(barW / 4, 6)
                    out += "<line x1=\"\(fmt(mid))\" y1=\"\(fmt(py(low)))\" x2=\"\(fmt(mid))\" y2=\"\(fmt(py(high)))\" stroke=\"#222\"/>\n"
                    for end in [low, high] {
                        out += "<line x1=\"\(fmt(mid - cap))\" y1=\"\(fmt(py(end)))\" x2=\"\(fmt(mid + cap))\" y2=\"\(fmt(py(end)))\" stroke=\"#222\"/>\n"
                    }
                }
                let labelY = py(max(bar.value, bar.high ?? bar.value)) - 4
                out += "<text x=\"\(fmt(mid))\" y=\"\(fmt(labelY))\" text-anchor=\"middle\" font-size=\"9\" fill=\"#333\">\(escapeXML(tickLabel(bar.value)))</text>\n"
            }
        }
        for (i, s) in series.enumerated() {
            let y = margin.top + 8 + Double(i) * 16
            let x = margin.left + plotW + 12
            out += "<rect x=\"\(fmt(x))\" y=\"\(fmt(y - 5))\" width=\"12\" height=\"10\" fill=\"\(s.color)\" fill-opacity=\"0.85\"/>\n"
            out += "<text x=\"\(fmt(x + 18))\" y=\"\(fmt(y + 4))\">\(escapeXML(s.name))</text>\n"
        }
        out += "</svg>\n"
        return out
    }
}

/// 1.2M, 350k, 0.25, 3.5: short tick and table labels.
package func tickLabel(_ v: Double) -> String {
    let a = abs(v)
    func trim(_ s: String) -> String {
        guard s.contains(".") else { return s }
        var t = s
        while t.hasSuffix("0") { t.removeLast() }
        if t.hasSuffix(".") { t.removeLast() }
        return t
    }
    if a >= 1e9 { return trim(String(format: "%.2f", v / 1e9)) + "G" }
    if a >= 1e6 { return trim(String(format: "%.2f", v / 1e6)) + "M" }
    if a >= 1e4 { return trim(String(format: "%.1f", v / 1e3)) + "k" }
    if a >= 100 || a == 0 { return trim(String(format: "%.0f", v)) }
    if a >= 1 { return trim(String(format: "%.2f", v)) }
    return trim(String(format: "%.3g", v))
}

private func fmt(_ v: Double) -> String { String(format: "%.1f", v) }

package func escapeXML(_ s: String) -> String {
    var out = ""
    for c in s {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        default: out.append(c)
        }
    }
    return out
}
