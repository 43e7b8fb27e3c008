"""Running a retriever tree on an index: the function other stages (eval, server, CLI) call."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from semrank._checks import is_blank, require_collection, require_flags, require_unicode
from semrank.errors import InvalidInputError
from semrank.pipeline._aggs import matched_documents
from semrank.pipeline._context import PLACEHOLDER, ScoresDocuments, SearchContext
from semrank.pipeline._highlights import check_highlight, hit_highlights
from semrank.pipeline._nodes import (
    BM25,
    DEFAULT_RERANK_WINDOW,
    RRF,
    ConstantScore,
    Cutoff,
    HitStage,
    Knn,
    Linear,
    Retriever,
    Stage,
    TextSimilarityReranker,
    Weighted,
    check_page,
    check_window,
    fixed_vector_paths,
    has_placeholder,
    hits_without_size,
    tree_nodes,
)
from semrank.pipeline._open import using_index, using_indexes
from semrank.pipeline._parse import SearchBody, parse_search_body
from semrank.pipeline._post import (
    check_stage_paging,
    has_collapse,
    passing_both,
    post_filter_of,
    with_hit_stages,
)
from semrank.pipeline._ranking import Ranking, SearchResults
from semrank.pipeline._sorting import SortRequest, check_sorted_page, sort_request, sorted_run
from semrank.retrieve import (
    Filter,
    FilterSpec,
    HighlightSpec,
    optional_filter,
    parse_highlight,
    resolved,
)
from semrank.retrieve._aggregated import SeveralIndexes
from semrank.retrieve._aggs import aggregate, parse_aggs
from semrank.retrieve._filter import MatchAll
from semrank.store import Store
from semrank.store._base import check_k
from semrank.store._targets import hit_key, is_multi_target, split_key

FIRST_STAGES = ("bm25", "dense", "hybrid", "linear")
DEFAULT_K = 10  # the hits a search without k returns, as Elasticsearch's size defaults to 10
RetrieverSpec = str | Path | Mapping[str, Any] | Retriever | None


def build_retriever(
    first_stage: str = "bm25",
    *,
    rerank: bool = False,
    model: str | ScoresDocuments | None = None,
    window: int = DEFAULT_RERANK_WINDOW,
    min_score: float | None = None,
    field: str = "*",
) -> Retriever:
    """The retriever behind the CLI flags: ``bm25`` | ``dense`` | ``hybrid`` (RRF of both) |
    ``linear`` (min-max linear fusion of both), optionally re-ranked over ``window`` hits."""
    if first_stage not in FIRST_STAGES:
        raise InvalidInputError(
            f"unknown first stage {first_stage!r}; choose one of: {', '.join(FIRST_STAGES)}"
        )
    bm25, dense = BM25(field=field), Knn()
    tree: Retriever = {
        "bm25": bm25,
        "dense": dense,
        "hybrid": RRF((bm25, dense)),
        "linear": Linear((bm25, dense)),
    }[first_stage]
    if rerank:
        tree = TextSimilarityReranker(
            tree, field=field, inference_id=model, rank_window_size=window, min_score=min_score
        )
    return tree


def rerank_window_for(size: int) -> int:
    """How many hits a re-ranker reads when none is given: 100, or all ``size`` hits asked for
    when that is more (a smaller window would return fewer than asked)."""
    return max(DEFAULT_RERANK_WINDOW, int(size))


class Shorthand(NamedTuple):
    """A search shorthand such as ``"hybrid+rerank"``, taken apart."""

    first_stage: str  # one of FIRST_STAGES
    rerank: bool


def parse_shorthand(spec: str) -> Shorthand | None:
    """``"bm25" | "dense" | "hybrid" | "linear"`` with an optional ``"+rerank"`` suffix, or None
    when ``spec`` is no shorthand (the library then reads it as a JSON path; the server refuses
    it). The one reading of shorthands, so the library and the server accept the same ones."""
    name, plus, suffix = spec.strip().partition("+")
    if name in FIRST_STAGES and (not plus or suffix == "rerank"):
        return Shorthand(name, rerank=bool(plus))
    return None


def as_retriever(
    spec: RetrieverSpec, *, size: int = 10, window_limit: int | None = None
) -> Retriever:
    """A Retriever from a tree, an Elasticsearch dict, a JSON path, or a shorthand string
    ``"bm25" | "dense" | "hybrid" | "linear"`` with an optional ``"+rerank"`` suffix (re-ranking
    the top 100, or ``size`` when a search asks for more hits; at most ``window_limit``, e.g. a
    server's document limit, which a shorthand has no rank_window_size to respect)."""
    return read_retriever(spec, size=size, window_limit=window_limit).tree


def read_retriever(
    spec: RetrieverSpec, *, size: int = 10, window_limit: int | None = None, offset: int = 0
) -> SearchBody:
    """``as_retriever``'s tree, with whether its hits carry documents: a ``_search`` body's
    ``_source`` (false: none, as Elasticsearch answers it), else they do. ``offset``: the page's
    start, given apart from the body (``parse_search_body``)."""
    if spec is None:
        return SearchBody(BM25(), source=True)
    if isinstance(spec, Retriever):
        return SearchBody(spec, source=True)
    if isinstance(spec, Mapping):
        return parse_search_body(dict(spec), offset=offset)
    shorthand = parse_shorthand(spec) if isinstance(spec, str) else None
    if shorthand is not None:
        window = rerank_window_for(size)
        if window_limit is not None:
            window = min(window, window_limit)
        tree = build_retriever(shorthand.first_stage, rerank=shorthand.rerank, window=window)
        return SearchBody(tree, source=True)
    if not isinstance(spec, str | Path):
        hint = (
            "bind the stage to a retriever, e.g. BM25() >> Rerank(...)"
            if isinstance(spec, Stage)
            else "give a retriever tree such as BM25() >> Rerank(), an Elasticsearch retriever "
            'dict, a JSON file path or one of "bm25", "dense", "hybrid", "linear" (+"+rerank")'
        )
        raise InvalidInputError(f"retriever cannot be a {type(spec).__name__}; {hint}")
    return parse_search_body(spec, offset=offset)


# Runs of one search whose hits were rewritten while it ran (see ``search``).
CONSISTENT_TRIES = 3


def search(
    index: str | Store | Sequence[Store],
    query: str | None = None,
    *,
    retriever: RetrieverSpec = None,
    k: int | None = None,
    home: str | Path | None = None,
    with_documents: bool = True,
    store: str | None = None,
    filter: FilterSpec | None = None,
    offset: int = 0,
    highlight: HighlightSpec | Mapping[str, Any] | str | Sequence[str] | None = None,
    aggs: Mapping[str, Any] | None = None,
    sort: Any = None,
    search_after: Sequence[Any] | None = None,
    track_scores: bool = False,
    post_filter: FilterSpec | None = None,
    collapse: str | Mapping[str, Any] | None = None,
    min_score: float | None = None,
    count_matches: bool = False,
) -> SearchResults:
    """The top ``k`` hits of ``retriever`` (default BM25) for ``query`` on ``index``: an
    index or alias name, an opened Store, or several indexes by Elasticsearch's multi-target
    syntax (``"a,b"``, ``"logs-*"``, ``"_all"``; ``semrank.store._targets``), whose leaf
    retrievers run on each and merge their hits by score before fusion and re-ranking (each
    hit's ``index`` names its own; aggregations read them all as one). ``k`` left out: 10, or the
    top window's hits where fewer (see ``hits_asked``); they come after the first ``offset``
    (Elasticsearch's ``from``, a Python keyword: ``offset=10, k=10`` is page 2, hits 11-20 of
    the search for 20, ranked 11 to 20; a compound tree pages over its top window, so a page
    past it is short or empty). A tree with a ``{{query}}`` placeholder reads its other texts
    as written; one without has ``query``
    replace them (``SearchContext`` gives the rule). ``store``: a PostgreSQL DSN holding the
    named index (default: the embedded store under ``home``). ``filter``: Elasticsearch filter
    JSON (or a parsed ``Filter``) that every hit passes, as if set on the tree's top retriever
    (it holds for every retriever below, with their own filters). ``highlight``: fields to
    highlight in each hit (``Hit.highlight``), as Elasticsearch's ``highlight`` object, a field
    name or a list of them (``semrank.retrieve.parse_highlight``). ``aggs``: Elasticsearch
    aggregations (``{"sources": {"terms": {"field": "source"}}}``) over every document the
    tree matches (``semrank.pipeline._aggs``), in the results' ``aggregations``; ``k=0``
    returns no hits (Elasticsearch's ``size: 0``), only them and ``matched``. ``sort``:
    Elasticsearch's sort by fields (``"date"``, ``[{"price": "desc"}, "_score"]``;
    ``semrank.retrieve._sort``), each hit's ``sort`` values the next page's ``search_after``;
    ``track_scores``: hits sorted by fields keep their scores (``semrank.pipeline._sorting``
    says which trees sort how). ``post_filter``: Elasticsearch filter JSON the hits (and the
    matched count) pass but the aggregations do not; ``collapse``: the best hit per value of
    a field (``"family"`` or ``{"field": "family"}``); ``semrank.pipeline._post`` says how.
    ``min_score``: hits the tree scores below it are left out before the page is cut
    (Elasticsearch's top-level min_score; not with a sort by fields, nor aggregations, which
    read every matched document). ``count_matches``: ``matched`` counts the documents the tree
    matches (what its aggregations read) at any ``k``."""
    flt = optional_filter(filter)
    parsed = None if aggs is None else parse_aggs(aggs)
    if k is not None and k != 0:
        check_k(k)
    require_flags(with_documents=with_documents)
    _check_query(query)
    read, page = _read_with_page(retriever, k, offset)
    tree = _staged(read, post_filter, collapse)
    asked = _sort_asked(sort_request(sort, search_after, track_scores), read)
    check_sorted_page(asked, page.start)
    check_stage_paging(tree, asked)
    run = tree.run if asked is None else sorted_run(tree, asked)
    if min_score is not None:
        run = _scoring_at_least(run, _checked_min_score(min_score, asked, parsed))
    marks = _highlight_asked(highlight, read)
    with_documents = with_documents and read.source  # a body's "_source": false
    check_vectors_follow(tree, query)
    with _opened(index, home, store) as stores:
        if not stores:  # a pattern that matched no index: nothing to find, as Elasticsearch
            none = SeveralIndexes([])
            nothing = None if parsed is None else aggregate(none, parsed, none.matched)
            counted = page.size == 0 or parsed is not None or count_matches
            return SearchResults([], ranked=0, matched=0 if counted else None, aggregations=nothing)
        context = functools.partial(_new_context, stores, query, tree, flt, marks)
        if page.size == 0:  # no hits asked for: only what the documents matched say
            results, ctx = SearchResults([], ranked=0), context()
        else:
            results, ctx = _ranked((tree, run), page, (with_documents, marks), context)
        if asked is not None:
            results = dataclasses.replace(results, scores_tracked=asked.scores_tracked)
        # A collapsed page counts groups: its total is counted, the documents matched.
        if parsed is None and page.size > 0 and not (count_matches or has_collapse(tree)):
            return results
        return _with_matches(results, tree, ctx, parsed, page.end or DEFAULT_K)


def _checked_min_score(min_score: object, asked: SortRequest | None, aggs: Any) -> float:
    """A top-level ``min_score``: a finite number, on a search ranked by its scores."""
    if isinstance(min_score, bool) or not isinstance(min_score, int | float):
        raise InvalidInputError(f"min_score must be a number, got {min_score!r:.40}")
    if not np.isfinite(min_score):
        raise InvalidInputError(f"min_score must be a finite number, got {min_score!r}")
    if asked is not None:
        raise InvalidInputError(
            "min_score with a sort by fields is not supported (the hits are not ranked by "
            "score); leave the sort out, or filter by a field (a range filter) instead"
        )
    if aggs is not None:
        raise InvalidInputError(
            "min_score with aggregations is not supported (they read every document the query "
            "matches, whatever its score); send them in a search without min_score"
        )
    return float(min_score)


def _scoring_at_least(
    run: Callable[[SearchContext, int], Ranking], floor: float
) -> Callable[[SearchContext, int], Ranking]:
    """``run`` without the hits scoring below ``floor`` (a ranking is best first, so the page
    cut after them is that of the hits at or above it)."""

    def kept(ctx: SearchContext, k: int) -> Ranking:
        ranking = run(ctx, k)
        return ranking.take(np.flatnonzero(ranking.scores >= floor))

    return kept


def _check_query(query: object) -> None:
    """A search's query: None (the tree's own texts) or a text to search for."""
    if query is not None and not isinstance(query, str):
        raise InvalidInputError(
            f"query must be a string (the text to search for), got {type(query).__name__} "
            f"({query!r:.60})"
        )
    if query is not None and is_blank(query):
        raise InvalidInputError(f"query is blank ({query!r:.40}); pass the text to search for")
    require_unicode(query, "query")


def _new_context(
    stores: list[Store],
    query: str | None,
    tree: Retriever,
    flt: Filter | None,
    marks: HighlightSpec | None,
) -> SearchContext:
    """A run's own context over ``stores`` (keyed by index where there are several)."""
    return SearchContext(
        stores[0],
        query,
        keep_literals=has_placeholder(tree),
        filter=flt,
        windows={} if marks is not None and marks.semantic else None,
        several=None if len(stores) == 1 else {one.name: one for one in stores},
    )


@contextmanager
def _opened(
    index: str | Store | Sequence[Store], home: str | Path | None, store: str | None
) -> Iterator[list[Store]]:
    """The indexes a search reads: a Store, the Stores of a list, the indexes a name list or
    pattern names (``using_indexes``), or the one index (or alias) named."""
    if isinstance(index, Store):
        yield [index]
    elif isinstance(index, str) and is_multi_target(index):
        with using_indexes(index, home, store=store) as stores:
            yield stores
    elif isinstance(index, str):
        with using_index(index, home, store=store) as opened:
            yield [opened]
    else:
        stores = list(index)
        names = [one.name if isinstance(one, Store) else None for one in stores]
        if None in names or len(set(names)) < len(names):
            raise InvalidInputError(
                'a search of several indexes takes an index name, a list of them ("a,b"), '
                f'a pattern ("logs-*") or a list of opened indexes with distinct names, got '
                f"{names!r:.120}"
            )
        yield stores


def _with_matches(
    results: SearchResults,
    tree: Retriever,
    ctx: SearchContext,
    aggs: Any,
    size: int,
) -> SearchResults:
    """``results`` with how many documents the search matched (summed over its indexes) and
    its aggregations: of its one index, or of the matched documents of all of its indexes
    as one (``SeveralIndexes``: exact, as one index's)."""
    per_index = [ctx] if ctx.several is None else [ctx.on(one) for one in ctx.stores]
    whole = None if ctx.several is None else ctx  # a knn's top k: of them all, merged
    within = [matched_documents(tree, one, size, whole) for one in per_index]
    post = post_filter_of(tree)
    matched, found = _aggregated(per_index, within, aggs, counting=post is None)
    if matched is None:  # the hits' total: those passing the post_filter too, unaggregated
        counted = within if post is None else [passing_both(w, post, ctx.now) for w in within]
        matched = sum(
            one.store.count_matching(resolved(w)) for one, w in zip(per_index, counted, strict=True)
        )
    return dataclasses.replace(
        results,
        warnings=tuple(dict.fromkeys([*results.warnings, *ctx.warnings])),
        aggregations=found,
        matched=matched,
    )


def _aggregated(
    per_index: list[SearchContext], within: list[Filter], aggs: Any, *, counting: bool
) -> tuple[int | None, dict[str, Any] | None]:
    """The aggregations over the documents passing ``within`` (None: not asked) and, where
    ``counting`` and one index is read, their count: asked of the store together, so that
    PostgreSQL sends a long list of matched ids once (None: counted by the caller)."""
    if len(per_index) == 1 and (counting or aggs is not None):
        matched, found = per_index[0].store.count_and_aggregate(within[0], aggs)
        return (matched if counting else None), found
    if aggs is None:
        return None, None
    union = SeveralIndexes(
        [(one.store, resolved(w)) for one, w in zip(per_index, within, strict=True)]
    )
    return None, aggregate(union, aggs, union.matched)


def _ranked(
    searched: tuple[Retriever, Callable[[SearchContext, int], Ranking]],
    page: Page,
    shown: tuple[bool, HighlightSpec | None],
    context: Callable[[], SearchContext],
) -> tuple[SearchResults, SearchContext]:
    """The page's hits of ``tree`` as ``run`` ranks them (``searched``: its own run, or a
    sort's), and the context of the run that gave them (each run has its own: a run after a
    rewrite must not read the documents the last one cached); ``shown``: whether hits carry
    their documents, and what to highlight in them."""
    tree, run = searched
    with_documents, marks = shown
    for _ in range(CONSISTENT_TRIES):
        ctx = context()
        started = [one.generation for one in ctx.stores]
        ranking, skipped = page.of(run(ctx, page.end))
        if not with_documents and marks is None:
            return _results(ctx, ranking, None, offset=skipped), ctx
        ranking, documents = ctx.stored_hits(ranking)
        # A hit rewritten while the search ran was ranked as one version and would be
        # returned as another (its text matched "alpha", the document said "beta"): the
        # search runs again on the new state, a few times at most under constant writes.
        rewritten = _rewritten(ctx, ranking, started)
        if not rewritten:
            break
    else:
        ctx.warnings.append(
            f"{len(rewritten)} hits were rewritten while the search ran, in each of "
            f"{CONSISTENT_TRIES} runs: their documents may be newer than their ranking"
        )
    marked = None if marks is None else _highlights(marks, tree, ctx, ranking, documents)
    shown_documents = documents if with_documents else None
    results = _results(ctx, ranking, shown_documents, offset=skipped, highlights=marked)
    return results, ctx


def _results(
    ctx: SearchContext,
    ranking: Ranking,
    documents: list[dict[str, Any]] | None,
    **shown: Any,
) -> SearchResults:
    """``SearchResults.from_ranking``, each hit naming its index (taken from its key where the
    search read several)."""
    keyed = ctx.several is not None
    index = None if keyed else ctx.store.name
    return SearchResults.from_ranking(
        ranking, documents, ctx.warnings, index=index, keyed=keyed, **shown
    )


def _highlights(
    marks: HighlightSpec,
    tree: Retriever,
    ctx: SearchContext,
    ranking: Ranking,
    documents: list[dict[str, Any]],
) -> list[dict[str, list[str]]]:
    """Each hit's highlights, by its own index's analysis and text fields."""
    ids = [str(i) for i in ranking.ids.tolist()]
    if ctx.several is None:
        return hit_highlights(marks, tree, ctx, ids, documents)
    marked: list[dict[str, list[str]]] = [{} for _ in ids]
    for one in ctx.stores:
        at = [n for n, key in enumerate(ids) if split_key(key)[0] == one.name]
        found = hit_highlights(
            marks, tree, ctx.on(one), [ids[n] for n in at], [documents[n] for n in at]
        )
        for n, fragments in zip(at, found, strict=True):
            marked[n] = fragments
    return marked


def _staged(read: SearchBody, post_filter: FilterSpec | None, collapse: Any) -> Retriever:
    """``read``'s tree with ``search``'s post_filter and collapse, below the cut at its body's
    size (which pages the hits they leave)."""
    if post_filter is None and collapse is None:
        return read.tree
    tree = read.tree
    if read.size is not None and isinstance(tree, Cutoff):
        return Cutoff(
            _staged(read._replace(tree=tree.retriever, size=None), post_filter, collapse), tree.k
        )
    given = {type(node).__name__ for node in tree_nodes(tree) if isinstance(node, HitStage)}
    if given:
        raise InvalidInputError(
            "post_filter and collapse are given both to the search and in its search body; "
            "give them in one of them"
        )
    return with_hit_stages(tree, post_filter, collapse)


def _sort_asked(given: SortRequest | None, read: SearchBody) -> SortRequest | None:
    """``search``'s sort, or that of the ``_search`` body given as its retriever."""
    if given is not None and read.sort is not None:
        raise InvalidInputError(
            "sort is given both to the search and in its search body; give one of them"
        )
    return read.sort if given is None else given


def _highlight_asked(highlight: object, read: SearchBody) -> HighlightSpec | None:
    """``search``'s ``highlight``, or that of the ``_search`` body given as its retriever,
    checked against the tree (a semantic one needs a re-ranker)."""
    if highlight is not None and read.highlight is not None:
        raise InvalidInputError(
            "highlight is given both to the search and in its search body; give one of them"
        )
    marks = read.highlight if highlight is None else parse_highlight(highlight)
    if marks is not None:
        check_highlight(marks, read.tree)
    return marks


class Page(NamedTuple):
    """The hits of a ranking a search returns: ``size`` of them after its first ``start``."""

    start: int
    size: int

    @property
    def end(self) -> int:
        """The hits the search ranks: those the page skips and its own."""
        return self.start + self.size

    def of(self, ranked: Ranking) -> tuple[Ranking, int]:
        """The page's hits of ``ranked`` (ranked down to ``end``), and how many it skipped:
        all of them where the ranking ends sooner."""
        skipped = min(self.start, len(ranked))
        return ranked.take(np.arange(skipped, len(ranked))), skipped


def _read_with_page(
    retriever: RetrieverSpec, k: int | None, offset: int
) -> tuple[SearchBody, Page]:
    """The tree ``search`` reads from ``retriever``, and its page: from ``offset`` or the
    body's ``from`` (``page_start``), ``k`` hits or, without one, ``hits_asked``'s; both
    checked before and after the body is read, as Elasticsearch checks a page."""
    check_page(offset, DEFAULT_K if k is None else k, ("offset", "k"))
    # A shorthand's re-ranker reads every hit down to the page's last, as a search for them.
    read = read_retriever(retriever, size=offset + (DEFAULT_K if k is None else k), offset=offset)
    page = Page(page_start(offset, read.offset), hits_asked(retriever, read, k))
    check_page(page.start, page.size, ("offset", "k"))
    return read, page


def count_documents(index: Store, query: dict[str, Any] | None = None) -> int:
    """How many documents of ``index`` match an Elasticsearch ``_count`` ``query`` (every
    document without one): for a scoring query (``parse_count_query``) those its BM25 search
    returns at any k, scoring above 0 and passing its filter, counted by the store without
    ranking them; for a filter, those passing it."""
    from semrank.pipeline._parse import parse_count_query

    if query is None:
        return len(index)
    read = parse_count_query(query)
    if not isinstance(read, BM25):
        return index.count_matching(read)
    text, fields = _match_text_and_fields(read)
    return index.count_bm25(text, fields=fields, mode=read.mode, filter=read.filter)


def ids_matching_query(index: Store, query: dict[str, Any] | None = None) -> list[str]:
    """The ids of the documents ``count_documents`` counts for ``query`` (every document
    without one): what Elasticsearch's ``_delete_by_query`` and ``_reindex`` act on. A filter's
    in ``iter_documents``' order, a match query's in no particular order."""
    from semrank.pipeline._parse import parse_count_query

    read = MatchAll() if query is None else parse_count_query(query)
    if not isinstance(read, BM25):
        return index.ids_matching(read)
    text, fields = _match_text_and_fields(read)
    return index.ids_bm25(text, fields=fields, mode=read.mode, filter=read.filter)


def _match_text_and_fields(read: BM25) -> tuple[str, Sequence[tuple[str, float]]]:
    if read.text is None:  # no search text beside the query to fill it
        raise InvalidInputError(f"query: a count's match takes its query text, not {PLACEHOLDER}")
    return read.text, read.fields or ((read.field, 1.0),)


def page_start(offset: int, body_from: int, given_as: str = "offset=") -> int:
    """The hits a page skips: ``offset`` (named ``given_as`` where the caller took it), or the
    ``from`` of the ``_search`` body given as the retriever; both must agree where given."""
    if offset and body_from and offset != body_from:
        raise InvalidInputError(
            f"{given_as}{offset} and the search body's from {body_from} both say where the page "
            "starts; give one of them"
        )
    return int(offset or body_from)


def hits_asked(spec: RetrieverSpec, read: SearchBody, k: int | None, asked_as: str = "k") -> int:
    """The hits a search of ``read``'s tree (read from ``spec``) returns: ``k`` (named
    ``asked_as`` where the caller took it), or without one a ``_search`` body's ``size`` (a
    body asking for 20 got 10), else 10, or the top window's hits where fewer (as
    Elasticsearch answers a body without ``size``).

    A ``k`` above the top window of a tree read from JSON (a dict, a file, a ``_search`` body)
    is refused, as Elasticsearch refuses such a ``size`` and the CLI and server do: an rrf or
    linear left without ``rank_window_size`` returns 10 hits, so a saved tree would otherwise
    quietly give 10 of the 50 asked; so is one above the body's own size, which cut the hits
    to it without a word. A tree built in Python returns what it gives, as composed stages
    do."""
    tree, body_size = read.tree, read.size
    if k is None:
        return hits_without_size(tree, DEFAULT_K) if body_size is None else body_size
    if _read_from_json(spec):
        check_window(tree, int(k), asked_as)
    if body_size is not None and int(k) > body_size:
        raise InvalidInputError(
            f"{asked_as} {k} is above the search body's size {body_size}, which would return "
            f"{body_size} hits; give one of them (leave {asked_as} out to take the body's)"
        )
    return int(k)


def _read_from_json(spec: RetrieverSpec) -> bool:
    if isinstance(spec, Mapping | Path):
        return True
    return isinstance(spec, str) and parse_shorthand(spec) is None


def check_vectors_follow(tree: Retriever, query: str | None, *, one_query: bool = True) -> None:
    """A query given replaces the literal texts of a tree without a placeholder, but not a
    knn's literal query_vector: that knn found the same neighbours for every query and fused
    them, unsaid, with hits for the query (an Elasticsearch hybrid example run with a query).
    ``one_query``: a single search, which may also be run without its query. A tree that
    reads no text at all (its queries only filter) would ignore the query just as quietly."""
    if query is None or has_placeholder(tree):
        return
    paths = fixed_vector_paths(tree)
    if paths:
        alone = ", or search without a query to run the tree as written" if one_query else ""
        raise InvalidInputError(
            f"{paths[0]} is a fixed vector, which cannot follow the query given: the query "
            "replaces this tree's texts, but the knn would search the same vector for every "
            'query. Embed the query instead with query_text: "{{query}}" (or '
            f'query_vector_builder.text_embedding.model_text: "{{{{query}}}}"){alone} (with '
            '"{{query}}" in another retriever, the vector is kept as a fixed clause)'
        )
    if _only_filters(tree):
        alone = (
            "search without a query to list the documents passing them, or " if one_query else ""
        )
        raise InvalidInputError(
            "the retriever tree reads no query text (its queries only filter), so the query "
            f"given would change nothing: {alone}add a match or knn search that reads it"
        )


def _only_filters(tree: Retriever) -> bool:
    """Whether every search of ``tree`` is a filter's (semrank's own nodes only: a node of a
    user's own may read the query without naming a text)."""
    nodes = tree_nodes(tree)
    plain = (ConstantScore, Cutoff, RRF, Linear, Weighted)
    return all(isinstance(node, plain) for node in nodes)


def _rewritten(ctx: SearchContext, ranking: Ranking, started: list[int]) -> set[str]:
    """The hits of ``ranking`` written since each index was at generation ``started``."""
    found: set[str] = set()
    ids = [str(i) for i in ranking.ids.tolist()]
    for one, generation in zip(ctx.stores, started, strict=True):
        if one.generation == generation:  # nothing written since the search began: usual
            continue
        if ctx.several is None:
            found |= one.written_since(ids, generation)
            continue
        own = [split_key(key)[1] for key in ids if split_key(key)[0] == one.name]
        found |= {hit_key(one.name, i) for i in one.written_since(own, generation)}
    return found


def search_many(
    index: str | Store,
    queries: Mapping[str, str] | Sequence[str],
    *,
    retriever: RetrieverSpec = None,
    k: int | None = None,
    home: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
    store: str | None = None,
    filter: FilterSpec | None = None,
) -> dict[str, dict[str, float]]:
    """A run ``{query_id: {doc_id: score}}`` for many queries (ids are positions for a list;
    ``store``: a PostgreSQL DSN holding the named index; ``filter``: as ``search``'s, for every
    query)."""
    flt = optional_filter(filter)
    if is_multi_target(index):  # a run's {doc_id: score} would make one id in two indexes one
        raise InvalidInputError(
            f"search_many reads one index, and {index!r:.80} names several: a run keys its hits "
            "by id alone, which two indexes may share; run it on each index, or use search()"
        )
    if not isinstance(queries, Mapping):
        require_collection(
            queries,
            expected="queries must be a list of query texts or a {query_id: text} dict",
            hint='for one query use search(index, "text")',
        )
    if k is not None:
        check_k(k)
    items = _query_items(queries)
    read = read_retriever(retriever, size=DEFAULT_K if k is None else k)
    tree = read.tree
    k = hits_asked(retriever, read, k)
    if items:  # said once, not as the first query's error: every query meets the same tree
        check_vectors_follow(tree, items[0][1], one_query=False)
    run: dict[str, dict[str, float]] = {}
    with using_index(index, home, store=store) as opened:
        for query_id, text in items:
            try:
                results = search(
                    opened,
                    text,
                    retriever=tree,
                    k=k,
                    with_documents=False,
                    filter=flt,
                    offset=read.offset,  # a _search body's from
                )
            except InvalidInputError as exc:
                raise type(exc)(f"query {query_id!r}: {exc}") from None
            run[query_id] = results.as_run()
            if progress is not None:
                progress(1)
    return run


def _query_items(queries: Mapping[str, str] | Sequence[str]) -> list[tuple[str, str]]:
    """(id as text, query) pairs; ids that are equal as text (1 and "1") would share one run."""
    pairs = queries.items() if isinstance(queries, Mapping) else enumerate(queries)
    items: dict[str, str] = {}
    for query_id, text in pairs:
        key = str(query_id)
        if key in items:
            raise InvalidInputError(
                f"query id {query_id!r} is given twice (ids are compared as text); give each "
                "query its own id"
            )
        items[key] = text
    return list(items.items())
