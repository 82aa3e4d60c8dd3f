// The `eval` stage with `tasks` (task evaluation) in a recipe: defaults, arms and their
// names, the canonical round trip, a loss evaluation's resolved keys unchanged, and mistakes
// reported together with their paths.

import Foundation
import JSON
import Platform
import Recipe
import Teacher
import Testing
import Verify

@Suite struct EvalStageTests {
    let pretrain = #"{"type": "pretrain", "data": {"train": ["a.txt"]}, "training": {"steps": 3}}"#

    @Test func aTaskEvalResolvesWithDefaults() throws {
        let dir = Scratch()
        dir.write("a.txt", "text")
        let tasks = dir.write("tasks.jsonl", "{\"id\": \"1\", \"prompt\": \"1+1?\", \"answer\": \"2\"}\n")
        let model = dir.write("models/chat.gguf", "")
        let text = """
            {"name": "e", "seed": 9, "stages": [
              \(pretrain),
              {"type": "eval", "tasks": "tasks.jsonl"},
              {"type": "eval", "name": "cmp", "tasks": "tasks.jsonl", "template": "llama3", "output": "cmp/eval.json",
               "arms": [{"name": "zero-shot", "model": "models/chat.gguf"}, {"model": "@pretrain", "template": "chatml", "grammar": "python-calls"}],
               "samples": 0, "temperature": 0.5, "top_p": 0.9, "max_tokens": 32, "stop": "\\n", "seed": 2, "batch_size": 4,
               "logprobs": true,
               "verifier": {"type": "exact", "extract": "gsm8k"}, "cache": "/tmp/eval-cache.sqlite"}
            ]}
            """
        let recipe = try dir.load(text)
        let runDir = dir.file("Checkpoints/e")
        guard case .eval(let one) = recipe.stages[1], case .eval(let cmp) = recipe.stages[2],
            let t = one.taskEval, let c = cmp.taskEval
        else {
            Issue.record("two task evaluations")
            return
        }
        #expect(t.tasks == tasks && t.arms == [EvalArm(name: "pretrain", model: "@pretrain")])
        #expect(t.verifier == VerifierConfig() && t.cache == runDir + "/teacher-cache.sqlite")
        var defaults = TaskEvalConfig()
        defaults.seed = 9
        #expect(t.sampling == defaults && defaults.samples == 8 && defaults.temperature == 0.7 && !defaults.logprobs)
        #expect(one.output == runDir + "/eval.json" && one.checkpointInputs == [.stage("pretrain")])
        #expect(one.inputFiles == [tasks])
        #expect(
            EvalStage.taskFiles(output: one.output)
                == (runDir + "/eval.json", runDir + "/eval.md", runDir + "/eval.svg", runDir + "/eval.tasks.jsonl"))

        #expect(
            c.arms == [
                EvalArm(name: "zero-shot", model: model, template: .llama3),
                EvalArm(name: "pretrain", model: "@pretrain", template: .chatml, grammar: .pythonCalls),
            ])
        #expect(cmp.checkpointInputs == [.file(model), .stage("pretrain")] && cmp.allInputFiles == [model, tasks])
        #expect(c.sampling.samples == 0 && c.sampling.temperature == 0.5 && c.sampling.topP == 0.9)
        #expect(
            c.sampling.maxTokens == 32 && c.sampling.stop == ["\n"] && c.sampling.seed == 2 && c.sampling.batchSize == 4
        )
        #expect(c.sampling.logprobs)
        #expect(c.verifier.type == .exact && c.verifier.extract == .gsm8k && c.cache == "/tmp/eval-cache.sqlite")
        #expect(cmp.output == runDir + "/cmp/eval.json")
        // The resolved recipe (run.json, checkpoints) reads back equal, and holds only task keys.
        #expect(try Recipe.decodeResolved(recipe.resolvedJSON) == recipe)
        #expect(!recipe.resolvedJSON.contains("\"split\"") && recipe.resolvedJSON.contains("\"arms\""))
        // `logprobs` is resolved only where it is on: evaluations without it keep their fingerprints.
        #expect(recipe.resolvedJSON.components(separatedBy: "\"logprobs\"").count == 2)
    }

    /// A loss evaluation resolves to exactly the keys it always had, so its fingerprint is unchanged.
    @Test func aLossEvalKeepsItsResolvedKeys() throws {
        let dir = Scratch()
        dir.write("a.txt", "text")
        let recipe = try dir.load(#"{"name": "e", "stages": [\#(pretrain), {"type": "eval", "seq_len": 16}]}"#)
        guard case .object(let root) = try JSONValue.parse(Array(recipe.resolvedJSON.utf8)),
            case .array(let stages)? = root["stages"], case .object(let eval) = stages[1]
        else {
            Issue.record("resolved JSON")
            return
        }
        #expect(
            eval.entries.map(\.key).sorted() == [
                "batches", "checkpoint", "data", "name", "output", "seq_len", "split", "type",
            ])
        #expect(try Recipe.decodeResolved(recipe.resolvedJSON) == recipe)
    }

    @Test func mistakesAreReportedTogether() throws {
        let dir = Scratch()
        dir.write("a.txt", "text")
        dir.write("tasks.jsonl", "{\"id\": \"1\", \"prompt\": \"1+1?\", \"answer\": \"2\"}\n")
        let text = """
            {"name": "e", "stages": [
              \(pretrain),
              {"type": "eval", "tasks": "tasks.jsonl", "checkpoint": "@pretrain", "batches": 3, "samples": 1001,
               "temperature": 0, "extract": "gsm8k", "arms": [{"modle": "@pretrain"}, {"name": "b", "model": "@later"}]},
              {"type": "eval", "name": "loss", "samples": 4, "verifier": {"type": "exact"}},
              {"type": "eval", "name": "both", "tasks": "missing.jsonl", "model": "@pretrain", "arms": []},
              {"type": "eval", "name": "twice", "tasks": "tasks.jsonl",
               "arms": [{"model": "@pretrain"}, {"model": "@pretrain", "template": "chatm"}]},
              {"type": "eval", "name": "paired", "tasks": "tasks.jsonl", "arms": [{"name": "x", "model": "@pretrain"}],
               "baseline": "y"},
              {"type": "pretrain", "name": "later", "data": {"train": ["a.txt"]}, "training": {"steps": 3}, "output": "later.h5"}
            ]}
            """
        let error = try #require(recipeError { try dir.load(text) })
        #expect(error.exitCode == 2)
        let byPath = Dictionary(grouping: error.issues, by: \.path).mapValues { $0.map(\.message) }
        let at = { (needle: String) in "recipe.json:\(position(of: needle, in: text)) " }
        #expect(
            byPath["stages[1].checkpoint"]
                == ["with \"tasks\", the model is \"model\" (or a list of \"arms\"); rename the key"])
        #expect(byPath["stages[1].batches"] == ["a setting of loss evaluation, not used with \"tasks\"; remove it"])
        #expect(byPath["stages[1].samples"] == ["samples must be within 0...1000, got 1001"])
        #expect(byPath["stages[1].temperature"]?.first?.hasPrefix("temperature must be > 0") == true)
        #expect(byPath["stages[1].extract"]?.first?.contains("did you mean \"verifier.extract\"?") == true)
        #expect(error.lines.contains(at("\"modle\"") + "stages[1].arms[0].modle: unknown key; did you mean \"model\"?"))
        #expect(byPath["stages[1].arms[0].model"]?.first?.hasPrefix("missing required field") == true)
        #expect(byPath["stages[1].arms[1].model"]?.first?.contains("\"@later\" is not an earlier stage") == true)
        #expect(
            byPath["stages[2].samples"]
                == ["a setting of task evaluation: give \"tasks\" (a task set) with it, or remove it"])
        #expect(byPath["stages[2].verifier"] != nil)
        #expect(byPath["stages[3]"] == ["give either \"model\" (one model) or \"arms\" (several), not both"])
        #expect(byPath["stages[3].arms"] == ["must list at least one arm"])
        #expect(byPath["stages[3].tasks"] == ["file not found: \(dir.file("missing.jsonl"))"])
        #expect(byPath["stages[4].arms[1].template"]?.first?.contains("did you mean \"chatml\"?") == true)
        #expect(
            byPath["stages[4].arms[1].name"]
                == [
                    "duplicate arm name \"pretrain\" (named after its model), also arms[0]; give each arm a unique \"name\""
                ])
        #expect(byPath["stages[5].baseline"] == [#"must name an arm ("x"), got "y""#])
    }
}
