"""The model's hyper-parameters, and how to read them from either checkpoint layout.

Hugging Face writes `config.json` (hidden_size, num_attention_heads, ...); Mistral writes
`params.json` (dim, n_heads, ...). Both become one `ModelArgs` with the paper's names.
"""
from dataclasses import dataclass, asdict
from pathlib import Path
import json
import math
import numbers

from .paths import require_regular_file


@dataclass(frozen=True)
class ModelArgs:
    dim: int                 # model width (4096 for Mistral 7B)
    n_layers: int            # transformer blocks (32)
    head_dim: int            # width of one attention head (128)
    hidden_dim: int          # SwiGLU inner width (14336)
    n_heads: int             # query heads (32)
    n_kv_heads: int          # key/value heads (8): grouped-query attention when < n_heads
    vocab_size: int          # 32000
    W: int                   # sliding window: a query sees W keys, itself included
    max_seq_len: int         # the context the model was trained for
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_embeddings: bool = False
    rope_layout: str = "pairs"   # "pairs" (Mistral's checkpoints) or "halves" (Hugging Face's)

    def __post_init__(self):
        for name in ("dim", "n_layers", "head_dim", "hidden_dim", "n_heads", "n_kv_heads",
                     "vocab_size", "W", "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"config: {name} must be a positive integer, got {value!r}")
        for name in ("norm_eps", "rope_theta"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 < value < math.inf:
                raise ValueError(f"config: {name} must be a finite number > 0, got {value!r}")
        if not isinstance(self.tie_embeddings, bool):
            raise ValueError(f"config: tie_embeddings must be true or false, got {self.tie_embeddings!r}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"config: n_heads ({self.n_heads}) must be a multiple of "
                             f"n_kv_heads ({self.n_kv_heads}) for grouped-query attention")
        if self.head_dim % 2:
            raise ValueError(f"config: head_dim must be even for rotary embeddings, got {self.head_dim}")
        if self.rope_layout not in ("pairs", "halves"):
            raise ValueError(f"config: rope_layout must be 'pairs' or 'halves', got {self.rope_layout!r}")

    def replace(self, **changes):
        return ModelArgs(**{**asdict(self), **changes})


# Mistral-7B-v0.1 as published (params.json / config.json), with the book's names.
# The context the paper trained with is 8192; the Hugging Face config advertises 32768.
MISTRAL_7B = ModelArgs(dim=4096, n_layers=32, head_dim=128, hidden_dim=14336, n_heads=32,
                       n_kv_heads=8, vocab_size=32000, W=4096, max_seq_len=8192,
                       norm_eps=1e-5, rope_theta=10000.0, tie_embeddings=False)

# Llama 2 13B in the book's terms: multi-head attention (n_kv_heads = n_heads) and no sliding
# window, which in this code is a window as long as the context (W = max_seq_len = 4096).
LLAMA2_13B = ModelArgs(dim=5120, n_layers=40, head_dim=128, hidden_dim=13824, n_heads=40,
                       n_kv_heads=40, vocab_size=32000, W=4096, max_seq_len=4096)


def _require(cfg, key, path):
    if key not in cfg:
        raise ValueError(f"{path}: missing required key {key!r}; is this a Mistral config?")
    return cfg[key]


def _positive_int(value, key, path):
    """Sizes are checked before any arithmetic, so a string or a bool never reaches `//`."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{path}: {key} must be a positive integer, got {value!r}")
    return value


def _refuse_other_families(cfg, path, model_types):
    """Keys that change the computation in ways this model does not implement: refused by name
    rather than loaded and run wrong."""
    model_type = cfg.get("model_type")
    if model_type is not None and model_type not in model_types:
        raise ValueError(f"{path}: model_type {model_type!r} is not supported (only {', '.join(model_types)}); "
                         "this reader implements Mistral's architecture alone")
    act = cfg.get("hidden_act", cfg.get("activation", "silu"))
    if act not in ("silu", "swish"):
        raise ValueError(f"{path}: hidden_act {act!r} is not supported (Mistral uses 'silu')")
    for key in ("rope_scaling", "moe"):
        if cfg.get(key):
            raise ValueError(f"{path}: {key} is set ({str(cfg[key])[:60]}); this reader implements "
                             f"plain Mistral without {key}")
    rope_type = (cfg.get("rope_parameters") or {}).get("rope_type", "default") \
        if isinstance(cfg.get("rope_parameters"), dict) else "default"
    if rope_type != "default":
        raise ValueError(f"{path}: rope_parameters has rope_type {rope_type!r}; only 'default' RoPE is implemented")
    for key in ("attention_bias", "mlp_bias"):
        if cfg.get(key):
            raise ValueError(f"{path}: {key} is true; Mistral's linear layers have no biases")


def _args(path, **kwargs):
    """ModelArgs, its complaints prefixed with the config file's path."""
    try:
        return ModelArgs(**kwargs)
    except ValueError as e:
        raise ValueError(f"{path}: {str(e).removeprefix('config: ')}") from None


def _float(cfg, key, default, path):
    value = cfg.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"{path}: {key} must be a number, got {value!r}")
    return float(value)


def _bool(cfg, key, path):
    value = cfg.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"{path}: {key} must be true or false, got {value!r}")
    return value


# The key each layout gives a hyper-parameter that both read alike (book's name -> key in the file).
_HF_KEYS = dict(dim="hidden_size", n_layers="num_hidden_layers", head_dim="head_dim",
                hidden_dim="intermediate_size", n_heads="num_attention_heads",
                n_kv_heads="num_key_value_heads", vocab_size="vocab_size", W="sliding_window",
                norm_eps="rms_norm_eps", tie_embeddings="tie_word_embeddings")
_PARAMS_KEYS = dict(dim="dim", n_layers="n_layers", head_dim="head_dim", hidden_dim="hidden_dim",
                    n_heads="n_heads", n_kv_heads="n_kv_heads", vocab_size="vocab_size",
                    W="sliding_window", norm_eps="norm_eps", tie_embeddings="tie_embeddings")


def _read(cfg, path, keys, max_seq_len, rope_theta, rope_layout) -> ModelArgs:
    """ModelArgs from a config cfg that names its keys as `keys` does; what each layout finds its
    own way is given (max_seq_len, rope_theta, rope_layout). Both fill in alike what is left out:
    head_dim = dim // n_heads, n_kv_heads = n_heads (no grouping), no sliding window = full attention."""
    dim = _positive_int(_require(cfg, keys["dim"], path), keys["dim"], path)
    n_heads = _positive_int(_require(cfg, keys["n_heads"], path), keys["n_heads"], path)
    window = cfg.get(keys["W"])
    return _args(
        path, dim=dim, n_layers=_require(cfg, keys["n_layers"], path),
        head_dim=cfg.get(keys["head_dim"]) or dim // n_heads,
        hidden_dim=_require(cfg, keys["hidden_dim"], path), n_heads=n_heads,
        n_kv_heads=cfg.get(keys["n_kv_heads"]) or n_heads,
        vocab_size=_require(cfg, keys["vocab_size"], path),
        W=window if window is not None else max_seq_len,   # null means full attention
        max_seq_len=max_seq_len, norm_eps=_float(cfg, keys["norm_eps"], 1e-5, path),
        rope_theta=_float({"rope_theta": rope_theta}, "rope_theta", None, path),
        tie_embeddings=_bool(cfg, keys["tie_embeddings"], path), rope_layout=rope_layout)


def from_hf_config(cfg: dict, path="config.json") -> ModelArgs:
    """config.json of a Hugging Face MistralForCausalLM (transformers 4.x or 5.x)."""
    _refuse_other_families(cfg, path, ("mistral", "llama"))
    theta = cfg.get("rope_theta")
    if theta is None:  # transformers 5.x nests it
        nested = cfg.get("rope_parameters") or {}
        if not isinstance(nested, dict):
            raise ValueError(f"{path}: rope_parameters is {nested!r}, not an object holding rope_theta; "
                             "use the config.json that came with the weights")
        theta = nested.get("rope_theta", 10000.0)
    return _read(cfg, path, _HF_KEYS, max_seq_len=cfg.get("max_position_embeddings", 32768),
                 rope_theta=theta, rope_layout="halves")


def from_params(cfg: dict, path="params.json") -> ModelArgs:
    """params.json of Mistral's own checkpoints (consolidated.safetensors)."""
    _refuse_other_families(cfg, path, ("mistral", "transformer"))
    max_seq_len = cfg.get("max_seq_len", cfg.get("max_position_embeddings", 32768))
    return _read(cfg, path, _PARAMS_KEYS, max_seq_len=max_seq_len,
                 rope_theta=cfg.get("rope_theta", 10000.0), rope_layout="pairs")


def to_hf_config(args: ModelArgs) -> dict:
    """The config.json transformers writes for MistralForCausalLM (4.x style keys)."""
    return {
        "architectures": ["MistralForCausalLM"], "model_type": "mistral",
        "hidden_size": args.dim, "num_hidden_layers": args.n_layers, "head_dim": args.head_dim,
        "intermediate_size": args.hidden_dim, "num_attention_heads": args.n_heads,
        "num_key_value_heads": args.n_kv_heads, "vocab_size": args.vocab_size,
        "sliding_window": args.W, "max_position_embeddings": args.max_seq_len,
        "rms_norm_eps": args.norm_eps, "rope_theta": args.rope_theta,
        "tie_word_embeddings": args.tie_embeddings, "hidden_act": "silu",
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16",
    }


def to_params(args: ModelArgs) -> dict:
    """The params.json of Mistral's own layout."""
    return {"dim": args.dim, "n_layers": args.n_layers, "head_dim": args.head_dim,
            "hidden_dim": args.hidden_dim, "n_heads": args.n_heads, "n_kv_heads": args.n_kv_heads,
            "norm_eps": args.norm_eps, "vocab_size": args.vocab_size, "sliding_window": args.W,
            "rope_theta": args.rope_theta, "max_seq_len": args.max_seq_len}


def read_config(model_dir) -> ModelArgs:
    """ModelArgs from config.json (Hugging Face) or params.json (Mistral) in model_dir."""
    model_dir = Path(model_dir)
    if model_dir.is_file():
        raise ValueError(f"{model_dir} is a file, not a checkpoint folder; pass its folder ({model_dir.parent}), "
                         "which holds config.json or params.json beside the weights (only a .gguf file "
                         "can be passed by itself)")
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model directory {model_dir} does not exist; pass the folder "
                                "that holds config.json (Hugging Face) or params.json (Mistral)")
    for name, parse in (("config.json", from_hf_config), ("params.json", from_params)):
        path = model_dir / name
        if path.exists():
            require_regular_file(path, "config")
            try:
                cfg = json.loads(path.read_bytes())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"{path}: not valid JSON ({e}); re-download the file") from None
            if not isinstance(cfg, dict):
                raise ValueError(f"{path}: holds a JSON {type(cfg).__name__}, not an object; re-download the file")
            return parse(cfg, path)
    raise FileNotFoundError(f"{model_dir} has neither config.json (Hugging Face layout) nor "
                            "params.json (Mistral layout); download the model's config with its weights")
