// The `sweep` stage: the Sweep module's runner on this stage, its summary the best
// configuration found so far.

import JSON
import Recipe
import Sweep

/// The `sweep` stage in `distill run`; the shard comes from Slurm array variables when set.
struct SweepExecutor: StageExecutor {
    var shard: SweepShard? = nil

    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        guard case .sweep(let s) = stage else { mismatch(stage, .sweep) }
        let runner = SweepRunner(
            stage: s, recipe: context.recipe, seed: context.seed, threads: context.threads,
            shard: shard ?? SweepShard.fromEnvironment() ?? .all)
        let summary = try runner.run(emit: emit)
        let results = try SweepResults.load(directories: [summary.directory])
        var out: [String: SummaryValue] = [
            "trials_run": .int(summary.ran), "trials_skipped": .int(summary.skipped), "invalid": .int(summary.invalid.count),
            "results": .int(results.count),
        ]
        if let best = results.min(by: { $0.score < $1.score }) {
            out["best"] = .string(best.label)
            out["best_val_loss"] = .double(best.score)
        }
        return StageOutputs(files: [summary.directory], summary: out)
    }
}
