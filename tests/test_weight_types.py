"""One protocol for every weight type: a model loaded from int8 or GGUF blocks saves and loads back."""
import numpy as np
import pytest

import mistral_np
from mistral_np.layers import as_f32, is_array
from mistral_np.quantize import quantize

from helpers import small_args
from test_gguf import gguf_of


def same_logits(a, b, tokens, atol=0.0):
    np.testing.assert_allclose(a.forward(tokens), b.forward(tokens), rtol=0, atol=atol)


def test_save_of_an_int8_model_round_trips(tmp_path):
    q = mistral_np.load(quantize(mistral_np.DEFAULT_MODEL, tmp_path / "q", log=lambda *a: None))
    assert not is_array(q.weights["layers"][0]["wq"])
    back = mistral_np.load(mistral_np.save(q, tmp_path / "f32", dtype="F32"))
    same_logits(q, back, np.arange(12), atol=1e-4)


@pytest.mark.parametrize("layout", ["hf", "mistral"])
def test_gguf_blocks_convert_to_safetensors(tmp_path, layout):
    args = small_args(dim=64, head_dim=16, hidden_dim=96, W=128, max_seq_len=128)
    gguf_of(mistral_np.random_model(args), tmp_path / "m.gguf", 3, np.random.default_rng(0))   # Q4_1
    model = mistral_np.load(tmp_path / "m.gguf", widen=False)
    back = mistral_np.load(mistral_np.save(model, tmp_path / layout, layout=layout, dtype="F32"))
    same_logits(model, back, np.arange(20), atol=1e-4)
    np.testing.assert_array_equal(as_f32(model.weights["layers"][1]["w2"]), as_f32(back.weights["layers"][1]["w2"]))
