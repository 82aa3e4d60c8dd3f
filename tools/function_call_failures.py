#!/usr/bin/env python3
"""Sorts the failed samples of a function-calling sample stage into failure modes.

    python3 tools/function_call_failures.py RUN/sample/samples.jsonl [...]

Reads the verifier's `reason` and the `finish_reason` of each row of `samples.jsonl`
(docs/teacher.md, *Outputs*) and prints, per file, the pass rate, the tasks with at least
one correct sample, and a count of the failed samples per mode. Standard library only.
"""
import collections
import json
import re
import sys


def mode(row):
    why = row.get("reason", "")
    if row.get("correct"):
        return "correct"
    if "error" in row:
        return "teacher call failed"
    if row.get("finish_reason") == "length" and why.startswith("malformed"):
        return "cut at max_tokens, no readable call"
    if "positional argument" in why or "expected an argument name at" in why:
        return "positional arguments"
    if "is not a literal" in why or "f-strings" in why:
        return "bare name or expression as a value"
    if "no function call found" in why:
        return "no call (prose or bare values)"
    if why.startswith("malformed"):
        return "other malformed syntax"
    if "unknown function" in why or re.search(r"^called \S+, expected", why):
        return "wrong or invented function"
    if re.search(r"expected \d+ calls?, found", why):
        return "wrong number of calls"
    if "unexpected argument" in why or "missing required argument" in why:
        return "wrong argument names (unexpected or missing)"
    if "is null" in why:
        return "None as a value"
    if re.search(r"is an? \w+, but the tool's schema says", why) or re.search(r"(unexpected|missing required) key", why):
        return "wrong type or object shape"
    if "is not one of" in why:
        return "wrong value"
    return "other"


def main(paths):
    for path in paths:
        rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
        modes = collections.Counter(mode(r) for r in rows)
        solved = collections.defaultdict(bool)
        for r in rows:
            solved[r["task_id"]] |= bool(r.get("correct"))
        n, ok = len(rows), modes.pop("correct", 0)
        print(f"{path}: {ok}/{n} correct ({100 * ok / max(n, 1):.1f}%), "
              f"{sum(solved.values())}/{len(solved)} tasks solved")
        for name, count in modes.most_common():
            print(f"  {count:5d}  {100 * count / max(n - ok, 1):5.1f}%  {name}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
