import ArgumentParser
import Core
import Foundation
import ModelIO
import Platform
import Sweep
import Verify

@main
struct Distill: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distill",
        abstract: "Train and distill small language models on a CPU.",
        version: DistillVersion.string,
        subcommands: [
            Doctor.self, Run.self, Eval.self, Generate.self, Inspect.self, Import.self, Export.self, Merge.self, Bench.self,
            Verify.self, Sample.self, Sweep.self,
        ])

    /// ArgumentParser's own entry point with distill's one error reporter: a user-facing
    /// error prints `error: <message>` on stderr and exits with its kind's code (the table in
    /// Platform's ErrorKind and README.md); usage errors exit with 2 instead of EX_USAGE (64).
    /// DistillTestHelper's TestHelper.main is a copy.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let error as any UserFacingError {
            FileHandle.standardError.write(Data(("error: " + error.description + "\n").utf8))
            Foundation.exit(error.exitCode)
        } catch {
            if exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(ErrorKind.usage.exitCode)
            }
            exit(withError: error)
        }
    }
}

/// A mistake in a command's arguments found after parsing (a file they name, say): reported
/// like every other error, without ArgumentParser's usage text, which for an error thrown
/// from run() names the root command instead of the one that failed.
func usageError(_ message: String) -> UserError {
    UserError(path: "", problem: message, kind: .usage)
}
