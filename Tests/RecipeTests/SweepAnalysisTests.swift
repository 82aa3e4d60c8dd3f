import Core
import Foundation
import FoundationXML
import Testing

@testable import Charts
@testable import Recipe
@testable import Sweep

@Suite struct SweepAnalysisTests {
    @Test func paretoFrontKeepsTheUndominated() {
        // (loss, speed): b is slower and worse than a; d equals c in speed but is worse.
        let loss = [2.0, 2.5, 1.8, 1.9, 3.0, 2.0]
        let speed = [100.0, 90, 50, 50, 300, 100]
        // a (0) and f (5) tie: neither dominates the other.
        #expect(paretoFront(lower: loss, higher: speed) == [2, 0, 5, 4])
    }

    /// Exact data from L = 1.7 + 400 / N^0.34 + 410 / D^0.28: the fit recovers the law.
    @Test func scalingFitRecoversKnownCoefficients() throws {
        var n: [Double] = [], d: [Double] = [], l: [Double] = []
        for nn in [1e5, 3e5, 1e6, 3e6, 1e7] {
            for dd in [1e6, 1e7, 1e8] {
                n.append(nn)
                d.append(dd)
                l.append(1.7 + 400 / pow(nn, 0.34) + 410 / pow(dd, 0.28))
            }
        }
        let fit = try ScalingFit.fit(n: n, d: d, loss: l).get()
        #expect(abs(fit.alpha - 0.34) < 0.005)
        #expect(abs(fit.beta! - 0.28) < 0.005)
        #expect(abs(fit.e - 1.7) / 1.7 < 0.01)
        #expect(abs(fit.a - 400) / 400 < 0.05)
        #expect(abs(fit.b! - 410) / 410 < 0.05)
        #expect(fit.r2 > 0.99999 && fit.rmse < 1e-3)
        #expect(abs(fit.predict(n: 2e6, d: 5e7) - (1.7 + 400 / pow(2e6, 0.34) + 410 / pow(5e7, 0.28))) < 1e-3)
    }

    @Test func scalingFitWithOneTokenCountFitsParametersOnly() throws {
        let n = [1e5, 2e5, 5e5, 1e6, 2e6, 5e6]
        // Small deterministic noise: the fit stays close and reports a sub-1 R^2.
        let l = n.enumerated().map { 2.0 + 50 / pow($1, 0.3) + ($0 % 2 == 0 ? 0.002 : -0.002) }
        let fit = try ScalingFit.fit(n: n, d: Array(repeating: 1e7, count: 6), loss: l).get()
        #expect(fit.b == nil && fit.beta == nil)
        #expect(abs(fit.alpha - 0.3) < 0.05)
        #expect(fit.r2 > 0.99 && fit.r2 < 1)
        #expect(fit.formula.hasPrefix("L(N) = "))
        // Too few trials: a reason, not a fit.
        guard case .failure(let why) = ScalingFit.fit(n: [1e5, 2e5], d: [1e6, 1e6], loss: [3, 2.9]) else {
            Issue.record("fitted two points")
            return
        }
        #expect(why.reason.contains("needs at least 4 finished trials"))
        // An equal-parameter sweep: sizes within 2x of each other identify no exponent.
        guard case .failure(let narrow) = ScalingFit.fit(n: [1e6, 1.05e6, 0.97e6, 1.1e6, 0.99e6], d: Array(repeating: 1e6, count: 5), loss: [3, 2.9, 3.1, 2.8, 3]) else {
            Issue.record("fitted an equal-parameter sweep")
            return
        }
        #expect(narrow.reason.contains("span only 1.13x"))
    }

    @Test func plotsAreWellFormedSVGWithNiceTicks() throws {
        var plot = SVGPlot(title: "a < b & \"c\"", xLabel: "params", yLabel: "loss", xLog: true)
        plot.series = [
            .init(name: "one", points: [(1e3, 2.0), (1e5, 1.5), (1e6, 1.2)], color: "#000", line: true, labels: ["x", "y", "z"]),
            .init(name: "two", points: [(2e4, 1.7), (-1, 3)], color: "#f00"),  // a non-positive x is dropped on a log axis
        ]
        let svg = plot.render()
        let parser = XMLParser(data: Data(svg.utf8))
        #expect(parser.parse(), "\(parser.parserError.map { "\($0)" } ?? "")")
        #expect(svg.components(separatedBy: "<circle").count - 1 == 3 + 1 + 2)  // points + legend markers
        #expect(svg.contains("a &lt; b &amp; &quot;c&quot;"))
        #expect(SVGPlot.Axis(values: [1e3, 1e6], log: true).ticks == [1e3, 1e4, 1e5, 1e6])
        #expect(SVGPlot.Axis(values: [30, 700], log: true).ticks == [50, 100, 200, 500])
        #expect(SVGPlot.Axis(values: [1070, 1750], log: true).ticks == [1200, 1400, 1600])
        #expect(SVGPlot.Axis(values: [0, 1], log: false).ticks == [0, 0.2, 0.4, 0.6, 0.8, 1.0].map { $0 })
        #expect(tickLabel(1_250_000) == "1.25M" && tickLabel(35_000) == "35k" && tickLabel(0.25) == "0.25")
    }
}
