"""The sliding-window convention (i - W < j <= i, reach k x (W - 1)) and the two RoPE layouts."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mistral_np import random_model
from mistral_np.attention import window_mask
from mistral_np.layers import (apply_rope, permute_halves_to_pairs, permute_pairs_to_halves,
                               rope_angles)

from helpers import assert_rel_close, small_args


# --- the window -----------------------------------------------------------------------------------

def test_window_mask_convention():
    m = window_mask(np.arange(6), np.arange(6), 3)
    expected = np.array([[1, 0, 0, 0, 0, 0],
                         [1, 1, 0, 0, 0, 0],
                         [1, 1, 1, 0, 0, 0],
                         [0, 1, 1, 1, 0, 0],
                         [0, 0, 1, 1, 1, 0],
                         [0, 0, 0, 1, 1, 1]], bool)
    np.testing.assert_array_equal(m, expected)
    # Keys per query: min(i + 1, W), the query itself included (the fixture's README says the same
    # for transformers: [1, 2, 3, 4, 5, 6, 6, ...] with W = 6).
    np.testing.assert_array_equal(window_mask(np.arange(24), np.arange(24), 6).sum(1),
                                  np.minimum(np.arange(24) + 1, 6))
    # W >= length: plain causal; positions, not indices, decide (keys in any order).
    np.testing.assert_array_equal(window_mask(np.arange(5), np.arange(5), 99), np.tri(5, dtype=bool))
    np.testing.assert_array_equal(window_mask([7], [5, 9, 7, 4, 6], 3), [[1, 0, 1, 0, 1]])


def logits_change(model, tokens, i, j):
    """max |change| of the logits at position i when the token at position j changes."""
    other = tokens.copy()
    other[j] = (tokens[j] + 1) % model.args.vocab_size
    return np.abs(model.forward(other)[i] - model.forward(tokens)[i]).max()


@pytest.mark.parametrize("W", [2, 3, 5])
def test_one_layer_sees_exactly_W_tokens(W):
    model = random_model(small_args(n_layers=1, W=W), seed=W)
    tokens = np.random.default_rng(W).integers(0, 23, 20)
    for i in range(W, 20):
        assert logits_change(model, tokens, i, i - W) == 0.0
        assert logits_change(model, tokens, i, i - W + 1) > 1e-3


@pytest.mark.parametrize("n_layers,W", [(2, 3), (3, 2), (3, 4), (4, 3)])
def test_k_layers_reach_exactly_k_times_W_minus_1(n_layers, W):
    """Information moves at most W - 1 positions per layer: reach k x (W - 1), not k x W."""
    model = random_model(small_args(n_layers=n_layers, W=W), seed=n_layers * 10 + W)
    reach = n_layers * (W - 1)
    T = reach + 4
    tokens = np.random.default_rng(W).integers(0, 23, T)
    i = T - 1
    assert logits_change(model, tokens, i, i - reach) > 1e-6
    assert logits_change(model, tokens, i, i - reach - 1) == 0.0


def test_one_layer_window_holds_with_a_cache():
    """The same W-token window when the tokens come through the rolling cache one by one."""
    model = random_model(small_args(n_layers=1, W=3), seed=0)
    tokens = np.random.default_rng(0).integers(0, 23, 12)

    def decoded(toks):
        cache = model.new_cache()
        return np.concatenate([model.forward(toks[t:t + 1], cache) for t in range(len(toks))])

    base = decoded(tokens)
    far, near = tokens.copy(), tokens.copy()
    far[8], near[9] = (far[8] + 1) % 23, (near[9] + 1) % 23
    assert np.abs(decoded(far)[11] - base[11]).max() == 0.0
    assert np.abs(decoded(near)[11] - base[11]).max() > 1e-3


# --- RoPE -----------------------------------------------------------------------------------------

@given(n_heads=st.integers(1, 4), half=st.integers(1, 8), T=st.integers(1, 6), seed=st.integers(0, 2**16))
@settings(max_examples=30)
def test_rope_layouts_agree_after_permutation(n_heads, half, T, seed):
    """Rotating pairs then permuting == permuting then rotating halves; the permutations invert."""
    hd = 2 * half
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n_heads * hd, 5))
    np.testing.assert_array_equal(permute_halves_to_pairs(permute_pairs_to_halves(w, n_heads), n_heads), w)
    x = rng.standard_normal((T, n_heads, hd)).astype(np.float32)
    pos = rng.integers(0, 5000, T)
    perm = permute_pairs_to_halves(np.arange(n_heads * hd)[:, None], n_heads)[:, 0].reshape(n_heads, hd)[0]
    rotated_pairs = apply_rope(x, pos, 1e4, "pairs")[..., perm]
    rotated_halves = apply_rope(x[..., perm], pos, 1e4, "halves")
    np.testing.assert_allclose(rotated_halves, rotated_pairs, rtol=0, atol=1e-6)


def test_pairs_to_halves_moves_even_rows_first():
    """Per head, the rows of the pairs layout (0, 1, 2, 3, ...) become (0, 2, 4, ..., 1, 3, 5, ...)."""
    rows = permute_pairs_to_halves(np.arange(16)[:, None], n_heads=2)[:, 0]
    np.testing.assert_array_equal(rows, [0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15])


@pytest.mark.parametrize("n_kv_heads", [1, 2, 4])
def test_model_logits_identical_in_both_layouts(n_kv_heads):
    args = small_args(n_kv_heads=n_kv_heads, W=3)
    pairs = random_model(args, seed=5)
    halves_layers = [dict(blk, wq=permute_pairs_to_halves(blk["wq"], args.n_heads),
                          wk=permute_pairs_to_halves(blk["wk"], args.n_kv_heads))
                     for blk in pairs.weights["layers"]]
    halves = type(pairs)(args.replace(rope_layout="halves"), dict(pairs.weights, layers=halves_layers))
    tokens = np.random.default_rng(0).integers(0, 23, 13)
    assert_rel_close(halves.forward(tokens), pairs.forward(tokens), rel=1e-6)
    # and the rows really moved: without the permutation the halves layout gives other logits
    wrong = type(pairs)(args.replace(rope_layout="halves"), pairs.weights)
    assert np.abs(wrong.forward(tokens) - pairs.forward(tokens)).max() > 1e-2


@given(layout=st.sampled_from(["pairs", "halves"]), half=st.integers(1, 8),
       m=st.integers(0, 3000), n=st.integers(0, 3000), shift=st.integers(0, 3000),
       theta=st.sampled_from([1e4, 1e6, 50.0]), seed=st.integers(0, 2**16))
def test_rope_dot_product_depends_only_on_relative_position(layout, half, m, n, shift, theta, seed):
    rng = np.random.default_rng(seed)
    q, k = (rng.standard_normal((1, 1, 2 * half)).astype(np.float32) for _ in range(2))

    def score(pq, pk):
        return float(np.sum(apply_rope(q, [pq], theta, layout) * apply_rope(k, [pk], theta, layout)))

    scale = float(np.linalg.norm(q) * np.linalg.norm(k))
    assert abs(score(m + shift, n + shift) - score(m, n)) <= 1e-4 * scale


def test_rope_is_a_rotation():
    x = np.random.default_rng(0).standard_normal((7, 3, 8)).astype(np.float32)
    for layout in ("pairs", "halves"):
        y = apply_rope(x, np.arange(7), 1e4, layout)
        np.testing.assert_array_equal(y[0], x[0])                  # position 0: no rotation
        np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)
    cos, sin = rope_angles(np.array([0, 1, 2]), 8, 1e4)            # angles p * theta^(-2i/d)
    np.testing.assert_allclose(np.arctan2(sin[1], cos[1]), [1, 1e-1, 1e-2, 1e-3], rtol=1e-5)
    assert cos.shape == (3, 4) and cos.dtype == np.float32
