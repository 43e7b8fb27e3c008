"""Result objects, the same for every backend and every API shape."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Document = str | dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class ChunkSpan:
    """The chunk of a long document that produced its score (offsets in Unicode code points, as
    Python indexes a str, end exclusive; not UTF-16 units as JavaScript counts, nor bytes).

    For an object ranked on several ``rank_fields``, ``field`` names the field that holds most
    of the chunk and the offsets are into that field's text (the part of the chunk within it).
    A field that is not a string is read as text (a number as ``str(value)``, a list or object
    as ``json.dumps(value, ensure_ascii=False)``), and its offsets are into that text."""

    index: int
    start: int
    end: int
    field: str | None = None


@dataclass(frozen=True, kw_only=True)
class RerankResult:
    """One re-ranked document.

    ``tokens`` counts the document tokens the model read (all chunks; overlapping chunks count
    their overlap in each, so it can pass ``max_tokens_per_doc``); ``truncated`` says whether
    any of the document was left unread; ``pruned``: a cascade's first stage ranked it out of
    the window the model read, so its score only places it below every document that was read.
    ``piece_tokens``: the tokens of each window the model read, which decide how much of a long
    query it read next to each (empty where unknown); ``window_scores``: each window's span and
    score (a search's semantic highlight shows the best ones).
    """

    index: int
    relevance_score: float
    document: Document | None
    tokens: int
    truncated: bool
    chunk: ChunkSpan | None = None
    num_chunks: int = 1
    pruned: bool = False
    piece_tokens: tuple[int, ...] = field(default=(), repr=False, compare=False)
    # Each window the model read: (start, end, score), offsets into the text read (as
    # ``ChunkSpan``'s before any field mapping), in the text's order; empty where unknown.
    window_scores: tuple[tuple[int, int, float], ...] = field(default=(), repr=False, compare=False)

    @property
    def longest_piece(self) -> int:
        """The tokens of its longest window (0 where unknown)."""
        return max(self.piece_tokens, default=0)


def select_results(
    ranked: Iterable[RerankResult], *, top_n: int | None, min_score: float | None
) -> list[RerankResult]:
    """The best ``top_n`` of ``ranked`` (best first), then those at or above ``min_score``.

    With ``min_score`` set, pruned documents are left out whatever their placeholder score: the
    model never read them, so nothing says they clear the threshold. Filtered, not cut at the
    first below it: raw scores of chunked documents under mean aggregation need not fall in
    the ranking's order.
    """
    # islice takes at most sys.maxsize: a top_n of 2**63 (asking for "all") raised ValueError.
    head = list(itertools.islice(ranked, None if top_n is None else min(top_n, sys.maxsize)))
    if min_score is None:
        return head
    return [r for r in head if r.relevance_score >= min_score and not r.pruned]
