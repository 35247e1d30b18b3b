"""Figures of chapter 08 (real weights on a CPU): where the time of one decoded token goes.

The numbers come from `python -m mistral_np bench --json`, run on a checkpoint with exactly
Mistral-7B-v0.1's files and shapes (tools/make_7b_shaped_checkpoint.py) and stored in
figures/bench_mistral_7b.json, so the figure can be redrawn without the 14.5 GB of weights.
"""
from pathlib import Path
import json


from . import FIGURES_DIR
from .output import Figure, finish

BENCH_7B = FIGURES_DIR / "bench_mistral_7b.json"
BENCH_7B_INT8 = FIGURES_DIR / "bench_mistral_7b_int8.json"   # the same, after `quantize`


def load_bench(path=BENCH_7B):
    return json.loads(Path(path).read_text())


def time_parts(bench):
    """[(part, measured s, floor s)] of one decode token after the short prompt.

    The floor of a part is the bytes it reads divided by the best measured read bandwidth. The
    matrix products are timed one part at a time; "the rest" is the whole token's median minus
    them: attention over the cache, norms, RoPE, and Python's own time.
    """
    d = bench["decode"][0]
    bandwidth = bench["bandwidth_best_GBps"] * 1e9
    rows = [(label, v["seconds"], v["floor_s"]) for label, v in bench["breakdown"].items()]
    rest_bytes = d["bytes_per_token"] - sum(v["bytes"] for v in bench["breakdown"].values())
    rest = max(0.0, d["median_s"] - sum(t for _, t, _ in rows))
    rows.append(("the rest (attention over the cache, norms, RoPE, Python)", rest, rest_bytes / bandwidth))
    rows.append(("whole token (median)", d["median_s"], d["bytes_per_token"] / bandwidth))
    return rows


def time_figure(bench, path):
    """Left: each part's measured time beside its floor. Right: a token at growing contexts."""
    fig = Figure(figsize=(11, 4.2))
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
    rows = time_parts(bench)[::-1]
    y = range(len(rows))
    ax.barh([i + 0.2 for i in y], [m for _, m, _ in rows], height=0.4, color="C0", label="measured")
    ax.barh([i - 0.2 for i in y], [f for _, _, f in rows], height=0.4, color="0.7",
            label=f"floor: bytes read / {bench['bandwidth_best_GBps']:.0f} GB/s")
    for i, (_, m, f) in enumerate(rows):
        ax.text(m, i + 0.2, f" {m:.2f} s", va="center", fontsize=8)
        ax.text(f, i - 0.2, f" {f:.2f} s", va="center", fontsize=8, color="0.35")
    ax.set_yticks(list(y), [label for label, _, _ in rows], fontsize=8)
    ax.set_xlabel("seconds per decoded token")
    ax.set_title(f"One token after a {bench['decode'][0]['context']}-token prompt, bf16 weights", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_xlim(0, max(m for _, m, _ in rows) * 1.25)

    ctx = bench["decode"]
    labels = [f"{d['context']:,}" for d in ctx]
    x = range(len(ctx))
    ax2.bar([i - 0.27 for i in x], [d["min_s"] for d in ctx], width=0.27, color="C0", label="measured, best")
    ax2.bar(list(x), [d["median_s"] for d in ctx], width=0.27, color="C0", alpha=0.45, label="measured, median")
    ax2.bar([i + 0.27 for i in x], [d["floor_s"] for d in ctx], width=0.27, color="0.7", label="floor")
    ax2.set_xticks(list(x), labels)
    ax2.set_xlabel("tokens already in the context")
    ax2.set_ylabel("seconds per decoded token")
    ax2.set_title("Past W, the cache and the floor stop growing", fontsize=10)
    ax2.set_ylim(0, 1.45 * max(d["median_s"] for d in ctx))
    ax2.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return finish(fig, path)


def make(out_dir):
    path = Path(out_dir) / "real_weights_time.png"
    time_figure(load_bench(), path)
    return [path]
