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


def aggregate_documents(
    scores: np.ndarray, piece_counts: list[list[int]], chunking: ChunkingConfig
) -> list[tuple[np.ndarray, list[int]]]:
    """Per query: each document's score (float32) and best chunk, from consecutive pieces."""
    out = []
    cursor = 0
    for counts in piece_counts:
        doc_scores = np.empty(len(counts), dtype=np.float32)
        best_chunks = []
        for position, count in enumerate(counts):
            doc_scores[position], best = aggregate(scores[cursor : cursor + count], chunking)
            best_chunks.append(best)
            cursor += count
        out.append((doc_scores, best_chunks))
    return out
