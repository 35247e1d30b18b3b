"""The real pretrained SmolLM2-135M-Instruct, read from its GGUF file, against transformers' outputs.

tests/fixtures/smollm2_reference.json was made by tools/make_gguf_fixture.py (transformers 5.24
reading the same file, float32, eager attention). Skipped when the file has not been fetched.
"""
import json

import numpy as np
import pytest

import mistral_np
from helpers import FIXTURES

pytestmark = pytest.mark.skipif(not mistral_np.SMOLLM2_GGUF.exists(),
                                reason="run tools/fetch_data.py for SmolLM2's GGUF")
REFERENCE = json.loads((FIXTURES / "smollm2_reference.json").read_text())
PROMPTS = REFERENCE["prompts"]


@pytest.fixture(scope="module")
def model():
    return mistral_np.load(mistral_np.SMOLLM2_GGUF)


@pytest.fixture(scope="module")
def tokenizer():
    return mistral_np.load_tokenizer(mistral_np.SMOLLM2_GGUF)


@pytest.mark.parametrize("ref", PROMPTS, ids=[p["kind"] + ":" + p["text"][-20:] for p in PROMPTS])
def test_logits_match_transformers(model, tokenizer, ref):
    assert tokenizer.encode(ref["text"]) == ref["ids"]
    logits = model.forward(np.array(ref["ids"]))                          # (T, 49152)
    last = logits[-1]
    top = np.argsort(-last, kind="stable")[:20]
    assert list(top[:5]) == ref["top_ids"][:5]
    np.testing.assert_allclose(last[ref["top_ids"]], ref["top_logits"], atol=1e-3)
    np.testing.assert_allclose(logits.mean(axis=1), ref["all_positions_logit_mean"], atol=1e-3)
    assert abs(last.mean() - ref["last_logits_mean"]) < 1e-3 and abs(last.std() - ref["last_logits_std"]) < 1e-3


@pytest.mark.parametrize("ref", PROMPTS, ids=[p["kind"] + ":" + p["text"][-20:] for p in PROMPTS])
def test_greedy_continuation_matches_transformers(model, ref):
    new = list(mistral_np.generate_ids(model, ref["ids"], max_new_tokens=len(ref["greedy"]), stop_at_eos=False))
    assert new == ref["greedy"]


def test_chat_prompt_and_answer(model, tokenizer):
    from mistral_np.gguf_tokenizer import chat_prompt
    chat = REFERENCE["chat"]
    text = chat_prompt(mistral_np.read_metadata(mistral_np.SMOLLM2_GGUF), chat["messages"])
    assert text == chat["rendered"] and tokenizer.encode(text) == chat["ids"]
    answer = "".join(mistral_np.generate(model, tokenizer, text, max_new_tokens=20))
    assert answer == PROMPTS[-1]["greedy_text_until_eos"]                 # "The capital of France is Paris."
