// The `route` stage's reader: the shipped recipe's stages, and every mistake reported with its path.

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
