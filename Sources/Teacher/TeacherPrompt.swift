// What a teacher is shown beyond the task: a system message, worked examples, and where each
// turn's tools are written. The student never sees any of it: samples are verified against
// the task and become SFT rows and pairs in the task's own form (SampleOutputs), so a few-shot
// teacher distils into a zero-shot student.
//
// A task is rewritten before it reaches the teacher (`TeacherPrompt.apply`):
//   [system]                                  the prompt's `system`, then the task's own
//                                             system messages' text, joined by a blank line
//   example 1 user, example 1 assistant, ...  every message of every example, in file order
//   the task's other messages
// With `tools_in: "user"` each example's tools and the task's tools are written at the head
// of the turn's first user message,
//     <tools>\n{tool}\n{tool}\n</tools>\n\n{content}
// one tool per line in the chat template's JSON layout, and the task goes to the teacher
// without `tools` (so neither the chat template's system block nor an OpenAI `tools`
// parameter repeats them). With `tools_in: "system"` (the default) the task keeps its tools
// and the examples' tools are not shown. Small models follow a format they have just seen far
// better than one described to them; putting each example's tools next to its request keeps
// the examples in exactly the task's form.
//
// `tools_format: "python"` writes the tools in a user turn as Python signatures instead of
// JSON lines, each parameter typed from its JSON schema (integer int, number float, string
// str, boolean bool, array list[item], object dict, enum Literal[...]), optional ones with
// their default (or None) after the required ones, and the descriptions in a docstring:
//     Functions:
//     def paint_needed(width_m: float, height_m: float, coats: int = 2):
//         """Litres of paint needed to cover a wall.
//         width_m: Wall width in metres.
//         ..."""
//
//     Request: {content}
// A 135M model shown JSON schemas copies schema fragments into its calls; shown signatures it
// answers with calls (docs/teacher.md has the figures).
//
// Examples are SFT rows in TRL's conversational form: {"messages": [...], "tools"?: [...]}
// (a user message, the assistant's answer; more turns allowed).

import Foundation
import JSON
import Platform
import TextData
import Verify

/// A message of a task (Verify's type; TextData has a namesake).
package typealias TaskMessage = Verify.ChatMessage

/// How tools written into a user turn look.
package enum ToolFormat: String, Codable, Sendable, CaseIterable {
    /// One JSON definition per line in a `<tools>` block.
    case json
    /// Python signatures with docstrings after "Functions:", the request after "Request: ".
    case python
}

/// Where the tools of a turn are shown to the teacher.
package enum ToolPlacement: String, Codable, Sendable, CaseIterable {
    /// In the system message, through the chat template (the student's form).
    case system
    /// At the head of the turn's user message, in a `<tools>` block.
    case user
}

package struct TeacherPrompt: Codable, Sendable, Equatable {
    /// A system message for the teacher (the model's default one is not used when given).
    package var system: String?
    /// Worked examples (JSONL of conversational SFT rows); absolute after loading.
    package var examples: String?
    package var toolsIn: ToolPlacement = .system
    /// How tools in a user turn are written (with `tools_in: "user"`).
    package var toolsFormat: ToolFormat = .json

    package init(
        system: String? = nil, examples: String? = nil, toolsIn: ToolPlacement = .system, toolsFormat: ToolFormat = .json
    ) {
        self.system = system
        self.examples = examples
        self.toolsIn = toolsIn
        self.toolsFormat = toolsFormat
    }

    package enum CodingKeys: String, CodingKey, CaseIterable {
        case system, examples
        case toolsIn = "tools_in"
        case toolsFormat = "tools_format"
    }

    /// Whether the prompt's settings fit together.
    package func problems() -> [String] {
        toolsFormat == .python && toolsIn != .user ? ["tools_format \"python\" needs tools_in \"user\""] : []
    }

    /// One worked example: its messages and tools.
    package struct Example: Sendable, Equatable {
        package var messages: [TaskMessage]
        package var tools: [JSONValue]?
    }

    /// Reads the examples file (every row a conversation with at least one user and one
    /// assistant message; errors name file:line).
    package func loadExamples() throws -> [Example] {
        guard let examples else { return [] }
        var out: [Example] = []
        try JSONLReader.forEach(path: examples) { record in
            guard case .array(let items)? = record.value("messages") else {
                throw DataError.malformed(
                    file: examples, line: record.line, column: 1, reason: "an example needs \"messages\"",
                    hint: "write {\"messages\": [{\"role\": \"user\", ...}, {\"role\": \"assistant\", ...}], \"tools\"?: [...]}")
            }
            var messages: [TaskMessage] = []
            for item in items {
                guard case .object(let o) = item, case .string(let role)? = o["role"], case .string(let content)? = o["content"],
                    TextData.ChatMessage.roles.contains(role)
                else {
                    throw DataError.malformed(
                        file: examples, line: record.line, column: 1, reason: "a message must be {\"role\", \"content\"} with role system, user, assistant or tool",
                        hint: "fix the example's messages")
                }
                messages.append(TaskMessage(role: role, content: content))
            }
            guard messages.contains(where: { $0.role == "user" }), messages.contains(where: { $0.role == "assistant" }) else {
                throw DataError.malformed(
                    file: examples, line: record.line, column: 1, reason: "an example needs a user message and the assistant's answer",
                    hint: "show the teacher a request and its answer")
            }
            var tools: [JSONValue]?
            if case .array(let t)? = record.value("tools") { tools = t }
            out.append(Example(messages: messages, tools: tools))
        }
        return out
    }

    /// The task as the teacher sees it (see the file header). Identity when the prompt adds nothing.
    package func apply(_ task: TeacherTask, examples: [Example]) -> TeacherTask {
        if system == nil && examples.isEmpty && toolsIn == .system { return task }
        var own = task.prompt.chatMessages
        let systems = own.filter { $0.role == "system" }.map(\.content)
        own.removeAll { $0.role == "system" }
        var messages: [TaskMessage] = []
        let systemText = ([system].compactMap { $0 } + systems).joined(separator: "\n\n")
        if !systemText.isEmpty { messages.append(TaskMessage(role: "system", content: systemText)) }
        for example in examples {
            messages += toolsIn == .user ? withTools(example.messages, example.tools) : example.messages
        }
        messages += toolsIn == .user ? withTools(own, task.tools) : own
        var out = task
        out.prompt = .messages(messages)
        if toolsIn == .user {
            out.toolsInMessages = task.tools
            out.tools = nil
        }
        return out
    }

    /// `messages` with `tools` written at the head of the first user message.
    func withTools(_ messages: [TaskMessage], _ tools: [JSONValue]?) -> [TaskMessage] {
        guard let tools, !tools.isEmpty, let i = messages.firstIndex(where: { $0.role == "user" }) else { return messages }
        var out = messages
        switch toolsFormat {
        case .json:
            out[i].content = "<tools>\n" + tools.map { $0.compactJSON() }.joined(separator: "\n") + "\n</tools>\n\n" + out[i].content
        case .python:
            out[i].content = "Functions:\n" + tools.map(Self.pythonSignature).joined(separator: "\n\n") + "\n\nRequest: " + out[i].content
        }
        return out
    }

    /// A tool as a Python `def` with typed parameters and its descriptions in a docstring.
    static func pythonSignature(_ tool: JSONValue) -> String {
        guard case .object(var o) = tool else { return tool.compactJSON() }
        if case .object(let f)? = o["function"] { o = f }  // {"type": "function", "function": {...}}
        guard case .string(let name)? = o["name"] else { return tool.compactJSON() }
        var properties: [(key: String, value: JSONValue)] = []
        var required: Set<String> = []
        if case .object(let p)? = o["parameters"] {
            if case .object(let props)? = p["properties"] { properties = props.entries }
            if case .array(let r)? = p["required"] { for case .string(let s) in r { required.insert(s) } }
        }
        // Required parameters first, as Python requires of a signature.
        let ordered = properties.filter { required.contains($0.key) } + properties.filter { !required.contains($0.key) }
        let arguments = ordered.map { key, schema -> String in
            var a = "\(key): \(pythonType(schema))"
            if !required.contains(key) {
                if case .object(let s) = schema, let d = s["default"] { a += " = " + pythonLiteral(d) } else { a += " = None" }
            }
            return a
        }
        var lines = ["def \(name)(\(arguments.joined(separator: ", "))):"]
        var doc: [String] = []
        if case .string(let d)? = o["description"] { doc.append(d) }
        for (key, schema) in properties {
            if case .object(let s) = schema, case .string(let d)? = s["description"] { doc.append("\(key): \(d)") }
        }
        lines.append("    \"\"\"" + doc.joined(separator: "\n    ") + "\"\"\"")
        return lines.joined(separator: "\n")
    }

    static func pythonType(_ schema: JSONValue) -> String {
        guard case .object(let s) = schema else { return "Any" }
        if case .array(let values)? = s["enum"] { return "Literal[" + values.map(pythonLiteral).joined(separator: ", ") + "]" }
        switch s["type"] {
        case .string("integer")?: return "int"
        case .string("number")?, .string("float")?: return "float"
        case .string("string")?: return "str"
        case .string("boolean")?: return "bool"
        case .string("array")?: return s["items"].map { "list[\(pythonType($0))]" } ?? "list"
        case .string("object")?, .string("dict")?: return "dict"
        default: return "Any"
        }
    }

    /// A JSON value as the Python literal of the same value.
    static func pythonLiteral(_ value: JSONValue) -> String {
        switch value {
        case .null: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .array(let items): return "[" + items.map(pythonLiteral).joined(separator: ", ") + "]"
        case .object(let o): return "{" + o.entries.map { JSONValue.string($0.key).compactJSON() + ": " + pythonLiteral($0.value) }.joined(separator: ", ") + "}"
        default: return value.compactJSON()
        }
    }
}
