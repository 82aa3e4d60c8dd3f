// --set overrides: by index, by stage name, JSON or string values, and bad paths.

import Foundation
import Platform
import Recipe
import Testing
import TextData

@Suite struct OverrideTests {
    func pretrain(_ r: Recipe, _ i: Int = 0) -> PretrainStage? {
        if case .pretrain(let p) = r.stages[i] { return p }
        return nil
    }

    @Test func overridesByIndexAndByStageName() throws {
        let dir = Scratch()
        dir.write("stories.txt", "text")
        let r = try dir.load(quickstart, ["stages[0].training.steps=50", "seed=3", "pretrain.training.batch_size=4"])
        #expect(pretrain(r)?.training.steps == 50)
        #expect(pretrain(r)?.training.batchSize == 4)
        #expect(r.seed == 3)
        guard case .generate(let g) = r.stages[2] else { return }
        #expect(g.seed == 3, "generate's seed defaults to the recipe seed")
    }

    @Test func valuesAreJSONWhenTheyParseAndStringsOtherwise() throws {
        let dir = Scratch()
        dir.write("stories.txt", "text")
        let r = try dir.load(
            quickstart,
            [
                "pretrain.training.lr=1e-3", "pretrain.model.tie_word_embeddings=false",
                "generate.prompts=[\"a\", \"b\"]",
                "name=other", "threads=null", "pretrain.training.schedule=linear", "generate.stop=\"42\"",
                "pretrain.init=null", "export.output=hf-out",
            ])
        #expect(pretrain(r)?.training.lr == 1e-3)
        #expect(pretrain(r)?.model?.tieWordEmbeddings == false)
        #expect(pretrain(r)?.training.schedule == .linear)
        #expect(r.name == "other" && r.runDir == dir.file("Checkpoints/other"))
        guard case .generate(let g) = r.stages[2], case .export(let x) = r.stages[3] else { return }
        #expect(g.prompts == ["a", "b"])
        #expect(g.stop == ["42"], "a quoted number is a string")
        #expect(x.output == dir.file("Checkpoints/other/hf-out"))
    }

    @Test func nullRemovesAKey() throws {
        let dir = Scratch()
        dir.write("stories.txt", "text")
        let text = quickstart.replacingOccurrences(
            of: "\"steps\": 300", with: "\"steps\": 300, \"lrr\": 1, \"lr\": 0.5")
        #expect(recipeError { try dir.load(text) } != nil)
        let r = try dir.load(text, ["pretrain.training.lrr=null", "pretrain.training.lr=null", "pretrain.absent=null"])
        #expect(pretrain(r)?.training.lr == 3e-3)
    }

    @Test func overridesCreateMissingObjects() throws {
        let dir = Scratch()
        dir.write("stories.txt", "text")
        dir.write("tok.json", "{}")
        let r = try dir.load(quickstart, ["pretrain.tokenizer.path=tok.json", "pretrain.data.validation_fraction=0.1"])
        #expect(pretrain(r)?.tokenizer == TokenizerSettings(path: dir.file("tok.json")))
        #expect(pretrain(r)?.data.validationFraction == 0.1)
    }

    @Test func badOverridesAreReportedWithSuggestions() throws {
        let dir = Scratch()
        dir.write("stories.txt", "text")
        let error = try #require(
            recipeError {
                try dir.load(
                    quickstart,
                    [
                        "pretrian.training.steps=5", "stages[7].seed=1", "seed.x=1", "pretrain.trainng.steps=5",
                        "noequals", "pretrain.training.lr=fast", "stages[0].training.steps=0",
                    ])
            })
        #expect(
            error.lines == [
                #"--set pretrian.training.steps=5: pretrian.training.steps: "pretrian" is neither a top-level key nor a stage name; did you mean "pretrain"?"#,
                "--set stages[7].seed=1: stages[7].seed: index 7 is out of range: stages has 4 elements",
                "--set noequals: expected key=value",
                "--set seed.x=1: seed: expected an integer, got an object",
                #"--set pretrain.trainng.steps=5: stages[0].trainng: unknown key; did you mean "training"?"#,
                "--set stages[0].training.steps=0: stages[0].training.steps: must be >= 1, got 0",
                #"--set pretrain.training.lr=fast: stages[0].training.lr: expected a number, got string "fast""#,
            ])
        #expect(error.exitCode == 2)
    }

    @Test func overridesCannotDescendIntoScalars() throws {
        let dir = Scratch()
        dir.write("stories.txt", "text")
        let error = try #require(
            recipeError { try dir.load(quickstart, ["pretrain.training.steps.x=1", "stages.x=1"]) })
        #expect(
            error.lines == [
                "--set pretrain.training.steps.x=1: pretrain.training.steps.x: stages[0].training.steps is a number, not an object",
                "--set stages.x=1: stages.x: stages is an array, not an object",
            ])
    }

    @Test func fileProblemsAndOverrideProblemsComeTogether() throws {
        let dir = Scratch()
        dir.write("stories.txt", "text")
        let text = quickstart.replacingOccurrences(of: "\"steps\": 300", with: "\"steps\": 300, \"lrr\": 1")
        let error = try #require(recipeError { try dir.load(text, ["pretrain.training.steps=-1"]) })
        #expect(error.issues.count == 2)
        #expect(error.lines[0].hasPrefix("--set pretrain.training.steps=-1: "))
        #expect(error.lines[1].hasPrefix("recipe.json:\(position(of: "\"lrr\"", in: text)) stages[0].training.lrr"))
    }
}
