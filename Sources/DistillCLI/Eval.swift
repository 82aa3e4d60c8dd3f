import ArgumentParser
import Foundation
import JSON
import Training

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
