import Foundation

#if canImport(Glibc)
    import Glibc
#endif

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
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("distill-check-\(UUID().uuidString)")
        do {
            try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        } catch {
            return .incorrect("checker not run: cannot create a temporary directory (\(error.localizedDescription))")
        }
        defer { try? fm.removeItem(at: dir) }
        let completionFile = dir.appendingPathComponent("completion.txt")
        let outFile = dir.appendingPathComponent("output.txt")
        do {
            try Data(completion.utf8).write(to: completionFile)
            try Data().write(to: outFile)
        } catch {
            return .incorrect("checker not run: cannot write the completion (\(error.localizedDescription))")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = command + (input == .file ? [completionFile.path] : [])
        var env = ProcessInfo.processInfo.environment
        env["DISTILL_TASK_ID"] = taskID
        env["DISTILL_COMPLETION_FILE"] = completionFile.path
        process.environment = env
        guard let output = try? FileHandle(forWritingTo: outFile),
            let stdin = input == .stdin ? FileHandle(forReadingAtPath: completionFile.path) : FileHandle.nullDevice
        else { return .incorrect("checker not run: cannot open its temporary files") }
        defer { try? output.close() }
        process.standardInput = stdin
        process.standardOutput = output
        process.standardError = output
        let done = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in done.signal() }
        do {
            try process.run()
        } catch {
            return .incorrect("checker \(command[0]) could not start: \(error.localizedDescription)")
        }
        var timedOut = false
        if done.wait(timeout: .now() + timeout) == .timedOut {
            timedOut = true
            process.terminate()
            if done.wait(timeout: .now() + 1) == .timedOut {
                kill(process.processIdentifier, SIGKILL)
                done.wait()
            }
        }
        let tail = lastLines((try? String(contentsOf: outFile, encoding: .utf8)) ?? "")
        let said = tail.isEmpty ? "" : ": \(tail)"
        if timedOut { return .incorrect("checker timed out after \(formatSeconds(timeout))\(said)") }
        if process.terminationReason == .uncaughtSignal {
            return .incorrect("checker killed by signal \(process.terminationStatus)\(said)")
        }
        let status = process.terminationStatus
        if status == 127 { return .incorrect("checker \(command[0]) not found on PATH\(said)") }
        return status == 0 ? .correct("checker exited 0\(said)") : .incorrect("checker exited \(status)\(said)")
    }

    /// The last three non-empty lines, at most 300 characters, on one line.
    static func lastLines(_ s: String) -> String {
        let lines = s.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter {
            !$0.isEmpty
        }
        let joined = lines.suffix(3).joined(separator: " | ")
        return joined.count <= 300 ? joined : "…" + String(joined.suffix(300))
    }
}

func formatSeconds(_ s: Double) -> String {
    s == s.rounded() ? "\(Int(s)) s" : String(format: "%.2f s", s)
}
