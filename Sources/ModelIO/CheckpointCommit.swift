// The checkpoint commit protocol (docs/architecture.md, "Files"; docs/checkpoints.md has
// the argument in full). Writing NAME in directory DIR:
//
//   1. write DIR/.NAME.tmp-PID-RANDOM completely, close it, fsync it;
//   2. if NAME.prev exists, an earlier commit was interrupted: drop it when NAME
//      verifies, else keep it as the fallback;
//   3. if NAME exists and NAME.prev does not, hard-link NAME to NAME.prev (rename where
//      the file system has no hard links); fsync DIR;
//   4. rename the temporary file over NAME; fsync DIR;
//   5. read NAME back, checking every checksum; on failure put NAME.prev back over
//      NAME (or remove NAME when there was none), fsync DIR and throw;
//   6. remove NAME.prev; fsync DIR.
//
// Invariant: from the first commit on, NAME or NAME.prev is a complete, fsynced
// checkpoint at every instant, because each name only ever changes by an atomic rename
// or link of a file that was already complete and durable. A process killed at any
// point leaves at worst an orphaned temporary file (`sweepOrphanedTemporaries`) and a
// NAME.prev, both handled by the next run.

import Foundation
import Platform

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Test seams for the commit protocol.
package struct CheckpointCommitHooks {
    /// Runs after the rename, before the read-back; a test corrupts the file here to
    /// exercise the fallback.
    package var afterRename: ((URL) throws -> Void)?
    /// Takes step 3's rename path as on a file system without hard links.
    package var withoutHardLinks: Bool

    package init(afterRename: ((URL) throws -> Void)? = nil, withoutHardLinks: Bool = false) {
        self.afterRename = afterRename
        self.withoutHardLinks = withoutHardLinks
    }
}

/// Atomically replaces the checkpoint at `url` with `contents` (see the top of this
/// file). The previous checkpoint survives until the new one has been read back and
/// verified; when verification fails it is restored and the error says so.
package func writeCheckpoint(
    _ contents: CheckpointContents, to url: URL, hooks: CheckpointCommitHooks = CheckpointCommitHooks()
) throws {
    let destination = url.path
    let directory = url.deletingLastPathComponent().path
    let previous = destination + ".prev"
    try validate(contents, path: destination)

    // 1. The complete file under a temporary name, durable before it gets the real one.
    let temporary = directory + "/" + temporaryName(for: url.lastPathComponent)
    do {
        try writeCheckpointFile(contents, path: temporary)
        try fsyncFile(temporary)
    } catch {
        _ = unlink(temporary)  // best effort: the write already failed
        throw error
    }

    // 2. A .prev left by an interrupted commit.
    if fileExists(previous), fileExists(destination), (try? verifyCheckpoint(at: url)) != nil {
        try removeFile(previous)
    }

    // 3. Keep the current checkpoint reachable as .prev.
    if fileExists(destination), !fileExists(previous) {
        if hooks.withoutHardLinks || link(destination, previous) != 0 {
            let code = hooks.withoutHardLinks ? EPERM : errno
            guard [EPERM, EXDEV, EMLINK, ENOSYS, EOPNOTSUPP].contains(code) else {
                _ = unlink(temporary)
                throw CheckpointError.system("link(2) to \(previous)", path: destination, errno: code)
            }
            // No hard links here: rename instead, so NAME is briefly absent and NAME.prev
            // is the committed checkpoint.
            if rename(destination, previous) != 0 {
                let code = errno
                _ = unlink(temporary)
                throw CheckpointError.system("rename(2) to \(previous)", path: destination, errno: code)
            }
        }
        try fsyncDirectory(directory)
    }

    // 4. Commit.
    if rename(temporary, destination) != 0 {
        let code = errno
        _ = unlink(temporary)
        throw CheckpointError.system("rename(2) of \(temporary)", path: destination, errno: code)
    }
    try fsyncDirectory(directory)

    // 5. Read back.
    do {
        try hooks.afterRename?(url)
        try verifyCheckpoint(at: url)
    } catch {
        let kept: String
        if fileExists(previous) {
            if rename(previous, destination) != 0 {
                throw CheckpointError.system(
                    "rename(2) of \(previous) back (after the new checkpoint failed to verify: \(error))",
                    path: destination, errno: errno, fix: "\(previous) holds the last good checkpoint")
            }
            kept = "the previous checkpoint was restored"
        } else {
            if unlink(destination) != 0 {
                throw CheckpointError.system(
                    "unlink(2) (after the new checkpoint failed to verify: \(error))", path: destination, errno: errno)
            }
            kept = "there was no previous checkpoint; nothing was committed"
        }
        try fsyncDirectory(directory)
        throw CheckpointError(
            .verificationFailed, path: destination,
            problem: "the checkpoint just written does not read back (\(error)); \(kept)",
            fix: "check the disk (free space, I/O errors in the kernel log) and retry")
    }

    // 6. The new checkpoint is good: drop the old one.
    if fileExists(previous) {
        try removeFile(previous)
        try fsyncDirectory(directory)
    }
}

/// Reads the checkpoint at `url`, or its `.prev` when `url` is missing or damaged
/// (left by a commit interrupted between steps 3 and 6, the only time a `.prev` exists).
/// Returns the file actually read. Throws the error of `url` when neither reads, saying
/// so when a `.prev` exists.
package func readCommittedCheckpoint(at url: URL, verify: Bool = true) throws -> (
    contents: CheckpointContents, url: URL
) {
    let previous = URL(fileURLWithPath: url.path + ".prev")
    do {
        return (try readCheckpoint(at: url, verify: verify), url)
    } catch {
        guard fileExists(previous.path) else { throw error }
        do {
            return (try readCheckpoint(at: previous, verify: verify), previous)
        } catch let fallback {
            guard var primary = error as? CheckpointError else { throw error }
            primary.fix = "the previous checkpoint \(previous.path) does not read either (\(fallback)); "
                + "remove both and rerun the stage that wrote them"
            throw primary
        }
    }
}
