// Fingerprints: stable under formatting, sensitive to settings, seed and input content,
// blind to threads; FNV-1a checked against its published test vectors.

import Foundation
import ModelIO
import Pipeline
import Platform
import Recipe
import Testing

@Suite struct FingerprintTests {
    func fingerprints(_ dir: Scratch, _ text: String, _ overrides: [String] = []) throws -> [String] {
        let recipe = try dir.load(text, overrides)
        return try Runner(recipe: recipe, registry: ExecutorRegistry()).plan().stages.map(\.fingerprint.value)
    }

    /// Test vectors from the FNV reference (Fowler/Noll/Vo): "" and "a" and "foobar".
    @Test func fnv1a64MatchesTheReference() {
        #expect(FNV1a64().hex == "cbf29ce484222325")
        #expect(FNV1a64.hex("a") == "af63dc4c8601ec8c")
        #expect(FNV1a64.hex("foobar") == "85944171f73967e8")
    }

    @Test func stableUnderKeyOrderAndWhitespace() throws {
        let dir = Scratch()
        dir.write("stories.txt", "text")
        let reordered = """
            {"stages": [{"training": {"steps": 300}, "data": {"train": ["stories.txt"]}, "type": "pretrain"},
            {"type": "eval"},{"prompts": ["Once upon a time"],"type": "generate"},{"type": "export"}],
                       "name": "quickstart"}
            """
        let a = try fingerprints(dir, quickstart)
        #expect(try fingerprints(dir, reordered) == a)
        #expect(Set(a).count == 4)
        #expect(a.allSatisfy { $0.count == 16 })
        // Spelling a default out, or writing 3e-3 as 0.003, changes nothing.
        #expect(
            try fingerprints(dir, quickstart, ["pretrain.training.lr=0.003", "pretrain.training.batch_size=16"]) == a)
        #expect(try fingerprints(dir, quickstart, ["pretrain.training.steps=3e2"]) == a)
        // Threads never re-run anything.
        #expect(try fingerprints(dir, quickstart, ["threads=1"]) == a)
    }

    @Test func changesWithSettingsSeedAndInputContent() throws {
        let dir = Scratch()
        dir.write("stories.txt", "text")
        let a = try fingerprints(dir, quickstart)
        let lr = try fingerprints(dir, quickstart, ["pretrain.training.lr=0.01"])
        #expect(zip(a, lr).allSatisfy { $0 != $1 }, "every stage reads pretrain")
        let seed = try fingerprints(dir, quickstart, ["seed=1"])
        #expect(zip(a, seed).allSatisfy { $0 != $1 })
        let prompts = try fingerprints(dir, quickstart, ["generate.prompts=[\"Hello\"]"])
        #expect(prompts[0] == a[0] && prompts[1] == a[1] && prompts[2] != a[2] && prompts[3] == a[3])
        dir.write("stories.txt", "other text")
        let content = try fingerprints(dir, quickstart)
        #expect(zip(a, content).allSatisfy { $0 != $1 })
    }

    /// Route and cascade stages read the verdicts of every earlier eval and sample stage, which
    /// they do not name: a change to one of those runs them again; a change to another route
    /// stage does not.
    @Test func verdictReadingStagesFollowEveryEarlierEvalStage() throws {
        let dir = Scratch()
        dir.write("stories.txt", "text")
        dir.write("tasks.jsonl", #"{"id": "t1", "prompt": "1 + 1 =", "answer": "2"}"# + "\n")
        let text = """
            {"name": "r", "run_dir": "run", "stages": [
              {"type": "pretrain", "name": "small", "data": {"train": ["stories.txt"]}, "training": {"steps": 10}},
              {"type": "eval", "tasks": "tasks.jsonl", "arms": [{"name": "a", "model": "@small"}, {"name": "b", "model": "@small"}], "samples": 2},
              {"type": "route", "checkpoint": "@small", "weak": "a", "strong": "b"},
              {"type": "cascade", "weak": "a", "strong": "b"}
            ]}
            """
        let a = try fingerprints(dir, text)
        let samples = try fingerprints(dir, text, ["eval.samples=4"])
        #expect(samples[0] == a[0] && samples[1] != a[1] && samples[2] != a[2] && samples[3] != a[3])
        let kind = try fingerprints(dir, text, ["route.kind=knn"])
        #expect(kind[0] == a[0] && kind[1] == a[1] && kind[2] != a[2] && kind[3] == a[3])
    }

    @Test func fingerprintPartsExplainChanges() throws {
        let old = StageFingerprint(parts: ["settings": "1", "seed": "0", "file:/d/a.txt": "x", "stage:pretrain": "p"])
        let new = StageFingerprint(parts: [
            "settings": "2", "seed": "1", "file:/d/a.txt": "y", "file:/d/b.txt": "z", "stage:pretrain": "q",
        ])
        #expect(old.value != new.value)
        #expect(
            new.changes(since: old) == [
                "/d/a.txt changed", "now reads /d/b.txt", "seed changed (0 -> 1)", "settings changed",
                #"input stage "pretrain" changed"#,
            ])
    }

    @Test func foldersHashTheirFiles() throws {
        let dir = Scratch()
        dir.write("hf/config.json", "{}")
        dir.write("hf/model.safetensors", "weights")
        var digester = FileDigester()
        let a = try digester.digest(dir.file("hf"))
        dir.write("hf/model.safetensors", "weights, changed")
        #expect(try digester.digest(dir.file("hf")) != a)
        #expect(throws: InputError.self) { try digester.digest(dir.file("absent")) }
    }
}
