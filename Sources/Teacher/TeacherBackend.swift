import Foundation
import JSON
import TextData
import Verify

/// What the `sample` stage needs from a teacher: samples of every task, each cached
/// individually and committed before it is reported. Implemented by `OpenAITeacher`,
/// `CheckpointTeacher` and `CommandTeacher`.
package protocol TeacherBackend: Sendable {
    /// Names the teacher in samples.jsonl (`openai MODEL at URL`, `checkpoint xxh64:…`, `command ARGV0`).
    var name: String { get }
    /// k: samples per task, with seeds `seed`, `seed+1`, ...
    var samplesPerTask: Int { get }
    /// The sampling settings written next to every sample.
    var settings: JSONValue { get }
    var counters: CallCounters { get }
    /// Throws `DataError` naming the first task this teacher cannot be asked.
    func validate(_ tasks: [TeacherTask]) throws
    /// Samples every task `samplesPerTask` times; the result is in task, then sample order.
    /// `onSample` sees each sample once its result is in the cache. Throws only when the cache
    /// cannot be written.
    func sample(_ tasks: [TeacherTask], onSample: @escaping @Sendable (TeacherSample) -> Void) async throws
        -> [TeacherSample]
}

extension TaskPrompt {
    /// The conversation in TextData's message type (for chat templates).
    var templateMessages: [TextData.ChatMessage] {
        chatMessages.map { TextData.ChatMessage(role: $0.role, content: $0.content) }
    }
}

/// How a task becomes the text a local teacher (checkpoint or command) is given.
package enum PromptRendering {
    /// A plain prompt without tools is used as it is; messages (or a prompt with tools) go
    /// through the chat template and end with its generation prompt.
    package static func render(_ task: TeacherTask, chat: ChatStyle) -> (text: String, chat: Bool) {
        if case .text(let p) = task.prompt, task.tools == nil { return (p, false) }
        return (chat.prompt(task.prompt.templateMessages, tools: task.tools), true)
    }
}

/// Refuses teacher settings that have problems, listing them all (`DataError.badConfig`).
func refuseProblems(_ problems: [String]) throws {
    guard problems.isEmpty else {
        throw DataError.badConfig(reason: "teacher: " + problems.joined(separator: "; "), hint: "fix the teacher settings")
    }
}
