"""Generate tests/fixtures/smollm2_reference.json: what Hugging Face transformers makes of the
real pretrained SmolLM2-135M-Instruct, read from its GGUF file.

Like tools/make_reference_fixture.py, this is a tool, not part of the package: torch,
transformers and gguf live in their own virtual environment, never in requirements.txt, and CI
never installs them. The tests compare the NumPy implementation (which reads the same GGUF file)
against the JSON this script writes.

Needs the model file, fetched by tools/fetch_data.py:

    data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf   (sha256 b179c952...db53, checked here)

Set up the environment once (torch first and alone, pinned, so pip takes the local CPU build
instead of downloading a multi-GB CUDA build):

    python3 -m venv .venv-ref
    .venv-ref/bin/pip install torch==2.13.0
    .venv-ref/bin/pip install "transformers==5.24.*" safetensors gguf==0.19.0 accelerate numpy

Run it from the repository root (2 to 4 minutes on 2 cores):

    .venv-ref/bin/python tools/make_gguf_fixture.py
    .venv-ref/bin/python tools/make_gguf_fixture.py --timing-only   # re-measure "timing" alone

It writes (and overwrites) tests/fixtures/smollm2_reference.json with:

  * "tokenizer": for 44 varied strings, the ids of
    `tokenizer(text, add_special_tokens=False)` and `tokenizer.decode(ids)`. transformers builds
    the tokenizer from the GGUF metadata; where its pre-tokenizer (plain GPT-2 byte-level
    regex) and llama.cpp's "smollm" one (each digit split off first, then the GPT-2 regex)
    disagree, the record also has "ids_digits_split" (see "tokenizer_note").
  * "prompts": 4 prompts (3 plain, 1 ChatML from the chat template) with the top-20 last-position
    logits of the float32 model (eager attention, no cache), their mean and std, the mean logit
    at every position, and 20 greedy tokens from `model.generate(do_sample=False)` with the
    EOS stop switched off (the first EOS, if any, is recorded).
  * "chat": the rendered chat template and its ids.
  * "config": the config transformers built from the GGUF metadata.
  * "findings": how the weights were loaded (dequantized to float32, q/k rows permuted), checked.
  * "timing": transformers' float32 greedy decode speed on the machine that ran this script.

Besides writing the file, it checks (and aborts on failure): the GGUF sha256; that the model's
weights are exactly gguf's float32 dequantization (q/k rows permuted from llama.cpp's
interleaved-pairs layout back to Hugging Face's rotate-halves layout); that generate()'s greedy
tokens (KV cache) equal the argmax of a no-cache forward pass over the whole sequence.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import gguf
import numpy as np
import tokenizers
import torch
import transformers
from tokenizers import pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from fetch_data import file_sha256  # noqa: E402  (the pinned file's own check)
FOLDER = ROOT / "data" / "smollm2"
NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
OUT = ROOT / "tests" / "fixtures" / "smollm2_reference.json"

THREADS = 2
TOP_K = 20
N_GREEDY = 20
N_TIMED = 64
TIMING_RUNS = 3
TIMING_PROMPT = "Once upon a time"
CHAT_MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
PLAIN_PROMPTS = ["The capital of France is", "Once upon a time, there was a little", "def fibonacci(n):"]

TEXTS = [
    # English
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "The capital of France is",
    "Machine learning models are trained on large datasets of text.",
    "HELLO World hello WORLD",
    # code
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n\tif i % 2 == 0:\n\t\tprint(i)",
    "x = {'key': [1, 2, 3]}  # comment",
    "if (x != null && y >= 0) { return x->next; }",
    # numbers
    "1234567",
    "3.14159",
    "2026-11-29",
    "There are 365 days in a year and 12 months.",
    "$1,000,000.00",
    "a  1",
    "x =  42",
    # whitespace
    "a   b",
    "\n\n\n",
    "  leading",
    "trailing  ",
    " \t \n",
    "line one\nline two\r\nline three",
    # contractions
    "don't",
    "I'm",
    "they'll",
    "She's sure we'd've known, isn't it?",
    "DON'T SHOUT",
    # accents, other languages
    "café naïve façade",
    "Über die Brücke gehen wir morgen früh.",
    "Où est la gare ? C'est très loin.",
    "日本語のテキスト",
    "中文",
    "Привет, мир!",
    # emoji
    "🙂👍🏽 family: 👨\u200d👩\u200d👧",
    # special tokens inline
    "<|im_start|>user\nHi<|im_end|>",
    "<|endoftext|>",
    "text <|im_end|> more",
    # edge cases
    "",
    " ",
    "!!!???...",
    "--==**##@@",
    "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct?x=1&y=2",
    "user@example.com",
    "supercalifragilisticexpialidocious",
]


def f32(x) -> float:
    """A float32 as the shortest decimal that reads back to the same float32."""
    return float(str(np.float32(x)))


def dumps(obj, indent: int = 0) -> str:
    """JSON, one line per short container: readable, yet small."""
    flat = json.dumps(obj, ensure_ascii=False)
    if len(flat) + indent <= 100 or not isinstance(obj, (dict, list)) or not obj:
        return flat
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(obj, list):
        if all(not isinstance(v, (dict, list)) for v in obj):
            return flat  # a long list of numbers stays on one line
        items = [inner + dumps(v, indent + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    items = [inner + json.dumps(k) + ": " + dumps(v, indent + 1) for k, v in obj.items()]
    return "{\n" + ",\n".join(items) + "\n" + pad + "}"


def check_weights(model, config) -> dict:
    """The model's weights are gguf's float32 dequantization, q/k rows permuted per head."""
    reader = gguf.GGUFReader(FOLDER / NAME)
    tensors = {t.name: t for t in reader.tensors}
    deq = lambda name: gguf.dequantize(tensors[name].data, tensors[name].tensor_type)  # noqa: E731
    sd = model.state_dict()
    hd = config.head_dim

    def gguf_to_hf(w, n_heads):
        # llama.cpp's convert permuted HF rows into interleaved pairs; transformers undoes it:
        # row (h, i, j) of the GGUF, i < hd/2, j in {0, 1}, goes to HF row (h, j, i)
        return w.reshape(n_heads, hd // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)

    out = {"types": {}, "exact": True}
    for t in reader.tensors:
        out["types"][t.tensor_type.name] = out["types"].get(t.tensor_type.name, 0) + 1
    checks = []
    for layer in (0, config.num_hidden_layers - 1):
        q = deq(f"blk.{layer}.attn_q.weight")
        k = deq(f"blk.{layer}.attn_k.weight")
        hq = sd[f"model.layers.{layer}.self_attn.q_proj.weight"].numpy()
        hk = sd[f"model.layers.{layer}.self_attn.k_proj.weight"].numpy()
        assert q.dtype == np.float32 and hq.dtype == np.float32
        checks.append(np.array_equal(gguf_to_hf(q, config.num_attention_heads), hq))
        checks.append(np.array_equal(gguf_to_hf(k, config.num_key_value_heads), hk))
        assert not np.array_equal(q, hq), "q rows were expected to be permuted"
        for g, h in [("attn_v", "self_attn.v_proj"), ("attn_output", "self_attn.o_proj"),
                     ("ffn_gate", "mlp.gate_proj"), ("ffn_up", "mlp.up_proj"), ("ffn_down", "mlp.down_proj"),
                     ("attn_norm", "input_layernorm"), ("ffn_norm", "post_attention_layernorm")]:
            checks.append(np.array_equal(deq(f"blk.{layer}.{g}.weight"), sd[f"model.layers.{layer}.{h}.weight"].numpy()))
    emb = deq("token_embd.weight")
    checks.append(np.array_equal(emb, sd["model.embed_tokens.weight"].numpy()))
    checks.append(np.array_equal(deq("output_norm.weight"), sd["model.norm.weight"].numpy()))
    assert "output.weight" not in tensors
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert all(checks), checks
    assert all(p.dtype == torch.float32 for p in model.parameters())
    return {
        "gguf_tensor_types": out["types"],
        "dequantized": "transformers 5.24 reads a llama GGUF through its legacy loader "
        "(modeling_gguf_pytorch_utils.load_gguf_checkpoint): every tensor is dequantized by "
        "gguf.dequantize to float32 numpy at load time and the model holds plain float32 nn.Linear "
        "weights; checked bit-exact against gguf.dequantize for layers 0 and last, the "
        "embedding and the final norm. token_embd is Q8_0, the 2D layer weights Q4_1, norms F32.",
        "qk_permutation": "GGUF attn_q/attn_k rows are in llama.cpp's interleaved-pairs RoPE layout; "
        "transformers (LlamaTensorProcessor._reverse_permute_weights) maps them back to HF's rotate-halves "
        "layout: w.reshape(n_heads, head_dim//2, 2, dim).swapaxes(1, 2).reshape(w.shape), with n_heads = 9 "
        "for q and 3 (the kv heads) for k. A NumPy model that keeps GGUF's rows must rotate adjacent "
        "pairs (x[2i], x[2i+1]) with frequency i instead.",
        "tied_embeddings": "no output.weight in the file; lm_head shares the (dequantized Q8_0) embedding",
        "norms": "RMSNorm weights stored as-is (F32), no +1 offset",
    }


def top_info(logits: torch.Tensor) -> dict:
    last = logits[-1]
    vals, ids = torch.topk(last, TOP_K)
    return {
        "top_ids": ids.tolist(),
        "top_logits": [f32(v) for v in vals.tolist()],
        "last_logits_mean": f32(last.mean()),
        "last_logits_std": f32(last.std()),  # torch's default: unbiased (N - 1)
        "all_positions_logit_mean": [f32(v) for v in logits.mean(dim=-1).tolist()],
    }


@torch.no_grad()
def greedy(model, ids: list[int], eos: int) -> dict:
    prompt = torch.tensor([ids])
    out = model.generate(
        prompt, do_sample=False, max_new_tokens=N_GREEDY, min_new_tokens=0,
        eos_token_id=None, pad_token_id=eos, attention_mask=torch.ones_like(prompt),
    )
    new = out[0, len(ids):].tolist()
    assert len(new) == N_GREEDY, new
    # no cache: the argmax at each position of the whole sequence reproduces the greedy tokens
    logits = model(out, use_cache=False).logits[0].float()
    argmax = logits[len(ids) - 1 : -1].argmax(-1).tolist()
    assert argmax == new, (argmax, new)
    top2 = torch.topk(logits[len(ids) - 1 : -1], 2).values
    gaps = (top2[:, 0] - top2[:, 1]).tolist()  # how close each greedy step came to a tie
    first_eos = new.index(eos) if eos in new else None
    return {"greedy": new, "greedy_first_eos": first_eos, "greedy_top2_gaps": [round(g, 4) for g in gaps]}


def digits_split_tokenizer(tok):
    """The same vocabulary and merges with llama.cpp's "smollm" pre-tokenizer: each digit
    split off first (\\p{N}), then the GPT-2 byte-level regex."""
    backend = tokenizers.Tokenizer.from_str(tok.backend_tokenizer.to_str())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    return backend


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_pressure() -> str | None:
    """Linux PSI: how much of the time runnable tasks waited for a CPU (other jobs on the machine)."""
    try:
        return Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None


@torch.no_grad()
def timing(model, tok) -> dict:
    ids = torch.tensor([tok(TIMING_PROMPT, add_special_tokens=False).input_ids])
    kw = dict(do_sample=False, max_new_tokens=N_TIMED, min_new_tokens=N_TIMED, eos_token_id=None,
              pad_token_id=tok.eos_token_id, attention_mask=torch.ones_like(ids))
    model.generate(ids, **kw)  # warm-up
    secs, cpu = [], []
    for _ in range(TIMING_RUNS):
        t0, c0 = time.perf_counter(), time.process_time()
        out = model.generate(ids, **kw)
        secs.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        assert out.shape[1] == ids.shape[1] + N_TIMED
    return {
        "what": f"transformers model.generate, float32, eager attention, KV cache, greedy, {N_TIMED} new "
        f"tokens after the {ids.shape[1]}-token prompt {TIMING_PROMPT!r} (prefill included), "
        f"torch.set_num_threads({THREADS}); {TIMING_RUNS} timed runs after one warm-up",
        "measured_on": f"the machine that made this fixture ({cpu_name()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}); not a reference for other machines",
        "note": "wall-clock tokens/s; cpu_seconds is the process's CPU time (both threads). Where other jobs share "
        "the CPUs, the wall time grows well beyond the CPU time (see cpu_pressure_after, Linux PSI avg10/60/300 "
        "in %): the numbers are an order of magnitude, not a benchmark",
        "cpu_pressure_after": cpu_pressure(),
        "seconds": [round(s, 3) for s in secs],
        "cpu_seconds": [round(s, 3) for s in cpu],
        "tokens_per_s_min": round(N_TIMED / max(secs), 2),
        "tokens_per_s_median": round(N_TIMED / statistics.median(secs), 2),
        "tokens_per_s_max": round(N_TIMED / min(secs), 2),
    }


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(THREADS)
    digest = file_sha256(FOLDER / NAME)
    assert digest == SHA256, f"{NAME}: sha256 {digest}, expected {SHA256}"

    tok = AutoTokenizer.from_pretrained(FOLDER, gguf_file=NAME)
    model = AutoModelForCausalLM.from_pretrained(FOLDER, gguf_file=NAME, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    if "--timing-only" in sys.argv[1:]:  # re-measure on a quiet machine, keep everything else
        info = json.loads(OUT.read_text(encoding="utf-8"))
        info["timing"] = timing(model, tok)
        OUT.write_text(dumps(info) + "\n", encoding="utf-8")
        print(json.dumps(info["timing"], indent=1))
        return
    cfg = model.config
    assert cfg._attn_implementation == "eager"
    eos = tok.eos_token_id
    findings = check_weights(model, cfg)

    # tokenizer records
    alt = digits_split_tokenizer(tok)
    records, n_diff = [], 0
    for text in TEXTS:
        ids = tok(text, add_special_tokens=False).input_ids
        rec = {"text": text, "ids": ids, "decoded": tok.decode(ids)}
        alt_ids = alt.encode(text, add_special_tokens=False).ids
        if alt_ids != ids:
            rec["ids_digits_split"] = alt_ids
            n_diff += 1
        records.append(rec)

    # chat
    rendered = tok.apply_chat_template(CHAT_MESSAGES, tokenize=False, add_generation_prompt=True)
    chat_ids = tok(rendered, add_special_tokens=False).input_ids
    templ_ids = tok.apply_chat_template(CHAT_MESSAGES, tokenize=True, add_generation_prompt=True)
    if not isinstance(templ_ids, list):  # transformers 5 returns a BatchEncoding
        templ_ids = templ_ids["input_ids"]
    assert templ_ids == chat_ids, (templ_ids, chat_ids)

    prompts = []
    for kind, text in [("plain", p) for p in PLAIN_PROMPTS] + [("chat", rendered)]:
        ids = tok(text, add_special_tokens=False).input_ids
        with torch.no_grad():
            logits = model(torch.tensor([ids]), use_cache=False).logits[0].float()
        rec = {"kind": kind, "text": text, "ids": ids, **top_info(logits), **greedy(model, ids, eos)}
        rec["greedy_text"] = tok.decode(rec["greedy"])
        if rec["greedy_first_eos"] is not None:
            rec["greedy_text_until_eos"] = tok.decode(rec["greedy"][: rec["greedy_first_eos"]])
        prompts.append(rec)

    info = {
        "description": "Reference outputs of Hugging Face transformers for the pretrained SmolLM2-135M-Instruct, "
        f"loaded from data/smollm2/{NAME} (Q4_1 weights, Q8_0 embedding) and dequantized to float32; "
        "eager attention, no cache for logits, greedy decoding with the KV cache (checked equal to the no-cache "
        "argmax). Made by tools/make_gguf_fixture.py. Token ids: tokenizer(text, add_special_tokens=False); "
        "no BOS is added anywhere (add_bos_token is false in the GGUF). Logits are float32 values written as "
        "the shortest decimal that reads back to the same float32. 'greedy' ignores EOS (20 tokens always); "
        "'greedy_first_eos' is the index in 'greedy' of the first EOS (id 2) or null.",
        "versions": {
            "torch": torch.__version__, "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
            "gguf": gguf.__version__ if hasattr(gguf, "__version__") else "0.19.0", "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "gguf": {"file": f"data/smollm2/{NAME}", "sha256": digest},
        "config": {
            "class": type(model).__name__, "num_hidden_layers": cfg.num_hidden_layers, "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size, "num_attention_heads": cfg.num_attention_heads,
            "num_key_value_heads": cfg.num_key_value_heads, "head_dim": cfg.head_dim, "vocab_size": cfg.vocab_size,
            "max_position_embeddings": cfg.max_position_embeddings, "rope_parameters": dict(cfg.rope_parameters),
            "rms_norm_eps": cfg.rms_norm_eps, "hidden_act": cfg.hidden_act, "tie_word_embeddings": cfg.tie_word_embeddings,
            "attention_bias": cfg.attention_bias, "mlp_bias": cfg.mlp_bias, "bos_token_id": cfg.bos_token_id,
            "eos_token_id": cfg.eos_token_id, "pad_token_id": cfg.pad_token_id, "unk_token_id": getattr(cfg, "unk_token_id", None),
            "attn_implementation": cfg._attn_implementation, "dtype": str(next(model.parameters()).dtype),
        },
        "special_tokens": {"bos": [tok.bos_token, tok.bos_token_id], "eos": [tok.eos_token, tok.eos_token_id],
                           "pad": [tok.pad_token, tok.pad_token_id], "unk": [tok.unk_token, tok.unk_token_id],
                           "len_tokenizer": len(tok)},
        "findings": findings,
        "tokenizer_note": "transformers 5.24 builds the tokenizer from the GGUF vocabulary and merges with the plain "
        "GPT-2 byte-level pre-tokenizer (it has no entry for the file's tokenizer.ggml.pre = 'smollm'). llama.cpp's "
        "'smollm' pre-tokenizer first splits off every digit (\\p{N}), then applies the GPT-2 regex. The vocabulary "
        "has no multi-digit tokens, so the two agree except around digits after whitespace runs; the "
        f"{n_diff} record(s) where they differ carry 'ids_digits_split' (vocabulary and merges unchanged, "
        "pre-tokenizer Digits(individual_digits=True) + ByteLevel). Control tokens (<|im_start|>, <|im_end|>, "
        "<|endoftext|>, ...) are matched whole in the text. decode() keeps special tokens.",
        "tokenizer": records,
        "chat": {"messages": CHAT_MESSAGES, "rendered": rendered, "ids": chat_ids},
        "prompts": prompts,
        "timing": timing(model, tok),
    }
    text = dumps(info) + "\n"
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)} ({len(text.encode()):,} bytes); {n_diff} tokenizer record(s) differ "
          "with the digit split")
    for p in prompts:
        print(repr(p["text"][-40:]), p["top_ids"][:5], p["top_logits"][:5], repr(p["greedy_text"]))
    print(json.dumps(info["timing"], indent=1))


if __name__ == "__main__":
    main()
