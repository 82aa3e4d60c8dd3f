// The openai teacher against a real HTTP server on 127.0.0.1: answers, retries (500, 429 with
// Retry-After, timeouts, hang-ups), no retry on 4xx and quota errors, bad responses classified
// and never cached, the cache serving a re-run without a single request, the concurrency cap.

import Foundation
import JSON
import Platform
import Testing
import TextData
import Verify

@testable import Teacher

/// Delays the teacher asked to sleep, recorded instead of slept.
final class SleepLog: @unchecked Sendable {
    private let lock = NSLock()
    private var _delays: [Double] = []
    var delays: [Double] { lock.withLock { _delays } }
    func record(_ d: Double) { lock.withLock { _delays.append(d) } }
}

func temporaryCache() throws -> CallCache {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distill-teacher-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return try CallCache(path: dir.appendingPathComponent("calls.sqlite").path)
}

func makeTeacher(
    _ server: ScriptedServer, cache: CallCache, samples: Int = 1, maxAttempts: Int = 4, timeout: Double = 5,
    concurrency: Int = 8, log: SleepLog = SleepLog(), configure: (inout OpenAITeacherConfig) -> Void = { _ in }
) throws -> OpenAITeacher {
    var config = OpenAITeacherConfig(baseURL: server.baseURL, model: "teacher-7b")
    config.samples = samples
    config.maxAttempts = maxAttempts
    config.timeoutSeconds = timeout
    config.concurrency = concurrency
    config.apiKeyEnv = "TEST_TEACHER_KEY"
    configure(&config)
    var teacher = try OpenAITeacher(config: config, cache: cache, environment: ["TEST_TEACHER_KEY": "sk-secret"])
    teacher.sleep = { log.record($0) }
    return teacher
}

let arithmetic = [
    TeacherTask(id: "a", prompt: .text("What is 6 * 7?"), answer: "42"),
    TeacherTask(id: "b", prompt: .messages([ChatMessage(role: "user", content: "What is 2 + 2?")]), answer: "4"),
]

@Suite struct OpenAITeacherTests {
    @Test func samplesWithDistinctSeedsAndServesARerunFromTheCache() async throws {
        let server = try ScriptedServer { _, request in
            let seed = request.json["seed"] as? Int ?? -1
            return .respond(status: 200, headers: [:], body: chatResponse("seed \(seed)\n#### 42"))
        }
        defer { server.stop() }
        let cache = try temporaryCache()
        let teacher = try makeTeacher(server, cache: cache, samples: 3)
        let first = try await teacher.sample(arithmetic)
        #expect(server.requests.count == 6)
        #expect(first.map(\.taskID) == ["a", "a", "a", "b", "b", "b"])
        #expect(first.map(\.seed) == [0, 1, 2, 0, 1, 2])
        #expect(first.allSatisfy { !$0.cached && $0.requests == 1 })
        let texts = first.map { (try? $0.result.get())?.text }
        #expect(texts[1] == "seed 1\n#### 42")
        #expect((try first[0].result.get()).completionTokens == 5)
        // The request as the server saw it: path, key, chat body with the sampling settings.
        let request = server.requests[0]
        #expect(request.path == "/v1/chat/completions")
        #expect(request.headers["authorization"] == "Bearer sk-secret")
        let body = request.json
        #expect(body["model"] as? String == "teacher-7b")
        #expect(body["max_tokens"] as? Int == 512)
        #expect((body["messages"] as? [[String: String]])?.first?["role"] == "user")
        #expect(try cache.count() == 6)

        // A second run (a fresh teacher on the same cache) makes no request and gets the same texts.
        let again = try makeTeacher(server, cache: cache, samples: 3)
        let second = try await again.sample(arithmetic)
        #expect(server.requests.count == 6)
        #expect(second.allSatisfy { $0.cached && $0.requests == 0 })
        #expect(second.map { (try? $0.result.get())?.text } == texts)
        #expect(again.counters.cacheHits == 6 && again.counters.requests == 0)
        // The key names neither the API key nor anything outside the request.
        #expect(!teacher.cacheKey(teacher.requestBody(arithmetic[0], seed: 0)).contains("sk-secret"))
    }

    @Test func retriesA500AndHonoursRetryAfterOn429() async throws {
        let server = try ScriptedServer { index, _ in
            switch index {
            case 0: return .respond(status: 500, headers: [:], body: "{\"error\":\"boom\"}")
            case 1: return .respond(status: 429, headers: ["Retry-After": "7"], body: "{\"error\":\"slow down\"}")
            case 2: return .respond(status: 408, headers: [:], body: "")
            default: return .respond(status: 200, headers: [:], body: chatResponse("#### 42"))
            }
        }
        defer { server.stop() }
        let log = SleepLog()
        let teacher = try makeTeacher(server, cache: try temporaryCache(), maxAttempts: 5, log: log) {
            $0.backoffBaseSeconds = 2
        }
        let sample = try await teacher.sampleOne(arithmetic[0], taskIndex: 0, sampleIndex: 0)
        #expect(try sample.result.get().text == "#### 42")
        #expect(sample.requests == 4 && server.requests.count == 4)
        // Backoff after attempt n is base * 2^(n-1) times a jitter factor in [0.5, 1]; a 429 waits
        // exactly its Retry-After.
        let d = log.delays
        #expect(d.count == 3)
        #expect((1.0...2.0).contains(d[0]))
        #expect(d[1] == 7)
        #expect((4.0...8.0).contains(d[2]))
        #expect(teacher.counters.retries == 3)
    }

    @Test(
        "4xx other than 408/429 and quota errors are never retried",
        arguments: [
            (400, "{\"error\":{\"message\":\"bad request\"}}", CallFailureKind.client),
            (401, "{\"error\":{\"message\":\"invalid key\"}}", .client),
            (404, "{\"error\":{\"message\":\"model not found\"}}", .client),
            (429, "{\"error\":{\"code\":\"insufficient_quota\"}}", .quota),
        ])
    func neverRetried(status: Int, body: String, kind: CallFailureKind) async throws {
        let server = try ScriptedServer { _, _ in .respond(status: status, headers: [:], body: body) }
        defer { server.stop() }
        let cache = try temporaryCache()
        let teacher = try makeTeacher(server, cache: cache)
        let sample = try await teacher.sampleOne(arithmetic[0], taskIndex: 0, sampleIndex: 0)
        let error = try #require(sample.result.failure)
        #expect(error.kind == kind && error.status == status && error.attempts == 1)
        #expect(server.requests.count == 1)
        #expect(try cache.count() == 0)
        #expect(teacher.counters.failures == [kind: 1])
    }

    @Test(
        "bad 2xx bodies are classified, retried, and never cached",
        arguments: [
            ("this is not json", "not JSON"),
            ("{\"object\":\"chat.completion\"}", "no choices"),
            ("{\"choices\":[]}", "no choices"),
            ("{\"error\":{\"message\":\"overloaded\"}}", "an error"),
            ("[1,2]", "not an object"),
            ("{\"choices\":[{\"message\":{\"role\":\"assistant\"}}]}", "neither content nor tool_calls"),
        ])
    func invalidResponses(body: String, reason: String) async throws {
        let server = try ScriptedServer { _, _ in .respond(status: 200, headers: [:], body: body) }
        defer { server.stop() }
        let cache = try temporaryCache()
        let teacher = try makeTeacher(server, cache: cache, maxAttempts: 2)
        let sample = try await teacher.sampleOne(arithmetic[0], taskIndex: 0, sampleIndex: 0)
        let error = try #require(sample.result.failure)
        #expect(error.kind == .invalidResponse)
        #expect(error.message.contains(reason), "\(error.message)")
        #expect(server.requests.count == 2)
        #expect(try cache.count() == 0)
    }

    @Test func garbageThenAnswerCachesOnlyTheAnswer() async throws {
        let server = try ScriptedServer { index, _ in
            index == 0
                ? .raw("\u{1}\u{2}garbage\r\n\r\n") : .respond(status: 200, headers: [:], body: chatResponse("#### 42"))
        }
        defer { server.stop() }
        let cache = try temporaryCache()
        let teacher = try makeTeacher(server, cache: cache)
        let sample = try await teacher.sampleOne(arithmetic[0], taskIndex: 0, sampleIndex: 0)
        #expect(try sample.result.get().text == "#### 42")
        #expect(sample.requests == 2)
        #expect(try cache.count() == 1)

        let always = try ScriptedServer { _, _ in .raw("\u{1}\u{2}garbage\r\n\r\n") }
        defer { always.stop() }
        let failing = try makeTeacher(always, cache: cache, maxAttempts: 2)
        let bad = try await failing.sampleOne(arithmetic[1], taskIndex: 1, sampleIndex: 0)
        // libcurl usually reports the bytes as "Received HTTP/0.9" (invalid-response); once in a
        // loaded run it reported a connection failure instead. Either is retried and not cached.
        let kind = try #require(bad.result.failure?.kind)
        #expect([.invalidResponse, .connection].contains(kind))
        #expect(bad.requests == 2)
        #expect(try cache.count() == 1)
    }

    @Test func aStallingServerTimesOutAndIsRetried() async throws {
        // The server holds each connection for 30 s; only the client's timeout ends them sooner.
        let server = try ScriptedServer { _, _ in .stall(seconds: 30) }
        defer { server.stop() }
        let teacher = try makeTeacher(server, cache: try temporaryCache(), maxAttempts: 2, timeout: 0.5)
        let started = Date()
        let sample = try await teacher.sampleOne(arithmetic[0], taskIndex: 0, sampleIndex: 0)
        let elapsed = Date().timeIntervalSince(started)
        let error = try #require(sample.result.failure)
        #expect(error.kind == .timeout, "\(error)")
        #expect(error.attempts == 2 && server.requests.count == 2)
        // The server holds each connection for 30 s, so a timeout verdict can only come from the
        // client's deadline; elapsed >= 1 shows each attempt waited its full 0.5 s. No upper
        // bound: in the full suite, CPU-bound tests occupy Swift's cooperative threads and
        // delay every await here by seconds.
        #expect(elapsed >= 1, "two 0.5 s timeouts took \(elapsed) s")
    }

    /// The timeout bounds the whole request: a server that keeps sending a byte every 0.2 s
    /// (never idle long enough for URLSession's own timeout) is still cut off.
    @Test func aTricklingServerHitsTheTotalDeadline() async throws {
        let server = try ScriptedServer { _, _ in .trickle(bytes: 30, interval: 0.2) }
        defer { server.stop() }
        let teacher = try makeTeacher(server, cache: try temporaryCache(), maxAttempts: 1, timeout: 1)
        let sample = try await teacher.sampleOne(arithmetic[0], taskIndex: 0, sampleIndex: 0)
        // Without the deadline the 6 s body would arrive whole and be classified invalid-response.
        #expect(sample.result.failure?.kind == .timeout, "\(String(describing: sample.result.failure))")
    }

    @Test func hangUpsAndRefusedConnectionsAreConnectionErrors() async throws {
        let server = try ScriptedServer { _, _ in .hangUp }
        defer { server.stop() }
        let teacher = try makeTeacher(server, cache: try temporaryCache(), maxAttempts: 3)
        let sample = try await teacher.sampleOne(arithmetic[0], taskIndex: 0, sampleIndex: 0)
        #expect(sample.result.failure?.kind == .connection, "\(String(describing: sample.result.failure))")
        #expect(server.requests.count == 3)

        // A port nobody listens on: the server above, stopped.
        let closed = try ScriptedServer { _, _ in .hangUp }
        closed.stop()
        let refused = try makeTeacher(closed, cache: try temporaryCache(), maxAttempts: 2)
        let r = try await refused.sampleOne(arithmetic[0], taskIndex: 0, sampleIndex: 0)
        #expect(r.result.failure?.kind == .connection)
        #expect(r.result.failure?.attempts == 2)
    }

    @Test func keepsAtMostTheConcurrencyLimitInFlight() async throws {
        let server = try ScriptedServer(delay: 0.3) { _, _ in
            .respond(status: 200, headers: [:], body: chatResponse("4"))
        }
        defer { server.stop() }
        let teacher = try makeTeacher(server, cache: try temporaryCache(), samples: 6, concurrency: 3)
        let samples = try await teacher.sample(arithmetic)
        #expect(samples.count == 12 && samples.allSatisfy { $0.result.failure == nil })
        // The cap is the point; overlap of at least two shows requests do run concurrently (a
        // loaded machine may start the third late, so exactly three is not required).
        #expect(server.maxInFlight <= 3 && server.maxInFlight >= 2, "max in flight \(server.maxInFlight)")
    }

    /// A run that dies part-way (here: the server stops answering after three calls) keeps
    /// every finished call; the next run asks only for the rest.
    @Test func anInterruptedRunResumesWithoutRepeatingFinishedCalls() async throws {
        let healthy = Flag()
        let server = try ScriptedServer { index, _ in
            index < 3 || healthy.value ? .respond(status: 200, headers: [:], body: chatResponse("#### 42")) : .hangUp
        }
        defer { server.stop() }
        let cache = try temporaryCache()
        let first = try makeTeacher(server, cache: cache, samples: 3, maxAttempts: 1, concurrency: 1)
        let partial = try await first.sample(arithmetic)
        #expect(partial.filter { $0.result.failure == nil }.count == 3)
        #expect(try cache.count() == 3)

        healthy.value = true
        let second = try makeTeacher(server, cache: cache, samples: 3, maxAttempts: 1)
        let resumed = try await second.sample(arithmetic)
        #expect(resumed.allSatisfy { $0.result.failure == nil })
        #expect(resumed.filter(\.cached).count == 3)
        #expect(second.counters.requests == 3)
        #expect(server.requests.count == 6 + 3)
        #expect(try cache.count() == 6)
    }

    @Test func aMissingAPIKeyVariableIsAConfigError() throws {
        var config = OpenAITeacherConfig(baseURL: "http://127.0.0.1:1/v1", model: "m")
        config.apiKeyEnv = "DISTILL_TEST_NO_SUCH_KEY"
        #expect(throws: (any Error).self) {
            try OpenAITeacher(config: config, cache: try temporaryCache(), environment: [:])
        }
        config.apiKeyEnv = nil
        config.temperature = 3
        #expect(config.problems() == ["temperature must be within 0...2, got 3.0"])
    }

    @Test func completionsEndpointTakesPlainPromptsOnly() throws {
        var config = OpenAITeacherConfig(baseURL: "http://127.0.0.1:1/v1", model: "m")
        config.endpoint = .completions
        config.logprobs = true
        let teacher = try OpenAITeacher(config: config, cache: try temporaryCache())
        #expect(throws: Never.self) { try teacher.validate([arithmetic[0]]) }
        #expect(throws: DataError.self) { try teacher.validate([arithmetic[1]]) }  // messages
        let withTools = TeacherTask(id: "t", prompt: .text("x"), tools: [.obj(["name": .string("f")])])
        #expect(throws: DataError.self) { try teacher.validate([withTools]) }
        let body = teacher.requestBody(arithmetic[0], seed: 5)
        #expect(
            body.compact()
                == #"{"model":"m","prompt":"What is 6 * 7?","temperature":0.8,"top_p":1.0,"max_tokens":512,"seed":5,"stream":false,"logprobs":1}"#
        )
    }

    /// Tool names the chat API refuses (dots) are sent encoded and the returned calls mapped back,
    /// so the verifier sees the task's own names; a name that already fits is sent as it is.
    @Test func dottedToolNamesAreEncodedAndMappedBack() async throws {
        let tools: [JSONValue] = [
            .obj(["name": .string("math.factorial"), "parameters": .obj(["type": .string("object")])]),
            .obj(["type": .string("function"), "function": .obj(["name": .string("math_factorial")])]),
            .obj(["name": .string("weather.get")]),
        ]
        let task = TeacherTask(
            id: "f", prompt: .text("5!?"), tools: tools,
            calls: [ExpectedCall(name: "math.factorial", arguments: [(name: "n", acceptable: [.int(5)])])])
        let server = try ScriptedServer { _, request in
            let sent = (request.json["tools"] as? [[String: Any]] ?? []).compactMap {
                ($0["function"] as? [String: Any])?["name"] as? String
            }
            // The server refuses names outside ^[a-zA-Z0-9_-]{1,64}$, as OpenAI's does.
            if sent.count != 3 || sent.contains(where: { $0.range(of: "^[a-zA-Z0-9_-]{1,64}$", options: .regularExpression) == nil }) {
                return .respond(status: 400, headers: [:], body: #"{"error": {"message": "invalid tool name"}}"#)
            }
            let call = sent[0]  // what the server knows math.factorial as
            let message: JSONValue = .obj([
                "role": .string("assistant"), "content": .null,
                "tool_calls": .array([
                    .obj([
                        "id": .string("c"), "type": .string("function"),
                        "function": .obj(["name": .string(call), "arguments": .string(#"{"n": 5}"#)]),
                    ])
                ]),
            ])
            let body = JSONValue.obj(["choices": .array([.obj(["message": message, "finish_reason": .string("tool_calls")])])]).compact()
            return .respond(status: 200, headers: [:], body: body)
        }
        defer { server.stop() }
        let teacher = try makeTeacher(server, cache: try temporaryCache())
        let samples = try await teacher.sample([task])
        let sent = (server.requests[0].json["tools"] as? [[String: Any]] ?? []).compactMap {
            ($0["function"] as? [String: Any])?["name"] as? String
        }
        #expect(sent == ["math_factorial_2", "math_factorial", "weather_get"])
        let text = try samples[0].result.get().text
        #expect(text == #"[{"name":"math.factorial","arguments":{"n":5}}]"#)
        #expect(Verifier(VerifierConfig()).verify(text, for: task).correct)
        #expect(ToolNames(tools).original("math_factorial") == "math_factorial")
    }

    /// A redirect is not followed: the API key never reaches the address a Location names.
    @Test func redirectsAreNotFollowed() async throws {
        let elsewhere = try ScriptedServer { _, _ in .respond(status: 200, headers: [:], body: chatResponse("#### 42")) }
        defer { elsewhere.stop() }
        let server = try ScriptedServer { _, _ in
            .respond(status: 307, headers: ["Location": elsewhere.baseURL + "/chat/completions"], body: "")
        }
        defer { server.stop() }
        let teacher = try makeTeacher(server, cache: try temporaryCache(), maxAttempts: 3)
        let samples = try await teacher.sample([arithmetic[0]])
        let failure = try #require(samples[0].result.failure)
        #expect(failure.kind == .client && failure.status == 307 && failure.attempts == 1, "\(failure)")
        #expect(failure.message.contains("not followed"), "\(failure.message)")
        #expect(server.requests.count == 1 && elsewhere.requests.isEmpty)
    }

    /// A response that is not UTF-8 is an invalid response (retried, never cached), not a
    /// completion with U+FFFD in it.
    @Test func aResponseThatIsNotUTF8IsInvalid() async throws {
        let body = Array(#"{"choices":[{"message":{"role":"assistant","content":"caf"#.utf8) + [0xE9] + Array(#""}}]}"#.utf8)
        let server = try ScriptedServer { _, _ in .respondBytes(body) }
        defer { server.stop() }
        let cache = try temporaryCache()
        let teacher = try makeTeacher(server, cache: cache, maxAttempts: 2)
        let samples = try await teacher.sample([arithmetic[0]])
        let failure = try #require(samples[0].result.failure)
        #expect(failure.kind == .invalidResponse && failure.attempts == 2, "\(failure)")
        #expect(failure.message.contains("not valid UTF-8 (byte 57 of 63)"), "\(failure.message)")
        #expect(try cache.count() == 0)
    }

    @Test func retryAfterReadsSecondsAndHTTPDates() {
        #expect(OpenAITeacher.retryAfter("3") == 3)
        #expect(OpenAITeacher.retryAfter(nil) == nil)
        let past = OpenAITeacher.retryAfter("Wed, 21 Oct 2015 07:28:00 GMT")
        #expect(past == 0)
    }
}

extension Result {
    var failure: Failure? { if case .failure(let e) = self { e } else { nil } }
}

final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var _value = false
    var value: Bool {
        get { lock.withLock { _value } }
        set { lock.withLock { _value = newValue } }
    }
}
