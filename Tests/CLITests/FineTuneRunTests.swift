// `distill run` with the fine-tuning stages on a tiny model: sft (LoRA), dpo continuing the
// adapter, kd from the pretrained teacher; the DPO reference and KD top-k caches reused and
// invalidated; a teacher with another tokenizer refused; an SFT run killed with SIGKILL
// resuming bit for bit.

import Core
import Foundation
import JSON
import ModelIO
import NN
import Platform
import Testing

/// Arithmetic rows in TRL's forms, deterministic.
private func arithmeticRows(seed: UInt64, count: Int) -> (sft: String, pairs: String) {
    var rng = RNG(seed: seed)
    var sft = "", pairs = ""
    for i in 0..<count {
        let a = Int(rng.next() % 20), b = Int(rng.next() % 20)
        let q = "What is \(a) + \(b)?", good = "\(a) + \(b) = \(a + b).", bad = "\(a) + \(b) = \(a + b + 1 + i % 3)."
        if i % 3 == 2 {
            sft += #"{"prompt": "\#(q)", "completion": " \#(good)"}"# + "\n"
        } else {
            sft += #"{"messages": [{"role": "user", "content": "\#(q)"}, {"role": "assistant", "content": "\#(good)"}]}"# + "\n"
        }
        pairs += #"{"prompt": [{"role": "user", "content": "\#(q)"}], "chosen": [{"role": "assistant", "content": "\#(good)"}], "rejected": [{"role": "assistant", "content": "\#(bad)"}]}"# + "\n"
    }
    return (sft, pairs)
}

private func pretrainStage(name: String = "pretrain", vocab: Int = 300, steps: Int = 4) -> String {
    let text = String(data: try! JSONEncoder().encode(tinyCorpus()), encoding: .utf8)!
    return """
        {"type": "pretrain", "name": "\(name)", "data": {"text": \(text)}, "output": "\(name).h5",
         "tokenizer": {"train": {"vocab_size": \(vocab), "special_tokens": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]}},
         "model": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "max_position_embeddings": 64},
         "training": {"steps": \(steps), "batch_size": 4, "seq_len": 32, "lr": 0.01, "warmup_steps": 1, "eval_every": 0,
                      "checkpoint_every": 0}}
        """
}

private func loop(steps: Int) -> String {
    """
    {"steps": \(steps), "batch_size": 4, "seq_len": 48, "lr": 0.01, "eval_every": 4, "eval_batches": 2,
     "checkpoint_every": 2, "log_every": 1}
    """
}

/// pretrain, sft (LoRA with dropout, on a base held as `baseWeights` when given), then unless
/// `sftOnly` dpo (continuing the adapter, on the same base) and kd (full, top-k teacher).
private func fineTuneRecipe(
    _ root: URL, name: String, sftSteps: Int = 6, sftOnly: Bool = false, baseWeights: String? = nil
) throws -> URL {
    let rows = arithmeticRows(seed: 5, count: 32)
    try Data(rows.sft.utf8).write(to: root.appendingPathComponent("sft.jsonl"))
    if !FileManager.default.fileExists(atPath: root.appendingPathComponent("pairs.jsonl").path) {
        try Data(rows.pairs.utf8).write(to: root.appendingPathComponent("pairs.jsonl"))
    }
    let lora = #"{"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj", "v_proj", "down_proj"]}"#
    var stages = [
        pretrainStage(),
        """
        {"type": "sft", "data": {"train": "sft.jsonl", "validation_fraction": 0.1}, "lora": \(lora), "training": \(loop(steps: sftSteps))\(baseWeights.map { #", "base_weights": "\#($0)""# } ?? "")}
        """,
    ]
    if !sftOnly {
        stages += [
            """
            {"type": "dpo", "data": {"train": "pairs.jsonl"}, "lora": \(lora), "beta": 0.5, "training": \(loop(steps: 3))\(baseWeights.map { #", "base_weights": "\#($0)""# } ?? "")}
            """,
            """
            {"type": "kd", "model": "@sft", "teacher": "@pretrain", "data": {"train": "sft.jsonl"}, "top_k": 4, "alpha": 0.5,
             "training": \(loop(steps: 3))}
            """,
        ]
    }
    let recipe = """
        {"name": "\(name)", "run_dir": "\(root.appendingPathComponent(name).path)", "seed": 3,
         "stages": [\(stages.joined(separator: ",\n"))]}
        """
    let url = root.appendingPathComponent("\(name).json")
    try Data(recipe.utf8).write(to: url)
    return url
}

/// The stage summaries in run.json.
private func summaries(_ runDir: URL) throws -> [String: [String: Any]] {
    let data = try Data(contentsOf: runDir.appendingPathComponent("run.json"))
    let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    let stages = try #require(root["stages"] as? [String: [String: Any]])
    return stages.compactMapValues { ($0["outputs"] as? [String: Any])?["summary"] as? [String: Any] }
}

private func runToEnd(_ recipe: URL, _ overrides: [String] = []) throws -> (status: Int32, out: String, err: String) {
    try distill(["run", recipe.path] + overrides.flatMap { ["--set", $0] }, environment: ["DISTILL_THREADS": "2"])
}

@Suite(.serialized) struct FineTuneRunTests {
    @Test func stagesRunAndCachesAreReusedUntilTheDataChanges() throws {
        let root = try scratchDirectory("finetune")
        defer { try? FileManager.default.removeItem(at: root) }
        let recipe = try fineTuneRecipe(root, name: "ft")
        let runDir = root.appendingPathComponent("ft")
        let first = try runToEnd(recipe)
        #expect(first.status == 0, "\(first.err)")

        // Adapter checkpoints hold the adapters and their moments only and name the base.
        let base = try readCheckpoint(at: runDir.appendingPathComponent("pretrain.h5"))
        for stage in ["sft", "dpo"] {
            let c = try readCheckpoint(at: runDir.appendingPathComponent("\(stage).h5"))
            #expect(c.kind == .adapter && c.parameters.count == 2 * 2 * 3, "\(stage)")
            #expect(c.parameters.allSatisfy { $0.name.contains(".lora_A.") || $0.name.contains(".lora_B.") })
            #expect(c.optimizer?.moments["m"]?.map(\.name) == c.parameters.map(\.name))
            #expect(c.baseChecksum?.hasPrefix("xxh64:") == true && c.metadata["lora"] != nil)
            #expect(c.rng.keys.sorted().first?.hasPrefix("lora.") == true, "dropout streams are committed")
        }
        let kd = try readCheckpoint(at: runDir.appendingPathComponent("kd.h5"))
        #expect(kd.kind == .model && kd.parameters.count == base.parameters.count)

        // Metrics under TRL's names, every step and every evaluation.
        let dpoLog = try String(contentsOf: runDir.appendingPathComponent("dpo.metrics.jsonl"), encoding: .utf8)
        let lines = dpoLog.split(separator: "\n")
        #expect(lines.count == 3 + 1)
        for key in ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"] {
            #expect(lines[0].contains("\"\(key)\""), "\(key) in \(lines[0])")
        }
        #expect(lines[3].contains("\"val_rewards/accuracies\""))
        var s = try summaries(runDir)
        #expect(s["dpo"]?["reference"] as? String == "computed" && s["kd"]?["teacher_top_k"] as? String == "computed")
        let cache = runDir.appendingPathComponent("cache")
        func files(_ prefix: String) throws -> [String] {
            try FileManager.default.contentsOfDirectory(atPath: cache.path).filter { $0.hasPrefix(prefix) }.sorted()
        }
        let referenceFile = cache.appendingPathComponent(try #require(try files("reference-").first))
        let stamp = try FileManager.default.attributesOfItem(atPath: referenceFile.path)[.modificationDate] as? Date

        // New loss settings: dpo and kd re-run from the cached reference and top-k (untouched).
        let second = try runToEnd(recipe, ["dpo.beta=0.2", "dpo.loss=ipo", "kd.alpha=0.9"])
        #expect(second.status == 0, "\(second.err)")
        s = try summaries(runDir)
        #expect(s["dpo"]?["reference"] as? String == "cached" && s["kd"]?["teacher_top_k"] as? String == "cached")
        #expect(try FileManager.default.attributesOfItem(atPath: referenceFile.path)[.modificationDate] as? Date == stamp)
        #expect(try files("reference-").count == 1 && files("teacher-topk-").count == 1)

        // Changed pairs: the reference is computed again under a new key.
        var pairs = try String(contentsOf: root.appendingPathComponent("pairs.jsonl"), encoding: .utf8)
        pairs = pairs.replacingOccurrences(of: "What is", with: "Tell me", options: [], range: pairs.range(of: "What is"))
        try Data(pairs.utf8).write(to: root.appendingPathComponent("pairs.jsonl"))
        let third = try runToEnd(recipe, ["dpo.beta=0.2", "dpo.loss=ipo", "kd.alpha=0.9"])
        #expect(third.status == 0, "\(third.err)")
        s = try summaries(runDir)
        #expect(s["dpo"]?["reference"] as? String == "computed")
        #expect(try files("reference-").count == 2)
    }

    @Test func kdRefusesATeacherWithAnotherTokenizer() throws {
        let root = try scratchDirectory("kd-tokenizer")
        defer { try? FileManager.default.removeItem(at: root) }
        try Data(arithmeticRows(seed: 1, count: 8).sft.utf8).write(to: root.appendingPathComponent("sft.jsonl"))
        let recipe = """
            {"name": "kdtok", "run_dir": "\(root.appendingPathComponent("run").path)", "stages": [
              \(pretrainStage(name: "student", vocab: 300, steps: 2)),
              \(pretrainStage(name: "teacher", vocab: 310, steps: 2)),
              {"type": "kd", "model": "@student", "teacher": "@teacher", "data": {"train": "sft.jsonl"}, "training": {"steps": 1, "seq_len": 32}}
            ]}
            """
        let url = root.appendingPathComponent("kd.json")
        try Data(recipe.utf8).write(to: url)
        let r = try runToEnd(url)
        #expect(r.status == 2)
        #expect(r.err.contains("teacher.h5") && r.err.contains("tokenizer differs from the student's"), "\(r.err)")
        #expect(r.err.contains("cross-tokenizer distillation is not supported"))
    }

    /// QLoRA: an SFT stage on a Q8_0 base starts from nearly the f32 run's loss, trains
    /// different adapters, and writes an adapter bound to the f32 base (it loads onto it and
    /// exports to PEFT like any other); DPO continues it on the packed base from about log 2,
    /// still bound to the f32 base. base_weights without lora is refused (exit 2).
    @Test func qloraAdapterBindsToTheF32Base() throws {
        let root = try scratchDirectory("qlora")
        defer { try? FileManager.default.removeItem(at: root) }
        for (name, weights) in [("f32", nil), ("q8", "q8_0")] {
            let r = try runToEnd(try fineTuneRecipe(root, name: name, sftSteps: 4, sftOnly: weights == nil, baseWeights: weights))
            #expect(r.status == 0, "\(r.err)")
        }
        let dpo = try String(contentsOf: root.appendingPathComponent("q8/dpo.metrics.jsonl"), encoding: .utf8).split(separator: "\n")[0]
        let dpoStep = try #require(try JSONSerialization.jsonObject(with: Data(dpo.utf8)) as? [String: Any])
        // Policy = reference at step 1 up to the adapters' dropout (0.1): the loss near log 2.
        #expect(abs(try #require(dpoStep["loss"] as? Double) - log(2)) < 0.05, "\(dpo)")
        let a = try readCheckpoint(at: root.appendingPathComponent("f32/sft.h5"))
        let b = try readCheckpoint(at: root.appendingPathComponent("q8/sft.h5"))
        #expect(a.baseChecksum != nil && a.baseChecksum == b.baseChecksum)
        let continued = try readCheckpoint(at: root.appendingPathComponent("q8/dpo.h5"))
        #expect(continued.step == 3 && continued.baseChecksum == a.baseChecksum)
        #expect(zip(a.parameters, b.parameters).contains { $0.1.values != $1.1.values }, "the base's format must matter")
        func firstLoss(_ run: String) throws -> Double {
            let line = try String(contentsOf: root.appendingPathComponent("\(run)/sft.metrics.jsonl"), encoding: .utf8)
                .split(separator: "\n")[0]
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            return try #require(object["loss"] as? Double)
        }
        let (lossF, lossQ) = (try firstLoss("f32"), try firstLoss("q8"))
        #expect(lossQ != lossF && abs(lossQ - lossF) < 0.01 * lossF, "first loss \(lossQ) on Q8_0 against \(lossF) on f32")
        let loaded = try loadModel(from: root.appendingPathComponent("q8/sft.h5").path)
        #expect(loaded.adapter != nil && loaded.model.packedParameters().isEmpty)
        let export = try distill(["export", "peft", root.appendingPathComponent("q8/sft.h5").path, "-o", root.appendingPathComponent("peft").path])
        #expect(export.status == 0, "\(export.err)")

        let full = try fineTuneRecipe(root, name: "full", sftSteps: 2, sftOnly: true, baseWeights: "q4_0")
        let r = try runToEnd(full, ["sft.lora=null"])
        #expect(r.status == 2)
        #expect(r.err.contains("base_weights") && r.err.contains("add a lora block"), "\(r.err)")
    }

    /// The SFT stage (LoRA with dropout, so the dropout streams must be restored too) killed
    /// at random moments ends with the same adapters, moments and metrics log as a run that
    /// was never interrupted; on an f32 base and on a Q4_0 one (QLoRA).
    @Test(arguments: [nil, "q4_0"])
    func killedSFTResumesBitIdentically(baseWeights: String?) throws {
        let root = try scratchDirectory("sft-resume")
        defer { try? FileManager.default.removeItem(at: root) }
        let whole = try startRun(try fineTuneRecipe(root, name: "whole", sftSteps: 10, sftOnly: true, baseWeights: baseWeights))
        whole.waitUntilExit()
        #expect(whole.terminationStatus == 0)

        let killed = try fineTuneRecipe(root, name: "killed", sftSteps: 10, sftOnly: true, baseWeights: baseWeights)
        let metrics = root.appendingPathComponent("killed/sft.metrics.jsonl")
        var rng = RNG(seed: UInt64(Date().timeIntervalSince1970))
        var kills = 0
        for _ in 0..<3 {
            let p = try startRun(killed)
            let target = lineCount(metrics) + 2 + Int(rng.next() % 4)
            let deadline = Date().addingTimeInterval(60)
            while p.isRunning && lineCount(metrics) < target && Date() < deadline { usleep(2000) }
            usleep(UInt32(rng.next() % 20_000))
            if p.isRunning {
                kill(p.processIdentifier, SIGKILL)
                kills += 1
            }
            p.waitUntilExit()
        }
        let last = try startRun(killed)
        last.waitUntilExit()
        #expect(last.terminationStatus == 0)
        #expect(kills >= 1)

        let a = try readCheckpoint(at: root.appendingPathComponent("whole/sft.h5"))
        let b = try readCheckpoint(at: root.appendingPathComponent("killed/sft.h5"))
        #expect(a.step == 10 && b.step == 10)
        for ((name, x), (_, y)) in zip(a.parameters, b.parameters) {
            #expect(x.values == y.values, "\(name) differs after \(kills) kills")
        }
        for moment in ["m", "v"] {
            for ((name, x), (_, y)) in zip(a.optimizer!.moments[moment]!, b.optimizer!.moments[moment]!) {
                #expect(x.values == y.values, "\(moment) of \(name) differs")
            }
        }
        let logA = try String(contentsOf: root.appendingPathComponent("whole/sft.metrics.jsonl"), encoding: .utf8)
        #expect(logA == (try String(contentsOf: metrics, encoding: .utf8)))
        #expect(logA.split(separator: "\n").count == 10 + 3)  // every step, evaluations at 4, 8, 10
    }
}
