"""Broken and hostile inputs: each ends in one clear line (the file and the problem), never in a
traceback, a hang, a silently wrong answer or lost data. Small copies of the fixtures are broken
on purpose in tmp_path; the sources are checked to be unchanged where a command could touch them.
"""
from contextlib import contextmanager
import hashlib
import os
import shutil
import signal

import numpy as np
import pytest

import mistral_np
from mistral_np.quantize import quantize

from helpers import TINY_BF16, TINY_HF

QUIET = dict(log=lambda *a: None)


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def hf(tmp_path):
    d = tmp_path / "model"
    shutil.copytree(TINY_HF, d)
    return d


@pytest.fixture
def sharded(tmp_path):
    d = tmp_path / "sharded"
    shutil.copytree(TINY_BF16, d)
    return d


@contextmanager
def within(seconds=10):
    """Fail instead of hanging: a blocked open() or read() is interrupted by the alarm."""
    def timeout(*a):
        raise TimeoutError(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def one_line(e):
    msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    assert "\n" not in msg, msg
    return msg


# 1. quantize never writes over its input and never leaves a stale or partial checkpoint.

@pytest.mark.parametrize("where", ["same", "symlink", "inside", "dot"])
def test_quantize_refuses_to_write_into_the_model(hf, tmp_path, where):
    before = digest(hf)
    out = {"same": hf, "inside": hf / "int8", "dot": hf / "sub" / ".."}.get(where)
    if where == "symlink":
        out = tmp_path / "link"
        out.symlink_to(hf)
    with pytest.raises(ValueError, match="model folder") as e:
        quantize(hf, out, **QUIET)
    assert str(out) in one_line(e.value) and digest(hf) == before
    assert not (hf / "int8").exists()


def test_quantize_refuses_a_non_empty_folder_without_force(hf, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty; .* --force") as e:
        quantize(hf, out, **QUIET)
    one_line(e.value)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    quantize(hf, out, force=True, **QUIET)
    assert (out / "notes.txt").read_text() == "mine"                 # only checkpoint files replaced
    assert mistral_np.load(out).weights["layers"][0]["wq"].dtype == "int8"


def test_quantize_over_a_sharded_checkpoint_leaves_no_stale_index(sharded, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(sharded, out)
    quantize(TINY_HF, out, force=True, **QUIET)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "generation_config.json",
                                                     "model.safetensors"]
    assert mistral_np.load(out).weights["layers"][0]["wq"].dtype == "int8"


def test_quantize_interrupted_leaves_nothing_behind(hf, tmp_path, monkeypatch):
    import mistral_np.quantize as qmod
    out = tmp_path / "out"
    quantize(hf, out, **QUIET)
    before = digest(out)

    def fail(*a):
        raise MemoryError("simulated")
    monkeypatch.setattr(qmod, "quantize_rows", fail)
    with pytest.raises(MemoryError):
        quantize(hf, out, force=True, **QUIET)
    assert digest(out) == before and not any(p.name.startswith(".") for p in out.iterdir())


def test_quantize_cli_refuses_out_equal_to_model(hf, capsys):
    from mistral_np.__main__ import main
    before = digest(hf)
    assert main(["quantize", "--model", str(hf), "--out", str(hf)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and digest(hf) == before


# 2. A FIFO, a folder or a device where a file should be: one line naming it, never a hang.

@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "tokenizer.model",
                                  "model.safetensors.index.json"])
@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_non_regular_files_are_refused(hf, name, kind):
    target = hf / name
    target.unlink(missing_ok=True)
    os.mkfifo(target) if kind == "fifo" else target.mkdir()
    with within(10), pytest.raises(ValueError) as e:
        mistral_np.load_tokenizer(hf) if name == "tokenizer.model" else mistral_np.load(hf)
    msg = one_line(e.value)
    assert msg.startswith(str(target)) and "not a regular file" in msg
    assert ("FIFO" if kind == "fifo" else "folder") in msg


def test_a_link_to_a_regular_file_is_fine(hf, tmp_path):
    (hf / "model.safetensors").rename(tmp_path / "elsewhere.safetensors")
    (hf / "model.safetensors").symlink_to(tmp_path / "elsewhere.safetensors")
    assert mistral_np.load(hf).args.n_layers == 2


def test_device_as_weights_is_refused(hf):
    (hf / "model.safetensors").unlink()
    (hf / "model.safetensors").symlink_to("/dev/zero")
    with within(10), pytest.raises(ValueError, match="a device or socket, not a regular file"):
        mistral_np.load(hf)


# 3. safetensors headers: offsets tile the data exactly; every JSON type checked.

def raw_safetensors(path, header, data=b""):
    import json
    import struct
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def f32(shape, begin, end):
    return {"dtype": "F32", "shape": shape, "data_offsets": [begin, end]}


BAD_HEADERS = {
    "overlap": ({"a": f32([2], 0, 8), "b": f32([2], 4, 12)}, 12),
    "gap": ({"a": f32([2], 0, 8), "b": f32([2], 12, 20)}, 20),
    "not from 0": ({"a": f32([2], 4, 12)}, 12),
    "extra bytes at the end": ({"a": f32([2], 0, 8)}, 12),
    "same bytes twice": ({"a": f32([2], 0, 8), "b": f32([2], 0, 8)}, 8),
    "dtype null": ({"a": {"dtype": None, "shape": [2], "data_offsets": [0, 8]}}, 8),
    "dtype list": ({"a": {"dtype": ["F32"], "shape": [2], "data_offsets": [0, 8]}}, 8),
    "dtype number": ({"a": {"dtype": 4, "shape": [2], "data_offsets": [0, 8]}}, 8),
    "shape null": ({"a": {"dtype": "F32", "shape": None, "data_offsets": [0, 8]}}, 8),
    "shape string": ({"a": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}}, 8),
    "shape of bools": ({"a": {"dtype": "F32", "shape": [True, True], "data_offsets": [0, 4]}}, 4),
    "shape of floats": ({"a": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}, 8),
    "negative dim": ({"a": {"dtype": "F32", "shape": [-2, -1], "data_offsets": [0, 8]}}, 8),
    "huge empty shape": ({"a": {"dtype": "F32", "shape": [0, 2**40, 2**40], "data_offsets": [0, 0]}}, 0),
    "offsets null": ({"a": {"dtype": "F32", "shape": [2], "data_offsets": None}}, 8),
    "offsets bools": ({"a": {"dtype": "U8", "shape": [1], "data_offsets": [False, True]}}, 1),
    "offsets strings": ({"a": {"dtype": "F32", "shape": [2], "data_offsets": ["0", "8"]}}, 8),
    "three offsets": ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8, 8]}}, 8),
    "reversed offsets": ({"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}}, 8),
    "entry a string": ({"a": "F32"}, 0),
    "entry a list": ({"a": ["F32", [2], [0, 8]]}, 8),
    "metadata a list": ({"__metadata__": ["format", "pt"], "a": f32([2], 0, 8)}, 8),
    "header a list": ([f32([2], 0, 8)], 8),
}


@pytest.mark.parametrize("case", BAD_HEADERS)
def test_bad_safetensors_headers(tmp_path, case):
    from mistral_np.safetensors import load_file
    header, n_data = BAD_HEADERS[case]
    path = raw_safetensors(tmp_path / "w.safetensors", header, bytes(n_data))
    with pytest.raises(ValueError) as e:
        load_file(path)
    assert one_line(e.value).startswith(str(path))


def test_good_header_in_any_order_loads(tmp_path):
    from mistral_np.safetensors import load_file
    data = np.arange(5, dtype=np.float32).tobytes()
    path = raw_safetensors(tmp_path / "w.safetensors", {"b": f32([3], 8, 20), "a": f32([2], 0, 8),
                                                        "e": f32([0], 20, 20)}, data)
    t = load_file(path)
    assert t["a"].tolist() == [0, 1] and t["b"].tolist() == [2, 3, 4] and t["e"].shape == (0,)


# 4. One name, one shard: duplicates are refused, the index is obeyed, shard names stay inside.

def index_of(d):
    import json
    return json.loads((d / "model.safetensors.index.json").read_text())


def write_index(d, index):
    import json
    (d / "model.safetensors.index.json").write_text(json.dumps(index))


def test_same_tensor_in_two_files_is_refused(hf):
    from mistral_np.safetensors import load_file, save_file
    t = load_file(hf / "model.safetensors")
    save_file(hf / "model-extra.safetensors", {"model.norm.weight": 2 * np.asarray(t["model.norm.weight"])})
    with pytest.raises(ValueError) as e:
        mistral_np.load(hf)
    msg = one_line(e.value)
    assert "'model.norm.weight' is in both model-extra.safetensors and model.safetensors" in msg


def test_index_decides_where_each_tensor_is(sharded):
    from mistral_np.safetensors import load_file, save_file
    index = index_of(sharded)
    name, shard = next(iter(index["weight_map"].items()))
    other = next(s for s in set(index["weight_map"].values()) if s != shard)
    index["weight_map"][name] = other                               # the index points elsewhere
    write_index(sharded, index)
    with pytest.raises(ValueError) as e:
        mistral_np.load(sharded)
    assert f"says tensor {name!r} is in {other} but it is in {shard}" in one_line(e.value)
    index["weight_map"][name] = shard
    write_index(sharded, index)
    tensors = load_file(sharded / other)                            # a copy of it in the other shard
    tensors[name] = np.asarray(load_file(sharded / shard)[name].to_f32())
    save_file(sharded / other, {k: (v.to_f32() if hasattr(v, "to_f32") else v) for k, v in tensors.items()},
              dtype="BF16")
    with pytest.raises(ValueError, match=f"'{name}' is in both"):
        mistral_np.load(sharded)


@pytest.mark.parametrize("shard", ["../model.safetensors", "/etc/passwd", "sub/../../x.safetensors", ""])
def test_index_shard_names_stay_inside_the_folder(sharded, shard):
    index = index_of(sharded)
    index["weight_map"][next(iter(index["weight_map"]))] = shard
    write_index(sharded, index)
    with pytest.raises(ValueError, match="points outside the model folder") as e:
        mistral_np.load(sharded)
    one_line(e.value)


@pytest.mark.parametrize("index", [[], {"weight_map": []}, {"weight_map": {"a": 1}}, {"weight_map": None},
                                   "text", {"metadata": {}}])
def test_index_of_the_wrong_json_type(sharded, index):
    write_index(sharded, index)
    with pytest.raises(ValueError, match="index") as e:
        mistral_np.load(sharded)
    assert one_line(e.value).startswith(str(sharded / "model.safetensors.index.json"))


def test_both_layouts_in_one_folder_load_the_hugging_face_one(hf):
    shutil.copy(hf / "model.safetensors", hf / "consolidated.safetensors")
    assert mistral_np.load(hf).args.rope_layout == "halves"


# 5. The config and the weights must agree in both directions; other families are refused by name.

def edit(d, name="config.json", drop=(), **changes):
    import json
    cfg = json.loads((d / name).read_text())
    cfg = {k: v for k, v in {**cfg, **changes}.items() if k not in drop}
    (d / name).write_text(json.dumps(cfg))


def load_error(d, kind=ValueError):
    with within(20), pytest.raises(kind) as e:
        mistral_np.load(d)
    return one_line(e.value)


BAD_CONFIGS = {   # config.json change -> words the message must hold
    "fewer layers": (dict(num_hidden_layers=1), "says 1 layers but the weights hold 2"),
    "a billion layers": (dict(num_hidden_layers=10**9), "says 1000000000 layers but the weights hold 2"),
    "tied but lm_head present": (dict(tie_word_embeddings=True), "sets tie_word_embeddings true"),
    "tie as a string": (dict(tie_word_embeddings="false"), "tie_word_embeddings must be true or false"),
    "llama-like gelu": (dict(hidden_act="gelu"), "hidden_act 'gelu' is not supported"),
    "rope scaling": (dict(rope_scaling={"type": "linear", "factor": 2.0}), "rope_scaling is set"),
    "yarn rope type": (dict(rope_parameters={"rope_type": "yarn", "rope_theta": 1e4}), "rope_type 'yarn'"),
    "another model type": (dict(model_type="qwen2"), "model_type 'qwen2' is not supported"),
    "attention bias": (dict(attention_bias=True), "attention_bias is true"),
    "eps NaN": (dict(rms_norm_eps=float("nan")), "norm_eps must be a finite number > 0"),
    "eps zero": (dict(rms_norm_eps=0), "norm_eps must be a finite number > 0"),
    "eps null": (dict(rms_norm_eps=None), "rms_norm_eps must be a number"),
    "eps string": (dict(rms_norm_eps="1e-5"), "rms_norm_eps must be a number"),
    "theta negative": (dict(rope_parameters={"rope_theta": -1.0}), "rope_theta must be a finite number > 0"),
    "rope_parameters a number": (dict(rope_parameters=5), "rope_parameters is 5, not an object"),
    "theta infinite": (dict(rope_theta=float("inf")), "rope_theta must be a finite number > 0"),
    "theta bool": (dict(rope_theta=True), "rope_theta must be a number"),
    "layers a bool": (dict(num_hidden_layers=True), "n_layers must be a positive integer"),
    "heads a bool": (dict(num_attention_heads=True), "num_attention_heads must be a positive integer"),
    "width a string": (dict(hidden_size="64"), "hidden_size must be a positive integer"),
    "width a float": (dict(hidden_size=64.0), "hidden_size must be a positive integer"),
    "width null": (dict(hidden_size=None), "hidden_size must be a positive integer"),
    "heads zero": (dict(num_attention_heads=0), "num_attention_heads must be a positive integer"),
    "window a list": (dict(sliding_window=[6]), "W must be a positive integer"),
    "vocab negative": (dict(vocab_size=-96), "vocab_size must be a positive integer"),
}


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_bad_configs_are_refused_by_name(hf, case):
    changes, words = BAD_CONFIGS[case]
    edit(hf, **changes)
    msg = load_error(hf, KeyError if case == "a billion layers" else ValueError)
    assert msg.startswith(str(hf)) and words in msg


@pytest.mark.parametrize("text", [b"null", b"[1, 2]", b'"mistral"', b"3", b"\xff\xfe{}", b""])
def test_config_that_is_not_a_json_object(hf, text):
    (hf / "config.json").write_bytes(text)
    assert load_error(hf).startswith(str(hf / "config.json"))


def test_q_k_v_biases_in_the_weights_are_refused(hf):
    from mistral_np.safetensors import load_file, save_file
    t = {k: np.asarray(v) for k, v in load_file(hf / "model.safetensors").items()}
    t["model.layers.0.self_attn.q_proj.bias"] = np.zeros(64, np.float32)
    save_file(hf / "model.safetensors", t)
    assert "biases such as 'model.layers.0.self_attn.q_proj.bias'" in load_error(hf)


def test_params_json_checked_the_same_way(tmp_path):
    d = mistral_np.save(mistral_np.load(TINY_HF), tmp_path / "m", layout="mistral")
    edit(d, "params.json", norm_eps=float("nan"))
    assert "params.json: norm_eps must be a finite number > 0" in load_error(d)
    edit(d, "params.json", norm_eps=1e-5, n_layers=1)
    assert "params.json says 1 layers but the weights hold 2" in load_error(d)
    edit(d, "params.json", n_layers=2, moe={"num_experts": 8})
    assert "moe is set" in load_error(d)


# 6. Generation: NaN stops it with the step named; float ids refused; tiny temperatures are greedy.

def test_nan_weights_stop_generation_at_the_step(small_model):
    from mistral_np import generate_ids, random_model
    from helpers import small_args
    model = random_model(small_args(), seed=0)
    model.weights["layers"][1]["w2"][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"logits for new token 0 \(position 3\) hold NaN or inf") as e:
        list(generate_ids(model, [1, 2, 3], 5))
    one_line(e.value)


def test_sample_refuses_non_finite_logits():
    from mistral_np import sample
    for bad in (np.nan, np.inf, -np.inf):
        logits = np.zeros(5, np.float32)
        logits[2] = bad
        with pytest.raises(ValueError, match="NaN or inf"):
            sample(logits, 0.7)


@pytest.mark.parametrize("ids", [[1.0, 2.0], [1.7, 2.2], np.array([1, 2], np.float32), [True, False], ["1"]])
def test_generate_ids_refuses_non_integer_ids(small_model, ids):
    from mistral_np import generate_ids
    with pytest.raises(ValueError, match="token ids must be integers"):
        generate_ids(small_model, ids, 3)


@pytest.mark.parametrize("ids", [[1, -1], [1, 23], [2**40]])
def test_generate_ids_refuses_ids_outside_the_vocabulary_when_called(small_model, ids):
    from mistral_np import generate_ids
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 23\)"):
        generate_ids(small_model, ids, 3)


@pytest.mark.parametrize("temperature", [1e-7, 1e-300, 5e-324])
def test_tiny_temperature_is_greedy(small_model, temperature):
    from mistral_np import generate_ids
    greedy = list(generate_ids(small_model, [1, 2, 3], 6))
    assert list(generate_ids(small_model, [1, 2, 3], 6, temperature=temperature, seed=1)) == greedy


# 7. The cache: a failed pass marks it unusable; another model's cache is refused; the default
#    pre-fill chunk keeps the score array within a memory budget, and chunking stays exact.

def test_a_pass_that_fails_midway_marks_the_cache_unusable(small_model, monkeypatch):
    import mistral_np.model as model_mod
    real = model_mod.transformer_block

    def fails_in_layer_1(x, *a, layer=0, **k):
        if layer == 1:
            raise MemoryError("simulated")
        return real(x, *a, layer=layer, **k)
    cache = small_model.new_cache()
    small_model.prefill(np.array([1, 2, 3]), cache)
    monkeypatch.setattr(model_mod, "transformer_block", fails_in_layer_1)
    with pytest.raises(MemoryError):
        small_model.prefill(np.array([4, 5, 6]), cache)
    monkeypatch.setattr(model_mod, "transformer_block", real)
    with pytest.raises(ValueError, match=r"cache: unusable: a forward pass stopped in layer 1 \(MemoryError\); "
                                         r"start again with model.new_cache\(\)"):
        small_model.forward(np.array([7]), cache)


def test_bad_tokens_leave_the_cache_usable(small_model):
    cache = small_model.new_cache()
    small_model.prefill(np.array([1, 2, 3]), cache)
    with pytest.raises(ValueError, match="token ids"):
        small_model.forward(np.array([99]), cache)
    ref = small_model.forward(np.array([1, 2, 3, 4]))[-1]
    np.testing.assert_allclose(small_model.forward(np.array([4]), cache)[-1], ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("change", [dict(W=5), dict(n_layers=3), dict(n_kv_heads=4), dict(head_dim=2, dim=8)])
def test_a_cache_of_another_shape_is_refused(small_model, change):
    from mistral_np import random_model
    from helpers import small_args
    other = random_model(small_args(**change), seed=1)
    with pytest.raises(ValueError, match="cache: built for .* but the model has") as e:
        small_model.forward(np.array([1, 2]), other.new_cache())
    one_line(e.value)


def test_default_prefill_chunk_fits_the_budget(monkeypatch):
    import mistral_np.model as model_mod
    from mistral_np import MISTRAL_7B
    from mistral_np.model import default_chunk_size
    for a in (MISTRAL_7B, MISTRAL_7B.replace(W=32768)):
        for cached in (0, 1000, a.W, 10**6):
            T = default_chunk_size(a, cached)
            S = min(a.W, cached)
            assert a.n_heads * T * (S + T) * 4 <= model_mod.PREFILL_SCORES_BYTES
            assert a.n_heads * (T + 1) * (S + T + 1) * 4 > model_mod.PREFILL_SCORES_BYTES or T == a.W
    assert default_chunk_size(MISTRAL_7B) == default_chunk_size(MISTRAL_7B, 4096) >= 256


def test_default_prefill_is_exact_with_a_tiny_budget(small_model, monkeypatch):
    import mistral_np.model as model_mod
    tokens = np.arange(1, 20) % 23
    one_shot = small_model.forward(tokens)[-1]
    monkeypatch.setattr(model_mod, "PREFILL_SCORES_BYTES", 4 * small_model.args.n_heads * 6)   # T (S + T) <= 6
    sizes, real = [], small_model.forward
    monkeypatch.setattr(small_model, "forward", lambda t, c=None: sizes.append(len(t)) or real(t, c))
    chunked = small_model.prefill(tokens, small_model.new_cache())[-1]
    assert sizes[0] == 2 and max(sizes[1:]) == 1 and sum(sizes) == len(tokens)
    np.testing.assert_allclose(chunked, one_shot, rtol=1e-5, atol=1e-6)
    sizes.clear()
    small_model.prefill(tokens, small_model.new_cache(), chunk_size=7)                # explicit wins
    assert sizes == [7, 7, 5]


# 8. The command line: one line for every failure, the right exit code, clean stdout.

def cli(capsys, *argv):
    from mistral_np.__main__ import main
    code = main(["generate", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_cli_output_ends_with_a_newline_and_chunk_size_changes_nothing(capsys):
    code, out, err = cli(capsys, "To be", "--max-new-tokens", "5")
    assert code == 0 and out.startswith("To be") and out.endswith("\n") and err.startswith("[")
    assert cli(capsys, "To be", "--max-new-tokens", "5", "--chunk-size", "1")[1] == out


@pytest.mark.parametrize("args", [["--temperature", "-1"], ["--top-p", "0"], ["--top-k", "-2"],
                                  ["--max-new-tokens", "-3"], ["--chunk-size", "0"], ["--temperature", "nan"]])
def test_cli_checks_arguments_before_loading_or_echoing(capsys, monkeypatch, args):
    import mistral_np.__main__ as cli_mod
    monkeypatch.setattr(cli_mod, "load", lambda *a: pytest.fail("loaded before checking the arguments"))
    code, out, err = cli(capsys, "Hello", *args)
    assert code == 2 and out == "" and err.startswith("error: ") and err.count("\n") == 1


def test_cli_model_file_says_pass_its_folder(capsys):
    code, out, err = cli(capsys, "Hi", "--model", str(TINY_HF / "model.safetensors"))
    assert code == 2 and out == "" and f"pass its folder ({TINY_HF})" in err and err.count("\n") == 1


@pytest.mark.parametrize("exc, code, words", [
    (KeyboardInterrupt(), 130, "interrupted\n"),
    (MemoryError(), 1, "error: out of memory; try a smaller --chunk-size"),
    (PermissionError(13, "Permission denied", "/x/model.safetensors"), 1,
     "error: [Errno 13] Permission denied: '/x/model.safetensors'"),
    (BrokenPipeError(32, "Broken pipe"), 141, ""),
])
def test_cli_turns_exceptions_into_one_line(capsys, monkeypatch, exc, code, words):
    import mistral_np.__main__ as cli_mod

    def boom(*a):
        raise exc
    monkeypatch.setattr(cli_mod, "load", boom)
    got, out, err = cli(capsys, "Hi")
    assert got == code and out == "" and err.startswith(words) and err.count("\n") == (1 if words else 0)


# 9. Property tests: random and mutated bytes for the safetensors, config and GGUF readers. Every
#    outcome is a clean one-line error (ValueError / FileNotFoundError) or a correct load; never
#    another exception, a hang or a wrong array.

from hypothesis import given, settings, strategies as st   # noqa: E402

FUZZ = settings(max_examples=150)
JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=6),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                    max_leaves=6)


def clean_outcome(fn):
    """fn()'s result, or None if it raised a clean error: one line, ValueError or FileNotFoundError."""
    try:
        with within(20):
            return fn()
    except (ValueError, FileNotFoundError) as e:
        assert str(e) and "\n" not in str(e), repr(e)
        return None


def mutate_bytes(data, draw):
    """Byte-level damage: flips, a truncation, or random bytes."""
    how = draw(st.sampled_from(["flip", "truncate", "random", "splice"]))
    if how == "random":
        return draw(st.binary(max_size=300))
    if how == "truncate":
        return data[:draw(st.integers(0, len(data)))]
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data) - 1))
        if how == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        else:                                       # a plausible little-endian integer somewhere
            value = draw(st.sampled_from([0, 1, 2**31, 2**32 - 1, 2**63, 2**64 - 1, 255, 2**40]))
            data[at:at + 8] = value.to_bytes(8, "little")
    return bytes(data)


def small_safetensors():
    import tempfile
    from mistral_np.safetensors import save_file
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        path = f"{d}/x.safetensors"
        save_file(path, {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(5), "c": np.zeros((0, 2))},
                  metadata={"format": "pt"}, dtype="BF16")
        return open(path, "rb").read()


SAFETENSORS = small_safetensors()


@st.composite
def damaged_safetensors(draw):
    import json
    import struct
    if draw(st.booleans()):
        return mutate_bytes(SAFETENSORS, draw)
    n = struct.unpack("<Q", SAFETENSORS[:8])[0]
    header, data = json.loads(SAFETENSORS[8:8 + n]), SAFETENSORS[8 + n:]
    name = draw(st.sampled_from(sorted(header) + ["new"]))
    entry = header.setdefault(name, {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]})
    how = draw(st.sampled_from(["value", "field", "nudge", "delete"]))
    if how == "value":
        header[name] = draw(JSON)
    elif how == "field" and isinstance(entry, dict):
        entry[draw(st.sampled_from(["dtype", "shape", "data_offsets"]))] = draw(JSON)
    elif how == "nudge" and isinstance(entry, dict) and "data_offsets" in entry:
        entry["data_offsets"] = [o + draw(st.integers(-9, 9)) for o in entry["data_offsets"]]
        entry["shape"] = [max(0, s + draw(st.integers(-1, 1))) for s in entry.get("shape", [])]
    else:
        header.pop(name)
    text = json.dumps(header).encode()
    extra = draw(st.integers(-4, 4))
    return struct.pack("<Q", len(text)) + text + (data[:len(data) + extra] if extra < 0 else data + bytes(extra))


@FUZZ
@given(damaged_safetensors())
def test_safetensors_reader_on_damaged_files(tmp_path_factory, data):
    from mistral_np.bf16 import BF16
    from mistral_np.safetensors import DTYPES, load_file, read_header
    path = tmp_path_factory.mktemp("st") / "x.safetensors"
    path.write_bytes(data)
    tensors = clean_outcome(lambda: load_file(path))
    if tensors is None:
        return
    header, _, start = read_header(path)                          # a load is correct: every array is
    for name, info in header.items():                             # exactly its bytes in the file
        t = tensors[name]
        raw = t.bits if isinstance(t, BF16) else t
        begin, end = info["data_offsets"]
        assert raw.shape == tuple(info["shape"]) and raw.dtype == np.dtype(DTYPES[info["dtype"]])
        assert np.asarray(raw).tobytes() == data[start + begin:start + end]
    assert sum(info["data_offsets"][1] - info["data_offsets"][0] for info in header.values()) == len(data) - start


TINY_CONFIG = (TINY_HF / "config.json").read_text()


@st.composite
def damaged_configs(draw):
    import json
    cfg = json.loads(TINY_CONFIG)
    how = draw(st.sampled_from(["value", "nudge", "delete", "bytes"]))
    if how == "bytes":
        return mutate_bytes(TINY_CONFIG.encode(), draw)
    key = draw(st.sampled_from(sorted(cfg) + ["rope_scaling", "rope_theta", "attention_bias", "tie_word_embeddings"]))
    if how == "delete":
        cfg.pop(key, None)
    elif how == "nudge" and type(cfg.get(key)) in (int, float):
        cfg[key] = cfg[key] + draw(st.sampled_from([-cfg[key], -1, 1, 0.5, cfg[key]]))
    else:
        cfg[key] = draw(JSON)
    return json.dumps(cfg).encode()


@FUZZ
@given(damaged_configs())
def test_config_reader_and_loader_on_damaged_configs(tmp_path_factory, text):
    d = tmp_path_factory.mktemp("cfg")
    (d / "config.json").write_bytes(text)
    (d / "model.safetensors").symlink_to(TINY_HF / "model.safetensors")
    model = clean_outcome(lambda: mistral_np.load(d))
    if model is not None:                                         # a load is correct: the weights' shapes
        assert model.args.n_layers == 2 and model.args.dim == 64  # and every tensor were checked
        assert np.isfinite(model.args.norm_eps) and model.args.rope_theta > 0


def small_gguf():
    import tempfile
    from mistral_np.gguf import write_gguf
    rng = np.random.default_rng(0)
    tensors = {"token_embd.weight": (0, (5, 4), rng.standard_normal((5, 4)).astype(np.float32).view(np.uint8)),
               "output_norm.weight": (0, (4,), np.ones(4, np.float32).view(np.uint8)),
               "blk.0.attn_q.weight": (8, (2, 32), np.zeros(2 * 34, np.uint8))}             # Q8_0 blocks
    metadata = {"general.architecture": "llama", "llama.block_count": 1, "llama.context_length": 16,
                "general.name": "fuzz", "tokenizer.ggml.tokens": ["<s>", "a", "b"],
                "tokenizer.ggml.scores": [0.0, -1.0, -2.0], "llama.rope.freq_base": 10000.0}
    with tempfile.TemporaryDirectory() as d:
        write_gguf(f"{d}/x.gguf", metadata, tensors)
        return open(f"{d}/x.gguf", "rb").read()


GGUF = small_gguf()


@FUZZ
@given(st.data())
def test_gguf_reader_on_damaged_files(tmp_path_factory, data):
    from mistral_np.gguf import read_gguf
    from mistral_np.quants import row_bytes
    damaged = mutate_bytes(GGUF, data.draw)
    path = tmp_path_factory.mktemp("gguf") / "x.gguf"
    path.write_bytes(damaged)
    result = clean_outcome(lambda: read_gguf(path))
    if result is None:
        return
    metadata, shapes, raw = result
    for name, (ggml_type, shape) in shapes.items():              # a load is correct: each tensor's bytes
        rows = int(np.prod(shape[:-1], dtype=object)) if len(shape) > 1 else 1     # are all there
        assert len(raw[name]) == rows * row_bytes(ggml_type, shape[-1]), name


def gguf_tensor(dims, ttype=0):
    import struct
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + struct.pack("<Q", 1) + b"t"
    head += struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", x) for x in dims) + struct.pack("<IQ", ttype, 0)
    return head + b"\0" * (-len(head) % 32 + 64)


@pytest.mark.parametrize("dims", [[4, 2**63], [4, 2**62, 3], [4, 2**62, 4]])
def test_gguf_huge_row_count_is_an_error(tmp_path, dims):
    from mistral_np.gguf import read_gguf
    (tmp_path / "x.gguf").write_bytes(gguf_tensor(dims))
    with pytest.raises(ValueError):
        read_gguf(tmp_path / "x.gguf")


def test_gguf_deeply_nested_arrays_are_an_error(tmp_path):
    import struct
    from mistral_np.gguf import read_gguf
    kv = struct.pack("<Q", 1) + b"k" + struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * 5000 + struct.pack("<IQ", 4, 0)
    (tmp_path / "x.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + kv)
    with pytest.raises(ValueError):
        read_gguf(tmp_path / "x.gguf")


# Tokenizers: damaged files are one line, a tokenizer larger than the model is refused up front.

@pytest.mark.parametrize("content", [b"", b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 493443\n",
                                     "truncated", b"\x00" * 64])
def test_damaged_tokenizer_files(tmp_path, content):
    from helpers import POCKET_TOKENIZER
    path = tmp_path / "tokenizer.model"
    path.write_bytes(POCKET_TOKENIZER.read_bytes()[:500] if content == "truncated" else content)
    with pytest.raises(ValueError) as e:
        mistral_np.Tokenizer(path)
    assert one_line(e.value).startswith(str(path))


def test_tokenizer_from_a_non_utf8_path(tmp_path):
    from helpers import POCKET_TOKENIZER
    d = tmp_path / os.fsdecode(b"caf\xe9")                     # not valid UTF-8
    d.mkdir()
    shutil.copy(POCKET_TOKENIZER, d / "tokenizer.model")
    assert mistral_np.Tokenizer(d / "tokenizer.model").vocab_size > 0


def test_tokenizer_larger_than_the_model_is_refused_before_generating(small_model):
    from helpers import POCKET_TOKENIZER
    tok = mistral_np.Tokenizer(POCKET_TOKENIZER)
    with pytest.raises(ValueError, match=f"tokenizer has {tok.vocab_size} pieces but the model only 23"):
        mistral_np.generate(small_model, tok, "Hi")


def test_generate_ids_checks_the_cache_when_called(small_model):
    from mistral_np import generate_ids
    from mistral_np.cache import RollingCache
    with pytest.raises(ValueError, match="cache: built for"):
        generate_ids(small_model, [1, 2], 3, cache=RollingCache(2, 8, 2, 4))


# The command line's help, the prompt from stdin or a file, and bench's arguments checked before measuring.

@pytest.mark.parametrize("command", ["generate", "train", "bench", "quantize"])
def test_cli_help_shows_every_default(capsys, command):
    import re
    from mistral_np.__main__ import main
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    options = re.split(r"\n  (?=-)", out.split("options:\n", 1)[1])     # one block per option
    assert len(options) > 3
    for block in options:
        flag = block.split()[0]
        if flag != "-h," and (command, flag) != ("quantize", "--out"):       # that one is required
            assert "default" in block.lower(), (command, block)


def prompt_cli(capsys, monkeypatch, *argv, stdin=b""):
    import io
    import sys
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    return cli(capsys, *argv, "--max-new-tokens", "5")


def test_cli_prompt_from_stdin_or_a_file(capsys, monkeypatch, tmp_path):
    code, out, err = prompt_cli(capsys, monkeypatch, "To be")
    assert code == 0
    assert prompt_cli(capsys, monkeypatch, "-", stdin=b"To be\n")[:2] == (code, out)      # one final newline dropped
    assert prompt_cli(capsys, monkeypatch, "-", stdin=b"To be")[:2] == (code, out)
    (tmp_path / "p.txt").write_bytes(b"To be\n")
    assert prompt_cli(capsys, monkeypatch, "--prompt-file", str(tmp_path / "p.txt"))[:2] == (code, out)


@pytest.mark.parametrize("case", ["missing", "folder", "fifo", "not utf-8", "stdin not utf-8", "both", "none"])
def test_cli_prompt_file_errors_before_loading(capsys, monkeypatch, tmp_path, case):
    import mistral_np.__main__ as cli_mod
    monkeypatch.setattr(cli_mod, "load", lambda *a: pytest.fail("loaded before reading the prompt"))
    path = tmp_path / "prompt.txt"
    if case == "folder":
        path.mkdir()
    elif case == "fifo":
        os.mkfifo(path)
    elif case in ("not utf-8", "both"):
        path.write_bytes(b"caf\xe9")
    argv = {"stdin not utf-8": ["-"], "none": [], "both": ["Hi", "--prompt-file", str(path)]}.get(
        case, ["--prompt-file", str(path)])
    with within(10):
        code, out, err = prompt_cli(capsys, monkeypatch, *argv, stdin=b"caf\xe9")
    words = {"missing": f"--prompt-file {path}: no such file", "folder": f"--prompt-file {path}: not a regular file",
             "fifo": f"--prompt-file {path}: not a regular file",
             "not utf-8": f"--prompt-file {path}: not UTF-8 text (byte 3 is 0xe9)",
             "stdin not utf-8": "the prompt on stdin: not UTF-8 text (byte 3 is 0xe9)",
             "both": "give the prompt as an argument or with --prompt-file, not both",
             "none": "no prompt: give it as an argument, - to read it from stdin, or --prompt-file PATH"}[case]
    assert code == 2 and out == "" and err == f"error: {words}\n"


def numeric_flags():
    """(command, flag, int or float) for every numeric flag of every command; none is left a bare
    int or float, whose error argparse would print with the usage."""
    import argparse
    from mistral_np.__main__ import Number, parser
    commands = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    for command, p in commands.items():
        for action in p._actions:
            assert action.type not in (int, float), (command, action.option_strings)
            if isinstance(action.type, Number):
                yield command, action.option_strings[-1], action.type


NUMERIC_FLAGS = list(numeric_flags())


def test_numeric_flags_of_every_command_are_checked():
    assert {c for c, _, _ in NUMERIC_FLAGS} == {"generate", "bench", "quantize", "train"}
    assert {("bench", "--context"), ("generate", "--max-new-tokens"), ("generate", "--top-p"),
            ("train", "--lr"), ("quantize", "--check")} <= {(c, f) for c, f, _ in NUMERIC_FLAGS}


@pytest.mark.parametrize("command, flag, number", NUMERIC_FLAGS, ids=[f"{c} {f}" for c, f, _ in NUMERIC_FLAGS])
def test_a_flag_that_is_not_a_number_is_one_line_naming_it(capsys, command, flag, number):
    from mistral_np.__main__ import main
    code = main([command, flag, "1.5x"])
    out, err = capsys.readouterr()
    what = "a whole number" if number.kind is int else "a number"
    assert code == 2 and out == "" and err.startswith(f"error: {flag}: '1.5x' is not {what}; give e.g. {flag} ")
    assert err.count("\n") == 1, err
    number(err.split()[-1])                                       # the suggested value is one the flag takes


@pytest.mark.parametrize("argv, words", [
    (["bench", "--context", "4096", "1e8"], "--context: '1e8' is not written in digits; give --context 100000000"),
    (["bench", "--context", "many"], "--context: 'many' is not a whole number; give e.g. --context 4096"),
    (["generate", "Hi", "--max-new-tokens", "2.5"],
     "--max-new-tokens: '2.5' is not a whole number; give e.g. --max-new-tokens 200"),
    (["generate", "Hi", "--top-p", "0,9"], "--top-p: '0,9' is not a number; give e.g. --top-p 1.0"),
    (["train", "--lr", "fast"], "--lr: 'fast' is not a number; give e.g. --lr 0.002"),
])
def test_a_flag_that_is_not_a_number_says_the_fix(capsys, argv, words):
    from mistral_np.__main__ import main
    assert main(argv) == 2
    assert capsys.readouterr() == ("", f"error: {words}\n")


@pytest.mark.parametrize("argv, words", [
    (["--context", "-5"], "bench: --context must be at least 1 token, got -5"),
    (["--context", "4096", "0"], "bench: --context must be at least 1 token, got 0"),
    (["--json", "{tmp}/missing/r.json"], "bench: --json {tmp}/missing/r.json: folder {tmp}/missing does not exist"),
    (["--json", "{tmp}"], "bench: --json {tmp}: is a folder"),
])
def test_bench_arguments_are_checked_before_measuring(capsys, monkeypatch, tmp_path, argv, words):
    from mistral_np import bench
    from mistral_np.__main__ import main
    monkeypatch.setattr(bench, "run", lambda *a, **k: pytest.fail("measured before checking the arguments"))
    code = main(["bench", *(x.format(tmp=tmp_path) for x in argv)])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.startswith(f"error: {words.format(tmp=tmp_path)}") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []
