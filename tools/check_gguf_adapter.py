"""Check that llama.cpp applies a distill LoRA adapter on top of the original quantized GGUF.

Manual check (needs llama-cpp-python in the reference venv: ../shared/reference/setup.sh
--with-llama; not part of the test suite):

    bash scripts/get-model.sh smollm2-135m-instruct
    distill run Recipes/smollm2-chat-lora.json          # LoRA on the Q4_1 file itself
    distill export gguf Checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --adapter Checkpoints/smollm2-chat-lora/sft.h5 -o Checkpoints/smollm2-chat-lora/sft-lora.gguf
    /tmp/distill-ref/bin/python tools/check_gguf_adapter.py \
        --base Checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --adapter-gguf Checkpoints/smollm2-chat-lora/sft-lora.gguf \
        --adapter Checkpoints/smollm2-chat-lora/sft.h5 [--distill .build/release/distill] [--tokens 24]

For each chat prompt (held-out arithmetic in the adapter's trained form, and general
questions), distill answers with `distill chat --checkpoint ADAPTER --json` (the adapter on
the base dequantized to f32) and llama.cpp with `Llama(model_path=BASE, lora_path=ADAPTER_GGUF)`
(the adapter on the original Q4_1 weights; llama.cpp quantizes activations for its quantized
matmuls, so the two cannot agree exactly), greedily from the same prompt ids. It reports how
many prompts give identical tokens, the share of token positions that agree up to the first
difference, and the same for llama.cpp without the adapter (which shows the adapter changed
what llama.cpp says).
"""
import argparse, json, subprocess

import numpy as np
from llama_cpp import Llama

PROMPTS = [
    "What is 12 + 7?", "Compute 40 - 15.", "What is 23 + 58?", "Please work out 91 - 46.",
    "Compute 17 + 66.", "What is 80 - 33?", "Please work out 45 + 45.", "Compute 72 - 29.",
    "What is the capital of France?", "Name three colours.", "Write one sentence about rain.",
    "What is the opposite of hot?",
]


def llama_greedy(llm, prompt_ids, n, stop):
    llm.reset()
    llm.eval(prompt_ids)
    out = []
    while len(out) < n:
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(token)
        if token in stop:
            break
        llm.eval([token])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--adapter-gguf", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--distill", default=".build/release/distill")
    ap.add_argument("--tokens", type=int, default=24)
    args = ap.parse_args()
    with_lora = Llama(model_path=args.base, lora_path=args.adapter_gguf, n_ctx=512, n_threads=2, verbose=False, logits_all=True)
    without = Llama(model_path=args.base, n_ctx=512, n_threads=2, verbose=False, logits_all=True)
    stop = {with_lora.tokenize(b"<|im_end|>", add_bos=False, special=True)[0], 2}
    same = prefix = total = same_base = 0
    for p in PROMPTS:
        d = json.loads(subprocess.run(
            [args.distill, "chat", "--checkpoint", args.adapter, "--message", p, "--max-tokens", str(args.tokens), "--json"],
            check=True, capture_output=True, text=True).stdout)[0]
        ours = d["ids"]
        theirs = llama_greedy(with_lora, d["prompt_ids"], args.tokens, stop)
        plain = llama_greedy(without, d["prompt_ids"], args.tokens, stop)
        k = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        same += ours == theirs
        same_base += ours == plain
        prefix += k
        total += len(ours)
        text = with_lora.detokenize(theirs).decode(errors="replace")
        print(f"{'same' if ours == theirs else 'differs at %d' % k:>14}  {p!r}: distill {json.dumps(d['text'])}  llama.cpp {json.dumps(text)}")
    print(f"identical greedy answers: {same}/{len(PROMPTS)} with the adapter (llama.cpp without it: {same_base}/{len(PROMPTS)}); "
          f"tokens agreeing before the first difference: {prefix}/{total} ({100 * prefix / total:.1f}%)")


if __name__ == "__main__":
    main()
