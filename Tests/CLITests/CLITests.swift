// The `distill` binary as a user runs it: exit codes, --help on every subcommand, and the
// doctor's view of the BLAS kernel, including the switch to a kernel distill chooses.

import Core
import Foundation
import ModelIO
import Platform
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// An executable built next to the test bundle: `distill` or `distill-test-helper`.
func product(_ name: String) -> URL {
    // The test runner lives in the products folder next to the executables.
    URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        .appendingPathComponent(name)
}

/// What a launched executable did: its exit status and everything it printed.
typealias ProcessResult = (status: Int32, out: String, err: String)

/// Runs the distill executable built next to the test bundle; `input` is its standard input.
func distill(_ args: [String], environment: [String: String] = [:], input: String? = nil) throws -> ProcessResult {
    try launch("distill", args, environment: environment, input: input)
}

/// Runs the developer commands' executable (stress-checkpoint, stress-teacher).
func testHelper(_ args: [String]) throws -> ProcessResult {
    try launch("distill-test-helper", args)
}

private func launch(_ name: String, _ args: [String], environment: [String: String] = [:], input: String? = nil) throws
    -> ProcessResult
{
    let process = Process()
    process.executableURL = product(name)
    process.arguments = args
    var env = ProcessInfo.processInfo.environment
    env["OPENBLAS_CORETYPE"] = nil
    for (k, v) in environment { env[k] = v }
    process.environment = env
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let stdin = Pipe()
    if input != nil { process.standardInput = stdin }
    try process.run()
    if let input {
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
    }
    let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

struct DoctorJSON: Decodable {
    struct BLAS: Decodable {
        var core: String
        var libraryCore: String
        var source: String
        var threads: Int
    }
    var distill: String
    var swift: String
    var blas: BLAS
    var threads: Int
    var hdf5: String
    var cpu: String
    var features: [String]
    var kernels: String
    var bf16Products: Bool
}

@Suite struct CLITests {
    @Test(
        "--help works on every subcommand",
        arguments: [
            [], ["doctor"], ["bench"], ["bench", "kernels"], ["bench", "prefill"], ["inspect"], ["verdicts"],
            ["verdicts", "build"], ["verdicts", "cascade"],
        ])
    func helpEverywhere(_ command: [String]) throws {
        let r = try distill(command + ["--help"])
        #expect(r.status == 0)
        #expect(r.out.contains("USAGE:"))
    }

    /// A bad `bench train --config` is a usage error (exit 2) whose message names the file
    /// and the key, without the root command's usage text; a good file runs, with `--dpo` too
    /// when its batch is even.
    @Test func benchTrainConfigMistakesNameTheFileAndKey() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distill-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let valid = #"{"vocab": 64, "dim": 32, "layers": 1, "heads": 4, "kv_heads": 2, "ffn": 16, "seq": 8, "batch": 2}"#
        let cases: [(String, String)] = [
            (#"{"vocab": 64, "dim": 32}"#, #"missing "layers""#),
            (valid.replacingOccurrences(of: #""dim": 32"#, with: #""dim": "wide""#), "dim must be an integer"),
            (valid.replacingOccurrences(of: #""kv_heads": 2"#, with: #""kv_heads": 3"#), "heads (4) must be a multiple of kv_heads (3)"),
            (valid.replacingOccurrences(of: #""batch": 2"#, with: #""batch": 0"#), "batch must be at least 1, got 0"),
        ]
        for (i, (text, problem)) in cases.enumerated() {
            let file = dir.appendingPathComponent("c\(i).json")
            try text.write(to: file, atomically: true, encoding: .utf8)
            let r = try distill(["bench", "train", "--config", file.path, "--seconds", "0"])
            #expect(r.status == 2, "\(text): \(r.err)")
            #expect(r.err.contains(file.path) && r.err.contains(problem), "\(r.err)")
            #expect(!r.err.contains("Usage:"), "\(r.err)")
        }
        let missing = try distill(["bench", "train", "--config", dir.appendingPathComponent("none.json").path])
        #expect(missing.status == 2 && missing.err.contains("not S, M, L or SmolLM2-135M"), "\(missing.err)")
        let file = dir.appendingPathComponent("ok.json")
        try valid.write(to: file, atomically: true, encoding: .utf8)
        let ok = try distill(["bench", "train", "--config", file.path, "--seconds", "0", "--json"])
        #expect(ok.status == 0, "\(ok.err)")
        #expect(ok.out.contains("\"tokensPerSecond\""))

        // --dpo: one pair from the batch of 2; an odd batch has no pairs to make.
        let dpo = try distill(["bench", "train", "--config", file.path, "--dpo", "--seconds", "0", "--json"])
        #expect(dpo.status == 0, "\(dpo.err)")
        #expect(dpo.out.contains("\"referenceMs\"") && dpo.out.contains("\"dpo\""), "\(dpo.out)")
        let odd = dir.appendingPathComponent("odd.json")
        try valid.replacingOccurrences(of: #""batch": 2"#, with: #""batch": 3"#).write(to: odd, atomically: true, encoding: .utf8)
        let refused = try distill(["bench", "train", "--config", odd.path, "--dpo", "--seconds", "0"])
        #expect(refused.status == 2 && refused.err.contains("DPO needs an even batch"), "\(refused.err)")
    }

    /// `bench prefill` on tiny_chat.gguf: 3 prompts x 2 samples of 20 tokens, 12 in common.
    /// Prefill tokens: unshared 6 x 20 = 120, identical prompts 3 x 20 = 60, with the common
    /// prefix 12 + 3 x 8 = 36; every mode generates the unshared tokens, with log-probabilities
    /// within 1e-4 of the unshared ones. A common block as long
    /// as the prompt is a usage error.
    @Test func benchPrefillTimesEverySharing() throws {
        let gguf = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("FormatsTests/Fixtures/gguf/tiny_chat.gguf").path
        let args = ["bench", "prefill", "--checkpoint", gguf, "--prompts", "3", "--samples", "2", "--max-tokens", "4"]
        let r = try distill(args + ["--prompt-tokens", "20", "--common-tokens", "12", "--repeats", "1", "--json"])
        #expect(r.status == 0, "\(r.err)")
        struct Result: Decodable {
            struct Mode: Decodable {
                var sharing: String
                var prefillTokens: Int
                var sameTokens: Bool
                var rowsDiffering: Int
                var maxLogProbDifference: Double
            }
            var rows: Int
            var modes: [Mode]
        }
        let result = try JSONDecoder().decode(Result.self, from: Data(r.out.utf8))
        #expect(result.rows == 6)
        #expect(result.modes.map { $0.sharing } == ["none", "identical_prompts", "common_prefix"])
        #expect(result.modes.map { $0.prefillTokens } == [120, 60, 36])
        #expect(result.modes.allSatisfy { $0.sameTokens && $0.rowsDiffering == 0 && $0.maxLogProbDifference < 1e-4 })
        #expect(result.modes[0].maxLogProbDifference == 0)
        let bad = try distill(args + ["--prompt-tokens", "20", "--common-tokens", "20"])
        #expect(bad.status == 2 && bad.err.contains("common-tokens must be within 0..<prompt-tokens"), "\(bad.err)")
    }

    @Test func doctorReportsAnOptimisedKernel() throws {
        let r = try distill(["doctor", "--json"])
        #expect(r.status == 0, "\(r.err)")
        let report = try JSONDecoder().decode(DoctorJSON.self, from: Data(r.out.utf8))
        #expect(report.hdf5.hasPrefix("1."))
        #expect(!report.cpu.isEmpty)
        #expect(report.threads >= 1 && report.blas.threads == report.threads)
        if report.features.contains("avx") { #expect(report.blas.core != "Prescott") }
        // bf16 products run on AVX-512 BF16 exactly where the CPU has it, and not when the
        // kernels are held to AVX2.
        #expect(report.bf16Products == (report.features.contains("avx512_bf16") && report.kernels == "avx512vnni"))
        let held = try distill(["doctor", "--json"], environment: ["DISTILL_KERNELS": "avx2"])
        let heldReport = try JSONDecoder().decode(DoctorJSON.self, from: Data(held.out.utf8))
        #expect(!heldReport.bf16Products && heldReport.kernels != "avx512vnni")
    }

    /// The switch path: distill asked for a kernel other than the one OpenBLAS picked
    /// switches OpenBLAS to it and says so.
    @Test func doctorSwitchesToTheKernelDistillChooses() throws {
        let natural = try JSONDecoder().decode(DoctorJSON.self, from: Data(try distill(["doctor", "--json"]).out.utf8))
        guard natural.features.contains("avx2") else { return }
        let other = natural.blas.libraryCore == "Haswell" ? "SandyBridge" : "Haswell"
        let r = try distill(["doctor", "--json"], environment: ["DISTILL_BLAS_CORE": other])
        let report = try JSONDecoder().decode(DoctorJSON.self, from: Data(r.out.utf8))
        #expect(report.blas.core == other)
        #expect(report.blas.source == "distill")
        #expect(report.blas.libraryCore == natural.blas.libraryCore)
    }

    @Test func anExplicitCoreTypeIsRespected() throws {
        let r = try distill(["doctor", "--json"], environment: ["OPENBLAS_CORETYPE": "Prescott"])
        let report = try JSONDecoder().decode(DoctorJSON.self, from: Data(r.out.utf8))
        #expect(report.blas.core == "Prescott")
        #expect(report.blas.source == "user")
    }

    @Test func threadsOptionIsAppliedAndValidated() throws {
        let r = try distill(["doctor", "--json", "--threads", "1"])
        let report = try JSONDecoder().decode(DoctorJSON.self, from: Data(r.out.utf8))
        #expect(report.threads == 1 && report.blas.threads == 1)
        let bad = try distill(["doctor", "--threads", "0"])
        #expect(bad.status == 2)
        #expect(bad.err.contains("--threads must be at least 1"))
    }

    @Test func unknownCommandIsAUsageError() throws {
        let r = try distill(["frobnicate"])
        #expect(r.status == 2)
    }

    /// The crash tests' commands live in distill-test-helper, not in the user's binary.
    @Test func stressCommandsAreNotInDistill() throws {
        let help = try distill(["--help"])
        #expect(help.status == 0 && !help.out.contains("stress"), "\(help.out)")
        for command in ["_stress-checkpoint", "_stress-teacher", "stress-checkpoint"] {
            let r = try distill([command])
            #expect(r.status == 2 && r.err.contains("Unexpected argument '\(command)'"), "\(r.err)")
        }
        let helper = try testHelper(["--help"])
        #expect(helper.status == 0 && helper.out.contains("stress-checkpoint") && helper.out.contains("stress-teacher"))
    }
}

// MARK: - inspect

struct InspectJSON: Decodable {
    struct Model: Decodable {
        var layers: Int
        var hidden: Int
        var heads: Int
        var kvHeads: Int
        var vocab: Int
        var tiedEmbeddings: Bool
    }
    struct Parameters: Decodable {
        var total: Int
        var embedding: Int
        var nonEmbedding: Int
    }
    struct Optimizer: Decodable {
        var kind: String
        var moments: [String]
    }
    struct Tensor: Decodable {
        var path: String
        var shape: [Int]
        var checksum: String
    }
    var format: String
    var formatVersion: Int
    var kind: String
    var step: Int
    var tokensSeen: Int
    var threads: Int
    var model: Model
    var parameters: Parameters
    var optimizer: Optimizer?
    var rngStreams: [String]
    var dataCursor: Bool
    var tensors: [Tensor]?
}

@Suite struct InspectTests {
    /// A checkpoint committed by the test helper's stress command: hidden 32, 2 layers, vocab
    /// 256, tied embeddings, AdamW moments, one RNG stream, a data cursor.
    func withCheckpoint(_ body: (URL) throws -> Void) throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("distill-inspect-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let checkpoint = directory.appendingPathComponent("ckpt.h5")
        let made = try testHelper(["stress-checkpoint", checkpoint.path, "--count", "3", "--hidden", "32"])
        #expect(made.status == 0, "\(made.err)")
        try body(checkpoint)
    }

    @Test func reportsWhatIsInside() throws {
        try withCheckpoint { checkpoint in
            let r = try distill(["inspect", checkpoint.path, "--json", "--tensors"])
            #expect(r.status == 0, "\(r.err)")
            let report = try JSONDecoder().decode(InspectJSON.self, from: Data(r.out.utf8))
            #expect(report.format == "distill-checkpoint" && report.formatVersion == 1 && report.kind == "model")
            #expect(report.step == 3 && report.tokensSeen == 3 * 1024 && report.threads == 1)
            #expect(report.model.layers == 2 && report.model.hidden == 32 && report.model.vocab == 256)
            #expect(report.model.heads == 2 && report.model.kvHeads == 1 && report.model.tiedEmbeddings)
            // Per layer: q 32x32, k and v 16x32 each, o 32x32, gate/up/down 64x32 each, two norms of 32.
            let perLayer = 32 * 32 * 2 + 16 * 32 * 2 + 64 * 32 * 3 + 32 * 2
            #expect(report.parameters.embedding == 256 * 32)
            #expect(report.parameters.nonEmbedding == 2 * perLayer + 32)
            #expect(report.parameters.total == report.parameters.embedding + report.parameters.nonEmbedding)
            #expect(report.optimizer?.kind == "adamw" && report.optimizer?.moments == ["m", "v"])
            #expect(report.rngStreams == ["data"] && report.dataCursor)
            let tensors = try #require(report.tensors)
            #expect(tensors.count == 3 * (2 * 9 + 2))
            #expect(tensors.first?.path == "model/model.embed_tokens.weight" && tensors.first?.shape == [256, 32])
            #expect(tensors.allSatisfy { $0.checksum.hasPrefix("0x") && $0.checksum.count == 10 })

            let text = try distill(["inspect", checkpoint.path])
            #expect(text.status == 0)
            #expect(text.out.contains("2 layers, hidden 32"))
            #expect(text.out.contains("adamw at step 3, moments m, v"))
        }
    }

    @Test func badFilesExitWithDataOrIOStatus() throws {
        try withCheckpoint { checkpoint in
            let notes = checkpoint.deletingLastPathComponent().appendingPathComponent("notes.txt")
            try Data("not a checkpoint".utf8).write(to: notes)
            let text = try distill(["inspect", notes.path])
            #expect(text.status == 65)
            #expect(text.err.contains("not a distill checkpoint"))

            let missing = try distill(["inspect", checkpoint.path + ".missing"])
            #expect(missing.status == 74)
            #expect(missing.err.contains("no such file"))

            // Damage one byte in the middle of the embedding table: the file's seal no longer
            // matches, so even inspect, which reads only metadata, refuses it.
            let bytes = try Data(contentsOf: checkpoint)
            let summary = try readCheckpointSummary(at: checkpoint)
            #expect(summary.step == 3)
            var damaged = bytes
            let offset = try findFloatData(in: bytes, checkpoint: checkpoint)
            let embedding = try #require(offset)
            damaged[embedding] ^= 0x01
            try damaged.write(to: checkpoint)
            let refused = try distill(["inspect", checkpoint.path])
            #expect(refused.status == 65 && refused.err.contains(checkpoint.path), "\(refused.err)")
            #expect(throws: CheckpointError.self) { try verifyCheckpoint(at: checkpoint) }
        }
    }

    /// Bit flips in HDF5's own metadata (superblock, object headers, B-trees, heaps: the
    /// first KiBs after the seal and the end of the file) crashed or hung the HDF5 library;
    /// the seal refuses them first, with exit 65 and the file's name.
    @Test func flippedMetadataBitsExit65NeverASignal() throws {
        try withCheckpoint { checkpoint in
            let bytes = try Data(contentsOf: checkpoint)
            let copy = checkpoint.deletingLastPathComponent().appendingPathComponent("copy.h5")
            let offsets = [3, 30, 512, 520, 530, 560, 600, 700, 800, 1000, 1200, 1500, 2000, 3000, bytes.count - 1]
                + stride(from: bytes.count - 4000, to: bytes.count, by: 397).map { $0 }
            for (i, offset) in offsets.enumerated() {
                var damaged = bytes
                damaged[offset] ^= UInt8(1) << UInt8(i % 8)
                try damaged.write(to: copy)
                let command = i % 2 == 0 ? ["inspect", copy.path] : ["generate", "--checkpoint", copy.path, "--prompt", "a"]
                let r = try distill(command)
                #expect(r.status == 65, "byte \(offset): \(r.status) \(r.err)")
                #expect(r.err.contains(copy.path) && r.err.contains("damaged"), "byte \(offset): \(r.err)")
            }
        }
    }

    /// A disk filling up during a commit (RLIMIT_FSIZE with SIGXFSZ ignored makes write(2)
    /// fail with EFBIG, as ENOSPC would) is an I/O error, exit 74, not a crash in HDF5's exit
    /// handler; the temporary file is removed and the committed checkpoint survives.
    @Test func aFullDiskDuringACommitExits74() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("distill-full-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let checkpoint = directory.appendingPathComponent("ckpt.h5")
        let first = try testHelper(["stress-checkpoint", checkpoint.path, "--count", "1", "--hidden", "16"])
        #expect(first.status == 0, "\(first.err)")
        let helper = product("distill-test-helper").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        // ulimit -f counts 1024-byte blocks: 64 KiB, less than one checkpoint of width 128.
        process.arguments = [
            "-c", "ulimit -f 64; trap '' XFSZ; exec \"$0\" stress-checkpoint \"$1\" --count 2 --hidden 128",
            helper, checkpoint.path,
        ]
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationReason == .exit && process.terminationStatus == 74, "\(text)")
        #expect(text.contains("file too large for the file size limit") && text.contains(directory.path), "\(text)")
        let left = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        #expect(left == [".distill.lock", "ckpt.h5"])
        #expect(try readCheckpoint(at: checkpoint).step == 1)
    }

    /// The offset of a byte inside model.embed_tokens.weight's data.
    func findFloatData(in bytes: Data, checkpoint: URL) throws -> Int? {
        let contents = try readCheckpoint(at: checkpoint)
        let embedding = contents.parameters[0].tensor
        let pattern = Data(bytes: embedding.data + 100, count: 32)
        return bytes.range(of: pattern).map { $0.lowerBound + 2 }
    }

    @Test func aRunningWriterHoldsTheRunDirectory() throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("distill-lock-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let process = Process()
        process.executableURL = product("distill-test-helper")
        process.arguments = ["stress-checkpoint", directory.appendingPathComponent("ckpt.h5").path, "--hidden", "8"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        let checkpoint = directory.appendingPathComponent("ckpt.h5").path
        let deadline = Date().addingTimeInterval(20)
        while !FileManager.default.fileExists(atPath: checkpoint), process.isRunning, Date() < deadline {
            usleep(1_000)
        }

        do {
            _ = try RunDirectoryLock(directory: directory)
            Issue.record("a second lock on a directory in use was granted")
        } catch {
            #expect(error.kind == .busy)
            #expect(error.description.contains("another distill run (pid \(process.processIdentifier)"), "\(error)")
        }
        // Killed, its lock file stays behind but blocks nobody.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent(".distill.lock").path))
        let lock = try RunDirectoryLock(directory: directory)
        lock.release()
    }
}
