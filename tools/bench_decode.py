"""Batch-1 prefill and decode speed: distill's decode engine beside llama.cpp on the same GGUF
files, alternating the two within each round (the machine is shared and noisy: compare the
ratio, not the absolute figures).

    /tmp/distill-ref/bin/python tools/bench_decode.py MODEL.gguf [--formats f32,q8_0,q4_0,file]
        [--prompt-tokens 128] [--decode-tokens 128] [--rounds 3] [--threads 2] [--json OUT]

For each format the same file runs in both tools:
  - f32:   distill's f32 GGUF export of MODEL (`distill export gguf`), distill with --weights f32
  - q8_0, q4_0, q4_1: that export quantized by llama.cpp's own quantizer (llama_model_quantize),
           distill reading the file's blocks as stored (--weights file)
  - file:  MODEL itself (e.g. the Q4_1 download), distill with --weights file
Both decode greedily from a prompt of random token ids with no stop token; llama.cpp's time
includes llama-cpp-python's per-token call and an argmax over the logits, distill's its own
token choice. Files are written next to MODEL's name under Checkpoints/bench/.

Needs llama-cpp-python (../shared/reference/setup.sh --with-llama) and a release build of
distill (`swift build -c release`).
"""
import argparse, json, os, statistics, subprocess, sys, time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISTILL = os.path.join(ROOT, ".build", "release", "distill")
QUANT_TYPES = {"q8_0": 7, "q4_0": 2, "q4_1": 3}  # llama_ftype values


def files_for(model, formats, work):
    """The GGUF file each format runs on, making the f32 export and the quantized copies once."""
    os.makedirs(work, exist_ok=True)
    stem = os.path.splitext(os.path.basename(model))[0]
    f32 = os.path.join(work, stem + ".f32.gguf")
    out = {}
    for fmt in formats:
        if fmt == "file":
            out[fmt] = model
            continue
        if not os.path.exists(f32):
            subprocess.run([DISTILL, "export", "gguf", model, "-o", f32], check=True, stdout=subprocess.DEVNULL)
        if fmt == "f32":
            out[fmt] = f32
            continue
        path = os.path.join(work, f"{stem}.{fmt}.gguf")
        if not os.path.exists(path):
            import llama_cpp

            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = QUANT_TYPES[fmt]
            params.nthread = 2
            rc = llama_cpp.llama_model_quantize(f32.encode(), path.encode(), params)
            if rc != 0:
                sys.exit(f"llama_model_quantize {fmt} failed ({rc})")
        out[fmt] = path
    return out


def llama_once(path, prompt_tokens, decode_tokens, threads, seed):
    from llama_cpp import Llama

    llm = Llama(model_path=path, n_ctx=prompt_tokens + decode_tokens + 8, n_threads=threads, n_batch=512, verbose=False)
    rng = np.random.default_rng(seed)
    prompt = rng.integers(0, llm.n_vocab(), prompt_tokens).tolist()
    t0 = time.perf_counter()
    llm.eval(prompt)
    t1 = time.perf_counter()
    for _ in range(decode_tokens):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        llm.eval([token])
    t2 = time.perf_counter()
    del llm
    return prompt_tokens / (t1 - t0), decode_tokens / (t2 - t1)


def distill_once(path, weights, prompt_tokens, decode_tokens, threads):
    out = subprocess.run(
        [DISTILL, "bench", "decode", "--checkpoint", path, "--weights", weights, "--prompt-tokens", str(prompt_tokens),
         "--decode-tokens", str(decode_tokens), "--repeats", "1", "--threads", str(threads), "--json"],
        check=True, capture_output=True, text=True).stdout
    r = json.loads(out)["results"][0]
    return r["prefillTokensPerSecond"], r["decodeTokensPerSecond"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--formats", default="f32,q8_0,q4_0,file")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    formats = a.formats.split(",")
    paths = files_for(a.model, formats, os.path.join(ROOT, "Checkpoints", "bench"))
    runs = {f: {"distill": [], "llama.cpp": []} for f in formats}
    for round in range(a.rounds):
        for f in formats:
            weights = "f32" if f == "f32" else "file"
            d = distill_once(paths[f], weights, a.prompt_tokens, a.decode_tokens, a.threads)
            l = llama_once(paths[f], a.prompt_tokens, a.decode_tokens, a.threads, seed=round)
            runs[f]["distill"].append(d)
            runs[f]["llama.cpp"].append(l)
            print(f"round {round + 1} {f}: distill prefill {d[0]:.0f} decode {d[1]:.1f} tok/s | "
                  f"llama.cpp prefill {l[0]:.0f} decode {l[1]:.1f} tok/s", flush=True)
    summary = {}
    print(f"\nmedians of {a.rounds} rounds, {a.prompt_tokens} prompt tokens, {a.decode_tokens} decoded, {a.threads} threads")
    print("| weights | file | distill prefill | llama.cpp prefill | distill decode | llama.cpp decode | decode ratio |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for f in formats:
        med = {tool: [statistics.median(x[i] for x in runs[f][tool]) for i in (0, 1)] for tool in runs[f]}
        ratio = med["distill"][1] / med["llama.cpp"][1]
        summary[f] = {"file": paths[f], "rounds": runs[f], "median": med, "decode_ratio": ratio}
        print(f"| {f} | {os.path.basename(paths[f])} | {med['distill'][0]:.0f} | {med['llama.cpp'][0]:.0f} | "
              f"{med['distill'][1]:.1f} | {med['llama.cpp'][1]:.1f} | {ratio:.2f}x |")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(summary, fh, indent=1)


if __name__ == "__main__":
    main()
