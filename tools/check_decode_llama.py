"""Greedy decoding on quantized weights, distill against llama.cpp on the same GGUF file: both
quantize activations to int8 in their quantized products, so on a file's own blocks
(`--weights file`) they should choose the same tokens wherever the model's top two logits are
not within that rounding of each other.

    /tmp/distill-ref/bin/python tools/check_decode_llama.py FILE.gguf [FILE.gguf ...] [--tokens 24]

For each file and each of a fixed set of chat prompts (rendered by distill's ChatML template,
so both tools see the same ids; a file without quantized tensors runs with --weights f32) it reports whether the greedy continuations are identical and how
many tokens agree before the first difference. Needs llama-cpp-python
(../shared/reference/setup.sh --with-llama) and a release build of distill.
"""
import argparse, json, os, subprocess

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISTILL = os.path.join(ROOT, ".build", "release", "distill")
PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Give me three tips for learning to code.",
    "What is 12 times 7?",
    "Explain photosynthesis in one sentence.",
    "Name a famous painting and its painter.",
    "How do I boil an egg?",
    "Translate 'good morning' into Spanish.",
]


def weights_for(path):
    """file for a GGUF with Q8_0/Q4_0/Q4_1 tensors (their blocks as stored), else f32."""
    import gguf

    types = {t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
    return "file" if types & {"Q8_0", "Q4_0", "Q4_1"} else "f32"


def distill_greedy(path, prompt, tokens):
    # ChatML named outright: exports and llama.cpp's quantizations of them carry no template.
    out = subprocess.run(
        [DISTILL, "generate", "--chat", "--template", "chatml", "--checkpoint", path, "--weights", weights_for(path),
         "--prompt", prompt, "--max-tokens", str(tokens), "--temperature", "0", "--json"],
        check=True, capture_output=True, text=True).stdout
    row = json.loads(out)[0]
    return row["prompt_ids"], row["ids"]


def llama_greedy(llm, ids, tokens, stops):
    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(tokens):
        t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(t)
        if t in stops:
            break
        llm.eval([t])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--tokens", type=int, default=24)
    a = ap.parse_args()
    from llama_cpp import Llama

    for path in a.files:
        llm = Llama(model_path=path, n_ctx=512, n_threads=2, verbose=False, logits_all=True)
        same, agree, total = 0, 0, 0
        for prompt in PROMPTS:
            ids, ours = distill_greedy(path, prompt, a.tokens)
            theirs = llama_greedy(llm, ids, len(ours), stops={ours[-1]} if len(ours) < a.tokens else set())
            n = next((i for i, (x, y) in enumerate(zip(ours, theirs)) if x != y), min(len(ours), len(theirs)))
            same += ours == theirs
            agree += n
            total += len(ours)
        print(f"{os.path.basename(path)}: {same}/{len(PROMPTS)} prompts identical, {agree}/{total} tokens before the first difference")


if __name__ == "__main__":
    main()
