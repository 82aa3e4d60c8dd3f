import ArgumentParser
import Core
import Foundation
import ModelIO

/// `distill quantize MODEL --type q8_0|q4_0|q4_1 -o OUT.gguf`: a quantized GGUF of a model,
/// the file `--weights file` runs as stored (and llama.cpp loads).
struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a model as a quantized GGUF file (Q8_0, Q4_0 or Q4_1).",
        discussion: """
            The weight matrices are quantized into ggml's block formats, byte for byte as llama.cpp's \
            quantizer makes them (the token embedding and output matrix keep Q8_0 under the 4-bit types, \
            as llama.cpp's do); norm weights stay F32. Any model distill loads can be quantized: a \
            checkpoint (an adapter is folded into its base), a Hugging Face directory or a GGUF file. Run \
            the result with --weights file (distill generate, chat, eval; a teacher's "weights": "file"). \
            The same as `distill export gguf --dtype TYPE`. See docs/training.md (Weights for inference).
            """)

    @Argument(help: "The model: a checkpoint (.h5), Hugging Face directory or GGUF file.") var model: String
    @OptionGroup var base: BaseOption
    @Option(help: "The block format: q8_0 (8.5 bits a weight), q4_0 (4.5) or q4_1 (5).") var type: QuantizedType
    @Option(name: .shortAndLong, help: "The file to write (.gguf).") var output: String

    enum QuantizedType: String, ExpressibleByArgument, CaseIterable {
        case q8_0, q4_0, q4_1
        var export: GGUFExportType { GGUFExportType(rawValue: rawValue)! }
    }

    func run() throws {
        let loaded = try loadModel(from: model, base: base.base)
        try exportGGUF(loaded, dtype: type.export, to: output)
        let bytes = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        let f32 = loaded.model.config.parameterCount * 4
        print(String(format: "wrote %@: %.1f MB (f32: %.1f MB)", output, Double(bytes) / 1e6, Double(f32) / 1e6))
    }
}
