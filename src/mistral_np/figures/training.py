"""Figures for the training appendix: the pocket model's training curve."""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import FIGURES_DIR  # noqa: E402
from ..train import bits_per_char  # noqa: E402

POCKET = Path(__file__).resolve().parents[3] / "models" / "pocket-mistral"


def training_curve(log, evaluation=None, ax=None, smooth=20):
    """Training loss (moving average of `smooth` steps) and validation loss, in bits per
    character, against tokens seen; the n-gram baselines as horizontal lines."""
    meta, records = log["meta"], log["records"]
    train_ratio = meta["train_tokens"] / meta["train_chars"]            # tokens per character
    val_ratio = meta["val_tokens"] / meta["val_chars"]
    tokens = np.array([r["tokens"] for r in records]) / 1e6
    loss = np.array([r["loss"] for r in records])
    smooth = max(1, min(smooth, len(loss)))
    kernel = np.ones(smooth) / smooth
    smoothed = np.convolve(loss, kernel, mode="valid")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
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
        ax.text(x, 4.9, f" epoch {epoch}", color="0.4", va="top", fontsize=8)
    ax.set_xlabel("training tokens seen (millions)")
    ax.set_ylabel("loss (bits per character)")
    ax.set_title("The pocket Mistral learning Shakespeare")
    ax.legend(fontsize=8, loc="center right")
    return ax


def make(out_dir=FIGURES_DIR, model_dir=POCKET):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = json.loads((Path(model_dir) / "train_log.json").read_text())
    ev_path = Path(model_dir) / "eval.json"
    evaluation = json.loads(ev_path.read_text()) if ev_path.exists() else None
    fig, ax = plt.subplots(figsize=(7, 4))
    training_curve(log, evaluation, ax)
    fig.tight_layout()
    path = out_dir / "training_curve.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]
