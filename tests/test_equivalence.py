"""The fast paths equal the slow ones: cache vs no cache, chunked vs one-shot, GQA vs MHA,
the library vs a naive float64 implementation; over random sizes and both RoPE layouts."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mistral_np import ModelArgs, random_model
from mistral_np.attention import attention, window_mask

from helpers import assert_rel_close, naive_forward, small_args


@st.composite
def model_args(draw, n_layers=st.integers(1, 2), W=st.integers(1, 6)):
    """Random tiny configs: MHA, GQA and MQA (n_kv_heads = 1), both RoPE layouts."""
    n_kv_heads = draw(st.integers(1, 3))
    group = draw(st.integers(1, 3))
    return ModelArgs(dim=draw(st.integers(4, 24)), n_layers=draw(n_layers),
                     head_dim=draw(st.sampled_from([2, 4, 6, 8])), hidden_dim=draw(st.integers(4, 32)),
                     n_heads=n_kv_heads * group, n_kv_heads=n_kv_heads,
                     vocab_size=draw(st.integers(5, 40)), W=draw(W), max_seq_len=256,
                     rope_theta=draw(st.sampled_from([10000.0, 100.0])),
                     rope_layout=draw(st.sampled_from(["pairs", "halves"])))


def tokens_for(args, T, seed):
    return np.random.default_rng(seed).integers(0, args.vocab_size, T)


# --- the library against the naive float64 model --------------------------------------------------

@given(args=model_args(), T=st.integers(1, 20), seed=st.integers(0, 2**16))
@settings(max_examples=30)
def test_forward_equals_naive_float64(args, T, seed):
    model = random_model(args, seed=seed)
    tokens = tokens_for(args, T, seed)
    expected, _, _ = naive_forward(args, model.weights, tokens)
    assert_rel_close(model.forward(tokens), expected, rel=1e-5)


# --- rolling cache: decoding one token at a time --------------------------------------------------

@given(args=model_args(), laps=st.integers(3, 5), extra=st.integers(0, 5), seed=st.integers(0, 2**16))
def test_rolling_decode_equals_full_attention_with_window_mask(args, laps, extra, seed):
    """Token by token through a W-slot cache, for several times W tokens == one windowed pass."""
    model = random_model(args, seed=seed)
    tokens = tokens_for(args, laps * args.W + extra, seed)
    full = model.forward(tokens)                                   # (T, vocab), no cache
    cache = model.new_cache()
    steps = np.concatenate([model.forward(tokens[i:i + 1], cache) for i in range(len(tokens))])
    assert_rel_close(steps, full, rel=1e-5)
    assert cache.n_seen == len(tokens)
    assert cache.k.shape[1] == args.W                              # memory stays W slots


def test_rolling_decode_equals_naive_far_past_window():
    """A long run (12 x W) with GQA, compared with the independent float64 model."""
    args = small_args(W=3, rope_layout="halves")
    model = random_model(args, seed=3)
    tokens = tokens_for(args, 36, 3)
    cache = model.new_cache()
    steps = np.concatenate([model.forward(tokens[i:i + 1], cache) for i in range(len(tokens))])
    assert_rel_close(steps, naive_forward(args, model.weights, tokens)[0], rel=1e-5)


# --- chunked pre-fill -----------------------------------------------------------------------------

@pytest.mark.parametrize("W,layout,n_kv_heads", [(3, "pairs", 2), (4, "halves", 1), (5, "pairs", 4)])
def test_chunked_prefill_equals_one_shot_for_every_chunk_size(W, layout, n_kv_heads):
    """Logits of every chunk and the final cache (pos, k, v of every slot) do not depend on the
    chunk size, for every chunk size 1..2W, with a prompt several windows long."""
    args = small_args(W=W, rope_layout=layout, n_kv_heads=n_kv_heads)
    model = random_model(args, seed=W)
    T = 3 * W + 2
    tokens = tokens_for(args, T, W)
    full = model.forward(tokens)
    _, naive_k, naive_v = naive_forward(args, model.weights, tokens)   # (L, T, n_kv, hd)
    one_shot = model.new_cache()
    last = model.prefill(tokens, one_shot, chunk_size=T)
    assert_rel_close(last, full, rel=1e-5)                         # one chunk: all the logits
    # What a one-shot pass stores: the last W positions, position p in slot p mod W.
    expected_pos = np.full(W, -1)
    for p in range(T - W, T):
        expected_pos[p % W] = p
    np.testing.assert_array_equal(one_shot.pos, expected_pos)
    for slot, p in enumerate(one_shot.pos):
        assert_rel_close(one_shot.k[:, slot], naive_k[:, p], rel=1e-5)
        assert_rel_close(one_shot.v[:, slot], naive_v[:, p], rel=1e-5)
    for chunk_size in range(1, 2 * W + 1):
        cache = model.new_cache()
        chunks = [model.forward(tokens[s:s + chunk_size], cache) for s in range(0, T, chunk_size)]
        assert_rel_close(np.concatenate(chunks), full, rel=1e-5)
        np.testing.assert_array_equal(cache.pos, one_shot.pos)
        assert cache.n_seen == T
        assert_rel_close(cache.k, one_shot.k, rel=1e-5)
        assert_rel_close(cache.v, one_shot.v, rel=1e-5)
        # prefill() itself, with this chunk size, returns the last chunk's logits
        cache2 = model.new_cache()
        last = model.prefill(tokens, cache2, chunk_size=chunk_size)
        n_last = T - (T - 1) // chunk_size * chunk_size
        assert_rel_close(last, full[-n_last:], rel=1e-5)


def test_prefill_default_chunk_is_W(small_model):
    tokens = tokens_for(small_model.args, 10, 0)
    cache = small_model.new_cache()
    last = small_model.prefill(tokens, cache)              # W = 4: chunks 4, 4, 2
    assert last.shape == (2, small_model.args.vocab_size)
    with pytest.raises(ValueError, match="chunk_size"):
        small_model.prefill(tokens, small_model.new_cache(), chunk_size=-1)


@st.composite
def split_case(draw):
    args = draw(model_args())
    T = draw(st.integers(1, 8 * args.W + 3))
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, T - 1)), max_size=6)))) if T > 1 else []
    return args, T, cuts


@given(case=split_case(), seed=st.integers(0, 2**16))
def test_any_split_across_forward_calls_equals_one_call(case, seed):
    """Feeding a sequence in arbitrary pieces (decode steps and chunks mixed) through one cache
    gives the logits of a single call without a cache, even far beyond W."""
    args, T, cuts = case
    model = random_model(args, seed=seed)
    tokens = tokens_for(args, T, seed)
    cache = model.new_cache()
    bounds = [0] + cuts + [T]
    pieces = [model.forward(tokens[a:b], cache) for a, b in zip(bounds[:-1], bounds[1:])]
    assert_rel_close(np.concatenate(pieces), model.forward(tokens), rel=1e-5)


# --- grouped-query attention ----------------------------------------------------------------------

def naive_mha(q, k, v, mask):
    """Plain multi-head attention, one head and one query at a time."""
    T, H, hd = q.shape
    out = np.zeros((T, H, hd))
    for h in range(H):
        for i in range(T):
            s = np.array([q[i, h] @ k[j, h] / np.sqrt(hd) if mask[i, j] else -np.inf
                          for j in range(k.shape[0])])
            p = np.exp(s - s.max())
            out[i, h] = (p / p.sum()) @ v[:, h]
    return out.reshape(T, H * hd)


@given(H=st.integers(1, 5), hd=st.sampled_from([1, 2, 4, 8]), T=st.integers(1, 9), W=st.integers(1, 9),
       seed=st.integers(0, 2**16))
@settings(max_examples=30)
def test_gqa_with_n_kv_heads_equal_n_heads_is_plain_mha(H, hd, T, W, seed):
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((T, H, hd)).astype(np.float32) for _ in range(3))
    pos = np.arange(T)
    mask = window_mask(pos, pos, W)
    assert_rel_close(attention(q, k, v, mask), naive_mha(q, k, v, mask), rel=1e-5)


@given(n_kv=st.integers(1, 4), group=st.integers(1, 4), hd=st.sampled_from([2, 4, 8]),
       T=st.integers(1, 9), S_extra=st.integers(0, 5), W=st.integers(1, 9), seed=st.integers(0, 2**16))
@settings(max_examples=30)
def test_gqa_equals_mha_with_repeated_kv_heads(n_kv, group, hd, T, S_extra, W, seed):
    """Query head h reads kv head h // group: the same as MHA with each kv head copied group times.
    Keys may be more than queries (a cache in front), n_kv = 1 is multi-query attention."""
    rng = np.random.default_rng(seed)
    S = T + S_extra
    q = rng.standard_normal((T, n_kv * group, hd)).astype(np.float32)
    k, v = (rng.standard_normal((S, n_kv, hd)).astype(np.float32) for _ in range(2))
    mask = window_mask(np.arange(S_extra, S), np.arange(S), W)
    gqa = attention(q, k, v, mask)
    mha = attention(q, np.repeat(k, group, axis=1), np.repeat(v, group, axis=1), mask)
    assert gqa.shape == (T, n_kv * group * hd)
    assert_rel_close(gqa, mha, rel=1e-6)
    assert_rel_close(gqa, naive_mha(q, np.repeat(k, group, axis=1), np.repeat(v, group, axis=1), mask),
                     rel=1e-5)


@pytest.mark.parametrize("layout", ["pairs", "halves"])
def test_multi_query_model(layout):
    """n_kv_heads = 1: one key/value head for all 4 query heads; cache and naive model agree."""
    args = small_args(n_kv_heads=1, W=3, rope_layout=layout)
    model = random_model(args, seed=1)
    tokens = tokens_for(args, 11, 1)
    cache = model.new_cache()
    assert cache.k.shape == (2, 3, 1, 4)
    steps = np.concatenate([model.forward(tokens[i:i + 1], cache) for i in range(11)])
    expected = naive_forward(args, model.weights, tokens)[0]
    assert_rel_close(model.forward(tokens), expected, rel=1e-5)
    assert_rel_close(steps, expected, rel=1e-5)


def test_attention_ignores_masked_keys():
    """A masked key's value must have no influence at all, even if huge."""
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((5, 2, 4)).astype(np.float32) for _ in range(3))
    mask = window_mask(np.arange(5), np.arange(5), 2)
    v2 = v.copy()
    v2[0] = 1e6                         # position 0 is outside every window but query 0's and 1's
    a, b = attention(q, k, v, mask), attention(q, k, v2, mask)
    np.testing.assert_array_equal(a[2:], b[2:])
    assert np.abs(a[:2] - b[:2]).max() > 1
