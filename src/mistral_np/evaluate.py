"""Measuring a language model: mean loss on held-out windows, bits per character, and the
n-gram baselines that put a loss in context.

Losses are in nats per token (natural log); `bits_per_char` turns them into a measure that
compares across tokenizers.
"""
import math

import numpy as np

from .backward import cross_entropy, forward


def evaluate(params, args, data, context, n_windows=16, batch_size=8):
    """Mean loss (nats/token) on n_windows fixed, evenly spaced windows of data."""
    starts = np.linspace(0, len(data) - context - 1, n_windows).astype(int)
    losses = []
    for i in range(0, n_windows, batch_size):
        w = np.stack([data[s:s + context + 1] for s in starts[i:i + batch_size]])
        logits, _ = forward(params, args, w[:, :-1])
        B, T, V = logits.shape
        losses.append(cross_entropy(logits.reshape(B * T, V), w[:, 1:].reshape(-1))[0] * B)
    return sum(losses) / n_windows


def bits_per_char(nats_per_token, n_tokens, n_chars):
    """A loss in nats per token as bits per character of the text those tokens encode.

    Tokenizers differ in how much text a token holds, so only per-character numbers compare
    across tokenizers (and with character-level models)."""
    return nats_per_token * n_tokens / n_chars / math.log(2)


def unigram_loss(train_ids, val_ids, vocab_size, k=1.0):
    """Nats/token on val_ids of p(token) = (count + k) / (N + k V), counted on train_ids."""
    counts = np.bincount(train_ids, minlength=vocab_size) + k            # (V,)
    logp = np.log(counts / counts.sum())
    return float(-np.mean(logp[val_ids]))


def bigram_loss(train_ids, val_ids, vocab_size, k=0.1):
    """Nats/token on val_ids[1:] of p(b | a) = (count(a b) + k) / (count(a) + k V)."""
    counts = np.zeros((vocab_size, vocab_size))                          # (V, V): previous, next
    np.add.at(counts, (train_ids[:-1], train_ids[1:]), 1)
    counts += k
    logp = np.log(counts / counts.sum(axis=1, keepdims=True))
    return float(-np.mean(logp[val_ids[:-1], val_ids[1:]]))


def model_loss(model, ids, context):
    """Nats/token of a Model on ids cut into windows of `context` tokens (each starting at position
    0, as in training); every token but the first of each window is predicted."""
    total, n = 0.0, 0
    for s in range(0, len(ids) - 1, context):
        w = ids[s:s + context + 1]
        if len(w) < 2:
            break
        loss, _ = cross_entropy(model.forward(w[:-1]), w[1:])
        total, n = total + loss * (len(w) - 1), n + len(w) - 1
    return total / n


def model_stream_loss(model, ids, chunk_size=None):
    """Nats/token of a Model reading ids as one stream through its rolling cache, chunk by chunk.

    Past the training context the positions are new, but with a sliding window a query only
    ever sees keys at most W - 1 positions back, and RoPE scores depend only on that distance."""
    chunk_size = chunk_size or model.args.W
    cache = model.new_cache()
    total = 0.0
    for s in range(0, len(ids) - 1, chunk_size):
        x, y = ids[s:s + chunk_size], ids[s + 1:s + chunk_size + 1]
        logits = model.forward(x, cache)[:len(y)]
        total += cross_entropy(logits, y)[0] * len(y)
    return total / (len(ids) - 1)
