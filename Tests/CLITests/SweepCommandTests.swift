// `distill sweep` end to end on tiny trials: an interrupted trial resumes from its checkpoint
// and ends with the same numbers as an uninterrupted sweep; a finished sweep is skipped;
// shards split the trials and the report merges them; invalid combinations are listed.

import Foundation
import FoundationXML
import Testing

func tinySweepRecipe(runDir: String) -> String {
    let text = String(data: try! JSONEncoder().encode(tinyCorpus()), encoding: .utf8)!
    return """
        {"name": "tinysweep", "run_dir": "\(runDir)", "seed": 5, "stages": [
          {"type": "sweep", "data": {"text": \(text), "validation_fraction": 0.1},
           "tokenizer": {"train": {"vocab_size": 300}},
           "model": {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "max_position_embeddings": 64},
           "training": {"steps": 9, "batch_size": 4, "seq_len": 32, "lr": 0.01, "warmup_steps": 2,
                        "eval_every": 4, "eval_batches": 2, "checkpoint_every": 3, "log_every": 1},
           "axes": {"num_hidden_layers": [1, 2], "num_key_value_heads": [2, 3]},
           "measure": {"prefill_tokens": 8, "decode_tokens": 4, "repeats": 1}}
        ]}
        """
}

struct ResultRow: Decodable {
    var trial_id: String
    var label: String
    var best_val_loss: Double?
    var final_train_loss: Double?
    var loss_curve: [[Double]]
    var decode_tokens_per_s: Double
    var kv_cache_bytes_per_token: Int
    var non_embedding_parameters: Int
    var task_score: Double?
}

func resultRows(_ url: URL) -> [ResultRow] {
    ((try? String(contentsOf: url, encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
        try? JSONDecoder().decode(ResultRow.self, from: Data($0.utf8))
    }
}

@Suite(.serialized) struct SweepCommandTests {
    @Test func interruptedTrialsResumeAndFinishedOnesAreSkipped() throws {
        let root = try scratchDirectory("sweep")
        defer { try? FileManager.default.removeItem(at: root) }
        func recipe(_ name: String) throws -> URL {
            let url = root.appendingPathComponent("\(name).json")
            try Data(tinySweepRecipe(runDir: root.appendingPathComponent(name).path).utf8).write(to: url)
            return url
        }
        let dry = try distill(["sweep", try recipe("whole").path, "--dry-run"])
        #expect(dry.status == 0)
        #expect(dry.out.contains("invalid num_hidden_layers=1 num_key_value_heads=3: num_attention_heads (4) must be a multiple of num_key_value_heads (3)"))
        #expect(dry.out.components(separatedBy: "  seed 5").count - 1 == 2)

        let whole = try distill(["sweep", try recipe("whole").path, "--threads", "2"])
        #expect(whole.status == 0, "\(whole.err)")
        let wholeRows = resultRows(root.appendingPathComponent("whole/sweep/results.jsonl"))
        #expect(wholeRows.count == 2)
        for r in wholeRows {
            #expect(r.decode_tokens_per_s > 0 && r.best_val_loss != nil && r.loss_curve.count == 9)
            // 2 x layers x kv heads x head_dim x 4 bytes
            #expect(r.kv_cache_bytes_per_token == 2 * (r.label.hasPrefix("L1") ? 1 : 2) * 2 * 8 * 4)
        }

        // Kill the sweep while its first trial is past a committed checkpoint, then finish it.
        let killedURL = try recipe("killed")
        let p = Process()
        p.executableURL = distillBinary()
        p.arguments = ["sweep", killedURL.path, "--threads", "2"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let trials = root.appendingPathComponent("killed/sweep/trials")
        func progressedTrial() -> Bool {
            let ids = (try? FileManager.default.contentsOfDirectory(atPath: trials.path)) ?? []
            return ids.contains { lineCount(trials.appendingPathComponent("\($0)/trial.metrics.jsonl")) >= 5 }
        }
        let deadline = Date().addingTimeInterval(120)
        while p.isRunning && !progressedTrial() && Date() < deadline { usleep(2000) }
        let killed = p.isRunning
        if killed { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        #expect(killed, "the sweep finished before it could be interrupted")
        let resumed = try distill(["sweep", killedURL.path, "--threads", "2"])
        #expect(resumed.status == 0, "\(resumed.err)")
        let killedRows = resultRows(root.appendingPathComponent("killed/sweep/results.jsonl"))
        #expect(killedRows.map(\.trial_id) == wholeRows.map(\.trial_id))  // ids do not depend on the folder
        for (a, b) in zip(wholeRows, killedRows) {
            #expect(a.best_val_loss == b.best_val_loss && a.final_train_loss == b.final_train_loss)
            #expect(a.loss_curve == b.loss_curve, "\(a.label)")
        }

        // Nothing left to do: skipped, and no row appended twice.
        let again = try distill(["sweep", killedURL.path])
        #expect(again.out.contains("0 trial(s) run, 2 already finished, 2 invalid combination(s) skipped"))
        #expect(lineCount(root.appendingPathComponent("killed/sweep/results.jsonl")) == 2)
        #expect(lineCount(root.appendingPathComponent("killed/sweep/results.csv")) == 3)
    }

    @Test func shardsSplitTheTrialsAndTheReportMergesThem() throws {
        let root = try scratchDirectory("shards")
        defer { try? FileManager.default.removeItem(at: root) }
        let url = root.appendingPathComponent("r.json")
        // A task file: the pattern task accepts any completion, the exact one never matches.
        try Data(#"{"id": "any", "prompt": "Ada took", "pattern": "(?s).*"}\#n{"id": "never", "prompt": "Ben", "answer": "Q9Z"}\#n"#.utf8)
            .write(to: root.appendingPathComponent("tasks.jsonl"))
        let withTasks = tinySweepRecipe(runDir: root.appendingPathComponent("run").path)
            .replacingOccurrences(of: #""repeats": 1}"#, with: #""repeats": 1, "tasks": "tasks.jsonl", "task_max_tokens": 4}"#)
        try Data(withTasks.utf8).write(to: url)
        for i in 0..<2 {
            let r = try distill(["sweep", url.path, "--shard", "\(i)/2", "--threads", "2"])
            #expect(r.status == 0, "\(r.err)")
            #expect(r.out.contains("shard \(i)/2 done"))
        }
        let dir = root.appendingPathComponent("run/sweep")
        let a = resultRows(dir.appendingPathComponent("results.shard-0-of-2.jsonl"))
        let b = resultRows(dir.appendingPathComponent("results.shard-1-of-2.jsonl"))
        #expect(a.count == 1 && b.count == 1 && a[0].trial_id != b[0].trial_id)
        #expect(a[0].task_score == 0.5 && b[0].task_score == 0.5)
        // Slurm array variables choose the shard too: shard 1 of 2 has nothing left to do.
        let slurm = try distill(["sweep", url.path], environment: ["SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"])
        #expect(slurm.out.contains("0 trial(s) run, 1 already finished"))

        let report = try distill(["sweep", "report", dir.path, "--format", "md"])
        #expect(report.status == 0, "\(report.err)")
        #expect(report.out.contains("2 trials, 2 configurations"))
        let md = try String(contentsOf: dir.appendingPathComponent("report.md"), encoding: .utf8)
        #expect(md.contains("| 1 | L") && md.contains("| 2 | L"))
        #expect(md.contains("![Validation loss against decode speed (batch 1, KV cache)](figures/loss-vs-decode.svg)"))
        for figure in ["loss-vs-params", "loss-vs-decode", "best-curves"] {
            let svg = try Data(contentsOf: dir.appendingPathComponent("figures/\(figure).svg"))
            #expect(XMLParser(data: svg).parse(), "\(figure).svg")
        }
        let best = try distill(["run", dir.appendingPathComponent("best-recipe.json").path, "--dry-run"])
        #expect(best.status == 0, "\(best.err)")
        #expect(best.out.contains("pretrain  pretrain run"))

        let missing = try distill(["sweep", "report", root.appendingPathComponent("nope").path])
        #expect(missing.status == 74)
    }
}
