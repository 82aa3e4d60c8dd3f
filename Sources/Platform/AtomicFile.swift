// Files that readers see whole or not at all. Every file distill writes for someone else to
// read (checkpoints, run.json, sample outputs, sweep tables, reports, exports) goes through
// `writeAtomically` or, for checkpoints, the commit protocol built on the same calls:
//
//   1. write DIR/.NAME.tmp-PID-RANDOM completely and fsync it;
//   2. rename it over DIR/NAME (atomic within one file system);
//   3. fsync DIR, so the new name survives a power cut.
//
// A process killed at any instant leaves NAME old or new, and at worst an orphaned temporary
// file, which `sweepOrphanedTemporaries` removes once its writer is gone. Every system call is
// checked where it happens and fails as a `UserError` of kind `.io` naming the call and path.

import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Replaces the file at `path` with what `body` writes through the function it is given:
/// temporary file, fsync, rename, fsync the folder. When `body` throws, the temporary file is
/// removed and the error passes through; `path` is untouched.
package func writeAtomically(
    to path: String, _ body: (_ write: (UnsafeRawBufferPointer) throws -> Void) throws -> Void
) throws {
    let folder = (path as NSString).deletingLastPathComponent
    let temporary = (folder.isEmpty ? "" : folder + "/") + temporaryName(for: (path as NSString).lastPathComponent)
    let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    guard descriptor >= 0 else {
        throw systemError("open(2) of a temporary file", path: temporary, errno: errno, fix: "check that the folder exists and is writable")
    }
    var open = true
    do {
        try body { bytes in
            var offset = 0
            while offset < bytes.count {
                let n = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw systemError("write(2)", path: temporary, errno: errno, fix: "the disk may be full")
                }
                offset += n
            }
        }
        if fsync(descriptor) != 0 {
            throw systemError("fsync(2)", path: temporary, errno: errno, fix: "the disk may be full or failing")
        }
        open = false
        if close(descriptor) != 0 { throw systemError("close(2)", path: temporary, errno: errno) }
        if rename(temporary, path) != 0 { throw systemError("rename(2) of \(temporary)", path: path, errno: errno) }
    } catch {
        if open { close(descriptor) }
        _ = unlink(temporary)  // best effort: the write already failed
        throw error
    }
    try fsyncDirectory(folder)
}

/// Replaces the file at `path` with `data` (see `writeAtomically(to:_:)`).
package func writeAtomically(_ data: Data, to path: String) throws(UserError) {
    do {
        try writeAtomically(to: path) { write in try data.withUnsafeBytes { try write($0) } }
    } catch let error as UserError {
        throw error
    } catch {
        preconditionFailure("only the writer throws here: \(error)")
    }
}

/// `writeAtomically` for text (UTF-8).
package func writeAtomically(_ text: String, to path: String) throws(UserError) {
    try writeAtomically(Data(text.utf8), to: path)
}

/// `writeAtomically` to a file URL.
package func writeAtomically(_ data: Data, to url: URL) throws(UserError) {
    try writeAtomically(data, to: url.path)
}

/// Creates `url` and its parents when missing.
package func createDirectory(_ url: URL) throws(UserError) {
    try createDirectory(url.path)
}

/// Creates `path` and its parents when missing.
package func createDirectory(_ path: String) throws(UserError) {
    do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
        throw UserError(path: path, problem: "cannot create the folder (\(error.localizedDescription))", fix: "check the permissions", kind: .io)
    }
}

/// Why `path` is not a regular file to read (a FIFO, a device, a socket, a folder), or nil for
/// a regular file or a missing path (whose open then says so). Checked before opening: opening
/// a FIFO waits for a writer, possibly forever.
package func notARegularFile(_ path: String) -> String? {
    var info = stat()
    guard stat(path, &info) == 0 else { return nil }
    switch info.st_mode & S_IFMT {
    case S_IFREG: return nil
    case S_IFDIR: return "is a folder, not a file"
    case S_IFIFO: return "is a FIFO (named pipe), not a regular file; reading it could wait forever"
    case S_IFCHR, S_IFBLK: return "is a device, not a regular file"
    case S_IFSOCK: return "is a socket, not a regular file"
    default: return "is not a regular file"
    }
}

/// The bytes of `path`.
package func readFile(_ path: String) throws(UserError) -> Data {
    if let problem = notARegularFile(path) {
        throw UserError(path: path, problem: problem, fix: "give a regular file", kind: .usage)
    }
    guard let data = FileManager.default.contents(atPath: path) else {
        let exists = FileManager.default.fileExists(atPath: path)
        throw UserError(
            path: path, problem: exists ? "cannot read the file" : "no such file",
            fix: exists ? "check its permissions" : "check the path", kind: .io)
    }
    return data
}

// MARK: - Temporary files

/// ".NAME.tmp-PID-RANDOM": hidden, in the destination's directory (rename cannot cross
/// file systems), unique per writer.
package func temporaryName(for name: String) -> String {
    let random = String(UInt32.random(in: .min ... .max), radix: 16)
    return ".\(name).tmp-\(getpid())-" + String(repeating: "0", count: 8 - random.count) + random
}

/// The writer's pid if `name` is a temporary file of `temporaryName`, else nil.
package func temporaryFileWriter(_ name: String) -> Int32? {
    guard name.hasPrefix("."), let marker = name.range(of: ".tmp-", options: .backwards),
        marker.lowerBound > name.index(after: name.startIndex)
    else { return nil }
    let parts = name[marker.upperBound...].split(separator: "-", omittingEmptySubsequences: false)
    guard parts.count == 2, parts[1].count == 8, parts[1].allSatisfy(\.isHexDigit), let pid = Int32(parts[0]), pid > 0
    else { return nil }
    return pid
}

/// Removes temporary files and folders (a staged export) in `directory` whose writer is no
/// longer running (killed mid-write) and returns them. Those of live processes, including this
/// one, are left alone. Call it at start-up, after taking the run directory's lock.
@discardableResult
package func sweepOrphanedTemporaries(in directory: URL) throws(UserError) -> [URL] {
    let names: [String]
    do {
        names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
    } catch {
        throw UserError(path: directory.path, problem: "cannot list the directory: \(error.localizedDescription)", kind: .io)
    }
    var removed: [URL] = []
    for name in names.sorted() {
        guard let pid = temporaryFileWriter(name), pid != getpid() else { continue }
        if kill(pid, 0) == 0 || errno == EPERM { continue }  // the writer is alive
        let path = directory.appendingPathComponent(name).path
        var info = stat()
        if lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR {
            do { try FileManager.default.removeItem(atPath: path) } catch {
                throw UserError(path: path, problem: "cannot remove an orphaned temporary folder (\(error.localizedDescription))", kind: .io)
            }
        } else if unlink(path) != 0 {
            let code = errno
            if code == ENOENT { continue }
            throw systemError("unlink(2) of an orphaned temporary file", path: path, errno: code)
        }
        removed.append(URL(fileURLWithPath: path))
    }
    if !removed.isEmpty { try fsyncDirectory(directory.path) }
    return removed
}

// MARK: - System calls, each checked where it happens

/// A failed system call as a user error: names the call, the path and errno's message.
package func systemError(_ call: String, path: String, errno code: Int32, fix: String = "") -> UserError {
    UserError(path: path, problem: "\(call) failed: \(String(cString: strerror(code)))", fix: fix, kind: .io)
}

/// Whether anything (a file, folder or link) is at `path`.
package func fileExists(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) == 0
}

/// Removes `path`; a missing file is not an error.
package func removeFile(_ path: String) throws(UserError) {
    if unlink(path) != 0, errno != ENOENT {
        throw systemError("unlink(2)", path: path, errno: errno)
    }
}

/// Opens `path` with `flags`, runs `body` on the descriptor, closes it.
private func withDescriptor(
    _ path: String, flags: Int32, call: String, _ body: (Int32) throws(UserError) -> Void
) throws(UserError) {
    let descriptor = open(path, flags | O_CLOEXEC)
    if descriptor < 0 { throw systemError("open(2) for \(call)", path: path, errno: errno) }
    defer { close(descriptor) }
    try body(descriptor)
}

/// Forces the file's data and metadata to stable storage.
package func fsyncFile(_ path: String) throws(UserError) {
    try withDescriptor(path, flags: O_RDONLY, call: "fsync") { (descriptor) throws(UserError) in
        if fsync(descriptor) != 0 {
            throw systemError("fsync(2)", path: path, errno: errno, fix: "the disk may be full or failing")
        }
    }
}

/// Forces the directory's entries (the names just created, renamed or removed) to
/// stable storage.
package func fsyncDirectory(_ path: String) throws(UserError) {
    try withDescriptor(path.isEmpty ? "." : path, flags: O_RDONLY | O_DIRECTORY, call: "fsync") { (descriptor) throws(UserError) in
        // Some file systems cannot fsync a directory (EINVAL); their renames are
        // then as durable as they get.
        if fsync(descriptor) != 0, errno != EINVAL {
            throw systemError("fsync(2) of the directory", path: path, errno: errno)
        }
    }
}
