"""Tokenizers read from a GGUF file's metadata, in plain Python.

A GGUF file carries its tokenizer as metadata: the vocabulary `tokenizer.ggml.tokens`, a type per
token (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte) and the rules that join
characters into tokens. Two families cover the models in this book:

- `tokenizer.ggml.model == "gpt2"` (SmolLM2, Llama 3, Qwen): byte-level BPE. Text is UTF-8 bytes,
  each byte shown as one printable character; a regex cuts the text into words and ranked
  `tokenizer.ggml.merges` ("a b") join neighbouring symbols inside each word.
- `tokenizer.ggml.model == "llama"` (Mistral 7B, Llama 2): SentencePiece BPE. Spaces become "▁",
  the text gets a leading "▁", and neighbours merge by `tokenizer.ggml.scores`; a character with no
  piece of its own falls back to its UTF-8 bytes <0xNN>.

Both run the same merge loop (`bpe`); they differ in what a symbol is and in which pair merges first.
Control tokens such as <|im_start|> or <s> written in the text are read as those tokens before
any merging, as llama.cpp and transformers do (pass `special=False` to encode user text literally).
"""
from functools import cache
import heapq
import re
import sys
import unicodedata

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


# ---------------------------------------------------------------- the merge loop both share

def bpe(symbols, rank):
    """Join neighbouring symbols, best pair first, until no pair can join.

    `rank(left, right)` is the pair's priority (lower merges first) or None if the pair never
    merges. Ties go to the leftmost pair. A heap of candidate pairs keeps this O(n log n) even for
    a long run of letters; a merge makes the heap entries of its old neighbours stale, and those
    are recognised (the symbols there changed) and skipped when popped.
    """
    symbols = list(symbols)
    n = len(symbols)
    after = list(range(1, n + 1))                   # index of the next live symbol (n: none)
    before = list(range(-1, n - 1))                 # index of the previous live symbol (-1: none)
    heap = []

    def consider(i, j):
        r = rank(symbols[i], symbols[j])
        if r is not None:
            heapq.heappush(heap, (r, i, symbols[i], symbols[j]))

    for i in range(n - 1):
        consider(i, i + 1)
    while heap:
        _, i, left, right = heapq.heappop(heap)
        j = after[i]
        if symbols[i] != left or j == n or symbols[j] != right:
            continue                                # stale: one of the two has merged since
        symbols[i], symbols[j] = left + right, None
        after[i] = after[j]
        if after[i] < n:
            before[after[i]] = i
            consider(i, after[i])
        if before[i] >= 0:
            consider(before[i], i)
    return [s for s in symbols if s is not None]


def special_tokens(tokens, types):
    """({text: id} of the control and user-defined tokens, one regex that finds any of them).

    The regex lists longer tokens first, so at each position the longest token wins.
    """
    ids = {t: i for i, (t, kind) in enumerate(zip(tokens, types)) if kind in (CONTROL, USER_DEFINED) and t}
    names = sorted(ids, key=len, reverse=True)
    return ids, (re.compile("|".join(map(re.escape, names))) if names else None)


def split_special(text, finder):
    """Cut text into plain chunks and spelled-out control tokens: [(chunk, is_token), ...]."""
    out, at = [], 0
    for m in finder.finditer(text) if finder else ():
        if m.start() > at:
            out.append((text[at:m.start()], False))
        out.append((m.group(), True))
        at = m.end()
    if at < len(text):
        out.append((text[at:], False))
    return out


# ---------------------------------------------------------------- GPT-2 byte-level BPE

def encode_words(tok, text, bos, special, words):
    """The encoding loop of both tokenizers: BOS if asked (None: the file's add_bos_token), control
    tokens matched whole, and every word of the plain text between them merged (and remembered)."""
    if not isinstance(text, str):
        raise TypeError(f"encode: text must be a str, got {type(text).__name__}")
    ids = [tok.bos_id] if (tok.add_bos if bos is None else bos) else []
    for chunk, is_token in split_special(text, tok.special if special else None):
        if is_token:
            ids.append(tok.special_ids[chunk])
            continue
        for word in words(chunk):
            if word not in tok.cache:
                tok.cache[word] = tok.encode_word(word)
            ids += tok.cache[word]
    return ids


def bytes_to_unicode():
    """GPT-2's map from the 256 byte values to 256 printable characters (a list, index = byte).

    Printable Latin-1 bytes stand for themselves; the other 68 (control bytes, space, ...) get
    the characters from U+0100 on, in byte order. So a space is "Ġ" (U+0120) and a newline "Ċ".
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    moved = [b for b in range(256) if b not in keep]
    char = {b: chr(b) for b in keep} | {b: chr(256 + k) for k, b in enumerate(moved)}
    return [char[b] for b in range(256)]


# Unicode's White_Space property: what `\s` means in the Rust/Oniguruma regexes of llama.cpp and
# transformers. (Python's `\s` also matches the separators U+001C..U+001F.)
WHITE_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


@cache
def letters_and_numbers():
    """Regex class bodies for \\p{L} (letters) and \\p{N} (numbers), built from unicodedata.

    Python's `re` has no \\p{...}, so walk all code points once (about 0.15 s) and write each
    category as ranges: "\\U00000041-\\U0000005a..."
    """
    ranges = {"L": [], "N": []}
    for cp in range(sys.maxunicode + 1):
        group = ranges.get(unicodedata.category(chr(cp))[0])
        if group is not None:
            if group and group[-1][1] == cp - 1:
                group[-1][1] = cp
            else:
                group.append([cp, cp])
    return tuple("".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges[k]) for k in "LN")


@cache
def gpt2_regexes():
    """(digit, word) regexes: one number character, and GPT-2's word pattern

        's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+

    A word is a contraction, or letters, numbers or other symbols with at most one space in
    front; a run of spaces leaves its last space to the word that follows (`\\s+(?!\\S)`).
    """
    L, N = letters_and_numbers()
    S = WHITE_SPACE
    word = (rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{L}]+| ?[{N}]+| ?[^{S}{L}{N}]+"
            rf"|[{S}]+(?![^{S}])|[{S}]+")
    return re.compile(f"[{N}]"), re.compile(word)


def smollm_words(text):
    """SmolLM2's pre-tokenizer: every number character is a word by itself; GPT-2's word pattern
    cuts the text between them. (tokenizer.json: Digits(individual_digits) then ByteLevel; llama.cpp:
    the regexes "\\p{N}" then GPT-2's, each on the pieces the previous one left.)"""
    digit, word = gpt2_regexes()
    words, at = [], 0
    for m in digit.finditer(text):
        words += word.findall(text, at, m.start())
        words.append(m.group())
        at = m.end()
    return words + word.findall(text, at)


PRE_TOKENIZERS = {"smollm": smollm_words}


class BytePairTokenizer:
    """GPT-2 style byte-level BPE from GGUF metadata (tokenizer.ggml.model == "gpt2")."""

    def __init__(self, tokens, types, merges, pre_tokenize, bos_id, eos_id, add_bos=False):
        self.tokens, self.types = tokens, types
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.ranks = {tuple(m.split(" ")): r for r, m in enumerate(merges)}   # ("Ġ", "t") -> 0
        self.pre_tokenize = pre_tokenize
        self.special_ids, self.special = special_tokens(tokens, types)
        self.bos_id, self.eos_id, self.add_bos = bos_id, eos_id, add_bos
        self.vocab_size = len(tokens)
        self.byte_char = bytes_to_unicode()
        self.char_byte = {c: b for b, c in enumerate(self.byte_char)}
        self.cache = {}                              # word -> ids

    def __repr__(self):
        return f"BytePairTokenizer(vocab_size={self.vocab_size})"

    def encode(self, text, bos=None, special=True):
        """Token ids of `text`; `bos` None adds BOS if the file says so (add_bos_token)."""
        return encode_words(self, text, bos, special, self.pre_tokenize)

    def encode_word(self, word):
        """One word: its UTF-8 bytes as printable characters, merged by rank, looked up.

        A byte with no token of its own (SmolLM2 has none for 0x04 or 0xF1) is left out before
        merging, as transformers does: such text does not come back from decode.
        """
        chars = [c for c in (self.byte_char[b] for b in word.encode("utf-8")) if c in self.vocab]
        return [self.vocab[s] for s in bpe(chars, lambda a, b: self.ranks.get((a, b)))]

    def token_bytes(self, i):
        """The bytes a token stands for: control tokens are their own text."""
        token = self.tokens[i]
        if self.types[i] in (CONTROL, USER_DEFINED):
            return token.encode("utf-8")
        return bytes(self.char_byte[c] for c in token)

    def decode(self, ids):
        """Text of the ids; half a UTF-8 character at the end shows as "\\ufffd" (see StreamDecoder)."""
        return b"".join(self.token_bytes(int(i)) for i in ids).decode("utf-8", errors="replace")

    def pieces(self, ids):
        return [self.tokens[int(i)] for i in ids]


# ---------------------------------------------------------------- SentencePiece BPE

class SentencePieceTokenizer:
    """SentencePiece BPE with byte fallback from GGUF metadata (tokenizer.ggml.model == "llama")."""

    def __init__(self, tokens, types, scores, bos_id, eos_id, unk_id, add_bos=True, add_space_prefix=True):
        self.tokens, self.types, self.scores = tokens, types, scores
        self.vocab = {t: i for i, t in enumerate(tokens) if types[i] == NORMAL}
        self.byte_ids = {int(t[3:5], 16): i for i, t in enumerate(tokens) if types[i] == BYTE}   # <0x41>
        self.special_ids, self.special = special_tokens(tokens, types)
        self.bos_id, self.eos_id, self.unk_id = bos_id, eos_id, unk_id
        self.add_bos, self.add_space_prefix = add_bos, add_space_prefix
        self.vocab_size = len(tokens)
        # Vocabularies trained with split_by_whitespace have no piece like "a▁b": nothing merges
        # across the start of a word, so each word can be merged alone (and remembered).
        self.by_word = not any(re.search("[^▁]▁", t) for t in self.vocab)
        self.cache = {}

    def __repr__(self):
        return f"SentencePieceTokenizer(vocab_size={self.vocab_size})"

    def encode(self, text, bos=None, special=True):
        """Token ids of `text`; `bos` None adds BOS if the file says so (add_bos_token).

        Each plain chunk gets the leading "▁" (add_space_prefix), at the start and after a
        control token, as llama.cpp does; sentencepiece itself sees one chunk.
        """
        return encode_words(self, text, bos, special, self.words)

    def words(self, chunk):
        """Spaces become "▁"; the chunk is cut before each "▁" (if the vocabulary allows it)."""
        chunk = ("▁" if self.add_space_prefix else "") + chunk.replace(" ", "▁")
        return re.split("(?<=[^▁])(?=▁)", chunk) if self.by_word else [chunk]

    def rank(self, left, right):
        """A pair merges if the joined piece is in the vocabulary; the higher its score, the sooner."""
        i = self.vocab.get(left + right)
        return None if i is None else -self.scores[i]

    def encode_word(self, word):
        """Characters merged by score; a leftover character with no piece becomes its bytes."""
        ids = []
        for piece in bpe(word, self.rank):
            if piece in self.vocab:
                ids.append(self.vocab[piece])
            elif self.byte_ids:
                ids += [self.byte_ids[b] for b in piece.encode("utf-8")]
            else:
                ids.append(self.unk_id)
        return ids

    def decode(self, ids):
        """Text of the ids: "▁" is a space, <0xNN> a byte, control tokens are invisible, and the
        space added in front of the text (add_space_prefix) is taken off again."""
        out, first = bytearray(), True
        for i in map(int, ids):
            kind, piece = self.types[i], self.tokens[i]
            if kind == CONTROL:
                continue
            if kind == BYTE:
                out.append(int(piece[3:5], 16))
            elif kind == UNKNOWN:
                out += " \u2047 ".encode()           # sentencepiece shows <unk> as " ⁇ "
            else:
                if first and self.add_space_prefix and piece.startswith("▁"):
                    piece = piece[1:]
                out += piece.replace("▁", " ").encode("utf-8")
            first = False
        return out.decode("utf-8", errors="replace")

    def pieces(self, ids):
        return [self.tokens[int(i)] for i in ids]


# ---------------------------------------------------------------- from the metadata

def tokenizer_from_gguf(metadata, path):
    """The tokenizer a GGUF file describes; `path` only names the file in error messages."""
    model = metadata.get("tokenizer.ggml.model")
    tokens = metadata.get("tokenizer.ggml.tokens")
    if model is None or tokens is None:
        raise ValueError(f"{path}: no tokenizer in the metadata (tokenizer.ggml.model / .tokens missing); "
                         "take the tokenizer from the original model instead")
    types = metadata.get("tokenizer.ggml.token_type", [NORMAL] * len(tokens))
    ids = dict(bos_id=metadata.get("tokenizer.ggml.bos_token_id"), eos_id=metadata.get("tokenizer.ggml.eos_token_id"))
    if model == "gpt2":
        pre = metadata.get("tokenizer.ggml.pre", "default")
        if pre not in PRE_TOKENIZERS:
            raise ValueError(f"{path}: tokenizer.ggml.pre is {pre!r}; supported: {', '.join(map(repr, PRE_TOKENIZERS))}")
        return BytePairTokenizer(tokens, types, metadata["tokenizer.ggml.merges"], PRE_TOKENIZERS[pre], **ids,
                                 add_bos=metadata.get("tokenizer.ggml.add_bos_token", False))
    if model == "llama":
        return SentencePieceTokenizer(tokens, types, metadata["tokenizer.ggml.scores"], **ids,
                                      unk_id=metadata.get("tokenizer.ggml.unknown_token_id", 0),
                                      add_bos=metadata.get("tokenizer.ggml.add_bos_token", True),
                                      add_space_prefix=metadata.get("tokenizer.ggml.add_space_prefix", True))
    raise ValueError(f"{path}: tokenizer.ggml.model is {model!r}; supported: 'gpt2' (byte-level BPE), "
                     "'llama' (SentencePiece)")


# ---------------------------------------------------------------- chat templates

def chat_prompt(metadata, messages, add_generation_prompt=True):
    """The prompt text for a chat [{"role", "content"}, ...], as the file's chat template renders it.

    Instead of a Jinja engine, recognise the two template families used here: ChatML
    (<|im_start|>role\\ncontent<|im_end|>\\n, SmolLM2, Qwen) and Mistral's [INST] ... [/INST].
    """
    template = metadata.get("tokenizer.chat_template")
    if template is None:
        raise ValueError("the metadata has no tokenizer.chat_template")
    if "<|im_start|>" in template:
        return chatml_prompt(template, messages, add_generation_prompt)
    if "[INST]" in template:
        tokens = metadata["tokenizer.ggml.tokens"]
        return inst_prompt(messages, tokens[metadata["tokenizer.ggml.bos_token_id"]],
                           tokens[metadata["tokenizer.ggml.eos_token_id"]])
    raise ValueError(f"unknown chat template {template[:80]!r}...; supported: ChatML (<|im_start|>) and [INST]")


def chatml_prompt(template, messages, add_generation_prompt=True):
    """ChatML. A template that spells out a system message (SmolLM2: "You are a helpful AI
    assistant named SmolLM, ...") puts it first when the chat does not start with one."""
    default = re.search(r"<\|im_start\|>system(?:\n|\\n)([^'\"{}]*?)<\|im_end\|>", template)
    if default and messages and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": default.group(1)}, *messages]
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def inst_prompt(messages, bos="<s>", eos="</s>"):
    """Mistral's [INST] format: <s>[INST] user [/INST]answer</s>[INST] user [/INST]
    A leading system message goes before the first user message, a blank line between."""
    messages = [dict(m) for m in messages]
    if len(messages) > 1 and messages[0]["role"] == "system":
        system = messages.pop(0)["content"]
        messages[0]["content"] = f"{system}\n\n{messages[0]['content']}"
    text = bos
    for k, m in enumerate(messages):
        if m["role"] != ("user" if k % 2 == 0 else "assistant"):
            raise ValueError(f"[INST] chats alternate user/assistant from the start (message {k} is {m['role']!r})")
        text += f"[INST] {m['content']} [/INST]" if m["role"] == "user" else f"{m['content']}{eos}"
    return text
