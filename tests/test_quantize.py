"""int8 weights: per-row quantization, the Int8 product, and a quantized checkpoint end to end."""
import numpy as np
import pytest

import mistral_np
import mistral_np.bf16 as bf16_mod
from mistral_np.quantize import Int8, agreement, quantize, quantize_rows

from helpers import TINY_BF16, TINY_HF


def test_quantize_rows_error_is_half_a_step():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((50, 33)).astype(np.float32)
    w[3] = 0                                                      # an all-zero row
    q, s = quantize_rows(w)
    assert q.dtype == np.int8 and s.dtype == np.float32 and s.shape == (50,)
    assert np.abs(q).max() == 127
    assert np.all(np.abs(q * s[:, None] - w) <= s[:, None] / 2 * (1 + 1e-6))
    assert not q[3].any()


@pytest.mark.parametrize("T", [1, 17])
def test_int8_matmul_t_and_rows(T, monkeypatch):
    monkeypatch.setattr(bf16_mod, "BLOCK_BYTES", 5 * 40 * 4)        # several blocks, a ragged one
    rng = np.random.default_rng(T)
    q, s = quantize_rows(rng.standard_normal((37, 40)).astype(np.float32))
    w = Int8(q, s)
    x = rng.standard_normal((T, 40)).astype(np.float32)
    np.testing.assert_allclose(w.matmul_t(x), x @ w.to_f32().T, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(w[[0, 5, 5]], w.to_f32()[[0, 5, 5]])
    assert w.nbytes == 37 * 40 + 37 * 4


@pytest.mark.parametrize("source", [TINY_HF, TINY_BF16])
def test_quantized_checkpoint_loads_and_agrees(source, tmp_path, ref):
    out = quantize(source, tmp_path / "int8", log=lambda *a: None)
    model, ref_model = mistral_np.load(out), mistral_np.load(source)
    wq = model.weights["layers"][0]["wq"]
    assert isinstance(wq, Int8) and isinstance(wq.q, np.memmap)
    assert model.n_params() == ref_model.n_params()
    r = agreement(ref_model, model, ref["tokens"])
    assert r["max_rel_diff"] < 0.1 and r["top1_agreement"] >= 0.9
    cache = model.new_cache()                                          # decoding works too
    logits = model.prefill(ref["tokens"][:5], cache)
    assert np.isfinite(model.forward(np.array([int(logits[-1].argmax())]), cache)).all()


def test_quantizing_twice_is_an_error(tmp_path):
    out = quantize(TINY_HF, tmp_path / "q", log=lambda *a: None)
    with pytest.raises(ValueError, match="already quantized"):
        quantize(out, tmp_path / "qq")


def test_int8_refuses_scales_that_do_not_match_its_rows(tmp_path):
    q, s = quantize_rows(np.ones((4, 8), np.float32))
    for bad in (s[:3], s.astype(np.float64)):
        with pytest.raises(ValueError, match="not int8 rows with one float32 scale per row"):
            Int8(q, bad)
    from mistral_np.safetensors import load_file, save_file
    out = quantize(TINY_HF, tmp_path / "int8", log=lambda *a: None)
    tensors = {k: np.array(v) for k, v in load_file(out / "model.safetensors").items()}   # copies
    name = next(k for k in tensors if k.endswith("q_proj.weight_scale"))
    tensors[name] = tensors[name][:-1]                               # one scale short
    save_file(out / "model.safetensors", tensors)
    with pytest.raises(ValueError, match=f"{name[:-6]}'.*one float32 scale per row; quantize the checkpoint"):
        mistral_np.load(out)
