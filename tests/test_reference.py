"""Parity with transformers 5.24 on the tiny fixture model (tests/fixtures/README.md)."""
import json
import shutil

import numpy as np
import pytest

import mistral_np
from mistral_np import checkpoint
from mistral_np.bf16 import BF16

from helpers import FIXTURES, TINY_BF16, TINY_HF, naive_forward

TOL = 1e-4      # float32 against float32, different summation order: measured about 5e-6


def max_diff(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def test_fixture_is_what_the_readme_says(ref, tiny_model):
    a = tiny_model.args
    assert (a.vocab_size, a.dim, a.hidden_dim, a.n_layers, a.n_heads, a.n_kv_heads, a.head_dim, a.W) == \
        (96, 64, 160, 2, 4, 2, 16, 6)
    assert a.rope_theta == 10000.0 and a.rope_layout == "halves" and not a.tie_embeddings
    assert ref["tokens"].shape == (24,) and ref["tokens"][0] == 1
    assert ref["logits_f32"].shape == (24, 96) and ref["greedy_logits"].shape == (28, 96)
    info = json.loads((FIXTURES / "reference.json").read_text())
    assert info["transformers"].startswith("5.24")


def test_float32_logits_match_transformers(ref, tiny_model):
    assert max_diff(tiny_model.forward(ref["tokens"]), ref["logits_f32"]) < TOL


def test_naive_model_matches_transformers(ref, tiny_model):
    """The tests' own float64 model agrees too, so it is a fair judge for the other tests."""
    logits, _, _ = naive_forward(tiny_model.args, tiny_model.weights, ref["tokens"])
    assert max_diff(logits, ref["logits_f32"]) < TOL


def test_the_window_is_exercised(ref, tiny_model):
    """Without the window the logits differ (by 5.85 in transformers), but not in the first W rows."""
    logits = tiny_model.forward(ref["tokens"])
    assert max_diff(logits, ref["logits_no_window"]) > 1.0
    assert max_diff(logits[:6], ref["logits_no_window"][:6]) < TOL


def test_sliding_window_null_means_full_attention(ref, tmp_path):
    """A config with "sliding_window": null loads as full attention: transformers' no-window logits."""
    d = tmp_path / "no-window"
    shutil.copytree(TINY_HF, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["sliding_window"] = None
    (d / "config.json").write_text(json.dumps(cfg))
    model = mistral_np.load(d)
    assert model.args.W == 64                   # max_position_embeddings
    assert max_diff(model.forward(ref["tokens"]), ref["logits_no_window"]) < TOL


@pytest.mark.parametrize("widen", ["auto", False, True])
def test_bf16_sharded_checkpoint(ref, widen):
    model = mistral_np.load(TINY_BF16, widen=widen)
    wq = model.weights["layers"][0]["wq"]
    if widen is False:
        assert isinstance(wq, BF16)             # stays memory-mapped, widened block-wise per use
        assert isinstance(wq.bits, np.memmap)
    else:
        assert isinstance(wq, np.ndarray) and wq.dtype == np.float32   # 197 kB: widened at load
    assert max_diff(model.forward(ref["tokens"]), ref["logits_bf16w"]) < TOL
    assert max_diff(model.forward(ref["tokens"]), ref["logits_f32"]) > 1e-3   # bf16 really differs


def test_big_bf16_checkpoints_stay_memory_mapped(ref, monkeypatch):
    """widen="auto" keeps bf16 mapped above the threshold (512 MiB); pretend the fixture is big."""
    monkeypatch.setattr(checkpoint, "WIDEN_AT_LOAD_BYTES", 0)
    model = mistral_np.load(TINY_BF16)
    assert isinstance(model.weights["output"], BF16)
    assert max_diff(model.forward(ref["tokens"]), ref["logits_bf16w"]) < TOL


def test_bf16_shards_hold_the_rounded_float32_weights(tiny_model):
    from mistral_np.bf16 import round_to_bf16
    bf = mistral_np.load(TINY_BF16, widen=True)
    for key in ("wq", "wk", "w2", "attention_norm"):
        np.testing.assert_array_equal(bf.weights["layers"][1][key],
                                      round_to_bf16(tiny_model.weights["layers"][1][key]))


def test_greedy_generation_matches_transformers(ref, tiny_model):
    prompt = ref["tokens"][:8]
    tokens = list(mistral_np.generate_ids(tiny_model, prompt, max_new_tokens=20, stop_at_eos=False))
    np.testing.assert_array_equal(tokens, ref["greedy_tokens"])
    # the same tokens whatever the chunk size of the prompt's pre-fill
    for chunk_size in (1, 3, 5, 8):
        again = list(mistral_np.generate_ids(tiny_model, prompt, 20, chunk_size=chunk_size, stop_at_eos=False))
        assert again == tokens


def test_step_by_step_decode_matches_transformers(ref, tiny_model):
    """Row t of greedy_logits predicts token t + 1 of prompt + greedy tokens (28 > 4 W)."""
    seq = np.concatenate([ref["tokens"][:8], ref["greedy_tokens"]])
    cache = tiny_model.new_cache()
    steps = np.concatenate([tiny_model.forward(seq[t:t + 1], cache) for t in range(len(seq))])
    assert max_diff(steps, ref["greedy_logits"]) < TOL
    cache = tiny_model.new_cache()        # pre-fill 8, then decode
    rows = [tiny_model.prefill(seq[:8], cache, chunk_size=8)]
    rows += [tiny_model.forward(seq[t:t + 1], cache) for t in range(8, 28)]
    assert max_diff(np.concatenate(rows), ref["greedy_logits"]) < TOL


@pytest.mark.parametrize("layout", ["mistral", "hf"])
def test_rewritten_checkpoint_gives_the_same_logits(ref, tiny_model, tmp_path, layout):
    """Saved in Mistral's layout (params.json + consolidated.safetensors, q/k rows un-permuted to
    the pairs layout) or back in Hugging Face's, the weights give the same logits."""
    out = checkpoint.save(tiny_model, tmp_path / layout, layout=layout, dtype="F32")
    names = sorted(p.name for p in out.iterdir())
    if layout == "mistral":
        assert names == ["consolidated.safetensors", "params.json"]
    else:
        assert names == ["config.json", "model.safetensors"]
    model = mistral_np.load(out)
    assert model.args.rope_layout == ("pairs" if layout == "mistral" else "halves")
    assert model.args.replace(rope_layout="halves") == tiny_model.args
    assert max_diff(model.forward(ref["tokens"]), ref["logits_f32"]) < TOL
    if layout == "mistral":
        header = {n for n, _, _, _ in checkpoint.describe(out)}
        assert "layers.0.attention.wq.weight" in header and "tok_embeddings.weight" in header
        assert not np.array_equal(model.weights["layers"][0]["wq"], tiny_model.weights["layers"][0]["wq"])
    # In bf16 the rounding is the same as the fixture's bf16 shards: their logits, tightly.
    model = mistral_np.load(checkpoint.save(tiny_model, tmp_path / f"{layout}-bf16", layout=layout))
    assert max_diff(model.forward(ref["tokens"]), ref["logits_bf16w"]) < TOL
