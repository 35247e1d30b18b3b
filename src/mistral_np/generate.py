"""The generation loop: chunked pre-fill of the prompt, then one token at a time.

The rolling cache keeps memory flat, so generation may run past W and past the context length.
"""
import numpy as np

from .model import check_token_ids
from .sampling import GREEDY_BELOW, check_sampling, distribution, sample  # noqa: F401 (re-exported)
from .speculative import speculative_stream
from .tokenizer import StreamDecoder


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
    prompt_ids = check_token_ids(prompt_ids, model.args.vocab_size, "generate").astype(np.int64)
    if prompt_ids.size > model.args.max_seq_len:
        raise ValueError(f"generate: the prompt has {prompt_ids.size} tokens but the model's context is "
                         f"{model.args.max_seq_len}; shorten the prompt (generation itself may run longer)")
    cache = cache if cache is not None else model.new_cache()
    cache.check_fits(model.args)                         # now, not at the first token
    if lookahead:
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
