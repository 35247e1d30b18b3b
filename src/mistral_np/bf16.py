"""bfloat16 in NumPy: keep the 16 raw bits, widen to float32 only where they are used.

A bf16 number is the top 16 bits of a float32 (same sign and exponent, 7 mantissa bits), so
widening is exact: put the bits in the top half of a uint32 and read it as float32. Mistral 7B's
14.5 GB of bf16 weights stay memory-mapped; each matrix is widened in small row blocks that fit in
the CPU cache, right before its matrix product, so the 29 GB float32 copy never exists.
"""
from concurrent.futures import ThreadPoolExecutor
import os

import numpy as np

BLOCK_ROWS = 64           # rows widened at a time: 64 x 14336 x 4 B = 3.7 MB at most
_THREADS = max(1, min(2, os.cpu_count() or 1))
_pool = ThreadPoolExecutor(_THREADS) if _THREADS > 1 else None


def bf16_bits_to_f32(bits, out=None):
    """uint16 bf16 bits -> float32, exactly. `out` (uint32, same shape) avoids an allocation."""
    if out is None:
        out = np.empty(bits.shape, np.uint32)
    np.copyto(out, bits)          # widen 16 -> 32 bits
    out <<= 16                    # bf16 bits become the float32's top half
    return out.view(np.float32)


def f32_to_bf16_bits(x):
    """float32 -> uint16 bf16 bits, rounded to nearest even (what torch's .to(bfloat16) does)."""
    x = np.asarray(x, dtype=np.float32)
    u = np.ascontiguousarray(x).reshape(x.shape).view(np.uint32)   # ascontiguousarray makes 0-d 1-d
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(x), np.uint16(0x7FC0), rounded)


def round_to_bf16(x):
    """The float32 value nearest to x that bf16 can hold."""
    return bf16_bits_to_f32(f32_to_bf16_bits(x))


class BF16:
    """A bf16 tensor held as raw uint16 bits (usually an np.memmap of the checkpoint)."""

    def __init__(self, bits):
        assert bits.dtype == np.uint16
        self.bits = bits
        self.shape = bits.shape
        self.ndim = bits.ndim
        self.nbytes = bits.nbytes
        self.size = bits.size

    dtype = "bfloat16"

    def __repr__(self):
        return f"BF16(shape={self.shape})"

    def to_f32(self):
        """The whole tensor as float32 (use for small tensors: norms, the pocket model)."""
        return bf16_bits_to_f32(self.bits)

    def __getitem__(self, index):
        """Rows as float32, e.g. the embeddings of some token ids."""
        return bf16_bits_to_f32(np.asarray(self.bits[index]))

    def matmul_t(self, x):
        """x @ self.T for x (T, in) and self (out, in): widened block by block, never whole."""
        n_out = self.shape[0]
        out = np.empty((x.shape[0], n_out), np.float32)             # (T, out)
        starts = list(range(0, n_out, BLOCK_ROWS))

        def work(my_starts):
            buf = np.empty((BLOCK_ROWS, self.shape[1]), np.uint32)   # reused for every block
            for r0 in my_starts:
                r1 = min(r0 + BLOCK_ROWS, n_out)
                w = bf16_bits_to_f32(self.bits[r0:r1], out=buf[: r1 - r0])   # (rows, in)
                out[:, r0:r1] = x @ w.T

        if _pool is None or x.shape[0] > 16:       # big T: BLAS already uses every core
            work(starts)
        else:                                      # decode: one thread per core, interleaved blocks
            list(_pool.map(work, [starts[i::_THREADS] for i in range(_THREADS)]))
        return out
