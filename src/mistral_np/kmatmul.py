"""x @ W.T for K-quant matrices W (Q4_K, Q6_K) without widening W to float32 weights first.

Decoding multiplies one row x (or a few) by every weight matrix, so the cost is what happens to
each weight on its way to the product. The dequantizers in kquants.py make four passes over a
block of float32 weights (unpack q, times the scale, minus the min, then the product). Here the
scales and mins stay out of the weights. For row r, whose sub-blocks j have scale s_rj and min m_rj,

    y_r = sum_j (s_rj * q_rj - m_rj) . x_j = sum_j s_rj * (q_rj . x_j)  -  sum_j m_rj * (1 . x_j)

so the block is written once, as its small integers q in float32 (exact), one batched BLAS call
gives the partial sums q_rj . x_j of every (row, sub-block), and the scales weigh those sums (a
(rows x sub-blocks) array, 32 or 16 times smaller than the block). The mins only need the sums of
x over each sub-block, 1 . x_j, computed once per call. Q6_K has no min, but its q - 32 makes one:
m_rj = 32 * s_rj.

Where the q land in the block does not matter as long as each sub-block's 32 (or 16) weights meet
the right part of x; so they are written in the order that makes NumPy's loops long and contiguous
(for Q4_K: the low nibbles of the whole block, then its high nibbles), and x is permuted once per
call to match.
The result is the same product summed in another order: equal to the dequantized weights' to float
rounding, not bit for bit. The bit-exact dequantizers stay in kquants.py for everything else.

Batched products of 32- or 16-wide slices are slower per weight than one long product, so for many
rows x at once (pre-fill) dequantizing the block and one matrix product is faster: see MAX_ROWS.
"""
import threading

import numpy as np

from .bf16 import BLOCK_BYTES, blocked_rows
from .kquants import F16_TO_F32, unpack_scales_mins_k4

MAX_ROWS = 4                  # x with more rows than this goes through the dequantizer instead
# float32 bytes of integers unpacked at a time by each thread: half of bf16's blocks, which measured
# best here (Q4_K 14336 x 4096, 32 MiB L3: 4 MiB 82-105 ms, 8 MiB 99-108, 2 MiB 92-96, 1 MiB 121-125)
KBLOCK_BYTES = BLOCK_BYTES // 2
_local = threading.local()


def _scratch(name, shape, dtype):
    """A per-thread buffer kept between calls (fresh pages cost a fault each), grown as needed."""
    n = int(np.prod(shape))
    buf = getattr(_local, name, None)
    if buf is None or buf.size < n or buf.dtype != dtype:
        buf = np.empty(n, dtype)
        setattr(_local, name, buf)
    return buf[:n].reshape(shape)


def _gather(raw, start, stop, out=None):
    """Bytes start:stop of every super-block of raw (R, B, size), copied together, (R, B, stop - start).

    One pass over the block's cache lines instead of one per use. The bytes of a super-block are
    copied as one item (a NumPy void), so the copy is one loop over R * B items, not R * B loops."""
    R, B, size = raw.shape
    n = stop - start
    out = np.empty((R, B, n), np.uint8) if out is None else out
    item = np.dtype((np.void, n))
    np.copyto(out.reshape(R * B, n).view(item)[:, 0], raw.reshape(R * B, size)[:, start:stop].view(item)[:, 0])
    return out


# ---- Q4_K: 8 sub-blocks of 32 per super-block, w = (d * sc) * q - dmin * m ---------------

def q4_k_scales(raw):
    """Scales d * sc and mins dmin * m of Q4_K super-blocks raw (R, B, 144): float32 (B, 8, R) each.

    The 6-bit integers are unpacked by kquants.unpack_scales_mins_k4. Rows come last, so that the
    scales line up with the partial sums of q4_k_rows."""
    R, B, _ = raw.shape
    head = _gather(raw, 0, 16)                                       # (R, B, 16): d, dmin, then 12 bytes
    packed = np.empty((12, B, R), np.uint8)                          # byte k of every super-block in row k
    np.copyto(packed, head[..., 4:].transpose(2, 1, 0))
    f = np.empty((2, B, 8, R), np.float32)                           # (scale or min, b, sub-block, r)
    np.copyto(f, unpack_scales_mins_k4(packed).transpose(0, 2, 1, 3))   # from (2, 8, B, R)
    f *= np.take(F16_TO_F32, head.view("<u2")[..., :2].T)[:, :, None, :]   # times d, dmin (2, B, R)
    return f


def q4_k_x(x):
    """x (T, cols) arranged for q4_k_rows: (B, 4, 2, 32, T), [b, c, h, l] = column 256 b + 32 (2c + h) + l;
    and its sums over each sub-block of 32 (T, B * 8), sub-block 2c + h of super-block b at 8b + 2c + h."""
    T, cols = x.shape
    xs = np.ascontiguousarray(x.reshape(T, cols // 256, 4, 2, 32).transpose(1, 2, 3, 4, 0))
    return xs, x.reshape(T, -1, 32).sum(-1)


def q4_k_rows(raw, xs, xsum, out):
    """out (T, R) = x @ W.T for the R rows of Q4_K super-blocks raw (R, B, 144).

    xs, xsum: x arranged and summed by q4_k_x.
    Byte 32c + l of a super-block's 128 holds weight l of sub-block 2c (low nibble) and of 2c + 1
    (high nibble). All low nibbles of the block, then all high ones, go to float32 q (2, R, B * 128)."""
    R, B, _ = raw.shape
    T = xs.shape[-1]
    packed = _gather(raw, 16, 144, _scratch("packed", (R, B, 128), np.uint8)).reshape(R, B * 128)
    q = _scratch("q", (2, R, B * 128), np.float32)                   # (h, r, byte)
    np.bitwise_and(packed, 0x0F, out=q[0])                           # uint8 -> float32: exact
    np.right_shift(packed, 4, out=q[1])
    # q[h, r, 128 b + 32 c + l] is weight l of sub-block 2c + h of super-block b: one (R, 32) matrix
    # per sub-block, times that sub-block's 32 values of x
    partial = _scratch("partial", (B, 4, 2, R, T), np.float32)       # q_rj . x_j, j = 8b + 2c + h
    np.matmul(q.reshape(2, R, B, 4, 32).transpose(2, 3, 0, 1, 4), xs, out=partial)
    scales, mins = q4_k_scales(raw)                                  # (B, 8, R) each, j = 8b + 2c + h
    np.einsum("jrt,jr->tr", partial.reshape(B * 8, R, T), scales.reshape(B * 8, R), out=out)
    out -= xsum @ mins.reshape(B * 8, R)                             # (T, R)


# ---- Q6_K: 16 sub-blocks of 16, w = (d * sc) * (q - 32) -----------------------------------

_VOID32 = np.dtype((np.void, 32))


def q6_k_x(x):
    """x (T, cols) arranged for q6_k_rows: (2, 2, B, 2, 2, 16, T), [g, k, b, h, i, l] =
    column 256 b + 128 h + 32 (2 g + k) + 16 i + l; and 32 times its sums over each sub-block of 16
    (the min that q - 32 makes), in that order (g, k, b, h, i): (T, B * 16)."""
    T, cols = x.shape
    x = x.reshape(T, cols // 256, 2, 2, 2, 2, 16)                    # (t, b, h, g, k, i, l)
    xs = np.ascontiguousarray(x.transpose(3, 4, 1, 2, 5, 6, 0))
    return xs, 32 * xs.sum(axis=-2).reshape(-1, T).T


_U64 = "<u8"                  # bytes shifted 8 at a time: NumPy's uint8 left shift is not vectorized


def q6_k_rows(raw, xs, xsum, out):
    """out (T, R) = x @ W.T for the R rows of Q6_K super-blocks raw (R, B, 210).

    xs, xsum: x arranged and summed by q6_k_x. Each half h of a super-block takes 64 bytes of low
    bits ql and 32 of high bits qh: quarter n = 2g + k (weights 32n .. 32n + 31 of the half) is
    nibble g of ql[32k + l] with bits 2n, 2n + 1 of qh[l] on top. The 32-byte runs of ql are first
    regrouped by k (one copy of 32-byte items), so that every other step runs over whole rows."""
    R, B, _ = raw.shape
    T = xs.shape[-1]
    ql = _scratch("ql", (R, 2, B, 2, 32), np.uint8)                  # (r, k, b, h, l)
    np.copyto(ql.view(_VOID32)[..., 0], raw[:, :, :128].view(_VOID32).reshape(R, B, 2, 2).transpose(0, 3, 1, 2))
    qh = _gather(raw, 128, 192, _scratch("qh", (R, B, 64), np.uint8)).reshape(R, B, 2, 32)   # (r, b, h, l)
    q = _scratch("q6", (R, 2, 2, B, 2, 32), np.uint8)                # (r, g, k, b, h, l): q + 32 in 0..63
    np.bitwise_and(ql, 0x0F, out=q[:, 0])
    np.right_shift(ql, 4, out=q[:, 1])
    high = _scratch("high", (R, B, 2, 32), np.uint8)
    qh64, high64 = qh.view(_U64), high.view(_U64)
    for n in range(4):                                               # bits 2n, 2n + 1 of qh -> bits 4, 5
        if n < 2:
            np.left_shift(qh64, 4 - 2 * n, out=high64)
        else:
            np.right_shift(qh64, 2 * n - 4, out=high64)
        high64 &= 0x3030303030303030
        q[:, n // 2, n % 2] |= high
    qf = _scratch("q", (R, 256 * B), np.float32)
    np.copyto(qf, q.reshape(R, 256 * B))                             # uint8 -> float32: exact
    partial = _scratch("partial", (2, 2, B, 2, 2, R, T), np.float32)
    np.matmul(qf.reshape(R, 2, 2, B, 2, 2, 16).transpose(1, 2, 3, 4, 5, 0, 6), xs, out=partial)
    # the scale of sub-block j = 8h + 2(2g + k) + i is d * sc[j], in the order of the partial sums
    tail = _gather(raw, 192, 210)                                    # (R, B, 18): 16 int8 sc, f16 d
    scales = np.empty((2, 2, B, 2, 2, R), np.float32)                # (g, k, b, h, i, R)
    np.copyto(scales, tail[:, :, :16].view(np.int8).reshape(R, B, 2, 2, 2, 2).transpose(3, 4, 1, 2, 5, 0))
    scales *= np.take(F16_TO_F32, tail[:, :, 16:].view("<u2")[..., 0].T)[:, None, None, :]   # d (B, R)
    scales = scales.reshape(16 * B, R)
    np.einsum("jrt,jr->tr", partial.reshape(16 * B, R, T), scales, out=out)
    out -= xsum @ scales                                             # the -32 of every q


# ggml type id -> (arrange x and sum it per sub-block, product of a block of rows)
KERNELS = {12: (q4_k_x, q4_k_rows), 14: (q6_k_x, q6_k_rows)}


def matmul_t(raw, type_id, x):
    """x (T, cols) @ W.T for W given as its super-blocks raw (rows, cols // 256, type_size).

    Blocks of rows go to two threads as in bf16.blocked_matmul_t; each is unpacked to integers in
    a float32 buffer of KBLOCK_BYTES, and x is arranged (and summed per sub-block) once per call."""
    arrange, rows_product = KERNELS[type_id]
    n_out, B = raw.shape[:2]
    xs, xsum = arrange(np.ascontiguousarray(x, np.float32))
    rows = max(1, KBLOCK_BYTES // (4 * 256 * B))

    def product(r0, r1, out):
        rows_product(raw[r0:r1], xs, xsum, out)

    return blocked_rows(x.shape[0], n_out, rows, product)
