"""Combining chunk scores into one document score."""

from __future__ import annotations

import numpy as np

from semrank.rerank._config import ChunkingConfig


def aggregate(scores: np.ndarray, chunking: ChunkingConfig) -> tuple[float, int]:
    """The document's score and the index of the chunk that represents it (the best one)."""
    best = int(np.argmax(scores))
    if chunking.aggregation == "max" or scores.size == 1:
        return float(scores[best]), best
    if chunking.aggregation == "mean":
        return float(np.mean(scores)), best
    top = np.sort(scores)[::-1][: chunking.top_k]
    return float(np.mean(top)), best
