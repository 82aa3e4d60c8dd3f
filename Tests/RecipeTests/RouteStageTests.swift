// The `route` and `cascade` stages' readers: the shipped recipes' stages, and every mistake
// reported with its path.

import Foundation
import Recipe
import Testing

@Test func theShippedRouteRecipeReadsItsRouteStages() throws {
    let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    let recipe = try Recipe.load(file: repository.appendingPathComponent("Recipes/route-arithmetic.json").path)
    #expect(recipe.stages.map(\.type) == [.pretrain, .pretrain, .eval, .route, .route, .route])
    guard case .route(let s) = recipe.stages[3], case .route(let k) = recipe.stages[5] else {
        Issue.record("stages 4 and 6 are route stages")
        return
    }
    #expect(s.checkpoint == .stage("small") && s.weak == "small" && s.strong == "large" && s.kind == "logistic")
    #expect(s.features == ["embedding", "length"] && s.shares.count == 9 && s.seed == 1 && s.resamples == 2000)
    #expect(s.output.hasSuffix("route-arithmetic/router.h5"))
    #expect(k.kind == "kmeans" && k.clusters == 8 && k.name == "route_kmeans")
}

@Test func routeStageMistakesAreReportedWithTheirPaths() {
    let scratch = Scratch()
    let text = """
        {"name": "r", "run_dir": "run", "stages": [
          {"type": "route", "strong": "b", "kind": "forest", "label": "graded", "features": ["embedding", "mood"], "alpha": 0,
           "calibration": 0.6, "test": 0.5, "shares": [0.1, 2]}
        ]}
        """
    guard let error = recipeError({ try scratch.load(text) }) else {
        Issue.record("the recipe has mistakes")
        return
    }
    let paths = Set(error.issues.map(\.path))
    for path in [
        "stages[0].checkpoint", "stages[0].weak", "stages[0].kind", "stages[0].label", "stages[0].features", "stages[0].alpha",
        "stages[0].test",
        "stages[0].shares",
    ] {
        #expect(paths.contains(path), "\(path) in \(error.lines)")
    }
}

@Test func theRouteStageTakesTheCreditLabel() throws {
    let scratch = Scratch()
    scratch.write("w.h5", "")
    let recipe = try scratch.load(
        #"{"name": "r", "run_dir": "run", "stages": [{"type": "route", "checkpoint": "w.h5", "weak": "a", "strong": "b", "label": "credit"}]}"#)
    guard case .route(let s) = recipe.stages[0] else {
        Issue.record("a route stage")
        return
    }
    #expect(s.label == "credit")
}

@Test func theShippedLevelsRecipeReadsItsRouteAndCascadeStages() throws {
    let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    let recipe = try Recipe.load(file: repository.appendingPathComponent("Recipes/route-levels.json").path)
    #expect(recipe.stages.map(\.type) == [.pretrain, .pretrain, .eval, .route, .route, .route, .cascade])
    guard case .cascade(let c) = recipe.stages[6] else {
        Issue.record("stage 7 is a cascade stage")
        return
    }
    #expect(c.weak == "small" && c.strong == "large" && c.m == [1, 2, 4, 8] && c.strongK == 1 && c.split == 0.5)
    #expect(c.seed == 1 && c.output.hasSuffix("route-levels/cascade.json"))
}

@Test func cascadeStageSettingsAndMistakes() throws {
    let scratch = Scratch()
    let recipe = try scratch.load(
        #"{"name": "r", "run_dir": "run", "seed": 3, "stages": [{"type": "cascade", "weak": "a", "strong": "b", "m": [1, 4], "taus": [0, 0.75], "agree": [2], "strong_k": 8, "split": 0, "parameters": {"a": 1000, "b": 9000}, "resamples": 100, "output": "c/votes.json"}]}"#
    )
    guard case .cascade(let c) = recipe.stages[0] else {
        Issue.record("a cascade stage")
        return
    }
    #expect(c.m == [1, 4] && c.taus == [0, 0.75] && c.agree == [2] && c.strongK == 8 && c.split == 0)
    #expect(c.parameters == ["a": 1000, "b": 9000] && c.resamples == 100 && c.seed == 3)
    #expect(c.output.hasSuffix("run/c/votes.json"))
    let text = """
        {"name": "r", "run_dir": "run", "stages": [
          {"type": "cascade", "strong": "b", "m": [0, 2], "taus": [0.5, 2], "agree": [1.5], "strong_k": 0, "split": 1,
           "parameters": {"a": -1}},
          {"type": "cascade", "name": "same", "weak": "a", "strong": "a", "m": []}
        ]}
        """
    guard let error = recipeError({ try scratch.load(text) }) else {
        Issue.record("the recipe has mistakes")
        return
    }
    let paths = Set(error.issues.map(\.path))
    for path in [
        "stages[0].weak", "stages[0].m", "stages[0].taus", "stages[0].agree", "stages[0].strong_k", "stages[0].split",
        "stages[0].parameters", "stages[1].strong", "stages[1].m",
    ] {
        #expect(paths.contains(path), "\(path) in \(error.lines)")
    }
}
