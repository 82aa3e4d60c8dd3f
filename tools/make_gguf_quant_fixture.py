"""Make the GGUF dequantization fixture for Tests/FormatsTests: one small tensor per type
distill converts to Float32, written by gguf-py (llama.cpp's own Python package), with the
values gguf-py's `gguf.quants.dequantize` returns for it, so distill's block decoders are
checked bit for bit against an independent implementation.

Writes into Tests/FormatsTests/Fixtures/gguf/:
  quants.gguf   F32, F16, BF16, F64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 ([4, 64]: 8 blocks of
                32) and Q2_K, Q3_K, Q4_K, Q5_K, Q6_K ([5, 256]: 5 blocks of 256), plus an
                IQ2_XXS and a Q8_K tensor of random bytes that distill must refuse
  quants.json   per tensor its shape, ggml type id and the expected Float32 values as bit
                patterns in row-major order; "refused" lists the tensors distill refuses

How the blocks are made:
  - Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and BF16: gguf-py's own quantizer on random normal rows
    (row 1 scaled by 1000), then three blocks overwritten with edge blocks (below).
  - Q2_K ... Q6_K (gguf-py has no K-quantizer): random block bytes with the fp16 scale
    fields (d, and dmin where the type has one) replaced by finite, moderate values, so the
    expected values are finite and the scales realistic; the last three blocks are edges.
  - Edge blocks: (1) d = 0 with dmin an fp16 subnormal; (2) d and dmin negative and every
    other byte 0xFF (largest nibbles and sub-block scales); (3) d = 65504 (the largest
    fp16) with every other byte 0.
  - F16: random values, every subnormal class, signed zeros, infinities, quiet and
    signalling NaNs, the largest finite half; BF16 gets the same kinds of special bits.
  - F64 is not in gguf-py's dequantize; its expected values are numpy's float32 cast
    (round to nearest even), which is what distill's conversion must give too.

    /tmp/gguf-venv/bin/python tools/make_gguf_quant_fixture.py

Needs gguf 0.19.0 and numpy (the venv above). Deterministic (fixed seed). The block layouts
are ggml's (see Sources/Formats/GGUFQuants.swift); the code here is written for distill.
"""
import json, os

import gguf
import numpy as np
from gguf.quants import dequantize, quantize

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "Tests", "FormatsTests", "Fixtures", "gguf")
T = gguf.GGMLQuantizationType

# Byte offsets of the fp16 scale fields inside one block: (d, dmin or None).
SCALES = {
    T.Q4_0: (0, None), T.Q4_1: (0, 2), T.Q5_0: (0, None), T.Q5_1: (0, 2), T.Q8_0: (0, None),
    T.Q2_K: (80, 82), T.Q3_K: (108, None), T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208, None),
}


def f32_bits(a):
    return np.ascontiguousarray(a, dtype=np.float32).reshape(-1).view(np.uint32).tolist()


def half_bytes(x):
    return np.array([x], dtype=np.float16).view(np.uint8)


def set_scales(block, qtype, d, dmin):
    d_at, m_at = SCALES[qtype]
    block[d_at:d_at + 2] = half_bytes(d)
    if m_at is not None:
        block[m_at:m_at + 2] = half_bytes(dmin)


def edge_blocks(qtype):
    _, size = gguf.GGML_QUANT_SIZES[qtype]
    zero_scale = np.random.default_rng(7).integers(0, 256, size, dtype=np.uint8)
    set_scales(zero_scale, qtype, 0.0, 0)
    d_at, m_at = SCALES[qtype]
    if m_at is not None:
        zero_scale[m_at:m_at + 2] = np.array([0x03, 0x02], dtype=np.uint8)  # fp16 0x0203, a subnormal
    negative = np.full(size, 0xFF, dtype=np.uint8)
    set_scales(negative, qtype, -0.0123, -0.0456)
    largest = np.zeros(size, dtype=np.uint8)
    set_scales(largest, qtype, 65504.0, 65504.0)
    return [zero_scale, negative, largest]


def quantized_tensor(rng, qtype):
    """gguf-py's quantizer on [4, 64] random normal values, blocks 4-6 replaced by edges."""
    data = rng.standard_normal((4, 64)).astype(np.float32)
    data[1] *= 1000
    raw = quantize(data, qtype)  # uint8 [4, 2 * type_size]
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    blocks = raw.reshape(-1, size)
    for i, edge in zip([4, 5, 6], edge_blocks(qtype)):
        blocks[i] = edge
    return blocks.reshape(raw.shape)


def k_quant_tensor(rng, qtype):
    """Five blocks of 256: two random with moderate scales, then the three edges."""
    _, size = gguf.GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, (5, size), dtype=np.uint8)
    for i in range(2):
        d = rng.uniform(0.002, 0.05) * rng.choice([-1, 1]) if qtype in (T.Q3_K, T.Q6_K) else rng.uniform(0.002, 0.05)
        set_scales(blocks[i], qtype, d, rng.uniform(0.001, 0.03))
    blocks[2:] = edge_blocks(qtype)
    return blocks


def f16_tensor(rng):
    special = np.array([
        0x0000, 0x8000, 0x0001, 0x8001, 0x0200, 0x03FF, 0x83FF, 0x0400, 0x7BFF, 0xFBFF,
        0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7C01, 0x7D55, 0x3C00, 0xBC00,
    ], dtype=np.uint16)
    values = (rng.standard_normal(46) * 10).astype(np.float16).view(np.uint16)
    return np.concatenate([special, values]).view(np.float16)  # [64]


def bf16_tensor(rng):
    data = rng.standard_normal((2, 32)).astype(np.float32)
    bits = quantize(data, T.BF16).view(np.uint16).reshape(-1).copy()
    bits[:10] = [0x0000, 0x8000, 0x0001, 0x807F, 0x7F80, 0xFF80, 0x7FC0, 0x7F81, 0x7F7F, 0x0080]
    return bits.view(np.uint8).reshape(2, 64)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261205)
    path = os.path.join(OUT, "quants.gguf")
    w = gguf.GGUFWriter(path, arch="distill-test")
    expected = {}

    def add(name, qtype, raw, shape=None):
        if qtype in (T.F32, T.F16, T.F64):
            w.add_tensor(name, raw)
            with np.errstate(over="ignore"):  # F64 values beyond float32's range become infinities
                values = raw.astype(np.float32) if qtype == T.F64 else dequantize(raw.view(np.uint8), qtype)
        else:
            w.add_tensor(name, raw, raw_dtype=qtype)
            values = dequantize(raw, qtype)
        assert values.dtype == np.float32
        expected[name] = {"shape": list(values.shape), "type": int(qtype), "bits": f32_bits(values)}

    f32 = rng.standard_normal((2, 4)).astype(np.float32)
    f32.reshape(-1)[:3] = [np.inf, -0.0, np.float32(1e-40)]
    add("f32", T.F32, f32)
    add("f16", T.F16, f16_tensor(rng))
    add("bf16", T.BF16, bf16_tensor(rng))
    add("f64", T.F64, np.array([0.1, -1e300, 1e-320, 3.0000001, -2.5, 1e38 * 4, 0.0, np.pi]))
    for qtype in [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]:
        add(qtype.name.lower(), qtype, quantized_tensor(rng, qtype))
    for qtype in [T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]:
        add(qtype.name.lower(), qtype, k_quant_tensor(rng, qtype))
    for qtype in [T.IQ2_XXS, T.Q8_K]:
        _, size = gguf.GGML_QUANT_SIZES[qtype]
        w.add_tensor(qtype.name.lower(), rng.integers(0, 256, (1, size), dtype=np.uint8), raw_dtype=qtype)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    for name, e in expected.items():
        finite = np.isfinite(np.array(e["bits"], dtype=np.uint32).view(np.float32))
        if name.startswith("q"):
            assert finite.all(), name  # moderate scales: every quantized value is finite
    with open(os.path.join(OUT, "quants.json"), "w") as f:
        json.dump({"tensors": expected, "refused": ["iq2_xxs", "q8_k"]}, f, separators=(",", ":"))
        f.write("\n")
    for name in ["quants.gguf", "quants.json"]:
        print(name, os.path.getsize(os.path.join(OUT, name)))


if __name__ == "__main__":
    main()
