"""Loading checkpoints and configs, and every kind of bad input: each a clear error naming the
file or parameter at fault, never a deep NumPy traceback."""
import json
import shutil
import struct

import numpy as np
import pytest

import mistral_np
from mistral_np import MISTRAL_7B, checkpoint, random_model
from mistral_np.config import from_hf_config, from_params, read_config, to_hf_config, to_params
from mistral_np.safetensors import load_file, read_header, save_file

from helpers import TINY_BF16, TINY_HF, edit_config, small_args


@pytest.fixture
def tiny_copy(tmp_path):
    """A scratch copy of the float32 fixture checkpoint, to damage."""
    d = tmp_path / "tiny"
    shutil.copytree(TINY_HF, d)
    return d


# --- folders and configs --------------------------------------------------------------------------

def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist") as e:
        mistral_np.load(tmp_path / "nowhere")
    assert "nowhere" in str(e.value) and "config.json" in str(e.value)


def test_directory_without_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither config.json .* nor params.json") as e:
        mistral_np.load(tmp_path)
    assert str(tmp_path) in str(e.value)


def test_config_that_is_not_json(tiny_copy):
    (tiny_copy / "config.json").write_text("{ not json")
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        mistral_np.load(tiny_copy)


def test_config_missing_a_key(tiny_copy):
    cfg = json.loads((tiny_copy / "config.json").read_text())
    del cfg["num_hidden_layers"]
    (tiny_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="config.json: missing required key 'num_hidden_layers'"):
        mistral_np.load(tiny_copy)


def test_config_with_impossible_heads(tiny_copy):
    edit_config(tiny_copy, num_key_value_heads=3)
    with pytest.raises(ValueError, match=r"n_heads \(4\) must be a multiple of n_kv_heads \(3\)"):
        mistral_np.load(tiny_copy)


def test_missing_weights(tiny_copy):
    (tiny_copy / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"holds no weights \(\*\.safetensors\)") as e:
        mistral_np.load(tiny_copy)
    assert str(tiny_copy) in str(e.value)


def test_shape_that_disagrees_with_the_config(tiny_copy):
    edit_config(tiny_copy, intermediate_size=128)
    with pytest.raises(ValueError, match=r"'model.layers.0.mlp.gate_proj.weight' has shape \(160, 64\) "
                                         r"but the config implies \(128, 64\)") as e:
        mistral_np.load(tiny_copy)
    assert str(tiny_copy) in str(e.value)


def test_missing_tensor(tiny_copy):
    tensors = {k: np.array(v) for k, v in load_file(TINY_HF / "model.safetensors").items()}
    del tensors["model.layers.1.self_attn.v_proj.weight"]
    save_file(tiny_copy / "model.safetensors", tensors)
    with pytest.raises(KeyError) as e:
        mistral_np.load(tiny_copy)
    msg = e.value.args[0]
    assert "'model.layers.1.self_attn.v_proj.weight' is missing" in msg and str(tiny_copy) in msg


def test_index_listing_a_missing_shard(tmp_path):
    d = tmp_path / "sharded"
    shutil.copytree(TINY_BF16, d)
    (d / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="lists shard.* model-00002-of-00002.safetensors") as e:
        mistral_np.load(d)
    assert "model.safetensors.index.json" in str(e.value)


def test_corrupt_index(tmp_path):
    d = tmp_path / "sharded"
    shutil.copytree(TINY_BF16, d)
    (d / "model.safetensors.index.json").write_text('{"metadata": {}}')
    with pytest.raises(ValueError, match="model.safetensors.index.json: not a valid safetensors index"):
        mistral_np.load(d)


# --- damaged safetensors files --------------------------------------------------------------------

def test_truncated_safetensors(tiny_copy):
    path = tiny_copy / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated") as e:
        mistral_np.load(tiny_copy)
    assert str(path) in str(e.value)
    path.write_bytes(data[:5])
    with pytest.raises(ValueError, match="only 5 bytes, too short") as e:
        mistral_np.load(tiny_copy)
    assert str(path) in str(e.value)


def test_truncated_inside_the_header(tiny_copy):
    path = tiny_copy / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"header length \d+ does not fit the file's 100 bytes"):
        mistral_np.load(tiny_copy)


def test_corrupt_header_json(tiny_copy):
    path = tiny_copy / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[8:12] = b"#!%@"                          # the JSON header starts at byte 8
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="the JSON header is corrupt") as e:
        mistral_np.load(tiny_copy)
    assert str(path) in str(e.value)


def write_raw(path, header, data=b""):
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def test_unknown_dtype_in_header(tmp_path):
    path = write_raw(tmp_path / "x.safetensors", {"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}},
                     b"\0\0")
    with pytest.raises(ValueError, match="tensor 'w' has dtype 'F8_E4M3'.*not support") as e:
        load_file(path)
    assert "x.safetensors" in str(e.value)


def test_header_length_bigger_than_file(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", 10_000) + b"{}")
    with pytest.raises(ValueError, match="header length 10000 does not fit the file's 10 bytes") as e:
        read_header(path)
    assert "x.safetensors" in str(e.value)


def test_offsets_that_disagree_with_the_shape(tmp_path):
    path = write_raw(tmp_path / "x.safetensors", {"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
                     bytes(12))
    with pytest.raises(ValueError, match=r"tensor 'w' has offsets \[0, 8\) for shape \[3\]"):
        load_file(path)


def test_header_entry_without_fields(tmp_path):
    path = write_raw(tmp_path / "x.safetensors", {"w": {"dtype": "F32"}})
    with pytest.raises(ValueError, match="'w' lacks dtype/shape/data_offsets"):
        load_file(path)


def test_missing_safetensors_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.safetensors: file not found"):
        load_file(tmp_path / "nothing.safetensors")


# --- configs in the wild --------------------------------------------------------------------------

MISTRAL_7B_HF_CONFIG = {   # the numbers of Mistral-7B-v0.1's config.json (transformers 4.x form)
    "architectures": ["MistralForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
    "max_position_embeddings": 32768, "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096,
    "tie_word_embeddings": False, "vocab_size": 32000}


def test_mistral_7b_config_forms():
    a = from_hf_config(MISTRAL_7B_HF_CONFIG)     # no head_dim: 4096 / 32 = 128
    assert a == MISTRAL_7B.replace(max_seq_len=32768, rope_layout="halves")
    nested = {k: v for k, v in MISTRAL_7B_HF_CONFIG.items() if k != "rope_theta"}
    nested.update(head_dim=128, rope_parameters={"rope_theta": 1e6, "rope_type": "default"})
    assert from_hf_config(nested).rope_theta == 1e6            # transformers 5.x form
    params = {"dim": 4096, "n_layers": 32, "head_dim": 128, "hidden_dim": 14336, "n_heads": 32,
              "n_kv_heads": 8, "norm_eps": 1e-5, "vocab_size": 32000, "sliding_window": 4096,
              "max_seq_len": 8192}                            # no rope_theta: 10000 for v0.1
    assert from_params(params) == MISTRAL_7B
    assert from_params(dict(params, sliding_window=None)).W == 8192
    assert from_hf_config(to_hf_config(MISTRAL_7B)) == MISTRAL_7B.replace(rope_layout="halves")
    assert from_params(to_params(MISTRAL_7B)) == MISTRAL_7B


def test_bad_model_args():
    with pytest.raises(ValueError, match="head_dim must be even"):
        small_args(head_dim=3)
    with pytest.raises(ValueError, match="W must be a positive integer"):
        small_args(W=0)
    with pytest.raises(ValueError, match="rope_layout must be"):
        small_args(rope_layout="interleaved")


def test_read_config_of_fixture():
    a = read_config(TINY_HF)
    assert (a.dim, a.W, a.rope_theta, a.max_seq_len) == (64, 6, 10000.0, 64)


# --- writing and reading back ---------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["hf", "mistral"])
def test_save_load_round_trip_is_exact_in_f32(tmp_path, layout):
    model = random_model(small_args(W=3), seed=4)
    back = mistral_np.load(checkpoint.save(model, tmp_path, layout=layout, dtype="F32"))
    tokens = np.arange(15) % 23
    same_layout = back.args.rope_layout == model.args.rope_layout
    assert same_layout == (layout == "mistral")
    if same_layout:
        np.testing.assert_array_equal(back.weights["layers"][1]["wk"], model.weights["layers"][1]["wk"])
    np.testing.assert_allclose(back.forward(tokens), model.forward(tokens), rtol=0, atol=1e-5)
    assert back.n_params() == model.n_params()


@pytest.mark.parametrize("first, second", [("hf", "hf"), ("mistral", "hf"), ("hf", "mistral")])
def test_save_over_the_checkpoint_it_was_loaded_from(tmp_path, first, second):
    """The weights are memory-mapped from the folder being replaced: the new files are written
    under temporary names and renamed, and the other layout's files go, so nothing is lost or mixed."""
    model = random_model(small_args(W=3), seed=5)
    d = checkpoint.save(model, tmp_path / "m", layout=first, dtype="F32")
    (d / "tokenizer.model").write_bytes(b"kept")
    loaded = mistral_np.load(d)                                  # memory-mapped from d
    checkpoint.save(loaded, d, layout=second, dtype="F32")
    names = sorted(p.name for p in d.iterdir())
    assert names == sorted([{"hf": "config.json", "mistral": "params.json"}[second], "tokenizer.model",
                            {"hf": "model.safetensors", "mistral": "consolidated.safetensors"}[second]])
    tokens = np.arange(11) % 23
    np.testing.assert_allclose(mistral_np.load(d).forward(tokens), model.forward(tokens), rtol=0, atol=1e-5)


def test_tied_embeddings_round_trip(tmp_path):
    model = random_model(small_args(tie_embeddings=True), seed=2)
    assert model.weights["output"] is model.weights["tok_embeddings"]
    out = checkpoint.save(model, tmp_path, layout="hf", dtype="F32")
    names = {n for n, _, _, _ in checkpoint.describe(out)}
    assert "lm_head.weight" not in names and "model.embed_tokens.weight" in names
    back = mistral_np.load(out)
    assert back.args.tie_embeddings
    np.testing.assert_allclose(back.forward(np.arange(9)), model.forward(np.arange(9)), rtol=0, atol=1e-5)
    small = small_args()
    expected = 2 * 23 * 16 + 16 + 2 * (2 * 16 + 16 * 16 * 2 + 16 * 8 * 2 + 3 * 16 * 24)
    assert random_model(small).n_params() == expected
    assert model.n_params() == expected - 23 * 16


def test_describe_and_checkpoint_files_of_sharded_fixture():
    files = checkpoint.checkpoint_files(TINY_BF16)
    assert [f.name for f in files] == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    rows = checkpoint.describe(TINY_BF16)
    assert len(rows) == 2 + 1 + 2 * 9                   # embed, norm, lm_head + 9 per layer
    assert {dtype for _, dtype, _, _ in rows} == {"BF16"}
    assert ("lm_head.weight", "BF16", (96, 64)) in [r[:3] for r in rows]
    index = json.loads((TINY_BF16 / "model.safetensors.index.json").read_text())
    assert sum(t.nbytes for t in checkpoint.read_tensors(TINY_BF16).values()) == index["metadata"]["total_size"]


def test_hf_names():
    assert checkpoint.hf_name("layers.12.feed_forward.w1.weight") == "model.layers.12.mlp.gate_proj.weight"
    assert checkpoint.hf_name("layers.0.feed_forward.w3.weight") == "model.layers.0.mlp.up_proj.weight"
    assert checkpoint.hf_name("output.weight") == "lm_head.weight"
    shapes = checkpoint.expected_shapes(MISTRAL_7B)
    assert shapes["layers.31.attention.wk.weight"] == (1024, 4096)
    assert sum(int(np.prod(s)) for s in shapes.values()) == 7_241_732_096
