"""Fusing several ranked lists into one: reciprocal rank fusion and a linear combination.

Both follow Elasticsearch's ``rrf`` and ``linear`` retrievers: each input list is cut to
``rank_window_size`` first; RRF scores a document ``sum_i w_i / (rank_constant + rank_i)`` with
1-based ranks; the linear combination scores ``sum_i w_i * normalize_i(score)``. A document
missing from a list gets 0 from it, as in Elasticsearch (whose scores are never negative; a
min-max list's lowest is 0 too), or that list's lowest normalised score when that is below 0
(z-scores, a negative cosine), so being absent never beats being present.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from semrank._checks import MAX_WEIGHT, is_finite_number, is_int
from semrank.errors import InvalidInputError
from semrank.retrieve._hits import Hits

NORMALIZERS = ("none", "minmax", "zscore", "l2_norm")


def _weights(weights: Sequence[float] | None, count: int) -> list[float]:
    if weights is None:
        return [1.0] * count
    if len(weights) != count:
        raise InvalidInputError(f"got {len(weights)} weights for {count} ranked lists")
    if not all(is_finite_number(w, at_least=0, at_most=MAX_WEIGHT) for w in weights):
        raise InvalidInputError(
            f"fusion weights must be finite numbers from 0 to {MAX_WEIGHT:g}, got {list(weights)}"
        )
    return [float(w) for w in weights]


def _windowed(rankings: Sequence[Hits], rank_window_size: int | None) -> list[Hits]:
    for number, ranking in enumerate(rankings):
        if not isinstance(ranking, Hits):
            raise InvalidInputError(
                f"rankings[{number}] is {ranking!r:.60}, not a Hits; fuse the results of "
                "searches (Hits(ids, scores))"
            )
    if rank_window_size is None:
        return list(rankings)
    if not is_int(rank_window_size):
        raise InvalidInputError(f"rank_window_size must be an integer, got {rank_window_size!r}")
    if rank_window_size < 1:
        raise InvalidInputError(f"rank_window_size must be >= 1, got {rank_window_size}")
    return [r.top(rank_window_size) for r in rankings]


def _union_ids(rankings: Sequence[Hits]) -> dict[object, int]:
    """Every id, numbered in order of first appearance (the tie-break of the fused list)."""
    slots: dict[object, int] = {}
    for ranking in rankings:
        for doc_id in ranking.ids.tolist():
            slots.setdefault(doc_id, len(slots))
    return slots


def _fused(slots: dict[object, int], totals: np.ndarray) -> Hits:
    ids = np.empty(len(slots), dtype=object)
    ids[:] = list(slots)
    return Hits.from_scores(ids, totals)


def rrf(
    rankings: Sequence[Hits],
    *,
    rank_constant: int = 60,
    rank_window_size: int | None = None,
    weights: Sequence[float] | None = None,
) -> Hits:
    """Reciprocal rank fusion (Cormack et al. 2009)."""
    whole = is_finite_number(rank_constant, at_least=1) and float(rank_constant) % 1 == 0
    if not (is_int(rank_constant, at_least=1) or whole):  # 60.0 is 60
        raise InvalidInputError(f"rank_constant must be an integer >= 1, got {rank_constant!r}")
    lists = _windowed(rankings, rank_window_size)
    slots = _union_ids(lists)
    totals = np.zeros(len(slots), dtype=np.float64)
    for weight, ranking in zip(_weights(weights, len(lists)), lists, strict=True):
        positions = np.array([slots[i] for i in ranking.ids.tolist()], dtype=np.int64)
        ranks = np.arange(1, len(ranking) + 1, dtype=np.float64)
        totals[positions] += weight / (rank_constant + ranks)
    return _fused(slots, totals)


def normalize_scores(scores: np.ndarray, normalizer: str) -> np.ndarray:
    """Scores of one list mapped by ``normalizer`` ("none", "minmax", "zscore", "l2_norm")."""
    values = np.asarray(scores, dtype=np.float64)
    if normalizer == "none" or len(values) == 0:
        return values
    if normalizer == "minmax":
        low, high = values.min(), values.max()
        if high - low < 1e-12:  # one hit, or all tied: all equally best
            return np.ones_like(values)
        return (values - low) / (high - low)
    if normalizer == "zscore":
        std = values.std()
        return np.zeros_like(values) if std < 1e-12 else (values - values.mean()) / std
    if normalizer == "l2_norm":
        norm = float(np.linalg.norm(values))
        return values if norm < 1e-12 else values / norm
    raise InvalidInputError(
        f"unknown normalizer {normalizer!r}; choose one of: {', '.join(NORMALIZERS)}"
    )


def _absent_score(normalised: np.ndarray) -> float:
    """What a list gives a document it lacks: 0, or its lowest score when that is negative."""
    return min(0.0, float(normalised.min())) if len(normalised) else 0.0


def linear_combination(
    rankings: Sequence[Hits],
    *,
    weights: Sequence[float] | None = None,
    normalizers: str | Sequence[str] = "minmax",
    rank_window_size: int | None = None,
) -> Hits:
    """Weighted sum of per-list normalised scores."""
    lists = _windowed(rankings, rank_window_size)
    per_list: object = normalizers
    if isinstance(normalizers, str):
        per_list = [normalizers] * len(lists)
    elif isinstance(normalizers, Iterable):  # a list, tuple, numpy array or generator of names
        per_list = [str(n) if isinstance(n, np.str_) else n for n in normalizers]
    if not isinstance(per_list, list) or not all(isinstance(n, str) for n in per_list):
        raise InvalidInputError(
            f"normalizers must be one name or a list of one per ranked list, from: "
            f"{', '.join(NORMALIZERS)}; got {normalizers!r}"
        )
    if len(per_list) != len(lists):
        raise InvalidInputError(f"got {len(per_list)} normalizers for {len(lists)} ranked lists")
    slots = _union_ids(lists)
    totals = np.zeros(len(slots), dtype=np.float64)
    for weight, name, ranking in zip(_weights(weights, len(lists)), per_list, lists, strict=True):
        normalised = normalize_scores(ranking.scores, name)
        column = np.full(len(slots), _absent_score(normalised))
        column[[slots[i] for i in ranking.ids.tolist()]] = normalised
        totals += weight * column
    return _fused(slots, totals)
