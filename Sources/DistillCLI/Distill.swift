import ArgumentParser
import Core
import Foundation

@main
struct Distill: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distill",
        abstract: "Train and distill small language models on a CPU.",
        version: DistillVersion.string,
        subcommands: [
            Doctor.self, Run.self, Eval.self, Generate.self, Inspect.self, Import.self, Export.self, Merge.self, Bench.self,
            StressCheckpoint.self, Verify.self, StressTeacher.self, Sample.self, Sweep.self,
        ])

    /// ArgumentParser's own entry point, except that usage errors exit with 2 (distill's
    /// code for usage and configuration mistakes) instead of EX_USAGE (64).
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}

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

/// A mistake in a command's arguments found after parsing (a file they name, say): the
/// message on stderr and exit code 2, without ArgumentParser's usage text, which for an
/// error thrown from run() names the root command instead of the one that failed.
func usageError(_ message: String) -> ExitCode {
    FileHandle.standardError.write(Data(("error: " + message + "\n").utf8))
    return ExitCode(2)
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}
