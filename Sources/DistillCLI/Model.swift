import ArgumentParser
import Foundation
import JSON
import ModelIO
import NN
import Recipe
import Training

/// Where a model comes from: a distill checkpoint or a Hugging Face directory.
struct ModelOption: ParsableArguments {
    @Option(name: .long, help: "A distill checkpoint (.h5, a whole model or an adapter) or a Hugging Face model directory.")
    var checkpoint: String
    @OptionGroup var base: BaseOption

    func load() throws -> LoadedModel { try loadModel(from: checkpoint, base: base.base) }
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Mean next-token loss and perplexity of a model on a text or JSONL corpus.")

    @OptionGroup var model: ModelOption
    @Option(help: "A plain text file to score.") var text: String?
    @Option(help: "A JSONL file with a \"text\" field per line.") var data: String?
    @Option(help: "Tokens per window (default: the model's max_position_embeddings).") var seqLen: Int?
    @Option(help: "At most this many batches of 8 windows.") var batches = 16
    @Flag(help: "Include the logits at the last scored position in the JSON.") var lastLogits = false
    @Flag(help: "Print the result as JSON.") var json = false
    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if (text == nil) == (data == nil) { throw ValidationError("give exactly one of --text FILE or --data FILE.jsonl") }
        if let seqLen, seqLen < 1 { throw ValidationError("--seq-len must be at least 1") }
        if batches < 1 { throw ValidationError("--batches must be at least 1") }
    }

    func run() throws {
        compute.apply()
        let result = try evaluateFile(
            checkpoint: model.checkpoint, base: model.base.base, path: text ?? data!, jsonl: data != nil, seqLen: seqLen, batches: batches,
            lastLogits: lastLogits)
        if json {
            try printJSON(result)
        } else {
            print(String(format: "loss %.6f  perplexity %.4f  (%d tokens, %d batches)", result.loss, result.perplexity, result.tokens, result.batches))
        }
    }
}

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
    @Flag(help: "Print JSON with token ids.") var json = false
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
        let sampling = SamplingConfig(maxTokens: maxTokens, temperature: temperature, topK: topK, topP: topP, seed: seed)
        let samples = try generateText(
            try model.load(), prompts: prompt, sampling: sampling, stop: stop, ignoreEndOfText: ignoreEos)
        if json {
            try printJSON(samples)
        } else {
            for s in samples { print(s.prompt + s.completion) }
        }
    }
}

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Bring a model from another format into a distill checkpoint.", subcommands: [HF.self, ImportPEFT.self])

    struct HF: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "hf", abstract: "A Hugging Face Llama directory (config.json, safetensors, tokenizer.json).")
        @Argument(help: "The Hugging Face model directory.") var directory: String
        @Option(name: .shortAndLong, help: "The checkpoint to write (.h5).") var output: String

        func run() throws {
            try importHF(directory: directory, to: output)
            print("wrote \(output)")
        }
    }
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a distill checkpoint in another format.", subcommands: [HF.self, ExportPEFT.self, ExportGGUF.self])

    struct HF: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "hf", abstract: "A Hugging Face directory that transformers loads as LlamaForCausalLM.")
        @Argument(help: "The distill checkpoint (.h5; an adapter is merged into its base).") var checkpoint: String
        @OptionGroup var base: BaseOption
        @Option(name: .shortAndLong, help: "The directory to write.") var output: String

        func run() throws {
            try exportHF(try loadModel(from: checkpoint, base: base.base), to: output)
            print("wrote \(output)")
        }
    }
}
