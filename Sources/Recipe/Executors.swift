// The stage executors this build ships: the one place a stage type is bound to the code that
// runs it. A type missing here makes `distill run` stop with "stage type X is not available in
// this build" (exit 2) before any stage runs; `--dry-run` works regardless.

extension ExecutorRegistry {
    /// The built-in executors. None yet: pretrain, eval, generate and export plug in here.
    package static func builtIn() -> ExecutorRegistry {
        ExecutorRegistry([:])
    }
}
