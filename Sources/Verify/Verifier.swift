import Foundation
import JSON
import Platform
import TextData

// Verifiers: the external soundness signal that decides whether a completion is correct.
// Each returns a `Verdict` with a reason a person can read next to the sample.

/// The outcome of checking one completion.
package struct Verdict: Sendable, Equatable, Codable {
    package var correct: Bool
    /// Why: what was extracted and compared, which argument differed, the checker's exit status.
    package var reason: String
    /// The answer in the form the verifier compares it, so that equal answers read equal: what
    /// majority votes group by. nil when no answer could be read (docs/evaluation.md, *Canonical
    /// answers*): exact, the normalised extracted answer (numbers as numbers); function-call, the
    /// parsed calls sorted, values normalised as the matcher compares them; regex, the trimmed
    /// completion (`full`) or the first match (`search`); command, the trimmed completion.
    package var canonical: String?
    /// Partial credit in 0...1, 1 exactly when `correct` (docs/teacher.md, *Partial credit*):
    /// function-call, the share of the expected (call, argument) units the answer got right
    /// (`FunctionCallMatch.credit`); every other verifier, 1 or 0.
    package var credit: Double

    /// `credit` defaults to 1 when correct, 0 when not.
    package init(correct: Bool, reason: String, canonical: String? = nil, credit: Double? = nil) {
        precondition(credit.map { (0...1).contains($0) } ?? true, "credit \(credit!) is outside 0...1")
        self.correct = correct
        self.reason = reason
        self.canonical = canonical
        self.credit = credit ?? (correct ? 1 : 0)
    }

    package static func correct(_ reason: String, canonical: String? = nil) -> Verdict {
        Verdict(correct: true, reason: reason, canonical: canonical)
    }
    package static func incorrect(_ reason: String, canonical: String? = nil, credit: Double = 0) -> Verdict {
        Verdict(correct: false, reason: reason, canonical: canonical, credit: credit)
    }
}

/// Which verifier checks a task set, with its settings. The recipe's `verifier` object and the
/// JSON accepted by `distill verify --verifier-json` decode into this.
package struct VerifierConfig: Sendable, Equatable, Codable {
    package enum Kind: String, Sendable, Codable, CaseIterable {
        /// Per task, by the field it has: answer -> exact, pattern -> regex, calls -> function-call,
        /// check -> command (which then needs `command`).
        case auto
        case exact
        case regex
        case functionCall = "function-call"
        case command
    }

    /// How `exact` finds the final answer in a completion.
    package enum Extraction: String, Sendable, Codable, CaseIterable {
        /// `#### x` if present, else the last `\boxed{x}`, else the last number.
        case auto
        /// The text after the last `####` (GSM8K), to the end of its line.
        case gsm8k
        /// The contents of the last `\boxed{...}`, braces balanced.
        case boxed
        /// The last number (thousands separators and a leading sign allowed).
        case lastNumber = "last-number"
        /// The first match of `extract_pattern`; its first capture group when it has one.
        case regex
        /// The whole completion.
        case none
    }

    /// Whether `regex` must match the whole (trimmed) completion or anywhere in it.
    package enum MatchMode: String, Sendable, Codable, CaseIterable {
        case full, search
    }

    /// How `function-call` checks argument types.
    package enum TypeCheck: String, Sendable, Codable, CaseIterable {
        /// Against the task's tool schema when it has one (ToolSchema.swift): unknown
        /// parameters, missing required ones, wrong types and values outside an enum are wrong.
        case schema
        /// The schema is read for function names only; values compare as the possible answers
        /// say (integers and floats numerically). For task sets without schemas, or to reproduce
        /// the leaderboard's looser checker.
        case lenient
    }

    /// How the `command` checker receives the completion.
    package enum Input: String, Sendable, Codable, CaseIterable {
        /// On its standard input.
        case stdin
        /// In a temporary file whose path is the last argument (and `DISTILL_COMPLETION_FILE`).
        case file
    }

    package var type: Kind = .auto
    // exact
    package var extract: Extraction = .auto
    package var extractPattern: String? = nil
    package var caseSensitive: Bool = false
    // regex
    package var mode: MatchMode = .full
    // function-call
    package var types: TypeCheck = .schema
    /// Used for tasks without their own `pattern`.
    package var pattern: String? = nil
    // command
    /// The checker's argv (no shell): the program, found on PATH, then its arguments. The task's
    /// `check` values follow, then the completion file in `file` mode.
    package var command: [String]? = nil
    package var input: Input = .stdin
    /// Seconds before the checker is killed and the completion judged incorrect; 1...86400.
    package var timeoutSeconds: Double = 30

    package init(type: Kind = .auto) { self.type = type }

    package enum CodingKeys: String, CodingKey, CaseIterable {
        case type, extract, mode, pattern, command, input, types
        case extractPattern = "extract_pattern"
        case caseSensitive = "case_sensitive"
        case timeoutSeconds = "timeout_seconds"
    }

    package init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self, in: "verifier")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        type = try c.decodeIfPresent(Kind.self, forKey: .type) ?? .auto
        extract = try c.decodeIfPresent(Extraction.self, forKey: .extract) ?? .auto
        extractPattern = try c.decodeIfPresent(String.self, forKey: .extractPattern)
        caseSensitive = try c.decodeIfPresent(Bool.self, forKey: .caseSensitive) ?? false
        mode = try c.decodeIfPresent(MatchMode.self, forKey: .mode) ?? .full
        types = try c.decodeIfPresent(TypeCheck.self, forKey: .types) ?? .schema
        pattern = try c.decodeIfPresent(String.self, forKey: .pattern)
        command = try c.decodeIfPresent([String].self, forKey: .command)
        input = try c.decodeIfPresent(Input.self, forKey: .input) ?? .stdin
        timeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .timeoutSeconds) ?? 30
    }

    /// Problems with the settings themselves, each naming the key and the fix.
    package func problems() -> [String] {
        var out: [String] = []
        if extract == .regex {
            if let p = extractPattern {
                do { _ = try LinearRegex(p) } catch {
                    out.append("extract_pattern \"\(p)\" is not a valid regular expression: \(error)")
                }
            } else {
                out.append("extract \"regex\" needs extract_pattern, e.g. \"answer is (\\\\S+)\"")
            }
        }
        if let p = pattern {
            do { _ = try LinearRegex(p) } catch { out.append("pattern \"\(p)\" is not a valid regular expression: \(error)") }
        }
        if type == .command, command?.isEmpty ?? true {
            out.append("the command verifier needs \"command\": the checker's argv, e.g. [\"python3\", \"check.py\"]")
        }
        if !(1...86400).contains(timeoutSeconds) {
            out.append("timeout_seconds must be within 1...86400, got \(timeoutSeconds)")
        }
        return out
    }
}

/// Checks completions against tasks with one configuration.
package struct Verifier: Sendable {
    package let config: VerifierConfig

    package init(_ config: VerifierConfig) { self.config = config }

    /// The verifier that will check `task` (resolves `auto` by the task's fields), or nil when
    /// `auto` finds no verifier field.
    package func kind(for task: TeacherTask) -> VerifierConfig.Kind? {
        guard config.type == .auto else { return config.type }
        if task.calls != nil { return .functionCall }
        if task.answer != nil { return .exact }
        if task.pattern != nil { return .regex }
        if task.check != nil { return .command }
        return nil
    }

    /// Why this verifier cannot check `task` (a missing field), or nil when it can. Run over a
    /// whole task set before sampling, so no teacher call is spent on an uncheckable task.
    package func requirementProblem(_ task: TeacherTask) -> String? {
        guard let kind = kind(for: task) else {
            return "task \"\(task.id)\" has none of answer, pattern, calls or check, so no verifier applies; "
                + "add the field the verifier needs"
        }
        switch kind {
        case .auto: return nil
        case .exact:
            return task.answer == nil ? "task \"\(task.id)\" has no \"answer\", which the exact verifier needs" : nil
        case .regex:
            return task.pattern == nil && config.pattern == nil
                ? "task \"\(task.id)\" has no \"pattern\" and the regex verifier sets none" : nil
        case .functionCall:
            return task.calls == nil
                ? "task \"\(task.id)\" has no \"calls\", which the function-call verifier needs" : nil
        case .command:
            return config.command?.isEmpty ?? true
                ? "task \"\(task.id)\" is checked by a command, but the verifier sets no \"command\"" : nil
        }
    }

    /// Checks every task's requirements; throws `DataError` naming the first offending task.
    package func validate(_ tasks: [TeacherTask]) throws {
        let settings = config.problems()
        if !settings.isEmpty {
            throw DataError.badConfig(
                reason: "verifier: " + settings.joined(separator: "; "), hint: "fix the verifier settings")
        }
        for task in tasks {
            if let problem = requirementProblem(task) {
                throw DataError.malformed(
                    file: task.file, line: task.line, column: 1, reason: problem,
                    hint: "add the field, or choose the verifier that matches the task set")
            }
        }
    }

    /// The verdict on `completion` for `task`.
    package func verify(_ completion: String, for task: TeacherTask) -> Verdict {
        guard let kind = kind(for: task) else { return .incorrect("no verifier applies to this task") }
        switch kind {
        case .auto: return .incorrect("no verifier applies to this task")
        case .exact:
            guard let answer = task.answer else { return .incorrect("task has no answer") }
            return ExactMatch.verify(
                completion, answer: answer, extraction: config.extract, pattern: config.extractPattern,
                caseSensitive: config.caseSensitive)
        case .regex:
            guard let pattern = task.pattern ?? config.pattern else { return .incorrect("task has no pattern") }
            return RegexMatch.verify(completion, pattern: pattern, mode: config.mode)
        case .functionCall:
            guard let calls = task.calls else { return .incorrect("task has no calls") }
            return FunctionCallMatch.verify(completion, expected: calls, tools: task.tools, types: config.types)
        case .command:
            guard let command = config.command, !command.isEmpty else { return .incorrect("no checker command") }
            var verdict = CommandCheck.verify(
                completion, command: command + (task.check ?? []), taskID: task.id, input: config.input,
                timeout: config.timeoutSeconds)
            // A program's answer is its text: votes group identical (trimmed) completions.
            verdict.canonical = completion.trimmingCharacters(in: .whitespacesAndNewlines)
            return verdict
        }
    }
}

/// The `regex` verifier.
package enum RegexMatch {
    package static func verify(_ completion: String, pattern: String, mode: VerifierConfig.MatchMode) -> Verdict {
        // LinearRegex: linear time whatever the pattern, so a task's pattern cannot hang a run.
        let regex: LinearRegex
        do { regex = try LinearRegex(pattern) } catch { return .incorrect("invalid pattern \(pattern): \(error)") }
        switch mode {
        case .full:
            let text = completion.trimmingCharacters(in: .whitespacesAndNewlines)
            return regex.wholeMatches(text)
                ? .correct("the completion matches /\(pattern)/ in full", canonical: text)
                : .incorrect("the completion does not match /\(pattern)/ in full", canonical: text)
        case .search:
            if let m = regex.firstMatch(in: completion) {
                let found = String(completion[m.whole])
                return .correct("found \"\(clip(found))\" matching /\(pattern)/", canonical: found)
            }
            return .incorrect("no match for /\(pattern)/")
        }
    }
}
