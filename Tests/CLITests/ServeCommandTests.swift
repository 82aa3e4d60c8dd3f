// `distill serve` as a process: it binds, loads, answers, and on SIGTERM lets the request in
// flight finish and exits 0. Its flags' mistakes are usage errors (exit 2).

import Foundation
import LoopbackClient
import Testing

@Suite struct ServeCommandTests {
    /// Reads the process's stderr until a line contains `marker`; returns everything read.
    static func read(_ pipe: Pipe, until marker: String, timeout: TimeInterval = 60) -> String {
        var text = ""
        let deadline = Date().addingTimeInterval(timeout)
        while !text.contains(marker) && Date() < deadline {
            let data = pipe.fileHandleForReading.availableData
            if data.isEmpty { break }
            text += String(decoding: data, as: UTF8.self)
        }
        return text
    }

    @Test func sigtermFinishesTheRequestInFlightAndExitsZero() throws {
        let p = Process()
        p.executableURL = distillBinary()
        p.arguments = ["serve", "--model", "tiny=\(ChatCommandTests.gguf.path)", "--port", "0", "--threads", "1"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let started = Self.read(err, until: "ready: serving tiny")
        #expect(started.contains("ready: serving tiny"), "\(started)")
        let port = try #require(started.split(separator: "\n").first { $0.contains("listening on http://127.0.0.1:") }
            .flatMap { line in line.split(separator: ":").last.flatMap { Int($0.prefix { $0.isNumber }) } })
        // A streamed request long enough to be in flight when the signal arrives.
        let body = #"{"model":"tiny","messages":[{"role":"user","content":"Hi"}],"max_tokens":200,"stream":true}"#
        let fd = try sendRequest(port, "POST", "/v1/chat/completions", body: body)
        defer { close(fd) }
        var first = [UInt8](repeating: 0, count: 256)
        #expect(recv(fd, &first, first.count, 0) > 0)  // the reply has begun
        kill(p.processIdentifier, SIGTERM)
        var reply = first
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            reply += buffer[..<n]
        }
        p.waitUntilExit()
        let log = started + Self.read(err, until: "\u{0}", timeout: 5)
        #expect(String(decoding: reply, as: UTF8.self).contains("data: [DONE]"))
        #expect(p.terminationStatus == 0, "\(log)")
        #expect(log.contains("stopping: finishing"))
    }

    @Test func flagMistakesAreUsageErrors() throws {
        let noModel = try distill(["serve"])
        #expect(noModel.status == 2 && noModel.err.contains("--model"))
        let badPair = try distill(["serve", "--model", "just-a-path.gguf"])
        #expect(badPair.status == 2 && badPair.err.contains("NAME=PATH"))
        let missing = try distill(["serve", "--model", "m=/nonexistent.gguf", "--port", "0"])
        #expect(missing.status == 74 && missing.err.contains("/nonexistent.gguf"), "\(missing.err)")
        let teacher = try distill(["serve", "--model", "m=x.gguf", "--teacher-json", #"{"type": "openai", "model": "t"}"#])
        #expect(teacher.status == 2 && teacher.err.contains("--teacher-json"), "\(teacher.err)")
        let key = try distill(["serve", "--model", "m=x.gguf", "--api-key-env", "DISTILL_TEST_UNSET_KEY"])
        #expect(key.status == 2 && key.err.contains("DISTILL_TEST_UNSET_KEY"))
    }
}
