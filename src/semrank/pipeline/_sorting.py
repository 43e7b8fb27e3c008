"""A search sorted by document fields (Elasticsearch's ``sort``, ``search_after``,
``track_scores``): how each kind of tree is sorted.

A tree that only filters (``ConstantScore``: ``match_all``, ``term``, ``range``, a ``bool`` of
filters) is sorted over every document passing it: each store says which pass and their sort
fields' values as columns (``Store.sort_columns``, ``sort_candidates``: the embedded store
from its filter table, PostgreSQL in one query), never their documents, and
``semrank.retrieve._sort_columns`` orders them. A scoring ``standard`` (``match``) or ``knn``
search is sorted over the hits it retrieves (a match's best MAX_RESULT_WINDOW, a knn's k),
whose values each store reads by id (``Store.sort_values``). Compound retrievers (rrf,
linear, a re-ranker) rank by their own scores; a sort on them is refused, as Elasticsearch
refuses it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from semrank._checks import require_flags
from semrank.errors import InvalidInputError
from semrank.pipeline._context import SearchContext
from semrank.pipeline._nodes import (
    BM25,
    MAX_RESULT_WINDOW,
    ConstantScore,
    Cutoff,
    HitStage,
    Knn,
    Retriever,
    own_filter,
)
from semrank.pipeline._ranking import Ranking
from semrank.retrieve import Hits, all_of, resolved
from semrank.retrieve._filter import Ids
from semrank.retrieve._sort import Sort, SortedHit, parse_sort
from semrank.retrieve._sort_columns import SortColumn, SortTable, concatenated, order_table
from semrank.store._targets import hit_key, split_key


@dataclass(frozen=True, kw_only=True)
class SortRequest:
    """A search's sort, the last hit's ``sort`` values to continue after (None: from the
    start) and whether hits keep their scores (``track_scores``)."""

    sort: Sort
    search_after: tuple[Any, ...] | None = None
    track_scores: bool = False

    @property
    def scores_tracked(self) -> bool:
        """Whether hits' scores are asked for: ``_score`` among the criteria, or
        ``track_scores`` (Elasticsearch computes none otherwise, and answers ``_score`` null)."""
        return self.track_scores or self.sort.by_score


def sort_request(
    sort: Any, search_after: Any = None, track_scores: bool = False
) -> SortRequest | None:
    """The ``SortRequest`` of a search's ``sort``, ``search_after`` and ``track_scores``
    (None where it sorts by score), checked: ``search_after`` needs a sort."""
    require_flags(track_scores=track_scores)
    if isinstance(sort, SortRequest) and search_after is None and not track_scores:
        return sort  # read already (a search body's, carried by the CLI)
    if sort is None:
        if search_after is not None:
            raise InvalidInputError(
                "search_after continues a sorted search: give the same sort as the page it "
                'follows (e.g. "sort": [{"date": "desc"}]), the last hit\'s sort values as '
                "search_after"
            )
        return None
    after = None
    if search_after is not None:
        if not isinstance(search_after, list | tuple) or not search_after:
            raise InvalidInputError(
                f"search_after must be a non-empty list (the last hit's sort values), got "
                f"{search_after!r:.60}"
            )
        after = tuple(search_after)
    return SortRequest(sort=parse_sort(sort), search_after=after, track_scores=track_scores)


def check_sorted_page(request: SortRequest | None, start: int) -> None:
    """Elasticsearch refuses ``from`` beside ``search_after``: the cursor is the page's start."""
    if request is not None and request.search_after is not None and start > 0:
        raise InvalidInputError(
            f"from {start} cannot be given beside search_after (the last hit's sort values "
            "already say where the page starts); leave from out, or 0"
        )


def sorted_run(tree: Retriever, request: SortRequest) -> Callable[[SearchContext, int], Ranking]:
    """What runs ``tree`` sorted: a ``run(ctx, size)`` whose ranking carries sort values."""
    inner = _uncut(tree)
    if isinstance(inner, HitStage):  # post_filter, collapse: over the sorted hits
        return inner.over(sorted_run(inner.retriever, request))
    if isinstance(inner, ConstantScore):
        return lambda ctx, size: _sorted_filter(inner, request, ctx, size)
    if isinstance(inner, BM25 | Knn):
        return lambda ctx, size: _sorted_window(inner, request, ctx, size)
    raise InvalidInputError(
        f"a {type(inner).__name__} retriever cannot be sorted by fields: it ranks by its own "
        "scores (Elasticsearch refuses sort on rrf, linear and text_similarity_reranker "
        "retrievers too); sort a standard retriever (a filter, or a match) or a knn search"
    )


def _uncut(tree: Retriever) -> Retriever:
    """The tree below its cut-offs (a body's size: the sort's page is cut instead)."""
    while isinstance(tree, Cutoff):
        tree = tree.retriever
    return tree


def _sorted_filter(
    node: ConstantScore, request: SortRequest, ctx: SearchContext, size: int
) -> Ranking:
    """Every document passing the node's filter (and the search's), sorted, the first ``size``."""
    flt = all_of(ctx.filter, own_filter(node))
    assert flt is not None  # a ConstantScore always has its own
    flt = resolved(flt, ctx.now)
    fields = request.sort.fields
    several = ctx.several is not None
    tables = []
    for one in ctx.stores:
        if several:  # each index's first hits of its own kinds need not be the search's
            table = one.sort_columns(flt, fields)
        else:
            table = one.sort_candidates(flt, request.sort, after=request.search_after, limit=size)
        named = [one.name] * len(table) if several else []
        scores = np.full(len(table), float(node.score))
        tables.append(dataclasses.replace(table, scores=scores, index_names=named))
    ordered = _ordered(concatenated(tables, fields), request, size)
    keys = [str(hit.sort[-1]) for hit in ordered]
    scores = np.full(len(keys), node.score, dtype=np.float32)
    return _with_sort(Ranking.from_hits(Hits(_objects(keys), scores)), ordered)


def _sorted_window(node: Retriever, request: SortRequest, ctx: SearchContext, size: int) -> Ranking:
    """The node's retrieved hits (a match's best MAX_RESULT_WINDOW, a knn's k), sorted."""
    window = getattr(node, "k", None) or MAX_RESULT_WINDOW
    ranking = node.run(ctx, max(window, size))
    keys = [str(key) for key in ranking.ids.tolist()]
    fields = request.sort.fields
    values = window_values(ctx, keys, fields)
    named = [split_key(key) for key in keys] if ctx.several is not None else []
    table = SortTable(
        [doc_id for _, doc_id in named] if named else keys,
        np.asarray(ranking.scores, dtype=np.float64),
        {name: SortColumn.of([held[n] for held in values]) for n, name in enumerate(fields)},
        [index for index, _ in named],
    )
    ordered = _ordered(table, request, size)
    taken = ranking.take(np.array([hit.position for hit in ordered], dtype=np.int64))
    return _with_sort(taken, ordered)


def window_values(ctx: SearchContext, keys: list[str], fields: list[str]) -> list[Any]:
    """The values of ``fields`` of each hit ``keys`` names (one list per field), read from
    its own index."""
    found: dict[str, list[Any]] = {}
    for one in ctx.stores:
        if ctx.several is None:
            own = keys
        else:
            own = [split_key(key)[1] for key in keys if split_key(key)[0] == one.name]
        if not own:
            continue
        for doc_id, values in one.sort_values(Ids(values=frozenset(own)), fields):
            found[doc_id if ctx.several is None else hit_key(one.name, doc_id)] = values
    return [found.get(key, [[] for _ in fields]) for key in keys]


def _ordered(table: SortTable, request: SortRequest, size: int) -> list[SortedHit]:
    return order_table(table, request.sort, after=request.search_after, limit=size)


def _with_sort(ranking: Ranking, ordered: list[SortedHit]) -> Ranking:
    values = np.empty(len(ordered), dtype=object)
    for position, hit in enumerate(ordered):  # one by one: equal-length lists would be a 2-d array
        values[position] = hit.sort
    return dataclasses.replace(ranking, sort_values=values)


def _objects(items: list[str]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array
