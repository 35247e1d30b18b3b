"""SmolLM2-135M-Instruct from its GGUF file: the book's NumPy decode against transformers', one run.

    .venv-ref/bin/pip install threadpoolctl sentencepiece   # once, beside torch/transformers (make_gguf_fixture.py)
    .venv-ref/bin/python tools/bench_vs_transformers.py [--rounds 5] [--tokens 64]

transformers (float32, eager attention, KV cache, torch on 2 threads) and mistral_np (float32,
dequantized at load) each generate the same greedy tokens after the same prompt; the two are timed
in alternation, round after round, so that both see the same machine. Writes
figures/bench_smollm2_vs_transformers.json, which chapter 8 prints. Tools only: the book never
imports torch.
"""
from pathlib import Path
import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
import mistral_np  # noqa: E402

OUT = ROOT / "figures" / "bench_smollm2_vs_transformers.json"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--tokens", type=int, default=64)
    a = p.parse_args()
    torch.set_num_threads(2)
    path = mistral_np.SMOLLM2_GGUF
    hf = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32,
                                              attn_implementation="eager").eval()
    ours = mistral_np.load(path)
    tok = mistral_np.load_tokenizer(path)
    prompt = tok.encode("Once upon a time")

    def run_hf():
        with torch.inference_mode():
            out = hf.generate(torch.tensor([prompt]), max_new_tokens=a.tokens, min_new_tokens=a.tokens,
                              do_sample=False)
        return out[0, len(prompt):].tolist()

    def run_ours():
        return list(mistral_np.generate_ids(ours, prompt, max_new_tokens=a.tokens, stop_at_eos=False))

    same = run_hf() == run_ours()                                  # also the warm-up of both
    times = {"transformers": [], "mistral_np": []}
    for r in range(a.rounds):
        for name, f in (("transformers", run_hf), ("mistral_np", run_ours)):
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
        print(f"round {r + 1}: " + ", ".join(f"{n} {a.tokens / t[-1]:.1f} tokens/s" for n, t in times.items()))
    rows = [{"name": f"transformers {transformers.__version__} + torch {torch.__version__}" if n == "transformers"
             else f"mistral_np (NumPy {np.__version__})", "seconds": t,
             "tokens_per_s_median": a.tokens / statistics.median(t), "tokens_per_s_best": a.tokens / min(t)}
            for n, t in times.items()]
    result = {
        "what": (f"SmolLM2-135M-Instruct (GGUF Q4_1, dequantized to float32 at load by both), greedy, "
                 f"{a.tokens} new tokens after a {len(prompt)}-token prompt (pre-fill included), "
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
