"""Elasticsearch's scroll and point-in-time reads (``?scroll=``, ``/_search/scroll``,
``/_pit``, a ``_search`` body's ``pit``), so that ``elasticsearch.helpers.scan`` and reindex
scripts export an index.

The first request lists every hit of the query (``semrank.pipeline.list_hits``: keys and
scores, in the order its search ranks them, or the store's for ``sort: _doc``, or a sorted
search's for a sort by fields, each hit's sort values with it); each page then reads its
documents by id. A document deleted since the listing is skipped (a page reads on
until it is full), one written since is read as it is now, one added since is not listed: a
listing, not a snapshot of the documents. Contexts live in this process (``_search_contexts``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, NoReturn

from fastapi import Request
from fastapi.responses import JSONResponse

from semrank.errors import IndexNotFoundError, InvalidInputError, TooManySearchContextsError
from semrank.pipeline import MAX_RESULT_WINDOW, HitList, SortRequest, sort_request
from semrank.server._errors import search_key_hint
from semrank.server._es_body import (
    SourceShown,
    TotalHits,
    query_flag,
    query_list,
    refuse_asked_extras,
    timeout_ms,
)
from semrank.server._es_router import es_router
from semrank.server._es_routes import (
    HitVersions,
    own_texts,
    refuse_query_string_options,
    search_spec,
    target_options,
)
from semrank.server._index_routes import (
    _bind_models,
    _check_reranked_documents,
    on_index,
    on_targets,
)
from semrank.server._search_contexts import SearchContexts, keep_alive_seconds
from semrank.server.schemas import (
    EsClearScrollRequest,
    EsClosePitRequest,
    EsFreed,
    EsHit,
    EsHits,
    EsHitWithSource,
    EsPitResponse,
    EsScrollRequest,
    EsSearchRequest,
    EsSearchResponse,
    EsTotal,
)
from semrank.store._base import VersionedDocument

router = es_router()
STORE_ORDER = frozenset({"_doc", "_shard_doc"})
# The keys a listing is made without: the page's (size, from), the paging's, the answer's.
PAGING_KEYS = frozenset(
    {"size", "from", "sort", "search_after", "pit", "_source", "version", "seq_no_primary_term",
     "fields", "stored_fields", "track_total_hits", "timeout", "explain", "profile"}
)  # fmt: skip


@dataclass(frozen=True)
class Shown:
    """What each hit of a page shows: its _source (filtered) and fields, its sort values; and
    how a page gives hits.total."""

    source: SourceShown
    sort: tuple[str, ...]  # what each of a hit's sort values is (ListingSort.shown)
    versions: HitVersions  # each hit's version, read with its document
    total: TotalHits


@dataclass
class ScrollState:
    hits: HitList
    size: int
    shown: Shown
    next: int = 0  # the position of the next page's first hit
    # One page at a time: two requests on one id would both start at ``next`` (the same hits
    # twice); the second now answers the page after the first's.
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class PitState:
    indexes: tuple[str, ...]
    listings: dict[str, HitList]


def contexts(request: Request) -> SearchContexts:
    found: SearchContexts = request.app.state.search_contexts
    return found


# --- the first request: a listing, and its first page ----------------------------------------
async def paged_search(
    index: str | None, request: Request, body: EsSearchRequest
) -> EsSearchResponse:
    """A ``_search`` with ``?scroll=`` or a ``pit`` (``index``: None where the path names
    none); refused where it has neither (a sort or search_after alone)."""
    scroll = request.query_params.get("scroll")
    if body.pit is not None:
        if index is not None:
            raise InvalidInputError(
                "[indices] cannot be used with point in time: search POST /_search with the "
                "pit, which names the indexes it was opened on"
            )
        if scroll is not None:
            raise InvalidInputError("using [point in time] is not allowed in a scroll context")
        return await _pit_search(request, body)
    if scroll is None:
        key = "sort" if body.sort is not None else "search_after"
        raise InvalidInputError(f"{key}: {search_key_hint(key, 'elasticsearch')}")
    return await _start_scroll(index or "_all", request, body, keep_alive_seconds(scroll, "scroll"))


async def _start_scroll(
    index: str, request: Request, body: EsSearchRequest, keep_alive_s: float
) -> EsSearchResponse:
    started = time.perf_counter()
    for refused, said in (
        (body.from_ > 0, "using [from] is not allowed in a scroll context"),
        (
            body.size == 0 and "size" in body.model_fields_set,
            "[size] cannot be [0] in a scroll context",
        ),
        (body.search_after is not None, "[search_after] cannot be used in a scroll context"),
        (body.aggs is not None or body.aggregations is not None, _NO_AGGS),
        (body.highlight is not None, "highlight is not supported in a scroll context"),
    ):
        if refused:
            raise InvalidInputError(said)
    sort = _listing_sort(body)
    shown = _shown(request, body, sort.shown)
    contexts(request).check_another()  # before the listing, which may be long
    hits = await _listing(request, index, body, sort, **target_options(request))
    state = ScrollState(hits, body.size, shown)
    scroll_id = contexts(request).open(state, keep_alive_s, lambda: len(state.hits))
    return await _scroll_page(request, state, scroll_id, started)


_NO_AGGS = (
    "aggregations are not supported in a scroll context; ask for them in a search without "
    'scroll ("size": 0)'
)


async def _listing(
    request: Request, index: str, body: EsSearchRequest, sort: ListingSort, **targets: bool
) -> HitList:
    """Every hit of the body's query on ``index``, within the hits contexts may still hold."""
    from semrank.pipeline import list_hits, read_retriever

    service = request.app.state.service
    spec = _listing_spec(body)
    read = read_retriever(spec, size=body.size, window_limit=service.config.max_documents)
    tree = _bind_models(read.tree, service)
    _check_reranked_documents(tree, service.config.max_documents)
    room = contexts(request).room()

    def work(stores: list[Any]) -> HitList | None:
        if not stores:
            return HitList([])
        return list_hits(
            stores,
            tree,
            limit=room,
            size=body.size,
            store_order=sort.store_order,
            sort=sort.by_fields,
        )

    deadline = timeout_ms(body, request, query_string=True)
    listed = await on_targets(request, index, work, timeout_ms=deadline, **targets)
    if listed is None:
        _over_limit(request, room)
    return listed


def _over_limit(request: Request, room: int) -> NoReturn:
    most = contexts(request).max_hits
    if room < most:  # others hold the rest
        raise TooManySearchContextsError(
            f"the search lists more hits than the {room:,} the open scroll and point-in-time "
            f"contexts leave of this server's {most:,} (--max-search-context-hits); clear "
            "them (DELETE /_search/scroll, DELETE /_pit) or let them expire"
        )
    raise InvalidInputError(
        f"the search matches more than {most:,} hits, the most a scroll or point in time "
        "holds on this server (--max-search-context-hits); narrow the query (e.g. a range "
        "filter) and scroll each part, or raise the limit"
    )


def _listing_spec(body: EsSearchRequest) -> dict[str, Any]:
    """The body's search without its page, sort and _source: the tree a listing ranks."""
    kept = body.model_dump(by_alias=True, exclude_unset=True, exclude=set())
    query = EsSearchRequest.model_validate({k: v for k, v in kept.items() if k not in PAGING_KEYS})
    return own_texts(search_spec(query), body.size)


# What each of a hit's sort values is: its position in the listing (``_doc`` / ``_shard_doc``
# in the store's order, ``_shard_doc`` beside fields), its score, or the next of the values a
# sort by fields listed for it.
POSITION, SCORE, LISTED = "position", "score", "listed"


@dataclass(frozen=True)
class ListingSort:
    """How a scroll or point in time orders its listing (by score, the store's order, or
    fields: ``by_fields``, a sorted search's) and what each hit's ``sort`` shows."""

    shown: tuple[str, ...]  # POSITION, SCORE or LISTED per value (none: no "sort")
    store_order: bool = False
    by_fields: SortRequest | None = None

    @property
    def listing_key(self) -> Any:
        """What tells a point in time's listings of one query apart."""
        if self.by_fields is None:
            return [self.store_order]
        return [self.by_fields.sort.to_dict(), self.by_fields.scores_tracked]

    def with_shard_doc(self) -> ListingSort:
        """A point in time's: the position ends the values (Elasticsearch's implicit
        ``_shard_doc`` tie-breaker) unless the sort gives it."""
        if POSITION in self.shown:
            return self
        return dataclasses.replace(self, shown=(*self.shown, POSITION))


def _listing_sort(body: EsSearchRequest) -> ListingSort:
    """The body's sort: ``_score`` (descending) or ``_doc`` / ``_shard_doc`` (ascending, the
    store's order) alone, else a sort by fields as a sorted search reads it, ``_shard_doc``
    among them showing the hit's position."""
    given = body.sort
    items = [] if given is None else given if isinstance(given, list) else [given]
    named = [(_sort_item(item), item) for item in items]
    names = [name for (name, _), _ in named]
    if all(name in STORE_ORDER | {"_score"} for name in names) or names[0] in STORE_ORDER:
        for name, order in (parsed for parsed, _ in named):
            _check_own_order(name, order)
        shown = tuple(SCORE if name == "_score" else POSITION for name in names)
        return ListingSort(shown, store_order=bool(names) and names[0] in STORE_ORDER)
    for name, order in (parsed for parsed, _ in named):
        if name == "_shard_doc":
            _check_own_order(name, order)
    criteria = [item for (name, _), item in named if name != "_shard_doc"]
    by_fields = sort_request(criteria, None, bool(body.track_scores))
    shown = tuple(POSITION if name == "_shard_doc" else LISTED for name in names)
    return ListingSort(shown, by_fields=by_fields)


def _check_own_order(name: str, order: str | None) -> None:
    """``_score`` (descending) or the store's order (ascending), alone or before fields."""
    if name not in STORE_ORDER | {"_score"}:
        raise InvalidInputError(
            f"sort by {name!r:.60} after _doc / _shard_doc: the store's order leaves no ties "
            "for a field to break; sort by the field first (e.g. "
            '[{"date": "desc"}, {"_shard_doc": "asc"}])'
        )
    wanted = "desc" if name == "_score" else "asc"
    if order not in (None, wanted):
        raise InvalidInputError(f"sort by {name} {order}: only {wanted} is supported")


def _sort_item(item: Any) -> tuple[str, str | None]:
    if isinstance(item, str):
        name, _, order = item.partition(":")
        return name, order or None
    if isinstance(item, dict) and len(item) == 1:
        ((key, spec),) = item.items()
        given = spec.get("order") if isinstance(spec, dict) else spec
        return str(key), None if given is None else str(given)
    raise InvalidInputError(f"sort item {item!r:.80}: give a name or {{name: order}}")


def _shown(request: Request, body: EsSearchRequest, sort: tuple[str, ...]) -> Shown:
    refuse_asked_extras(body)
    if body.min_score is not None:
        raise InvalidInputError(
            "min_score is not supported in a scroll or point in time (their listing holds "
            "every hit of the query); search without them, or narrow the query with a filter"
        )
    versions = HitVersions.asked(body, request)
    total = TotalHits.asked(body, request)
    return Shown(SourceShown.asked(body, request), sort, versions, total)


# --- pages -----------------------------------------------------------------------------------
async def _scroll_page(
    request: Request, state: ScrollState, scroll_id: str, started: float
) -> EsSearchResponse:
    async with state.turn:
        found, state.next = await _page(request, state.hits, state.next, state.size)
    hits = _es_hits(state.hits, found, state.shown)
    total = state.shown.total  # the first request's, as a number where this one asks
    as_int = query_flag(request, "rest_total_hits_as_int")
    total = total if as_int is None else dataclasses.replace(total, as_int=as_int)
    return _answer(state.hits, hits, started, total, scroll_id=scroll_id)


async def _page(
    request: Request, listed: HitList, start: int, size: int, *, read_on: bool = True
) -> tuple[list[tuple[int, VersionedDocument]], int]:
    """The next ``size`` hits from ``start`` whose documents are still there (position and
    document), and the position after the last read; ``read_on``: past ``size`` positions
    where documents are gone, to fill the page (not for a page by ``from``, which holds its
    own positions alone: the next page's ``from`` would read some of them again)."""
    found: list[tuple[int, VersionedDocument]] = []
    position = start
    while len(found) < size and position < len(listed):
        chunk = range(position, min(len(listed), position + size - len(found)))
        documents = await _documents(request, [listed.keys[n] for n in chunk])
        found += [(n, doc) for n, doc in zip(chunk, documents, strict=True) if doc is not None]
        position = chunk.stop
        if not read_on:
            break
    return found, position


async def _documents(request: Request, keys: list[str]) -> list[VersionedDocument | None]:
    """The documents of hit keys, each read with its version (None where deleted, or their
    index dropped since)."""
    from semrank.store._targets import split_key

    by_index: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        name, doc_id = split_key(key)
        by_index[name].append(doc_id)
    found: dict[str, VersionedDocument | None] = {}
    for name, ids in by_index.items():
        try:
            documents = await on_index(request, name, functools.partial(_get, ids))
        except IndexNotFoundError:
            documents = [None] * len(ids)
        found.update(zip((f"{name}:{i}" for i in ids), documents, strict=True))
    return [found[key] for key in keys]


def _get(ids: list[str], store: Any) -> list[VersionedDocument | None]:
    found: list[VersionedDocument | None] = store.get_versioned(ids)
    return found


def _es_hits(
    listed: HitList, found: list[tuple[int, VersionedDocument]], shown: Shown
) -> list[EsHit]:
    from semrank.store._targets import split_key

    hits: list[EsHit] = []
    for position, read in found:
        name, doc_id = split_key(listed.keys[position])
        score = listed.score(position)
        sort = _sort_values(listed, position, shown.sort)
        base: dict[str, Any] = {"index": name, "id": doc_id, "score": score, "sort": sort}
        base |= shown.versions.fields(read.version)
        base["fields"] = shown.source.hit_fields(read.fields)
        source = shown.source.source(read.fields)
        hits.append(EsHit(**base) if source is None else EsHitWithSource(**base, source=source))
    return hits


def _sort_values(listed: HitList, position: int, shown: tuple[str, ...]) -> list[Any] | None:
    """A hit's ``sort``: its listed values (a sorted search's), score or position."""
    if not shown:
        return None
    held = iter(() if listed.sort_values is None else listed.sort_values[position])
    return [
        position if kind == POSITION else listed.score(position) if kind == SCORE else next(held)
        for kind in shown
    ]


def _answer(
    listed: HitList,
    hits: list[EsHit],
    started: float,
    total: TotalHits,
    *,
    scroll_id: str | None = None,
    pit_id: str | None = None,
) -> EsSearchResponse:
    scores = [hit.score for hit in hits if hit.score is not None]
    return EsSearchResponse(
        took=round((time.perf_counter() - started) * 1000),
        hits=EsHits(
            total=total.shaped(EsTotal(value=len(listed), relation="eq")),
            max_score=max(scores, default=None),
            hits=hits,
        ),
        aggregations=None,
        scroll_id=scroll_id,
        pit_id=pit_id,
    )


# --- /_search/scroll -------------------------------------------------------------------------
SCROLL_SUMMARY = "The next page of a scroll, as Elasticsearch's /_search/scroll"
SCROLL_PARAMS = frozenset(
    {"scroll", "scroll_id", "filter_path", "pretty", "human", "error_trace",
     "rest_total_hits_as_int"}
)  # fmt: skip


@router.get("/_search/scroll", response_model=EsSearchResponse, summary=SCROLL_SUMMARY)
@router.post("/_search/scroll", response_model=EsSearchResponse, summary=SCROLL_SUMMARY)
# Elasticsearch's deprecated form (the id in the path), which it still serves.
@router.get("/_search/scroll/{scroll_id}", response_model=EsSearchResponse, summary=SCROLL_SUMMARY)
@router.post("/_search/scroll/{scroll_id}", response_model=EsSearchResponse, summary=SCROLL_SUMMARY)
async def scroll(request: Request, body: EsScrollRequest | None = None) -> Any:
    """The page after the last one the scroll answered (no hits once it is through); the
    context is kept ``scroll`` longer (else its keep-alive again)."""
    started = time.perf_counter()
    refuse_query_string_options(request, SCROLL_PARAMS)
    body = body or EsScrollRequest.model_validate({})
    scroll_id = body.scroll_id or _id_outside_body(request)
    if not scroll_id:
        raise InvalidInputError("scroll_id is missing: send the _scroll_id the search answered")
    given = body.scroll or request.query_params.get("scroll")
    keep_alive = None if given is None else keep_alive_seconds(given, "scroll")
    state = contexts(request).get(scroll_id, ScrollState, keep_alive)
    return await _scroll_page(request, state, scroll_id, started)


CLEAR_SUMMARY = "Free scroll contexts, as Elasticsearch's DELETE /_search/scroll"


@router.delete("/_search/scroll", response_model=EsFreed, summary=CLEAR_SUMMARY)
async def clear_scroll(request: Request, body: EsClearScrollRequest | None = None) -> Any:
    """``{"scroll_id": [...]}`` (or ``?scroll_id=a,b``; ``_all``: every one): a 404 where
    none was open, as Elasticsearch answers (``helpers.scan`` ignores it)."""
    refuse_query_string_options(request, SCROLL_PARAMS)
    given = None if body is None else body.scroll_id
    ids = [given] if isinstance(given, str) else given or _ids_outside_body(request)
    if not ids:
        raise InvalidInputError('give the scroll ids to free: {"scroll_id": [...]} or _all')
    wanted = None if "_all" in ids else ids
    return _freed(contexts(request).free(wanted, ScrollState))


@router.delete("/_search/scroll/_all", response_model=EsFreed, summary=CLEAR_SUMMARY)
async def clear_every_scroll(request: Request) -> Any:
    return _freed(contexts(request).free(None, ScrollState))


# Elasticsearch's deprecated form: the ids in the path, comma-separated.
router.delete("/_search/scroll/{scroll_id}", response_model=EsFreed, summary=CLEAR_SUMMARY)(
    clear_scroll
)


def _ids_outside_body(request: Request) -> list[str]:
    """The scroll ids of the path (``/_search/scroll/{id},{id}``) or the query string."""
    in_path = request.path_params.get("scroll_id")
    if in_path is None:
        return query_list(request, "scroll_id")
    return [item.strip() for item in in_path.split(",") if item.strip()]


def _id_outside_body(request: Request) -> str | None:
    """The one scroll id of the path or the query string (Elasticsearch takes one here)."""
    found = request.path_params.get("scroll_id") or request.query_params.get("scroll_id")
    return None if found is None else str(found)


def _freed(count: int) -> Any:
    freed = EsFreed(num_freed=count)
    return freed if count else JSONResponse(freed.model_dump(), status_code=404)


# --- point in time ---------------------------------------------------------------------------
PIT_PARAMS = frozenset(
    {"keep_alive", "ignore_unavailable", "allow_no_indices", "expand_wildcards", "preference",
     "routing", "allow_partial_search_results", "filter_path", "pretty", "human", "error_trace"}
)  # fmt: skip


@router.post(
    "/{index}/_pit", response_model=EsPitResponse, summary="Open a point in time to search"
)
async def open_point_in_time(index: str, request: Request) -> Any:
    """``es.open_point_in_time(index=..., keep_alive="1m")``: the indexes ``index`` names now
    (an alias's index), which searches with this ``pit`` read; each search's query is listed
    once, at its first page, and its later pages come from that listing."""
    refuse_query_string_options(request, PIT_PARAMS)
    given = request.query_params.get("keep_alive")
    if given is None:
        raise InvalidInputError("keep_alive is required: e.g. POST /{index}/_pit?keep_alive=1m")
    keep_alive = keep_alive_seconds(given, "keep_alive")

    def names(stores: list[Any]) -> tuple[str, ...]:
        return tuple(store.name for store in stores)

    indexes = await on_targets(request, index, names, **target_options(request))
    state = PitState(indexes, {})

    def held() -> int:
        # One hit at least each: a listing of none is still kept, a day at most.
        return sum(max(1, len(listed)) for listed in state.listings.values())

    return EsPitResponse(id=contexts(request).open(state, keep_alive, held))


@router.delete("/_pit", response_model=EsFreed, summary="Close a point in time")
async def close_point_in_time(body: EsClosePitRequest, request: Request) -> Any:
    refuse_query_string_options(request, frozenset({"filter_path", "pretty", "human"}))
    return _freed(contexts(request).free([body.id], PitState))


async def _pit_search(request: Request, body: EsSearchRequest) -> EsSearchResponse:
    """A page of the pit's listing of the body's query: from ``from``, or after the
    ``search_after`` position (a hit's ``_shard_doc`` sort value, its last unless the sort
    places it: its position in the listing)."""
    started = time.perf_counter()
    assert body.pit is not None
    if body.aggs is not None or body.aggregations is not None or body.highlight is not None:
        raise InvalidInputError(
            "aggregations and highlight are not supported with a point in time; search "
            "without pit for them"
        )
    given = body.pit.keep_alive
    keep_alive = None if given is None else keep_alive_seconds(given, "pit.keep_alive")
    state = contexts(request).get(body.pit.id, PitState, keep_alive)
    sort = _listing_sort(body).with_shard_doc()
    start = _pit_start(body, sort.shown)
    shown = _shown(request, body, sort.shown)
    # A digest: the query itself may be --max-body-bytes long.
    spec = json.dumps([_listing_spec(body), sort.listing_key], sort_keys=True)
    key = hashlib.sha256(spec.encode()).hexdigest()
    listed = state.listings.get(key)
    if listed is None:
        if contexts(request).room() < 1:  # a new listing holds one hit at least
            _over_limit(request, 0)
        listed = HitList([])
        if state.indexes:  # those dropped since are left out
            names = ",".join(state.indexes)
            listed = await _listing(request, names, body, sort, ignore_unavailable=True)
        state.listings[key] = listed
    by_from = body.search_after is None
    found, _ = await _page(request, listed, start, body.size, read_on=not by_from)
    hits = _es_hits(listed, found, shown)
    return _answer(listed, hits, started, shown.total, pit_id=body.pit.id)


def _pit_start(body: EsSearchRequest, shown: tuple[str, ...]) -> int:
    if body.search_after is None:
        if body.from_ + body.size > MAX_RESULT_WINDOW:
            raise InvalidInputError(
                f"from + size ({body.from_ + body.size:,}) is above {MAX_RESULT_WINDOW:,}; "
                "page deeper with search_after (the last hit's sort values)"
            )
        return body.from_
    if body.from_ > 0:
        raise InvalidInputError("`from` parameter must be set to 0 when `search_after` is used")
    after = body.search_after
    # The position the sort's _shard_doc gives (the last value, unless a sort puts it first).
    slot = len(shown) - 1 - shown[::-1].index(POSITION) if len(after) == len(shown) else -1
    position = after[slot] if after else None
    if not isinstance(position, int) or isinstance(position, bool) or position < -1:
        raise InvalidInputError(
            f"search_after {body.search_after!r:.80}: give the last hit's sort values, which "
            "end with its _shard_doc (a non-negative integer)"
        )
    return position + 1
