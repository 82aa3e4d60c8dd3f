// Constrained sampling: the byte grammar's matcher, the call grammar against the verifier that
// judges its sentences (every sentence is a readable, schema-valid call list; the forms the
// verifier refuses are not sentences), the token masks against a token-by-token check, and a
// checkpoint teacher whose random model answers only in form.

import Core
import Foundation
import JSON
import NN
import Platform
import Testing
import TextData
import Verify

@testable import Teacher

@Suite struct ConstrainedSamplingTests {
    static let tools: [JSONValue] = [
        try! JSONValue.parse(
            Array(
                #"""
                {"type": "function", "function": {"name": "area", "parameters": {"type": "object", "properties": {
                  "w": {"type": "integer"}, "h": {"type": "integer"},
                  "unit": {"type": "string", "enum": ["cm", "in"]}, "exact": {"type": "boolean"}},
                  "required": ["w", "h"]}}}
                """#.utf8)),
        try! JSONValue.parse(
            Array(
                #"""
                {"name": "math.mean", "parameters": {"type": "object", "properties": {
                  "values": {"type": "array", "items": {"type": "number"}}, "label": {"type": "string"},
                  "weights": {"type": ["array", "null"]}, "extra": {"type": "object"}},
                  "required": ["values"]}}
                """#.utf8)),
        try! JSONValue.parse(
            Array(
                #"""
                {"name": "place", "parameters": {"type": "object", "properties": {
                  "at": {"type": "object", "properties": {"lat": {"type": "number"}, "lon": {"type": "number"},
                    "name": {"type": "string"}}, "required": ["lat", "lon"]}},
                  "required": ["at"]}}
                """#.utf8)),
    ]

    @Test func theMatcherTakesPrefixesAndRefusesTheRest() {
        let b = GrammarBuilder()
        let digits = b.oneOrMore([.bytes(ByteSet(UInt8(ascii: "0"), through: UInt8(ascii: "9")))])
        let g = b.build(root: b.rule([b.literal("n=") + [digits]]))
        #expect(g.matches("n=1234567890"))
        #expect(!g.matches("n=") && !g.matches("n=12a") && !g.matches("m=1"))
        let prefix = g.feed(g.start, bytes: "n=".utf8)
        #expect(!prefix.isDead && !g.isComplete(prefix))
        #expect(g.isComplete(g.feed(prefix, bytes: "7".utf8)) && !g.isClosed(g.feed(prefix, bytes: "7".utf8)))
        #expect(g.feed(prefix, bytes: "x".utf8).isDead)
        // Right recursion keeps one short stack per way the digits may go on, however many there are.
        let long = g.feed(prefix, bytes: String(repeating: "9", count: 500).utf8)
        #expect(long.stacks.allSatisfy { $0.count <= 2 })
    }

    @Test func theCallGrammarTakesWhatTheVerifierCreditsAndRefusesWhatItCannot() throws {
        let g = try #require(CallGrammar.pythonCalls(tools: Self.tools))
        for good in [
            #"[area(w=5, h=3)]"#, #"[area(w=5,h=3, unit="cm")]"#, #"[area(w=-2, h=0, exact=True)]"#,
            #"[area(w=5, h=3, unit='in', exact=False), math.mean(values=[1, 2.5, -3e-2])]"#,
            #"[ math.mean(values=[], label="a \"b\"\n", weights=None, extra={"k": [1, "x"]}) ]"#,
            #"[math.mean(values=[1], weights=[True, 'x'])]"#,
            #"[place(at={"lat": 1.5, "lon": -2}), place(at={'lat': 0,'lon': 0, "name": "x"})]"#,
        ] {
            #expect(g.matches(good), "\(good)")
        }
        for bad in [
            "[area(5, 3)]",  // positional
            "area(w=5, h=3)",  // not a list
            "[area(w=5)]",  // h is required
            "[area(h=3, w=5)]",  // out of the schema's order
            "[area(w=5.0, h=3)]",  // an integer as a float
            "[area(w=05, h=3)]",  // not a Python integer
            "[area(w=5, h=3, unit=\"mm\")]",  // outside the enum
            "[area(w=5, h=3, exact=true)]",  // JSON's spelling
            "[area(w=5, h=3, w=6)]",  // twice
            "[area(w=5, h=3, depth=2)]",  // not a parameter
            "[volume(w=5)]",  // not a tool
            "[math.mean(values=[\"a\"])]",  // items are numbers
            "[]",
            #"[place(at={"x": 1})]"#,  // not a property
            #"[place(at={"lat": 1})]"#,  // lon is required
            #"[place(at={"lon": 1, "lat": 2})]"#,  // out of order
            #"[place(at={"lat": "1", "lon": 2})]"#,  // a string for a number
        ] {
            #expect(!g.matches(bad), "\(bad)")
        }
    }

    /// Random sentences of the grammar, read back by the function-call verifier's parser and
    /// checked against the tools' schemas.
    @Test func everySentenceIsACallListTheVerifierReadsAndTheSchemaAccepts() throws {
        let g = try #require(CallGrammar.pythonCalls(tools: Self.tools))
        let schemas = ToolSchema.parameters(Self.tools)
        var rng = RNG(seed: 11)
        for _ in 0..<300 {
            let text = String(decoding: g.sample(using: &rng), as: UTF8.self)
            #expect(g.matches(text), "\(text)")
            guard case .calls(let calls) = CallParser.parse(text) else {
                Issue.record("the verifier cannot read \(text)")
                continue
            }
            for call in calls {
                let schema = try #require(schemas[call.name], "\(text)")
                #expect(ToolSchema.problem(arguments: call.arguments, schema: schema, path: call.name) == nil, "\(text)")
            }
        }
    }

    /// The trie walk's masks against asking the grammar token by token, at states along a sentence.
    @Test func aMaskAllowsExactlyTheTokensThatCanContinueASentence() throws {
        let (model, tokenizer, _) = try tinyModel()
        let v = model.config.vocabSize
        let vocabulary = ConstrainedVocabulary(tokenizer, vocabulary: v, stopTokens: [0])
        let g = try #require(CallGrammar.pythonCalls(tools: Self.tools))
        let masks = vocabulary.masks(for: g)
        let sentence = #"[area(w=12, h=3, unit="cm"), math.mean(values=[1.5, 2], label="x y")]"#
        let logits = UnsafeMutablePointer<Float>.allocate(capacity: v)
        defer { logits.deallocate() }
        var allowedSomewhere = 0
        for cut in [0, 1, 6, 8, 9, 20, 25, 30, 50, 62, sentence.utf8.count] {
            let row = GrammarConstraint(masks)
            for t in tokenizer.encode(String(sentence.utf8.prefix(cut))!, addSpecialTokens: false) {
                #expect(row.allows(t))
                row.accept(t)
            }
            logits.update(repeating: 0, count: v)
            #expect(row.mask(logits, count: v))
            for t in 0..<Int32(v) {
                #expect((logits[Int(t)] == 0) == row.allows(t), "token \(t) after \(cut) bytes")
            }
            allowedSomewhere += (0..<v).filter { logits[$0] == 0 }.count
        }
        #expect(allowedSomewhere > 11)
        // After the closing bracket nothing but the end is left, and the row is finished.
        let done = GrammarConstraint(masks)
        for t in tokenizer.encode(sentence, addSpecialTokens: false) { done.accept(t) }
        #expect(done.isFinished && !done.allows(tokenizer.encode("]", addSpecialTokens: false)[0]))
    }

    /// A random model answers in noise; constrained, every sample is a call list the verifier
    /// reads and the schema accepts, ended as soon as its list closes.
    @Test func aConstrainedTeacherAnswersOnlyInForm() throws {
        let dir = try scratch("constrained")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (model, tokenizer, json) = try tinyModel()
        // The second task's tools are written into its user message by a teacher prompt.
        let tasks = [
            TeacherTask(id: "t", prompt: .text("Area of 5 by 3?"), tools: Self.tools, file: "tasks.jsonl", line: 1),
            TeacherPrompt(toolsIn: .user, toolsFormat: .python).apply(
                TeacherTask(id: "u", prompt: .text("Mean of 1, 2?"), tools: Self.tools, file: "tasks.jsonl", line: 2),
                examples: []),
        ]
        #expect(tasks[1].tools == nil)
        var config = CheckpointTeacherConfig(checkpoint: "x.h5")
        config.samples = 6
        config.temperature = 1.0
        config.maxTokens = 120
        config.batchSize = 5
        func texts(_ grammar: SamplingGrammar?) throws -> [(String, String?)] {
            config.grammar = grammar
            let cache = try CallCache(path: dir.appendingPathComponent("\(grammar?.rawValue ?? "free").sqlite").path)
            let teacher = try CheckpointTeacher(
                config: config, model: model, tokenizer: tokenizer, tokenizerJSON: json, endOfText: 0, cache: cache)
            return try teacher.sampleSync(tasks).map { let c = try $0.result.get(); return (c.text, c.finishReason) }
        }
        let free = try texts(nil)
        #expect(free.allSatisfy { if case .calls = CallParser.parse($0.0) { false } else { true } })
        let schemas = ToolSchema.parameters(Self.tools)
        var finished = 0
        for (text, finish) in try texts(.pythonCalls) {
            // A sample cut by max_tokens is a prefix of a sentence; a finished one is a sentence.
            guard finish == "stop" else { continue }
            finished += 1
            guard case .calls(let calls) = CallParser.parse(text) else {
                Issue.record("the verifier cannot read \(text)")
                continue
            }
            for call in calls {
                #expect(ToolSchema.problem(arguments: call.arguments, schema: schemas[call.name]!, path: call.name) == nil)
            }
        }
        #expect(finished >= 6)
    }

    @Test func aTaskWithoutToolsIsRefusedWithItsLine() throws {
        let dir = try scratch("constrained-refusal")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (model, tokenizer, json) = try tinyModel()
        var config = CheckpointTeacherConfig(checkpoint: "x.h5")
        config.grammar = .pythonCalls
        let teacher = try CheckpointTeacher(
            config: config, model: model, tokenizer: tokenizer, tokenizerJSON: json, endOfText: 0,
            cache: try CallCache(path: dir.appendingPathComponent("c.sqlite").path))
        #expect {
            try teacher.sampleSync([task("bare", "2+2?")])
        } throws: { "\($0)".contains("tasks.jsonl:1") && "\($0)".contains("no named tools") }
    }
}
