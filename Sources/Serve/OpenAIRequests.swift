// The OpenAI requests `distill serve` answers, read from JSON with every problem reported in
// OpenAI's error shape, naming the parameter: POST /v1/chat/completions and /v1/completions.
// Fields the API defines that distill does not implement are refused when they ask for
// something (a non-zero penalty, a logit bias, a JSON schema), never silently ignored;
// fields that ask for nothing (`user`, `metadata`, a zero penalty) are accepted.

import Foundation
import JSON
import TextData
import Verify

/// An error as the OpenAI API reports it: `{"error": {"message", "type", "param", "code"}}`.
package struct APIError: Error, Sendable, Equatable {
    package var status: Int
    package var message: String
    package var type: String
    package var param: String?
    package var code: String?
    /// Seconds for a Retry-After header.
    package var retryAfter: Int?

    package static func invalid(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(status: 400, message: message, type: "invalid_request_error", param: param, code: code)
    }

    package var body: String {
        JSONValue.obj([
            "error": .obj([
                "message": .string(message), "type": .string(type), "param": param.map(JSONValue.string) ?? .null,
                "code": code.map(JSONValue.string) ?? .null,
            ])
        ]).compact()
    }
}

/// The sampling part shared by both endpoints.
package struct GenerationParameters: Sendable, Equatable {
    package var model: String
    /// nil: up to the model's context.
    package var maxTokens: Int?
    package var temperature = 1.0
    package var topP = 1.0
    package var n = 1
    package var stop: [String] = []
    package var seed: UInt64?
    /// nil: no log-probabilities; k: the chosen token's and the k most likely ones'.
    package var topLogProbs: Int?
    package var stream = false
    package var includeUsage = false
}

package struct ChatRequest: Sendable {
    package var parameters: GenerationParameters
    package var messages: [TextData.ChatMessage]
    /// The `tools` array as given (each `{"type": "function", "function": {...}}`), rendered
    /// into the system message; nil without tools or with `tool_choice: "none"`.
    package var tools: [JSONValue]?
    /// The tools the answer must call (`tool_choice` `"required"`: all of them; a named
    /// function: that one); nil when the model may answer in prose.
    package var requiredTools: [JSONValue]?
}

package struct CompletionRequest: Sendable {
    package var parameters: GenerationParameters
    package var prompt: String
}

/// Reads a request body's fields, with errors naming the parameter.
struct RequestReader {
    let object: JSONValue.JSONObject

    init(body: [UInt8]) throws {
        let value: JSONValue
        do {
            value = try JSONValue.parse(body)
        } catch {
            throw APIError.invalid("the request body is not valid JSON: \(error)")
        }
        guard case .object(let object) = value else {
            throw APIError.invalid("the request body must be a JSON object, not \(value.typeName)")
        }
        self.object = object
    }

    func value(_ key: String) -> JSONValue? {
        guard let v = object[key], v != .null else { return nil }
        return v
    }

    func string(_ key: String) throws -> String? {
        guard let v = value(key) else { return nil }
        guard case .string(let s) = v else { throw APIError.invalid("\(key) must be a string, not \(v.typeName)", param: key) }
        return s
    }

    func bool(_ key: String) throws -> Bool? {
        guard let v = value(key) else { return nil }
        guard case .bool(let b) = v else { throw APIError.invalid("\(key) must be true or false, not \(v.typeName)", param: key) }
        return b
    }

    func number(_ key: String, in range: ClosedRange<Double>) throws -> Double? {
        guard let v = value(key) else { return nil }
        guard let x = v.numberValue, range.contains(x) else {
            throw APIError.invalid("\(key) must be a number from \(range.lowerBound) to \(range.upperBound)", param: key)
        }
        return x
    }

    func integer(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let v = value(key) else { return nil }
        guard case .int(let i) = v, range.contains(i) else {
            throw APIError.invalid("\(key) must be an integer from \(range.lowerBound) to \(range.upperBound)", param: key)
        }
        return i
    }

    /// Parameters that ask for behaviour distill does not have, refused unless neutral.
    func refuseUnsupported() throws {
        for key in ["presence_penalty", "frequency_penalty"] {
            if let x = value(key)?.numberValue, x != 0 {
                throw APIError.invalid("\(key) is not supported by distill serve; leave it out or 0", param: key)
            }
        }
        if let v = value("logit_bias"), v != .object(.init()) {
            throw APIError.invalid("logit_bias is not supported by distill serve; leave it out", param: "logit_bias")
        }
        if let v = value("response_format"), case .object(let o) = v, let t = o["type"]?.stringValue, t != "text" {
            throw APIError.invalid(
                "response_format \(t) is not supported by distill serve; leave it out or use {\"type\": \"text\"}",
                param: "response_format")
        }
    }

    func parameters(maxChoices: Int) throws -> GenerationParameters {
        try refuseUnsupported()
        guard let model = try string("model") else { throw APIError.invalid("model is required", param: "model") }
        var p = GenerationParameters(model: model)
        // max_completion_tokens is the newer name; a request giving both is answered by it.
        p.maxTokens = try integer("max_completion_tokens", in: 1...Int(Int32.max)) ?? integer("max_tokens", in: 1...Int(Int32.max))
        p.temperature = try number("temperature", in: 0...2) ?? 1
        p.topP = try number("top_p", in: 0...1) ?? 1
        if p.topP == 0 { throw APIError.invalid("top_p must be above 0", param: "top_p") }
        p.n = try integer("n", in: 1...maxChoices) ?? 1
        if let v = value("seed") {
            guard case .int(let s) = v else { throw APIError.invalid("seed must be an integer", param: "seed") }
            p.seed = UInt64(bitPattern: Int64(s))
        }
        switch value("stop") {
        case nil: break
        case .string(let s)?: p.stop = [s]
        case .array(let items)?:
            p.stop = try items.map {
                guard case .string(let s) = $0 else { throw APIError.invalid("stop must hold strings", param: "stop") }
                return s
            }
        case let v?: throw APIError.invalid("stop must be a string or an array of strings, not \(v.typeName)", param: "stop")
        }
        if p.stop.count > 4 { throw APIError.invalid("stop takes at most 4 strings", param: "stop") }
        if p.stop.contains("") { throw APIError.invalid("stop strings must not be empty", param: "stop") }
        p.stream = try bool("stream") ?? false
        if let options = value("stream_options") {
            guard case .object(let o) = options else {
                throw APIError.invalid("stream_options must be an object", param: "stream_options")
            }
            guard p.stream else { throw APIError.invalid("stream_options needs stream: true", param: "stream_options") }
            if let v = o["include_usage"], v != .null {
                guard case .bool(let b) = v else {
                    throw APIError.invalid("stream_options.include_usage must be true or false", param: "stream_options.include_usage")
                }
                p.includeUsage = b
            }
        }
        return p
    }

    /// A message's content: a string, or an array of text parts.
    func content(_ value: JSONValue?, at path: String) throws -> String {
        switch value {
        case nil, .null?: return ""
        case .string(let s)?: return s
        case .array(let parts)?:
            return try parts.enumerated().map { i, part in
                guard case .object(let o) = part, o["type"]?.stringValue == "text", let text = o["text"]?.stringValue else {
                    throw APIError.invalid(
                        "\(path)[\(i)] must be a text part {\"type\": \"text\", \"text\": ...}; distill serves text models",
                        param: "\(path)[\(i)]")
                }
                return text
            }.joined()
        case let v?: throw APIError.invalid("\(path) must be a string or an array of text parts, not \(v.typeName)", param: path)
        }
    }
}

extension ChatRequest {
    package init(body: [UInt8], maxChoices: Int) throws {
        let r = try RequestReader(body: body)
        parameters = try r.parameters(maxChoices: maxChoices)
        if try r.bool("logprobs") == true {
            parameters.topLogProbs = try r.integer("top_logprobs", in: 0...20) ?? 0
        } else if r.value("top_logprobs") != nil {
            throw APIError.invalid("top_logprobs needs logprobs: true", param: "top_logprobs")
        }
        guard case .array(let items)? = r.value("messages"), !items.isEmpty else {
            throw APIError.invalid("messages must be a non-empty array", param: "messages")
        }
        messages = try items.enumerated().map { i, item in
            let path = "messages[\(i)]"
            guard case .object(let o) = item else { throw APIError.invalid("\(path) must be an object", param: path) }
            let given = o["role"]?.stringValue
            let role = given == "developer" ? "system" : given ?? ""
            guard TextData.ChatMessage.roles.contains(role) else {
                throw APIError.invalid(
                    "\(path).role must be one of \(TextData.ChatMessage.roles.joined(separator: ", ")) (developer is read as system)",
                    param: "\(path).role")
            }
            var content = try r.content(o["content"], at: "\(path).content")
            // An assistant turn that called tools is shown to the model as the calls it wrote.
            if role == "assistant", case .array(let calls)? = o["tool_calls"] {
                let written = try calls.enumerated().map { j, call -> String in
                    guard case .object(let c) = call, case .object(let f)? = c["function"], let name = f["name"]?.stringValue else {
                        throw APIError.invalid("\(path).tool_calls[\(j)] needs function.name", param: "\(path).tool_calls[\(j)]")
                    }
                    let arguments = f["arguments"]?.stringValue.flatMap { try? JSONValue.parse(Array($0.utf8)) } ?? .object(.init())
                    return JSONValue.obj(["name": .string(name), "arguments": arguments]).compact()
                }
                content += (content.isEmpty ? "" : "\n") + written.joined(separator: "\n")
            }
            return TextData.ChatMessage(role: role, content: content)
        }
        let choice = r.value("tool_choice")
        switch r.value("tools") {
        case nil: tools = nil
        case .array(let list)?:
            for (i, tool) in list.enumerated() {
                guard case .object(let o) = tool, case .object(let f)? = o["function"], f["name"]?.stringValue != nil else {
                    throw APIError.invalid(
                        "tools[\(i)] must be {\"type\": \"function\", \"function\": {\"name\": ..., \"parameters\": ...}}",
                        param: "tools[\(i)]")
                }
            }
            tools = choice?.stringValue == "none" || list.isEmpty ? nil : list
        case let v?: throw APIError.invalid("tools must be an array, not \(v.typeName)", param: "tools")
        }
        switch choice {
        case nil, .string("auto")?, .string("none")?: break
        case .string("required")?:
            guard let tools else { throw APIError.invalid("tool_choice \"required\" needs tools", param: "tool_choice") }
            requiredTools = tools
        case .object(let o)? where o["type"] == .string("function"):
            guard case .object(let f)? = o["function"], let name = f["name"]?.stringValue else {
                throw APIError.invalid(
                    "tool_choice must name its function: {\"type\": \"function\", \"function\": {\"name\": ...}}",
                    param: "tool_choice.function.name")
            }
            guard let tool = tools?.first(where: { ToolSchema.name($0) == name }) else {
                throw APIError.invalid("tool_choice names \"\(name)\", which is not among the request's tools", param: "tool_choice")
            }
            requiredTools = [tool]
        default:
            throw APIError.invalid(
                "tool_choice may be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}",
                param: "tool_choice")
        }
    }
}

extension CompletionRequest {
    package init(body: [UInt8], maxChoices: Int) throws {
        let r = try RequestReader(body: body)
        parameters = try r.parameters(maxChoices: maxChoices)
        if let k = try r.integer("logprobs", in: 0...20) { parameters.topLogProbs = k }
        switch r.value("prompt") {
        case .string(let s)?: prompt = s
        case .array(let items)? where items.count == 1 && items[0].stringValue != nil: prompt = items[0].stringValue!
        case .array?:
            throw APIError.invalid("prompt must be one string (send one request per prompt)", param: "prompt")
        case nil: throw APIError.invalid("prompt is required", param: "prompt")
        case let v?: throw APIError.invalid("prompt must be a string, not \(v.typeName)", param: "prompt")
        }
        if try r.bool("echo") == true { throw APIError.invalid("echo is not supported by distill serve", param: "echo") }
        if r.value("suffix") != nil { throw APIError.invalid("suffix is not supported by distill serve", param: "suffix") }
        if let best = try r.integer("best_of", in: 1...1000), best != parameters.n {
            throw APIError.invalid("best_of is not supported by distill serve; use n", param: "best_of")
        }
    }
}
