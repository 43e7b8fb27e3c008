"""A ranked list as two parallel arrays, the shape bm25s returns."""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np

from semrank._checks import arrays_equal, is_int
from semrank.errors import InvalidInputError


@dataclass(frozen=True)
class Hits(Sequence[tuple[str | int, float]]):
    """Ranked results, best first: ``ids[i]`` scored ``scores[i]``.

    ``ids`` holds document ids (``str``, dtype object) at the store level, or row positions
    (``int64``) inside an index; ``scores`` is float32 and sorted in descending order.
    A sequence of ``(id, score)`` pairs in Python types: ``for doc_id, score in hits``,
    ``hits[0]``; ``hits[:3]`` is a ``Hits`` of the first three.
    """

    ids: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.scores):
            raise InvalidInputError(
                f"Hits got {len(self.ids)} ids but {len(self.scores)} scores; give one score per id"
            )

    def __eq__(self, other: object) -> bool:
        """Same ids in the same order with the same scores."""
        if not isinstance(other, Hits):
            return NotImplemented
        return arrays_equal(self.ids, other.ids) and arrays_equal(self.scores, other.scores)

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[tuple[str | int, float]]:
        return zip(self.ids.tolist(), self.scores.tolist(), strict=True)

    @overload
    def __getitem__(self, position: int) -> tuple[str | int, float]: ...
    @overload
    def __getitem__(self, position: slice) -> Hits: ...
    def __getitem__(self, position: int | slice) -> tuple[str | int, float] | Hits:
        if isinstance(position, slice):
            return Hits(self.ids[position], self.scores[position])
        at = operator.index(position)  # a list's rule: an int, not a float, array or mask
        if not -len(self) <= at < len(self):
            raise IndexError(f"hit {at} is out of range for {len(self)} hits")
        doc_id = self.ids[at]  # Python's int where numpy's int64, as iteration gives
        return doc_id.item() if isinstance(doc_id, np.generic) else doc_id, float(self.scores[at])

    def top(self, k: int) -> Hits:
        """The first ``k`` hits (all of them where there are fewer)."""
        if not is_int(k, at_least=0):  # a negative slice bound counts from the end
            raise InvalidInputError(f"k must be an integer of at least 0, got {k!r}")
        return Hits(self.ids[:k], self.scores[:k])

    def as_dict(self) -> dict[str, float]:
        """``{id: score}``, the run format of ir_measures and pytrec_eval."""
        return {str(i): float(s) for i, s in zip(self.ids, self.scores, strict=True)}

    @staticmethod
    def empty(id_dtype: type | str = object) -> Hits:
        return Hits(np.empty(0, dtype=id_dtype), np.empty(0, dtype=np.float32))

    @staticmethod
    def from_scores(ids: np.ndarray, scores: np.ndarray) -> Hits:
        """Sort ``(ids, scores)`` best first; ties keep input order (stable)."""
        unsorted = Hits(np.asarray(ids), np.asarray(scores, dtype=np.float32))  # one per id
        order = np.argsort(-unsorted.scores, kind="stable")
        return Hits(unsorted.ids[order], unsorted.scores[order])


def top_k(scores: np.ndarray, k: int, *, positive_only: bool = False) -> Hits:
    """Positions and scores of the ``k`` best entries of a dense score vector.

    ``argpartition`` keeps this O(n) for large corpora; ties break by position so results are
    deterministic. ``positive_only`` drops zero scores (BM25: documents sharing no query term).
    """
    if not is_int(k):
        raise InvalidInputError(f"k must be an integer, got {k!r}")
    scores = np.asarray(scores, dtype=np.float32)
    candidates = np.flatnonzero(scores > 0) if positive_only else np.arange(len(scores))
    k = min(k, len(candidates))
    if k <= 0:
        return Hits.empty(np.int64)
    chosen = candidates
    if k < len(candidates):
        values = scores[candidates]
        if np.isnan(values).any():  # last (rare: BM25's never are; a test is 4x cheaper)
            values = np.where(np.isnan(values), -np.inf, values)
        kth = values[np.argpartition(-values, k - 1)[k - 1]]  # the k-th best score
        # Everything above it, then the first positions among those equal to it: argpartition
        # picks an arbitrary subset of a tie, so a top 5 was not the head of a top 10.
        above = candidates[values > kth]
        tied = candidates[values == kth][: k - len(above)]
        chosen = np.concatenate((above, tied))
    order = np.lexsort((chosen, -scores[chosen]))
    chosen = chosen[order]
    return Hits(chosen.astype(np.int64), scores[chosen])
