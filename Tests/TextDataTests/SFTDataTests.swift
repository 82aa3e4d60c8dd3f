// Chat templates, SFT rows and packing: exact rendered text and masks, ids against the
// tokenizer, packing boundaries, and errors that name file:line:column.

import Foundation
import JSON
import Testing

@testable import TextData

private let conversation = [
    ChatMessage(role: "system", content: "Be brief."),
    ChatMessage(role: "user", content: "Hi"),
    ChatMessage(role: "assistant", content: "Hello!"),
    ChatMessage(role: "user", content: "2+2?"),
    ChatMessage(role: "assistant", content: "4"),
]

/// Writes `lines` to a temporary JSONL file and returns its path.
private func jsonl(_ lines: [String]) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("sft-\(UUID().uuidString).jsonl").path
    try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

@Suite struct ChatTemplateTests {
    @Test func chatmlText() {
        let pieces = ChatTemplate.chatml.render(conversation)
        #expect(
            pieces == [
                ChatPiece(
                    "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
                    trained: false),
                ChatPiece("Hello!<|im_end|>", trained: true),
                ChatPiece("\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n", trained: false),
                ChatPiece("4<|im_end|>", trained: true),
                ChatPiece("\n", trained: false),
            ])
    }

    @Test func llama3Text() {
        let pieces = ChatTemplate.llama3.render(Array(conversation[1...2]))
        #expect(
            pieces == [
                ChatPiece(
                    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
                    trained: false),
                ChatPiece("Hello!<|eot_id|>", trained: true),
            ])
    }

    /// Tools join the system message as one JSON line each; without a system message one is created.
    @Test func toolsGoIntoTheSystemMessage() throws {
        let tool = try JSONValue.parse(Array(#"{"name":"add","parameters":{"a":"int","b":"int"}}"#.utf8))
        let text = ChatTemplate.chatml.render(Array(conversation[1...2]), tools: [tool]).map(\.text).joined()
        #expect(
            text.hasPrefix(
                "<|im_start|>system\n\n\n# Tools\n\n<tools>\n{\"name\": \"add\", \"parameters\": {\"a\": \"int\", \"b\": \"int\"}}\n</tools><|im_end|>\n<|im_start|>user\nHi"
            ))
        // The assistant message is still the trained one after the inserted system message.
        let pieces = ChatTemplate.chatml.render(Array(conversation[1...2]), tools: [tool], trainedMessages: [1])
        #expect(pieces.filter(\.trained).map(\.text) == ["Hello!<|im_end|>"])
    }

    /// The ids of each trained run decode to exactly the assistant content and its end-of-turn
    /// token, and the whole equals tokenising the rendered text at once.
    @Test func chatmlIdsAndMask() throws {
        let tok = try Fixtures.tokenizer("qwen2_bpe.json")
        let pieces = ChatTemplate.chatml.render(conversation)
        let r = ChatPiece.encode(pieces, tokenizer: tok)
        #expect(r.ids == tok.encode(pieces.map(\.text).joined(), addSpecialTokens: false))
        var runs: [[Int32]] = []
        for (i, id) in r.ids.enumerated() where r.trained[i] {
            if i > 0, r.trained[i - 1] { runs[runs.count - 1].append(id) } else { runs.append([id]) }
        }
        #expect(runs.map { tok.decode($0) } == ["Hello!<|im_end|>", "4<|im_end|>"])
        #expect(runs.map(\.last) == [2, 2])  // <|im_end|> is id 2 in this tokenizer
        #expect(r.ids.first == 1)  // <|im_start|>
    }

    @Test func missingTemplateTokensAreNamed() throws {
        let tok = try Fixtures.tokenizer("qwen2_bpe.json")
        #expect(throws: DataError.self) { try ChatTemplate.llama3.check(tok) }
        do {
            try ChatTemplate.llama3.check(tok)
        } catch let e as DataError {
            #expect(e.description.contains("no special token <|begin_of_text|>, <|start_header_id|>"))
            #expect(e.description.contains("choose a template whose tokens the tokenizer has (chatml)"))
            #expect(e.kind == .badConfig)
        }
    }
}

@Suite struct SFTRowTests {
    let tok = try! Fixtures.tokenizer("qwen2_bpe.json")

    @Test func messagesRows() throws {
        let path = try jsonl([
            #"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}"#
        ])
        let rows = try SFTData.read(path: path, format: SFTFormat(), tokenizer: tok)
        let want = ChatPiece.encode(ChatTemplate.chatml.render(Array(conversation[1...2])), tokenizer: tok)
        #expect(rows == [want])
    }

    /// Standard prompt-completion: prompt untrained, completion and EOS (<|im_end|> by
    /// default, or the configured token) trained.
    @Test func promptCompletionRows() throws {
        let path = try jsonl([#"{"prompt": "The sky is", "completion": " blue."}"#])
        let r = try SFTData.read(path: path, format: SFTFormat(), tokenizer: tok)[0]
        let p = tok.encode("The sky is"), c = tok.encode(" blue.", addSpecialTokens: false)
        #expect(r.ids == p + c + [2])
        #expect(r.trained == [Bool](repeating: false, count: p.count) + [Bool](repeating: true, count: c.count + 1))
        let eot = try SFTData.read(path: path, format: SFTFormat(eosToken: "<|endoftext|>"), tokenizer: tok)[0]
        #expect(eot.ids.last == 0)
    }

    /// Conversational prompt-completion trains the completion's assistant messages only.
    @Test func conversationalPromptCompletion() throws {
        let path = try jsonl([
            #"{"prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"}], "completion": [{"role": "assistant", "content": "4"}]}"#
        ])
        let r = try SFTData.read(path: path, format: SFTFormat(), tokenizer: tok)[0]
        let trained = r.ids.enumerated().filter { r.trained[$0.offset] }.map(\.element)
        #expect(tok.decode(trained) == "4<|im_end|>")
    }

    @Test(arguments: [
        (#"{"text": "x"}"#, "f:1:1: not an SFT row (fields: \"text\")"),
        (#"{"messages": "hi"}"#, "f:1:14: \"messages\" is a string, not a list of messages"),
        (
            #"{"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}"#,
            "f:1:14: messages[1].role \"bot\" is not a chat role; roles are system, user, assistant, tool"
        ),
        (#"{"messages": [{"role": "user", "content": 3}]}"#, "f:1:14: messages[0].content is a number, not a string"),
        (#"{"messages": [{"role": "user", "content": "a"}]}"#, "f:1:14: no assistant message, so nothing to train on"),
        (
            #"{"prompt": "a", "completion": [{"role": "assistant", "content": "b"}]}"#,
            "f:1:31: \"prompt\" is a string and \"completion\" is an array"
        ),
        (#"{"prompt": "a", "completion": "b", "tools": 1}"#, "f:1:45: \"tools\" is a number, not a list"),
    ])
    func errorsNameTheField(_ line: String, _ want: String) throws {
        let path = try jsonl(["", line])  // a blank first line: the error is on line 2
        do {
            _ = try SFTData.read(path: path, format: SFTFormat(), tokenizer: tok)
            Issue.record("no error for \(line)")
        } catch let e as DataError {
            let got = e.description.replacingOccurrences(of: path, with: "f")
            let expected = want.replacingOccurrences(of: "f:1:", with: "f:2:")
            #expect(got.hasPrefix(expected), "\(got)")
            #expect(e.kind == .badData)
        }
    }
}

@Suite struct PackingTests {
    /// A: ids 10 11 12, trained F T T -> inputs 10 11,    targets 11 12
    /// B: ids 20..23,   trained F F T T -> inputs 20 21 22, targets -100 22 23
    /// C: ids 30 31,    trained F T     -> inputs 30,       targets 31
    let a = RenderedExample(ids: [10, 11, 12], trained: [false, true, true])
    let b = RenderedExample(ids: [20, 21, 22, 23], trained: [false, false, true, true])
    let c = RenderedExample(ids: [30, 31], trained: [false, true])

    /// seqLen 5: A (2) + B (3) fill row 0 exactly; C starts row 1, padded with id 0.
    @Test func packedRowsAndSegments() {
        let s = SFTSequences([a, b, c], seqLen: 5, layout: .packed, padID: 0)
        #expect(s.rows == 2 && s.truncated == 0)
        #expect(s.inputs == [10, 11, 20, 21, 22, /**/ 30, 0, 0, 0, 0])
        #expect(s.targets == [11, 12, -100, 22, 23, /**/ 31, -100, -100, -100, -100])
        #expect(s.segments == [1, 1, 2, 2, 2, /**/ 1, 0, 0, 0, 0])
        #expect(s.positions == [0, 1, 0, 1, 2, /**/ 0, 0, 1, 2, 3])
        #expect(s.slice(1..<2).inputs == [30, 0, 0, 0, 0])
    }

    /// seqLen 4: B does not fit after A (2 + 3 > 4) and starts a new row; C fits after B.
    @Test func packedNextFit() {
        let s = SFTSequences([a, b, c], seqLen: 4, layout: .packed)
        #expect(s.segments == [1, 1, 0, 0, /**/ 1, 1, 1, 2])
        #expect(s.targets == [11, 12, -100, -100, /**/ -100, 22, 23, 31])
    }

    @Test func paddedOnePerRow() {
        let s = SFTSequences([a, c], seqLen: 3, layout: .padded, padID: 7)
        #expect(s.rows == 2)
        #expect(s.inputs == [10, 11, 7, /**/ 30, 7, 7])
        #expect(s.targets == [11, 12, -100, /**/ 31, -100, -100])
        #expect(s.segments == [1, 1, 0, /**/ 1, 0, 0])
    }

    /// B has 3 positions; with seqLen 2 it keeps the first two (targets -100 22) and is counted.
    @Test func longExamplesAreTruncated() {
        let s = SFTSequences([b], seqLen: 2, layout: .packed)
        #expect(s.truncated == 1 && s.inputs == [20, 21] && s.targets == [-100, 22])
    }
}

@Suite struct PreferenceDataTests {
    let tok = try! Fixtures.tokenizer("qwen2_bpe.json")

    /// Standard rows: both examples share the prompt ids; each completion ends with <|im_end|> (id 2).
    @Test func standardPairs() throws {
        let path = try jsonl([#"{"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}"#])
        let pair = try PreferenceData.read(path: path, format: SFTFormat(), tokenizer: tok)[0]
        let p = tok.encode("The sky is")
        #expect(pair.chosen.ids == p + tok.encode(" blue.", addSpecialTokens: false) + [2])
        #expect(pair.rejected.ids == p + tok.encode(" green.", addSpecialTokens: false) + [2])
        #expect(pair.chosen.trained.prefix(p.count).allSatisfy { !$0 })
        #expect(pair.chosen.trained.dropFirst(p.count).allSatisfy { $0 })
    }

    @Test func conversationalPairs() throws {
        let path = try jsonl([
            #"{"prompt": [{"role": "user", "content": "2+2?"}], "chosen": [{"role": "assistant", "content": "4"}], "rejected": [{"role": "assistant", "content": "5"}]}"#
        ])
        let pair = try PreferenceData.read(path: path, format: SFTFormat(), tokenizer: tok)[0]
        func trained(_ e: RenderedExample) -> String {
            tok.decode(e.ids.enumerated().filter { e.trained[$0.offset] }.map(\.element))
        }
        #expect(trained(pair.chosen) == "4<|im_end|>" && trained(pair.rejected) == "5<|im_end|>")
    }

    @Test func missingFieldIsNamed() throws {
        let path = try jsonl([#"{"prompt": "a", "chosen": "b"}"#])
        #expect {
            try PreferenceData.read(path: path, format: SFTFormat(), tokenizer: tok)
        } throws: { e in
            let d = (e as? DataError)?.description ?? ""
            return d.hasPrefix("\(path):1:1: missing field \"rejected\" (the object has \"prompt\", \"chosen\")")
                && d.contains("preference rows are {\"prompt\", \"chosen\", \"rejected\"}")
        }
    }

    /// Pair 1: chosen 1 2 3 (F F T) -> inputs 1 2, targets -100 3; rejected 1 2 4 5 (F F T T)
    /// -> inputs 1 2 4, targets -100 4 5. Rows are chosen then rejected, padded to 3.
    @Test func layoutIsChosenThenRejected() {
        let pair = PreferencePair(
            chosen: RenderedExample(ids: [1, 2, 3], trained: [false, false, true]),
            rejected: RenderedExample(ids: [1, 2, 4, 5], trained: [false, false, true, true]))
        let s = PreferenceSequences([pair], maxLength: 8, padID: 9)
        #expect(s.pairs == 1 && s.length == 3 && s.truncated == 0)
        #expect(s.inputs == [1, 2, 9, /**/ 1, 2, 4])
        #expect(s.targets == [-100, 3, -100, /**/ -100, 4, 5])
        let cut = PreferenceSequences([pair], maxLength: 2)
        #expect(cut.length == 2 && cut.truncated == 1 && cut.targets == [-100, 3, /**/ -100, 4])
    }
}

/// Conversations rendered by transformers with TRL's training templates (tools/make_finetune_fixtures.py).
struct ChatTemplateFixture: Decodable {
    struct Message: Decodable {
        var role: String
        var content: String
    }
    struct Case: Decodable {
        var template: String
        var source: String
        var messages: [Message]
        var text: String
        /// Character ranges inside TRL's {% generation %} blocks (ASCII text: characters = bytes).
        var generation: [[Int]]
    }
    var cases: [Case]

    static let shared: ChatTemplateFixture = {
        let data = try! Data(contentsOf: Fixtures.url("chat_templates.json"))
        return try! JSONDecoder().decode(ChatTemplateFixture.self, from: data)
    }()
}

@Suite struct ChatTemplateReferenceTests {
    /// The same text as TRL's templates, and the same trained spans for llama3. TRL's Qwen2.5
    /// training template also trains the "\n" after "<|im_start|>assistant" and the "\n" after
    /// <|im_end|>; distill's ChatML does not (the first is part of the generation prompt at
    /// inference, the second comes after the stop token), so its spans are TRL's minus one
    /// character at each end.
    @Test("rendered text and trained spans", arguments: 0..<ChatTemplateFixture.shared.cases.count)
    func matchesTRL(_ index: Int) {
        let c = ChatTemplateFixture.shared.cases[index]
        let template = ChatTemplate(rawValue: c.template)!
        let pieces = template.render(c.messages.map { ChatMessage(role: $0.role, content: $0.content) })
        #expect(pieces.map(\.text).joined() == c.text, "\(c.source)")
        var spans: [[Int]] = []
        var offset = 0
        for p in pieces {
            if p.trained { spans.append([offset, offset + p.text.count]) }
            offset += p.text.count
        }
        let want = template == .chatml ? c.generation.map { [$0[0] + 1, $0[1] - 1] } : c.generation
        #expect(spans == want, "\(c.source)")
    }
}
