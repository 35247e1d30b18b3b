"""GGUF, the file format of llama.cpp and Ollama: one file holds the config, the tokenizer and the weights.

Layout (little-endian):

    "GGUF" | version u32 | tensor_count u64 | kv_count u64
    kv_count x   key (string) | value type u32 | value
    tensor_count x   name (string) | n_dims u32 | dims u64 x n_dims | ggml type u32 | offset u64
    padding to `general.alignment` (32) | tensor data (each tensor at data start + its offset)

A string is a u64 length and UTF-8 bytes; an array is an element type u32, a count u64 and the
elements. Dims are listed fastest-varying first, so NumPy's shape is the reverse: a (vocab, dim)
embedding is listed [dim, vocab]. Matrices keep Mistral's own RoPE layout (neighbouring pairs).
"""
from pathlib import Path
import math
import struct

import numpy as np

from .config import ModelArgs
from .model import Model
from .weights import LAYER_KEYS, expected_shapes, nest
from .quants import GGML_TYPES, WIDEN_AT_LOAD_BYTES, GGMLTensor, nonfinite_blocks, row_bytes, type_name

# value type id -> struct format of the scalar types
SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9
MAX_NESTING = 8     # arrays of arrays: llama.cpp's files use none; a deeper nest is damage
NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1", 10: "<u8", 11: "<i8", 12: "<f8"}


class GGUFError(ValueError):
    """A file that is not a GGUF this reader can use; the message names the file and the problem."""


class _Reader:
    """A cursor over the file's bytes that names the file when the bytes run out."""

    def __init__(self, buf, path):
        self.buf, self.path, self.at = buf, path, 0

    def take(self, n, what):
        if n < 0 or self.at + n > len(self.buf):
            raise GGUFError(f"{self.path}: truncated GGUF: {what} at byte {self.at:,} needs {n:,} bytes, "
                            f"the file has {len(self.buf):,}; download it again")
        b = self.buf[self.at:self.at + n]
        self.at += n
        return b

    def scalar(self, fmt, what):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what):
        raw = bytes(self.take(self.scalar("<Q", what), what))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFError(f"{self.path}: {what} is not UTF-8 text; the file is damaged") from None

    def value(self, vtype, what, depth=0):
        if vtype == 6:      # f32: the shortest decimal that is this float32 (1e-05, not 9.99999974e-06)
            return float(str(np.float32(self.scalar("<f", what))))
        if vtype in SCALARS:
            return self.scalar(SCALARS[vtype], what)
        if vtype == STRING:
            return self.string(what)
        if vtype == ARRAY:
            etype, count = self.scalar("<I", what), self.scalar("<Q", what)
            if etype in NUMPY:                         # numbers: one NumPy read, not a Python loop
                size = np.dtype(NUMPY[etype]).itemsize
                arr = np.frombuffer(self.take(count * size, what), NUMPY[etype])
                return (arr != 0).tolist() if etype == 7 else arr.tolist()
            if etype == ARRAY and depth >= MAX_NESTING:
                raise GGUFError(f"{self.path}: {what} nests arrays more than {MAX_NESTING} deep; the file is damaged")
            if etype in (STRING, ARRAY):
                return [self.value(etype, what, depth + 1) for _ in range(count)]
            raise GGUFError(f"{self.path}: {what} is an array of unknown value type {etype}; "
                            "the file is damaged or newer than this reader (GGUF v2/v3)")
        raise GGUFError(f"{self.path}: {what} has unknown value type {vtype} (known: 0-12); "
                        "the file is damaged or newer than this reader (GGUF v2/v3)")


def read_gguf(path):
    """(metadata dict, {name: (ggml type, shape)}, {name: uint8 memory-mapped bytes}) of a GGUF file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not a file; pass the .gguf file (or the folder that holds it)")
    buf = np.memmap(path, np.uint8, mode="r") if path.stat().st_size else np.zeros(0, np.uint8)
    r = _Reader(memoryview(buf), path)                  # a memoryview slices fast
    if bytes(r.take(4, "the magic")) != b"GGUF":
        raise GGUFError(f"{path}: not a GGUF file (it does not start with 'GGUF')")
    version = r.scalar("<I", "the version")
    if version not in (2, 3):
        raise GGUFError(f"{path}: GGUF version {version}; this reader knows versions 2 and 3")
    n_tensors, n_kv = r.scalar("<Q", "the tensor count"), r.scalar("<Q", "the key count")
    if n_tensors > len(buf) // 24 or n_kv > len(buf) // 12:       # each entry takes at least that many bytes
        raise GGUFError(f"{path}: the header claims {n_tensors:,} tensors and {n_kv:,} keys, more than "
                        f"{len(buf):,} bytes can hold; the file is damaged")
    metadata = {}
    for i in range(n_kv):
        key = r.string(f"key {i}")
        if key in metadata:
            raise GGUFError(f"{path}: metadata key {key!r} appears twice; the file is damaged")
        metadata[key] = r.value(r.scalar("<I", f"the type of {key!r}"), repr(key))
    infos = {}
    for i in range(n_tensors):
        name = r.string(f"tensor name {i}")
        if name in infos:
            raise GGUFError(f"{path}: tensor {name!r} appears twice; the file is damaged")
        n_dims = r.scalar("<I", f"the dims of {name!r}")
        if n_dims > 4:
            raise GGUFError(f"{path}: tensor {name!r} has {n_dims} dimensions (GGUF allows at most 4)")
        dims = [r.scalar("<Q", f"the dims of {name!r}") for _ in range(n_dims)]
        infos[name] = (r.scalar("<I", f"the type of {name!r}"), tuple(reversed(dims)), r.scalar("<Q", name))
    alignment = metadata.get("general.alignment", 32)
    if type(alignment) is not int or alignment <= 0 or alignment & (alignment - 1):
        raise GGUFError(f"{path}: general.alignment is {alignment!r}; it must be a power of two")
    start = -(-r.at // alignment) * alignment
    tensors, shapes, end_of_previous = {}, {}, 0
    for name, (ggml_type, shape, offset) in sorted(infos.items(), key=lambda item: item[1][2]):
        if ggml_type not in GGML_TYPES:
            raise GGUFError(f"{path}: tensor {name!r} has ggml type {type_name(ggml_type)}, which this "
                            f"reader does not dequantize (it reads {', '.join(sorted(t[0] for t in GGML_TYPES.values()))})")
        block = GGML_TYPES[ggml_type][1]
        if not shape or shape[-1] % block:
            raise GGUFError(f"{path}: tensor {name!r} of type {type_name(ggml_type)} has rows of {shape[-1:]} "
                            f"weights, not a whole number of {block}-weight blocks; the file is damaged")
        if offset % alignment:
            raise GGUFError(f"{path}: tensor {name!r} starts at offset {offset}, not a multiple of the "
                            f"alignment {alignment}; the file is damaged")
        nbytes = math.prod(shape[:-1]) * row_bytes(ggml_type, shape[-1])      # Python ints: no overflow
        if offset < end_of_previous:
            raise GGUFError(f"{path}: tensor {name!r} at offset {offset} overlaps the tensor before it; "
                            "the file is damaged")
        end_of_previous = offset + nbytes
        if start + offset + nbytes > len(buf):
            raise GGUFError(f"{path}: tensor {name!r} ends at byte {start + offset + nbytes:,} but the file "
                            f"has {len(buf):,}; the file is truncated, download it again")
        tensors[name] = buf[start + offset:start + offset + nbytes]
        shapes[name] = (ggml_type, shape)
    return metadata, {n: shapes[n] for n in infos}, {n: tensors[n] for n in infos}   # in the file's order


def _pack_value(value):
    """(GGUF value type, bytes) of a Python value: str, bool, int (u32, else i64), float (f32), lists."""
    if isinstance(value, str):
        raw = value.encode()
        return STRING, struct.pack("<Q", len(raw)) + raw
    if isinstance(value, bool):
        return 7, struct.pack("<?", value)
    if isinstance(value, (int, np.integer)):
        return (4, struct.pack("<I", value)) if 0 <= value < 2**32 else (11, struct.pack("<q", value))
    if isinstance(value, (float, np.floating)):
        return 6, struct.pack("<f", value)
    if isinstance(value, (list, tuple)):
        packed = [_pack_value(v) for v in value]
        etype = packed[0][0] if packed else 4
        if any(t != etype for t, _ in packed):
            raise TypeError("write_gguf: an array's elements must all have one type")
        return ARRAY, struct.pack("<IQ", etype, len(packed)) + b"".join(b for _, b in packed)
    raise TypeError(f"write_gguf: no GGUF value type for {type(value).__name__}")


def write_gguf(path, metadata, tensors, alignment=32):
    """Write a GGUF v3 file: metadata {key: value}, tensors {name: (ggml type, shape, uint8 bytes)}.

    Tensors may be large (e.g. np.memmap blocks); they are streamed to a temporary file that is
    renamed into place at the end, so a failure never leaves a half-written file behind. The bytes
    may also be a function returning them, called when the tensor is written: a file larger than
    memory then holds one tensor in memory at a time.
    """
    path = Path(path)
    head = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata) + 1))
    for key, value in {**metadata, "general.alignment": alignment}.items():
        vtype, raw = _pack_value(value)
        head += _pack_value(key)[1] + struct.pack("<I", vtype) + raw

    def check(name, ggml_type, shape, nbytes):
        n_rows = int(np.prod(shape[:-1], dtype=np.int64))
        if shape[-1] % GGML_TYPES[ggml_type][1] or nbytes != n_rows * row_bytes(ggml_type, shape[-1]):
            raise ValueError(f"write_gguf: {name}: {nbytes} bytes do not hold {type_name(ggml_type)} {shape}")

    offset, layout = 0, []
    for name, (ggml_type, shape, data) in tensors.items():
        if callable(data):
            nbytes = int(np.prod(shape[:-1], dtype=np.int64)) * row_bytes(ggml_type, shape[-1])
        else:
            nbytes = data.nbytes
        check(name, ggml_type, shape, nbytes)
        head += _pack_value(name)[1] + struct.pack("<I", len(shape)) + struct.pack(f"<{len(shape)}Q", *reversed(shape))
        head += struct.pack("<IQ", ggml_type, offset)
        layout.append((offset, name, ggml_type, shape, data))
        offset = -(-(offset + nbytes) // alignment) * alignment
    head += bytes(-len(head) % alignment)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(head)
            for at, name, ggml_type, shape, data in layout:
                if callable(data):
                    data = data()
                    check(name, ggml_type, shape, data.nbytes)
                f.write(bytes(at - (f.tell() - len(head))))           # padding between tensors
                f.write(np.ascontiguousarray(data).view(np.uint8).data)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_metadata(path):
    """The key/value metadata of a GGUF file (config, tokenizer, chat template, licence)."""
    return read_gguf(path)[0]


def is_gguf(path):
    """A .gguf file, or a folder with a .gguf file and no config.json / params.json."""
    path = Path(path)
    if path.is_dir():
        has_config = (path / "config.json").exists() or (path / "params.json").exists()
        return not has_config and any(path.glob("*.gguf"))
    return path.suffix == ".gguf"


def find_gguf(path):
    """The .gguf file itself, or the one .gguf file in a folder."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.gguf"))
        if len(files) != 1:
            raise FileNotFoundError(f"{path} holds {len(files)} .gguf files; pass the one to load")
        return files[0]
    return path


def model_args(metadata, path, window=None) -> ModelArgs:
    """ModelArgs from the `{arch}.*` keys llama.cpp writes for llama-type models (Mistral included)."""
    arch = metadata.get("general.architecture")
    if arch not in ("llama", "mistral"):
        raise GGUFError(f"{path}: general.architecture is {arch!r}; this book runs llama-type decoders "
                        "(Mistral, Llama, SmolLM2), whose files say 'llama'")

    def get(key, default=None):
        value = metadata.get(f"{arch}.{key}", default)
        if value is None:
            raise GGUFError(f"{path}: metadata key {arch}.{key} is missing; the file is incomplete")
        return value

    if metadata.get(f"{arch}.rope.scaling.type", "none") not in ("none", None):
        raise GGUFError(f"{path}: RoPE scaling {metadata[f'{arch}.rope.scaling.type']!r} is not supported "
                        "(this book implements plain RoPE)")
    dim, n_heads = get("embedding_length"), get("attention.head_count")
    context = get("context_length")
    head_dim = metadata.get(f"{arch}.attention.key_length") or metadata.get(f"{arch}.rope.dimension_count") \
        or dim // n_heads
    W = window or metadata.get(f"{arch}.attention.sliding_window") or context   # none: full attention
    vocab = metadata.get(f"{arch}.vocab_size") or len(metadata.get("tokenizer.ggml.tokens", ()))
    return ModelArgs(dim=dim, n_layers=get("block_count"), head_dim=head_dim,
                     hidden_dim=get("feed_forward_length"), n_heads=n_heads,
                     n_kv_heads=get("attention.head_count_kv", n_heads), vocab_size=vocab, W=W,
                     max_seq_len=context, norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5)),
                     rope_theta=float(get("rope.freq_base", 10000.0)),
                     tie_embeddings=False, rope_layout="pairs")


# the book's per-layer names -> GGUF's
GGUF_LAYER_NAMES = {"attention_norm": "attn_norm", "wq": "attn_q", "wk": "attn_k", "wv": "attn_v",
                    "wo": "attn_output", "ffn_norm": "ffn_norm", "w1": "ffn_gate", "w2": "ffn_down",
                    "w3": "ffn_up"}
GGUF_NAMES = {"tok_embeddings.weight": "token_embd.weight", "norm.weight": "output_norm.weight",
              "output.weight": "output.weight"}


def gguf_name(name):
    """Book name -> llama.cpp's: layers.3.attention.wq.weight -> blk.3.attn_q.weight."""
    if name in GGUF_NAMES:
        return GGUF_NAMES[name]
    _, i, *middle, _ = name.split(".")
    key = next(k for k, v in LAYER_KEYS.items() if v == ".".join(middle))
    return f"blk.{i}.{GGUF_LAYER_NAMES[key]}.weight"


def load_gguf(path, widen="auto", window=None) -> Model:
    """A Model from a GGUF file. Quantized matrices stay memory-mapped unless the file is small.

    widen: "auto" dequantizes everything to float32 at load for files under 512 MiB; True always;
    False keeps the blocks and dequantizes them inside every product. window: the sliding window
    W when the file does not record one (llama.cpp's Mistral 7B files do not: pass 4096).
    """
    path = find_gguf(path)
    metadata, shapes, raw = read_gguf(path)
    args = model_args(metadata, path, window)
    tied = "output.weight" not in shapes
    args = args.replace(tie_embeddings=tied)
    widen_all = widen is True or (widen == "auto" and path.stat().st_size < WIDEN_AT_LOAD_BYTES)
    blocks = {name.split(".")[1] for name in shapes if name.startswith("blk.")}
    if len(blocks) != args.n_layers:                      # checked before building n_layers of shapes
        raise GGUFError(f"{path}: {metadata['general.architecture']}.block_count is {args.n_layers} but the "
                        f"file holds tensors of {len(blocks)} blocks; the file is damaged")
    expected = {gguf_name(name): shape for name, shape in expected_shapes(args).items()}
    unused = sorted(set(shapes) - set(expected))
    if unused:
        raise GGUFError(f"{path}: tensor(s) {', '.join(unused[:4])}{' ...' if len(unused) > 4 else ''} have no "
                        "place in a Mistral/Llama decoder (biases? another architecture?); refusing to drop them")

    def get(name):
        if name not in shapes:
            raise GGUFError(f"{path}: tensor {name!r} is missing; the file is incomplete or not a llama-type model")
        ggml_type, shape = shapes[name]
        if shape != expected[name]:
            raise GGUFError(f"{path}: tensor {name!r} has shape {shape} but the metadata implies {expected[name]}")
        t = GGMLTensor(raw[name], ggml_type, shape if len(shape) == 2 else (1,) + shape, name)
        bad = nonfinite_blocks(ggml_type, t.raw.reshape(-1, t.type_size))
        if bad:
            raise GGUFError(f"{path}: tensor {name!r} ({type_name(ggml_type)}): {bad:,} blocks hold inf or NaN "
                            "scales or values; the file is damaged")
        if len(shape) == 1:
            return t.to_f32()[0]                                         # norms: float32 vectors
        return t.to_f32() if widen_all or ggml_type == 0 else t

    weights = nest(lambda name: get(gguf_name(name)), args)
    return Model(args, weights)
