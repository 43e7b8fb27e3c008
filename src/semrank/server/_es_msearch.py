"""Elasticsearch's ``_msearch``: several ``_search`` bodies in one NDJSON request, each a
header line (which indexes, and how their names resolve) and a body line (a ``_search`` body).

Each search is read, run and answered as ``POST /{index}/_search`` does it (``read_es_search``,
``run_es_search``); one that fails is an error item of the answer, not a failed request. A
request that cannot be read as header and body lines (not JSON, a header key semrank does not
take) is refused whole, as Elasticsearch refuses it. The request is held to the server's limits
as one: at most ``--max-batch-queries`` searches, their re-rankers' windows together at most
``--max-documents`` (a search past that answers a 413 item), and one ``--timeout`` deadline for
all of them (a search not finished by then answers a 504 item).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import pydantic
from fastapi import Request, Response

from semrank.errors import (
    DeadlineExceededError,
    InvalidInputError,
    RequestTooLargeError,
    SemrankError,
    http_status_for,
)
from semrank.server._errors import client_message, validation_message
from semrank.server._es_body import query_flag
from semrank.server._es_docs import check_ndjson_media_type
from semrank.server._es_router import es_router
from semrank.server._es_routes import (
    EsSearch,
    es_error,
    read_es_search,
    refuse_query_string_options,
    run_es_search,
    say_es_warnings,
    target_options,
)
from semrank.server._es_writes import json_line, ndjson_text
from semrank.server._index_routes import IndexNameInPath
from semrank.server.schemas import EsMsearchResponse, EsSearchRequest

router = es_router()

# A header's keys that change nothing semrank does (one shard, no cache, no throttled or
# hidden indexes, no remote clusters); index, ignore_unavailable, allow_no_indices and
# search_type are read.
IGNORED_HEADER_KEYS = frozenset(
    {"preference", "request_cache", "routing", "expand_wildcards", "ccs_minimize_roundtrips",
     "allow_partial_search_results", "ignore_throttled"}
)  # fmt: skip
TARGET_KEYS = ("ignore_unavailable", "allow_no_indices")
# One shard: a dfs phase (term statistics gathered from every shard first) changes nothing.
SEARCH_TYPES = ("query_then_fetch", "dfs_query_then_fetch")
# _msearch's query-string options taken: those that change nothing semrank answers, the
# headers' defaults (target_options), typed_keys and rest_total_hits_as_int (read_es_search)
# and max_concurrent_searches.
MSEARCH_PARAMS = frozenset(
    {"allow_no_indices", "ignore_unavailable", "expand_wildcards", "ignore_throttled",
     "ccs_minimize_roundtrips", "max_concurrent_shard_requests", "pre_filter_shard_size",
     "routing", "search_type", "typed_keys", "include_named_queries_score", "filter_path",
     "pretty", "human", "error_trace", "max_concurrent_searches", "rest_total_hits_as_int"}
)  # fmt: skip
# Searches of one request run at once by default: one _msearch must not take every thread
# that serves index requests.
DEFAULT_CONCURRENT_SEARCHES = 4
MSEARCH_SUMMARY = "Several searches in one request, as Elasticsearch's _msearch (NDJSON)"


@dataclass(frozen=True, kw_only=True)
class MsearchItem:
    """One search of the request: the indexes it names, their options and its body (or the
    error that refused its body)."""

    index: str
    targets: dict[str, bool]
    body: EsSearchRequest | SemrankError


@router.get("/_msearch", response_model=EsMsearchResponse, summary=MSEARCH_SUMMARY)
@router.post("/_msearch", response_model=EsMsearchResponse, summary=MSEARCH_SUMMARY)
async def msearch(request: Request, response: Response) -> Any:
    """Searches without an index in their header search every index, as ``/_all``."""
    return await _msearch(request, response, "_all")


@router.get("/{index}/_msearch", response_model=EsMsearchResponse, summary=MSEARCH_SUMMARY)
@router.post("/{index}/_msearch", response_model=EsMsearchResponse, summary=MSEARCH_SUMMARY)
async def index_msearch(index: IndexNameInPath, request: Request, response: Response) -> Any:
    """The path's index (or indexes) is searched where a header names none."""
    return await _msearch(request, response, index)


async def _msearch(request: Request, response: Response, index: str) -> EsMsearchResponse:
    refuse_query_string_options(request, MSEARCH_PARAMS, hint=_msearch_param_hint)
    check_ndjson_media_type(request, "_msearch")
    for flag in ("typed_keys", "rest_total_hits_as_int"):  # a bad one refuses the request
        query_flag(request, flag)
    at_once = _max_concurrent_searches(request)
    started = time.perf_counter()
    service = request.app.state.service
    most = service.config.max_batch_queries
    items = parse_msearch(await request.body(), index, target_options(request), most=most)
    reads = _held_to_document_limit(request, [_read(request, item) for item in items])
    deadline = service.deadline(None)  # one for the whole request, as for one search
    gate = asyncio.Semaphore(at_once)
    answered = await asyncio.gather(
        *(
            _answer(request, item, read, deadline, gate)
            for item, read in zip(items, reads, strict=True)
        )
    )
    warnings = list(dict.fromkeys(said for _, found in answered for said in found))
    say_es_warnings(response, warnings)
    took_ms = round((time.perf_counter() - started) * 1000)
    return EsMsearchResponse(took=took_ms, responses=[answer for answer, _ in answered])


def _read(request: Request, item: MsearchItem) -> EsSearch | SemrankError:
    """The item's body read as a ``_search`` body, or the error refusing it."""
    if isinstance(item.body, SemrankError):
        return item.body
    try:
        return read_es_search(request, item.body)
    except SemrankError as refused:
        return refused


def _held_to_document_limit(
    request: Request, reads: list[EsSearch | SemrankError]
) -> list[EsSearch | SemrankError]:
    """The searches whose re-rankers' windows, added in order, stay within --max-documents;
    a search that would take the request past it is refused (a 413 item), as a batch of
    rerank queries is held to the limit together."""
    limit = request.app.state.service.config.max_documents
    total = 0
    held: list[EsSearch | SemrankError] = []
    for number, read in enumerate(reads, start=1):
        if isinstance(read, EsSearch) and total + read.search.reranked > limit:
            read = RequestTooLargeError(
                f"search {number} re-ranks {read.search.reranked} documents, which with the "
                f"{total} of the searches before it exceed this server's limit of {limit} "
                "documents per request; send it in another _msearch request (or raise "
                "--max-documents)"
            )
        elif isinstance(read, EsSearch):
            total += read.search.reranked
        held.append(read)
    return held


async def _answer(
    request: Request,
    item: MsearchItem,
    read: EsSearch | SemrankError,
    deadline: float | None,
    gate: asyncio.Semaphore,
) -> tuple[dict[str, Any], list[str]]:
    """One search's item of the answer (a ``_search`` answer with its status, or its error)
    and its warnings."""
    if isinstance(read, SemrankError):
        return _error_item(request, read), []
    async with gate:
        try:
            left = _ms_left(deadline)  # the request's, or the search's own timeout if shorter
            own = read.search.timeout_ms
            shorter = left if own is None or left is None else min(own, left)
            timed = dataclasses.replace(read.search, timeout_ms=shorter)
            timed_read = dataclasses.replace(read, search=timed)
            answer, warnings = await run_es_search(request, item.index, timed_read, **item.targets)
        except SemrankError as failed:
            return _error_item(request, failed), []
    return {**answer.model_dump(by_alias=True), "status": 200}, warnings


def _ms_left(deadline: float | None) -> int | None:
    """What is left of the request's deadline for a search starting now (None: no deadline)."""
    if deadline is None:
        return None
    left = round((deadline - time.monotonic()) * 1000)
    if left < 1:
        raise DeadlineExceededError(
            "the _msearch request's deadline passed before this search began; send fewer "
            "searches per request (or raise the server's --timeout)"
        )
    return left


def _error_item(request: Request, error: SemrankError) -> dict[str, Any]:
    status = http_status_for(error)
    reason = client_message(error, request.app.state.private_names)
    # Elasticsearch answers a body it cannot take with 400 (semrank's own routes: 422).
    return {"error": es_error(error.error_type, reason), "status": 400 if status == 422 else status}


def _max_concurrent_searches(request: Request) -> int:
    given = request.query_params.get("max_concurrent_searches")
    if given is None:
        return DEFAULT_CONCURRENT_SEARCHES
    if not given.isdigit() or int(given) < 1:
        raise InvalidInputError(
            f"query-string parameter max_concurrent_searches={given!r:.40} must be a positive "
            "integer (the searches of the request run at once)"
        )
    return int(given)


def _msearch_param_hint(name: str) -> str:
    return (
        "not supported by semrank's _msearch; give each search's options in its header line "
        "(index, ignore_unavailable, allow_no_indices) or its body (size, from, _source, ...)"
    )


# --- reading the request ---------------------------------------------------------------------


def parse_msearch(
    body: bytes, index: str, defaults: dict[str, bool], *, most: int
) -> list[MsearchItem]:
    """The searches of an NDJSON ``_msearch`` body: a header line (an empty line or ``{}``:
    the path's index, the query string's options) then a body line, for each. A body that is
    no ``_search`` body is that search's error; anything else malformed refuses the request,
    naming its line; more than ``most`` searches refuse it before any line is read."""
    lines = [line.rstrip("\r") for line in ndjson_text(body, "_msearch").split("\n")]
    while lines and not lines[-1].strip():  # the final newline's, and any blank lines after
        lines.pop()
    # Counted from the lines, not the searches read: reading 100,000 tiny ones (a body within
    # --max-body-bytes) held the event loop for seconds only to refuse them.
    if (len(lines) + 1) // 2 > most:
        raise RequestTooLargeError(
            f"{(len(lines) + 1) // 2} searches exceed this server's limit of {most} per "
            "_msearch request; send them in several requests (or raise --max-batch-queries)"
        )
    if not lines:
        raise InvalidInputError(
            "the _msearch request body holds no searches; send NDJSON: a header line "
            '(e.g. {"index": "docs"}), then a _search body line, for each search'
        )
    if len(lines) % 2:
        raise InvalidInputError(
            f"line {len(lines)} of the _msearch body is a header without a body line after it; "
            'each search is a header line (e.g. {"index": "docs"} or {}) and a body line'
        )
    return [
        _item(number, lines[number - 1], lines[number], index, defaults)
        for number in range(1, len(lines), 2)
    ]


def _item(
    number: int, header: str, body: str, index: str, defaults: dict[str, bool]
) -> MsearchItem:
    meta = _json_object(number, header, "header") if header.strip() else {}
    named, targets = _header(number, meta, defaults)
    source = _json_object(number + 1, body, "search body") if body.strip() else {}
    try:
        search: EsSearchRequest | SemrankError = EsSearchRequest.model_validate(source)
    except pydantic.ValidationError as invalid:
        said = validation_message(invalid.errors(), search="elasticsearch")
        search = InvalidInputError(f"line {number + 1}: {said}")
    if isinstance(search, EsSearchRequest) and search.pit is not None:
        # Run as _search runs it, it was a search of the header's indexes without the pit.
        search = InvalidInputError(
            f"line {number + 1}: pit is not supported in _msearch; page a point in time with "
            "POST /_search (its body's pit), one request a page"
        )
    return MsearchItem(index=named or index, targets=targets, body=search)


def _json_object(number: int, text: str, what: str) -> dict[str, Any]:
    value = json_line(number, text, "_msearch")
    if not isinstance(value, dict):
        raise InvalidInputError(
            f"line {number} of the _msearch body must be a JSON object (a {what}), got "
            f"{text.strip()[:100]}"
        )
    return value


def _header(
    number: int, meta: dict[str, Any], defaults: dict[str, bool]
) -> tuple[str | None, dict[str, bool]]:
    """The indexes a header names (None: the path's) and their options."""
    targets = dict(defaults)
    for key, value in meta.items():
        if key in TARGET_KEYS:
            targets[key] = _flag(number, key, value)
        elif key == "search_type" and value not in SEARCH_TYPES:
            raise InvalidInputError(
                f"line {number}: search_type {value!r:.60} is not supported; semrank takes "
                f"{' or '.join(SEARCH_TYPES)} (the same, on its one shard)"
            )
        elif key not in ("index", "indices", "search_type") and key not in IGNORED_HEADER_KEYS:
            raise InvalidInputError(
                f"line {number}: the header's {key!r:.60} is not supported; a header takes "
                "index, ignore_unavailable, allow_no_indices and search_type (and options "
                "that change nothing on semrank's one shard: "
                f"{', '.join(sorted(IGNORED_HEADER_KEYS))})"
            )
    return _header_index(number, meta.get("index", meta.get("indices"))), targets


def _header_index(number: int, named: object) -> str | None:
    """A header's ``index``: a name (or Elasticsearch's multi-target syntax) or a list of them."""
    if named is None or named == "" or named == []:
        return None
    if isinstance(named, str):
        return named
    if isinstance(named, list) and all(isinstance(name, str) and name for name in named):
        return ",".join(named)
    raise InvalidInputError(
        f"line {number}: the header's index must be an index name or a list of them, got "
        f"{named!r:.80}"
    )


def _flag(number: int, key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidInputError(f"line {number}: the header's {key} must be true or false")
