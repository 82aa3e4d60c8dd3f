// Cascades: the virtual model `cascade:m=4,tau=0.75` answers a chat request with the student
// (a served model) sampled m times; when the most common answer holds less than tau of the
// samples, or no sample gives an answer that can be read, the request goes to the teacher (an
// OpenAI-compatible server, `--teacher-json`) instead. Answers are compared in the verifier's
// canonical form: with tools, the calls (`FunctionCallMatch.canonical`); without, the text
// with its whitespace collapsed. The reply names the model that answered and carries a
// `distill` object with the decision; every decision is appended to the decision log.

import Foundation
#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
import JSON
import Platform
import Teacher
import Verify

/// `cascade:m=M,tau=T[,student=NAME]`.
package struct CascadeSpec: Sendable, Equatable {
    package var samples: Int
    package var tau: Double
    /// nil: the first served model.
    package var student: String?

    package static let prefix = "cascade:"

    package init(samples: Int, tau: Double, student: String? = nil) {
        (self.samples, self.tau, self.student) = (samples, tau, student)
    }

    package init(name: String, maxSamples: Int) throws {
        let usage = "write cascade:m=4,tau=0.75 (m samples from 1 to \(maxSamples), tau from 0 to 1, optionally ,student=NAME)"
        var m: Int?, tau: Double?, student: String?
        for part in name.dropFirst(Self.prefix.count).split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { throw APIError.invalid("model \(name): \"\(part)\" is not key=value; \(usage)", param: "model") }
            switch kv[0] {
            case "m": m = Int(kv[1])
            case "tau": tau = Double(kv[1])
            case "student": student = kv[1]
            default: throw APIError.invalid("model \(name): unknown setting \(kv[0]); \(usage)", param: "model")
            }
        }
        guard let m, (1...maxSamples).contains(m), let tau, (0...1).contains(tau) else {
            throw APIError.invalid("model \(name) is not a cascade distill serves; \(usage)", param: "model")
        }
        self.init(samples: m, tau: tau, student: student)
    }
}

/// The teacher a cascade escalates to.
package struct TeacherEndpoint: Sendable {
    package var config: OpenAITeacherConfig
    package var apiKey: String?

    /// Reads `--teacher-json`: the JSON of an `openai` teacher (docs/teacher.md), inline or a file.
    package init(json text: String) throws {
        var source = text
        let place = text.hasPrefix("{") ? "--teacher-json" : text
        if !text.hasPrefix("{") {
            guard let contents = try? String(contentsOfFile: text, encoding: .utf8) else {
                throw UserError(path: text, problem: "cannot read the teacher JSON file", fix: "give the file's path or the JSON itself", kind: .io)
            }
            source = contents
        }
        do {
            config = try JSONDecoder().decode(OpenAITeacherConfig.self, from: Data(source.utf8))
        } catch {
            throw UserError(
                path: place, problem: "is not an openai teacher: \(error)",
                fix: #"give {"type": "openai", "base_url": "http://HOST:PORT/v1", "model": "NAME"} (docs/teacher.md)"#, kind: .usage)
        }
        if let problem = config.problems().first { throw UserError(path: place, problem: problem, kind: .usage) }
        if config.endpoint != .chat {
            throw UserError(path: place, problem: "a cascade's teacher answers chat requests", fix: "drop \"endpoint\"", kind: .usage)
        }
        if let env = config.apiKeyEnv {
            guard let key = ProcessInfo.processInfo.environment[env], !key.isEmpty else {
                throw UserError(path: place, problem: "api_key_env \(env) is not set", fix: "export \(env) before starting the server", kind: .usage)
            }
            apiKey = key
        }
    }

    /// The teacher's reply to `body` (a chat request, sent with the teacher's model and not
    /// streamed), or a 502 saying why it failed.
    func complete(_ body: JSONValue.JSONObject) async throws -> JSONValue.JSONObject {
        var fields = body.entries.filter { !["model", "stream", "stream_options"].contains($0.key) }
        fields.insert((key: "model", value: .string(config.model)), at: 0)
        var request = URLRequest(url: URL(string: config.baseURL)!.appendingPathComponent("chat/completions"))
        request.httpMethod = "POST"
        request.httpBody = Data(JSONValue.object(.init(fields)).compact().utf8)
        request.timeoutInterval = config.timeoutSeconds
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        if let apiKey { request.setValue("Bearer \(apiKey)", forHTTPHeaderField: "Authorization") }
        func failed(_ why: String) -> APIError {
            APIError(status: 502, message: "the teacher at \(config.baseURL) failed: \(why)", type: "server_error", code: "teacher_failed")
        }
        let (data, response): (Data, URLResponse)
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw failed(error.localizedDescription)
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard (200..<300).contains(status) else {
            throw failed("HTTP \(status): \(String(decoding: data.prefix(300), as: UTF8.self))")
        }
        guard case .object(let reply)? = try? JSONValue.parse(Array(data)), case .array(let choices)? = reply["choices"], !choices.isEmpty
        else {
            throw failed("the reply is not a chat completion with choices")
        }
        return reply
    }
}

/// An append-only JSONL file of routing decisions, one line each, written whole.
package final class DecisionLog: @unchecked Sendable {
    private let handle: FileHandle
    private let lock = NSLock()
    package let path: String

    package init(path: String) throws {
        self.path = path
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw UserError(path: path, problem: "cannot create the decision log", fix: "choose a writable path", kind: .io)
            }
        }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw UserError(path: path, problem: "cannot open the decision log for writing", fix: "choose a writable path", kind: .io)
        }
        handle.seekToEndOfFile()
        self.handle = handle
    }

    package func append(_ record: JSONValue) {
        lock.withLock { handle.write(Data((record.compact() + "\n").utf8)) }
    }
}

/// The answer a reply gives, in the form votes compare: the canonical calls when the request
/// has tools (nil when none can be read), else the trimmed text with whitespace collapsed
/// (nil when empty).
package func canonicalAnswer(_ text: String, tools: Bool) -> String? {
    if tools {
        guard case .calls(let calls) = CallParser.parse(text), !calls.isEmpty else { return nil }
        return FunctionCallMatch.canonical(calls)
    }
    let collapsed = text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    return collapsed.isEmpty ? nil : collapsed
}

extension Call {
    /// Answers a chat request for the cascade `spec`: the student's m samples, then the
    /// student's majority answer or the teacher's.
    func cascade(
        _ spec: CascadeSpec, requested: String, text: String, body: JSONValue.JSONObject, tools: Bool, catalog: Catalog,
        state: ServeState
    ) async throws -> HTTPReply {
        guard let teacher = state.teacher else {
            throw APIError.invalid(
                "model \(requested) needs a teacher: start distill serve with --teacher-json", param: "model", code: "no_teacher")
        }
        let started = Date()
        let (outcomes, cached) = await gather(try submit(catalog))
        let answers = outcomes.map { canonicalAnswer($0.text, tools: tools) }
        // The vote distill verdicts cascade replays offline (Verify): ties to the answer given first.
        let vote = TaskStatistics.leadingAnswer(answers).map { (share: Double($0.votes) / Double(answers.count), first: $0.first) }
        let escalated = vote.map { $0.share < spec.tau } ?? true
        let reply: JSONValue.JSONObject
        if escalated {
            reply = try await teacher.complete(body)
        } else {
            guard case .object(let own) = completion([outcomes[vote!.first]], cached: cached, chat: true, tools: tools, usageOf: outcomes) else {
                preconditionFailure("a completion is an object")
            }
            reply = own
        }
        let decision = JSONValue.obj([
            "route": .string(requested), "decision": .string(escalated ? "teacher" : "student"), "escalated": .bool(escalated),
            "student": .string(entry.name), "teacher": .string(teacher.config.model), "samples": .int(spec.samples),
            "tau": .double(spec.tau), "agreement": .double(vote?.share ?? 0),
            "answers": .array(answers.map { $0.map(JSONValue.string) ?? .null }),
        ])
        return finishRouted(
            reply, decision: decision, escalated: escalated, studentTokens: outcomes.map(\.completionTokens).reduce(0, +),
            prompt: text, started: started, state: state)
    }

    /// The end of a cascade's or a routed model's answer: `decision` added to the reply as its
    /// `distill` object and appended to the decision log, and the reply sent whole or as chunks.
    /// The log line has what `distill verdicts build --tasks` needs to judge the answer again:
    /// the request's last user message (`prompt`) and the answer as the verifiers read it
    /// (`text`: the content, tool calls as a JSON list of `{"name", "arguments"}`).
    func finishRouted(
        _ reply: JSONValue.JSONObject, decision: JSONValue, escalated: Bool, studentTokens: Int, prompt: String,
        started: Date, state: ServeState
    ) -> HTTPReply {
        var reply = reply
        let answer = try? OpenAITeacher.parse(JSONValue.object(reply).compact(), endpoint: .chat, latency: 0).get()
        reply.entries.append((key: "distill", value: decision))
        state.decisions?.append(
            .obj([
                "time": .double(Date().timeIntervalSince1970), "id": .string(id), "request": decision,
                "prompt": .string(prompt), "model": reply["model"] ?? .null, "text": answer.map { .string($0.text) } ?? .null,
                "prompt_tokens": .int(job.prompt.count), "student_completion_tokens": .int(studentTokens),
                "teacher_usage": escalated ? reply["usage"] ?? .null : .null,
                "latency_s": .double(Date().timeIntervalSince(started)),
            ]))
        return parameters.stream ? replayed(reply) : .json(JSONValue.object(reply).compact())
    }

    /// A finished chat completion sent as the chunks of a stream.
    func replayed(_ reply: JSONValue.JSONObject) -> HTTPReply {
        var chunks: [JSONValue] = []
        func chunk(_ choices: [JSONValue], usage: JSONValue? = nil) -> JSONValue {
            var fields = reply.entries.filter { ["id", "created", "model", "distill"].contains($0.key) }
            fields.insert((key: "object", value: .string("chat.completion.chunk")), at: 1)
            fields.append((key: "choices", value: .array(choices)))
            if parameters.includeUsage { fields.append((key: "usage", value: usage ?? .null)) }
            return .object(.init(fields))
        }
        if case .array(let choices)? = reply["choices"] {
            for (i, choice) in choices.enumerated() {
                guard case .object(let c) = choice, case .object(let message)? = c["message"] else { continue }
                let delta = message.entries.filter { $0.value != .null }
                chunks.append(chunk([.obj(["index": .int(i), "delta": .object(.init(delta)), "logprobs": .null, "finish_reason": .null])]))
                chunks.append(chunk([.obj(["index": .int(i), "delta": .obj([:]), "logprobs": .null, "finish_reason": c["finish_reason"] ?? .null])]))
            }
        }
        if parameters.includeUsage { chunks.append(chunk([], usage: reply["usage"] ?? .null)) }
        let lines = chunks.map { "data: \($0.compact())\n\n" } + ["data: [DONE]\n\n"]
        return HTTPReply(
            status: 200, headers: [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")],
            body: .stream { send in for line in lines { try await send(line) } })
    }
}
