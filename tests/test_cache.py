"""Where the rolling buffer puts things: slot = position mod W, only the last W positions."""
import numpy as np
import pytest

from mistral_np import random_model
from mistral_np.cache import EMPTY, RollingCache, cache_slots

from helpers import assert_rel_close, naive_forward, small_args


def test_cache_slots_mistral_example():
    """The example of Mistral's own cache code: lengths [5, 7, 2], [0, 1, 3] cached, W = 3."""
    np.testing.assert_array_equal(cache_slots([5, 7, 2], [0, 1, 3], 3), [2, 0, 1, 5, 3, 4, 6, 7])


def test_cache_slots_short_sequences():
    np.testing.assert_array_equal(cache_slots([2], [0], 4), [0, 1])
    np.testing.assert_array_equal(cache_slots([1, 1], [5, 0], 4), [1, 4])
    np.testing.assert_array_equal(cache_slots([4], [2], 4), [2, 3, 0, 1])


def expected_pos(n_seen, W):
    """Slot p mod W holds p, for the last min(n_seen, W) positions; the rest are empty."""
    pos = np.full(W, EMPTY)
    for p in range(max(0, n_seen - W), n_seen):
        pos[p % W] = p
    return pos


@pytest.mark.parametrize("how", ["one_shot", "chunks_of_3", "decode"])
def test_pos_holds_the_last_W_positions(how):
    args = small_args(W=4)
    model = random_model(args, seed=0)
    tokens = np.random.default_rng(0).integers(0, 23, 11)
    cache = model.new_cache()
    assert cache.n_seen == 0 and (cache.pos == EMPTY).all()
    step = {"one_shot": 11, "chunks_of_3": 3, "decode": 1}[how]
    for s in range(0, 11, step):
        model.forward(tokens[s:s + step], cache)
        n = min(s + step, 11)
        assert cache.n_seen == n
        np.testing.assert_array_equal(cache.pos, expected_pos(n, 4))
    np.testing.assert_array_equal(cache.pos, [8, 9, 10, 7])
    # and the slots hold those positions' keys/values (after RoPE), in every layer
    _, k, v = naive_forward(args, model.weights, tokens)
    for slot, p in enumerate(cache.pos):
        assert_rel_close(cache.k[:, slot], k[:, p], rel=1e-5)
        assert_rel_close(cache.v[:, slot], v[:, p], rel=1e-5)


def test_partly_filled_cache_leaves_other_slots_empty():
    model = random_model(small_args(W=6), seed=0)
    cache = model.new_cache()
    model.forward(np.array([1, 2, 3]), cache)
    np.testing.assert_array_equal(cache.pos, [0, 1, 2, EMPTY, EMPTY, EMPTY])
    assert (cache.k[:, 3:] == 0).all() and (cache.k[:, :3] != 0).any()


def test_cache_shape_and_size_do_not_grow():
    cache = RollingCache(n_layers=3, W=5, n_kv_heads=2, head_dim=4)
    assert cache.k.shape == cache.v.shape == (3, 5, 2, 4)
    assert cache.nbytes == 2 * 3 * 5 * 2 * 4 * 4 + 5 * 8
    model = random_model(small_args(W=5), seed=0)
    cache = model.new_cache()
    size = cache.nbytes
    model.forward(np.arange(23) % 23, cache)
    for t in range(30):
        model.forward(np.array([t % 23]), cache)
    assert cache.nbytes == size and cache.n_seen == 53


def test_mistral_7b_cache_is_one_gib():
    """32 layers x 2 x 4096 slots x 8 kv heads x 128 x 4 bytes (np.zeros: pages untouched)."""
    from mistral_np import MISTRAL_7B as a
    cache = RollingCache(a.n_layers, a.W, a.n_kv_heads, a.head_dim)
    assert cache.k.nbytes + cache.v.nbytes == 2**30
