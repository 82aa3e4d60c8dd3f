// Errors of the checkpoint layer: reading, writing, committing and locking run
// directories. Each names the file, what is wrong and what to do about it.

import Formats
import Platform

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

package struct CheckpointError: Error, CustomStringConvertible, Sendable {
    package enum Kind: Sendable, Hashable {
        /// The operating system refused or failed a call (open, write, fsync, rename,
        /// flock, ...), or the file is missing or unreadable.
        case io
        /// The file is not HDF5, or is HDF5 but not a distill checkpoint.
        case notCheckpoint
        /// Written by a newer distill with a format version this build cannot read.
        case newerVersion
        /// A distill checkpoint whose contents are damaged or inconsistent.
        case malformed
        /// Tensors missing, unexpected or of the wrong shape for the model config.
        case shapeMismatch
        /// A dataset's bytes do not match its recorded checksum.
        case checksumMismatch
        /// The contents handed to `writeCheckpoint` are inconsistent (a caller bug or a
        /// name HDF5 cannot hold); nothing was written.
        case invalidContents
        /// A freshly committed checkpoint did not read back; the previous one was kept.
        case verificationFailed
        /// Another process holds the run directory's lock.
        case locked
        /// An adapter was given a base model other than the one it was trained on.
        case wrongBase
    }

    /// How the command line reports it: `.io` exits 74, `.data` 65; `.busy` is a
    /// second run on a run directory in use; `.invalidContents` is a bug in the caller.
    package enum Category: Sendable, Hashable {
        case io, data, busy, invalidContents
    }

    package var kind: Kind
    /// The checkpoint, temporary file, directory or lock file concerned.
    package var path: String
    /// What is wrong, naming the tensor, attribute or system call.
    package var problem: String
    /// What to do about it, when there is something to say.
    package var fix: String?

    package init(_ kind: Kind, path: String, problem: String, fix: String? = nil) {
        self.kind = kind
        self.path = path
        self.problem = problem
        self.fix = fix
    }

    package var category: Category {
        switch kind {
        case .io, .verificationFailed: .io
        case .notCheckpoint, .newerVersion, .malformed, .shapeMismatch, .checksumMismatch, .wrongBase: .data
        case .locked: .busy
        case .invalidContents: .invalidContents
        }
    }

    package var description: String {
        var text = "\(path): \(problem)"
        if let fix { text += "; \(fix)" }
        return text
    }

    /// An HDF5 failure while reading (`reading`) or writing a checkpoint at `path`.
    static func from(_ error: HDF5Error, path: String, reading: Bool) -> CheckpointError {
        // HDF5Error's description starts with the file name, which ours already shows.
        var problem = Substring(error.description)
        if !error.file.isEmpty, problem.hasPrefix(error.file) {
            problem = problem.dropFirst(error.file.count).drop { $0 == ":" || $0 == " " }
        }
        return fromHDF5(error, problem: String(problem), path: path, reading: reading)
    }

    private static func fromHDF5(_ error: HDF5Error, problem: String, path: String, reading: Bool) -> CheckpointError {
        switch error.kind {
        case .fileNotFound:
            return CheckpointError(.io, path: path, problem: problem, fix: "check the path")
        case .permissionDenied, .fileLocked, .readOnly:
            return CheckpointError(.io, path: path, problem: problem)
        case .notHDF5File:
            return CheckpointError(
                .notCheckpoint, path: path, problem: "not a distill checkpoint: \(error.hint)",
                fix: "pass a .h5 checkpoint written by distill")
        case .checksumMismatch:
            return CheckpointError(
                reading ? .checksumMismatch : .io, path: path, problem: problem,
                fix: "restore it from a copy, or remove it and rerun the stage that wrote it")
        case .library, .alreadyExists, .invalidArgument:
            return CheckpointError(reading ? .malformed : .io, path: path, problem: problem)
        case .damaged, .notFound, .externalLink, .typeMismatch, .shapeMismatch, .tooLarge:
            return CheckpointError(
                reading ? .malformed : .io, path: path, problem: problem,
                fix: reading ? "the file is damaged or was not written by distill; restore it from a copy, or remove it and rerun the stage that wrote it" : nil)
        }
    }

    /// A failed system call: names the call, the path and errno's message.
    static func system(_ call: String, path: String, errno code: Int32, fix: String? = nil) -> CheckpointError {
        CheckpointError(.io, path: path, problem: "\(call) failed: \(String(cString: strerror(code)))", fix: fix)
    }
}

extension CheckpointError: UserFacingError {
    package var errorKind: ErrorKind {
        switch category {
        case .io: .io
        case .data: .badData
        case .busy: .busy
        case .invalidContents: .internal
        }
    }
}
