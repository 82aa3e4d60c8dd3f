// The checkpoint teacher (a tiny random model run by the built-in engine) and the command
// teacher (a program reading the prompt on stdin): per-sample seeds independent of batching,
// log-probabilities against a full forward pass, stop strings, the cache, and the command
// teacher's failures, timeout and refusal to interpret task text.

import Core
import Foundation
import JSON
import NN
import Platform
import Testing
import TextData
import Verify

@testable import Teacher

/// A tokenizer with ChatML's tokens and a random 1-layer model over it.
func tinyModel(seed: UInt64 = 3) throws -> (LlamaModel, ByteLevelBPETokenizer, String) {
    let corpus = (0..<60).map {
        "Q: What is \($0) plus \($0 % 7)?\nA: \($0) + \($0 % 7) = \($0 + $0 % 7). #### \($0 + $0 % 7)"
    }
    let tokenizer = try BPETrainer(
        .init(vocabSize: 300, specialTokens: ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], style: .gpt2)
    ).train(texts: corpus)
    var rng = RNG(seed: seed)
    let config = LlamaConfig(
        vocabSize: tokenizer.vocabSize, hiddenSize: 16, intermediateSize: 32, numHiddenLayers: 1, numAttentionHeads: 2,
        numKeyValueHeads: 1, maxPositionEmbeddings: 128, initializerRange: 0.5, eosTokenId: 0)
    let model = LlamaModel(config: config, rng: &rng)
    return (model, tokenizer, String(decoding: tokenizer.jsonData(), as: UTF8.self))
}

func scratch(_ tag: String) throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distill-\(tag)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}

func task(_ id: String, _ prompt: String, answer: String = "1") -> TeacherTask {
    TeacherTask(id: id, prompt: .text(prompt), answer: answer, file: "tasks.jsonl", line: 1)
}

@Suite struct CheckpointTeacherTests {
    let tasks = [
        task("a", "Q: What is 3 plus 3?\nA:"), task("b", "Q: What is 12 plus 5?\nA:"),
        TeacherTask(
            id: "c", prompt: .messages([ChatMessage(role: "user", content: "What is 4 plus 4?")]), answer: "8",
            file: "tasks.jsonl", line: 3),
    ]

    func teacher(_ config: CheckpointTeacherConfig, cache: CallCache) throws -> CheckpointTeacher {
        let (model, tokenizer, json) = try tinyModel()
        return try CheckpointTeacher(
            config: config, model: model, tokenizer: tokenizer, tokenizerJSON: json, endOfText: 0, cache: cache)
    }

    /// Batches of 1 prefill every sample alone; batches of 5 and 12 share the prefill of a
    /// task's samples: the texts are the same.
    @Test func samplesDependOnPromptAndSeedNotOnTheBatch() throws {
        let dir = try scratch("ckpt-teacher")
        defer { try? FileManager.default.removeItem(at: dir) }
        var config = CheckpointTeacherConfig(checkpoint: "x.h5")
        config.samples = 4
        config.temperature = 1.0
        config.maxTokens = 12
        var results: [[String]] = []
        for batch in [1, 5, 12] {
            config.batchSize = batch
            let t = try teacher(config, cache: try CallCache(path: dir.appendingPathComponent("b\(batch).sqlite").path))
            let samples = try t.sampleSync(tasks)
            #expect(samples.map(\.taskID) == ["a", "a", "a", "a", "b", "b", "b", "b", "c", "c", "c", "c"])
            #expect(samples.map(\.seed) == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3])
            results.append(samples.map { try! $0.result.get().text })
            #expect(t.counters.requests == 12 && t.counters.cacheHits == 0)
        }
        #expect(results[0] == results[1] && results[1] == results[2])
        // Distinct seeds give distinct samples (a random model at temperature 1 over 300 tokens).
        #expect(Set(results[0][0..<4]).count > 1)
    }

    @Test func aSecondRunComesFromTheCacheAndPartialBatchesRegenerateWhole() throws {
        let dir = try scratch("ckpt-cache")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("calls.sqlite").path
        var config = CheckpointTeacherConfig(checkpoint: "x.h5")
        config.samples = 3
        config.batchSize = 4
        config.maxTokens = 8
        let first = try teacher(config, cache: try CallCache(path: path)).sampleSync(tasks)
        let again = try teacher(config, cache: try CallCache(path: path))
        let second = try again.sampleSync(tasks)
        #expect(again.counters.requests == 0 && again.counters.cacheHits == 9)
        #expect(second.allSatisfy { $0.cached })
        #expect(first.map { try! $0.result.get() } == second.map { try! $0.result.get() })
        // More samples: the old ones are hits, only the new seeds are generated.
        config.samples = 4
        let more = try teacher(config, cache: try CallCache(path: path))
        let third = try more.sampleSync(tasks)
        #expect(more.counters.cacheHits == 9 && more.counters.requests == 3)
        #expect(
            third.filter { $0.sampleIndex < 3 }.map { try! $0.result.get().text }
                == first.map { try! $0.result.get().text })
        // A changed setting is another key.
        config.temperature = 0.5
        let other = try teacher(config, cache: try CallCache(path: path))
        _ = try other.sampleSync(tasks)
        #expect(other.counters.cacheHits == 0)
    }

    @Test func logprobsEqualAFullForwardPassAndStopStringsCut() throws {
        let dir = try scratch("ckpt-logprobs")
        defer { try? FileManager.default.removeItem(at: dir) }
        var config = CheckpointTeacherConfig(checkpoint: "x.h5")
        config.samples = 2
        config.maxTokens = 10
        config.logprobs = true
        config.temperature = 0.9
        config.topK = 20
        let (model, tokenizer, json) = try tinyModel()
        let t = try CheckpointTeacher(
            config: config, model: model, tokenizer: tokenizer, tokenizerJSON: json, endOfText: 0,
            cache: try CallCache(path: dir.appendingPathComponent("c.sqlite").path))
        for sample in try t.sampleSync(Array(tasks.prefix(2))) {
            let c = try sample.result.get()
            let lp = try #require(c.logprobs)
            #expect(lp.count == c.completionTokens)
            // Reference: the prompt and the sampled ids (re-encoded from the cache is not
            // possible for text, so regenerate the ids by re-running the same row alone).
            let prompt = tokenizer.encode(
                tasks[sample.taskIndex].prompt.chatMessages[0].content, addSpecialTokens: true)
            let seed = XXH64.hash(
                Array(tasks[sample.taskIndex].prompt.chatMessages[0].content.utf8), seed: UInt64(sample.seed))
            let (ids, _) = model.generateWithLogProbs(
                prompts: [prompt], sampling: SamplingConfig(maxTokens: 10, temperature: 0.9, topK: 20, stopTokens: [0]),
                rowSeeds: [seed], logProbs: false)
            #expect(ids[0].count == lp.count)
            let all = prompt + ids[0]
            let logits = GradMode.withoutGrad { model.logits(ids: all, batch: 1, length: all.count) }
            let v = model.config.vocabSize
            for (i, token) in ids[0].enumerated() {
                let row = Array(logits.values[((prompt.count - 1 + i) * v)..<((prompt.count + i) * v)]).map(Double.init)
                let top = row.max()!
                let reference = row[Int(token)] - top - Foundation.log(row.reduce(0) { $0 + Foundation.exp($1 - top) })
                #expect(abs(reference - lp[i]) < 1e-4, "token \(i): \(lp[i]) vs full forward \(reference)")
            }
        }
        // Stop strings: generation is cut before the first one, and finish_reason says stop.
        config.logprobs = false
        config.maxTokens = 40
        let plain = try CheckpointTeacher(
            config: config, model: model, tokenizer: tokenizer, tokenizerJSON: json, endOfText: 0,
            cache: try CallCache(path: dir.appendingPathComponent("d.sqlite").path))
        let texts = try plain.sampleSync(Array(tasks.prefix(2))).map { try $0.result.get().text }
        let stop = try #require(texts.first { $0.count > 3 }.map { String($0.dropFirst(2).prefix(1)) })
        config.stop = [stop]
        let cut = try CheckpointTeacher(
            config: config, model: model, tokenizer: tokenizer, tokenizerJSON: json, endOfText: 0,
            cache: try CallCache(path: dir.appendingPathComponent("e.sqlite").path))
        for s in try cut.sampleSync(Array(tasks.prefix(2))) {
            let c = try s.result.get()
            #expect(!c.text.contains(stop))
            let full = texts[s.taskIndex * 2 + s.sampleIndex]
            #expect(full.hasPrefix(c.text))
            if full.contains(stop) { #expect(c.finishReason == "stop") }
        }
    }

    @Test func theChecksumFollowsTheWeightsAndChatTasksNeedTheTemplateTokens() throws {
        let (a, tok, json) = try tinyModel(seed: 3)
        let (b, _, _) = try tinyModel(seed: 3)
        let (c, _, _) = try tinyModel(seed: 4)
        #expect(
            CheckpointTeacher.checksum(a, tokenizerJSON: json) == CheckpointTeacher.checksum(b, tokenizerJSON: json))
        #expect(
            CheckpointTeacher.checksum(a, tokenizerJSON: json) != CheckpointTeacher.checksum(c, tokenizerJSON: json))
        b.namedParameters()[0].1.data[0] += 1e-3
        #expect(
            CheckpointTeacher.checksum(a, tokenizerJSON: json) != CheckpointTeacher.checksum(b, tokenizerJSON: json))
        // An adapter is part of the model (its cached samples are not the base's); disabled, it is not.
        let (d, _, _) = try tinyModel(seed: 3)
        var rng = RNG(seed: 1)
        let adapters = d.addLoRA(LoRAConfig(rank: 2, alpha: 4), rng: &rng)
        adapters[1].1.data[0] = 0.5  // B starts at zero; a trained adapter's is not
        let base = CheckpointTeacher.checksum(a, tokenizerJSON: json)
        #expect(CheckpointTeacher.checksum(d, tokenizerJSON: json) != base)
        d.setAdapters(enabled: false)
        #expect(CheckpointTeacher.checksum(d, tokenizerJSON: json) == base)

        let dir = try scratch("ckpt-template")
        defer { try? FileManager.default.removeItem(at: dir) }
        var config = CheckpointTeacherConfig(checkpoint: "x.h5")
        config.template = .llama3
        let t = try CheckpointTeacher(
            config: config, model: a, tokenizer: tok, tokenizerJSON: json, endOfText: 0,
            cache: try CallCache(path: dir.appendingPathComponent("c.sqlite").path))
        #expect(throws: DataError.self) { try t.validate(tasks) }
        try t.validate(Array(tasks.prefix(2)))  // plain prompts need no template
        config.batchSize = 0
        #expect(throws: DataError.self) {
            try CheckpointTeacher(
                config: config, model: a, tokenizer: tok, tokenizerJSON: json, endOfText: 0,
                cache: try CallCache(path: dir.appendingPathComponent("c.sqlite").path))
        }
    }
}

@Suite struct CommandTeacherTests {
    /// A teacher program (ours, not task text): echoes the seed and the prompt reversed, logs
    /// each run to RUNS, fails when the prompt contains FAIL, sleeps when it contains SLOW.
    static let program = """
        import os, sys, time
        prompt = sys.stdin.read()
        with open(os.environ["RUNS"], "a") as f: f.write("run\\n")
        if "FAIL" in prompt:
            print("something broke", file=sys.stderr); print("on line 3", file=sys.stderr); sys.exit(3)
        if "SLOW" in prompt: time.sleep(30)
        print("seed=" + os.environ["DISTILL_SEED"] + " " + prompt[::-1])
        """

    func setUp() throws -> (URL, CommandTeacherConfig) {
        let dir = try scratch("cmd-teacher")
        try Self.program.write(to: dir.appendingPathComponent("teacher.py"), atomically: true, encoding: .utf8)
        var config = CommandTeacherConfig(command: [
            "env", "RUNS=\(dir.path)/runs.txt", "python3", "\(dir.path)/teacher.py",
        ])
        config.samples = 2
        config.seed = 5
        config.timeoutSeconds = 20  // python3 starts slowly on a loaded machine
        return (dir, config)
    }

    func runs(_ dir: URL) -> Int {
        ((try? String(contentsOf: dir.appendingPathComponent("runs.txt"), encoding: .utf8)) ?? "").split(
            separator: "\n"
        ).count
    }

    @Test func promptsGoToStdinUninterpretedAndResultsAreCached() async throws {
        let (dir, config) = try setUp()
        defer { try? FileManager.default.removeItem(at: dir) }
        let marker = dir.appendingPathComponent("pwned").path
        let hostile = "$(touch \(marker)); `touch \(marker)` && touch \(marker) 'quoted' \"x\""
        let tasks = [task("plain", "abc"), task("hostile", hostile)]
        let cachePath = dir.appendingPathComponent("calls.sqlite").path
        let teacher = try CommandTeacher(config: config, cache: try CallCache(path: cachePath))
        let samples = try await teacher.sample(tasks)
        #expect(
            samples.map { try! $0.result.get().text } == [
                "seed=5 cba", "seed=6 cba", "seed=5 " + String(hostile.reversed()),
                "seed=6 " + String(hostile.reversed()),
            ])
        #expect(!FileManager.default.fileExists(atPath: marker), "task text was interpreted by a shell")
        #expect(runs(dir) == 4)
        let again = try CommandTeacher(config: config, cache: try CallCache(path: cachePath))
        let second = try await again.sample(tasks)
        #expect(runs(dir) == 4 && again.counters.cacheHits == 4)
        #expect(second.map { try! $0.result.get().text } == samples.map { try! $0.result.get().text })
    }

    @Test func failuresAreClassifiedWithStderrAndNeverCached() async throws {
        let (dir, base) = try setUp()
        defer { try? FileManager.default.removeItem(at: dir) }
        var config = base
        config.samples = 1
        config.maxAttempts = 2
        config.timeoutSeconds = 12  // well above python3's start on a loaded machine, well below SLOW's 30 s
        let cachePath = dir.appendingPathComponent("calls.sqlite").path
        let teacher = try CommandTeacher(config: config, cache: try CallCache(path: cachePath))
        let samples = try await teacher.sample([task("f", "please FAIL"), task("s", "SLOW one"), task("ok", "x")])
        guard case .failure(let fail) = samples[0].result, case .failure(let slow) = samples[1].result else {
            Issue.record("expected failures, got \(samples.map(\.result))")
            return
        }
        #expect(fail.kind == .exitStatus && fail.attempts == 2)
        #expect(fail.message.contains("exited 3") && fail.message.contains("something broke | on line 3"))
        #expect(slow.kind == .timeout && slow.message.contains("no output within 12 s"))
        #expect(try samples[2].result.get().text == "seed=5 x")
        #expect(teacher.counters.failures == [.exitStatus: 1, .timeout: 1] && teacher.counters.retries == 2)
        #expect(try CallCache(path: cachePath).count() == 1)

        var missing = base
        missing.command = ["distill-no-such-program"]
        let none = try await CommandTeacher(config: missing, cache: try CallCache(path: cachePath)).sample([
            task("m", "x")
        ])
        guard case .failure(let e) = none[0].result else {
            Issue.record("a missing program succeeded")
            return
        }
        #expect(e.kind == .exitStatus && e.message.contains("not found on PATH"))
    }
}
