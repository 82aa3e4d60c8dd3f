import ArgumentParser
import ModelIO

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Bring a model from another format into a distill checkpoint.", subcommands: [HF.self, PEFT.self])

    struct HF: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "hf", abstract: "A Hugging Face Llama directory (config.json, safetensors, tokenizer.json).")
        @Argument(help: "The Hugging Face model directory.") var directory: String
        @Option(name: .shortAndLong, help: "The checkpoint to write (.h5).") var output: String

        func run() throws {
            try importHF(directory: directory, to: output)
            print("wrote \(output)")
        }
    }
}

extension Import {
    struct PEFT: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "peft", abstract: "A PEFT LoRA directory, as a distill adapter checkpoint for its base.")

        @Argument(help: "The PEFT adapter directory.") var directory: String
        @Option(help: "The base model: a distill checkpoint or a Hugging Face directory.") var base: String
        @Option(name: .shortAndLong, help: "The adapter checkpoint to write (.h5).") var output: String

        func run() throws {
            try importPEFT(directory: directory, base: base, to: output)
            print("wrote \(output)")
        }
    }
}
