#!/usr/bin/env python3
"""Writes Data/arithmetic/: small arithmetic word problems for the sample stage.

  tasks.jsonl   64 tasks {"id", "prompt", "answer"} checked by the exact verifier
  route_tasks.jsonl  600 more tasks of the same kind, for learned routers
  train.jsonl   2,000 worked examples {"text"} (question, one line of working, "#### answer")
                for pretraining a tiny teacher that learns the format and some of the sums
  levels_tasks.jsonl  900 tasks at three levels the question shows (300 each): one-digit
                numbers, two-digit numbers, and two steps on two-digit numbers
  levels_train.jsonl  9,000 worked examples of the same three levels (3,000 each), for a
                pair of models whose difference lies in some requests and not others
                (Recipes/route-levels.json, docs/routing.md)
  levels_easy_tasks.jsonl  900 more tasks, two in three of them one-digit (600, 150, 150):
                the same pair on a mix where most requests are easy
                (Recipes/route-levels-easy.json)

Plain Python 3, no dependencies, deterministic (random.Random with fixed seeds; only
randrange() and choice() are used). Numbers are 1..20, operations + and -, results >= 0, so
a model of a few hundred thousand parameters trained for a few minutes gets some right and
some wrong: the mixed outcomes that yield preference pairs. The worked examples draw from the
same problem space as the tasks (with another seed), so many task questions, with other
names and things, appear in training. Run from the repository root:

    python3 tools/make_tasks.py            # writes both files
    python3 tools/make_tasks.py --check    # regenerates in memory, compares to Data/
"""

import argparse
import json
import os
import random
import sys

NAMES = ["Ada", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jon", "Kit", "Lena"]
THINGS = ["apples", "marbles", "stickers", "shells", "coins", "books", "pencils", "stamps"]


def one_step(rng, name, thing, a, b):
    """(question, working, answer) of a sum or, the larger number first, a difference."""
    if rng.randrange(2) == 0:
        q = f"{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have now?"
        return q, f"{a} + {b} = {a + b}.", a + b
    if a < b:
        a, b = b, a
    q = f"{name} has {a} {thing} and gives away {b}. How many {thing} does {name} have left?"
    return q, f"{a} - {b} = {a - b}.", a - b


def problem(rng):
    """One (question, working, answer)."""
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    a, b = rng.randrange(1, 21), rng.randrange(1, 21)
    return one_step(rng, name, thing, a, b)


def level_problem(rng, level):
    """One (question, working, answer) of `level`: 1 one-digit numbers, 2 two-digit numbers,
    3 two steps (gets some, then gives some away) on two-digit numbers."""
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    low, high = (1, 10) if level == 1 else (10, 100)
    a, b = rng.randrange(low, high), rng.randrange(low, high)
    if level == 3:
        c = rng.randrange(10, min(a + b, 99) + 1)
        q = (f"{name} has {a} {thing}, gets {b} more and then gives away {c}. "
             f"How many {thing} does {name} have left?")
        return q, f"{a} + {b} = {a + b}. {a + b} - {c} = {a + b - c}.", a + b - c
    return one_step(rng, name, thing, a, b)


def unique_tasks(count, id_format, seen, draw):
    """`count` tasks {"id", "prompt", "answer"} from draw(i) -> (question, working, answer) for
    the i-th task, skipping questions in `seen`, which gains the ones kept."""
    out = []
    while len(out) < count:
        q, _, ans = draw(len(out))
        if q in seen:
            continue
        seen.add(q)
        out.append({"id": id_format.format(len(out) + 1), "prompt": prompt(q), "answer": str(ans)})
    return out


def prompt(question):
    return f"Q: {question}\nA:"


def build():
    rng = random.Random(5)
    seen = set()
    tasks = unique_tasks(64, "arith-{:03d}", seen, lambda i: problem(rng))
    # 600 more tasks, none of the 64 above, for training and testing learned routers
    # (Recipes/route-arithmetic.json, docs/routing.md).
    rng = random.Random(7)
    route = unique_tasks(600, "route-{:04d}", seen, lambda i: problem(rng))
    rng = random.Random(6)
    train = []
    for _ in range(2000):
        q, work, ans = problem(rng)
        train.append({"text": f"{prompt(q)} {work} #### {ans}"})
    # Three levels, interleaved so that any prefix of either file mixes them evenly; the
    # tasks' questions never appear among the worked examples.
    rng = random.Random(11)
    asked = set()
    levels = unique_tasks(900, "level-{:04d}", asked, lambda i: level_problem(rng, i % 3 + 1))
    rng = random.Random(12)
    levels_train = []
    while len(levels_train) < 9000:
        q, work, ans = level_problem(rng, len(levels_train) % 3 + 1)
        if q not in asked:
            levels_train.append({"text": f"{prompt(q)} {work} #### {ans}"})
    # The mostly-easy mix: levels 1, 1, 1, 1, 2, 3 in turn; none of its questions is among
    # the worked examples or the even mix.
    rng = random.Random(13)
    taught = {row["text"].split("\nA:")[0][3:] for row in levels_train}
    easy = unique_tasks(900, "easy-{:04d}", asked | taught, lambda i: level_problem(rng, [1, 1, 1, 1, 2, 3][i % 6]))
    dump = lambda rows: "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return {"tasks.jsonl": dump(tasks), "train.jsonl": dump(train), "route_tasks.jsonl": dump(route),
            "levels_tasks.jsonl": dump(levels), "levels_train.jsonl": dump(levels_train),
            "levels_easy_tasks.jsonl": dump(easy)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    args = ap.parse_args()
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Data", "arithmetic")
    files = build()
    if args.check:
        bad = [n for n, text in files.items() if open(os.path.join(out, n), encoding="utf-8").read() != text]
        if bad:
            print("differs: " + ", ".join(bad), file=sys.stderr)
            sys.exit(1)
        print("Data/arithmetic matches tools/make_tasks.py")
        return
    os.makedirs(out, exist_ok=True)
    for n, text in files.items():
        with open(os.path.join(out, n), "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    print(f"wrote {', '.join(files)} to Data/arithmetic")


if __name__ == "__main__":
    main()
