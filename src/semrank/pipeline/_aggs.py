"""Which documents a search's aggregations read: every document its tree matches, not only
the hits returned, as Elasticsearch aggregates.

* a match / multi_match (``BM25``): every document sharing a term with it (BM25 above 0) and
  passing its filters, at any k (``Store.ids_bm25``, what ``_count`` counts);
* a filter-only query (``ConstantScore``): every document passing it;
* a ``knn``: its ``k`` nearest (Elasticsearch aggregates a knn search's top k);
* ``rrf`` / ``linear``: the union of their retrievers' documents, not cut to a
  ``rank_window_size`` (as Elasticsearch's rrf aggregates);
* a re-ranker or cut-off: its retriever's documents (re-ranking orders, it does not match);
* a search body's ``post_filter`` and ``collapse``: its tree's (Elasticsearch aggregates
  before the post_filter, which only filters the hits).
"""

from __future__ import annotations

import dataclasses

from semrank.errors import InvalidInputError
from semrank.pipeline._context import SearchContext
from semrank.pipeline._nodes import (
    BM25,
    FUSION_WINDOW,
    RRF,
    ConstantScore,
    Cutoff,
    HitStage,
    Knn,
    Linear,
    Retriever,
    TextSimilarityReranker,
    Weighted,
    _filter_argument,
    own_filter,
)
from semrank.retrieve import Filter
from semrank.retrieve._filter import Bool, Ids
from semrank.store._targets import split_key


def matched_documents(
    tree: Retriever, ctx: SearchContext, size: int, whole: SearchContext | None = None
) -> Filter:
    """The documents ``tree`` matches, as a filter (ids, or the filter a filter query is);
    ``size``: the hits the search asks of it (a knn without ``k`` returns that many);
    ``whole``: where ``ctx`` is one index of several, the search of them all."""
    if isinstance(tree, BM25):
        return _bm25_documents(tree, ctx)
    if isinstance(tree, ConstantScore):
        return _filter_argument(ctx, tree, "count_matching")["filter"]  # own filter: never {}
    if isinstance(tree, Knn):
        return _knn_documents(tree, ctx, tree.k or size, whole)
    if isinstance(tree, RRF | Linear):
        inner = ctx.within(own_filter(tree))
        window = tree.rank_window_size or max(size, FUSION_WINDOW)
        parts = tuple(matched_documents(one, inner, window, whole) for one in tree.retrievers)
        return Bool(should=parts, minimum_should_match=1)
    if isinstance(tree, TextSimilarityReranker):
        return matched_documents(tree.retriever, ctx.within(own_filter(tree)), size, whole)
    if isinstance(tree, Cutoff | Weighted | HitStage):  # post_filter: not aggregated
        return matched_documents(tree.retriever, ctx, size, whole)
    raise InvalidInputError(
        f"aggregations cannot tell which documents a {type(tree).__name__} retriever matches; "
        "aggregate a tree of semrank's retrievers (standard, knn, rrf, linear, "
        "text_similarity_reranker)"
    )


def _knn_documents(node: Knn, ctx: SearchContext, k: int, whole: SearchContext | None) -> Filter:
    """A knn's ``k`` nearest; on one index of several, its part of their merged ``k`` nearest
    (as Elasticsearch merges the shards' into one top k: k documents matched, not k each)."""
    if whole is None:
        return Ids(values=frozenset(str(i) for i in node.run(ctx, k).ids.tolist()))
    merged = node.run(dataclasses.replace(whole, filter=ctx.filter), k)
    keys = (split_key(str(key)) for key in merged.ids.tolist())
    return Ids(values=frozenset(doc_id for name, doc_id in keys if name == ctx.store.name))


def _bm25_documents(node: BM25, ctx: SearchContext) -> Filter:
    text = ctx.text(node.text)
    # Those the index has, where it is one of several (``BM25.run`` reads it so).
    fields = tuple(pair for pair in node.fields or ((node.field, 1.0),) if ctx.holds(pair[0]))
    if not fields:
        return Ids(values=frozenset())
    # Parents' filters and the node's own, resolved at the search's time, as its search reads.
    flt = _filter_argument(ctx, node, "ids_bm25").get("filter")
    ids = ctx.store.ids_bm25(text, fields=fields, mode=node.mode, filter=flt)
    return Ids(values=frozenset(ids))
