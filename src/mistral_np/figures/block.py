"""Figures of chapter 03 (the Mistral block): the block's data flow and rotary embeddings.

Drawn on matplotlib Figures (object API, no pyplot): each function returns its figure and writes
the PNG only on request (see output.py).
"""
from pathlib import Path

import matplotlib
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.patches import Circle, Rectangle
import numpy as np

from ..config import MISTRAL_7B
from ..layers import rope_angles
from .output import Figure, finish


def block_diagram(path):
    """The pre-norm residual block: x + attention(norm(x)), then h + feed_forward(norm(h))."""
    fig = Figure(figsize=(8.4, 3.0))
    ax = fig.add_subplot()
    ax.set_xlim(0, 16.8)
    ax.set_ylim(0, 3.4)
    ax.axis("off")
    y = 1.2
    boxes = [  # (x centre, label, colour)
        (2.4, "RMSNorm\nattention_norm", "#dde7f5"),
        (4.9, "attention\n(RoPE, GQA,\nsliding window)", "#f9dcc4"),
        (9.3, "RMSNorm\nffn_norm", "#dde7f5"),
        (11.8, "SwiGLU\nw2(silu(w1 x)\n* w3 x)", "#d4edda"),
    ]
    for xc, label, colour in boxes:
        ax.add_patch(Rectangle((xc - 1.05, y - 0.6), 2.1, 1.2, facecolor=colour, edgecolor="black"))
        ax.text(xc, y, label, ha="center", va="center", fontsize=8.5)
    adds = [7.0, 13.9]
    for xa in adds:
        ax.add_patch(Circle((xa, y), 0.25, facecolor="white", edgecolor="black"))
        ax.text(xa, y, "+", ha="center", va="center", fontsize=13)
    arrow = dict(arrowstyle="->", lw=1.2)
    # main path, left to right
    for x0, x1 in [(0.5, 1.35), (3.45, 3.85), (5.95, 6.75), (7.25, 8.25), (10.35, 10.75),
                   (12.85, 13.65), (14.15, 15.2)]:
        ax.annotate("", xy=(x1, y), xytext=(x0, y), arrowprops=arrow)
    ax.text(0.3, y, "x", ha="right", va="center", fontsize=12)
    ax.text(15.3, y, "out", ha="left", va="center", fontsize=12)
    ax.text(7.75, y - 0.3, "h", ha="center", va="top", fontsize=11)
    # residual connections over the top
    for x_from, x_to in [(0.9, adds[0]), (7.75, adds[1])]:
        ax.plot([x_from, x_from, x_to], [y, y + 1.3, y + 1.3], color="black", lw=1.2)
        ax.annotate("", xy=(x_to, y + 0.25), xytext=(x_to, y + 1.3), arrowprops=arrow)
    ax.text(3.95, y + 1.42, "residual: x passes through unchanged", ha="center", va="bottom", fontsize=8.5)
    ax.text(10.8, y + 1.42, "residual: h passes through unchanged", ha="center", va="bottom", fontsize=8.5)
    ax.set_title(f"One Mistral block (repeated n_layers = {MISTRAL_7B.n_layers} times in Mistral 7B)",
                 fontsize=10)
    fig.tight_layout()
    return finish(fig, path)


def rope_rotations(path, pairs=(0, 4, 16, 32), n_positions=12, head_dim=MISTRAL_7B.head_dim,
                   theta=MISTRAL_7B.rope_theta):
    """Where RoPE sends the 2-D pair (1, 0) at positions 0..n_positions-1, for a few pair indices i.

    Pair i turns by theta^(-2i/head_dim) radians per position: fast for i = 0, barely at all
    for the last pairs. One panel per pair, points coloured by position.
    """
    positions = np.arange(n_positions)
    cos, sin = rope_angles(positions, head_dim, theta)            # (n_positions, head_dim/2)
    fig = Figure(figsize=(2.6 * len(pairs), 2.9))
    axes = fig.subplots(1, len(pairs))
    circle = np.linspace(0, 2 * np.pi, 200)
    colours = matplotlib.colormaps["viridis"](np.linspace(0, 1, n_positions))
    for ax, i in zip(axes, pairs):
        ax.plot(np.cos(circle), np.sin(circle), color="0.85", lw=1)
        for m in positions:
            ax.plot([0, cos[m, i]], [0, sin[m, i]], color=colours[m], lw=1.5)
            ax.plot(cos[m, i], sin[m, i], "o", color=colours[m], ms=4)
        step = theta ** (-2 * i / head_dim)
        ax.set_title(f"pair i = {i}\n{step:.3g} rad per position", fontsize=9)
        ax.set_aspect("equal")
        ax.set_xlim(-1.2, 1.2)
        ax.set_ylim(-1.2, 1.2)
        ax.set_xticks([])
        ax.set_yticks([])
    sm = ScalarMappable(cmap="viridis", norm=Normalize(0, n_positions - 1))
    fig.colorbar(sm, ax=axes, label="position m", shrink=0.8)
    fig.suptitle(f"RoPE turns pair i of a head (head_dim = {head_dim}, theta = {theta:g}) "
                 "by m x theta^(-2i/head_dim)", fontsize=10)
    return finish(fig, path)


def make(out_dir):
    """Both figures of the chapter; returns their paths."""
    paths = [Path(out_dir) / "block_diagram.png", Path(out_dir) / "rope_rotations.png"]
    block_diagram(paths[0])
    rope_rotations(paths[1])
    return paths
