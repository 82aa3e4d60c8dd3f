"""`distill serve` beside llama.cpp's OpenAI-compatible server (llama-cpp-python) on the same
GGUF file, both driven by the openai Python client: first the client's features (chat,
streaming, n > 1, tool calls) against distill, then throughput at several numbers of
concurrent clients, the two servers alternating level by level (the machine is shared and
noisy: compare ratios within a round, not absolute figures).

    /tmp/distill-ref/bin/python tools/bench_serve.py MODEL.gguf [--clients 1,4,16]
        [--requests-per-client 4] [--max-tokens 64] [--rounds 2] [--threads 2] [--json OUT]

Each client sends its requests one after another, streamed, each a different short chat
prompt at temperature 0.7 with a seed; time to first token is the time to the first content
chunk. Throughput is completion tokens over the wall time of the level: distill's usage
count, and for llama-cpp-python (which sends no usage chunk) its content chunks, one per token. Memory is the server's peak resident set (VmHWM) after the run.

llama-cpp-python's server runs one request at a time (requests queue behind a lock; it is
started with --interrupt_requests False, since by default a new request cuts off the one
streaming), and it refuses n > 1; distill batches concurrent requests token by token. Both use --threads cores.

Needs llama-cpp-python with its server extras and openai (pip), and a release build of
distill (`swift build -c release`).
"""
import argparse, json, os, socket, statistics, subprocess, sys, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISTILL = os.path.join(ROOT, ".build", "release", "distill")

PROMPTS = [
    "Write one sentence about the sea.", "Name three colours and a fruit.", "What is a prime number?",
    "Describe a cat in two sentences.", "Give me a tip for learning to cook.", "Why is the sky blue?",
    "Tell a very short story about a robot.", "What do bees make?", "List two uses of a hammer.",
    "How do plants get energy?", "Say something kind.", "What is the boiling point of water?",
    "Explain what a map is.", "Write a haiku about rain.", "What is 12 times 11?", "Who writes novels?",
]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather", "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(client, proc, timeout=180):
    start = time.time()
    while time.time() - start < timeout:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}")
        try:
            client.models.list()
            return
        except Exception:
            time.sleep(0.5)
    sys.exit("server did not become ready")


def start(kind, model, threads, port):
    if kind == "distill":
        cmd = [DISTILL, "serve", "--model", f"m={model}", "--port", str(port), "--threads", str(threads),
               "--max-batch", "16", "--context", "2048"]
    else:
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", model, "--model_alias", "m", "--port", str(port),
               "--n_threads", str(threads), "--n_threads_batch", str(threads), "--n_ctx", "2048",
               # By default a new request interrupts the one streaming: each must run to its end.
               "--interrupt_requests", "False"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def peak_rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def features(client):
    """What the openai client gets from distill serve, unchanged."""
    out = {}
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "What is the capital of France?"}],
                                       max_tokens=24, temperature=0)
    out["chat"] = {"content": r.choices[0].message.content, "finish_reason": r.choices[0].finish_reason,
                   "usage": r.usage.model_dump()}
    pieces = []
    stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Count to five."}],
                                            max_tokens=24, temperature=0, stream=True, stream_options={"include_usage": True})
    usage = None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage.model_dump()
    out["stream"] = {"chunks": len(pieces), "text": "".join(pieces), "usage": usage}
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Name an animal."}],
                                       max_tokens=12, temperature=0.9, n=3, seed=1)
    out["n3"] = [c.message.content for c in r.choices]
    # One earlier exchange in the conversation shows the model the call form (a 135M model
    # does not call tools from their description alone).
    r = client.chat.completions.create(
        model="m", tools=[WEATHER_TOOL], max_tokens=40, temperature=0,
        messages=[{"role": "user", "content": "What's the weather in London?"},
                  {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
                      "name": "get_weather", "arguments": "{\"city\": \"London\"}"}}]},
                  {"role": "tool", "tool_call_id": "c1", "content": "{\"temp_c\": 12}"},
                  {"role": "assistant", "content": "It is 12 degrees C in London."},
                  {"role": "user", "content": "What's the weather in Paris?"}])
    m = r.choices[0].message
    out["tools"] = {"finish_reason": r.choices[0].finish_reason, "content": m.content,
                    "tool_calls": [{"name": c.function.name, "arguments": json.loads(c.function.arguments)}
                                   for c in (m.tool_calls or [])]}
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                       logprobs=True, top_logprobs=2)
    out["logprobs"] = [(t.token, round(t.logprob, 3)) for t in r.choices[0].logprobs.content]
    return out


def one_level(client, clients, per_client, max_tokens):
    latencies, ttfts, tokens = [], [], [0]
    lock = threading.Lock()

    def worker(w):
        for i in range(per_client):
            prompt = PROMPTS[(w * per_client + i) % len(PROMPTS)]
            t0 = time.perf_counter()
            first = None
            used, pieces = 0, 0
            stream = client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0.7,
                seed=w * 100 + i, stream=True, stream_options={"include_usage": True})
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces += 1
                    if first is None:
                        first = time.perf_counter() - t0
                if chunk.usage:
                    used = chunk.usage.completion_tokens
            # llama-cpp-python sends no usage chunk, but one chunk per token.
            used = used or pieces
            with lock:
                latencies.append(time.perf_counter() - t0)
                ttfts.append(first if first is not None else latencies[-1])
                tokens[0] += used

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else latencies * 19
    return {"clients": clients, "requests": len(latencies), "completion_tokens": tokens[0], "wall_s": wall,
            "tokens_per_s": tokens[0] / wall, "ttft_p50_s": statistics.median(ttfts),
            "latency_p50_s": statistics.median(latencies), "latency_p95_s": q[18]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--requests-per-client", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args()
    import openai

    levels = [int(c) for c in args.clients.split(",")]
    servers = {}
    for kind in ["distill", "llama.cpp"]:
        port = free_port()
        proc = start(kind, args.model, args.threads, port)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=600)
        wait_ready(client, proc)
        servers[kind] = (proc, client)
    report = {"model": args.model, "features": features(servers["distill"][1]), "rounds": []}
    for _, client in servers.values():  # warm both up alike
        one_level(client, 2, 1, args.max_tokens)
    print(json.dumps(report["features"], indent=1))
    for r in range(args.rounds):
        for clients in levels:
            row = {}
            order = ["distill", "llama.cpp"] if (r + clients) % 2 == 0 else ["llama.cpp", "distill"]
            for kind in order:
                row[kind] = one_level(servers[kind][1], clients, args.requests_per_client, args.max_tokens)
            ratio = row["distill"]["tokens_per_s"] / row["llama.cpp"]["tokens_per_s"]
            report["rounds"].append({"round": r, "clients": clients, "ratio": ratio, **row})
            d, l = row["distill"], row["llama.cpp"]
            print(f"round {r} clients {clients:2d}: distill {d['tokens_per_s']:6.1f} tok/s (ttft {d['ttft_p50_s']:.2f}s, "
                  f"p50 {d['latency_p50_s']:.2f}s, p95 {d['latency_p95_s']:.2f}s) | llama.cpp {l['tokens_per_s']:6.1f} tok/s "
                  f"(ttft {l['ttft_p50_s']:.2f}s, p50 {l['latency_p50_s']:.2f}s, p95 {l['latency_p95_s']:.2f}s) | {ratio:.2f}x",
                  flush=True)
    for kind, (proc, _) in servers.items():
        report[f"{kind}_peak_rss_mib"] = peak_rss_mib(proc.pid)
        proc.terminate()
        proc.wait(timeout=60)
    print({k: v for k, v in report.items() if k.endswith("rss_mib")})
    for clients in levels:
        ratios = [x["ratio"] for x in report["rounds"] if x["clients"] == clients]
        print(f"clients {clients:2d}: median ratio {statistics.median(ratios):.2f}x over {len(ratios)} rounds")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
