// The checkpoint commit protocol (DESIGN.md, reliability model; docs/checkpoints.md has
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
/// (left by a commit interrupted between steps 3 and 6). Returns the file actually
/// read. Throws the error of `url` when neither reads.
package func readCommittedCheckpoint(at url: URL, verify: Bool = true) throws -> (
    contents: CheckpointContents, url: URL
) {
    let previous = URL(fileURLWithPath: url.path + ".prev")
    do {
        return (try readCheckpoint(at: url, verify: verify), url)
    } catch {
        guard fileExists(previous.path), let contents = try? readCheckpoint(at: previous, verify: verify) else {
            throw error
        }
        return (contents, previous)
    }
}

// MARK: - Temporary files

/// ".NAME.tmp-PID-RANDOM": hidden, in the destination's directory (rename cannot cross
/// file systems), unique per writer.
func temporaryName(for name: String) -> String {
    let random = String(UInt32.random(in: .min ... .max), radix: 16)
    return ".\(name).tmp-\(getpid())-" + String(repeating: "0", count: 8 - random.count) + random
}

/// The writer's pid if `name` is a checkpoint temporary file, else nil.
func temporaryFileWriter(_ name: String) -> Int32? {
    guard name.hasPrefix("."), let marker = name.range(of: ".tmp-", options: .backwards),
        marker.lowerBound > name.index(after: name.startIndex)
    else { return nil }
    let parts = name[marker.upperBound...].split(separator: "-", omittingEmptySubsequences: false)
    guard parts.count == 2, parts[1].count == 8, parts[1].allSatisfy(\.isHexDigit), let pid = Int32(parts[0]), pid > 0
    else { return nil }
    return pid
}

/// Removes checkpoint temporary files in `directory` whose writer is no longer running
/// (killed mid-write) and returns them. Files of live processes, including this one,
/// are left alone. Call it at start-up, after taking the run directory's lock.
@discardableResult
package func sweepOrphanedTemporaries(in directory: URL) throws -> [URL] {
    let names: [String]
    do {
        names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
    } catch {
        throw CheckpointError(
            .io, path: directory.path, problem: "cannot list the directory: \(error.localizedDescription)")
    }
    var removed: [URL] = []
    for name in names.sorted() {
        guard let pid = temporaryFileWriter(name), pid != getpid() else { continue }
        if kill(pid, 0) == 0 || errno == EPERM { continue }  // the writer is alive
        let path = directory.appendingPathComponent(name).path
        if unlink(path) != 0 {
            let code = errno
            if code == ENOENT { continue }
            throw CheckpointError.system("unlink(2) of an orphaned temporary file", path: path, errno: code)
        }
        removed.append(URL(fileURLWithPath: path))
    }
    if !removed.isEmpty { try fsyncDirectory(directory.path) }
    return removed
}

// MARK: - System calls, each checked where it happens

func fileExists(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) == 0
}

func removeFile(_ path: String) throws {
    if unlink(path) != 0, errno != ENOENT {
        throw CheckpointError.system("unlink(2)", path: path, errno: errno)
    }
}

/// Opens `path` with `flags`, runs `body` on the descriptor, closes it.
private func withDescriptor(_ path: String, flags: Int32, call: String, _ body: (Int32) throws -> Void) throws {
    let descriptor = open(path, flags | O_CLOEXEC)
    if descriptor < 0 { throw CheckpointError.system("open(2) for \(call)", path: path, errno: errno) }
    defer { close(descriptor) }
    try body(descriptor)
}

/// Forces the file's data and metadata to stable storage.
func fsyncFile(_ path: String) throws {
    try withDescriptor(path, flags: O_RDONLY, call: "fsync") { descriptor in
        if fsync(descriptor) != 0 {
            throw CheckpointError.system("fsync(2)", path: path, errno: errno, fix: "the disk may be full or failing")
        }
    }
}

/// Forces the directory's entries (the names just created, renamed or removed) to
/// stable storage.
func fsyncDirectory(_ path: String) throws {
    try withDescriptor(path.isEmpty ? "." : path, flags: O_RDONLY | O_DIRECTORY, call: "fsync") { descriptor in
        // Some file systems cannot fsync a directory (EINVAL); their renames are
        // then as durable as they get.
        if fsync(descriptor) != 0, errno != EINVAL {
            throw CheckpointError.system("fsync(2) of the directory", path: path, errno: errno)
        }
    }
}
