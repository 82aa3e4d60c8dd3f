import ArgumentParser
import Foundation
import Platform

/// Commands that distill's crash tests launch and kill. A separate executable, built beside
/// `distill` but never part of it.
@main
struct TestHelper: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distill-test-helper",
        abstract: "Developer commands for distill's crash tests (not for users).",
        subcommands: [StressCheckpoint.self, StressTeacher.self])

    /// Reports errors as `distill` does (a copy of Distill.main, since this executable does not
    /// link DistillCLI): a user-facing error prints `error: <message>` on stderr and exits with
    /// its kind's code; usage errors exit with 2.
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
