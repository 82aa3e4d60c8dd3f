// The `cascade` stage: the run's verdict table (every eval arm and sample stage of the run
// directory) and the cascade and vote analysis of two of its models (docs/routing.md,
// *distill verdicts cascade*), as `distill verdicts build` then `distill verdicts cascade`.

import Foundation
import JSON
import Platform
import Recipe
import Route

struct CascadeExecutor: StageExecutor {
    static let flagKeys = [
        "--weak": "weak", "--strong": "strong", "--m": "m", "--split": "split", "--strong-k": "strong_k",
    ]

    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        try namingStageKeys(stage, in: context, Self.flagKeys) { try analyse(stage, context: context, emit: emit) }
    }

    private func analyse(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        guard case .cascade(let s) = stage else { mismatch(stage, .cascade) }
        let (table, notes) = try VerdictSources.build(paths: [context.runDirectory])
        for n in notes { emit(.message("verdicts: " + n)) }
        let folder = (s.output as NSString).deletingLastPathComponent
        let verdicts = (folder as NSString).appendingPathComponent("verdicts.jsonl")
        try writeAtomically(table.jsonl(), to: verdicts)
        var config = CascadeConfig(weak: s.weak, strong: s.strong)
        (config.ms, config.taus, config.agree, config.strongK) = (s.m, s.taus, s.agree, s.strongK)
        (config.calibration, config.seed, config.parameters) = (s.split, s.seed, s.parameters)
        config.bootstrap = .init(resamples: s.resamples, seed: s.seed)
        let report = try CascadeAnalysis.run(table, config)
        let prefix = s.output.hasSuffix(".json") ? String(s.output.dropLast(5)) : s.output
        let chart = prefix + ".svg"
        try writeAtomically(report.json(), to: s.output)
        try writeAtomically(report.markdown(chart: (chart as NSString).lastPathComponent), to: prefix + ".md")
        try writeAtomically(report.chart().render(), to: chart)
        var summary: [String: SummaryValue] = ["test_tasks": .int(report.testTasks)]
        if let best = report.mostGapRecovered(costBelow: 0.5) {
            summary["gap_recovered_under_half_cost"] = .double(best.gapRecovered!)
        }
        emit(.message("cascade: wrote \(s.output), \(prefix).md, \(chart)"))
        return StageOutputs(files: [s.output, prefix + ".md", chart, verdicts], summary: summary)
    }
}
