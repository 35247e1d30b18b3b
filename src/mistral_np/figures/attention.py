"""Figures of chapter 2, "Attention from scratch": an attention pattern, and the cost of attention.

Drawn on matplotlib Figures (object API, no pyplot): each function returns its figure, which the
chapter's cell shows, and writes the PNG only on request (see output.py). `measure_cost` times the
real `attention` and is used by the chapter too.
"""
from pathlib import Path
import time
import tracemalloc

import numpy as np

from ..attention import attention, softmax, window_mask
from ..config import MISTRAL_7B
from .output import Figure, finish

SENTENCE = "To be, or not to be, that is the question"


def same_token_head(ids, head_dim=16, seed=0):
    """q and k of a hand-made head (T, head_dim): both are a random vector per token id,
    so a query scores high on keys of the same token, itself included."""
    rng = np.random.default_rng(seed)
    vectors = {i: rng.standard_normal(head_dim, dtype=np.float32) for i in sorted(set(ids))}
    q = np.stack([vectors[i] for i in ids])                       # (T, head_dim)
    return q, q.copy()


def attention_weights(q, k, mask):
    """softmax(q k^T / sqrt(head_dim)) with masked scores at -inf: (T, S) for one head."""
    scores = q @ k.T / np.float32(np.sqrt(q.shape[-1]))           # (T, S)
    return softmax(np.where(mask, scores, np.float32(-np.inf)))


def draw_heatmap(weights, labels, path, title=""):
    """The (T, T) attention weights; masked cells (weight exactly 0 above the diagonal) hatched."""
    T = len(labels)
    fig = Figure(figsize=(6.8, 5.8))
    ax = fig.add_subplot()
    shown = np.ma.masked_where(np.triu(np.ones((T, T), bool), 1), weights)
    ax.set_facecolor("#f2f2f2")
    image = ax.imshow(shown, cmap="viridis", vmin=0, vmax=1)
    for i, j in zip(*np.triu_indices(T, 1)):
        ax.add_patch(_hatch(j, i))
    ax.set_xticks(range(T), labels, rotation=90, fontfamily="DejaVu Sans Mono")
    ax.set_yticks(range(T), labels, fontfamily="DejaVu Sans Mono")
    ax.set_xlabel("key position j (what is looked at)")
    ax.set_ylabel("query position i (who looks)")
    if title:
        ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="weight (each row sums to 1)")
    fig.tight_layout()
    return finish(fig, path)


def _hatch(x, y):
    from matplotlib.patches import Rectangle
    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, hatch="///", edgecolor="#c8c8c8", linewidth=0)


def measure_cost(Ts, group=MISTRAL_7B.n_heads // MISTRAL_7B.n_kv_heads, head_dim=MISTRAL_7B.head_dim,
                 seed=0, rounds=3, min_repeats=2, min_seconds=0.1):
    """CPU time and memory of `attention` for one head group (group query heads sharing one
    key/value head), causal mask, for each sequence length in Ts.

    Returns {"T", "seconds" (the best call's CPU time), "score_bytes" (one (group, T, T) float32
    score array), "peak_bytes" (tracemalloc's peak during one call)}, each an array over Ts.

    Why CPU time (time.process_time) and not the wall clock: a call longer than the scheduler's
    time slice can be interrupted by other programs, and its wall-clock time would count their
    work too, more so the longer the call, which bends the measured slope. The lengths are timed
    in turn, `rounds` times over, so that a busy moment slows one round of every length rather
    than every call of one length. Set OPENBLAS_NUM_THREADS=1 before NumPy loads: BLAS threads
    waiting for a CPU would otherwise stall the calls.
    """
    rng = np.random.default_rng(seed)
    inputs = []
    for T in Ts:
        q = rng.standard_normal((T, group, head_dim), dtype=np.float32)   # (T, group, hd)
        k = rng.standard_normal((T, 1, head_dim), dtype=np.float32)       # (T, 1, hd)
        v = rng.standard_normal((T, 1, head_dim), dtype=np.float32)
        pos = np.arange(T)
        inputs.append((q, k, v, window_mask(pos, pos, T)))                 # mask (T, T) causal
        attention(*inputs[-1])                                             # warm-up
    best = [np.inf] * len(Ts)
    for _ in range(rounds):
        for n, args in enumerate(inputs):
            calls, start = 0, time.process_time()
            while calls < min_repeats or time.process_time() - start < min_seconds:
                t0 = time.process_time()
                attention(*args)
                best[n] = min(best[n], time.process_time() - t0)
                calls += 1
    peaks = []
    for args in inputs:
        tracemalloc.start()               # NumPy reports its array memory to tracemalloc
        attention(*args)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return {"T": np.array(Ts), "seconds": np.array(best),
            "score_bytes": np.array([np.empty((group, T, T), np.float32).nbytes for T in Ts]),
            "peak_bytes": np.array(peaks)}


def slope(x, y):
    """The exponent p of y ~ x^p fitted by least squares on log-log axes."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def draw_cost(cost, path, fit_from=1024):
    """Time and memory against T on log-log axes; lines are fits over T >= fit_from."""
    T = cost["T"]
    big = T >= fit_from
    fig = Figure(figsize=(9.5, 3.8))
    ax_t, ax_m = fig.subplots(1, 2)
    panels = ((ax_t, [("seconds", "CPU time, best call", "o")], "CPU time (s)"),
              (ax_m, [("score_bytes", "one (group, T, T) score array", "s"),
                      ("peak_bytes", "peak of one call", "o")], "memory (bytes)"))
    t = cost["seconds"]
    ax_t.loglog(T, t[-1] * (T / T[-1]).astype(float) ** 2, ":", color="grey", label="slope 2 (T²)")
    for ax, series, what in panels:
        for key, label, marker in series:
            y = cost[key]
            p = slope(T[big], y[big])
            c = np.exp(np.mean(np.log(y[big]) - p * np.log(T[big])))   # y = c T^p through the points
            line, = ax.loglog(T, y, marker, label=f"{label};\nfitted slope {p:.2f}")
            ax.loglog(T[big], c * T[big].astype(float) ** p, "-", color=line.get_color(), alpha=0.6)
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(what)
        ax.set_xticks(T, [str(t) for t in T])
        ax.minorticks_off()
    ax_t.set_title(f"time of attention(); slopes fitted for T ≥ {fit_from}", fontsize=10)
    ax_m.set_title("memory", fontsize=10)
    for ax in (ax_t, ax_m):
        ax.legend(fontsize=9, frameon=False, loc="upper left")
    fig.tight_layout()
    return finish(fig, path)


def make(out_dir):
    """Both figures of the chapter (the cost figure runs the measurement); returns their paths."""
    from mistral_np import Tokenizer
    from mistral_np.corpus import mistral_tokenizer_path
    out_dir = Path(out_dir)
    tok = Tokenizer(mistral_tokenizer_path())
    ids = tok.encode(SENTENCE, bos=False)
    q, k = same_token_head(ids)
    pos = np.arange(len(ids))
    weights = attention_weights(q, k, window_mask(pos, pos, len(ids)))
    paths = [out_dir / "attention_pattern.png", out_dir / "attention_cost.png"]
    draw_heatmap(weights, tok.pieces(ids), paths[0])
    draw_cost(measure_cost([2 ** n for n in range(4, 13)]), paths[1])
    return paths
