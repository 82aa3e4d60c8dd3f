import ArgumentParser
import ModelIO

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
