"""Cascade pruning: which documents of each query the main model reads.

The first stage scores every piece (the same chunks the main model would read), a document's
first-stage score aggregates its pieces like the main scores do, and the best ``keep`` documents
per query survive. Pruned documents get raw scores just below the weakest piece the main model
read for that query, in first-stage order, so one sort ranks read documents first and the pruned
ones after them without leaving the model's score range (cosine scores stay above -1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from semrank.rerank._aggregate import aggregate_documents
from semrank.rerank._chunking import ReadPlan
from semrank.rerank._config import ChunkingConfig
from semrank.runtime.base import PairScorer

__all__ = ["PRUNED_STEP", "CascadePlan", "plan_cascade"]

# Gap between consecutive pruned documents in raw score units: small enough to stay in range,
# large enough to survive float32 after a sigmoid.
PRUNED_STEP = 1e-4


class CascadePlan:
    """Per query, the first-stage order and the pruned documents; per piece, whether it is read."""

    def __init__(self, counts: list[list[int]], orders: list[np.ndarray], keep: int) -> None:
        self.counts = counts
        self.orders = orders
        self.pruned = []
        for order in orders:
            pruned = np.ones(len(order), dtype=bool)
            pruned[order[:keep]] = False
            self.pruned.append(pruned)
        pieces = [np.repeat(~p, c) for p, c in zip(self.pruned, self.counts, strict=True)]
        self.read = np.concatenate(pieces) if pieces else np.zeros(0, dtype=bool)

    def fill(self, read_raw: np.ndarray) -> np.ndarray:
        """Raw scores for every piece: read pieces from ``read_raw`` (in order), pruned below."""
        out = np.zeros(self.read.size, dtype=np.float32)
        out[self.read] = read_raw
        cursor = 0
        for counts, order, pruned in zip(self.counts, self.orders, self.pruned, strict=True):
            end = cursor + sum(counts)
            group, read = out[cursor:end], self.read[cursor:end]  # views: writes land in out
            floor = float(group[read].min()) if read.any() else 0.0
            starts = np.cumsum([0, *counts[:-1]])
            for rank, doc in enumerate(d for d in order.tolist() if pruned[d]):
                group[starts[doc] : starts[doc] + counts[doc]] = floor - PRUNED_STEP * (rank + 1)
            cursor = end
        return out


def plan_cascade(
    pruner: PairScorer,
    pairs: Sequence[tuple[str, str]],
    plans: Sequence[Sequence[ReadPlan]],
    chunking: ChunkingConfig,
    keep: int,
) -> CascadePlan:
    """Order each query's documents by the pruner; queries with at most ``keep`` documents keep
    them all, so the pruner does not score them."""
    counts = [[len(plan.pieces) for plan in doc_plans] for doc_plans in plans]
    crowded = [len(doc_counts) > keep for doc_counts in counts]
    piece_crowded = np.repeat(crowded, [sum(c) for c in counts]).astype(bool)
    scores = np.zeros(len(pairs), dtype=np.float32)
    if piece_crowded.any():
        wanted = [pair for pair, flag in zip(pairs, piece_crowded, strict=True) if flag]
        scores[piece_crowded] = pruner.score_pairs(wanted)
    per_query = aggregate_documents(scores, counts, chunking)
    orders = [np.argsort(-doc_scores, kind="stable") for doc_scores, _ in per_query]
    return CascadePlan(counts, orders, keep)
