import ArgumentParser
import CLISupport
import Foundation

/// Commands that distill's crash tests launch and kill. A separate executable, built beside
/// `distill` but never part of it.
@main
struct TestHelper: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distill-test-helper",
        abstract: "Developer commands for distill's crash tests (not for users).",
        subcommands: [StressCheckpoint.self, StressTeacher.self])

    /// Reports errors as `distill` does (CLISupport).
    static func main() { mainReportingErrors() }
}
