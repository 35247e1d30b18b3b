"""A thin wrapper over SentencePiece: encode with BOS, decode, and streaming-safe decoding.

Mistral's tokenizer is a SentencePiece BPE model with byte fallback: a character with no piece
of its own is spelled as its UTF-8 bytes <0xE6><0x97><0xA5>. When streaming, a token may be
half of a character, so text is released only once it decodes to whole characters.
"""
from pathlib import Path

import sentencepiece as spm

from .paths import require_regular_file


class Tokenizer:
    def __init__(self, path):
        path = Path(path)
        if path.exists():
            require_regular_file(path, "tokenizer")
        else:
            raise FileNotFoundError(f"tokenizer file {path} not found; for Mistral 7B it is tokenizer.model "
                                    "beside the weights (for the book: python tools/fetch_data.py)")
        self.path = path
        data = path.read_bytes()                 # from bytes: any path works, whatever its characters
        if data.startswith(b"version https://git-lfs"):
            raise ValueError(f"{path}: a Git LFS pointer ({len(data)} bytes), not the tokenizer; fetch it "
                             "with `git lfs pull` in that clone, or download with huggingface-cli")
        try:
            self.sp = spm.SentencePieceProcessor(model_proto=data)
        except RuntimeError:
            self.sp = None
        if self.sp is None or self.sp.get_piece_size() == 0:
            raise ValueError(f"{path}: not a SentencePiece model ({len(data):,} bytes: empty, truncated or "
                             "another format); download tokenizer.model again")
        self.vocab_size = self.sp.get_piece_size()
        self.bos_id, self.eos_id = self.sp.bos_id(), self.sp.eos_id()

    def __repr__(self):
        return f"Tokenizer({self.path.name}, vocab_size={self.vocab_size})"

    add_bos = True    # Mistral's prompts start with BOS (the GGUF tokenizers read this from the file)

    def encode(self, text, bos=None):
        if not isinstance(text, str):
            raise TypeError(f"encode: text must be a str, got {type(text).__name__}")
        return ([self.bos_id] if (self.add_bos if bos is None else bos) else []) + self.sp.encode(text)

    def decode(self, ids):
        return self.sp.decode([int(i) for i in ids])

    def pieces(self, ids):
        return [self.sp.id_to_piece(int(i)) for i in ids]


class StreamDecoder:
    """Turns a stream of token ids into a stream of text, never splitting a UTF-8 character.

    SentencePiece drops the leading space of a text's first piece, so each new piece is decoded
    together with everything since the last released text and only the new part is returned.
    """

    def __init__(self, tokenizer, prefix_ids=()):
        self.tok = tokenizer
        self.ids = list(prefix_ids)[-1:]     # one token of context keeps the spaces right
        self.text = tokenizer.decode(self.ids)

    def push(self, token_id):
        self.ids.append(int(token_id))
        text = self.tok.decode(self.ids)
        if text.endswith("\ufffd"):          # an incomplete byte sequence: wait for the rest
            return ""
        new, self.ids, self.text = text[len(self.text):], self.ids[-1:], None
        self.text = self.tok.decode(self.ids)
        return new
