"""Result objects, the same for every backend and every API shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Document = str | dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class ChunkSpan:
    """The chunk of a long document that produced its score (character offsets, end exclusive)."""

    index: int
    start: int
    end: int


@dataclass(frozen=True, kw_only=True)
class RerankResult:
    """One re-ranked document.

    ``tokens`` counts the document tokens the model read (all chunks); ``truncated`` says whether
    any of the document was left unread; ``pruned``: a cascade's first stage ranked it out of
    the window the model read, so its score only places it below every document that was read.
    """

    index: int
    relevance_score: float
    document: Document | None
    tokens: int
    truncated: bool
    chunk: ChunkSpan | None = None
    num_chunks: int = 1
    pruned: bool = False
