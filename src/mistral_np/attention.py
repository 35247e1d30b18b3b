"""Scaled dot-product attention with the causal sliding-window mask and grouped-query heads."""
import numpy as np


def window_mask(q_pos, k_pos, W):
    """(T, S) bool: query at position i may see key at position j iff i - W < j <= i.

    W keys, the query's own included: exactly what a rolling buffer of W slots holds.
    With W >= the sequence length this is the plain causal mask.
    """
    d = np.asarray(q_pos)[:, None] - np.asarray(k_pos)[None, :]        # (T, S): i - j
    return (d >= 0) & (d < W)


def softmax(x, axis=-1):
    """exp(x - max) / sum: subtracting the max keeps exp from overflowing; -inf entries give 0."""
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def attention(q, k, v, mask, return_probs=False):
    """Grouped-query attention.

    q: (..., T, n_heads, head_dim); k, v: (..., S, n_kv_heads, head_dim); mask: (T, S) bool.
    Leading axes (a batch, for training) are optional. Query head h reads key/value head
    h // (n_heads // n_kv_heads): each group of n_heads / n_kv_heads query heads shares one
    key/value head, and k, v are never copied. n_kv_heads == n_heads is ordinary multi-head
    attention, n_kv_heads == 1 multi-query.
    Returns (..., T, n_heads * head_dim), and the weights (..., n_kv, group, T, S) if asked
    (the backward pass of training needs them).
    """
    *batch, T, n_heads, head_dim = q.shape
    n_kv_heads = k.shape[-2]
    group = n_heads // n_kv_heads
    qg = q.reshape(*batch, T, n_kv_heads, group, head_dim)
    qg = np.moveaxis(qg, -4, -2)                                           # (..., n_kv, group, T, hd)
    kt = np.expand_dims(np.moveaxis(k, -3, -1), -3)                        # (..., n_kv, 1, hd, S)
    vt = np.expand_dims(np.moveaxis(v, -3, -2), -3)                        # (..., n_kv, 1, S, hd)
    scores = qg @ kt                                                       # (..., n_kv, group, T, S)
    scores /= scores.dtype.type(np.sqrt(head_dim))
    # The rest works in place: at 7B a pre-fill chunk's scores are GiBs, so keep only one copy.
    np.copyto(scores, scores.dtype.type(-np.inf), where=~mask)
    scores -= scores.max(axis=-1, keepdims=True)                           # softmax, in place
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    out = np.moveaxis(scores @ vt, -2, -4)                                 # (..., T, n_kv, group, hd)
    out = out.reshape(*batch, T, n_heads * head_dim)
    return (out, scores) if return_probs else out
