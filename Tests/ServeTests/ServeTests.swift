// `distill serve` started inside each test on 127.0.0.1 (a free port), over tiny_chat.gguf (a
// tiny SmolLM2-shaped model with its ChatML template) and a LoRA adapter on it, talked to with
// a plain HTTP/1.1 client on a socket. Replies are checked against the generation path the
// CLI uses (`chatReply` on the same weights), not against the server's own output.

import Core
import LoopbackClient
import Foundation
import JSON
import ModelIO
import NN
import Platform
import Serve
import Testing
import TextData
import Route
import Verify

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("FormatsTests/Fixtures/gguf")
let tinyChat = fixtures.appendingPathComponent("tiny_chat.gguf").path

/// A running server and the task that runs it.
final class RunningServer: @unchecked Sendable {
    let port: Int
    let server: HTTPServer
    let state: ServeState
    let task: Task<Void, any Error>

    /// Starts a server on a free loopback port and waits until its models are loaded.
    static func start(_ settings: ServeSettings) async throws -> RunningServer {
        var settings = settings
        settings.port = 0
        let state = ServeState(settings: settings)
        let bound = Locked<(Int, HTTPServer)?>(nil)
        let task = Task { try await runServer(state, log: { _ in }, onListening: { port, server in bound.value = (port, server) }) }
        while bound.value == nil { try await Task.sleep(for: .milliseconds(5)) }
        while state.catalog == nil {
            try await Task.sleep(for: .milliseconds(10))
            if task.isCancelled { break }
        }
        let (port, server) = bound.value!
        return RunningServer(port: port, server: server, state: state, task: task)
    }

    private init(port: Int, server: HTTPServer, state: ServeState, task: Task<Void, any Error>) {
        (self.port, self.server, self.state, self.task) = (port, server, state, task)
    }

    func stop() async throws {
        server.stop()
        try await task.value
    }
}

/// One HTTP/1.1 exchange on a new connection (`Connection: close`), chunked bodies decoded.
struct Exchange {
    var status: Int
    var headers: [String: String]
    var body: String

    var json: JSONValue { (try? JSONValue.parse(Array(body.utf8))) ?? .null }

    /// The `data:` payloads of a server-sent-events body.
    var events: [String] {
        body.components(separatedBy: "\n\n").compactMap { $0.hasPrefix("data: ") ? String($0.dropFirst(6)) : nil }
    }
}

/// `exchange` on a thread of its own: a blocking client must not hold one of the few threads
/// the server's own tasks run on.
func http(
    _ port: Int, _ method: String, _ path: String, body: String? = nil, headers: [String: String] = [:], readLimit: Int? = nil
) async throws -> Exchange {
    try await withCheckedThrowingContinuation { continuation in
        Thread {
            continuation.resume(with: Result { try exchange(port, method, path, body: body, headers: headers, readLimit: readLimit) })
        }.start()
    }
}

func exchange(
    _ port: Int, _ method: String, _ path: String, body: String?, headers: [String: String], readLimit: Int?
) throws -> Exchange {
    let fd = try sendRequest(port, method, path, body: body, headers: headers)
    defer { close(fd) }
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while readLimit.map({ received.count < $0 }) ?? true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n <= 0 { break }
        received += buffer[..<n]
    }
    return Exchange(received)
}

extension Exchange {
    /// A response as received: status line, headers, and the body (chunks joined).
    init(_ received: [UInt8]) {
        let text = String(decoding: received, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else {
            self.init(status: 0, headers: [:], body: text)
            return
        }
        let lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
        let status = Int(lines[0].split(separator: " ")[1])!
        var fields: [String: String] = [:]
        for line in lines.dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2 { fields[parts[0].lowercased()] = parts[1] }
        }
        var body = Array(received[(Array(text[..<split.upperBound].utf8).count)...])
        if fields["transfer-encoding"] == "chunked" {
            var decoded: [UInt8] = [], at = 0
            while let lineEnd = (at..<max(at, body.count - 1)).first(where: { body[$0] == 13 && body[$0 + 1] == 10 }),
                let size = Int(String(decoding: body[at..<lineEnd], as: UTF8.self), radix: 16), size > 0,
                lineEnd + 2 + size <= body.count
            {
                decoded += body[(lineEnd + 2)..<(lineEnd + 2 + size)]
                at = lineEnd + 2 + size + 2
            }
            body = decoded
        }
        self.init(status: status, headers: fields, body: String(decoding: body, as: UTF8.self))
    }
}

func chatBody(_ fields: String, content: String = "Hello there") -> String {
    #"{"model":"tiny","messages":[{"role":"user","content":"\#(content)"}],\#(fields)}"#
}

extension JSONValue {
    subscript(_ key: String) -> JSONValue? { if case .object(let o) = self { o[key] } else { nil } }
    subscript(_ i: Int) -> JSONValue? { if case .array(let a) = self, i < a.count { a[i] } else { nil } }
    var int: Int? { if case .int(let i) = self { i } else { nil } }
}

/// The reply the CLI's chat path gives on the same model and weights.
func referenceReply(_ path: String, adapter: String? = nil, message: String, sampling: SamplingConfig) throws -> String {
    let loaded = try loadModel(from: adapter ?? path, base: adapter == nil ? nil : path)
    return try chatReply(loaded, style: loaded.chatStyle()!, messages: [ChatMessage(role: "user", content: message)], sampling: sampling).text
}

@Suite(.serialized) struct ServeTests {
    static func settings(batch: Int = 4, queue: Int = 8) -> ServeSettings {
        var s = ServeSettings(models: [ServedPath(name: "tiny", path: tinyChat)])
        (s.maxBatch, s.queueLimit, s.context) = (batch, queue, 128)
        return s
    }

    @Test func chatRepliesAreTheCLIsRepliesWholeOrStreamed() async throws {
        let server = try await RunningServer.start(Self.settings())
        let port = server.port
        #expect(try await http(port, "GET", "/health").json["status"] == .string("ok"))
        let models = try await http(port, "GET", "/v1/models").json
        #expect(models["data"]?[0]?["id"] == .string("tiny"))

        // Greedy: the CLI's reply, its usage, its finish reason.
        let greedy = try await http(port, "POST", "/v1/chat/completions", body: chatBody(#""temperature":0,"max_tokens":12"#))
        #expect(greedy.status == 200, "\(greedy.body)")
        let expected = try referenceReply(tinyChat, message: "Hello there", sampling: SamplingConfig(maxTokens: 12, temperature: 0))
        #expect(greedy.json["choices"]?[0]?["message"]?["content"] == .string(expected))
        #expect(greedy.json["object"] == .string("chat.completion") && greedy.json["model"] == .string("tiny"))
        let usage = try #require(greedy.json["usage"])
        #expect(usage["completion_tokens"]?.int.map { $0 >= 1 && $0 <= 12 } == true)
        #expect(usage["total_tokens"]?.int == usage["prompt_tokens"]!.int! + usage["completion_tokens"]!.int!)
        // max_completion_tokens, the newer name, wins over max_tokens.
        let capped = try await http(
            port, "POST", "/v1/chat/completions", body: chatBody(#""temperature":0,"max_tokens":12,"max_completion_tokens":3"#))
        #expect(capped.json["usage"]?["completion_tokens"]?.int.map { $0 <= 3 } == true)
        #expect(capped.json["choices"]?[0]?["finish_reason"] == .string("length"))

        // n = 3 seeded: repeatable, choice 0 is the n = 1 reply with the same seed, choices differ.
        let three = try await http(port, "POST", "/v1/chat/completions", body: chatBody(#""seed":7,"n":3,"max_tokens":10,"temperature":1.0"#))
        let again = try await http(port, "POST", "/v1/chat/completions", body: chatBody(#""seed":7,"n":3,"max_tokens":10,"temperature":1.0"#))
        let one = try await http(port, "POST", "/v1/chat/completions", body: chatBody(#""seed":7,"max_tokens":10,"temperature":1.0"#))
        let texts = (0..<3).map { three.json["choices"]?[$0]?["message"]?["content"] }
        #expect(texts == (0..<3).map { again.json["choices"]?[$0]?["message"]?["content"] })
        #expect(texts[0] == one.json["choices"]?[0]?["message"]?["content"])
        #expect(Set(texts.map { "\($0 as Any)" }).count > 1)

        // Streamed: the deltas add up to the whole reply; role first, finish, usage, [DONE].
        let streamed = try await http(
            port, "POST", "/v1/chat/completions",
            body: chatBody(#""seed":7,"max_tokens":10,"temperature":1.0,"stream":true,"stream_options":{"include_usage":true}"#))
        #expect(streamed.headers["content-type"] == "text/event-stream")
        let events = streamed.events
        #expect(events.last == "[DONE]")
        let chunks = events.dropLast().map { (try? JSONValue.parse(Array($0.utf8))) ?? .null }
        #expect(chunks.first?["choices"]?[0]?["delta"]?["role"] == .string("assistant"))
        let joined = chunks.compactMap { $0["choices"]?[0]?["delta"]?["content"]?.stringValue }.joined()
        #expect(.string(joined) == one.json["choices"]?[0]?["message"]?["content"])
        #expect(chunks.contains { $0["choices"]?[0]?["finish_reason"]?.stringValue != nil })
        #expect(chunks.last?["usage"]?["completion_tokens"] == one.json["usage"]?["completion_tokens"])

        // Log-probabilities: one entry per completion token, the chosen token among the top ones.
        let lp = try await http(
            port, "POST", "/v1/chat/completions", body: chatBody(#""temperature":0,"max_tokens":5,"logprobs":true,"top_logprobs":3"#))
        guard case .array(let content)? = lp.json["choices"]?[0]?["logprobs"]?["content"] else {
            Issue.record("no logprobs: \(lp.body)")
            return
        }
        #expect(content.count == lp.json["usage"]?["completion_tokens"]?.int)
        for entry in content {
            guard case .array(let top)? = entry["top_logprobs"], let chosen = entry["logprob"]?.numberValue else { continue }
            #expect(top.count == 3 && chosen <= 0)
            #expect(top[0]["logprob"]?.numberValue == chosen)  // greedy picks the most likely
        }
        try await server.stop()
    }

    /// A finished request's cache is reused by a prompt that starts the same way: the same
    /// request again, the next turn of the conversation. The replies are those of a fresh
    /// prefill (the CLI's chat path), and usage says how many prompt tokens were cached.
    @Test func laterPromptsReuseTheCachedPrefix() async throws {
        let server = try await RunningServer.start(Self.settings(batch: 2))
        let port = server.port
        let first = try await http(port, "POST", "/v1/chat/completions", body: chatBody(#""temperature":0,"max_tokens":8"#))
        let prompt = try #require(first.json["usage"]?["prompt_tokens"]?.int)
        #expect(first.json["usage"]?["prompt_tokens_details"]?["cached_tokens"]?.int == 0)
        let again = try await http(port, "POST", "/v1/chat/completions", body: chatBody(#""temperature":0,"max_tokens":8"#))
        #expect(again.json["usage"]?["prompt_tokens_details"]?["cached_tokens"]?.int == prompt - 1)
        #expect(again.json["choices"]?[0]?["message"] == first.json["choices"]?[0]?["message"])

        let reply = try #require(first.json["choices"]?[0]?["message"]?["content"]?.stringValue)
        let turns = [TextData.ChatMessage(role: "user", content: "Hello there"), TextData.ChatMessage(role: "assistant", content: reply),
                     TextData.ChatMessage(role: "user", content: "And then?")]
        let conversation = turns.map { #"{"role":"\#($0.role)","content":\#(JSONValue.string($0.content).compact())}"# }
        let second = try await http(
            port, "POST", "/v1/chat/completions",
            body: #"{"model":"tiny","messages":[\#(conversation.joined(separator: ","))],"temperature":0,"max_tokens":8}"#)
        #expect(second.json["usage"]?["prompt_tokens_details"]?["cached_tokens"]?.int.map { $0 >= prompt } == true, "\(second.body)")
        let loaded = try loadModel(from: tinyChat)
        let expected = try chatReply(loaded, style: loaded.chatStyle()!, messages: turns, sampling: SamplingConfig(maxTokens: 8, temperature: 0))
        #expect(second.json["choices"]?[0]?["message"]?["content"] == .string(expected.text))
        try await server.stop()
    }

    @Test func textCompletionsStopAtStopStrings() async throws {
        let server = try await RunningServer.start(Self.settings())
        let plain = try await http(server.port, "POST", "/v1/completions", body: #"{"model":"tiny","prompt":"Once upon","max_tokens":16,"temperature":0}"#)
        #expect(plain.json["object"] == .string("text_completion"), "\(plain.body)")
        let text = try #require(plain.json["choices"]?[0]?["text"]?.stringValue)
        // A stop string taken from the middle of the greedy text cuts the reply just before it.
        let middle = text.dropFirst(text.count / 2)
        if let stop = middle.first.map(String.init), !stop.trimmingCharacters(in: .whitespaces).isEmpty {
            let cut = try await http(
                server.port, "POST", "/v1/completions",
                body: #"{"model":"tiny","prompt":"Once upon","max_tokens":16,"temperature":0,"stop":"\#(stop)"}"#)
            let want = String(text[..<text.range(of: stop)!.lowerBound])
            #expect(cut.json["choices"]?[0]?["text"] == .string(want))
            #expect(cut.json["choices"]?[0]?["finish_reason"] == .string("stop"))
        }
        try await server.stop()
    }

    @Test func badRequestsGetOpenAIErrors() async throws {
        var settings = Self.settings()
        settings.maxBodyBytes = 2048
        let server = try await RunningServer.start(settings)
        let port = server.port
        func error(_ r: Exchange) -> (Int, String?, String?) {
            (r.status, r.json["error"]?["param"]?.stringValue, r.json["error"]?["code"]?.stringValue)
        }
        #expect(error(try await http(port, "POST", "/v1/chat/completions", body: "{not json")).0 == 400)
        let unknown = try await http(port, "POST", "/v1/chat/completions", body: #"{"model":"big","messages":[{"role":"user","content":"x"}]}"#)
        #expect(error(unknown) == (400, "model", "model_not_found"))
        #expect(unknown.json["error"]?["message"]?.stringValue?.contains("tiny") == true)
        #expect(error(try await http(port, "POST", "/v1/chat/completions", body: chatBody(#""temperature":3"#))) == (400, "temperature", nil))
        #expect(error(try await http(port, "POST", "/v1/chat/completions", body: chatBody(#""n":5"#))) == (400, "n", nil))
        #expect(error(try await http(port, "POST", "/v1/chat/completions", body: chatBody(#""max_tokens":500"#))).2 == "context_length_exceeded")
        #expect(error(try await http(port, "POST", "/v1/chat/completions", body: chatBody(#""frequency_penalty":0.5"#))).1 == "frequency_penalty")
        #expect(error(try await http(port, "POST", "/v1/chat/completions", body: chatBody(#""top_logprobs":2"#))).1 == "top_logprobs")
        #expect(error(try await http(port, "POST", "/v1/chat/completions", body: chatBody("\"stop\":7"))).1 == "stop")
        let roles = try await http(port, "POST", "/v1/chat/completions", body: #"{"model":"tiny","messages":[{"role":"robot","content":"x"}]}"#)
        #expect(error(roles).1 == "messages[0].role")
        #expect(error(try await http(port, "GET", "/v1/nothing")).0 == 404)
        #expect(error(try await http(port, "GET", "/v1/chat/completions")).0 == 405)
        let large = try await http(port, "POST", "/v1/chat/completions", body: chatBody("\"user\":\"\(String(repeating: "x", count: 4000))\""))
        #expect(error(large) == (413, nil, "body_too_large"))
        // The server is still serving after all of them.
        #expect(try await http(port, "POST", "/v1/chat/completions", body: chatBody(#""max_tokens":2"#)).status == 200)
        try await server.stop()
    }

    @Test func anAPIKeyGuardsTheAPIButNotHealth() async throws {
        var settings = Self.settings()
        settings.apiKey = "sekret"
        let server = try await RunningServer.start(settings)
        let missing = try await http(server.port, "GET", "/v1/models")
        #expect(missing.status == 401 && missing.json["error"]?["code"] == .string("invalid_api_key"))
        #expect(try await http(server.port, "GET", "/v1/models", headers: ["Authorization": "Bearer wrong"]).status == 401)
        #expect(try await http(server.port, "GET", "/v1/models", headers: ["Authorization": "Bearer sekret"]).status == 200)
        #expect(try await http(server.port, "GET", "/health").status == 200)
        try await server.stop()
    }

    @Test func anAdapterIsServedByNameOverItsBase() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("serve-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let base = dir.appendingPathComponent("tiny.h5").path, adapter = dir.appendingPathComponent("lora.h5").path
        let loaded = try importModel(from: tinyChat, to: base)
        var rng = RNG(seed: 5)
        let lora = LoRAConfig(rank: 4, alpha: 8, targetModules: ["q_proj", "v_proj", "down_proj"])
        for (_, t) in loaded.model.addLoRA(lora, rng: &rng) { for i in 0..<t.count { t.data[i] = Float.random(in: -0.5...0.5, using: &rng) } }
        try writeCheckpoint(
            adapterContents(loaded.model, lora: lora, basePath: base, adapterPath: adapter, threads: 1), to: URL(fileURLWithPath: adapter))

        var settings = ServeSettings(models: [ServedPath(name: "tiny", path: base)])
        settings.adapters = [ServedPath(name: "tuned", path: adapter)]
        settings.context = 128
        let server = try await RunningServer.start(settings)
        let models = try await http(server.port, "GET", "/v1/models").json
        #expect(models["data"]?[1]?["id"] == .string("tuned") && models["data"]?[1]?["parent"] == .string("tiny"))
        let sampling = SamplingConfig(maxTokens: 12, temperature: 0)
        for (name, path) in [("tiny", nil), ("tuned", adapter)] {
            let r = try await http(server.port, "POST", "/v1/chat/completions", body: chatBody(#""temperature":0,"max_tokens":12"#).replacingOccurrences(of: "\"tiny\"", with: "\"\(name)\""))
            let want = try referenceReply(base, adapter: path, message: "Hello there", sampling: sampling)
            #expect(r.json["choices"]?[0]?["message"]?["content"] == .string(want), "\(name)")
            #expect(r.json["model"] == .string(name))
        }
        try await server.stop()
    }

    @Test func concurrentRequestsShareStepsAndAFullQueueAnswers503() async throws {
        let server = try await RunningServer.start(Self.settings(batch: 2, queue: 1))
        let port = server.port
        let solo = try await http(port, "POST", "/v1/chat/completions", body: chatBody(#""seed":3,"max_tokens":24,"temperature":1.0"#))
        // Three clients at once on two sequences and a queue of one: all are answered, each as alone.
        let replies = try await withThrowingTaskGroup(of: Exchange.self) { group in
            for _ in 0..<3 {
                group.addTask { try await http(port, "POST", "/v1/chat/completions", body: chatBody(#""seed":3,"max_tokens":24,"temperature":1.0"#)) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        for r in replies {
            #expect(r.status == 200)
            #expect(r.json["choices"]?[0]?["message"] == solo.json["choices"]?[0]?["message"])
        }
        // Paused, the scheduler starts nothing: two sequences plus one waiting take three
        // requests, the fourth is refused with Retry-After, and after the pause all three finish.
        let scheduler = server.state.catalog!.scheduler
        scheduler.paused = true
        let held = (0..<3).map { _ in
            Task { try await http(port, "POST", "/v1/chat/completions", body: chatBody(#""max_tokens":8"#)) }
        }
        while scheduler.load.waiting < 3 { try await Task.sleep(for: .milliseconds(2)) }
        let refused = try await http(port, "POST", "/v1/chat/completions", body: chatBody(#""max_tokens":8"#))
        #expect(refused.status == 503 && refused.headers["retry-after"] == "1")
        #expect(refused.json["error"]?["code"] == .string("queue_full"))
        scheduler.paused = false
        for request in held { #expect(try await request.value.status == 200) }
        try await server.stop()
    }

    @Test func aClientThatAsksAgainAtOnceFindsTheRoomItsLastRequestLeft() async throws {
        // One sequence and no queue: each answer must free its sequence before the client reads it.
        let server = try await RunningServer.start(Self.settings(batch: 1, queue: 0))
        for _ in 0..<30 {
            let r = try await http(server.port, "POST", "/v1/chat/completions", body: chatBody(#""max_tokens":2"#))
            #expect(r.status == 200)
            #expect(server.state.catalog!.scheduler.load.running == 0)
        }
        try await server.stop()
    }

    @Test func aStopLetsTheRequestInFlightFinishAndAClientThatLeavesFreesItsSequence() async throws {
        let server = try await RunningServer.start(Self.settings(batch: 1, queue: 0))
        let port = server.port
        // A client that reads a little of a stream and hangs up: its sequence is freed.
        _ = try await http(port, "POST", "/v1/chat/completions", body: chatBody(#""max_tokens":100,"stream":true"#), readLimit: 200)
        var load = server.state.catalog!.scheduler.load
        for _ in 0..<200 where load.running + load.waiting > 0 {
            try await Task.sleep(for: .milliseconds(10))
            load = server.state.catalog!.scheduler.load
        }
        #expect(load.running == 0 && load.waiting == 0)
        // A client that hangs up before a whole (not streamed) reply: its request is dropped
        // unanswered instead of running to max_tokens for nobody.
        let scheduler = server.state.catalog!.scheduler
        scheduler.paused = true
        let leaving = try sendRequest(port, "POST", "/v1/chat/completions", body: chatBody(#""max_tokens":60"#))
        while scheduler.load.waiting < 1 { try await Task.sleep(for: .milliseconds(2)) }
        close(leaving)
        try await Task.sleep(for: .milliseconds(100))  // the server sees the hang-up
        let before = scheduler.abandoned
        scheduler.paused = false
        for _ in 0..<200 where scheduler.abandoned == before { try await Task.sleep(for: .milliseconds(10)) }
        #expect(scheduler.abandoned == before + 1 && scheduler.load.running == 0)
        // A stop during a request: the request completes, then the server is gone.
        let inFlight = Task { try await http(port, "POST", "/v1/chat/completions", body: chatBody(#""max_tokens":60,"stream":true"#)) }
        while server.state.catalog!.scheduler.load.running == 0 { try await Task.sleep(for: .milliseconds(2)) }
        try await server.stop()
        let finished = try await inFlight.value
        #expect(finished.status == 200 && finished.events.last == "[DONE]")
        await #expect(throws: (any Error).self) { try await http(port, "GET", "/health") }
    }

    /// A teacher that answers every chat request with `answer`, counting them; a `failing`
    /// one answers 500.
    static func scriptedTeacher(answer: String, failing: Bool = false) async throws -> (HTTPServer, Task<Void, any Error>, Locked<Int>) {
        let calls = Locked(0)
        let server = try await HTTPServer(host: "127.0.0.1", port: 0, maxBodyBytes: 1 << 20) { request in
            calls.withLock { $0 += 1 }
            if failing { return .json(#"{"error":{"message":"boom"}}"#, status: 500) }
            let body = (try? JSONValue.parse(request.body)) ?? .null
            let model = body["model"]?.stringValue ?? "?"
            return .json(
                #"{"id":"t1","object":"chat.completion","created":1,"model":"\#(model)","choices":[{"index":0,"message":{"role":"assistant","content":"\#(answer)"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#)
        }
        return (server, Task { try await server.run() }, calls)
    }

    @Test func aCascadeAnswersWithTheStudentWhenItsSamplesAgreeAndElseAsksTheTeacher() async throws {
        let (teacher, teacherTask, calls) = try await Self.scriptedTeacher(answer: "Paris")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cascade-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var settings = Self.settings()
        settings.teacher = try TeacherEndpoint(json: #"{"type": "openai", "base_url": "http://127.0.0.1:\#(teacher.port)/v1", "model": "big"}"#)
        settings.decisionLog = dir.appendingPathComponent("decisions.jsonl").path
        let server = try await RunningServer.start(settings)
        let port = server.port
        func ask(_ model: String, _ fields: String) async throws -> Exchange {
            try await http(port, "POST", "/v1/chat/completions", body: chatBody(fields).replacingOccurrences(of: "\"tiny\"", with: "\"\(model)\""))
        }
        // Greedy samples always agree: the student answers, and its reply is its greedy reply.
        let agreed = try await ask("cascade:m=3,tau=0.9", #""temperature":0,"max_tokens":8"#)
        #expect(agreed.status == 200, "\(agreed.body)")
        #expect(agreed.json["model"] == .string("tiny") && agreed.json["distill"]?["decision"] == .string("student"))
        #expect(agreed.json["distill"]?["agreement"]?.numberValue == 1)
        let greedy = try await http(port, "POST", "/v1/chat/completions", body: chatBody(#""temperature":0,"max_tokens":8"#))
        #expect(agreed.json["choices"]?[0]?["message"] == greedy.json["choices"]?[0]?["message"])
        #expect(calls.value == 0)
        // Hot samples of a tiny random model disagree: below tau the teacher answers.
        let hot = try await ask("cascade:m=4,tau=1", #""temperature":2,"max_tokens":8,"seed":1"#)
        #expect(hot.json["model"] == .string("big") && hot.json["distill"]?["escalated"] == .bool(true), "\(hot.body)")
        #expect(hot.json["choices"]?[0]?["message"]?["content"] == .string("Paris"))
        #expect(calls.value == 1)
        // Streamed, the same decision arrives as chunks.
        let streamed = try await ask("cascade:m=4,tau=1", #""temperature":2,"max_tokens":8,"seed":1,"stream":true"#)
        #expect(streamed.events.last == "[DONE]")
        #expect(streamed.events.contains { $0.contains("\"content\":\"Paris\"") })
        // Bad cascades are 400s; every decision was logged.
        #expect(try await ask("cascade:m=99,tau=0.5", "\"max_tokens\":2").status == 400)
        #expect(try await ask("cascade:m=2,tau=0.5", "\"n\":2").status == 400)
        let log = try String(contentsOfFile: settings.decisionLog!, encoding: .utf8).split(separator: "\n")
        #expect(log.count == 3)
        #expect(log.first?.contains("\"decision\":\"student\"") == true)
        let lines = log.map { (try? JSONValue.parse(Array($0.utf8))) ?? .null }
        #expect(lines.allSatisfy { $0["prompt"] == .string("Hello there") })
        #expect(lines[0]["text"] == greedy.json["choices"]?[0]?["message"]?["content"] && lines[1]["text"] == .string("Paris"))
        // Read back as a verdict table against a task whose answer must be Paris: the teacher's answers
        // are right, the student's greedy one is not.
        let tasks = dir.appendingPathComponent("tasks.jsonl").path
        try #"{"id": "capital", "prompt": "Hello there", "pattern": "Paris"}"#.write(toFile: tasks, atomically: true, encoding: .utf8)
        let (table, notes) = try VerdictSources.build(paths: [settings.decisionLog!], tasks: tasks)
        #expect(notes.isEmpty && table.models.map(\.name) == ["cascade:m=3,tau=0.9", "cascade:m=4,tau=1"])
        #expect(table.rows.count == 1 && table.rows[0].prompt == "Hello there")
        let student = table.rows[0].models["cascade:m=3,tau=0.9"], cascaded = table.rows[0].models["cascade:m=4,tau=1"]
        #expect(student?.n == 1 && student?.c == 0)
        #expect(cascaded?.n == 2 && cascaded?.c == 2 && cascaded?.samples.first?.answer == "Paris")
        #expect(throws: UserError.self) { try VerdictSources.build(paths: [settings.decisionLog!]) }
        try await server.stop()
        teacher.stop()
        try await teacherTask.value
    }

    @Test func aFailingTeacherIsA502AndTheServerGoesOn() async throws {
        let (teacher, teacherTask, _) = try await Self.scriptedTeacher(answer: "", failing: true)
        var settings = Self.settings()
        settings.teacher = try TeacherEndpoint(json: #"{"type": "openai", "base_url": "http://127.0.0.1:\#(teacher.port)/v1", "model": "big"}"#)
        let server = try await RunningServer.start(settings)
        let body = chatBody(#""temperature":2,"max_tokens":8,"seed":1"#).replacingOccurrences(of: "\"tiny\"", with: "\"cascade:m=4,tau=1\"")
        let failed = try await http(server.port, "POST", "/v1/chat/completions", body: body)
        #expect(failed.status == 502 && failed.json["error"]?["code"] == .string("teacher_failed"), "\(failed.body)")
        #expect(try await http(server.port, "POST", "/v1/chat/completions", body: chatBody(#""max_tokens":2"#)).status == 200)
        try await server.stop()
        teacher.stop()
        try await teacherTask.value
    }

    @Test func votesCompareCanonicalAnswers() {
        #expect(canonicalAnswer("  Paris\n", tools: false) == "Paris")
        #expect(canonicalAnswer("", tools: false) == nil)
        #expect(canonicalAnswer(#"{"name": "f", "arguments": {"a": 1}}"#, tools: true) == canonicalAnswer("f(a=1.0)", tools: true))
        #expect(canonicalAnswer("no call here", tools: true) == nil)
    }

    /// tool_choice "required" or a named function samples under the call grammar of the
    /// allowed tools: the tiny random model's choices are calls of them with arguments that fit
    /// their schemas, read back as tool_calls. (Tools in the tiny model's system message need
    /// more than its 256 positions, so the generation is checked on the server's own scheduler
    /// with a short prompt, and the request side over HTTP.)
    @Test func aRequiredToolCallIsSampledUnderTheCallGrammar() async throws {
        let server = try await RunningServer.start(Self.settings())
        let toolsJSON = #"[{"type":"function","function":{"name":"area","parameters":{"properties":{"w":{"type":"integer"}},"required":["w"]}}},"# +
            #"{"type":"function","function":{"name":"echo","parameters":{"properties":{"s":{"type":"string"}},"required":["s"]}}}]"#
        guard case .array(let tools) = try JSONValue.parse(Array(toolsJSON.utf8)) else { throw CancellationError() }
        let catalog = try #require(server.state.catalog)
        let entry = try catalog.entry("tiny")
        var finished = 0
        for (grammarTools, allowed) in [(tools, ["area", "echo"]), ([tools[0]], ["area"])] {
            var job = GenerationJob(
                prompt: entry.tokenizer.encode("Call a tool."), maxTokens: 60, temperature: 1, topP: 1, seeds: [1, 2, 3, 4],
                endTokens: Set([entry.endOfText].compactMap { $0 }))
            job.grammar = CallGrammar.pythonCalls(tools: grammarTools)
            var texts = ["", "", "", ""], reasons: [FinishReason?] = [nil, nil, nil, nil]
            for await event in try catalog.scheduler.submit(job, lane: "tiny") {
                if case .text(let i, let t, _) = event { texts[i] += t }
                if case .finished(let i, let reason, _) = event { reasons[i] = reason }
            }
            for (text, reason) in zip(texts, reasons) {
                // A choice cut at max_tokens is a prefix of a call; a finished one is a call.
                guard reason == .stop else { continue }
                finished += 1
                guard case .array(let calls)? = openAIToolCalls(in: text, id: "t") else {
                    Issue.record("no tool call in \(text)")
                    continue
                }
                for call in calls {
                    let name = try #require(call["function"]?["name"]?.stringValue)
                    #expect(allowed.contains(name), "\(text)")
                    let arguments = try JSONValue.parse(Array((call["function"]?["arguments"]?.stringValue ?? "").utf8))
                    #expect(name == "area" ? arguments["w"]?.int != nil : arguments["s"]?.stringValue != nil, "\(text)")
                }
            }
        }
        #expect(finished >= 4)
        // The request side: the tools a choice forces, and the choices the API does not have.
        let required = try ChatRequest(body: Array(chatBody(#""tools":\#(toolsJSON),"tool_choice":"required""#).utf8), maxChoices: 4)
        #expect(required.requiredTools == tools)
        let named = #"{"type":"function","function":{"name":"echo"}}"#
        #expect(try ChatRequest(body: Array(chatBody(#""tools":\#(toolsJSON),"tool_choice":\#(named)"#).utf8), maxChoices: 4).requiredTools == [tools[1]])
        #expect(try ChatRequest(body: Array(chatBody(#""tools":\#(toolsJSON),"tool_choice":"auto""#).utf8), maxChoices: 4).requiredTools == nil)
        for (body, message) in [
            (chatBody(#""tool_choice":"required""#), "needs tools"),
            (chatBody(#""tools":\#(toolsJSON),"tool_choice":{"type":"function","function":{"name":"volume"}}"#), "not among"),
            (chatBody(#""tools":\#(toolsJSON),"tool_choice":"always""#), "may be"),
        ] {
            let r = try await http(server.port, "POST", "/v1/chat/completions", body: body)
            #expect(r.status == 400 && r.json["error"]?["param"] == .string("tool_choice"), "\(r.body)")
            #expect(r.json["error"]?["message"]?.stringValue?.contains(message) == true, "\(r.body)")
        }
        try await server.stop()
    }

    @Test func toolCallsAreReadByTheVerifiersParser() {
        let calls = openAIToolCalls(in: #"<tool_call>[{"name": "area", "arguments": {"w": 5, "h": 3}}]</tool_call>"#, id: "x")
        #expect(calls?[0]?["function"]?["name"] == .string("area"))
        #expect(calls?[0]?["function"]?["arguments"] == .string(#"{"w":5,"h":3}"#))
        #expect(calls?[0]?["type"] == .string("function"))
        let python = openAIToolCalls(in: "[area(w=5, h=3), weather(city='Paris')]", id: "x")
        #expect(python?[1]?["function"]?["name"] == .string("weather"))
        #expect(openAIToolCalls(in: "The area is 15.", id: "x") == nil)
        #expect(openAIToolCalls(in: "area(w=5, h=width)", id: "x") == nil)  // unreadable: plain content
    }

    @Test func requestsWhileLoadingAnswer503() async throws {
        let state = ServeState(settings: Self.settings())
        let handler = serveRoutes(state)
        let health = await handler(HTTPRequest(method: "GET", path: "/health", headers: [], body: []))
        #expect(health.status == 503 && health.headers.contains { $0.0 == "Retry-After" })
        let chat = await handler(HTTPRequest(method: "POST", path: "/v1/chat/completions", headers: [], body: Array(chatBody("\"n\":1").utf8)))
        #expect(chat.status == 503)
    }
}
