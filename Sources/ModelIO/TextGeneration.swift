// Text in, text out: a loaded model continues prompts with its own tokenizer. Shared by the
// `generate` stage and command.

import NN
import TextData

/// One generated continuation.
package struct Sample: Codable, Sendable {
    package var prompt: String
    package var completion: String
    package var promptIds: [Int32]
    package var ids: [Int32]

    enum CodingKeys: String, CodingKey { case prompt, completion, promptIds = "prompt_ids", ids }
}

/// Continues each prompt; the completion is cut before the first stop string and the
/// end-of-text token ends a row (unless `ignoreEndOfText`).
package func generateText(
    _ loaded: LoadedModel, prompts: [String], sampling: SamplingConfig, stop: [String], ignoreEndOfText: Bool = false
) throws -> [Sample] {
    let tokenizer = try loaded.requireTokenizer()
    var sampling = sampling
    if !ignoreEndOfText, let eot = loaded.endOfText, !sampling.stopTokens.contains(eot) { sampling.stopTokens.append(eot) }
    let encoded = prompts.map { p -> [Int32] in
        let ids = tokenizer.encode(p)
        return ids.isEmpty ? [loaded.endOfText ?? 0] : ids
    }
    let outputs = loaded.model.generate(prompts: encoded, sampling: sampling) { _, generated in
        guard !stop.isEmpty else { return false }
        let text = tokenizer.decode(generated)
        return stop.contains { text.contains($0) }
    }
    return zip(zip(prompts, encoded), outputs).map { pair, ids in
        var text = tokenizer.decode(ignoreEndOfText ? ids : ids.filter { $0 != loaded.endOfText })
        for s in stop { if let r = text.range(of: s) { text = String(text[..<r.lowerBound]) } }
        return Sample(prompt: pair.0, completion: text, promptIds: pair.1, ids: ids)
    }
}
