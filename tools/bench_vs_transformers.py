"""SmolLM2-135M-Instruct from its GGUF file: the book's NumPy decode against transformers', one run.

    .venv-ref/bin/pip install threadpoolctl sentencepiece   # once, beside torch/transformers (make_gguf_fixture.py)
    .venv-ref/bin/python tools/bench_vs_transformers.py [--rounds 5] [--tokens 64]

transformers (float32, eager attention, KV cache, torch on 2 threads) and mistral_np (float32,
dequantized at load, NumPy's BLAS on 2 threads) each generate the same greedy tokens after the same
prompt. Each runs in a process of its own (torch's idle threads would otherwise compete with
NumPy's), both loaded and warmed up first; the script then times them in alternation, round after
round, so that both see the same machine. Writes figures/bench_smollm2_vs_transformers.json, which
chapter 8 prints. Tools only: the book never imports torch.
"""
from pathlib import Path
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
OUT = ROOT / "figures" / "bench_smollm2_vs_transformers.json"


def worker(kind, n_tokens):
    """Load one library's model, then generate on every line read from stdin; print seconds and tokens."""
    import numpy as np
    import mistral_np
    path = mistral_np.SMOLLM2_GGUF
    prompt = mistral_np.load_tokenizer(path).encode("Once upon a time")
    if kind == "transformers":
        import torch
        import transformers
        from transformers import AutoModelForCausalLM
        torch.set_num_threads(2)
        hf = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32,
                                                  attn_implementation="eager").eval()
        name = f"transformers {transformers.__version__} + torch {torch.__version__}"

        def run():
            with torch.inference_mode():
                out = hf.generate(torch.tensor([prompt]), max_new_tokens=n_tokens, min_new_tokens=n_tokens,
                                  do_sample=False)
            return out[0, len(prompt):].tolist()
    else:
        model = mistral_np.load(path)
        name = f"mistral_np (NumPy {np.__version__})"

        def run():
            return list(mistral_np.generate_ids(model, prompt, max_new_tokens=n_tokens, stop_at_eos=False))
    print(json.dumps({"name": name, "tokens": run()}), flush=True)          # the warm-up
    for _ in sys.stdin:
        t0 = time.perf_counter()
        run()
        print(json.dumps({"seconds": time.perf_counter() - t0}), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--worker", choices=["transformers", "mistral_np"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        return worker(a.worker, a.tokens)
    procs = {k: subprocess.Popen([sys.executable, __file__, "--worker", k, "--tokens", str(a.tokens)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for k in ("transformers", "mistral_np")}
    first = {k: json.loads(p.stdout.readline()) for k, p in procs.items()}
    same = first["transformers"]["tokens"] == first["mistral_np"]["tokens"]
    times = {k: [] for k in procs}
    for r in range(a.rounds):
        for k, proc in procs.items():
            proc.stdin.write("go\n")
            proc.stdin.flush()
            times[k].append(json.loads(proc.stdout.readline())["seconds"])
        print(f"round {r + 1}: " + ", ".join(f"{k} {a.tokens / t[-1]:.1f} tokens/s" for k, t in times.items()))
    for proc in procs.values():
        proc.stdin.close()
        proc.wait()
    rows = [{"name": first[k]["name"], "seconds": t, "tokens_per_s_median": a.tokens / statistics.median(t),
             "tokens_per_s_best": a.tokens / min(t)} for k, t in times.items()]
    result = {
        "what": (f"SmolLM2-135M-Instruct (GGUF Q4_1, dequantized to float32 at load by both), greedy, "
                 f"{a.tokens} new tokens after a 4-token prompt (pre-fill included), one process each, "
                 f"{a.rounds} alternating rounds after a warm-up; same tokens from both: {same}"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_average": os.getloadavg()[0]},
        "rows": rows,
        "ratio_median": rows[1]["tokens_per_s_median"] / rows[0]["tokens_per_s_median"],
        "ratio_best": rows[1]["tokens_per_s_best"] / rows[0]["tokens_per_s_best"],
        "same_tokens": same,
    }
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(OUT)
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
