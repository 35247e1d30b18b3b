"""The Mistral decoder: embeddings, n_layers pre-norm blocks, final norm, output projection.

Weights form a nested dict whose keys are the functions' argument names (as in picoGPT):
{"tok_embeddings", "layers": [{"attention_norm", "wq", "wk", "wv", "wo",
                               "ffn_norm", "w1", "w2", "w3"}, ...], "norm", "output"}.
"""
import math

import numpy as np

from .attention import attention, window_mask
from .bf16 import blas_threads
from .cache import RollingCache
from .config import ModelArgs
from .costs import score_bytes
from .layers import apply_rope, feed_forward, is_array, linear, rms_norm
from .weights import expected_shapes, nest


def attention_layer(x, wq, wk, wv, wo, args, positions, cache=None, layer=0):
    """x (T, dim) at absolute `positions` -> (T, dim). With a cache, the chunk also sees the past."""
    T = x.shape[0]
    q = linear(x, wq).reshape(T, args.n_heads, args.head_dim)       # (T, n_heads, hd)
    k = linear(x, wk).reshape(T, args.n_kv_heads, args.head_dim)    # (T, n_kv_heads, hd)
    v = linear(x, wv).reshape(T, args.n_kv_heads, args.head_dim)
    q = apply_rope(q, positions, args.rope_theta, args.rope_layout)
    k = apply_rope(k, positions, args.rope_theta, args.rope_layout)
    if cache is None:
        out = attention(q, k, v, window_mask(positions, positions, args.W))
    else:
        out = cache.attend(layer, q, k, v, positions)
    return linear(out, wo)                                          # (T, n_heads*hd) -> (T, dim)


def transformer_block(x, attention_norm, wq, wk, wv, wo, ffn_norm, w1, w2, w3, *,
                      args, positions, cache=None, layer=0):
    """Pre-norm residual block: x + attention(norm(x)), then h + feed_forward(norm(h))."""
    h = x + attention_layer(rms_norm(x, attention_norm, args.norm_eps), wq, wk, wv, wo,
                            args, positions, cache, layer)
    return h + feed_forward(rms_norm(h, ffn_norm, args.norm_eps), w1, w2, w3)


PREFILL_SCORES_BYTES = 256 * 2**20   # the default pre-fill chunk keeps its score array under this


def default_chunk_size(args, n_cached=None, budget=None):
    """The largest chunk T <= W whose float32 scores (n_heads, T, S + T) fit in `budget` bytes,
    S = min(W, n_cached) keys already cached (default W, the most a cache holds).

    A chunk's scores grow as T (S + T): a chunk of W = 4096 after a full cache makes 4 GiB per
    layer at 7B, and with W = 32768 (sliding_window null) hundreds of GiB.
    """
    S = args.W if n_cached is None else min(args.W, n_cached)
    c = (PREFILL_SCORES_BYTES if budget is None else budget) / score_bytes(args, 1, 1)     # T^2 + S T <= c
    T = int((math.sqrt(S * S + 4 * c) - S) / 2)
    return max(1, min(args.W, T))


def check_token_ids(tokens, vocab_size, who):
    """tokens as a 1-D array of integer ids in [0, vocab_size), or a one-line ValueError."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or tokens.size == 0:
        raise ValueError(f"{who}: tokens must be a non-empty 1-D array of integer ids (at least one token; "
                         f"BOS alone is fine), got shape {tokens.shape}")
    if tokens.dtype.kind not in "iu":                      # floats would be truncated silently
        raise ValueError(f"{who}: token ids must be integers (a non-empty 1-D array of integer ids), "
                         f"got dtype {tokens.dtype}")
    if tokens.min() < 0 or tokens.max() >= vocab_size:
        raise ValueError(f"{who}: token ids must be in [0, {vocab_size}), got {tokens.min()}..{tokens.max()}; "
                         "was the text encoded with this model's tokenizer?")
    return tokens


class Model:
    """A Mistral model: its ModelArgs and its weights. forward() is the whole computation."""

    def __init__(self, args: ModelArgs, weights: dict):
        self.args = args
        self.weights = weights

    def __repr__(self):
        a = self.args
        return (f"Model(dim={a.dim}, n_layers={a.n_layers}, n_heads={a.n_heads}, "
                f"n_kv_heads={a.n_kv_heads}, W={a.W}, vocab={a.vocab_size}, params={self.n_params():,})")

    def n_params(self):
        w = self.weights
        arrays = [w["tok_embeddings"], w["norm"]] + [t for blk in w["layers"] for t in blk.values()]
        if not self.args.tie_embeddings:
            arrays.append(w["output"])
        return int(sum(a.size for a in arrays))

    def new_cache(self):
        a = self.args
        return RollingCache(a.n_layers, a.W, a.n_kv_heads, a.head_dim)

    def forward(self, tokens, cache=None):
        """Logits (T, vocab_size) float32 for `tokens` (T,) that continue `cache`'s sequence.

        Without a cache the tokens are a whole sequence starting at position 0. With one, they
        come after the cache.n_seen tokens fed before, and are stored in it.
        """
        a, w = self.args, self.weights
        tokens = check_token_ids(tokens, a.vocab_size, "forward")
        if cache is not None:
            cache.check_fits(a)
        start = cache.n_seen if cache is not None else 0
        positions = np.arange(start, start + len(tokens))                # (T,)
        x = w["tok_embeddings"][tokens].astype(np.float32)               # (T, dim)
        # Memory-mapped bf16 (or int8) weights: bf16.py's own threads split every big product, and
        # BLAS threads on top only add hand-offs to the small ones (slow when the cores are busy).
        with blas_threads(None if is_array(w["output"]) else 1):
            try:
                for i, block in enumerate(w["layers"]):
                    x = transformer_block(x, **block, args=a, positions=positions, cache=cache, layer=i)
            except BaseException as e:               # MemoryError, Ctrl-C: lower layers stored the chunk
                if cache is not None:
                    cache.invalidate(f"a forward pass stopped in layer {i} ({type(e).__name__})")
                raise
        if cache is not None:
            cache.advance(positions)
        x = rms_norm(x, w["norm"], a.norm_eps)
        return linear(x, w["output"]).astype(np.float32, copy=False)    # (T, vocab_size)

    def prefill(self, tokens, cache, chunk_size=None):
        """Feed a prompt in chunks; returns the last chunk's logits. Chunking is exact, so the
        default (default_chunk_size) only bounds memory; chunk_size overrides it."""
        bad = not isinstance(chunk_size, (int, np.integer)) or isinstance(chunk_size, bool) or chunk_size < 1
        if chunk_size is not None and bad:
            raise ValueError(f"prefill: chunk_size must be an integer >= 1 (or None for the default), "
                             f"got {chunk_size!r}")
        if len(tokens) == 0:
            raise ValueError("prefill: the prompt is empty; pass at least one token id (e.g. BOS)")
        s = 0
        while s < len(tokens):
            size = chunk_size or default_chunk_size(self.args, cache.n_seen)   # (T, S + T) scores fit
            logits = self.forward(tokens[s:s + size], cache)
            s += size
        return logits


def random_model(args: ModelArgs, seed=0, std=0.2) -> Model:
    """A model with random weights (normal(0, std); norms near 1), for tests and toy experiments."""
    rng = np.random.default_rng(seed)
    sd = {name: (1 + 0.1 * rng.standard_normal(shape) if len(shape) == 1
                 else std * rng.standard_normal(shape)).astype(np.float32)
          for name, shape in expected_shapes(args).items()}
    return Model(args, nest(sd.__getitem__, args))
