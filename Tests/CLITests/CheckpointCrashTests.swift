// The commit protocol under SIGKILL: a child `distill-test-helper stress-checkpoint` commits
// one checkpoint path over and over; it is killed at random instants, and after every kill
// the invariant of docs/checkpoints.md must hold: PATH, or PATH.prev when PATH is
// missing, is a complete checkpoint whose every checksum verifies. The next child then
// starts on whatever the kill left (stale lock file, orphaned temporary, .prev).

import Foundation
import ModelIO
import Platform
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

@Test func aWriterKilledAtAnyInstantLeavesAValidCheckpoint() throws {
    let run = FileManager.default.temporaryDirectory.appendingPathComponent("distill-crash-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: run) }
    let checkpoint = run.appendingPathComponent("ckpt.h5")
    let previous = URL(fileURLWithPath: checkpoint.path + ".prev")
    let isTemporary = { (name: String) in name.hasPrefix(".ckpt.h5.tmp-") }

    // posix_spawn and waitpid rather than Foundation's Process, whose exit detection
    // polls and would dominate the test's time. The child's stderr goes to a file, and
    // it inherits no other descriptor: HDF5 opens files without O_CLOEXEC, and a child
    // holding a copy of another test's open checkpoint would hold HDF5's flock on it.
    let log = run.path + "-stderr.txt"
    defer { try? FileManager.default.removeItem(atPath: log) }
    // glibc 2.34+ has posix_spawn_file_actions_addclosefrom_np, which Swift's Glibc
    // module does not import; look it up by name.
    typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    let symbol = try #require(dlsym(nil, "posix_spawn_file_actions_addclosefrom_np"), "needs glibc 2.34 or later")
    let closeFrom = unsafeBitCast(symbol, to: AddCloseFrom.self)
    func spawn(_ extra: [String] = []) throws -> pid_t {
        let arguments =
            [product("distill-test-helper").path, "stress-checkpoint", checkpoint.path, "--hidden", "32"]
            + extra
        var actions = posix_spawn_file_actions_t()
        #expect(posix_spawn_file_actions_init(&actions) == 0)
        defer { posix_spawn_file_actions_destroy(&actions) }
        #expect(posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0) == 0)
        #expect(posix_spawn_file_actions_addopen(&actions, 2, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644) == 0)
        #expect(closeFrom(&actions, 3) == 0)
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, arguments[0], &actions, nil, &argv, environ)
        guard status == 0 else { throw POSIXError(POSIXErrorCode(rawValue: status) ?? .EIO) }
        return pid
    }
    /// Waits for `pid`; returns (exited normally, exit status or signal).
    func reap(_ pid: pid_t) -> (exited: Bool, code: Int32) {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        let signal = status & 0x7F
        return signal == 0 ? (true, (status >> 8) & 0xFF) : (false, signal)
    }
    func isRunning(_ pid: pid_t) -> Bool {
        var status: Int32 = 0
        return waitpid(pid, &status, WNOHANG) == 0
    }
    func fileExists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }
    func childErrors() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    var rng = SystemRandomNumberGenerator()
    var killedMidWrite = 0
    var fellBackToPrevious = 0
    for round in 0..<20 {
        // Odd rounds keep .prev by rename, as on a file system without hard links.
        let child = try spawn(round % 2 == 1 ? ["--without-hard-links"] : [])
        // Wait for the child's first temporary file (so it is past start-up, and in the
        // first round so that a first commit is under way), then kill it at a random
        // point of its commit cycle (about 30 ms in a debug build).
        let marker = ".ckpt.h5.tmp-\(child)-"
        let deadline = Date().addingTimeInterval(20)
        var running = true
        while running, Date() < deadline,
            !((try? FileManager.default.contentsOfDirectory(atPath: run.path)) ?? []).contains(where: {
                $0.hasPrefix(marker)
            })
        {
            usleep(500)
            running = isRunning(child)
        }
        if round == 0 {
            while running, Date() < deadline, !FileManager.default.fileExists(atPath: checkpoint.path) {
                usleep(500)
                running = isRunning(child)
            }
        }
        usleep(UInt32.random(in: 0...40_000, using: &rng))
        #expect(running, "round \(round): the writer stopped by itself: \(childErrors())")
        guard running else { break }
        kill(child, SIGKILL)
        let ended = reap(child)
        #expect(!ended.exited && ended.code == SIGKILL, "round \(round): \(childErrors())")

        let names = try FileManager.default.contentsOfDirectory(atPath: run.path)
        if names.contains(where: isTemporary) { killedMidWrite += 1 }
        if fileExists(checkpoint.path) {
            #expect(throws: Never.self, "round \(round): \(checkpoint.path) does not verify") {
                try verifyCheckpoint(at: checkpoint)
            }
        } else {
            fellBackToPrevious += 1
            #expect(throws: Never.self, "round \(round): the checkpoint is missing and .prev does not verify") {
                try verifyCheckpoint(at: previous)
            }
        }
        let survivor = try readCheckpointSummary(at: fileExists(checkpoint.path) ? checkpoint : previous)
        #expect(survivor.step >= 1 && survivor.metadata["stage"] == "stress")
    }
    // Kills must have landed inside commits, or the test proved nothing.
    #expect(killedMidWrite > 0, "no kill landed while a temporary file existed")

    // A clean run afterwards sweeps what the kills left and ends with one checkpoint.
    let ended = reap(try spawn(["--count", "2"]))
    #expect(ended.exited && ended.code == 0, "\(childErrors())")
    let names = try FileManager.default.contentsOfDirectory(atPath: run.path).sorted()
    #expect(
        names == [".distill.lock", "ckpt.h5"], "kills mid-write: \(killedMidWrite), fallbacks: \(fellBackToPrevious)")
    #expect(try readCheckpoint(at: checkpoint).step == 2)
}
