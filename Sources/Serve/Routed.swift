// Routed models: `route:NAME@30` answers a chat request with the student or the teacher as the
// learned router NAME (`--router NAME=R.h5`, trained by `distill route train`) decides. The
// student is the served model whose checksum is the one the router was trained for; it embeds
// the request's last user message (the mean of its final hidden states over that message
// rendered alone as one user turn, as at training time; docs/routing.md) in a prefill of its
// own, the router scores it, and a score below the threshold calibrated for the share of
// strong calls nearest 30% sends the request to the teacher (`--teacher-json`). The reply names
// the model that answered and carries a `distill` object with the decision, which is also
// appended to the decision log.

import Foundation
import JSON
import ModelIO
import Platform
import Route
import TextData

/// `--router NAME=R.h5`.
package struct ServedRouter: Sendable, Equatable {
    package var name: String
    package var path: String

    package init(name: String, path: String) { (self.name, self.path) = (name, path) }

    package init(argument: String) throws {
        let parts = argument.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty,
            parts[0].allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) })
        else {
            throw UserError(
                path: "--router", problem: "\"\(argument)\" is not NAME=ROUTER.h5",
                fix: "write --router NAME=R.h5 with a name of letters, digits, - _ .", kind: .usage)
        }
        (name, path) = (parts[0], parts[1])
    }
}

/// `route:NAME@P`: the router NAME at the threshold calibrated for about P% strong calls.
package struct RouteSpec: Sendable, Equatable {
    package var router: String
    /// 0...100.
    package var percent: Double

    package static let prefix = "route:"

    package init(name: String) throws {
        let body = name.dropFirst(Self.prefix.count)
        let parts = body.split(separator: "@", maxSplits: 1).map(String.init)
        guard parts.count == 2, !parts[0].isEmpty, let p = Double(parts[1]), (0...100).contains(p) else {
            throw APIError.invalid(
                "model \(name) is not a routed model; write route:NAME@P with a router NAME and a share P of strong calls from 0 to 100",
                param: "model")
        }
        (router, percent) = (parts[0], p)
    }
}

/// A router ready to serve: its student and the student's embedder.
package final class LoadedRouter: @unchecked Sendable {
    package let name: String
    package let router: Router
    /// The served model it routes from.
    package let student: String
    let embedder: PromptEmbedder
    /// Embeddings run one at a time, off the server's threads.
    private let queue: DispatchQueue

    /// Reads the router and binds it to the served model it was trained for.
    package init(_ spec: ServedRouter, catalog: Catalog) throws {
        let router = try Router.read(path: spec.path)
        guard router.servable else {
            throw UserError(
                path: spec.path, problem: "the router reads the weak model's samples (agreement or log-probabilities), which a live request does not have",
                fix: "serve a router trained with --features embedding,length", kind: .usage)
        }
        guard !router.thresholds.isEmpty else {
            throw UserError(path: spec.path, problem: "the router has no calibrated thresholds", fix: "run distill route calibrate", kind: .usage)
        }
        guard let student = catalog.names.first(where: { catalog.checksums[$0] == router.weakChecksum }) else {
            throw UserError(
                path: "--router \(spec.name)",
                problem:
                    "the router was trained for the weak model \(router.weakChecksum) (\"\(router.weak)\"); no served model is it ("
                    + catalog.names.map { "\($0): \(catalog.checksums[$0] ?? "?")" }.joined(separator: ", ") + ")",
                fix: "serve the model the router was trained for with --model, or train a router for a served one", kind: .usage)
        }
        let entry = catalog.entries[student]!
        (self.name, self.router, self.student) = (spec.name, router, student)
        embedder = PromptEmbedder(
            engine: catalog.engines[student]!, tokenizer: entry.tokenizer, style: entry.style, maxTokens: entry.capacity)
        queue = DispatchQueue(label: "distill.route.\(spec.name)")
    }

    /// The router's input for `text`, computed on the router's queue.
    func input(_ text: String) async -> RouterInput {
        await withCheckedContinuation { continuation in
            queue.async {
                let e = self.embedder.embed(text)
                continuation.resume(returning: RouterInput(embedding: e.embedding, promptTokens: e.tokens))
            }
        }
    }
}

extension Call {
    /// Answers a chat request for the routed model `spec`: the router's decision, then the
    /// student's reply or the teacher's.
    func routed(
        _ spec: RouteSpec, router: LoadedRouter, requested: String, text: String, body: JSONValue.JSONObject, tools: Bool,
        catalog: Catalog, state: ServeState
    ) async throws -> HTTPReply {
        guard let teacher = state.teacher else {
            throw APIError.invalid(
                "model \(requested) needs a teacher: start distill serve with --teacher-json", param: "model", code: "no_teacher")
        }
        let started = Date()
        let input = await router.input(text)
        let routing = Date().timeIntervalSince(started)
        guard let score = router.router.score(input), let threshold = router.router.threshold(forShare: spec.percent / 100) else {
            preconditionFailure("a served router scores every request and has thresholds (checked at load)")
        }
        let escalated = score < threshold.threshold
        var reply: JSONValue.JSONObject
        var studentTokens = 0
        if escalated {
            reply = try await teacher.complete(body)
        } else {
            let (outcomes, cached) = await gather(try submit(catalog))
            studentTokens = outcomes.map(\.completionTokens).reduce(0, +)
            guard case .object(let own) = completion(outcomes, cached: cached, chat: true, tools: tools) else {
                preconditionFailure("a completion is an object")
            }
            reply = own
        }
        let decision = JSONValue.obj([
            "route": .string(requested), "router": .string(router.name), "kind": .string(router.router.model.kind.rawValue),
            "decision": .string(escalated ? "teacher" : "student"), "escalated": .bool(escalated), "student": .string(entry.name),
            "teacher": .string(teacher.config.model), "score": .double(score), "threshold": .double(threshold.threshold),
            "target_share": .double(threshold.target), "calibration_share": .double(threshold.calibrationShare),
            "embedded_tokens": .int(input.promptTokens), "route_seconds": .double(routing),
        ])
        return finishRouted(
            reply, decision: decision, escalated: escalated, studentTokens: studentTokens, prompt: text, started: started,
            state: state)
    }
}

extension ServeState {
    /// The routed model's router, or a 400 naming the served ones.
    func router(_ spec: RouteSpec) throws -> LoadedRouter {
        guard let r = routers[spec.router] else {
            throw APIError.invalid(
                "no router \(spec.router) is served here"
                    + (routers.isEmpty ? "; start distill serve with --router NAME=R.h5" : "; GET /v1/models lists " + routers.keys.sorted().map { "route:\($0)@P" }.joined(separator: ", ")),
                param: "model", code: "model_not_found")
        }
        return r
    }
}

/// The request text a router embeds: the last user message's content.
func routedText(_ messages: [ChatMessage]) throws -> String {
    guard let last = messages.last(where: { $0.role == "user" }) else {
        throw APIError.invalid("a routed model reads the last user message, and the request has none", param: "messages")
    }
    return last.content
}
