"""Planning what the model reads of each document: whole, truncated, or in windows."""

from __future__ import annotations

from dataclasses import dataclass

from semrank.rerank._config import ChunkingConfig


@dataclass(frozen=True, kw_only=True)
class Piece:
    """A span of one document's text that becomes one model input."""

    chunk_index: int
    start: int
    end: int
    tokens: int


@dataclass(frozen=True, kw_only=True)
class ReadPlan:
    """What the model reads of one document."""

    pieces: tuple[Piece, ...]
    total_tokens: int

    @property
    def truncated(self) -> bool:
        return sum(p.tokens for p in self.pieces) < self.total_tokens

    @property
    def chunked(self) -> bool:
        return len(self.pieces) > 1


def plan_document(
    text: str,
    offsets: list[tuple[int, int]],
    budget: int,
    chunking: ChunkingConfig,
) -> ReadPlan:
    """Split ``text`` (tokenized as ``offsets``) into pieces of at most ``budget`` tokens."""
    total = len(offsets)
    if total <= budget:
        return ReadPlan(
            pieces=(Piece(chunk_index=0, start=0, end=len(text), tokens=total),), total_tokens=total
        )
    if not chunking.enabled:
        return ReadPlan(pieces=(_piece(offsets, 0, 0, budget),), total_tokens=total)
    stride = max(1, budget - min(chunking.overlap_tokens, budget // 2))
    pieces: list[Piece] = []
    first = 0
    while len(pieces) < chunking.max_chunks:
        last = min(first + budget, total)
        pieces.append(_piece(offsets, len(pieces), first, last))
        if last == total:
            break
        first += stride
    return ReadPlan(pieces=tuple(pieces), total_tokens=total)


def _piece(offsets: list[tuple[int, int]], index: int, first: int, last: int) -> Piece:
    # Spans run from the first token's start to the last token's end, so the text between
    # tokens (spaces) stays inside and the piece re-tokenizes to the same tokens.
    start = 0 if first == 0 else offsets[first][0]
    return Piece(chunk_index=index, start=start, end=offsets[last - 1][1], tokens=last - first)
