// Models and batches that cannot fit are refused from their config before anything is
// allocated, with the estimate and the limit (exit 2), by pretraining (also under
// --dry-run), full and LoRA fine-tuning, evaluation and loading. DISTILL_MEMORY_LIMIT
// stands in for a small machine so the tests can use a tiny model.

import Foundation
import Testing

@Suite struct MemoryLimitTests {
    /// A tiny pretrained model (28k parameters) and SFT rows in `root`; returns the recipe
    /// with a pretrain and an sft stage (`lora` or full).
    private func recipe(_ root: URL, lora: Bool) throws -> URL {
        var rows = ""
        for i in 0..<20 { rows += #"{"prompt": "What is \#(i % 7) + \#(i % 5)?", "completion": " \#(i % 7 + i % 5)."}"# + "\n" }
        try Data(rows.utf8).write(to: root.appendingPathComponent("sft.jsonl"))
        let text = String(data: try JSONEncoder().encode(tinyCorpus()), encoding: .utf8)!
        let loraBlock = lora ? #", "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}"# : ""
        let json = """
            {"name": "memory", "run_dir": "\(root.appendingPathComponent("run").path)", "seed": 3, "stages": [
             {"type": "pretrain", "name": "pretrain", "data": {"text": \(text)}, "output": "pretrain.h5",
              "tokenizer": {"train": {"vocab_size": 300, "special_tokens": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]}},
              "model": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                        "num_key_value_heads": 2, "max_position_embeddings": 64},
              "training": {"steps": 2, "batch_size": 4, "seq_len": 32, "warmup_steps": 1, "eval_every": 0}},
             {"type": "sft", "data": {"train": "\(root.appendingPathComponent("sft.jsonl").path)"}\(loraBlock),
              "training": {"steps": 2, "batch_size": 4, "seq_len": 48}}]}
            """
        let url = root.appendingPathComponent("recipe.json")
        try Data(json.utf8).write(to: url)
        return url
    }

    private func withDirectory(_ body: (URL) throws -> Void) throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("distill-memory-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        try body(root)
    }

    @Test func aModelTooLargeForTheMachineIsRefusedByTheDryRun() throws {
        try withDirectory { root in
            let url = try recipe(root, lora: false)
            // 200 layers of width 8192: about 138 billion parameters.
            let huge = [
                "--set", #"pretrain.model={"hidden_size": 8192, "intermediate_size": 22016, "num_hidden_layers": 200, "num_attention_heads": 64, "num_key_value_heads": 8}"#,
            ]
            for extra in [["--dry-run"], []] {
                let r = try distill(["run", url.path] + huge + extra)
                #expect(r.status == 2, "\(r.err)")
                #expect(r.err.contains("stages[0].model and .training") && r.err.contains("needs at least"), "\(r.err)")
                #expect(r.err.contains("GiB, more than"), "\(r.err)")
            }
            // Sizes beyond the config's bounds are recipe errors with their JSON path, before any estimate.
            let layers = try distill(["run", url.path, "--dry-run", "--set", "pretrain.model.num_hidden_layers=1000000000"])
            #expect(layers.status == 2, "\(layers.err)")
            #expect(layers.err.contains("stages[0].model.num_hidden_layers: num_hidden_layers must be at most 4096"), "\(layers.err)")
            // Nothing ran: the refusal comes before the first stage.
            #expect(!FileManager.default.fileExists(atPath: root.appendingPathComponent("run/pretrain.h5").path))
        }
    }

    @Test(arguments: [false, true])
    func fineTuningEvaluationAndLoadingRefuseWhatCannotFit(lora: Bool) throws {
        try withDirectory { root in
            let url = try recipe(root, lora: lora)
            let first = try distill(["run", url.path])
            #expect(first.status == 0, "\(first.err)")
            let model = root.appendingPathComponent("run/pretrain.h5").path

            // The sft stage again with other settings (pretrain is skipped, so its own need
            // does not count). Full: 28k parameters x 16 bytes and the activations, about
            // 1.8 MiB; LoRA trains 1k parameters but the activations stay.
            let steps = ["--set", "sft.training.steps=3"]
            let tight = try distill(["run", url.path] + steps, environment: ["DISTILL_MEMORY_LIMIT": "1M"])
            #expect(tight.status == 2, "\(tight.err)")
            #expect(tight.err.contains("stage \"sft\" failed") && tight.err.contains("\(model): training this model"))
            #expect(tight.err.contains("more than DISTILL_MEMORY_LIMIT (1.0 MiB)"), "\(tight.err)")
            #expect(tight.err.contains("through LoRA") == !lora, "\(tight.err)")
            #expect(try distill(["run", url.path] + steps).status == 0)

            let text = root.appendingPathComponent("t.txt")
            try Data(tinyCorpus().utf8).write(to: text)
            let eval = try distill(["eval", "--checkpoint", model, "--text", text.path], environment: ["DISTILL_MEMORY_LIMIT": "600K"])
            #expect(eval.status == 2 && eval.err.contains("evaluating with this model"), "\(eval.err)")
            #expect(eval.err.contains("lower --seq-len"), "\(eval.err)")

            let load = try distill(["generate", "--checkpoint", model, "--prompt", "a"], environment: ["DISTILL_MEMORY_LIMIT": "100K"])
            #expect(load.status == 2 && load.err.contains("\(model): loading its tensors needs at least"), "\(load.err)")
        }
    }
}
