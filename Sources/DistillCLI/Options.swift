import ArgumentParser
import Core
import ModelIO

/// Options every compute command shares.
struct ComputeOptions: ParsableArguments {
    @Option(help: "Threads for distill's kernels and OpenBLAS (default: DISTILL_THREADS or all cores).")
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
    }

    func apply() {
        if let threads { Threads.set(threads) }
    }
}

/// Where a model comes from: a distill checkpoint or a Hugging Face directory.
struct ModelOption: ParsableArguments {
    @Option(name: .long, help: "A distill checkpoint (.h5, a whole model or an adapter), a Hugging Face model directory or a GGUF model (.gguf).")
    var checkpoint: String
    @OptionGroup var base: BaseOption

    func load() throws -> LoadedModel { try loadModel(from: checkpoint, base: base.base) }
}

/// Where an adapter's base is, when not where the adapter says.
struct BaseOption: ParsableArguments {
    @Option(help: "For an adapter checkpoint: its base model (default: the path the adapter records).")
    var base: String?
}
