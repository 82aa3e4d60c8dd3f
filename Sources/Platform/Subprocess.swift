// Running another program with a time limit: the command checker of the verifiers and the
// command teacher both start programs this way.
//
// The program is started directly (through `/usr/bin/env` for the PATH lookup), never by a
// shell, so no text is ever interpolated into a command line. Its input is written to a
// temporary file first and its output goes to temporary files, so a chatty program cannot
// block on a full pipe. After `timeout` seconds it gets SIGTERM, one second later SIGKILL.

import Foundation

#if canImport(Glibc)
    import Glibc
#endif

package struct Subprocess: Sendable {
    /// How the input reaches the program.
    package enum InputDelivery: Sendable, Equatable {
        /// On standard input.
        case stdin
        /// In a file whose path is appended as the last argument (standard input is empty).
        case fileArgument
    }

    /// How a run ended.
    package enum Ending: Sendable, Equatable {
        case exited(Int32)
        case signal(Int32)
        case timedOut
    }

    package struct Outcome: Sendable {
        package var ending: Ending
        /// Standard output; with `mergeOutput`, standard error interleaved.
        package var stdout: String
        /// Empty with `mergeOutput`.
        package var stderr: String
    }

    /// The program and its arguments (`command[0]` is looked up on PATH).
    package var command: [String]
    package var input: String = ""
    package var delivery: InputDelivery = .stdin
    /// Added to this process's environment. `inputFileVariable`, when set, names a variable
    /// that receives the input file's path.
    package var environment: [String: String] = [:]
    package var inputFileVariable: String?
    /// Standard error into the same file as standard output.
    package var mergeOutput = false
    package var timeout: Double

    package init(_ command: [String], timeout: Double) {
        precondition(!command.isEmpty, "a subprocess needs a program")
        self.command = command
        self.timeout = timeout
    }

    /// Runs the program to its end (or the time limit). Fails with a sentence when the program
    /// could not be started at all (temporary files, a missing /usr/bin/env).
    package func run() -> Result<Outcome, UserError> {
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("distill-run-\(UUID().uuidString)")
        defer { try? fm.removeItem(at: dir) }
        let inputFile = dir.appendingPathComponent("input.txt")
        let outFile = dir.appendingPathComponent("stdout.txt"), errFile = dir.appendingPathComponent("stderr.txt")
        func notRun(_ why: String) -> Result<Outcome, UserError> {
            .failure(UserError(path: command[0], problem: "not run: \(why)", kind: .io))
        }
        do {
            try fm.createDirectory(at: dir, withIntermediateDirectories: true)
            try Data(input.utf8).write(to: inputFile)
            try Data().write(to: outFile)
            try Data().write(to: errFile)
        } catch {
            return notRun("cannot write temporary files (\(error.localizedDescription))")
        }
        guard
            let stdin = delivery == .stdin ? FileHandle(forReadingAtPath: inputFile.path) : FileHandle.nullDevice,
            let stdout = try? FileHandle(forWritingTo: outFile), let stderr = try? FileHandle(forWritingTo: errFile)
        else { return notRun("cannot open its temporary files") }
        defer {
            try? stdin.close()
            try? stdout.close()
            try? stderr.close()
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = command + (delivery == .fileArgument ? [inputFile.path] : [])
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        if let inputFileVariable { env[inputFileVariable] = inputFile.path }
        process.environment = env
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = mergeOutput ? stdout : stderr
        let done = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in done.signal() }
        do {
            try process.run()
        } catch {
            return notRun("\(command[0]) could not start: \(error.localizedDescription)")
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
        let ending: Ending =
            timedOut
            ? .timedOut
            : process.terminationReason == .uncaughtSignal
                ? .signal(process.terminationStatus) : .exited(process.terminationStatus)
        return .success(
            Outcome(
                ending: ending, stdout: (try? String(contentsOf: outFile, encoding: .utf8)) ?? "",
                stderr: mergeOutput ? "" : (try? String(contentsOf: errFile, encoding: .utf8)) ?? ""))
    }

    /// The last three non-empty lines of `s`, at most 300 characters, on one line: what a
    /// failure message quotes of a program's output.
    package static func lastLines(_ s: String) -> String {
        let lines = s.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter {
            !$0.isEmpty
        }
        let joined = lines.suffix(3).joined(separator: " | ")
        return joined.count <= 300 ? joined : "…" + String(joined.suffix(300))
    }

    /// "5 s", "0.25 s".
    package static func formatSeconds(_ s: Double) -> String {
        s == s.rounded() ? "\(Int(s)) s" : String(format: "%.2f s", s)
    }
}
