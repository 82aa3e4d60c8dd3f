#!/usr/bin/env python3
"""Hostile-input probe of the distill binary (issue 15): malformed recipes, hostile data
files, bit flips in a checkpoint, kill -9 during training, a FIFO as a data file,
catastrophic regexes, NaN and huge sizes.

Every case runs the release binary in a temporary directory with a per-case timeout and an
address-space limit (so a missing memory check crashes the case instead of the machine), and
is classified as

  clean           a documented non-zero exit (2, 65, 74, 75) with an "error:" message, or
                  the correct success
  crashed         killed by a signal, or an undocumented exit code (1, 70, ...)
  hung            still running at the timeout
  silently wrong  exit 0 where the input should have been refused, or a wrong result
  data lost       a kill left no checkpoint that resumes to the uninterrupted result

and a table per category is printed at the end. Standard library only.

    python3 tools/probe_hostile.py [--binary .build/release/distill] [--quick] [--keep]

Build the binary first with `swift build -c release` (scripts/run.sh does). --quick runs
fewer bit flips and kills (about a minute); the full probe takes a few minutes on 2 cores.
"""

import argparse
import json
import os
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib

DOCUMENTED = {2, 65, 74, 75}
OUTCOMES = ["clean", "crashed", "hung", "silently wrong", "data lost"]


class Probe:
    def __init__(self, binary, root, timeout):
        self.binary = binary
        self.root = root
        self.timeout = timeout
        self.results = {}  # category -> outcome -> count
        self.notes = []

    # -- running -----------------------------------------------------------------------

    def run(self, args, env=None, timeout=None, cwd=None):
        """(returncode or None on timeout, stdout, stderr)."""

        def limits():
            # 6 GiB of address space: tiny models need far less; a missing memory check fails
            # the case instead of exhausting the machine. A new session for killing the group.
            resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
            os.setsid()

        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = subprocess.Popen(
            [self.binary] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            cwd=cwd or self.root, env=full_env, preexec_fn=limits)
        try:
            out, err = proc.communicate(timeout=timeout or self.timeout)
            return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            return None, out.decode(errors="replace"), err.decode(errors="replace")

    def record(self, category, name, outcome, detail=""):
        self.results.setdefault(category, {k: 0 for k in OUTCOMES})[outcome] += 1
        if outcome != "clean":
            self.notes.append(f"[{category}] {name}: {outcome} {detail}".rstrip())

    def classify(self, category, name, args, refused, env=None, timeout=None):
        """Runs a case; `refused(code, out, err)` judges a normal exit: an outcome and a detail.
        Timeouts, signals and undocumented exit codes are judged here."""
        code, out, err = self.run(args, env=env, timeout=timeout)
        last = err.strip().splitlines()[-1][:300] if err.strip() else ""
        if code is None:
            self.record(category, name, "hung")
        elif code < 0:
            self.record(category, name, "crashed", f"signal {-code}: {last}")
        elif code != 0 and (code not in DOCUMENTED or "error:" not in err.lower()):
            self.record(category, name, "crashed", f"exit {code}: {last}")
        else:
            self.record(category, name, *refused(code, out, err, last))
        return code, out, err

    def refuse(self, category, name, args, codes=DOCUMENTED, mentions=None, env=None, timeout=None):
        """A case that must be refused: an exit in `codes` with an error naming `mentions`."""

        def judge(code, out, err, last):
            if code == 0:
                return "silently wrong", "exit 0"
            if code not in codes:
                return "crashed", f"exit {code}, expected one of {sorted(codes)}: {last}"
            if mentions and mentions not in err:
                return "silently wrong", f"exit {code} without naming {mentions}: {last}"
            return "clean", ""

        code, _, err = self.classify(category, name, args, judge, env=env, timeout=timeout)
        return code, err

    def succeed(self, category, name, args, check=None, env=None, timeout=None):
        """A case that must succeed (and pass `check(stdout)`), or be refused cleanly."""

        def judge(code, out, err, last):
            if code == 0 and check and not check(out):
                return "silently wrong", out.strip()[:200]
            return "clean", ""

        code, out, _ = self.classify(category, name, args, judge, env=env, timeout=timeout)
        return code, out

    def write(self, name, data):
        path = os.path.join(self.root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        return path


# -- fixtures ------------------------------------------------------------------------------

CORPUS = " ".join(
    f"Once upon a time a {a} {b} went to the {c} and found {n} {d}."
    for n, (a, b, c, d) in enumerate(
        [(a, b, c, d) for a in ("little", "brave", "tiny") for b in ("fox", "cat", "owl")
         for c in ("forest", "river", "town") for d in ("apples", "stars", "stones")]))


def pretrain_stage(steps=4, checkpoint_every=2, **training):
    t = {"steps": steps, "batch_size": 4, "seq_len": 32, "lr": 0.01, "warmup_steps": 1, "eval_every": 0,
         "checkpoint_every": checkpoint_every, "log_every": 1}
    t.update(training)
    return {"type": "pretrain", "name": "pretrain", "data": {"text": CORPUS}, "output": "pretrain.h5",
            "tokenizer": {"train": {"vocab_size": 300, "special_tokens": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]}},
            "model": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                      "num_key_value_heads": 2, "max_position_embeddings": 64},
            "training": t}


def recipe(run_dir, *stages, seed=3):
    return json.dumps({"name": "probe", "run_dir": run_dir, "seed": seed, "stages": list(stages)})


def safetensors_bytes(header, data):
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


# -- categories ----------------------------------------------------------------------------

def probe_recipes(p):
    cat = "malformed recipes"
    run_dir = os.path.join(p.root, "r-run")
    good = json.loads(recipe(run_dir, pretrain_stage()))
    variants = {
        "empty file": "",
        "not JSON": "{stages: [",
        "a JSON array": "[]",
        "NaN literal": json.dumps(good).replace('"lr": 0.01', '"lr": NaN'),
        "unknown key": json.dumps(good).replace('"lr"', '"lrr"'),
        "no stages": json.dumps({"name": "x", "run_dir": run_dir, "stages": []}),
        "deep nesting": '{"a":' * 100000 + "1" + "}" * 100000,
        "invalid UTF-8": json.dumps(good).encode().replace(b"probe", b"pr\xff\xfebe"),
        "unknown stage type": json.dumps({"name": "x", "run_dir": run_dir, "stages": [{"type": "nope"}]}),
        "duplicate keys": json.dumps(good)[:-1] + ', "seed": 4}',
    }
    for field, value in [("batch_size", 10 ** 12), ("grad_accum", 10 ** 12), ("batch_size", 2 ** 63 - 1),
                         ("seq_len", 10 ** 9), ("steps", -1), ("lr", -1), ("lr", 1e400), ("batch_size", 0.5),
                         ("batch_size", "8"), ("steps", None), ("warmup_steps", 10 ** 30)]:
        r = json.loads(json.dumps(good))
        r["stages"][0]["training"][field] = value
        variants[f"training.{field}={value!r:.20}"] = json.dumps(r).replace("Infinity", "1e400")
    for field, value in [("hidden_size", 10 ** 9), ("num_hidden_layers", 10 ** 9), ("num_attention_heads", 0),
                         ("hidden_size", 30), ("vocab_size", -5), ("max_position_embeddings", 10 ** 18)]:
        r = json.loads(json.dumps(good))
        r["stages"][0]["model"][field] = value
        variants[f"model.{field}={value}"] = json.dumps(r)
    r = json.loads(json.dumps(good))
    r["stages"][0]["model"] = {"hidden_size": 8192, "intermediate_size": 22016, "num_hidden_layers": 200,
                               "num_attention_heads": 64, "num_key_value_heads": 8}
    variants["a model larger than memory"] = json.dumps(r)
    for name, text in variants.items():
        path = p.write(f"recipes/{abs(hash(name))}.json", text)
        # Memory refusals name the recipe's stage (stages[0]); the others the recipe file.
        p.refuse(cat, name, ["run", path, "--dry-run"], codes={2, 65}, mentions=path if "larger" not in name else "stages[0]")
    # A model larger than memory also without --dry-run: refused before any stage runs.
    p.refuse(cat, "a model larger than memory (run)", ["run", p.write("recipes/huge.json", variants["a model larger than memory"])],
             codes={2})


def probe_data(p, base):
    cat = "hostile data files"
    ckpt, hf, text = base["ckpt"], base["hf"], base["text"]

    # Tasks and outputs for distill verify.
    outputs = p.write("data/outputs.jsonl", '{"id": "t1", "completion": "42"}\n')
    tasks = {
        "tasks: a line that is not an object": '[1, 2]\n',
        "tasks: invalid JSON": '{"id": "t1", "prompt": \n',
        "tasks: invalid UTF-8": b'{"id": "t1", "prompt": "\xff", "answer": "42"}\n',
        "tasks: huge number": '{"id": "t1", "prompt": "p", "answer": 1e999999}\n',
        "tasks: deep nesting": '{"id": "t1", "prompt": ' + "[" * 100000 + "]" * 100000 + "}\n",
        "tasks: no verifier field": '{"id": "t1", "prompt": "p"}\n',
        "tasks: invalid regex": '{"id": "t1", "prompt": "p", "pattern": "(unclosed"}\n',
        "tasks: duplicate ids": '{"id": "t1", "prompt": "p", "answer": "1"}\n{"id": "t1", "prompt": "q", "answer": "2"}\n',
    }
    for name, body in tasks.items():
        path = p.write(f"data/{abs(hash(name))}.tasks.jsonl", body)
        p.refuse(cat, name, ["verify", "--tasks", path, "--outputs", outputs], codes={2, 65}, mentions=path)
    big = p.write("data/big.tasks.jsonl", '{"id": "t1", "prompt": "' + "x" * (3 << 20) + '", "answer": "42"}\n')
    p.succeed(cat, "tasks: a 3 MB line is read", ["verify", "--tasks", big, "--outputs", outputs, "--json"],
              check=lambda out: json.loads(out)["summary"]["correct"] == 1)
    p.refuse(cat, "tasks: empty file", ["verify", "--tasks", p.write("data/empty.jsonl", ""), "--outputs", outputs],
             codes={2, 65})
    good_tasks = p.write("data/good.tasks.jsonl", '{"id": "t1", "prompt": "p", "answer": "42"}\n')
    for name, body in {"outputs: not objects": "1\n2\n", "outputs: invalid UTF-8": b'{"id": "t1", "completion": "\xff"}\n'}.items():
        path = p.write(f"data/{abs(hash(name))}.out.jsonl", body)
        p.refuse(cat, name, ["verify", "--tasks", good_tasks, "--outputs", path], codes={2, 65}, mentions=path)

    # SFT data through an sft stage on the small checkpoint.
    sft_rows = {
        "sft: empty file": "",
        "sft: blank lines": "\n\n   \n",
        "sft: rows without fields": '{"x": 1}\n' * 5,
        "sft: wrong types": '{"prompt": 1, "completion": [2]}\n' * 5,
        "sft: invalid JSON": '{"prompt": "a", "completion": \n',
    }
    for name, body in sft_rows.items():
        data = p.write(f"data/{abs(hash(name))}.sft.jsonl", body)
        r = p.write(f"data/{abs(hash(name))}.json", recipe(
            os.path.join(p.root, f"sft-{abs(hash(name))}"),
            {"type": "sft", "model": ckpt, "data": {"train": data}, "training": {"steps": 2, "batch_size": 2, "seq_len": 32}}))
        p.refuse(cat, name, ["run", r], codes={2, 65}, mentions=data)
    # Whitespace-only rows are valid (if useless) examples: trained on, or refused, never a crash.
    data = p.write("data/ws.sft.jsonl", '{"prompt": "   ", "completion": "   "}\n' * 5)
    r = p.write("data/ws.json", recipe(os.path.join(p.root, "sft-ws"), {
        "type": "sft", "model": ckpt, "data": {"train": data}, "training": {"steps": 2, "batch_size": 2, "seq_len": 32}}))
    p.succeed(cat, "sft: whitespace-only rows", ["run", r])

    # tokenizer.json, config.json and safetensors in copies of the exported HF directory.
    def hf_copy(name, **files):
        d = os.path.join(p.root, "hf-copies", str(abs(hash(name))))
        shutil.copytree(hf, d)
        for fname, content in files.items():
            p.write(os.path.join(d, fname.replace("_", ".")), content)
        return d

    with open(os.path.join(hf, "tokenizer.json")) as f:
        tok = json.load(f)
    with open(os.path.join(hf, "config.json")) as f:
        config = json.load(f)

    def tok_with(change):
        t = json.loads(json.dumps(tok))
        change(t)
        return json.dumps(t)

    def big_id(t):
        t["model"]["vocab"]["zzzz"] = 10 ** 6

    def bad_added(t):
        t["added_tokens"].append({"id": -1, "content": "<x>", "special": True})

    def bad_merge(t):
        t["model"]["merges"].append("qqqq zzzz")

    tokenizer_cases = {
        "tokenizer.json: truncated": json.dumps(tok)[:500],
        "tokenizer.json: not an object": "[]",
        "tokenizer.json: an id beyond the vocabulary": tok_with(big_id),
        "tokenizer.json: a negative added token id": tok_with(bad_added),
        "tokenizer.json: a merge of unknown tokens": tok_with(bad_merge),
    }
    for name, content in tokenizer_cases.items():
        d = hf_copy(name, tokenizer_json=content)
        p.refuse(cat, name, ["import", "hf", d, "-o", os.path.join(d, "out.h5")], codes={2, 65})

    config_cases = {}
    for key, value in [("num_hidden_layers", 10 ** 9), ("hidden_size", -1), ("vocab_size", "x"),
                       ("max_position_embeddings", 10 ** 18), ("intermediate_size", 0), ("num_attention_heads", 7),
                       ("rope_theta", -1)]:
        c = json.loads(json.dumps(config))
        c[key] = value
        if key == "rope_theta" and "rope_parameters" in c:
            c["rope_parameters"]["rope_theta"] = value  # it takes precedence over the top level
        config_cases[f"config.json: {key}={value}"] = json.dumps(c)
    config_cases["config.json: NaN"] = json.dumps(config).replace(str(config.get("rms_norm_eps")), "NaN")
    config_cases["config.json: not JSON"] = "{"
    for name, content in config_cases.items():
        d = hf_copy(name, config_json=content)
        p.refuse(cat, name, ["import", "hf", d, "-o", os.path.join(d, "out.h5")], codes={2, 65})

    header, data = read_safetensors(os.path.join(hf, "model.safetensors"))
    meta = {k: v for k, v in header.items() if k != "__metadata__"}
    first = sorted(meta, key=lambda k: meta[k]["data_offsets"][0])[0]

    def st(change=None, payload=None, length=None):
        h = json.loads(json.dumps(header))
        if change:
            change(h)
        raw = safetensors_bytes(h, payload if payload is not None else data)
        if length is not None:
            raw = struct.pack("<Q", length) + raw[8:]
        return raw

    def set_first(key, value):
        def change(h):
            h[first][key] = value
        return change

    nan = bytearray(data)
    nan[meta[first]["data_offsets"][0]:meta[first]["data_offsets"][0] + 4] = struct.pack("<f", float("nan"))
    safetensors_cases = {
        "safetensors: header length 2^62": st(length=1 << 62),
        "safetensors: offsets beyond the file": st(set_first("data_offsets", [0, 10 ** 12])),
        "safetensors: negative shape": st(set_first("shape", [-1, 32])),
        "safetensors: unknown dtype": st(set_first("dtype", "F7")),
        "safetensors: shape and offsets disagree": st(set_first("shape", [3, 3])),
        "safetensors: truncated data": st(payload=data[: len(data) // 2]),
        "safetensors: NaN weights": st(payload=bytes(nan)),
        "safetensors: header not JSON": struct.pack("<Q", 8) + b"{{{{{{{{" + data,
    }
    for name, content in safetensors_cases.items():
        d = hf_copy(name, model_safetensors=content)
        p.refuse(cat, name, ["import", "hf", d, "-o", os.path.join(d, "out.h5")], codes={2, 65})

    # A model larger than memory, declared by a sparse safetensors file (no disk used).
    d = os.path.join(p.root, "hf-huge")
    os.makedirs(d)
    V, H, L, F = 32000, 8192, 48, 22016
    c = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": V, "hidden_size": H,
         "intermediate_size": F, "num_hidden_layers": L, "num_attention_heads": 64, "num_key_value_heads": 8,
         "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "tie_word_embeddings": False}
    p.write("hf-huge/config.json", json.dumps(c))
    shapes = [("model.embed_tokens.weight", [V, H]), ("lm_head.weight", [V, H]), ("model.norm.weight", [H])]
    for i in range(L):
        q = f"model.layers.{i}."
        shapes += [(q + "self_attn.q_proj.weight", [H, H]), (q + "self_attn.k_proj.weight", [1024, H]),
                   (q + "self_attn.v_proj.weight", [1024, H]), (q + "self_attn.o_proj.weight", [H, H]),
                   (q + "mlp.gate_proj.weight", [F, H]), (q + "mlp.up_proj.weight", [F, H]),
                   (q + "mlp.down_proj.weight", [H, F]), (q + "input_layernorm.weight", [H]),
                   (q + "post_attention_layernorm.weight", [H])]
    h, off = {}, 0
    for n, s in shapes:
        count = 1
        for x in s:
            count *= x
        h[n] = {"dtype": "F32", "shape": s, "data_offsets": [off, off + 4 * count]}
        off += 4 * count
    raw = safetensors_bytes(h, b"")
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(raw)
        f.truncate(len(raw) + off)
    for name, args in [("import", ["import", "hf", d, "-o", os.path.join(d, "out.h5")]),
                       ("eval", ["eval", "--checkpoint", d, "--text", text]),
                       ("generate", ["generate", "--checkpoint", d, "--prompt", "a"])]:
        p.refuse(cat, f"a 126 GB model ({name})", args, codes={2}, mentions=d)
    os.remove(os.path.join(d, "model.safetensors"))

    # A tiny model and batches the memory budget cannot hold (DISTILL_MEMORY_LIMIT).
    small = {"DISTILL_MEMORY_LIMIT": "600K"}
    p.refuse(cat, "eval beyond the memory budget", ["eval", "--checkpoint", ckpt, "--text", text], env=small, codes={2})
    p.refuse(cat, "eval --seq-len beyond the model", ["eval", "--checkpoint", ckpt, "--text", text, "--seq-len", "100000"], codes={2})
    p.refuse(cat, "generate --max-tokens 10^12", ["generate", "--checkpoint", ckpt, "--prompt", "a", "--max-tokens", str(10 ** 12)],
             codes={2})


def probe_bitflips(p, base, flips):
    ckpt = base["ckpt"]
    with open(ckpt, "rb") as f:
        data = f.read()
    # The HDF5 metadata sits in the first KiBs after the 512-byte seal and at the end of the
    # file (heaps, B-trees, the last object headers); the rest is tensor data.
    rng = random.Random(7)
    regions = {
        "bit flips (metadata)": lambda: rng.choice([rng.randrange(0, min(8192, len(data))),
                                                    rng.randrange(max(0, len(data) - 8192), len(data))]),
        "bit flips (data)": lambda: rng.randrange(8192, max(8193, len(data) - 8192)),
    }
    for cat, pick in regions.items():
        for k in range(flips):
            offset = pick()
            damaged = bytearray(data)
            damaged[offset] ^= 1 << rng.randrange(8)
            path = p.write("flips/damaged.h5", bytes(damaged))
            args = [["inspect", path], ["eval", "--checkpoint", path, "--text", base["text"]],
                    ["generate", "--checkpoint", path, "--prompt", "a", "--max-tokens", "2"]][k % 3]
            p.refuse(cat, f"byte {offset}", args, codes={65}, mentions=path)
    # A damaged checkpoint whose commit left a .prev falls back to it; without one, no
    # previous checkpoint is suggested.
    d = os.path.join(p.root, "flips", "fallback")
    os.makedirs(d, exist_ok=True)
    target = os.path.join(d, "m.h5")
    damaged = bytearray(data)
    damaged[600] ^= 0x10
    with open(target, "wb") as f:
        f.write(damaged)
    code, err = p.refuse("bit flips (metadata)", "no .prev: no previous suggested", ["inspect", target], codes={65})
    if "previous" in err:
        p.record("bit flips (metadata)", "message suggests a previous checkpoint", "silently wrong", err.strip()[:200])
    shutil.copy(ckpt, target + ".prev")
    p.succeed("bit flips (metadata)", "falls back to .prev", ["eval", "--checkpoint", target, "--text", base["text"]],
              check=lambda out: "loss" in out)


def tensor_checksums(p, path):
    code, out, _ = p.run(["inspect", path, "--json", "--tensors"])
    if code != 0:
        return None
    report = json.loads(out)
    return [(t["path"], t["checksum"]) for t in report["tensors"]], report["step"]


def probe_kills(p, kills):
    cat = "kill -9 and resume"
    stage = pretrain_stage(steps=300, checkpoint_every=7)
    reference_dir = os.path.join(p.root, "kill-reference")
    ref = p.write("kill/reference.json", recipe(reference_dir, stage))
    started = time.time()
    code, _, err = p.run(["run", ref], env={"DISTILL_THREADS": "1"}, timeout=300)
    duration = time.time() - started
    if code != 0:
        p.notes.append(f"[{cat}] the uninterrupted run failed: {err.strip()[-300:]}")
        return
    expected = tensor_checksums(p, os.path.join(reference_dir, "pretrain.h5"))
    with open(os.path.join(reference_dir, "pretrain.metrics.jsonl")) as f:
        expected_metrics = f.read()
    rng = random.Random(11)
    midway = 0
    for k in range(kills):
        run_dir = os.path.join(p.root, f"kill-{k}")
        r = p.write(f"kill/{k}.json", recipe(run_dir, stage))
        env = dict(os.environ, DISTILL_THREADS="1")
        proc = subprocess.Popen([p.binary, "run", r], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(rng.uniform(0.05, 0.95) * duration)
        if proc.poll() is None:
            midway += 1
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        code, _, err = p.run(["run", r], env={"DISTILL_THREADS": "1"}, timeout=300)
        final = os.path.join(run_dir, "pretrain.h5")
        if code is None:
            p.record(cat, f"kill {k}", "hung")
        elif code < 0:
            p.record(cat, f"kill {k}", "crashed", f"signal {-code} on resume")
        elif code != 0 or not os.path.exists(final):
            p.record(cat, f"kill {k}", "data lost", f"exit {code}: {err.strip()[-200:]}")
        else:
            with open(os.path.join(run_dir, "pretrain.metrics.jsonl")) as f:
                metrics = f.read()
            if tensor_checksums(p, final) != expected or metrics != expected_metrics:
                p.record(cat, f"kill {k}", "silently wrong", "resumed run differs from the uninterrupted one")
            else:
                p.record(cat, f"kill {k}", "clean")
    p.notes.append(f"[{cat}] {midway} of {kills} kills landed while the run was going (an uninterrupted run takes "
                   f"{duration:.1f} s); every resumed run is compared with it, tensor checksums and metrics log")


def probe_fifo(p, base):
    cat = "FIFO as a data file"
    fifo = os.path.join(p.root, "fifo")
    os.mkfifo(fifo)
    good_tasks = p.write("fifo-tasks.jsonl", '{"id": "t1", "prompt": "p", "answer": "42"}\n')
    cases = {
        "recipe": ["run", fifo, "--dry-run"],
        "tasks": ["verify", "--tasks", fifo, "--outputs", good_tasks],
        "outputs": ["verify", "--tasks", good_tasks, "--outputs", fifo],
        "eval --text": ["eval", "--checkpoint", base["ckpt"], "--text", fifo],
        "checkpoint": ["inspect", fifo],
        "generate --checkpoint": ["generate", "--checkpoint", fifo, "--prompt", "a"],
        "sft data": ["run", p.write("fifo-sft.json", recipe(os.path.join(p.root, "fifo-run"), {
            "type": "sft", "model": base["ckpt"], "data": {"train": fifo}, "training": {"steps": 1, "batch_size": 2,
                                                                                       "seq_len": 32}}))],
    }
    for name, args in cases.items():
        p.refuse(cat, name, args, codes={2, 65, 74}, mentions=fifo)


def probe_regexes(p, base):
    cat = "catastrophic regexes"
    a = "a" * 30000
    patterns = [r"(a+)+$", r"(a|aa)+$", r"(a*)*b", r"(.*a){20}", r"^(\w+\s?)+$", r"(a|a?)+c", r"\s*\s*\s*\s*x"]
    for pattern in patterns:
        tasks = p.write("re/tasks.jsonl", json.dumps({"id": "t1", "prompt": "p", "pattern": pattern}) + "\n")
        outputs = p.write("re/outputs.jsonl", json.dumps({"id": "t1", "completion": a + "b!"}) + "\n")

        def wrong(out):
            return json.loads(out)["summary"]["correct"] == 0

        p.succeed(cat, f"task pattern {pattern}", ["verify", "--tasks", tasks, "--outputs", outputs, "--json",
                                                    "--mode", "full"], check=wrong)
        extract = p.write("re/extract.jsonl", json.dumps({"id": "t1", "prompt": "p", "answer": "1"}) + "\n")
        p.succeed(cat, f"extract_pattern {pattern}", ["verify", "--tasks", extract, "--outputs", outputs, "--json",
                                                       "--verifier", "exact", "--extract", "regex", "--extract-pattern", pattern],
                  check=wrong)
    for pattern, name in [(r"(a)\1", "backreference"), (r"(?>a+)", "atomic group")]:
        tasks = p.write("re/refused.jsonl", json.dumps({"id": "t1", "prompt": "p", "pattern": pattern}) + "\n")
        p.refuse(cat, f"task pattern {pattern} ({name})", ["verify", "--tasks", tasks, "--outputs", tasks], codes={65},
                 mentions=tasks)

    # A tokenizer.json Split with catastrophic patterns, used to score a hostile text.
    hf = base["hf"]
    with open(os.path.join(hf, "tokenizer.json")) as f:
        tok = json.load(f)
    text = p.write("re/text.txt", a + "b c " * 3)
    for pattern in [r"(a+)+$", r"(a|aa)+b|\s+", r"(\w+\s?)+$"]:
        d = os.path.join(p.root, "re", f"hf-{abs(hash(pattern))}")
        shutil.copytree(hf, d)
        t = json.loads(json.dumps(tok))
        t["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False},
            t["pre_tokenizer"] or {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]}
        p.write(os.path.join(d, "tokenizer.json"), json.dumps(t))
        p.succeed(cat, f"tokenizer Split {pattern}", ["eval", "--checkpoint", d, "--text", text, "--batches", "1"],
                  check=lambda out: "loss" in out)
    d = os.path.join(p.root, "re", "hf-backref")
    shutil.copytree(hf, d)
    t = json.loads(json.dumps(tok))
    t["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": r"(\w)\1"}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]}
    p.write(os.path.join(d, "tokenizer.json"), json.dumps(t))
    p.refuse(cat, "tokenizer Split (\\w)\\1", ["eval", "--checkpoint", d, "--text", text], codes={65},
             mentions="pre_tokenizer.pretokenizers[0].pattern.Regex")


def probe_nonfinite(p, base):
    cat = "NaN and huge sizes"
    run_dir = os.path.join(p.root, "nan-run")
    r = p.write("nan/recipe.json", recipe(run_dir, pretrain_stage(steps=6, checkpoint_every=1, lr=1e30)))
    code, err = p.refuse(cat, "lr 1e30 (non-finite loss)", ["run", r], codes={65})
    final = os.path.join(run_dir, "pretrain.h5")
    if os.path.exists(final):
        c, out, _ = p.run(["eval", "--checkpoint", final, "--text", base["text"]])
        if c != 0 or "nan" in out.lower():
            p.record(cat, "the checkpoint left by a NaN run", "data lost", f"exit {c}: {out.strip()[:100]}")
        else:
            p.record(cat, "the checkpoint left by a NaN run", "clean")
    for args, name in [
        (["generate", "--checkpoint", base["ckpt"], "--prompt", "a", "--temperature", "nan"], "temperature NaN"),
        (["generate", "--checkpoint", base["ckpt"], "--prompt", "a", "--top-p", "2"], "top-p 2"),
        (["eval", "--checkpoint", base["ckpt"], "--text", base["text"], "--seq-len", "-1"], "seq-len -1"),
        (["eval", "--checkpoint", base["ckpt"], "--text", base["text"], "--batches", "0"], "batches 0"),
        (["--threads", "100000", "doctor"], "threads 100000"),
    ]:
        p.refuse(cat, name, args, codes={2})
    p.succeed(cat, "eval of a clean checkpoint", ["eval", "--checkpoint", base["ckpt"], "--text", base["text"]],
              check=lambda out: "loss" in out and "nan" not in out.lower())


def setup(p):
    run_dir = os.path.join(p.root, "base-run")
    r = p.write("base.json", recipe(run_dir, pretrain_stage()))
    code, _, err = p.run(["run", r], timeout=300)
    if code != 0:
        sys.exit(f"setup: the base pretraining run failed ({code}): {err[-500:]}")
    ckpt = os.path.join(run_dir, "pretrain.h5")
    hf = os.path.join(p.root, "base-hf")
    code, _, err = p.run(["export", "hf", ckpt, "-o", hf])
    if code != 0:
        sys.exit(f"setup: export hf failed ({code}): {err[-500:]}")
    text = p.write("text.txt", CORPUS[:2000])
    return {"ckpt": ckpt, "hf": hf, "text": text}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default=".build/release/distill")
    parser.add_argument("--quick", action="store_true", help="fewer bit flips and kills (about a minute)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--timeout", type=float, default=30, help="seconds per case")
    args = parser.parse_args()
    binary = os.path.abspath(args.binary)
    if not os.access(binary, os.X_OK):
        sys.exit(f"{binary} is not an executable; build it with `swift build -c release`")
    root = tempfile.mkdtemp(prefix="distill-probe-")
    p = Probe(binary, root, args.timeout)
    started = time.time()
    try:
        base = setup(p)
        probe_recipes(p)
        probe_data(p, base)
        probe_bitflips(p, base, flips=15 if args.quick else 150)
        probe_kills(p, kills=2 if args.quick else 8)
        probe_fifo(p, base)
        probe_regexes(p, base)
        probe_nonfinite(p, base)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    width = max(len(c) for c in p.results)
    header = f"| {'category'.ljust(width)} | attempted | " + " | ".join(OUTCOMES) + " |"
    print(header)
    print("|" + "|".join("-" * (len(part)) for part in header.split("|")[1:-1]) + "|")
    totals = {k: 0 for k in OUTCOMES}
    for category, counts in p.results.items():
        attempted = sum(counts.values())
        print(f"| {category.ljust(width)} | {attempted:9d} | " + " | ".join(f"{counts[k]:{len(k)}d}" for k in OUTCOMES) + " |")
        for k in OUTCOMES:
            totals[k] += counts[k]
    print(f"| {'total'.ljust(width)} | {sum(totals.values()):9d} | " + " | ".join(f"{totals[k]:{len(k)}d}" for k in OUTCOMES) + " |")
    print(f"\n{time.time() - started:.0f} s, binary {binary}")
    for note in p.notes:
        print(note)
    return 1 if any(totals[k] for k in OUTCOMES if k != "clean") else 0


if __name__ == "__main__":
    sys.exit(main())
