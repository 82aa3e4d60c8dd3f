import Foundation
import Platform
import Recipe

/// A scratch folder removed when the value goes away.
final class Scratch {
    let path: String

    init() {
        path = (NSTemporaryDirectory() as NSString).appendingPathComponent("distill-recipe-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    @discardableResult
    func write(_ name: String, _ text: String) -> String {
        let full = (path as NSString).appendingPathComponent(name)
        try! FileManager.default.createDirectory(
            atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try! Data(text.utf8).write(to: URL(fileURLWithPath: full))
        return full
    }

    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    func load(_ text: String, _ overrides: [String] = []) throws(RecipeError) -> Recipe {
        try Recipe.load(text: text, file: "recipe.json", baseDirectory: path, overrides: overrides)
    }
}

/// 1-based line:column where `needle` first occurs in `text` (columns in characters).
func position(of needle: String, in text: String) -> String {
    guard let range = text.range(of: needle) else { return "not found" }
    let before = text[..<range.lowerBound]
    let line = before.filter { $0 == "\n" }.count + 1
    let lineStart = before.lastIndex(of: "\n").map { before.index(after: $0) } ?? before.startIndex
    return "\(line):\(before[lineStart...].count + 1)"
}

extension RecipeError {
    /// The formatted lines, one per issue.
    var lines: [String] { issues.map { $0.formatted(file: file) } }
}

/// Catches the RecipeError thrown by `body`, or nil when it succeeds.
func recipeError(_ body: () throws -> Recipe) -> RecipeError? {
    do {
        _ = try body()
        return nil
    } catch {
        return error as? RecipeError
    }
}
