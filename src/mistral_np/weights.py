"""The weight layout, in one place: every tensor's book name and shape, and the nested dict they form.

Book names are Mistral's own (layers.0.attention.wq.weight); checkpoint.py maps them to Hugging
Face's and gguf.py to llama.cpp's. The model takes the nested dict whose keys are its functions'
argument names: {"tok_embeddings", "layers": [{"attention_norm", "wq", ...}, ...], "norm", "output"}.
"""
from .config import ModelArgs

# per-layer key of the nested dict -> the middle of its book name
LAYER_KEYS = {"attention_norm": "attention_norm", "wq": "attention.wq", "wk": "attention.wk",
              "wv": "attention.wv", "wo": "attention.wo", "ffn_norm": "ffn_norm",
              "w1": "feed_forward.w1", "w2": "feed_forward.w2", "w3": "feed_forward.w3"}


def layer_shapes(a: ModelArgs):
    """Per-layer key -> shape, from the config alone."""
    return {"attention_norm": (a.dim,), "wq": (a.n_heads * a.head_dim, a.dim),
            "wk": (a.n_kv_heads * a.head_dim, a.dim), "wv": (a.n_kv_heads * a.head_dim, a.dim),
            "wo": (a.dim, a.n_heads * a.head_dim), "ffn_norm": (a.dim,),
            "w1": (a.hidden_dim, a.dim), "w2": (a.dim, a.hidden_dim), "w3": (a.hidden_dim, a.dim)}


def expected_shapes(a: ModelArgs):
    """Book name -> shape of every tensor a checkpoint of this config holds."""
    shapes = {"tok_embeddings.weight": (a.vocab_size, a.dim), "norm.weight": (a.dim,)}
    if not a.tie_embeddings:
        shapes["output.weight"] = (a.vocab_size, a.dim)
    per_layer = layer_shapes(a)
    for i in range(a.n_layers):
        shapes.update({f"layers.{i}.{LAYER_KEYS[k]}.weight": s for k, s in per_layer.items()})
    return shapes


def nest(get, a: ModelArgs):
    """The model's nested dict, with get(book name) supplying each tensor (the output is tied or not)."""
    weights = {"tok_embeddings": get("tok_embeddings.weight"), "norm": get("norm.weight")}
    weights["output"] = weights["tok_embeddings"] if a.tie_embeddings else get("output.weight")
    weights["layers"] = [{k: get(f"layers.{i}.{v}.weight") for k, v in LAYER_KEYS.items()}
                         for i in range(a.n_layers)]
    return weights
