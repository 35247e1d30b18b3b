"""BF16.matmul_t: block-wise widening on two threads gives the product of the widened matrix.

The float32 products differ from one another only by summation order, so they agree to a few
float32 roundings of the result's scale (checked at 1e-6 of it against a float64 product).
"""
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import mistral_np.bf16 as bf16_mod
from mistral_np.bf16 import BF16, f32_to_bf16_bits
from mistral_np.safetensors import load_file, save_file


def random_bf16(rng, shape):
    return BF16(f32_to_bf16_bits(rng.standard_normal(shape).astype(np.float32)))


def check(w, x, rel=1e-6):
    """w.matmul_t(x) against float64 x @ W.T, relative to the scale of the terms summed."""
    got = w.matmul_t(x)
    assert got.dtype == np.float32 and got.shape == (x.shape[0], w.shape[0])
    exact = np.asarray(x, np.float64) @ w.to_f32().astype(np.float64).T
    scale = np.abs(np.asarray(x, np.float64)) @ np.abs(w.to_f32().astype(np.float64)).T
    assert np.all(np.abs(got - exact) <= rel * scale.max()), np.abs(got - exact).max() / scale.max()
    return got


@pytest.mark.parametrize("T", [1, 2, 17, 70])
@pytest.mark.parametrize("n_out, n_in", [(1, 1), (37, 129), (1001, 33), (5, 4099)])
def test_matmul_t_matches_widened_product(T, n_out, n_in, monkeypatch):
    # 7 rows of 129 per block: many blocks, a ragged last one, an uneven split between threads
    monkeypatch.setattr(bf16_mod, "BLOCK_BYTES", 7 * 129 * 4)
    rng = np.random.default_rng(n_out * 1000 + T)
    check(random_bf16(rng, (n_out, n_in)), rng.standard_normal((T, n_in)).astype(np.float32))


def test_default_block_size_on_a_wide_matrix():
    rng = np.random.default_rng(0)
    w = random_bf16(rng, (300, 5000))              # blocks of 104 rows: three blocks
    for T in (1, 20):
        check(w, rng.standard_normal((T, 5000)).astype(np.float32))


def test_inputs_of_other_dtypes_and_layouts():
    rng = np.random.default_rng(1)
    w = random_bf16(rng, (50, 64))
    x64 = rng.standard_normal((64, 3))                       # float64, and transposed below
    got = check(w, x64.T)                                    # non-contiguous (3, 64) float64
    np.testing.assert_array_equal(got, w.matmul_t(np.ascontiguousarray(x64.T, np.float32)))


def test_memory_mapped_weights(tmp_path):
    rng = np.random.default_rng(2)
    save_file(tmp_path / "w.safetensors", {"w": rng.standard_normal((77, 96)).astype(np.float32)}, dtype="BF16")
    w = load_file(tmp_path / "w.safetensors")["w"]
    assert isinstance(w, BF16) and isinstance(w.bits, np.memmap)
    check(w, rng.standard_normal((1, 96)).astype(np.float32))


def test_buffers_are_reused_across_shapes():
    """Each worker's buffer grows to the largest block seen and is reused for smaller ones."""
    rng = np.random.default_rng(3)
    for n_in in (24, 600_000, 24, 513):          # 600,000 columns: one row is over BLOCK_BYTES
        check(random_bf16(rng, (9, n_in)), rng.standard_normal((2, n_in)).astype(np.float32))


def test_same_result_from_several_caller_threads():
    rng = np.random.default_rng(4)
    w = random_bf16(rng, (400, 256))
    xs = [rng.standard_normal((1, 256)).astype(np.float32) for _ in range(4)]
    expected = [w.matmul_t(x) for x in xs]
    results = [None] * len(xs)

    def run(i):
        results[i] = w.matmul_t(xs[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, exp in zip(results, expected):
        np.testing.assert_array_equal(got, exp)


def test_blas_threads_are_restored():
    before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    random_bf16(np.random.default_rng(5), (64, 64)).matmul_t(np.ones((1, 64), np.float32))
    assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] == before


def test_shape_mismatch_is_an_error():
    w = random_bf16(np.random.default_rng(6), (8, 16))
    with pytest.raises(ValueError):
        w.matmul_t(np.ones((1, 15), np.float32))
