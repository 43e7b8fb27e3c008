"""Frozen configuration of the scoring logic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from semrank._checks import is_int
from semrank.errors import InvalidInputError

Aggregation = Literal["max", "mean", "topk_mean"]
DEFAULT_MAX_CHUNKS = 16  # windows read of a document when nothing says otherwise


@dataclass(frozen=True, kw_only=True)
class ChunkingConfig:
    """How documents longer than the model's window are read.

    ``enabled=False`` truncates instead (and says so in each result). Chunks are token windows
    that overlap by ``overlap_tokens``; a document's score aggregates its chunks' scores.
    A first line of at most ``heading_tokens`` tokens and half a window (a title: store fields
    and multi-field ``rank_fields`` put it there) is read again before every later chunk, so a
    chunk is judged with what the document is about (0: never). ``max_chunks`` bounds the
    windows read of a document (a caller's cost limit); None (the default) reads 16, or as
    many as reading ``max_tokens_per_doc`` tokens takes where a call asks for that many.
    """

    enabled: bool = True
    overlap_tokens: int = 32
    aggregation: Aggregation = "max"
    top_k: int = 2
    max_chunks: int | None = None
    heading_tokens: int = 48

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise InvalidInputError(f"chunking enabled must be True or False, got {self.enabled!r}")
        for name in ("overlap_tokens", "top_k", "heading_tokens"):
            _require_int(name, getattr(self, name))
        if self.max_chunks is not None:
            _require_int("max_chunks", self.max_chunks)
        if self.aggregation not in ("max", "mean", "topk_mean"):
            raise InvalidInputError(
                f"chunk aggregation {self.aggregation!r} is unknown; "
                "use 'max', 'mean' or 'topk_mean'"
            )
        if self.overlap_tokens < 0:
            raise InvalidInputError(f"overlap_tokens={self.overlap_tokens} must be >= 0")
        if self.heading_tokens < 0:
            raise InvalidInputError(
                f"heading_tokens={self.heading_tokens} must be >= 0 (0 never repeats a heading)"
            )
        for name, value in (("max_chunks", self.max_chunks), ("top_k", self.top_k)):
            if value is not None and value < 1:
                raise InvalidInputError(f"{name}={value} must be >= 1")

    def window_limit(self, max_tokens_per_doc: int | None = None) -> int:
        """The windows read of a document at most: ``max_chunks`` where set, else 16, or as
        many as reading ``max_tokens_per_doc`` tokens takes (each window reads a new token)."""
        if self.max_chunks is not None:
            return self.max_chunks
        return max(DEFAULT_MAX_CHUNKS, max_tokens_per_doc or 0)


def _require_int(name: str, value: object) -> None:
    if not is_int(value):
        raise InvalidInputError(f"chunking {name} must be an integer, got {value!r}")


NO_CHUNKING = ChunkingConfig(enabled=False)


@dataclass(frozen=True, kw_only=True)
class CascadeConfig:
    """A cheap first scorer prunes each query's documents before the main model reads them.

    The ``keep`` documents with the best first-stage scores are scored by the main model; the
    others are ranked after them in first-stage order, marked ``pruned``, and dropped by
    ``min_score`` (the model never read them, so nothing says they pass it).
    ``model=None`` prunes with the bundled embedding model (a bi-encoder: one embedding per
    text, so it is several times cheaper than a cross-encoder over the same window).
    """

    keep: int = 30
    model: str | None = None
    backend: str | None = None

    def __post_init__(self) -> None:
        if not is_int(self.keep, at_least=1):
            raise InvalidInputError(f"cascade keep must be a positive integer, got {self.keep!r}")
        object.__setattr__(self, "keep", int(self.keep))  # numpy integers become plain ints
