"""Check distill's import of a real GGUF model against transformers' own GGUF loader.

Manual check (needs the real model and the reference venv; not part of the test suite):

    bash scripts/get-model.sh smollm2-135m-instruct
    swift build -c release --product distill
    /tmp/distill-ref/bin/python tools/check_real_model.py \
        Checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf [--distill .build/release/distill] [--json OUT]

transformers (`from_pretrained(dir, gguf_file=...)`, its own dequantizer and q/k
un-permutation) is the independent reader. The script:
  1. imports the file with `distill import gguf`, exports the checkpoint with `distill export
     hf`, and compares every tensor with transformers' state dict bit for bit (a tied
     lm_head is the embedding in both);
  2. scores one window of a fixed text with `distill eval --json` and transformers'
     labels=ids loss on the same ids (tokenized by transformers' GGUF tokenizer; distill's
     own tokenization is compared too);
  3. answers four chat prompts with 48 greedy tokens: `distill chat --message --json`
     against transformers' generate() on apply_chat_template(..., add_generation_prompt=True),
     reporting the first divergence and the logit margin there when they differ.
Exit status 1 when weights differ, the loss differs by 1e-4 or more, or fewer than three of
the four prompts give the same tokens.
"""
import argparse, json, os, subprocess, sys, tempfile

import numpy as np
import torch
from safetensors.numpy import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

TEXT = (
    "The old lighthouse keeper climbed the spiral stairs every evening at dusk. He counted them "
    "as he went: one hundred and twelve steps, worn smooth in the middle by a century of boots. "
    "At the top he trimmed the wick, polished the great lens, and watched the ships come in "
    "from the grey sea. In 1923 a storm broke the glass, and for three nights he kept a lantern "
    "burning by hand. The harbour master wrote to the city about it, but nobody came. Years "
    "later, children asked him why he never left. \"Somebody has to be here when the fog rolls "
    "in,\" he said, and went back up the stairs."
)
PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain in two sentences why the sky is blue.",
    "List three prime numbers greater than 10.",
]


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--distill", default=".build/release/distill")
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--json", help="write the findings here")
    args = ap.parse_args()
    torch.set_num_threads(2)
    gguf = os.path.abspath(args.gguf)
    folder, name = os.path.split(gguf)
    report = {"file": name}
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, "model.h5")
        run([args.distill, "import", "gguf", gguf, "-o", ckpt])
        run([args.distill, "export", "hf", ckpt, "-o", os.path.join(tmp, "hf")])
        ours = load_file(os.path.join(tmp, "hf", "model.safetensors"))

        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32)
        model.eval()
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        theirs = {k: v.detach().numpy() for k, v in model.state_dict().items()}

        # 1. Weights.
        differing = []
        for k, v in theirs.items():
            if k == "lm_head.weight" and k not in ours:
                mine = ours["model.embed_tokens.weight"]
            elif k not in ours:
                differing.append(f"{k}: missing in distill's export")
                continue
            else:
                mine = ours[k]
            if mine.shape != v.shape or not np.array_equal(mine.view(np.uint32), v.astype(np.float32).view(np.uint32)):
                diff = float(np.max(np.abs(mine - v))) if mine.shape == v.shape else None
                differing.append(f"{k}: max |diff| {diff}")
        extra = sorted(set(ours) - set(theirs))
        report["weights"] = {"tensors": len(theirs), "differing": differing, "only_in_distill": extra}
        print(f"weights: {len(theirs) - len(differing)}/{len(theirs)} tensors bit-identical" + (f"; {differing[:3]}" if differing else ""))
        failed |= bool(differing)

        # 2. Loss on one window.
        ids = tok(TEXT, add_special_tokens=False)["input_ids"]
        text_path = os.path.join(tmp, "text.txt")
        with open(text_path, "w") as f:
            f.write(TEXT)
        ev = json.loads(run([args.distill, "eval", "--checkpoint", ckpt, "--text", text_path, "--seq-len", str(len(ids) + 8), "--json"]))
        with torch.no_grad():
            t = torch.tensor([ids])
            loss = float(model(t, labels=t).loss)
        report["loss"] = {"distill": ev["loss"], "transformers": loss, "tokens_transformers": len(ids), "tokens_distill": ev["tokens"]}
        print(f"loss: distill {ev['loss']:.6f} ({ev['tokens']} targets), transformers {loss:.6f} ({len(ids) - 1} targets), |diff| {abs(ev['loss'] - loss):.2e}")
        failed |= abs(ev["loss"] - loss) >= 1e-4 or ev["tokens"] != len(ids) - 1

        # 3. Greedy chat.
        same = 0
        report["chat"] = []
        for p in PROMPTS:
            msgs = [{"role": "user", "content": p}]
            prompt_ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=False)
            if isinstance(prompt_ids, dict):
                prompt_ids = prompt_ids["input_ids"]
            with torch.no_grad():
                out = model.generate(
                    torch.tensor([prompt_ids]), max_new_tokens=args.tokens, do_sample=False,
                    eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.eos_token_id)
            hf = out[0, len(prompt_ids):].tolist()
            d = json.loads(run([args.distill, "chat", "--checkpoint", ckpt, "--message", p, "--max-tokens", str(args.tokens), "--json"]))[0]
            ours_ids = d["ids"]
            entry = {"prompt": p, "prompt_ids_equal": d["prompt_ids"] == prompt_ids, "distill": ours_ids, "transformers": hf}
            if ours_ids == hf and d["prompt_ids"] == prompt_ids:
                same += 1
            else:
                k = next((i for i, (a, b) in enumerate(zip(ours_ids, hf)) if a != b), min(len(ours_ids), len(hf)))
                with torch.no_grad():
                    logits = model(torch.tensor([prompt_ids + hf[:k]])).logits[0, -1]
                top = torch.topk(logits, 2)
                entry["first_difference"] = k
                entry["margin_there"] = float(top.values[0] - top.values[1])
            report["chat"].append(entry)
            print(f"chat {p!r}: {'same' if 'first_difference' not in entry else 'differs at token %d (transformers margin %.4f)' % (entry['first_difference'], entry['margin_there'])}; prompt ids equal: {entry['prompt_ids_equal']}")
            print(f"   distill: {json.dumps(d['text'])[:160]}")
        report["chat_same"] = same
        print(f"greedy: {same}/{len(PROMPTS)} prompts give the same {args.tokens} tokens")
        failed |= same < 3
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
