"""K-quant dequantizers, bit for bit against the `gguf` package's reference (llama.cpp's layouts)."""
import numpy as np
import pytest

from mistral_np.kquants import (K_QUANTS, check_blocks, check_scales, nonfinite_scales,
                                random_blocks)

gguf = pytest.importorskip("gguf")
from gguf.quants import dequantize as gguf_dequantize  # noqa: E402

REFERENCE_TYPES = [10, 11, 12, 13, 14]            # Q2_K..Q6_K; gguf does not dequantize Q8_K
ALL_TYPES = sorted(K_QUANTS)


def reference(type_id, blocks):
    if type_id == 15:                              # Q8_K, block by block from its definition
        return np.stack([np.frombuffer(b[:4].tobytes(), "<f4")[0]
                         * np.frombuffer(b[4:260].tobytes(), np.int8).astype(np.float32)
                         for b in blocks])
    w = gguf_dequantize(blocks.reshape(-1), gguf.GGMLQuantizationType(type_id))
    return w.astype(np.float32).reshape(len(blocks), 256)


def bits(w):
    return np.ascontiguousarray(w, np.float32).view(np.uint32)


def finite_blocks(type_id, blocks):
    """Which blocks have finite super-scales (one row at a time, through nonfinite_scales)."""
    return np.array([nonfinite_scales(blocks[i:i + 1], type_id) == 0 for i in range(len(blocks))])


def test_table_matches_gguf():
    for type_id, (name, per_block, size, _) in K_QUANTS.items():
        assert gguf.GGMLQuantizationType(type_id).name == name
        assert gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(type_id)] == (per_block, size)


@pytest.mark.parametrize("type_id", ALL_TYPES)
@pytest.mark.parametrize("n_blocks", [1, 3, 64])
def test_random_blocks_bit_exact(type_id, n_blocks):
    rng = np.random.default_rng(type_id * 100 + n_blocks)
    blocks = random_blocks(type_id, n_blocks, rng)
    assert blocks.shape == (n_blocks, K_QUANTS[type_id][2]) and blocks.dtype == np.uint8
    assert nonfinite_scales(blocks, type_id) == 0
    w = K_QUANTS[type_id][3](blocks)
    assert w.shape == (n_blocks, 256) and w.dtype == np.float32
    assert np.isfinite(w).all()
    assert np.array_equal(bits(w), bits(reference(type_id, blocks)))


@pytest.mark.parametrize("type_id", ALL_TYPES)
def test_random_bytes_bit_exact(type_id):
    """Any bytes at all: bit-exact wherever the super-scales are finite; inf/NaN where they are not."""
    rng = np.random.default_rng(type_id)
    blocks = rng.integers(0, 256, (300, K_QUANTS[type_id][2]), dtype=np.uint8)
    with np.errstate(invalid="ignore", over="ignore"):
        w, ref = K_QUANTS[type_id][3](blocks), reference(type_id, blocks)
    ok = finite_blocks(type_id, blocks)
    assert 0 < ok.sum() and nonfinite_scales(blocks, type_id) == (~ok).sum()
    assert np.array_equal(bits(w[ok]), bits(ref[ok]))
    assert np.array_equal(w, ref, equal_nan=True)


@pytest.mark.parametrize("type_id", ALL_TYPES)
def test_out_buffer_and_memmap(type_id, tmp_path):
    """A slice of a memory-mapped file dequantizes into a reused, larger buffer's front rows."""
    _, _, size, dequantize = K_QUANTS[type_id]
    blocks = random_blocks(type_id, 40, np.random.default_rng(1))
    (tmp_path / "w.bin").write_bytes(blocks.tobytes())
    mapped = np.memmap(tmp_path / "w.bin", np.uint8, "r").reshape(40, size)
    buf = np.full((64, 256), np.nan, np.float32)
    got = dequantize(mapped[5:30], buf[:25])
    assert np.shares_memory(got, buf) and np.isnan(buf[25:]).all()
    assert np.array_equal(bits(buf[:25]), bits(dequantize(blocks)[5:30]))
    with pytest.raises(ValueError, match="out must be"):
        dequantize(blocks, buf)                                     # wrong number of rows
    with pytest.raises(ValueError, match=f"\\(n, {size}\\)"):
        dequantize(blocks[:, :-1])                                  # wrong block size


def test_truncated_super_block_names_the_tensor():
    data = random_blocks(12, 3, np.random.default_rng(0)).reshape(-1)
    assert check_blocks("blk.0.ffn_up.weight", data, 144).shape == (3, 144)
    with pytest.raises(ValueError, match=r"^tensor blk\.0\.ffn_up\.weight: 431 bytes .*truncated"):
        check_blocks("blk.0.ffn_up.weight", data[:-1], 144)


@pytest.mark.parametrize("type_id", ALL_TYPES)
def test_nonfinite_scales_name_the_tensor(type_id):
    blocks = random_blocks(type_id, 5, np.random.default_rng(2))
    check_scales("output.weight", blocks, type_id)                 # all finite: no error
    at = {10: 82, 11: 108, 12: 2, 13: 0, 14: 208, 15: 0}[type_id]  # a d or dmin of each type
    dtype = np.float32 if type_id == 15 else np.float16
    for i, value in [(1, np.inf), (3, np.nan)]:
        blocks[i, at:at + np.dtype(dtype).itemsize] = np.array([value], dtype).view(np.uint8)
    assert nonfinite_scales(blocks, type_id) == 2
    name = K_QUANTS[type_id][0]
    with pytest.raises(ValueError, match=f"^tensor output.weight: 2 of 5 {name} super-blocks"):
        check_scales("output.weight", blocks, type_id)


def test_random_blocks_make_modest_weights():
    rng = np.random.default_rng(3)
    for type_id, (_, _, _, dequantize) in K_QUANTS.items():
        rms = np.sqrt(np.mean(dequantize(random_blocks(type_id, 256, rng)) ** 2))
        assert 0.01 < rms < 0.06, (type_id, rms)
