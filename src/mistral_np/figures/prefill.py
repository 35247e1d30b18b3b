"""Experiments and figures of chapter 07 (pre-fill and chunking).

The chapter calls these functions and shows their source; `make(out_dir)` reruns them all.
Each figure function returns its figure and writes the PNG only on request (see output.py).
"""
from pathlib import Path

import numpy as np

from ..attention import window_mask
from ..cache import EMPTY, RollingCache
from ..config import ModelArgs
from ..costs import score_bytes
from ..model import random_model
from .output import Figure, finish
from .sliding_window import best_time, peak_bytes


def chunk_views(T, W, chunk_size):
    """Feed T positions in chunks through a real RollingCache (1 layer, 1 head) and return, for
    each chunk, (cached positions, chunk positions, mask): the keys RollingCache.attend puts
    side by side, [cache in slot order | chunk], and the one mask over both."""
    cache = RollingCache(1, W, 1, 2)
    views = []
    for s in range(0, T, chunk_size):
        positions = np.arange(s, min(s + chunk_size, T))            # (t,)
        cached = cache.pos[cache.pos != EMPTY]                      # (S,) slot order, as attend reads them
        kpos = np.concatenate([cached, positions])                  # (S + t,)
        views.append((cached, positions, window_mask(positions, kpos, W)))
        zeros = np.zeros((len(positions), 1, 2), np.float32)
        cache.attend(0, zeros, zeros, zeros, positions)
        cache.advance(positions)
    return views


def chunk_figure(path, T=12, W=4, chunk_size=4, words=None):
    """One panel per chunk: rows are the chunk's queries, columns [cache | chunk]."""
    views = chunk_views(T, W, chunk_size)
    widths = [m.shape[1] for _, _, m in views]
    fig = Figure(figsize=(0.55 * sum(widths) + 1.5, 3.9))
    axes = np.atleast_1d(fig.subplots(1, len(views), gridspec_kw={"width_ratios": widths}))
    for c, (ax, (cached, positions, mask)) in enumerate(zip(axes, views)):
        kpos = np.concatenate([cached, positions])
        shade = mask.astype(float)
        shade[:, :len(cached)] *= 0.75                              # cache columns a shade lighter
        ax.imshow(shade, cmap="Blues", vmin=-0.3, vmax=1.2)
        for i in range(mask.shape[0]):
            for j in range(mask.shape[1]):
                ax.text(j, i, "1" if mask[i, j] else "0", ha="center", va="center", fontsize=8,
                        color="white" if mask[i, j] else "0.6")
        label = (lambda p: f"{words[p]}\n{p}") if words else str
        ax.set_xticks(range(len(kpos)), [label(p) for p in kpos], fontsize=8)
        ax.set_yticks(range(len(positions)), [label(p) for p in positions], fontsize=8)
        if len(cached):
            ax.axvline(len(cached) - 0.5, color="C3", lw=2)
            ax.text((len(cached) - 1) / 2, -0.65, "cache", ha="center", fontsize=9, color="C3")
        ax.text(len(cached) + (len(positions) - 1) / 2, -0.65, "chunk", ha="center", fontsize=9)
        ax.set_title(f"chunk {c}: positions {positions[0]}..{positions[-1]}", fontsize=10, pad=20)
        ax.set_xlabel("key position (cache slots, then the chunk)", fontsize=8)
    axes[0].set_ylabel("query position")
    fig.tight_layout()
    return finish(fig, path)


def cost_args(W=128):
    """A small random model for the pre-fill measurements."""
    return ModelArgs(dim=64, n_layers=2, head_dim=16, hidden_dim=128, n_heads=4, n_kv_heads=2,
                     vocab_size=256, W=W, max_seq_len=1 << 16)


def largest_scores(args, T, chunk_size):
    """Bytes of the largest float32 score array (n_heads, chunk, cached + chunk) a pre-fill of
    T tokens in chunks of chunk_size builds: the chunk starting at s sees min(W, s) cached keys."""
    return max(score_bytes(args, n, min(args.W, s) + n)
               for s in range(0, T, chunk_size) for n in [min(chunk_size, T - s)])


def prefill_cost(model, lengths, chunk_size, seed=0):
    """Peak bytes (tracemalloc) and time (best of several) of model.prefill, one-shot and chunked."""
    rng = np.random.default_rng(seed)
    rows = []
    for T in lengths:
        tokens = rng.integers(0, model.args.vocab_size, T)
        row = {"T": T}
        for name, size in (("one_shot", T), ("chunked", chunk_size)):
            row[name + "_bytes"] = peak_bytes(lambda: model.prefill(tokens, model.new_cache(), size))
            row[name + "_s"] = best_time(lambda: model.prefill(tokens, model.new_cache(), size))
        rows.append(row)
    return rows


def cost_figure(path, rows, args, chunk_size):
    """Log-log peak memory and time of one-shot and chunked pre-fill against prompt length."""
    T = np.array([r["T"] for r in rows], float)
    fig = Figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    mib = 2.0 ** -20
    ax1.loglog(T, [r["one_shot_bytes"] * mib for r in rows], "o-", color="C3", label="one-shot, measured peak")
    ax1.loglog(T, [r["chunked_bytes"] * mib for r in rows], "s-", color="C0",
               label=f"chunks of {chunk_size}, measured peak")
    ax1.loglog(T, [largest_scores(args, int(t), int(t)) * mib for t in T], ":", color="C3",
               label="largest score array, T x T")
    ax1.loglog(T, [largest_scores(args, int(t), chunk_size) * mib for t in T], ":", color="C0",
               label="largest score array, chunk x (W + chunk)")
    ax1.set_ylabel("MiB")
    ax1.set_title("pre-fill peak memory (tracemalloc)", fontsize=10)
    ax2.loglog(T, [r["one_shot_s"] * 1e3 for r in rows], "o-", color="C3", label="one-shot")
    ax2.loglog(T, [r["chunked_s"] * 1e3 for r in rows], "s-", color="C0", label=f"chunks of {chunk_size}")
    ax2.set_ylabel("ms")
    ax2.set_title("pre-fill time", fontsize=10)
    for ax in (ax1, ax2):
        ax.axvline(args.W, color="0.5", lw=0.8, ls="--")
        ax.text(args.W * 1.05, 0.97, "T = W", transform=ax.get_xaxis_transform(), va="top",
                fontsize=8, color="0.4")
        ax.set_xlabel("prompt length T")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=9)
    fig.tight_layout()
    return finish(fig, path)


COST_LENGTHS = (128, 256, 512, 1024, 2048, 4096)


def make(out_dir):
    """The chapter's two figures (the cost figure runs the measurement); returns their paths."""
    out_dir = Path(out_dir)
    paths = [out_dir / "prefill_chunks.png", out_dir / "prefill_cost.png"]
    args = cost_args()
    rows = prefill_cost(random_model(args, seed=0), COST_LENGTHS, args.W)
    chunk_figure(paths[0])
    cost_figure(paths[1], rows, args, args.W)
    return paths
