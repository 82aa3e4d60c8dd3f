// Text in, text out: a loaded model continues prompts with its own tokenizer. Shared by the
// `generate` stage and command.

import NN
import Platform
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
/// end-of-text token (and any of `sampling.stopTokens`) ends a row (unless `ignoreEndOfText`),
/// the stop token left out of the text. `addSpecialTokens: false` encodes prompts without the
/// tokenizer's template prefix (for text a chat template rendered, which carries its own).
/// `engine` (default: the model's f32 weights) runs the generation.
package func generateText(
    _ loaded: LoadedModel, prompts: [String], sampling: SamplingConfig, stop: [String], ignoreEndOfText: Bool = false,
    addSpecialTokens: Bool = true, engine: DecodeEngine? = nil
) throws -> [Sample] {
    let tokenizer = try loaded.requireTokenizer()
    var sampling = sampling
    if !ignoreEndOfText, let eot = loaded.endOfText, !sampling.stopTokens.contains(eot) { sampling.stopTokens.append(eot) }
    let encoded = prompts.map { p -> [Int32] in
        let ids = tokenizer.encode(p, addSpecialTokens: addSpecialTokens)
        return ids.isEmpty ? [loaded.endOfText ?? 0] : ids
    }
    let longest = encoded.map(\.count).max() ?? 0
    try requireInferenceMemory(
        loaded.model.config, rows: encoded.count, positions: longest + sampling.maxTokens, allLogits: false,
        what: "generating", path: loaded.path, fix: "generate fewer prompts at once, or fewer max_tokens")
    let outputs = (engine ?? DecodeEngine(model: loaded.model)).generate(prompts: encoded, sampling: sampling) {
        _, generated in
        guard !stop.isEmpty else { return false }
        let text = tokenizer.decode(generated)
        return stop.contains { text.contains($0) }
    }.ids
    return zip(zip(prompts, encoded), outputs).map { pair, ids in
        var text = tokenizer.decode(ignoreEndOfText ? ids : ids.filter { !sampling.stopTokens.contains($0) })
        for s in stop { if let r = text.range(of: s) { text = String(text[..<r.lowerBound]) } }
        return Sample(prompt: pair.0, completion: text, promptIds: pair.1, ids: ids)
    }
}

/// One assistant turn: the reply's text and ids, and why it ended.
package struct ChatReply: Codable, Sendable {
    package var text: String
    package var promptIds: [Int32]
    package var ids: [Int32]
    /// "stop" at the end-of-turn or end-of-text token, "length" at the token limit.
    package var finishReason: String

    enum CodingKeys: String, CodingKey { case text, promptIds = "prompt_ids", ids, finishReason = "finish_reason" }
}

extension LoadedModel {
    /// The chat style to use: `template` when given (keeping the model's default system message
    /// when its family is the same), else the model's own; nil when neither says.
    package func chatStyle(_ template: ChatTemplate? = nil) -> ChatStyle? { ChatStyle.resolved(template, model: chat) }

    /// The model's chat style, or an error saying how to name one.
    package func requireChatStyle(_ template: ChatTemplate? = nil) throws -> ChatStyle {
        guard let style = chatStyle(template) else {
            throw UserError(
                path: path, problem: "records no chat template distill recognises",
                fix: "name its family with --template chatml or --template llama3", kind: .usage)
        }
        return style
    }
}

/// The assistant's reply to `messages`, rendered with `style` and ended at its end-of-turn
/// token (or the end-of-text token). `onText` receives the reply's text as it grows (whole
/// characters only), for streaming. `engine` (default: the model's f32 weights) runs it.
package func chatReply(
    _ loaded: LoadedModel, style: ChatStyle, messages: [ChatMessage], sampling: SamplingConfig,
    engine: DecodeEngine? = nil, onText: ((String) -> Void)? = nil
) throws -> ChatReply {
    let tokenizer = try loaded.requireTokenizer()
    try style.template.check(tokenizer)
    var sampling = sampling
    for stop in [tokenizer.id(for: style.template.endOfTurn), loaded.endOfText] {
        if let stop, !sampling.stopTokens.contains(stop) { sampling.stopTokens.append(stop) }
    }
    let prompt = tokenizer.encode(style.prompt(messages), addSpecialTokens: false)
    try requireInferenceMemory(
        loaded.model.config, rows: 1, positions: prompt.count + sampling.maxTokens, allLogits: false,
        what: "generating", path: loaded.path, fix: "shorten the conversation or lower max_tokens")
    var shown = 0
    let ids = (engine ?? DecodeEngine(model: loaded.model)).generate(prompts: [prompt], sampling: sampling) {
        _, generated in
        guard let onText else { return false }
        let text = tokenizer.decode(generated.filter { !sampling.stopTokens.contains($0) })
        // A multi-byte character split across tokens decodes to U+FFFD until it is whole.
        if text.count > shown, text.last != "\u{FFFD}" {
            onText(String(text.dropFirst(shown)))
            shown = text.count
        }
        return false
    }.ids[0]
    let stopped = ids.last.map { sampling.stopTokens.contains($0) } ?? false
    let reply = tokenizer.decode(stopped ? Array(ids.dropLast()) : ids)
    if let onText, reply.count > shown { onText(String(reply.dropFirst(shown))) }
    return ChatReply(text: reply, promptIds: prompt, ids: ids, finishReason: stopped ? "stop" : "length")
}
