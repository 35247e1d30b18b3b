"""How fast, and in how much memory, a checkpoint runs here: python -m mistral_np bench --model DIR

Decoding one token reads every weight matrix once (plus the keys and values in the cache), so its
time has a floor: bytes read per token / the machine's memory bandwidth. Both are measured in the
same run, so the ratio decode / floor says how close to the hardware the NumPy code gets.

Memory is read from /proc/self/smaps_rollup. The memory-mapped weights show up in RSS, but as file
cache the kernel can drop and re-read; what the process really owns is its anonymous memory.
"""
from collections import Counter
import json
import os
import statistics
import sys
import time

import numpy as np

from .bf16 import blas_threads
from .costs import cache_bytes_per_token, weight_bytes_per_token
from .paths import shown


def memory():
    """{Rss, Anonymous, Private_Dirty, ...} of this process in bytes (Linux; {} elsewhere)."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            rows = [line.split() for line in f]
    except OSError:
        return {}
    return {r[0].rstrip(":"): int(r[1]) * 1024 for r in rows if len(r) == 3 and r[2] == "kB"}


def read_bandwidth(nbytes=2**30, repeats=7):
    """(best, median) bytes/s of a float32 matrix-vector product over `nbytes` of matrix.

    The matrix is far larger than the CPU caches (1 GiB: some hosts have hundreds of MB of cache),
    and each number is read once: the same access pattern as decoding, with nothing to widen. BLAS
    uses a thread per core.
    """
    a = np.ones((nbytes // 4 // 4096, 4096), np.float32)           # touched, so pages exist
    x = np.ones(4096, np.float32)
    times = []
    with blas_threads(os.cpu_count()):          # the machine's bandwidth, whatever BLAS was told
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ x
            times.append(time.perf_counter() - t0)
    return a.nbytes / min(times), a.nbytes / statistics.median(times)


def fill_cache(cache, n_seen, seed=0):
    """Put the cache in the state it has after n_seen tokens (random keys and values).

    Pre-filling 4096 real tokens through Mistral 7B takes minutes here; for memory and decode
    speed only which slots are written matters, not what is in them. Every slot a real pre-fill
    would write is written (so its pages exist), with the positions it would hold.
    """
    rng = np.random.default_rng(seed)
    positions = np.arange(max(0, n_seen - cache.W), n_seen)
    shape = (len(positions),) + cache.k.shape[2:]                       # (T, n_kv, hd)
    for layer in range(cache.k.shape[0]):
        cache.store(layer, rng.standard_normal(shape, dtype=np.float32),
                    rng.standard_normal(shape, dtype=np.float32), positions)
    cache.advance(positions)


def seconds(t):
    """A duration, readable whether it is a 7B token (seconds) or a pocket one (milliseconds)."""
    return f"{t:.2f} s" if t >= 1 else f"{t * 1e3:.1f} ms"


def size(n):
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.2f} MB"


def decode_times(model, cache, n, token=1):
    """Seconds per token for n greedy decode steps continuing `cache`."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        logits = model.forward(np.array([token]), cache)[-1]
        times.append(time.perf_counter() - t0)
        token = int(np.argmax(logits))
    return times


PARTS = {"attention projections (wq wk wv wo)": ("wq", "wk", "wv", "wo"),
         "feed-forward (w1 w3 w2)": ("w1", "w3", "w2")}


def breakdown(model, repeats=2):
    """{part: (seconds, bytes)} of one decode token's matrix products, timed part by part.

    Each part runs its product for every layer in turn (so every matrix is read from memory, as in
    decoding, not from cache); the best of `repeats` passes.
    """
    from .layers import linear
    w = model.weights

    def best(mats):
        x = np.ones((1, mats[0].shape[1]), np.float32)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for m in mats:
                linear(x, m)
            times.append(time.perf_counter() - t0)
        return min(times)

    parts = {}
    for label, keys in PARTS.items():
        seconds_, nbytes = 0.0, 0
        for k in keys:
            mats = [blk[k] for blk in w["layers"]]
            seconds_ += best(mats)
            nbytes += sum(m.nbytes for m in mats)
        parts[label] = (seconds_, nbytes)
    parts["output projection"] = (best([w["output"]]), w["output"].nbytes)
    return parts


def run(model_dir, prompt_tokens=128, decode_tokens=8, contexts=(), seed=0, log=print, window=None):
    """Measure and return a dict of results; `log` receives a line per result as it comes.
    window: the sliding window W of a GGUF file that records none (llama.cpp's Mistral files)."""
    from .checkpoint import load       # imported here: checkpoint imports bf16, which bench needs
    r = {"model": str(model_dir)}
    t0 = time.perf_counter()
    model = load(model_dir, window=window)
    r["load_s"] = time.perf_counter() - t0
    a = model.args
    r["params"] = model.n_params()
    r["window"] = a.W
    r["weights_dtype"] = str(model.weights["output"].dtype)
    matrices = [model.weights["output"]] + [t for blk in model.weights["layers"] for t in blk.values() if t.ndim == 2]
    r["matrix_dtypes"] = dict(sorted(Counter(str(t.dtype) for t in matrices).items()))
    r["weight_bytes_per_token"] = weight_bytes_per_token(model)
    log(f"loaded {shown(model_dir)} in {seconds(r['load_s'])}: {r['params']:,} parameters, "
        f"{' + '.join(f'{n} {k}' for k, n in r['matrix_dtypes'].items())} matrices"
        f"{'' if isinstance(model.weights['output'], np.ndarray) else ' memory-mapped'}, window {a.W}; "
        f"{size(r['weight_bytes_per_token'])} of weights read per token")
    bw_best, bw_median = read_bandwidth()
    r["bandwidth_best_GBps"], r["bandwidth_median_GBps"] = bw_best / 1e9, bw_median / 1e9
    log(f"read bandwidth (float32 matrix-vector, 1 GiB): best {bw_best / 1e9:.1f}, "
        f"median {bw_median / 1e9:.1f} GB/s")

    t0 = time.perf_counter()
    model.forward(np.array([1]), model.new_cache())
    r["first_touch_s"] = time.perf_counter() - t0
    log(f"first forward (maps the weights' pages; reads them from disk unless cached): {seconds(r['first_touch_s'])}")

    rng = np.random.default_rng(seed)
    prompt = np.concatenate([[1], rng.integers(3, a.vocab_size, prompt_tokens - 1)])   # BOS + ids
    cache = model.new_cache()
    t0 = time.perf_counter()
    logits = model.prefill(prompt, cache)
    r["prefill_s"] = time.perf_counter() - t0
    r["prefill_tokens_per_s"] = prompt_tokens / r["prefill_s"]
    log(f"pre-fill {prompt_tokens} tokens: {seconds(r['prefill_s'])}, {r['prefill_tokens_per_s']:.1f} tokens/s")

    def decode(label, cache):
        times = decode_times(model, cache, decode_tokens, int(np.argmax(logits[-1])))
        n_bytes = r["weight_bytes_per_token"] + cache_bytes_per_token(cache, cache.n_seen)
        floor_best, floor_median = n_bytes / bw_best, n_bytes / bw_median
        mem = memory()
        row = {"context": cache.n_seen - decode_tokens, "first_s": times[0], "min_s": min(times),
               "median_s": statistics.median(times), "bytes_per_token": n_bytes,
               "floor_s": floor_best, "floor_median_s": floor_median,
               "ratio": statistics.median(times) / floor_median,
               "rss": mem.get("Rss"), "anonymous": mem.get("Anonymous"),
               "private_dirty": mem.get("Private_Dirty"), "cache_bytes": cache.nbytes}
        log(f"decode after {label}: min {seconds(row['min_s'])}, median {seconds(row['median_s'])} per token "
            f"({1 / row['median_s']:.3g} tokens/s) "
            f"(first {seconds(times[0])}); floor {seconds(floor_best)} (at median bandwidth "
            f"{seconds(floor_median)}) to read {size(n_bytes)}; median / floor {row['ratio']:.1f}")
        if mem:
            log(f"  memory: RSS {mem['Rss'] / 2**30:.2f} GiB (mapped weights included), private "
                f"(anonymous) {mem['Anonymous'] / 2**30:.2f} GiB, of which cache "
                f"{cache.nbytes / 2**30:.2f} GiB allocated")
        return row

    r["decode"] = [decode(f"a {prompt_tokens}-token prompt", cache)]
    r["breakdown"] = {}
    for label, (t, n) in breakdown(model).items():
        r["breakdown"][label] = {"seconds": t, "bytes": n, "floor_s": n / bw_best}
        log(f"  {label}: {seconds(t)} for {size(n)} (floor {seconds(n / bw_best)})")
    for n in contexts:
        big = model.new_cache()
        fill_cache(big, n, seed)
        r["decode"].append(decode(f"{n} tokens (cache filled directly)", big))
        del big
    return r


def cmd_bench(a):
    if a.prompt_tokens < 1 or a.decode_tokens < 1:
        raise ValueError("bench: --prompt-tokens and --decode-tokens must be at least 1")
    for n in a.context:                                       # checked before minutes of measuring
        if n < 1:
            raise ValueError(f"bench: --context must be at least 1 token, got {n}")
    if a.json:
        folder = os.path.dirname(os.path.abspath(a.json))
        if os.path.isdir(a.json) or not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            why = ("is a folder" if os.path.isdir(a.json) else f"folder {folder} does not exist"
                   if not os.path.isdir(folder) else f"folder {folder} is not writable")
            raise ValueError(f"bench: --json {a.json}: {why}; nothing was measured")
    before = machine()
    r = run(a.model, a.prompt_tokens, a.decode_tokens, a.context, window=a.window)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": before, "load_average_after": machine()["load_average"], **r}, f, indent=1)
            f.write("\n")
        print(f"wrote {a.json}", file=sys.stderr)


def machine():
    """A few words on where the numbers were measured."""
    import platform
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "numpy": np.__version__,
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def add_cli(subparsers):
    b = subparsers.add_parser("bench", help="measure load time, pre-fill and decode speed, memory")
    from .paths import DEFAULT_MODEL
    b.add_argument("--model", default=str(DEFAULT_MODEL), help="checkpoint folder or .gguf file")
    b.add_argument("--prompt-tokens", type=int, default=128, help="length of the pre-filled prompt (random ids)")
    b.add_argument("--decode-tokens", type=int, default=8, help="decode steps timed after each context")
    b.add_argument("--context", type=int, nargs="*", default=[],
                   help="also decode after this many tokens (cache filled directly), e.g. 4096 8192")
    b.add_argument("--window", type=int, help="sliding window W for a GGUF file that records none "
                   "(llama.cpp's Mistral 7B files: 4096); default: the file's, else its context length")
    b.add_argument("--json", help="also write the results to this JSON file")
    b.set_defaults(run=cmd_bench)
