import Foundation
import Platform
import Testing

@Suite struct AtomicFileTests {
    private func folder() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("platform-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func replacesTheFileAndLeavesNoTemporary() throws {
        let dir = try folder()
        let path = dir + "/state.json"
        try writeAtomically("old", to: path)
        try writeAtomically("new", to: path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "new")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["state.json"])
    }

    @Test func aMissingFolderIsAnIOErrorNamingTheFile() throws {
        let dir = try folder()
        #expect {
            try writeAtomically("x", to: dir + "/absent/state.json")
        } throws: { error in
            guard let e = error as? UserError else { return false }
            return e.kind == .io && e.path.hasPrefix(dir + "/absent/") && e.problem.contains("open(2)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
    }

    @Test func orphanedTemporariesOfDeadWritersAreRemovedOnly() throws {
        let dir = try folder()
        // pid 2^22 + 1 is above Linux's pid_max default, so no process has it.
        let orphan = ".base.h5.tmp-4194305-0000abcd", mine = temporaryName(for: "base.h5")
        for name in [orphan, mine, "base.h5"] { try Data().write(to: URL(fileURLWithPath: dir + "/" + name)) }
        let removed = try sweepOrphanedTemporaries(in: URL(fileURLWithPath: dir))
        #expect(removed.map(\.lastPathComponent) == [orphan])
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: dir)) == [mine, "base.h5"])
        #expect(temporaryFileWriter(mine) == getpid() && temporaryFileWriter("base.h5") == nil)
    }
}

@Suite struct SubprocessTests {
    @Test func inputOnStdinAndTheExitStatus() throws {
        var p = Subprocess(["sh", "-c", "read x; echo got $x; echo oops >&2; exit 3"], timeout: 10)
        p.input = "hello\n"
        let o = try p.run().get()
        #expect(o.ending == .exited(3) && o.stdout == "got hello\n" && o.stderr == "oops\n")
    }

    @Test func inputAsAFileArgumentNamedInTheEnvironment() throws {
        var p = Subprocess(["sh", "-c", "cat \"$1\"; test \"$1\" = \"$INPUT_FILE\" && echo same; echo $EXTRA", "sh"], timeout: 10)
        p.input = "text"
        p.delivery = .fileArgument
        p.inputFileVariable = "INPUT_FILE"
        p.environment = ["EXTRA": "set"]
        p.mergeOutput = true
        let o = try p.run().get()
        #expect(o.ending == .exited(0) && o.stdout == "textsame\nset\n" && o.stderr.isEmpty)
    }

    @Test func aProgramPastItsTimeIsStopped() throws {
        let started = Date()
        let o = try Subprocess(["sleep", "30"], timeout: 0.3).run().get()
        #expect(o.ending == .timedOut)
        #expect(Date().timeIntervalSince(started) < 10)
    }

    @Test func aMissingProgramExits127() throws {
        let o = try Subprocess(["distill-no-such-program"], timeout: 10).run().get()
        #expect(o.ending == .exited(127))
    }

    @Test func lastLinesKeepsTheTail() {
        #expect(Subprocess.lastLines("a\n\nb\nc\nd\n") == "b | c | d")
        #expect(Subprocess.formatSeconds(5) == "5 s" && Subprocess.formatSeconds(0.25) == "0.25 s")
    }
}

@Suite struct ErrorTableTests {
    /// The documented table (README.md "Exit codes", docs/architecture.md).
    @Test func exitCodes() {
        let table: [ErrorKind: Int32] = [.usage: 2, .badData: 65, .internal: 70, .io: 74, .busy: 75]
        for kind in ErrorKind.allCases { #expect(kind.exitCode == table[kind]) }
        #expect(exitCode(for: UserError(path: "r.json", problem: "p", kind: .busy)) == 75)
        struct Other: Error {}
        #expect(exitCode(for: Other()) == 1)
    }

    @Test func messageNamesPlaceProblemAndFix() {
        #expect(UserError(path: "a.json", problem: "bad", fix: "fix it", kind: .usage).description == "a.json: bad; fix it")
        #expect(UserError(path: "", problem: "bad", kind: .io).description == "bad")
    }

    @Test func digestsAsHex() throws {
        #expect(hexDigits(UInt64(0xab)) == "00000000000000ab" && hexDigits(UInt32(0xab)) == "000000ab")
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("digest-\(UUID().uuidString)").path
        try Data("abc".utf8).write(to: URL(fileURLWithPath: path))
        #expect(try fileDigest(path) == hexDigits(XXH64.hash(Array("abc".utf8))))
        #expect(throws: UserError.self) { try fileDigest(path + ".absent") }
    }

    /// FIPS 180-4's examples, lengths on both sides of the padding boundaries (55, 56, 64
    /// bytes), a message fed in uneven pieces, and a file, against Python's hashlib.
    @Test func sha256KnownAnswers() throws {
        func sha(_ s: String) -> String {
            var h = SHA256()
            h.update(Array(s.utf8))
            return h.hex
        }
        #expect(sha("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(sha("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            sha("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(sha(String(repeating: "a", count: 55)) == "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318")
        #expect(sha(String(repeating: "a", count: 56)) == "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a")
        #expect(sha(String(repeating: "a", count: 64)) == "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb")
        let long = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var pieces = SHA256()
        var i = 0
        for size in [1, 63, 2, 64, 100, 7] + Array(repeating: 129, count: 10) where i < long.count {
            pieces.update(long[i..<min(i + size, long.count)])
            i += size
        }
        pieces.update(long[min(i, long.count)...])
        var whole = SHA256()
        whole.update(long)
        #expect(pieces.hex == whole.hex)
        #expect(whole.hex == "945acdf575d6a2430bf4d6163e1d03b4b0b896fcef107c8b24bf7ff07a621fa3")
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sha-\(UUID().uuidString)").path
        try Data("abc".utf8).write(to: URL(fileURLWithPath: path))
        #expect(try fileSHA256(path) == sha("abc"))
    }

    /// The SHA extensions' blocks (where this CPU has them) give the Swift rounds' digests,
    /// for every length up to four blocks and past, fed whole and in pieces.
    @Test func sha256ExtensionsMatchTheRounds() {
        var rng = SystemRandomNumberGenerator()
        let data = (0..<5000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        for n in Array(0...260) + [1000, 4097, 5000] {
            var fast = SHA256(), rounds = SHA256(portable: true)
            fast.update(data[0..<n])
            rounds.update(data[0..<n])
            #expect(fast.hex == rounds.hex, "\(n) bytes")
        }
        var pieces = SHA256()
        var i = 0
        while i < data.count {
            let size = Int.random(in: 1...300, using: &rng)
            pieces.update(data[i..<min(i + size, data.count)])
            i += size
        }
        var rounds = SHA256(portable: true)
        rounds.update(data)
        #expect(pieces.hex == rounds.hex)
        #if arch(x86_64)
            if SHA256.hasExtensions { print("SHA-256: the CPU's SHA extensions are in use") }
        #endif
    }
}

@Suite struct RunDirectoryLockTests {
    @Test func aSecondRunOnTheSameDirectoryIsRefused() throws {
        do {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lock-\(UUID().uuidString)")
            let run = directory.appendingPathComponent("run")
            let lock = try RunDirectoryLock(directory: run)
            // flock belongs to an open file description, so a second open in this same
            // process conflicts just as another process would.
            var refusal: UserError?
            do { _ = try RunDirectoryLock(directory: run) } catch { refusal = error }
            let text = refusal?.description ?? ""
            #expect(text.contains("another distill run (pid \(getpid())"))
            #expect(text.contains(run.path))
            #expect(text.contains("wait for it or choose another run directory"))
            #expect(refusal?.kind == .busy)

            lock.release()
            let again = try RunDirectoryLock(directory: run)
            again.release()
            do { _ = try RunDirectoryLock(directory: run) }  // released by deinit
            #expect(throws: Never.self) { _ = try RunDirectoryLock(directory: run) }
        }
    }
}
