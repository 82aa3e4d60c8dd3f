import ArgumentParser
import Core
import Formats
import ModelIO

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a distill checkpoint in another format.", subcommands: [HF.self, PEFT.self, GGUF.self])

    struct HF: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "hf", abstract: "A Hugging Face directory that transformers loads as LlamaForCausalLM.")
        @Argument(help: "The distill checkpoint (.h5; an adapter is merged into its base).") var checkpoint: String
        @OptionGroup var base: BaseOption
        @Option(name: .shortAndLong, help: "The directory to write.") var output: String

        func run() throws {
            try exportHF(try loadModel(from: checkpoint, base: base.base), to: output)
            print("wrote \(output)")
        }
    }
}

extension Export {
    struct PEFT: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "peft",
            abstract: "A PEFT LoRA directory (adapter_config.json, adapter_model.safetensors) that peft loads onto the base.")

        @Argument(help: "The adapter checkpoint (.h5).") var adapter: String
        @OptionGroup var base: BaseOption
        @Option(
            help: ArgumentHelp(
                "The base as a Hugging Face directory, recorded as base_model_name_or_path (written there when missing).",
                discussion: "Default: the adapter's base when it is a Hugging Face directory, else OUTPUT/base, where the base is exported."))
        var baseHf: String?
        @Option(name: .shortAndLong, help: "The directory to write.") var output: String

        func run() throws {
            let baseDirectory = try exportPEFT(try loadModel(from: adapter, base: base.base), to: output, baseHF: baseHf)
            print("wrote \(output) (base: \(baseDirectory))")
        }
    }

    /// `distill export gguf CKPT -o FILE.gguf [--dtype f32|f16|q8_0|q4_0|q4_1]` and
    /// `distill export gguf BASE --adapter ADAPTER -o FILE.gguf`.
    struct GGUF: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gguf",
            abstract: "A GGUF file that llama.cpp loads: the model, or with --adapter a LoRA adapter for it.",
            discussion: """
                Architecture llama with the byte-level BPE tokenizer; Q and K rows are reordered to \
                llama.cpp's rotary layout. With --dtype f16 the weight matrices are F16, with q8_0, q4_0 \
                or q4_1 they are quantized (as `distill quantize` does; load the file with --weights file to \
                run those blocks); the norm weights stay F32. An adapter checkpoint given as CHECKPOINT is folded into its base. \
                With --adapter, CHECKPOINT is the adapter's base and the file written is the adapter \
                alone (export the base without --adapter, then load both: llama.cpp --lora, \
                llama-cpp-python lora_path). See docs/formats.md (GGUF).
                """)
        @Argument(help: "The distill checkpoint (.h5) or Hugging Face model directory (with --adapter: the base).")
        var checkpoint: String
        @Option(help: "An adapter checkpoint (.h5) trained on CHECKPOINT: write it as a GGUF LoRA adapter.")
        var adapter: String?
        @OptionGroup var base: BaseOption
        @Option(name: .shortAndLong, help: "The file to write (.gguf).") var output: String
        @Option(
            help:
                "Tensor type of the weight matrices: f32, f16, or quantized q8_0, q4_0, q4_1 (the model only; ggml's block formats, byte for byte as llama.cpp's quantizer makes them).")
        var dtype: GGUFExportType = .f32

        func validate() throws {
            if adapter != nil && base.base != nil {
                throw ValidationError("with --adapter, CHECKPOINT is the base; leave out --base")
            }
            if adapter != nil && dtype != .f32 && dtype != .f16 {
                throw ValidationError("--dtype \(dtype.rawValue): a LoRA adapter is written as f32 or f16; quantize the base model instead")
            }
        }

        func run() throws {
            if let adapter {
                try exportGGUFAdapter(try loadModel(from: adapter, base: checkpoint), dtype: dtype, to: output)
            } else {
                try exportGGUF(try loadModel(from: checkpoint, base: base.base), dtype: dtype, to: output)
            }
            print("wrote \(output)")
        }
    }
}

extension GGUFExportType: ExpressibleByArgument {}
