"""Figures of chapter 1, "From text to tokens": token boundaries, and the lengths of the pieces.

Drawn on matplotlib Figures (object API, no pyplot): each function returns its figure and writes
the PNG only on request (see output.py).
"""
from pathlib import Path
import unicodedata

import numpy as np
from matplotlib.patches import Rectangle

from .output import Figure, finish

# Texts of the boundary figure: a line of verse, a number, a word in Cyrillic, an emoji.
EXAMPLES = ("To be, or not to be, that is the question:",
            "In 1603, Hamlet cost 12345 pounds.",
            "Привет, мир! 🍕")

_COLOURS = ("#cfe3f7", "#fbe0c3", "#d6efd0", "#eedcf5")   # token boxes, in turn
_BYTE_COLOUR = "#d9d9d9"                                   # byte-fallback pieces <0x..>
_SPACE_COLOUR = "#c0392b"                                  # the space mark, so it is not taken for "_"
_FONT = dict(family="DejaVu Sans Mono", size=11)
_CHAR_W = 0.602 * _FONT["size"] / 72                       # inches per monospace character


def _shown(text):
    """The text with characters beyond the font (emoji: code points above U+FFFF) named."""
    return "".join(c if ord(c) <= 0xFFFF else f"[{unicodedata.name(c, f'U+{ord(c):X}')}]"
                   for c in text)


def _draw_piece(ax, piece, x, y):
    """The piece in monospace from x (one unit per character), its space marks '▁' in colour."""
    ax.text(x + len(piece) / 2, y, piece.replace("▁", " "), ha="center", va="baseline", **_FONT)
    for k, c in enumerate(piece):
        if c == "▁":
            ax.text(x + k + 0.5, y, c, ha="center", va="baseline", color=_SPACE_COLOUR,
                    **dict(_FONT, weight="bold"))


def _is_byte(piece):
    return piece.startswith("<0x") and piece.endswith(">") and len(piece) == 6


def token_rows(texts, tokenizers):
    """[(title, pieces)] for every text and every tokenizer {name: Tokenizer}, BOS left out."""
    rows = []
    for text in texts:
        for name, tok in tokenizers.items():
            pieces = tok.pieces(tok.encode(text, bos=False))
            rows.append((f"{name}: {len(pieces)} tokens", pieces))
    return rows


def _layout(pieces, width):
    """(line, column) of each piece, wrapping at `width` characters; pieces are separated by 1."""
    places, line, col = [], 0, 0
    for p in pieces:
        if col and col + len(p) > width:
            line, col = line + 1, 0
        places.append((line, col))
        col += len(p) + 1
    return places, line + 1


def draw_token_boundaries(rows, path, width=60, texts=None):
    """One box per token, the piece written inside; byte-fallback pieces grey.

    rows: [(title, pieces)]; with `texts` (one per group of rows), each group gets the text as heading.
    """
    laid = [(title, pieces, *_layout(pieces, width)) for title, pieces in rows]
    per_text = len(rows) // len(texts) if texts else None
    n_lines = sum(n + 1 for *_, n in laid) + (len(texts) * 1.8 - 0.5 if texts else 0)
    fig = Figure(figsize=(width * _CHAR_W + 0.4, 0.27 * n_lines + 0.2))
    ax = fig.add_axes((0.02, 0.01, 0.96, 0.98))
    ax.set_xlim(0, width)
    ax.set_ylim(n_lines, 0)
    ax.axis("off")
    y = 0.0
    for i, (title, pieces, places, n) in enumerate(laid):
        if texts and i % per_text == 0:
            y += 0.5 if i else 0.0
            ax.text(0, y + 0.75, f"text: {_shown(repr(texts[i // per_text]))}", fontsize=11, weight="bold",
                    va="baseline")
            y += 1.3
        ax.text(0, y + 0.75, title, fontsize=9, color="#444444", va="baseline")
        y += 1
        for k, (p, (line, col)) in enumerate(zip(pieces, places)):
            colour = _BYTE_COLOUR if _is_byte(p) else _COLOURS[k % len(_COLOURS)]
            ax.add_patch(Rectangle((col - 0.1, y + line + 0.08), len(p) + 0.2, 0.84,
                                   facecolor=colour, edgecolor="#555555", linewidth=0.6))
            _draw_piece(ax, _shown(p), col, y + line + 0.72)
        y += n
    return finish(fig, path)


def piece_lengths(tok):
    """Length in characters of every ordinary piece (no <unk>/<s>/</s>, no <0x..> bytes)."""
    sp = tok.sp
    return np.array([len(sp.id_to_piece(i)) for i in range(tok.vocab_size)
                     if not (sp.is_byte(i) or sp.is_control(i) or sp.is_unknown(i))])


def draw_piece_lengths(lengths, path):
    """Bars: the share of each vocabulary's pieces that are 1, 2, ... characters long.

    lengths: {name: array of piece lengths} (see piece_lengths).
    """
    fig = Figure(figsize=(7.5, 3.4))
    ax = fig.add_subplot()
    longest = max(int(v.max()) for v in lengths.values())
    x = np.arange(1, longest + 1)
    bar_w = 0.8 / len(lengths)
    for k, (name, v) in enumerate(lengths.items()):
        share = np.bincount(v, minlength=longest + 1)[1:] / len(v) * 100
        ax.bar(x + (k - (len(lengths) - 1) / 2) * bar_w, share, bar_w,
               label=f"{name}: {len(v)} pieces, mean {v.mean():.2f} chars")
    ax.set_xticks(x)
    ax.set_xlabel("piece length (characters, '▁' counts as one)")
    ax.set_ylabel("share of the pieces (%)")
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return finish(fig, path)


def _tokenizers():
    from mistral_np import DEFAULT_MODEL, Tokenizer
    from mistral_np.corpus import mistral_tokenizer_path
    return {"Mistral 7B (32000 pieces)": Tokenizer(mistral_tokenizer_path()),
            "pocket (2048 pieces)": Tokenizer(DEFAULT_MODEL / "tokenizer.model")}


def make(out_dir):
    """Both figures of the chapter; returns their paths."""
    out_dir = Path(out_dir)
    paths = [out_dir / "tokens_boundaries.png", out_dir / "tokens_piece_lengths.png"]
    toks = _tokenizers()
    draw_token_boundaries(token_rows(EXAMPLES, toks), paths[0], texts=EXAMPLES)
    draw_piece_lengths({name: piece_lengths(t) for name, t in toks.items()}, paths[1])
    return paths
