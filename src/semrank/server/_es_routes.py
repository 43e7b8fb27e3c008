"""Elasticsearch's own ``_search`` and ``_count`` routes and cluster info, for code written against
elasticsearch-py (and LangChain's and LlamaIndex's Elasticsearch retrievers).

The search is semrank's index search (``run_search``): only the body's texts (the tree's own,
or the classic query / knn's: no search text beside them) and the answer's shape differ. Every
answer on these paths says ``X-Elastic-Product: Elasticsearch``, without which the client
refuses a 2xx answer, and errors
come in Elasticsearch's shape, with a 400 where semrank's other routes answer 422 (as
Elasticsearch does: elasticsearch-py raises it as ``BadRequestError``; ``_errors``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from starlette.datastructures import MutableHeaders
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from semrank import __version__
from semrank.errors import IndexNotFoundError, InvalidInputError
from semrank.server._edge import UniqueKeysRoute
from semrank.server._errors import is_elasticsearch_path, route_path, search_key_hint
from semrank.server._es_body import (
    SourceShown,
    TotalHits,
    query_flag,
    refuse_asked_extras,
    timeout_ms,
)
from semrank.server._es_router import es_router
from semrank.server._index_routes import (
    IndexNameInPath,
    PreparedSearch,
    on_registry,
    on_targets,
    open_index,
    prepare_search,
    run_prepared,
    say_warnings,
)
from semrank.server.schemas import (
    EsAcknowledged,
    EsAliasesRequest,
    EsCountRequest,
    EsCountResponse,
    EsHighlightedHit,
    EsHighlightedHitWithSource,
    EsHit,
    EsHits,
    EsHitWithSource,
    EsIndexAliases,
    EsInfo,
    EsSearchRequest,
    EsSearchResponse,
    EsTotal,
    EsVersion,
    SearchRequest,
)
from semrank.store._base import DocumentVersion

# The version GET / gives: elasticsearch-py 8 and 9 read none, tools that do want 8 or later.
ES_VERSION = "9.0.0"
PRODUCT_HEADER = (b"x-elastic-product", b"Elasticsearch")

router = es_router()


@router.get("/", response_model=EsInfo, summary="Cluster info, as Elasticsearch's GET /")
async def info() -> EsInfo:
    return EsInfo(
        version=EsVersion(number=ES_VERSION),
        semrank_version=__version__,
        tagline="semrank: Elasticsearch retriever trees over semrank's indexes",
    )


class IndexProbeRoute(UniqueKeysRoute):
    """``HEAD /{index}`` (and ``PUT`` / ``DELETE /{index}``, _es_docs) matches only its own
    method on a path no other route has: a partial match (another method) would make every
    one-segment path a 405 instead of the 404 that names the routes, and HEAD /health or
    DELETE /rerank stay what they were (their GET, their 405)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope.get("method") not in (self.methods or ()) or _another_route_has(scope, self):
            return Match.NONE, {}
        return super().matches(scope)


def _another_route_has(scope: Scope, probe: IndexProbeRoute) -> bool:
    state = scope["app"].state
    if scope.get("method") == "GET" and route_path(scope) in getattr(state, "page_paths", ()):
        return True  # FastAPI's own pages (GET /docs), not an index's
    routes = getattr(state, "declared_routes", ())
    return any(route is not probe and route.matches(scope)[0] != Match.NONE for route in routes)


async def index_exists(index: IndexNameInPath, request: Request) -> Response:
    """elasticsearch-py's ``es.indices.exists(index=...)``: 200 when the index is there, a
    404 when not (which the client reads as false, not as an error)."""
    await open_index(request, index)
    return Response(status_code=200)


router.add_api_route(
    "/{index}",
    index_exists,
    methods=["HEAD"],
    route_class_override=IndexProbeRoute,
    summary="Whether an index exists, as Elasticsearch's HEAD /{index}",
    response_class=Response,
)

SEARCH_SUMMARY = "Search with a retriever tree, in Elasticsearch's _search shapes"


@router.get("/{index}/_search", response_model=EsSearchResponse, summary=SEARCH_SUMMARY)
@router.post("/{index}/_search", response_model=EsSearchResponse, summary=SEARCH_SUMMARY)
async def es_search(
    index: IndexNameInPath,
    request: Request,
    response: Response,
    body: EsSearchRequest | None = None,
) -> Any:
    refuse_query_string_options(request)
    targets = target_options(request)
    body = body or EsSearchRequest.model_validate({})  # elasticsearch-py sends none for none
    if "scroll" in request.query_params or body.pit is not None:
        from semrank.server._es_scroll import paged_search

        return await paged_search(request.path_params.get("index"), request, body)
    read = read_es_search(request, body, own_query_string=True)
    answer, warnings = await run_es_search(request, index, read, **targets)
    say_es_warnings(response, warnings)
    return answer


@dataclass(frozen=True, kw_only=True)
class HitVersions:
    """What each hit shows of its document's version: ``version`` (``_version``) and
    ``seq_no`` (``_seq_no`` and ``_primary_term``, Elasticsearch's seq_no_primary_term)."""

    version: bool = False
    seq_no: bool = False

    @classmethod
    def asked(cls, body: EsSearchRequest | None, request: Request | None = None) -> HitVersions:
        """The body's flags, each overridden by the query string's (as Elasticsearch reads
        them) where ``request`` is the search's own."""
        given: dict[str, bool | None] = {"version": None, "seq_no_primary_term": None}
        if request is not None:
            given = {name: query_flag(request, name) for name in given}
        version, seq_no = (
            bool(getattr(body, name, None)) if flag is None else flag
            for name, flag in given.items()
        )
        return cls(version=version, seq_no=seq_no)

    def fields(self, version: DocumentVersion | None) -> dict[str, int]:
        """A hit's fields of ``version`` (none where it has none: deleted since)."""
        shown: dict[str, int] = {}
        if version is not None and self.version:
            shown["version"] = version.version
        if version is not None and self.seq_no:
            shown |= {"seq_no": version.seq_no, "primary_term": version.primary_term}
        return shown


@dataclass(frozen=True, kw_only=True)
class EsSearch:
    """A ``_search`` body read and checked (``read_es_search``): the search to run, the hits
    it asked for and what its answer shows of them."""

    search: PreparedSearch
    size: int
    source: SourceShown
    total: TotalHits
    shown: HitVersions = HitVersions()
    typed_keys: bool = False  # each aggregation named type#name (the query string's typed_keys)


def read_es_search(
    request: Request, body: EsSearchRequest | None, *, own_query_string: bool = False
) -> EsSearch:
    """A ``_search`` body as semrank's search (``prepare_search``), refused before any index is
    opened where it is bad (the same for every index). ``own_query_string``: the request is
    this search's own (``_search``'s, not ``_msearch``'s), whose query string overrides the
    body's ``_source``, versions, ``track_total_hits`` and ``timeout``; ``typed_keys`` and
    ``rest_total_hits_as_int`` hold for every search of the request."""
    body = body or EsSearchRequest.model_validate({})  # elasticsearch-py sends none for none
    refuse_asked_extras(body)
    own = request if own_query_string else None
    shown, source = HitVersions.asked(body, own), SourceShown.asked(body, own)
    total = TotalHits.asked(body, own)
    if not own_query_string:
        as_int = bool(query_flag(request, "rest_total_hits_as_int"))  # _msearch's
        total = dataclasses.replace(total, as_int=as_int)
    retriever = own_texts(search_spec(body), body.size)
    size = _hits_asked(body, retriever)
    # The page's from is in the retriever's body (search_spec), which the pipeline reads.
    search = SearchRequest.model_validate(
        {
            "retriever": retriever,
            "size": size,
            "return_documents": source.reads_documents,
            "highlight": body.highlight,
            "aggs": _aggs_of(body),
        }
    )
    prepared = dataclasses.replace(
        prepare_search(request, search),
        versions=shown.version or shown.seq_no,
        min_score=body.min_score,
        # A total counted at any k, but for min_score (the hits ranked above it are counted).
        count_matches=total.track is not None and body.min_score is None,
        timeout_ms=timeout_ms(body, request, query_string=own_query_string),
    )
    typed = bool(query_flag(request, "typed_keys"))
    return EsSearch(
        search=prepared, size=size, source=source, shown=shown, total=total, typed_keys=typed
    )


async def run_es_search(
    request: Request, index: str, read: EsSearch, **targets: bool
) -> tuple[EsSearchResponse, list[str]]:
    """The search ``read`` on ``index`` (``targets``: ``target_options``'), in
    Elasticsearch's shape, and its warnings."""
    started = time.perf_counter()
    results, warnings = await run_prepared(request, index, read.search, **targets)
    took_ms = round((time.perf_counter() - started) * 1000)
    fields = [read.source.hit_fields(hit.document) for hit in results.hits]
    shown_hits = [
        dataclasses.replace(hit, document=read.source.source(hit.document)) for hit in results.hits
    ]
    results = dataclasses.replace(results, hits=shown_hits)
    # Each hit's _index names the index that holds it (Hit.index), never an alias of it (as
    # Elasticsearch's do): a client acting on a hit by its _index must reach that index after a
    # swap too.
    answer = es_search_response(index, results, took_ms=took_ms, size=read.size, read=read)
    for hit, found in zip(answer.hits.hits, fields, strict=True):
        if found is not None:  # the body's fields, beside a collapse's value of its field
            hit.fields = {**(hit.fields or {}), **found}
    if read.typed_keys and answer.aggregations is not None:
        from semrank.retrieve import typed_keys

        answer.aggregations = typed_keys(read.search.aggs, answer.aggregations)
    return answer, warnings


COUNT_SUMMARY = "Count the documents matching a query, as Elasticsearch's _count"


@router.get("/{index}/_count", response_model=EsCountResponse, summary=COUNT_SUMMARY)
@router.post("/{index}/_count", response_model=EsCountResponse, summary=COUNT_SUMMARY)
async def es_count(
    index: IndexNameInPath, request: Request, body: EsCountRequest | None = None
) -> Any:
    """elasticsearch-py's ``es.count(index=..., query=...)``: a match query counts the
    documents sharing a term with it (BM25 above 0) and passing its filter, as a search for
    every hit would return them; a filter query those passing it; no query every document."""
    from semrank.pipeline import count_documents, parse_count_query

    refuse_query_string_options(request, COUNT_PARAMS, hint=_count_param_hint)
    query = None if body is None else body.query
    if query is not None:
        parse_count_query(query)  # a bad query is refused before the index is opened
    targets = target_options(request)

    def count(stores: list[Any]) -> int:  # several indexes: the sum of their counts
        return sum(count_documents(store, query) for store in stores)

    return EsCountResponse(count=await on_targets(request, index, count, **targets))


async def search_every_index(
    request: Request, response: Response, body: EsSearchRequest | None = None
) -> Any:
    """elasticsearch-py's ``es.search()`` without ``index=``: every index, as ``/_all``."""
    return await es_search("_all", request, response, body)


async def count_every_index(request: Request, body: EsCountRequest | None = None) -> Any:
    """elasticsearch-py's ``es.count()`` without ``index=``: every index, as ``/_all``."""
    return await es_count("_all", request, body)


for _path, _route, _model, _summary in (
    ("/_search", search_every_index, EsSearchResponse, SEARCH_SUMMARY),
    ("/_count", count_every_index, EsCountResponse, COUNT_SUMMARY),
):
    for _method in ("GET", "POST"):  # a route each, as the decorated ones: one operation id
        router.add_api_route(
            _path,
            _route,
            methods=[_method],
            response_model=_model,
            summary=f"{_summary}, over every index",
            operation_id=f"{_route.__name__}_{_method.lower()}",
        )


def target_options(request: Request) -> dict[str, bool]:
    """Elasticsearch's ``ignore_unavailable`` (a named index that is not there is left out,
    not a 404) and ``allow_no_indices`` (false: a pattern matching nothing is a 404), by their
    defaults where not given."""
    options = {}
    for name in ("ignore_unavailable", "allow_no_indices"):
        given = query_flag(request, name)
        if given is not None:
            options[name] = given
    return options


def es_search_response(
    index: str, results: Any, *, took_ms: int, size: int, read: EsSearch
) -> EsSearchResponse:
    """semrank's search results in Elasticsearch's shape (the one place that maps them), each
    hit's _index its own (``index`` where a hit names none). The total counts the documents
    matched where the search counted them (``track_total_hits``, aggregations, size 0), else
    the hits ranked down to this page's last (those its from skipped and its own; on page 1,
    the hits returned): "gte" when there may be more (a full page)."""
    scored = results.scores_tracked  # sorted by fields: no _score, as Elasticsearch answers
    hits = [_es_hit(hit.index or index, hit, scored, read.shown) for hit in results.hits]
    ranked = len(hits) if results.ranked is None else results.ranked
    total = EsTotal(value=ranked, relation="gte" if len(hits) >= size else "eq")
    if results.matched is not None:  # counted where the search aggregated (or asked size 0)
        total = EsTotal(value=results.matched, relation="eq")
    best = max((hit.score for hit in results.hits), default=None) if scored else None
    return EsSearchResponse(
        took=took_ms,
        hits=EsHits(total=read.total.shaped(total), max_score=best, hits=hits),
        aggregations=results.aggregations,
        scroll_id=None,
        pit_id=None,
    )


def _aggs_of(body: EsSearchRequest) -> dict[str, Any] | None:
    """The body's ``aggs``, or ``aggregations`` (Elasticsearch's two names for them)."""
    if body.aggs is not None and body.aggregations is not None:
        raise InvalidInputError(
            "the search body gives both aggs and aggregations (two names for the same "
            "thing); give one of them"
        )
    return body.aggs if body.aggs is not None else body.aggregations


def _es_hit(index: str, hit: Any, scored: bool = True, shown: HitVersions = HitVersions()) -> EsHit:
    """One hit in Elasticsearch's shape: ``_source`` where it has its document, ``highlight``
    where a field had a fragment, ``sort`` where the search sorted by fields (``_score`` null
    there unless ``scored``), its version where ``shown`` asks."""
    base = {"index": index, "id": hit.id, "score": hit.score if scored else None, "sort": hit.sort}
    base |= shown.fields(hit.version)
    if hit.fields is not None:  # collapsed: its value of the field, as Elasticsearch's
        base["fields"] = hit.fields
    if hit.highlight:
        if hit.document is not None:
            return EsHighlightedHitWithSource(**base, source=hit.document, highlight=hit.highlight)
        return EsHighlightedHit(**base, highlight=hit.highlight)
    if hit.document is not None:
        return EsHitWithSource(**base, source=hit.document)
    return EsHit(**base)


# Query-string options of Elasticsearch's _search taken: those that change nothing semrank
# answers (no shards, no closed or hidden indexes), typed_keys (read by read_es_search),
# filter_path (the whole answer holds the filtered one), ignore_unavailable and
# allow_no_indices (read by target_options), the _source filters, applied to the answer
# (elasticsearch-py's vector store helper, which LangChain's and LlamaIndex's stores use, sends
# _source_includes with every search), and track_total_hits, rest_total_hits_as_int and
# timeout (_es_body).
TAKEN_SEARCH_PARAMS = frozenset(
    {
        "_source_includes", "_source_excludes", "filter_path", "pretty", "human", "error_trace",
        "typed_keys", "request_cache", "preference", "routing", "allow_no_indices",
        "ignore_unavailable", "expand_wildcards",
        "allow_partial_search_results", "ccs_minimize_roundtrips", "batched_reduce_size",
        "max_concurrent_shard_requests", "pre_filter_shard_size", "search_type",
        "ignore_throttled", "include_named_queries_score", "scroll", "version",
        "seq_no_primary_term", "track_total_hits", "rest_total_hits_as_int", "timeout",
        "_source",
    }
)  # fmt: skip


# The query-string options of Elasticsearch's _count taken: those that change nothing semrank
# answers, and ignore_unavailable and allow_no_indices (read by target_options).
COUNT_PARAMS = frozenset(
    {
        "filter_path", "pretty", "human", "error_trace", "preference", "routing",
        "allow_no_indices", "ignore_unavailable", "expand_wildcards", "ignore_throttled",
    }
)  # fmt: skip


def refuse_query_string_options(
    request: Request,
    taken: frozenset[str] = TAKEN_SEARCH_PARAMS,
    *,
    hint: Callable[[str], str] | None = None,
) -> None:
    """Elasticsearch takes most search options in the query string too (elasticsearch-py puts
    ``sort="title:asc"`` and ``q`` there): ignored, they answered another search than the one
    asked (ten hits for ``?size=1``, the first page again for ``?from=``),
    so each is refused, as in the body, saying what to send instead (``taken``: those let
    be; ``hint``: what to send instead of each, default _search's)."""
    for name in request.query_params:
        if name in taken:
            continue
        said = (hint or _search_param_hint)(name)
        raise InvalidInputError(f"query-string parameter {name!r:.80}: {said}")


def _search_param_hint(name: str) -> str:
    if name in ("size", "from"):
        return f'send it in the JSON body ("{name}": ...), which is where it is read'
    return search_key_hint("query" if name == "q" else name, "elasticsearch")


# A _count body takes a query alone: _search's hints (size in the body, a retriever's
# min_score) would send the request on to another refusal.
COUNT_KEYS_HINT = (
    "not supported by semrank's Elasticsearch _count, whose JSON body takes a query alone "
    '(e.g. "query": {"match": {"text": "..."}}, or a filter such as {"term": {...}}) and '
    "counts every document it matches"
)


def _count_param_hint(name: str) -> str:
    return search_key_hint("query", "elasticsearch") if name == "q" else COUNT_KEYS_HINT


# The classic body's searches (before retrievers), which the pipeline reads as a tree.
CLASSIC_FIELDS = ("query", "knn", "rank", "sub_searches")
# A sort and its paging, which the pipeline's parser reads from the body as it is sent.
SORT_FIELDS = ("sort", "search_after", "track_scores")
# Over the hits, read by the parser from the body as it is sent (semrank.pipeline._post).
HIT_STAGE_FIELDS = ("post_filter", "collapse")


def search_spec(body: EsSearchRequest) -> dict[str, Any] | str | None:
    """The retriever, or the classic body (with its size, which its windows follow) for the
    pipeline's parser to read as the tree that answers it; a body with both is refused
    there, as Elasticsearch refuses it."""
    classic = {
        name: getattr(body, name) for name in CLASSIC_FIELDS if name in body.model_fields_set
    }
    if not classic and body.retriever is None:
        classic["query"] = {"match_all": {}}  # Elasticsearch's search without a query
    # The page's start and sort, which the parser reads from the body as from a library's.
    paged = {"from": body.from_} if body.from_ else {}
    paged.update(
        {
            name: getattr(body, name)
            for name in (*SORT_FIELDS, *HIT_STAGE_FIELDS)
            if name in body.model_fields_set
        }
    )
    if not classic:
        if paged and isinstance(body.retriever, dict):
            return {"retriever": body.retriever, **paged}
        return body.retriever
    classic.update(paged)
    if "size" in body.model_fields_set and body.size > 0:  # size 0 ranks nothing: no window
        classic["size"] = body.size
    if "retriever" in body.model_fields_set:
        classic["retriever"] = body.retriever
    return classic


def own_texts(retriever: dict[str, Any] | str | None, size: int) -> dict[str, Any]:
    """The tree, which must carry its texts: the body has no query for ``{{query}}``, a text
    left out or a shorthand to take (semrank's own search route has)."""
    from semrank.pipeline import as_retriever, has_placeholder

    own_route = "POST /v1/indexes/{name}/search, which takes a query beside the tree"
    assert retriever is not None  # a body without one is match_all (search_spec)
    if isinstance(retriever, str):
        raise InvalidInputError(
            f"retriever {retriever!r:.80} is a string; an Elasticsearch _search body takes a "
            f"retriever JSON object (semrank's shorthands are for {own_route})"
        )
    if has_placeholder(as_retriever(retriever, size=size)):
        raise InvalidInputError(
            "the retriever leaves a query text out or holds {{query}}, which an Elasticsearch "
            "_search body has no query to fill: write the search text into the retriever "
            "(match's text, knn's query_text, text_similarity_reranker's inference_text), or "
            f"use {own_route}"
        )
    return retriever


def _hits_asked(body: EsSearchRequest, retriever: dict[str, Any]) -> int:
    """The body's ``size``; without one, 10 or the top retriever's smaller rank_window_size.
    Elasticsearch refuses a window below a size the body gives, but a body without a size gets
    the window's hits (an example with rank_window_size 5 and no size was refused here)."""
    from semrank.pipeline import as_retriever, hits_without_size

    # Settled here, before run_search (whose hits_asked checks it against the tree), because
    # the answer's hits.total relation needs the size this route asked for.
    if "size" in body.model_fields_set:
        return body.size
    return hits_without_size(as_retriever(retriever, size=body.size), body.size)


def say_es_warnings(response: Response, warnings: list[str]) -> None:
    """``warnings`` in semrank's headers (``say_warnings``) and as Warning headers, which
    elasticsearch-py raises as ``ElasticsearchWarning``."""
    say_warnings(response, warnings)
    for warning in warnings:
        response.headers.append("warning", _warning_header(warning))


def _warning_header(warning: str) -> str:
    """An RFC 7234 Warning, as Elasticsearch sends its own: code 299, the text quoted."""
    text = warning.encode("ascii", "backslashreplace").decode()
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 semrank-{__version__} "{escaped}"'


# --- aliases ------------------------------------------------------------------------------------
ALIASES_SUMMARY = "Add and remove index aliases atomically, as Elasticsearch's POST /_aliases"


@router.post("/_aliases", response_model=EsAcknowledged, summary=ALIASES_SUMMARY)
async def update_aliases(body: EsAliasesRequest, request: Request) -> EsAcknowledged:
    """A swap (remove from the old index, add to the new) happens whole or not at all; an alias
    names one index in semrank, so an add to another index needs the remove in the same list."""
    from semrank.store import update_aliases as update

    await on_registry(request, functools.partial(update, body.actions))
    return EsAcknowledged()


@router.put("/{index}/_alias/{name}", response_model=EsAcknowledged, summary="Add an alias")
@router.post("/{index}/_alias/{name}", response_model=EsAcknowledged, summary="Add an alias")
async def put_alias(index: IndexNameInPath, name: str, request: Request) -> EsAcknowledged:
    from semrank.store import update_aliases as update

    actions = [{"add": {"index": index, "alias": name}}]
    await on_registry(request, functools.partial(update, actions))
    return EsAcknowledged()


@router.delete("/{index}/_alias/{name}", response_model=EsAcknowledged, summary="Remove an alias")
async def delete_alias(index: IndexNameInPath, name: str, request: Request) -> EsAcknowledged:
    from semrank.store import update_aliases as update

    actions = [{"remove": {"index": index, "alias": name}}]
    await on_registry(request, functools.partial(update, actions))
    return EsAcknowledged()


GET_ALIASES = "Indexes and their aliases, as Elasticsearch's GET /_alias"
AliasesAnswer = dict[str, EsIndexAliases]


@router.get("/_alias", response_model=AliasesAnswer, summary=GET_ALIASES)
@router.get("/_aliases", response_model=AliasesAnswer, summary=GET_ALIASES)
async def get_aliases(request: Request) -> AliasesAnswer:
    return await _aliases_answer(request)


@router.get("/_alias/{name}", response_model=AliasesAnswer, summary="The index of an alias")
async def get_alias(name: str, request: Request) -> AliasesAnswer:
    """``es.indices.get_alias(name=...)``; ``exists_alias`` sends HEAD, answered as GET
    without the body: 404 where there is no such alias."""
    return await _aliases_answer(request, alias=name)


@router.get("/{index}/_alias", response_model=AliasesAnswer, summary="An index's aliases")
async def get_index_aliases(index: IndexNameInPath, request: Request) -> AliasesAnswer:
    return await _aliases_answer(request, index=index)


@router.get("/{index}/_alias/{name}", response_model=AliasesAnswer, summary="An index's alias")
async def get_index_alias(index: IndexNameInPath, name: str, request: Request) -> AliasesAnswer:
    return await _aliases_answer(request, index=index, alias=name)


async def _aliases_answer(
    request: Request, *, index: str | None = None, alias: str | None = None
) -> AliasesAnswer:
    """``{index: {"aliases": {alias: {}}}}``: every index (with none where it has none), or
    ``index`` (an alias of it names it too), or those ``alias`` names."""
    from semrank.store import list_aliases, list_indexes, resolve_index_name
    from semrank.store._aliases import AliasNotFoundError

    def read(home: Any, store: Any) -> AliasesAnswer:
        named = list_aliases(home, store=store)
        indexes = list_indexes(home, store=store)
        if index is not None:
            wanted = resolve_index_name(index, home, store=store)
            if wanted not in indexes:
                raise IndexNotFoundError(f"index {index!r} not found; GET /_alias lists them")
            indexes = [wanted]
        answer = {
            name: EsIndexAliases(
                aliases={a: {} for a, of in named.items() if of == name and alias in (None, a)}
            )
            for name in indexes
        }
        if alias is None:
            return answer
        found = {name: aliases for name, aliases in answer.items() if aliases.aliases}
        if not found:
            raise AliasNotFoundError(f"alias [{alias}] missing")
        return found

    return await on_registry(request, read)


class ElasticsearchAnswers:
    """Every answer on the Elasticsearch paths carries the product header, and semrank's error
    bodies there (the routes' and the edge's: a body over the size limit, a bug) become
    Elasticsearch's ``{"error": {"root_cause", "type", "reason"}, "status"}``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope) if scope["type"] == "http" else ""
        if scope["type"] != "http" or not is_elasticsearch_path(path, scope["method"], scope):
            await self.app(scope, receive, send)
            return
        held: list[Message] = []  # an error's start and body, until its last part

        async def send_as_elasticsearch(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), PRODUCT_HEADER]}
                if message["status"] >= 400:
                    held.append(message)
                    return
            elif held:
                held.append(message)
                if message.get("more_body", False):
                    return
                for reshaped in _as_elasticsearch_error(held):
                    await send(reshaped)
                return
            await send(message)

        await self.app(scope, receive, send_as_elasticsearch)


def _as_elasticsearch_error(messages: list[Message]) -> list[Message]:
    """An error answer (its start, then body parts) with semrank's body in Elasticsearch's
    shape; any other body (a HEAD's, empty) as it was."""
    start, parts = messages[0], messages[1:]
    try:
        sent = json.loads(b"".join(part.get("body", b"") for part in parts))
    except ValueError:
        return messages
    if not isinstance(sent, dict) or not isinstance(sent.get("error"), str):
        return messages
    body = {"error": es_error(str(sent.get("error_type", "error")), sent["error"])}
    body["status"] = start["status"]
    shaped = json.dumps(body).encode()
    headers = MutableHeaders(raw=list(start["headers"]))
    headers["content-length"] = str(len(shaped))
    return [{**start, "headers": headers.raw}, {"type": "http.response.body", "body": shaped}]


def es_error(error_type: str, reason: str) -> dict[str, Any]:
    """An error as Elasticsearch's bodies and items hold it: its cause, as the root cause too."""
    cause = {"type": error_type, "reason": reason}
    return {"root_cause": [cause], **cause}
