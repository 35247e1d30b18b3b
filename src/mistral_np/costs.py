"""What a model costs: parameters, bytes, FLOPs and KV cache.

The one home of every cost the chapters, figures and benchmarks print. Two kinds:

- predicted from a ModelArgs alone, so the same line gives the number for the real 7B and 13B
  configs and for the small models the chapters run; parameter counts come from
  weights.expected_shapes, the shapes the loader checks real checkpoints against;
- counted on a loaded model or cache: the bytes its arrays actually hold, whatever their type
  (float32, bf16, int8, GGUF blocks), which the tests check against the prediction.

Conventions: bytes_per_param and bytes_per_value default to 2 (bf16, the type Mistral publishes
and serves); the book's own cache and widened weights are float32 (4), int8 weights 1. A FLOP is
one multiply or one add, so a product with one weight costs 2.
"""
import math

import numpy as np

from .weights import expected_shapes


# ---- parameters and weight bytes, from a config ------------------------------------------------

def n_params(args):
    """Every weight the checkpoint holds, counted from the shapes the loader expects."""
    return sum(math.prod(shape) for shape in expected_shapes(args).values())


def matmul_params(args):
    """Weights used in a matrix product for every token: all 2-D weights but the embedding table,
    which is a lookup of one row. A tied output projection still costs vocab x dim."""
    shapes = expected_shapes(args)
    n = sum(math.prod(s) for name, s in shapes.items() if len(s) == 2 and name != "tok_embeddings.weight")
    return n + (args.vocab_size * args.dim if args.tie_embeddings else 0)


def norm_params(args):
    """The RMSNorm gains: two per layer and the final one, dim each."""
    return (2 * args.n_layers + 1) * args.dim


def weight_bytes(args, bytes_per_param=2):
    """Bytes of all the weights: the size of the checkpoint's tensors."""
    return n_params(args) * bytes_per_param


def weights_read_per_token(args, bytes_per_param=2):
    """Bytes of weights one decode step reads: every matrix and norm once, one embedding row."""
    return (matmul_params(args) + norm_params(args) + args.dim) * bytes_per_param


# ---- FLOPs and the KV cache, from a config -----------------------------------------------------

def has_window(args):
    """A sliding window shorter than the context (Mistral); otherwise W = context: no window (Llama)."""
    return args.W < args.max_seq_len


def keys_seen(args, position):
    """Keys the token at 0-based `position` attends to: itself and every earlier one, at most W of
    them with a window. Without one, positions past the context are counted as they come: the cost
    of running the model there, not a setting it was trained for."""
    return min(position + 1, args.W) if has_window(args) else position + 1


def attention_flops(args, position):
    """q.k scores and the weighted sum of v for one new token: 2 FLOPs (multiply, add) per
    element, head_dim elements, for each of 2 products, per query head, key and layer.
    Grouped-query attention does not change this: every query head still reads every key."""
    return 2 * 2 * args.n_layers * args.n_heads * args.head_dim * keys_seen(args, position)


def flops_per_token(args, position):
    """FLOPs to generate the token at `position`: 2 x matmul_params (one multiply and one add per
    weight) plus attention over the keys it sees. Norms, RoPE, SiLU and softmax are left out: they
    are O(dim) per layer, under 0.1% of the total at these sizes."""
    return 2 * matmul_params(args) + attention_flops(args, position)


def kv_bytes_per_token(args, bytes_per_value=2):
    """One key and one value vector per layer and key/value head."""
    return 2 * args.n_layers * args.n_kv_heads * args.head_dim * bytes_per_value


def kv_cache_bytes(args, n_tokens, bytes_per_value=2, rolling=True):
    """Cache bytes after n_tokens. With a window (W < max_seq_len) the rolling cache holds the last
    W positions; rolling=False keeps every position, as a cache that grows with the sequence does.
    Without a window (Llama: W = context) every position is kept; past the context that is what
    running the model there would take, not a setting it was trained for."""
    slots = min(n_tokens, args.W) if rolling and has_window(args) else n_tokens
    return kv_bytes_per_token(args, bytes_per_value) * slots


def score_bytes(args, n_queries, n_keys, batch=1):
    """Bytes of one layer's float32 attention scores (batch, n_heads, n_queries, n_keys): the
    largest array attention builds, and what a pre-fill chunk's size is chosen to bound."""
    return 4 * batch * args.n_heads * n_queries * n_keys


def decode_bytes(args, position, bytes_per_param=2, bytes_per_value=2):
    """Bytes one decode step must read: the weights once, plus the keys and values it attends to.
    On a CPU this, not the FLOPs, sets the time of a decode step."""
    return (weights_read_per_token(args, bytes_per_param)
            + kv_bytes_per_token(args, bytes_per_value) * keys_seen(args, position))


def cache_tokens_that_fit(args, budget_bytes, bytes_per_param=2, bytes_per_value=2):
    """Tokens of KV cache that fit in budget_bytes beside the weights (0 if the weights alone don't).
    Activations and runtime overhead are left out, so this is an upper bound."""
    free = budget_bytes - weight_bytes(args, bytes_per_param)
    return max(0, free) // kv_bytes_per_token(args, bytes_per_value)


# ---- counted on a loaded model or cache --------------------------------------------------------

def weight_bytes_per_token(model):
    """Bytes of weights one decoded token reads, counted on the model's arrays as loaded (their
    own type): every matrix and norm, but one row of the embeddings."""
    w = model.weights
    arrays = [w["norm"], w["output"]] + [t for blk in w["layers"] for t in blk.values()]
    emb = w["tok_embeddings"]
    return sum(a.nbytes for a in arrays) + emb.nbytes // emb.shape[0]


def cache_bytes_per_token(cache, n_seen):
    """Bytes of keys and values decode attends over once n_seen tokens went by."""
    filled = min(n_seen, cache.W)
    return (cache.k.nbytes + cache.v.nbytes) * filled // cache.W


def held_bytes(cache):
    """Bytes of the cache slots that hold keys, counted in the arrays themselves: a slot holds
    something once any of its key entries (over layers and heads) is nonzero."""
    held = int(np.count_nonzero(np.any(cache.k != 0, axis=(0, 2, 3))))
    return held * (cache.k.nbytes + cache.v.nbytes) // cache.W
