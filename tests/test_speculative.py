"""Speculative decoding with prompt lookup: same greedy tokens, exact rollback, same distribution."""
import numpy as np
import pytest

import mistral_np
from mistral_np import ModelArgs, generate_ids, random_model
from mistral_np.cache import EMPTY
from mistral_np.generate import distribution
from mistral_np.speculative import Stats, lookup_draft, speculative_stream, verify

from helpers import small_args

@pytest.fixture(autouse=True)
def one_blas_thread():
    """Small products: a second BLAS thread only adds hand-offs (tens of times slower on busy cores)."""
    from mistral_np.bf16 import blas_threads
    with blas_threads(1):
        yield


needs_smollm2 = pytest.mark.skipif(not mistral_np.SMOLLM2_GGUF.exists(),
                                   reason="run tools/fetch_data.py for SmolLM2's GGUF")


def chi_square_ok(counts, probs, alpha_z=3.09):
    """Pearson's chi-square of counts against probs, below its 0.1% critical value (Wilson-Hilferty);
    cells expected below 5 are pooled into one."""
    counts, probs = np.asarray(counts, float), np.asarray(probs, float)
    expected = probs * counts.sum()
    small = expected < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    obs, exp = obs[exp > 0], exp[exp > 0]
    stat, df = ((obs - exp) ** 2 / exp).sum(), len(exp) - 1
    critical = df * (1 - 2 / (9 * df) + alpha_z * np.sqrt(2 / (9 * df))) ** 3
    return stat < critical, stat, critical


# --- drafting and verifying ----------------------------------------------------------------------

def test_lookup_draft_takes_the_longest_recent_match():
    ctx = [7, 1, 2, 3, 9, 1, 2, 3, 4, 5, 8, 1, 2, 3]
    assert list(lookup_draft(ctx, 2)) == [4, 5]              # trigram 1 2 3: latest match with 2 after
    assert list(lookup_draft(ctx, 3, max_ngram=1, min_ngram=1)) == [4, 5, 8]   # unigram 3: same place
    assert list(lookup_draft([5, 6, 7, 8], 3)) == []          # nothing repeats
    assert list(lookup_draft([4, 2, 4], 3, min_ngram=1)) == [2, 4]   # a match near the end: what there is
    assert list(lookup_draft([4, 2, 4], 3)) == []             # by default, at least two tokens must match
    assert list(lookup_draft([1], 4)) == []


def test_verify_greedy_keeps_the_agreeing_prefix():
    rows = np.full((4, 6), -1.0, np.float32)                 # argmax of rows: 3, 5, 0, 2
    rows[0, 3] = rows[1, 5] = rows[2, 0] = rows[3, 2] = 1.0
    assert verify(rows, np.array([3, 5, 0])) == (3, 2)       # all kept, then the model's own token
    assert verify(rows, np.array([3, 4, 0])) == (1, 5)       # second draft wrong: the model's 5 instead
    assert verify(rows[:2], np.array([1])) == (0, 3)


def first_token_of_verify(rows, draft, n, seed, temperature=1.0, top_k=0, top_p=1.0, wrong=False):
    """The token verify() emits at the draft's position, n times: the draft if kept, else the resample."""
    rng = np.random.default_rng(seed)
    counts = np.zeros(rows.shape[1], int)
    for _ in range(n):
        if wrong:   # a tempting mistake: on rejection, sample again from p (draft included)
            p = distribution(rows[0], temperature, top_k, top_p)
            tok = draft if rng.random() < p[draft] else rng.choice(p.size, p=p)
        else:
            kept, nxt = verify(rows, np.array([draft]), temperature, top_k, top_p, rng)
            tok = draft if kept else nxt
        counts[tok] += 1
    return counts


def test_acceptance_rule_keeps_the_distribution():
    rows = np.array([[2.0, 1.0, 0.5, 0.0, -1.0, 1.5], [0.0] * 6], np.float32)
    p = distribution(rows[0], 1.0)
    for draft in (0, 4):                                      # a likely and an unlikely draft
        ok, stat, crit = chi_square_ok(first_token_of_verify(rows, draft, 6000, seed=draft), p)
        assert ok, (draft, stat, crit)
    ok, _, _ = chi_square_ok(first_token_of_verify(rows, 0, 6000, seed=1, wrong=True), p)
    assert not ok                                             # the test can tell the wrong rule apart
    # With top-k the draft may fall outside what sample() could draw: never kept, p unchanged.
    p3 = distribution(rows[0], 1.0, top_k=3)
    counts = first_token_of_verify(rows, 4, 3000, seed=2, top_k=3)
    assert counts[4] == 0 and chi_square_ok(counts, p3)[0]


# --- greedy: the same tokens ---------------------------------------------------------------------

def repetitive(n, period, vocab, seed):
    rng = np.random.default_rng(seed)
    return np.tile(rng.integers(3, vocab, period), n // period + 1)[:n]


@pytest.mark.parametrize("W", [4, 5, 8])
def test_greedy_equals_plain_loop_on_random_models(W):
    args = ModelArgs(dim=32, n_layers=2, head_dim=8, hidden_dim=48, n_heads=4, n_kv_heads=2,
                     vocab_size=12, W=W, max_seq_len=256)
    drafted = accepted = 0
    for seed in range(2):
        model = random_model(args, seed=seed, std=0.5)
        prompt = repetitive(3 * W + 1, period=W + 1, vocab=args.vocab_size, seed=seed)
        plain = list(generate_ids(model, prompt, 64, stop_at_eos=False))
        for k in (1, 2, 4, 8):
            stats = Stats()
            fast = list(speculative_stream(model, prompt, 64, k, stop_at_eos=False, stats=stats))
            assert fast == plain, (W, seed, k)
            assert stats.tokens == 64 and stats.passes < 63
            drafted, accepted = drafted + stats.drafted, accepted + stats.accepted
    assert 0 < accepted < drafted                             # drafts were both kept and rejected


def test_eos_and_max_new_tokens_end_as_the_plain_loop():
    model = random_model(small_args(vocab_size=8), seed=3, std=0.6)
    prompt = repetitive(13, period=5, vocab=8, seed=0)
    for eos in range(8):
        for n in (0, 1, 2, 5, 30):
            plain_cache, fast_cache = model.new_cache(), model.new_cache()
            plain = list(generate_ids(model, prompt, n, eos_id=eos, cache=plain_cache))
            fast = list(generate_ids(model, prompt, n, eos_id=eos, cache=fast_cache, lookahead=3))
            assert fast == plain, (eos, n)
            # Both end with the prompt and every token but the last in the cache.
            assert fast_cache.n_seen == plain_cache.n_seen
            np.testing.assert_array_equal(fast_cache.pos, plain_cache.pos)
            np.testing.assert_allclose(fast_cache.k, plain_cache.k, rtol=1e-5, atol=1e-5)


def test_lookahead_argument_is_checked():
    model = random_model(small_args(), seed=0)
    for bad in (-1, 1.5, "2"):
        with pytest.raises(ValueError, match="lookahead"):
            generate_ids(model, [1, 2], 4, lookahead=bad)


def test_pocket_model_greedy_equals_plain_loop():
    model = mistral_np.load(mistral_np.DEFAULT_MODEL)
    tok = mistral_np.load_tokenizer(mistral_np.DEFAULT_MODEL)
    prompt = tok.encode("To be, or not to be, that is the question. To be, or not to be, that is")
    assert model.args.W == 64
    plain = list(generate_ids(model, prompt, 110, stop_at_eos=False))
    assert len(prompt) + len(plain) > 2 * model.args.W                 # the buffer wraps
    for k in (1, 2, 4, 8):
        stats = Stats()
        fast = list(speculative_stream(model, prompt, 110, k, stop_at_eos=False, stats=stats))
        assert fast == plain, k
        assert stats.accepted > 0


@needs_smollm2
def test_smollm2_greedy_equals_plain_loop_with_a_small_window():
    from mistral_np.gguf_tokenizer import chat_prompt
    path = mistral_np.SMOLLM2_GGUF
    model = mistral_np.load(path, window=64)
    tok = mistral_np.load_tokenizer(path)
    text = chat_prompt(mistral_np.read_metadata(path), [{"role": "user", "content":
                       "Repeat exactly: The cat sat on the mat and the dog sat on the log."}])
    prompt = tok.encode(text)
    n = 72 - len(prompt)                                    # up to position 72: past W = 64
    assert n > 8
    plain = list(generate_ids(model, prompt, n, stop_at_eos=False))
    stats = Stats()
    fast = list(speculative_stream(model, prompt, n, 8, stop_at_eos=False, stats=stats))
    assert fast == plain
    assert stats.accepted > 0


# --- the rolling cache after a rejection ---------------------------------------------------------

@pytest.mark.parametrize("n_before", [0, 2, 5, 9, 13])
def test_rollback_leaves_the_cache_of_a_sequence_without_the_drafts(n_before):
    model = random_model(small_args(W=5), seed=1)
    rng = np.random.default_rng(n_before)
    before = rng.integers(0, 23, n_before + 1)              # the sequence so far (at least BOS)
    chunk = rng.integers(0, 23, 4)                           # token + 3 drafts
    for n_keep in range(5):
        spec, never = model.new_cache(), model.new_cache()
        model.prefill(before, spec)
        model.prefill(before, never)
        saved = spec.save(len(chunk))
        model.forward(chunk, spec)                           # overwrites 4 of the 5 slots
        spec.rollback(saved, n_keep)
        if n_keep:
            model.forward(chunk[:n_keep], never)             # never saw the rejected drafts
        assert spec.n_seen == never.n_seen == len(before) + n_keep
        np.testing.assert_array_equal(spec.pos, never.pos)
        live = never.pos != EMPTY
        np.testing.assert_allclose(spec.k[:, live], never.k[:, live], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(spec.v[:, live], never.v[:, live], rtol=1e-5, atol=1e-6)
        # ... and both go on to the same next logits.
        nxt = np.array([7])
        np.testing.assert_allclose(model.forward(nxt, spec), model.forward(nxt, never), rtol=1e-4, atol=1e-5)


def test_save_and_rollback_refuse_misuse():
    model = random_model(small_args(W=4), seed=0)
    cache = model.new_cache()
    model.prefill(np.arange(6), cache)
    with pytest.raises(ValueError, match="n_new"):
        cache.save(5)                                        # more than the buffer: lost for good
    saved = cache.save(3)
    model.forward(np.arange(2), cache)                       # fed 2, not 3
    with pytest.raises(ValueError, match="rollback"):
        cache.rollback(saved, 1)


# --- sampling: the same distribution -------------------------------------------------------------

def test_sampling_with_lookahead_keeps_the_models_distribution():
    args = ModelArgs(dim=16, n_layers=1, head_dim=4, hidden_dim=16, n_heads=4, n_kv_heads=2,
                     vocab_size=4, W=4, max_seq_len=64)
    model = random_model(args, seed=2, std=0.8)
    prompt = np.array([1, 2, 3, 1, 2, 3, 1])                 # drafts wherever the output repeats
    V = args.vocab_size
    # Exact joint probabilities of the 2nd and 3rd tokens, summed over the 1st.
    exact = np.zeros((V, V))
    p1 = distribution(model.forward(prompt)[-1], 1.0)
    for a in range(V):
        p2 = distribution(model.forward(np.append(prompt, a))[-1], 1.0)
        for b in range(V):
            p3 = distribution(model.forward(np.append(prompt, [a, b]))[-1], 1.0)
            exact[b] += p1[a] * p2[b] * p3
    counts, stats = np.zeros((V, V), int), Stats()
    rng = np.random.default_rng(0)
    for _ in range(1500):
        _, b, c = speculative_stream(model, prompt, 3, 2, 1.0, rng=rng, stop_at_eos=False, stats=stats)
        counts[b, c] += 1
    assert 0 < stats.accepted < stats.drafted
    ok, stat, crit = chi_square_ok(counts.ravel(), exact.ravel())
    assert ok, (stat, crit)


def test_command_line_lookahead_prints_the_same_text(capsys):
    from mistral_np.__main__ import main
    prompt = "To be, or not to be, that is the question. To be, or not to be"
    outs = []
    for extra in ([], ["--lookahead", "4"]):
        assert main(["generate", prompt, "--max-new-tokens", "40", *extra]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] and len(outs[0]) > len(prompt)
    assert main(["generate", prompt, "--lookahead", "-2"]) == 2
    assert "lookahead must be an integer >= 0" in capsys.readouterr().err


def test_nan_weights_stop_speculative_generation_with_a_message():
    model = random_model(small_args(), seed=0)
    model.weights["layers"][1]["w2"] = model.weights["layers"][1]["w2"].copy()
    model.weights["layers"][1]["w2"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        list(generate_ids(model, [1, 2, 1, 2, 1], 8, lookahead=2))
