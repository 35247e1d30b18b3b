"""tools/make_7b_shaped_checkpoint.py without writing 14.5 GB: the shard split, the rounding, the one
safetensors header writer (shared with save_file and quantize), the Q4_K_M GGUF layout."""
from concurrent.futures import ThreadPoolExecutor
import importlib.util

import numpy as np
import pytest

import mistral_np
from mistral_np import MISTRAL_7B
from mistral_np.bf16 import f32_to_bf16_bits
from mistral_np.checkpoint import hf_name
from mistral_np.gguf import read_gguf
from mistral_np.quantize import INT8_METADATA, _write_int8
from mistral_np.quants import GGMLTensor, row_bytes
from mistral_np.safetensors import header_bytes, save_file
from mistral_np.weights import expected_shapes

from helpers import REPO

spec = importlib.util.spec_from_file_location("make7b", REPO / "tools" / "make_7b_shaped_checkpoint.py")
make7b = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make7b)


def test_split_matches_the_published_shards():
    sizes = dict.fromkeys(make7b.SHARDS, 0)
    for name, shape in expected_shapes(MISTRAL_7B).items():
        sizes[make7b.shard_of(name)] += 2 * int(np.prod(shape))
    assert list(sizes.values()) == [9_942_958_080, 4_540_506_112]       # 9.94 GB and 4.54 GB
    assert sum(sizes.values()) == make7b.TOTAL_SIZE == 14_483_464_192
    assert make7b.shard_of("layers.22.attention.wo.weight") == make7b.SHARDS[0]
    assert make7b.shard_of("layers.22.feed_forward.w1.weight") == make7b.SHARDS[1]


def test_rounding_agrees_with_the_library_away_from_ties():
    x = np.random.default_rng(0).standard_normal(100_000).astype(np.float32) * 0.02
    x = x[(x.view(np.uint32) & 0xFFFF) != 0x8000]      # exact ties: the tool rounds them away from 0
    np.testing.assert_array_equal(make7b.to_bf16_bits(x.copy()), f32_to_bf16_bits(x))


def test_shard_header_gives_the_published_file_size():
    tensors = sorted((hf_name(b), "BF16", s) for b, s in expected_shapes(MISTRAL_7B).items()
                     if make7b.shard_of(b) == make7b.SHARDS[0])
    head, data_bytes = header_bytes(tensors, {"format": "pt"})
    assert (len(head), data_bytes) == (23_616, 9_942_958_080)       # 9,942,981,696 bytes, as published


def test_save_file_the_int8_writer_and_this_tool_write_one_header(tmp_path):
    """All three writers take their header from safetensors.header_bytes."""
    rng = np.random.default_rng(0)
    w, norm = rng.standard_normal((4, 6)).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    entries = [("a.norm", "BF16", (6,)), ("b.weight", "BF16", (4, 6))]
    head, data_bytes = header_bytes(entries, {"format": "pt"})
    save_file(tmp_path / "s.safetensors", {"a.norm": norm, "b.weight": w}, {"format": "pt"}, dtype="BF16")
    with ThreadPoolExecutor(1) as pool:
        make7b.write_file(tmp_path / "t.safetensors", [("a.norm", "norm.weight", (6,)),
                          ("b.weight", "layers.0.feed_forward.w1.weight", (4, 6))], 0, "hf", pool,
                          make7b.Progress(data_bytes))
    for name in ("s", "t"):
        raw = (tmp_path / f"{name}.safetensors").read_bytes()
        assert raw[:len(head)] == head and len(raw) == len(head) + data_bytes
    _write_int8({"b.weight": w, "a.norm": norm}, tmp_path / "q.safetensors")
    head, data_bytes = header_bytes([("a.norm", "F32", (6,)), ("b.weight", "I8", (4, 6)),
                                     ("b.weight_scale", "F32", (4,))], INT8_METADATA)
    raw = (tmp_path / "q.safetensors").read_bytes()
    assert raw[:len(head)] == head and len(raw) == len(head) + data_bytes


# ---- --format gguf: a llama.cpp Q4_K_M file ----

def test_q4_k_m_types_follow_llama_cpp():
    layout = make7b.gguf_layout(MISTRAL_7B)
    types = {name: t for name, t, _ in layout}
    assert len(layout) == 291 and list(types)[0] == "token_embd.weight" and list(types)[-1] == "output.weight"
    counts = {t: list(types.values()).count(t) for t in set(types.values())}
    assert counts == {make7b.Q4_K: 193, make7b.Q6_K: 33, make7b.F32: 65}
    more_bits = [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]    # llama.cpp's use_more_bits, 32 layers
    for kind in ("attn_v", "ffn_down"):
        assert [i for i in range(32) if types[f"blk.{i}.{kind}.weight"] == make7b.Q6_K] == more_bits
    assert types["output.weight"] == make7b.Q6_K and types["token_embd.weight"] == make7b.Q4_K
    assert all(types[f"blk.{i}.{k}.weight"] == make7b.Q4_K for i in range(32)
               for k in ("attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"))
    total = sum(int(np.prod(s[:-1])) * row_bytes(t, s[-1]) for _, t, s in layout)
    assert total == 4_367_704_064         # with ~0.7 MB of metadata: the 4.37 GB such files are listed at


def test_small_gguf_loads_memory_mapped_with_the_mistral_tokenizer(tmp_path):
    if not (REPO / "data" / "mistral-tokenizer" / "tokenizer.model").is_file():
        pytest.skip("data/mistral-tokenizer/tokenizer.model is absent (python tools/fetch_data.py fetches it)")
    out = tmp_path / "small.gguf"
    make7b.main(["--format", "gguf", "--layers", "8", "--out", str(out)])        # dim 256, 8 layers
    metadata, shapes, raw = read_gguf(out)
    assert metadata["general.file_type"] == 15 and metadata["tokenizer.ggml.model"] == "llama"
    assert metadata["llama.block_count"] == 8 and len(metadata["tokenizer.ggml.tokens"]) == 32000
    assert {name: t for name, (t, _) in shapes.items()} == {n: t for n, t, _ in make7b.gguf_layout(
        MISTRAL_7B.replace(dim=256, head_dim=32, n_heads=8, n_kv_heads=2, hidden_dim=512, n_layers=8))}
    model = mistral_np.load(out, widen=False, window=4096)
    w = model.weights
    assert isinstance(w["layers"][0]["wq"], GGMLTensor) and isinstance(w["layers"][0]["wq"].raw.base, np.memmap)
    assert (w["output"].dtype, w["layers"][0]["wv"].dtype, w["layers"][4]["wv"].dtype,
            w["layers"][3]["w2"].dtype, w["tok_embeddings"].dtype) == ("Q6_K", "Q6_K", "Q4_K", "Q6_K", "Q4_K")
    assert model.args.W == 4096
    tok = mistral_np.load_tokenizer(out)
    ids = tok.encode("The capital of France is")
    assert ids == [1, 415, 5565, 302, 4843, 349]
    cache = model.new_cache()
    assert np.isfinite(model.forward(np.array(ids), cache)).all()
    assert np.isfinite(model.forward(np.array([ids[-1]]), cache)).all()          # decode: kmatmul
    again = tmp_path / "again.gguf"
    make7b.main(["--format", "gguf", "--layers", "8", "--out", str(again)])
    assert again.read_bytes() == out.read_bytes()                                  # per-tensor seeds
    assert not list(tmp_path.glob("*.tmp"))
