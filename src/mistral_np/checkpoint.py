"""Loading checkpoints: Hugging Face's layout and Mistral's own, sharded or not, bf16/f16/f32.

Hugging Face: config.json + model.safetensors, or model-0000k-of-0000n.safetensors with
model.safetensors.index.json; names like model.layers.0.self_attn.q_proj.weight; q/k rows
permuted for the "halves" RoPE layout. Mistral: params.json + consolidated.safetensors;
names like layers.0.attention.wq.weight; RoPE on neighbouring pairs.
"""
from pathlib import Path
import json

import numpy as np

from .bf16 import BF16
from .config import ModelArgs, read_config, to_hf_config, to_params
from .layers import as_f32, permute_halves_to_pairs, permute_pairs_to_halves
from .gguf import is_gguf, load_gguf
from .model import Model
from .paths import require_regular_file
from .int8 import SCALE_SUFFIX, Int8
from .quants import WIDEN_AT_LOAD_BYTES
from .weights import LAYER_KEYS, expected_shapes, nest
from .safetensors import load_file, read_header, save_file

# Book (= Mistral) name -> Hugging Face name; {i} is the layer index.
HF_NAMES = {
    "tok_embeddings.weight": "model.embed_tokens.weight",
    "layers.{i}.attention_norm.weight": "model.layers.{i}.input_layernorm.weight",
    "layers.{i}.attention.wq.weight": "model.layers.{i}.self_attn.q_proj.weight",
    "layers.{i}.attention.wk.weight": "model.layers.{i}.self_attn.k_proj.weight",
    "layers.{i}.attention.wv.weight": "model.layers.{i}.self_attn.v_proj.weight",
    "layers.{i}.attention.wo.weight": "model.layers.{i}.self_attn.o_proj.weight",
    "layers.{i}.ffn_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
    "layers.{i}.feed_forward.w1.weight": "model.layers.{i}.mlp.gate_proj.weight",
    "layers.{i}.feed_forward.w2.weight": "model.layers.{i}.mlp.down_proj.weight",
    "layers.{i}.feed_forward.w3.weight": "model.layers.{i}.mlp.up_proj.weight",
    "norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
def hf_name(name):
    """Book name -> Hugging Face name."""
    parts = name.split(".")
    if parts[0] == "layers":
        return HF_NAMES["layers.{i}." + ".".join(parts[2:])].format(i=parts[1])
    return HF_NAMES[name]


def read_index(model_dir):
    """{tensor name: shard name} of model.safetensors.index.json, or None without an index.
    Shard names must stay inside the model folder."""
    index = Path(model_dir) / "model.safetensors.index.json"
    if not index.exists():
        return None
    require_regular_file(index, "safetensors index")
    try:
        weight_map = json.loads(index.read_bytes())["weight_map"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{index}: not a valid safetensors index ({type(e).__name__}: {e}); "
                         "download it again") from None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ValueError(f"{index}: weight_map must map tensor names to shard file names; download it again")
    for shard in set(weight_map.values()):
        if not shard or Path(shard).is_absolute() or ".." in Path(shard).parts:
            raise ValueError(f"{index}: shard name {shard!r} points outside the model folder; "
                             "this index is corrupt or hostile; download it again")
    return weight_map


def checkpoint_files(model_dir):
    """The safetensors files of a checkpoint, checking an index's shards all exist."""
    model_dir = Path(model_dir)
    weight_map = read_index(model_dir)
    if weight_map is not None:
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (model_dir / s).exists()]
        if missing:
            raise FileNotFoundError(f"{model_dir / 'model.safetensors.index.json'} lists shard(s) "
                                    f"{', '.join(missing)} that are not in "
                                    f"{model_dir}; download every model-*.safetensors file")
        return [model_dir / s for s in shards]
    # Mistral's repositories may hold both layouts: the Hugging Face files win, as config.json does.
    files = sorted(model_dir.glob("model*.safetensors")) or sorted(model_dir.glob("consolidated*.safetensors"))
    if not files:
        pickles = sorted(p.name for ext in ("bin", "pth", "pt") for p in model_dir.glob(f"*.{ext}"))
        found = (f" (found {', '.join(pickles)}: PyTorch pickles, which this reader does not open "
                 "because loading them can run code)") if pickles else ""
        raise FileNotFoundError(f"{model_dir} holds no weights (*.safetensors){found}; download them, e.g. "
                                "huggingface-cli download mistralai/Mistral-7B-v0.1 --include '*.safetensors' "
                                f"'*.json' tokenizer.model --local-dir {model_dir}")
    return files


def read_tensors(model_dir):
    """{name: memory-mapped array} over all shards of a checkpoint. Each name must be in exactly
    one shard, and with an index, in the shard the index names: never a silent choice."""
    model_dir = Path(model_dir)
    tensors, shard_of = {}, {}
    for path in checkpoint_files(model_dir):
        shard = path.relative_to(model_dir)
        for name, t in load_file(path).items():
            if name in shard_of:
                raise ValueError(f"{model_dir}: tensor {name!r} is in both {shard_of[name]} and {shard}; "
                                 "remove the shards that do not belong to this checkpoint")
            tensors[name], shard_of[name] = t, shard
    weight_map = read_index(model_dir)
    if weight_map is not None:
        index = model_dir / "model.safetensors.index.json"
        for name in sorted(set(weight_map) | set(tensors)):
            if name not in tensors or name not in weight_map or Path(weight_map[name]) != shard_of[name]:
                raise ValueError(f"{index} says tensor {name!r} is in {weight_map.get(name, 'no shard')} but it is "
                                 f"in {shard_of.get(name, 'none')}; the index and the shards do not belong "
                                 "together; download them again")
    return tensors


class MissingTensorError(KeyError, ValueError):
    """A tensor the config needs is not in the checkpoint: a KeyError (a name not found) that is also
    a ValueError (a bad input), printed as its message alone."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def missing_tensor_message(config, key, tensors, args):
    """Why `key` is not among `tensors`, as precisely as the names allow, and what to do."""
    hf = config.name == "config.json"
    other = "tok_embeddings.weight" if hf else "model.embed_tokens.weight"
    if other in tensors:
        return (f"{config.parent}: the weights have {'Mistral' if hf else 'Hugging Face'}-layout names "
                f"(e.g. {other!r}) but the config is {config.name}; put the "
                f"{'params.json' if hf else 'config.json'} that came with these weights beside them")
    layers = {int(n.split(".")[2 if hf else 1]) for n in tensors if n.startswith("model.layers." if hf else "layers.")}
    if layers and key.startswith("model.layers." if hf else "layers.") and len(layers) < args.n_layers:
        return (f"{config} says {args.n_layers} layers but the weights hold {len(layers)} (no {key!r}); "
                "a shard is missing, or the config belongs to another model")
    return (f"{config.parent}: tensor {key!r} is missing from the checkpoint; is it complete, "
            f"and does {config.name} belong to it?")


def check_layer_count(config, tensors, args, hf):
    """The config's layer count against the layers the tensor names hold, before any shape is
    built from it (a config that says 10^9 layers must not build 10^9 of them first)."""
    prefix = "model.layers." if hf else "layers."
    layers = {int(i) for n in tensors if n.startswith(prefix)
              for i in [n[len(prefix):].split(".")[0]] if i.isdigit()}
    if args.n_layers > len(layers):
        missing = min(set(range(len(layers) + 1)) - layers)
        key = f"layers.{missing}.attention_norm.weight"
        raise MissingTensorError(missing_tensor_message(config, hf_name(key) if hf else key, tensors, args))
    if args.n_layers < len(layers):
        raise ValueError(f"{config} says {args.n_layers} layers but the weights hold {len(layers)}; every "
                         "tensor must be used: use the config that came with these weights")


def unused_tensor_message(config, unused, args, hf):
    """Why tensors are left over once the model is built: each one would be silently dropped."""
    output = "lm_head.weight" if hf else "output.weight"
    if args.tie_embeddings and output in unused:
        key = "tie_word_embeddings" if hf else "tie_embeddings"
        return (f"{config} sets {key} true but the weights hold their own {output!r}; set {key} to false "
                "if it belongs to the model (or use the config that came with these weights)")
    biases = [n for n in unused if n.endswith(".bias")]
    what = (f"biases such as {biases[0]!r}, which Mistral's layers do not have (another architecture?)"
            if biases else f"e.g. {unused[0]!r}, which a Mistral model of this config does not use")
    return (f"{config.parent}: {len(unused)} tensor(s) left over: {what}; refusing to drop them silently; "
            f"does {config.name} belong to these weights?")


def load(path, widen="auto", window=None) -> Model:
    """A Model from a checkpoint directory in either layout, or from a GGUF file (or a folder
    holding one). Nothing is copied but small tensors.

    widen: "auto" widens bf16 weights to float32 at load when the checkpoint is under 512 MiB
    (fast for small models); True always; False keeps them memory-mapped and widens per use.
    window: for GGUF files only, the sliding window W when the file does not record one.
    """
    if is_gguf(path):
        return load_gguf(path, widen, window)
    model_dir = Path(path)
    args = read_config(model_dir)
    tensors = read_tensors(model_dir)
    hf = (model_dir / "config.json").exists()
    total_bytes = sum(t.nbytes for t in tensors.values())
    widen_all = widen is True or (widen == "auto" and total_bytes < WIDEN_AT_LOAD_BYTES)

    config = model_dir / ("config.json" if hf else "params.json")
    check_layer_count(config, tensors, args, hf)
    used = set()

    def get(name, shape):
        key = hf_name(name) if hf else name
        if key not in tensors:
            raise MissingTensorError(missing_tensor_message(config, key, tensors, args))
        t = tensors[key]
        used.add(key)
        file = getattr(t.bits if isinstance(t, BF16) else t, "filename", None) or model_dir
        if tuple(t.shape) != shape:
            raise ValueError(f"{file}: tensor {key!r} has shape {tuple(t.shape)} but the config implies "
                             f"{shape}; {config} does not match these weights (use the one that came with them)")
        if key + SCALE_SUFFIX in tensors:                       # int8 rows and their scales
            scale = tensors[key + SCALE_SUFFIX]
            used.add(key + SCALE_SUFFIX)
            try:
                return Int8(t, scale)
            except ValueError as e:
                raise ValueError(f"{file}: {key!r} and {key + SCALE_SUFFIX!r}: {e}; quantize the checkpoint "
                                 "again") from None
        if isinstance(t, BF16):
            return t.to_f32() if (widen_all or len(shape) == 1) else t
        if t.dtype != np.float32:
            return np.asarray(t, dtype=np.float32)      # f16 / f64: widened once
        return t

    shapes = expected_shapes(args)
    weights = nest(lambda name: get(name, shapes[name]), args)
    unused = sorted(n for n in set(tensors) - used if not n.endswith("rotary_emb.inv_freq"))  # inv_freq: from theta
    if unused:
        raise ValueError(unused_tensor_message(config, unused, args, hf))
    return Model(args, weights)


def book_state_dict(model):
    """{book name: float32 array} of a model whose weights are in memory."""
    w = model.weights
    sd = {"tok_embeddings.weight": w["tok_embeddings"], "norm.weight": w["norm"]}
    if not model.args.tie_embeddings:
        sd["output.weight"] = w["output"]
    for i, blk in enumerate(w["layers"]):
        for k, v in LAYER_KEYS.items():
            sd[f"layers.{i}.{v}.weight"] = blk[k]
    return {k: as_f32(v) for k, v in sd.items()}


def replace_files(out_dir, written, replaced=("config.json", "params.json", "tokenizer.model")):
    """Move the finished files {final name: temporary path} into out_dir. Weight files of an older
    checkpoint there go first, index first, so no state in between loads stale weights; so do the
    files named in `replaced` that this checkpoint does not write."""
    stale = [out_dir / "model.safetensors.index.json"] + sorted(out_dir.glob("*.safetensors"))
    stale += [out_dir / n for n in replaced if n not in written]
    for path in stale:
        if path.name not in written and (path.is_file() or path.is_symlink()):
            path.unlink()
    for name, tmp in written.items():
        tmp.replace(out_dir / name)                                  # atomic on one file system


def save(model, out_dir, layout="hf", dtype="BF16"):
    """Write a model as a Hugging Face (config.json + model.safetensors) or Mistral
    (params.json + consolidated.safetensors) checkpoint, converting the q/k RoPE layout as needed.
    An older checkpoint in out_dir is replaced whole (its tokenizer.model stays)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    a = model.args
    sd = book_state_dict(model)
    target = "halves" if layout == "hf" else "pairs"
    if a.rope_layout != target:
        permute = permute_pairs_to_halves if target == "halves" else permute_halves_to_pairs
        for i in range(a.n_layers):
            for name, n in (("wq", a.n_heads), ("wk", a.n_kv_heads)):
                key = f"layers.{i}.attention.{name}.weight"
                sd[key] = permute(sd[key], n)
    hf = layout == "hf"
    config, weights = ("config.json", "model.safetensors") if hf else ("params.json", "consolidated.safetensors")
    written = {name: out_dir / f".{name}.partial" for name in (config, weights)}
    try:   # written under temporary names, then renamed: safe even over the checkpoint it was loaded from
        written[config].write_text(json.dumps(to_hf_config(a) if hf else to_params(a), indent=2) + "\n")
        save_file(written[weights], {hf_name(k): v for k, v in sd.items()} if hf else sd,
                  metadata={"format": "pt"} if hf else None, dtype=dtype)
        replace_files(out_dir, written, replaced=("config.json", "params.json"))
    finally:
        for tmp in written.values():
            tmp.unlink(missing_ok=True)                              # only left if something failed
    return out_dir


def describe(model_dir):
    """One line per tensor (name, dtype, shape) of a checkpoint, from the headers alone."""
    rows = []
    for path in checkpoint_files(model_dir):
        header, _, _ = read_header(path)
        rows += [(name, info["dtype"], tuple(info["shape"]), path.name) for name, info in header.items()]
    return rows
