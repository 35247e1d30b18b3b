"""Figures of chapter 08 (real weights): a Q4_1 block of SmolLM2, byte by byte, and a Q4_K super-block.

Drawn with matplotlib's object API (no pyplot, no backend switch): the chapter passes in the very
bytes it prints, so the picture and the printed numbers cannot disagree.
"""
from pathlib import Path

import numpy as np

from ..paths import FIGURES_DIR, SMOLLM2_GGUF
from ..quants import dequantize_q4_1
from .output import Figure, finish


def q4_1_block(block, name, path):
    """One Q4_1 block (20 bytes): d and m as f16, 16 bytes of nibbles, and the 32 weights they make."""
    block = np.asarray(block, np.uint8).reshape(1, 20)
    d, m = (float(block[0, i:i + 2].view(np.float16)[0]) for i in (0, 2))
    qs = block[0, 4:]
    q = np.concatenate([qs & 0x0F, qs >> 4])                           # (32,) weights 0..15, 16..31
    w = dequantize_q4_1(block)[0]
    fig = Figure(figsize=(10, 4.6))
    top, bottom = fig.add_axes([0.03, 0.55, 0.94, 0.4]), fig.add_axes([0.07, 0.1, 0.9, 0.33])
    top.set_xlim(0, 20)
    top.set_ylim(-1.6, 1.3)
    top.axis("off")
    colours = ["#f9dcc4"] * 2 + ["#dde7f5"] * 2 + ["#d4edda"] * 16
    for i in range(20):
        top.add_patch(plotted_box(i, 0, colours[i]))
        top.text(i + 0.5, 0.5, f"{block[0, i]:02x}", ha="center", va="center", fontsize=8, family="monospace")
    top.text(1, 1.1, f"d = {d:.4g}", ha="center", fontsize=8)
    top.text(3, 1.1, f"m = {m:.4g}", ha="center", fontsize=8)
    top.text(2, -0.35, "two f16", ha="center", va="center", fontsize=7, color="#444444")
    top.text(12, 1.1, "16 bytes: low nibble = weight j, high nibble = weight j + 16", ha="center", fontsize=9)
    for j in range(16):
        top.text(4 + j + 0.5, -0.35, f"{q[j]:x}|{q[j + 16]:x}", ha="center", va="center", fontsize=7,
                 family="monospace", color="#444444")
    top.text(12, -1.1, "q (low | high), 0..15; each weight is w = d * q + m", ha="center", fontsize=9)
    bottom.bar(np.arange(32), w, color=["#4a7ab5"] * 16 + ["#7fb27f"] * 16)
    bottom.axhline(m, color="grey", lw=0.8, ls="--")
    bottom.text(31.6, m, " m", va="center", fontsize=8, color="grey")
    bottom.set_xlim(-0.7, 32.5)
    bottom.set_xlabel("weight index in the block (blue: low nibbles, green: high nibbles)")
    bottom.set_ylabel("w = d q + m")
    fig.suptitle(f"One Q4_1 block of {name}: 32 weights in 20 bytes (5 bits per weight)", fontsize=10, y=0.99)
    return finish(fig, path)


def plotted_box(x, y, colour):
    from matplotlib.patches import Rectangle
    return Rectangle((x, y), 1, 1, facecolor=colour, edgecolor="black", lw=0.6)


def q4_k_superblock(path):
    """How a Q4_K super-block nests scales: f16 d and dmin, then 6-bit scale and min per 32 weights."""
    fig = Figure(figsize=(10, 3.4))
    ax = fig.add_axes([0.02, 0.02, 0.96, 0.86])
    ax.set_xlim(0, 144)
    ax.set_ylim(-3.2, 2.4)
    ax.axis("off")
    # Header bytes drawn wider than their share so that their labels fit; the nibbles to scale.
    parts = [(0, 10, "#f9dcc4", "d\nf16"), (10, 10, "#f9dcc4", "dmin\nf16"),
             (20, 24, "#dde7f5", "8 scales, 8 mins\n6 bits each\n(12 bytes)"),
             (44, 100, "#d4edda", "128 bytes of nibbles: 256 weights, 4 bits each")]
    from matplotlib.patches import Rectangle
    for x, width, colour, label in parts:
        ax.add_patch(Rectangle((x, 0), width, 1.4, facecolor=colour, edgecolor="black", lw=0.8))
        ax.text(x + width / 2, 0.7, label, ha="center", va="center", fontsize=8)
    for c in range(4):
        x = 44 + 25 * c
        ax.add_patch(Rectangle((x, -1.4), 25, 1.0, facecolor="white", edgecolor="#4a7ab5", lw=0.8))
        ax.text(x + 12.5, -0.9, f"32 bytes: low nibbles = sub-block {2 * c}\nhigh nibbles = sub-block {2 * c + 1}",
                ha="center", va="center", fontsize=6.5)
    ax.text(72, -2.3, "weight = (d * scale_s) * q  -  (dmin * min_s)  for q in 0..15 of sub-block s:"
            "  144 bytes for 256 weights = 4.5 bits per weight", ha="center", fontsize=9)
    ax.text(72, 1.9, "Q4_K super-block (144 bytes): scales of the scales", ha="center", fontsize=10)
    return finish(fig, path)


def make(out_dir=FIGURES_DIR):
    from ..gguf import read_gguf
    _, shapes, raw = read_gguf(SMOLLM2_GGUF)
    block = np.asarray(raw["blk.0.attn_q.weight"][:20])
    paths = [Path(out_dir) / "gguf_q4_1_block.png", Path(out_dir) / "gguf_q4_k_superblock.png"]
    q4_1_block(block, "SmolLM2's blk.0.attn_q", paths[0])
    q4_k_superblock(paths[1])
    return paths
