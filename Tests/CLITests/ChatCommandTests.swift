// `distill import gguf`, `distill chat` and `generate --chat` on tiny_chat.gguf (a tiny
// SmolLM2-shaped model with its ChatML template and default system message; made by
// tools/make_gguf_chat_fixture.py with transformers' outputs in tiny_chat.json).

import Foundation
import Testing

@Suite struct ChatCommandTests {
    static let gguf = GGUFCommandTests.fixtures.appendingPathComponent("gguf/tiny_chat.gguf")
    static let reference = GGUFCommandTests.fixtures.appendingPathComponent("gguf/tiny_chat.json")

    struct Reply: Decodable {
        var text: String
        var prompt_ids: [Int32]
        var ids: [Int32]
        var finish_reason: String
    }

    /// The rendered chat and its ids as transformers' apply_chat_template gives them.
    static func referenceChat() throws -> (ids: [Int32], messages: [[String: String]]) {
        struct Ref: Decodable {
            struct Chat: Decodable {
                var ids: [Int32]
                var messages: [[String: String]]
            }
            var chat: Chat
        }
        let ref = try JSONDecoder().decode(Ref.self, from: Data(contentsOf: reference))
        return (ref.chat.ids, ref.chat.messages)
    }

    @Test func importRecordsTheTemplateAndOneShotChatUsesIt() throws {
        let dir = try scratchDirectory("chat")
        defer { try? FileManager.default.removeItem(at: dir) }
        let ckpt = dir.appendingPathComponent("tiny.h5").path
        let i = try distill(["import", "gguf", Self.gguf.path, "-o", ckpt])
        #expect(i.status == 0, "\(i.err)")
        #expect(i.out.contains("2 layers") && i.out.contains("F16:1,F32:5,Q8_0:14"))
        #expect(i.out.contains("chat template: chatml with default system message \"You are a helpful AI assistant named SmolLM"))
        // Its GGUF export carries the template back (tokenizer.chat_template), so the export
        // chats the same way in llama.cpp and after a second import.
        let exported = dir.appendingPathComponent("export.gguf").path
        let e = try distill(["export", "gguf", ckpt, "-o", exported])
        #expect(e.status == 0, "\(e.err)")
        let again = try distill(["import", "gguf", exported, "-o", dir.appendingPathComponent("again.h5").path])
        #expect(again.out.contains("chat template: chatml with default system message \"You are a helpful AI assistant named SmolLM"))

        // The reference conversation's user turns, answered in order: the first prompt is the
        // fixture's first user message under the default system message.
        let (ids, messages) = try Self.referenceChat()
        let first = try #require(messages.first?["content"])
        for model in [ckpt, Self.gguf.path] {
            let r = try distill(["chat", "--checkpoint", model, "--message", first, "--message", "And again?", "--max-tokens", "6", "--json"])
            #expect(r.status == 0, "\(r.err)")
            let replies = try JSONDecoder().decode([Reply].self, from: Data(r.out.utf8))
            #expect(replies.count == 2)
            // transformers' prompt for [system default, user first] is a prefix of the reference chat's ids.
            let prefix = Array(ids.prefix(replies[0].prompt_ids.count))
            #expect(replies[0].prompt_ids == prefix)
            #expect(replies[0].ids.count <= 6 && ["stop", "length"].contains(replies[0].finish_reason))
            // The second turn's prompt holds the first exchange.
            #expect(replies[1].prompt_ids.starts(with: replies[0].prompt_ids))
        }
        // --system replaces the default system message.
        let s = try distill(["chat", "--checkpoint", ckpt, "--system", "Be terse.", "--message", "Hi", "--max-tokens", "2", "--json"])
        let sys = try JSONDecoder().decode([Reply].self, from: Data(s.out.utf8))
        #expect(sys.first.map { $0.prompt_ids != [] } == true)
        let g = try distill(["generate", "--checkpoint", ckpt, "--chat", "--prompt", first, "--temperature", "0", "--max-tokens", "4", "--json"])
        #expect(g.status == 0, "\(g.err)")
        #expect(g.out.contains("\"prompt_ids\""))
    }

    @Test func interactiveChatReadsTurnsAndResets() throws {
        let r = try distill(
            ["chat", "--checkpoint", Self.gguf.path, "--max-tokens", "3"], input: "Hello\n/reset\nAgain\n/exit\nnever read\n")
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("chatting with tiny_chat.gguf (chatml)"))
        #expect(r.out.contains("(new conversation)"))
        #expect(r.out.components(separatedBy: "> ").count == 5)  // a prompt before each of the four lines up to /exit
    }

    @Test func aModelWithoutATemplateNeedsOne() throws {
        // tiny_llama (a Hugging Face directory) has no chat template and no ChatML tokens.
        let r = try distill(["chat", "--checkpoint", GGUFCommandTests.tiny.path, "--message", "Hi"])
        #expect(r.status == 2 && r.err.contains("records no chat template") && r.err.contains("--template"))
        let t = try distill(["chat", "--checkpoint", GGUFCommandTests.tiny.path, "--message", "Hi", "--template", "chatml"])
        #expect(t.status == 2 && t.err.contains("<|im_start|>"), "\(t.err)")
        let dir = try scratchDirectory("chat")
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("x.h5").path
        let bad = try distill(["import", "gguf", GGUFCommandTests.tiny.path, "-o", out])
        #expect(bad.status == 2 && bad.err.contains("not a .gguf file"), "\(bad.err)")
        let hf = try distill(["import", "hf", Self.gguf.path, "-o", out])
        #expect(hf.status == 2 && hf.err.contains("not a directory"), "\(hf.err)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }
}
