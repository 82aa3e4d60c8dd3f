// Recipe problems as values: every problem names its JSON path and, when known, where the
// value was written (file line:column or the --set argument), so a recipe with five mistakes
// is fixed in one edit instead of five runs.

import JSON
import Platform

/// All problems found in a recipe. Thrown once, after the whole recipe has been read.
package struct RecipeError: UserFacingError, Sendable, Equatable {
    /// The recipe file as the user named it, or nil for a recipe given as text.
    package var file: String?
    package var issues: [JSONIssue]

    package init(file: String?, issues: [JSONIssue]) {
        self.file = file
        self.issues = issues
    }

    /// Recipe problems are configuration mistakes: exit code 2.
    package var errorKind: ErrorKind { .usage }

    package var description: String {
        let head = issues.count == 1 ? "1 problem" : "\(issues.count) problems"
        return "\(file ?? "recipe"): \(head)\n" + issues.map { "  " + $0.formatted(file: file) }.joined(separator: "\n")
    }
}
