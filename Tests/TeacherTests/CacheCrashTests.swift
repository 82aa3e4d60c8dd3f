// kill -9 during sampling loses no finished call: a child `distill-test-helper stress-teacher`
// samples 2 tasks x 40 seeds from the scripted server, printing each sample once its result is
// committed; it is SIGKILLed after 10 such lines. A second child then runs to the end: every
// sample the first reported comes from the cache (the server never sees its request again),
// and the calls in flight at the kill are the only ones asked for twice.

import Foundation
import Platform
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Test func aSamplerKilledMidRunLosesNoFinishedCall() throws {
    let products = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distill-cache-crash-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let tasks = dir.appendingPathComponent("tasks.jsonl").path
    try """
    {"id": "a", "prompt": "6*7?", "answer": "42"}
    {"id": "b", "prompt": "2+2?", "answer": "4"}
    """.write(toFile: tasks, atomically: true, encoding: .utf8)
    let server = try ScriptedServer(delay: 0.03) { _, _ in
        .respond(status: 200, headers: [:], body: chatResponse("#### 42"))
    }
    defer { server.stop() }
    let teacher =
        #"{"base_url": "\#(server.baseURL)", "model": "m", "samples": 40, "concurrency": 3, "max_attempts": 1}"#
    let cache = dir.appendingPathComponent("calls.sqlite").path

    func start() throws -> (Process, Pipe) {
        let p = Process()
        p.executableURL = products.appendingPathComponent("distill-test-helper")
        p.arguments = ["stress-teacher", "--tasks", tasks, "--cache", cache, "--teacher-json", teacher]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        return (p, out)
    }

    // First run: read "done" lines until 10 arrive, then SIGKILL.
    let (first, pipe) = try start()
    var text = ""
    while text.components(separatedBy: "\n").filter({ $0.hasPrefix("done ") }).count < 10 {
        let chunk = pipe.fileHandleForReading.availableData
        if chunk.isEmpty { break }
        text += String(decoding: chunk, as: UTF8.self)
    }
    kill(first.processIdentifier, SIGKILL)
    first.waitUntilExit()
    #expect(first.terminationReason == .uncaughtSignal)
    text += String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    let reported = Set(
        text.split(separator: "\n").filter { $0.hasPrefix("done ") }.map {
            $0.split(separator: " ")[1...2].joined(separator: " ")
        })
    #expect(reported.count >= 10 && reported.count < 80)
    let requestsBeforeKill = server.requests.count

    // Second run: to the end.
    let (second, pipe2) = try start()
    let rest = String(decoding: pipe2.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    second.waitUntilExit()
    #expect(second.terminationStatus == 0)
    var cachedInSecond = Set<String>()
    for line in rest.split(separator: "\n") where line.hasPrefix("done ") {
        let parts = line.split(separator: " ")
        #expect(parts[3] != "failed")
        if parts[3] == "cached" { cachedInSecond.insert("\(parts[1]) \(parts[2])") }
    }
    #expect(reported.isSubset(of: cachedInSecond), "every finished call of the killed run is a cache hit")

    // The server's view: requests per (prompt, seed).
    var seen: [String: Int] = [:]
    for r in server.requests {
        let body = r.json
        let prompt = ((body["messages"] as? [[String: String]])?.first?["content"]) ?? ""
        seen["\(prompt == "6*7?" ? "a" : "b") \(body["seed"] as? Int ?? -1)", default: 0] += 1
    }
    #expect(seen.count == 80, "every call made at least once")
    for key in reported { #expect(seen[key] == 1, "\(key) was requested again after it was cached") }
    // Only calls in flight at the kill (at most the concurrency limit, 3) were asked twice.
    let repeated = seen.values.filter { $0 > 1 }.count
    #expect(repeated <= 3)
    #expect(server.requests.count == 80 + repeated)
    #expect(requestsBeforeKill >= reported.count)
}
