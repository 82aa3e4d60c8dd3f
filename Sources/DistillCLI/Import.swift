import ArgumentParser
import Foundation
import Platform
import ModelIO
import TextData

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Bring a model from another format into a distill checkpoint.",
        subcommands: [HF.self, GGUF.self, PEFT.self])

    struct HF: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "hf", abstract: "A Hugging Face Llama directory (config.json, safetensors, tokenizer.json).")
        @Argument(help: "The Hugging Face model directory.") var directory: String
        @OptionGroup var target: ImportTarget

        func run() throws {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw UserError(path: directory, problem: "is not a directory", fix: "give a Hugging Face model directory (import gguf reads .gguf files)", kind: .usage)
            }
            try target.importModel(from: directory)
        }
    }

    struct GGUF: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gguf",
            abstract: "A llama.cpp GGUF model (architecture llama; F32, F16, BF16 or quantized weights, read as f32).")
        @Argument(help: "The .gguf file.") var file: String
        @OptionGroup var target: ImportTarget

        func run() throws {
            guard file.lowercased().hasSuffix(".gguf") else {
                throw UserError(path: file, problem: "is not a .gguf file", fix: "give a GGUF model file (import hf reads Hugging Face directories)", kind: .usage)
            }
            try target.importModel(from: file)
        }
    }
}

/// Where an import writes, and the chat template to record when the source's is not recognised.
struct ImportTarget: ParsableArguments {
    @Option(name: .shortAndLong, help: "The checkpoint to write (.h5).") var output: String
    @Option(help: "The chat template family (chatml, llama3), when the model's own is not recognised or to override it.")
    var template: ChatTemplate?

    func importModel(from source: String) throws {
        let loaded = try ModelIO.importModel(from: source, to: output, template: template)
        let c = loaded.model.config
        print("wrote \(output): \(c.numHiddenLayers) layers, width \(c.hiddenSize), \(c.numAttentionHeads) heads / \(c.numKeyValueHeads) KV, vocabulary \(c.vocabSize), \(c.parameterCount) parameters")
        if let types = loaded.sourceMetadata["source_tensor_types"] { print("tensor types: \(types)") }
        if let chat = loaded.chat {
            print("chat template: \(chat.template.rawValue)" + (chat.defaultSystem.map { " with default system message \"\($0)\"" } ?? ""))
        } else {
            print("chat template: not recognised; chat and --chat need one: re-import with --template chatml|llama3")
        }
    }
}

extension ChatTemplate: ExpressibleByArgument {}

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
