"""Sampling, the generation loop, its argument checks, and the command line."""
import subprocess
import sys

import numpy as np
import pytest

import mistral_np
from mistral_np import checkpoint, generate, generate_ids, random_model, sample
from mistral_np.attention import softmax
from mistral_np.tokenizer import Tokenizer

from helpers import POCKET_TOKENIZER, REPO, small_args

LOGITS = np.array([1.0, 3.0, 0.5, 2.5, -1.0, 2.9], np.float32)


# --- sample() -------------------------------------------------------------------------------------

def test_temperature_zero_is_argmax():
    rng = np.random.default_rng(0)
    for _ in range(20):
        logits = rng.standard_normal(50).astype(np.float32)
        assert sample(logits, temperature=0.0) == int(np.argmax(logits))
        assert sample(logits, 0.0, top_k=5, top_p=0.3, rng=rng) == int(np.argmax(logits))


def test_top_k_1_and_tiny_top_p_are_greedy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        logits = (3 * rng.standard_normal(50)).astype(np.float32)
        assert sample(logits, temperature=1.5, top_k=1, rng=rng) == int(np.argmax(logits))
        assert sample(logits, temperature=1.5, top_p=1e-9, rng=rng) == int(np.argmax(logits))


def test_seeded_sampling_is_reproducible():
    draws = [[sample(LOGITS, 1.0, rng=np.random.default_rng(s)) for s in range(30)] for _ in range(2)]
    assert draws[0] == draws[1] and len(set(draws[0])) > 1


def frequencies(n, seed=0, **kw):
    rng = np.random.default_rng(seed)
    return np.bincount([sample(LOGITS, rng=rng, **kw) for _ in range(n)], minlength=LOGITS.size) / n


def test_empirical_frequencies_match_softmax():
    n = 4000
    p = softmax(LOGITS.astype(np.float64))
    sd = np.sqrt(p * (1 - p) / n)                    # binomial standard deviation of a frequency
    assert np.all(np.abs(frequencies(n, temperature=1.0) - p) < 4 * sd + 1e-9)
    p2 = softmax(LOGITS.astype(np.float64) / 2)      # temperature 2 flattens
    assert np.all(np.abs(frequencies(n, seed=1, temperature=2.0) - p2) < 4 * np.sqrt(p2 * (1 - p2) / n))


def test_top_k_and_top_p_keep_the_right_tokens():
    n = 3000
    # top_k = 2: tokens 1 (3.0) and 5 (2.9) only, renormalised
    f = frequencies(n, temperature=1.0, top_k=2)
    p = np.zeros(6)
    p[[1, 5]] = softmax(np.array([3.0, 2.9]))
    assert np.all(np.abs(f - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-9)
    # top_p: the smallest set of most likely tokens whose mass reaches top_p
    probs = softmax(LOGITS.astype(np.float64))       # order 1, 5, 3, 0, 2, 4
    mass_two = probs[1] + probs[5]
    f = frequencies(n, temperature=1.0, top_p=mass_two - 1e-6)
    assert set(np.nonzero(f)[0]) == {1, 5}
    f = frequencies(n, temperature=1.0, top_p=mass_two + 1e-6)
    assert set(np.nonzero(f)[0]) == {1, 3, 5}


@pytest.mark.parametrize("kw,match", [
    ({"temperature": -0.5}, "temperature must be >= 0"),
    ({"temperature": float("nan")}, "temperature must be >= 0"),
    ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
    ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
    ({"top_k": -1}, "top_k must be an integer >= 0"),
    ({"top_k": 2.5}, "top_k must be an integer >= 0"),
    ({"max_new_tokens": -1}, "max_new_tokens must be an integer >= 0"),
])
def test_bad_sampling_arguments_fail_at_the_call(small_model, kw, match):
    with pytest.raises(ValueError, match=match):
        generate_ids(small_model, [1, 2, 3], **kw)     # not at the first next()


def test_prompt_longer_than_the_context(small_model):
    with pytest.raises(ValueError, match="the prompt has 129 tokens but the model's context is 128"):
        generate_ids(small_model, np.ones(129, int))
    with pytest.raises(ValueError, match="at least one token"):
        generate_ids(small_model, [])


def test_token_ids_out_of_range_in_forward(small_model):
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 23\), got 0..23"):
        small_model.forward(np.array([0, 23]))
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 23\), got -1..5"):
        small_model.forward(np.array([5, -1]))
    with pytest.raises(ValueError, match="non-empty 1-D array of integer ids"):
        small_model.forward(np.array([]))
    with pytest.raises(ValueError, match="non-empty 1-D array of integer ids"):
        small_model.forward(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="non-empty 1-D array of integer ids"):
        small_model.forward(np.array([[1, 2]]))


# --- generate_ids ---------------------------------------------------------------------------------

def test_greedy_generation_past_W_and_past_the_context():
    """With the rolling cache, generation runs on past max_seq_len; each greedy token is the argmax
    of a no-cache forward over everything so far (windowed attention needs no more)."""
    model = random_model(small_args(W=3, max_seq_len=12), seed=7)
    prompt = [1, 5, 7, 9]
    out = list(generate_ids(model, prompt, max_new_tokens=30, stop_at_eos=False))
    assert len(out) == 30
    seq = list(prompt)
    for token in out:
        assert token == int(np.argmax(model.forward(np.array(seq))[-1]))
        seq.append(token)


def test_seeded_generation_is_reproducible(small_model):
    def run(seed, chunk_size=None):
        return list(generate_ids(small_model, [1, 4, 2, 8, 5, 7], 25, temperature=1.0, top_k=10, top_p=0.9,
                                 seed=seed, chunk_size=chunk_size, stop_at_eos=False))
    a = run(3)
    assert a == run(3) == run(3, chunk_size=1)
    assert a != run(4)


def test_stop_at_eos(ref, tiny_model):
    greedy = [int(t) for t in ref["greedy_tokens"]]          # 71, 72, 19, ...
    prompt = ref["tokens"][:8]
    assert list(generate_ids(tiny_model, prompt, 20, eos_id=19)) == greedy[:3]     # eos is yielded, then stop
    assert list(generate_ids(tiny_model, prompt, 20, eos_id=19, stop_at_eos=False)) == greedy
    assert list(generate_ids(tiny_model, prompt, 0)) == []


def test_generate_with_a_caller_cache(small_model):
    """A cache passed in continues the sequence it holds."""
    cache = small_model.new_cache()
    small_model.forward(np.array([1, 2, 3]), cache)
    out = list(generate_ids(small_model, [4, 5], 5, cache=cache, stop_at_eos=False))
    expected = list(generate_ids(small_model, [1, 2, 3, 4, 5], 5, stop_at_eos=False))
    assert out == expected
    # Every yielded token but the last has been fed back (its logits would never be used).
    assert cache.n_seen == 3 + 2 + 5 - 1


# --- generate() with text -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pocket_tokenizer():
    return Tokenizer(POCKET_TOKENIZER)


@pytest.fixture(scope="module")
def pocket_sized_model(pocket_tokenizer):
    return random_model(small_args(vocab_size=pocket_tokenizer.vocab_size, W=4), seed=11, std=0.5)


@pytest.mark.parametrize("prompt", ["", "To be, or not", "naïve café 日本 🙂"])
def test_generate_text_is_the_decoded_ids(pocket_tokenizer, pocket_sized_model, prompt):
    """The text pieces joined == decoding the prompt + new ids, minus the decoded prompt.
    The empty prompt is BOS alone, and generates fine."""
    tok, model = pocket_tokenizer, pocket_sized_model
    kw = dict(max_new_tokens=40, temperature=1.0, seed=5, stop_at_eos=False)
    text = "".join(generate(model, tok, prompt, **kw))
    prompt_ids = tok.encode(prompt)
    ids = list(generate_ids(model, prompt_ids, **kw))
    assert len(ids) == 40 and text
    assert text == tok.decode(prompt_ids + ids)[len(tok.decode(prompt_ids)):]


class EosAfter(mistral_np.Model):
    """A random model pushed to predict EOS as token n + 1 (when the sequence is n tokens long)."""

    def __init__(self, model, eos_id, n):
        super().__init__(model.args, model.weights)
        self.eos_id, self.n = eos_id, n

    def forward(self, tokens, cache=None):
        logits = super().forward(tokens, cache)
        if cache is not None and cache.n_seen == self.n:
            logits[-1, self.eos_id] += 1e4
        return logits


def test_generate_stops_at_the_tokenizers_eos(pocket_tokenizer, pocket_sized_model):
    tok = pocket_tokenizer
    prompt_ids = tok.encode("abc")
    model = EosAfter(pocket_sized_model, tok.eos_id, len(prompt_ids) + 3)
    ids = list(generate_ids(model, prompt_ids, 10, temperature=1.0, seed=0))
    assert len(ids) == 4 and ids[-1] == tok.eos_id and tok.eos_id not in ids[:3]
    text = "".join(generate(model, tok, "abc", 10, temperature=1.0, seed=0))
    assert text == tok.decode(prompt_ids + ids[:3])[len(tok.decode(prompt_ids)):]     # no EOS text
    assert list(generate(EosAfter(pocket_sized_model, tok.eos_id, len(prompt_ids)), tok, "abc", 10)) == []
    # stop_at_eos=False: EOS (which has no text) is passed over and the text goes on
    ids = list(generate_ids(model, prompt_ids, 10, temperature=1.0, seed=0, stop_at_eos=False))
    assert len(ids) == 10 and ids[3] == tok.eos_id and tok.eos_id not in ids[4:]
    text = "".join(generate(model, tok, "abc", 10, temperature=1.0, seed=0, stop_at_eos=False))
    assert text == tok.decode(prompt_ids + ids)[len(tok.decode(prompt_ids)):]


# --- the command line -----------------------------------------------------------------------------

def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mistral_np", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=60)


def test_cli_bad_model_folder_is_a_clean_error():
    r = run_cli("generate", "x", "--model", "/nonexistent")
    assert r.returncode == 2
    assert "error:" in r.stderr and "/nonexistent" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_flag_that_is_not_a_number_exits_2_in_one_line():
    r = run_cli("generate", "x", "--chunk-size", "1e3")
    assert (r.returncode, r.stdout, r.stderr) == (2, "", "error: --chunk-size: '1e3' is not written in digits; "
                                                          "give --chunk-size 1000\n")


def test_cli_bad_argument_is_a_clean_error(tmp_path, pocket_tokenizer):
    d = checkpoint.save(random_model(small_args(vocab_size=pocket_tokenizer.vocab_size), seed=0), tmp_path)
    (d / "tokenizer.model").write_bytes(POCKET_TOKENIZER.read_bytes())
    r = run_cli("generate", "x", "--model", str(d), "--top-p", "0")
    assert r.returncode == 2 and "error: top_p must be in (0, 1]" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("generate", "To be", "--model", str(d), "--max-new-tokens", "5", "--seed", "1",
                "--temperature", "0.8")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("To be") and len(r.stdout) > len("To be")


def test_cli_chat_without_a_template_is_refused_before_loading(monkeypatch, capsys):
    from mistral_np import __main__ as cli

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before --chat was checked")
    monkeypatch.setattr(cli, "load", no_load)
    assert cli.main(["generate", "--chat", "Hello"]) == 2                # the pocket model: no template
    assert "--chat needs a model with a chat template" in capsys.readouterr().err
