import ArgumentParser
import Core
import Foundation
import ModelIO
import NN
import Platform

/// Commits checkpoints of one path in a loop, the way a run does (lock the directory, sweep
/// orphans, then commit), so a test can kill it with SIGKILL at random instants and check
/// what survives.
struct StressCheckpoint: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stress-checkpoint",
        abstract: "Commit checkpoints of PATH in a loop (crash testing; not for users).")

    @Argument(help: "The checkpoint path to commit over and over.") var path: String
    @Option(help: "Checkpoints to commit; 0 runs until killed.") var count = 0
    @Option(help: "Model width (the file is about 12 * hidden^2 * 4 bytes per layer, times 3).") var hidden = 64
    @Option(help: "Transformer layers.") var layers = 2
    @Flag(help: "Keep the previous checkpoint by rename, as on a file system without hard links.")
    var withoutHardLinks = false

    func validate() throws {
        if count < 0 { throw ValidationError("--count must be >= 0, got \(count)") }
        if hidden < 2 || hidden % 2 != 0 { throw ValidationError("--hidden must be even and >= 2, got \(hidden)") }
        if layers < 1 { throw ValidationError("--layers must be at least 1, got \(layers)") }
    }

    func run() throws {
        let url = URL(fileURLWithPath: path)
        let config = LlamaConfig(
            vocabSize: 256, hiddenSize: hidden, intermediateSize: 2 * hidden, numHiddenLayers: layers,
            numAttentionHeads: 2, numKeyValueHeads: 1)
        var rng = RNG(seed: 1)
        let parameters = config.parameterShapes.map { (name: $0.name, tensor: Tensor.randn($0.shape, rng: &rng)) }
        let m = parameters.map { (name: $0.name, tensor: Tensor.zeros($0.tensor.shape)) }
        let v = parameters.map { (name: $0.name, tensor: Tensor.zeros($0.tensor.shape)) }
        let lock = try RunDirectoryLock(directory: url.deletingLastPathComponent())
        defer { lock.release() }
        try sweepOrphanedTemporaries(in: url.deletingLastPathComponent())
        var step = 1
        while count == 0 || step <= count {
            // Every commit differs from the last, so a torn mix of two would not verify.
            for (_, tensor) in parameters { tensor.data[0] = Float(step) }
            m[0].tensor.data[0] = Float(step)
            let contents = CheckpointContents(
                config: config, parameters: parameters,
                optimizer: OptimizerState(kind: "adamw", step: step, moments: ["m": m, "v": v]), step: step,
                tokensSeen: step * 1024, rng: ["data": rng], dataCursor: #"{"step":\#(step)}"#, threads: 1,
                metadata: ["stage": "stress"])
            try writeCheckpoint(contents, to: url, hooks: CheckpointCommitHooks(withoutHardLinks: withoutHardLinks))
            _ = rng.next()
            step += 1
        }
    }
}
