"""PyTorch peer for `distill bench kernels`' attention figure.

Times causal grouped-query attention forward and forward+backward at the shape distill
benchmarks (B=16, T=256, 8 query heads, 2 KV heads, head dim 32) with
torch.nn.functional.scaled_dot_product_attention (enable_gqa=True) and with the eager
repeat_kv + softmax formulation transformers uses, on 2 threads. Run it right before or
after `distill bench kernels` so both see the same machine load:

    /tmp/distill-ref/bin/python tools/bench_attention.py [--repeats 10]
"""

import argparse
import json
import time

import torch


def median_ms(fn, repeats):
    fn()
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1e3)
    samples.sort()
    return samples[len(samples) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    b, t, h, g, d = 16, 256, 8, 2, 32
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(b, h, t, d, generator=gen, requires_grad=True)
    k = torch.randn(b, g, t, d, generator=gen, requires_grad=True)
    v = torch.randn(b, g, t, d, generator=gen, requires_grad=True)
    seed = torch.randn(b, h, t, d, generator=gen)
    mask = torch.full((t, t), float("-inf")).triu(1)

    def sdpa():
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    def eager():
        kk = k.repeat_interleave(h // g, dim=1)
        vv = v.repeat_interleave(h // g, dim=1)
        p = torch.softmax(q @ kk.transpose(-1, -2) / d**0.5 + mask, dim=-1)
        return p @ vv

    out = {"shape": f"B={b} T={t} H={h} G={g} D={d}", "threads": args.threads, "torch": torch.__version__}
    for name, fn in [("sdpa", sdpa), ("eager", eager)]:
        with torch.no_grad():
            fwd = median_ms(fn, args.repeats)

        def both():
            q.grad = k.grad = v.grad = None
            fn().backward(seed)

        out[name] = {"forwardMs": round(fwd, 2), "forwardBackwardMs": round(median_ms(both, args.repeats), 2)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
