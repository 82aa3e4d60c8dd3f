// Recognising models' Jinja chat templates, and the default system message a style adds.
// That the rendered text equals transformers' rendering of the same template is checked on
// the GGUF fixture (Tests/FormatsTests/GGUFImportTests.swift).

import Foundation
import Testing

@testable import TextData

@Suite struct ChatStyleTests {
    static let smolLM2 = """
        {% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system
        You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
        ' }}{% endif %}{{'<|im_start|>' + message['role'] + '
        ' + message['content'] + '<|im_end|>' + '
        '}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant
        ' }}{% endif %}
        """

    @Test func recognisesChatMLWithItsDefaultSystemMessage() {
        let style = ChatStyle.recognize(Self.smolLM2)
        #expect(style == ChatStyle(template: .chatml, defaultSystem: "You are a helpful AI assistant named SmolLM, trained by Hugging Face"))
        // The same template as tokenizer_config.json often spells it: \n escapes, double quotes,
        // trim markers and other whitespace.
        let escaped = """
            {%- for message in messages -%}
              {%- if loop.first and messages[0]["role"] != "system" -%}{{ "<|im_start|>system\\nYou are a helpful assistant<|im_end|>\\n" }}{%- endif -%}
              {{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}
            {%- endfor -%}
            {%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}
            """
        #expect(ChatStyle.recognize(escaped) == ChatStyle(template: .chatml, defaultSystem: "You are a helpful assistant"))
    }

    @Test func recognisesPlainChatMLAndLlama3() {
        let chatml = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
        #expect(ChatStyle.recognize(chatml) == ChatStyle(template: .chatml))
        let llama3 = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
        #expect(ChatStyle.recognize(llama3) == ChatStyle(template: .llama3))
    }

    /// The template a style writes into exported files is recognised as that style again (a
    /// default system message with a newline, a backslash and a quote-free text included),
    /// and for SmolLM2 it is the published text itself.
    @Test func aStylesTemplateIsRecognisedAsIt() {
        let styles = [
            ChatStyle(template: .chatml), ChatStyle(template: .chatml, defaultSystem: "Be brief.\nAnswer in C:\\ paths."),
            ChatStyle(template: .llama3),
        ]
        for style in styles { #expect(style.jinja.flatMap(ChatStyle.recognize) == style, "\(style)") }
        #expect(ChatStyle(template: .llama3, defaultSystem: "x").jinja == nil)
        let smol = ChatStyle.recognize(Self.smolLM2)!
        #expect(ChatStyle.normalizedJinja(smol.jinja!) == ChatStyle.normalizedJinja(Self.smolLM2))
    }

    /// A template that differs in what it writes is not recognised: distill would render
    /// something else than the model was trained on.
    @Test func otherTemplatesAreNotRecognised() {
        #expect(ChatStyle.recognize("") == nil)
        #expect(ChatStyle.recognize(Self.smolLM2.replacingOccurrences(of: "<|im_end|>' + '\n'", with: "<|im_end|>'")) == nil)
        #expect(ChatStyle.recognize(Self.smolLM2.replacingOccurrences(of: "add_generation_prompt", with: "add_gen")) == nil)
        // A default system message cannot reach outside its string literal.
        #expect(ChatStyle.recognize(Self.smolLM2.replacingOccurrences(of: "trained by", with: "trained' + x + 'by")) == nil)
        #expect(ChatStyle.recognize("{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}") == nil)
    }

    @Test func theDefaultSystemMessageOpensAConversationWithoutOne() {
        let style = ChatStyle(template: .chatml, defaultSystem: "Be brief.")
        let user = [ChatMessage(role: "user", content: "Hi")]
        #expect(style.prompt(user) == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
        let own = [ChatMessage(role: "system", content: "Be long.")] + user
        #expect(style.prompt(own) == "<|im_start|>system\nBe long.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
        // Trained messages keep the caller's numbering; the inserted system message is never trained.
        let pieces = style.render(user + [ChatMessage(role: "assistant", content: "Hello")])
        #expect(pieces.filter(\.trained).map(\.text) == ["Hello<|im_end|>"])
        let chosen = style.render(user + [ChatMessage(role: "assistant", content: "Hello")], trainedMessages: [0])
        #expect(chosen.filter(\.trained).map(\.text) == ["Hi<|im_end|>"])
    }

    @Test func metadataRoundTripAndResolution() {
        let style = ChatStyle(template: .chatml, defaultSystem: "S")
        #expect(ChatStyle(metadata: style.metadata) == style)
        #expect(ChatStyle(metadata: ["chat_template": "jinja"]) == nil)
        #expect(ChatStyle.resolved(nil, model: style) == style)
        #expect(ChatStyle.resolved(.chatml, model: style) == style)
        #expect(ChatStyle.resolved(.llama3, model: style) == ChatStyle(template: .llama3))
        #expect(ChatStyle.resolved(nil, model: nil) == nil)
    }
}
