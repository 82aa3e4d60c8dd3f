import ArgumentParser
import Foundation
import JSON
import Teacher
import Verify

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score existing completions against a task set with distill's verifiers.",
        discussion: """
            TASKS is the sampling task JSONL (id, prompt or messages, answer / pattern / calls / check).
            OUTPUTS has one completion per line: {"id": ..., "completion": ...} (or task_id and text, as
            samples.jsonl writes them). The default verifier picks one per task by its field: answer -> exact,
            pattern -> regex, calls -> function-call, check -> command. See docs/teacher.md.
            """)

    @Option(help: "The task set (JSONL).") var tasks: String
    @Option(help: "The completions to score (JSONL).") var outputs: String
    @Option(help: "auto, exact, regex, function-call or command.") var verifier: String = "auto"
    @Option(help: "exact: auto, gsm8k, boxed, last-number, regex or none.") var extract: String = "auto"
    @Option(help: "exact with --extract regex: the pattern (first capture group is the answer).") var extractPattern:
        String?
    @Flag(help: "exact: compare case-sensitively.") var caseSensitive = false
    @Option(help: "regex: full or search.") var mode: String = "full"
    @Option(help: "regex: the pattern for tasks without their own.") var pattern: String?
    @Option(help: "function-call: schema (check argument types against the task's tool schema) or lenient.")
    var types: String = "schema"
    @Option(
        help: ArgumentHelp(
            "command: the checker's program and arguments, split at spaces (no shell); the task's check values follow.",
            discussion:
                "For arguments containing spaces use --verifier-json '{\"type\":\"command\",\"command\":[...]}'."))
    var command: String?
    @Option(help: "command: how the checker gets the completion: stdin or file.") var input: String = "stdin"
    @Option(help: "command: seconds before the checker is killed.") var timeout: Double = 30
    @Option(help: "The whole verifier as JSON (as in a recipe), instead of the options above.") var verifierJson:
        String?
    @Flag(help: "Print every verdict and the summary as JSON.") var json = false

    func validate() throws {
        func check<E: RawRepresentable & CaseIterable>(_ value: String, _ type: E.Type, _ flag: String) throws
        where E.RawValue == String {
            if E(rawValue: value) == nil {
                throw ValidationError(
                    "\(flag) must be one of \(E.allCases.map(\.rawValue).joined(separator: ", ")), got \(value)")
            }
        }
        try check(verifier, VerifierConfig.Kind.self, "--verifier")
        try check(extract, VerifierConfig.Extraction.self, "--extract")
        try check(mode, VerifierConfig.MatchMode.self, "--mode")
        try check(input, VerifierConfig.Input.self, "--input")
        try check(types, VerifierConfig.TypeCheck.self, "--types")
        let config = try verifierConfig()
        let problems = config.problems()
        if !problems.isEmpty { throw ValidationError(problems.joined(separator: "; ")) }
    }

    func verifierConfig() throws -> VerifierConfig {
        if let verifierJson {
            do {
                return try JSONDecoder().decode(VerifierConfig.self, from: Data(verifierJson.utf8))
            } catch {
                throw ValidationError("--verifier-json is not a verifier object: \(error)")
            }
        }
        var config = VerifierConfig(type: VerifierConfig.Kind(rawValue: verifier) ?? .auto)
        config.extract = VerifierConfig.Extraction(rawValue: extract) ?? .auto
        config.extractPattern = extractPattern
        config.caseSensitive = caseSensitive
        config.mode = VerifierConfig.MatchMode(rawValue: mode) ?? .full
        config.pattern = pattern
        config.types = VerifierConfig.TypeCheck(rawValue: types) ?? .schema
        config.command = command.map { $0.split(whereSeparator: \.isWhitespace).map(String.init) }
        config.input = VerifierConfig.Input(rawValue: input) ?? .stdin
        config.timeoutSeconds = timeout
        return config
    }

    func run() throws {
        let config = try verifierConfig()
        let report = try VerifyReport.score(tasksPath: tasks, outputsPath: outputs, verifier: Verifier(config))
        if json {
            try printJSON(report)
            return
        }
        for row in report.rows {
            let credit = row.correct || row.credit == 0 ? "" : String(format: " (credit %.3f)", row.credit)
            print("\(outputs):\(row.line)  \(row.id)  \(row.correct ? "correct" : "incorrect")\(credit)  \(row.reason)")
        }
        let s = report.summary
        print(
            String(
                format: "%d/%d correct (%.1f%%), pass@1 %.3f, mean credit %.3f; %d of %d tasks solved", s.correct,
                s.outputs, s.passRate * 100, s.passAt1, s.meanCredit, s.tasksSolved, s.tasksScored)
                + (s.tasksWithoutOutputs > 0
                    ? "; \(s.tasksWithoutOutputs) task\(s.tasksWithoutOutputs == 1 ? "" : "s") without outputs" : ""))
    }
}
