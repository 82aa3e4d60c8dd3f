"""Batched sampled generation: distill's decode engine beside transformers (eager, f32) on the
same weights, alternating within each round (compare the ratio: the machine is shared).

    /tmp/distill-ref/bin/python tools/bench_generate_hf.py MODEL [--batch 32] [--prompt-tokens 64]
        [--new-tokens 64] [--temperature 0.8] [--top-k 40] [--greedy] [--rounds 3] [--threads 2]
        [--weights f32,file]

MODEL is anything distill loads (a .gguf, a checkpoint); it is exported once to a Hugging Face
directory under Checkpoints/bench/ for transformers. Both tools get `batch` prompts of random
token ids and generate exactly `new-tokens` tokens per row (transformers with min_new_tokens;
distill's bench has no stop token); the figure is generated tokens per second over the whole
call, prefill included. distill's time is its bench's prefill plus decode time. `--weights` lists
distill's formats to run (`distill bench decode --weights`: f32, q8_0, q4_0, q4_1, file for a
GGUF's own blocks), each a contender of its own in every round; transformers always runs f32.

Needs the reference environment (../shared/reference/setup.sh) and a release build.
"""
import argparse, json, os, statistics, subprocess, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISTILL = os.path.join(ROOT, ".build", "release", "distill")


def hf_directory(model):
    out = os.path.join(ROOT, "Checkpoints", "bench", os.path.splitext(os.path.basename(model))[0] + ".hf")
    if not os.path.exists(os.path.join(out, "config.json")):
        subprocess.run([DISTILL, "export", "hf", model, "-o", out], check=True, stdout=subprocess.DEVNULL)
    return out


def transformers_once(model, a, seed):
    import torch

    torch.manual_seed(seed)
    ids = torch.randint(0, model.config.vocab_size, (a.batch, a.prompt_tokens))
    kwargs = dict(max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens, pad_token_id=0)
    kwargs.update(dict(do_sample=False) if a.greedy else dict(do_sample=True, temperature=a.temperature, top_k=a.top_k))
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
    seconds = time.perf_counter() - start
    assert out.shape[1] == a.prompt_tokens + a.new_tokens
    return a.batch * a.new_tokens / seconds


def distill_once(model, a, weights):
    args = [DISTILL, "bench", "decode", "--checkpoint", model, "--weights", weights, "--batch", str(a.batch), "--prompt-tokens",
            str(a.prompt_tokens), "--decode-tokens", str(a.new_tokens), "--repeats", "1", "--threads",
            str(a.threads), "--json"]
    if not a.greedy:
        args += ["--temperature", str(a.temperature), "--top-k", str(a.top_k)]
    r = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)["results"][0]
    seconds = a.batch * a.prompt_tokens / r["prefillTokensPerSecond"] + a.batch * a.new_tokens / r["decodeTokensPerSecond"]
    return a.batch * a.new_tokens / seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top-k", type=int, default=40)
    ap.add_argument("--greedy", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default="f32", help="distill's weight formats, comma-separated")
    a = ap.parse_args()
    formats = a.weights.split(",")
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(a.threads)
    model = AutoModelForCausalLM.from_pretrained(hf_directory(a.model), torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    ours, theirs = {w: [] for w in formats}, []
    for r in range(a.rounds):
        for w in formats:
            ours[w].append(distill_once(a.model, a, w))
        theirs.append(transformers_once(model, a, seed=r))
        mine = ", ".join(f"distill {w} {ours[w][-1]:.1f} tok/s" for w in formats)
        print(f"round {r + 1}: {mine}, transformers {theirs[-1]:.1f} tok/s", flush=True)
    mode = "greedy" if a.greedy else f"sampled (temperature {a.temperature}, top-k {a.top_k})"
    t = statistics.median(theirs)
    print(f"\nbatch {a.batch}, {a.prompt_tokens} prompt + {a.new_tokens} new tokens, {mode}, {a.threads} threads, "
          f"medians of {a.rounds}: transformers {t:.1f} tok/s")
    for w in formats:
        d = statistics.median(ours[w])
        print(f"  distill {w}: {d:.1f} tok/s, ratio {d / t:.2f}x")


if __name__ == "__main__":
    main()
