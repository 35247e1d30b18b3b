"""safetensors with NumPy: round trips, memory maps, and bfloat16 bits."""
import json
import struct

import numpy as np
import pytest

from mistral_np import bf16 as bf16_mod
from mistral_np.bf16 import BF16, bf16_bits_to_f32, f32_to_bf16_bits, round_to_bf16
from mistral_np.layers import linear
from mistral_np.safetensors import header_bytes, load_file, read_header, save_file

from helpers import TINY_BF16, TINY_HF


def test_f32_round_trip_is_exact_and_memory_mapped(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"a": rng.standard_normal((3, 5)).astype(np.float32), "b.bias": np.arange(7, dtype=np.float32),
               "ids": np.arange(4, dtype=np.int64), "empty": np.zeros((0, 3), np.float32)}
    path = tmp_path / "t.safetensors"
    save_file(path, tensors, metadata={"format": "pt", "n": 3})
    header, metadata, start = read_header(path)
    assert metadata == {"format": "pt", "n": "3"}
    assert header["a"] == {"dtype": "F32", "shape": [3, 5], "data_offsets": [0, 60]}
    assert header["ids"]["dtype"] == "I64"
    assert start % 8 == 0                                   # data aligned as the reference writer does
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert start == 8 + n and isinstance(json.loads(path.read_bytes()[8:start]), dict)
    back = load_file(path)
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        np.testing.assert_array_equal(back[k], v)
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
    assert isinstance(back["a"], np.memmap)                # mapped, not read into memory
    assert not back["a"].flags.writeable


def test_float64_is_stored_as_f32(tmp_path):
    save_file(tmp_path / "t.safetensors", {"x": np.array([0.1, 1 / 3])})
    x = load_file(tmp_path / "t.safetensors")["x"]
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, np.float32([0.1, 1 / 3]))


def test_unknown_dtypes_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="'z' is complex64.*convert it to float32"):
        save_file(tmp_path / "c.safetensors", {"z": np.zeros(2, np.complex64)})
    assert not (tmp_path / "c.safetensors").exists()
    with pytest.raises(ValueError, match="'w' has dtype 'F8'; known: F32"):
        header_bytes([("w", "F8", (2,))])


def test_bf16_round_trip_and_memmap(tmp_path):
    x = np.random.default_rng(1).standard_normal((70, 9)).astype(np.float32)
    path = tmp_path / "t.safetensors"
    save_file(path, {"w": x}, dtype="BF16")
    assert read_header(path)[0]["w"]["dtype"] == "BF16"
    assert path.stat().st_size == read_header(path)[2] + x.size * 2
    w = load_file(path)["w"]
    assert isinstance(w, BF16) and isinstance(w.bits, np.memmap) and w.shape == (70, 9)
    np.testing.assert_array_equal(w.to_f32(), round_to_bf16(x))
    np.testing.assert_array_equal(w[[3, 0]], round_to_bf16(x)[[3, 0]])
    assert np.abs(w.to_f32() - x).max() <= 2**-8 * np.abs(x).max()    # 8 significant bits
    # saving the widened values again stores the same bits
    save_file(tmp_path / "u.safetensors", {"w": w.to_f32()}, dtype="BF16")
    np.testing.assert_array_equal(load_file(tmp_path / "u.safetensors")["w"].bits, w.bits)


def bits(x):
    return int(f32_to_bf16_bits(np.float32(x)))


def test_bf16_rounds_to_nearest_even():
    one = 0x3F80                                  # 1.0 in bf16; its last mantissa bit (2^-7) is 0
    assert bits(1.0) == one
    assert bits(1 + 2**-8) == one                 # exactly halfway: to the even neighbour, down
    assert bits(1 + 3 * 2**-8) == one + 2         # halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up
    assert bits(1 + 2**-8 + 2**-20) == one + 1    # just above halfway: up
    assert bits(1 + 2**-8 - 2**-20) == one        # just below: down
    assert bits(-(1 + 3 * 2**-8)) == 0x8000 | (one + 2)
    assert bits(-0.0) == 0x8000
    assert bits(np.inf) == 0x7F80 and bits(-np.inf) == 0xFF80
    assert bits(np.finfo(np.float32).max) == 0x7F80           # rounds up to infinity
    assert bits(3.0) == 0x4040 and bits(0.1) == 0x3DCD       # 0.1 = 0x3DCCCCCD: rounds up
    nan = round_to_bf16(np.float32([np.nan]))
    assert np.isnan(nan).all()


def test_bf16_widening_is_exact():
    all_bits = np.arange(2**16, dtype=np.uint16)
    f = bf16_bits_to_f32(all_bits)
    finite = np.isfinite(f)
    np.testing.assert_array_equal(f.view(np.uint32) >> 16, all_bits)
    np.testing.assert_array_equal(f32_to_bf16_bits(f[finite]), all_bits[finite])   # exact round trip


@pytest.mark.parametrize("T", [1, 3, 17, 40])
def test_bf16_blockwise_matmul(T, monkeypatch):
    """x @ W.T widened block by block (threaded for small T) == widening the whole matrix first."""
    # several blocks of 16 rows and a ragged last one, whichever knob sets the block size
    monkeypatch.setattr(bf16_mod, "BLOCK_ROWS", 16, raising=False)
    monkeypatch.setattr(bf16_mod, "BLOCK_BYTES", 16 * 24 * 4, raising=False)
    rng = np.random.default_rng(T)
    w = BF16(f32_to_bf16_bits(rng.standard_normal((150, 24)).astype(np.float32)))
    x = rng.standard_normal((T, 24)).astype(np.float32)
    expected = x @ w.to_f32().T
    np.testing.assert_allclose(linear(x, w), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(w.matmul_t(x), expected, rtol=1e-5, atol=1e-5)


def test_fixture_files_are_memory_mapped():
    f32 = load_file(TINY_HF / "model.safetensors")
    assert all(isinstance(t, np.memmap) for t in f32.values())
    bf = load_file(TINY_BF16 / "model-00001-of-00002.safetensors")
    assert all(isinstance(t, BF16) and isinstance(t.bits, np.memmap) for t in bf.values())
