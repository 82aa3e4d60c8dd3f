import Foundation
import JSON
import Platform
import TextData

// The task set a teacher is sampled on: JSONL, one task per line.
//
//   {"id": "gsm-1", "prompt": "Janet has 3 apples ...", "answer": "42"}
//   {"id": "w-1", "messages": [{"role": "user", "content": "Weather in Oslo?"}],
//    "tools": [{"name": "get_weather", "parameters": {...}}],
//    "calls": [{"get_weather": {"city": ["Oslo"], "unit": ["celsius", ""]}}]}
//   {"id": "re-1", "prompt": "Name a prime below 10", "pattern": "[2357]"}
//   {"id": "py-1", "prompt": "Write is_even(n)", "check": ["tests/test_is_even.py"]}
//
// `id` is a string (or an integer, kept as its decimal text) unique in the file. Exactly one of
// `prompt` (a string) or `messages` (a non-empty array of {"role","content"}) is required. The
// verifier fields are optional here; a verifier that needs one checks for it up front
// (`Verifier.requirementProblem`), so a missing field is reported before any teacher call.

/// One chat message as OpenAI-compatible servers and TRL's `messages` rows write it.
package struct ChatMessage: Sendable, Equatable, Codable {
    package var role: String
    package var content: String

    package init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// What the teacher is asked.
package enum TaskPrompt: Sendable, Equatable {
    /// A plain prompt; sent to a chat endpoint as one user message.
    case text(String)
    case messages([ChatMessage])

    /// The conversation sent to a chat endpoint.
    package var chatMessages: [ChatMessage] {
        switch self {
        case .text(let s): return [ChatMessage(role: "user", content: s)]
        case .messages(let m): return m
        }
    }
}

/// One expected function call in the Berkeley Function Calling Leaderboard's possible-answer
/// form: `{"name": {"arg": [acceptable values...]}}`. An acceptable value `""` means the
/// argument may be omitted.
package struct ExpectedCall: Sendable, Equatable {
    package var name: String
    /// Arguments in file order, each with its acceptable values.
    package var arguments: [(name: String, acceptable: [JSONValue])]

    package init(name: String, arguments: [(name: String, acceptable: [JSONValue])]) {
        self.name = name
        self.arguments = arguments
    }

    package static func == (a: ExpectedCall, b: ExpectedCall) -> Bool {
        a.name == b.name && a.arguments.count == b.arguments.count
            && zip(a.arguments, b.arguments).allSatisfy { $0.name == $1.name && $0.acceptable == $1.acceptable }
    }
}

/// One task of a task set.
package struct TeacherTask: Sendable, Equatable {
    package var id: String
    package var prompt: TaskPrompt
    /// Function definitions offered to the model (JSON-schema `parameters`), as written.
    package var tools: [JSONValue]?
    /// Tools a teacher prompt wrote into the messages instead (`tools_in: "user"`; `tools` is
    /// then nil so that the chat template does not render them again): what constrained
    /// sampling still allows calls to.
    package var toolsInMessages: [JSONValue]?
    /// The reference final answer for the `exact` verifier (a number is kept as its JSON text).
    package var answer: String?
    /// A regular expression for the `regex` verifier.
    package var pattern: String?
    /// Expected calls for the `function-call` verifier; more than one means parallel calls.
    package var calls: [ExpectedCall]?
    /// Extra arguments for the `command` verifier's checker.
    package var check: [String]?
    /// Where the task was read from, for messages (`file:line`).
    package var file: String
    package var line: Int

    package init(
        id: String, prompt: TaskPrompt, tools: [JSONValue]? = nil, answer: String? = nil, pattern: String? = nil,
        calls: [ExpectedCall]? = nil, check: [String]? = nil, file: String = "<memory>", line: Int = 0
    ) {
        self.id = id
        self.prompt = prompt
        self.tools = tools
        self.answer = answer
        self.pattern = pattern
        self.calls = calls
        self.check = check
        self.file = file
        self.line = line
    }

    package var location: String { "\(file):\(line)" }
}

/// Reads and validates a task file.
package enum TaskReader {
    package static let knownKeys: Set<String> = [
        "id", "prompt", "messages", "tools", "answer", "pattern", "calls", "check",
    ]

    /// At most `count` of `tasks`, in file order: those whose XXH64(seed, id) are smallest, so a
    /// task's membership depends on its id and the seed alone (adding tasks to the file never
    /// swaps one already chosen for another unless it ranks lower). nil or a count at least the
    /// file's size: all of them.
    package static func subset(_ tasks: [TeacherTask], count: Int?, seed: Int) -> [TeacherTask] {
        guard let count, count < tasks.count else { return tasks }
        let rank = tasks.indices.map { i -> (UInt64, Int) in
            var h = XXH64(seed: UInt64(bitPattern: Int64(seed)))
            h.update(Array(tasks[i].id.utf8))
            return (h.finalize(), i)
        }
        let chosen = Set(rank.sorted { $0 < $1 }.prefix(max(count, 0)).map(\.1))
        return tasks.indices.filter(chosen.contains).map { tasks[$0] }
    }

    /// Every task in `path`, in file order. Throws `DataError` naming file:line:column.
    package static func read(path: String) throws -> [TeacherTask] {
        var tasks: [TeacherTask] = []
        var firstLine: [String: Int] = [:]
        try JSONLReader.forEach(path: path) { record in
            let task = try parse(record)
            if let previous = firstLine[task.id] {
                throw record.error(
                    "duplicate task id \"\(task.id)\" (first on line \(previous))", at: "id",
                    hint: "give every task a unique id; cached teacher calls and pairs are keyed by it")
            }
            firstLine[task.id] = record.line
            tasks.append(task)
        }
        return tasks
    }

    /// One task from one JSONL record.
    package static func parse(_ record: JSONLRecord) throws -> TeacherTask {
        for entry in record.object.entries where !knownKeys.contains(entry.key) {
            throw record.error(
                "unknown field \"\(entry.key)\"", at: entry.key,
                hint: "a task has id, prompt or messages, tools, and answer, pattern, calls or check")
        }
        let id: String
        switch try record.require("id", hint: "every task needs an \"id\" (a string unique in the file)") {
        case .string(let s) where !s.isEmpty: id = s
        case .int(let i): id = String(i)
        case let v:
            throw record.error(
                "field \"id\" is \(v.typeName == "a string" ? "empty" : v.typeName)", at: "id",
                hint: "write the id as a non-empty JSON string")
        }
        let prompt: TaskPrompt
        switch (record.value("prompt"), record.value("messages")) {
        case (nil, nil):
            throw record.error("task \"\(id)\" has neither \"prompt\" nor \"messages\"", hint: "add one of them")
        case (.some, .some):
            throw record.error("task \"\(id)\" has both \"prompt\" and \"messages\"", at: "messages", hint: "keep one")
        case (.some(let p), nil):
            guard case .string(let s) = p else {
                throw record.error(
                    "field \"prompt\" is \(p.typeName), not a string", at: "prompt",
                    hint: "write the prompt as a JSON string, or use \"messages\" for a conversation")
            }
            prompt = .text(s)
        case (nil, .some(let m)):
            prompt = .messages(try messages(m, record))
        }
        var task = TeacherTask(id: id, prompt: prompt, file: record.file, line: record.line)
        if let t = record.value("tools") {
            guard case .array(let items) = t, items.allSatisfy({ if case .object = $0 { true } else { false } }) else {
                throw record.error(
                    "field \"tools\" must be an array of function definitions", at: "tools",
                    hint: "write [{\"name\": ..., \"description\": ..., \"parameters\": {...}}, ...]")
            }
            task.tools = items
        }
        if let a = record.value("answer") {
            switch a {
            case .string(let s): task.answer = s
            case .int(let i): task.answer = String(i)
            case .double(let d): task.answer = d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : "\(d)"
            default:
                throw record.error(
                    "field \"answer\" is \(a.typeName)", at: "answer",
                    hint: "write the reference answer as a string or a number")
            }
        }
        if let p = record.value("pattern") {
            guard case .string(let s) = p else {
                throw record.error(
                    "field \"pattern\" is \(p.typeName), not a string", at: "pattern",
                    hint: "write the regular expression as a JSON string (backslashes doubled)")
            }
            do { _ = try LinearRegex(s) } catch {
                throw record.error(
                    "field \"pattern\" is not a valid regular expression (\(error))", at: "pattern",
                    hint: "fix the expression (distill matches in linear time: no backreferences, atomic groups "
                        + "or variable-length lookaround); JSON needs backslashes doubled, as in \"\\\\d+\"")
            }
            task.pattern = s
        }
        if let c = record.value("calls") {
            let calls = try expectedCalls(c, record)
            if let tools = task.tools {
                let offered = Set(tools.compactMap(ToolSchema.name))
                for call in calls where !offered.contains(call.name) {
                    throw record.error(
                        "expected call \(call.name) is not among the task's tools (\(offered.sorted().joined(separator: ", ")))",
                        at: "calls", hint: "add its definition to \"tools\" or fix the name")
                }
            }
            task.calls = calls
        }
        if let c = record.value("check") {
            switch c {
            case .string(let s): task.check = [s]
            case .array(let items):
                task.check = try items.map {
                    guard case .string(let s) = $0 else {
                        throw record.error(
                            "field \"check\" holds \($0.typeName)", at: "check",
                            hint: "\"check\" is a string or an array of strings passed to the checker as arguments")
                    }
                    return s
                }
            default:
                throw record.error(
                    "field \"check\" is \(c.typeName)", at: "check",
                    hint: "\"check\" is a string or an array of strings passed to the checker as arguments")
            }
        }
        return task
    }

    private static func messages(_ value: JSONValue, _ record: JSONLRecord) throws -> [ChatMessage] {
        let hint = "write \"messages\" as [{\"role\": \"user\", \"content\": \"...\"}, ...]"
        guard case .array(let items) = value, !items.isEmpty else {
            throw record.error("field \"messages\" must be a non-empty array", at: "messages", hint: hint)
        }
        return try items.enumerated().map { i, item in
            guard case .object(let o) = item, case .string(let role)? = o["role"],
                case .string(let content)? = o["content"]
            else {
                throw record.error(
                    "messages[\(i)] needs string fields \"role\" and \"content\"", at: "messages", hint: hint)
            }
            return ChatMessage(role: role, content: content)
        }
    }

    /// `calls` in possible-answer form: an array of single-key objects (a bare object is one call).
    private static func expectedCalls(_ value: JSONValue, _ record: JSONLRecord) throws -> [ExpectedCall] {
        let hint = "write [{\"function_name\": {\"arg\": [acceptable values], \"optional_arg\": [value, \"\"]}}]"
        let items: [JSONValue]
        switch value {
        case .array(let a) where !a.isEmpty: items = a
        case .object: items = [value]
        default: throw record.error("field \"calls\" must be a non-empty array of calls", at: "calls", hint: hint)
        }
        return try items.enumerated().map { i, item in
            guard case .object(let o) = item, o.entries.count == 1, case .object(let args) = o.entries[0].value else {
                throw record.error(
                    "calls[\(i)] must be an object with one key, the function name", at: "calls", hint: hint)
            }
            var arguments: [(name: String, acceptable: [JSONValue])] = []
            for arg in args.entries {
                guard case .array(let acceptable) = arg.value, !acceptable.isEmpty else {
                    throw record.error(
                        "calls[\(i)].\(o.entries[0].key).\(arg.key) must be a non-empty array of acceptable values",
                        at: "calls", hint: "wrap a single value in brackets: [\(arg.value.compact())]")
                }
                arguments.append((name: arg.key, acceptable: acceptable))
            }
            return ExpectedCall(name: o.entries[0].key, arguments: arguments)
        }
    }
}
