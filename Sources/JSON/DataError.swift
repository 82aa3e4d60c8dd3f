/// Errors raised while reading corpora and datasets, caching tokens and cutting batches.
///
/// Every case names where the problem is (a file, and a line and column when one applies) and
/// how to fix it. `kind` tells the two failure families apart so that a caller can map bad
/// data to exit code 65 and I/O failures to 74 without parsing messages.

import Platform
package enum DataError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The content of a file is unusable: invalid JSON, a line that is not an object, a missing
    /// or mistyped field, invalid UTF-8. `line` and `column` are 1-based; `column` counts
    /// Unicode scalars, as editors do.
    case malformed(file: String, line: Int, column: Int, reason: String, hint: String)
    /// The corpus as a whole cannot serve the requested batches (too few tokens, no documents).
    case insufficient(reason: String, hint: String)
    /// A setting that cannot work (unknown format, empty path list, bad sizes).
    case badConfig(reason: String, hint: String)
    /// A file or directory could not be read, written or renamed.
    case io(path: String, reason: String)

    /// The families callers distinguish; re-running without a change only helps for `.io`.
    package enum Kind: Sendable, Equatable {
        /// The data is wrong or too small for the settings (exit 65).
        case badData
        /// A setting is wrong (exit 2).
        case badConfig
        /// The file system failed (exit 74).
        case io
    }

    package var kind: Kind {
        switch self {
        case .malformed, .insufficient: return .badData
        case .badConfig: return .badConfig
        case .io: return .io
        }
    }

    package var description: String {
        switch self {
        case .malformed(let file, let line, let column, let reason, let hint):
            return "\(file):\(line):\(column): \(reason)" + (hint.isEmpty ? "" : "; \(hint)")
        case .insufficient(let reason, let hint):
            return "\(reason); \(hint)"
        case .badConfig(let reason, let hint):
            return "\(reason); \(hint)"
        case .io(let path, let reason):
            return "\(path): \(reason)"
        }
    }
}

extension DataError: UserFacingError {
    package var errorKind: ErrorKind {
        switch kind {
        case .badData: .badData
        case .badConfig: .usage
        case .io: .io
        }
    }
}
