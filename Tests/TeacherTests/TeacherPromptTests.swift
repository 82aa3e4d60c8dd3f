// The teacher prompt's rewriting of a task: system message first, examples as earlier turns,
// tools in the user turn as JSON lines or Python signatures.

import Foundation
import JSON
import Testing

@testable import Teacher
@testable import Verify

@Suite struct TeacherPromptTests {
    static let paint: JSONValue = try! JSONValue.parse(Array(#"""
        {"name": "paint_needed", "description": "Litres of paint for a wall.", "parameters": {"type": "object",
         "properties": {"width_m": {"type": "number", "description": "Width in metres."},
                        "coats": {"type": "integer", "default": 2},
                        "finish": {"type": "string", "enum": ["matt", "gloss"]},
                        "rooms": {"type": "array", "items": {"type": "string"}},
                        "dry": {"type": "boolean", "default": false}},
         "required": ["width_m", "finish"]}}
        """#.utf8))

    @Test func pythonSignatures() {
        #expect(
            TeacherPrompt.pythonSignature(Self.paint) == """
                def paint_needed(width_m: float, finish: Literal["matt", "gloss"], coats: int = 2, rooms: list[str] = None, dry: bool = False):
                    \"\"\"Litres of paint for a wall.
                    width_m: Width in metres.\"\"\"
                """)
        #expect(TeacherPrompt.pythonSignature(.obj(["type": .string("function"), "function": .obj(["name": .string("f")])])) == "def f():\n    \"\"\"\"\"\"")
    }

    @Test func theTaskIsRewrittenForTheTeacherOnly() {
        let task = TeacherTask(
            id: "t", prompt: .messages([ChatMessage(role: "system", content: "Be exact."), ChatMessage(role: "user", content: "Paint 4 m?")]),
            tools: [Self.paint])
        let example = TeacherPrompt.Example(
            messages: [ChatMessage(role: "user", content: "Q"), ChatMessage(role: "assistant", content: "[f(a=1)]")],
            tools: [.obj(["name": .string("f")])])
        let prompt = TeacherPrompt(system: "Call functions.", toolsIn: .user, toolsFormat: .python)
        let seen = prompt.apply(task, examples: [example])
        #expect(seen.tools == nil && seen.id == task.id)
        let messages = seen.prompt.chatMessages
        #expect(messages.map(\.role) == ["system", "user", "assistant", "user"])
        #expect(messages[0].content == "Call functions.\n\nBe exact.")
        #expect(messages[1].content == "Functions:\ndef f():\n    \"\"\"\"\"\"\n\nRequest: Q")
        #expect(messages[3].content.hasPrefix("Functions:\ndef paint_needed(") && messages[3].content.hasSuffix("\n\nRequest: Paint 4 m?"))
        // Nothing to add: the task as it is.
        #expect(TeacherPrompt().apply(task, examples: []) == task)
        #expect(TeacherPrompt(toolsFormat: .python).problems() == ["tools_format \"python\" needs tools_in \"user\""])
    }
}

@Suite struct TaskSubsetTests {
    static func tasks(_ n: Int) -> [TeacherTask] { (0..<n).map { TeacherTask(id: "t\($0)", prompt: .text("p\($0)")) } }

    /// A subset keeps file order, depends on the seed, and adding tasks keeps the chosen ones
    /// unless a new one ranks before them.
    @Test func subsetsAreStableAndOrdered() {
        let all = Self.tasks(100)
        let a = TaskReader.subset(all, count: 10, seed: 1)
        #expect(a.count == 10 && a.map(\.id) == all.filter { a.contains($0) }.map(\.id))
        #expect(TaskReader.subset(all, count: 10, seed: 1) == a)
        #expect(TaskReader.subset(all, count: 10, seed: 2) != a)
        let more = TaskReader.subset(Self.tasks(200), count: 10, seed: 1)
        // A task chosen among 200 that is also among the first 100 ranks in their top 10 too.
        let first = Set(all.map(\.id))
        #expect(Set(more.map(\.id)).intersection(first).isSubset(of: Set(a.map(\.id))))
        #expect(TaskReader.subset(all, count: nil, seed: 1) == all && TaskReader.subset(all, count: 500, seed: 1) == all)
    }
}
