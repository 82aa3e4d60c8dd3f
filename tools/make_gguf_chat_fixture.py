"""Make the tiny chat-model GGUF fixture for Tests/FormatsTests, and what transformers
computes when it reads that file itself.

Writes into Tests/FormatsTests/Fixtures/gguf/:
  tiny_chat.gguf   a tiny random Llama (2 layers, hidden 64, 4 heads, 2 KV heads, head
                   dim 16, MLP 128, tied embeddings) written with gguf-py the way llama.cpp's
                   convert_hf_to_gguf.py writes a Llama and its quantizer stores it: llama.*
                   hyperparameters; Q/K rows permuted into llama.cpp's neighbour-pair rotary
                   layout (the converter's reshape/swapaxes formula); 2-D weights Q8_0
                   (token_embd included) except blk.1.ffn_down, F16; norms F32. Its tokenizer
                   is laid out as SmolLM2-135M-Instruct's GGUF lays out its own:
                   tokenizer.ggml.model "gpt2", pre "smollm", tokens / token_type / merges,
                   <|endoftext|> <|im_start|> <|im_end|> at ids 0, 1, 2 as CONTROL tokens,
                   bos 1, eos 2, unknown 0, padding 2, add_bos_token false,
                   add_space_prefix false, and tokenizer.chat_template set to SmolLM2's exact
                   template text. On top: one USER_DEFINED token (<think>) and UNUSED "[PAD<i>]"
                   tokens that round the vocabulary up, as the converter pads.
                   The BPE vocabulary is trained here with Hugging Face `tokenizers` using
                   SmolLM2's own pipeline (Digits(individual_digits) then ByteLevel with the
                   GPT-2 regex), on Tests/TextDataTests/Fixtures/corpus.txt plus chat lines.
  tiny_chat.json   transformers' own reading of tiny_chat.gguf
                   (`from_pretrained(dir, gguf_file=...)`, float32, eager attention):
                   config facts; token ids and decodes of tricky texts (`texts`); a chat
                   rendered with `apply_chat_template(add_generation_prompt=True)` and its ids;
                   the logits at the last position of `logits_ids` (`last_logits`), 16 greedy
                   tokens after them (`generate(do_sample=False)`, no EOS stop: `greedy_ids`),
                   and the mean causal-LM loss of `loss_ids` (`loss`).

Two tokenizations per text. `smollm_ids`: the pipeline SmolLM2's tokenizer.json declares
(Sequence[Digits(individual_digits), ByteLevel]) run by `tokenizers` over the same vocabulary,
which is also what llama.cpp applies for pre "smollm" (a \p{N} split, then the GPT-2 regex).
`transformers_ids`: transformers' own GGUF tokenizer, which does not rebuild the Digits step
for "smollm" (transformers/integrations/gguf/gguf_tokenizer_mapping.py maps no split regex
for that name and keeps GPT-2's ByteLevel). The vocabulary is trained with digits split, so
no merge joins two ASCII digits or a digit to anything else and the two agree, except where
a space precedes a numeral outside ASCII (" Ⅻ"): the script checks that exactly one text, the
one written to show it, differs. The chat, `logits_ids` and `loss_ids` are the same under
both. The greedy tokens equal an argmax loop over full forward passes, and the smallest
top-1/top-2 logit gap on the way is recorded (`greedy_min_margin`) so a port knows how
much slack it has.

    /tmp/distill-ref/bin/python tools/make_gguf_chat_fixture.py

Deterministic (fixed seeds). The layout facts (key names, token types, the permutation,
Q8_0 blocks) are llama.cpp's; the code here is written for distill.
"""
import json, os, struct

import gguf
import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
OUT = os.path.join(ROOT, "Tests", "FormatsTests", "Fixtures", "gguf")
CORPUS = os.path.join(ROOT, "Tests", "TextDataTests", "Fixtures", "corpus.txt")
NAME = "tiny_chat.gguf"

# SmolLM2-135M-Instruct's tokenizer.chat_template, exactly as its GGUF stores it.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
USER_DEFINED = "<think>"
TRAINED_VOCAB = 400  # byte alphabet + specials + merges
PADDED_VOCAB = 408  # [PAD<i>] fill ids after <think> up to here

CHAT_LINES = """<|im_start|>system
You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
<|im_start|>user
What is the capital of France? Answer in one word.<|im_end|>
<|im_start|>assistant
Paris. It has been the capital since 987.<|im_end|>
<|im_start|>user
Write 12345 backwards, then add 1.<|im_end|>
<|im_start|>assistant
54321, and 54321 + 1 = 54322.<|im_end|>
"""

TEXTS = [
    "", " ", "Hello", " Hello", "Hello, world! How are you?", "   leading spaces", "trailing   ",
    "12345", "Call 555-0199 at 10:30, or 2024-05-17.", "x²+y³ = ⅫⅣ ٣٤٥", "3.14159 and 1,000,000",
    "don't you'll I'M we've", "tabs\tand\nnewlines\r\nCRLF", "\n\nfoo\n",
    "café naïve Straße Ærøskøbing", "日本語のテキスト 한국어", "emoji 😀👍🏽 🇫🇷",
    "Punctuation: (a && b) { print(\"hi\"); } // ok?!", "<|endoftext|>", "text<|endoftext|>more",
    "<|im_start|>user\nHi<|im_end|>\n", "<|im_start|><|im_end|>", "<think>hmm</think>", "<|im_start",
    "[PAD401] stays text",
]
CHAT = [
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "It's 4."},
    {"role": "user", "content": "And 12345 * 3?"},
]
LOGITS_TEXT = "<|im_start|>user\nWrite 12345 backwards.<|im_end|>\n<|im_start|>assistant\n"
LOSS_TEXT = "First Citizen:\nBefore we proceed any further, hear me speak. 2024-05-17"


def smollm_pipeline(tok):
    # SmolLM2's tokenizer.json: Sequence[Digits(individual_digits=true), ByteLevel(
    # add_prefix_space=false, trim_offsets=true, use_regex=true)], ByteLevel decoder.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True),
         pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    return tok


def train_tokenizer():
    tok = smollm_pipeline(Tokenizer(models.BPE()))
    trainer = trainers.BpeTrainer(vocab_size=TRAINED_VOCAB, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    text = open(CORPUS, encoding="utf-8").read()
    tok.train_from_iterator([text, CHAT_LINES] * 3, trainer)
    assert tok.get_vocab_size() == TRAINED_VOCAB, tok.get_vocab_size()
    return tok


def gguf_vocabulary(tok):
    """tokens, token types and merges as convert_hf_to_gguf.py's gpt2 path lays them out."""
    spec = json.loads(tok.to_str())
    by_id = {i: t for t, i in spec["model"]["vocab"].items()}
    assert [by_id[i] for i in range(len(SPECIALS))] == SPECIALS
    tokens, types = [], []
    for i in range(TRAINED_VOCAB):
        tokens.append(by_id[i])
        types.append(gguf.TokenType.CONTROL if by_id[i] in SPECIALS else gguf.TokenType.NORMAL)
    tokens.append(USER_DEFINED)
    types.append(gguf.TokenType.USER_DEFINED)
    for i in range(len(tokens), PADDED_VOCAB):
        tokens.append(f"[PAD{i}]")
        types.append(gguf.TokenType.UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    # No merge joins a digit to anything: the Digits step isolates every digit.
    for m in merges:
        left, right = m.split(" ")
        assert not (any(c.isdigit() for c in left + right) and len(left + right) > 1 and
                    all(ord(c) < 128 for c in left + right)), m
    return tokens, types, merges


def permute(w, n_head):
    # The converter's formula: per head, [2, D/2] row blocks become [D/2, 2].
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path, tokens, types, merges, rng):
    hidden, inter, layers, heads, kv, head_dim = 64, 128, 2, 4, 2, 16
    vocab = len(tokens)
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_type("model")
    w.add_name("tiny_chat")
    w.add_block_count(layers)
    w.add_context_length(256)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(inter)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_rope_freq_base(100000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_vocab_size(vocab)
    w.add_rope_dimension_count(head_dim)
    w.add_add_space_prefix(False)
    w.add_add_bos_token(False)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_chat_template(CHAT_TEMPLATE)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    def normal(*shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    types_written = {}

    def add(name, t, qtype):
        types_written[name] = qtype.name
        if qtype == gguf.GGMLQuantizationType.Q8_0:
            w.add_tensor(name, gguf.quants.quantize(t, qtype), raw_dtype=qtype)
        elif qtype == gguf.GGMLQuantizationType.F16:
            w.add_tensor(name, t.astype(np.float16))
        else:
            w.add_tensor(name, t.astype(np.float32))

    Q8, F16, F32 = gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32
    # Larger than the usual 0.02 so the logits have clear top-1 margins for greedy decoding.
    add("token_embd.weight", normal(vocab, hidden, std=0.5), Q8)
    for i in range(layers):
        add(f"blk.{i}.attn_norm.weight", 1 + normal(hidden, std=0.1), F32)
        add(f"blk.{i}.attn_q.weight", permute(normal(heads * head_dim, hidden, std=0.25), heads), Q8)
        add(f"blk.{i}.attn_k.weight", permute(normal(kv * head_dim, hidden, std=0.25), kv), Q8)
        add(f"blk.{i}.attn_v.weight", normal(kv * head_dim, hidden, std=0.2), Q8)
        add(f"blk.{i}.attn_output.weight", normal(hidden, heads * head_dim, std=0.2), Q8)
        add(f"blk.{i}.ffn_norm.weight", 1 + normal(hidden, std=0.1), F32)
        add(f"blk.{i}.ffn_gate.weight", normal(inter, hidden, std=0.2), Q8)
        add(f"blk.{i}.ffn_up.weight", normal(inter, hidden, std=0.2), Q8)
        add(f"blk.{i}.ffn_down.weight", normal(hidden, inter, std=0.15), F16 if i == 1 else Q8)
    add("output_norm.weight", 1 + normal(hidden, std=0.1), F32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return types_written


def f32(x):
    return struct.unpack("<f", struct.pack("<f", float(x)))[0]


def main():
    torch.manual_seed(0)
    rng = np.random.default_rng(20261201)
    tok = train_tokenizer()
    tokens, types, merges = gguf_vocabulary(tok)
    path = os.path.join(OUT, NAME)
    tensor_types = write_gguf(path, tokens, types, merges, rng)

    # The reference: transformers reading the GGUF itself.
    hf_tok = AutoTokenizer.from_pretrained(OUT, gguf_file=NAME)
    model = AutoModelForCausalLM.from_pretrained(OUT, gguf_file=NAME, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()

    # The pipeline SmolLM2's tokenizer.json declares, over the same vocabulary.
    pipeline = smollm_pipeline(Tokenizer.from_str(tok.to_str()))
    pipeline.add_tokens([USER_DEFINED])
    cases, differing = [], []
    for text in TEXTS:
        ids = hf_tok(text, add_special_tokens=True)["input_ids"]
        assert ids == hf_tok(text, add_special_tokens=False)["input_ids"], "add_bos_token is false"
        reference = pipeline.encode(text).ids
        if ids != reference:
            differing.append(text)
        cases.append({"text": text, "smollm_ids": reference, "transformers_ids": ids,
                      "decoded": hf_tok.decode(ids)})
    # Only numerals outside ASCII after a space may differ: the Digits step cuts " Ⅻ" into " "
    # and "Ⅻ", GPT-2's regex alone keeps " Ⅻ" whole and BPE may merge the space into it.
    assert differing == ["x²+y³ = ⅫⅣ ٣٤٥"], differing

    rendered = hf_tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    chat_ids = hf_tok.apply_chat_template(CHAT, tokenize=True, add_generation_prompt=True)
    if not isinstance(chat_ids, list):
        chat_ids = chat_ids["input_ids"]
    assert chat_ids == hf_tok(rendered, add_special_tokens=False)["input_ids"] == pipeline.encode(rendered).ids

    logits_ids = hf_tok(LOGITS_TEXT, add_special_tokens=False)["input_ids"]
    loss_ids = hf_tok(LOSS_TEXT, add_special_tokens=False)["input_ids"]
    assert logits_ids == pipeline.encode(LOGITS_TEXT).ids and loss_ids == pipeline.encode(LOSS_TEXT).ids
    with torch.no_grad():
        x = torch.tensor([logits_ids])
        last = model(x).logits[0, -1].float()
        loss = model(torch.tensor([loss_ids]), labels=torch.tensor([loss_ids])).loss.item()
        # No EOS stop: the model's own generation config names eos 2, cleared here.
        model.generation_config.eos_token_id = None
        config = GenerationConfig(do_sample=False, max_new_tokens=16, eos_token_id=None, pad_token_id=0)
        generated = model.generate(x, generation_config=config)[0, len(logits_ids):].tolist()
        # The same 16 tokens from an argmax loop over full forward passes; the smallest gap.
        seq, margin = list(logits_ids), float("inf")
        for _ in range(16):
            step = model(torch.tensor([seq])).logits[0, -1]
            top = torch.topk(step, 2).values
            margin = min(margin, (top[0] - top[1]).item())
            seq.append(int(step.argmax()))
    assert len(generated) == 16 and generated == seq[len(logits_ids):], (generated, seq)

    c = model.config
    result = {
        "gguf": NAME,
        "transformers": __import__("transformers").__version__,
        "config": {
            "vocab_size": c.vocab_size, "hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size,
            "num_hidden_layers": c.num_hidden_layers, "num_attention_heads": c.num_attention_heads,
            "num_key_value_heads": c.num_key_value_heads, "head_dim": c.head_dim,
            "max_position_embeddings": c.max_position_embeddings, "rms_norm_eps": f32(c.rms_norm_eps),
            "rope_theta": c.rope_parameters["rope_theta"], "tie_word_embeddings": c.tie_word_embeddings,
            "bos_token_id": c.bos_token_id, "eos_token_id": c.eos_token_id, "pad_token_id": c.pad_token_id,
        },
        "tensor_types": tensor_types,
        "tokenizer": {
            "model": "gpt2", "pre": "smollm", "bos_token_id": 1, "eos_token_id": 2, "unknown_token_id": 0,
            "padding_token_id": 2, "add_bos_token": False, "chat_template": CHAT_TEMPLATE,
            "control": SPECIALS, "user_defined": [USER_DEFINED],
            "unused": [t for t, k in zip(tokens, types) if k == gguf.TokenType.UNUSED],
        },
        "texts": cases,
        "chat": {"messages": CHAT, "add_generation_prompt": True, "text": rendered, "ids": chat_ids},
        "logits_ids": logits_ids,
        "last_logits": [f32(v) for v in last.tolist()],
        "greedy_ids": generated,
        "greedy_min_margin": margin,
        "loss_ids": loss_ids,
        "loss": loss,
    }
    with open(os.path.join(OUT, "tiny_chat.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
        f.write("\n")
    for name in [NAME, "tiny_chat.json"]:
        print(name, os.path.getsize(os.path.join(OUT, name)))
    print("greedy", generated, "min margin", margin, "loss", loss)


if __name__ == "__main__":
    main()
