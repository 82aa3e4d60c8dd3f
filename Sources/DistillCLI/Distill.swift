import ArgumentParser
import CLISupport
import Core
import Foundation
import ModelIO
import Platform

@main
struct Distill: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distill",
        abstract: "Train and distill small language models on a CPU.",
        version: DistillVersion.string,
        subcommands: [
            Doctor.self, Run.self, Eval.self, Generate.self, Chat.self, Inspect.self, Import.self, Export.self, Merge.self, Bench.self,
            Verify.self, Sample.self, Sweep.self, Quantize.self, Verdicts.self, RouteCommand.self, ServeCommand.self,
        ])

    /// ArgumentParser's entry point with distill's one error reporter (CLISupport).
    static func main() { mainReportingErrors() }
}

/// A mistake in a command's arguments found after parsing (a file they name, say): reported
/// like every other error, without ArgumentParser's usage text, which for an error thrown
/// from run() names the root command instead of the one that failed.
func usageError(_ message: String) -> UserError {
    UserError(path: "", problem: message, kind: .usage)
}
