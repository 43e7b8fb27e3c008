"""Elasticsearch's document and index APIs (``_bulk``, ``_doc``, ``_create``, ``_update``,
``_mget``, ``PUT`` / ``DELETE /{index}``, ``_refresh``), so code written against elasticsearch-py
(``helpers.bulk``, ``es.index``, ``es.get``, LangChain's and LlamaIndex's Elasticsearch stores)
fills and manages semrank's indexes. The writes are ``_es_writes``'; every answer is
Elasticsearch's shape, with its product header and error bodies (``_es_routes``).

semrank's writes are searchable when the request answers: ``?refresh=`` (any value) is taken
and changes nothing, and ``_refresh`` is a no-op.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import Body, Request, Response
from fastapi.responses import JSONResponse

from semrank.errors import (
    IndexExistsError,
    IndexNotFoundError,
    InvalidInputError,
    ResourceExistsError,
)
from semrank.server._errors import client_message
from semrank.server._es_body import filtered_source, query_list
from semrank.server._es_router import es_router
from semrank.server._es_routes import (
    IndexProbeRoute,
    es_error,
    refuse_query_string_options,
    say_es_warnings,
)
from semrank.server._es_writes import (
    CONDITION_KEYS,
    NOT_SUPPORTED,
    Outcome,
    WriteAction,
    apply_writes,
    check_update_body,
    parse_bulk,
    parse_condition,
)
from semrank.server._index_routes import (
    IndexNameInPath,
    check_write_size,
    create_named_index,
    drop_named_index,
    on_index,
    on_registry,
    open_index,
    unread_fields_warnings,
    write_on_index,
)
from semrank.server.schemas import (
    EsAcknowledged,
    EsBulkResponse,
    EsCreateIndexRequest,
    EsCreateIndexResponse,
    EsGetResult,
    EsMgetRequest,
    EsMgetResponse,
    EsRefreshResponse,
    EsWriteResult,
)

router = es_router()

# Query-string options that change nothing semrank does: writes are searchable at once (refresh,
# wait_for_active_shards), one shard (routing, preference), a request's own deadline (timeout).
TAKEN_WRITE_PARAMS = frozenset(
    {"refresh", "wait_for_active_shards", "timeout", "routing", "require_alias", "pretty",
     "human", "error_trace", "filter_path", "retry_on_conflict", "require_data_stream",
     "list_executed_pipelines"}
)  # fmt: skip
TAKEN_READ_PARAMS = frozenset(
    {"_source", "_source_includes", "_source_excludes", "realtime", "refresh", "routing",
     "preference", "pretty", "human", "error_trace", "filter_path"}
)  # fmt: skip
# How elasticsearch-py and the ES docs send an NDJSON body (and JSON, which _bulk takes too).
BULK_MEDIA_TYPES = ("application/x-ndjson", "application/json")
ES_MEDIA_TYPES = ("application/vnd.elasticsearch+x-ndjson", "application/vnd.elasticsearch+json")


def _unsupported(name: str) -> str:
    return f"not supported by semrank's Elasticsearch document APIs ({NOT_SUPPORTED})"


def _refuse_write_options(request: Request, taken: frozenset[str] = TAKEN_WRITE_PARAMS) -> None:
    refuse_query_string_options(request, taken, hint=_unsupported)


# One document's writes also take their condition (optimistic concurrency control).
TAKEN_DOC_PARAMS = TAKEN_WRITE_PARAMS | frozenset(CONDITION_KEYS)


def _one_action(
    request: Request, op: str, index: str, doc_id: str | None, body: Any
) -> WriteAction:
    """The route's action, with the query string's condition (if_seq_no and if_primary_term,
    or version and version_type)."""
    condition = parse_condition(dict(request.query_params), "", op)
    if op == "update" and condition is not None and "retry_on_conflict" in request.query_params:
        raise InvalidInputError(
            "can't provide both retry_on_conflict and a specific version (if_seq_no): a "
            "conditional update is not retried"
        )
    return WriteAction(op=op, index=index, id=doc_id, body=body, number=1, condition=condition)


# --- _bulk -----------------------------------------------------------------------------------
BULK_SUMMARY = "Index, create, update and delete documents, as Elasticsearch's _bulk (NDJSON)"


@router.post("/_bulk", response_model=EsBulkResponse, summary=BULK_SUMMARY)
@router.put("/_bulk", response_model=EsBulkResponse, summary=BULK_SUMMARY)
async def bulk(request: Request, response: Response) -> Any:
    return await _bulk(request, response, None)


@router.post("/{index}/_bulk", response_model=EsBulkResponse, summary=BULK_SUMMARY)
@router.put("/{index}/_bulk", response_model=EsBulkResponse, summary=BULK_SUMMARY)
async def index_bulk(index: IndexNameInPath, request: Request, response: Response) -> Any:
    return await _bulk(request, response, index)


async def _bulk(request: Request, response: Response, index: str | None) -> EsBulkResponse:
    """Each index's actions are applied in one worker-thread call (one upsert, one delete);
    an index that is not there fails its items (404), not the request: semrank creates no
    index on a write, where Elasticsearch may (create it with PUT /{index})."""
    _refuse_write_options(request)
    check_ndjson_media_type(request, "_bulk")
    started = time.perf_counter()
    actions = parse_bulk(await request.body(), index)
    check_write_size(request, len(actions), "actions")
    by_index = await _by_index(request, actions)
    done: dict[int, Outcome] = {}
    for name, own in by_index.items():
        outcomes = await _write_or_missing(request, response, name, own)
        done.update(zip((action.number for action in own), outcomes, strict=True))
    items = [done[action.number] for action in actions]
    took_ms = round((time.perf_counter() - started) * 1000)
    return EsBulkResponse(
        took=took_ms,
        errors=any(item.error is not None for item in items),
        items=[item.as_item(request.app.state.private_names) for item in items],
    )


async def _by_index(request: Request, actions: list[WriteAction]) -> dict[str, list[WriteAction]]:
    """Each index's actions, in order, those through an alias with its index's: one index
    written twice, once by each name, would apply each name's actions to what the other's left
    (a delete by the index's name of a document indexed through its alias found nothing)."""
    names = list(dict.fromkeys(action.index for action in actions))
    index_of = {names[0]: names[0]}
    if len(names) > 1:  # one name: nothing to join (and no alias file to read)
        index_of = await on_registry(request, functools.partial(_indexes_named, names))
    by_index: dict[str, list[WriteAction]] = defaultdict(list)
    for action in actions:
        by_index[index_of[action.index]].append(action)
    return by_index


def _indexes_named(names: list[str], **where: Any) -> dict[str, str]:
    """Each of ``names`` to the index it names (an alias's, else itself)."""
    from semrank.store import resolve_index_name

    return {name: resolve_index_name(name, **where) for name in names}


async def _write_or_missing(
    request: Request, response: Response, name: str, actions: list[WriteAction]
) -> list[Outcome]:
    try:
        return await _write(request, response, name, actions)
    except IndexNotFoundError as missing:
        return [
            Outcome(op=a.op, index=name, id=a.id or "", error=missing) for a in actions
        ]  # fmt: skip


async def _write(
    request: Request, response: Response, name: str, actions: list[WriteAction]
) -> list[Outcome]:
    """``actions`` on the index ``name``; text in fields it does not search is warned of."""

    def work(store: Any) -> tuple[list[Outcome], list[str]]:
        outcomes, counts = apply_writes(store, actions)
        create = "mappings properties of type text (PUT /{index})"
        return outcomes, [] if counts is None else unread_fields_warnings(store, counts, create)

    outcomes, warnings = await write_on_index(request, name, work)
    say_es_warnings(response, warnings)
    return outcomes


def check_ndjson_media_type(request: Request, what: str) -> None:
    """NDJSON or JSON, as Elasticsearch takes (``what``: the route, e.g. "_bulk"): a text/plain
    or form body, which a web page of any site may send without a CORS preflight, must not
    write to (or load) a server without keys."""
    sent = request.headers.get("content-type", "")
    media = sent.split(";")[0].strip().lower()
    if media in BULK_MEDIA_TYPES or media in ES_MEDIA_TYPES or media.endswith("+json"):
        return
    raise InvalidInputError(
        f"the {what} body was sent with {f'Content-Type {sent!r}' if sent else 'no Content-Type'}; "
        "send NDJSON with Content-Type: application/x-ndjson"
    )


# --- one document ----------------------------------------------------------------------------
DocumentBody = Body(description="the document's fields (its _source)")


def _path_id(request: Request) -> str:
    """The id in the path's last segment as the client wrote it: an encoded slash stays in the
    routed path as ``%2F`` (app._encoded_slashes_kept), so the path parameter would keep it."""
    raw = request.scope.get("raw_path")
    if not isinstance(raw, bytes):
        return str(request.path_params["id"])
    return unquote_to_bytes(raw.split(b"?", 1)[0].rsplit(b"/", 1)[-1]).decode("utf-8", "replace")


async def _write_one(request: Request, response: Response, action: WriteAction) -> Any:
    """One action's answer: the write's result (201 where created, 404 for a delete of
    nothing, as Elasticsearch answers), or its error."""
    (outcome,) = await _write(request, response, action.index, [action])
    if outcome.error is not None:
        raise outcome.error
    response.status_code = outcome.status
    shown = outcome.shown_version
    result = EsWriteResult(
        index=outcome.index,
        id=outcome.id,
        result=outcome.result,  # type: ignore[arg-type]
        version=shown.version,
        seq_no=shown.seq_no,
        primary_term=shown.primary_term,
    )
    if outcome.result == "not_found":
        return JSONResponse(result.model_dump(by_alias=True), status_code=404)
    return result


def _op_type(request: Request) -> str:
    op = request.query_params.get("op_type", "index")
    if op not in ("index", "create"):
        raise InvalidInputError(f"op_type {op!r:.60}: give index (the default) or create")
    return op


INDEX_SUMMARY = "Add or replace a document (op_type=create: refused where its id is taken)"


@router.put("/{index}/_doc/{id}", summary=INDEX_SUMMARY, response_model=EsWriteResult)
@router.post("/{index}/_doc/{id}", summary=INDEX_SUMMARY, response_model=EsWriteResult)
async def index_document(
    index: IndexNameInPath,
    request: Request,
    response: Response,
    document: dict[str, Any] = DocumentBody,
) -> Any:
    _refuse_write_options(request, TAKEN_DOC_PARAMS | {"op_type"})
    action = _one_action(request, _op_type(request), index, _path_id(request), document)
    return await _write_one(request, response, action)


@router.post("/{index}/_doc", summary="Add a document (id generated)", response_model=EsWriteResult)
async def add_document(
    index: IndexNameInPath,
    request: Request,
    response: Response,
    document: dict[str, Any] = DocumentBody,
) -> Any:
    _refuse_write_options(request, TAKEN_DOC_PARAMS | {"op_type"})
    action = _one_action(request, _op_type(request), index, None, document)
    return await _write_one(request, response, action)


CREATE_SUMMARY = "Add a document, refused (409) where its id is taken"


@router.put("/{index}/_create/{id}", summary=CREATE_SUMMARY, response_model=EsWriteResult)
@router.post("/{index}/_create/{id}", summary=CREATE_SUMMARY, response_model=EsWriteResult)
async def create_document(
    index: IndexNameInPath,
    request: Request,
    response: Response,
    document: dict[str, Any] = DocumentBody,
) -> Any:
    _refuse_write_options(request, TAKEN_DOC_PARAMS)
    action = _one_action(request, "create", index, _path_id(request), document)
    return await _write_one(request, response, action)


UPDATE_SUMMARY = "Merge fields into a document (doc, doc_as_upsert, upsert)"


@router.post("/{index}/_update/{id}", summary=UPDATE_SUMMARY, response_model=EsWriteResult)
async def update_document(
    index: IndexNameInPath,
    request: Request,
    response: Response,
    body: dict[str, Any] = Body(description='{"doc": {fields}, "doc_as_upsert": false}'),
) -> Any:
    _refuse_write_options(request, TAKEN_DOC_PARAMS)
    check_update_body(body)
    action = _one_action(request, "update", index, _path_id(request), body)
    return await _write_one(request, response, action)


@router.delete("/{index}/_doc/{id}", summary="Delete a document", response_model=EsWriteResult)
async def delete_document(index: IndexNameInPath, request: Request, response: Response) -> Any:
    _refuse_write_options(request, TAKEN_DOC_PARAMS)
    action = _one_action(request, "delete", index, _path_id(request), None)
    return await _write_one(request, response, action)


@router.get(
    "/{index}/_doc/{id}",
    response_model=EsGetResult,
    response_model_exclude_none=True,
    summary="A document by id (found: false and 404 where none); HEAD: whether it exists",
)
async def get_document(index: IndexNameInPath, request: Request) -> Any:
    refuse_query_string_options(request, TAKEN_READ_PARAMS, hint=_unsupported)
    (answer,) = await on_index(request, index, functools.partial(_read, [_path_id(request)]))
    shown = _shown(request, answer)
    return shown if shown.found else JSONResponse(_dumped(shown), status_code=404)


def _read(ids: list[str], store: Any) -> list[EsGetResult]:
    found = store.get_versioned(ids)
    return [
        EsGetResult(index=store.name, id=i, found=False)
        if doc is None
        else EsGetResult(
            index=store.name,
            id=i,
            found=True,
            source=doc.fields,
            version=doc.version.version,
            seq_no=doc.version.seq_no,
            primary_term=doc.version.primary_term,
        )
        for i, doc in zip(ids, found, strict=True)
    ]


def _shown(request: Request, answer: EsGetResult, source: Any = None) -> EsGetResult:
    """``answer`` with its _source as the query string (or an mget doc's ``_source``) asks:
    false leaves it out, a field list keeps those fields."""
    asked = request.query_params.get("_source", "true") if source is None else source
    if answer.source is None or asked in (True, "true", ""):
        includes = query_list(request, "_source_includes")
    elif asked in (False, "false"):
        return answer.model_copy(update={"source": None})
    else:
        includes = asked if isinstance(asked, list) else [p for p in str(asked).split(",") if p]
    excludes = query_list(request, "_source_excludes")
    if answer.source is None or not (includes or excludes):
        return answer
    return answer.model_copy(update={"source": filtered_source(answer.source, includes, excludes)})


def _dumped(answer: EsGetResult) -> dict[str, Any]:
    return answer.model_dump(by_alias=True, exclude_none=True)


MGET_SUMMARY = "Documents by id, as Elasticsearch's _mget (docs, or ids in the path's index)"


@router.get("/_mget", response_model=EsMgetResponse, summary=MGET_SUMMARY)
@router.post("/_mget", response_model=EsMgetResponse, summary=MGET_SUMMARY)
async def mget(body: EsMgetRequest, request: Request) -> Any:
    return await _mget(request, body, None)


@router.get("/{index}/_mget", response_model=EsMgetResponse, summary=MGET_SUMMARY)
@router.post("/{index}/_mget", response_model=EsMgetResponse, summary=MGET_SUMMARY)
async def index_mget(index: IndexNameInPath, body: EsMgetRequest, request: Request) -> Any:
    return await _mget(request, body, index)


async def _mget(request: Request, body: EsMgetRequest, index: str | None) -> EsMgetResponse:
    """One read per index; a doc of an index that is not there answers its error, as in
    Elasticsearch."""
    refuse_query_string_options(request, TAKEN_READ_PARAMS, hint=_unsupported)
    wanted = _mget_docs(body, index)
    check_write_size(request, len(wanted), "documents asked for")
    by_index: dict[str, list[str]] = defaultdict(list)
    for name, doc_id, _ in wanted:
        by_index[name].append(doc_id)
    found: dict[tuple[str, str], EsGetResult | dict[str, Any]] = {}
    for name, ids in by_index.items():
        try:
            answers = await on_index(request, name, functools.partial(_read, ids))
        except IndexNotFoundError as missing:
            reason = client_message(missing, request.app.state.private_names)
            error = es_error(missing.error_type, reason)
            found.update({(name, i): {"_index": name, "_id": i, "error": error} for i in ids})
            continue
        found.update({(name, answer.id): answer for answer in answers})
    docs = []
    for name, doc_id, source in wanted:
        answer = found[(name, doc_id)]
        shown = answer if isinstance(answer, dict) else _dumped(_shown(request, answer, source))
        docs.append(shown)
    return EsMgetResponse(docs=docs)


def _mget_docs(body: EsMgetRequest, index: str | None) -> list[tuple[str, str, Any]]:
    """(index, id, _source asked) of each document asked for, in order."""
    from semrank.store._base import id_list

    if (body.docs is None) == (body.ids is None):
        raise InvalidInputError('an _mget body takes "docs" or "ids" (one of them)')
    if body.ids is not None:
        if index is None:
            raise InvalidInputError('"ids" needs the index in the path: /{index}/_mget')
        return [(index, doc_id, None) for doc_id in id_list(body.ids)]
    wanted = []
    for number, doc in enumerate(body.docs or [], start=1):
        unknown = set(doc) - {"_index", "_id", "_source"}
        name = doc.get("_index", index)
        if unknown or "_id" not in doc or not isinstance(name, str):
            raise InvalidInputError(
                f"docs[{number}] must give _id (and _index, unless the path names the index), "
                f"and may give _source; got {sorted(doc)}"
            )
        wanted.append((name, id_list([doc["_id"]])[0], doc.get("_source")))
    return wanted


# --- indexes ---------------------------------------------------------------------------------
# Mapping types read as the index's text fields, and those asking for dense vectors (semrank
# embeds the text fields with its own model; vectors a client sends are kept as fields).
TEXT_TYPES = frozenset({"text", "match_only_text", "semantic_text"})
VECTOR_TYPES = frozenset({"dense_vector", "semantic_text"})
DEFAULT_FIELDS = ("title", "text")  # as POST /v1/indexes


async def create_index(
    index: IndexNameInPath, request: Request, body: EsCreateIndexRequest | None = None
) -> EsCreateIndexResponse:
    """``es.indices.create``: the mappings' text properties are the text fields (none: title
    and text); a dense_vector or semantic_text property, or no mappings, embeds with the default
    model, other mappings are BM25 only; settings are taken and not used. An index that exists
    is a 400 resource_already_exists_exception, as Elasticsearch answers."""
    _refuse_write_options(request, TAKEN_WRITE_PARAMS | {"master_timeout"})
    body = body or EsCreateIndexRequest.model_validate({})
    fields, model = _fields_and_model(body.mappings)
    aliases = body.aliases or {}
    for alias, options in aliases.items():
        if options:
            raise InvalidInputError(
                f"alias {alias!r:.60}: alias options ({', '.join(options)}) are not supported; "
                "give each alias as {}"
            )
    try:
        await create_named_index(request, index, fields, "id", model)
    except IndexExistsError as exists:
        raise ResourceExistsError(f"index [{index}] already exists ({exists})") from None
    if aliases:
        await _add_aliases(request, index, list(aliases))
    return EsCreateIndexResponse(index=index)


async def _add_aliases(request: Request, index: str, aliases: list[str]) -> None:
    """Adds the new index's aliases, or drops it again: a create is whole or not at all."""
    from semrank.store import update_aliases

    actions = [{"add": {"index": index, "alias": alias}} for alias in aliases]
    try:
        await on_registry(request, functools.partial(update_aliases, actions))
    except Exception:
        await drop_named_index(request, index)
        raise


def _fields_and_model(mappings: dict[str, Any] | None) -> tuple[tuple[str, ...], str | None]:
    if not mappings:
        return DEFAULT_FIELDS, "default"
    properties = mappings.get("properties") or {}
    if not isinstance(properties, dict):
        raise InvalidInputError("mappings.properties must be an object of field -> mapping")
    types = {
        name: spec.get("type") if isinstance(spec, dict) else None
        for name, spec in properties.items()
    }
    fields = tuple(name for name, kind in types.items() if kind in TEXT_TYPES)
    vectors = any(kind in VECTOR_TYPES for kind in types.values())
    return fields or DEFAULT_FIELDS, "default" if vectors else None


router.add_api_route(
    "/{index}",
    create_index,
    methods=["PUT"],
    route_class_override=IndexProbeRoute,
    response_model=EsCreateIndexResponse,
    summary="Create an index, as Elasticsearch's PUT /{index} (mappings: text fields)",
)


async def delete_index(index: IndexNameInPath, request: Request) -> EsAcknowledged:
    """``es.indices.delete``: drops the index (404 where none)."""
    _refuse_write_options(request, TAKEN_WRITE_PARAMS | {"master_timeout"})
    await drop_named_index(request, index)
    return EsAcknowledged()


router.add_api_route(
    "/{index}",
    delete_index,
    methods=["DELETE"],
    route_class_override=IndexProbeRoute,
    response_model=EsAcknowledged,
    summary="Drop an index, as Elasticsearch's DELETE /{index}",
)
REFRESH_SUMMARY = "A no-op, as Elasticsearch's _refresh: semrank's writes are searchable at once"


@router.post("/_refresh", response_model=EsRefreshResponse, summary=REFRESH_SUMMARY)
@router.get("/_refresh", response_model=EsRefreshResponse, summary=REFRESH_SUMMARY)
async def refresh_all() -> EsRefreshResponse:
    return EsRefreshResponse()


@router.post("/{index}/_refresh", response_model=EsRefreshResponse, summary=REFRESH_SUMMARY)
@router.get("/{index}/_refresh", response_model=EsRefreshResponse, summary=REFRESH_SUMMARY)
async def refresh(index: IndexNameInPath, request: Request) -> EsRefreshResponse:
    await open_index(request, index)  # 404 where there is none
    return EsRefreshResponse()
