"""Tokenizers: Mistral's real one (ids known from the published model) and the pocket one."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import mistral_np
from mistral_np.corpus import mistral_tokenizer_path
from mistral_np.tokenizer import StreamDecoder, Tokenizer

from helpers import POCKET_TOKENIZER

NON_ASCII = "naïve café 日本 🙂"


@pytest.fixture(scope="module")
def mistral_tok():
    try:
        return Tokenizer(mistral_tokenizer_path())
    except FileNotFoundError as e:
        pytest.skip(f"Mistral's tokenizer is not in data/ (run tools/fetch_data.py): {e}")


@pytest.fixture(scope="module")
def pocket_tok():
    return mistral_np.load_tokenizer(POCKET_TOKENIZER.parent)


def test_mistral_tokenizer_ids(mistral_tok):
    t = mistral_tok
    assert (t.vocab_size, t.bos_id, t.eos_id, t.sp.unk_id()) == (32000, 1, 2, 0)
    assert t.encode("Hello, world!", bos=False) == [22557, 28725, 1526, 28808]
    assert t.encode("The capital of France is") == [1, 415, 5565, 302, 4843, 349]
    assert t.pieces([3, 258]) == ["<0x00>", "<0xFF>"]          # byte fallback pieces
    assert t.decode([1, 415, 5565, 302, 4843, 349]) == "The capital of France is"


def streamed(tok, ids, prefix=()):
    sd = StreamDecoder(tok, prefix)
    return [sd.push(i) for i in ids]


@pytest.mark.parametrize("which", ["pocket", "mistral"])
def test_non_ascii_round_trip_and_streaming(which, request):
    tok = request.getfixturevalue(f"{which}_tok")
    ids = tok.encode(NON_ASCII)
    assert tok.decode(ids) == NON_ASCII
    pieces = streamed(tok, ids)
    assert "".join(pieces) == tok.decode(ids) == NON_ASCII
    assert not any("\ufffd" in p for p in pieces)             # never half a character


def test_pocket_tokenizer_spells_unknown_characters_in_bytes(pocket_tok):
    ids = pocket_tok.encode("日", bos=False)
    assert pocket_tok.pieces(ids)[-3:] == ["<0xE6>", "<0x97>", "<0xA5>"]
    assert streamed(pocket_tok, ids)[-3:] == ["", "", "日"]     # released once the character is whole
    assert pocket_tok.vocab_size == 2048 and (pocket_tok.bos_id, pocket_tok.eos_id) == (1, 2)


def test_empty_prompt_is_bos_alone(pocket_tok):
    assert pocket_tok.encode("") == [1]
    assert pocket_tok.encode("", bos=False) == []
    assert pocket_tok.decode([1]) == ""


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30),
       st.text(alphabet="abc é日🙂\n", max_size=10))
def test_streaming_equals_decoding_everything(text, prefix_text):
    """Streaming after a prompt gives exactly the decoded continuation, for arbitrary text."""
    tok = Tokenizer(POCKET_TOKENIZER)
    prompt = tok.encode(prefix_text)
    ids = tok.encode(text, bos=False)
    out = "".join(streamed(tok, ids, prompt))
    assert out == tok.decode(prompt + ids)[len(tok.decode(prompt)):]


def test_encode_rejects_non_text(pocket_tok):
    with pytest.raises(TypeError, match="text must be a str"):
        pocket_tok.encode(b"bytes")


def test_missing_tokenizer_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer file .*tokenizer.model not found"):
        mistral_np.load_tokenizer(tmp_path)
