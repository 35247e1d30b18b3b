"""Chapter 09 (Mistral 7B vs Llama 2 13B): scaled-down twins, a side-by-side decode measurement,
and the chapter's figures.

Every cost comes from costs.py, a function of a ModelArgs alone, so the same line of code gives the
number for the real 7B/13B configs and for the scaled-down twins the chapter runs. Figures are drawn
on matplotlib Figures (object API, no pyplot); each figure function returns its figure and writes
the PNG only on request (see output.py).
"""
from pathlib import Path
import json
import time

from matplotlib.patches import Patch
import numpy as np

from ..config import LLAMA2_13B, MISTRAL_7B
from ..costs import (attention_flops, cache_tokens_that_fit, decode_bytes, flops_per_token, has_window,
                     held_bytes, kv_bytes_per_token, kv_cache_bytes, matmul_params, n_params, weight_bytes)
from ..model import Model, random_model
from ..paths import REPO_ROOT
from .output import Figure, finish

BENCHMARKS_JSON = REPO_ROOT / "book" / "data" / "published_benchmarks.json"

GiB = 2**30
MODELS = ("Mistral 7B", "Llama 2 13B")
COLOURS = {"Mistral 7B": "tab:orange", "Llama 2 13B": "tab:blue"}


# ---- the scaled-down twins ---------------------------------------------------------------------

def scaled(args, width=8, depth=4, length=16):
    """A twin of `args` small enough to run here, with the same head counts.

    Widths (dim, hidden_dim, head_dim, vocab_size) are divided by `width`, n_layers by `depth`,
    lengths (W, max_seq_len) by `length`. n_heads and n_kv_heads stay, so the grouping and the
    ratio of cache bytes per token between two twins (n_layers x n_kv_heads x head_dim) stay too.
    """
    def div(name, factor):
        value = getattr(args, name)
        if value % factor:
            raise ValueError(f"scaled: {name} = {value} is not divisible by {factor}; "
                             "pick a factor that divides it")
        return value // factor
    return args.replace(dim=div("dim", width), hidden_dim=div("hidden_dim", width),
                        head_dim=div("head_dim", width), vocab_size=div("vocab_size", width),
                        n_layers=div("n_layers", depth), W=div("W", length),
                        max_seq_len=div("max_seq_len", length))


# ---- measured: the book's own Model, side by side ----------------------------------------------

def twins(width=8, depth=4, length=16, seed=0):
    """{name: random Model} of the scaled Mistral 7B and Llama 2 13B, same scale factors."""
    return {name: random_model(scaled(args, width, depth, length), seed=seed + i)
            for i, (name, args) in enumerate(zip(MODELS, (MISTRAL_7B, LLAMA2_13B)))}


def measure_decode(models, positions, repeats=15, seed=0):
    """Time single-token decode steps of several models at growing positions, side by side.

    One sequence of random tokens per run. At each position p every model's cache is pre-filled up
    to p, then each model decodes 1 + `repeats` tokens, one at a time; the first step is a
    warm-up, the others are timed. The steps alternate between the models, so noise from other
    processes falls on all of them alike.

    A model without a window (W >= max_seq_len, Llama) gets, at each position, a cache with just
    enough slots for the tokens so far (RollingCache.resized), which is what a cache that grows with the
    sequence holds: the book's cache attends over all of its W slots (empty ones masked), so one
    sized for the whole context would make every step pay for the whole context. Positions past
    the trained context are allowed: the computation, and so the cost, is the same.

    Returns {name: {"position": (P,) first decoded position, "seconds": (P, repeats),
    "tokens": (P,) tokens fed once the steps are done, "held_bytes": (P,) cache bytes held then}}.
    """
    rng = np.random.default_rng(seed)
    vocab = min(m.args.vocab_size for m in models.values())
    tokens = rng.integers(0, vocab, max(positions) + (1 + repeats) * len(positions))
    out = {name: {"position": np.asarray(positions), "seconds": np.zeros((len(positions), repeats)),
                  "tokens": np.zeros(len(positions), np.int64),
                  "held_bytes": np.zeros(len(positions), np.int64)} for name in models}
    growing = {name: not has_window(m.args) for name, m in models.items()}
    state = {name: (m, m.new_cache()) for name, m in models.items()}
    for i, p in enumerate(positions):
        for name, (m, cache) in state.items():
            if growing[name]:
                W = max(p, cache.n_seen) + 1 + repeats
                m, cache = Model(m.args.replace(W=W), m.weights), cache.resized(W)
            if cache.n_seen < p:
                m.prefill(tokens[cache.n_seen:p], cache)
            state[name] = (m, cache)
            out[name]["position"][i] = cache.n_seen
        for r in range(1 + repeats):
            for name, (m, cache) in state.items():
                t0 = time.perf_counter()
                m.forward(tokens[cache.n_seen:cache.n_seen + 1], cache)
                if r:
                    out[name]["seconds"][i, r - 1] = time.perf_counter() - t0
        for name, (m, cache) in state.items():
            out[name]["tokens"][i] = cache.n_seen
            out[name]["held_bytes"][i] = held_bytes(cache)
    return out


# ---- figures -----------------------------------------------------------------------------------

def cost_panels(path, configs=None, budget_bytes=16 * GiB, max_tokens=32768):
    """Four panels from the configs alone: weights, FLOPs per token, KV cache, a 16 GiB budget."""
    configs = configs or dict(zip(MODELS, (MISTRAL_7B, LLAMA2_13B)))
    names = list(configs)
    colours = [COLOURS.get(n, "grey") for n in names]
    fig = Figure(figsize=(10.5, 8))
    axes = fig.subplots(2, 2)
    budget = budget_bytes / GiB

    ax = axes[0, 0]
    gb = [weight_bytes(configs[n]) / GiB for n in names]
    bars = ax.bar(names, gb, color=colours)
    for b, n in zip(bars, names):
        ax.text(b.get_x() + b.get_width() / 2, b.get_height() / 2, f"{n_params(configs[n]) / 1e9:.2f} B params\n"
                f"{b.get_height():.1f} GiB", ha="center", va="center", fontsize=10, color="white")
    ax.axhline(budget, color="black", ls=":", lw=1)
    ax.text(-0.45, budget + 0.4, f"budget: {budget:.0f} GiB", fontsize=9, ha="left", va="bottom")
    ax.set_ylabel("weights in bf16 (GiB)")
    ax.set_ylim(0, max(gb) * 1.3)
    ax.set_title("(a) parameters and weight bytes", fontsize=11)

    pos = np.arange(0, max_tokens + 1, 256)
    ax = axes[0, 1]
    for n, c in zip(names, colours):
        a = configs[n]
        f = np.array([flops_per_token(a, int(p)) for p in pos]) / 1e9
        inside = pos < a.max_seq_len
        ax.plot(pos[inside], f[inside], color=c, label=n)
        ax.plot(pos[~inside], f[~inside], color=c, ls="--", label=f"{n}, past its {a.max_seq_len} context")
    ax.set_xlabel("position of the generated token")
    ax.set_ylabel("GFLOP per token")
    ax.set_ylim(0, None)
    ax.legend(fontsize=9)
    ax.set_title("(b) FLOPs per generated token", fontsize=11)

    ax = axes[1, 0]
    for n, c in zip(names, colours):
        a = configs[n]
        kv = np.array([kv_cache_bytes(a, int(t)) for t in pos]) / GiB
        inside = pos <= a.max_seq_len
        ax.plot(pos[inside], kv[inside], color=c, label=n)
        ax.plot(pos[~inside], kv[~inside], color=c, ls="--", label=f"{n}, past its {a.max_seq_len} context")
        if has_window(a):                                        # show the full cache too
            full = np.array([kv_cache_bytes(a.replace(W=max_tokens), int(t)) for t in pos]) / GiB
            if not np.allclose(full, kv):
                ax.plot(pos, full, color=c, ls=":", label=f"{n} without the rolling cache")
    for t in (4096, 8192, 32768):
        ax.axvline(t, color="grey", lw=0.6)
    ax.set_yscale("log")
    ax.set_xlabel("tokens in the sequence")
    ax.set_ylabel("KV cache in bf16 (GiB, log scale)")
    ax.legend(fontsize=9, loc="lower right")
    ax.set_title("(c) KV cache of one sequence", fontsize=11)

    ax = axes[1, 1]
    lengths = (4096, 8192, 32768)
    width = 0.38
    x = np.arange(len(lengths))
    for k, (n, c) in enumerate(zip(names, colours)):
        a = configs[n]
        w = weight_bytes(a) / GiB
        kv = np.array([kv_cache_bytes(a, t) for t in lengths]) / GiB
        xs = x + (k - 0.5) * width
        ax.bar(xs, [w] * len(lengths), width, color=c, alpha=0.45)
        ax.bar(xs, kv, width, bottom=w, color=c, hatch="//", edgecolor="white")
        for xi, t, total in zip(xs, lengths, w + kv):
            ax.text(xi, total + 0.5, f"{total:.0f}", ha="center", va="bottom", fontsize=9)
    ax.axhline(budget, color="black", ls=":", lw=1)
    ax.set_xticks(x, [f"{t // 1024}k tokens" for t in lengths])
    ax.set_ylabel("GiB: weights (light) + KV cache (hatched)")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.1)
    ax.legend(handles=[Patch(color=c, label=n) for n, c in zip(names, colours)], fontsize=9, loc="upper left")
    ax.set_title(f"(d) one sequence vs a {budget:.0f} GiB budget (bf16)", fontsize=11)
    fig.tight_layout()
    return finish(fig, path)


def measured(path, result, predicted_time_ratio=None):
    """Decode time per token, the time ratio of the two models, and cache bytes held, as measured
    by measure_decode() (the first model in `result` is the denominator of the ratio)."""
    names = list(result)
    fig = Figure(figsize=(12, 4.2))
    axes = fig.subplots(1, 3)
    for name, r in result.items():
        c = COLOURS.get(name, "grey")
        ms = r["seconds"] * 1e3
        axes[0].plot(r["position"], np.median(ms, axis=1), "o-", color=c, label=f"{name} twin")
        axes[0].fill_between(r["position"], ms.min(axis=1), np.median(ms, axis=1), color=c, alpha=0.2)
        axes[2].plot(r["tokens"], r["held_bytes"] / 2**20, "o-", color=c, label=f"{name} twin")
    axes[0].set_xlabel("position of the generated token")
    axes[0].set_ylabel("ms per token")
    axes[0].set_ylim(0, None)
    axes[0].legend(fontsize=9, loc="lower right", title="median; band down to the minimum",
                   title_fontsize=9)
    axes[0].set_title("decode time per token", fontsize=11)
    if len(names) == 2:
        a, b = (result[n] for n in names)
        paired = b["seconds"] / a["seconds"]                          # steps taken back to back
        q25, q50, q75 = np.percentile(paired, [25, 50, 75], axis=1)
        axes[1].plot(a["position"], q50, "o-", color="black", label="measured, median")
        axes[1].fill_between(a["position"], q25, q75, color="grey", alpha=0.3, label="measured, middle half")
        if predicted_time_ratio is not None:
            axes[1].plot(a["position"], predicted_time_ratio, "s--", color="tab:green", label="predicted from bytes read")
        axes[1].axhline(1, color="grey", lw=0.6)
        axes[1].set_ylim(0, max(3, float(np.nanmax(q75)) * 1.1))
        axes[1].set_xlabel("position of the generated token")
        axes[1].set_ylabel("Llama twin time / Mistral twin time")
        axes[1].legend(fontsize=9, loc="lower right")
        axes[1].set_title("ratio of back-to-back steps", fontsize=11)
    axes[2].set_xlabel("tokens in the sequence")
    axes[2].set_ylabel("KV cache held (MiB, float32)")
    axes[2].legend(fontsize=9)
    axes[2].set_title("cache held, counted in the arrays", fontsize=11)
    fig.tight_layout()
    return finish(fig, path)


def load_benchmarks(path=BENCHMARKS_JSON):
    return json.loads(Path(path).read_text())


def benchmarks(path, data=None):
    """Published scores: Mistral 7B and Llama 2 13B as the Mistral paper re-ran them (bars), and
    Llama 2 13B as its own paper reported it where the benchmark matches (crosses)."""
    data = data or load_benchmarks()
    rows = data["benchmarks"]
    y = np.arange(len(rows))[::-1]
    fig = Figure(figsize=(9, 6.5))
    ax = fig.add_subplot()
    h = 0.38
    ax.barh(y + h / 2, [r["mistral_7b"] for r in rows], h, color=COLOURS["Mistral 7B"],
            label="Mistral 7B (Mistral paper, Table 2)")
    ax.barh(y - h / 2, [r["llama2_13b"] for r in rows], h, color=COLOURS["Llama 2 13B"],
            label="Llama 2 13B (Mistral paper's re-run, Table 2)")
    own = [(yi, r["llama2_13b_own_paper"]["value"]) for yi, r in zip(y, rows) if r.get("llama2_13b_own_paper")]
    if own:
        ax.plot([v for _, v in own], [yi - h / 2 for yi, _ in own], "kx", ms=7,
                label="Llama 2 13B (Llama 2 paper's own evaluation)")
    for yi, r in zip(y, rows):
        ax.text(max(r["mistral_7b"], r["llama2_13b"]) + 1, yi, f"{r['mistral_7b'] - r['llama2_13b']:+.1f}",
                va="center", fontsize=9)
    ax.set_yticks(y, [f"{r['name']} ({r['setting']})" for r in rows], fontsize=9)
    ax.set_xlabel("score (%), higher is better; the number is Mistral 7B minus Llama 2 13B")
    ax.set_xlim(0, 100)
    ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.4, -0.09), ncol=2, frameon=False)
    ax.set_title("Published results (arXiv:2310.06825 Table 2; arXiv:2307.09288 Tables 20, 21, 25)",
                 fontsize=9)
    fig.tight_layout()
    return finish(fig, path)


def make(out_dir):
    """The chapter's three figures (the measured one runs the measurement); returns their paths."""
    out_dir = Path(out_dir)
    paths = [out_dir / f"versus_{name}.png" for name in ("costs", "measured", "benchmarks")]
    models = twins()
    positions = [0, 128, 256, 384, 512]
    result = measure_decode(models, positions)
    a, b = (m.args for m in models.values())
    predicted = [decode_bytes(b, p, 4, 4) / decode_bytes(a, p, 4, 4) for p in positions]
    cost_panels(paths[0])
    measured(paths[1], result, predicted)
    benchmarks(paths[2])
    return paths
