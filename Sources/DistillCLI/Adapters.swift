import ArgumentParser
import Foundation
import ModelIO

/// Where an adapter's base is, when not where the adapter says.
struct BaseOption: ParsableArguments {
    @Option(help: "For an adapter checkpoint: its base model (default: the path the adapter records).")
    var base: String?
}

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fold a LoRA adapter into its base and write a whole-model checkpoint.")

    @Argument(help: "The adapter checkpoint (.h5).") var adapter: String
    @OptionGroup var base: BaseOption
    @Option(name: .shortAndLong, help: "The checkpoint to write (.h5).") var output: String

    func run() throws {
        try mergeAdapter(try loadModel(from: adapter, base: base.base), to: output)
        print("wrote \(output)")
    }
}

struct ExportPEFT: ParsableCommand {
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

struct ImportPEFT: ParsableCommand {
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
