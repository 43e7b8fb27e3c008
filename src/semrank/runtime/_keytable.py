"""Vectors found by the 16-byte digest of their text, by binary search over a sorted array.

Why not a dict: a prepared index can hold millions of windows. A dict of their keys would cost
hundreds of megabytes of Python objects and seconds to build (under the scorer's lock, blocking
searches); here a table costs one array of 8-byte key prefixes next to its memory-mapped keys
and vectors, and a lookup is ``searchsorted`` plus a check of the full key.
"""

from __future__ import annotations

import numpy as np

__all__ = ["KeyTable"]

KEY_BYTES = 16


def _prefixes(keys: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each key as big-endian integers: their order is the keys' order."""
    return np.ascontiguousarray(keys[:, :8]).view(">u8").ravel()


class KeyTable:
    """``rows(keys)``: the row of each wanted key in ``vectors`` (-1 where absent)."""

    def __init__(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.uint8)
        if keys.ndim != 2 or keys.shape[1] != KEY_BYTES or len(keys) != len(vectors):
            raise ValueError(
                f"a key table needs (n, {KEY_BYTES}) uint8 keys and n vectors, got keys "
                f"{keys.shape} and {len(vectors)} vectors"
            )
        prefixes = _prefixes(keys)
        self.order: np.ndarray | None = None
        if len(prefixes) > 1 and not bool(np.all(prefixes[1:] >= prefixes[:-1])):
            self.order = np.argsort(prefixes, kind="stable")  # tables are written sorted
            prefixes = prefixes[self.order]
        self.prefixes = prefixes
        self.keys = keys
        self.vectors = vectors

    def __len__(self) -> int:
        return len(self.keys)

    def rows(self, wanted: list[bytes]) -> np.ndarray:
        found = np.full(len(wanted), -1, dtype=np.int64)
        if not wanted or not len(self.keys):
            return found
        asked = np.frombuffer(b"".join(wanted), dtype=np.uint8).reshape(len(wanted), KEY_BYTES)
        prefixes = _prefixes(asked)
        first = np.searchsorted(self.prefixes, prefixes, side="left")
        last = np.searchsorted(self.prefixes, prefixes, side="right")
        for i in np.nonzero(first < last)[0]:
            # Almost always one candidate; equal 8-byte prefixes are checked one by one.
            for position in range(int(first[i]), int(last[i])):
                row = position if self.order is None else int(self.order[position])
                if np.array_equal(self.keys[row], asked[i]):
                    found[i] = row
                    break
        return found
