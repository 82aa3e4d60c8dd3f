// `distill sample` killed with SIGKILL in the middle of sampling the scripted server, then run
// again: no call that reached the cache is requested again, and the outputs equal those of an
// uninterrupted run in another directory byte for byte (samples.jsonl up to the latency of each
// call, which is a measurement; a plain re-run keeps even that).

import Foundation
import JSON
import Testing
import TextData

@testable import Teacher

#if canImport(Glibc)
    import Glibc
#endif

@Suite(.serialized) struct SampleCrashTests {
    static let tasks = (1...10).map { i in #"{"id": "t\#(i)", "prompt": "\#(i)*3?", "answer": "\#(i * 3)"}"# }
        .joined(separator: "\n")

    /// Answers depend only on the request: right when (prompt, seed) says so, else off by one;
    /// the seed is in the text so that samples are distinct.
    static func answer(_ request: ScriptedServer.Request) -> String {
        let body = request.json
        let prompt = ((body["messages"] as? [[String: String]])?.first?["content"]) ?? ""
        let seed = body["seed"] as? Int ?? 0
        let n = Int(prompt.dropLast(3)) ?? 0
        let right = (n + seed) % 3 != 0
        return chatResponse("seed \(seed): #### \(n * 3 + (right ? 0 : 1))", promptTokens: 7, completionTokens: 4)
    }

    func start(_ arguments: [String]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            .deletingLastPathComponent().appendingPathComponent("distill")
        p.arguments = arguments
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }

    func read(_ dir: URL, _ name: String) -> String {
        (try? String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8)) ?? "missing"
    }

    /// samples.jsonl without the latency field.
    func withoutLatency(_ text: String) -> [JSONValue] {
        text.split(separator: "\n").map { line in
            guard case .object(var o) = try! JSONValue.parse(Array(line.utf8)) else { return .null }
            o.entries.removeAll { $0.key == "latency" }
            return .object(o)
        }
    }

    @Test func aKilledSampleRunResumesWithoutRepeatingCachedCalls() throws {
        let dir = try scratch("sample-crash")
        defer { try? FileManager.default.removeItem(at: dir) }
        let tasks = dir.appendingPathComponent("tasks.jsonl")
        try Self.tasks.write(to: tasks, atomically: true, encoding: .utf8)
        let server = try ScriptedServer(delay: 0.02) { _, request in
            .respond(status: 200, headers: [:], body: Self.answer(request))
        }
        defer { server.stop() }
        let teacher =
            #"{"type": "openai", "base_url": "\#(server.baseURL)", "model": "m", "samples": 8, "concurrency": 3}"#
        func arguments(_ out: URL) -> [String] {
            [
                "sample", "--tasks", tasks.path, "--teacher-json", teacher, "--out", out.path, "--pairs-json",
                #"{"strategy": "all", "max_per_prompt": 3}"#,
            ]
        }

        // Uninterrupted reference run.
        let reference = dir.appendingPathComponent("reference")
        let whole = try start(arguments(reference))
        whole.waitUntilExit()
        #expect(whole.terminationStatus == 0)
        #expect(server.requests.count == 80)

        // Killed run: SIGKILL once the server has seen 25 of its requests.
        let resumed = dir.appendingPathComponent("resumed")
        let killed = try start(arguments(resumed))
        while server.requests.count < 80 + 25 && killed.isRunning { usleep(2000) }
        kill(killed.processIdentifier, SIGKILL)
        killed.waitUntilExit()
        #expect(killed.terminationReason == .uncaughtSignal)
        let cached = try CallCache(path: resumed.appendingPathComponent("teacher-cache.sqlite").path).count()
        #expect(cached >= 20 && cached < 80, "killed mid-sampling")
        let beforeResume = server.requests.count

        let second = try start(arguments(resumed))
        second.waitUntilExit()
        #expect(second.terminationStatus == 0)
        // The resumed run asked only for what the cache lacked.
        #expect(server.requests.count - beforeResume == 80 - cached)
        // The stage's own count agrees: every cached call was a hit.
        let state = try JSONValue.parse(Array(read(resumed, "run.json").utf8))
        guard case .object(let root) = state, case .object(let stages)? = root["stages"],
            case .object(let stage)? = stages["sample"], case .object(let outputs)? = stage["outputs"],
            case .object(let summary)? = outputs["summary"]
        else {
            Issue.record("run.json has no sample summary")
            return
        }
        #expect(summary["cache_hits"] == .int(cached) && summary["requests"] == .int(80 - cached))
        print("kill-and-resume: \(cached) of 80 calls cached at the kill; the resumed run made \(80 - cached) requests")
        var perCall: [String: Int] = [:]
        for r in server.requests[80...] {
            let prompt = (r.json["messages"] as? [[String: String]])?.first?["content"] ?? "?"
            perCall["\(prompt) \(r.json["seed"] as? Int ?? -1)", default: 0] += 1
        }
        #expect(perCall.count == 80)
        #expect(perCall.values.filter { $0 > 1 }.count <= 3, "only calls in flight at the kill are repeated")

        for name in ["sft.jsonl", "pairs.jsonl", "stats.json"] {
            #expect(read(resumed, name) == read(reference, name), "\(name) differs from the uninterrupted run")
        }
        #expect(withoutLatency(read(resumed, "samples.jsonl")) == withoutLatency(read(reference, "samples.jsonl")))
        #expect(!read(reference, "pairs.jsonl").isEmpty && !read(reference, "sft.jsonl").isEmpty)

        // A plain re-run of a finished stage skips it; forcing it (run.json removed) makes no
        // request and writes the same bytes, latencies included.
        let samples = read(resumed, "samples.jsonl")
        try FileManager.default.removeItem(at: resumed.appendingPathComponent("run.json"))
        let requests = server.requests.count
        let third = try start(arguments(resumed))
        third.waitUntilExit()
        #expect(third.terminationStatus == 0)
        #expect(server.requests.count == requests)
        #expect(read(resumed, "samples.jsonl") == samples)
    }
}
