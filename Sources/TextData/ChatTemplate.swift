// Chat templates: a conversation rendered to text pieces marked trained or not, and to token
// ids with a per-token loss mask (assistant turns only, their end-of-turn token included).
//
// Templates are written in Swift rather than evaluated from a tokenizer's Jinja
// `chat_template`; each case documents the exact text it produces, which follows the
// model family's published template:
//
// chatml (default; Qwen2 / Qwen2.5, OpenAI ChatML):
//     <|im_start|>{role}\n{content}<|im_end|>\n        for every message
// llama3 (Meta Llama 3 / 3.1 / 3.2):
//     <|begin_of_text|>                                  once
//     <|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>   for every message
//
// The trained part of an assistant message is `{content}` followed by the end-of-turn token
// (<|im_end|> or <|eot_id|>): exactly what the model generates after the generation prompt
// (`<|im_start|>assistant\n`, `<|start_header_id|>assistant<|end_header_id|>\n\n`) up to its
// stop token. For llama3 this is the span TRL's llama3_training.jinja marks with
// `{% generation %}` for `assistant_only_loss`; TRL's qwen2_5_training.jinja also marks the
// "\n" before the content and the "\n" after <|im_end|>, which distill leaves untrained. The
// rendered text equals those templates' (Tests/TextDataTests/SFTDataTests.swift checks both
// against transformers' renderer). Content is used as given (Meta's template trims it).
//
// Tools (the `tools` field of a TRL row): each tool is written as one line of JSON (Python's
// `json.dumps` layout: ", " and ": " separators, keys in file order) inside
//     \n\n# Tools\n\n<tools>\n{tool}\n{tool}\n</tools>
// appended to the system message, which is created (with empty content) when the conversation
// has none. This is distill's convention, modelled on Qwen2.5's layout without its prose.
//
// Default system message (ChatStyle): some models' templates open every conversation that
// has no system message with one of their own (SmolLM2: "You are a helpful AI assistant named
// SmolLM, trained by Hugging Face"; Qwen2: "You are a helpful assistant"). `render` inserts
// it, untrained, when given one.
//
// Recognising a model's Jinja template (ChatStyle.recognize): distill does not evaluate Jinja.
// A template is recognised when, after normalisation (whitespace outside string literals
// dropped, `{%-`/`-%}` trim markers and quote styles unified, the escape \n read as a newline),
// it equals one of the templates below whose output distill renders exactly: ChatML with or
// without a default system message (SmolLM2, Qwen2, HF's generic ChatML), and Meta Llama 3
// Instruct. Anything else is reported as unrecognised, and a family can be named instead.
//
// Tokenisation: runs of text with the same trained flag are encoded separately and
// concatenated, as TRL tokenises a prompt and its completion separately. The ids equal
// tokenising the whole text at once whenever each boundary is a pre-tokenizer boundary
// (boundaries next to special tokens always are).

import Foundation
import JSON

/// One message of a conversation. Roles: system, user, assistant, tool.
package struct ChatMessage: Sendable, Equatable {
    package var role: String
    package var content: String

    package init(role: String, content: String) {
        self.role = role
        self.content = content
    }

    package static let roles = ["system", "user", "assistant", "tool"]
}

/// A run of rendered text and whether its tokens are trained.
package struct ChatPiece: Sendable, Equatable {
    package var text: String
    package var trained: Bool

    package init(_ text: String, trained: Bool) {
        self.text = text
        self.trained = trained
    }
}

/// Token ids with a per-token loss mask: `trained[i]` says whether `ids[i]` is a target.
package struct RenderedExample: Sendable, Equatable {
    package var ids: [Int32]
    package var trained: [Bool]

    package init(ids: [Int32], trained: [Bool]) {
        precondition(ids.count == trained.count, "\(ids.count) ids, \(trained.count) mask entries")
        self.ids = ids
        self.trained = trained
    }

    package var trainedCount: Int { trained.reduce(0) { $0 + ($1 ? 1 : 0) } }
}

package enum ChatTemplate: String, Codable, Sendable, CaseIterable {
    case chatml
    case llama3

    /// The special tokens the template writes; each must be a (special) token of the tokenizer.
    package var specialTokens: [String] {
        switch self {
        case .chatml: return ["<|im_start|>", "<|im_end|>"]
        case .llama3: return ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
        }
    }

    /// The token that ends a turn (trained after assistant content).
    package var endOfTurn: String {
        switch self {
        case .chatml: return "<|im_end|>"
        case .llama3: return "<|eot_id|>"
        }
    }

    /// The text that opens the assistant's turn (the generation prompt of the family's template).
    package var generationPrompt: String {
        switch self {
        case .chatml: return "<|im_start|>assistant\n"
        case .llama3: return "<|start_header_id|>assistant<|end_header_id|>\n\n"
        }
    }

    /// The conversation as text pieces. `trainedMessages` selects which messages are trained
    /// (default: every assistant message); `tools` go into the system message (see above);
    /// `defaultSystem` opens a conversation that has no system message.
    package func render(
        _ messages: [ChatMessage], tools: [JSONValue]? = nil, trainedMessages: Set<Int>? = nil,
        defaultSystem: String? = nil
    ) -> [ChatPiece] {
        var messages = messages
        var shift = 0  // caller's message i is messages[i + shift]
        if let defaultSystem, messages.first?.role != "system" {
            messages.insert(ChatMessage(role: "system", content: defaultSystem), at: 0)
            shift = 1
        }
        if let tools, !tools.isEmpty {
            let block =
                "\n\n# Tools\n\n<tools>\n" + tools.map { $0.compactJSON() }.joined(separator: "\n") + "\n</tools>"
            if let first = messages.first, first.role == "system" {
                messages[0].content += block
            } else {
                messages.insert(ChatMessage(role: "system", content: block), at: 0)
                shift = 1
            }
        }
        var pieces: [ChatPiece] = []
        func emit(_ text: String, _ trained: Bool) {
            if let last = pieces.last, last.trained == trained {
                pieces[pieces.count - 1].text += text
            } else if !text.isEmpty {
                pieces.append(ChatPiece(text, trained: trained))
            }
        }
        if self == .llama3 { emit("<|begin_of_text|>", false) }
        for (i, m) in messages.enumerated() {
            let trained = trainedMessages.map { $0.contains(i - shift) } ?? (m.role == "assistant")
            switch self {
            case .chatml:
                emit("<|im_start|>\(m.role)\n", false)
                emit(m.content + "<|im_end|>", trained)
                emit("\n", false)
            case .llama3:
                emit("<|start_header_id|>\(m.role)<|end_header_id|>\n\n", false)
                emit(m.content + "<|eot_id|>", trained)
            }
        }
        return pieces
    }

    /// Throws when the tokenizer lacks a token the template writes (it would be split into
    /// ordinary BPE pieces and the model would never see one end-of-turn id).
    package func check(_ tokenizer: ByteLevelBPETokenizer) throws {
        let missing = specialTokens.filter {
            tokenizer.id(for: $0) == nil || !tokenizer.isSpecial(tokenizer.id(for: $0)!)
        }
        guard missing.isEmpty else {
            let other = ChatTemplate.allCases.filter { $0 != self }.map(\.rawValue).joined(separator: ", ")
            throw DataError.badConfig(
                reason:
                    "the tokenizer has no special token \(missing.joined(separator: ", ")) for the \(rawValue) chat template",
                hint:
                    "choose a template whose tokens the tokenizer has (\(other)), or add them to the tokenizer's added_tokens"
            )
        }
    }
}

/// How a model's conversations are written: the template family and the system message the
/// model's own template inserts when a conversation has none.
package struct ChatStyle: Sendable, Equatable, Hashable {
    package var template: ChatTemplate
    package var defaultSystem: String?

    package init(template: ChatTemplate, defaultSystem: String? = nil) {
        self.template = template
        self.defaultSystem = defaultSystem
    }

    /// The style for a setting that may name a family: the named family (keeping `model`'s
    /// default system message when it is the same family), else `model`'s own style.
    package static func resolved(_ named: ChatTemplate?, model: ChatStyle?) -> ChatStyle? {
        guard let named else { return model }
        return ChatStyle(template: named, defaultSystem: model?.template == named ? model?.defaultSystem : nil)
    }

    /// As `ChatTemplate.render` with this style's default system message.
    package func render(_ messages: [ChatMessage], tools: [JSONValue]? = nil, trainedMessages: Set<Int>? = nil)
        -> [ChatPiece]
    {
        template.render(messages, tools: tools, trainedMessages: trainedMessages, defaultSystem: defaultSystem)
    }

    /// The text a model continues to answer `messages`: the rendered conversation and the
    /// generation prompt.
    package func prompt(_ messages: [ChatMessage], tools: [JSONValue]? = nil) -> String {
        render(messages, tools: tools).map(\.text).joined() + template.generationPrompt
    }

    // MARK: Checkpoint metadata

    package static let templateKey = "chat_template"
    package static let defaultSystemKey = "chat_default_system"

    /// The metadata entries that record this style in a checkpoint.
    package var metadata: [String: String] {
        var out = [Self.templateKey: template.rawValue]
        if let defaultSystem { out[Self.defaultSystemKey] = defaultSystem }
        return out
    }

    /// The style a checkpoint's metadata records, or nil when it records none.
    package init?(metadata: [String: String]) {
        guard let name = metadata[Self.templateKey], let template = ChatTemplate(rawValue: name) else { return nil }
        self.init(template: template, defaultSystem: metadata[Self.defaultSystemKey])
    }

    // MARK: Recognising a Jinja template

    /// The style whose output equals what `jinja` renders, or nil when distill does not render
    /// that template exactly (see the file header).
    package static func recognize(_ jinja: String) -> ChatStyle? {
        let text = normalizedJinja(jinja)
        for (template, pattern) in knownTemplates {
            let parts = normalizedJinja(pattern).components(separatedBy: "{SYSTEM}")
            if parts.count == 1, text == parts[0] { return ChatStyle(template: template) }
            if parts.count == 2, text.count > parts[0].count + parts[1].count, text.hasPrefix(parts[0]), text.hasSuffix(parts[1]) {
                let system = String(text.dropFirst(parts[0].count).dropLast(parts[1].count))
                guard !system.contains("'") else { continue }
                return ChatStyle(template: template, defaultSystem: system)
            }
        }
        return nil
    }

    /// The published Jinja template of this style (the one `recognize` maps to it), for files
    /// distill writes: a GGUF export carries it as tokenizer.chat_template, so llama.cpp and
    /// distill render conversations alike. Nil for a Llama 3 style with a default system
    /// message, which no published template has.
    package var jinja: String? {
        let system = defaultSystem.map { s in
            s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
        }
        for (family, pattern) in Self.knownTemplates where family == template {
            let takesSystem = pattern.contains("{SYSTEM}")
            if takesSystem, let system { return pattern.replacingOccurrences(of: "{SYSTEM}", with: system) }
            if !takesSystem && system == nil { return pattern }
        }
        return nil
    }

    /// Templates distill renders exactly, as published; {SYSTEM} stands for a default system message.
    static let knownTemplates: [(ChatTemplate, String)] = [
        // ChatML with a default system message (SmolLM2, Qwen2).
        (
            .chatml,
            "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n{SYSTEM}<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
        ),
        // ChatML (transformers' generic template).
        (
            .chatml,
            "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
        ),
        // Meta Llama 3 Instruct (its content trim is the one difference; see the file header).
        (
            .llama3,
            "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
        ),
    ]

    /// Whitespace outside string literals dropped, trim markers removed, every literal quoted
    /// with ' and the escape \n inside literals read as a newline.
    static func normalizedJinja(_ text: String) -> String {
        var out = ""
        var quote: Character? = nil
        var chars = Array(text)[...]
        while let c = chars.popFirst() {
            if let q = quote {
                if c == "\\", let next = chars.first {
                    chars.removeFirst()
                    switch next {
                    case "n": out.append("\n")
                    case "t": out.append("\t")
                    case "'", "\"", "\\": out.append(next)
                    default: out += "\\\(next)"
                    }
                } else if c == q {
                    out.append("'")
                    quote = nil
                } else {
                    out.append(c)
                }
            } else if c == "'" || c == "\"" {
                out.append("'")
                quote = c
            } else if !c.isWhitespace {
                out.append(c)
            }
        }
        for (marker, plain) in [("{%-", "{%"), ("-%}", "%}"), ("{{-", "{{"), ("-}}", "}}")] {
            out = out.replacingOccurrences(of: marker, with: plain)
        }
        return out
    }
}

extension ChatPiece {
    /// Encodes pieces to ids with the loss mask; special tokens inside the text are matched by
    /// the tokenizer's added-token table. No template prefix (BOS) is added here.
    package static func encode(_ pieces: [ChatPiece], tokenizer: ByteLevelBPETokenizer) -> RenderedExample {
        var ids: [Int32] = [], trained: [Bool] = []
        for p in pieces {
            let part = tokenizer.encode(p.text, addSpecialTokens: false)
            ids += part
            trained += [Bool](repeating: p.trained, count: part.count)
        }
        return RenderedExample(ids: ids, trained: trained)
    }
}

extension JSONValue {
    /// One line of JSON in Python `json.dumps(ensure_ascii=False)` layout: ", " between items,
    /// ": " after keys, keys in their original order.
    package func compactJSON() -> String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d): return d.isFinite ? "\(d)" : "null"
        case .string(let s): return Self.quoted(s)
        case .array(let items): return "[" + items.map { $0.compactJSON() }.joined(separator: ", ") + "]"
        case .object(let o):
            return "{" + o.entries.map { Self.quoted($0.key) + ": " + $0.value.compactJSON() }.joined(separator: ", ")
                + "}"
        }
    }

    private static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 {
                    out += String(format: "\\u%04x", u.value)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}
