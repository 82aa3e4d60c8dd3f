// The `export` stage: a checkpoint written as a Hugging Face folder, a PEFT adapter or a
// llama.cpp GGUF file (ModelIO does the writing).

import Foundation
import JSON
import ModelIO
import Platform
import Recipe
import Teacher
import Verify

struct ExportExecutor: StageExecutor {
    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        guard case .export(let s) = stage else { mismatch(stage, .export) }
        var source = s.checkpoint
        var summary: [String: SummaryValue] = ["format": .string(s.format.rawValue)]
        if let best = s.bestOf {
            let choice = try bestArm(best, context: context)
            emit(.message(choice.message))
            source = choice.model
            summary["chosen_arm"] = .string(choice.arm)
        }
        let loaded = try loadModel(from: context.path(of: source))
        switch s.format {
        case .hf:
            try exportHF(loaded, to: s.output)
        case .peft:
            try exportPEFT(loaded, to: s.output)
        case .gguf:
            try exportGGUF(loaded, dtype: .f32, to: s.output)
        case .ggufAdapter:
            try exportGGUFAdapter(loaded, dtype: .f32, to: s.output)
        }
        emit(.message("wrote \(s.format.rawValue) export to \(s.output)"))
        return StageOutputs(files: [s.output], summary: summary)
    }

    /// The candidate of `best` with the highest metric in its evaluation's report (the first
    /// listed on a tie), its model, and a line saying what was compared.
    func bestArm(_ best: BestArmSelection, context: RunContext) throws -> (arm: String, model: CheckpointSource, message: String) {
        guard case .eval(let e)? = context.recipe.stage(named: best.eval), let t = e.taskEval else {
            preconditionFailure("validated best_of.eval @\(best.eval)")
        }
        let path = e.output
        let report: EvalReport
        do {
            report = try JSONDecoder().decode(EvalReport.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw UserError(
                path: path, problem: "cannot read the task evaluation's report (\(error.localizedDescription))",
                fix: "delete it and run the recipe again: stage \"\(best.eval)\" then evaluates again", kind: .badData)
        }
        var scored: [(arm: String, value: Double)] = []
        for name in best.arms {
            guard let arm = report.arms.first(where: { $0.name == name }), let value = arm.metrics.value(of: best.metric) else {
                throw UserError(
                    path: path, problem: "has no \(best.metric) for arm \"\(name)\"",
                    fix: "delete it and run the recipe again: stage \"\(best.eval)\" then evaluates again", kind: .badData)
            }
            scored.append((name, value))
        }
        let winner = scored.indices.reduce(0) { scored[$1].value > scored[$0].value ? $1 : $0 }
        guard let arm = t.arms.first(where: { $0.name == scored[winner].arm }) else {
            preconditionFailure("validated arm \(scored[winner].arm)")
        }
        let others = scored.enumerated().filter { $0.offset != winner }.map { "\($1.arm) \(format3($1.value))" }
        let message =
            "best of @\(best.eval) by \(best.metric): \(arm.name) \(format3(scored[winner].value))"
            + (others.isEmpty ? "" : " (\(others.joined(separator: ", ")))")
        return (arm.name, CheckpointSource(arm.model), message)
    }
}

private func format3(_ x: Double) -> String { String(format: "%.3f", x) }

extension ArmMetrics {
    /// The metric's value; nil when the report does not have it (pass@k beyond its samples).
    func value(of metric: ArmRanking) -> Double? {
        switch metric {
        case .greedy: greedyAccuracy.value
        case .passAt(let k): passAtK.first { $0.k == k }?.value
        case .majority: majAtK?.value
        }
    }
}
