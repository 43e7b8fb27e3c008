"""Frozen configuration of the scoring logic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from semrank.errors import InvalidInputError

Aggregation = Literal["max", "mean", "topk_mean"]


@dataclass(frozen=True, kw_only=True)
class ChunkingConfig:
    """How documents longer than the model's window are read.

    ``enabled=False`` truncates instead (and says so in each result). Chunks are token windows
    that overlap by ``overlap_tokens``; a document's score aggregates its chunks' scores.
    """

    enabled: bool = True
    overlap_tokens: int = 32
    aggregation: Aggregation = "max"
    top_k: int = 2
    max_chunks: int = 16

    def __post_init__(self) -> None:
        if self.aggregation not in ("max", "mean", "topk_mean"):
            raise InvalidInputError(
                f"chunk aggregation {self.aggregation!r} is unknown; "
                "use 'max', 'mean' or 'topk_mean'"
            )
        if self.overlap_tokens < 0:
            raise InvalidInputError(f"overlap_tokens={self.overlap_tokens} must be >= 0")
        if self.max_chunks < 1 or self.top_k < 1:
            raise InvalidInputError("max_chunks and top_k must be >= 1")


NO_CHUNKING = ChunkingConfig(enabled=False)
