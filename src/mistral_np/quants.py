"""GGML's weight types: blocks of 32 (or 256) weights that share a scale, as llama.cpp stores them.

A GGUF file stores each matrix row by row; a row of `cols` weights is cols / block_size blocks, and
a block is a few bytes of scale (an f16 d, sometimes an f16 minimum m) followed by small integers q:

    Q8_0   34 bytes = d (f16) + 32 x int8 q                   w = d * q
    Q4_0   18 bytes = d (f16) + 16 bytes of two 4-bit q       w = d * (q - 8)
    Q4_1   20 bytes = d (f16) + m (f16) + 16 bytes of nibbles w = d * q + m

A Q4_1 block's byte j holds weight j in its low nibble and weight j + 16 in its high nibble.
K-quants (kquants.py) nest a second level of scales inside super-blocks of 256 weights.

Every dequantizer maps uint8 blocks (n_blocks, type_size) to float32 (n_blocks, block_size),
writing into `out` when given, so the hot loop of decoding can reuse one cache-sized buffer.
`GGMLTensor` is the weight type: like BF16, it keeps the file's bytes memory-mapped and turns a
block of rows into float32 only inside `matmul_t`, right before the product.
"""
import numpy as np

from . import kmatmul
from .bf16 import blocked_matmul_t, bf16_bits_to_f32
from .kquants import K_QUANTS, f16_at, nonfinite_scales as nonfinite_k_scales, random_blocks as random_k_blocks

WIDEN_AT_LOAD_BYTES = 512 * 2**20   # checkpoints smaller than this are widened to float32 at load


def _out(out, n_blocks, block_size):
    return np.empty((n_blocks, block_size), np.float32) if out is None else out


def dequantize_f32(blocks, out=None):
    out = _out(out, len(blocks), 1)
    out[:] = blocks.view(np.float32)
    return out


def dequantize_f16(blocks, out=None):
    out = _out(out, len(blocks), 1)
    out[:] = blocks.view(np.float16)
    return out


def dequantize_bf16(blocks, out=None):
    out = _out(out, len(blocks), 1)
    bf16_bits_to_f32(blocks.view(np.uint16), out.view(np.uint32))    # (n, 1)
    return out


def dequantize_q8_0(blocks, out=None):
    """Q8_0: w = d * q, 32 int8 q per block."""
    out = _out(out, len(blocks), 32)
    np.copyto(out, blocks[:, 2:].view(np.int8), casting="unsafe")     # (n, 32) int8 -> float32
    out *= f16_at(blocks, 0)[:, None]
    return out


def _nibbles(qs, out):
    """16 bytes -> 32 values: the low nibbles are weights 0..15, the high nibbles 16..31."""
    np.copyto(out[:, :16], qs & 0x0F, casting="unsafe")
    np.copyto(out[:, 16:], qs >> 4, casting="unsafe")
    return out


def dequantize_q4_0(blocks, out=None):
    """Q4_0: w = d * (q - 8), q in 0..15."""
    out = _nibbles(blocks[:, 2:], _out(out, len(blocks), 32))
    out -= 8
    out *= f16_at(blocks, 0)[:, None]
    return out


def dequantize_q4_1(blocks, out=None):
    """Q4_1: w = d * q + m, q in 0..15: a scale and a minimum per 32 weights."""
    out = _nibbles(blocks[:, 4:], _out(out, len(blocks), 32))
    out *= f16_at(blocks, 0)[:, None]
    out += f16_at(blocks, 2)[:, None]
    return out


# ggml type id -> (name, weights per block, bytes per block, dequantizer)
GGML_TYPES = {
    0: ("F32", 1, 4, dequantize_f32),
    1: ("F16", 1, 2, dequantize_f16),
    30: ("BF16", 1, 2, dequantize_bf16),
    8: ("Q8_0", 32, 34, dequantize_q8_0),
    2: ("Q4_0", 32, 18, dequantize_q4_0),
    3: ("Q4_1", 32, 20, dequantize_q4_1),
    **K_QUANTS,
}
# Types that GGUF files may hold but this book does not read (named in the error message).
OTHER_TYPES = {6: "Q5_0", 7: "Q5_1", 9: "Q8_1", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS",
               19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8",
               25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 34: "TQ1_0", 35: "TQ2_0"}


def type_name(type_id):
    if type_id in GGML_TYPES:
        return GGML_TYPES[type_id][0]
    return OTHER_TYPES.get(type_id, f"unknown type {type_id}")


def row_bytes(type_id, cols):
    """Bytes of one row of `cols` weights; cols must be a whole number of blocks."""
    _, block, size, _ = GGML_TYPES[type_id]
    return cols // block * size


SCALE_OFFSETS = {8: (0,), 2: (0,), 3: (0, 2)}    # where each block's f16 scales sit (Q8_0, Q4_0, Q4_1)
EXPONENT_BITS = {0: (np.uint32, 0x7F800000), 1: (np.uint16, 0x7C00), 30: (np.uint16, 0x7F80)}  # F32 F16 BF16


def nonfinite_blocks(type_id, blocks):
    """How many blocks (n, type_size) would dequantize to inf or NaN: only their scales are read."""
    if type_id in K_QUANTS:
        return nonfinite_k_scales(blocks, type_id)
    if type_id in SCALE_OFFSETS:
        bad = np.zeros(len(blocks), bool)
        for at in SCALE_OFFSETS[type_id]:
            bad |= ~np.isfinite(f16_at(blocks, at))
        return int(bad.sum())
    bits_type, exponent = EXPONENT_BITS[type_id]          # F32 / F16 / BF16: inf and NaN have every
    return int(np.count_nonzero((blocks.view(bits_type) & exponent) == exponent))   # exponent bit set


class GGMLTensor:
    """A matrix (rows, cols) of GGML blocks, usually a memory-mapped slice of a GGUF file.

    Same protocol as BF16 and Int8: matmul_t(x) = x @ W.T, to_f32(), rows by indexing, nbytes.
    """

    def __init__(self, raw, type_id, shape, name="tensor"):
        self.type_id, self.shape, self.name = type_id, tuple(shape), name
        self.dtype, self.block, self.type_size, self.dequantize = GGML_TYPES[type_id]
        rows, cols = self.shape
        self.raw = raw.reshape(rows, cols // self.block, self.type_size)   # (rows, blocks/row, bytes)
        self.ndim, self.size, self.nbytes = 2, rows * cols, raw.nbytes

    def __repr__(self):
        return f"GGMLTensor({self.name}, {self.dtype}, shape={self.shape})"

    def _rows(self, raw_rows, out=None):
        """uint8 (n, blocks/row, type_size) -> float32 (n, cols)."""
        n = raw_rows.shape[0]
        flat = None if out is None else out.reshape(-1, self.block)
        return self.dequantize(raw_rows.reshape(-1, self.type_size), flat).reshape(n, self.shape[1])

    def to_f32(self):
        """The whole matrix as float32 (for small models, once at load)."""
        out = np.empty(self.shape, np.float32)
        step = max(1, 2**22 // self.shape[1])                         # 16 MiB of float32 at a time
        for r in range(0, self.shape[0], step):
            self._rows(self.raw[r:r + step], out[r:r + step])
        return out

    def __getitem__(self, index):
        """Rows as float32, e.g. the embeddings of some token ids."""
        rows = np.asarray(self.raw[index])
        return self._rows(rows.reshape(-1, *self.raw.shape[1:])).reshape(*rows.shape[:-2], self.shape[1])

    def matmul_t(self, x):
        """x @ self.T for x (T, cols): dequantized a cache-sized block of rows at a time, or for a
        few rows of x times a K-quant, unpacked to integers and scaled after the product (kmatmul)."""
        if self.type_id in kmatmul.KERNELS and len(x) <= kmatmul.MAX_ROWS:
            return kmatmul.matmul_t(self.raw, self.type_id, x)

        def widen(r0, r1, buf):
            return self._rows(self.raw[r0:r1], buf.view(np.float32).reshape(r1 - r0, -1))
        return blocked_matmul_t(x, self.shape, widen)


def random_blocks(type_id, n_blocks, rng, scale=0.02):
    """Valid random blocks (finite scales near `scale`, random integers) for tests and fake models."""
    name, block, size, _ = GGML_TYPES[type_id]
    if name in ("F32", "F16", "BF16"):
        w = (scale * rng.standard_normal(n_blocks)).astype(np.float32)
        if name == "BF16":
            return (w.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8).reshape(n_blocks, 2)
        return w.astype(np.float32 if name == "F32" else np.float16).view(np.uint8).reshape(n_blocks, size)
    if type_id in K_QUANTS:
        return random_k_blocks(type_id, n_blocks, rng)
    blocks = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    d = (scale / (8 if name != "Q8_0" else 64)) * rng.uniform(0.5, 1.5, n_blocks)
    blocks[:, 0:2] = d.astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
    if name == "Q4_1":
        m = -8 * d
        blocks[:, 2:4] = m.astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
    return blocks
