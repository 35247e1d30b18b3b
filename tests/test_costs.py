"""The cost model (costs.py) counts what the code holds: parameters against the arrays of a model,
bytes against the published checkpoint and the cache's own arrays, FLOPs against the shapes of the
products. Also the cache's public filling and resizing methods the cost measurements use."""
from hypothesis import given, settings, strategies as st
import numpy as np

import mistral_np
from mistral_np import costs
from mistral_np.bench import fill_cache
from mistral_np.config import LLAMA2_13B, MISTRAL_7B
from mistral_np.model import Model, random_model

from helpers import TINY_BF16, small_args


def test_mistral_7b_matches_the_published_checkpoint():
    # metadata.total_size of Mistral-7B-v0.1's model.safetensors.index.json: 2 bytes per bf16 weight
    assert costs.n_params(MISTRAL_7B) == 7_241_732_096
    assert costs.weight_bytes(MISTRAL_7B) == 14_483_464_192
    assert costs.kv_bytes_per_token(MISTRAL_7B) == 128 * 1024                 # 128 KiB in bf16
    assert costs.kv_cache_bytes(MISTRAL_7B, 32768, 4) == 2**30                 # 1 GiB at any length
    assert costs.kv_cache_bytes(MISTRAL_7B, 32768, 4, rolling=False) == 8 * 2**30


@settings(max_examples=25, deadline=None)
@given(dim=st.sampled_from([8, 16]), n_layers=st.integers(1, 3), kv=st.sampled_from([1, 2, 4]),
       tie=st.booleans(), vocab=st.integers(5, 40))
def test_parameters_and_bytes_read_match_a_models_arrays(dim, n_layers, kv, tie, vocab):
    args = small_args(dim=dim, n_layers=n_layers, n_kv_heads=kv, tie_embeddings=tie, vocab_size=vocab)
    model = random_model(args)
    assert model.n_params() == costs.n_params(args)
    assert costs.weight_bytes_per_token(model) == costs.weights_read_per_token(args, 4)     # float32


def test_loaded_checkpoint_reads_what_the_formula_says():
    model = mistral_np.load(TINY_BF16)                  # small: widened to float32 at load
    assert costs.weight_bytes_per_token(model) == costs.weights_read_per_token(model.args, 4)


def test_cache_bytes_count_the_caches_own_arrays():
    args = small_args(W=6)
    model = random_model(args)
    cache = model.new_cache()
    assert cache.k.nbytes + cache.v.nbytes == costs.kv_cache_bytes(args, args.W, 4)
    for n in (0, 3, 6, 11):
        assert costs.cache_bytes_per_token(cache, n) == costs.kv_cache_bytes(args, n, 4)
    for n in (1, 4, 6, 9):
        cache = model.new_cache()
        model.prefill(np.arange(n) % args.vocab_size, cache)
        assert costs.held_bytes(cache) == costs.kv_cache_bytes(args, n, 4)


def test_flops_count_the_products():
    a = MISTRAL_7B
    per_layer = 2 * (a.dim * a.n_heads * a.head_dim * 2            # wq, wo
                     + a.dim * a.n_kv_heads * a.head_dim * 2       # wk, wv
                     + 3 * a.dim * a.hidden_dim)                   # w1, w2, w3
    assert 2 * costs.matmul_params(a) == a.n_layers * per_layer + 2 * a.vocab_size * a.dim
    # scores (n_heads x head_dim per key) and the weighted sum of v: two products, 2 FLOPs each
    assert costs.attention_flops(a, 9) == a.n_layers * 2 * 2 * a.n_heads * a.head_dim * 10
    assert costs.attention_flops(a, 10**6) == costs.attention_flops(a, a.W - 1)         # the window
    assert costs.attention_flops(LLAMA2_13B, 10**6) > costs.attention_flops(LLAMA2_13B, 4095)   # none


def test_llama_keeps_every_position_mistral_the_last_W():
    assert not costs.has_window(LLAMA2_13B) and costs.has_window(MISTRAL_7B)
    assert costs.kv_cache_bytes(LLAMA2_13B, 8192) == 2 * costs.kv_cache_bytes(LLAMA2_13B, 4096)
    assert costs.kv_cache_bytes(MISTRAL_7B, 8192) == costs.kv_cache_bytes(MISTRAL_7B, 4096)
    assert costs.decode_bytes(MISTRAL_7B, 0) == costs.weights_read_per_token(MISTRAL_7B) \
        + costs.kv_bytes_per_token(MISTRAL_7B)
    budget = 16 * 2**30
    assert costs.cache_tokens_that_fit(LLAMA2_13B, budget) == 0                # 26 GB of bf16 weights
    assert costs.cache_tokens_that_fit(MISTRAL_7B, budget) == (budget - 14_483_464_192) // 131072


def test_fill_cache_writes_what_a_prefill_would_store():
    model = mistral_np.load(TINY_BF16)              # W = 6
    for n in (4, 6, 13):
        filled, real = model.new_cache(), model.new_cache()
        fill_cache(filled, n)
        model.prefill(np.arange(n) % 90 + 3, real)
        np.testing.assert_array_equal(filled.pos, real.pos)
        assert filled.n_seen == real.n_seen == n
        assert costs.held_bytes(filled) == costs.held_bytes(real)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 12), W_new=st.integers(1, 16), seed=st.integers(0, 3))
def test_resized_cache_keeps_the_last_positions(n, W_new, seed):
    """resized(W_new) holds the last min(n, W_new) positions with their keys and values; growing a
    cache that already dropped positions is refused. Before the window matters (n <= both W),
    continuing a resized cache gives the logits of a model built with W_new from the start."""
    args = small_args(W=8, max_seq_len=64)
    model = random_model(args, seed=seed)
    tokens = np.random.default_rng(seed).integers(0, args.vocab_size, n + 3)
    cache = model.new_cache()
    model.prefill(tokens[:n], cache)
    if W_new > args.W and n > args.W:
        try:
            cache.resized(W_new)
        except ValueError as e:
            assert "cannot grow" in str(e)
            return
        raise AssertionError("growing a wrapped cache must be refused")
    small = cache.resized(W_new)
    kept = np.arange(max(0, n - W_new), n)
    np.testing.assert_array_equal(np.sort(small.pos[small.pos >= 0]), kept)
    np.testing.assert_array_equal(small.k[:, kept % W_new], cache.k[:, kept % args.W])
    np.testing.assert_array_equal(small.v[:, kept % W_new], cache.v[:, kept % args.W])
    assert small.n_seen == n
    if n <= min(args.W, W_new):
        other = Model(args.replace(W=W_new), model.weights)
        fresh = other.new_cache()
        other.prefill(tokens[:n], fresh)
        for t in tokens[n:]:
            np.testing.assert_allclose(other.forward(np.array([t]), small),
                                       other.forward(np.array([t]), fresh), rtol=1e-5, atol=1e-6)


def test_default_chunk_is_the_largest_whose_scores_fit_the_budget():
    from mistral_np.model import PREFILL_SCORES_BYTES, default_chunk_size
    for args in (MISTRAL_7B, LLAMA2_13B, MISTRAL_7B.replace(W=32768, max_seq_len=32768)):
        for n_cached in (0, 100, None):
            S = args.W if n_cached is None else min(args.W, n_cached)
            T = default_chunk_size(args, n_cached)
            assert costs.score_bytes(args, T, S + T) <= PREFILL_SCORES_BYTES
            assert T == args.W or costs.score_bytes(args, T + 1, S + T + 1) > PREFILL_SCORES_BYTES


def test_resized_refuses_a_window_that_is_not_a_positive_whole_number():
    import pytest
    cache = random_model(small_args()).new_cache()
    for W in (0, -3, 2.5, True, "8"):
        with pytest.raises(ValueError, match="resized: W must be a whole number >= 1"):
            cache.resized(W)
