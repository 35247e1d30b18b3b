"""Training the pocket Mistral in NumPy: initial weights, AdamW with warmup + cosine, gradient
clipping, batches of the corpus, resumable checkpoints, the training loop and its command line.

    python -m mistral_np train --out runs/pocket --minutes 60 [--steps N] [--export models/pocket-mistral]

The model is Mistral's architecture at pocket size. It trains directly in Hugging Face's "halves"
RoPE layout, so the weights are saved with no permutation. Parameters live in a flat dict
{book name: array} ("layers.0.attention.wq.weight", ...); `weights.nest` views it as the nested
dict that `Model` takes, without copying, so the trained model is an ordinary `Model`. The
gradients are in backward.py, the measurements in evaluate.py.
"""
from dataclasses import asdict
from pathlib import Path
import json
import math
import os
import re
import sys
import time

import numpy as np

from .backward import loss_and_grads
from .config import ModelArgs
from .costs import score_bytes
from .evaluate import evaluate
from .model import Model
from .weights import expected_shapes, nest


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
        try:
            with np.load(cache_path, allow_pickle=False) as z:
                train, val = z["train"], z["val"]
            ok = all(a.ndim == 1 and a.dtype.kind in "iu" and len(a) and 0 <= a.min() <= a.max() < tokenizer.vocab_size
                     for a in (train, val))
        except (PermissionError, MemoryError):
            raise
        except Exception:
            ok = False
        if not ok:
            raise ValueError(f"{cache_path}: damaged token cache (not the token ids of this tokenizer); "
                             "delete it: it is rebuilt from the corpus")
        return train, val, len(train_text), len(val_text)
    train = np.array(tokenizer.encode(train_text, bos=False), np.int32)
    val = np.array(tokenizer.encode(val_text, bos=False), np.int32)
    if cache_path is not None:
        np.savez(cache_path, train=train, val=val)
    return train, val, len(train_text), len(val_text)


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


def not_finite(params, state):
    """The name of the first parameter or AdamW moment holding NaN or inf, else None."""
    for prefix, arrays in (("", params), ("AdamW m of ", state["m"]), ("AdamW v of ", state["v"])):
        for name, a in arrays.items():
            if not np.isfinite(a).all():
                return prefix + name
    return None


def load_checkpoint(path, arrays=True):
    """(params, state, step, log) of a training checkpoint, checked: a damaged file, one of another
    layout or one holding NaN/inf is one line naming it. arrays=False reads only step and log."""
    path = Path(path)

    def damaged(why):
        return ValueError(f"{path}: damaged training checkpoint ({why}); delete it to start the run "
                          "again from step 0, or use another --out")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file; remove it or use another --out")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise damaged("not a .npz archive")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            if not {"step", "log"} <= names:
                raise damaged(f"no {'step' if 'step' not in names else 'log'} entry")
            step, log = z["step"], z["log"]
            if step.shape != () or step.dtype.kind not in "iu" or log.shape != () or log.dtype.kind != "U":
                raise damaged("step or log of the wrong type")
            step, log = int(step), json.loads(str(log))
            pick = lambda prefix: {k[2:]: z[k].copy() for k in sorted(names) if k.startswith(prefix)}
            params, state = (pick("p/"), {"m": pick("m/"), "v": pick("v/")}) if arrays else (None, None)
    except (PermissionError, MemoryError):
        raise
    except Exception as e:        # zipfile.BadZipFile, zlib.error, EOFError, JSONDecodeError, ...
        if str(e).startswith(str(path)):                                 # one of ours, above
            raise
        why = str(e).splitlines()[0][:80] if str(e) else type(e).__name__
        if isinstance(e, json.JSONDecodeError):
            why = f"its log is not valid JSON: {e.msg}"
        raise damaged("it holds pickled objects" if "pickle" in why else why) from None   # never numpy's
    try:
        meta = log["meta"]
        args = ModelArgs(**meta["args"])
        for key in SETTINGS:
            meta[key]
        last = log["records"][-1]["time"] if log["records"] else 0.0
        if not (isinstance(meta["steps"], int) and 0 <= step <= meta["steps"]) or not isinstance(last, (int, float)):
            raise ValueError(f"step {step} of {meta['steps']}")
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise damaged(f"its log does not describe a run: {str(e).splitlines()[0][:60] if str(e) else e!r}") from None
    if arrays:
        shapes = expected_shapes(args)
        for name, group in (("parameters", params), ("AdamW m", state["m"]), ("AdamW v", state["v"])):
            if set(group) != set(shapes) or any(group[k].shape != shapes[k] or group[k].dtype.kind != "f"
                                                for k in shapes):
                raise damaged(f"its {name} do not fit the run's model config")
        bad = not_finite(params, state)
        if bad:
            raise ValueError(f"{path}: {bad} holds NaN or inf (the run diverged before it was saved); it "
                             "cannot be resumed: delete it and start again, with a lower --lr")
    return params, state, step, log


def export(params, args, out_dir):
    """Write the trained model as a Hugging Face checkpoint (config.json + bf16 model.safetensors)."""
    from .checkpoint import save
    f32 = {k: v.astype(np.float32) for k, v in params.items()}
    model = Model(args, nest(f32.__getitem__, args))
    return save(model, out_dir, layout="hf", dtype="BF16")


# ---------------------------------------------------------------- the training loop

# The settings a run is made of, with their command-line flags. A resumed run keeps its own: a
# different value on the command line is refused, never silently used (or silently ignored).
SETTINGS = {"steps": "--steps", "batch_size": "--batch", "lr": "--lr", "warmup": "--warmup",
            "weight_decay": "--weight-decay", "max_grad_norm": "max_grad_norm", "seed": "--seed"}
MODEL_FLAGS = {"dim": "--dim", "n_layers": "--n-layers", "n_heads": "--n-heads", "n_kv_heads": "--n-kv-heads",
               "head_dim": "--head-dim", "hidden_dim": "--hidden-dim", "vocab_size": "--vocab-size",
               "W": "--W", "max_seq_len": "--context"}


def check_settings(steps, batch_size, lr, warmup, minutes, seed=0, weight_decay=0.1, max_grad_norm=1.0,
                   eval_every=50, ckpt_every=50):
    """Refuse impossible settings by flag, before anything is measured or written (steps may be None)."""
    def whole(value, flag, low):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"{flag} must be an integer >= {low}, got {value!r}")

    def real(value, flag, positive, inf_ok=False):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
        if not ok or not (value > 0 if positive else value >= 0) or (value == math.inf and not inf_ok):
            raise ValueError(f"{flag} must be a{'' if inf_ok else ' finite'} number {'>' if positive else '>='} 0, "
                             f"got {value!r}")
    if steps is not None:
        whole(steps, "--steps", 1)
    whole(batch_size, "--batch", 1)
    whole(warmup, "--warmup", 0)
    whole(seed, "--seed", 0)
    whole(eval_every, "--eval-every", 1)
    whole(ckpt_every, "--ckpt-every", 1)
    real(lr, "--lr", positive=True)
    real(weight_decay, "--weight-decay", positive=False)
    real(max_grad_norm, "max_grad_norm", positive=True)
    real(minutes, "--minutes", positive=False, inf_ok=True)


def check_memory(args: ModelArgs, batch_size):
    """Refuse a step whose attention weights alone (kept for the backward pass) exceed this machine's memory."""
    need = args.n_layers * score_bytes(args, args.max_seq_len, args.max_seq_len, batch_size)
    try:
        have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return
    if need > have:
        raise ValueError(f"--context {args.max_seq_len} with --batch {batch_size} needs {need / 2**30:,.0f} GiB "
                         f"of attention weights per step, more than this machine's {have / 2**30:,.0f} GiB; "
                         "use a smaller --context or --batch")


def check_resume(ckpt, meta, saved):
    """Refuse a resumed run's setting that differs from the one asked for, naming the flag."""
    asked = [(MODEL_FLAGS.get(k, k), v, saved["args"].get(k)) for k, v in meta["args"].items()]
    asked += [(flag, meta[k], saved[k]) for k, flag in SETTINGS.items()]
    for flag, value, theirs in asked:
        if value != theirs:
            raise ValueError(f"{flag} {value} does not match the run being resumed ({theirs}, in {ckpt}); "
                             f"leave {flag} out to keep the run's, or use another --out for a new run")


class Diverged(ValueError):
    """The loss, the gradient or the weights stopped being finite numbers."""


def train(run_dir, args: ModelArgs, steps, batch_size, lr, warmup, minutes, seed=0,
          weight_decay=0.1, max_grad_norm=1.0, eval_every=50, ckpt_every=50, tokenizer_path=None,
          print_every=10, out=sys.stdout):
    """Train (or resume) in run_dir until `steps` steps or `minutes` of wall clock, saving as it goes.

    A resumed run must be asked for with its own settings (see SETTINGS). A state that is not
    finite is never saved: training stops with Diverged and the last good checkpoint stays."""
    from .paths import DEFAULT_MODEL
    from .tokenizer import Tokenizer
    check_settings(steps, batch_size, lr, warmup, minutes, seed, weight_decay, max_grad_norm,
                   eval_every, ckpt_every)
    check_memory(args, batch_size)
    run_dir = Path(run_dir)
    ckpt = run_dir / "checkpoint.npz"
    meta = {"args": asdict(args), "steps": steps, "batch_size": batch_size, "lr": lr, "warmup": warmup,
            "weight_decay": weight_decay, "max_grad_norm": max_grad_norm, "seed": seed}
    resumed = load_checkpoint(ckpt) if ckpt.exists() or ckpt.is_symlink() else None
    if resumed:
        check_resume(ckpt, meta, resumed[3]["meta"])
    tok = Tokenizer(tokenizer_path or DEFAULT_MODEL / "tokenizer.model")
    if tok.vocab_size != args.vocab_size:
        raise ValueError(f"--vocab-size {args.vocab_size} does not match the tokenizer's {tok.vocab_size} pieces")
    run_dir.mkdir(parents=True, exist_ok=True)
    train_ids, val_ids, train_chars, val_chars = encode_corpus(tok, run_dir / "tokens.npz")
    context = args.max_seq_len
    if context + 1 >= min(len(train_ids), len(val_ids)):
        raise ValueError(f"--context {context} is longer than the text: {len(val_ids):,} validation tokens")
    meta.update({"train_tokens": int(len(train_ids)), "val_tokens": int(len(val_ids)),
                 "train_chars": train_chars, "val_chars": val_chars})
    if resumed:
        params, state, step, log = resumed
        meta, elapsed0 = log["meta"], log["records"][-1]["time"] if log["records"] else 0.0
        print(f"resuming from step {step} of {meta['steps']}", file=out)
    else:
        params = init_params(args, seed)
        state = {"m": {k: np.zeros_like(v) for k, v in params.items()},
                 "v": {k: np.zeros_like(v) for k, v in params.items()}}
        step, log, elapsed0 = 0, {"meta": meta, "records": []}, 0.0
    saved_step = step if resumed else None

    def save():
        nonlocal saved_step
        bad = not_finite(params, state)
        if bad:
            diverged(f"{bad} holds NaN or inf after step {step}")
        save_checkpoint(ckpt, params, state, step, log)
        (run_dir / "train_log.json").write_text(json.dumps(log) + "\n")
        saved_step = step

    def diverged(what):
        kept = f"{ckpt} (step {saved_step}) is kept" if saved_step is not None else "nothing was saved"
        raise Diverged(f"training diverged: {what}; stopped without saving it, {kept}; "
                       "try a lower --lr in a new run (another --out)")
    (run_dir / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"model: {Model(args, nest(params.__getitem__, args))}", file=out)
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
        if not (math.isfinite(loss) and math.isfinite(gnorm)):
            diverged(f"step {step + 1} has loss {loss:.4g} and gradient norm {gnorm:.4g}")
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
            save()
        if now > deadline and step < steps:
            stopped_early = True
            print(f"wall-clock budget of {minutes} min spent at step {step}/{steps}; saving", file=out)
            break
    log["meta"]["stopped_early"] = stopped_early
    save()
    return params, log


# ---------------------------------------------------------------- command line

# A new run's settings when their flags are left out; a resumed run takes its own from its checkpoint.
DEFAULTS = {"dim": 256, "n_layers": 4, "n_heads": 8, "n_kv_heads": 2, "head_dim": 32, "hidden_dim": 768,
            "vocab_size": 2048, "W": 64, "max_seq_len": 256,
            "steps": None, "batch_size": 16, "lr": 2e-3, "warmup": 50, "weight_decay": 0.1,
            "max_grad_norm": 1.0, "seed": 0}


def pocket_args(sizes) -> ModelArgs:
    """ModelArgs from {MODEL_FLAGS key: value}; a bad size is one line naming its flag."""
    for k, flag in MODEL_FLAGS.items():
        if not isinstance(sizes[k], int) or sizes[k] < 1:
            raise ValueError(f"{flag} must be an integer >= 1, got {sizes[k]!r}")
    try:
        return ModelArgs(**sizes, rope_layout="halves")
    except ValueError as e:                               # n_heads % n_kv_heads, odd head_dim
        msg = str(e).removeprefix("config: ")
        for k, flag in MODEL_FLAGS.items():
            msg = re.sub(rf"\b{k}\b", flag, msg)
        raise ValueError(msg) from None


def cmd_train(a):
    ckpt = Path(a.out) / "checkpoint.npz"
    saved = load_checkpoint(ckpt, arrays=False)[3]["meta"] if ckpt.exists() or ckpt.is_symlink() else None
    theirs = ({**saved["args"], **saved} if saved else DEFAULTS)      # a flag left out: the run's value
    pick = lambda k: getattr(a, k) if getattr(a, k, None) is not None else theirs[k]
    args = pocket_args({k: pick(k) for k in MODEL_FLAGS})
    settings = {k: pick(k) for k in SETTINGS}                          # a different one: refused by train()
    check_settings(minutes=a.minutes, eval_every=a.eval_every, ckpt_every=a.ckpt_every, **settings)
    check_memory(args, settings["batch_size"])
    if settings["steps"] is None:   # time a few steps, then fit the schedule to 80% of the budget
        params = init_params(args, settings["seed"])
        rng = np.random.default_rng(0)
        x = rng.integers(0, args.vocab_size, (settings["batch_size"], args.max_seq_len))
        loss_and_grads(params, args, x, x)
        t = time.perf_counter()
        for _ in range(3):
            loss_and_grads(params, args, x, x)
        step_time = (time.perf_counter() - t) / 3 * 1.1     # + the optimiser and evaluations
        settings["steps"] = max(1, int(0.8 * 60 * min(a.minutes, 1e9) / step_time))
        print(f"measured {step_time:.2f} s/step: scheduling {settings['steps']} steps")
    params, log = train(a.out, args, minutes=a.minutes, eval_every=a.eval_every, ckpt_every=a.ckpt_every,
                        **settings)
    if a.export:
        print(f"exported to {export(params, args, a.export)}")


def add_cli(subparsers):
    t = subparsers.add_parser("train", help="train the pocket Mistral on Shakespeare (NumPy, CPU)",
                              description="Train (or resume) the pocket Mistral. A run's settings, from --steps "
                              "on, are fixed when it starts: resuming (an --out holding a checkpoint) takes "
                              "them from the run and refuses a different value.")
    t.add_argument("--out", default="runs/pocket", help="run folder: checkpoint, log (resumes if present)")
    t.add_argument("--minutes", type=float, default=60, help="wall-clock budget; stops and saves when spent")
    t.add_argument("--export", default=None, help="write the trained model here (config.json + bf16 safetensors)")
    t.add_argument("--eval-every", type=int, default=50, help="validation loss every this many steps")
    t.add_argument("--ckpt-every", type=int, default=25, help="save a checkpoint every this many steps")
    keeps = ", or the resumed run's"
    run = [("--steps", "steps", int, "schedule length (default: fit to --minutes" + keeps + ")"),
           ("--batch", "batch_size", int, "sequences per step"), ("--lr", "lr", float, "peak learning rate"),
           ("--warmup", "warmup", int, "steps of linear warmup"),
           ("--weight-decay", "weight_decay", float, "AdamW weight decay (matrices only)"),
           ("--seed", "seed", int, "initial weights and batches"),
           ("--dim", "dim", int, "model width"), ("--n-layers", "n_layers", int, "blocks"),
           ("--n-heads", "n_heads", int, "query heads"), ("--n-kv-heads", "n_kv_heads", int, "key/value heads"),
           ("--head-dim", "head_dim", int, "width of a head"), ("--hidden-dim", "hidden_dim", int, "SwiGLU width"),
           ("--vocab-size", "vocab_size", int, "must match the tokenizer"), ("--W", "W", int, "sliding window"),
           ("--context", "max_seq_len", int, "tokens per training sequence")]
    for flag, key, kind, words in run:
        t.add_argument(flag, dest=key, type=kind, default=None, metavar=flag[2:].upper().replace("-", "_"),
                       help=words if "default" in words else f"{words} (default: {DEFAULTS[key]:g}{keeps})")
    t.set_defaults(run=cmd_train)
