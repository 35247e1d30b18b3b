"""Figures for the training appendix: the pocket model's training curve.

Drawn on a matplotlib Figure (object API, no pyplot); the PNG is written only on request (see
output.py).
"""
import json
from pathlib import Path

import numpy as np

from ..evaluate import bits_per_char
from ..paths import DEFAULT_MODEL, FIGURES_DIR
from .output import Figure, finish


def training_curve(log, evaluation, ax, smooth=20):
    """Training loss (moving average of `smooth` steps) and validation loss, in bits per
    character, against tokens seen, on the axes `ax`; the n-gram baselines as horizontal lines."""
    meta, records = log["meta"], log["records"]
    train_ratio = meta["train_tokens"] / meta["train_chars"]            # tokens per character
    val_ratio = meta["val_tokens"] / meta["val_chars"]
    tokens = np.array([r["tokens"] for r in records]) / 1e6
    loss = np.array([r["loss"] for r in records])
    smooth = max(1, min(smooth, len(loss)))
    kernel = np.ones(smooth) / smooth
    smoothed = np.convolve(loss, kernel, mode="valid")
    ax.plot(tokens, bits_per_char(loss, train_ratio, 1), color="0.8", lw=0.8, label="train (each step)")
    ax.plot(tokens[smooth - 1:], bits_per_char(smoothed, train_ratio, 1), color="C0",
            label=f"train ({smooth}-step average)")
    val = [(r["tokens"] / 1e6, r["val_loss"]) for r in records if "val_loss" in r]
    if val:
        vt, vl = zip(*val)
        ax.plot(vt, bits_per_char(np.array(vl), val_ratio, 1), "o-", color="C1", ms=3,
                label="validation (held-out plays, fixed slice)")
    if evaluation:
        for key, color in (("unigram", "C3"), ("bigram", "C2")):
            b = evaluation["baselines"][key]["bits_per_char"]
            ax.axhline(b, color=color, ls="--", lw=1, label=f"{key} baseline ({b:.2f})")
    ax.set_ylim(1.5, 5)
    for epoch in range(1, int(tokens[-1] * 1e6 // meta["train_tokens"]) + 1):
        x = epoch * meta["train_tokens"] / 1e6
        ax.axvline(x, color="0.5", ls=":", lw=1)
        ax.text(x, 4.9, f" epoch {epoch}", color="0.4", va="top", fontsize=9)
    ax.set_xlabel("training tokens seen (millions)")
    ax.set_ylabel("loss (bits per character)")
    ax.set_title("The pocket Mistral learning Shakespeare")
    ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return ax


def curve_figure(path, model_dir=DEFAULT_MODEL):
    """The training curve of the model in model_dir, from its train_log.json (and eval.json)."""
    log = json.loads((Path(model_dir) / "train_log.json").read_text())
    ev_path = Path(model_dir) / "eval.json"
    evaluation = json.loads(ev_path.read_text()) if ev_path.exists() else None
    fig = Figure(figsize=(9.5, 4))
    training_curve(log, evaluation, fig.add_subplot())
    fig.tight_layout()
    return finish(fig, path)


def make(out_dir=FIGURES_DIR, model_dir=DEFAULT_MODEL):
    """The appendix's figure; returns its path."""
    path = Path(out_dir) / "training_curve.png"
    curve_figure(path, model_dir)
    return [path]
