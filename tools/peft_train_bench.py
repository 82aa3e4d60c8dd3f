"""LoRA training-throughput peer: PEFT + transformers LlamaForCausalLM on CPU.

The LoRA counterpart of the PyTorch reference's hf_train_bench.py (an optional developer
tool outside this repository), measured the same way (fresh model from the reference
configuration, seed 0, uniform random tokens, 2 warm-up steps, then full steps -- forward,
backward, AdamW -- for at least --seconds and 3 steps), with peft.LoraConfig(r,
lora_alpha=2r, target_modules) on the frozen base, as `distill bench train --lora` trains.
--base-dtype bf16 holds the base in bfloat16 (the adapters stay f32: PEFT's default
autocast_adapter_dtype), the peer of `distill bench train --lora --base-weights bf16`.
The configurations are read from --configs (default tools/bench_configs.json, the
repository's copy of the reference configurations), so the script needs nothing else.

    /tmp/distill-ref/bin/python tools/peft_train_bench.py --configs tools/bench_configs.json \
        --config M --seconds 10 [--compile] [--rank 16] [--targets q_proj,v_proj] [--base-dtype bf16]

Prints one JSON object per configuration.
"""
import argparse, json, time

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM


def bench(name, c, seconds, compile_, rank, targets, base_dtype):
    cfg = LlamaConfig(
        vocab_size=c["vocab"], hidden_size=c["dim"], intermediate_size=c["ffn"],
        num_hidden_layers=c["layers"], num_attention_heads=c["heads"],
        num_key_value_heads=c["kv_heads"], max_position_embeddings=c["seq"],
        tie_word_embeddings=True, attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    base = LlamaForCausalLM(cfg)
    if base_dtype == "bf16":
        base = base.to(torch.bfloat16)
    lora = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM")
    model = get_peft_model(base, lora)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-3, weight_decay=0.1)
    fwd = torch.compile(model) if compile_ else model
    ids = torch.randint(0, c["vocab"], (c["batch"], c["seq"]))

    def step():
        opt.zero_grad(set_to_none=True)
        out = fwd(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()

    for _ in range(2):
        step()
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        t = time.perf_counter() - t0
        if t >= seconds and n >= 3:
            break
    return {
        "engine": "peft-" + ("compile" if compile_ else "eager"),
        "config": name,
        "lora_rank": rank,
        "lora_targets": targets,
        "base_dtype": base_dtype,
        "trainable_params": sum(p.numel() for p in trainable),
        "tokens_per_s": round(c["batch"] * c["seq"] * n / t, 1),
        "step_ms": round(1000 * t / n, 1),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="tools/bench_configs.json")
    ap.add_argument("--config", default="M")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--targets", default="q_proj,v_proj")
    ap.add_argument("--base-dtype", choices=["f32", "bf16"], default="f32")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with open(a.configs) as f:
        cfgs = json.load(f)
    for name in a.config.split(","):
        print(json.dumps(bench(name, cfgs[name], a.seconds, a.compile, a.rank, a.targets.split(","), a.base_dtype)), flush=True)


if __name__ == "__main__":
    main()
