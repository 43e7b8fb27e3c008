"""Two-stage scoring: a cheap scorer prunes each query's candidates before the main one.

``Cascade(first, second, keep=k)`` is itself a ``PairScorer``: per query (pairs are grouped
by query text) the ``k`` pairs with the best first-stage scores are scored by ``second``; the
others are pruned. ``score_stages`` returns both stages for the ranking logic
(``semrank.rerank``), which owns what pruned candidates mean in results.

``score_pairs`` (the protocol) gives kept pairs their second-stage raw score and pruned pairs
a score below every kept pair of the same query, in first-stage order
(``min(kept) - 1 - rank among pruned``), so sorting by it ranks kept first, then the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from semrank.errors import InvalidInputError
from semrank.runtime.base import Activation, PairScorer, ScorerKind, TextTokenizer

__all__ = ["Cascade", "CascadeScores"]


@dataclass(frozen=True, kw_only=True)
class CascadeScores:
    """Both stages' raw scores in input order; ``second`` is NaN where a pair was pruned."""

    first: np.ndarray
    second: np.ndarray
    kept: np.ndarray  # bool mask


class Cascade:
    """``PairScorer``: ``second`` scores only each query's top ``keep`` first-stage pairs."""

    def __init__(self, first: PairScorer, second: PairScorer, *, keep: int) -> None:
        if keep < 1:
            raise InvalidInputError(f"Cascade keep must be at least 1, got {keep}")
        self.first = first
        self.second = second
        self.keep = keep
        # The result is the second stage's score: its kind, activation and token limits apply.
        self.kind: ScorerKind = second.kind
        self.activation: Activation = second.activation
        self.max_length = second.max_length
        self.tokenizer: TextTokenizer = second.tokenizer

    def doc_token_budget(self, query: str) -> int:
        return self.second.doc_token_budget(query)

    def score_stages(self, pairs: Sequence[tuple[str, str]]) -> CascadeScores:
        pairs = list(pairs)
        first = np.asarray(self.first.score_pairs(pairs), dtype=np.float32)
        kept = np.zeros(len(pairs), dtype=bool)
        for indices in _indices_by_query(pairs).values():
            best = sorted(indices, key=lambda i: (-first[i], i))[: self.keep]
            kept[best] = True
        second = np.full(len(pairs), np.nan, dtype=np.float32)
        kept_indices = np.flatnonzero(kept)
        if len(kept_indices):
            second[kept_indices] = self.second.score_pairs([pairs[i] for i in kept_indices])
        return CascadeScores(first=first, second=second, kept=kept)

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        pairs = list(pairs)
        stages = self.score_stages(pairs)
        out = stages.second.copy()
        for indices in _indices_by_query(pairs).values():
            pruned = [i for i in indices if not stages.kept[i]]
            if not pruned:
                continue
            floor = float(np.min(stages.second[[i for i in indices if stages.kept[i]]]))
            for rank, i in enumerate(sorted(pruned, key=lambda i: (-stages.first[i], i))):
                out[i] = floor - 1.0 - rank
        return out


def _indices_by_query(pairs: Sequence[tuple[str, str]]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, (query, _) in enumerate(pairs):
        groups.setdefault(query, []).append(i)
    return groups
