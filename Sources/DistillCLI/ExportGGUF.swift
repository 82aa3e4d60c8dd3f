import ArgumentParser
import Formats
import Recipe

extension GGUFExportType: ExpressibleByArgument {}

/// `distill export gguf CKPT -o FILE.gguf [--dtype f32|f16]`
struct ExportGGUF: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gguf",
        abstract: "A GGUF file that llama.cpp loads (architecture llama, byte-level BPE tokenizer).",
        discussion: """
            Q and K rows are reordered to llama.cpp's rotary layout; with --dtype f16 the weight \
            matrices are F16 and the norm weights stay F32. See docs/formats.md (GGUF).
            """)
    @Argument(help: "The distill checkpoint (.h5) or Hugging Face model directory.") var checkpoint: String
    @Option(name: .shortAndLong, help: "The file to write (.gguf).") var output: String
    @Option(help: "Weight matrix type: f32 or f16.") var dtype: GGUFExportType = .f32

    func run() throws {
        try reporting { try exportGGUF(try loadModel(from: checkpoint), dtype: dtype, to: output) }
        print("wrote \(output)")
    }
}
