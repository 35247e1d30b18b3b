"""int8 weights with one float32 scale per row: half the bytes of bf16, so about half the time.

Each row of a weight matrix is stored as round(w / s) in int8 with s = max|row| / 127, so every
weight is off by at most s / 2. Decoding reads 1 byte per weight instead of 2; the products run on
float32 copies of small blocks of rows, as for bf16 (bf16.py), and the result of a block is scaled
by its rows' s afterwards: x @ (q * s).T == (x @ q.T) * s. quantize.py writes such checkpoints.
"""
import numpy as np

from .bf16 import blocked_matmul_t

SCALE_SUFFIX = "_scale"


class Int8:
    """A weight matrix as int8 rows q (out, in) and float32 row scales s (out,): W = q * s[:, None]."""

    def __init__(self, q, scale):
        if q.dtype != np.int8 or q.ndim != 2 or scale.shape != q.shape[:1] or scale.dtype != np.float32:
            raise ValueError(f"{q.dtype} {q.shape} with {scale.dtype} {scale.shape} scales is not int8 rows "
                             "with one float32 scale per row")
        self.q, self.scale = q, scale
        self.shape, self.ndim, self.size = q.shape, 2, q.size
        self.nbytes = q.nbytes + self.scale.nbytes

    dtype = "int8"

    def __repr__(self):
        return f"Int8(shape={self.shape})"

    def to_f32(self):
        return self.q.astype(np.float32) * self.scale[:, None]

    def __getitem__(self, index):
        """Rows as float32, e.g. the embeddings of some token ids."""
        return np.asarray(self.q[index], np.float32) * self.scale[index][..., None]

    def matmul_t(self, x):
        """x @ W.T for x (T, in): blocks of rows cast to float32 as bf16's are widened, then the
        row scales: x @ (q * s).T == (x @ q.T) * s."""
        def widen(r0, r1, buf):
            w = buf.view(np.float32).reshape(r1 - r0, -1)
            np.copyto(w, self.q[r0:r1], casting="unsafe")              # int8 -> float32, exact
            return w
        out = blocked_matmul_t(x, self.shape, widen)
        out *= self.scale                                               # (T, out) * (out,)
        return out


def quantize_rows(w):
    """float32 (rows, in) -> (int8 q, float32 scale (rows,)) with w ~= q * scale[:, None]."""
    w = np.asarray(w, np.float32)
    scale = np.abs(w).max(axis=1) / 127
    scale[scale == 0] = 1                                            # an all-zero row stays zero
    q = np.rint(w / scale[:, None]).astype(np.int8)
    return q, scale.astype(np.float32)
