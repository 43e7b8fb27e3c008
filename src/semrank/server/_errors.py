"""Every error becomes ``{"error": ..., "error_type": ...}`` with its status from HTTP_STATUS.

User errors (4xx) are logged as one line without a traceback; only unexpected failures (5xx)
carry one.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Scope, Send

from semrank._checks import RepeatedKeyError
from semrank.errors import (
    AuthenticationError,
    BackendUnavailableError,
    DeadlineExceededError,
    InvalidInputError,
    OverloadedError,
    SemrankError,
    http_status_for,
)
from semrank.server._auth import key_refusal
from semrank.server._logging import LOGGER_NAME, log_fields
from semrank.server.schemas import DOCUMENTS_SHAPE, TEI_SHAPE

logger = logging.getLogger(LOGGER_NAME)

# Load and time limits doing their job, and a service or package the machine lacks (a database
# that is down: every request of an outage logged 80 lines of traceback at error level): worth
# a warning naming the cause, never a traceback.
OPERATIONAL_ERRORS = (OverloadedError, DeadlineExceededError, BackendUnavailableError)
HTTP_ERROR_TYPES = {404: "not_found", 405: "method_not_allowed", 501: "not_implemented"}
# FastAPI's words for a JSON body it could not decode: not UTF-8 (Latin-1 text, compressed
# bytes...), or past the JSON parser's limits (nesting over ~1,000 levels, an integer of
# thousands of digits).
FASTAPI_UNREADABLE_BODY = "There was an error parsing the body"
UNREADABLE_BODY = (
    "the request body could not be parsed as JSON: it must be UTF-8 text (not compressed), "
    "nested at most about 1,000 levels deep, with numbers of at most 4,300 digits; send such a "
    "JSON object with Content-Type: application/json"
)


# Messages quote the values they refuse; a megabyte model name must not come back three times
# over (error, message, detail) nor fill the log.
MAX_MESSAGE_CHARS = 2000


def bounded(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    cut = len(message) - MAX_MESSAGE_CHARS
    return f"{message[:MAX_MESSAGE_CHARS]}... ({cut} more characters)"


def error_body(message: str, error_type: str) -> dict[str, str]:
    """Every error's JSON: the text again as ``message`` and ``detail`` for vendors' clients."""
    # A message may quote a client's text, lone surrogates included, which UTF-8 cannot carry:
    # escape them rather than fail to answer at all.
    text = bounded(message).encode("utf-8", "backslashreplace").decode("utf-8")
    return {"error": text, "error_type": error_type, "message": text, "detail": text}


async def send_error(
    send: Send, error: SemrankError, *, close: bool = False, retry_after_s: int | None = None
) -> None:
    """Answer ``error`` on a raw ASGI ``send``, where no FastAPI handler runs (the edge's body
    limit, a request cancelled at shutdown): the same body, status and Retry-After as every
    other error."""
    body = json.dumps(error_body(str(error), error.error_type)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    status = http_status_for(error)
    if retry_after_s is not None and status in (429, 503):
        headers.append((b"retry-after", str(retry_after_s).encode()))
    if close:
        headers.append((b"connection", b"close"))
    start = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body})


# Elasticsearch's _search, _count (with an index, or without: refused there), scroll and
# point in time (_es_scroll), the alias
# routes, GET / and HEAD /{index} (es.indices.exists): see _es_routes; the document routes,
# PUT and DELETE /{index}: see _es_docs; _msearch: _es_msearch; the cluster and index probes
# (GET /{index} among them): _es_probes, the _cat tables: _es_cat, the APIs refused: _es_unserved.
_ELASTICSEARCH_PATH = re.compile(
    r"^/(?:(?:[^/]+/)?_(?:search|count|bulk|mget|refresh|pit|msearch|mapping)"
    r"|_search/scroll(?:/[^/]+)?|_reindex|[^/]+/_(?:delete|update)_by_query"
    r"|_alias(?:es)?(?:/[^/]+)?|[^/]+/_(?:stats|settings)(?:/.*)?"
    r"|_(?:cat|cluster|nodes|stats|xpack|license|settings|ingest|security|template"
    r"|index_template|component_template)(?:/.*)?"
    r"|[^/]+/_alias(?:/[^/]+)?|[^/]+/_doc(?:/[^/]+)?|[^/]+/_(?:create|update)/[^/]+)?$"
)
_ELASTICSEARCH_INDEX = re.compile(r"^/[^/]+$")
_ELASTICSEARCH_INDEX_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})


def route_path(scope: Scope) -> str:
    """The path the app routes on: mounted in another app (``host.mount("/rerank", app)``),
    the scope's path still starts with the mount's prefix, which its ``root_path`` holds."""
    path, prefix = scope["path"], scope.get("root_path", "")
    if not prefix or not path.startswith(prefix) or path[len(prefix) : len(prefix) + 1] not in "/":
        return str(path)
    return str(path[len(prefix) :]) or "/"


def is_elasticsearch_path(path: str, method: str, scope: Scope | None = None) -> bool:
    """Whether a request is on Elasticsearch's routes. ``scope``: the request's, whose app's
    routes tell a ``PUT`` / ``DELETE /{index}`` from one on a path of semrank's own (its 405
    stays semrank's: ``PUT /health``)."""
    # First: PUT /_bulk (elasticsearch-py 9's helpers.bulk) is one segment but no index.
    if _ELASTICSEARCH_PATH.match(path) is not None:
        return True
    if method in _ELASTICSEARCH_INDEX_METHODS and _ELASTICSEARCH_INDEX.match(path) is not None:
        return method == "HEAD" or not _own_route_has(scope)
    return _ELASTICSEARCH_PATH.match(path) is not None


def _own_route_has(scope: Scope | None) -> bool:
    state = getattr(scope.get("app"), "state", None) if scope is not None else None
    routes = getattr(state, "declared_routes", ())
    as_get = {**scope, "method": "GET"} if scope is not None else {}
    page_paths = getattr(state, "page_paths", ())
    if (
        scope is not None
        and scope.get("method") in ("GET", "HEAD")
        and route_path(scope) in page_paths
    ):
        return True  # FastAPI's own pages (GET /docs), not an index's
    # A route other than the index routes of this path (which match every one-segment path).
    return any(
        route.path != "/{index}" and route.matches(as_get)[0] != Match.NONE for route in routes
    )


def answered_status(request: Request, status: int) -> int:
    """Elasticsearch answers a body it cannot take with 400, which elasticsearch-py raises as
    ``BadRequestError`` (a 422 is a bare ``ApiError`` there): so do its routes here."""
    path = route_path(request.scope)
    elasticsearch = is_elasticsearch_path(path, request.method, request.scope)
    return 400 if status == 422 and elasticsearch else status


def error_response(
    status: int, message: str, error_type: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(message, error_type), status, headers=headers)


def client_message(error: SemrankError, private_names: Sequence[tuple[str, str]]) -> str:
    """What a client is told of ``error``: a client needs an index's name, not its place (the
    server's folder or database, ``private_names``: (text, shown) pairs)."""
    message = error.client_message or str(error)
    for private, shown in private_names:
        message = message.replace(private, shown)
    return message


def install_error_handlers(
    app: FastAPI, *, retry_after_s: int, private_names: Sequence[tuple[str, str]] = ()
) -> None:
    """``private_names``: (text, shown) pairs, the server's index folder or database and what
    answers name them as (``<index home>``, ``<index store>``); the log keeps them."""

    async def on_semrank_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SemrankError)
        status = answered_status(request, http_status_for(exc))
        _log(request, status, exc)
        headers: dict[str, str] = {}
        if isinstance(exc, OverloadedError) or status == 503:  # busy, draining, storage down
            headers["Retry-After"] = str(retry_after_s)
        if isinstance(exc, AuthenticationError):
            headers["WWW-Authenticate"] = "Bearer"
        message = client_message(exc, private_names)
        return error_response(status, message, exc.error_type, headers)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        refused = await key_refusal(request)
        if refused is not None:
            return await on_semrank_error(request, refused)
        content_type = request.headers.get("content-type", "")
        path = route_path(request.scope)  # mounted in another app: without its prefix
        search = "elasticsearch" if path.endswith("/_search") else path.endswith("/search")
        message = validation_message(exc.errors(), content_type=content_type, search=search)
        if isinstance(exc.__cause__, RepeatedKeyError):  # UniqueKeysRoute's refusal
            message = f"the request body holds {exc.__cause__.msg}"
        if path == "/rerank" and _sent_no_texts(exc.errors()):
            message = f"{TEI_ROUTE_HINT}; {message}"
        if path == "/v2/rerank" and _sent_objects(exc.errors()):
            message = f"{V2_STRINGS_HINT}; {message}"
        error = InvalidInputError(message)
        return await on_semrank_error(request, error)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        refused = await key_refusal(request) if exc.status_code == 400 else None
        if refused is not None:  # a body FastAPI could not read, sent without the key
            return await on_semrank_error(request, refused)
        _log(request, exc.status_code, exc)
        error_type = HTTP_ERROR_TYPES.get(exc.status_code, "http_error")
        message = UNREADABLE_BODY if exc.detail == FASTAPI_UNREADABLE_BODY else str(exc.detail)
        headers = exc.headers
        if exc.status_code == 404 and exc.detail == "Not Found":  # no such route, not a resource
            message = f"no route {request.method} {request.url.path}; {ROUTES_HINT}"
        allowed = ", ".join(allowed_methods(request)) if exc.status_code == 405 else ""
        if allowed:
            message = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
            headers = {**(headers or {}), "Allow": allowed}
        return error_response(exc.status_code, message, error_type, headers)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unhandled error", exc_info=exc, extra=log_fields(**_request_fields(request)))
        return error_response(500, "internal server error; see the server log", "internal_error")

    app.add_exception_handler(SemrankError, on_semrank_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on this path: Starlette's 405 names only the first
    matching route's (GET, where POST /v1/indexes is another route), and RFC 9110 wants all."""
    methods: set[str] = set()
    for route in request.app.state.declared_routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    if "GET" in methods:  # answered wherever GET is (app.HeadAsGet)
        methods.add("HEAD")
    return sorted(methods)


LONE_SURROGATE = (
    "holds a lone surrogate (an unpaired \\ud800-\\udfff escape), which is not text; text "
    "must be valid Unicode: read files as UTF-8 and send surrogate pairs whole"
)
# A client pointed at the wrong base URL (Voyage's and Jina's clients add /rerank to theirs).
ROUTES_HINT = (
    "the rerank routes are POST /v2/rerank (Cohere v2), POST /v1/rerank (Cohere v1, Jina, "
    "Together, Voyage), POST /rerank (TEI) and POST /v1/rerank/batch; searches (Elasticsearch "
    "retriever trees) are POST /v1/indexes/{name}/search, and POST /{index}/_search for "
    "Elasticsearch's clients; GET /v1/models lists the models; GET /docs lists every route"
)
TEI_ROUTE_HINT = (
    "POST /rerank takes text-embeddings-inference's 'texts', or 'documents' as POST /v1/rerank "
    "does (Cohere, Jina, Together, Voyage)"
)


V2_STRINGS_HINT = (
    "POST /v2/rerank takes documents as strings, as Cohere's v2 API does; send objects (with "
    "rank_fields) to POST /v1/rerank"
)


def _sent_objects(errors: Sequence[Any]) -> bool:
    """Whether a body at POST /v2/rerank sent a document as an object (older Cohere v2 SDKs)."""
    return any(
        tuple(error.get("loc", ()))[:2] == ("body", "documents")
        and isinstance(error.get("input"), dict)
        for error in errors
    )


def _sent_no_texts(errors: Sequence[Any]) -> bool:
    """Whether a body at POST /rerank sent neither TEI's 'texts' nor 'documents'."""
    return any(
        tuple(error.get("loc", ())) == ("body", TEI_SHAPE, "texts")
        and error.get("type") == "missing"
        for error in errors
    )


# Any other key an Elasticsearch _search body may hold (track_total_hits, highlight, ...).
SEARCH_KEYS_HINT = (
    "not supported by semrank's search, whose body takes query, retriever, size, from, "
    "filter, return_documents, timeout_ms, highlight, aggs, sort, search_after, "
    "track_scores, post_filter and collapse"
)
# Over HTTP, leaving documents out is a key of the body.
_SOURCE_HINT = "hits carry whole documents; send return_documents: false to leave them out"


# Elasticsearch's own _search body (POST /{index}/_search) takes fewer keys.
ES_SEARCH_KEYS_HINT = (
    "not supported by semrank's Elasticsearch _search, whose body takes retriever (or the "
    "classic query, knn and rank), size, from, _source, fields, highlight, aggs (or "
    "aggregations), sort, search_after, track_scores, track_total_hits, min_score, timeout, "
    "version, seq_no_primary_term, pit, post_filter and collapse (explain and profile false, "
    "stored_fields _none_)"
)
ES_SOURCE_SHAPES = (
    'give true, false, a field ("title"), a list of them (["title", "meta.*"]) or '
    '{"includes": [...], "excludes": [...]}'
)
_ES_SEARCH_KEY_HINTS = {
    # Only the query string's q (Lucene syntax) is named so: the body's query is taken.
    "query": 'send the query in the JSON body instead, e.g. "query": {"match": {"text": '
    '"..."}} (Lucene query-string syntax is not supported)',
    "return_documents": "send _source: false to leave documents out",
    "docvalue_fields": 'semrank has no doc values; ask for the fields with "fields": [...] '
    '(or "_source": [...])',
    "terminate_after": "semrank does not stop a search early; size caps the hits returned and "
    "track_total_hits the hits counted",
    "suggest": "semrank has no suggesters; search with a match query, or a knn retriever for "
    "near meanings",
    "script_fields": 'semrank runs no scripts; ask for the document\'s fields with "fields" '
    'or "_source"',
    "runtime_mappings": "semrank has no mappings to add runtime fields to; index the value as "
    "a field of the documents",
    "rescore": 'a second-stage re-ranking is a retriever: "retriever": '
    '{"text_similarity_reranker": {"retriever": {...}, "field": ..., "inference_text": ...}}',
    "indices_boost": "every index's scores count alike; search each index apart (e.g. in one "
    "_msearch) to weigh them",
}


def search_key_hint(key: str, search: bool | str) -> str:
    """What to send instead of an Elasticsearch _search key, in the pipeline's words (the
    library and the CLI say the same)."""
    from semrank.pipeline import QUERY_DSL_HINT, SEARCH_KEY_HINTS

    if search == "elasticsearch":
        hints = {**SEARCH_KEY_HINTS, "query": QUERY_DSL_HINT, **_ES_SEARCH_KEY_HINTS}
        return hints.get(key, ES_SEARCH_KEYS_HINT)
    return _SOURCE_HINT if key == "_source" else SEARCH_KEY_HINTS.get(key, SEARCH_KEYS_HINT)


def _query_dsl_hint() -> str:
    from semrank.pipeline import QUERY_DSL_HINT

    return f"query is the search text, a string; {QUERY_DSL_HINT}"


def validation_message(
    errors: Sequence[Any], *, content_type: str = "application/json", search: bool | str = False
) -> str:
    """``"query: Field required; top_n: Input should be greater than or equal to 1"``.
    ``search``: a search body's, semrank's (True) or Elasticsearch's (``"elasticsearch"``)."""
    parts = []
    errors = _one_per_union(errors)
    for error in errors[:5]:
        # Without the tag of the POST /rerank body shape read (it names no field).
        loc = tuple(p for p in error.get("loc", ()) if p not in (TEI_SHAPE, DOCUMENTS_SHAPE))
        # A body that is there but not JSON (no body at all: "Field required" says it).
        # As FastAPI reads a body: application/json and */*+json only (text/json is text).
        media = content_type.split(";")[0].strip().lower()
        is_json = media == "application/json" or media.endswith("+json")
        not_json = error.get("type") != "missing" and not is_json
        if loc == ("body",) and not_json:
            # FastAPI reads a body it was not told is JSON as a string: say what to send.
            sent = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
            parts.append(
                f"the request body was sent with {sent}; send a JSON object with "
                "Content-Type: application/json"
            )
            continue
        if error.get("type") == "json_invalid":  # its loc is ("body", character offset)
            # json's own reasons may end in "at" ("Unterminated string starting at").
            reason = str(error.get("ctx", {}).get("error", "invalid JSON")).removesuffix(" at")
            offset = loc[-1] if loc else "?"
            control = " (a tab or line break inside a string is written \\t or \\n)"
            parts.append(
                f"the request body is not valid JSON ({reason} at character {offset})"
                f"{control if 'control character' in reason else ''}; "
                "send a JSON object with Content-Type: application/json"
            )
            continue
        location = [str(p) for p in loc if p != "body"]
        where = ".".join(location) or "body"
        if error.get("type") == "extra_forbidden":  # pydantic's "Extra inputs are not permitted"
            top_level = search and len(location) == 1
            hint = search_key_hint(location[0], search) if top_level else ""
            parts.append(f"{where}: unknown key; {hint or 'check its spelling'}")
            continue
        if error.get("type") == "string_unicode":  # pydantic's "unable to parse raw data"
            parts.append(f"{where}: {LONE_SURROGATE}")
            continue
        if search == "elasticsearch" and location[:1] == ["_source"]:  # one error per shape
            parts.append(f"_source: {ES_SOURCE_SHAPES}")
            continue
        if search and location == ["query"] and error.get("type") == "string_type":
            parts.append(f"query: {_query_dsl_hint()}")  # Elasticsearch's body shape
            continue
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


# pydantic names the member of a union it tried in the location ("documents.0.str",
# "chunking.ChunkingOptions.top_k"): a type, never a field of ours (those are snake_case).
_UNION_MEMBER = re.compile(r"str|int|float|bool|none|[A-Z]\w*|[\w-]+\[.*\]")


def _one_per_union(errors: Sequence[Any]) -> list[Any]:
    """Union errors as a client reads them, at the value's own location: where the value
    matched a member's type, that member's errors inside it ("chunking.top_k: ..."); else one
    error saying what each member wanted ("documents.0: Input should be a valid string, or a
    JSON object; got a list"). pydantic gives one per member, named."""
    out: list[Any] = []
    unions: dict[tuple[Any, ...], tuple[list[Any], list[str]]] = {}  # loc -> (inner, wanted)
    parents = _union_parents(errors)
    for error in errors:
        loc = tuple(error.get("loc", ()))
        at = _member_at(error)
        if at is None or loc[:at] not in parents:
            out.append(error)
            continue
        if loc[:at] not in unions:
            unions[loc[:at]] = ([], [])
            out.append(loc[:at])  # a placeholder, filled in below
        inner, wanted = unions[loc[:at]]
        if loc[at + 1 :]:
            inner.append({**error, "loc": loc[:at] + loc[at + 1 :]})
        else:
            wanted.append(str(error.get("msg", "")).removeprefix("Input should be "))
    merged: list[Any] = []
    for item in out:
        if not isinstance(item, tuple):
            merged.append(item)
            continue
        inner, wanted = unions[item]
        if inner or not wanted:
            merged.extend(inner)
            continue
        members = ", or ".join(_JSON_WORDS.get(want, want) for want in wanted)
        first = next(e for e in errors if tuple(e.get("loc", ()))[: len(item)] == item)
        got = _json_kind(first.get("input"))
        merged.append({**first, "loc": item, "msg": f"Input should be {members}; got {got}"})
    return merged


# pydantic's words for a JSON object.
_JSON_WORDS = {
    "a valid dictionary": "a JSON object",
    "a valid dictionary or object to extract fields from": "a JSON object",
}


def _member_at(error: Any) -> int | None:
    """Where a union member's name may stand in ``error``'s location: never at the end of an
    unknown key's, which is the client's own key ("Fields", "TopN")."""
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "extra_forbidden":
        loc = loc[:-1]
    return next((i for i, part in enumerate(loc) if i and _is_member(part)), None)


def _union_parents(errors: Sequence[Any]) -> set[tuple[Any, ...]]:
    """Locations of the unions among ``errors``: pydantic names each member it tried, so a
    union's location holds two or more names after it (a field spelt like a type, one)."""
    tags: dict[tuple[Any, ...], set[Any]] = {}
    for error in errors:
        at = _member_at(error)
        if at is not None:
            loc = tuple(error.get("loc", ()))
            tags.setdefault(loc[:at], set()).add(loc[at])
    return {parent for parent, names in tags.items() if len(names) > 1}


def _is_member(part: object) -> bool:
    return isinstance(part, str) and _UNION_MEMBER.fullmatch(part) is not None


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    kinds: dict[type, str] = {list: "a list", dict: "an object", str: "a string"}
    return kinds.get(type(value), "another type")


def _request_fields(request: Request) -> dict[str, object]:
    return {
        "request_id": getattr(request.state, "request_id", None),
        "method": request.method,
        "path": request.url.path,
    }


def _log(request: Request, status: int, exc: Exception) -> None:
    fields = _request_fields(request) | {"status": status, "error": bounded(str(exc))}
    if isinstance(exc, OPERATIONAL_ERRORS):
        logger.warning("request not served", extra=log_fields(**fields))
    elif status >= 500:
        logger.error("request failed", exc_info=exc, extra=log_fields(**fields))
    else:
        logger.info("request rejected", extra=log_fields(**fields))
