"""Every hit of a search, listed once so that it can be paged through later (Elasticsearch's
scroll and point in time): hit keys and scores (and sort values, where sorted by fields)
only, the documents read page by page.

* a filter-only query (``ConstantScore``: ``match_all``, ``term``, a ``bool`` of filters) lists
  the documents passing it in the store's order (``Store.matching_id_pages``: the embedded
  store's filter table, PostgreSQL's keyset pages of ids), as its search returns them;
* ``store_order`` (Elasticsearch's ``sort: _doc`` / ``_shard_doc``) lists the documents any
  tree matches (``matched_documents``, what its aggregations read) in that order, unscored;
* a sort by fields (``sort``: a ``SortRequest``) orders what a sorted search of the tree
  orders (``semrank.pipeline._sorting``: a filter's every passing document, a match's every
  document sharing a term, a knn's k), each hit keeping its ``sort`` values;
* a match / multi_match (``BM25``) ranks every document sharing a term with it, best first;
* any other tree ranks what its search ranks: a knn its ``k`` (or ``size``) nearest, a fusion
  or re-ranker its ``rank_window_size``.

The listing stops once it holds more than ``limit`` hits (None: over the limit), so that a
query matching millions of documents is refused without listing them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from semrank._checks import MAX_COUNT
from semrank.errors import InvalidInputError
from semrank.pipeline._aggs import matched_documents
from semrank.pipeline._context import SearchContext
from semrank.pipeline._nodes import (
    BM25,
    MAX_RESULT_WINDOW,
    ConstantScore,
    Cutoff,
    HitStage,
    Knn,
    Retriever,
    top_node,
    top_window,
)
from semrank.pipeline._post import has_collapse, passing_both, post_filter_of
from semrank.pipeline._search import _new_context
from semrank.pipeline._sorting import SortRequest, sorted_run
from semrank.store import Store
from semrank.store._targets import hit_key

# Ids read per store query while listing in the store's order.
LISTING_PAGE = 10_000


@dataclass(frozen=True)
class HitList:
    """A search's hits in order: each one's key (``index:id``, ``hit_key``) and score (None:
    listed in the store's order, which no score decides, as Elasticsearch answers a sort by
    ``_doc`` with a null ``_score``) and, where sorted by fields, its ``sort`` values (a
    sorted search's, without the tie-breaking key)."""

    keys: list[str]
    scores: np.ndarray | None = None
    sort_values: list[list[Any]] | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def score(self, position: int) -> float | None:
        return None if self.scores is None else float(self.scores[position])


def list_hits(
    stores: Sequence[Store],
    tree: Retriever,
    *,
    limit: int,
    size: int,
    store_order: bool = False,
    sort: SortRequest | None = None,
) -> HitList | None:
    """Every hit of ``tree`` on ``stores`` (the tree holds its own texts), or None where there
    are more than ``limit``; ``size``: a page's hits (what a knn without ``k`` returns, as in
    Elasticsearch); ``store_order``: the matched documents in the store's order, unscored;
    ``sort``: ordered by fields, as a sorted search of every hit orders them."""
    if has_collapse(tree):  # Elasticsearch refuses it too
        raise InvalidInputError(
            "collapse cannot be used in a scroll or point in time listing; page a collapsed "
            "search with from and size"
        )
    ctx = _new_context(list(stores), None, tree, None, None)
    inner = _unstaged(tree)
    if sort is None and (store_order or isinstance(inner, ConstantScore)):
        score = inner.score if isinstance(inner, ConstantScore) and not store_order else None
        return _in_store_order(ctx, tree, limit, size, score)
    # A ranking holds MAX_COUNT hits at most (a store's k): one of that many may hold more.
    most = min(limit, MAX_COUNT - 1)
    if sort is not None:
        ranking = sorted_run(tree, sort)(ctx, _sorted_depth(tree, most))
    else:
        ranking = tree.run(ctx, _depth(tree, most, size))
    if len(ranking) > most:
        return None
    several = ctx.several is not None
    ids = [str(i) for i in ranking.ids.tolist()]
    keys = ids if several else [hit_key(ctx.store.name, i) for i in ids]
    if sort is None:
        return HitList(keys, np.asarray(ranking.scores, dtype=np.float32))
    assert ranking.sort_values is not None  # a sorted run's ranking carries them
    # Each hit's values without the tie-breaking key (index, id) a sorted search ends with.
    values = [list(held[:-1]) for held in ranking.sort_values.tolist()]
    scores = np.asarray(ranking.scores, dtype=np.float32) if sort.scores_tracked else None
    return HitList(keys, scores, values)


def _in_store_order(
    ctx: SearchContext, tree: Retriever, limit: int, size: int, score: float | None
) -> HitList | None:
    """The documents ``tree`` matches, index after index, each in its store's order."""
    keys: list[str] = []
    per_index = [ctx] if ctx.several is None else [ctx.on(one) for one in ctx.stores]
    post = post_filter_of(tree)
    for one in per_index:
        within = passing_both(matched_documents(tree, one, size), post, one.now)
        for page in one.store.matching_id_pages(within, min(limit + 1, LISTING_PAGE)):
            keys.extend(hit_key(one.store.name, doc_id) for doc_id in page)
            if len(keys) > limit:
                return None
    scores = None if score is None else np.full(len(keys), score, dtype=np.float32)
    return HitList(keys, scores)


def _sorted_depth(tree: Retriever, limit: int) -> int:
    """The hits to ask of a sorted search: one past the limit (a filter's or a match's every
    one, ``_sorted_window`` asking a match for the larger of its window and this), a knn's
    window at most (its k, else what a sorted search sorts), which it never goes past."""
    top, _ = top_node(tree)  # sorted_run refuses a weighted tree before this is asked
    if isinstance(top, Knn):
        return min(limit + 1, top.k or MAX_RESULT_WINDOW)
    return limit + 1


def _depth(tree: Retriever, limit: int, size: int) -> int:
    """The hits to ask of a ranked tree: a match query's every one (one past the limit, to
    tell a listing over it), a knn's k (else ``size``), another tree's top window."""
    top, _ = top_node(tree)
    if isinstance(top, BM25):
        return limit + 1
    if isinstance(top, Knn):
        return top.k or size
    return top_window(top) or size


def _unstaged(tree: Retriever) -> Retriever:
    """The tree below its cut-offs and the stages over its hits (a post_filter's)."""
    while isinstance(tree, Cutoff | HitStage):
        tree = tree.retriever
    return tree
