"""Re-rank candidate lists with any scoring function and build the resulting runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from semrank._checks import array_dicts_equal, is_int
from semrank.errors import InvalidInputError
from semrank.eval.loaders import CandidateList, Qrels, Run, ScoredDoc
from semrank.eval.metrics import evaluate

# (query, documents) -> one float score per document, in input order (``Reranker.score``).
ScoreFunction = Callable[[str, list[str]], np.ndarray]
DEPTH_CURVE_DEPTHS: tuple[int, ...] = (10, 20, 50, 100)


@dataclass(frozen=True, kw_only=True)
class RerankOutcome:
    """Scores of the top ``depth`` candidates of each query, and how long scoring took."""

    depth: int
    scores: dict[str, np.ndarray]  # query id -> scores of hits[:depth], in first-stage order
    pairs: int
    seconds: float

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RerankOutcome):
            return NotImplemented
        counts = (self.depth, self.pairs, self.seconds) == (other.depth, other.pairs, other.seconds)
        return counts and array_dicts_equal(self.scores, other.scores)

    def __repr__(self) -> str:
        # Not every query's score array: a notebook cell showing one printed pages of numbers.
        return (
            f"RerankOutcome(depth={self.depth}, scores=<{len(self.scores)} queries>, "
            f"pairs={self.pairs}, seconds={self.seconds:.3f})"
        )

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / self.seconds if self.seconds > 0 else float("inf")


def score_candidates(
    candidates: Sequence[CandidateList],
    score: ScoreFunction,
    *,
    depth: int = 100,
    on_query: Callable[[int], None] | None = None,
) -> RerankOutcome:
    """Score the top ``depth`` hits of every query; ``on_query(pairs)`` reports progress."""
    _check_depth(depth)
    scores: dict[str, np.ndarray] = {}
    pairs, seconds = 0, 0.0
    for candidate_list in candidates:
        texts = [hit.text for hit in candidate_list.hits[:depth]]
        started = time.perf_counter()
        values = (
            np.asarray(score(candidate_list.query, texts), dtype=np.float32)
            if texts
            else np.zeros(0, dtype=np.float32)
        )
        seconds += time.perf_counter() - started
        if values.shape != (len(texts),):
            raise InvalidInputError(
                f"the scorer returned shape {values.shape} for {len(texts)} documents"
            )
        if not np.isfinite(values).all():
            raise InvalidInputError(
                f"the scorer returned NaN or infinite scores for query {candidate_list.query_id!r}"
            )
        scores[candidate_list.query_id] = values
        pairs += len(texts)
        if on_query is not None:
            on_query(len(texts))
    return RerankOutcome(depth=depth, scores=scores, pairs=pairs, seconds=seconds)


def _check_depth(depth: object) -> None:
    if not is_int(depth, at_least=1):
        raise InvalidInputError(f"depth must be at least 1 (an integer), got {depth!r}")


def reranked_run(
    candidates: Sequence[CandidateList],
    scores: dict[str, np.ndarray],
    *,
    depth: int | None = None,
    name: str = "reranked",
) -> Run:
    """Order the top ``depth`` hits by score (ties keep first-stage order), then the rest.

    Hits below ``depth`` keep their first-stage order with scores below every re-ranked one,
    so a run file written from this ranks them the same way.
    """
    if depth is not None:
        _check_depth(depth)
    rankings: dict[str, list[ScoredDoc]] = {}
    for candidate_list in candidates:
        values = scores.get(candidate_list.query_id)
        if values is None:
            raise InvalidInputError(
                f"no scores for query {candidate_list.query_id!r}; score every candidate list "
                "(score_candidates) before building the run"
            )
        cut = len(values) if depth is None else min(depth, len(values))
        head = candidate_list.hits[:cut]
        order = sorted(range(cut), key=lambda i: -float(values[i]))  # stable: ties keep order
        ranking = [ScoredDoc(doc_id=head[i].doc_id, score=float(values[i])) for i in order]
        floor = min((doc.score for doc in ranking), default=0.0)
        tail = candidate_list.hits[cut:]
        ranking += [ScoredDoc(doc_id=h.doc_id, score=floor - 1.0 - i) for i, h in enumerate(tail)]
        rankings[candidate_list.query_id] = ranking
    return Run(name=name, rankings=rankings)


def depth_curve(
    candidates: Sequence[CandidateList],
    outcome: RerankOutcome,
    qrels: Qrels,
    measures: Iterable[str],
    depths: Iterable[int] = DEPTH_CURVE_DEPTHS,
) -> dict[int, dict[str, float]]:
    """Measures of the re-ranked run when only the top ``d`` hits are re-ranked, per depth.

    Uses the scores already computed (scoring is per pair), so only depths up to the scored
    depth are possible; deeper ones are left out. The scored depth is always on the curve, and
    a depth past the longest candidate list counts as that list's length.
    """
    names = list(measures)
    longest = max((len(c.hits) for c in candidates), default=0)
    # A depth beyond the longest list equals the longest list; the depth actually re-ranked is
    # always on the curve (the report's table shows it).
    wanted = {*depths, outcome.depth}
    usable = sorted({min(d, longest) for d in wanted if 1 <= min(d, longest) <= outcome.depth})
    return {
        d: evaluate(qrels, reranked_run(candidates, outcome.scores, depth=d), names).aggregate
        for d in usable
    }
