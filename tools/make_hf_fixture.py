"""Make the Hugging Face interchange fixtures for Tests/FormatsTests.

Writes into Tests/FormatsTests/Fixtures/:
  tiny_llama/          a tiny random LlamaForCausalLM saved by transformers (config.json,
                       model.safetensors, tokenizer.json) with tied embeddings, and
                       reference.json computed by transformers in float32, eager attention
  tiny_llama_untied/   tie_word_embeddings false (lm_head.weight saved), one layer instead
                       of two (the fixtures stay small), its own weights and reference.json
  tiny_llama3/         Llama 3's rope scaling (rope_parameters with rope_type "llama3": factor
                       8, low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings
                       64, max_position_embeddings 256) on head_dim 16, so of the 8 frequencies
                       one is unchanged, two are in the smoothed band and five are divided by 8;
                       its text and prompt run past position 64. reference.json also holds
                       transformers' inverse frequencies (rotary_emb.inv_freq) as float32 bits
  dtypes.safetensors   F32, F16 and BF16 tensors written by safetensors.torch, plus
  dtypes.json          their values as float32 bit patterns (as torch converts them), and
                       float32 inputs with the F16 bits torch rounds them to

reference.json holds: the text and its ids, the mean causal-LM loss over the ids
(transformers' shifted cross-entropy), the logits at the last position (full vocabulary),
a prompt with its ids and 32 greedy tokens (argmax at every step, no EOS stop), the
first 4 values of every tensor in model.safetensors, and the parameter count.

    /tmp/distill-ref/bin/python tools/make_hf_fixture.py [--only tiny_llama3]

Deterministic (fixed seeds). Manual check that transformers loads a directory distill
exported and computes the same logits as the original:

    /tmp/distill-ref/bin/python tools/make_hf_fixture.py --check-export DIR [--against ORIGINAL]
"""
import argparse, copy, json, os, shutil, struct, tempfile

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "Tests", "FormatsTests", "Fixtures")

# Training text for the tokenizer (written for this fixture).
CORPUS = """\
The lighthouse keeper wrote in her log every evening. Wind from the west, rain at dusk,
two boats in the harbour and one far out on the grey water. She counted the gulls on the
pier, eleven on Monday, fourteen on Tuesday, and noted that the lamp needed new oil.
The keeper's brother came on Thursdays with bread, apples and letters from the town.
He talked about the market, the price of rope and the new school by the river.
She listened, wrote it down, and in the evening read the letters twice by the lamp.

In the spring the fog came early and stayed late. Ships called to each other with long
low horns, and the keeper answered with the bell. Ring, wait, ring again; the rule was
simple and she kept it through the night. At dawn the fog lifted and the sea was calm.
A fisherman waved from his boat and she waved back from the gallery rail.

Numbers in the log: 12 boats, 3 storms, 250 litres of oil, 7 letters, 1 broken window.
Weather words: wind, rain, fog, calm, storm, squall, drizzle, sunshine, frost, thaw.
def count(items):
    total = 0
    for item in items:
        total += item
    return total
"""
TEXT = "The keeper wrote in her log: wind from the west, two boats in the harbour."
PROMPT = "In the spring the fog"
# Longer ones for tiny_llama3: past original_max_position_embeddings (64 tokens).
LONG_TEXT = " ".join(CORPUS.split("\n")[:3])
LONG_PROMPT = ("In the spring the fog came early and stayed late. Ships called to each other with long "
               "low horns, and the keeper answered with the bell.")
LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}


def train_tokenizer(vocab):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([CORPUS] * 4, trainer)
    return tok


def make_model(out, tok, tied, seed, layers, rope=None, text=TEXT, prompt=PROMPT):
    os.makedirs(out, exist_ok=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    shape = {"max_position_embeddings": 128, "rope_theta": 10000.0}
    if rope is not None:
        shape = {"max_position_embeddings": 256, "head_dim": 16, "rope_parameters": rope}
    cfg = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      rms_norm_eps=1e-5, tie_word_embeddings=tied, bos_token_id=eos, eos_token_id=eos,
                      hidden_act="silu", attention_bias=False, mlp_bias=False, **shape)
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).float().eval()
    # Spread the weights so the logits are far from uniform and greedy is not degenerate.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.2)
            else:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    model.save_pretrained(out, safe_serialization=True)
    for extra in ("generation_config.json",):  # keep the fixture to what the tests read
        path = os.path.join(out, extra)
        if os.path.exists(path):
            os.remove(path)

    ids = tok.encode(text).ids
    prompt_ids = tok.encode(prompt).ids
    with torch.no_grad():
        x = torch.tensor([ids])
        result = model(input_ids=x, labels=x)
        # Greedy by hand: full forward each step, argmax of the last position.
        seq = list(prompt_ids)
        margin = float("inf")  # smallest gap between the best and second-best logit
        for _ in range(32):
            logits = model(input_ids=torch.tensor([seq])).logits[0, -1]
            top = torch.topk(logits, 2).values
            margin = min(margin, (top[0] - top[1]).item())
            seq.append(int(torch.argmax(logits)))
        greedy = seq[len(prompt_ids):]
        # Cross-check with generate (KV cache path), EOS stopping off.
        gen_cfg = copy.deepcopy(model.generation_config)
        gen_cfg.eos_token_id = None
        gen_cfg.pad_token_id = eos
        gen_cfg.do_sample = False
        gen_cfg.max_new_tokens = 32
        gen = model.generate(torch.tensor([prompt_ids]), generation_config=gen_cfg)
        assert gen[0, len(prompt_ids):].tolist() == greedy, "generate() disagrees with the greedy loop"
    # A near-tie would make the greedy tokens depend on summation order.
    assert margin > 1e-2, f"greedy margin {margin} too small: pick another seed"
    assert len(set(greedy)) >= 12, f"greedy output is degenerate: {greedy}"

    from safetensors import safe_open
    first4 = {}
    with safe_open(os.path.join(out, "model.safetensors"), "pt") as f:
        for name in f.keys():
            first4[name] = f.get_tensor(name).flatten()[:4].tolist()
    ref = {
        "text": text, "ids": ids, "loss": result.loss.item(),
        "last_logits": result.logits[0, -1].tolist(),
        "prompt": prompt, "prompt_ids": prompt_ids, "greedy_ids": greedy, "greedy_min_margin": margin,
        "first4": first4,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if rope is not None:
        inv_freq = model.model.rotary_emb.inv_freq
        assert inv_freq.dtype == torch.float32
        ref["inv_freq_bits"] = bits32(inv_freq)
        # The scaling must matter here: the same weights with unscaled rope move the logits.
        plain = copy.deepcopy(model)
        default = 1.0 / (10000.0 ** (torch.arange(0, 16, 2, dtype=torch.float) / 16))
        plain.model.rotary_emb.inv_freq.copy_(default)
        with torch.no_grad():
            moved = (plain(input_ids=torch.tensor([ids])).logits[0, -1] - result.logits[0, -1]).abs().max().item()
        assert moved > 0.05, f"unscaled rope moves the last logits by only {moved}"
        ref["unscaled_last_logits_max_change"] = moved
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(ref, f)
    print(json.dumps({"out": os.path.relpath(out), "params": ref["parameters"], "loss": ref["loss"],
                      "tokens": len(ids), "prompt_tokens": len(prompt_ids),
                      "margin": margin, "distinct": len(set(greedy)), "greedy": greedy[:10],
                      "unscaled_change": ref.get("unscaled_last_logits_max_change")}))


def bits32(t):
    return [struct.unpack("<I", struct.pack("<f", v))[0] for v in t.float().tolist()]


def make_dtypes(out):
    # Specials (signed zero, subnormals, the largest finite halves, infinities) and values
    # that exercise rounding; NaN is checked in the Swift tests by bit pattern instead.
    values = torch.tensor([0.0, -0.0, 1.0, -2.5, 0.1, 3.14159, 65504.0, -65504.0, 6.1035e-05,
                           5.96e-08, 1e-8, 1e20, float("inf"), float("-inf"), 1.0009765625,
                           1.00048828125, 1.00146484375, 0.333333], dtype=torch.float32)
    g = torch.Generator().manual_seed(3)
    random = torch.randn(2, 3, 4, generator=g) * 10
    tensors = {
        "f32": random.clone(),
        "f16": random.to(torch.float16),
        "bf16": random.to(torch.bfloat16),
        "special_f16": values.to(torch.float16),
        "special_bf16": values.to(torch.bfloat16),
        "scalar_f32": torch.tensor(7.25),
        "empty_f16": torch.zeros(0, 3, dtype=torch.float16),
    }
    save_file(tensors, os.path.join(out, "dtypes.safetensors"), metadata={"format": "pt", "note": "dtype fixture"})
    ref = {name: {"shape": list(t.shape), "bits": bits32(t.flatten())} for name, t in tensors.items()}
    # What torch rounds float32 inputs to in F16 (round to nearest even), for the writer.
    rounding = torch.cat([values, random.flatten(), torch.tensor([65519.0, 65520.0, 2.9802322e-08, 2.98023259e-08])])
    ref["f16_rounding"] = {"inputs": bits32(rounding),
                           "f16_bits": [int(v) & 0xFFFF for v in rounding.to(torch.float16).view(torch.int16).tolist()]}
    with open(os.path.join(out, "dtypes.json"), "w") as f:
        json.dump(ref, f)


def check_export(directory, against):
    """Loads DIR with transformers and compares its logits with ORIGINAL's."""
    from transformers.utils import logging
    logging.set_verbosity_info()
    model, info = LlamaForCausalLM.from_pretrained(directory, output_loading_info=True, attn_implementation="eager")
    print("loading info:", info)
    problems = {k: v for k, v in info.items() if v}
    original = LlamaForCausalLM.from_pretrained(against, attn_implementation="eager")
    tok = Tokenizer.from_file(os.path.join(against, "tokenizer.json"))
    x = torch.tensor([tok.encode(TEXT).ids])
    with torch.no_grad():
        a = model(input_ids=x).logits
        b = original(input_ids=x).logits
    diff = (a - b).abs().max().item()
    same_params = all(torch.equal(p, original.state_dict()[n]) for n, p in model.state_dict().items())
    print(json.dumps({"dir": directory, "loading_problems": problems, "max_abs_logit_diff": diff,
                      "identical_state_dict": same_params, "config_class": type(model.config).__name__,
                      "tie_word_embeddings": model.config.tie_word_embeddings}))
    if problems or diff != 0.0 or not same_params:
        raise SystemExit("export check FAILED")
    print("export check OK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check-export", metavar="DIR")
    ap.add_argument("--against", default=os.path.join(OUT, "tiny_llama"))
    ap.add_argument("--only", choices=["tiny_llama", "tiny_llama_untied", "tiny_llama3", "dtypes"])
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.check_export:
        check_export(a.check_export, a.against)
        return
    tok = train_tokenizer(300)
    models = {
        "tiny_llama": dict(tied=True, seed=7, layers=2),
        "tiny_llama_untied": dict(tied=False, seed=5, layers=1),
        "tiny_llama3": dict(tied=True, seed=11, layers=2, rope=LLAMA3_ROPE, text=LONG_TEXT, prompt=LONG_PROMPT),
    }
    for name, settings in models.items():
        if a.only in (None, name):
            shutil.rmtree(os.path.join(OUT, name), ignore_errors=True)
            make_model(os.path.join(OUT, name), tok, **settings)
    if a.only in (None, "dtypes"):
        make_dtypes(OUT)


if __name__ == "__main__":
    main()
