"""Test helpers: paths, tiny configs, a tolerance check, and a naive float64 Mistral.

`naive_forward` is written independently of src/: Python loops over positions and heads, the
window as an explicit `range`, RoPE with complex numbers. It is slow and obviously right, which
is what the fast code is compared with.
"""
from pathlib import Path
import json

import numpy as np

from mistral_np import ModelArgs
from mistral_np.bf16 import BF16
from mistral_np.paths import DEFAULT_MODEL, REPO_ROOT

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"
TINY_HF = FIXTURES / "tiny-mistral-hf"                      # float32, one file
TINY_BF16 = FIXTURES / "tiny-mistral-hf-bf16-sharded"       # bf16, two shards + index
REPO = REPO_ROOT
POCKET_TOKENIZER = DEFAULT_MODEL / "tokenizer.model"


def small_args(**changes):
    """A tiny config with grouped-query attention (4 query heads, 2 kv heads) and W = 4."""
    base = ModelArgs(dim=16, n_layers=2, head_dim=4, hidden_dim=24, n_heads=4, n_kv_heads=2,
                     vocab_size=23, W=4, max_seq_len=128)
    return base.replace(**changes)


def assert_rel_close(actual, expected, rel=1e-5):
    """max |actual - expected| <= rel * max |expected|: relative to the tensor's scale, so
    entries near zero do not make a float32 rounding difference look like a bug."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    err = np.abs(actual - expected).max()
    scale = np.abs(expected).max()
    assert err <= rel * scale, f"max abs diff {err:.3g} > {rel:g} x max |expected| {scale:.3g}"


def _f64(w):
    return (w.to_f32() if isinstance(w, BF16) else np.asarray(w)).astype(np.float64)


def naive_rope(x, p, theta, layout):
    """Rotate one head's vector x (head_dim,) at position p, via complex multiplication."""
    d = x.shape[0]
    freqs = theta ** (-np.arange(0, d, 2) / d)                     # (d/2,)
    rot = np.exp(1j * p * freqs)
    if layout == "pairs":                                          # (x0, x1), (x2, x3), ...
        z = (x[0::2] + 1j * x[1::2]) * rot
        out = np.empty(d)
        out[0::2], out[1::2] = z.real, z.imag
        return out
    z = (x[: d // 2] + 1j * x[d // 2:]) * rot                      # (x_i, x_{i + d/2})
    return np.concatenate([z.real, z.imag])


def naive_forward(args, weights, tokens):
    """(logits (T, vocab), keys (L, T, n_kv, hd), values (L, T, n_kv, hd)) in float64.

    The keys are after RoPE: exactly what a cache must hold for each position.
    """
    a = args
    tokens = list(tokens)
    T = len(tokens)

    def norm(x, w):
        return x / np.sqrt((x * x).mean() + a.norm_eps) * w

    x = _f64(weights["tok_embeddings"])[tokens]                    # (T, dim)
    all_k, all_v = [], []
    for blk in weights["layers"]:
        w = {k: _f64(v) for k, v in blk.items()}
        h = np.array([norm(row, w["attention_norm"]) for row in x])
        q = (h @ w["wq"].T).reshape(T, a.n_heads, a.head_dim)
        k = (h @ w["wk"].T).reshape(T, a.n_kv_heads, a.head_dim)
        v = (h @ w["wv"].T).reshape(T, a.n_kv_heads, a.head_dim)
        for t in range(T):
            q[t] = [naive_rope(q[t, hh], t, a.rope_theta, a.rope_layout) for hh in range(a.n_heads)]
            k[t] = [naive_rope(k[t, hh], t, a.rope_theta, a.rope_layout) for hh in range(a.n_kv_heads)]
        all_k.append(k)
        all_v.append(v)
        out = np.zeros((T, a.n_heads, a.head_dim))
        group = a.n_heads // a.n_kv_heads
        for hh in range(a.n_heads):
            kv = hh // group
            for i in range(T):
                seen = range(max(0, i - a.W + 1), i + 1)           # i - W < j <= i
                s = np.array([q[i, hh] @ k[j, kv] for j in seen]) / np.sqrt(a.head_dim)
                p = np.exp(s - s.max())
                p /= p.sum()
                out[i, hh] = sum(pj * v[j, kv] for pj, j in zip(p, seen))
        x = x + out.reshape(T, -1) @ w["wo"].T
        h = np.array([norm(row, w["ffn_norm"]) for row in x])
        g = h @ w["w1"].T
        x = x + ((g / (1 + np.exp(-g))) * (h @ w["w3"].T)) @ w["w2"].T
    x = np.array([norm(row, _f64(weights["norm"])) for row in x])
    return x @ _f64(weights["output"]).T, np.array(all_k), np.array(all_v)


def edit_config(d, **changes):
    """Rewrite config.json in checkpoint folder d with some keys changed (to damage a copy)."""
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, **changes}))
