"""GGUF: the block dequantizers (bit-exact against the gguf package), the reader, models, bad files."""
import struct

import numpy as np
import pytest

import mistral_np
from mistral_np import Model
from mistral_np.gguf import GGUF_LAYER_NAMES, GGUFError, load_gguf, read_gguf, write_gguf
from mistral_np.quants import GGML_TYPES, GGMLTensor, random_blocks

from helpers import small_args

gguf = pytest.importorskip("gguf")      # the reference implementation (a test-only dependency)
SMOLLM2 = mistral_np.SMOLLM2_GGUF
needs_smollm2 = pytest.mark.skipif(not SMOLLM2.exists(), reason="run tools/fetch_data.py for SmolLM2's GGUF")
SIMPLE = [0, 1, 30, 8, 2, 3]            # F32, F16, BF16, Q8_0, Q4_0, Q4_1


def reference(blocks, type_id):
    return gguf.quants.dequantize(blocks.reshape(-1), gguf.GGMLQuantizationType(type_id)).reshape(len(blocks), -1)


@pytest.mark.parametrize("type_id", SIMPLE)
@pytest.mark.parametrize("n_blocks", [1, 7, 300])
def test_dequantize_bit_exact_on_valid_blocks(type_id, n_blocks):
    name, block, size, dequantize = GGML_TYPES[type_id]
    blocks = random_blocks(type_id, n_blocks, np.random.default_rng(type_id * 100 + n_blocks))
    ours = dequantize(blocks)
    assert ours.dtype == np.float32 and ours.shape == (n_blocks, block)
    np.testing.assert_array_equal(ours.view(np.uint32), reference(blocks, type_id).astype(np.float32).view(np.uint32))
    out = np.full((n_blocks, block), np.nan, np.float32)                   # the buffer path
    assert dequantize(blocks, out) is out
    np.testing.assert_array_equal(out, ours)


@pytest.mark.parametrize("type_id", SIMPLE)
def test_dequantize_bit_exact_on_random_bytes(type_id):
    """Any bytes at all, NaN and inf scales included: the same float32 bits as the reference."""
    size = GGML_TYPES[type_id][2]
    blocks = np.random.default_rng(type_id).integers(0, 256, (500, size), dtype=np.uint8)
    ours, ref = GGML_TYPES[type_id][3](blocks), reference(blocks, type_id).astype(np.float32)
    np.testing.assert_array_equal(ours, ref)      # assert_array_equal treats NaN == NaN


@needs_smollm2
def test_dequantize_real_blocks_of_smollm2():
    _, shapes, raw = read_gguf(SMOLLM2)
    seen = set()
    for name, (type_id, shape) in shapes.items():
        if type_id in seen:
            continue
        seen.add(type_id)
        t = GGMLTensor(raw[name], type_id, shape if len(shape) == 2 else (1,) + shape, name)
        rows = t[np.arange(min(64, t.shape[0]))]
        ref = reference(np.asarray(raw[name]).reshape(-1, t.type_size), type_id).reshape(t.shape)[:64]
        np.testing.assert_array_equal(rows, ref.astype(np.float32))
    assert seen == {0, 3, 8}                                            # F32 norms, Q4_1, Q8_0


@pytest.mark.parametrize("type_id", [3, 8, 30])
def test_ggml_tensor_matmul_rows_and_whole(type_id):
    rng = np.random.default_rng(1)
    rows, cols = 70, 96
    blocks = random_blocks(type_id, rows * cols // GGML_TYPES[type_id][1], rng)
    t = GGMLTensor(blocks.reshape(-1), type_id, (rows, cols))
    w = t.to_f32()
    x = rng.standard_normal((3, cols)).astype(np.float32)
    np.testing.assert_allclose(t.matmul_t(x), x @ w.T, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(t[[5, 0, 69]], w[[5, 0, 69]])
    assert t.nbytes == blocks.nbytes


# ---- whole models written as GGUF files ----

def gguf_of(model, path, type_id=0, rng=None, **meta):
    """Write `model`'s weights as GGUF (F32, or random blocks of type_id) and the Model they make."""
    a, w = model.args, model.weights
    tensors, weights = {}, {"layers": [{} for _ in range(a.n_layers)]}

    def put(name, array):
        array = np.asarray(array, np.float32)
        if array.ndim == 2 and type_id != 0 and array.shape[1] % GGML_TYPES[type_id][1] == 0:
            blocks = random_blocks(type_id, array.size // GGML_TYPES[type_id][1], rng)
            tensors[name] = (type_id, array.shape, blocks)
            return GGMLTensor(blocks.reshape(-1), type_id, array.shape).to_f32()
        tensors[name] = (0, array.shape, array.view(np.uint8).reshape(-1))
        return array

    weights["tok_embeddings"] = put("token_embd.weight", w["tok_embeddings"])
    weights["norm"] = put("output_norm.weight", w["norm"])
    weights["output"] = weights["tok_embeddings"] if a.tie_embeddings else put("output.weight", w["output"])
    for i, block in enumerate(w["layers"]):
        for k, v in GGUF_LAYER_NAMES.items():
            weights["layers"][i][k] = put(f"blk.{i}.{v}.weight", block[k])
    metadata = {"general.architecture": "llama", "llama.block_count": a.n_layers,
                "llama.context_length": a.max_seq_len, "llama.embedding_length": a.dim,
                "llama.feed_forward_length": a.hidden_dim, "llama.attention.head_count": a.n_heads,
                "llama.attention.head_count_kv": a.n_kv_heads, "llama.rope.freq_base": float(a.rope_theta),
                "llama.attention.layer_norm_rms_epsilon": float(a.norm_eps), "llama.vocab_size": a.vocab_size,
                "llama.rope.dimension_count": a.head_dim, **meta}
    write_gguf(path, metadata, tensors)
    return Model(a, weights)


@pytest.mark.parametrize("tied", [False, True])
def test_f32_gguf_gives_the_same_logits(tmp_path, tied):
    args = small_args(dim=32, head_dim=8, W=128, max_seq_len=128, tie_embeddings=tied)
    model = mistral_np.random_model(args, seed=3)
    gguf_of(model, tmp_path / "m.gguf")
    loaded = mistral_np.load(tmp_path / "m.gguf")
    assert loaded.args == args
    tokens = np.arange(20) % args.vocab_size
    np.testing.assert_array_equal(loaded.forward(tokens), model.forward(tokens))
    assert mistral_np.load(tmp_path).args == args                      # a folder holding one .gguf


@pytest.mark.parametrize("type_id", [8, 2, 3, 12, 14])
@pytest.mark.parametrize("widen", [True, False])
def test_quantized_gguf_equals_its_dequantized_weights(tmp_path, type_id, widen):
    args = small_args(dim=64, head_dim=16, hidden_dim=96, W=128, max_seq_len=128)
    if type_id >= 10:                                      # K-quants: rows of whole 256-weight super-blocks
        args = args.replace(dim=256, head_dim=64, hidden_dim=256)
    expected = gguf_of(mistral_np.random_model(args), tmp_path / "q.gguf", type_id, np.random.default_rng(0))
    loaded = load_gguf(tmp_path / "q.gguf", widen=widen)
    assert isinstance(loaded.weights["layers"][0]["wq"], np.ndarray if widen else GGMLTensor)
    tokens = np.arange(9)
    np.testing.assert_allclose(loaded.forward(tokens), expected.forward(tokens), rtol=1e-5, atol=1e-5)


def test_window_from_metadata_or_argument(tmp_path):
    args = small_args(dim=32, head_dim=8, W=128, max_seq_len=128)
    gguf_of(mistral_np.random_model(args), tmp_path / "w.gguf", **{"llama.attention.sliding_window": 16})
    assert load_gguf(tmp_path / "w.gguf").args.W == 16
    assert load_gguf(tmp_path / "w.gguf", window=8).args.W == 8


@needs_smollm2
def test_smollm2_args_and_weights():
    model = mistral_np.load(SMOLLM2, widen=False)
    a = model.args
    assert (a.dim, a.n_layers, a.n_heads, a.n_kv_heads, a.head_dim, a.hidden_dim) == (576, 30, 9, 3, 64, 1536)
    assert (a.vocab_size, a.max_seq_len, a.W, a.rope_theta, a.tie_embeddings) == (49152, 8192, 8192, 100000.0, True)
    assert model.weights["layers"][0]["wq"].dtype == "Q4_1"
    assert model.weights["tok_embeddings"].dtype == "Q8_0"
    assert model.n_params() == 134_515_008


# ---- bad files: one clear line, naming the file ----

@pytest.fixture
def tiny_gguf(tmp_path):
    args = small_args(dim=32, head_dim=8, W=128, max_seq_len=128)
    gguf_of(mistral_np.random_model(args), tmp_path / "t.gguf")
    return tmp_path / "t.gguf"


def expect_error(path, match, exc=GGUFError):
    with pytest.raises(exc, match=match) as e:
        mistral_np.load(path)
    assert "\n" not in str(e.value) and str(path.name) in str(e.value)


def test_truncated_anywhere(tiny_gguf):
    data = tiny_gguf.read_bytes()
    for n in [0, 3, 10, 30, 200, len(data) // 2, len(data) - 1]:
        tiny_gguf.write_bytes(data[:n])
        expect_error(tiny_gguf, "truncated|not a GGUF")


def test_wrong_magic_and_version(tiny_gguf):
    data = tiny_gguf.read_bytes()
    tiny_gguf.write_bytes(b"GGML" + data[4:])
    expect_error(tiny_gguf, "not a GGUF file")
    tiny_gguf.write_bytes(data[:4] + struct.pack("<I", 7) + data[8:])
    expect_error(tiny_gguf, "version 7")


def test_huge_counts(tiny_gguf):
    data = tiny_gguf.read_bytes()
    tiny_gguf.write_bytes(data[:8] + struct.pack("<Q", 2**60) + data[16:])
    expect_error(tiny_gguf, "more than")


def first_key_type_at(data):
    n = struct.unpack("<Q", data[24:32])[0]
    return 32 + n                                           # after the first key's length and bytes


def test_unknown_value_type(tiny_gguf):
    data = bytearray(tiny_gguf.read_bytes())
    at = first_key_type_at(data)
    data[at:at + 4] = struct.pack("<I", 99)
    tiny_gguf.write_bytes(bytes(data))
    expect_error(tiny_gguf, "unknown value type 99")


def rewrite(path, metadata=None, tensors=None):
    md, shapes, raw = read_gguf(path)
    md.pop("general.alignment", None)
    t = {n: (ty, s, np.array(raw[n])) for n, (ty, s) in shapes.items()}
    write_gguf(path, metadata(md) if metadata else md, tensors(t) if tensors else t)


def test_other_architecture_and_extra_tensors(tiny_gguf):
    rewrite(tiny_gguf, metadata=lambda md: {**md, "general.architecture": "gpt2"})
    expect_error(tiny_gguf, "'gpt2'")
    rewrite(tiny_gguf, metadata=lambda md: {**md, "general.architecture": "llama"},
            tensors=lambda t: {**t, "blk.0.attn_q.bias": (0, (32,), np.zeros(32, np.float32).view(np.uint8))})
    expect_error(tiny_gguf, "attn_q.bias")


def test_unsupported_tensor_type_is_named(tiny_gguf):
    data = bytearray(tiny_gguf.read_bytes())
    name = b"blk.0.attn_q.weight"
    at = data.index(name) + len(name) + 4 + 16               # after n_dims and two dims: the type
    data[at:at + 4] = struct.pack("<I", 6)                   # Q5_0
    tiny_gguf.write_bytes(bytes(data))
    expect_error(tiny_gguf, "blk.0.attn_q.weight.*Q5_0")


def test_missing_tensor_and_wrong_shape(tiny_gguf):
    rewrite(tiny_gguf, tensors=lambda t: {k: v for k, v in t.items() if k != "blk.1.ffn_up.weight"})
    expect_error(tiny_gguf, "blk.1.ffn_up.weight.*missing")
    rewrite(tiny_gguf, metadata=lambda md: {**md, "llama.feed_forward_length": 48})
    expect_error(tiny_gguf, "shape")
    rewrite(tiny_gguf, metadata=lambda md: {**md, "llama.feed_forward_length": 24, "llama.block_count": 10**9})
    expect_error(tiny_gguf, "block_count is 1000000000 but the file holds tensors of 2 blocks")


def test_misaligned_offset_and_data_past_the_end(tiny_gguf):
    data = bytearray(tiny_gguf.read_bytes())
    name = b"output_norm.weight"
    at = data.index(name) + len(name) + 4 + 8 + 4            # n_dims, one dim, type: the offset
    offset = struct.unpack("<Q", data[at:at + 8])[0]
    data[at:at + 8] = struct.pack("<Q", offset + 4)
    tiny_gguf.write_bytes(bytes(data))
    expect_error(tiny_gguf, "alignment")
    data[at:at + 8] = struct.pack("<Q", 2**40)
    tiny_gguf.write_bytes(bytes(data))
    expect_error(tiny_gguf, "ends at byte")


def test_not_a_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.gguf"):
        mistral_np.load(tmp_path / "nothing.gguf")


def test_nonfinite_scales_are_named(tmp_path):
    args = small_args(dim=256, head_dim=64, hidden_dim=256, W=128, max_seq_len=128)
    gguf_of(mistral_np.random_model(args), tmp_path / "k.gguf", 12, np.random.default_rng(0))   # Q4_K
    assert load_gguf(tmp_path / "k.gguf").args == args
    md, shapes, raw = read_gguf(tmp_path / "k.gguf")
    md.pop("general.alignment")
    t = {n: (ty, s, np.array(raw[n])) for n, (ty, s) in shapes.items()}
    t["blk.1.ffn_down.weight"][2][0:2] = np.array([np.inf], np.float16).view(np.uint8)   # d of block 0
    write_gguf(tmp_path / "k.gguf", md, t)
    expect_error(tmp_path / "k.gguf", "blk.1.ffn_down.weight.*Q4_K.*inf or NaN")


def test_repeated_names_and_overlapping_tensors(tiny_gguf):
    original = tiny_gguf.read_bytes()
    data = bytearray(original)
    a, b = b"output_norm.weight", b"blk.0.ffn_norm.weight"
    at_a = data.index(a) + len(a) + 4 + 8 + 4                 # output_norm's offset
    at_b = data.index(b) + len(b) + 4 + 8 + 4
    data[at_b:at_b + 8] = data[at_a:at_a + 8]                 # two norms at one offset
    tiny_gguf.write_bytes(bytes(data))
    expect_error(tiny_gguf, "overlaps")
    tiny_gguf.write_bytes(original.replace(b"blk.0.attn_k.weight", b"blk.0.attn_q.weight", 1))
    expect_error(tiny_gguf, "'blk.0.attn_q.weight' appears twice")


def test_writer_takes_functions_for_tensor_bytes(tmp_path):
    """Bytes given as a function are made when written; a wrong size leaves no file, temporary or not."""
    rng = np.random.default_rng(0)
    blocks = random_blocks(12, 4, rng)
    calls = []
    path = write_gguf(tmp_path / "lazy.gguf", {"general.architecture": "llama"},
                      {"a": (12, (2, 512), lambda: calls.append(1) or blocks.reshape(-1))})
    assert calls == [1]
    _, shapes, raw = read_gguf(path)
    assert shapes == {"a": (12, (2, 512))} and np.array_equal(raw["a"], blocks.reshape(-1))
    with pytest.raises(ValueError, match="b: 288 bytes do not hold Q4_K"):
        write_gguf(tmp_path / "bad.gguf", {}, {"b": (12, (3, 512), lambda: blocks[:2].reshape(-1))})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lazy.gguf"]


@pytest.mark.parametrize("type_id", [0, 1, 30])
def test_nonfinite_values_are_counted_from_their_bits(type_id):
    """F32 / F16 / BF16: inf and NaN are found from the exponent bits, without widening the
    tensor; the count equals what widening would find, on random bytes (which hold plenty of both)."""
    from mistral_np.quants import nonfinite_blocks
    size = GGML_TYPES[type_id][2]
    blocks = np.random.default_rng(type_id).integers(0, 256, (20_000, size), dtype=np.uint8)
    widened = GGML_TYPES[type_id][3](blocks)
    assert nonfinite_blocks(type_id, blocks) == int((~np.isfinite(widened)).sum()) > 0
