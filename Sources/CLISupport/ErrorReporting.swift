// The one error reporter of distill's executables (`distill` and the crash tests'
// `distill-test-helper`): a user-facing error prints `error: <message>` on stderr and exits with
// its kind's code (Platform's ErrorKind: the table in docs/architecture.md); ArgumentParser's
// usage errors exit with 2 instead of EX_USAGE (64), distill's code for usage mistakes.

import ArgumentParser
import CHost
import Foundation
import Platform

extension ParsableCommand {
    /// Parses the command line, runs the command, and reports a failure as described above.
    package static func mainReportingErrors() -> Never {
        // Line-buffered even into a pipe or file, so a killed run's log has every line printed.
        distill_line_buffer_stdout()
        do {
            var command = try parseAsRoot()
            try command.run()
            Foundation.exit(0)
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
