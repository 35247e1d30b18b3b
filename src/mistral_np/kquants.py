"""K-quants: llama.cpp's super-blocks of 256 weights with a second level of scales inside.

A Q4_0 block (quants.py) spends an f16 scale on every 32 weights: half a bit per weight. A K-quant
spends its scale bits more cleverly. It groups 256 weights into a *super-block* with one f16
super-scale d (and, for the "min" types, an f16 super-min dmin), and gives each *sub-block* of 16
or 32 weights a small integer scale (and min) of 4, 6 or 8 bits. A sub-block's real scale is
d * sc: two multiplications recover it, and the f16s are paid for once per 256 weights.

Q4_K, the type most "Q4_K_M" files are made of, is 144 bytes for 256 weights (4.5 bits a weight):

    bytes 0..1     d      f16 super-scale of the sub-block scales
    bytes 2..3     dmin   f16 super-scale of the sub-block mins
    bytes 4..15    8 scales sc and 8 mins m of 6 bits each, packed into 12 bytes (drawn below)
    bytes 16..143  256 nibbles q: 4 chunks of 32 bytes; chunk c holds sub-block 2c in its low
                   nibbles and sub-block 2c + 1 in its high nibbles

    weight i of sub-block j (32 weights each):   w = (d * sc[j]) * q - (dmin * m[j])

The other K-quants (each has 256 weights; "scale" below is always d times a sub-block integer):

    type  id  bytes  sub-blocks        quants q                         weight
    Q2_K  10   84    16 of 16, 4+4 bit  2 bits, 0..3                     (d*sc)*q - dmin*m
    Q3_K  11  110    16 of 16, 6 bit    3 bits (2 low + 1 high), -4..3   (d*sc)*q, sc signed
    Q4_K  12  144     8 of 32, 6+6 bit  4 bits, 0..15                    (d*sc)*q - dmin*m
    Q5_K  13  176     8 of 32, 6+6 bit  5 bits (4 low + 1 high), 0..31   (d*sc)*q - dmin*m
    Q6_K  14  210    16 of 16, int8     6 bits (4 low + 2 high), -32..31 (d*sc)*q
    Q8_K  15  292     none              int8 (f32 d first)               d*q

Each function below maps uint8 blocks (n_blocks, type_size) to float32 weights (n_blocks, 256), in
the same order of float32 operations as llama.cpp's dequantize_row_* (so the result is bit-exact),
writing into `out` when given so that decoding can reuse one cache-sized buffer. No loop runs over
blocks: each step is one NumPy operation on all blocks at once, mostly in place.
"""
import numpy as np

QK_K = 256                                    # weights per super-block


# ---- checks a loader runs once per tensor ------------------------------------------------

def check_blocks(name, blocks, type_size):
    """The bytes of tensor `name` as (n_blocks, type_size) uint8, or a ValueError if they do not
    split into whole super-blocks (a truncated file or a wrong type id)."""
    blocks = np.asarray(blocks)
    if blocks.dtype != np.uint8:
        raise ValueError(f"tensor {name}: K-quant blocks must be uint8 bytes, not {blocks.dtype}")
    if blocks.size % type_size:
        raise ValueError(f"tensor {name}: {blocks.size} bytes is not a whole number of "
                         f"{type_size}-byte super-blocks (truncated super-block?)")
    return blocks.reshape(-1, type_size)


# every f16 bit pattern as float32: a table lookup is exact, and fast also for the subnormal f16s
# that the super-scales of 7B weights often are (NumPy converts those one at a time)
F16_TO_F32 = np.arange(2**16, dtype=np.uint16).view(np.float16).astype(np.float32)


def f16_at(blocks, at):
    """The f16 stored at bytes at:at+2 of every block, as float32 (n_blocks,)."""
    return np.take(F16_TO_F32, blocks[:, at:at + 2].view("<u2")[:, 0])


def _f32(blocks, at):
    return blocks[:, at:at + 4].view(np.float32)[:, 0]


# Where each type keeps its super-scales d (and dmin): their dtype and byte offsets.
_SUPER_SCALES = {10: (np.float16, (80, 82)), 11: (np.float16, (108,)), 12: (np.float16, (0, 2)),
                 13: (np.float16, (0, 2)), 14: (np.float16, (208,)), 15: (np.float32, (0,))}


def nonfinite_scales(blocks, type_id):
    """How many super-blocks have an inf or NaN super-scale (d or dmin): such a block dequantizes
    to inf or NaN weights. Reads only the scale bytes, so a loader can afford it once per tensor."""
    kind, offsets = _SUPER_SCALES[type_id]
    read = f16_at if kind == np.float16 else _f32
    bad = np.zeros(len(blocks), bool)
    for at in offsets:
        bad |= ~np.isfinite(read(blocks, at))
    return int(bad.sum())


def check_scales(name, blocks, type_id):
    """ValueError naming tensor `name` if any of its super-scales is inf or NaN."""
    n = nonfinite_scales(blocks, type_id)
    if n:
        raise ValueError(f"tensor {name}: {n} of {len(blocks)} {K_QUANTS[type_id][0]} super-blocks "
                         f"have a non-finite scale (inf or NaN)")


def _start(blocks, type_size, out):
    """Validate the arguments every dequantizer takes; return (n_blocks, out)."""
    if blocks.ndim != 2 or blocks.shape[1] != type_size or blocks.dtype != np.uint8:
        raise ValueError(f"expected uint8 blocks (n, {type_size}), got {blocks.dtype} {blocks.shape}")
    n = blocks.shape[0]
    if out is None:
        return n, np.empty((n, QK_K), np.float32)
    if out.shape != (n, QK_K) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous float32 ({n}, {QK_K}), "
                         f"got {out.dtype} {out.shape}")
    return n, out


_SHIFTS_1BIT = np.arange(8, dtype=np.uint8)[:, None]           # (8, 1): bit j for row j
_SHIFTS_2BIT = np.array([0, 2, 4, 6], np.uint8)[:, None]       # (4, 1): bits 2k, 2k+1 for row k


def _scale_and_shift(w, scale, shift=None):
    """w = scale * w - shift in place, for w (n, S, L) holding the integers q as float32 and
    float32 scale, shift (n, S) per sub-block of L weights: every K-quant's last step. The two
    steps round as llama.cpp's do: (d * sc) * q first, then minus dmin * m."""
    w *= scale[:, :, None]
    if shift is not None:
        w -= shift[:, :, None]


# Speed note: the integers are written straight into the float32 output (a ufunc casts uint8 to
# float32 on the way out, exactly), because fresh big temporaries cost a page fault per 4 KiB, and
# every step that works on runs of 16 or 32 weights costs a call per run; so the code keeps both few.

# ---- Q4_K and Q5_K: 8 sub-blocks of 32, 6-bit scales and mins ----------------------------

def unpack_scales_mins_k4(b):
    """Q4_K/Q5_K's 6-bit sub-block scales sc and mins m from their 12 bytes b (12, ...), byte k
    of every super-block in row k: uint8 (2, 8, ...), the scales [0] and mins [1] of sub-blocks 0..7.

    Sub-blocks 0..3 keep their scale and min whole in the low 6 bits of bytes 0..3 and 4..7 of
    the 12; sub-blocks 4..7 keep their low 4 bits in bytes 8..11 and their top 2 bits in the spare
    top bits of bytes 0..7 (capital letters are scales, small ones mins; 'a' is sub-block 0):

        byte  0: EEAAAAAA   4: eeaaaaaa    8: eeeeEEEE
        byte  1: FFBBBBBB   5: ffbbbbbb    9: ffffFFFF
        byte  2: GGCCCCCC   6: ggcccccc   10: ggggGGGG
        byte  3: HHDDDDDD   7: hhdddddd   11: hhhhHHHH

    With the bytes in rows, each step is one operation on four rows of all super-blocks at once."""
    out = np.empty((2, 8, *b.shape[1:]), np.uint8)
    sc, m = out
    np.bitwise_and(b[0:4], 0x3F, out=sc[:4])                     # A..D: low 6 bits of bytes 0..3
    np.bitwise_and(b[4:8], 0x3F, out=m[:4])                      # a..d: low 6 bits of bytes 4..7
    np.bitwise_and(b[8:12], 0x0F, out=sc[4:])                    # E..H: low nibbles of bytes 8..11
    sc[4:] |= (b[0:4] >> 2) & 0x30                               #       and top 2 bits of bytes 0..3
    np.right_shift(b[8:12], 4, out=m[4:])                        # e..h: high nibbles of bytes 8..11
    m[4:] |= (b[4:8] >> 2) & 0x30                                #       and top 2 bits of bytes 4..7
    return out


def _scales_mins_k4(blocks):
    """Q4_K/Q5_K's per-sub-block float32 scales d * sc and mins dmin * m, (n, 8) each."""
    sc, m = unpack_scales_mins_k4(blocks[:, 4:16].T.copy())      # (8, n) each
    return (f16_at(blocks, 0) * sc).T, (f16_at(blocks, 2) * m).T


def _nibbles_into(w, qs):
    """Write 128 bytes of nibbles qs (n, 4, 32) into w (n, 8, 32) as float32: chunk c of 32 bytes
    holds sub-block 2c in its low nibbles and sub-block 2c + 1 in its high nibbles."""
    w = w.reshape(len(qs), 4, 2, 32)                                  # (n, chunk, nibble, l)
    np.bitwise_and(qs, 0x0F, out=w[:, :, 0])
    np.right_shift(qs, 4, out=w[:, :, 1])


def dequantize_q4_k(blocks, out=None):
    """Q4_K: 144 bytes = f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles.

    w = (d * sc[j]) * q - dmin * m[j] for the 32 weights of sub-block j, q in 0..15."""
    n, out = _start(blocks, 144, out)
    w = out.reshape(n, 8, 32)                                         # (n, sub-block, l)
    _nibbles_into(w, blocks[:, 16:144].reshape(n, 4, 32))
    _scale_and_shift(w, *_scales_mins_k4(blocks))
    return out


def dequantize_q5_k(blocks, out=None):
    """Q5_K: 176 bytes = f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 32 bytes qh, 128 bytes ql.

    Q4_K plus a fifth bit: weight l of sub-block j takes bit j of qh[l] as its bit 4, so
    q = ql + 16 * ((qh[l] >> j) & 1) in 0..31, and w = (d * sc[j]) * q - dmin * m[j]."""
    n, out = _start(blocks, 176, out)
    w = out.reshape(n, 8, 32)
    _nibbles_into(w, blocks[:, 48:176].reshape(n, 4, 32))
    high = blocks[:, None, 16:48] >> _SHIFTS_1BIT                 # (n, 8, 32): qh[l] >> j
    high &= 1
    high <<= 4
    w += high
    _scale_and_shift(w, *_scales_mins_k4(blocks))
    return out


# ---- Q2_K, Q3_K, Q6_K: 16 sub-blocks of 16 -----------------------------------------------

def _crumbs(qs):
    """64 bytes (n, 64) -> 256 2-bit values, uint8 (n, 256): each half of 128 weights is 32 bytes
    read four times, bits 0-1 giving weights 0..31 of the half, bits 2-3 weights 32..63, and so on."""
    n = len(qs)
    q = qs.reshape(n, 2, 1, 32) >> _SHIFTS_2BIT                 # (n, half, k, l)
    q &= 3
    return q.reshape(n, 256)


def dequantize_q2_k(blocks, out=None):
    """Q2_K: 84 bytes = 16 bytes of 4-bit scale (low) and min (high), 64 bytes of 2-bit q,
    f16 d, f16 dmin.  w = (d * sc[j]) * q - dmin * m[j] for the 16 weights of sub-block j."""
    n, out = _start(blocks, 84, out)
    sc_m = blocks[:, 0:16]
    out[...] = _crumbs(blocks[:, 16:80])
    _scale_and_shift(out.reshape(n, 16, 16), f16_at(blocks, 80)[:, None] * (sc_m & 0x0F),
                     f16_at(blocks, 82)[:, None] * (sc_m >> 4))
    return out


def _scales_k3(packed):
    """Unpack Q3_K's 12 bytes into 16 signed 6-bit scales, int8 (n, 16) in -32..31.

    Low 4 bits: scales 0..7 in the low nibbles of bytes 0..7, scales 8..15 in their high nibbles.
    High 2 bits: bytes 8..11, scale j in byte 8 + j % 4 at bit 2 * (j // 4). A scale is stored
    plus 32 ('I'..'P' are scales 8..15):

        byte 0: IIIIAAAA  ...  7: PPPPHHHH    8: MMIIEEAA  9: NNJJFFBB  10: OOKKGGCC  11: PPLLHHDD
    """
    b = packed.T.copy()                                           # (12, n)
    sc = np.empty((16, len(packed)), np.uint8)
    sc[0:8], sc[8:16] = b[0:8] & 0x0F, b[0:8] >> 4
    for k in range(4):                                            # top bits of scales 4k..4k+3
        sc[4 * k:4 * k + 4] |= ((b[8:12] >> 2 * k) & 3) << 4
    return (sc.view(np.int8) - np.int8(32)).T                     # (n, 16)


def dequantize_q3_k(blocks, out=None):
    """Q3_K: 110 bytes = 32 bytes hmask, 64 bytes of 2-bit low q, 12 bytes of 6-bit scales, f16 d.

    Weight l of each 32-weight run k (k = 0..7) takes bit k of hmask[l] as its third bit; the 3-bit
    value is stored plus 4, so q = (low + 4 * high) - 4 in -4..3 and w = (d * sc[j]) * q."""
    n, out = _start(blocks, 110, out)
    high = blocks[:, None, 0:32] >> _SHIFTS_1BIT                 # (n, 8, 32): hmask[l] >> k
    high &= 1
    high <<= 2
    q = _crumbs(blocks[:, 32:96])
    q |= high.reshape(n, 256)
    q = q.view(np.int8)
    q -= 4
    out[...] = q
    _scale_and_shift(out.reshape(n, 16, 16), f16_at(blocks, 108)[:, None] * _scales_k3(blocks[:, 96:108]))
    return out


def dequantize_q6_k(blocks, out=None):
    """Q6_K: 210 bytes = 128 bytes ql (low 4 bits), 64 bytes qh (high 2 bits), 16 int8 scales, f16 d.

    Each half of 128 weights uses 64 bytes of ql and 32 of qh. Weights 0..31 are the low nibbles
    of ql[0..31], 32..63 of ql[32..63], 64..95 their high nibbles, 96..127 the high nibbles of
    ql[32..63]; quarter k takes bits 2k, 2k+1 of qh[l] on top. q = ql + 16 * qh - 32 in -32..31,
    and w = (d * sc[j]) * q for the 16 weights of sub-block j."""
    n, out = _start(blocks, 210, out)
    ql = blocks[:, 0:128].reshape(n, 2, 64)
    w = out.reshape(n, 2, 2, 64)                                      # (n, half, nibble, 64)
    np.bitwise_and(ql, 0x0F, out=w[:, :, 0])
    np.right_shift(ql, 4, out=w[:, :, 1])
    high = blocks[:, 128:192].reshape(n, 2, 1, 32) >> _SHIFTS_2BIT  # (n, half, k, l)
    high &= 3
    high <<= 4
    high = high.view(np.int8)
    high -= 32
    out += high.reshape(n, 256)
    _scale_and_shift(out.reshape(n, 16, 16), f16_at(blocks, 208)[:, None] * blocks[:, 192:208].view(np.int8))
    return out


def dequantize_q8_k(blocks, out=None):
    """Q8_K: 292 bytes = f32 d, 256 int8 q, 16 int16 sums of q per 16 (for llama.cpp's dot
    products; not needed here).  w = d * q."""
    n, out = _start(blocks, 292, out)
    np.multiply(blocks[:, 4:260].view(np.int8), _f32(blocks, 0)[:, None], out=out)
    return out


# ggml type id -> (name, weights per block, bytes per block, dequantizer)
K_QUANTS = {
    10: ("Q2_K", QK_K, 84, dequantize_q2_k),
    11: ("Q3_K", QK_K, 110, dequantize_q3_k),
    12: ("Q4_K", QK_K, 144, dequantize_q4_k),
    13: ("Q5_K", QK_K, 176, dequantize_q5_k),
    14: ("Q6_K", QK_K, 210, dequantize_q6_k),
    15: ("Q8_K", QK_K, 292, dequantize_q8_k),
}


# ---- random valid blocks, for tests and for 7B-shaped files -----------------------------

# Root-mean-square of a type's weights when its super-scales are 1 and every other byte is random:
# random_blocks divides by it so that every type's weights come out about the same size.
_UNIT_RMS = {10: 13.4, 11: 43.5, 12: 299.0, 13: 635.0, 14: 1369.0, 15: 73.9}


def random_blocks(type_id, n_blocks, rng, weight_rms=0.02):
    """Valid random super-blocks (n_blocks, type_size) of ggml type `type_id`: random bytes for the
    quants and sub-block scales, and finite positive super-scales drawn log-uniformly so that the
    weights' root-mean-square is weight_rms times 0.3..3 (0.02 is about a trained 7B's), which
    keeps the activations of a random model built from them sane."""
    size = K_QUANTS[type_id][2]
    blocks = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    kind, offsets = _SUPER_SCALES[type_id]
    for at in offsets:
        d = weight_rms / _UNIT_RMS[type_id] * 10 ** rng.uniform(-0.5, 0.5, n_blocks)
        width = np.dtype(kind).itemsize
        blocks[:, at:at + width] = d.astype(kind).reshape(n_blocks, 1).view(np.uint8)
    return blocks
