"""Experiments and figures of chapter 05 (sliding window attention and its receptive field).

The chapter calls these functions and shows their source; `make(out_dir)` reruns them all.
Figures are drawn on matplotlib Figures (object API, no pyplot state): each function returns its
figure and writes the PNG only on request (see output.py).
"""
from pathlib import Path
import time
import tracemalloc

import numpy as np

from ..attention import attention, window_mask
from ..config import ModelArgs
from ..model import Model, random_model, transformer_block
from .output import Figure, finish


# --- the mask ---------------------------------------------------------------------------------

def _draw_mask(ax, mask, title):
    T, S = mask.shape
    ax.imshow(mask, cmap="Blues", vmin=-0.3, vmax=1.3)
    for i in range(T):
        for j in range(S):
            ax.text(j, i, "1" if mask[i, j] else "0", ha="center", va="center", fontsize=8,
                    color="white" if mask[i, j] else "0.6")
    ax.set_xticks(range(S))
    ax.set_yticks(range(T))
    ax.set_xlabel("key position j")
    ax.set_ylabel("query position i")
    ax.set_title(title, fontsize=10)
    ax.set_xticks(np.arange(-0.5, S), minor=True)
    ax.set_yticks(np.arange(-0.5, T), minor=True)
    ax.grid(which="minor", color="white", lw=1)
    ax.tick_params(which="minor", length=0)


def mask_figure(path, T=8, W=3):
    """The causal mask (every earlier key) next to the sliding-window mask with W keys."""
    pos = np.arange(T)
    fig = Figure(figsize=(9, 4.4))
    ax1, ax2 = fig.subplots(1, 2)
    _draw_mask(ax1, window_mask(pos, pos, T), f"causal: row i sees j <= i ({T} x {T})")
    _draw_mask(ax2, window_mask(pos, pos, W), f"sliding window W = {W}: i - {W} < j <= i")
    fig.tight_layout()
    return finish(fig, path)


# --- the receptive field ----------------------------------------------------------------------

def layer_states(model, tokens):
    """Hidden states (n_layers + 1, T, dim): the embeddings, then the output of every block."""
    a, w = model.args, model.weights
    positions = np.arange(len(tokens))                              # (T,)
    x = w["tok_embeddings"][tokens].astype(np.float32)              # (T, dim)
    states = [x]
    for block in w["layers"]:
        x = transformer_block(x, **block, args=a, positions=positions)
        states.append(x)
    return np.stack(states)                                         # (n_layers + 1, T, dim)


def reach(model, tokens, p0, new_token):
    """Change the token at p0; for each depth k = 0..n_layers, how many positions past p0 the
    farthest hidden state that changed at all lies (exact comparison: outside the window a
    hidden state is computed from identical numbers, so it is bit-identical)."""
    changed = np.array(tokens).copy()
    changed[p0] = new_token
    differs = (layer_states(model, tokens) != layer_states(model, changed)).any(axis=-1)   # (L+1, T)
    if differs[:, :p0].any():
        raise AssertionError("a position before p0 changed: the mask is not causal")
    last = np.array([np.flatnonzero(d).max() for d in differs])     # (L+1,)
    if (last == len(tokens) - 1)[1:].any():
        raise ValueError(f"the change reached the last position ({len(tokens) - 1}): "
                         "use a longer sequence, or the reach is cut short")
    return last - p0


def toy_args(W, n_layers=8):
    """A small random-model config for the experiments (any W; the weights do not depend on W)."""
    return ModelArgs(dim=32, n_layers=n_layers, head_dim=8, hidden_dim=64, n_heads=4,
                     n_kv_heads=2, vocab_size=64, W=W, max_seq_len=256)


def reach_table(windows=(2, 3, 4, 6), n_layers=8, p0=1, seed=0):
    """reach[W] (n_layers + 1,) for window_mask with W keys and for the W + 1-key reading."""
    T = n_layers * (max(windows) + 1) + p0 + 4                      # long enough for k x (W + 1)
    tokens = np.random.default_rng(seed).integers(0, 64, T)
    new = (tokens[p0] + 1) % 64
    model = random_model(toy_args(2, n_layers), seed=seed)
    w_keys, w1_keys = {}, {}
    for W in windows:
        w_keys[W] = reach(Model(model.args.replace(W=W), model.weights), tokens, p0, new)
        # The paper's wording, keys i - W <= j <= i, is window_mask with W + 1.
        w1_keys[W] = reach(Model(model.args.replace(W=W + 1), model.weights), tokens, p0, new)
    return w_keys, w1_keys


def reach_figure(path, w_keys, w1_keys):
    """Measured reach against depth, with the laws k x (W - 1) and k x W drawn as lines."""
    fig = Figure(figsize=(9.5, 4))
    axes = fig.subplots(1, 2, sharey=True)
    colours = ["C0", "C1", "C2", "C3", "C4", "C5"]
    for ax, table, law, name, title in (
            (axes[0], w_keys, 0, "k x (W - 1)", "W keys, query included (window_mask)"),
            (axes[1], w1_keys, 1, "k x W", "W + 1 keys (the paper's wording)")):
        for c, (W, r) in zip(colours, table.items()):
            k = np.arange(len(r))
            ax.plot(k, k * (W - 1 + law), color=c, lw=1, alpha=0.6)
            ax.plot(k, r, "o", color=c, label=f"W = {W}")
        ax.set_title(f"{title}\nlines: {name}, dots: measured", fontsize=10)
        ax.set_xlabel("layers k")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("positions reached past the changed token")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return finish(fig, path)


# --- the cost ---------------------------------------------------------------------------------

def banded_attention(q, k, v, W):
    """Sliding-window attention that computes only the band: the queries of block [s, s + W)
    can see keys back to s - W + 1, so each block scores at most 2W - 1 keys, not all T.
    Same result as attention(q, k, v, window_mask(pos, pos, W)); time and memory linear in T."""
    T = q.shape[0]
    pos = np.arange(T)
    out = np.empty((T, q.shape[1] * q.shape[2]), np.float32)        # (T, n_heads * hd)
    for s in range(0, T, W):
        e, ks = min(s + W, T), max(0, s - W + 1)
        out[s:e] = attention(q[s:e], k[ks:e], v[ks:e], window_mask(pos[s:e], pos[ks:e], W))
    return out


def full_attention(q, k, v, W):
    """The same windowed attention with the whole (T, T) score matrix (most of it masked)."""
    pos = np.arange(q.shape[0])
    return attention(q, k, v, window_mask(pos, pos, W))


def peak_bytes(fn, *args):
    """Peak bytes allocated while fn(*args) runs (NumPy reports its buffers to tracemalloc)."""
    tracemalloc.start()
    try:
        fn(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def best_time(fn, *args, budget=0.5, max_repeat=20):
    """Fastest of several runs (at least 2, more while under `budget` seconds): other work on the
    machine only ever adds time, so the minimum is the run it disturbed least."""
    times, start = [], time.perf_counter()
    while len(times) < 2 or (time.perf_counter() - start < budget and len(times) < max_repeat):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times)


def attention_cost(lengths, W=256, n_heads=2, n_kv_heads=1, head_dim=64, full_max=4096, seed=0):
    """Time (s, best of several runs) and peak memory (bytes) of full and banded windowed attention.
    Full attention is skipped (nan) above full_max: its T x T scores quadruple with each doubling of T."""
    rng = np.random.default_rng(seed)
    rows = []
    for T in lengths:
        q = rng.standard_normal((T, n_heads, head_dim), np.float32)
        k = rng.standard_normal((T, n_kv_heads, head_dim), np.float32)
        v = rng.standard_normal((T, n_kv_heads, head_dim), np.float32)
        row = {"T": T, "band_s": best_time(banded_attention, q, k, v, W),
               "band_bytes": peak_bytes(banded_attention, q, k, v, W)}
        if T <= full_max:
            row["full_s"] = best_time(full_attention, q, k, v, W)
            row["full_bytes"] = peak_bytes(full_attention, q, k, v, W)
        else:
            row["full_s"] = row["full_bytes"] = float("nan")
        rows.append(row)
    return rows


def cost_figure(path, rows, W):
    """Log-log time and peak memory against T: slope 2 for full scores, slope 1 for the band."""
    T = np.array([r["T"] for r in rows], float)
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for ax, key, scale, unit in ((axes[0], "_s", 1e3, "time (ms)"),
                                 (axes[1], "_bytes", 2.0 ** -20, "peak memory (MiB)")):
        full = np.array([r["full" + key] for r in rows], float) * scale
        band = np.array([r["band" + key] for r in rows], float) * scale
        ax.loglog(T, full, "o-", color="C3", label="full: (T, T) scores")
        ax.loglog(T, band, "s-", color="C0", label=f"band: blocks of W = {W}, <= 2W keys")
        ok = ~np.isnan(full)
        i = int(np.flatnonzero(ok)[-1])                     # anchor the guide lines at the last full point
        ax.loglog(T, full[i] * (T / T[i]) ** 2, ":", color="C3", lw=1, label="slope 2")
        ax.loglog(T, band[-1] * (T / T[-1]), ":", color="C0", lw=1, label="slope 1")
        ax.set_ylim(band[0] / 3, np.nanmax(full) * 30)
        ax.axvline(W, color="0.5", lw=0.8, ls="--")
        ax.text(W * 1.08, np.nanmax(full) * 10, "T = W", va="top", fontsize=8, color="0.4")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=9, loc="lower right")
    axes[0].set_title("attention time", fontsize=10)
    axes[1].set_title("attention peak memory (tracemalloc)", fontsize=10)
    fig.tight_layout()
    return finish(fig, path)


COST_LENGTHS = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


def make(out_dir):
    """The chapter's three figures (the cost figure runs the measurement); returns their paths."""
    out_dir = Path(out_dir)
    paths = [out_dir / f"sliding_window_{name}.png" for name in ("masks", "reach", "cost")]
    w_keys, w1_keys = reach_table()
    mask_figure(paths[0])
    reach_figure(paths[1], w_keys, w1_keys)
    cost_figure(paths[2], attention_cost(COST_LENGTHS), 256)
    return paths
