"""Make the GGUF fixtures for Tests/FormatsTests, written by gguf-py (llama.cpp's own
Python package), so distill's reader and writer are checked against an independent
implementation without llama.cpp at test time.

Writes into Tests/FormatsTests/Fixtures/gguf/:
  values.gguf        every metadata value type (u8..u64, i8..i64, f32, f64, bool, string,
                     arrays of each, an array of arrays), alignment 64, and F32, F16, BF16,
                     I32 and Q8_0 tensors; values.json holds what each must read as
                     (floats as bit patterns, tensors as float32 bits in row-major order)
  tiny_llama_f16.gguf  Tests/FormatsTests/Fixtures/tiny_llama converted the way llama.cpp's
                     convert_hf_to_gguf.py converts a LlamaForCausalLM with --outtype f16:
                     llama.* hyperparameters, the gpt2 tokenizer keys, Q/K rows permuted
                     by the converter's reshape/swapaxes formula, 2-D weights F16, norms F32
  tiny_llama3_f16.gguf  the same for Tests/FormatsTests/Fixtures/tiny_llama3 (Llama 3's rope
                     scaling), with the converter's rope_freqs.weight first: one F32 divisor per
                     rotary pair, 1 / factor / 1 / ((1 - s) / factor + s) by band, computed with
                     torch in float32 as the converter computes it
  tiny_lora.safetensors / tiny_lora.gguf   a rank-2 rsLoRA adapter (alpha 8) on q, k, v,
                     o of both layers with random A and B in PEFT's names and layout, and
                     the GGUF adapter convert_lora_to_gguf.py would write for it (B rows of
                     q/k permuted, alpha folded for rsLoRA: alpha * sqrt(r))

    /tmp/distill-ref/bin/python tools/make_gguf_fixture.py

Deterministic (fixed seed). The facts used (key names, type ids, the permutation) are
llama.cpp's; the code here is written for distill.
"""
import json, math, os, struct

import gguf
import numpy as np
from safetensors.numpy import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "Tests", "FormatsTests", "Fixtures")
OUT = os.path.join(FIXTURES, "gguf")
TINY = os.path.join(FIXTURES, "tiny_llama")


def f32_bits(a):
    return np.asarray(a, dtype=np.float32).reshape(-1).view(np.uint32).tolist()


def write(writer):
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def values_fixture(rng):
    path = os.path.join(OUT, "values.gguf")
    w = gguf.GGUFWriter(path, arch="distill-test")
    w.add_custom_alignment(64)
    V = gguf.GGUFValueType
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_uint64("t.u64", 2**63 + 5)
    w.add_int64("t.i64", -(2**62) - 3)
    w.add_float32("t.f32", 0.1)
    w.add_float64("t.f64", -1e300)
    w.add_bool("t.true", True)
    w.add_bool("t.false", False)
    w.add_string("t.string", "héllo \"wörld\"\n\u2603")
    w.add_key_value("t.arr.u8", [1, 2, 255], V.ARRAY, V.UINT8)
    w.add_key_value("t.arr.i16", [-1, 2, -32768], V.ARRAY, V.INT16)
    w.add_key_value("t.arr.u32", [0, 7, 2**32 - 1], V.ARRAY, V.UINT32)
    w.add_key_value("t.arr.i32", [-5, 6], V.ARRAY, V.INT32)
    w.add_key_value("t.arr.i64", [-(2**40), 3], V.ARRAY, V.INT64)
    w.add_key_value("t.arr.f32", [1.5, -0.25, 3.0], V.ARRAY, V.FLOAT32)
    w.add_key_value("t.arr.f64", [0.1, 2.5], V.ARRAY, V.FLOAT64)
    w.add_key_value("t.arr.bool", [True, False, True], V.ARRAY, V.BOOL)
    w.add_array("t.arr.string", ["a", "", "Ġthe", "\u00e9t\u00e9"])
    w.add_array("t.arr.nested", [[1, 2], [3], [4, 5, 6]])
    f32 = rng.standard_normal((2, 3)).astype(np.float32)
    f16 = (rng.standard_normal(5) * 100).astype(np.float16)
    bf16_src = rng.standard_normal((2, 2)).astype(np.float32)
    bf16_bits = (bf16_src.view(np.uint32) >> 16).astype(np.uint16)  # truncation: exact bits known
    i32 = np.array([1, -2, 3, 2**31 - 1], dtype=np.int32)
    q8 = rng.integers(0, 256, size=(2, 34), dtype=np.uint8)  # two Q8_0 blocks (one row of 32 each)
    w.add_tensor("f32", f32)
    w.add_tensor("f16", f16)
    w.add_tensor("bf16", bf16_bits, raw_shape=[2, 2], raw_dtype=gguf.GGMLQuantizationType.BF16)
    w.add_tensor("i32", i32)
    w.add_tensor("q8_0", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    write(w)
    bf16_f32 = (bf16_bits.astype(np.uint32) << 16).view(np.float32)
    expected = {
        "alignment": 64,
        "tensors": {
            "f32": {"shape": [2, 3], "type": 0, "bits": f32_bits(f32)},
            "f16": {"shape": [5], "type": 1, "bits": f32_bits(f16.astype(np.float32))},
            "bf16": {"shape": [2, 2], "type": 30, "bits": f32_bits(bf16_f32)},
            "i32": {"shape": [4], "type": 26},
            "q8_0": {"shape": [2, 32], "type": 8, "bytes": q8.reshape(-1).tolist()},
        },
        "f32_bits": struct.unpack("<I", struct.pack("<f", 0.1))[0],
    }
    with open(os.path.join(OUT, "values.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


def permute(w, n_head):
    # The converter's formula: per head, [2, D/2] row blocks become [D/2, 2].
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


GGML_NAMES = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}


def ggml_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")
    module = ".".join(parts[3:-1])
    return f"blk.{parts[2]}.{GGML_NAMES[module]}.{parts[-1]}"


def llama3_rope_freqs(config):
    """The divisors llama.cpp's converter stores for rope_type llama3 (its LlamaModel's extra
    tensor), restated: per rotary pair, from the float32 frequencies theta^(-2i/D), in torch
    float32 arithmetic on 0-dim tensors as the converter does. The converter reads
    original_max_position_embeddings from the top level of config.json (8192 when absent);
    here it comes from rope_parameters, where transformers 5 keeps it, so the fixture's
    file describes the fixture's model."""
    import torch
    rope = config["rope_parameters"]
    dim = config["head_dim"]
    context = rope["original_max_position_embeddings"]
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    long_edge, short_edge = context / low, context / high
    divisors = []
    for f in 1.0 / (rope["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)):
        wavelength = 2 * math.pi / f
        if wavelength < short_edge:
            divisors.append(1)
        elif wavelength > long_edge:
            divisors.append(factor)
        else:
            s = (context / wavelength - low) / (high - low)
            divisors.append(1 / ((1 - s) / factor + s))
    return torch.tensor(divisors, dtype=torch.float32).numpy()


def tiny_llama_fixture(name="tiny_llama"):
    source = os.path.join(FIXTURES, name)
    config = json.load(open(os.path.join(source, "config.json")))
    tok = json.load(open(os.path.join(source, "tokenizer.json")))
    weights = load_file(os.path.join(source, "model.safetensors"))
    n_head, n_kv = config["num_attention_heads"], config["num_key_value_heads"]
    w = gguf.GGUFWriter(os.path.join(OUT, f"{name}_f16.gguf"), arch="llama")
    w.add_type("model")
    w.add_name(name)
    w.add_block_count(config["num_hidden_layers"])
    w.add_context_length(config["max_position_embeddings"])
    w.add_embedding_length(config["hidden_size"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_key_length(config["head_dim"])
    w.add_value_length(config["head_dim"])
    w.add_rope_freq_base(config["rope_parameters"]["rope_theta"])
    w.add_layer_norm_rms_eps(config["rms_norm_eps"])
    w.add_rope_dimension_count(config["head_dim"])
    w.add_vocab_size(config["vocab_size"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    # Tokenizer as the converter's gpt2 path builds it.
    vocab = {i: t for t, i in tok["model"]["vocab"].items()}
    added = {a["id"]: a for a in tok["added_tokens"]}
    tokens, types = [], []
    for i in range(config["vocab_size"]):
        if i in added:
            tokens.append(added[i]["content"])
            types.append(gguf.TokenType.CONTROL if added[i]["special"] else gguf.TokenType.USER_DEFINED)
        elif i in vocab:
            tokens.append(vocab[i])
            types.append(gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(config["bos_token_id"])
    w.add_eos_token_id(config["eos_token_id"])
    w.add_add_bos_token(False)
    w.add_add_eos_token(False)
    # distill's parameter order (LlamaConfig.parameterShapes), so the files compare byte for byte.
    order = ["model.embed_tokens.weight"]
    for layer in range(config["num_hidden_layers"]):
        order += [f"model.layers.{layer}.{m}.weight" for m in GGML_NAMES]
    order += ["model.norm.weight"] + (["lm_head.weight"] if "lm_head.weight" in weights else [])
    assert sorted(order) == sorted(weights)
    if config["rope_parameters"].get("rope_type") == "llama3":
        w.add_tensor("rope_freqs.weight", llama3_rope_freqs(config))
    for name in order:
        t = weights[name]
        if name.endswith("q_proj.weight"):
            t = permute(t, n_head)
        elif name.endswith("k_proj.weight"):
            t = permute(t, n_kv)
        t = t.astype(np.float32) if t.ndim == 1 else t.astype(np.float16)
        w.add_tensor(ggml_name(name), t)
    write(w)


def lora_fixture(rng):
    config = json.load(open(os.path.join(TINY, "config.json")))
    n_head, n_kv, d = config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]
    c = config["hidden_size"]
    rank, alpha = 2, 8.0
    outs = {"q_proj": n_head * d, "k_proj": n_kv * d, "v_proj": n_kv * d, "o_proj": c}
    ins = {"q_proj": c, "k_proj": c, "v_proj": c, "o_proj": n_head * d}
    peft = {}
    w = gguf.GGUFWriter(os.path.join(OUT, "tiny_lora.gguf"), arch="llama")
    w.add_type("adapter")
    w.add_name("tiny_lora")
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", alpha * math.sqrt(rank))  # rsLoRA folded
    for layer in range(config["num_hidden_layers"]):
        for module in ["q_proj", "k_proj", "v_proj", "o_proj"]:
            a = (rng.standard_normal((rank, ins[module])) * 0.3).astype(np.float32)
            b = (rng.standard_normal((outs[module], rank)) * 0.3).astype(np.float32)
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            peft[prefix + ".lora_A.weight"] = a
            peft[prefix + ".lora_B.weight"] = b
            if module == "q_proj":
                b = permute(b, n_head)
            elif module == "k_proj":
                b = permute(b, n_kv)
            base = f"blk.{layer}.{GGML_NAMES['self_attn.' + module]}.weight"
            w.add_tensor(base + ".lora_a", a)
            w.add_tensor(base + ".lora_b", b)
    write(w)
    save_file(peft, os.path.join(OUT, "tiny_lora.safetensors"))
    with open(os.path.join(OUT, "tiny_lora.json"), "w") as f:
        json.dump({"rank": rank, "alpha": alpha, "use_rslora": True,
                   "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}, f, indent=1)
        f.write("\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261123)
    values_fixture(rng)
    tiny_llama_fixture()
    lora_fixture(rng)
    tiny_llama_fixture("tiny_llama3")
    for name in sorted(os.listdir(OUT)):
        print(name, os.path.getsize(os.path.join(OUT, name)))


if __name__ == "__main__":
    main()
