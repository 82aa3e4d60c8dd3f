// The cascade analysis on the hand-built verdict table of HandTable.swift, every number worked out
// by hand: accuracy, cost and strong share at given (m, tau), the references, adaptive sampling,
// the difficulty bins and the split; and the usage errors.

import Foundation
import FoundationXML
import Platform
import Testing

@testable import Route

@Suite struct CascadeTests {
    func report(_ edit: (inout CascadeConfig) -> Void = { _ in }) throws -> CascadeReport {
        var config = CascadeConfig(weak: "W", strong: "S")
        config.calibration = 0  // every task is a test task
        config.taus = [0.5, 0.75, 1]
        config.bootstrap.resamples = 200
        edit(&config)
        return try CascadeAnalysis.run(handTable, config)
    }

    func point(_ r: CascadeReport, _ kind: String, m: Int? = nil, tau: Double? = nil, agree: Int? = nil) throws
        -> CascadePoint
    {
        try #require(
            r.points.first {
                $0.kind == kind && (m == nil || $0.m == m) && (tau == nil || $0.tau == tau)
                    && (agree == nil || $0.agree == agree)
            })
    }

    @Test func cascadeAtGivenMAndTauMatchesTheHandComputation() throws {
        let r = try report()
        #expect(r.costUnit == "token-parameters" && r.testTasks == 4 && r.calibrationTasks == 0)
        // Strong alone: (1 + 0.5 + 0 + 1) / 4 = 0.625 at 300 per request.
        let strong = try point(r, "strong")
        #expect(strong.accuracy.value == 0.625 && strong.cost.value == 300 && strong.strongShare.value == 1)
        // Weak alone, first sample: only t1 is right -> 0.25, at 15.
        let weak = try point(r, "weak", m: 1)
        #expect(weak.accuracy.value == 0.25 && weak.cost.value == 15)

        // m = 2, tau = 0.75 (both must agree): t1 a,a kept, right (1, 20); t2 a,b: a has 1 of 2
        // -> S (0.5, 20 + 300); t3 nil,nil: nothing readable -> S (0, 320); t4 d,d kept, wrong (0, 20).
        let m2 = try point(r, "cascade", m: 2, tau: 0.75)
        #expect(m2.accuracy.value == 1.5 / 4)
        #expect(m2.strongShare.value == 0.5)
        #expect(m2.cost.value == (20 + 320 + 320 + 20) / 4.0)
        #expect(abs(m2.costShare - 170.0 / 300) < 1e-12)
        // Gap recovered: (0.375 - 0.25) / (0.625 - 0.25) = 1/3.
        #expect(abs(m2.gapRecovered! - 1.0 / 3) < 1e-12)

        // m = 4, tau = 0.75 (3 of 4): t1 a x3 accepted, right (1, 30); t2 b x3 accepted, wrong
        // (0, 30); t3 nil x3 -> S (0, 330); t4 d x3 accepted, wrong (0, 30).
        let m4 = try point(r, "cascade", m: 4, tau: 0.75)
        #expect(m4.accuracy.value == 0.25 && m4.strongShare.value == 0.25)
        #expect(m4.cost.value == (30 + 30 + 330 + 30) / 4.0)
        // m = 4, tau = 1: t1 and t4 now escalate too -> (1 + 0.5 + 0 + 1) / 4, all four to S.
        let all = try point(r, "cascade", m: 4, tau: 1)
        #expect(all.accuracy.value == 0.625 && all.strongShare.value == 1)
        // m = 4, tau = 0.5 (2 of 4): t3's one readable answer c (1 vote) is not enough -> S.
        #expect(try point(r, "cascade", m: 4, tau: 0.5).strongShare.value == 0.25)
        // With tau = 0 any single readable winner is kept: t3's c (right) although three of its
        // four answers are unreadable; t2's b and t4's d (wrong) -> (1 + 0 + 1 + 0) / 4, no strong call.
        let any = try point(try report { $0.taus = [0] }, "cascade", m: 4, tau: 0)
        #expect(any.accuracy.value == 0.5 && any.strongShare.value == 0 && any.cost.value == 30)
        // m = 2, tau = 0.5 (1 of 2): t2's tie a, b goes to a, given first (wrong, kept): the rule
        // of the served cascade. t3 nil, nil -> S. (1 + 0 + 0 + 0) / 4, one strong call in four.
        let tie = try point(r, "cascade", m: 2, tau: 0.5)
        #expect(tie.accuracy.value == 0.25 && tie.strongShare.value == 0.25)
        // With m = 2, tau = 1 asks for 2 of 2 like tau = 0.75: only the first is kept.
        #expect(!r.points.contains { $0.kind == "cascade" && $0.m == 2 && $0.tau == 1 })
        // Intervals bracket every mean.
        for p in r.points { #expect(p.accuracy.ciLow <= p.accuracy.value && p.accuracy.value <= p.accuracy.ciHigh) }
    }

    @Test func referencesAdaptiveSamplingAndTheFront() throws {
        let r = try report()
        // Oracle: S only where W's first sample is wrong: 1 + 0.5 + 0 + 1.
        #expect(try point(r, "oracle").accuracy.value == 0.625)
        // Adaptive, 2 agreeing: t1 stops at 2 (right, 20), t2 at 3 (b twice, wrong, 25), t3 never
        // agrees -> S after 4 (0, 330), t4 stops at 2 (wrong, 20).
        let a2 = try point(r, "adaptive", agree: 2)
        #expect(a2.meanSamples == 11.0 / 4 && a2.accuracy.value == 0.25 && a2.strongShare.value == 0.25)
        #expect(a2.cost.value == (20 + 25 + 330 + 20) / 4.0)
        // Pareto: weak alone (15, 0.25) and strong alone (300, 0.625) are both undominated, and
        // m = 2 tau = 1 (170, 0.375) too; m = 4 tau = 0.75 (105, 0.25) is dominated by weak alone.
        #expect(try point(r, "weak", m: 1).pareto && point(r, "strong").pareto)
        #expect(try point(r, "cascade", m: 2, tau: 0.75).pareto)
        #expect(try !point(r, "cascade", m: 4, tau: 0.75).pareto)
        // m = 4 weak samples cost 30, below one strong sample's 300.
        #expect(r.matchedK == 4)
    }

    @Test func aStrongModelAnsweringByVote() throws {
        // maj@2 of S: t1 right, right -> right; t2 right, wrong -> a tie, wrong; t3 wrong, wrong
        // -> "wrong" wins, wrong; t4 right -> (1 + 0 + 0 + 1) / 4 at 10 x (20 + 2 x 10) = 400.
        let r = try report { $0.strongK = 2 }
        let strong = try point(r, "strong")
        #expect(strong.label == "strong alone, maj@2" && strong.accuracy.value == 0.5 && strong.cost.value == 400)
        // m = 2, tau = 0.75 escalates t2 and t3: (1 + 0 + 0 + 0) / 4, cost (20 + 420 + 420 + 20) / 4.
        let m2 = try point(r, "cascade", m: 2, tau: 0.75)
        #expect(m2.accuracy.value == 0.25 && m2.cost.value == 220)
        #expect(r.bins[0].strongAccuracy.value == 1.0 / 3)
        #expect(throws: UserError.self) { try report { $0.strongK = 3 } }
    }

    @Test func difficultyBinsFollowTheWeakPassRate() throws {
        let r = try report()
        // W's pass rates 0.75, 0, 0.25, 0.25: terciles 0.25 and 0.25 merge into one edge.
        #expect(r.bins.map(\.label) == ["pass rate <= 0.25", "pass rate > 0.25"])
        #expect(r.bins.map(\.tasks) == [3, 1])
        // Hard bin (t2, t3, t4): maj@1 0; maj@4: t2 b (wrong), t3 nil, t4 d (wrong) -> 0; S: 0.5.
        #expect(r.bins[0].weakMajority.map(\.accuracy.value) == [0, 0, 0])
        #expect(r.bins[0].strongAccuracy.value == 0.5)
        #expect(r.bins[1].weakMajority.map(\.k) == [1, 2, 4] && r.bins[1].weakMajority[2].accuracy.value == 1)
        #expect(r.notes.contains { $0.contains("--split 0") })
    }

    @Test func theSplitIsSeededAndCoversEveryTask() throws {
        var rows: [VerdictRow] = []
        for i in 0..<60 {
            var row = handTable.rows[i % 4]
            row.taskID = "task-\(i)"
            rows.append(row)
        }
        let table = VerdictTable(models: handTable.models, rows: rows)
        var config = CascadeConfig(weak: "W", strong: "S")
        config.bootstrap.resamples = 50
        let a = try CascadeAnalysis.run(table, config)
        #expect(a.calibrationTasks + a.testTasks == 60 && a.calibrationTasks > 15 && a.testTasks > 15)
        #expect(try CascadeAnalysis.run(table, config) == a)
        config.seed = 7
        let b = try CascadeAnalysis.run(table, config)
        #expect(b.calibrationTasks + b.testTasks == 60)
    }

    @Test func mistakesAreUsageErrors() throws {
        func kind(_ edit: (inout CascadeConfig) -> Void) -> ErrorKind? {
            do {
                _ = try report(edit)
                return nil
            } catch let e as UserError {
                return e.kind
            } catch {
                return nil
            }
        }
        #expect(kind { $0.weak = "nobody" } == .usage)
        #expect(kind { $0.strong = "W" } == .usage)
        #expect(kind { $0.ms = [16] } == .usage)
        do {
            _ = try report { $0.weak = "nobody" }
        } catch {
            #expect("\(error)".contains("\"W\", \"S\""), "the message lists the models: \(error)")
        }
        // Costs in tokens when a parameter count is missing, with a note saying so.
        var table = handTable
        table.models[1].parameters = nil
        var config = CascadeConfig(weak: "W", strong: "S")
        config.calibration = 0
        config.bootstrap.resamples = 10
        let r = try CascadeAnalysis.run(table, config)
        #expect(r.costUnit == "tokens" && r.notes.contains { $0.contains("--parameters") })
        config.parameters = ["S": 10]
        #expect(try CascadeAnalysis.run(table, config).costUnit == "token-parameters")
        // A weak model without a single readable answer is named: every cascade escalates.
        for r in table.rows.indices {
            for i in table.rows[r].models["W"]!.samples.indices { table.rows[r].models["W"]!.samples[i].answer = nil }
        }
        let unreadable = try CascadeAnalysis.run(table, config)
        #expect(unreadable.notes.contains { $0.contains("no readable answer") })
        #expect(unreadable.points.filter { $0.kind == "cascade" }.allSatisfy { $0.strongShare.value == 1 })
    }

    @Test func theReportRendersAsMarkdownJSONAndSVG() throws {
        let r = try report()
        let md = r.markdown(chart: "c.svg")
        #expect(
            md.contains("| m=2 tau=0.75 (2+ of 2 agree) | 0.375 [") && md.contains("![Accuracy against cost](c.svg)"))
        #expect(r.json().contains("\"gap_recovered\""))
        let svg = r.chart().render()
        #expect(svg.hasPrefix("<svg") && svg.contains("Pareto front") && svg.contains(">maj@2</text>"))
        #expect(XMLParser(data: Data(svg.utf8)).parse(), "well-formed SVG")
    }
}
