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
// Examples are SFT rows in TRL's conversational form: {"messages": [...], "tools"?: [...]}
// (a user message, the assistant's answer; more turns allowed).

import Foundation
import JSON
import Platform
import TextData
import Verify

/// A message of a task (Verify's type; TextData has a namesake).
package typealias TaskMessage = Verify.ChatMessage

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

    package init(system: String? = nil, examples: String? = nil, toolsIn: ToolPlacement = .system) {
        self.system = system
        self.examples = examples
        self.toolsIn = toolsIn
    }

    package enum CodingKeys: String, CodingKey, CaseIterable {
        case system, examples
        case toolsIn = "tools_in"
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
            messages += toolsIn == .user ? Self.withTools(example.messages, example.tools) : example.messages
        }
        messages += toolsIn == .user ? Self.withTools(own, task.tools) : own
        var out = task
        out.prompt = .messages(messages)
        if toolsIn == .user { out.tools = nil }
        return out
    }

    /// `messages` with `tools` written at the head of the first user message.
    static func withTools(_ messages: [TaskMessage], _ tools: [JSONValue]?) -> [TaskMessage] {
        guard let tools, !tools.isEmpty, let i = messages.firstIndex(where: { $0.role == "user" }) else { return messages }
        var out = messages
        out[i].content = "<tools>\n" + tools.map { $0.compactJSON() }.joined(separator: "\n") + "\n</tools>\n\n" + out[i].content
        return out
    }
}
