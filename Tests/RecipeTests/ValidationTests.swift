// Reading recipes: defaults, resolved paths, and every kind of mistake reported in one pass
// with its path, position and suggestion.

import Foundation
import JSON
import NN
import Platform
import Recipe
import Testing
import TextData
import Training

let quickstart = """
    {
      "name": "quickstart",
      "stages": [
        {"type": "pretrain", "data": {"train": ["stories.txt"]}, "training": {"steps": 300}},
        {"type": "eval"},
        {"type": "generate", "prompts": ["Once upon a time"]},
        {"type": "export"}
      ]
    }
    """

@Suite struct ValidationTests {
    @Test func aValidRecipeResolvesWithDefaults() throws {
        let dir = Scratch()
        let stories = dir.write("stories.txt", "Once upon a time there was a tiny model.\n")
        let recipe = try dir.load(quickstart)
        let runDir = dir.file("Checkpoints/quickstart")
        #expect(recipe.name == "quickstart")
        #expect(recipe.runDir == runDir)
        #expect(recipe.seed == 0 && recipe.threads == nil)
        #expect(recipe.stages.map(\.name) == ["pretrain", "eval", "generate", "export"])

        guard case .pretrain(let p) = recipe.stages[0], case .eval(let e) = recipe.stages[1],
            case .generate(let g) = recipe.stages[2], case .export(let x) = recipe.stages[3]
        else {
            Issue.record("stage types")
            return
        }
        #expect(p.data.train == [stories])
        #expect(p.data.format == .auto && p.data.textField == "text" && p.data.validationFraction == 0.05)
        #expect(p.tokenizer == TokenizerSettings(train: TokenizerTraining()))
        #expect(p.tokenizer?.train?.vocabSize == 512 && p.tokenizer?.train?.style == .gpt2)
        #expect(p.model == ModelSettings())
        #expect(p.model?.numKeyValueHeads == 4 && p.model?.headDim == 32)
        #expect(p.initFrom == nil)
        var training = TrainingSettings.pretraining(steps: 300)
        training.warmupSteps = 20
        #expect(p.training == training)
        #expect(p.training.lr == 3e-3 && p.training.schedule == .cosine && p.training.noDecay == ["norm", "embed"])
        #expect(p.output == runDir + "/base.h5")

        #expect(e.checkpoint == .stage("pretrain"))
        #expect(e.data == p.data)
        #expect(e.batches == 16 && e.seqLen == nil && e.split == .validation)
        #expect(e.output == runDir + "/eval.json")

        #expect(g.checkpoint == .stage("pretrain") && g.prompts == ["Once upon a time"])
        #expect(
            g.maxTokens == 64 && g.temperature == 0.8 && g.topK == 40 && g.topP == 1 && g.seed == 0 && g.stop.isEmpty)
        #expect(g.output == runDir + "/samples.jsonl")
        #expect(x.checkpoint == .stage("pretrain") && x.format == .hf && x.output == runDir + "/hf")
    }

    @Test func theResolvedRecipeRoundTripsThroughCanonicalJSON() throws {
        let dir = Scratch()
        dir.write("stories.txt", "text")
        let recipe = try dir.load(quickstart)
        let json = recipe.resolvedJSON
        #expect(!json.contains("\n") && !json.contains(": "))
        #expect(json.contains("\"lr\":0.003") && json.contains("\"type\":\"pretrain\""))
        let back = try Recipe.decodeResolved(json)
        #expect(back == recipe)
        #expect(back.resolvedJSON == json)
    }

    @Test func smallStepCountsCapTheDefaultWarmup() throws {
        let dir = Scratch()
        dir.write("stories.txt", "text")
        let recipe = try dir.load(quickstart, ["pretrain.training.steps=5"])
        guard case .pretrain(let p) = recipe.stages[0] else { return }
        #expect(p.training.warmupSteps == 4)
    }

    /// Five different mistakes, all reported in one pass, in document order, each with its
    /// path, its line:column and (for typos) a suggestion.
    @Test func fiveMistakesAreReportedTogether() throws {
        let dir = Scratch()
        dir.write("a.txt", "text")
        let text = """
            {
              "name": "demo",
              "seeed": 3,
              "stages": [
                {"type": "pretrian", "data": {"train": ["a.txt"]}},
                {"type": "pretrain",
                 "data": {"train": ["a.txt"]},
                 "training": {"steps": 100, "lrr": 0.01, "batch_size": "16",
                              "min_lr_ratio": 1.5}},
                {"type": "eval", "checkpoint": "@pretrainn"}
              ]
            }
            """
        let error = try #require(recipeError { try dir.load(text) })
        #expect(error.exitCode == 2)
        let expected = [
            "recipe.json:\(position(of: "\"seeed\"", in: text)) seeed: unknown key; did you mean \"seed\"?",
            "recipe.json:\(position(of: "\"pretrian\"", in: text)) stages[0].type: invalid value \"pretrian\"; did you mean \"pretrain\"? (allowed: \(StageType.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")))",
            "recipe.json:\(position(of: "\"lrr\"", in: text)) stages[1].training.lrr: unknown key; did you mean \"lr\"?",
            "recipe.json:\(position(of: "\"16\"", in: text)) stages[1].training.batch_size: expected an integer, got string \"16\"",
            "recipe.json:\(position(of: "1.5", in: text)) stages[1].training.min_lr_ratio: must be in [0, 1], got 1.5",
            "recipe.json:\(position(of: "\"@pretrainn\"", in: text)) stages[2].checkpoint: \"@pretrainn\" does not name an earlier stage; did you mean \"@pretrain\"?",
        ]
        #expect(error.lines == expected)
        #expect(error.lines[0].hasPrefix("recipe.json:3:3 "))
        #expect(error.description.hasPrefix("recipe.json: 6 problems\n"))
    }

    @Test func crossFieldAndCrossStageRules() throws {
        let dir = Scratch()
        dir.write("a.txt", "text")
        let text = """
            {
              "name": "rules",
              "threads": 0,
              "stages": [
                {"type": "pretrain", "data": {"train": ["a.txt", "missing.txt"]},
                 "model": {"vocab_size": 300, "num_attention_heads": 6, "num_key_value_heads": 4, "head_dim": 16,
                           "max_position_embeddings": 64},
                 "training": {"steps": 10, "warmup_steps": 10, "seq_len": 128, "schedule": "cosin"}},
                {"type": "eval", "name": "pretrain", "checkpoint": "@later"},
                {"type": "generate", "checkpoint": "@pretrain", "top_p": 0},
                {"type": "generate", "name": "later", "prompts": ["x"], "output": "later.jsonl"},
                {"type": "export", "checkpoint": "@generate", "output": "../outside"},
                {"type": "pretrain", "name": "bad name!", "data": {"text": "hi", "train": ["a.txt"]}, "training": {}}
              ]
            }
            """
        let error = try #require(recipeError { try dir.load(text) })
        let byPath = Dictionary(grouping: error.issues, by: \.path).mapValues { $0.map(\.message) }
        #expect(byPath["threads"] == ["must be >= 1, got 0"])
        #expect(byPath["stages[0].data.train[1]"] == ["file not found: \(dir.file("missing.txt"))"])
        #expect(byPath["stages[0].model.vocab_size"]?.first?.contains("comes from the tokenizer") == true)
        #expect(
            byPath["stages[0].model.num_key_value_heads"] == [
                "num_attention_heads (6) must be a multiple of num_key_value_heads (4)"
            ])
        #expect(byPath["stages[0].training.warmup_steps"] == ["must be < steps (10), got 10"])
        #expect(byPath["stages[0].training.seq_len"] == ["must be <= model.max_position_embeddings (64), got 128"])
        #expect(
            byPath["stages[0].training.schedule"] == [
                "invalid value \"cosin\"; did you mean \"cosine\"? (allowed: \"cosine\", \"linear\", \"constant\")"
            ])
        #expect(byPath["stages[1].name"]?.first?.hasPrefix("duplicate stage name \"pretrain\"") == true)
        #expect(
            byPath["stages[1].checkpoint"] == [
                "\"@later\" is not an earlier stage; stages run in order and may only read earlier ones"
            ])
        #expect(byPath["stages[2].top_p"] == ["must be in (0, 1], got 0"])
        #expect(byPath["stages[4].checkpoint"] == ["stage \"generate\" (generate) does not produce a checkpoint"])
        #expect(
            byPath["stages[4].output"]?.first?.hasPrefix("must be a relative path inside the run directory") == true)
        #expect(byPath["stages[5].name"]?.first?.hasPrefix("must match") == true)
        #expect(byPath["stages[5].data"] == ["give either \"train\" files or inline \"text\", not both"])
        #expect(byPath["stages[5].training.steps"] == ["missing required field"])
        #expect(byPath["stages[2].prompts"]?.first?.hasPrefix("missing required field") == true)
        #expect(
            byPath["stages[5].output"] == [#"stage "pretrain" writes "base.h5" too; give one of them another "output""#]
        )
        #expect(error.issues.count == 17, "\(error)")
    }

    @Test func missingRequiredFieldsAndWrongShapes() throws {
        let dir = Scratch()
        let error = try #require(recipeError { try dir.load(#"{"stages": [{"type": "generate"}, 3, {"name": "x"}]}"#) })
        let paths = error.issues.map(\.path)
        #expect(paths == ["name", "stages[0].prompts", "stages[0].checkpoint", "stages[1]", "stages[2].type"])
        #expect(error.issues[2].message.contains("no earlier stage produces a checkpoint"))
        #expect(error.issues[3].message == "expected a stage object, got number 3")

        let empty = try #require(recipeError { try dir.load(#"{"name": "x", "stages": []}"#) })
        #expect(empty.issues.map(\.description) == ["stages: must list at least one stage"])
    }

    @Test func aKeyOneLevelTooHighIsPointedToItsPlace() throws {
        let dir = Scratch()
        dir.write("a.txt", "text")
        let text =
            #"{"name": "x", "stages": [{"type": "pretrain", "data": {"train": "a.txt"}, "training": {"steps": 5}, "#
            + #""lr": 0.1, "hidden_size": 64, "tokenizer": {"vocab_size": 300}}, {"type": "eval", "banana": 1}]}"#
        let error = try #require(recipeError { try dir.load(text) })
        #expect(
            error.issues.map(\.description) == [
                #"stages[0].lr: unknown key; did you mean "training.lr"?"#,
                #"stages[0].hidden_size: unknown key; did you mean "model.hidden_size"?"#,
                #"stages[0].tokenizer.vocab_size: unknown key; did you mean "train.vocab_size"?"#,
                "stages[1].banana: unknown key (accepted: name, checkpoint, data, split, batches, seq_len, output, type)",
            ])
    }

    @Test func malformedJSONNamesTheSpot() throws {
        let dir = Scratch()
        let error = try #require(recipeError { try dir.load("{\n  \"name\": \"x\",\n  \"stages\": [,]\n}") })
        #expect(error.lines == ["recipe.json:3:14 malformed JSON: unexpected character"])
    }

    @Test func evalNeedsDataUnlessItReadsAPretrainStage() throws {
        let dir = Scratch()
        dir.write("m.h5", "weights")
        let error = try #require(
            recipeError {
                try dir.load(#"{"name": "x", "stages": [{"type": "eval", "checkpoint": "m.h5"}]}"#)
            })
        #expect(error.issues.map(\.path) == ["stages[0].data"])
        let ok = try dir.load(
            #"{"name": "x", "stages": [{"type": "eval", "checkpoint": "m.h5", "data": {"text": "hello"}}]}"#)
        guard case .eval(let e) = ok.stages[0] else { return }
        #expect(e.checkpoint == .file(dir.file("m.h5")))
    }

    @Test func initExcludesModelAndTokenizer() throws {
        let dir = Scratch()
        dir.write("a.txt", "text")
        let text = """
            {"name": "x", "stages": [
              {"type": "pretrain", "data": {"train": "a.txt"}, "training": {"steps": 10}},
              {"type": "pretrain", "name": "more", "init": {"checkpoint": "@pretrain"}, "model": {}, "output": "more.h5",
               "data": {"train": "a.txt"}, "training": {"steps": 10}}]}
            """
        let error = try #require(recipeError { try dir.load(text) })
        #expect(
            error.issues.map(\.description) == [
                #"stages[1].model: comes from the init checkpoint; remove "model" or "init""#
            ])
        let ok = try dir.load(text, ["more.model=null"])
        guard case .pretrain(let p) = ok.stages[1] else { return }
        #expect(p.model == nil && p.tokenizer == nil && p.initFrom?.checkpoint == .stage("pretrain"))
    }

    @Test(
        "suggestions",
        arguments: [
            ("learning_rate", "lr"), ("lrr", "lr"), ("batchSize", "batch_size"), ("max_steps", "steps"),
            ("warmup", "warmup_steps"), ("gradient_accumulation_steps", "grad_accum"), ("shedule", "schedule"),
        ])
    func suggestions(_ typo: String, _ expected: String) {
        let keys = ["steps", "batch_size", "seq_len", "grad_accum", "lr", "min_lr_ratio", "warmup_steps", "schedule"]
        #expect(suggestion(for: typo, among: keys) == expected)
    }

    @Test func farOffWordsGetNoSuggestion() {
        #expect(suggestion(for: "banana", among: ["steps", "lr", "seq_len"]) == nil)
        #expect(editDistance("trian", "train") == 1)
        #expect(editDistance("kitten", "sitting") == 3)
    }
}
