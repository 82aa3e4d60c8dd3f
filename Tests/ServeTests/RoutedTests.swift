// `route:NAME@P` over tiny_chat.gguf and a scripted teacher: a router trained (by hand, k = 1
// nearest neighbour) on two prompts embedded by the served model keeps the one it labelled
// right on the student and sends the other to the teacher; a router trained for another
// model is refused at load.

import Foundation
import JSON
import ModelIO
import Platform
import Route
import Serve
import Teacher
import Testing

extension ServeTests {
    /// A k = 1 router over the embeddings of `easy` (label 1: the student is right) and `hard`
    /// (label 0), thresholds 0.5 for every share, for the model at `tinyChat`.
    static func handRouter(easy: String, hard: String, checksum: String? = nil) throws -> Router {
        let loaded = try loadModel(from: tinyChat)
        let embedder = try PromptEmbedder(loaded)
        let (e, h) = (embedder.embed(easy), embedder.embed(hard))
        var router = Router(
            model: .knn(NeighbourRouter(k: 1, embeddings: [e.embedding, h.embedding], labels: [1, 0])), weak: "tiny", strong: "big",
            weakChecksum: checksum ?? CheckpointTeacher.checksum(loaded.model, tokenizerJSON: loaded.tokenizerJSON ?? ""),
            split: RouterSplit())
        router.thresholds = [0.1, 0.3, 0.5].map { Router.Threshold(target: $0, threshold: 0.5, calibrationShare: $0) }
        return router
    }

    @Test func aRoutedModelAnswersWithTheStudentOrTheTeacherAsItsRouterDecides() async throws {
        let (easy, hard) = ("What is the capital of France?", "Prove that every even number is a sum of two primes.")
        let (teacher, teacherTask, calls) = try await Self.scriptedTeacher(answer: "Paris")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("routed-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("r.h5").path
        try Self.handRouter(easy: easy, hard: hard).write(to: path)
        var settings = Self.settings()
        settings.teacher = try TeacherEndpoint(json: #"{"type": "openai", "base_url": "http://127.0.0.1:\#(teacher.port)/v1", "model": "big"}"#)
        settings.decisionLog = dir.appendingPathComponent("decisions.jsonl").path
        settings.routers = [try ServedRouter(argument: "nn=\(path)")]
        let server = try await RunningServer.start(settings)
        let port = server.port
        func ask(_ model: String, _ content: String, _ fields: String = #""temperature":0,"max_tokens":8"#) async throws -> Exchange {
            try await http(
                port, "POST", "/v1/chat/completions",
                body: chatBody(fields, content: content).replacingOccurrences(of: "\"tiny\"", with: "\"\(model)\""))
        }
        // The easy prompt is its own nearest neighbour, labelled right: the student answers, as it would alone.
        let kept = try await ask("route:nn@30", easy)
        #expect(kept.status == 200, "\(kept.body)")
        #expect(kept.json["model"] == .string("tiny") && kept.json["distill"]?["decision"] == .string("student"))
        #expect(kept.json["distill"]?["score"]?.numberValue == 1 && kept.json["distill"]?["threshold"]?.numberValue == 0.5)
        #expect(kept.json["distill"]?["target_share"]?.numberValue == 0.3)
        #expect((kept.json["distill"]?["route_seconds"]?.numberValue ?? -1) >= 0)
        let alone = try await ask("tiny", easy)
        #expect(kept.json["choices"]?[0]?["message"] == alone.json["choices"]?[0]?["message"])
        #expect(calls.value == 0)
        // The hard one escalates; streamed, the same decision arrives as chunks.
        let sent = try await ask("route:nn@50", hard)
        #expect(sent.json["model"] == .string("big") && sent.json["distill"]?["escalated"] == .bool(true), "\(sent.body)")
        #expect(sent.json["choices"]?[0]?["message"]?["content"] == .string("Paris"))
        let streamed = try await ask("route:nn@50", hard, #""max_tokens":8,"stream":true"#)
        #expect(streamed.events.last == "[DONE]" && streamed.events.contains { $0.contains("\"content\":\"Paris\"") })
        #expect(calls.value == 2)
        // The models list shows the routed model; unknown routers and shares are 400s.
        let models = try await http(port, "GET", "/v1/models")
        #expect(models.body.contains("\"route:nn@30\""))
        #expect(try await ask("route:other@30", easy).status == 400)
        #expect(try await ask("route:nn@150", easy).status == 400)
        #expect(try await ask("route:nn@30", easy, #""n":2"#).status == 400)
        // Every decision was logged.
        let log = try String(contentsOfFile: settings.decisionLog!, encoding: .utf8).split(separator: "\n")
        #expect(log.count == 3)
        #expect(log[0].contains("\"decision\":\"student\"") && log[1].contains("\"decision\":\"teacher\""))
        try await server.stop()
        teacher.stop()
        try await teacherTask.value
    }

    @Test func aRouterTrainedForAnotherModelIsRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("routed-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("r.h5").path
        try Self.handRouter(easy: "a", hard: "b", checksum: "xxh64:00000000000000000000000000000000").write(to: path)
        let catalog = try Catalog(
            models: [ServedPath(name: "tiny", path: tinyChat)], adapters: [], weights: .f32, slots: 1, context: 64, queueLimit: 1,
            checksums: true, log: { _ in })
        #expect { try LoadedRouter(ServedRouter(name: "r", path: path), catalog: catalog) } throws: { error in
            let e = error as? UserError
            return e?.kind == .usage && e?.problem.contains("no served model is it") == true
        }
        catalog.scheduler.shutdown()
    }
}
