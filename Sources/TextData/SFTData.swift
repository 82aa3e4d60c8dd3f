// Supervised fine-tuning data: TRL's JSONL row forms rendered to ids with a loss mask, and
// the examples laid out in fixed-length rows, packed or padded.
//
// Row forms (TRL's dataset formats; other fields are ignored, as TRL ignores extra columns):
//   {"messages": [{"role", "content"}, ...], "tools"?: [...]}   conversational: every assistant
//       message is trained (TRL's assistant_only_loss)
//   {"prompt": "...", "completion": "..."}                        standard: prompt encoded with
//       the tokenizer's template prefix (BOS if it has one), completion + EOS trained (TRL's
//       completion_only_loss, which appends eos_token)
//   {"prompt": [messages], "completion": [messages], "tools"?}   conversational prompt-completion:
//       the assistant messages of the completion are trained
// Errors name file:line:column (the column of the offending field) and the fix.

import Foundation
import JSON

/// How SFT rows become token ids.
package struct SFTFormat: Codable, Sendable, Equatable {
    /// The chat template for conversational rows (default ChatML).
    package var template: ChatTemplate = .chatml
    /// The system message that opens a conversation without one (the model's own template's).
    package var defaultSystem: String? = nil
    /// The token appended (trained) after a plain-text completion; nil: the template's
    /// end-of-turn token (<|im_end|> for chatml, <|eot_id|> for llama3).
    package var eosToken: String? = nil

    package init(template: ChatTemplate = .chatml, eosToken: String? = nil, defaultSystem: String? = nil) {
        self.template = template
        self.eosToken = eosToken
        self.defaultSystem = defaultSystem
    }

    package init(_ style: ChatStyle) {
        self.init(template: style.template, defaultSystem: style.defaultSystem)
    }
}

package enum SFTData {
    /// Reads every row of a JSONL file in order.
    package static func read(path: String, format: SFTFormat, tokenizer: ByteLevelBPETokenizer) throws
        -> [RenderedExample]
    {
        var out: [RenderedExample] = []
        try JSONLReader.forEach(path: path) { out.append(try render($0, format: format, tokenizer: tokenizer)) }
        return out
    }

    /// One row rendered to ids and loss mask.
    package static func render(_ record: JSONLRecord, format: SFTFormat, tokenizer: ByteLevelBPETokenizer) throws
        -> RenderedExample
    {
        let tools = try self.tools(record)
        if let value = record.value("messages") {
            let messages = try self.messages(value, field: "messages", record)
            guard messages.contains(where: { $0.role == "assistant" }) else {
                throw record.error(
                    "no assistant message, so nothing to train on", at: "messages",
                    hint: "add the answer as {\"role\": \"assistant\", \"content\": \"...\"}")
            }
            return try chat(messages, tools: tools, trained: nil, format: format, tokenizer: tokenizer)
        }
        let forms = "rows must be {\"prompt\", \"completion\"} or {\"messages\": [{\"role\", \"content\"}, ...]}"
        guard let prompt = record.value("prompt"), let completion = record.value("completion") else {
            let present = record.object.entries.map { "\"\($0.key)\"" }.joined(separator: ", ")
            throw record.error(
                "not an SFT row (fields: \(present.isEmpty ? "none" : present))", hint: forms)
        }
        return try promptCompletion(
            prompt, completion, field: "completion", tools: tools, format: format, tokenizer: tokenizer, record)
    }

    /// A prompt and one completion (the `field` of the row: completion, chosen or rejected),
    /// both strings or both message lists.
    static func promptCompletion(
        _ prompt: JSONValue, _ completion: JSONValue, field: String, tools: [JSONValue]?, format: SFTFormat,
        tokenizer: ByteLevelBPETokenizer, _ record: JSONLRecord
    ) throws -> RenderedExample {
        switch (prompt, completion) {
        case (.string(let p), .string(let c)):
            let eos = format.eosToken ?? format.template.endOfTurn
            guard let eosID = tokenizer.id(for: eos) else {
                throw DataError.badConfig(
                    reason: "the tokenizer has no end-of-sequence token \(eos)",
                    hint: "set eos_token to a token the tokenizer has")
            }
            let promptIDs = tokenizer.encode(p, addSpecialTokens: true)
            let completionIDs = tokenizer.encode(c, addSpecialTokens: false) + [eosID]
            return RenderedExample(
                ids: promptIDs + completionIDs,
                trained: [Bool](repeating: false, count: promptIDs.count)
                    + [Bool](repeating: true, count: completionIDs.count))
        case (.array, .array):
            let p = try messages(prompt, field: "prompt", record)
            let c = try messages(completion, field: field, record)
            let trained = Set(c.indices.filter { c[$0].role == "assistant" }.map { $0 + p.count })
            guard !trained.isEmpty else {
                throw record.error(
                    "\"\(field)\" has no assistant message, so nothing to train on", at: field,
                    hint: "write it as [{\"role\": \"assistant\", \"content\": \"...\"}]")
            }
            return try chat(p + c, tools: tools, trained: trained, format: format, tokenizer: tokenizer)
        default:
            throw record.error(
                "\"prompt\" is \(prompt.typeName) and \"\(field)\" is \(completion.typeName)", at: field,
                hint: "use two strings (standard) or two message lists (conversational)")
        }
    }

    private static func chat(
        _ messages: [ChatMessage], tools: [JSONValue]?, trained: Set<Int>?, format: SFTFormat,
        tokenizer: ByteLevelBPETokenizer
    ) throws -> RenderedExample {
        try format.template.check(tokenizer)
        let pieces = format.template.render(messages, tools: tools, trainedMessages: trained, defaultSystem: format.defaultSystem)
        return ChatPiece.encode(pieces, tokenizer: tokenizer)
    }

    /// A message list at `field`: objects with string "role" (system, user, assistant, tool)
    /// and string "content".
    static func messages(_ value: JSONValue, field: String, _ record: JSONLRecord) throws -> [ChatMessage] {
        guard case .array(let items) = value else {
            throw record.error(
                "\"\(field)\" is \(value.typeName), not a list of messages", at: field,
                hint: "write [{\"role\": \"user\", \"content\": \"...\"}, ...]")
        }
        return try items.enumerated().map { i, item in
            let path = "\(field)[\(i)]"
            guard case .object(let o) = item else {
                throw record.error(
                    "\(path) is \(item.typeName), not a message object", at: field,
                    hint: "each message is {\"role\": \"...\", \"content\": \"...\"}")
            }
            if o["tool_calls"] != nil {
                throw record.error(
                    "\(path).tool_calls is not supported yet", at: field,
                    hint: "write the call into the assistant's content")
            }
            guard case .string(let role)? = o["role"] else {
                throw record.error(
                    "\(path).role is \(o["role"]?.typeName ?? "missing"), not a string", at: field,
                    hint: "roles are \(ChatMessage.roles.joined(separator: ", "))")
            }
            guard ChatMessage.roles.contains(role) else {
                throw record.error(
                    "\(path).role \"\(role)\" is not a chat role", at: field,
                    hint: "roles are \(ChatMessage.roles.joined(separator: ", "))")
            }
            guard case .string(let content)? = o["content"] else {
                throw record.error(
                    "\(path).content is \(o["content"]?.typeName ?? "missing"), not a string", at: field,
                    hint: "write the message text as a JSON string")
            }
            return ChatMessage(role: role, content: content)
        }
    }

    static func tools(_ record: JSONLRecord) throws -> [JSONValue]? {
        guard let value = record.value("tools") else { return nil }
        switch value {
        case .null: return nil
        case .array(let items): return items
        default:
            throw record.error(
                "\"tools\" is \(value.typeName), not a list", at: "tools",
                hint: "write the tools as a JSON list of function schemas")
        }
    }
}

// MARK: - Layout

/// Where examples go in fixed-length rows.
package enum SFTLayout: String, Codable, Sendable, CaseIterable {
    /// Consecutive examples share a row (next-fit, in order) until the next one does not fit;
    /// segment ids keep attention inside each example.
    case packed
    /// One example per row, the rest padding.
    case padded
}

/// Examples laid out as `rows` rows of `seqLen` positions for next-token training. An example
/// of n ids gives n-1 positions: inputs ids[0..<n-1], targets ids[1..<n] where trained and
/// -100 elsewhere. Examples longer than `seqLen` positions keep their first `seqLen` (as TRL
/// truncates to max_length) and are counted in `truncated`.
package struct SFTSequences: Sendable, Equatable {
    package var seqLen: Int
    package var rows: Int
    /// [rows, seqLen]; padding positions hold `padID`.
    package var inputs: [Int32]
    /// [rows, seqLen]; -100 on untrained and padding positions.
    package var targets: [Int32]
    /// [rows, seqLen]; examples in a row are numbered 1, 2, ...; padding is 0. Core's attention
    /// lets a position see only keys with its own id, so packed examples never see each other.
    package var segments: [Int32]
    /// [rows, seqLen]; restarting at 0 for each example (padding continues its own count). With
    /// rotary embeddings and segment-confined attention the scores depend only on position
    /// differences, so these matter for exactness with Hugging Face's padding-free packing, not
    /// for correctness.
    package var positions: [Int32]
    /// Examples cut to `seqLen` positions.
    package var truncated: Int

    package static let ignoreIndex: Int32 = -100

    package init(_ examples: [RenderedExample], seqLen: Int, layout: SFTLayout, padID: Int32 = 0) {
        precondition(seqLen >= 1, "seqLen must be >= 1, got \(seqLen)")
        self.seqLen = seqLen
        rows = 0
        inputs = []
        targets = []
        segments = []
        positions = []
        truncated = 0
        var used = seqLen  // positions filled in the current row; full forces a new row
        var segment: Int32 = 0
        for e in examples where e.ids.count >= 2 {
            var n = e.ids.count - 1
            if n > seqLen {
                n = seqLen
                truncated += 1
            }
            if layout == .padded || used + n > seqLen {
                padRow(from: used, padID: padID)
                rows += 1
                used = 0
                segment = 0
            }
            segment += 1
            for i in 0..<n {
                inputs.append(e.ids[i])
                targets.append(e.trained[i + 1] ? e.ids[i + 1] : Self.ignoreIndex)
                segments.append(segment)
                positions.append(Int32(i))
            }
            used += n
        }
        if rows > 0 { padRow(from: used, padID: padID) }
    }

    private mutating func padRow(from used: Int, padID: Int32) {
        guard rows > 0 else { return }
        for i in used..<seqLen {
            inputs.append(padID)
            targets.append(Self.ignoreIndex)
            segments.append(0)
            positions.append(Int32(i - used))
        }
    }

    /// Rows `range` as flat [rows, seqLen] arrays (inputs, targets, segments, positions).
    package func slice(_ range: Range<Int>) -> (
        inputs: [Int32], targets: [Int32], segments: [Int32], positions: [Int32]
    ) {
        let r = (range.lowerBound * seqLen)..<(range.upperBound * seqLen)
        return (Array(inputs[r]), Array(targets[r]), Array(segments[r]), Array(positions[r]))
    }
}
