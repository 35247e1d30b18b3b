"""The rolling buffer KV cache: W slots per layer, position p always in slot p mod W.

Slots are only storage. Attention never relies on slot order: each slot remembers the absolute
position it holds, and the mask is built from positions (window_mask), so RoPE and the window
see the true sequence however the buffer has wrapped.
"""
from typing import NamedTuple

import numpy as np

from .attention import attention, window_mask

EMPTY = -1   # position stored in a slot that holds nothing yet


def cache_slots(seqlens, n_cached, W):
    """Slots of the new tokens of several sequences sharing one buffer of len(seqlens) x W slots.

    Sequence b's token at absolute position p goes to slot (p mod W) + b * W.
    cache_slots([5, 7, 2], [0, 1, 3], 3) -> [2 0 1 | 5 3 4 | 6 7]: only the last W tokens of a
    sequence are kept, so a sequence longer than W writes only its last W positions.
    """
    slots = []
    for b, (n_new, start) in enumerate(zip(seqlens, n_cached)):
        positions = np.arange(start + max(0, n_new - W), start + n_new)
        slots.append(positions % W + b * W)
    return np.concatenate(slots)


class RollingCache:
    """Keys and values of the last W positions of one sequence, for every layer."""

    def __init__(self, n_layers, W, n_kv_heads, head_dim, dtype=np.float32):
        # np.zeros asks the OS for zeroed pages lazily: untouched slots cost no memory.
        self.k = np.zeros((n_layers, W, n_kv_heads, head_dim), dtype)   # (L, W, n_kv, hd)
        self.v = np.zeros((n_layers, W, n_kv_heads, head_dim), dtype)
        self.pos = np.full(W, EMPTY, np.int64)   # absolute position held by each slot
        self.W = W
        self.n_seen = 0                          # tokens fed so far = next position
        self.broken = None                       # why it may no longer be used, once it may not

    def check_fits(self, args):
        """Refuse a cache another model's shapes built, or one that a failed pass left half-written."""
        if self.broken:
            raise ValueError(f"cache: unusable: {self.broken}; start again with model.new_cache()")
        want = (args.n_layers, args.W, args.n_kv_heads, args.head_dim)   # (L, W, n_kv, hd)
        if self.k.shape != want:
            raise ValueError(f"cache: built for (layers, W, kv heads, head_dim) = {self.k.shape} but the "
                             f"model has {want}; use model.new_cache()")

    def invalidate(self, reason):
        """Mark the cache unusable: a pass that failed after some layers stored its chunk leaves
        those layers ahead of the others and of `pos`."""
        self.broken = reason

    @property
    def nbytes(self):
        return self.k.nbytes + self.v.nbytes + self.pos.nbytes

    def attend(self, layer, q, k, v, positions):
        """Attention of a chunk (q, k, v at `positions`) over [cache | chunk]; then store the chunk.

        q: (T, n_heads, hd); k, v: (T, n_kv, hd). Returns (T, n_heads * hd).
        """
        T, W = len(positions), self.W
        if T == 1:
            # Decoding: the slot p mod W held position p - W, which p cannot see anyway,
            # so write first and attend over the buffer in place (no copy of the cache).
            # Slots fill in order 0, 1, 2, ... until the buffer wraps: attend over the filled ones only.
            slot, filled = positions[0] % W, min(int(positions[0]) + 1, W)
            self.store(layer, k, v, positions)
            kpos = self.pos[:filled].copy()
            kpos[slot] = positions[0]
            mask = window_mask(positions, kpos, W) & (kpos != EMPTY)
            return attention(q, self.k[layer, :filled], self.v[layer, :filled], mask)
        # Pre-fill chunk: the chunk's keys may overwrite slots its own earlier queries still need,
        # so attend over [cached | chunk] first, with one mask over both, then write.
        held = self.pos != EMPTY
        keys = np.concatenate([self.k[layer][held], k])                 # (S + T, n_kv, hd)
        values = np.concatenate([self.v[layer][held], v])
        kpos = np.concatenate([self.pos[held], positions])               # (S + T,)
        out = attention(q, keys, values, window_mask(positions, kpos, W))
        self.store(layer, k, v, positions)
        return out

    def store(self, layer, k, v, positions):
        """Write one layer's keys and values (T, n_kv, hd) of `positions` to slots p mod W. Of
        more than W new positions only the last W survive. Once every layer has stored them,
        advance(positions) records them."""
        keep = slice(max(0, len(positions) - self.W), len(positions))
        slots = positions[keep] % self.W
        self.k[layer, slots], self.v[layer, slots] = k[keep], v[keep]

    def advance(self, positions):
        """After every layer has stored the chunk: record which position each slot now holds."""
        keep = positions[max(0, len(positions) - self.W):]
        self.pos[keep % self.W] = keep
        self.n_seen = int(positions[-1]) + 1

    def resized(self, W):
        """A copy with W slots holding the same last min(W, n_seen) positions: a cache for a
        sequence that grows (W larger), or for a shorter window. Growing a cache that has already
        wrapped is refused: the positions it dropped are gone."""
        if not isinstance(W, (int, np.integer)) or isinstance(W, bool) or W < 1:
            raise ValueError(f"resized: W must be a whole number >= 1, got {W!r}")
        if W > self.W and self.n_seen > self.W:
            raise ValueError(f"resized: a cache holding the last {self.W} of {self.n_seen} positions "
                             f"cannot grow to {W} slots; the earlier positions are gone")
        L, _, n_kv, hd = self.k.shape
        new = RollingCache(L, W, n_kv, hd, self.k.dtype)
        held = np.flatnonzero((self.pos != EMPTY) & (self.pos >= self.n_seen - W))   # slots kept
        slots = self.pos[held] % W
        new.k[:, slots], new.v[:, slots], new.pos[slots] = self.k[:, held], self.v[:, held], self.pos[held]
        new.n_seen = self.n_seen
        return new

    def save(self, n_new):
        """The slots the next n_new positions (1 <= n_new <= W) will overwrite, with what they hold
        now: hand it to rollback() to take back some of those positions after feeding them."""
        if not 1 <= n_new <= self.W:
            raise ValueError(f"save: n_new must be in [1, W = {self.W}], got {n_new}")
        slots = np.arange(self.n_seen, self.n_seen + n_new) % self.W     # (n_new,) distinct slots
        return SavedSlots(self.n_seen, slots, self.k[:, slots], self.v[:, slots], self.pos[slots].copy())

    def rollback(self, saved, n_keep):
        """Keep the first n_keep positions fed since save(saved) and forget the rest, exactly.

        A forgotten position p overwrote slot p mod W, which held p - W: a position the kept ones
        may still see. Putting back what save() copied leaves the cache as if the forgotten
        positions had never been fed.
        """
        n_fed = len(saved.slots)
        if self.n_seen != saved.n_seen + n_fed or not 0 <= n_keep <= n_fed:
            raise ValueError(f"rollback: expected {n_fed} positions fed since save() (n_seen "
                             f"{saved.n_seen + n_fed}, got {self.n_seen}) and 0 <= n_keep <= {n_fed}, "
                             f"got {n_keep}")
        undo = saved.slots[n_keep:]
        self.k[:, undo], self.v[:, undo] = saved.k[:, n_keep:], saved.v[:, n_keep:]
        self.pos[undo] = saved.pos[n_keep:]
        self.n_seen = saved.n_seen + n_keep


class SavedSlots(NamedTuple):
    """What RollingCache.save() copied: n_seen then, the slots and their keys, values, positions."""
    n_seen: int
    slots: np.ndarray     # (n_new,)
    k: np.ndarray         # (L, n_new, n_kv, hd)
    v: np.ndarray
    pos: np.ndarray       # (n_new,)
