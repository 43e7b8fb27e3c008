"""Pseudo-relevance feedback: a document close to the query's best documents gains a little.

After the model has scored a query's documents, each document's best window is compared (cosine
of bi-encoder embeddings) with the best windows of the ``top_k`` highest-scoring documents. Its
raw score moves by ``weight * (its mean similarity to them - the list's mean)``: documents that
resemble what the model ranked first move up, outliers move down, and the mean raw score of the
list's distinct documents stays where it was, so 0..1 scores keep their meaning on average.
Collections judged deeply (many relevant documents per query, as in TREC) gain most; the weights
were chosen on collections other than the ones semrank reports (see benchmarks/feedback_select.py).

This makes a document's score depend on the other documents of its request, so it is applied only
to lists of at least ``min_documents`` documents and can be switched off
(``Reranker(feedback=False)``). The embeddings come from the blend's own bi-encoder, which keeps
the windows it has just embedded, so the feedback costs no extra model pass. (When the server's
score cache answers a request without running the model, the feedback embeds that request's
best windows itself, in the request's thread: the same result, one bi-encoder pass more.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from semrank._checks import is_finite_number, is_int
from semrank.errors import InvalidInputError
from semrank.rerank._aggregate import aggregate_documents
from semrank.rerank._config import ChunkingConfig

__all__ = ["Feedback", "FeedbackConfig", "WindowEmbedder", "apply_feedback"]


@dataclass(frozen=True, kw_only=True)
class FeedbackConfig:
    """How strongly the best documents pull their look-alikes up (see the module docstring)."""

    top_k: int = 2
    weight: float = 4.0
    min_documents: int = 10

    def __post_init__(self) -> None:
        if not is_int(self.top_k, at_least=2):
            # Each top document is compared with the other top ones: one alone has none.
            raise InvalidInputError(
                f"feedback top_k must be an integer of at least 2, got {self.top_k!r}"
            )
        if not is_int(self.min_documents, at_least=1):
            raise InvalidInputError(
                f"feedback min_documents must be a positive integer, got {self.min_documents!r}"
            )
        if not is_finite_number(self.weight):
            raise InvalidInputError(f"feedback weight must be a finite number, got {self.weight!r}")


class WindowEmbedder(Protocol):
    """What feedback needs: unit-length embeddings of texts (``BiEncoderScorer`` has it)."""

    def embed_normalized(self, texts: list[str]) -> np.ndarray:
        """float32 ``(len(texts), dim)``, L2-normalised, in input order."""
        ...


@dataclass(frozen=True, kw_only=True)
class Feedback:
    """The feedback a model applies: its config and the bi-encoder that compares documents."""

    config: FeedbackConfig
    embedder: WindowEmbedder


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
    least = max(feedback.config.min_documents, feedback.config.top_k + 1)
    lists, cursor = [], 0
    for counts, (doc_scores, best), skipped in zip(piece_counts, per_query, pruned, strict=True):
        starts = cursor + np.cumsum([0, *counts[:-1]]).astype(int)
        read = np.flatnonzero(~skipped)
        if read.size >= least:
            texts = [pairs[int(starts[d]) + best[d]][1] for d in read.tolist()]
            lists.append((starts, counts, read, doc_scores[read], texts))
        cursor += sum(counts)
    if not lists:
        return out
    # One call for every list's best windows: the bi-encoder still holds their embeddings from
    # scoring them, so nothing is run again.
    vectors = feedback.embedder.embed_normalized([t for *_, texts in lists for t in texts])
    offset = 0
    for starts, counts, read, scores, texts in lists:
        shift = _shifts(scores, vectors[offset : offset + len(texts)], texts, feedback.config)
        offset += len(texts)
        for doc, delta in zip(read.tolist(), shift.tolist(), strict=True):
            out[starts[doc] : starts[doc] + counts[doc]] += np.float32(delta)
    return out


# Cosine at which two windows count as one document read twice (copies embed alike up to the
# backend's rounding; distinct texts, even near-duplicates, stay well below).
SAME_DOCUMENT_COSINE = 1.0 - 1e-5
SAME_DOCUMENT_SCORE = 1e-3  # raw scores of one text read twice (batching moves them ~1e-6)


def _distinct_documents(
    texts: list[str], vectors: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(each text's document number, each document's first position): equal texts first, then
    texts the model reads alike, which score alike and have the same vector. Only texts whose
    scores are that close are compared (all pairs took 1.4 s and 1 GB at 10,000 documents)."""
    slot: dict[str, int] = {}
    by_text = np.array([slot.setdefault(text, len(slot)) for text in texts], dtype=int)
    first = np.zeros(len(slot), dtype=int)
    first[by_text[::-1]] = np.arange(len(texts))[::-1]  # each distinct text's first position
    unique = vectors[first].astype(np.float64)
    order = np.argsort(scores[first], kind="stable")
    canonical = _twins(unique, order, scores[first][order])
    kept, merged = np.unique(canonical, return_inverse=True)  # kept: in order of appearance
    return merged[by_text], first[kept]


def _twins(unique: np.ndarray, order: np.ndarray, ranked: np.ndarray) -> np.ndarray:
    """Each distinct text's earliest twin (itself when it has none). Texts are visited by
    score; each is compared, in one product, with the latest member of each group found so far
    whose score is within SAME_DOCUMENT_SCORE of its own (so a chain of twins whose scores
    drift stays one group): every pair of texts that scored alike was compared one dot product
    at a time (16 s for 3,000 copies with different trailing spaces)."""
    group_of = np.empty(len(order), dtype=int)
    # group -> (its latest member, that member's score): updated in score order, so the dict's
    # order is the scores' order and the groups within reach are its last entries.
    latest: dict[int, tuple[int, float]] = {}
    for text, score in zip(order.tolist(), ranked.tolist(), strict=True):
        near: list[tuple[int, int]] = []
        for group in reversed(latest):
            member, member_score = latest[group]
            if score - member_score > SAME_DOCUMENT_SCORE:
                break
            near.append((group, member))
        group = text
        if near:
            same = unique[[member for _, member in near]] @ unique[text] >= SAME_DOCUMENT_COSINE
            if same.any():
                group = near[int(np.argmax(same))][0]
        latest.pop(group, None)
        latest[group] = (text, score)
        group_of[text] = group
    earliest = np.full(len(order), len(order), dtype=int)
    np.minimum.at(earliest, group_of, np.arange(len(order)))
    return earliest[group_of]


def _shifts(
    scores: np.ndarray, vectors: np.ndarray, texts: list[str], config: FeedbackConfig
) -> np.ndarray:
    """Each read document's raw-score shift: weight x centred mean similarity to the top ones.

    Documents are compared, and the shifts centred, as distinct documents: copies of one
    document (the same text, or texts the model reads alike, such as one with a trailing space)
    get one shift, a copy is not "another top document" that pulls its twin up, and sending a
    document twice moves no other document's score. Which copy comes first does not matter.
    """
    inverse, first = _distinct_documents(texts, vectors, scores.astype(np.float64))
    count = len(first)
    if count < max(config.min_documents, config.top_k + 1):
        return np.zeros(len(texts), dtype=np.float32)
    distinct = np.full(count, -np.inf)
    np.maximum.at(distinct, inverse, scores.astype(np.float64))
    top = np.argsort(-distinct, kind="stable")[: config.top_k]
    similarity = (vectors[first] @ vectors[first][top].T).astype(np.float64)
    own = np.arange(count)[:, None] == top[None, :]
    similarity[own] = math.nan  # a top document is compared with the other top ones only
    mean = np.nanmean(similarity, axis=1)
    return (config.weight * (mean - mean.mean()))[inverse].astype(np.float32)
