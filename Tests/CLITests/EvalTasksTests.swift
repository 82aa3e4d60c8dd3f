// `distill eval --tasks` on the tiny chat GGUF fixture and the `eval` stage with two arms (a
// pretrained model and its LoRA adapter) in a recipe: the report's shape, its numbers
// recomputed from the per-task rows (greedy accuracy, pass@1, maj@k by the vote rule), the
// Markdown table and the chart, a re-run served from the cache writing the same bytes, and
// usage mistakes exiting with 2.

import Foundation
import Testing

/// A JSON document as Foundation reads it, for looking into reports.
private func object(_ text: String) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
}

private func rows(_ url: URL) throws -> [[String: Any]] {
    try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map { try object(String($0)) }
}

private let tinyChat = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("FormatsTests/Fixtures/gguf/tiny_chat.gguf").path

/// Six tasks a random model gets right now and then: a vowel anywhere in the completion.
private func vowelTasks(_ dir: URL) throws -> URL {
    let url = dir.appendingPathComponent("tasks.jsonl")
    var lines = (0..<5).map {
        #"{"id": "p\#($0)", "prompt": "Say a word with a vowel, number \#($0):", "pattern": "[aeiou]"}"#
    }
    lines.append(#"{"id": "m0", "messages": [{"role": "user", "content": "A vowel, please."}], "pattern": "[aeiou]"}"#)
    try lines.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
    return url
}

/// Checks one arm of a report against its rows of eval.tasks.jsonl, recomputing every vote.
private func checkArm(_ arm: [String: Any], rows: [[String: Any]], k: Int, seed: Int = 0) throws {
    let metrics = try #require(arm["metrics"] as? [String: Any])
    let n = rows.count
    #expect(metrics["tasks"] as? Int == n && metrics["samples_per_task"] as? Int == k)
    #expect((arm["parameters"] as? Int ?? 0) > 0)
    func estimate(_ key: String) throws -> (value: Double, low: Double, high: Double) {
        let e = try #require(metrics[key] as? [String: Any])
        return (e["value"] as! Double, e["ci_low"] as! Double, e["ci_high"] as! Double)
    }
    let greedyCorrect = rows.filter { ($0["greedy"] as! [String: Any])["correct"] as! Bool }.count
    let greedy = try estimate("greedy_accuracy")
    #expect(abs(greedy.value - Double(greedyCorrect) / Double(n)) < 1e-12)
    #expect(greedy.low <= greedy.value && greedy.value <= greedy.high)

    var correctShare = 0.0, majRight = 0, texts = 0, valid = 0
    for row in rows {
        let samples = try #require(row["samples"] as? [[String: Any]])
        #expect(samples.count == k && samples.map { $0["seed"] as! Int } == Array(seed..<(seed + k)))
        let correct = samples.filter { $0["correct"] as! Bool }.count
        // Every sample carries its verdict's credit, 1 exactly when it is correct.
        #expect(samples.allSatisfy { s in
            (s["credit"] as? Double).map { (0...1).contains($0) && ($0 == 1) == (s["correct"] as! Bool) } ?? false
        })
        #expect(row["correct"] as? Int == correct)
        correctShare += Double(correct) / Double(k)
        texts += Set(samples.map { $0["text"] as! String }).count
        // What the verdict tables read (docs/routing.md): the prompt's tokens and the call's seconds.
        #expect(samples.allSatisfy { ($0["prompt_tokens"] as? Int ?? 0) > 0 && ($0["latency"] as? Double ?? -1) >= 0 })
        valid += samples.filter { $0["canonical"] is String }.count
        // The vote, recomputed: the most common canonical answer (null ones form a group) wins
        // alone and is right when all its samples are; a tie or a null winner is wrong.
        var groups: [String: [Bool]] = [:]
        for s in samples {
            groups[(s["canonical"] as? String) ?? "\u{0}null", default: []].append(s["correct"] as! Bool)
        }
        let top = groups.values.map(\.count).max()!
        let leaders = groups.filter { $0.value.count == top }
        let right = leaders.count == 1 && leaders.first!.key != "\u{0}null" && leaders.first!.value.allSatisfy { $0 }
        let vote = try #require(row["vote"] as? [String: Any])
        #expect(
            vote["correct"] as? Bool == right && vote["votes"] as? Int == top
                && vote["tie"] as? Bool == (leaders.count > 1))
        if right { majRight += 1 }
    }
    let passAtK = try #require(metrics["pass_at_k"] as? [[String: Any]])
    #expect(passAtK.map { $0["k"] as! Int } == [1, 2, 4].filter { $0 <= k })
    #expect(abs(passAtK[0]["value"] as! Double - correctShare / Double(n)) < 1e-12)
    let maj = try estimate("maj_at_k")
    #expect(abs(maj.value - Double(majRight) / Double(n)) < 1e-12)
    #expect(maj.low <= maj.value && maj.value <= maj.high)
    #expect(abs(metrics["unique_outputs_per_sample"] as! Double - Double(texts) / Double(n * k)) < 1e-12)
    #expect(abs(metrics["valid_answer_rate"] as! Double - Double(valid) / Double(n * k)) < 1e-12)
}

@Suite(.serialized) struct EvalTasksTests {
    @Test func logprobsReachTheRowsAndTheVerdictTable() throws {
        let root = try scratchDirectory("eval-logprobs")
        defer { try? FileManager.default.removeItem(at: root) }
        let tasks = try vowelTasks(root)
        let out = root.appendingPathComponent("out")
        let run = try distill([
            "eval", "--checkpoint", tinyChat, "--tasks", tasks.path, "--samples", "2", "--max-tokens", "4",
            "--verifier-json", #"{"type": "regex", "mode": "search"}"#, "--logprobs", "--json", "--out", out.path,
        ])
        #expect(run.status == 0, "\(run.err)")
        #expect((try object(run.out))["settings"].flatMap { ($0 as? [String: Any])?["logprobs"] as? Bool } == true)
        for row in try rows(out.appendingPathComponent("eval.tasks.jsonl")) {
            let greedy = try #require(row["greedy"] as? [String: Any])
            #expect(greedy["logprobs"] == nil, "the greedy pass keeps none")
            for sample in try #require(row["samples"] as? [[String: Any]]) {
                let lp = try #require(sample["logprobs"] as? [Double])
                #expect(lp.count == sample["tokens"] as? Int && lp.allSatisfy { $0 <= 0 })
            }
        }
        let table = root.appendingPathComponent("v.jsonl").path
        #expect(try distill(["verdicts", "build", out.path, "-o", table]).status == 0)
        let line = try String(contentsOfFile: table, encoding: .utf8).split(separator: "\n")[1]
        let sample = try #require(
            ((try object(String(line))["models"] as? [String: Any])?["tiny_chat"] as? [String: Any])?["samples"]
                as? [[String: Any]])[0]
        let mean = try #require(sample["logprob_mean"] as? Double), min = try #require(sample["logprob_min"] as? Double)
        #expect(min <= mean && mean <= 0)
        let quantiles = try ["logprob_q10", "logprob_q25", "logprob_median"].map { try #require(sample[$0] as? Double) }
        #expect(min <= quantiles[0] && quantiles[0] <= quantiles[1] && quantiles[1] <= quantiles[2] && quantiles[2] <= 0)
    }

    @Test func evalTasksReportsConsistentNumbersAndResumesFromItsCache() throws {
        let root = try scratchDirectory("eval-tasks")
        defer { try? FileManager.default.removeItem(at: root) }
        let tasks = try vowelTasks(root)
        let out = root.appendingPathComponent("out")
        let args = [
            "eval", "--checkpoint", tinyChat, "--tasks", tasks.path, "--samples", "4", "--max-tokens", "6",
            "--temperature", "1.0", "--batch-size", "5", "--verifier-json", #"{"type": "regex", "mode": "search"}"#,
            "--json", "--out", out.path,
        ]
        let first = try distill(args)
        #expect(first.status == 0, "\(first.err)")
        #expect(first.err.contains("eval step 30/30"), "progress goes to stderr with --json: \(first.err)")
        let report = try object(first.out)
        #expect(report["task_count"] as? Int == 6 && report["tasks"] as? String == tasks.path)
        let settings = try #require(report["settings"] as? [String: Any])
        #expect(
            settings["samples"] as? Int == 4 && settings["temperature"] as? Double == 1
                && settings["max_tokens"] as? Int == 6)
        #expect(settings["logprobs"] == nil, "written only when on, so older reports and fingerprints stay")
        let bootstrap = try #require(report["bootstrap"] as? [String: Any])
        #expect(bootstrap["resamples"] as? Int == 2000 && bootstrap["level"] as? Double == 0.95)
        let arms = try #require(report["arms"] as? [[String: Any]])
        #expect(arms.count == 1 && arms[0]["name"] as? String == "tiny_chat")
        #expect((arms[0]["checksum"] as? String)?.hasPrefix("xxh64:") == true)
        let taskRows = try rows(out.appendingPathComponent("eval.tasks.jsonl"))
        #expect(taskRows.map { $0["task_id"] as! String } == ["p0", "p1", "p2", "p3", "p4", "m0"])
        try checkArm(arms[0], rows: taskRows, k: 4)
        // A random model: some samples carry a vowel and some do not, so the numbers are not trivial.
        let pass1 = ((arms[0]["metrics"] as! [String: Any])["pass_at_k"] as! [[String: Any]])[0]["value"] as! Double
        #expect(pass1 > 0 && pass1 < 1, "pass@1 \(pass1)")

        // The files: the report as printed, a table row for the arm, a chart with its bars.
        let saved = try String(contentsOf: out.appendingPathComponent("eval.json"), encoding: .utf8)
        #expect(saved == first.out)
        let markdown = try String(contentsOf: out.appendingPathComponent("eval.md"), encoding: .utf8)
        #expect(markdown.contains("| arm | greedy | pass@1 | pass@4 | maj@4 |") && markdown.contains("| tiny_chat | "))
        #expect(markdown.contains("![Accuracy by arm](eval.svg)"))
        let svg = try String(contentsOf: out.appendingPathComponent("eval.svg"), encoding: .utf8)
        #expect(
            svg.hasPrefix("<svg") && svg.contains(">maj@4</text>")
                && svg.components(separatedBy: "<rect").count >= 1 + 1 + 3 + 3)

        // Again: every completion from the cache, the same bytes.
        let rowsBefore = try String(contentsOf: out.appendingPathComponent("eval.tasks.jsonl"), encoding: .utf8)
        let second = try distill(args)
        #expect(second.status == 0 && second.out == first.out)
        #expect(try String(contentsOf: out.appendingPathComponent("eval.tasks.jsonl"), encoding: .utf8) == rowsBefore)

        // Greedy only, printed as the table.
        let greedy = try distill([
            "eval", "--checkpoint", tinyChat, "--tasks", tasks.path, "--samples", "0", "--max-tokens", "4",
        ])
        #expect(greedy.status == 0, "\(greedy.err)")
        #expect(greedy.out.contains("| arm | greedy | tokens / task |") && greedy.out.contains("tiny_chat: greedy "))
    }

    @Test func usageMistakesExitWithTwo() throws {
        let root = try scratchDirectory("eval-usage")
        defer { try? FileManager.default.removeItem(at: root) }
        let tasks = try vowelTasks(root).path
        for (arguments, message) in [
            (["--tasks", tasks, "--text", tasks], "give exactly one of --text FILE, --data FILE.jsonl or --tasks"),
            (["--tasks", tasks, "--samples", "1001"], "--samples must be within 0...1000, got 1001"),
            (["--tasks", tasks, "--temperature", "0"], "--temperature must be > 0"),
            (["--tasks", tasks, "--seq-len", "8"], "--seq-len is for --text or --data, not --tasks"),
            (["--text", tasks, "--samples", "2"], "--samples is for --tasks"),
            (["--tasks", tasks, "--verifier-json", #"{"type": "exact", "extrct": "gsm8k"}"#], "--verifier-json"),
            (["--tasks", tasks, "--adapter", "a.h5", "--base", "b.h5"], "not both"),
        ] {
            let r = try distill(["eval", "--checkpoint", tinyChat] + arguments)
            #expect(r.status == 2, "\(arguments): \(r.err)")
            #expect(r.err.contains(message), "\(arguments): \(r.err)")
        }
        // A task the verifier cannot check is named before anything is generated (exit 65).
        let bad = root.appendingPathComponent("bad.jsonl")
        try #"{"id": "x", "prompt": "p", "pattern": "a"}"#.write(to: bad, atomically: true, encoding: .utf8)
        let r = try distill([
            "eval", "--checkpoint", tinyChat, "--tasks", bad.path, "--verifier-json", #"{"type": "exact"}"#,
        ])
        #expect(r.status == 65 && r.err.contains("task \"x\" has no \"answer\""), "\(r.err)")
    }

    /// A recipe whose eval stage compares the pretrained model and its SFT adapter: two arms in
    /// one table; a finished stage is skipped; a forced re-run takes everything from the cache.
    @Test func anEvalStageComparesArmsInOneTable() throws {
        let root = try scratchDirectory("eval-arms")
        defer { try? FileManager.default.removeItem(at: root) }
        _ = try vowelTasks(root)
        var sft = ""
        for i in 0..<16 {
            sft += #"{"prompt": "Say a word with a vowel, number \#(i):", "completion": " apple"}"# + "\n"
        }
        try sft.write(to: root.appendingPathComponent("sft.jsonl"), atomically: true, encoding: .utf8)
        let text = String(data: try JSONEncoder().encode(tinyCorpus()), encoding: .utf8)!
        let recipe = root.appendingPathComponent("r.json")
        try """
        {"name": "arms", "run_dir": "\(root.appendingPathComponent("run").path)", "seed": 3, "stages": [
          {"type": "pretrain", "data": {"text": \(text)},
           "tokenizer": {"train": {"vocab_size": 300, "special_tokens": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]}},
           "model": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "num_key_value_heads": 2, "max_position_embeddings": 64},
           "training": {"steps": 4, "batch_size": 4, "seq_len": 32, "eval_every": 0, "checkpoint_every": 0}},
          {"type": "sft", "data": {"train": "sft.jsonl", "validation_fraction": 0}, "lora": {"r": 4, "alpha": 8},
           "training": {"steps": 6, "batch_size": 4, "seq_len": 32, "lr": 0.05, "eval_every": 0, "checkpoint_every": 0}},
          {"type": "eval", "tasks": "tasks.jsonl", "arms": [{"name": "base", "model": "@pretrain"}, {"model": "@sft"}],
           "samples": 2, "max_tokens": 5, "temperature": 1.0, "verifier": {"type": "regex", "mode": "search"},
           "baseline": "base"}
        ]}
        """.write(to: recipe, atomically: true, encoding: .utf8)
        let first = try distill(["run", recipe.path])
        #expect(first.status == 0, "\(first.err)")
        #expect(first.out.contains("base: greedy ") && first.out.contains("sft: greedy "), "\(first.out)")
        let run = root.appendingPathComponent("run")
        let report = try object(try String(contentsOf: run.appendingPathComponent("eval.json"), encoding: .utf8))
        let arms = try #require(report["arms"] as? [[String: Any]])
        #expect(
            arms.map { $0["name"] as! String } == ["base", "sft"]
                && arms.map { $0["model"] as! String } == ["@pretrain", "@sft"])
        #expect(arms[0]["checksum"] as? String != arms[1]["checksum"] as? String, "the adapter changes the model")
        let all = try rows(run.appendingPathComponent("eval.tasks.jsonl"))
        #expect(all.count == 12)
        for (i, arm) in arms.enumerated() {
            try checkArm(arm, rows: all.filter { $0["arm"] as? String == arm["name"] as? String }, k: 2, seed: 3)
            #expect(all[i * 6]["arm"] as? String == arm["name"] as? String)
        }
        // The paired difference from the baseline arm, recomputed from the rows.
        let paired = try #require(report["paired"] as? [[String: Any]])
        #expect(paired.count == 1 && paired[0]["arm"] as? String == "sft" && paired[0]["baseline"] as? String == "base")
        func byTask(_ arm: String) -> [String: (greedy: Double, share: Double)] {
            Dictionary(
                uniqueKeysWithValues: all.filter { $0["arm"] as? String == arm }.map { row in
                    let greedy = (row["greedy"] as? [String: Any])?["correct"] as? Bool == true ? 1.0 : 0.0
                    return (row["task_id"] as! String, (greedy, Double(row["correct"] as! Int) / 2))
                })
        }
        let base = byTask("base"), tuned = byTask("sft")
        let greedyDiff = tuned.map { $1.greedy - base[$0]!.greedy }
        let shareDiff = tuned.map { $1.share - base[$0]!.share }
        let g = try #require(paired[0]["greedy"] as? [String: Any]), p1 = try #require(paired[0]["pass_at_1"] as? [String: Any])
        #expect(abs((g["value"] as! Double) - greedyDiff.reduce(0, +) / 6) < 1e-12)
        #expect(abs((p1["value"] as! Double) - shareDiff.reduce(0, +) / 6) < 1e-12)
        #expect((g["ci_low"] as! Double) <= (g["value"] as! Double) && (g["value"] as! Double) <= (g["ci_high"] as! Double))
        #expect(paired[0]["gained"] as? Int == greedyDiff.filter { $0 > 0 }.count)
        #expect(paired[0]["lost"] as? Int == greedyDiff.filter { $0 < 0 }.count)
        let markdown = try String(contentsOf: run.appendingPathComponent("eval.md"), encoding: .utf8)
        #expect(markdown.contains("| base | ") && markdown.contains("| sft | "))
        #expect(markdown.contains("| arm | greedy minus base's | pass@1 minus base's | gained | lost |"), "\(markdown)")
        let svg = try String(contentsOf: run.appendingPathComponent("eval.svg"), encoding: .utf8)
        #expect(svg.contains(">base</text>") && svg.contains(">sft</text>"))

        let again = try distill(["run", recipe.path])
        #expect(again.status == 0 && again.out.contains("skip   eval: finished, unchanged"), "\(again.out)")
        let files = ["eval.json", "eval.md", "eval.svg", "eval.tasks.jsonl"]
        let before = try files.map { try String(contentsOf: run.appendingPathComponent($0), encoding: .utf8) }
        try FileManager.default.removeItem(at: run.appendingPathComponent("run.json"))
        let forced = try distill(["run", recipe.path])
        #expect(forced.status == 0)
        #expect(try files.map { try String(contentsOf: run.appendingPathComponent($0), encoding: .utf8) } == before)
        let state = try String(contentsOf: run.appendingPathComponent("run.json"), encoding: .utf8)
        // 2 arms x 6 tasks x (1 greedy + 2 samples), all from the cache.
        #expect(state.contains("\"cache_hits\":36") || state.contains("\"cache_hits\" : 36"), "\(state)")
    }
}
