"""Choosing the next token from logits: greedy, temperature, top-k and top-p (nucleus) sampling."""
import numpy as np


def check_sampling(temperature=0.0, top_k=0, top_p=1.0, max_new_tokens=1):
    if not np.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 means no top-k filter), got {top_k!r}")
    if not (0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1] (1 means no nucleus filter), got {top_p}")
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")


GREEDY_BELOW = 1e-6   # smaller temperatures mean argmax anyway, and dividing by them overflows


def sample(logits, temperature=0.0, top_k=0, top_p=1.0, rng=None):
    """One token id from logits (vocab,): greedy at temperature 0 (or below 1e-6), else top-k, then top-p."""
    if not np.isfinite(logits).all():
        raise ValueError("sample: the logits hold NaN or inf; the weights or the config hold invalid numbers")
    if temperature < GREEDY_BELOW:
        return int(np.argmax(logits))
    p = distribution(logits, temperature, top_k, top_p)
    rng = rng if rng is not None else np.random.default_rng()
    return int(rng.choice(p.size, p=p))


def distribution(logits, temperature, top_k=0, top_p=1.0):
    """The probabilities (vocab,) float64 that sample() draws from at temperature > 0."""
    z = logits.astype(np.float64) / temperature
    if top_k:
        kth = np.sort(z)[-min(top_k, z.size)]
        z = np.where(z < kth, -np.inf, z)
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p < 1:
        order = np.argsort(-p, kind="stable")
        cum = np.cumsum(p[order])
        keep = order[: int(np.searchsorted(cum, top_p)) + 1]   # smallest set with mass >= top_p
        q = np.zeros_like(p)
        q[keep] = p[keep]
        p = q / q.sum()
    return p
