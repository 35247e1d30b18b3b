"""The backward pass of the pocket Mistral, by hand: the gradient of every piece, a batched
forward pass that keeps its activations, and the loss with its gradient for every parameter.

Parameters live in a flat dict {book name: array} ("layers.0.attention.wq.weight", ...);
`weights.nest` views it as the nested dict that `Model` takes, without copying.

Every backward function takes the gradient of the loss with respect to a piece's output (dy)
and returns the gradients with respect to its inputs (and weights). Shapes: B sequences of
T tokens, dim D, n_heads H, n_kv_heads K, group G = H / K, head_dim hd.
"""
import math

import numpy as np

from .attention import attention, window_mask
from .layers import apply_rope, rms_norm, silu
from .weights import LAYER_KEYS, nest


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
    w = nest(params.__getitem__, args)
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
    w = nest(params.__getitem__, args)
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
