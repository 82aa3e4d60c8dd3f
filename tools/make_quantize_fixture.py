"""Make the quantization fixture for Tests/CoreTests (PackedMatrixTests): rows of Float32 values
and the bytes gguf-py's own quantizers (llama.cpp's Python package) make of them in Q8_0, Q4_0
and Q4_1, so distill's quantizers are checked byte for byte against an independent
implementation of ggml's reference ones.

Writes Tests/CoreTests/Fixtures/quantize.json: "source" the values as Float32 bit patterns
([rows, cols] row-major), and per format its name and the quantized bytes as hex.

Rows: random normal values at several scales, then edge blocks: all zeros; a constant block
(Q4_1's d = 0); values whose scaled form is exactly k + 1/2 (the rounding direction); a block
whose largest magnitude is negative (Q4_0's sign); a single non-zero value; repeated extremes
of both signs (which one sets the scale); values near f16's largest finite scale.

    /tmp/gguf-venv/bin/python tools/make_quantize_fixture.py

Needs gguf 0.19.0 and numpy. Deterministic (fixed seed).
"""
import json, os

import numpy as np
from gguf.constants import GGMLQuantizationType as T
from gguf.quants import quantize

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "Tests", "CoreTests", "Fixtures", "quantize.json")
COLS = 64  # two blocks per row


def main():
    rng = np.random.default_rng(7)
    rows = [rng.standard_normal(COLS) * s for s in (1, 0.01, 30, 1e-4)]
    edges = [
        np.zeros(32),
        np.full(32, 0.75),
        np.array([0.5, 1.5, -2.5, 127, -126.5, 63.5] + [0.25 * i for i in range(26)]),  # amax 127: x * id = x
        np.concatenate([[-9.0], rng.uniform(-8, 8, 31)]),
        np.concatenate([[3.0], np.zeros(31)]),
        np.array([5.0, -5.0] * 16),
        np.concatenate([[60000.0, -65000.0], rng.uniform(-1000, 1000, 30)]),
        np.linspace(-1, 1, 32),
    ]
    rows += [np.concatenate([edges[i], edges[i + 1]]) for i in range(0, len(edges), 2)]
    source = np.array(rows, dtype=np.float32)
    out = {"shape": list(source.shape), "source": source.reshape(-1).view(np.uint32).tolist(), "formats": {}}
    for name, qtype in (("q8_0", T.Q8_0), ("q4_0", T.Q4_0), ("q4_1", T.Q4_1)):
        out["formats"][name] = quantize(source, qtype).tobytes().hex()
    with open(OUT, "w") as f:
        json.dump(out, f)
    print(f"wrote {OUT}: {source.shape[0]} rows x {COLS}")


if __name__ == "__main__":
    main()
