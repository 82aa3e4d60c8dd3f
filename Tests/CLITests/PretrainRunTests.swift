// `distill run` end to end on a tiny model: a run killed with SIGKILL at random moments and
// re-run to completion ends with the same weights and the same per-step loss log, bit for
// bit, as an uninterrupted run; non-finite losses stop it with exit 65; a second run on the
// same directory is refused.

import Core
import Foundation
import ModelIO
import Platform
import Testing

/// A few KB of varied text, deterministic.
func tinyCorpus() -> String {
    let names = ["Ada", "Ben", "Cleo", "Dev", "Eli", "Fay"], things = ["kite", "lamp", "boat", "drum", "map"]
    let places = ["hill", "lake", "town", "barn"], feelings = ["glad", "tired", "brave", "curious"]
    var rng = RNG(seed: 42)
    func pick(_ xs: [String]) -> String { xs[Int(rng.next() % UInt64(xs.count))] }
    return (0..<160).map { _ in
        "\(pick(names)) took the \(pick(things)) to the \(pick(places)) and felt \(pick(feelings))."
    }.joined(separator: " ")
}

func tinyRecipe(runDir: String, steps: Int = 24, lr: Double = 0.01, gradClip: Double = 1, checkpointEvery: Int = 3) -> String {
    let text = String(data: try! JSONEncoder().encode(tinyCorpus()), encoding: .utf8)!
    return """
        {"name": "tiny", "run_dir": "\(runDir)", "seed": 7, "stages": [
          {"type": "pretrain", "data": {"text": \(text), "validation_fraction": 0.1},
           "tokenizer": {"train": {"vocab_size": 300}},
           "model": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "num_key_value_heads": 2, "max_position_embeddings": 64},
           "training": {"steps": \(steps), "batch_size": 4, "seq_len": 32, "lr": \(lr), "warmup_steps": 2,
                        "grad_clip": \(gradClip), "eval_every": 8, "eval_batches": 2, "checkpoint_every": \(checkpointEvery),
                        "log_every": 1}}
        ]}
        """
}

func scratchDirectory(_ tag: String) throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distill-\(tag)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}

func distillBinary() -> URL {
    URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        .appendingPathComponent("distill")
}

/// Starts `distill run RECIPE` without waiting.
func startRun(_ recipe: URL) throws -> Process {
    let p = Process()
    p.executableURL = distillBinary()
    p.arguments = ["run", recipe.path]
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    var env = ProcessInfo.processInfo.environment
    env["DISTILL_THREADS"] = "2"
    p.environment = env
    try p.run()
    return p
}

func lineCount(_ url: URL) -> Int {
    ((try? String(contentsOf: url, encoding: .utf8)) ?? "").split(separator: "\n").count
}

@Suite(.serialized) struct PretrainRunTests {
    @Test func killedRunsResumeBitIdentically() throws {
        let root = try scratchDirectory("resume")
        defer { try? FileManager.default.removeItem(at: root) }
        func recipe(_ name: String) throws -> URL {
            let url = root.appendingPathComponent("\(name).json")
            try Data(tinyRecipe(runDir: root.appendingPathComponent(name).path).utf8).write(to: url)
            return url
        }
        let whole = try startRun(try recipe("whole"))
        whole.waitUntilExit()
        #expect(whole.terminationStatus == 0)

        // Kill the second run at random points of its progress (steps logged so far),
        // including while checkpoints are being committed, then let it finish.
        let killed = try recipe("killed")
        let metrics = root.appendingPathComponent("killed/pretrain.metrics.jsonl")
        var rng = RNG(seed: UInt64(Date().timeIntervalSince1970))
        var kills = 0
        for _ in 0..<4 {
            let p = try startRun(killed)
            let target = lineCount(metrics) + 1 + Int(rng.next() % 6)
            let deadline = Date().addingTimeInterval(60)
            while p.isRunning && lineCount(metrics) < target && Date() < deadline { usleep(2000) }
            usleep(UInt32(rng.next() % 20_000))
            if p.isRunning {
                kill(p.processIdentifier, SIGKILL)
                kills += 1
            }
            p.waitUntilExit()
        }
        let last = try startRun(killed)
        last.waitUntilExit()
        #expect(last.terminationStatus == 0)
        #expect(kills >= 1)

        let a = try readCheckpoint(at: root.appendingPathComponent("whole/base.h5"))
        let b = try readCheckpoint(at: root.appendingPathComponent("killed/base.h5"))
        #expect(a.step == 24 && b.step == 24)
        for ((name, x), (_, y)) in zip(a.parameters, b.parameters) {
            #expect(x.values == y.values, "\(name) differs after \(kills) kills")
        }
        let logA = try String(contentsOf: root.appendingPathComponent("whole/pretrain.metrics.jsonl"), encoding: .utf8)
        let logB = try String(contentsOf: metrics, encoding: .utf8)
        #expect(logA == logB)
        #expect(logA.split(separator: "\n").count == 24 + 3)  // every step, evaluations at 8, 16, 24
        // An evaluation line: step, val_loss and its perplexity exp(val_loss).
        let evaluations = logA.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.filter { $0["val_loss"] != nil }
        #expect(evaluations.map { $0["step"] as? Int } == [8, 16, 24])
        for e in evaluations {
            let loss = try #require(e["val_loss"] as? Double), ppl = try #require(e["val_ppl"] as? Double)
            #expect(abs(ppl - Foundation.exp(loss)) <= 1e-9 * ppl)
        }
    }

    /// A model that cannot fit in memory is refused with the estimate before any allocation.
    @Test func aModelTooLargeForMemoryIsRefusedUpFront() throws {
        let root = try scratchDirectory("too-large")
        defer { try? FileManager.default.removeItem(at: root) }
        let url = root.appendingPathComponent("r.json")
        let recipe = tinyRecipe(runDir: root.appendingPathComponent("run").path).replacingOccurrences(
            of: #""hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2"#,
            with: #""hidden_size": 16384, "intermediate_size": 65536, "num_hidden_layers": 512"#)
        try Data(recipe.utf8).write(to: url)
        let started = Date()
        let r = try distill(["run", url.path])
        #expect(r.status == 2, "\(r.err)")
        #expect(r.err.contains("training this model (") && r.err.contains("needs at least"), "\(r.err)")
        #expect(r.err.contains("GiB, more than"), "\(r.err)")
        #expect(Date().timeIntervalSince(started) < 60)
    }

    /// An update that makes the weights non-finite (here a learning rate beyond Float's range)
    /// is never committed: exit 65 and no poisoned checkpoint for a resume to fail on.
    @Test func nonFiniteWeightsAreNeverCheckpointed() throws {
        let root = try scratchDirectory("nonfinite-weights")
        defer { try? FileManager.default.removeItem(at: root) }
        let url = root.appendingPathComponent("r.json")
        try Data(tinyRecipe(runDir: root.appendingPathComponent("run").path, lr: 1e39, gradClip: 0, checkpointEvery: 1).utf8).write(to: url)
        let r = try distill(["run", url.path])
        #expect(r.status == 65)
        #expect(r.err.contains("is not finite after the update at step 1; stopped without checkpointing it"), "\(r.err)")
        #expect(!FileManager.default.fileExists(atPath: root.appendingPathComponent("run/base.h5").path))
    }

    @Test func aNonFiniteLossStopsWithExitCode65AndKeepsTheLastCheckpoint() throws {
        let root = try scratchDirectory("nonfinite")
        defer { try? FileManager.default.removeItem(at: root) }
        let url = root.appendingPathComponent("r.json")
        try Data(tinyRecipe(runDir: root.appendingPathComponent("run").path, lr: 1e30, gradClip: 0, checkpointEvery: 1).utf8).write(to: url)
        let r = try distill(["run", url.path])
        #expect(r.status == 65)
        #expect(r.err.contains("at step") && r.err.contains("The last checkpoint is intact"), "\(r.err)")
        let kept = try readCheckpoint(at: root.appendingPathComponent("run/base.h5"))
        #expect(kept.step >= 1)
    }

    @Test func aSecondRunOnTheSameDirectoryIsRefused() throws {
        let root = try scratchDirectory("lock")
        defer { try? FileManager.default.removeItem(at: root) }
        let url = root.appendingPathComponent("r.json")
        try Data(tinyRecipe(runDir: root.appendingPathComponent("run").path, steps: 2000).utf8).write(to: url)
        let first = try startRun(url)
        defer {
            kill(first.processIdentifier, SIGKILL)
            first.waitUntilExit()
        }
        let lock = root.appendingPathComponent("run/.distill.lock")
        let deadline = Date().addingTimeInterval(30)
        while !FileManager.default.fileExists(atPath: lock.path) && Date() < deadline { usleep(5000) }
        let second = try distill(["run", url.path])
        #expect(second.status == 75)
        #expect(second.err.contains("pid \(first.processIdentifier)"), "\(second.err)")
    }
}
