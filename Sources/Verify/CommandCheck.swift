import Foundation
import Platform

/// The `command` verifier: runs a checker program and judges by its exit status (0 = correct).
///
/// The checker is started directly (through `/usr/bin/env` for the PATH lookup), never by a
/// shell, so task text cannot be interpolated into a command line. The completion reaches it
/// on stdin or in a temporary file (path as the last argument and in `DISTILL_COMPLETION_FILE`);
/// `DISTILL_TASK_ID` names the task. Its output goes to temporary files, so a chatty checker
/// cannot block on a full pipe; the last lines of it end up in the reason. After `timeout`
/// seconds it gets SIGTERM, one second later SIGKILL, and the verdict is incorrect.
package enum CommandCheck {
    package static func verify(
        _ completion: String, command: [String], taskID: String, input: VerifierConfig.Input, timeout: Double
    ) -> Verdict {
        var checker = Subprocess(command, timeout: timeout)
        checker.input = completion
        checker.delivery = input == .file ? .fileArgument : .stdin
        checker.environment = ["DISTILL_TASK_ID": taskID]
        checker.inputFileVariable = "DISTILL_COMPLETION_FILE"
        checker.mergeOutput = true
        let outcome: Subprocess.Outcome
        switch checker.run() {
        case .success(let o): outcome = o
        case .failure(let error): return .incorrect("checker \(error.problem)")
        }
        let tail = Subprocess.lastLines(outcome.stdout)
        let said = tail.isEmpty ? "" : ": \(tail)"
        switch outcome.ending {
        case .timedOut: return .incorrect("checker timed out after \(Subprocess.formatSeconds(timeout))\(said)")
        case .signal(let signal): return .incorrect("checker killed by signal \(signal)\(said)")
        case .exited(127): return .incorrect("checker \(command[0]) not found on PATH\(said)")
        case .exited(0): return .correct("checker exited 0\(said)")
        case .exited(let status): return .incorrect("checker exited \(status)\(said)")
        }
    }
}
