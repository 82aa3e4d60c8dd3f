import ArgumentParser
import ModelIO
import NN
import Recipe
import TextData

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Continue a prompt with a model.")

    @OptionGroup var model: ModelOption
    @Option(help: "The prompt text (repeat for several, generated as one batch).") var prompt: [String]
    @Option(help: "Tokens to generate at most.") var maxTokens = 64
    @Option(help: "0 for greedy; higher is more random.") var temperature = 0.8
    @Option(help: "Sample among the k most likely tokens (0: all).") var topK = 40
    @Option(help: "Sample among the most likely tokens whose probability reaches p.") var topP = 1.0
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "Stop a completion before this text (repeatable).") var stop: [String] = []
    @Flag(help: "Keep generating past the end-of-text token (as transformers does with eos_token_id=None).")
    var ignoreEos = false
    @Flag(help: "Render each prompt as a user message through the model's chat template (and stop at its end of turn).")
    var chat = false
    @Option(help: "With --chat: the chat template family (chatml, llama3) when the model records none.")
    var template: ChatTemplate?
    @Flag(help: "Print JSON with token ids.") var json = false
    @OptionGroup var weights: WeightsOption
    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if prompt.isEmpty { throw ValidationError("give at least one --prompt") }
        if maxTokens < 0 { throw ValidationError("--max-tokens must be >= 0") }
        if !(temperature >= 0) { throw ValidationError("--temperature must be >= 0") }
        if topK < 0 { throw ValidationError("--top-k must be >= 0") }
        if !(topP > 0 && topP <= 1) { throw ValidationError("--top-p must be in (0, 1]") }
    }

    func run() throws {
        compute.apply()
        var sampling = SamplingConfig(maxTokens: maxTokens, temperature: temperature, topK: topK, topP: topP, seed: seed)
        let loaded = try model.load()
        var prompts = prompt
        if chat {
            let style = try loaded.requireChatStyle(template)
            let tokenizer = try loaded.requireTokenizer()
            try style.template.check(tokenizer)
            prompts = prompt.map { style.prompt([ChatMessage(role: "user", content: $0)]) }
            if let end = tokenizer.id(for: style.template.endOfTurn) { sampling.stopTokens.append(end) }
        }
        let samples = try generateText(
            loaded, prompts: prompts, sampling: sampling, stop: stop, ignoreEndOfText: ignoreEos, addSpecialTokens: !chat,
            engine: try loaded.decodeEngine(weights.weights))
        if json {
            try printJSON(samples)
        } else {
            for s in samples { print(s.prompt + s.completion) }
        }
    }
}
