"""Experiments and figures of chapter 06 (the rolling buffer cache).

The chapter calls these functions and shows their source; `make(out_dir)` reruns them all.
"""
from pathlib import Path

import numpy as np

from ..cache import EMPTY, RollingCache
from ..config import MISTRAL_7B
from ..costs import kv_cache_bytes
from .output import Figure, finish


def slot_history(n_tokens, W):
    """Feed a real RollingCache (1 layer, 1 head) n_tokens tokens one at a time; return the
    position held by each slot after each step, (n_tokens, W) (EMPTY = -1 for an empty slot)."""
    cache = RollingCache(1, W, 1, 2)
    zeros = np.zeros((1, 1, 2), np.float32)                        # q, k, v of one token
    history = []
    for p in range(n_tokens):
        positions = np.array([p])
        cache.attend(0, zeros, zeros, zeros, positions)             # writes slot p mod W
        cache.advance(positions)
        history.append(cache.pos.copy())
    return np.array(history)                                        # (n_tokens, W)


def buffer_figure(path, words, W=4):
    """Time runs down, slots run across: token t lands in slot t mod W, over the token of t - W."""
    held = slot_history(len(words), W)                              # (T, W)
    T = len(words)
    fig = Figure(figsize=(1.55 * W + 2.2, 0.42 * T + 1.2))
    ax = fig.subplots()
    for t in range(T):
        for s in range(W):
            p = held[t, s]
            new = p == t
            colour = "white" if p == EMPTY else ("#f4a259" if new else "#cfe1f2")
            ax.add_patch(_cell(s, t, colour))
            if p != EMPTY:
                ax.text(s, t, f"{words[p]}  ({p})", ha="center", va="center", fontsize=9,
                        fontweight="bold" if new else "normal")
            if new and t >= W:
                ax.text(s + 0.47, t - 0.28, f"over {t - W}", ha="right", va="top", fontsize=6,
                        color="0.3")
    ax.set_xlim(-0.5, W - 0.5)
    ax.set_ylim(T - 0.5, -0.5)
    ax.set_xticks(range(W), [f"slot {s}" for s in range(W)])
    ax.set_yticks(range(T), [f"t = {t}" for t in range(T)])
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(f"Rolling buffer, W = {W}: token t (position in brackets) is written to slot "
                 f"t mod {W}", fontsize=10, pad=22)
    fig.tight_layout()
    return finish(fig, path)


def _cell(x, y, colour):
    from matplotlib.patches import Rectangle
    return Rectangle((x - 0.48, y - 0.45), 0.96, 0.9, facecolor=colour, edgecolor="0.7", lw=0.6)


def memory_figure(path, args=MISTRAL_7B, lengths=np.arange(0, 32768 + 1, 512)):
    """KV-cache size against tokens seen, full and rolling, float32 and bf16."""
    lengths = np.asarray(lengths)
    gib = 2.0 ** -30
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    for itemsize, name, ls in ((4, "float32", "-"), (2, "bf16", "--")):
        full = [kv_cache_bytes(args, int(T), itemsize, rolling=False) * gib for T in lengths]
        roll = [kv_cache_bytes(args, int(T), itemsize) * gib for T in lengths]
        ax.plot(lengths, full, ls, color="C3", label=f"full cache, {name}")
        ax.plot(lengths, roll, ls, color="C0", label=f"rolling cache, {name}")
    T = int(lengths[-1])
    f, r = kv_cache_bytes(args, T, 4, rolling=False), kv_cache_bytes(args, T, 4)
    ax.plot([T, T], [r * gib, f * gib], "o", color="0.2")
    ax.annotate(f"{f / r:.0f}x smaller at {T:,} tokens:\n{f * gib:.0f} GiB vs {r * gib:.0f} GiB (float32)",
                xy=(T, r * gib), xytext=(T * 0.3, f * gib * 0.7),
                arrowprops={"arrowstyle": "->", "color": "0.3"}, fontsize=9)
    ax.axvline(args.W, color="0.5", lw=0.8, ls=":")
    ax.text(args.W * 1.1, f * gib * 0.35, f"W = {args.W}", fontsize=8, color="0.4")
    ax.set_xlabel("tokens in the sequence")
    ax.set_ylabel("KV cache (GiB)")
    ax.set_title(f"KV cache of Mistral 7B ({args.n_layers} layers, {args.n_kv_heads} KV heads "
                 f"x {args.head_dim})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return finish(fig, path)


SENTENCE = "the cat sat on the mat and then it slept".split()


def make(out_dir):
    paths = [Path(out_dir) / "rolling_cache_buffer.png", Path(out_dir) / "rolling_cache_memory.png"]
    buffer_figure(paths[0], SENTENCE, W=4)
    memory_figure(paths[1])
    return paths
