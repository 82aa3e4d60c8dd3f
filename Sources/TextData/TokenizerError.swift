/// Errors raised while reading, validating or writing a tokenizer.
///
/// Every case names where the problem is: a file position for malformed JSON, a JSON path
/// such as `model.merges[12]` for content distill does not accept.

import Platform
package enum TokenizerError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The bytes are not valid JSON; `line` and `column` are 1-based.
    case malformedJSON(line: Int, column: Int, reason: String)
    /// A component is valid for Hugging Face `tokenizers` but outside distill's byte-level BPE family.
    case unsupported(path: String, found: String, hint: String)
    /// A value has the wrong type or is inconsistent (missing merge token, duplicate id, ...).
    case invalid(path: String, reason: String)
    /// A file could not be read or written.
    case io(path: String, reason: String)
    /// Training settings that cannot produce a tokenizer.
    case badTrainingConfig(reason: String)

    package var description: String {
        switch self {
        case .malformedJSON(let line, let column, let reason):
            return "malformed JSON at line \(line), column \(column): \(reason)"
        case .unsupported(let path, let found, let hint):
            return "\(path): \(found) is not supported; \(hint)"
        case .invalid(let path, let reason):
            return "\(path): \(reason)"
        case .io(let path, let reason):
            return "\(path): \(reason)"
        case .badTrainingConfig(let reason):
            return "BPE training: \(reason)"
        }
    }
}

extension TokenizerError: UserFacingError {
    package var errorKind: ErrorKind {
        if case .io = self { return .io }
        return .badData
    }
}
