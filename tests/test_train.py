"""The NumPy trainer: exact gradients, a loss that goes down, agreement with Model.forward,
resumable runs, and the committed pocket model's validation loss (a regression test) and card."""
import importlib.util
import io
import json

import numpy as np
import pytest

import mistral_np
from mistral_np.attention import attention, window_mask
from mistral_np.config import ModelArgs
from mistral_np.model import Model
from mistral_np import backward as B
from mistral_np import train as T
from mistral_np.weights import nest

TINY = ModelArgs(dim=16, n_layers=2, head_dim=4, hidden_dim=24, n_heads=4, n_kv_heads=2,
                 vocab_size=11, W=3, max_seq_len=8, rope_layout="halves")


def tiny_params(args=TINY, dtype=np.float64, seed=0):
    """Init plus noise, so norms are not all 1 and every weight matters to the loss."""
    rng = np.random.default_rng(seed)
    return {k: (v + 0.3 * rng.standard_normal(v.shape)).astype(dtype)
            for k, v in T.init_params(args, seed, dtype).items()}


def tiny_batch(args=TINY, B=2, T_=7, seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, args.vocab_size, (B, T_)), rng.integers(0, args.vocab_size, (B, T_))


@pytest.mark.parametrize("layout", ["halves", "pairs"])
def test_gradients_match_finite_differences(layout):
    """Every parameter tensor, 5 entries each, central differences in float64. The sequence
    (7 tokens) is longer than W = 3, so the sliding-window mask is part of what is checked."""
    args = TINY.replace(rope_layout=layout)
    params = tiny_params(args)
    x, y = tiny_batch(args)
    _, grads = B.loss_and_grads(params, args, x, y)
    assert set(grads) == set(params)
    rng = np.random.default_rng(2)
    eps = 1e-6
    for name, p in params.items():
        assert grads[name].shape == p.shape, name
        for _ in range(5):
            i = tuple(int(rng.integers(0, s)) for s in p.shape)
            old = p[i]
            p[i] = old + eps
            up, _ = B.loss_and_grads(params, args, x, y)
            p[i] = old - eps
            down, _ = B.loss_and_grads(params, args, x, y)
            p[i] = old
            numeric = (up - down) / (2 * eps)
            assert abs(numeric - grads[name][i]) <= 1e-6 + 1e-5 * abs(numeric), (name, i)


def test_tied_embeddings_gradient():
    args = TINY.replace(tie_embeddings=True)
    params = tiny_params(args)
    assert "output.weight" not in params
    x, y = tiny_batch(args)
    _, grads = B.loss_and_grads(params, args, x, y)
    name, i, eps = "tok_embeddings.weight", (x[0, 0], 3), 1e-6
    params[name][i] += eps
    up, _ = B.loss_and_grads(params, args, x, y)
    params[name][i] -= 2 * eps
    down, _ = B.loss_and_grads(params, args, x, y)
    assert abs((up - down) / (2 * eps) - grads[name][i]) < 1e-6


def test_trainer_forward_matches_model_forward():
    params = tiny_params(dtype=np.float32)
    x, _ = tiny_batch()
    logits, _ = B.forward(params, TINY, x)                               # (B, T, vocab)
    model = Model(TINY, nest(params.__getitem__, TINY))
    for b in range(len(x)):
        np.testing.assert_allclose(logits[b], model.forward(x[b]), atol=1e-5, rtol=1e-5)


def test_batched_attention_matches_attention():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((3, 9, 4, 8)).astype(np.float32)             # (B, T, H, hd)
    k = rng.standard_normal((3, 9, 2, 8)).astype(np.float32)             # (B, S, K, hd)
    v = rng.standard_normal((3, 9, 2, 8)).astype(np.float32)
    mask = window_mask(np.arange(9), np.arange(9), 4)
    out, probs = attention(q, k, v, mask, return_probs=True)             # with a batch axis
    for b in range(3):
        np.testing.assert_allclose(out[b], attention(q[b], k[b], v[b], mask), atol=1e-6)
    np.testing.assert_allclose(probs.sum(-1), 1, atol=1e-6)


def test_a_few_steps_reduce_the_loss():
    params = T.init_params(TINY, seed=0)
    state = {"m": {k: np.zeros_like(v) for k, v in params.items()},
             "v": {k: np.zeros_like(v) for k, v in params.items()}}
    x, y = tiny_batch(B=4)
    losses = []
    for t in range(1, 31):
        loss, grads = B.loss_and_grads(params, TINY, x, y)
        T.clip_gradients(grads, 1.0)
        T.adamw_step(params, grads, state, lr=1e-2, t=t)
        losses.append(loss)
    assert losses[-1] < losses[0] - 0.5, losses


def test_learning_rate_schedule():
    lr = [T.learning_rate(s, 100, 1.0, 10) for s in range(100)]
    assert lr[0] == pytest.approx(0.1) and lr[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lr[9:], lr[10:]))                  # decays after warmup
    assert T.learning_rate(100, 100, 1.0, 10) == pytest.approx(0.1)       # ends at min_ratio


def test_clip_gradients():
    g = {"a": np.full(4, 3.0), "b": np.full(4, 4.0)}                       # norm 10
    assert T.clip_gradients(g, 1.0) == pytest.approx(10.0)
    assert np.sqrt(sum(np.sum(v * v) for v in g.values())) == pytest.approx(1.0)


def _train_tiny(run_dir, steps, minutes=5):
    args = ModelArgs(dim=16, n_layers=1, head_dim=4, hidden_dim=16, n_heads=4, n_kv_heads=2,
                     vocab_size=2048, W=4, max_seq_len=8, rope_layout="halves")
    return T.train(run_dir, args, steps=steps, batch_size=2, lr=1e-2, warmup=1, minutes=minutes,
                   eval_every=2, ckpt_every=1, out=io.StringIO())


@pytest.fixture
def corpus_available():
    from mistral_np.corpus import data_dir
    if not (data_dir() / "shakespeare").exists():
        pytest.skip("Shakespeare not fetched: run python tools/fetch_data.py")


def test_resume_gives_the_same_weights(tmp_path, corpus_available):
    straight, _ = _train_tiny(tmp_path / "a", steps=4)
    _train_tiny(tmp_path / "b", steps=4, minutes=0)                      # budget spent after step 1
    resumed, log = _train_tiny(tmp_path / "b", steps=4)
    assert [r["step"] for r in log["records"]] == [1, 2, 3, 4]
    for k in straight:
        np.testing.assert_array_equal(straight[k], resumed[k])


POCKET = mistral_np.DEFAULT_MODEL
STORED = POCKET / "eval.json"


@pytest.mark.skipif(not STORED.exists(), reason="pocket model not trained yet")
def test_pocket_model_gives_the_stored_validation_loss():
    """A regression test of the forward pass: the committed bf16 weights, loaded as any Mistral
    checkpoint, give the stored loss on a fixed slice of the held-out plays."""
    stored = json.loads(STORED.read_text())["regression"]
    model = mistral_np.load(POCKET)
    ids = np.array(stored["token_ids"])
    logits = model.forward(ids[:-1])
    loss, _ = B.cross_entropy(logits, ids[1:])
    assert loss == pytest.approx(stored["loss"], abs=1e-4)


@pytest.mark.skipif(not STORED.exists(), reason="pocket model not trained yet")
def test_pocket_model_card_is_its_template():
    """The committed README.md is what tools/evaluate_pocket.py writes from the stored logs."""
    path = mistral_np.REPO_ROOT / "tools" / "evaluate_pocket.py"
    spec = importlib.util.spec_from_file_location("evaluate_pocket", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.stored_card(POCKET) == (POCKET / "README.md").read_text()


# ---------------------------------------------------------------- resuming safely, refusing bad settings
# A small fake corpus (no Shakespeare, no encoding): each test runs a 67k-parameter model for a few steps.

TINY_FLAGS = ["--dim", "16", "--n-layers", "1", "--n-heads", "4", "--n-kv-heads", "2", "--head-dim", "4",
              "--hidden-dim", "16", "--context", "8", "--W", "4", "--batch", "2", "--eval-every", "2",
              "--ckpt-every", "1"]


@pytest.fixture
def fake_corpus(monkeypatch):
    ids = np.random.default_rng(0).integers(3, 2048, 3000).astype(np.int32)
    monkeypatch.setattr(T, "encode_corpus", lambda tok, cache_path=None: (ids[:2500], ids[2500:], 10_000, 2_000))


def train_cli(capsys, run_dir, *argv):
    from mistral_np.__main__ import main
    code = main(["train", "--out", str(run_dir), *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def files_of(run_dir):
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir())} if run_dir.exists() else None


@pytest.fixture
def run(tmp_path, fake_corpus, capsys):
    """A run of 4 scheduled steps stopped after 2 (the budget spent), its checkpoint at step 2."""
    d = tmp_path / "run"
    assert train_cli(capsys, d, *TINY_FLAGS, "--steps", "4", "--lr", "0.01", "--warmup", "1",
                     "--minutes", "0")[0] == 0
    assert train_cli(capsys, d, "--minutes", "0")[0] == 0
    assert T.load_checkpoint(d / "checkpoint.npz")[2] == 2
    return d


def test_resume_takes_the_runs_settings(run, capsys):
    code, out, err = train_cli(capsys, run, "--minutes", "60")
    assert code == 0, err
    _, _, step, log = T.load_checkpoint(run / "checkpoint.npz")
    assert step == 4 and log["meta"]["lr"] == 0.01 and log["meta"]["args"]["dim"] == 16
    assert [r["step"] for r in log["records"]] == [1, 2, 3, 4]


@pytest.mark.parametrize("flag, value, theirs", [("--lr", "0.002", "0.01"), ("--batch", "16", "2"),
                                                 ("--warmup", "50", "1"), ("--steps", "8", "4"),
                                                 ("--seed", "1", "0"), ("--weight-decay", "0", "0.1"),
                                                 ("--dim", "32", "16"), ("--context", "16", "8")])
def test_resume_refuses_a_different_setting(run, capsys, flag, value, theirs):
    before = files_of(run)
    code, out, err = train_cli(capsys, run, flag, value, "--minutes", "0")
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: {flag} {float(value) if flag in ('--lr', '--weight-decay') else value} "
                          f"does not match the run being resumed ({theirs}, in {run / 'checkpoint.npz'})")
    assert files_of(run) == before


@pytest.mark.parametrize("argv, words", [
    (["--lr", "nan"], "--lr must be a finite number > 0, got nan"), (["--lr", "inf"], "--lr must be"),
    (["--lr", "0"], "--lr must be"), (["--lr", "-0.001"], "--lr must be"),
    (["--seed", "-1"], "--seed must be an integer >= 0, got -1"), (["--batch", "0"], "--batch must be"),
    (["--steps", "-3"], "--steps must be an integer >= 1, got -3"), (["--warmup", "-1"], "--warmup must be"),
    (["--eval-every", "0"], "--eval-every must be"), (["--ckpt-every", "0"], "--ckpt-every must be"),
    (["--minutes", "nan"], "--minutes must be"), (["--weight-decay", "nan"], "--weight-decay must be"),
    (["--context", "100000000"], "--context 100000000 with --batch 2 needs"),
    (["--context", "0"], "--context must be an integer >= 1, got 0"),
    (["--n-kv-heads", "3"], "--n-heads (4) must be a multiple of --n-kv-heads (3)"),
])
def test_bad_settings_are_refused_before_anything_is_written(tmp_path, fake_corpus, capsys, argv, words):
    d = tmp_path / "new"
    code, out, err = train_cli(capsys, d, *TINY_FLAGS, "--steps", "2", *argv)
    assert code == 2 and err.startswith(f"error: {words}") and err.count("\n") == 1, err
    assert not d.exists()


def test_lr_nan_leaves_a_run_untouched(run, capsys):
    before = files_of(run)
    code, out, err = train_cli(capsys, run, "--lr", "nan")
    assert code == 2 and "--lr must be a finite number > 0, got nan" in err and files_of(run) == before


def _poison_from_call(monkeypatch, n, what):
    """From the n-th training step on, make the loss NaN ("loss") or a weight inf ("weights")."""
    calls = []
    real_loss, real_adamw = T.loss_and_grads, T.adamw_step

    def loss_and_grads(*a):
        calls.append(1)
        loss, grads = real_loss(*a)
        return (float("nan") if what == "loss" and len(calls) >= n else loss), grads

    def adamw_step(params, *a, **k):
        real_adamw(params, *a, **k)
        if what == "weights" and len(calls) >= n:
            params["norm.weight"][0] = np.inf
    monkeypatch.setattr(T, "loss_and_grads", loss_and_grads)
    monkeypatch.setattr(T, "adamw_step", adamw_step)


@pytest.mark.parametrize("what, words", [("loss", "step 3 has loss nan"),
                                         ("weights", "norm.weight holds NaN or inf after step 3")])
def test_a_diverged_run_keeps_its_last_good_checkpoint(run, capsys, monkeypatch, what, words):
    _poison_from_call(monkeypatch, 1, what)
    code, out, err = train_cli(capsys, run, "--minutes", "60", "--ckpt-every", "1")
    assert code == 2 and err.count("\n") == 1, err
    assert f"training diverged: {words}" in err and f"{run / 'checkpoint.npz'} (step 2) is kept" in err
    params, state, step, log = T.load_checkpoint(run / "checkpoint.npz")      # finite, or it would refuse
    assert step == 2 and len(log["records"]) == 2


def test_a_new_run_that_diverges_saves_nothing(tmp_path, fake_corpus, monkeypatch):
    _poison_from_call(monkeypatch, 1, "loss")
    args = T.pocket_args({**{k: T.DEFAULTS[k] for k in T.MODEL_FLAGS}, "dim": 16, "n_layers": 1, "n_heads": 4, "head_dim": 4,
                          "hidden_dim": 16, "W": 4, "max_seq_len": 8})
    with pytest.raises(T.Diverged, match="step 1 has loss nan and gradient norm [0-9.]+; stopped without saving it, nothing was saved"):
        T.train(tmp_path / "r", args, steps=3, batch_size=2, lr=1e-2, warmup=1, minutes=1, out=io.StringIO())
    assert not (tmp_path / "r" / "checkpoint.npz").exists()


def _rewrite(path, **changes):
    z = dict(np.load(path))
    z.update(changes)
    np.savez(path, **{k: v for k, v in z.items() if v is not None})


DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:1000]),
    "garbage": lambda p: p.write_bytes(b"garbage\n" * 10),
    "empty": lambda p: p.write_bytes(b""),
    "bytes changed": lambda p: p.write_bytes((lambda b: b[:len(b) // 2] + bytes(64) + b[len(b) // 2 + 64:])(p.read_bytes())),
    "pickled log": lambda p: _rewrite(p, log=np.array([{"meta": 1}], dtype=object)),
    "log not JSON": lambda p: _rewrite(p, log=np.array("{not json")),
    "log without meta": lambda p: _rewrite(p, log=np.array('{"records": []}')),
    "no step": lambda p: _rewrite(p, step=None),
    "a weight missing": lambda p: _rewrite(p, **{"p/norm.weight": None}),
    "a weight reshaped": lambda p: _rewrite(p, **{"p/norm.weight": np.ones(3, np.float32)}),
    "a NaN weight": lambda p: _rewrite(p, **{"p/norm.weight": np.full(16, np.nan, np.float32)}),
    "an inf moment": lambda p: _rewrite(p, **{"v/norm.weight": np.full(16, np.inf, np.float32)}),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_checkpoints_are_one_line_naming_them(run, capsys, damage):
    path = run / "checkpoint.npz"
    DAMAGE[damage](path)
    before = files_of(run)
    code, out, err = train_cli(capsys, run)
    assert code == 2 and err.startswith(f"error: {path}: ") and err.count("\n") == 1, err
    assert "delete it" in err and "allow_pickle" not in err
    assert ("NaN or inf" in err) == ("NaN" in damage or "inf" in damage)
    assert files_of(run) == before


def test_checkpoint_that_is_a_folder(tmp_path, fake_corpus, capsys):
    (tmp_path / "run" / "checkpoint.npz").mkdir(parents=True)
    code, out, err = train_cli(capsys, tmp_path / "run", *TINY_FLAGS, "--steps", "2")
    assert code == 2 and err == f"error: {tmp_path / 'run' / 'checkpoint.npz'}: not a regular file; remove it or use another --out\n"


@pytest.mark.parametrize("content", [b"junk", "wrong ids"])
def test_damaged_token_cache(tmp_path, content):
    from mistral_np import DEFAULT_MODEL, Tokenizer
    from mistral_np.corpus import data_dir
    if not (data_dir() / "shakespeare").exists():
        pytest.skip("Shakespeare not fetched: run python tools/fetch_data.py")
    path = tmp_path / "tokens.npz"
    if content == "wrong ids":
        np.savez(path, train=np.array([1, 5000]), val=np.array([1, 2]))
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError) as e:
        T.encode_corpus(Tokenizer(DEFAULT_MODEL / "tokenizer.model"), path)
    assert str(e.value) == f"{path}: damaged token cache (not the token ids of this tokenizer); delete it: it is rebuilt from the corpus"
