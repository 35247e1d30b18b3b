"""bfloat16 in NumPy: keep the 16 raw bits, widen to float32 only where they are used.

A bf16 number is the top 16 bits of a float32 (same sign and exponent, 7 mantissa bits), so
widening is exact: put the bits in the top half of a uint32 and read it as float32. Mistral 7B's
14.5 GB of bf16 weights stay memory-mapped; each matrix is widened in row blocks that fit in the
CPU's cache, right before their matrix product, so the 29 GB float32 copy never exists.
"""
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import contextlib
import os
import threading

import numpy as np
from threadpoolctl import ThreadpoolController


def _l3_bytes():
    """The CPU's last-level cache in bytes (Linux), or None where it cannot be read."""
    try:
        size = Path("/sys/devices/system/cpu/cpu0/cache/index3/size").read_text().strip()   # "32768K"
        return int(size[:-1]) * 1024 if size.endswith("K") else int(size)
    except (OSError, ValueError):
        return None


# float32 bytes widened at a time by each of the two threads: a quarter of the last-level cache,
# 1 to 8 MiB (2 MiB if unknown). Measured with a 32 MiB L3: 8 MiB blocks decode Mistral 7B in
# 0.85-0.92 s/token, 2 MiB in 1.18 s; 16 MiB blocks no longer stay in the cache and halve the speed.
BLOCK_BYTES = max(2**20, min(2**23, (_l3_bytes() or 2**23) // 4))
_THREADS = max(1, min(2, os.cpu_count() or 1))
_pool = ThreadPoolExecutor(_THREADS)
_blas = ThreadpoolController()      # to give BLAS one thread while our own threads run
_local = threading.local()


def blas_threads(n):
    """Context manager: BLAS (numpy's matrix products) limited to n threads; None leaves it be."""
    return _blas.limit(limits=n, user_api="blas") if n else contextlib.nullcontext()


def _buffer(size):
    """This thread's widening buffer, kept between calls: fresh pages would cost a fault each."""
    if getattr(_local, "buf", np.empty(0)).size < size:
        _local.buf = np.empty(max(size, BLOCK_BYTES // 4), np.uint32)
    return _local.buf[:size]


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
        def widen(r0, r1, buf):                                        # np.copyto then <<= 16
            return bf16_bits_to_f32(self.bits[r0:r1], out=buf.reshape(r1 - r0, -1))
        return blocked_matmul_t(x, self.shape, widen)


def blocked_matmul_t(x, shape, widen):
    """x @ W.T for x (T, in) and a weight W (out, in) that is only ever float32 a block at a time.

    widen(r0, r1, buf) writes rows r0:r1 of W as float32 into buf (a reused uint32 buffer of the
    right size) and returns them (r1 - r0, in). Each of two threads widens its blocks into its own
    buffer and multiplies each while it is still in cache; the threads take every other block.
    BLAS gets one thread per caller, or the threads would fight over the cores.
    """
    n_out, n_in = shape
    rows = max(1, BLOCK_BYTES // (4 * n_in))                            # rows per block
    x = np.ascontiguousarray(x, np.float32)

    def product(r0, r1, out):
        w = widen(r0, r1, _buffer(rows * n_in)[: (r1 - r0) * n_in])    # (rows, in) float32
        np.matmul(x, w.T, out=out)                                     # (T, rows)

    return blocked_rows(x.shape[0], n_out, rows, product)


def blocked_rows(T, n_out, rows, product):
    """An output (T, n_out) filled block by block: product(r0, r1, out) writes out[:, r0:r1] for
    r1 - r0 <= rows. Two threads take every other block, BLAS limited to one thread each."""
    out = np.empty((T, n_out), np.float32)                             # (T, out)
    starts = range(0, n_out, rows)

    def work(my_starts):
        for r0 in my_starts:
            r1 = min(r0 + rows, n_out)
            product(r0, r1, out[:, r0:r1])

    with blas_threads(1):
        list(_pool.map(work, [starts[i::_THREADS] for i in range(_THREADS)]))
    return out
