"""What flows between retriever-tree nodes, and what a search returns."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from semrank._checks import arrays_equal
from semrank.retrieve import Hits
from semrank.store._base import DocumentVersion
from semrank.store._targets import split_key


@dataclass(frozen=True)
class Ranking:
    """A ranked list plus, per hit, where the first stage had put it and the re-rank score.

    "First stage" is the list that entered the first re-ranker (after any fusion); without a
    re-ranker it is the list itself. ``rerank_scores`` is NaN for hits no re-ranker scored.
    """

    ids: np.ndarray  # document ids, dtype object
    scores: np.ndarray  # float32, best first
    first_stage_ranks: np.ndarray  # int64, 1-based
    first_stage_scores: np.ndarray  # float32
    rerank_scores: np.ndarray  # float32, NaN when not re-ranked
    reranked: bool = False
    # Each hit's values of a sort by fields (object array of lists), where the search sorted.
    sort_values: np.ndarray | None = None
    # Each hit's fields (object array of {name: [value]}), where the search collapsed them.
    fields: np.ndarray | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ranking):
            return NotImplemented
        arrays = ("ids", "scores", "first_stage_ranks", "first_stage_scores", "rerank_scores")
        same = all(arrays_equal(getattr(self, name), getattr(other, name)) for name in arrays)
        return same and self.reranked == other.reranked

    def __len__(self) -> int:
        return len(self.ids)

    @staticmethod
    def from_hits(hits: Hits) -> Ranking:
        """A first-stage ranking: its own ranks and scores are the first-stage ones."""
        scores = np.asarray(hits.scores, dtype=np.float32)
        ids = np.empty(len(hits), dtype=object)
        ids[:] = [str(i) for i in hits.ids.tolist()]
        return Ranking(
            ids=ids,
            scores=scores,
            first_stage_ranks=np.arange(1, len(ids) + 1, dtype=np.int64),
            first_stage_scores=scores.copy(),
            rerank_scores=np.full(len(ids), np.nan, dtype=np.float32),
        )

    def hits(self) -> Hits:
        return Hits(self.ids, self.scores)

    def take(self, order: np.ndarray) -> Ranking:
        """The hits at positions ``order``, in that order (scores unchanged)."""
        return Ranking(
            ids=self.ids[order],
            scores=self.scores[order],
            first_stage_ranks=self.first_stage_ranks[order],
            first_stage_scores=self.first_stage_scores[order],
            rerank_scores=self.rerank_scores[order],
            reranked=self.reranked,
            sort_values=None if self.sort_values is None else self.sort_values[order],
            fields=None if self.fields is None else self.fields[order],
        )

    def top(self, k: int) -> Ranking:
        return self.take(np.arange(min(max(k, 0), len(self))))


@dataclass(frozen=True)
class Hit:
    """One search result."""

    id: str
    score: float
    rank: int
    first_stage_rank: int
    first_stage_score: float
    rerank_score: float | None
    document: dict[str, Any] | None = None
    # Fragments per field where the search asked for highlights (only fields with one).
    highlight: dict[str, list[str]] | None = None
    # The index holding the hit (never an alias of it): a search of several indexes may find
    # one id in two of them, two hits told apart by it. None where a search built the hit
    # without one.
    index: str | None = None
    # Its values of the search's sort (one per criterion, then its tie-breaking id), where
    # the search sorted by fields: the next page's search_after, as the last hit's.
    sort: list[Any] | None = None
    # The document's version and the sequence number of its last write, where the search
    # asked for them (Elasticsearch's version / seq_no_primary_term), read with ``document``.
    version: DocumentVersion | None = None
    # Its value of the field the search collapsed on, {field: [value]} (None where the hit
    # has none), as Elasticsearch's hit ``fields``: where the search collapsed.
    fields: dict[str, list[Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        marked: dict[str, Any] = {} if self.highlight is None else {"highlight": self.highlight}
        held = {} if self.index is None else {"index": self.index}
        if self.sort is not None:
            marked["sort"] = self.sort
        if self.fields is not None:
            marked["fields"] = self.fields
        return {
            **held,
            "id": self.id,
            "score": self.score,
            "rank": self.rank,
            "first_stage_rank": self.first_stage_rank,
            "first_stage_score": self.first_stage_score,
            "rerank_score": self.rerank_score,
            "document": self.document,
            **marked,
        }


@dataclass(frozen=True)
class SearchResults(Sequence[Hit]):
    """The hits of one search, best first; ``ids`` / ``scores`` are the array view.

    A sequence of its hits: ``for hit in results``, ``results[0]`` (a ``Hit``) and
    ``results[:3]`` (the first three, as ``SearchResults`` with the same warnings).
    """

    hits: list[Hit]
    # Said of the whole search, e.g. a query a re-ranking model cut to fit.
    warnings: tuple[str, ...] = ()
    # Hits the search ranked down to this page's last: the hits its offset skipped and its
    # own (fewer than the offset where the ranking ended before the page); None for a slice.
    ranked: int | None = None
    # A search given aggs: each one's answer, in Elasticsearch's shapes ({name: {"buckets": ...}}).
    aggregations: dict[str, Any] | None = None
    # How many documents the search matched (those aggregated), where it aggregated or asked
    # for no hits (k=0); None otherwise (counting them costs a search for every match).
    matched: int | None = None
    # False where the hits were sorted by fields without _score or track_scores: their
    # scores are the retriever's, which Elasticsearch does not compute then (_score null).
    scores_tracked: bool = True

    @property
    def ids(self) -> list[str]:
        return [h.id for h in self.hits]

    @property
    def scores(self) -> np.ndarray:
        return np.array([h.score for h in self.hits], dtype=np.float32)

    def __len__(self) -> int:
        return len(self.hits)

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)

    @overload
    def __getitem__(self, position: int) -> Hit: ...
    @overload
    def __getitem__(self, position: slice) -> SearchResults: ...
    def __getitem__(self, position: int | slice) -> Hit | SearchResults:
        if isinstance(position, slice):
            return SearchResults(self.hits[position], self.warnings)
        return self.hits[position]

    def as_run(self) -> dict[str, float]:
        """``{doc_id: score}`` (ir_measures / pytrec_eval run format)."""
        return {h.id: h.score for h in self.hits}

    def to_dict(self) -> dict[str, Any]:
        said: dict[str, Any] = {"warnings": list(self.warnings)} if self.warnings else {}
        if self.aggregations is not None:
            said["aggregations"] = self.aggregations
        if self.matched is not None:  # the documents aggregated (semrank search --aggs --json)
            said["matched"] = self.matched
        return {"hits": [h.to_dict() for h in self.hits], **said}

    @staticmethod
    def from_ranking(
        ranking: Ranking,
        documents: list[dict[str, Any]] | None,
        warnings: Sequence[str] = (),
        *,
        offset: int = 0,
        highlights: list[dict[str, list[str]]] | None = None,
        index: str | None = None,
        keyed: bool = False,
    ) -> SearchResults:
        """The hits of ``ranking``, a page ``offset`` hits into the search's: ranked from
        ``offset + 1`` (a first-stage rank stays the rank that stage gave); ``highlights``:
        each hit's fragments, where the search asked for them; ``index``: the index holding
        every hit; ``keyed``: the ids are hit keys ``index:id`` of a search of several."""
        hits = []
        for position in range(len(ranking)):
            rerank = float(ranking.rerank_scores[position])
            held, hit_id = (
                split_key(str(ranking.ids[position]))
                if keyed
                else (index, str(ranking.ids[position]))
            )
            hits.append(
                Hit(
                    index=held,
                    id=hit_id,
                    score=float(ranking.scores[position]),
                    rank=offset + position + 1,
                    first_stage_rank=int(ranking.first_stage_ranks[position]),
                    first_stage_score=float(ranking.first_stage_scores[position]),
                    rerank_score=None if math.isnan(rerank) else rerank,
                    document=None if documents is None else documents[position],
                    highlight=None if highlights is None else highlights[position],
                    sort=None if ranking.sort_values is None else ranking.sort_values[position],
                    fields=None if ranking.fields is None else ranking.fields[position],
                )
            )
        return SearchResults(hits, tuple(warnings), ranked=offset + len(hits))
