"""Real checkpoints go wrong in a few typical ways; each must say which file and what to do.

Small copies of the bf16 sharded fixture (the layout Mistral-7B-v0.1 is published in) are broken
on purpose in tmp_path. tests/test_loading.py covers the single-file and header-level cases.
"""
import os
import shutil

import pytest

import mistral_np

from helpers import TINY_BF16, edit_config

SHARD1, SHARD2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"


@pytest.fixture
def sharded(tmp_path):
    d = tmp_path / "model"
    shutil.copytree(TINY_BF16, d)
    return d


def error_of(d, kind):
    with pytest.raises(kind) as e:
        mistral_np.load(d)
    return e.value.args[0] if isinstance(e.value, KeyError) else str(e.value)


def test_directory_without_weights(sharded):
    for f in sharded.glob("*.safetensors*"):
        f.unlink()
    msg = error_of(sharded, FileNotFoundError)
    assert str(sharded) in msg and "holds no weights" in msg and "huggingface-cli download" in msg


def test_only_pytorch_pickles(sharded):
    for f in sharded.glob("*.safetensors*"):
        f.unlink()
    (sharded / "pytorch_model.bin").write_bytes(b"\x80\x02not really a pickle")
    msg = error_of(sharded, FileNotFoundError)
    assert "found pytorch_model.bin" in msg and "download" in msg


def test_shard_listed_in_the_index_but_missing(sharded):
    (sharded / SHARD2).unlink()
    msg = error_of(sharded, FileNotFoundError)
    assert "model.safetensors.index.json lists shard(s) " + SHARD2 in msg
    assert "download every model-*.safetensors file" in msg


def test_truncated_shard(sharded):
    shard = sharded / SHARD2
    os.truncate(shard, shard.stat().st_size - 100)     # an interrupted download
    msg = error_of(sharded, ValueError)
    assert msg.startswith(str(shard)) and "truncated; download it again" in msg


def test_git_lfs_pointer_instead_of_weights(sharded):
    (sharded / SHARD1).write_text("version https://git-lfs.github.com/spec/v1\n"
                                  "oid sha256:0123\nsize 9942981696\n")
    msg = error_of(sharded, ValueError)
    assert msg.startswith(str(sharded / SHARD1)) and "Git LFS pointer" in msg and "git lfs pull" in msg


def test_config_that_disagrees_with_the_tensors(sharded):
    edit_config(sharded, intermediate_size=128)        # the weights have 160
    msg = error_of(sharded, ValueError)
    assert msg.startswith(str(sharded / SHARD1))       # the shard that holds the tensor
    assert "'model.layers.0.mlp.gate_proj.weight' has shape (160, 64)" in msg
    assert f"the config implies (128, 64); {sharded / 'config.json'} does not match these weights" in msg
    assert "use the one that came with them" in msg


def test_config_with_more_layers_than_the_weights(sharded):
    edit_config(sharded, num_hidden_layers=3)
    msg = error_of(sharded, KeyError)
    assert f"{sharded / 'config.json'} says 3 layers but the weights hold 2" in msg
    assert "a shard is missing, or the config belongs to another model" in msg


def test_config_of_the_other_layout(tmp_path):
    """Mistral-layout weights (consolidated.safetensors) beside a Hugging Face config.json."""
    model = mistral_np.load(TINY_BF16)
    d = mistral_np.save(model, tmp_path / "m", layout="mistral")
    shutil.copy(TINY_BF16 / "config.json", d)
    (d / "params.json").rename(tmp_path / "params.json")
    msg = error_of(d, KeyError)
    assert "Mistral-layout names (e.g. 'tok_embeddings.weight') but the config is config.json" in msg
    assert "put the params.json that came with these weights beside them" in msg


def test_cli_prints_the_message_not_a_traceback(sharded, capsys):
    from mistral_np.__main__ import main
    (sharded / SHARD2).unlink()
    assert main(["generate", "Hi", "--model", str(sharded)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and SHARD2 in err and "Traceback" not in err
