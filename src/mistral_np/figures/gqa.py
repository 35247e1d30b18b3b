"""Figure of chapter 04 (grouped-query attention): which query heads share which key/value head."""
from pathlib import Path

import matplotlib
import numpy as np

from ..config import MISTRAL_7B
from .output import Figure, finish


def head_groups(path, n_heads=MISTRAL_7B.n_heads, n_kv_heads=MISTRAL_7B.n_kv_heads):
    """Query heads on top, key/value heads below; query head h reads kv head h // (n_heads // n_kv_heads)."""
    group = n_heads // n_kv_heads
    kv_of = np.arange(n_heads) // group                          # (n_heads,)
    colours = matplotlib.colormaps["tab10"](np.arange(n_kv_heads) % 10)
    fig = Figure(figsize=(10, 3.2))
    ax = fig.add_subplot()
    xq = np.arange(n_heads)                                      # query heads spread over the width
    xk = (np.arange(n_kv_heads) + 0.5) * group - 0.5             # each kv head under its group's middle
    for h in range(n_heads):
        ax.plot([xq[h], xk[kv_of[h]]], [1, 0], color=colours[kv_of[h]], lw=1.3, alpha=0.8)
    ax.scatter(xq, np.ones(n_heads), s=90, c=colours[kv_of], edgecolors="black", zorder=3)
    ax.scatter(xk, np.zeros(n_kv_heads), s=320, c=colours, marker="s", edgecolors="black", zorder=3)
    for h in range(n_heads):
        ax.text(xq[h], 1.1, str(h), ha="center", va="bottom", fontsize=7)
    for g in range(n_kv_heads):
        ax.text(xk[g], -0.14, str(g), ha="center", va="top", fontsize=9)
    ax.text(-1.2, 1, f"query heads\n(n_heads = {n_heads})", ha="right", va="center", fontsize=9)
    ax.text(-1.2, 0, f"key/value heads\n(n_kv_heads = {n_kv_heads})", ha="right", va="center", fontsize=9)
    ax.set_xlim(-1, n_heads)
    ax.set_ylim(-0.45, 1.35)
    ax.axis("off")
    ax.set_title(f"Grouped-query attention: query head h reads key/value head h // {group}",
                 fontsize=10)
    return finish(fig, path)


def make(out_dir):
    path = Path(out_dir) / "gqa_head_groups.png"
    head_groups(path)
    return [path]
