// A prompt as a learned router sees it (docs/routing.md, *Learned routers*): the mean of the
// weak model's final hidden states (after the final RMSNorm) over the prompt's tokens, from a
// prefill of its own that computes no logits. The prompt is the request's text (a verdict
// row's prompt, a chat request's last user message) rendered alone as one user turn with the
// model's chat template, its default system message and the generation prompt; without a
// template, the text itself. The same rendering at training and at serving time keeps the
// router's inputs comparable.

import NN
import TextData

package struct PromptEmbedder {
    package let engine: DecodeEngine
    package let tokenizer: ByteLevelBPETokenizer
    package let style: ChatStyle?
    /// Longer prompts keep their last `maxTokens` tokens.
    package let maxTokens: Int

    package init(engine: DecodeEngine, tokenizer: ByteLevelBPETokenizer, style: ChatStyle?, maxTokens: Int) {
        (self.engine, self.tokenizer, self.style, self.maxTokens) = (engine, tokenizer, style, max(1, maxTokens))
    }

    /// The embedder of a loaded model on `engine` (default: its f32 weights, read in place).
    package init(_ loaded: LoadedModel, engine: DecodeEngine? = nil) throws {
        self.init(
            engine: engine ?? DecodeEngine(model: loaded.model), tokenizer: try loaded.requireTokenizer(), style: loaded.chatStyle(),
            maxTokens: min(2048, loaded.model.config.maxPositionEmbeddings))
    }

    /// The token ids embedded for `text`.
    package func tokens(_ text: String) -> [Int32] {
        let ids: [Int32]
        if let style {
            ids = tokenizer.encode(style.prompt([ChatMessage(role: "user", content: text)]), addSpecialTokens: false)
        } else {
            ids = tokenizer.encode(text)
        }
        return ids.isEmpty ? [0] : Array(ids.suffix(maxTokens))
    }

    /// The mean final hidden state over `text`'s tokens, and their count. Uses a decode state of
    /// its own (one slot as long as the prompt), so it may run beside other work on the engine.
    package func embed(_ text: String) -> (embedding: [Float], tokens: Int) {
        let ids = tokens(text)
        let state = DecodeState(engine: engine, slots: 1, capacity: ids.count)
        return (state.meanHidden(ids: ids, slot: 0), ids.count)
    }
}
