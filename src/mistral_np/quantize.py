"""Writing int8 checkpoints (the weight type itself is in int8.py).

    python -m mistral_np quantize --model DIR --out DIR_INT8

The output is a Hugging Face-style folder: the config and tokenizer copied, and one
model.safetensors where each matrix "name" is an I8 tensor beside an F32 tensor "name_scale"
(norm weights stay as they were). It is written tensor by tensor, block by block, so quantizing
Mistral 7B needs well under 1 GB of memory.
"""
from pathlib import Path
import shutil
import sys
import time

import numpy as np

from .bf16 import BF16
from .checkpoint import load, read_tensors, replace_files
from .int8 import SCALE_SUFFIX, Int8, quantize_rows  # noqa: F401 (Int8 re-exported)
from .paths import DEFAULT_MODEL
from .safetensors import header_bytes

INT8_METADATA = {"format": "pt", "quantization": "int8 per-row absmax (mistral_np)"}


def check_out_dir(model_dir, out_dir, force=False):
    """Refuse an output that would overwrite the input, or a non-empty folder without force."""
    src, dst = Path(model_dir).resolve(), Path(out_dir).resolve()
    if dst == src or src in dst.parents:
        raise ValueError(f"--out {out_dir} is {'the' if dst == src else 'inside the'} model folder "
                         f"{model_dir}; writing there could destroy the weights being read; choose another folder")
    if dst.exists() and not dst.is_dir():
        raise ValueError(f"--out {out_dir} exists and is not a folder; choose another name")
    if dst.is_dir() and any(dst.iterdir()) and not force:
        raise ValueError(f"--out {out_dir} is not empty; choose a new folder, or pass --force to replace "
                         "the checkpoint files in it")


def quantize(model_dir, out_dir, log=print, force=False):
    """Write an int8 copy of a checkpoint (either layout) into out_dir; returns out_dir.

    Every file is written under a temporary name and renamed when complete, so an interrupted
    run never leaves a truncated or mixed checkpoint; out_dir may not be (or be inside) model_dir,
    and must be empty unless force.
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    check_out_dir(model_dir, out_dir, force)
    tensors = read_tensors(model_dir)
    if any(n.endswith(SCALE_SUFFIX) for n in tensors):
        raise ValueError(f"{model_dir} is already quantized (it has *{SCALE_SUFFIX} tensors)")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}                                                     # final name -> temporary path
    try:
        for name in ("config.json", "params.json", "tokenizer.model"):
            if (model_dir / name).exists():
                written[name] = out_dir / f".{name}.partial"
                shutil.copyfile(model_dir / name, written[name])
        t0 = time.perf_counter()
        written["model.safetensors"] = out_dir / ".model.safetensors.partial"
        _write_int8(tensors, written["model.safetensors"])
        replace_files(out_dir, written)
    finally:
        for tmp in written.values():
            tmp.unlink(missing_ok=True)                              # only left if something failed
    log(f"wrote {out_dir / 'model.safetensors'} ({(out_dir / 'model.safetensors').stat().st_size:,} bytes) "
        f"in {time.perf_counter() - t0:.0f} s")
    return out_dir


def _write_int8(tensors, path):
    """One safetensors file: each matrix as I8 rows and F32 row scales, other tensors as they were."""
    entries = []
    for name in sorted(tensors):
        t = tensors[name]
        if t.ndim == 2:
            entries += [(name, "I8", t.shape), (name + SCALE_SUFFIX, "F32", t.shape[:1])]
        else:
            entries.append((name, "BF16" if isinstance(t, BF16) else "F32", t.shape))
    with open(path, "wb") as f:
        f.write(header_bytes(entries, INT8_METADATA)[0])
        for name, dtype, _ in entries:
            if name.endswith(SCALE_SUFFIX):
                continue
            t = tensors[name]
            if t.ndim != 2:
                (t.bits if isinstance(t, BF16) else np.asarray(t, np.float32)).tofile(f)
                continue
            step = max(1, 2**24 // t.shape[1])                         # rows per block: 64 MB as float32
            scales = []
            for r0 in range(0, t.shape[0], step):
                block = t[r0:r0 + step] if isinstance(t, BF16) else np.asarray(t[r0:r0 + step], np.float32)
                q, s = quantize_rows(block)
                q.tofile(f)
                scales.append(s)
            np.concatenate(scales).tofile(f)                             # name_scale follows name


def agreement(model_a, model_b, tokens):
    """How close two models' logits are on `tokens`: the size of the difference relative to the
    logits (largest entry, and root mean square), and how often the most likely token is the same."""
    a, b = model_a.forward(tokens), model_b.forward(tokens)
    return {"max_rel_diff": float(np.abs(a - b).max() / np.abs(a).max()),
            "rms_rel_diff": float(np.sqrt(np.mean((a - b) ** 2) / np.mean(a ** 2))),
            "top1_agreement": float(np.mean(a.argmax(-1) == b.argmax(-1)))}


def cmd_quantize(a):
    quantize(a.model, a.out, force=a.force)
    if a.check:
        rng = np.random.default_rng(0)
        ref, q = load(a.model), load(a.out)
        tokens = np.concatenate([[1], rng.integers(3, ref.args.vocab_size, a.check - 1)])
        r = agreement(ref, q, tokens)
        print(f"logits on {a.check} tokens: max |diff| / max |logits| {r['max_rel_diff']:.4f}, "
              f"rms diff / rms logits {r['rms_rel_diff']:.4f}, same top-1 token "
              f"{100 * r['top1_agreement']:.1f}%", file=sys.stderr)


def add_cli(subparsers):
    q = subparsers.add_parser("quantize", help="write an int8 (per-row scale) copy of a checkpoint")
    q.add_argument("--model", default=str(DEFAULT_MODEL), help="checkpoint folder to read")
    q.add_argument("--out", required=True, help="folder to write (new or empty)")
    q.add_argument("--force", action="store_true",
                   help="replace the checkpoint files of a non-empty --out folder (default: refuse)")
    q.add_argument("--check", type=int, default=0, metavar="T",
                   help="then compare the two models' logits on T random tokens")
    q.set_defaults(run=cmd_quantize)
