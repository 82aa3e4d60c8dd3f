// `distill run`: recipe problems all reported with exit code 2, --dry-run plans, and the
// build without stage executors says so.

import Foundation

#if canImport(Glibc)
    import Glibc
#endif
import Platform
import Recipe
import Testing

@Suite struct RunCommandTests {
    /// A scratch folder holding a recipe and its data.
    func scratch(_ recipe: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distill-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data("Once upon a time there was a tiny model.\n".utf8).write(to: dir.appendingPathComponent("stories.txt"))
        try Data(recipe.utf8).write(to: dir.appendingPathComponent("recipe.json"))
        return dir
    }

    static let valid = """
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

    @Test func aBadRecipeExitsTwoListingEveryProblem() throws {
        let bad = """
            {
              "name": "quickstart",
              "stages": [
                {"type": "pretrain", "data": {"train": ["stories.txt"]}, "training": {"steps": 300, "lrr": 1}},
                {"type": "eval", "batches": "8"},
                {"type": "generate", "prompts": ["Once upon a time"], "top_p": 2},
                {"type": "exprot"}
              ]
            }
            """
        let dir = try scratch(bad)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("recipe.json").path
        let r = try distill(["run", path])
        #expect(r.status == 2)
        #expect(r.err.contains("4 problems"))
        #expect(r.err.contains(#"\#(path):4:89 stages[0].training.lrr: unknown key; did you mean "lr"?"#))
        #expect(r.err.contains(#":5:33 stages[1].batches: expected an integer, got string "8""#))
        #expect(r.err.contains(":6:68 stages[2].top_p: must be in (0, 1], got 2"))
        #expect(r.err.contains(#":7:14 stages[3].type: invalid value "exprot"; did you mean "export"?"#))

        let overridden = try distill(["run", path, "--set", "pretrain.training.stepz=3"])
        #expect(overridden.status == 2)
        #expect(
            overridden.err.contains(
                #"--set pretrain.training.stepz=3: stages[0].training.stepz: unknown key; did you mean "steps"?"#))
    }

    @Test func dryRunPlansAValidRecipe() throws {
        let dir = try scratch(Self.valid)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("recipe.json").path
        let r = try distill(["run", path, "--dry-run"])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("recipe quickstart -> "))
        for name in ["pretrain", "eval", "generate", "export"] { #expect(r.out.contains(name)) }
        #expect(r.out.contains("not run before"))

        let j = try distill(["run", path, "--dry-run", "--json", "--set", "pretrain.training.steps=50"])
        #expect(j.status == 0, "\(j.err)")
        let plan = try #require(try JSONSerialization.jsonObject(with: Data(j.out.utf8)) as? [String: Any])
        let stages = try #require(plan["stages"] as? [[String: Any]])
        #expect(stages.map { $0["name"] as? String } == ["pretrain", "eval", "generate", "export"])
        #expect(stages.allSatisfy { $0["action"] as? String == "run" })
        let recipe = try #require(plan["recipe"] as? [String: Any])
        let pretrain = try #require((recipe["stages"] as? [[String: Any]])?.first)
        #expect((pretrain["training"] as? [String: Any])?["steps"] as? Int == 50)
    }

    /// The recipe is valid but its corpus is far too small for its batch: bad data, exit
    /// 65, with the numbers and the fix.
    @Test func aCorpusTooSmallForTheBatchIsBadData() throws {
        let dir = try scratch(Self.valid)
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try distill(["run", dir.appendingPathComponent("recipe.json").path])
        #expect(r.status == 65)
        #expect(r.err.contains("corpus has") && r.err.contains("use a smaller batch size"), "\(r.err)")
    }

    @Test func aMissingRecipeFileIsReported() throws {
        let r = try distill(["run", "/nonexistent/recipe.json"])
        #expect(r.status == 2)
        #expect(r.err.contains("file not found: /nonexistent/recipe.json"))
    }

    @Test func runHasHelp() throws {
        let r = try distill(["run", "--help"])
        #expect(r.status == 0 && r.out.contains("--dry-run") && r.out.contains("--set"))
    }

    /// The help names every stage type a recipe may use, and where the schema is.
    @Test func runHelpListsEveryStageType() throws {
        let r = try distill(["run", "--help"])
        #expect(r.status == 0)
        let words = r.out.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        let types = StageType.allCases.map(\.rawValue)
        #expect(words.contains("stage types " + types.joined(separator: ", ") + "."), "\(r.out)")
        #expect(words.contains("docs/recipes.md"))
    }

    /// Bytes that are not UTF-8 are refused with their position, never decoded to U+FFFD.
    @Test func aRecipeThatIsNotUTF8IsRefusedWithItsPosition() throws {
        let dir = try scratchDirectory("utf8")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("r.json")
        try Data(Array(#"{"name": "r",\#n "stages": [{"type": "eval", "checkpoint": "m"#.utf8) + [0xFF, 0xFE] + Array(#".h5"}]}"#.utf8)).write(to: url)
        let r = try distill(["run", url.path, "--dry-run"])
        #expect(r.status == 2)
        #expect(r.err.contains("r.json:2:"), "\(r.err)")
        #expect(r.err.contains("invalid UTF-8 at line 2"), "\(r.err)")
    }

    /// A FIFO named as data is refused at once (opening it would wait for a writer forever).
    @Test func aFIFOAsDataIsRefusedNotWaitedOn() throws {
        let dir = try scratchDirectory("fifo")
        defer { try? FileManager.default.removeItem(at: dir) }
        let fifo = dir.appendingPathComponent("data.txt").path
        #expect(mkfifo(fifo, 0o600) == 0)
        // If distill opened the FIFO it would block; this writer-less watchdog fails the test
        // after 30 s instead of hanging the suite.
        let watchdog = DispatchWorkItem {
            let writer = open(fifo, O_WRONLY | O_NONBLOCK)
            if writer >= 0 { close(writer) }
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + 30, execute: watchdog)
        defer { watchdog.cancel() }
        let url = dir.appendingPathComponent("r.json")
        try Data(#"{"name": "r", "stages": [{"type": "pretrain", "data": {"train": ["data.txt"]}, "training": {"steps": 1}}]}"#.utf8)
            .write(to: url)
        let started = Date()
        let r = try distill(["run", url.path])
        #expect(Date().timeIntervalSince(started) < 25)
        #expect(r.status == 2, "\(r.err)")
        #expect(r.err.contains("is a FIFO (named pipe), not a regular file"), "\(r.err)")
    }
}
