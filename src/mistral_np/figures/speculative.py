"""Experiments and figures of chapter 10 (speculative decoding with prompt lookup).

The chapter calls these functions and shows their source. The rollback figure is deterministic and
saved into figures/; the timing figure is drawn from the numbers its cell prints and only shown.
"""
import time
from pathlib import Path

import numpy as np

from ..cache import EMPTY, RollingCache
from ..speculative import Stats, speculative_stream
from ..generate import generate_ids
from .output import Figure, finish

PASS_SIZES = (1, 2, 4, 8, 16)


def rollback_states(W=6, n_before=10, n_drafts=3, n_keep=1):
    """Slot contents (positions) of a real RollingCache (1 layer, 1 head) around one rejection.

    n_before positions are cached; one pass feeds the token at n_before and n_drafts drafts after
    it; the model keeps n_keep of the drafts. Returns the positions per slot before the pass, after
    it (during verification), after rollback, and in a cache that never saw the rejected drafts.
    """
    def fed(cache, positions):
        z = np.zeros((len(positions), 1, 2), np.float32)            # q, k, v of the chunk
        cache.attend(0, z, z, z, positions)
        cache.advance(positions)

    cache, never = RollingCache(1, W, 1, 2), RollingCache(1, W, 1, 2)
    for c in (cache, never):
        for p in range(n_before):
            fed(c, np.array([p]))
    before = cache.pos.copy()
    saved = cache.save(1 + n_drafts)
    fed(cache, np.arange(n_before, n_before + 1 + n_drafts))         # [token | drafts]
    during = cache.pos.copy()
    cache.rollback(saved, 1 + n_keep)
    fed(never, np.arange(n_before, n_before + 1 + n_keep))           # only what was kept
    return {"before": before, "during": during, "after": cache.pos.copy(), "never": never.pos.copy()}


def rollback_figure(path, W=6, n_before=10, n_drafts=3, n_keep=1):
    """Three rows of W slots: before the pass, during it (token and drafts written), after rollback."""
    s = rollback_states(W, n_before, n_drafts, n_keep)
    token, kept_end = n_before, n_before + n_keep                       # kept: token .. kept_end
    rejected = set(range(kept_end + 1, n_before + 1 + n_drafts))
    nxt = kept_end + 1                                                   # the next query's position
    rows = [("before the pass", s["before"]), ("during: [token | drafts] written", s["during"]),
            ("after rollback", s["after"])]
    fig = Figure(figsize=(1.25 * W + 3.2, 3.3))
    ax = fig.subplots()
    for r, (label, pos) in enumerate(rows):
        for slot, p in enumerate(pos):
            if p == EMPTY:
                colour, text = "white", ""
            elif r == 1 and p in rejected:
                colour, text = "#e07a5f", f"{p}\ndraft, rejected"
            elif r >= 1 and p >= token:
                colour, text = "#f2cc8f", f"{p}\n{'token' if p == token else 'draft, kept'}"
            elif r == 2 and s["during"][slot] != p:
                colour, text = "#81b29a", f"{p}\nput back"
            else:
                colour, text = "#dde5ee", str(p)
            ax.add_patch(_cell(slot, r, colour))
            ax.text(slot, r, text, ha="center", va="center", fontsize=8)
    ax.set_xlim(-0.5, W - 0.5)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xticks(range(W), [f"slot {i}" for i in range(W)])
    ax.set_yticks(range(len(rows)), [label for label, _ in rows])
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(f"W = {W}: the pass feeds position {token} and drafts {token + 1}..{token + n_drafts}; "
                 f"the model keeps {n_keep}, so position {nxt} comes next and sees {nxt - W + 1}..{nxt}",
                 fontsize=9, pad=22)
    fig.tight_layout()
    return finish(fig, path)


def _cell(x, y, colour):
    from matplotlib.patches import Rectangle
    return Rectangle((x - 0.48, y - 0.42), 0.96, 0.84, facecolor=colour, edgecolor="0.6", lw=0.6)


def time_calls(run, sizes=PASS_SIZES, repeats=5):
    """{T: [seconds of run(T)] * repeats}, the sizes interleaved within each repeat so that a busy
    moment of the machine hits all of them alike (after one untimed warm-up call each)."""
    times = {T: [] for T in sizes}
    for T in sizes:
        run(T)
    for _ in range(repeats):
        for T in sizes:
            t0 = time.perf_counter()
            run(T)
            times[T].append(time.perf_counter() - t0)
    return times


def model_pass(model, n_cached=None, seed=0):
    """run(T): one forward pass of T tokens after n_cached cached ones (default: W - 16, at most 128),
    undone after by rollback, so every call sees the same cache."""
    n_cached = min(model.args.W - max(PASS_SIZES), 128) if n_cached is None else n_cached
    tokens = np.random.default_rng(seed).integers(3, model.args.vocab_size, n_cached + max(PASS_SIZES))
    cache = model.new_cache()
    model.prefill(tokens[:n_cached], cache)

    def run(T):
        saved = cache.save(T)
        model.forward(tokens[n_cached:n_cached + T], cache)
        cache.rollback(saved, 0)
    return run


def matrix_pass(weight, seed=0):
    """run(T): the product of T rows of activations with one weight matrix, as a forward pass does."""
    x = np.random.default_rng(seed).standard_normal((max(PASS_SIZES), weight.shape[1])).astype(np.float32)
    return lambda T: weight.matmul_t(x[:T])


def cost_table(times):
    """Rows (T, min ms, median ms, min ratio to T = 1, median ratio to T = 1)."""
    one_min, one_med = min(times[1]), np.median(times[1])
    return [(T, 1e3 * min(t), 1e3 * np.median(t), min(t) / one_min, np.median(t) / one_med)
            for T, t in times.items()]


def decode_run(model, prompt_ids, n, lookahead, eos_id):
    """One greedy generation: (tokens, decode seconds, Stats). The clock starts at the first token,
    after the pre-fill, and stops at the last."""
    stats, stamps, out = Stats(), [], []
    tokens = (speculative_stream(model, prompt_ids, n, lookahead, eos_id=eos_id, stats=stats)
              if lookahead else generate_ids(model, prompt_ids, n, eos_id=eos_id))
    for t in tokens:
        stamps.append(time.perf_counter())
        out.append(t)
    if not lookahead:
        stats.tokens, stats.sizes = len(out), [1] * (len(out) - 1)
    return out, stamps[-1] - stamps[0], stats


def compare_decoding(model, prompt_ids, n, lookahead, eos_id, repeats=2):
    """Plain and speculative decoding, alternated `repeats` times in one run. Returns the tokens,
    the decode seconds of each (lists), and the speculative Stats; the outputs must agree."""
    secs = {0: [], lookahead: []}
    for _ in range(repeats):
        for k in (0, lookahead):
            out, s, stats = decode_run(model, prompt_ids, n, k, eos_id)
            secs[k].append(s)
            if k == 0:
                plain = out
            elif out != plain:
                raise AssertionError("speculative decoding changed the greedy output")
    return plain, secs[0], secs[lookahead], stats


def implied_speedup(stats, cost):
    """Tokens/s with lookahead over tokens/s without, for a pass cost cost(T) (seconds, any unit):
    the plain loop makes one pass of 1 token per token after the first, the speculative one made
    passes of stats.sizes tokens for the same output."""
    return (stats.tokens - 1) * cost(1) / sum(cost(T) for T in stats.sizes)


def cost_figure(curves, sizes=PASS_SIZES):
    """Pass cost relative to one token, median (line) and min (dots), for each {label: times}."""
    fig = Figure(figsize=(7.2, 4.0))
    ax = fig.subplots()
    for label, times in curves.items():
        rows = cost_table(times)
        line, = ax.plot([r[0] for r in rows], [r[4] for r in rows], "o-", label=label)
        ax.plot([r[0] for r in rows], [r[3] for r in rows], ".", color=line.get_color(), alpha=0.6)
    ax.plot(sizes, sizes, ":", color="0.6", label="T passes of 1 token")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xticks(sizes, [str(T) for T in sizes])
    ax.set_yticks(sizes, [str(T) for T in sizes])
    ax.set_xlabel("tokens in one pass, T")
    ax.set_ylabel("time / time of a 1-token pass")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Cost of one pass over the weights (median line, min dots)", fontsize=10)
    fig.tight_layout()
    return fig


def make(out_dir):
    path = Path(out_dir) / "speculative_rollback.png"
    rollback_figure(path)
    return [path]
