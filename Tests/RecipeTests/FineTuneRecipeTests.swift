// The fine-tuning stages' settings (sft, dpo, kd): defaults, validation messages with their
// JSON paths, and the SFT data path that decides which tokens carry the loss.

import Core
import Foundation
import NN
import Recipe
import Testing
import TextData
import Training

@Suite struct FineTuneRecipeTests {
    @Test func defaultsAndReferences() throws {
        let dir = Scratch()
        dir.write("rows.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\"}\n")
        let recipe = try dir.load(
            """
            {"name": "ft", "stages": [
              {"type": "pretrain", "data": {"text": "hello"}, "training": {"steps": 1}},
              {"type": "sft", "data": {"train": "rows.jsonl"}, "lora": {"r": 4, "target_modules": "all-linear"}},
              {"type": "dpo", "data": {"train": ["rows.jsonl"]}, "loss": "robust", "label_smoothing": 0.1},
              {"type": "kd", "teacher": "@pretrain", "model": "@sft", "data": {"train": "rows.jsonl"}, "top_k": 8}
            ]}
            """)
        guard case .sft(let sft) = recipe.stages[1], case .dpo(let dpo) = recipe.stages[2],
            case .kd(let kd) = recipe.stages[3]
        else {
            Issue.record("stage types")
            return
        }
        #expect(sft.model == .stage("pretrain") && sft.template == nil && sft.packing)
        #expect(sft.lora?.r == 4 && sft.lora?.targetModules == LoRAConfig.moduleNames && sft.lora?.alpha == 16)
        #expect(sft.data.train == [dir.file("rows.jsonl")] && sft.output.hasSuffix("/sft.h5"))
        #expect(sft.training.steps == nil && sft.training.epochs == 1)
        #expect(dpo.model == .stage("sft") && dpo.lossConfig == PreferenceLossConfig(kind: .robust, beta: 0.1, labelSmoothing: 0.1))
        #expect(kd.teacher == .stage("pretrain") && kd.model == .stage("sft") && kd.topK == 8)
        #expect(kd.distillationConfig == DistillationConfig(divergence: .forwardKL, beta: 0.5, temperature: 1, kdWeight: 1))
    }

    @Test func targetModulesTakePEFTsForms() throws {
        let dir = Scratch()
        dir.write("rows.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\"}\n")
        func recipe(_ targets: String) -> String {
            """
            {"name": "ft", "stages": [
              {"type": "pretrain", "data": {"text": "hello"}, "training": {"steps": 1}},
              {"type": "sft", "data": {"train": "rows.jsonl"}, "lora": {"r": 4, "target_modules": \(targets)}}
            ]}
            """
        }
        // A list of names and path tails; a single string other than all-linear is a regex.
        let listed = try dir.load(recipe(#"["q_proj", "layers.0.mlp.down_proj"]"#))
        guard case .sft(let a) = listed.stages[1] else { return }
        #expect(a.lora?.targetModules == ["q_proj", "layers.0.mlp.down_proj"] && a.lora?.targetPattern == nil)
        let regex = #".*\\.(1|2)\\.self_attn\\.(q|v)_proj"#
        let patterned = try dir.load(recipe("\"\(regex)\""))
        guard case .sft(let b) = patterned.stages[1] else { return }
        #expect(b.lora?.targetPattern == #".*\.(1|2)\.self_attn\.(q|v)_proj"# && b.lora?.targetModules == [])
        // The regex survives the resolved recipe (what checkpoints store) and enters the fingerprint.
        let again = try Recipe.decodeResolved(patterned.resolvedJSON)
        #expect(again.stages[1] == patterned.stages[1])
        #expect(patterned.stages[1].resolvedJSON.contains(#"self_attn"#) && patterned.stages[1].resolvedJSON != listed.stages[1].resolvedJSON)

        func problems(_ targets: String) throws -> [String: [String]] {
            let error = try #require(recipeError { try dir.load(recipe(targets)) })
            return Dictionary(grouping: error.issues, by: \.path).mapValues { $0.map(\.message) }
        }
        let path = "stages[1].lora.target_modules"
        #expect(try problems(#""(q|v_proj""#)[path]?.first?.contains("regex \"(q|v_proj\" does not compile: a group without its )") == true)
        let bare = try problems(#""q_proj""#)[path]?.first ?? ""
        #expect(bare.contains("\"q_proj\" matches no module") && bare.contains(#"write ["q_proj"]"#), "fullmatch, not search")
        #expect(try problems(#"".*""#)[path]?.first?.contains("which is not a linear projection") == true)
        #expect(try problems(#"["q_proj", "mlp.q_proj"]"#)[path + "[1]"]?.first?.contains("\"mlp.q_proj\" is not one of") == true)
    }

    @Test func problemsNameTheirPaths() throws {
        let dir = Scratch()
        dir.write("rows.jsonl", "{}\n")
        let text = """
            {"name": "ft", "stages": [
              {"type": "pretrain", "data": {"text": "hello"}, "training": {"steps": 1}},
              {"type": "sft", "data": {"train": "missing.jsonl"}, "lora": {"r": 0, "target_modules": ["q_prj"]},
               "training": {"steps": 3, "epochs": 2}, "template": "chatm"},
              {"type": "dpo", "data": {"train": "rows.jsonl"}, "label_smoothing": 0.1, "beta": 0},
              {"type": "kd", "data": {"train": "rows.jsonl"}, "loss": "kl", "beta": 1},
              {"type": "dpo", "name": "dpo2", "model": "@kd2", "data": {"train": "rows.jsonl"}, "lr": 0.1}
            ]}
            """
        let error = try #require(recipeError { try dir.load(text) })
        let byPath = Dictionary(grouping: error.issues, by: \.path).mapValues { $0.map(\.message) }
        #expect(byPath["stages[1].data.train[0]"] == ["file not found: \(dir.file("missing.jsonl"))"])
        #expect(byPath["stages[1].lora.r"] == ["must be >= 1, got 0"])
        #expect(byPath["stages[1].lora.target_modules[0]"]?.first?.contains("did you mean \"q_proj\"") == true)
        #expect(byPath["stages[1].training"] == ["give either \"steps\" or \"epochs\", not both"])
        #expect(byPath["stages[1].template"]?.first?.contains("did you mean \"chatml\"") == true)
        #expect(byPath["stages[2].label_smoothing"]?.first?.contains("not sigmoid") == true)
        #expect(byPath["stages[2].beta"] == ["must be > 0, got 0"])
        #expect(byPath["stages[3].teacher"]?.first?.hasPrefix("missing required field") == true)
        #expect(byPath["stages[3].loss"]?.first?.contains("forward_kl") == true)
        #expect(byPath["stages[3].beta"] == ["must be in (0, 1), got 1"])
        #expect(byPath["stages[4].model"]?.first?.contains("does not name an earlier stage") == true)
        #expect(byPath["stages[4].lr"]?.first?.contains("training.lr") == true)
        #expect(byPath["stages[4].output"]?.first?.hasPrefix("stage \"dpo\" writes \"dpo.h5\" too") == true)
        #expect(error.issues.count == 13, "\(error.lines)")
    }

    /// Conversational, prompt/completion and text rows through ChatML, packed: the targets that
    /// are not -100 spell exactly the assistant answers with their <|im_end|> (and, for the
    /// prompt/completion row, the completion and its end-of-turn token; every token of a text
    /// row), and the SFT objective's loss is the mean cross-entropy over exactly those positions.
    @Test func lossOnlyOnAssistantTokens() throws {
        let dir = Scratch()
        let rows = dir.write(
            "rows.jsonl",
            """
            {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Sum 2 and 3"}, {"role": "assistant", "content": "It is 5."}]}
            {"prompt": "What is 1 + 1?", "completion": " Two."}

            """)
        let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        let tokenizer = try BPETrainer(.init(vocabSize: 300, specialTokens: specials)).train(
            "Hello there. It is 5. What is 1 + 1? Two. Be brief. Sum 2 and 3 user assistant system")
        let examples = try readExamples([rows], chat: ChatStyle(template: .chatml), tokenizer: tokenizer, endOfText: 0, seqLen: 128)
        let laid = try SFTRows(examples, seqLen: 128, packing: true, fraction: 0, seed: 1, padID: 0, path: rows)
        #expect(laid.sequences.rows == 1 && laid.train == [0] && laid.validation.isEmpty)
        let trained = laid.sequences.targets.filter { $0 != -100 }
        #expect(tokenizer.decode(trained) == "Hello.<|im_end|>It is 5.<|im_end|> Two.<|im_end|>")

        var rng = RNG(seed: 3)
        let config = LlamaConfig(
            vocabSize: tokenizer.vocabSize, hiddenSize: 16, intermediateSize: 32, numHiddenLayers: 1,
            numAttentionHeads: 2, numKeyValueHeads: 1, maxPositionEmbeddings: 128)
        let model = LlamaModel(config: config, rng: &rng)
        let batch = laid.sequences.batch([0])
        let loss = try MaskedLanguageModeling(model: model).loss(batch).loss.item
        // Reference: -log softmax at the trained positions only, averaged.
        let logits = model.logits(ids: batch.inputs, batch: 1, length: 128, segments: batch.segments)
        let v = config.vocabSize
        var total = 0.0, n = 0
        for (i, t) in batch.targets.enumerated() where t != -100 {
            let row = (0..<v).map { Double(logits.values[i * v + $0]) }
            let m = row.max()!
            let lse = m + log(row.reduce(0) { $0 + exp($1 - m) })
            total += lse - row[Int(t)]
            n += 1
        }
        #expect(n == trained.count)
        #expect(abs(Double(loss) - total / Double(n)) < 1e-5)
    }

    /// A `{"text"}` row longer than seq_len becomes windows of seq_len + 1 ids overlapping by
    /// one id: their targets (every id after the first of each window) are the row's targets,
    /// each once.
    @Test func longTextRowsAreCutIntoWindows() throws {
        let dir = Scratch()
        let text = "The cat sat on the mat and the dog ran to the park with a ball."
        let rows = dir.write("text.jsonl", "{\"text\": \"\(text)\"}\n")
        let tokenizer = try BPETrainer(.init(vocabSize: 280, specialTokens: ["<|endoftext|>"])).train(text)
        let ids = tokenizer.encode(text) + [0]
        for seqLen in [4, 7, ids.count - 1, ids.count + 3] {
            let examples = try readExamples([rows], chat: ChatStyle(template: .chatml), tokenizer: tokenizer, endOfText: 0, seqLen: seqLen)
            #expect(examples.allSatisfy { $0.ids.count <= seqLen + 1 && $0.trained.allSatisfy { $0 } })
            #expect(examples.flatMap { $0.ids.dropFirst() } == Array(ids.dropFirst()), "seq_len \(seqLen)")
            #expect(examples.count == (ids.count - 1 + seqLen - 1) / seqLen)
        }
    }
}
