// The sample stage's outputs: stats.json's pass@k, the pairing strategies, and
// sft.jsonl / pairs.jsonl read back by TextData's SFT and preference readers.

import Foundation
import JSON
import Testing
import TextData

@testable import Teacher
@testable import Verify

/// A verified sample of task `t` with text and verdict (or a failed call when `text` is nil).
func verified(_ t: Int, _ id: String, _ s: Int, _ text: String?, correct: Bool = false) -> VerifiedSample {
    let result: Result<TeacherCompletion, TeacherCallError> =
        text.map { .success(TeacherCompletion(text: $0, promptTokens: 3, completionTokens: 2, latency: 0.5)) }
        ?? .failure(TeacherCallError(kind: .timeout, message: "no response within 1 s", attempts: 2))
    return VerifiedSample(
        sample: TeacherSample(
            taskIndex: t, taskID: id, sampleIndex: s, seed: s, result: result, cached: false, requests: 1),
        verdict: text == nil ? nil : Verdict(correct: correct, reason: correct ? "ok" : "wrong"), verifier: "exact")
}

extension JSONValue {
    /// The member `key` of an object (nil otherwise), for reading rows in tests.
    subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }
}

@Suite struct SampleOutputsTests {
    let tasks = [
        TeacherTask(id: "p", prompt: .text("2+2?"), answer: "4", file: "t.jsonl", line: 1),
        TeacherTask(
            id: "m", prompt: .messages([ChatMessage(role: "user", content: "3+3?")]),
            tools: [.obj(["name": .string("calc"), "parameters": .obj(["type": .string("object")])])], answer: "6",
            file: "t.jsonl", line: 2),
        TeacherTask(id: "none", prompt: .text("1+1?"), answer: "2", file: "t.jsonl", line: 3),
    ]

    /// Task p: 3 distinct correct, 2 distinct incorrect (one twice); task m: 1 correct, 1 incorrect,
    /// 1 failed call; task "none": all incorrect.
    var samples: [VerifiedSample] {
        [
            verified(0, "p", 0, "#### 4", correct: true), verified(0, "p", 1, "#### 5"),
            verified(0, "p", 2, "four #### 4", correct: true), verified(0, "p", 3, "#### 5"),
            verified(0, "p", 4, "#### 4.0", correct: true), verified(0, "p", 5, "#### 3"),
            verified(1, "m", 0, "#### 6", correct: true), verified(1, "m", 1, "#### 7"), verified(1, "m", 2, nil),
            verified(2, "none", 0, "#### 3"), verified(2, "none", 1, "#### 3"), verified(2, "none", 2, "#### 9"),
        ]
    }

    func build(_ pairing: PairingConfig) -> SampleOutputs {
        SampleOutputs.build(
            tasks: tasks, samples: samples, teacher: "t", settings: .obj([:]), pairing: pairing, samplesPerTask: 6)
    }

    func lines(_ text: String) -> [JSONValue] {
        text.split(separator: "\n").map { try! JSONValue.parse(Array($0.utf8)) }
    }

    @Test func statsCountWhatTheSamplesSay() {
        let st = build(PairingConfig()).stats
        #expect(st.tasks == 3 && st.samples == 12 && st.completions == 11 && st.correct == 4 && st.failedCalls == 1)
        #expect(st.failures == ["timeout": 1])
        #expect(st.passRate == 4.0 / 11)
        #expect(st.tasksSolved == 2 && st.mixedPrompts == 2)
        // Distinct outputs: p 5, m 2, none 2 -> 9 / 11; distinct correct: 3 + 1 + 0 -> 4 / 11.
        #expect(st.uniqueOutputsPerSample == 9.0 / 11 && st.uniqueCorrectOutputsPerSample == 4.0 / 11)
        #expect(st.promptTokens == 33 && st.completionTokens == 22)
        // pass@1 over all three tasks: (3/6 + 1/2 + 0) / 3; pass@4 only for tasks with >= 4 answers.
        #expect(st.passAtK.map(\.k) == [1, 2, 4, 6])
        #expect(abs(st.passAtK[0].value - (0.5 + 0.5 + 0) / 3) < 1e-12 && st.passAtK[0].tasks == 3)
        #expect(st.passAtK[2].tasks == 1 && abs(st.passAtK[2].value - TaskStatistics.passAtK(n: 6, c: 3, k: 4)) < 1e-12)
        #expect(st.passAtK[3].tasks == 1 && st.passAtK[3].value == 1)
        #expect(st.sftRows == 4)
    }

    @Test func samplesCarryTheCanonicalAnswerOrNull() {
        var judged = samples
        judged[0].verdict?.canonical = "4"
        let rows = lines(
            SampleOutputs.build(
                tasks: tasks, samples: judged, teacher: "t", settings: .obj([:]), pairing: PairingConfig(),
                samplesPerTask: 6
            ).samplesJSONL)
        // Read: the verifier's form; unreadable: null; a failed call has no answer at all.
        #expect(rows[0]["canonical"] == .string("4") && rows[1]["canonical"] == JSONValue.null)
        #expect(rows[8]["canonical"] == nil && rows[8]["error"] == .string("timeout"))
    }

    @Test func pairingStrategies() {
        // all, uncapped: 3 x 2 pairs for p, 1 for m, in order.
        var pairing = PairingConfig(strategy: .all, maxPerPrompt: 100)
        var rows = lines(build(pairing).pairsJSONL)
        #expect(rows.count == 7)
        #expect(rows[0]["chosen"] == .string("#### 4") && rows[0]["rejected"] == .string("#### 5"))
        #expect(rows[1]["chosen"] == .string("#### 4") && rows[1]["rejected"] == .string("#### 3"))
        // all, capped at 4: a seeded subset of p's 6, kept in order; the seed changes the subset.
        pairing.maxPerPrompt = 4
        let capped = lines(build(pairing).pairsJSONL)
        #expect(capped.count == 5)
        let subset = { (rows: [JSONValue]) in rows.prefix(4).map { "\($0["chosen"]!)|\($0["rejected"]!)" } }
        #expect(
            Set(subset(capped)).isSubset(
                of: Set(subset(rows) + rows[4..<6].map { "\($0["chosen"]!)|\($0["rejected"]!)" })))
        #expect(lines(build(pairing).pairsJSONL) == capped, "seeded: the same subset every time")
        let seeds = Set(
            (0..<8).map { s in subset(lines(build(PairingConfig(strategy: .all, maxPerPrompt: 4, seed: s)).pairsJSONL))
            })
        #expect(seeds.count > 1)
        // random: every distinct correct answer once (up to the cap), each with some incorrect one.
        pairing = PairingConfig(strategy: .random, maxPerPrompt: 2)
        rows = lines(build(pairing).pairsJSONL)
        #expect(rows.count == 3)
        #expect(rows[0]["chosen"] == .string("#### 4") && rows[1]["chosen"] == .string("four #### 4"))
        for r in rows.prefix(2) { #expect(["#### 5", "#### 3"].map(JSONValue.string).contains(r["rejected"]!)) }
        // one: one pair per mixed prompt.
        rows = lines(build(PairingConfig(strategy: .one)).pairsJSONL)
        #expect(rows.count == 2)
        #expect(build(PairingConfig(strategy: .one)).stats.pairs == 2)
    }

    @Test func sftAndPairsParseWithTheTextDataReaders() throws {
        let out = build(PairingConfig(strategy: .all, maxPerPrompt: 100))
        let dir = try scratch("sample-outputs")
        defer { try? FileManager.default.removeItem(at: dir) }
        let sft = dir.appendingPathComponent("sft.jsonl"), pairs = dir.appendingPathComponent("pairs.jsonl")
        try out.sftJSONL.write(to: sft, atomically: true, encoding: .utf8)
        try out.pairsJSONL.write(to: pairs, atomically: true, encoding: .utf8)
        let (_, tokenizer, _) = try tinyModel()
        let examples = try SFTData.read(path: sft.path, format: SFTFormat(), tokenizer: tokenizer)
        #expect(examples.count == 4)
        // Standard row: the completion and the end-of-turn token are trained, the prompt is not.
        let standard = lines(out.sftJSONL)[0]
        #expect(standard == .obj(["prompt": .string("2+2?"), "completion": .string("#### 4")]))
        let trainedIDs = zip(examples[0].ids, examples[0].trained).filter(\.1).map(\.0)
        #expect(tokenizer.decode(trainedIDs) == "#### 4<|im_end|>")
        // Conversational row with tools: the assistant message is trained, the tools are rendered.
        let chat = lines(out.sftJSONL)[3]
        #expect(chat["completion"] == .array([.obj(["role": .string("assistant"), "content": .string("#### 6")])]))
        #expect(chat["tools"] != nil)
        let chatTrained = zip(examples[3].ids, examples[3].trained).filter(\.1).map(\.0)
        #expect(tokenizer.decode(chatTrained) == "#### 6<|im_end|>")
        #expect(tokenizer.decode(examples[3].ids).contains("# Tools"))

        let prefs = try PreferenceData.read(path: pairs.path, format: SFTFormat(), tokenizer: tokenizer)
        #expect(prefs.count == 7)
        let first = prefs[0]
        #expect(
            tokenizer.decode(zip(first.chosen.ids, first.chosen.trained).filter(\.1).map(\.0)) == "#### 4<|im_end|>")
        #expect(
            tokenizer.decode(zip(first.rejected.ids, first.rejected.trained).filter(\.1).map(\.0)) == "#### 5<|im_end|>"
        )
        // samples.jsonl: one row per sample, failures with their class, nothing else.
        let rows = lines(out.samplesJSONL)
        #expect(rows.count == 12)
        #expect(rows[8]["error"] == .string("timeout") && rows[8]["text"] == nil)
        #expect(
            rows[0]["correct"] == .bool(true) && rows[0]["latency"] == .double(0.5)
                && rows[0]["task_id"] == .string("p"))
        // The verdict's credit beside `correct` (exact: 1 or 0); a failed call has none.
        #expect(rows[0]["credit"] == .double(1) && rows[1]["credit"] == .double(0) && rows[8]["credit"] == nil)
    }
}

@Test func openaiLogprobsAreReadFromBothEndpoints() throws {
    let chat = #"""
        {"choices": [{"message": {"role": "assistant", "content": "4"}, "finish_reason": "stop",
          "logprobs": {"content": [{"token": "4", "logprob": -0.25}, {"token": "", "logprob": -1.5}]}}]}
        """#
    let completions = #"""
        {"choices": [{"text": "4", "logprobs": {"tokens": ["4"], "token_logprobs": [-0.125]}}]}
        """#
    let a = try OpenAITeacher.parse(chat, endpoint: .chat, latency: 1).get()
    #expect(a.text == "4" && a.logprobs == [-0.25, -1.5])
    let b = try OpenAITeacher.parse(completions, endpoint: .completions, latency: 1).get()
    #expect(b.logprobs == [-0.125])
    let none = try OpenAITeacher.parse(#"{"choices": [{"text": "4"}]}"#, endpoint: .completions, latency: 1).get()
    #expect(none.logprobs == nil)
}
