"""kmatmul: x @ W.T for Q4_K / Q6_K matrices with the scales applied after the product equals the
product with the bit-exact dequantized weights, to float32 rounding."""
import numpy as np
import pytest

from mistral_np import kmatmul
from mistral_np.kquants import K_QUANTS
from mistral_np.quants import GGMLTensor, random_blocks


def check(t, x):
    """kmatmul's product against float64 on the dequantized weights, relative to sum |x| |w|."""
    got = kmatmul.matmul_t(t.raw, t.type_id, x)
    w = t.to_f32().astype(np.float64)
    exact = np.asarray(x, np.float64) @ w.T
    scale = (np.abs(np.asarray(x, np.float64)) @ np.abs(w).T).max()
    assert got.shape == exact.shape and got.dtype == np.float32
    assert np.abs(got - exact).max() <= 1e-6 * scale, np.abs(got - exact).max() / scale
    return got


@pytest.mark.parametrize("type_id", sorted(kmatmul.KERNELS))
@pytest.mark.parametrize("T", [1, 2, 4, 7])
@pytest.mark.parametrize("rows, cols", [(1, 256), (37, 512), (300, 1280)])
def test_equals_the_dequantized_product(type_id, T, rows, cols, monkeypatch):
    monkeypatch.setattr(kmatmul, "KBLOCK_BYTES", 7 * cols * 4)     # blocks of 7 rows: a ragged last one
    rng = np.random.default_rng(rows * 10 + T)
    t = GGMLTensor(random_blocks(type_id, rows * cols // 256, rng).reshape(-1), type_id, (rows, cols))
    check(t, rng.standard_normal((T, cols)).astype(np.float32))


@pytest.mark.parametrize("type_id", sorted(kmatmul.KERNELS))
def test_extreme_scales_and_every_integer(type_id):
    """Negative, zero and subnormal f16 super-scales, all 6-bit sub-block scales / int8 scales."""
    rng = np.random.default_rng(5)
    blocks = random_blocks(type_id, 64, rng)
    size = K_QUANTS[type_id][2]
    d = np.array([-1.5, 0.0, 6e-8, 3e-5, 2.0, -7e-5, 1e-3, 65504.0], np.float16)
    at = (0, 2) if type_id == 12 else (208,)
    for a in at:
        blocks[:, a:a + 2] = np.resize(d, 64).view(np.uint8).reshape(64, 2)
    t = GGMLTensor(blocks.reshape(-1), type_id, (8, 8 * 256))
    assert t.raw.shape == (8, 8, size)
    check(t, rng.standard_normal((3, 8 * 256)).astype(np.float32))


def test_matmul_t_takes_the_shortcut_only_for_few_rows(monkeypatch):
    rng = np.random.default_rng(6)
    t = GGMLTensor(random_blocks(12, 4 * 2, rng).reshape(-1), 12, (4, 512))
    calls = []
    monkeypatch.setattr(kmatmul, "matmul_t", lambda *a: calls.append(a) or np.zeros((len(a[2]), 4), np.float32))
    t.matmul_t(np.ones((kmatmul.MAX_ROWS, 512), np.float32))
    t.matmul_t(np.ones((kmatmul.MAX_ROWS + 1, 512), np.float32))
    assert len(calls) == 1


def test_q4_k_scales_match_the_dequantizer():
    from mistral_np.kquants import _scales_mins_k4
    rng = np.random.default_rng(7)
    raw = random_blocks(12, 5 * 3, rng)
    scales, mins = kmatmul.q4_k_scales(raw.reshape(5, 3, 144))       # (B, 8, R)
    ref_s, ref_m = _scales_mins_k4(raw)                              # (R * B, 8)
    np.testing.assert_array_equal(scales.transpose(2, 0, 1).reshape(-1, 8), ref_s)
    np.testing.assert_array_equal(mins.transpose(2, 0, 1).reshape(-1, 8), ref_m)
