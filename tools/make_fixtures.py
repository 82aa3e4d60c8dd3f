"""Golden forward/backward values for distill's tensor/autograd core (Sources/Core).

Produces two JSON files, read by the Swift tests in Tests/CoreTests:

  Tests/CoreTests/Fixtures/ops.json
      One case per (op, shapes, attributes) combination. Each case stores the float
      inputs, the integer inputs, a random upstream gradient dL/d(output), the forward
      output, and the gradient of sum(output * upstream) w.r.t. every float input
      (except those named in attrs["noGrad"]).

  Tests/CoreTests/Fixtures/llama_block.json
      One Hugging Face LlamaDecoderLayer (eager attention) with random weights: input,
      parameters (HF names, Linear weights stored [out, in]), upstream, output and the
      gradients w.r.t. the input and every parameter.

Tensor format: {"shape": [...], "data": [flat row-major values]}; a scalar has shape [].

Numerics: every input, weight and upstream gradient is drawn as float32 from a seeded
torch.Generator (so the Swift side can load it losslessly as Float), then converted to
float64; all references are computed in float64. The script is deterministic.

Self-checks (the script aborts if one fails):
  * "rope", "attention", "rmsnorm" and "cross_entropy" references (written here with
    plain explicit math) are compared, outputs and gradients, with transformers'
    own apply_rotary_pos_emb, eager_attention_forward + create_causal_mask (packed
    sequences via position ids), LlamaRMSNorm, and torch's cross_entropy.
  * The decoder block is recomputed from the same plain-math op references
    (RMSNorm -> q/k/v -> RoPE -> GQA causal attention -> o_proj -> residual ->
    RMSNorm -> SwiGLU MLP -> residual) and must match transformers to 1e-10.

  Caveat: transformers' Llama code upcasts to float32 internally whatever the model
  dtype (LlamaRMSNorm `.to(torch.float32)`, eager softmax `dtype=torch.float32`, RoPE
  tables built with `torch.float`), so a float64 model only agrees with float64 math to
  ~1e-7. For the exact comparisons, transformers code runs inside
  `hf_upcasts_in_float64()`, which temporarily aliases torch.float32/torch.float to
  float64 so those same code lines compute in float64 (transformers' source is not
  modified). The unmodified float32-upcasting path is also checked, at 1e-5.

Run from the repository root:
    /tmp/distill-ref/bin/python tools/make_fixtures.py

The environment (torch 2.15, transformers 5.23) is built by:
    ../shared/reference/setup.sh            # default location /tmp/distill-ref
"""

import contextlib
import json
import math
import types
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from transformers import LlamaConfig
from transformers.masking_utils import create_causal_mask
from transformers.models.llama import modeling_llama as hf_llama

SEED = 20240611
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "Tests" / "CoreTests" / "Fixtures"
GENERATOR = "tools/make_fixtures.py"

EXACT = 1e-10  # float64 vs float64 cross-checks
FLOAT32_PATH = 1e-5  # transformers' stock (float32-upcasting) path vs float64 math


# ---------------------------------------------------------------------------
# Random inputs (float32 draws from one seeded generator)
# ---------------------------------------------------------------------------

class Rand:
    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)

    def uniform(self, shape, lo=-1.0, hi=1.0):
        u = torch.rand(shape, generator=self.g, dtype=torch.float32)
        return (lo + (hi - lo) * u).to(torch.float32)

    def normal(self, shape, std=1.0, mean=0.0):
        return (mean + std * torch.randn(shape, generator=self.g, dtype=torch.float32)).to(torch.float32)

    def away_from_zero(self, shape, lo=0.05, hi=2.0):
        """Values with |v| in [lo, hi] and random sign (no kinks near 0 for relu)."""
        mag = self.uniform(shape, lo, hi)
        sign = torch.where(self.uniform(shape) < 0, -1.0, 1.0).to(torch.float32)
        return mag * sign

    def ints(self, shape, lo, hi):
        return torch.randint(lo, hi, shape, generator=self.g, dtype=torch.int64)


R = Rand(SEED)


# ---------------------------------------------------------------------------
# JSON helpers and the generic case builder
# ---------------------------------------------------------------------------

def tjson(t):
    t = t.detach().to(torch.float64).contiguous()
    return {"shape": list(t.shape), "data": [float(v) for v in t.reshape(-1).tolist()]}


def ijson(t):
    return {"shape": list(t.shape), "data": [int(v) for v in t.reshape(-1).tolist()]}


def run_with_grads(fn, inputs, ints, upstream, no_grad=()):
    """Forward fn in float64, backward sum(out * upstream); returns (out, grads)."""
    xs = {k: v.detach().to(torch.float64).requires_grad_(k not in no_grad) for k, v in inputs.items()}
    out = fn(**xs, **ints)
    (out * upstream.to(torch.float64)).sum().backward()
    grads = {k: x.grad for k, x in xs.items() if k not in no_grad}
    return out.detach(), grads


def assert_close(what, got, want, tol):
    err = (got.to(torch.float64) - want.to(torch.float64)).abs().max().item() if got.numel() else 0.0
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    assert err <= tol, f"{what}: max abs diff {err:.3e} > {tol:.0e}"
    return err


def cross_check(name, fn, other_fn, inputs, ints, upstream, tol, no_grad=()):
    """Outputs and gradients of two implementations must agree."""
    out_a, g_a = run_with_grads(fn, inputs, ints, upstream, no_grad)
    out_b, g_b = run_with_grads(other_fn, inputs, ints, upstream, no_grad)
    err = assert_close(f"{name} output", out_b, out_a, tol)
    for k in g_a:
        err = max(err, assert_close(f"{name} grad {k}", g_b[k], g_a[k], tol))
    return err


CASES = []


def case(name, op, fn, inputs, ints=None, attrs=None, no_grad=()):
    ints = ints or {}
    attrs = dict(attrs or {})
    if no_grad:
        attrs["noGrad"] = list(no_grad)
    with torch.no_grad():
        shape = fn(**{k: v.to(torch.float64) for k, v in inputs.items()}, **ints).shape
    upstream = R.normal(shape)
    out, grads = run_with_grads(fn, inputs, ints, upstream, no_grad)
    assert torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in grads.values()), name
    assert name not in {c["name"] for c in CASES}, f"duplicate case {name}"
    CASES.append({
        "name": name, "op": op, "attrs": attrs,
        "inputs": {k: tjson(v) for k, v in inputs.items()},
        "ints": {k: ijson(v) for k, v in ints.items()},
        "upstream": tjson(upstream),
        "output": tjson(out),
        "grads": {k: tjson(g) for k, g in grads.items()},
    })
    return upstream


@contextlib.contextmanager
def hf_upcasts_in_float64():
    """Make transformers' hard-coded float32 upcasts compute in float64 (see module doc)."""
    saved = (torch.float32, torch.float)
    torch.float32 = torch.float = torch.float64
    try:
        yield
    finally:
        torch.float32, torch.float = saved


# ---------------------------------------------------------------------------
# Plain-math references for the composite ops (also used for the Llama block)
# ---------------------------------------------------------------------------

def rmsnorm_ref(x, weight, eps):
    return weight * x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps)


def swiglu_ref(gate, up):
    return gate * torch.sigmoid(gate) * up


def rope_tables(positions, head_dim, theta):
    """cos, sin of shape [T, D] (HF layout: the D/2 frequencies repeated twice)."""
    i = torch.arange(head_dim // 2, dtype=torch.float64)
    inv_freq = 1.0 / theta ** (2.0 * i / head_dim)
    angle = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    return torch.cat([angle.cos(), angle.cos()], -1), torch.cat([angle.sin(), angle.sin()], -1)


def rope_ref(x, positions, theta):
    """x [B, T, H, D]; positions [T]."""
    d = x.shape[-1]
    cos, sin = rope_tables(positions, d, theta)
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    rotated = torch.cat([-x[..., d // 2:], x[..., : d // 2]], -1)
    return x * cos + rotated * sin


def attention_ref(q, k, v, scale, segments=None):
    """q [B,T,H,D], k/v [B,T,Hkv,D]; causal, GQA (query head h -> kv head h // (H/Hkv))."""
    b, t, h, _ = q.shape
    group = h // k.shape[2]
    kv_head = torch.arange(h) // group
    qh = q.permute(0, 2, 1, 3)  # [B,H,T,D]
    kh = k[:, :, kv_head].permute(0, 2, 1, 3)
    vh = v[:, :, kv_head].permute(0, 2, 1, 3)
    scores = (qh @ kh.transpose(-1, -2)) * scale  # [B,H,Tq,Tk]
    i = torch.arange(t)
    allowed = (i[None, :] <= i[:, None]).expand(b, t, t)
    if segments is not None:
        allowed = allowed & (segments[:, :, None] == segments[:, None, :])
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    scores = scores - scores.amax(-1, keepdim=True)
    p = scores.exp()
    p = p / p.sum(-1, keepdim=True)
    return (p @ vh).permute(0, 2, 1, 3)


def cross_entropy_ref(logits, targets, ignore_index=-100, weights=None):
    v = logits.shape[-1]
    lsm = torch.log_softmax(logits.reshape(-1, v), dim=-1)
    t = targets.reshape(-1)
    keep = t != ignore_index
    nll = -lsm[torch.arange(t.numel()), t.clamp(min=0)]
    w = torch.ones_like(nll) if weights is None else weights.reshape(-1)
    w = torch.where(keep, w, torch.zeros_like(w))
    return (w * nll).sum() / w.sum()


# ---------------------------------------------------------------------------
# Op case families
# ---------------------------------------------------------------------------

def matmul_cases():
    m, k, n = 3, 4, 5
    for ta in (False, True):
        for tb in (False, True):
            a = R.normal([k, m] if ta else [m, k])
            b = R.normal([n, k] if tb else [k, n])
            fn = lambda a, b, ta=ta, tb=tb: (a.T if ta else a) @ (b.T if tb else b)
            case(f"matmul_{'T' if ta else 'N'}{'T' if tb else 'N'}", "matmul", fn, {"a": a, "b": b},
                 attrs={"transA": ta, "transB": tb})


def bmm_cases():
    bsz, m, k, n = 2, 3, 4, 5
    for tb in (False, True):
        a = R.normal([bsz, m, k])
        b = R.normal([bsz, n, k] if tb else [bsz, k, n])
        fn = lambda a, b, tb=tb: a @ (b.transpose(-1, -2) if tb else b)
        case(f"bmm_{'NT' if tb else 'NN'}", "bmm", fn, {"a": a, "b": b}, attrs={"transA": False, "transB": tb})


def binary_cases():
    shapes = {"same": ([2, 3], [2, 3]), "bcast_last": ([2, 3, 4], [4]),
              "bcast_mid": ([2, 3, 4], [3, 1]), "bcast_both": ([2, 1, 4], [1, 3, 1])}
    ops = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}
    for op, f in ops.items():
        for tag, (sa, sb) in shapes.items():
            a = R.normal(sa)
            b = R.uniform(sb, 0.5, 2.0) if op == "div" else R.normal(sb)
            case(f"{op}_{tag}", op, lambda a, b, f=f: f(a, b), {"a": a, "b": b})


def scalar_cases():
    case("add_scalar", "add_scalar", lambda x: x + 0.75, {"x": R.normal([3, 4])}, attrs={"scalar": 0.75})
    case("mul_scalar", "mul_scalar", lambda x: x * -1.5, {"x": R.normal([3, 4])}, attrs={"scalar": -1.5})
    for s, tag in ((2.0, "2"), (0.5, "0_5")):
        case(f"pow_scalar_{tag}", "pow_scalar", lambda x, s=s: x ** s, {"x": R.uniform([3, 4], 0.5, 2.0)},
             attrs={"scalar": s})


def reduction_cases():
    def reduce(op, axis, keep):
        def fn(x):
            if axis is None:
                return {"sum": x.sum, "mean": x.mean, "max": x.amax}[op]()
            return {"sum": torch.sum, "mean": torch.mean, "max": torch.amax}[op](x, dim=axis, keepdim=keep)
        return fn

    for op, axis, keep in (("sum", 1, False), ("sum", None, False), ("mean", -1, True),
                           ("mean", None, False), ("max", 0, False), ("max", 2, True)):
        x = R.normal([2, 3, 4])  # continuous random values: no ties for max
        tag = "all" if axis is None else f"axis{axis}".replace("-", "m") + ("_keep" if keep else "")
        case(f"{op}_{tag}", op, reduce(op, axis, keep), {"x": x}, attrs={"axis": axis, "keepDims": keep})


def shape_cases():
    case("permute_201", "permute", lambda x: x.permute(2, 0, 1), {"x": R.normal([2, 3, 4])},
         attrs={"perm": [2, 0, 1]})
    case("transpose_2d", "transpose", lambda x: x.transpose(0, 1), {"x": R.normal([3, 5])},
         attrs={"dim0": 0, "dim1": 1})
    case("slice_axis1", "slice", lambda x: x[:, 1:4, :], {"x": R.normal([2, 5, 3])},
         attrs={"axis": 1, "start": 1, "end": 4})
    case("concat_axis1", "concat", lambda a, b, c: torch.cat([a, b, c], dim=1),
         {"a": R.normal([2, 2, 3]), "b": R.normal([2, 1, 3]), "c": R.normal([2, 3, 3])}, attrs={"axis": 1})


def indexing_cases():
    ids = torch.tensor([[1, 4, 1], [6, 0, 4]])  # repeated ids: gradients must accumulate
    case("embedding", "embedding", lambda weight, ids: weight[ids], {"weight": R.normal([7, 4])}, {"ids": ids})
    index = R.ints([5], 0, 6)
    case("gather_last", "gather_last", lambda x, index: x.gather(1, index[:, None]).squeeze(1),
         {"x": R.normal([5, 6])}, {"index": index})
    cond = R.ints([3, 4], 0, 2)
    case("where", "where", lambda a, b, cond: torch.where(cond.bool(), a, b),
         {"a": R.normal([3, 4]), "b": R.normal([3, 4])}, {"cond": cond})


def unary_cases():
    positive = lambda: R.uniform([3, 4], 0.5, 2.0)
    general = lambda: R.uniform([3, 4], -2.0, 2.0)
    table = {
        "exp": (torch.exp, general), "log": (torch.log, positive), "sqrt": (torch.sqrt, positive),
        "rsqrt": (torch.rsqrt, positive), "relu": (torch.relu, lambda: R.away_from_zero([3, 4])),
        "gelu": (F.gelu, general), "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), general),
        "silu": (F.silu, general), "sigmoid": (torch.sigmoid, general), "tanh": (torch.tanh, general),
        "neg": (torch.neg, general),
    }
    for op, (f, draw) in table.items():
        case(op, op, lambda x, f=f: f(x), {"x": draw()})


def softmax_cases():
    for op, f in (("softmax", torch.softmax), ("log_softmax", torch.log_softmax)):
        case(op, op, lambda x, f=f: f(x, dim=-1), {"x": R.normal([3, 7])}, attrs={"axis": -1})
        x = R.normal([3, 7])
        # Row 1 around +100: exp overflows float32 unless the row max is subtracted first.
        x[1] = 100.0 + R.normal([7], std=2.0)
        case(f"{op}_large", op, lambda x, f=f: f(x, dim=-1), {"x": x}, attrs={"axis": -1})


def norm_cases():
    eps = 1e-5
    x, w = R.normal([2, 3, 8]), R.uniform([8], 0.5, 1.5)
    up = case("rmsnorm", "rmsnorm", lambda x, weight: rmsnorm_ref(x, weight, eps), {"x": x, "weight": w},
              attrs={"eps": eps})
    hf_norm = hf_llama.LlamaRMSNorm(8, eps=eps)
    del hf_norm.weight  # replaced by the graph input on each call

    def hf_fn(x, weight):
        hf_norm.weight = weight
        return hf_norm(x)

    with hf_upcasts_in_float64():
        cross_check("rmsnorm vs LlamaRMSNorm", lambda x, weight: rmsnorm_ref(x, weight, eps), hf_fn,
                    {"x": x, "weight": w}, {}, up, EXACT)
    cross_check("rmsnorm vs stock LlamaRMSNorm", lambda x, weight: rmsnorm_ref(x, weight, eps), hf_fn,
                {"x": x, "weight": w}, {}, up, FLOAT32_PATH)

    case("swiglu", "swiglu", swiglu_ref, {"gate": R.normal([2, 3, 8]), "up": R.normal([2, 3, 8])})
    g = R.normal([2, 3, 8])
    assert_close("swiglu vs silu", swiglu_ref(g.double(), g.double()), F.silu(g.double()) * g.double(), EXACT)


def rope_cases():
    for theta, start in ((10000.0, 0), (500000.0, 3)):
        x = R.normal([2, 5, 3, 8])
        positions = torch.arange(start, start + 5)
        fn = lambda x, positions, theta=theta: rope_ref(x, positions, theta)
        up = case(f"rope_theta{int(theta)}_pos{start}", "rope", fn, {"x": x}, {"positions": positions},
                  attrs={"theta": theta})

        def hf_fn(x, positions, theta=theta):
            cos, sin = rope_tables(positions, x.shape[-1], theta)
            q, _ = hf_llama.apply_rotary_pos_emb(x, x, cos[None], sin[None], unsqueeze_dim=2)
            return q

        cross_check("rope vs apply_rotary_pos_emb", fn, hf_fn, {"x": x}, {"positions": positions}, up, EXACT)
        check_rope_tables(theta, positions)


def check_rope_tables(theta, positions):
    """Our cos/sin tables equal LlamaRotaryEmbedding's (float64 exactly, stock to float32 precision)."""
    cfg = LlamaConfig(hidden_size=24, num_attention_heads=3, head_dim=8,
                      rope_parameters={"rope_type": "default", "rope_theta": theta})
    want = rope_tables(positions, 8, theta)
    dummy = torch.zeros(1, dtype=torch.float64)
    for ctx, tol in ((hf_upcasts_in_float64, EXACT), (contextlib.nullcontext, FLOAT32_PATH)):
        with ctx():
            got = hf_llama.LlamaRotaryEmbedding(cfg)(dummy, positions[None])
        for name, g, w in zip(("cos", "sin"), got, want):
            assert_close(f"rope {name} table theta={theta}", g[0], w, tol)


def attention_cases():
    bsz, t, d = 2, 6, 4
    scale = 1.0 / math.sqrt(d)
    segs = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 2]])
    for h, hkv, segments in ((4, 2, None), (2, 2, None), (4, 1, None), (4, 2, segs)):
        inputs = {"q": R.normal([bsz, t, h, d]), "k": R.normal([bsz, t, hkv, d]), "v": R.normal([bsz, t, hkv, d])}
        ints = {} if segments is None else {"segments": segments}
        name = f"attention_h{h}_kv{hkv}" + ("_segments" if segments is not None else "")
        fn = lambda q, k, v, segments=None: attention_ref(q, k, v, scale, segments)
        up = case(name, "attention", fn, inputs, ints, attrs={"causal": True, "scale": scale})
        with hf_upcasts_in_float64():
            cross_check(f"{name} vs HF eager", fn, hf_attention(h, hkv, scale), inputs, ints, up, EXACT)
        cross_check(f"{name} vs stock HF eager", fn, hf_attention(h, hkv, scale), inputs, ints, up, FLOAT32_PATH)


def hf_attention(h, hkv, scale):
    """transformers' eager attention; segments become packed-sequence position ids for its mask."""
    cfg = LlamaConfig(hidden_size=h * 4, num_attention_heads=h, num_key_value_heads=hkv,
                      attn_implementation="eager")
    module = types.SimpleNamespace(num_key_value_groups=h // hkv, training=False)

    def fn(q, k, v, segments=None):
        bsz, t = q.shape[:2]
        if segments is None:
            position_ids = torch.arange(t)[None].expand(bsz, t)
        else:  # position restarts at 0 at each segment start
            starts = torch.cat([torch.ones(bsz, 1, dtype=torch.bool), segments[:, 1:] != segments[:, :-1]], 1)
            idx = torch.arange(t).expand(bsz, t)
            position_ids = idx - torch.cummax(torch.where(starts, idx, 0), 1).values
        mask = create_causal_mask(config=cfg, inputs_embeds=q.new_zeros(bsz, t, 1), attention_mask=None,
                                  past_key_values=None, position_ids=position_ids)
        out, _ = hf_llama.eager_attention_forward(module, q.transpose(1, 2), k.transpose(1, 2),
                                                  v.transpose(1, 2), mask, scaling=scale)
        return out  # eager_attention_forward already returns [B, T, H, D]

    return fn


def cross_entropy_cases():
    attrs = {"ignoreIndex": -100}
    targets = R.ints([6], 0, 5)
    targets[2] = -100
    inputs = {"logits": R.normal([6, 5], std=1.5)}
    ce = lambda logits, targets: cross_entropy_ref(logits, targets)
    up = case("cross_entropy", "cross_entropy", ce, inputs, {"targets": targets}, attrs=attrs)
    cross_check("cross_entropy vs F.cross_entropy", ce, lambda logits, targets: F.cross_entropy(logits, targets),
                inputs, {"targets": targets}, up, EXACT)

    targets = R.ints([6], 0, 5)
    targets[4] = -100
    inputs = {"logits": R.normal([6, 5], std=1.5), "weights": R.uniform([6], 0.5, 2.0)}
    wce = lambda logits, weights, targets: cross_entropy_ref(logits, targets, weights=weights)
    up = case("cross_entropy_weighted", "cross_entropy", wce, inputs, {"targets": targets}, attrs=attrs,
              no_grad=["weights"])

    def torch_wce(logits, weights, targets):
        nll = F.cross_entropy(logits, targets, reduction="none")
        w = weights * (targets != -100)
        return (w * nll).sum() / w.sum()

    cross_check("weighted cross_entropy vs F.cross_entropy", wce, torch_wce, inputs, {"targets": targets}, up,
                EXACT, no_grad=["weights"])

    targets = R.ints([2, 3], 0, 5)
    targets[1, 0] = -100
    inputs = {"logits": R.normal([2, 3, 5], std=1.5)}
    up = case("cross_entropy_3d", "cross_entropy", ce, inputs, {"targets": targets}, attrs=attrs)
    cross_check("3-D cross_entropy vs F.cross_entropy", ce,
                lambda logits, targets: F.cross_entropy(logits.reshape(-1, 5), targets.reshape(-1)),
                inputs, {"targets": targets}, up, EXACT)


# ---------------------------------------------------------------------------
# Composed check: one Hugging Face LlamaDecoderLayer
# ---------------------------------------------------------------------------

BLOCK = {"batch": 2, "seqLen": 6, "hidden": 16, "heads": 4, "kvHeads": 2, "headDim": 4,
         "intermediate": 40, "rmsNormEps": 1e-6, "ropeTheta": 10000.0}


def block_params():
    """float32 random weights, HF names, Linear weights [out, in]."""
    c = BLOCK
    hid, inter, qd, kvd = c["hidden"], c["intermediate"], c["heads"] * c["headDim"], c["kvHeads"] * c["headDim"]
    shapes = {
        "input_layernorm.weight": [hid],
        "self_attn.q_proj.weight": [qd, hid], "self_attn.k_proj.weight": [kvd, hid],
        "self_attn.v_proj.weight": [kvd, hid], "self_attn.o_proj.weight": [hid, qd],
        "post_attention_layernorm.weight": [hid],
        "mlp.gate_proj.weight": [inter, hid], "mlp.up_proj.weight": [inter, hid],
        "mlp.down_proj.weight": [hid, inter],
    }
    return {n: R.normal(s, mean=1.0, std=0.1) if len(s) == 1 else R.normal(s, std=1.0 / math.sqrt(s[1]))
            for n, s in shapes.items()}


def block_ref(x, params):
    """The decoder layer written with the op semantics of ops.json."""
    c, p = BLOCK, params
    b, t, _ = x.shape
    positions = torch.arange(t)
    h = rmsnorm_ref(x, p["input_layernorm.weight"], c["rmsNormEps"])
    q = (h @ p["self_attn.q_proj.weight"].T).reshape(b, t, c["heads"], c["headDim"])
    k = (h @ p["self_attn.k_proj.weight"].T).reshape(b, t, c["kvHeads"], c["headDim"])
    v = (h @ p["self_attn.v_proj.weight"].T).reshape(b, t, c["kvHeads"], c["headDim"])
    q, k = rope_ref(q, positions, c["ropeTheta"]), rope_ref(k, positions, c["ropeTheta"])
    a = attention_ref(q, k, v, 1.0 / math.sqrt(c["headDim"])).reshape(b, t, -1)
    x = x + a @ p["self_attn.o_proj.weight"].T
    h = rmsnorm_ref(x, p["post_attention_layernorm.weight"], c["rmsNormEps"])
    m = swiglu_ref(h @ p["mlp.gate_proj.weight"].T, h @ p["mlp.up_proj.weight"].T)
    return x + m @ p["mlp.down_proj.weight"].T


def block_hf(x, params):
    """transformers' LlamaDecoderLayer, called as LlamaModel calls it."""
    c = BLOCK
    cfg = LlamaConfig(hidden_size=c["hidden"], intermediate_size=c["intermediate"],
                      num_attention_heads=c["heads"], num_key_value_heads=c["kvHeads"], head_dim=c["headDim"],
                      rms_norm_eps=c["rmsNormEps"], hidden_act="silu", attention_bias=False, mlp_bias=False,
                      rope_parameters={"rope_type": "default", "rope_theta": c["ropeTheta"]},
                      attn_implementation="eager")
    layer = hf_llama.LlamaDecoderLayer(cfg, layer_idx=0).to(torch.float64).eval()
    assert {n for n, _ in layer.named_parameters()} == set(params), "HF parameter names changed"
    for name, value in params.items():  # swap Parameters for our graph inputs
        mod_path, attr = name.rsplit(".", 1)
        mod = layer.get_submodule(mod_path)
        delattr(mod, attr)
        setattr(mod, attr, value)
    position_ids = torch.arange(x.shape[1])[None]
    cos_sin = hf_llama.LlamaRotaryEmbedding(cfg)(x, position_ids)
    mask = create_causal_mask(config=cfg, inputs_embeds=x, attention_mask=None, past_key_values=None,
                              position_ids=position_ids)
    out = layer(x, attention_mask=mask, position_ids=position_ids, position_embeddings=cos_sin)
    return out[0] if isinstance(out, tuple) else out  # 5.x returns a tensor


def llama_block():
    c = BLOCK
    x = R.normal([c["batch"], c["seqLen"], c["hidden"]])
    params = block_params()
    upstream = R.normal(list(x.shape))
    inputs = {"x": x, **params}

    def run(fn):
        out, grads = run_with_grads(lambda x, **p: fn(x, p), inputs, {}, upstream)
        return out, grads

    with hf_upcasts_in_float64():
        out, grads = run(block_hf)
    ref_out, ref_grads = run(block_ref)
    err = assert_close("llama block output vs plain math", ref_out, out, EXACT)
    for k in grads:
        err = max(err, assert_close(f"llama block grad {k} vs plain math", ref_grads[k], grads[k], EXACT))
    stock_out, stock_grads = run(block_hf)
    err32 = assert_close("stock llama block output", stock_out, out, FLOAT32_PATH)
    for k in grads:
        err32 = max(err32, assert_close(f"stock llama block grad {k}", stock_grads[k], grads[k], FLOAT32_PATH))
    print(f"llama block: HF(float64) vs plain math max diff {err:.1e}; stock HF (float32 upcasts) {err32:.1e}")

    config = dict(c, positions=list(range(c["seqLen"])), causal=True, attnImplementation="eager",
                  hiddenAct="silu", bias=False)
    return {
        "generator": GENERATOR, "torch": torch.__version__, "transformers": transformers.__version__,
        "config": config,
        "inputs": {"x": tjson(x)},
        "params": {k: tjson(v) for k, v in params.items()},
        "upstream": tjson(upstream),
        "output": tjson(out),
        "grads": {k: tjson(g) for k, g in grads.items()},
    }


# ---------------------------------------------------------------------------

def write_json(path, head, items_key=None, items=None):
    """Compact JSON; with items, one list entry per line (readable diffs)."""
    text = json.dumps(head, separators=(",", ":"), allow_nan=False)
    if items_key is not None:
        body = ",\n".join(json.dumps(it, separators=(",", ":"), allow_nan=False) for it in items)
        text = text[:-1] + f',"{items_key}":[\n{body}\n]}}'
    path.write_text(text + "\n")
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1024:.0f} KiB)")


def main():
    torch.set_grad_enabled(True)
    for family in (matmul_cases, bmm_cases, binary_cases, scalar_cases, reduction_cases, shape_cases,
                   indexing_cases, unary_cases, softmax_cases, norm_cases, rope_cases, attention_cases,
                   cross_entropy_cases):
        family()
    FIXTURES.mkdir(parents=True, exist_ok=True)
    write_json(FIXTURES / "ops.json", {"generator": GENERATOR, "torch": torch.__version__}, "cases", CASES)
    write_json(FIXTURES / "llama_block.json", llama_block())
    print(f"{len(CASES)} op cases: " + " ".join(c["name"] for c in CASES))


if __name__ == "__main__":
    main()
