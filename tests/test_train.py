"""The NumPy trainer: exact gradients, a loss that goes down, agreement with Model.forward,
resumable runs, and the committed pocket model's validation loss (a regression test)."""
import io
import json

import numpy as np
import pytest

import mistral_np
from mistral_np.attention import attention, window_mask
from mistral_np.config import ModelArgs
from mistral_np.model import Model
from mistral_np import train as T

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
    _, grads = T.loss_and_grads(params, args, x, y)
    assert set(grads) == set(params)
    rng = np.random.default_rng(2)
    eps = 1e-6
    for name, p in params.items():
        assert grads[name].shape == p.shape, name
        for _ in range(5):
            i = tuple(int(rng.integers(0, s)) for s in p.shape)
            old = p[i]
            p[i] = old + eps
            up, _ = T.loss_and_grads(params, args, x, y)
            p[i] = old - eps
            down, _ = T.loss_and_grads(params, args, x, y)
            p[i] = old
            numeric = (up - down) / (2 * eps)
            assert abs(numeric - grads[name][i]) <= 1e-6 + 1e-5 * abs(numeric), (name, i)


def test_tied_embeddings_gradient():
    args = TINY.replace(tie_embeddings=True)
    params = tiny_params(args)
    assert "output.weight" not in params
    x, y = tiny_batch(args)
    _, grads = T.loss_and_grads(params, args, x, y)
    name, i, eps = "tok_embeddings.weight", (x[0, 0], 3), 1e-6
    params[name][i] += eps
    up, _ = T.loss_and_grads(params, args, x, y)
    params[name][i] -= 2 * eps
    down, _ = T.loss_and_grads(params, args, x, y)
    assert abs((up - down) / (2 * eps) - grads[name][i]) < 1e-6


def test_trainer_forward_matches_model_forward():
    params = tiny_params(dtype=np.float32)
    x, _ = tiny_batch()
    logits, _ = T.forward(params, TINY, x)                               # (B, T, vocab)
    model = Model(TINY, T.as_weights(params, TINY))
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
        loss, grads = T.loss_and_grads(params, TINY, x, y)
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
    loss, _ = T.cross_entropy(logits, ids[1:])
    assert loss == pytest.approx(stored["loss"], abs=1e-4)
