import ArgumentParser
import Foundation
import ModelIO
import NN
import Platform
import Serve

/// `distill serve`: an OpenAI-compatible server for models and their adapters.
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve models and adapters over the OpenAI API (chat and text completions).",
        discussion: """
            Listens on 127.0.0.1 unless --host says otherwise. GET /health answers 503 while the models \
            load. Requests name a model or an adapter by the NAME given here; concurrent requests are \
            decoded together (continuous batching, --max-batch sequences per model). SIGTERM or Ctrl-C \
            stops accepting connections and lets the requests in flight finish. See docs/serving.md.
            """)

    @Option(name: .customLong("model"), help: "NAME=PATH: a model to serve (a checkpoint, HF directory or .gguf); repeatable.")
    var models: [String] = []
    @Option(name: .customLong("adapter"), help: "NAME=ADAPTER.h5[@MODEL]: a LoRA adapter served over a model; repeatable.")
    var adapters: [String] = []
    @OptionGroup var weights: WeightsOption
    @Option(help: "The address to listen on.") var host = "127.0.0.1"
    @Option(help: "The port to listen on (0: any free port).") var port = 8080
    @Option(help: "Sequences decoded together per model or adapter (each choice of a request is one).") var maxBatch = 8
    @Option(help: "Positions (prompt and completion) per sequence, at most the model's own context.") var context = 2048
    @Option(help: "Requests that may wait for a free sequence; beyond them the server answers 503.") var maxQueue = 64
    @Option(help: "Tokens a request may generate per choice at most.") var maxTokensLimit = 4096
    @Option(help: "Request bodies larger than this many bytes are refused (413).") var maxBodyBytes = 4 << 20
    @Option(help: "An environment variable holding the API key clients must send (Authorization: Bearer KEY).")
    var apiKeyEnv: String?
    @Option(help: "The teacher cascade:m=M,tau=T and route:NAME@P models escalate to: an openai teacher's JSON, inline or a file (docs/serving.md).")
    var teacherJson: String?
    @Option(help: "A JSONL file every routing decision is appended to.") var decisionLog: String?
    @Option(
        name: .customLong("router"),
        help: "NAME=R.h5: a learned router (distill route train) served as route:NAME@P over the model it was trained for; repeatable.")
    var routers: [String] = []
    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if models.isEmpty { throw ValidationError("give at least one --model NAME=PATH") }
        if maxBatch < 1 { throw ValidationError("--max-batch must be at least 1") }
        if context < 2 { throw ValidationError("--context must be at least 2") }
        if maxQueue < 0 { throw ValidationError("--max-queue must be at least 0") }
        if maxTokensLimit < 1 { throw ValidationError("--max-tokens-limit must be at least 1") }
        if maxBodyBytes < 1024 { throw ValidationError("--max-body-bytes must be at least 1024") }
        if !(0...65535).contains(port) { throw ValidationError("--port must be from 0 to 65535") }
    }

    func run() throws {
        compute.apply()
        var settings = ServeSettings(models: try models.map { try ServedPath(argument: $0, adapter: false) })
        settings.adapters = try adapters.map { try ServedPath(argument: $0, adapter: true) }
        settings.weights = weights.weights
        (settings.host, settings.port, settings.maxBatch, settings.context) = (host, port, maxBatch, context)
        (settings.queueLimit, settings.maxTokensLimit, settings.maxBodyBytes) = (maxQueue, maxTokensLimit, maxBodyBytes)
        if let apiKeyEnv {
            guard let key = ProcessInfo.processInfo.environment[apiKeyEnv], !key.isEmpty else {
                throw UserError(
                    path: "--api-key-env \(apiKeyEnv)", problem: "the environment variable is not set or empty",
                    fix: "export \(apiKeyEnv)=YOUR_KEY before starting the server", kind: .usage)
            }
            settings.apiKey = key
        }
        settings.teacher = try teacherJson.map { try TeacherEndpoint(json: $0) }
        settings.decisionLog = decisionLog
        settings.routers = try routers.map { try ServedRouter(argument: $0) }
        let state = ServeState(settings: settings)
        let outcome = Locked<(any Error)?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task {
            do {
                try await runServer(state) { line in
                    FileHandle.standardError.write(Data("distill serve: \(line)\n".utf8))
                }
            } catch {
                outcome.value = error
            }
            done.signal()
        }
        done.wait()
        if let error = outcome.value { throw error }
    }
}
