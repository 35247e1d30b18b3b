"""Speculative decoding with prompt lookup: draft tokens from the context, check them in one pass.

At batch size one a decoding step reads (and widens) every weight to produce one token, and a pass
over a few tokens costs little more than a pass over one. So guess the next k tokens cheaply, feed
[token | drafts] in one pass (a small chunked pre-fill), and keep the drafts the model agrees with,
plus the model's own token where they part: 1 to k + 1 tokens per pass, and greedy output unchanged.

The guess here is prompt lookup: find the most recent earlier place where the context's last n
tokens occurred (longest n first) and propose what followed there. It costs nothing and is right
whenever the model copies: quoting, editing or summarising a passage, code, repeated names.
"""
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .sampling import GREEDY_BELOW, distribution, sample


def lookup_draft(context, k, max_ngram=3, min_ngram=2):
    """Up to k tokens that followed an earlier occurrence of the last n tokens of `context` (1-D).

    n runs from max_ngram down to min_ngram; the first n with a match wins. Of its matches, the most
    recent one with k tokens after it, else the one with the most tokens after it. Empty if none.
    A single repeated token (n = 1) is weak evidence: in free text its drafts are mostly rejected.
    """
    context = np.asarray(context)
    for n in range(max_ngram, min_ngram - 1, -1):
        if len(context) <= n:
            continue
        windows = sliding_window_view(context[:-1], n)                # (len - n, n): starts 0..len-n-1
        starts = np.flatnonzero((windows == context[-n:]).all(axis=1)) + n   # where the follower begins
        if starts.size:
            full = starts[starts + k <= len(context)]
            s = full[-1] if full.size else starts[0]
            return context[s:s + k]
    return context[:0]


def verify(rows, drafts, temperature=0.0, top_k=0, top_p=1.0, rng=None):
    """How many drafts the model keeps, and the token that comes after them.

    rows (j + 1, vocab) are the logits of one pass over [token | drafts]: row i predicts the
    position of drafts[i], row j the position after the last draft.
    Greedy: keep drafts while each is the argmax; where they part, the argmax is the next token.
    Sampling (Leviathan et al. 2023; Chen et al. 2023): keep draft x with probability
    min(1, p(x) / q(x)), where p is the model's distribution (as sample() draws) and q the
    drafter's. Prompt lookup's q is a point mass on x, so that is p(x); on a rejection the next
    token is drawn from max(0, p - q), normalised: p without x. Each token is then distributed
    exactly as p, as if sampled one pass at a time.
    Returns (number of drafts kept, next token).
    """
    for i, x in enumerate(drafts):
        if temperature < GREEDY_BELOW:
            best = int(np.argmax(rows[i]))
            if best != x:
                return i, best
            continue
        p = distribution(rows[i], temperature, top_k, top_p)            # (vocab,) float64
        if rng.random() < p[x]:
            continue
        p[x] = 0                                                        # the residual max(0, p - q)
        return i, int(rng.choice(p.size, p=p / p.sum()))
    return len(drafts), sample(rows[len(drafts)], temperature, top_k, top_p, rng)


@dataclass
class Stats:
    """Counts of one speculative generation: passes over the weights, drafts proposed and kept."""
    tokens: int = 0          # tokens generated
    accepted: int = 0        # draft tokens the model kept
    sizes: list = field(default_factory=list)   # tokens fed by each pass after the pre-fill: 1 + drafts

    @property
    def passes(self):
        return len(self.sizes)

    @property
    def drafted(self):
        return sum(self.sizes) - len(self.sizes)

    @property
    def acceptance(self):
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_pass(self):
        return self.tokens / self.passes if self.passes else 0.0


def speculative_stream(model, prompt_ids, max_new_tokens, lookahead, temperature=0.0, top_k=0,
                       top_p=1.0, rng=None, chunk_size=None, stop_at_eos=True, eos_id=2, cache=None,
                       stats=None, max_ngram=3, min_ngram=2):
    """generate_ids(..., lookahead=k): new token ids, drafting up to k tokens per pass.

    As in the one-token loop, the cache ends holding the prompt and every token but the last.
    stats (a Stats) is filled in as it goes.
    """
    rng = rng if rng is not None else np.random.default_rng()
    cache = cache if cache is not None else model.new_cache()
    stats = stats if stats is not None else Stats()
    k = min(lookahead, cache.W - 1)            # the pass [token | drafts] must fit in the buffer
    context = np.empty(len(prompt_ids) + max_new_tokens, np.int64)      # prompt, then output
    context[:len(prompt_ids)] = prompt_ids
    n_ctx = n_prompt = len(prompt_ids)
    logits = model.prefill(prompt_ids, cache, chunk_size)[-1]
    if max_new_tokens == 0:
        return
    token = sample(logits, temperature, top_k, top_p, rng)
    while True:
        context[n_ctx] = token
        n_ctx += 1
        budget = max_new_tokens - (n_ctx - n_prompt)   # tokens still wanted after `token`
        stats.tokens += 1
        yield token
        if (stop_at_eos and token == eos_id) or budget == 0:
            return                             # the last token is not fed back, as in the plain loop
        drafts = lookup_draft(context[:n_ctx], min(k, budget), max_ngram, min_ngram)   # (j,) j <= k
        saved = cache.save(1 + len(drafts))
        rows = model.forward(np.concatenate([[token], drafts]), cache)    # (1 + j, vocab)
        if not np.isfinite(rows).all():     # NaN weights or config: say so, never print garbage
            raise ValueError(f"generate: the logits after position {saved.n_seen} hold NaN or inf; "
                             "the weights or the config hold invalid numbers")
        n_kept, token = verify(rows, drafts, temperature, top_k, top_p, rng)
        stats.sizes.append(1 + len(drafts))
        stats.accepted += n_kept
        kept = drafts[:n_kept]
        stop = next((i for i, x in enumerate(kept) if stop_at_eos and x == eos_id), None)
        if stop is not None or n_kept == budget:
            # The output ends inside this pass: keep all but its last token in the cache.
            last = len(kept) - 1 if stop is None else stop
            cache.rollback(saved, 1 + last)
            for x in kept[:last + 1]:
                stats.tokens += 1
                yield int(x)
            return
        cache.rollback(saved, 1 + n_kept)      # forget the rejected drafts
        for x in kept:
            context[n_ctx] = x
            n_ctx += 1
            stats.tokens += 1
            yield int(x)
