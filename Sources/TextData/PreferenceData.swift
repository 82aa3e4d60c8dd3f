// Preference pairs: TRL's `{"prompt", "chosen", "rejected"}` rows rendered to two examples
// sharing the prompt, and laid out as one batch of chosen rows followed by rejected rows (the
// layout TRL's DPO concatenates and distill's preference loss reads).
//
// Row forms (explicit prompt; TRL's implicit-prompt form without "prompt" is not read):
//   {"prompt": "...", "chosen": "...", "rejected": "..."}          standard: each completion
//       is followed by the end-of-sequence token, as TRL's DPO appends eos_token
//   {"prompt": [messages], "chosen": [messages], "rejected": [messages], "tools"?: [...]}
//       conversational, through the chat template
// Only completion tokens are counted (targets -100 elsewhere), as in SFT.

import Foundation
import JSON

package struct PreferencePair: Sendable, Equatable {
    package var chosen: RenderedExample
    package var rejected: RenderedExample

    package init(chosen: RenderedExample, rejected: RenderedExample) {
        self.chosen = chosen
        self.rejected = rejected
    }
}

package enum PreferenceData {
    package static func read(path: String, format: SFTFormat, tokenizer: ByteLevelBPETokenizer) throws
        -> [PreferencePair]
    {
        var out: [PreferencePair] = []
        try JSONLReader.forEach(path: path) { out.append(try render($0, format: format, tokenizer: tokenizer)) }
        return out
    }

    package static func render(_ record: JSONLRecord, format: SFTFormat, tokenizer: ByteLevelBPETokenizer) throws
        -> PreferencePair
    {
        let hint = "preference rows are {\"prompt\", \"chosen\", \"rejected\"}"
        let prompt = try record.require("prompt", hint: hint)
        let chosen = try record.require("chosen", hint: hint)
        let rejected = try record.require("rejected", hint: hint)
        let tools = try SFTData.tools(record)
        return PreferencePair(
            chosen: try SFTData.promptCompletion(
                prompt, chosen, field: "chosen", tools: tools, format: format, tokenizer: tokenizer, record),
            rejected: try SFTData.promptCompletion(
                prompt, rejected, field: "rejected", tools: tools, format: format, tokenizer: tokenizer, record))
    }
}

/// P pairs as 2P rows of `length` positions: rows 0..<P the chosen examples, rows P..<2P the
/// rejected ones, each right-padded (inputs `padID`, targets -100) to the longest row and cut
/// to `maxLength` positions (counted in `truncated`). Positions and targets as in
/// `SFTSequences`: an example of n ids gives n-1 positions.
package struct PreferenceSequences: Sendable, Equatable {
    package var pairs: Int
    package var length: Int
    /// [2P, length]
    package var inputs: [Int32]
    /// [2P, length], -100 outside the completions and on padding.
    package var targets: [Int32]
    /// Examples cut to `maxLength` positions.
    package var truncated: Int

    package init(_ batch: [PreferencePair], maxLength: Int, padID: Int32 = 0) {
        precondition(maxLength >= 1, "maxLength must be >= 1, got \(maxLength)")
        let examples = batch.map(\.chosen) + batch.map(\.rejected)
        let longest = examples.map { Swift.max($0.ids.count - 1, 0) }.max() ?? 0
        pairs = batch.count
        length = Swift.min(Swift.max(longest, 1), maxLength)
        inputs = []
        targets = []
        truncated = 0
        for e in examples {
            let n = Swift.min(Swift.max(e.ids.count - 1, 0), length)
            if e.ids.count - 1 > length { truncated += 1 }
            for i in 0..<n {
                inputs.append(e.ids[i])
                targets.append(e.trained[i + 1] ? e.ids[i + 1] : SFTSequences.ignoreIndex)
            }
            inputs += [Int32](repeating: padID, count: length - n)
            targets += [Int32](repeating: SFTSequences.ignoreIndex, count: length - n)
        }
    }
}
