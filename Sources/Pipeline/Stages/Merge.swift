// The `merge` stage: a LoRA adapter folded into its base, a whole-model checkpoint.

import Foundation
import ModelIO
import Recipe

struct MergeExecutor: StageExecutor {
    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        guard case .merge(let s) = stage else { mismatch(stage, .merge) }
        let loaded = try loadModel(from: context.path(of: s.checkpoint), base: s.base.map { context.path(of: $0) })
        try mergeAdapter(loaded, to: s.output)
        emit(.message("merged \(loaded.path) into \(loaded.basePath ?? "its base"): wrote \(s.output)"))
        return StageOutputs(files: [s.output], summary: ["base": .string(loaded.basePath ?? "")])
    }
}
