import Foundation
import FoundationNetworking
import JSON
import Platform
import Verify

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Why a teacher call failed, as counted in stats ("failures by class").
package enum CallFailureKind: String, Sendable, Codable, CaseIterable {
    /// No HTTP response: refused, reset, closed early, DNS. Retried.
    case connection
    /// No complete response within `timeout_seconds`. Retried.
    case timeout
    /// 429 (Retry-After honoured). Retried.
    case rateLimited = "rate-limited"
    /// 429 saying the quota is used up (`insufficient_quota`), or a Retry-After beyond the cap. Not retried.
    case quota
    /// 408 or 5xx. Retried.
    case server
    /// Any other 4xx: a request the server will never accept (bad model name, bad key). Not retried.
    case client
    /// 2xx whose body is not JSON, is an error object, or lacks choices/content. Retried, never cached.
    case invalidResponse = "invalid-response"
    /// The command teacher's program exited nonzero, was killed by a signal, or could not start.
    /// Retried (up to its max_attempts).
    case exitStatus = "exit-status"

    package var retryable: Bool { ![.quota, .client].contains(self) }
}

/// A failed call: its class, the last status and message, and how many tries were made.
package struct TeacherCallError: Error, Sendable, Equatable, CustomStringConvertible {
    package var kind: CallFailureKind
    package var status: Int?
    package var message: String
    package var attempts: Int

    package var description: String {
        "\(kind.rawValue)\(status.map { " (HTTP \($0))" } ?? ""): \(message)"
            + (attempts > 1 ? " after \(attempts) attempts" : "")
    }
}

/// One teacher answer.
package struct TeacherCompletion: Sendable, Equatable {
    /// The completion text; tool calls of a chat response are appended as a JSON array of
    /// {"name","arguments"} so the function-call verifier reads them.
    package var text: String
    package var finishReason: String?
    package var promptTokens: Int?
    package var completionTokens: Int?
    package var latency: Double
    /// Log-probabilities of the completion's tokens, when asked for and provided.
    package var logprobs: [Double]? = nil
}

/// One sample of one task: the outcome and where it came from.
package struct TeacherSample: Sendable {
    package var taskIndex: Int
    package var taskID: String
    package var sampleIndex: Int
    package var seed: Int
    package var result: Result<TeacherCompletion, TeacherCallError>
    /// True when the result came from the cache and no request was made.
    package var cached: Bool
    /// HTTP requests made for this sample (0 when cached).
    package var requests: Int
}

/// Counters over a sampling run, safe to read while it runs.
package final class CallCounters: @unchecked Sendable {
    // @unchecked: every field is read and written with `lock` held.
    private let lock = NSLock()
    private var _requests = 0, _cacheHits = 0, _retries = 0, _completed = 0
    private var _failures: [CallFailureKind: Int] = [:]

    package init() {}

    func add(
        requests: Int = 0, cacheHits: Int = 0, retries: Int = 0, completed: Int = 0, failure: CallFailureKind? = nil
    ) {
        lock.lock()
        defer { lock.unlock() }
        _requests += requests
        _cacheHits += cacheHits
        _retries += retries
        _completed += completed
        if let failure { _failures[failure, default: 0] += 1 }
    }

    /// HTTP requests sent (retries included).
    package var requests: Int { lock.withLock { _requests } }
    package var cacheHits: Int { lock.withLock { _cacheHits } }
    package var retries: Int { lock.withLock { _retries } }
    /// Samples finished, successfully or not.
    package var completed: Int { lock.withLock { _completed } }
    package var failures: [CallFailureKind: Int] { lock.withLock { _failures } }
}

/// The `openai` teacher backend: OpenAI-compatible chat or completions over HTTP.
///
/// Every call is looked up in the cache first; a successful response is committed to the cache
/// before it is parsed into a result. Retries back off exponentially with jitter on connection
/// errors, timeouts, 408, 5xx and invalid responses; a 429 waits the Retry-After it names;
/// other 4xx and quota errors fail at once.
package struct OpenAITeacher: TeacherBackend {
    package let config: OpenAITeacherConfig
    package let cache: CallCache
    package let counters = CallCounters()
    private let apiKey: String?
    private let session: URLSession
    /// Waits between attempts; tests replace it to record delays instead of sleeping.
    package var sleep: @Sendable (Double) async throws -> Void = { seconds in
        try await Task.sleep(nanoseconds: UInt64(max(0, seconds) * 1e9))
    }

    /// Throws `DataError.badConfig` for bad settings or a missing API key variable.
    package init(
        config: OpenAITeacherConfig, cache: CallCache,
        environment: [String: String] = ProcessInfo.processInfo.environment
    )
        throws
    {
        try refuseProblems(config.problems())
        if let name = config.apiKeyEnv {
            guard let key = environment[name], !key.isEmpty else {
                throw DataError.badConfig(
                    reason: "teacher: the environment variable \(name) (api_key_env) is not set",
                    hint: "export \(name)=<your key>, or remove api_key_env for a server without authentication")
            }
            apiKey = key
        } else {
            apiKey = nil
        }
        self.config = config
        self.cache = cache
        let sessionConfig = URLSessionConfiguration.ephemeral
        // A backstop only: `withDeadline` enforces timeout_seconds. (URLSession on Linux treats
        // these as idle timeouts and fires at once when given less than a second.)
        sessionConfig.timeoutIntervalForRequest = backstop(config.timeoutSeconds)
        sessionConfig.timeoutIntervalForResource = backstop(config.timeoutSeconds)
        sessionConfig.httpMaximumConnectionsPerHost = config.concurrency
        sessionConfig.requestCachePolicy = .reloadIgnoringLocalCacheData
        // Redirects are never followed: a POST carrying the API key must not be re-sent to
        // whatever address a Location header names.
        session = URLSession(configuration: sessionConfig, delegate: RefuseRedirects(), delegateQueue: nil)
    }

    /// Problems that make tasks unusable with this teacher: messages or tools sent to a
    /// completions endpoint, which has no place for them.
    package func validate(_ tasks: [TeacherTask]) throws {
        guard config.endpoint == .completions else { return }
        for task in tasks {
            if case .messages = task.prompt {
                throw DataError.malformed(
                    file: task.file, line: task.line, column: 1,
                    reason: "task \"\(task.id)\" has messages, but the teacher's endpoint is completions",
                    hint: "set the teacher's endpoint to \"chat\", or give the task a plain \"prompt\"")
            }
            if task.tools != nil {
                throw DataError.malformed(
                    file: task.file, line: task.line, column: 1,
                    reason: "task \"\(task.id)\" offers tools, but the teacher's endpoint is completions",
                    hint: "set the teacher's endpoint to \"chat\", or describe the functions in the prompt instead")
            }
        }
    }

    // MARK: Requests

    /// The JSON body of sample `seed` of `task`.
    package func requestBody(_ task: TeacherTask, seed: Int) -> JSONValue {
        var entries: [(key: String, value: JSONValue)] = [("model", .string(config.model))]
        switch config.endpoint {
        case .chat:
            entries.append(
                (
                    "messages",
                    .array(
                        task.prompt.chatMessages.map {
                            .obj(["role": .string($0.role), "content": .string($0.content)])
                        })
                ))
            if let tools = task.tools {
                // Bare function definitions are wrapped in OpenAI's {"type":"function","function":...},
                // and names the API refuses (`math.factorial`) are sent encoded.
                let names = ToolNames(tools)
                entries.append(("tools", .array(tools.map { names.encodedTool($0) })))
            }
        case .completions:
            if case .text(let p) = task.prompt { entries.append(("prompt", .string(p))) }
        }
        entries += [
            ("temperature", .double(config.temperature)), ("top_p", .double(config.topP)),
            ("max_tokens", .int(config.maxTokens)), ("seed", .int(seed)), ("stream", .bool(false)),
        ]
        // Chat takes a flag; the legacy completions endpoint takes how many alternatives per token.
        if config.logprobs { entries.append(("logprobs", config.endpoint == .chat ? .bool(true) : .int(1))) }
        return .object(JSONValue.JSONObject(entries))
    }

    /// The cache key of a request: teacher identity and the canonical request (model, prompt,
    /// settings, seed). The API key is not part of it.
    package func cacheKey(_ body: JSONValue) -> String {
        config.identity + "\n" + body.compact(sortedKeys: true)
    }

    /// Samples every task `config.samples` times, at most `config.concurrency` requests in flight.
    /// `onSample` sees each sample as it finishes (for progress); the result is in task, then
    /// sample order. Throws only when the cache cannot be written (`SQLiteError`).
    package func sample(
        _ tasks: [TeacherTask], onSample: @Sendable (TeacherSample) -> Void = { _ in }
    ) async throws -> [TeacherSample] {
        try await sampleEach(tasks, samples: config.samples, concurrency: config.concurrency, onSample: onSample) {
            try await self.sampleOne($0, taskIndex: $1, sampleIndex: $2)
        }
    }

    /// One sample: from the cache, or from the server (then committed to the cache before use).
    package func sampleOne(_ task: TeacherTask, taskIndex: Int, sampleIndex: Int) async throws -> TeacherSample {
        let seed = config.seed + sampleIndex
        let body = requestBody(task, seed: seed)
        let key = cacheKey(body)
        var sample = TeacherSample(
            taskIndex: taskIndex, taskID: task.id, sampleIndex: sampleIndex, seed: seed,
            result: .failure(TeacherCallError(kind: .connection, message: "not run", attempts: 0)), cached: false,
            requests: 0)
        if let hit = try cache.lookup(key),
            case .success(let completion) = Self.parse(
                hit.response, endpoint: config.endpoint, latency: hit.latency, toolNames: ToolNames(task.tools ?? []))
        {
            sample.result = .success(completion)
            sample.cached = true
            counters.add(cacheHits: 1, completed: 1)
            return sample
        }
        let data = Data(body.compact().utf8)
        var attempt = 0
        while true {
            attempt += 1
            let started = Date()
            let outcome = await send(data)
            let latency = cachedLatency(Date().timeIntervalSince(started))
            sample.requests = attempt
            counters.add(requests: 1)
            var failure: FailureBox
            switch outcome {
            case .failure(let f): failure = f
            case .success(let response):
                switch Self.parse(response, endpoint: config.endpoint, latency: latency, toolNames: ToolNames(task.tools ?? [])) {
                case .success(let completion):
                    try cache.store(key, teacher: config.identity, CachedCall(response: response, latency: latency))
                    sample.result = .success(completion)
                    counters.add(completed: 1)
                    return sample
                case .failure(let problem):
                    failure = FailureBox(.invalidResponse, 200, problem.description)
                }
            }
            var wait: Double
            if let retryAfter = failure.retryAfter {
                if retryAfter > config.maxRetryAfterSeconds {
                    failure.kind = .quota
                    failure.message += "; Retry-After \(Subprocess.formatSeconds(retryAfter)) exceeds max_retry_after_seconds"
                }
                wait = retryAfter
            } else {
                let base = min(config.backoffMaxSeconds, config.backoffBaseSeconds * pow(2, Double(attempt - 1)))
                wait = base * Double.random(in: 0.5...1.0)
            }
            guard failure.kind.retryable, attempt < config.maxAttempts else {
                sample.result = .failure(
                    TeacherCallError(
                        kind: failure.kind, status: failure.status, message: failure.message, attempts: attempt))
                counters.add(completed: 1, failure: failure.kind)
                return sample
            }
            counters.add(retries: 1)
            wait = max(0, wait)
            try await sleep(wait)
        }
    }

    /// One HTTP request: the body of a 2xx response, or a classified failure.
    private func send(_ body: Data) async -> Result<String, FailureBox> {
        var request = URLRequest(url: URL(string: config.baseURL)!.appendingPathComponent(config.endpoint.path))
        request.httpMethod = "POST"
        request.httpBody = body
        request.timeoutInterval = backstop(config.timeoutSeconds)
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue("application/json", forHTTPHeaderField: "Accept")
        if let apiKey { request.setValue("Bearer \(apiKey)", forHTTPHeaderField: "Authorization") }
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await withDeadline(request)
        } catch let error as URLError {
            if error.code == .timedOut {
                return .failure(FailureBox(.timeout, nil, "no response within \(Subprocess.formatSeconds(config.timeoutSeconds))"))
            }
            // libcurl's "Received HTTP/0.9" (bytes that are not an HTTP response) surfaces as
            // unsupportedURL; the base URL was validated, so it means a garbage reply.
            if error.code == .unsupportedURL || error.code == .cannotParseResponse {
                return .failure(
                    FailureBox(.invalidResponse, nil, "not an HTTP response: \(error.localizedDescription)"))
            }
            return .failure(FailureBox(.connection, nil, error.localizedDescription))
        } catch {
            return .failure(FailureBox(.connection, nil, "\(error)"))
        }
        guard let http = response as? HTTPURLResponse else {
            return .failure(FailureBox(.connection, nil, "not an HTTP response"))
        }
        let status = http.statusCode
        let text = String(decoding: data, as: UTF8.self)
        switch status {
        case 200..<300:
            // Decoding would silently turn bad bytes into U+FFFD inside a completion.
            if let bad = UTF8Text.firstInvalidOffset(Array(data)) {
                return .failure(FailureBox(.invalidResponse, status, "response is not valid UTF-8 (byte \(bad) of \(data.count))"))
            }
            return .success(text)
        case 300..<400:
            let location = http.value(forHTTPHeaderField: "Location").map { " to \(redacted($0))" } ?? ""
            return .failure(
                FailureBox(
                    .client, status,
                    "redirect\(location) not followed: set base_url to the API's own address (the API key is never sent elsewhere)"))
        case 429:
            if text.contains("insufficient_quota") {
                return .failure(FailureBox(.quota, status, "quota exhausted: \(redacted(clip(text, 200)))"))
            }
            let retryAfter = Self.retryAfter(http.value(forHTTPHeaderField: "Retry-After"))
            var box = FailureBox(.rateLimited, status, "rate limited: \(redacted(clip(text, 200)))")
            box.retryAfter = retryAfter
            return .failure(box)
        case 408, 500..<600:
            // A 503 may say when to come back; it is honoured like a 429's.
            var box = FailureBox(.server, status, redacted(clip(text, 200)))
            box.retryAfter = Self.retryAfter(http.value(forHTTPHeaderField: "Retry-After"))
            return .failure(box)
        default: return .failure(FailureBox(.client, status, redacted(clip(text, 200))))
        }
    }

    /// The request, bounded by `timeout_seconds` from start to last byte. URLSession's own
    /// timeouts on Linux restart with every byte received, so a server trickling a body would
    /// hold a call indefinitely; the race against a timer makes the limit total.
    private func withDeadline(_ request: URLRequest) async throws -> (Data, URLResponse) {
        let session = self.session
        let nanoseconds = UInt64(config.timeoutSeconds * 1e9)
        return try await withThrowingTaskGroup(of: (Data, URLResponse)?.self) { group in
            group.addTask { try await session.data(for: request) }
            group.addTask {
                try await Task.sleep(nanoseconds: nanoseconds)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let result = first else { throw URLError(.timedOut) }
            return result
        }
    }

    /// `text` with the API key masked: some servers echo the key they rejected.
    private func redacted(_ text: String) -> String {
        guard let apiKey, apiKey.count >= 4 else { return text }
        return text.replacingOccurrences(of: apiKey, with: "***")
    }

    /// Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date; nil when absent.
    package static func retryAfter(_ header: String?) -> Double? {
        guard let h = header?.trimmingCharacters(in: .whitespaces), !h.isEmpty else { return nil }
        if let s = Double(h), s.isFinite { return max(0, s) }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return f.date(from: h).map { max(0, $0.timeIntervalSinceNow) }
    }

    /// Reads a response body into a completion, or says why it is not a usable success.
    package static func parse(
        _ body: String, endpoint: OpenAITeacherConfig.Endpoint, latency: Double, toolNames: ToolNames = ToolNames([])
    ) -> Result<
        TeacherCompletion, ParseProblem
    > {
        guard let value = try? JSONValue.parse(Array(body.utf8)) else {
            return .failure(ParseProblem("response is not JSON: \(clip(body, 120))"))
        }
        guard case .object(let o) = value else {
            return .failure(ParseProblem("response is \(value.typeName), not an object"))
        }
        if let error = o["error"], error != .null {
            return .failure(ParseProblem("response is an error: \(clip(error.compact(), 200))"))
        }
        guard case .array(let choices)? = o["choices"], case .object(let choice)? = choices.first else {
            return .failure(ParseProblem("response has no choices"))
        }
        var text: String
        switch endpoint {
        case .completions:
            guard case .string(let t)? = choice["text"] else { return .failure(ParseProblem("choice has no text")) }
            text = t
        case .chat:
            guard case .object(let message)? = choice["message"] else {
                return .failure(ParseProblem("choice has no message"))
            }
            text = message["content"]?.stringValue ?? ""
            if case .array(let calls)? = message["tool_calls"], !calls.isEmpty {
                let rendered: [JSONValue] = calls.compactMap { call in
                    guard case .object(let c) = call, case .object(let f)? = c["function"], let name = f["name"] else {
                        return nil
                    }
                    var args = f["arguments"] ?? .object(.init())
                    if case .string(let s) = args, let parsed = try? JSONValue.parse(Array(s.utf8)) { args = parsed }
                    return .obj(["name": name.stringValue.map { .string(toolNames.original($0)) } ?? name, "arguments": args])
                }
                text += (text.isEmpty ? "" : "\n") + JSONValue.array(rendered).compact()
            } else if message["content"]?.stringValue == nil {
                return .failure(ParseProblem("message has neither content nor tool_calls"))
            }
        }
        var completion = TeacherCompletion(
            text: text, finishReason: choice["finish_reason"]?.stringValue, latency: latency)
        completion.logprobs = logprobs(choice["logprobs"])
        if case .object(let usage)? = o["usage"] {
            completion.promptTokens = usage["prompt_tokens"]?.numberValue.map { Int($0) }
            completion.completionTokens = usage["completion_tokens"]?.numberValue.map { Int($0) }
        }
        return .success(completion)
    }
}

/// Token log-probabilities of a choice: chat's `logprobs.content[].logprob` or the completions
/// endpoint's `logprobs.token_logprobs`; nil when absent.
private func logprobs(_ value: JSONValue?) -> [Double]? {
    guard case .object(let o)? = value else { return nil }
    if case .array(let content)? = o["content"] {
        return content.compactMap { item -> Double? in
            if case .object(let t) = item { return t["logprob"]?.numberValue }
            return nil
        }
    }
    if case .array(let values)? = o["token_logprobs"] { return values.map { $0.numberValue ?? 0 } }
    return nil
}

/// Why a 2xx body is not a usable completion.
package struct ParseProblem: Error, Sendable, CustomStringConvertible {
    package var description: String
    init(_ d: String) { description = d }
}

/// URLSession's own timeout, later than distill's deadline and never under a second.
private func backstop(_ seconds: Double) -> Double { max(2, seconds * 2) }

struct FailureBox: Error {
    var kind: CallFailureKind
    var status: Int?
    var message: String
    var retryAfter: Double?
    init(_ kind: CallFailureKind, _ status: Int?, _ message: String) {
        self.kind = kind
        self.status = status
        self.message = message
    }
}

extension OpenAITeacher {
    package var name: String { "openai \(config.model) at \(config.baseURL)" }
    package var samplesPerTask: Int { config.samples }
    package var settings: JSONValue {
        .obj([
            "endpoint": .string(config.endpoint.rawValue), "temperature": .double(config.temperature),
            "top_p": .double(config.topP), "max_tokens": .int(config.maxTokens), "logprobs": .bool(config.logprobs),
        ])
    }
}

/// Answers every redirect with "do not follow": the redirect response itself is the result.
private final class RefuseRedirects: NSObject, URLSessionTaskDelegate, @unchecked Sendable {
    // @unchecked: no state.
    func urlSession(
        _ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
        newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void
    ) {
        completionHandler(nil)
    }
}
