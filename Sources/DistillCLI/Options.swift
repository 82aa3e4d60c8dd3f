import ArgumentParser
import Core
import ModelIO
import NN

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

/// Which weights generation runs on.
struct WeightsOption: ParsableArguments {
    @Option(
        help: """
            The weights generation runs on: f32; bf16, q8_0, q4_0 or q4_1 (converted at load and kept so); file (a \
            quantized GGUF file's own Q8_0/Q4_0/Q4_1 tensors, as llama.cpp runs them).
            """)
    var weights: InferenceWeights = .f32
}

extension InferenceWeights: ExpressibleByArgument {}
extension WeightFormat: ExpressibleByArgument {}
