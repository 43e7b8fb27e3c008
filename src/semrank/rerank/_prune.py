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

__all__ = ["PRUNED_STEP", "fill_pruned", "first_stage_order"]

# Gap between consecutive pruned documents in raw score units: small enough to stay in range,
# large enough to survive float32 after a sigmoid.
PRUNED_STEP = 1e-4


def first_stage_order(
    pruner: PairScorer,
    queries: Sequence[str],
    texts: Sequence[Sequence[str]],
    plans: Sequence[Sequence[ReadPlan]],
    chunking: ChunkingConfig,
) -> list[np.ndarray]:
    """Per query, document indices best first by the pruner's aggregated scores."""
    pairs = [
        (query, text[piece.start : piece.end])
        for query, docs, doc_plans in zip(queries, texts, plans, strict=True)
        for text, plan in zip(docs, doc_plans, strict=True)
        for piece in plan.pieces
    ]
    scores = np.asarray(pruner.score_pairs(pairs), dtype=np.float32)
    counts = [[len(plan.pieces) for plan in doc_plans] for doc_plans in plans]
    per_query = aggregate_documents(scores, counts, chunking)
    return [np.argsort(-doc_scores, kind="stable") for doc_scores, _ in per_query]


def fill_pruned(
    kept_raw: np.ndarray,
    plans: Sequence[Sequence[ReadPlan]],
    orders: Sequence[np.ndarray],
    keep: int,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Raw scores for every piece (read pieces from ``kept_raw``, in order) and pruned masks."""
    out: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    cursor = 0
    for doc_plans, order in zip(plans, orders, strict=True):
        pruned = np.ones(len(doc_plans), dtype=bool)
        pruned[order[:keep]] = False
        counts = [len(plan.pieces) for plan in doc_plans]
        read = int(sum(c for c, p in zip(counts, pruned, strict=True) if not p))
        group_raw = kept_raw[cursor : cursor + read]
        cursor += read
        floor = float(group_raw.min()) if read else 0.0
        doc_raw = [np.empty(0, dtype=np.float32)] * len(doc_plans)
        read_cursor = 0
        for position, count in enumerate(counts):
            if not pruned[position]:
                doc_raw[position] = group_raw[read_cursor : read_cursor + count]
                read_cursor += count
        for rank, position in enumerate(p for p in order.tolist() if pruned[p]):
            value = floor - PRUNED_STEP * (rank + 1)
            doc_raw[position] = np.full(counts[position], value, dtype=np.float32)
        out.extend(doc_raw)
        masks.append(pruned)
    return np.concatenate(out) if out else np.empty(0, dtype=np.float32), masks
