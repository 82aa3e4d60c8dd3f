#!/usr/bin/env python3
"""Writes the fine-tuning example data in Data/: small arithmetic conversations for SFT and
preference pairs (a correct answer against a wrong one) for DPO, in TRL's JSONL row forms.

Python 3, no dependencies, deterministic: `python3 tools/make_finetune_data.py` rewrites
Data/sft.jsonl and Data/pairs.jsonl byte for byte; `--check` verifies the committed copies.

Questions are additions and subtractions of numbers below 50, phrased a few ways; answers
restate the sum ("7 + 5 = 12."). Rejected answers in pairs.jsonl are off by one to ten, or
give the operands in the wrong order for subtraction, so a model must read the numbers to
prefer the chosen answer.
"""

import json
import random
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "Data"

QUESTIONS = [
    "What is {a} {op} {b}?",
    "Compute {a} {op} {b}.",
    "How much is {a} {op} {b}?",
    "Please work out {a} {op} {b}.",
]
SYSTEM = "You are a careful assistant who answers arithmetic questions."


def problem(rng):
    a, b = rng.randrange(0, 50), rng.randrange(0, 50)
    op = rng.choice(["+", "-"])
    if op == "-" and b > a:
        a, b = b, a
    value = a + b if op == "+" else a - b
    question = rng.choice(QUESTIONS).format(a=a, op=op, b=b)
    return a, op, b, value, question


def answer(a, op, b, value):
    return f"{a} {op} {b} = {value}."


def sft_rows(rng, n):
    rows = []
    for i in range(n):
        a, op, b, value, question = problem(rng)
        if i % 4 == 3:
            # The standard prompt/completion form, trained on the completion only.
            rows.append({"prompt": question + "\n", "completion": answer(a, op, b, value)})
            continue
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer(a, op, b, value)}]
        if i % 3 == 0:
            messages.insert(0, {"role": "system", "content": SYSTEM})
        rows.append({"messages": messages})
    return rows


def pair_rows(rng, n):
    rows = []
    for _ in range(n):
        a, op, b, value, question = problem(rng)
        wrong = value + rng.choice([-1, 1]) * rng.randrange(1, 11)
        if op == "-" and a != b and rng.random() < 0.3:
            wrong = b - a
        prompt = [{"role": "user", "content": question}]
        rows.append({
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": answer(a, op, b, value)}],
            "rejected": [{"role": "assistant", "content": answer(a, op, b, wrong)}],
        })
    return rows


def render(rows):
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def main():
    files = {
        "sft.jsonl": render(sft_rows(random.Random(11), 600)),
        "pairs.jsonl": render(pair_rows(random.Random(12), 300)),
    }
    check = "--check" in sys.argv[1:]
    stale = []
    for name, text in files.items():
        path = DATA / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path} ({len(text.encode())} bytes)")
    if stale:
        print("out of date: " + ", ".join(stale) + " (run python3 tools/make_finetune_data.py)")
        sys.exit(1)


if __name__ == "__main__":
    main()
