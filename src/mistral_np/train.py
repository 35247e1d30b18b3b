"""Training the pocket Mistral in NumPy: a forward pass that keeps its activations, the backward
pass of every piece, AdamW with warmup + cosine, gradient clipping, resumable checkpoints.

    python -m mistral_np train --out runs/pocket --minutes 60 [--steps N] [--export models/pocket-mistral]

The model is Mistral's architecture at pocket size. It trains directly in Hugging Face's "halves"
RoPE layout, so the weights are saved with no permutation. Parameters live in a flat dict
{book name: array} ("layers.0.attention.wq.weight", ...); `as_weights` views it as the nested
dict that `Model` takes, without copying, so the trained model is an ordinary `Model`.

Every backward function takes the gradient of the loss with respect to a piece's output (dy)
and returns the gradients with respect to its inputs (and weights). Shapes: B sequences of
T tokens, dim D, n_heads H, n_kv_heads K, group G = H / K, head_dim hd.
"""
from dataclasses import asdict
from pathlib import Path
import json
import math
import sys
import time

import numpy as np

from .attention import attention, window_mask
from .checkpoint import LAYER_KEYS, expected_shapes
from .config import ModelArgs
from .layers import apply_rope, rms_norm, silu
from .model import Model


# ---------------------------------------------------------------- parameters

def init_params(args: ModelArgs, seed=0, dtype=np.float32):
    """Small random weights: normal(0, 0.02); the two projections that write into the residual
    stream (wo, w2) scaled by 1/sqrt(2 n_layers) so the stream does not grow with depth (GPT-2).
    Norm weights start at 1, so RMSNorm starts as a pure normalisation."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in expected_shapes(args).items():
        if len(shape) == 1:
            params[name] = np.ones(shape, dtype)
        else:
            std = 0.02 / math.sqrt(2 * args.n_layers) if name.endswith(("wo.weight", "w2.weight")) else 0.02
            params[name] = (std * rng.standard_normal(shape)).astype(dtype)
    return params


def as_weights(params, args: ModelArgs):
    """The flat {book name: array} as the nested dict Model takes (same arrays, no copies)."""
    layers = [{k: params[f"layers.{i}.{v}.weight"] for k, v in LAYER_KEYS.items()}
              for i in range(args.n_layers)]
    out = params["tok_embeddings.weight"] if args.tie_embeddings else params["output.weight"]
    return {"tok_embeddings": params["tok_embeddings.weight"], "norm": params["norm.weight"],
            "output": out, "layers": layers}


# ---------------------------------------------------------------- backward of each piece

def linear_backward(dy, x, w):
    """y = x @ w.T. dy (..., out), x (..., in), w (out, in) -> dx (..., in), dw (out, in)."""
    dx = dy @ w                                                          # (..., in)
    dw = dy.reshape(-1, dy.shape[-1]).T @ x.reshape(-1, x.shape[-1])     # (out, in): summed over tokens
    return dx, dw


def rms_norm_backward(dy, x, w, eps):
    """y = x * r * w with r = 1/sqrt(mean(x^2) + eps). dy, x (..., D) -> dx (..., D), dw (D,).

    r depends on every element of its row, so dx has a second term that removes the part of
    the incoming gradient along x itself: scaling x up does not change x * r."""
    r = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)      # (..., 1)
    xhat = x * r                                                         # (..., D)
    dw = np.sum((dy * xhat).reshape(-1, x.shape[-1]), axis=0)            # (D,)
    dxhat = dy * w                                                       # (..., D)
    dx = r * (dxhat - xhat * np.mean(dxhat * xhat, axis=-1, keepdims=True))
    return dx, dw


def rope_backward(dy, positions, theta, layout):
    """RoPE rotates each pair by angle a; its transpose rotates by -a. dy (B, T, heads, hd)."""
    return apply_rope(dy, -np.asarray(positions), theta, layout)


def silu_backward(dy, a):
    """silu(a) = a * sigmoid(a); its derivative is sigmoid(a) * (1 + a * (1 - sigmoid(a)))."""
    s = 1.0 / (1.0 + np.exp(-a))
    return dy * s * (1.0 + a * (1.0 - s))


def attention_backward(dout, q, k, v, probs):
    """dout (B, T, H*hd) -> dq (B, T, H, hd), dk, dv (B, S, K, hd).

    Softmax backward: ds = p * (dp - sum(dp * p)). Masked entries have p = 0, so they get no
    gradient. The G query heads of a group share one k/v head: their gradients add up."""
    B, T, H, hd = q.shape
    K = k.shape[2]
    G = H // K
    scale = q.dtype.type(1 / math.sqrt(hd))
    do = dout.reshape(B, T, K, G, hd).transpose(0, 2, 3, 1, 4)           # (B, K, G, T, hd)
    qg = q.reshape(B, T, K, G, hd).transpose(0, 2, 3, 1, 4)              # (B, K, G, T, hd)
    kg = k.transpose(0, 2, 1, 3)[:, :, None]                             # (B, K, 1, S, hd)
    vt = v.transpose(0, 2, 3, 1)[:, :, None]                             # (B, K, 1, hd, S)
    dv = (probs.swapaxes(-1, -2) @ do).sum(axis=2)                       # (B, K, S, hd)
    dp = do @ vt                                                         # (B, K, G, T, S)
    ds = probs * (dp - np.sum(dp * probs, axis=-1, keepdims=True)) * scale
    dq = ds @ kg                                                         # (B, K, G, T, hd)
    dk = (ds.swapaxes(-1, -2) @ qg).sum(axis=2)                          # (B, K, S, hd)
    return (dq.transpose(0, 3, 1, 2, 4).reshape(B, T, H, hd),
            dk.transpose(0, 2, 1, 3), dv.transpose(0, 2, 1, 3))


def cross_entropy(logits, targets):
    """Mean -log p(target) over (N, V) logits; returns the loss and d loss / d logits (N, V)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    lse = np.log(np.sum(np.exp(z), axis=-1, keepdims=True))              # (N, 1)
    logp = z - lse                                                       # (N, V)
    n = np.arange(len(targets))
    loss = -np.mean(logp[n, targets])
    dlogits = np.exp(logp)                                               # softmax
    dlogits[n, targets] -= 1.0
    return float(loss), dlogits / len(targets)


# ---------------------------------------------------------------- the block, forward and backward

def block_forward(x, p, args, positions, mask):
    """One pre-norm block on a batch, x (B, T, D). Returns the output and what backward needs."""
    B, T, _ = x.shape
    H, K, hd, eps = args.n_heads, args.n_kv_heads, args.head_dim, args.norm_eps
    h1 = rms_norm(x, p["attention_norm"], eps)                           # (B, T, D)
    q = (h1 @ p["wq"].T).reshape(B, T, H, hd)
    k = (h1 @ p["wk"].T).reshape(B, T, K, hd)
    v = (h1 @ p["wv"].T).reshape(B, T, K, hd)
    q = apply_rope(q, positions, args.rope_theta, args.rope_layout)
    k = apply_rope(k, positions, args.rope_theta, args.rope_layout)
    att, probs = attention(q, k, v, mask, return_probs=True)             # (B, T, H*hd)
    h = x + att @ p["wo"].T                                              # (B, T, D)
    h2 = rms_norm(h, p["ffn_norm"], eps)
    a = h2 @ p["w1"].T                                                   # (B, T, hidden_dim): gate
    b = h2 @ p["w3"].T                                                   # (B, T, hidden_dim): up
    m = silu(a) * b
    out = h + m @ p["w2"].T                                              # (B, T, D)
    saved = dict(x=x, h1=h1, q=q, k=k, v=v, probs=probs, att=att, h=h, h2=h2, a=a, b=b, m=m)
    return out, saved


def block_backward(dout, p, s, args, positions):
    """dout (B, T, D) -> dx (B, T, D) and the gradients of the block's nine weights."""
    B, T, _ = dout.shape
    eps, theta, layout = args.norm_eps, args.rope_theta, args.rope_layout
    g = {}
    # feed-forward branch: out = h + w2(silu(a) * b)
    dm, g["w2"] = linear_backward(dout, s["m"], p["w2"])                 # (B, T, hidden_dim)
    da = silu_backward(dm * s["b"], s["a"])
    db = dm * silu(s["a"])
    dh2, g["w1"] = linear_backward(da, s["h2"], p["w1"])
    dh2_b, g["w3"] = linear_backward(db, s["h2"], p["w3"])
    dh_norm, g["ffn_norm"] = rms_norm_backward(dh2 + dh2_b, s["h"], p["ffn_norm"], eps)
    dh = dout + dh_norm                                                  # residual: both paths
    # attention branch: h = x + wo(attention(rope(wq h1), rope(wk h1), wv h1))
    datt, g["wo"] = linear_backward(dh, s["att"], p["wo"])              # (B, T, H*hd)
    dq, dk, dv = attention_backward(datt, s["q"], s["k"], s["v"], s["probs"])
    dq = rope_backward(dq, positions, theta, layout).reshape(B, T, -1)   # (B, T, H*hd)
    dk = rope_backward(dk, positions, theta, layout).reshape(B, T, -1)   # (B, T, K*hd)
    dv = dv.reshape(B, T, -1)
    dh1, g["wq"] = linear_backward(dq, s["h1"], p["wq"])
    dh1_k, g["wk"] = linear_backward(dk, s["h1"], p["wk"])
    dh1_v, g["wv"] = linear_backward(dv, s["h1"], p["wv"])
    dx_norm, g["attention_norm"] = rms_norm_backward(dh1 + dh1_k + dh1_v, s["x"], p["attention_norm"], eps)
    return dh + dx_norm, g                                               # residual again


# ---------------------------------------------------------------- the whole model

def forward(params, args, tokens):
    """Logits (B, T, vocab) for tokens (B, T) at positions 0..T-1, plus the saved activations."""
    w = as_weights(params, args)
    B, T = tokens.shape
    positions = np.arange(T)
    mask = window_mask(positions, positions, args.W)                     # (T, T)
    x = w["tok_embeddings"][tokens]                                      # (B, T, D)
    saved = []
    for block in w["layers"]:
        x, s = block_forward(x, block, args, positions, mask)
        saved.append(s)
    xn = rms_norm(x, w["norm"], args.norm_eps)
    logits = xn @ w["output"].T                                          # (B, T, vocab)
    return logits, (tokens, saved, x, xn)


def loss_and_grads(params, args, tokens, targets):
    """Mean next-token cross-entropy (nats) on a batch and its gradient for every parameter."""
    logits, (tokens, saved, x, xn) = forward(params, args, tokens)
    B, T, V = logits.shape
    loss, dlogits = cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T))
    w = as_weights(params, args)
    grads = {}
    dxn, dout_w = linear_backward(dlogits.reshape(B, T, V), xn, w["output"])
    dx, grads["norm.weight"] = rms_norm_backward(dxn, x, w["norm"], args.norm_eps)
    positions = np.arange(T)
    for i in reversed(range(args.n_layers)):
        dx, g = block_backward(dx, w["layers"][i], saved[i], args, positions)
        for k, v in LAYER_KEYS.items():
            grads[f"layers.{i}.{v}.weight"] = g[k]
    demb = np.zeros_like(w["tok_embeddings"])                            # (vocab, D)
    np.add.at(demb, tokens.reshape(-1), dx.reshape(-1, dx.shape[-1]))    # rows of the tokens used
    if args.tie_embeddings:
        demb += dout_w
    else:
        grads["output.weight"] = dout_w
    grads["tok_embeddings.weight"] = demb
    return loss, grads


# ---------------------------------------------------------------- optimiser and schedule

def learning_rate(step, steps, lr, warmup, min_ratio=0.1):
    """Linear warmup to lr over `warmup` steps, then cosine decay to min_ratio * lr at `steps`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, steps - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def clip_gradients(grads, max_norm):
    """Scale all gradients together so their global L2 norm is at most max_norm; returns the norm."""
    norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads.values()))
    if norm > max_norm:
        for g in grads.values():
            g *= max_norm / norm
    return norm


def adamw_step(params, grads, state, lr, t, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1):
    """One AdamW update in place (t counts from 1). Weight decay only on matrices, not norms."""
    b1, b2 = betas
    for name, p in params.items():
        g = grads[name]
        m, v = state["m"][name], state["v"][name]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        update = (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        if p.ndim == 2:
            update += weight_decay * p
        p -= (lr * update).astype(p.dtype, copy=False)


# ---------------------------------------------------------------- data

def batch(data, batch_size, context, rng):
    """batch_size random windows of context + 1 tokens: inputs (B, T) and next-token targets (B, T)."""
    starts = rng.integers(0, len(data) - context - 1, size=batch_size)
    windows = np.stack([data[s:s + context + 1] for s in starts])        # (B, T + 1)
    return windows[:, :-1], windows[:, 1:]


def encode_corpus(tokenizer, cache_path=None):
    """(train_ids, val_ids, train_chars, val_chars), the token ids cached in cache_path if given."""
    from .corpus import load_corpus
    train_text, val_text = load_corpus()
    if cache_path is not None and Path(cache_path).exists():
        z = np.load(cache_path)
        return z["train"], z["val"], len(train_text), len(val_text)
    train = np.array(tokenizer.encode(train_text, bos=False), np.int32)
    val = np.array(tokenizer.encode(val_text, bos=False), np.int32)
    if cache_path is not None:
        np.savez(cache_path, train=train, val=val)
    return train, val, len(train_text), len(val_text)


def evaluate(params, args, data, context, n_windows=16, batch_size=8):
    """Mean loss (nats/token) on n_windows fixed, evenly spaced windows of data."""
    starts = np.linspace(0, len(data) - context - 1, n_windows).astype(int)
    losses = []
    for i in range(0, n_windows, batch_size):
        w = np.stack([data[s:s + context + 1] for s in starts[i:i + batch_size]])
        logits, _ = forward(params, args, w[:, :-1])
        B, T, V = logits.shape
        losses.append(cross_entropy(logits.reshape(B * T, V), w[:, 1:].reshape(-1))[0] * B)
    return sum(losses) / n_windows


# ---------------------------------------------------------------- measuring quality

def bits_per_char(nats_per_token, n_tokens, n_chars):
    """A loss in nats per token as bits per character of the text those tokens encode.

    Tokenizers differ in how much text a token holds, so only per-character numbers compare
    across tokenizers (and with character-level models)."""
    return nats_per_token * n_tokens / n_chars / math.log(2)


def unigram_loss(train_ids, val_ids, vocab_size, k=1.0):
    """Nats/token on val_ids of p(token) = (count + k) / (N + k V), counted on train_ids."""
    counts = np.bincount(train_ids, minlength=vocab_size) + k            # (V,)
    logp = np.log(counts / counts.sum())
    return float(-np.mean(logp[val_ids]))


def bigram_loss(train_ids, val_ids, vocab_size, k=0.1):
    """Nats/token on val_ids[1:] of p(b | a) = (count(a b) + k) / (count(a) + k V)."""
    counts = np.zeros((vocab_size, vocab_size))                          # (V, V): previous, next
    np.add.at(counts, (train_ids[:-1], train_ids[1:]), 1)
    counts += k
    logp = np.log(counts / counts.sum(axis=1, keepdims=True))
    return float(-np.mean(logp[val_ids[:-1], val_ids[1:]]))


def model_loss(model, ids, context):
    """Nats/token of a Model on ids cut into windows of `context` tokens (each starting at position
    0, as in training); every token but the first of each window is predicted."""
    total, n = 0.0, 0
    for s in range(0, len(ids) - 1, context):
        w = ids[s:s + context + 1]
        if len(w) < 2:
            break
        loss, _ = cross_entropy(model.forward(w[:-1]), w[1:])
        total, n = total + loss * (len(w) - 1), n + len(w) - 1
    return total / n


def model_stream_loss(model, ids, chunk_size=None):
    """Nats/token of a Model reading ids as one stream through its rolling cache, chunk by chunk.

    Past the training context the positions are new, but with a sliding window a query only
    ever sees keys at most W - 1 positions back, and RoPE scores depend only on that distance."""
    chunk_size = chunk_size or model.args.W
    cache = model.new_cache()
    total = 0.0
    for s in range(0, len(ids) - 1, chunk_size):
        x, y = ids[s:s + chunk_size], ids[s + 1:s + chunk_size + 1]
        logits = model.forward(x, cache)[:len(y)]
        total += cross_entropy(logits, y)[0] * len(y)
    return total / (len(ids) - 1)


# ---------------------------------------------------------------- checkpoints

def save_checkpoint(path, params, state, step, log):
    """Parameters, AdamW moments, step and log in one .npz (written to a temp file, then renamed)."""
    path = Path(path)
    arrays = {f"p/{k}": v for k, v in params.items()}
    arrays.update({f"m/{k}": v for k, v in state["m"].items()})
    arrays.update({f"v/{k}": v for k, v in state["v"].items()})
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, step=step, log=json.dumps(log), **arrays)
    tmp.replace(path)


def load_checkpoint(path):
    z = np.load(path)
    pick = lambda prefix: {k[2:]: z[k].copy() for k in z.files if k.startswith(prefix)}
    return pick("p/"), {"m": pick("m/"), "v": pick("v/")}, int(z["step"]), json.loads(str(z["log"]))


def export(params, args, out_dir):
    """Write the trained model as a Hugging Face checkpoint (config.json + bf16 model.safetensors)."""
    from .checkpoint import save
    model = Model(args, as_weights({k: v.astype(np.float32) for k, v in params.items()}, args))
    return save(model, out_dir, layout="hf", dtype="BF16")


# ---------------------------------------------------------------- the training loop

def train(run_dir, args: ModelArgs, steps, batch_size, lr, warmup, minutes, seed=0,
          weight_decay=0.1, max_grad_norm=1.0, eval_every=50, ckpt_every=50, tokenizer_path=None,
          print_every=10, out=sys.stdout):
    """Train (or resume) in run_dir until `steps` steps or `minutes` of wall clock, saving as it goes."""
    from . import DEFAULT_MODEL, Tokenizer
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(tokenizer_path or DEFAULT_MODEL / "tokenizer.model")
    if tok.vocab_size != args.vocab_size:
        raise ValueError(f"tokenizer has {tok.vocab_size} pieces but the model's vocab_size is {args.vocab_size}")
    train_ids, val_ids, train_chars, val_chars = encode_corpus(tok, run_dir / "tokens.npz")
    context = args.max_seq_len
    ckpt = run_dir / "checkpoint.npz"
    meta = {"args": asdict(args), "steps": steps, "batch_size": batch_size, "lr": lr, "warmup": warmup,
            "weight_decay": weight_decay, "max_grad_norm": max_grad_norm, "seed": seed,
            "train_tokens": int(len(train_ids)), "val_tokens": int(len(val_ids)),
            "train_chars": train_chars, "val_chars": val_chars}
    if ckpt.exists():
        params, state, step, log = load_checkpoint(ckpt)
        if log["meta"]["args"] != meta["args"]:
            raise ValueError(f"{ckpt} was trained with a different model config; use another --out")
        meta, elapsed0 = log["meta"], log["records"][-1]["time"] if log["records"] else 0.0
        if steps != meta["steps"]:
            print(f"note: keeping the run's schedule of {meta['steps']} steps (asked for {steps}); "
                  "the learning-rate schedule is fixed when a run starts", file=out)
        print(f"resuming from step {step} of {meta['steps']}", file=out)
    else:
        params = init_params(args, seed)
        state = {"m": {k: np.zeros_like(v) for k, v in params.items()},
                 "v": {k: np.zeros_like(v) for k, v in params.items()}}
        step, log, elapsed0 = 0, {"meta": meta, "records": []}, 0.0
    steps = meta["steps"]
    (run_dir / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"model: {Model(args, as_weights(params, args))}", file=out)
    print(f"{len(train_ids):,} training tokens; {batch_size} x {context} = {batch_size * context:,} "
          f"tokens per step; {steps} steps = {steps * batch_size * context / len(train_ids):.2f} epochs",
          file=out)
    t0 = time.perf_counter()
    deadline = t0 + 60 * minutes
    stopped_early = False
    while step < steps:
        rng = np.random.default_rng([seed, step])        # per-step stream: resuming sees the same batches
        x, y = batch(train_ids, batch_size, context, rng)
        t_step = time.perf_counter()
        loss, grads = loss_and_grads(params, args, x, y)
        gnorm = clip_gradients(grads, max_grad_norm)
        rate = learning_rate(step, steps, lr, warmup)
        adamw_step(params, grads, state, rate, step + 1, weight_decay=weight_decay)
        step += 1
        now = time.perf_counter()
        rec = {"step": step, "loss": loss, "lr": rate, "grad_norm": gnorm,
               "tokens": step * batch_size * context, "time": elapsed0 + now - t0,
               "step_time": now - t_step}
        if step % eval_every == 0 or step == steps:
            rec["val_loss"] = evaluate(params, args, val_ids, context)
        log["records"].append(rec)
        if step % print_every == 0 or step == steps or "val_loss" in rec:
            recent = [r["step_time"] for r in log["records"][-print_every:]]
            tps = batch_size * context / np.mean(recent)
            eta = (steps - step) * np.mean(recent)
            val = f"  val {rec['val_loss']:.3f}" if "val_loss" in rec else ""
            print(f"step {step:5d}/{steps}  loss {loss:.3f}{val}  lr {rate:.2e}  |g| {gnorm:.2f}  "
                  f"{tps:,.0f} tok/s  elapsed {rec['time'] / 60:.1f} min  ETA {eta / 60:.1f} min",
                  file=out, flush=True)
        if step % ckpt_every == 0 or step == steps:
            save_checkpoint(ckpt, params, state, step, log)
            (run_dir / "train_log.json").write_text(json.dumps(log) + "\n")
        if now > deadline and step < steps:
            stopped_early = True
            print(f"wall-clock budget of {minutes} min spent at step {step}/{steps}; saving", file=out)
            break
    log["meta"]["stopped_early"] = stopped_early
    save_checkpoint(ckpt, params, state, step, log)
    (run_dir / "train_log.json").write_text(json.dumps(log) + "\n")
    return params, log


# ---------------------------------------------------------------- command line

def pocket_args(a) -> ModelArgs:
    return ModelArgs(dim=a.dim, n_layers=a.n_layers, head_dim=a.head_dim, hidden_dim=a.hidden_dim,
                     n_heads=a.n_heads, n_kv_heads=a.n_kv_heads, vocab_size=a.vocab_size, W=a.W,
                     max_seq_len=a.context, rope_layout="halves")


def cmd_train(a):
    args = pocket_args(a)
    steps = a.steps
    if steps is None:   # time a few steps, then fit the schedule to 80% of the budget
        params = init_params(args, a.seed)
        rng = np.random.default_rng(0)
        x = rng.integers(0, args.vocab_size, (a.batch, args.max_seq_len))
        loss_and_grads(params, args, x, x)
        t = time.perf_counter()
        for _ in range(3):
            loss_and_grads(params, args, x, x)
        step_time = (time.perf_counter() - t) / 3 * 1.1     # + the optimiser and evaluations
        steps = max(1, int(0.8 * 60 * a.minutes / step_time))
        print(f"measured {step_time:.2f} s/step: scheduling {steps} steps")
    params, log = train(a.out, args, steps, a.batch, a.lr, a.warmup, a.minutes, seed=a.seed,
                        weight_decay=a.weight_decay, eval_every=a.eval_every, ckpt_every=a.ckpt_every)
    if a.export:
        print(f"exported to {export(params, args, a.export)}")


def add_cli(subparsers):
    t = subparsers.add_parser("train", help="train the pocket Mistral on Shakespeare (NumPy, CPU)")
    t.add_argument("--out", default="runs/pocket", help="run folder: checkpoint, log (resumes if present)")
    t.add_argument("--minutes", type=float, default=60, help="wall-clock budget; stops and saves when spent")
    t.add_argument("--steps", type=int, default=None, help="schedule length (default: fit to --minutes)")
    t.add_argument("--export", default=None, help="write the trained model here (config.json + bf16 safetensors)")
    t.add_argument("--dim", type=int, default=256)
    t.add_argument("--n-layers", type=int, default=4)
    t.add_argument("--n-heads", type=int, default=8)
    t.add_argument("--n-kv-heads", type=int, default=2)
    t.add_argument("--head-dim", type=int, default=32)
    t.add_argument("--hidden-dim", type=int, default=768)
    t.add_argument("--vocab-size", type=int, default=2048)
    t.add_argument("--W", type=int, default=64)
    t.add_argument("--context", type=int, default=256)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--warmup", type=int, default=50)
    t.add_argument("--weight-decay", type=float, default=0.1)
    t.add_argument("--eval-every", type=int, default=50)
    t.add_argument("--ckpt-every", type=int, default=25)
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(run=cmd_train)
