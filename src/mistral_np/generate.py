"""Sampling and the generation loop: chunked pre-fill of the prompt, then one token at a time.

The rolling cache keeps memory flat, so generation may run past W and past the context length.
"""
import numpy as np

from .tokenizer import StreamDecoder


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


def generate_ids(model, prompt_ids, max_new_tokens=64, temperature=0.0, top_k=0, top_p=1.0,
                 seed=None, chunk_size=None, stop_at_eos=True, eos_id=2, cache=None, lookahead=0):
    """An iterator of new token ids, after pre-filling `prompt_ids` in chunks (default W).

    lookahead=k > 0 drafts up to k tokens by prompt lookup and checks them in one pass
    (speculative.py): greedy output is the same token for token, sampling the same distribution.
    Arguments are checked here, when it is called, not at the first token.
    """
    check_sampling(temperature, top_k, top_p, max_new_tokens)
    if not isinstance(lookahead, (int, np.integer)) or lookahead < 0:
        raise ValueError(f"lookahead must be an integer >= 0 (0 means one token per pass), got {lookahead!r}")
    prompt_ids = np.asarray(prompt_ids)
    if prompt_ids.ndim != 1 or prompt_ids.size == 0:
        raise ValueError("generate: the prompt must hold at least one token (BOS alone is fine)")
    if prompt_ids.dtype.kind not in "iu":               # floats would be truncated silently
        raise ValueError(f"generate: token ids must be integers, got dtype {prompt_ids.dtype}")
    if prompt_ids.min() < 0 or prompt_ids.max() >= model.args.vocab_size:
        raise ValueError(f"generate: token ids must be in [0, {model.args.vocab_size}), got "
                         f"{prompt_ids.min()}..{prompt_ids.max()}; was the text encoded with this model's tokenizer?")
    prompt_ids = prompt_ids.astype(np.int64)
    if prompt_ids.size > model.args.max_seq_len:
        raise ValueError(f"generate: the prompt has {prompt_ids.size} tokens but the model's context is "
                         f"{model.args.max_seq_len}; shorten the prompt (generation itself may run longer)")
    cache = cache if cache is not None else model.new_cache()
    cache.check_fits(model.args)                         # now, not at the first token
    if lookahead:
        from .speculative import speculative_stream   # speculative.py imports this module
        return speculative_stream(model, prompt_ids, max_new_tokens, lookahead, temperature, top_k,
                                  top_p, np.random.default_rng(seed), chunk_size, stop_at_eos, eos_id, cache)
    return _token_stream(model, prompt_ids, max_new_tokens, temperature, top_k, top_p,
                         np.random.default_rng(seed), chunk_size, stop_at_eos, eos_id, cache)


def _token_stream(model, prompt_ids, max_new_tokens, temperature, top_k, top_p, rng, chunk_size,
                  stop_at_eos, eos_id, cache):
    logits = model.prefill(prompt_ids, cache, chunk_size)[-1]
    for i in range(max_new_tokens):
        if not np.isfinite(logits).all():               # NaN weights or config: say so, never print garbage
            raise ValueError(f"generate: the logits for new token {i} (position {cache.n_seen}) hold NaN or "
                             "inf; the weights or the config hold invalid numbers")
        token = sample(logits, temperature, top_k, top_p, rng)
        yield token
        if (stop_at_eos and token == eos_id) or i == max_new_tokens - 1:
            return   # the last token is not fed back: nobody needs its logits (a 7B step saved)
        logits = model.forward(np.array([token]), cache)[-1]


def generate(model, tokenizer, prompt, max_new_tokens=64, temperature=0.0, top_k=0, top_p=1.0,
             seed=None, chunk_size=None, stop_at_eos=True, lookahead=0):
    """An iterator of text pieces, decoded as the tokens come (print them as they arrive).

    The prompt starts with BOS where the tokenizer's model wants it (Mistral: yes; SmolLM2: no).
    """
    if tokenizer.vocab_size > model.args.vocab_size:    # its ids would fail mid-generation
        raise ValueError(f"generate: the tokenizer has {tokenizer.vocab_size} pieces but the model only "
                         f"{model.args.vocab_size} embeddings; use the tokenizer that came with the model")
    prompt_ids = tokenizer.encode(prompt)
    tokens = generate_ids(model, prompt_ids, max_new_tokens, temperature, top_k, top_p, seed,
                          chunk_size, stop_at_eos, tokenizer.eos_id, lookahead=lookahead)
    return _text_stream(tokens, StreamDecoder(tokenizer, prompt_ids), tokenizer.eos_id, stop_at_eos)


def _text_stream(tokens, stream, eos_id, stop_at_eos=True):
    for token in tokens:
        if token == eos_id:
            if stop_at_eos:
                return
            continue          # EOS has no text; skipping it keeps the previous token as context
        piece = stream.push(token)
        if piece:
            yield piece
