"""Pseudo-relevance feedback: a document close to the query's best documents gains a little.

After the model has scored a query's documents, each document's best window is compared (cosine
of bi-encoder embeddings) with the best windows of the ``top_k`` highest-scoring documents. Its
raw score moves by ``weight * (its mean similarity to them - the list's mean)``: documents that
resemble what the model ranked first move up, outliers move down, and the list's mean raw score
stays where it was, so 0..1 scores keep their meaning on average. Collections judged deeply (many
relevant documents per query, as in TREC) gain most; the weights were chosen on collections other
than the ones semrank reports (see benchmarks/feedback_select.py).

This makes a document's score depend on the other documents of its request, so it is applied only
to lists of at least ``min_documents`` documents and can be switched off
(``Reranker(feedback=False)``). The embeddings come from the blend's own bi-encoder, which keeps
the windows it has just embedded, so the feedback costs no extra model pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from semrank._checks import is_finite_number, is_int
from semrank.errors import InvalidInputError
from semrank.rerank._aggregate import aggregate_documents
from semrank.rerank._config import ChunkingConfig
from semrank.runtime.base import PairScorer

__all__ = ["Feedback", "FeedbackConfig", "apply_feedback"]


@dataclass(frozen=True, kw_only=True)
class FeedbackConfig:
    """How strongly the best documents pull their look-alikes up (see the module docstring)."""

    top_k: int = 2
    weight: float = 4.0
    min_documents: int = 10

    def __post_init__(self) -> None:
        for name in ("top_k", "min_documents"):
            if not is_int(getattr(self, name), at_least=1):
                raise InvalidInputError(
                    f"feedback {name} must be a positive integer, got {getattr(self, name)!r}"
                )
        if not is_finite_number(self.weight):
            raise InvalidInputError(f"feedback weight must be a finite number, got {self.weight!r}")


@dataclass(frozen=True, kw_only=True)
class Feedback:
    """The feedback a model applies: its config and the bi-encoder that compares documents."""

    config: FeedbackConfig
    scorer: PairScorer  # a bi-encoder: raw score = cosine of the two texts' embeddings


def apply_feedback(
    raw: np.ndarray,
    pairs: Sequence[tuple[str, str]],
    piece_counts: list[list[int]],
    pruned: list[np.ndarray],
    chunking: ChunkingConfig,
    feedback: Feedback,
) -> np.ndarray:
    """Piece raw scores (all queries, in order) with each query's feedback shift added."""
    out = np.array(raw, dtype=np.float32, copy=True)
    per_query = aggregate_documents(out, piece_counts, chunking)
    cursor = 0
    for counts, (doc_scores, best), skipped in zip(piece_counts, per_query, pruned, strict=True):
        starts = cursor + np.cumsum([0, *counts[:-1]]).astype(int)
        read = np.flatnonzero(~skipped)
        if read.size >= max(feedback.config.min_documents, feedback.config.top_k + 1):
            texts = [pairs[int(starts[d]) + best[d]][1] for d in read.tolist()]
            shift = _shifts(doc_scores[read], texts, feedback)
            for doc, delta in zip(read.tolist(), shift.tolist(), strict=True):
                out[starts[doc] : starts[doc] + counts[doc]] += np.float32(delta)
        cursor += sum(counts)
    return out


def _shifts(scores: np.ndarray, texts: list[str], feedback: Feedback) -> np.ndarray:
    """Each read document's raw-score shift: weight x centred mean similarity to the top ones."""
    k = feedback.config.top_k
    top = np.argsort(-scores, kind="stable")[:k].tolist()
    # Every text is compared with the top texts (as "queries"): one bi-encoder call, whose
    # embeddings of these windows are still cached from scoring them.
    wanted = [(texts[t], text) for text in texts for t in top]
    similarity = np.asarray(feedback.scorer.score_pairs(wanted), dtype=np.float64)
    similarity = similarity.reshape(len(texts), len(top))
    own = np.arange(len(texts))[:, None] == np.asarray(top)[None, :]
    similarity[own] = math.nan  # a top document is compared with the other top ones only
    mean = np.nanmean(similarity, axis=1)
    return (feedback.config.weight * (mean - mean.mean())).astype(np.float32)
