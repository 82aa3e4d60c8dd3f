import ArgumentParser
import Foundation
import ModelIO
import NN
import TextData

/// `distill chat`: a conversation with a model through its chat template, on a terminal or
/// one-shot (`--message`).
struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Chat with a model through its chat template.",
        discussion: """
            Interactive by default: type a message and press Enter; the reply streams as it is \
            generated and ends at the model's end-of-turn token. /reset starts a new conversation, \
            /exit (or end of input) quits. With --message the command answers once and exits \
            (repeat --message for a conversation of several user turns answered in order).
            """)

    @OptionGroup var model: ModelOption
    @Option(help: "A system message (replaces the model's default one).") var system: String?
    @Option(help: "Answer this user message and exit (repeatable: each is answered in turn).") var message: [String] = []
    @Option(help: "The chat template family (chatml, llama3) when the model records none, or to override it.")
    var template: ChatTemplate?
    @Option(help: "Tokens per reply at most.") var maxTokens = 256
    @Option(help: "0 for greedy; higher is more random.") var temperature = 0.0
    @Option(help: "Sample among the k most likely tokens (0: all).") var topK = 0
    @Option(help: "Sample among the most likely tokens whose probability reaches p.") var topP = 1.0
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Flag(help: "With --message: print the replies as JSON (text, token ids, finish reason).") var json = false
    @OptionGroup var weights: WeightsOption
    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if maxTokens < 1 { throw ValidationError("--max-tokens must be >= 1") }
        if !(temperature >= 0) { throw ValidationError("--temperature must be >= 0") }
        if topK < 0 { throw ValidationError("--top-k must be >= 0") }
        if !(topP > 0 && topP <= 1) { throw ValidationError("--top-p must be in (0, 1]") }
        if json && message.isEmpty { throw ValidationError("--json needs --message") }
    }

    func run() throws {
        compute.apply()
        let loaded = try model.load()
        let style = try loaded.requireChatStyle(template)
        let engine = try loaded.decodeEngine(weights.weights)
        let opening = system.map { [ChatMessage(role: "system", content: $0)] } ?? []
        var history = opening
        var turn = 0
        func answer(_ text: String, stream: Bool) throws -> ChatReply {
            history.append(ChatMessage(role: "user", content: text))
            let sampling = SamplingConfig(
                maxTokens: maxTokens, temperature: temperature, topK: topK, topP: topP, seed: seed &+ UInt64(turn))
            turn += 1
            let reply = try chatReply(
                loaded, style: style, messages: history, sampling: sampling, engine: engine,
                onText: stream ? { print($0, terminator: ""); fflush(nil) } : nil)
            history.append(ChatMessage(role: "assistant", content: reply.text))
            return reply
        }

        if !message.isEmpty {
            var replies: [ChatReply] = []
            for m in message { replies.append(try answer(m, stream: !json)) }
            if json { try printJSON(replies) } else { print() }
            return
        }
        let name = URL(fileURLWithPath: loaded.path).lastPathComponent
        print("chatting with \(name) (\(style.template.rawValue)); /reset starts over, /exit quits")
        while true {
            print("> ", terminator: "")
            fflush(nil)
            guard let line = readLine() else { break }
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            if text == "/exit" || text == "/quit" { break }
            if text == "/reset" {
                history = opening
                print("(new conversation)")
                continue
            }
            let reply = try answer(text, stream: true)
            print(reply.finishReason == "length" ? " [reply cut at --max-tokens \(maxTokens)]" : "")
        }
    }
}
