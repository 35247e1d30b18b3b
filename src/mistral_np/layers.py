"""The small pieces of a Mistral block: RMSNorm, rotary embeddings, SwiGLU, and a linear layer.

Weights are stored (out_features, in_features), as in every checkpoint: y = x @ W.T.
"""
import numpy as np


def is_array(w):
    """A weight is a float32 array, or a weight type kept in its stored form (BF16, Int8, GGMLTensor)
    with one protocol: matmul_t(x) = x @ W.T, to_f32(), rows by indexing, shape and nbytes."""
    return isinstance(w, np.ndarray)


def as_f32(w):
    """The weight as a float32 array, whatever its type."""
    return np.asarray(w, np.float32) if is_array(w) else w.to_f32()


def linear(x, w):
    """x @ w.T for x (T, in), w (out, in); a stored weight type is widened block by block as it is used."""
    return x @ w.T if is_array(w) else w.matmul_t(x)              # (T, out)


def rms_norm(x, weight, eps):
    """x / sqrt(mean(x^2) + eps) * weight, over the last axis (no mean subtraction, no bias)."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def silu(x):
    """x * sigmoid(x), with sigmoid(x) written as (1 + tanh(x/2)) / 2 so large |x| cannot overflow."""
    return x * (0.5 + 0.5 * np.tanh(0.5 * x))


def feed_forward(x, w1, w2, w3):
    """SwiGLU: w2(silu(w1 x) * w3 x). w1 is the gate, w3 the up projection, w2 the down one."""
    return linear(silu(linear(x, w1)) * linear(x, w3), w2)      # (T, hidden_dim) -> (T, dim)


def rope_angles(positions, head_dim, theta):
    """cos and sin of position * theta^(-2i/head_dim) for i < head_dim/2: each (T, head_dim/2)."""
    inv_freq = theta ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)   # (head_dim/2,)
    angles = np.asarray(positions, np.float64)[:, None] * inv_freq[None, :]      # (T, head_dim/2)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def apply_rope(x, positions, theta, layout="pairs"):
    """Rotate each head's vector of x (T, n_heads, head_dim) by its position.

    Dimension pairs are rotated by angle position * theta^(-2i/head_dim). Mistral's checkpoints
    pair neighbours (x0, x1), (x2, x3), ...; Hugging Face's checkpoints permuted the rows of wq
    and wk so that the pairs are (x_i, x_{i + head_dim/2}), the two halves. Same maths, same
    result, different order of the numbers.
    """
    if layout not in ("pairs", "halves"):
        raise ValueError(f"apply_rope: layout must be 'pairs' (Mistral) or 'halves' (Hugging Face), got {layout!r}")
    cos, sin = rope_angles(positions, x.shape[-1], theta)
    cos, sin = cos[:, None, :], sin[:, None, :]                     # (T, 1, head_dim/2)
    if layout == "pairs":
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out
    half = x.shape[-1] // 2
    x0, x1 = x[..., :half], x[..., half:]
    return np.concatenate([x0 * cos - x1 * sin, x0 * sin + x1 * cos], axis=-1)


def permute_pairs_to_halves(w, n_heads):
    """Rows of wq/wk (n_heads*head_dim, dim) from Mistral's pair layout to Hugging Face's halves."""
    rows, dim = w.shape
    return w.reshape(n_heads, rows // n_heads // 2, 2, dim).transpose(0, 2, 1, 3).reshape(rows, dim)


def permute_halves_to_pairs(w, n_heads):
    """The inverse of permute_pairs_to_halves."""
    rows, dim = w.shape
    return w.reshape(n_heads, 2, rows // n_heads // 2, dim).transpose(0, 2, 1, 3).reshape(rows, dim)
