"""Check that llama.cpp (through llama-cpp-python) runs distill's GGUF exports as distill does.

Manual check, not part of the test suite (it needs llama-cpp-python, e.g. 0.3.36 built
from PyPI, in the reference venv):

    DISTILL_GGUF_EXPORT=/tmp/distill-gguf swift test --filter GGUFExportCheck
    swift build
    /tmp/distill-ref/bin/python tools/check_gguf.py /tmp/distill-gguf [--distill .build/debug/distill]

For every model directory the Swift side wrote (tiny_llama: tied, grouped-query attention;
tiny_llama_untied; tiny_llama3: Llama 3's rope scaling as rope_freqs.weight, its own prompt of
83 tokens past the original context of 64), and for every run in its reference.json:
  base          base.gguf (F32) and base_f16.gguf, no adapter
  lora_*        base.gguf + lora_*.gguf (lora_path), and base_f16.gguf + the adapter
it checks:
  1. `distill generate --temperature 0 --json --ignore-eos` on the fixture (base) or on the
     adapter's merged model gives the greedy tokens in reference.json (which distill computed
     with the adapter live), so the reference is distill's own CLI output;
  2. llama.cpp tokenizes the prompt to the same ids (tokenizer.ggml.* keys, pre "gpt-2");
  3. llama.cpp's greedy continuation (argmax of its logits at every step, no EOS stop)
     equals distill's, token for token;
  4. for F32 files, llama.cpp's logits at every position of prompt + greedy tokens
     (logits_all=True, F32 KV cache) against distill's: the largest absolute difference is
     reported and must stay below --tolerance (default 1e-4), with the largest logit
     magnitude for scale (F16 files: reported, not checked).
Exit status 1 if any check fails.
"""
import argparse, json, os, subprocess, sys

import numpy as np
from llama_cpp import Llama

GGML_TYPE_F32 = 0

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
FIXTURES = os.path.join(ROOT, "Tests", "FormatsTests", "Fixtures")


def distill_greedy(distill, checkpoint, prompt, n):
    out = subprocess.run(
        [distill, "generate", "--checkpoint", checkpoint, "--prompt", prompt, "--temperature", "0",
         "--max-tokens", str(n), "--ignore-eos", "--json", "--threads", "1"],
        check=True, capture_output=True, text=True).stdout
    sample = json.loads(out)[0]
    return sample["prompt_ids"], sample["ids"]


def llama_greedy(llm, prompt_ids, n):
    llm.reset()
    llm.eval(prompt_ids)
    out = []
    for _ in range(n):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(token)
        if len(out) < n:
            llm.eval([token])
    return out


def llama_logits(llm, ids):
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float64)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("directory")
    ap.add_argument("--distill", default=os.path.join(ROOT, ".build", "debug", "distill"))
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args()

    failures = 0
    rows = []
    for name in sorted(os.listdir(args.directory)):
        d = os.path.join(args.directory, name)
        ref_path = os.path.join(d, "reference.json")
        if not os.path.isfile(ref_path):
            continue
        ref = json.load(open(ref_path))
        prompt, prompt_ids = ref["prompt"], ref["prompt_ids"]
        for run, expected in sorted(ref["runs"].items()):
            greedy = expected["greedy"]
            n = len(greedy)
            source = os.path.join(FIXTURES, name) if run == "base" else os.path.join(d, "merged_" + run)
            cli_prompt_ids, cli_greedy = distill_greedy(args.distill, source, prompt, n)
            if cli_prompt_ids != prompt_ids or cli_greedy != greedy:
                failures += 1
                print(f"FAIL {name}/{run}: distill generate on {source} gives {cli_greedy}, reference {greedy}")
            for base in ["base.gguf", "base_f16.gguf"]:
                lora = None if run == "base" else os.path.join(d, run + ".gguf")
                # F32 KV cache (llama.cpp's default is F16, which alone moves logits by ~1e-3) and
                # no flash attention, so the F32 comparison measures the model, not the cache.
                llm = Llama(model_path=os.path.join(d, base), lora_path=lora, n_ctx=128, n_batch=128,
                            logits_all=True, n_threads=2, seed=0, verbose=False,
                            type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, flash_attn=False)
                tokens = llm.tokenize(prompt.encode(), add_bos=False, special=False)
                ok_tok = list(tokens) == prompt_ids
                got = llama_greedy(llm, prompt_ids, n)
                same = sum(1 for a, b in zip(got, greedy) if a == b)
                first_diff = next((i for i, (a, b) in enumerate(zip(got, greedy)) if a != b), None)
                ids = prompt_ids + greedy[:-1]
                theirs = np.array(expected["logits"])
                diff = float(np.max(np.abs(llama_logits(llm, ids) - theirs)))
                scale = float(np.max(np.abs(theirs)))
                # F16 weights round every weight, so only their greedy tokens are required to match.
                ok = ok_tok and got == greedy and (base != "base.gguf" or diff < args.tolerance)
                failures += 0 if ok else 1
                rows.append((name, run, base, ok_tok, f"{same}/{n}", first_diff, diff, scale, "ok" if ok else "FAIL"))
                del llm

    print(f"{'model':18} {'run':12} {'file':14} {'tokenizer':9} {'greedy':7} {'1st diff':8} {'max |dlogit|':12} {'max |logit|':11} result")
    for name, run, base, ok_tok, same, first, diff, scale, verdict in rows:
        f = "-" if first is None else str(first)
        print(f"{name:18} {run:12} {base:14} {str(ok_tok):9} {same:7} {f:8} {diff:<12.3e} {scale:<11.2f} {verdict}")
    print("all checks passed" if failures == 0 else f"{failures} check(s) failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
