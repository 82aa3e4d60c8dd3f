// One distill run per run directory. Two runs writing the same checkpoints would each
// commit over the other's; the second is refused instead, naming the first.
//
// The lock is flock(2) on <rundir>/.distill.lock, taken without blocking. The kernel
// drops it when the holder exits, however it exits, so a lock file left by a killed run
// blocks nobody; the pid, host and start time written into it only make the refusal
// message useful. The file itself is never removed (removing it would let two
// processes lock two different files of the same name). flock is advisory and local:
// it does not protect a run directory shared over NFS between machines.

import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

package final class RunDirectoryLock {
    package static let fileName = ".distill.lock"

    package let directory: URL
    package var lockFile: URL { directory.appendingPathComponent(Self.fileName) }
    /// -1 once released.
    private var descriptor: Int32

    /// Takes the lock on `directory` (created if missing), or throws a `UserError` of kind
    /// `.busy` naming the process that holds it.
    package init(directory: URL) throws(UserError) {
        self.directory = directory
        let path = directory.appendingPathComponent(Self.fileName).path
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw UserError(
                path: directory.path, problem: "cannot create the run directory: \(error.localizedDescription)", kind: .io)
        }
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if descriptor < 0 { throw systemError("open(2) of the lock file", path: path, errno: errno) }
        if flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            let holder = Self.readHolder(descriptor)
            close(descriptor)
            if code == EWOULDBLOCK {
                let who =
                    holder.map { "pid \($0.pid)\($0.host.isEmpty ? "" : " on \($0.host)"), started \($0.started)" }
                    ?? "pid unknown"
                throw UserError(
                    path: directory.path, problem: "another distill run (\(who)) is using \(directory.path)",
                    fix: "wait for it or choose another run directory", kind: .busy)
            }
            throw systemError(
                "flock(2) of the lock file", path: path, errno: code,
                fix: "the file system may not support locking; use a local run directory")
        }
        self.descriptor = descriptor
        let record =
            "pid=\(getpid())\nhost=\(Self.hostName())\n"
            + "started=\(ISO8601DateFormatter().string(from: Date()))\n"
        do throws(UserError) {
            if ftruncate(descriptor, 0) != 0 {
                throw systemError("ftruncate(2) of the lock file", path: path, errno: errno)
            }
            let bytes = Array(record.utf8)
            let written = bytes.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
            if written != bytes.count {
                throw systemError("pwrite(2) of the lock file", path: path, errno: written < 0 ? errno : EIO)
            }
        } catch {
            release()
            throw error
        }
    }

    deinit { release() }

    /// Releases the lock (idempotent). The file stays, emptied.
    package func release() {
        guard descriptor >= 0 else { return }
        _ = ftruncate(descriptor, 0)  // best effort: the record is only informative
        close(descriptor)  // drops the flock
        descriptor = -1
    }

    /// gethostname(2), without the name-service lookups ProcessInfo.hostName may make.
    private static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The holder recorded in the lock file, nil when it cannot be parsed (for example
    /// while the holder is still writing it).
    private static func readHolder(_ descriptor: Int32) -> (pid: Int32, host: String, started: String)? {
        var buffer = [UInt8](repeating: 0, count: 1024)
        let count = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        var fields: [String: String] = [:]
        for line in String(decoding: buffer.prefix(count), as: UTF8.self).split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            fields[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        guard let pid = fields["pid"].flatMap({ Int32($0) }) else { return nil }
        return (pid, fields["host"] ?? "", fields["started"] ?? "unknown time")
    }
}

@available(*, unavailable, message: "a RunDirectoryLock belongs to the run that took it")
extension RunDirectoryLock: Sendable {}
