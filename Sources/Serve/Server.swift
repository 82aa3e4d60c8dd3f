// `distill serve`: the OpenAI-compatible HTTP server (Hummingbird) over the scheduler. It
// listens first and loads the models after (GET /health answers 503 until they are ready),
// answers every error in OpenAI's shape, and on SIGTERM stops accepting connections and lets
// the requests in flight finish.

import Foundation
import JSON
import ModelIO
import NN
import Platform
import TextData
import Verify

package struct ServeSettings: Sendable {
    package var models: [ServedPath]
    package var adapters: [ServedPath] = []
    package var weights: InferenceWeights = .f32
    package var host = "127.0.0.1"
    package var port = 8080
    /// Sequences decoded together per model (the KV cache holds this many).
    package var maxBatch = 8
    /// Positions per sequence (prompt and completion), at most the model's own.
    package var context = 2048
    /// Requests that may wait for a free sequence; beyond it the server answers 503.
    package var queueLimit = 64
    package var maxBodyBytes = 4 << 20
    /// Tokens a request may ask to generate per choice.
    package var maxTokensLimit = 4096
    /// Requests to /v1 must carry `Authorization: Bearer` this key.
    package var apiKey: String?
    /// Where `cascade:` models escalate to.
    package var teacher: TeacherEndpoint?
    /// The JSONL file every routing decision is appended to.
    package var decisionLog: String?
    /// Learned routers served as `route:NAME@P` (docs/serving.md).
    package var routers: [ServedRouter] = []

    package init(models: [ServedPath]) { self.models = models }
}

/// The server's state: loading, then the catalog.
package final class ServeState: @unchecked Sendable {
    package let settings: ServeSettings
    private let lock = NSLock()
    private var loaded: Catalog?

    /// Where routing decisions go (opened by `runServer`).
    package private(set) var decisions: DecisionLog?
    package var teacher: TeacherEndpoint? { settings.teacher }
    private var loadedRouters: [String: LoadedRouter] = [:]
    /// The routers by name, once loaded.
    package var routers: [String: LoadedRouter] { lock.withLock { loadedRouters } }

    package init(settings: ServeSettings) { self.settings = settings }

    /// Opens the decision log, if there is one.
    package func openLog() throws {
        if let path = settings.decisionLog { decisions = try DecisionLog(path: path) }
    }

    package var catalog: Catalog? { lock.withLock { loaded } }

    /// Loads the models (slow; call off the event loop).
    package func load(log: (String) -> Void) throws {
        let s = settings
        let catalog = try Catalog(
            models: s.models, adapters: s.adapters, weights: s.weights, slots: s.maxBatch, context: s.context,
            queueLimit: s.queueLimit, checksums: !s.routers.isEmpty, log: log)
        var routers: [String: LoadedRouter] = [:]
        for spec in s.routers {
            guard routers[spec.name] == nil else {
                throw UserError(path: "--router", problem: "the router name \(spec.name) is given twice", fix: "give each a name of its own", kind: .usage)
            }
            let r = try LoadedRouter(spec, catalog: catalog)
            routers[spec.name] = r
            log(
                "router \(spec.name) (\(r.router.model.kind.rawValue), from \(spec.path)) routes \(r.student) -> the teacher at "
                    + r.router.thresholds.map { String(format: "%.0f%%", $0.target * 100) }.joined(separator: ", ") + " strong calls")
        }
        lock.withLock { (loaded, loadedRouters) = (catalog, routers) }
    }

    /// Lets queued and running requests finish and stops the scheduler.
    package func shutdown() { catalog?.scheduler.shutdown() }
}

/// Answers one HTTP request: the routes, the API key, and every failure in OpenAI's shape.
package func serveRoutes(_ state: ServeState) -> HTTPServer.Handler {
    { request in
        do {
            return try await route(request, state)
        } catch let error as APIError {
            return .json(error.body, status: error.status, headers: error.retryAfter.map { [("Retry-After", String($0))] } ?? [])
        } catch {
            let internalError = APIError(status: 500, message: "\(error)", type: "server_error")
            return .json(internalError.body, status: 500)
        }
    }
}

private func route(_ request: HTTPRequest, _ state: ServeState) async throws -> HTTPReply {
    let settings = state.settings
    if let key = settings.apiKey, request.path.hasPrefix("/v1/"), request.header("Authorization") != "Bearer \(key)" {
        throw APIError(
            status: 401, message: "a valid API key is required: send Authorization: Bearer KEY", type: "invalid_request_error",
            code: "invalid_api_key")
    }
    let routes: [String: [String]] = ["/health": ["GET"], "/v1/models": ["GET"], "/v1/chat/completions": ["POST"], "/v1/completions": ["POST"]]
    guard let methods = routes[request.path] else {
        throw APIError(status: 404, message: "no such endpoint: \(request.method) \(request.path)", type: "invalid_request_error", code: "not_found")
    }
    guard methods.contains(request.method) else {
        throw APIError(
            status: 405, message: "\(request.method) is not allowed on \(request.path); use \(methods[0])", type: "invalid_request_error",
            code: "method_not_allowed")
    }
    switch request.path {
    case "/health":
        return state.catalog == nil
            ? .json(#"{"status":"loading"}"#, status: 503, headers: [("Retry-After", "5")]) : .json(#"{"status":"ok"}"#)
    case "/v1/models":
        let catalog = try ready(state)
        let data = catalog.names.map { name -> JSONValue in
            let e = catalog.entries[name]!
            return .obj([
                "id": .string(name), "object": .string("model"), "created": .int(e.created), "owned_by": .string("distill"),
                "root": .string(e.parent ?? name), "parent": e.parent.map(JSONValue.string) ?? .null,
                "max_model_len": .int(e.capacity),
            ])
        }
        // With a teacher, the cascades over the first model (m and tau are the client's to choose).
        let routed: [JSONValue] = state.teacher.map { teacher in
            [.obj([
                "id": .string("cascade:m=4,tau=0.75"), "object": .string("model"), "created": .int(catalog.entries[catalog.names[0]]!.created),
                "owned_by": .string("distill"), "root": .string(catalog.names[0]), "parent": .string(catalog.names[0]),
                "teacher": .string(teacher.config.model),
            ])]
        } ?? []
        let learned: [JSONValue] = state.routers.keys.sorted().map { name in
            let r = state.routers[name]!
            let share = r.router.threshold(forShare: 0.3)!.target
            return .obj([
                "id": .string("route:\(name)@\(Int((share * 100).rounded()))"), "object": .string("model"),
                "created": .int(catalog.entries[r.student]!.created), "owned_by": .string("distill"), "root": .string(r.student),
                "parent": .string(r.student), "teacher": state.teacher.map { .string($0.config.model) } ?? .null,
                "router": .string(r.router.model.kind.rawValue),
                "shares": .array(r.router.thresholds.map { .int(Int(($0.target * 100).rounded())) }),
            ])
        }
        return .json(JSONValue.obj(["object": .string("list"), "data": .array(data + routed + learned)]).compact())
    case "/v1/chat/completions":
        let catalog = try ready(state)
        let chat = try ChatRequest(body: request.body, maxChoices: settings.maxBatch)
        let requested = chat.parameters.model
        var cascade: CascadeSpec?
        var routed: (spec: RouteSpec, router: LoadedRouter)?
        if requested.hasPrefix(CascadeSpec.prefix) {
            cascade = try CascadeSpec(name: requested, maxSamples: settings.maxBatch)
            if chat.parameters.n != 1 { throw APIError.invalid("a cascade gives one answer: n must be 1", param: "n") }
        } else if requested.hasPrefix(RouteSpec.prefix) {
            let spec = try RouteSpec(name: requested)
            routed = (spec, try state.router(spec))
            if chat.parameters.n != 1 { throw APIError.invalid("a routed model gives one answer: n must be 1", param: "n") }
        }
        let entry = try catalog.entry(routed?.router.student ?? cascade.map { $0.student ?? catalog.names[0] } ?? requested)
        guard let style = entry.style else {
            throw APIError.invalid(
                "model \(entry.name) records no chat template; use /v1/completions with a prompt", param: "model",
                code: "no_chat_template")
        }
        let prompt = entry.tokenizer.encode(style.prompt(chat.messages, tools: chat.tools), addSpecialTokens: false)
        let ends = Set([entry.endOfTurn, entry.endOfText].compactMap { $0 })
        var call = try Call(settings, entry, chat.parameters, prompt: prompt, ends: ends, choices: cascade?.samples)
        // A required call is sampled under the call grammar of the tools it may name.
        if let required = chat.requiredTools { call.job.grammar = CallGrammar.pythonCalls(tools: required) }
        if let routed {
            return try await call.routed(
                routed.spec, router: routed.router, requested: requested, text: try routedText(chat.messages),
                body: try RequestReader(body: request.body).object, tools: chat.tools != nil, catalog: catalog, state: state)
        }
        if let cascade {
            return try await call.cascade(
                cascade, requested: requested, text: (try? routedText(chat.messages)) ?? "",
                body: try RequestReader(body: request.body).object, tools: chat.tools != nil, catalog: catalog, state: state)
        }
        return try await call.respond(catalog, chat: true, tools: chat.tools != nil)
    default:
        let catalog = try ready(state)
        let completion = try CompletionRequest(body: request.body, maxChoices: settings.maxBatch)
        let entry = try catalog.entry(completion.parameters.model)
        var prompt = entry.tokenizer.encode(completion.prompt)
        if prompt.isEmpty, let eot = entry.endOfText { prompt = [eot] }
        let call = try Call(settings, entry, completion.parameters, prompt: prompt, ends: Set([entry.endOfText].compactMap { $0 }))
        return try await call.respond(catalog, chat: false, tools: false)
    }
}

private func ready(_ state: ServeState) throws -> Catalog {
    guard let catalog = state.catalog else {
        throw APIError(
            status: 503, message: "the models are still loading; retry shortly", type: "server_error", code: "loading",
            retryAfter: 5)
    }
    return catalog
}

extension Catalog {
    package func entry(_ name: String) throws -> CatalogEntry {
        guard let entry = entries[name] else {
            throw APIError.invalid(
                "model \(name) is not served here; GET /v1/models lists \(names.joined(separator: ", "))", param: "model",
                code: "model_not_found")
        }
        return entry
    }
}

/// One request on its way through the scheduler.
struct Call: Sendable {
    let entry: CatalogEntry
    let parameters: GenerationParameters
    var job: GenerationJob
    let id: String
    let created = Int(Date().timeIntervalSince1970)

    /// `choices`: the number of continuations to run (default: the request's n).
    init(
        _ settings: ServeSettings, _ entry: CatalogEntry, _ p: GenerationParameters, prompt: [Int32], ends: Set<Int32>,
        choices: Int? = nil
    ) throws {
        let room = entry.capacity - prompt.count
        guard room >= 1 else {
            throw APIError.invalid(
                "the prompt is \(prompt.count) tokens; model \(entry.name) serves \(entry.capacity) positions (--context)",
                param: "messages", code: "context_length_exceeded")
        }
        if let asked = p.maxTokens, asked > room {
            throw APIError.invalid(
                "max_tokens \(asked) and the \(prompt.count)-token prompt exceed the \(entry.capacity) positions model \(entry.name) serves",
                param: "max_tokens", code: "context_length_exceeded")
        }
        if let asked = p.maxTokens, asked > settings.maxTokensLimit {
            throw APIError.invalid("max_tokens may be at most \(settings.maxTokensLimit) here", param: "max_tokens")
        }
        let maxTokens = min(p.maxTokens ?? room, room, settings.maxTokensLimit)
        let base = p.seed ?? UInt64.random(in: 0...UInt64.max)
        // Choice i's seed is derived from the request's, so n choices differ and each repeats.
        let seeds = (0..<(choices ?? p.n)).map { base &+ 0x9E37_79B9_7F4A_7C15 &* UInt64($0) }
        (self.entry, self.parameters) = (entry, p)
        job = GenerationJob(
            prompt: prompt, maxTokens: maxTokens, temperature: p.temperature, topP: p.topP, seeds: seeds, endTokens: ends,
            stopStrings: p.stop, topLogProbs: p.topLogProbs)
        id = UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
    }

    /// Queues the job: its events, or a 503 when the queue is full or the server stopping.
    func submit(_ catalog: Catalog) throws -> AsyncStream<GenerationEvent> {
        do {
            return try catalog.scheduler.submit(job, lane: entry.name)
        } catch SchedulerError.queueFull(let limit) {
            throw APIError(
                status: 503, message: "the server is busy: \(limit) requests are waiting; retry shortly", type: "server_error",
                code: "queue_full", retryAfter: 1)
        } catch {
            throw APIError(status: 503, message: "the server is shutting down", type: "server_error", code: "shutting_down")
        }
    }

    func respond(_ catalog: Catalog, chat: Bool, tools: Bool) async throws -> HTTPReply {
        let events = try submit(catalog)
        guard parameters.stream else { return .json(await collect(events, chat: chat, tools: tools)) }
        let call = self
        return HTTPReply(
            status: 200, headers: [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")],
            body: .stream { send in
                try await call.stream(events, chat: chat, tools: tools) { line in try await send("data: \(line)\n\n") }
                try await send("data: [DONE]\n\n")
            })
    }

    struct Outcome {
        var text = ""
        var tokens: [TokenReport] = []
        var reason: FinishReason?
        var completionTokens = 0
    }

    func collect(_ events: AsyncStream<GenerationEvent>, chat: Bool, tools: Bool) async -> String {
        let (outcomes, cached) = await gather(events)
        return completion(outcomes, cached: cached, chat: chat, tools: tools).compact()
    }

    /// Every choice whole, and how many prompt tokens the cache already held.
    func gather(_ events: AsyncStream<GenerationEvent>) async -> (outcomes: [Outcome], cached: Int) {
        var outcomes = [Outcome](repeating: Outcome(), count: job.seeds.count)
        var cached = 0
        for await event in events {
            switch event {
            case .started(let reused): cached = reused
            case .text(let i, let delta, let tokens):
                outcomes[i].text += delta
                outcomes[i].tokens += tokens
            case .finished(let i, let reason, let count):
                (outcomes[i].reason, outcomes[i].completionTokens) = (reason, count)
            }
        }
        return (outcomes, cached)
    }

    /// The reply object for `outcomes` (usage counts every outcome's tokens).
    func completion(_ outcomes: [Outcome], cached: Int, chat: Bool, tools: Bool, usageOf counted: [Outcome]? = nil) -> JSONValue {
        let choices = outcomes.enumerated().map { i, o -> JSONValue in
            let finish = JSONValue.string(o.reason?.rawValue ?? "stop")
            if !chat {
                return .obj([
                    "text": .string(o.text), "index": .int(i), "logprobs": legacyLogProbs(o.tokens), "finish_reason": finish,
                ])
            }
            var message: [(key: String, value: JSONValue)] = [("role", .string("assistant"))]
            var reason = finish
            if tools, let calls = toolCalls(o.text) {
                message += [("content", .null), ("tool_calls", calls)]
                reason = .string("tool_calls")
            } else {
                message.append(("content", .string(o.text)))
            }
            return .obj([
                "index": .int(i), "message": .object(.init(message)), "logprobs": chatLogProbs(o.tokens), "finish_reason": reason,
            ])
        }
        let completion = (counted ?? outcomes).map(\.completionTokens).reduce(0, +)
        return JSONValue.obj([
            "id": .string((chat ? "chatcmpl-" : "cmpl-") + id), "object": .string(chat ? "chat.completion" : "text_completion"),
            "created": .int(created), "model": .string(entry.name), "choices": .array(choices), "usage": usage(completion, cached: cached),
        ])
    }

    func stream(
        _ events: AsyncStream<GenerationEvent>, chat: Bool, tools: Bool, send: (String) async throws -> Void
    ) async throws {
        func chunk(_ choices: [JSONValue], usage: JSONValue? = nil) -> String {
            var fields: [(key: String, value: JSONValue)] = [
                ("id", .string((chat ? "chatcmpl-" : "cmpl-") + id)), ("object", .string(chat ? "chat.completion.chunk" : "text_completion")),
                ("created", .int(created)), ("model", .string(entry.name)), ("choices", .array(choices)),
            ]
            if parameters.includeUsage { fields.append(("usage", usage ?? .null)) }
            return JSONValue.object(.init(fields)).compact()
        }
        func choice(_ i: Int, delta: [(key: String, value: JSONValue)], text: String, logprobs: JSONValue, finish: JSONValue)
            -> JSONValue
        {
            chat
                ? .obj(["index": .int(i), "delta": .object(.init(delta)), "logprobs": logprobs, "finish_reason": finish])
                : .obj(["text": .string(text), "index": .int(i), "logprobs": logprobs, "finish_reason": finish])
        }
        if chat {
            for i in 0..<job.seeds.count {
                try await send(chunk([choice(i, delta: [("role", .string("assistant")), ("content", .string(""))], text: "", logprobs: .null, finish: .null)]))
            }
        }
        // With tools a reply is only known to be a call once it is whole: it is held back to its end.
        var held = [Outcome](repeating: Outcome(), count: job.seeds.count)
        var completion = 0, cached = 0
        for await event in events {
            switch event {
            case .started(let reused): cached = reused
            case .text(let i, let delta, let tokens):
                if tools {
                    held[i].text += delta
                    held[i].tokens += tokens
                    continue
                }
                let logprobs = parameters.topLogProbs == nil ? JSONValue.null : chat ? chatLogProbs(tokens) : legacyLogProbs(tokens)
                try await send(chunk([choice(i, delta: [("content", .string(delta))], text: delta, logprobs: logprobs, finish: .null)]))
            case .finished(let i, let reason, let count):
                completion += count
                var finish = JSONValue.string(reason.rawValue)
                if tools {
                    let o = held[i]
                    let delta: [(key: String, value: JSONValue)]
                    if let calls = toolCalls(o.text) {
                        let indexed = (calls.arrayItems).enumerated().map { j, c -> JSONValue in
                            guard case .object(var fields) = c else { return c }
                            fields.entries.insert((key: "index", value: .int(j)), at: 0)
                            return .object(fields)
                        }
                        delta = [("tool_calls", .array(indexed))]
                        finish = .string("tool_calls")
                    } else {
                        delta = [("content", .string(o.text))]
                    }
                    let logprobs = parameters.topLogProbs == nil ? JSONValue.null : chatLogProbs(o.tokens)
                    try await send(chunk([choice(i, delta: delta, text: o.text, logprobs: logprobs, finish: .null)]))
                }
                try await send(chunk([choice(i, delta: [], text: "", logprobs: .null, finish: finish)]))
            }
        }
        if parameters.includeUsage { try await send(chunk([], usage: usage(completion, cached: cached))) }
    }

    /// OpenAI's usage object; `cached_tokens` counts the prompt tokens whose keys and values
    /// an earlier request left in the cache.
    func usage(_ completion: Int, cached: Int) -> JSONValue {
        .obj([
            "prompt_tokens": .int(job.prompt.count), "completion_tokens": .int(completion),
            "total_tokens": .int(job.prompt.count + completion), "prompt_tokens_details": .obj(["cached_tokens": .int(cached)]),
        ])
    }

    func toolCalls(_ text: String) -> JSONValue? { openAIToolCalls(in: text, id: String(id.prefix(12))) }

    /// OpenAI's chat `logprobs`: per token its text, log-probability, bytes and the most likely.
    func chatLogProbs(_ tokens: [TokenReport]) -> JSONValue {
        guard parameters.topLogProbs != nil else { return .null }
        func entry(_ bytes: [UInt8], _ logProb: Double) -> [(key: String, value: JSONValue)] {
            [("token", .string(String(decoding: bytes, as: UTF8.self))), ("logprob", .double(logProb)),
             ("bytes", .array(bytes.map { .int(Int($0)) }))]
        }
        let content = tokens.map { t -> JSONValue in
            .object(.init(entry(t.bytes, t.logProb) + [("top_logprobs", .array(t.top.map { .object(.init(entry($0.bytes, $0.logProb))) }))]))
        }
        return .obj(["content": .array(content)])
    }

    /// The completions endpoint's older `logprobs` shape.
    func legacyLogProbs(_ tokens: [TokenReport]) -> JSONValue {
        guard parameters.topLogProbs != nil else { return .null }
        var offsets: [JSONValue] = [], offset = 0
        for t in tokens {
            offsets.append(.int(offset))
            offset += String(decoding: t.bytes, as: UTF8.self).count
        }
        return .obj([
            "tokens": .array(tokens.map { .string(String(decoding: $0.bytes, as: UTF8.self)) }),
            "token_logprobs": .array(tokens.map { .double($0.logProb) }),
            "top_logprobs": .array(
                tokens.map { t in
                    .object(.init(t.top.map { (key: String(decoding: $0.bytes, as: UTF8.self), value: JSONValue.double($0.logProb)) }))
                }),
            "text_offset": .array(offsets),
        ])
    }
}

/// The calls in a reply (read by the function-call verifier's parser), as OpenAI's
/// `tool_calls`, or nil when it holds none or what it holds cannot be read.
package func openAIToolCalls(in text: String, id: String) -> JSONValue? {
    guard case .calls(let calls) = CallParser.parse(text), !calls.isEmpty else { return nil }
    return .array(
        calls.enumerated().map { j, call in
            .obj([
                "id": .string("call_\(id)_\(j)"), "type": .string("function"),
                "function": .obj(["name": .string(call.name), "arguments": .string(JSONValue.object(call.arguments).compact())]),
            ])
        })
}

extension JSONValue {
    fileprivate var arrayItems: [JSONValue] { if case .array(let items) = self { items } else { [] } }
}

/// Runs the server until SIGTERM or SIGINT (or `stop`): binds first, then loads the models
/// (GET /health answers 503 meanwhile), then serves. A stop refuses new connections and lets
/// the requests in flight finish; a second signal exits at once. `onListening` hears the port.
package func runServer(
    _ state: ServeState, log: @escaping @Sendable (String) -> Void, onListening: @Sendable (Int, HTTPServer) -> Void = { _, _ in }
) async throws {
    let settings = state.settings
    try state.openLog()
    let server: HTTPServer
    do {
        server = try await HTTPServer(
            host: settings.host, port: settings.port, maxBodyBytes: settings.maxBodyBytes, handler: serveRoutes(state))
    } catch {
        throw UserError(
            path: "\(settings.host):\(settings.port)", problem: "cannot listen there: \(error)",
            fix: "choose another --port, or stop what holds this one", kind: .io)
    }
    log("listening on http://\(settings.host):\(server.port) (loading models; /health answers 503 until ready)")
    onListening(server.port, server)
    let signals = [SIGTERM, SIGINT].map { (number: Int32) -> DispatchSourceSignal in
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        let seen = Locked(0)
        source.setEventHandler {
            if seen.withLock({ $0 += 1; return $0 }) > 1 { exit(128 + number) }
            let load = state.catalog?.scheduler.load ?? (waiting: 0, running: 0)
            log("stopping: finishing \(load.running) running and \(load.waiting) waiting requests (signal again to exit now)")
            server.stop()
        }
        source.resume()
        return source
    }
    defer { for s in signals { s.cancel() } }
    let failure = Locked<(any Error)?>(nil)
    let loading = Task.detached {
        do {
            try state.load(log: log)
            log("ready: serving \(state.catalog!.names.joined(separator: ", "))")
        } catch {
            failure.value = error
            server.stop()
        }
    }
    try await server.run()
    await loading.value
    state.shutdown()
    if let error = failure.value { throw error }
}
