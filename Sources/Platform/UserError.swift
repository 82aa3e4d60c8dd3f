// The one user-facing error contract. Every error a user can cause (a bad recipe, file,
// request or response) says which file or JSON path, what is wrong and what to do, and
// belongs to one kind; the kind alone decides the process exit code, through the one table
// below (docs/architecture.md, "Errors and exit codes"). Bugs are preconditions, not errors.

import Foundation

/// What kind of problem stopped a command.
public enum ErrorKind: String, Sendable, CaseIterable, Codable {
    /// A mistake in the command line or a recipe/config file: fix the input and run again.
    case usage
    /// A file or response that is not what it claims to be (damaged, wrong format, wrong shape).
    case badData = "bad_data"
    /// The operating system refused or failed a call (missing file, permissions, full disk).
    case io
    /// Another distill process holds the run directory.
    case busy
    /// distill itself got into a state it should not (a bug worth reporting).
    case `internal`

    /// The process exit code for this kind: the one table, documented in README.md and
    /// docs/architecture.md. 1 is left for failures of no known kind.
    public var exitCode: Int32 {
        switch self {
        case .usage: 2
        case .badData: 65
        case .internal: 70
        case .io: 74
        case .busy: 75
        }
    }
}

/// An error a user can act on: a message that names the place and the fix, and a kind.
package protocol UserFacingError: Error, CustomStringConvertible {
    var errorKind: ErrorKind { get }
    /// `errorKind.exitCode`; an error that reports another one (a failed stage) passes that
    /// one's code through.
    var exitCode: Int32 { get }
}

extension UserFacingError {
    package var exitCode: Int32 { errorKind.exitCode }
}

/// The general user error: where (a file, a JSON path, a command-line option), what is wrong,
/// what to do. Modules with richer errors (checkpoints, recipes) keep their own types and
/// conform to `UserFacingError`.
package struct UserError: UserFacingError, Sendable, Equatable {
    package var path: String
    package var problem: String
    /// Empty when there is nothing useful to say.
    package var fix: String
    package var kind: ErrorKind

    package init(path: String, problem: String, fix: String = "", kind: ErrorKind) {
        self.path = path
        self.problem = problem
        self.fix = fix
        self.kind = kind
    }

    package var errorKind: ErrorKind { kind }

    package var description: String {
        let place = path.isEmpty ? "" : "\(path): "
        return fix.isEmpty ? place + problem : "\(place)\(problem); \(fix)"
    }
}

/// The exit code for any error: its kind's code when it has one, else 1.
package func exitCode(for error: any Error) -> Int32 {
    (error as? any UserFacingError)?.exitCode ?? 1
}

/// `s` quoted in a message: newlines escaped, at most `limit` characters, then "…".
package func clip(_ s: String, _ limit: Int = 80) -> String {
    let flat = s.replacingOccurrences(of: "\n", with: "\\n")
    return flat.count <= limit ? flat : String(flat.prefix(limit)) + "…"
}
