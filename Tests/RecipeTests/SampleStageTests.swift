// The `sample` stage in a recipe: defaults and resolved paths, the canonical round trip, and
// mistakes in the teacher, verifier and pairs objects reported together with path and line:column.

import Foundation
import Platform
import Recipe
import Teacher
import Testing
import Verify

@Suite struct SampleStageTests {
    @Test func aSampleStageResolvesWithDefaults() throws {
        let dir = Scratch()
        dir.write("a.txt", "text")
        let tasks = dir.write("tasks.jsonl", "{\"id\": \"1\", \"prompt\": \"1+1?\", \"answer\": \"2\"}\n")
        let text = """
            {"name": "s", "seed": 9, "stages": [
              {"type": "pretrain", "data": {"train": ["a.txt"]}, "training": {"steps": 3}},
              {"type": "sample", "tasks": "tasks.jsonl", "teacher": {"type": "checkpoint", "samples": 4, "grammar": "python-calls"}},
              {"type": "sample", "name": "remote", "tasks": "tasks.jsonl", "cache": "/tmp/shared.sqlite",
               "teacher": {"type": "openai", "base_url": "http://127.0.0.1:8080/v1", "model": "m", "api_key_env": "KEY"},
               "verifier": {"type": "exact", "extract": "gsm8k"}, "pairs": {"strategy": "one", "seed": 2}, "output": "r"},
              {"type": "sample", "name": "cmd", "tasks": "tasks.jsonl", "teacher": {"type": "command", "command": ["./t"]}, "output": "c"}
            ]}
            """
        let recipe = try dir.load(text)
        let runDir = dir.file("Checkpoints/s")
        guard case .sample(let s) = recipe.stages[1], case .sample(let r) = recipe.stages[2],
            case .sample(let c) = recipe.stages[3]
        else {
            Issue.record("stage types")
            return
        }
        #expect(s.name == "sample" && s.tasks == tasks && s.output == runDir + "/sample")
        #expect(s.cache == runDir + "/teacher-cache.sqlite")
        var teacher = CheckpointTeacherConfig(checkpoint: "@pretrain")
        teacher.samples = 4
        teacher.grammar = .pythonCalls
        #expect(s.teacher == .checkpoint(teacher))
        #expect(s.checkpointInputs == [.stage("pretrain")] && s.inputFiles == [tasks])
        #expect(s.verifier == VerifierConfig() && s.pairs == PairingConfig(strategy: .all, maxPerPrompt: 4, seed: 9))
        #expect(r.cache == "/tmp/shared.sqlite" && r.output == runDir + "/r" && r.checkpointInputs.isEmpty)
        #expect(r.pairs == PairingConfig(strategy: .one, maxPerPrompt: 4, seed: 2))
        #expect(r.verifier.type == .exact && r.verifier.extract == .gsm8k)
        guard case .openai(let o) = r.teacher, case .command(let cmd) = c.teacher else {
            Issue.record("teacher types")
            return
        }
        #expect(o.apiKeyEnv == "KEY" && o.samples == 1 && o.concurrency == 8)
        #expect(cmd.command == ["./t"] && cmd.timeoutSeconds == 60)
        // The resolved recipe (what run.json and checkpoints store) reads back equal.
        #expect(try Recipe.decodeResolved(recipe.resolvedJSON) == recipe)
    }

    @Test func mistakesInTheTeacherVerifierAndPairsAreReportedTogether() throws {
        let dir = Scratch()
        let text = """
            {"name": "s", "stages": [
              {"type": "sample", "tasks": "missing.jsonl",
               "teacher": {"type": "checkpoint", "checkpoint": "base.h5", "temprature": 0.7, "samples": 0, "top_p": 1.5},
               "verifier": {"type": "exact", "extract": "regex"},
               "pairs": {"strategy": "every", "max_per_prompt": 0}},
              {"type": "sample", "name": "b", "tasks": "missing.jsonl", "teacher": {"type": "opneai"}},
              {"type": "sample", "name": "c", "teacher": {"type": "command", "command": "python3 t.py"}},
              {"type": "sample", "name": "d", "tasks": "missing.jsonl", "teacher": {"type": "checkpoint", "grammar": "python"}}
            ]}
            """
        let error = try #require(recipeError { try dir.load(text) })
        #expect(error.exitCode == 2)
        let byPath = Dictionary(grouping: error.issues, by: \.path).mapValues { $0.map(\.message) }
        let at = { (needle: String) in "recipe.json:\(position(of: needle, in: text)) " }
        #expect(
            error.lines.contains(
                at("\"temprature\"") + "stages[0].teacher.temprature: unknown key; did you mean \"temperature\"?"))
        #expect(
            error.lines.contains(
                at("0, \"top_p\"") + "stages[0].teacher.samples: samples must be within 1...1000, got 0"))
        #expect(byPath["stages[0].teacher.top_p"] == ["top_p must be within (0, 1], got 1.5"])
        #expect(byPath["stages[0].teacher.checkpoint"] == ["file not found: \(dir.file("base.h5"))"])
        #expect(byPath["stages[0].tasks"] == ["file not found: \(dir.file("missing.jsonl"))"])
        #expect(byPath["stages[0].verifier.extract"]?.first?.contains("needs extract_pattern") == true)
        #expect(byPath["stages[0].pairs.strategy"]?.first?.contains("invalid value \"every\"") == true)
        #expect(byPath["stages[0].pairs.max_per_prompt"] == ["must be >= 1, got 0"])
        #expect(byPath["stages[1].teacher.type"]?.first?.contains("did you mean \"openai\"?") == true)
        #expect(byPath["stages[2].tasks"]?.first?.contains("missing required field") == true)
        #expect(byPath["stages[2].teacher.command"] == ["expected an array of strings, got string \"python3 t.py\""])
        #expect(
            byPath["stages[3].teacher.checkpoint"]?.first?.contains("no earlier stage produces a checkpoint") == true)
        #expect(byPath["stages[3].teacher.grammar"] == ["invalid value \"python\" (allowed: \"python-calls\")"])
    }
}

@Test func theShippedSampleRecipeAndTaskSetAreValid() throws {
    let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    let recipe = try Recipe.load(file: repository.appendingPathComponent("Recipes/sample-arithmetic.json").path)
    #expect(recipe.stages.map(\.type) == [.pretrain, .sample])
    guard case .sample(let s) = recipe.stages[1], case .checkpoint(let teacher) = s.teacher else {
        Issue.record("the second stage samples a checkpoint teacher")
        return
    }
    #expect(teacher.checkpoint == "@teacher" && teacher.samples == 8)
    let tasks = try TaskReader.read(path: s.tasks)
    #expect(tasks.count == 64 && Set(tasks.map(\.id)).count == 64)
    try Verifier(s.verifier).validate(tasks)
    // Every task's answer is the sum or difference its prompt states.
    for task in tasks {
        guard case .text(let prompt) = task.prompt else { continue }
        let numbers = prompt.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        let expected = prompt.contains("gets") ? numbers[0] + numbers[1] : numbers[0] - numbers[1]
        #expect(task.answer == String(expected), "\(task.id)")
    }
}
