// The `pretrain` stage: Training's PretrainRun with the stage's settings, committing to the
// stage output and `<name>.metrics.jsonl` in the run directory.

import Core
import Foundation
import Recipe
import Training

struct PretrainExecutor: StageExecutor {
    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        guard case .pretrain(let s) = stage else { mismatch(stage, .pretrain) }
        if let threads = context.threads { Threads.set(threads) }
        let metrics = URL(fileURLWithPath: context.runDirectory).appendingPathComponent("\(s.name).metrics.jsonl").path
        let run = PretrainRun(
            name: s.name, data: s.data, tokenizer: s.tokenizer, model: s.model,
            initFrom: s.initFrom.map { context.path(of: $0.checkpoint) }, training: s.training, output: s.output,
            metrics: metrics, runDirectory: context.runDirectory, seed: context.seed, fingerprint: context.fingerprint,
            recipeJSON: context.recipeJSON, resume: context.resume)
        let summary = try withoutActuallyEscaping(emit) { try run.run(emit: $0) }
        return StageOutputs(files: [s.output, metrics], summary: summary)
    }
}
