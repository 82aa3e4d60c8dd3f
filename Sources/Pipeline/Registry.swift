// The stage executors this build ships: the one place a stage type is bound to the code that
// runs it (one file per stage under Stages/). A type missing here makes `distill run` stop with
// "stage type X is not available in this build" (exit 2) before any stage runs; `--dry-run`
// works regardless.

import Recipe

extension ExecutorRegistry {
    package static func builtIn() -> ExecutorRegistry {
        ExecutorRegistry([
            .pretrain: PretrainExecutor(), .eval: EvalExecutor(), .generate: GenerateExecutor(), .export: ExportExecutor(),
            .merge: MergeExecutor(), .sft: SFTExecutor(), .dpo: DPOExecutor(), .kd: KDExecutor(), .sample: SampleExecutor(),
            .sweep: SweepExecutor(), .route: RouteExecutor(), .cascade: CascadeExecutor(),
        ])
    }
}

/// A stage handed to the wrong executor: a wiring bug.
func mismatch(_ stage: Stage, _ expected: StageType) -> Never {
    preconditionFailure("executor for \(expected) got a \(stage.type) stage")
}
