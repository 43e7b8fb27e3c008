"""Index admin and two-stage search over ``semrank.store`` and ``semrank.pipeline``.

Store and pipeline calls block (SQLite, BM25, embeddings), so they run in worker threads. The
re-ranking nodes of a retriever tree are bound to the *served* models, so search re-ranking is
batched with the rerank endpoints' traffic and never loads (or downloads) a model per request.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request, Response
from fastapi import Path as PathParameter

from semrank._tracing import span
from semrank.errors import DeadlineExceededError, InvalidInputError, RequestTooLargeError
from semrank.server._auth import require_api_key
from semrank.server._edge import UniqueKeysRoute
from semrank.server._engines import run_in_thread
from semrank.server._rerank_routes import ERRORS, WARNING_HEADER
from semrank.server._service import RerankService
from semrank.server.schemas import (
    INDEX_NAME_SCHEMA,
    CreateIndexRequest,
    DeleteDocumentsRequest,
    DeleteResult,
    IndexInfo,
    IndexList,
    IndexName,
    PreparedTable,
    PrepareRequest,
    PrepareResult,
    SearchHit,
    SearchRequest,
    SearchResponse,
    UnfinishedIngest,
    UpsertDocumentsRequest,
    UpsertResult,
)

IndexNameInPath = Annotated[str, PathParameter(json_schema_extra=INDEX_NAME_SCHEMA)]
router = APIRouter(
    dependencies=[Depends(require_api_key)],
    route_class=UniqueKeysRoute,
    tags=["indexes"],
    responses=ERRORS,
)
T = TypeVar("T")


@router.get("/v1/indexes", response_model=IndexList, summary="List indexes")
async def list_indexes(request: Request) -> Any:
    from semrank.pipeline import let_go_of_dropped_indexes
    from semrank.store import list_indexes as names

    def listed() -> list[IndexName]:
        from semrank.store import list_aliases

        let_go_of_dropped_indexes()  # a request on no index in particular: held ones checked
        aliases = list_aliases(**_where(request))
        return [
            IndexName(name=name, aliases=[a for a, named in aliases.items() if named == name])
            for name in names(**_where(request))
        ]

    return IndexList(data=await _blocking(request, None, listed))


@router.post(
    "/v1/indexes",
    status_code=201,
    response_model=IndexInfo,
    summary="Create an index (info of the new index)",
)
async def create_index(body: CreateIndexRequest, request: Request) -> Any:
    _check_embedding_model(body.embedding_model)
    fields, model = tuple(body.fields), body.embedding_model
    info = await create_named_index(request, body.name, fields, body.id_field, model)
    return _public_info(request, info)


async def create_named_index(
    request: Request, name: str, fields: tuple[str, ...], id_field: str, model: str | None
) -> dict[str, Any]:
    """Creates an index of the served store; its info."""
    from semrank.store import create_index as create

    def make() -> dict[str, Any]:
        store = create(
            name, **_where(request), fields=fields, id_field=id_field, embedding_model=model
        )
        try:
            return store.info().to_dict()
        finally:
            store.close()

    return await _blocking(request, None, make)


def _check_embedding_model(name: str | None) -> None:
    """Over HTTP an index's embedding model is a catalog name: a client must not make the server
    load (or download) whatever a path on the server's disk or a hub id points at."""
    from semrank.models import CATALOG, find_spec

    if name is None or name == "default":
        return
    spec = find_spec(name)
    if spec is not None and spec.kind == "bi-encoder":
        return
    # A re-ranker named here loaded a cross-encoder as an embedder, or fetched gigabytes
    # from the hub at a client's request (and its error named the server's folders).
    embedders = [entry.name for entry in CATALOG if entry.kind == "bi-encoder"]
    what = f"a {spec.kind}, not an embedding model" if spec else "not in the model catalog"
    raise InvalidInputError(
        f"embedding_model {name!r} is {what}; use 'default', null (BM25 only) or one of the "
        f"catalog's embedding models ({', '.join(embedders)}); indexes with other models are "
        "created with `semrank index create` on the server"
    )


@router.get(
    "/v1/indexes/{name}",
    response_model=IndexInfo,
    summary="Index info (documents, settings, sizes)",
)
async def index_info(name: IndexNameInPath, request: Request) -> Any:
    info = await _blocking(request, None, _with_index(request, name, lambda s: s.info().to_dict()))
    return _public_info(request, info)


def _public_info(request: Request, info: dict[str, Any]) -> IndexInfo:
    """Index info for a client: its location under ``<index home>`` (or ``<index store>``), not
    the server's folder or database; an unfinished ingest by its file's name and start only
    (its path, host and process are the server's; one from stdin as "-"); a model folder by
    its name."""
    from semrank.store._base import shown_source

    info["location"] = _public_location(request, str(info.get("location", "")))
    info["unfinished_ingests"] = {
        Path(shown_source(source)).name: UnfinishedIngest(
            started=str(mark.get("started", "")), running=bool(mark.get("running"))
        )
        for source, mark in info.get("unfinished_ingests", {}).items()
    }  # fmt: skip
    model = info["settings"].get("embedding_model")
    if isinstance(model, str) and (Path(model).is_absolute() or model.startswith((".", "~"))):
        info["settings"] = {**info["settings"], "embedding_model": f"<path>/{Path(model).name}"}
    return IndexInfo(**info)


def _public_location(request: Request, location: str) -> str:
    config = request.app.state.config
    relative = ((config.index_home, "<index home>"),) if config.index_home else ()
    for private, shown in (*request.app.state.private_names, *relative):
        if location == private or location.startswith(private.rstrip("/") + "/"):
            return shown + location[len(private.rstrip("/")) :]
        if location.startswith(private + " "):  # a PostgreSQL location: "DSN schema.table"
            return shown + location[len(private) :]
    return location


@router.delete("/v1/indexes/{name}", response_model=DeleteResult, summary="Drop an index")
async def drop_index(name: IndexNameInPath, request: Request) -> Any:
    await drop_named_index(request, name)
    return DeleteResult(deleted=1)


async def drop_named_index(request: Request, name: str) -> None:
    from semrank.store import drop_index as drop

    # The pipeline's open handle of it is let go of first (the store's BEFORE_DROP).
    await _blocking(request, None, lambda: drop(name, **_where(request)))


@router.post(
    "/v1/indexes/{name}/documents",
    response_model=UpsertResult,
    response_model_exclude_none=True,
    summary="Add or replace documents (by id)",
)
async def upsert_documents(
    name: IndexNameInPath, body: UpsertDocumentsRequest, request: Request, response: Response
) -> Any:
    # One request, one transaction (its size is bounded by --max-body-bytes): concurrent
    # requests writing the same ids then leave one request's documents, not a mix of batches.
    documents = body.documents
    check_write_size(request, len(documents))

    def upsert(store: Any) -> tuple[Any, list[str]]:
        counts = store.upsert_counted(documents, batch_size=max(1, len(documents)))
        return counts, unread_fields_warnings(store, counts)

    counts, warnings = await write_on_index(request, name, upsert)
    say_warnings(response, warnings)
    return UpsertResult(
        upserted=counts.documents,
        written=counts.written,
        skipped=counts.documents - counts.written,
        warnings=warnings or None,
    )


def check_write_size(request: Request, count: int, what: str = "documents") -> None:
    """A write of more than --max-documents is refused, as a rerank request's documents are:
    embedding them is the same model work."""
    limit = request.app.state.service.config.max_documents
    if count > limit:
        raise RequestTooLargeError(
            f"{count} {what} exceed this server's limit of {limit} per request; send them in "
            "several requests (or raise --max-documents)"
        )


async def write_on_index(request: Request, name: str, work: Callable[[Any], T]) -> T:
    """``work`` writing to the index ``name`` in a worker thread, admitted as searches are
    (--max-pending, 429); not cut at the deadline: a write that has begun is finished, so a
    client retrying a 504 would write twice meanwhile."""
    return await write_blocking(request, _with_index(request, name, work))


async def write_blocking(request: Request, work: Callable[[], T]) -> T:
    """``work`` (a write) in a worker thread, admitted as ``write_on_index``'s: not cut at the
    deadline."""
    service: RerankService = request.app.state.service
    with service.admission.admit():
        return await _blocking(request, None, work)


def unread_fields_warnings(store: Any, counts: Any, create: str = '"fields"') -> list[str]:
    """``create``: how the caller's API names an index's text fields at creation."""
    from semrank.store._base import unread_fields_warning

    if not counts.unread_fields:
        return []
    search = 'a "match" query naming the field'
    said = unread_fields_warning(
        store, counts.unread_fields, records="the documents", search=search, create=create
    )
    return [said]


@router.post(
    "/v1/indexes/{name}/documents/delete",
    response_model=DeleteResult,
    summary="Delete documents by id, or every document passing a filter",
)
async def delete_documents(
    name: IndexNameInPath, body: DeleteDocumentsRequest, request: Request
) -> Any:
    work = _deletion(body)  # a bad body is refused before the index is opened
    count = await write_on_index(request, name, work)
    return DeleteResult(deleted=int(count))


def _deletion(body: DeleteDocumentsRequest) -> Callable[[Any], int]:
    """What a delete body asks of the index: its ``ids``, or every document its ``filter``
    passes (exactly one of them given)."""
    from semrank.store._base import deletion_filter

    if (body.ids is None) == (body.filter is None):
        raise InvalidInputError(
            'give "ids" (a list of document ids) or "filter" (an Elasticsearch filter such as '
            '{"term": {"tenant": "acme"}}) naming the documents to delete, '
            + ("not both" if body.ids is not None else "got neither")
        )
    if body.filter is not None:
        flt = deletion_filter(body.filter, "filter")
        return lambda store: int(store.delete_matching(flt))
    ids = body.ids
    return lambda store: int(store.delete(ids))


@router.post(
    "/v1/indexes/{name}/prepare",
    response_model=PrepareResult,
    summary="Embed every document's re-ranking windows ahead (searches then embed the query only)",
)
async def prepare(
    name: IndexNameInPath, request: Request, body: PrepareRequest | None = None
) -> Any:
    from semrank.pipeline import prepare_index

    _refuse_a_cross_site_form(request)
    body = body or PrepareRequest.model_validate({})  # every field has a default: no body is fine
    service: RerankService = request.app.state.service
    from semrank.pipeline import default_model_name

    model = default_model_name(body.model)
    reranker = service.engine(model).reranker

    def work(store: Any) -> Any:
        return prepare_index(store, model=reranker, field=body.field)

    with service.admission.admit():
        done = await _blocking(request, None, _with_index(request, name, work))
    tables = [PreparedTable(model=t.model, windows=t.windows, documents=t.documents) for t in done]
    return PrepareResult(prepared=tables)


@router.post(
    "/v1/indexes/{name}/search",
    response_model=SearchResponse,
    response_model_exclude_none=True,
    summary="Search with a retriever tree (Elasticsearch JSON or a shorthand like bm25+rerank)",
)
async def search(
    name: IndexNameInPath, body: SearchRequest, request: Request, response: Response
) -> Any:
    results, warnings = await run_search(request, name, body)
    hits = [SearchHit(**hit.to_dict()) for hit in results.hits]
    say_warnings(response, warnings)
    return SearchResponse(
        index=name,
        hits=hits,
        warnings=warnings or None,
        aggregations=results.aggregations,
        matched=results.matched,
    )


async def run_search(
    request: Request, name: str, body: SearchRequest, **targets: bool
) -> tuple[Any, list[str]]:
    """The search of ``body`` on index ``name`` (or the indexes it names: ``"a,b"``,
    ``"logs-*"``, ``"_all"``; ``targets``: ``using_indexes``' options) with the served models,
    and its warnings: the one search path of semrank's route and Elasticsearch's ``_search``."""
    return await run_prepared(request, name, prepare_search(request, body), **targets)


@dataclass(frozen=True, kw_only=True)
class PreparedSearch:
    """A search body read and checked (``prepare_search``), ready to run on an index: its
    tree bound to the served models, the hits asked and the options of the pipeline's search."""

    tree: Any
    query: str | None
    size: int
    offset: int
    with_documents: bool
    filter: Any
    highlight: Any
    aggs: dict[str, Any] | None
    sort: dict[str, Any]  # the pipeline search's sort, search_after and track_scores
    timeout_ms: int | None
    versions: bool = False  # each hit's version read with its document (with_versions)
    # Over the tree's hits, where the body gives them beside its retriever (one in it is
    # in the tree already): semrank.pipeline._post.
    post_filter: Any = None
    collapse: Any = None
    min_score: float | None = None  # hits scoring below it left out (a _search body's)
    count_matches: bool = False  # matched counts every document matched (track_total_hits)

    @property
    def reranked(self) -> int:
        """The documents its re-rankers score together (their windows)."""
        from semrank.pipeline import reranking_nodes

        return sum(node.rank_window_size for node in reranking_nodes(self.tree))


def prepare_search(request: Request, body: SearchRequest) -> PreparedSearch:
    """``body`` read and checked before any index is opened: bad options are the client's,
    whatever the index."""
    from semrank.pipeline import check_page, check_window, hits_asked, page_start, read_retriever
    from semrank.retrieve import as_filter, optional_filter, parse_highlight

    service: RerankService = request.app.state.service
    limit = service.config.max_documents
    flt = optional_filter(body.filter)
    marks = None if body.highlight is None else parse_highlight(body.highlight)
    check_page(body.from_, body.size)
    # A shorthand re-ranks every hit down to the page's last, as a search for them would.
    asked = f"from + size {body.from_ + body.size}" if body.from_ else f"size {body.size}"
    spec = _checked_spec(body.retriever, body.from_ + body.size, limit, asked)
    read = read_retriever(spec, size=body.from_ + body.size, window_limit=limit, offset=body.from_)
    tree = _bind_models(read.tree, service)
    _check_reranked_documents(tree, service.config.max_documents)
    # A size the client gave is checked against the window; none asks for a _search body's
    # own size, else the default or the window's hits where fewer, as POST /{index}/_search,
    # `semrank search` and the library answer it.
    given = body.size if "size" in body.model_fields_set else None
    size = hits_asked(spec, read, given, "size")
    check_window(tree, size)
    return PreparedSearch(
        tree=tree,
        query=body.query,
        size=size,
        offset=page_start(body.from_, read.offset, "from "),
        with_documents=body.return_documents and read.source,  # a _search body's "_source"
        filter=flt,
        highlight=marks,
        aggs=body.aggs,
        sort=_sort_of(body, read.sort),
        timeout_ms=body.timeout_ms,
        post_filter=None
        if body.post_filter is None
        else as_filter(body.post_filter, "post_filter"),
        collapse=body.collapse,
    )


async def run_prepared(
    request: Request, name: str, prepared: PreparedSearch, **targets: bool
) -> tuple[Any, list[str]]:
    """``run_search``'s search of a body ``prepare_search`` read, admitted and timed."""
    from semrank.pipeline import search as run

    service: RerankService = request.app.state.service
    deadline = service.deadline(prepared.timeout_ms)
    tree, size = prepared.tree, prepared.size

    def work(stores: list[Any]) -> tuple[Any, list[str]]:
        with span("search", index=name, retriever=type(tree).__name__, k=size):
            results = run(
                stores,
                prepared.query,
                retriever=tree,
                k=size,
                with_documents=prepared.with_documents,
                filter=prepared.filter,
                offset=prepared.offset,
                highlight=prepared.highlight,
                aggs=prepared.aggs,
                post_filter=prepared.post_filter,
                collapse=prepared.collapse,
                min_score=prepared.min_score,
                count_matches=prepared.count_matches,
                **prepared.sort,
            )
        if prepared.versions:
            results = with_versions(stores, results)
        unfinished = [said for store in stores for said in _incomplete_warning(store)]
        return results, [*results.warnings, *unfinished]

    with service.admission.admit():
        return await _blocking(request, deadline, with_targets(request, name, work, **targets))


def with_versions(stores: list[Any], results: Any) -> Any:
    """``results`` with each hit's version, read together with its document from its index
    after the search: the document a hit shows is the one its ``_seq_no`` numbers, so a
    conditional write made from it (``if_seq_no``) cannot overwrite a change it did not see.
    A hit deleted since the search keeps the document it was found with and gets none."""
    by_name = {store.name: store for store in stores}
    wanted: dict[str, list[str]] = {}
    for hit in results.hits:
        wanted.setdefault(hit.index or stores[0].name, []).append(hit.id)
    read: dict[tuple[str, str], Any] = {}
    for name, ids in wanted.items():
        if name in by_name:
            found = by_name[name].get_versioned(ids)
            read.update(zip(((name, i) for i in ids), found, strict=True))
    hits = []
    for hit in results.hits:
        found = read.get((hit.index or stores[0].name, hit.id))
        if found is not None:
            document = None if hit.document is None else found.fields
            hit = dataclasses.replace(hit, version=found.version, document=document)
        hits.append(hit)
    return dataclasses.replace(results, hits=hits)


def _sort_of(body: SearchRequest, read: Any) -> dict[str, Any]:
    """``search``'s sort: the body's fields, or the sort its retriever (a ``_search`` body, or
    its standard retriever) holds, read already with it; not both."""
    if read is None:
        return {
            "sort": body.sort,
            "search_after": body.search_after,
            "track_scores": body.track_scores,
        }
    if body.sort is not None or body.search_after is not None:
        raise InvalidInputError(
            "sort (or search_after) is given both beside the retriever and in it; give them in "
            "one place"
        )
    return {"sort": dataclasses.replace(read, track_scores=True) if body.track_scores else read}


async def on_index(request: Request, name: str, work: Callable[[Any], T]) -> T:
    """``work`` on the index ``name`` in a worker thread, admitted and timed as a search is."""
    service: RerankService = request.app.state.service
    with service.admission.admit():
        return await _blocking(request, service.deadline(None), _with_index(request, name, work))


async def on_targets(
    request: Request,
    targets: str,
    work: Callable[[list[Any]], T],
    *,
    timeout_ms: int | None = None,
    **options: bool,
) -> T:
    """``on_index`` on the indexes ``targets`` names (``with_targets``), within ``timeout_ms``
    (default: the server's deadline)."""
    service: RerankService = request.app.state.service
    with service.admission.admit():
        run = with_targets(request, targets, work, **options)
        return await _blocking(request, service.deadline(timeout_ms), run)


async def on_registry(request: Request, work: Callable[..., T]) -> T:
    """``work(home=..., store=...)`` (a store function on the served indexes) in a worker
    thread."""
    return await _blocking(request, None, functools.partial(work, **_where(request)))


async def open_index(request: Request, name: str) -> None:
    """Opens the index ``name`` (IndexNotFoundError where there is none), as a search would."""
    await _blocking(request, None, _with_index(request, name, lambda store: None))


def say_warnings(response: Response, warnings: list[str]) -> None:
    if warnings:  # as the rerank routes say it
        response.headers[WARNING_HEADER] = warnings[0].encode("ascii", "backslashreplace").decode()


def _incomplete_warning(store: Any) -> list[str]:
    """What the CLI says on stderr of an index whose ingest has not finished, without the
    server's paths and commands (GET /v1/indexes/{name} has the ingests' files and times)."""
    if not store.unfinished_ingests():
        return []
    return [
        f"index {store.name!r} is incomplete: an ingest into it has not finished (interrupted, "
        f"or still running), so this answer is from the {len(store):,} documents it holds"
    ]


def _checked_spec(
    spec: str | dict[str, Any] | None, size: int, limit: int, asked: str
) -> str | dict[str, Any] | None:
    """Strings must be shorthands: the pipeline would read any other string as a file path. A
    shorthand's +rerank reads every hit asked for beyond 100, so an over-limit one names
    ``size``, which the client sent, rather than the window it implies."""
    from semrank.pipeline import FIRST_STAGES, parse_shorthand

    if not isinstance(spec, str):
        return spec
    shorthand = parse_shorthand(spec)
    if shorthand is None:
        shorthands = ", ".join(f"{stage}[+rerank]" for stage in FIRST_STAGES)
        raise InvalidInputError(
            f"retriever {spec!r} is not a shorthand ({shorthands}); send a retriever JSON object"
        )
    if shorthand.rerank and size > limit:
        raise RequestTooLargeError(
            f"{asked} with {spec!r} re-ranks {size} documents, over this server's limit of "
            f"{limit} per request; ask for at most {limit} hits (or raise --max-documents)"
        )
    return spec


def _where(request: Request) -> dict[str, Any]:
    """Where the served indexes live, as the store functions take it."""
    config = request.app.state.config
    return {"home": config.index_home, "store": config.postgres_dsn}


def _refuse_a_cross_site_form(request: Request) -> None:
    """The one route whose body may be left out: a web page of any site can POST to it without
    a CORS preflight (no body, or a form or text one), and with no key one made a local server
    prepare (minutes of CPU). Other routes need a JSON body, which a page sends only after a
    preflight this server does not answer."""
    sent_as = request.headers.get("content-type", "")
    media = sent_as.split(";")[0].strip().lower()
    if sent_as and not (media == "application/json" or media.endswith("+json")):
        raise InvalidInputError(
            f"the request body was sent with Content-Type {sent_as!r}; send no body, or a JSON "
            "object with Content-Type: application/json"
        )
    if request.app.state.config.api_keys:
        return  # a page of another site cannot send the key without a preflight
    origin, host = request.headers.get("origin"), request.headers.get("host", "")
    cross_site = request.headers.get("sec-fetch-site", "") == "cross-site"
    if cross_site or _foreign_origin(origin, host):
        raise InvalidInputError(
            f"refused: a web page of another site sent this (Origin {origin!r}, Host {host!r}, "
            f"Sec-Fetch-Site {request.headers.get('sec-fetch-site')!r}), and this server has "
            "no API key to tell its own pages by: start it with keys (SEMRANK_API_KEYS) and "
            "send one, or send the request from your own code or tools"
        )


def _foreign_origin(origin: str | None, host: str) -> bool:
    """Whether a browser's Origin header names another host than the request was sent to."""
    if not origin or origin == "null":
        return origin == "null"  # sandboxed pages and file:// send "null"
    return urlsplit(origin).netloc.lower() != host.lower()


def _with_index(request: Request, name: str, work: Callable[[Any], T]) -> Callable[[], T]:
    """``work`` on the named index, which stays open while it runs (a drop meanwhile closes
    it only afterwards)."""
    from semrank.pipeline import using_index

    def run() -> T:
        with using_index(name, **_where(request)) as store:
            return work(store)

    return run


def with_targets(
    request: Request, targets: str, work: Callable[[list[Any]], T], **options: bool
) -> Callable[[], T]:
    """``work`` on the indexes ``targets`` names: one index (or alias), or several by the
    multi-target syntax (none where a pattern matched nothing, or where ``ignore_unavailable``
    left out every name, one name too, as Elasticsearch answers it), open while it runs."""
    from semrank.pipeline import using_index, using_indexes
    from semrank.store._targets import is_multi_target

    def run() -> T:
        if not is_multi_target(targets) and not options.get("ignore_unavailable"):
            with using_index(targets, **_where(request)) as store:
                return work([store])
        where = _where(request)
        with using_indexes(
            targets,
            where["home"],
            store=where["store"],
            ignore_unavailable=options.get("ignore_unavailable", False),
            allow_no_indices=options.get("allow_no_indices", True),
        ) as stores:
            return work(stores)

    return run


async def _blocking(
    request: Request, deadline: float | None, work: Callable[..., T], *args: Any
) -> T:
    late = "the search did not finish within the request deadline; raise timeout_ms, or ask "
    late += "for less work (a smaller re-rank window, fewer retrievers)"
    threads = request.app.state.registry.index_threads
    try:
        return await run_in_thread(threads, deadline, functools.partial(work, *args), late)
    except DeadlineExceededError:  # counted as the rerank routes count theirs
        request.app.state.service.metrics.rejected.labels("deadline").inc()
        raise


def _check_reranked_documents(tree: Any, limit: int) -> None:
    """Each re-ranker scores its whole window: the windows of a tree together are held to the
    same per-request document limit as /v1/rerank (an rrf of several re-rankers got past it)."""
    from semrank.pipeline import reranking_nodes

    windows = [node.rank_window_size for node in reranking_nodes(tree)]
    if sum(windows) <= limit:
        return
    each = " + ".join(str(w) for w in windows)
    raise RequestTooLargeError(
        f"the retriever re-ranks {sum(windows)} documents (rank_window_size {each}), over this "
        f"server's limit of {limit} documents per request; lower rank_window_size (or raise "
        "--max-documents)"
    )


def _bind_models(tree: Any, service: RerankService) -> Any:
    """The tree with every re-ranking node scoring through a served model."""
    from semrank.pipeline import bind_rerankers

    return bind_rerankers(tree, lambda name: service.engine(name).reranker)
