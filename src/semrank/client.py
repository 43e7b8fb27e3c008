"""A small client for a semrank server, sync and async (httpx), covering semrank's extras.

>>> from semrank.client import SemrankClient
>>> with SemrankClient("http://127.0.0.1:8000") as client:
...     response = client.rerank("what is a flea", ["Fleas are insects.", "Paris is in France."])
...     response.results[0].index
0

Any Cohere-compatible SDK works against the server too; this client adds min_score, chunking,
deadlines with fail_open, per-result truncation and chunk facts, the batch endpoint and index
search (index administration is over HTTP or the CLI). Errors come back as ``semrank.errors``
exceptions (the class the server raised), with ``status_code`` and, for 429 / 503,
``retry_after`` in seconds (a dated one counted from the answer's ``Date``, so this machine's
clock does not matter; the client does not retry); a server that cannot be reached is a
``SemrankError`` and a client timeout a ``DeadlineExceededError`` (both with ``status_code``
None), never a raw httpx exception. ``timeout`` bounds each wait (connect, each read), as
httpx's does. A redirect is not followed (the API key would go along): it is a ``SemrankError``
naming where it points, and ``ready()`` is True only when a semrank server says so. Options
are checked by name: a misspelt one is an ``InvalidInputError``, not a field the server would
ignore.
Arguments that cannot be sent (NaN, a lone surrogate, a set...) are an ``InvalidInputError``
before anything is sent; numpy scalars (``np.int64(3)``, ``np.float32(0.5)``) are sent as the
Python numbers they hold. A client pickles (a ``spawn`` pool, ``ProcessPoolExecutor``,
``copy.deepcopy``) with its URL, key and timeout; the copy opens its own connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import email.utils
import math
import numbers
import os
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import quote

try:
    import httpx
except ModuleNotFoundError as _missing:  # a runtime-only install has no HTTP client
    raise ModuleNotFoundError(
        "semrank.client needs httpx: pip install 'semrank[client]'", name="httpx"
    ) from _missing

from semrank import errors
from semrank._checks import is_finite_number, require_collection, require_unicode

__all__ = [
    "AsyncSemrankClient",
    "BatchResponse",
    "ChunkSpan",
    "RerankHit",
    "RerankResponse",
    "SemrankClient",
]

Document = str | dict[str, Any]
DEFAULT_TIMEOUT_S = 60.0
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class ChunkSpan:
    """``field``: with several rank_fields, the field holding most of the chunk (offsets into
    it)."""

    index: int
    start: int
    end: int
    field: str | None = None


@dataclass(frozen=True, kw_only=True)
class RerankHit:
    index: int
    relevance_score: float
    document: Document | None
    tokens: int
    truncated: bool
    num_chunks: int = 1
    chunk: ChunkSpan | None = None
    pruned: bool = False  # a cascade's first stage ranked it out; the model never read it


@dataclass(frozen=True, kw_only=True)
class RerankResponse:
    id: str
    model: str
    results: list[RerankHit]
    reranked: bool  # False: the deadline passed and fail_open returned the input order
    input_tokens: int
    # What the server says of how it read the request (a query cut to fit the model).
    warnings: list[str] = dataclasses.field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class BatchResponse:
    id: str
    model: str
    results: list[list[RerankHit]]  # one list per query, in request order
    reranked: bool  # every query's; see reranked_by_query for which fell back
    input_tokens: int
    # Per query: False where its deadline passed and fail_open returned the input order.
    reranked_by_query: list[bool] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)  # every query's, in order


# The server's fields (tests/test_client_sdk.py checks them against its request schemas): the
# server ignores unknown fields, as vendors' clients need, so a misspelt option would be lost.
RERANK_OPTIONS = frozenset({
    "model", "top_n", "top_k", "rank_fields", "return_documents", "max_tokens_per_doc",
    "max_chunks_per_doc", "truncation", "min_score", "chunking", "raw_scores", "timeout_ms",
    "fail_open",
})  # fmt: skip
BATCH_OPTIONS = frozenset({
    "model", "top_n", "min_score", "rank_fields", "return_documents", "max_tokens_per_doc",
    "chunking", "raw_scores", "timeout_ms", "fail_open",
})  # fmt: skip
CHUNKING_OPTIONS = frozenset(
    {"enabled", "overlap_tokens", "aggregation", "top_k", "max_chunks", "heading_tokens"}
)


def _options(known: frozenset[str], **options: Any) -> dict[str, Any]:
    for name in options:
        if name not in known:
            raise errors.InvalidInputError(
                f"unknown option {name!r}; the options are: {', '.join(sorted(known))}"
            )
    chunking = options.get("chunking")
    if isinstance(chunking, Mapping):
        for name in chunking:
            if name not in CHUNKING_OPTIONS:
                raise errors.InvalidInputError(
                    f"unknown chunking option {name!r}; the options are: "
                    f"{', '.join(sorted(CHUNKING_OPTIONS))}"
                )
    return {name: value for name, value in options.items() if value is not None}


def _python_scalar(value: object) -> object:
    """A numpy scalar (``np.int64`` from argmax, ``np.float32`` scores) as the Python number
    it holds, which json can write; checked by module so that numpy is not imported here."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return value.item()  # type: ignore[attr-defined]
    return value


def _json_ready(value: object, where: str) -> Any:
    """``value`` as JSON the server can read, or an error naming ``where`` (``min_score``,
    ``documents[2]``): json itself would raise TypeError on numpy numbers, ValueError on NaN
    and UnicodeEncodeError on a lone surrogate, none of which name the argument."""
    value = _python_scalar(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        require_unicode(value, where)
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        if not is_finite_number(value):
            raise errors.InvalidInputError(
                f"{where} must be a finite number, got {value!r}; JSON cannot carry NaN or "
                "infinity: pass a real number, or leave the option out"
            )
        return float(value)
    if isinstance(value, Mapping):
        return {_json_key(key, where): _json_ready(v, f"{where}.{key}") for key, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise errors.InvalidInputError(
        f"{where} cannot be sent as JSON: got {type(value).__name__} ({value!r:.60}); pass "
        "strings, numbers, booleans, None, lists and dicts (numpy arrays: .tolist())"
    )


def _json_key(key: object, where: str) -> str:
    if not isinstance(key, str):
        raise errors.InvalidInputError(
            f"{where} has a field name {key!r} of type {type(key).__name__}; JSON field names "
            "are strings"
        )
    require_unicode(key, f"{where} (a field name)")
    return key


def _json_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """Each top-level field made JSON-ready under its own name (``query``, ``top_n``...)."""
    ready = {}
    for name, value in body.items():
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)  # e.g. the library's ChunkingConfig as chunking=
        try:
            ready[name] = _json_ready(value, name)
        except RecursionError:
            raise errors.InvalidInputError(
                f"{name} nests too deeply to send (the server reads JSON up to about 1,000 "
                "levels); flatten it"
            ) from None
    return ready


def _documents(documents: object) -> list[Any]:
    """A list of documents; a lone string (or dict) would otherwise be sent letter by letter."""
    require_collection(
        documents,
        expected="documents must be a list of strings or objects",
        hint="wrap a single document in a list: [document]",
    )
    return list(cast(Sequence[Any], documents))


def _rerank_body(query: str, documents: object, options: Mapping[str, Any]) -> dict[str, Any]:
    # The shape this client reads, named: Voyage's top_k or truncation would otherwise get
    # Voyage's shape, and a request naming none gets both shapes (twice the bytes).
    body = {
        "query": query,
        "documents": _documents(documents),
        **_options(RERANK_OPTIONS, **options),
    }
    return _json_body({**body, "response_format": "cohere"})


# What one query of a batch may set for itself (the server's BatchQuery).
BATCH_QUERY_OPTIONS = frozenset({"top_n", "min_score"})
BatchItem = tuple[str, Sequence[Document]] | tuple[str, Sequence[Document], Mapping[str, Any]]


def _batch_body(queries: object, options: Mapping[str, Any]) -> dict[str, Any]:
    hint = (
        'pass [(query, documents), ...], e.g. [("what do fleas eat", ["doc 1", "doc 2"])], '
        'or (query, documents, {"top_n": 3}) for one query\'s own top_n / min_score'
    )
    require_collection(queries, expected="queries must be a list of (query, documents)", hint=hint)
    items = []
    for group in cast(Sequence[Any], queries):
        sized = not isinstance(group, str | bytes) and isinstance(group, Sequence)
        options_given = sized and len(group) == 3 and isinstance(group[2], Mapping)
        if not sized or len(group) != (3 if options_given else 2):
            raise errors.InvalidInputError(
                f"each batch item must be a (query, documents) pair, got {group!r:.60}; {hint}"
            )
        own = _options(BATCH_QUERY_OPTIONS, **_named(group[2])) if options_given else {}
        items.append({"query": group[0], "documents": _documents(group[1]), **own})
    return _json_body({"queries": items, **_options(BATCH_OPTIONS, **options)})


def _named(options: Mapping[Any, Any]) -> dict[str, Any]:
    """A batch item's options as keywords (a non-string key was Python's raw TypeError)."""
    for key in options:
        if not isinstance(key, str):
            raise errors.InvalidInputError(
                f"a batch item's option names must be strings, got {key!r:.40}; e.g. "
                '(query, documents, {"top_n": 3})'
            )
    return dict(options)


def _search_request(index: object, body: object) -> tuple[str, dict[str, Any]]:
    """The path and JSON body of ``POST /v1/indexes/{index}/search``."""
    # str(None) would search an index called "None"; "." and ".." would be resolved away by
    # URL normalization and post to another route.
    if not isinstance(index, str) or not index.strip() or index in {".", ".."} or "/" in index:
        raise errors.InvalidInputError(
            f"index must be the name of an index (a non-empty string without '/'), got "
            f'{index!r:.60}; e.g. client.search("docs", {{"query": "fleas"}})'
        )
    require_unicode(index, "index")
    if not isinstance(body, Mapping):
        raise errors.InvalidInputError(
            f"the search body must be a dict such as {{'query': 'fleas', 'retriever': "
            f"'bm25+rerank', 'size': 10}}, got {type(body).__name__} ({body!r:.60})"
        )
    return f"/v1/indexes/{quote(index, safe='')}/search", _json_body(body)


# The deepest hit a search pages to (from + size), as the server's (Elasticsearch's
# index.max_result_window).
MAX_RESULT_WINDOW = 10_000
DEFAULT_PAGE_SIZE = 100


@dataclass(frozen=True, kw_only=True)
class _PagedSearch:
    """``iter_hits``' search: its path, body without from / size, first hit and page size."""

    path: str
    body: dict[str, Any]
    start: int
    page_size: int

    def page(self, start: int) -> dict[str, Any]:
        """The body of the page from ``start``, cut to end at the window's last hit."""
        return {**self.body, "from": start, "size": min(self.page_size, MAX_RESULT_WINDOW - start)}


def _paged_search(index: object, body: object, page_size: object) -> _PagedSearch:
    """Checked before the first page is asked for: a body's ``size`` is the page size (unless
    ``page_size`` is given) and its ``from`` the first hit."""
    path, checked = _search_request(index, body)
    size = checked.pop("size", DEFAULT_PAGE_SIZE)
    size = size if page_size is None else page_size
    start = checked.pop("from", 0)
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_RESULT_WINDOW:
        raise errors.InvalidInputError(
            f"page_size (or the body's size) must be an integer from 1 to {MAX_RESULT_WINDOW:,}, "
            f"got {size!r:.60}"
        )
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < MAX_RESULT_WINDOW:
        raise errors.InvalidInputError(
            f"the body's from must be an integer from 0 to {MAX_RESULT_WINDOW - 1:,} (the hits "
            f"to skip), got {start!r:.60}"
        )
    return _PagedSearch(path=path, body=checked, start=start, page_size=size)


def _page_hits(answer: Mapping[str, Any], asked: int) -> tuple[list[Any], bool]:
    """A page's hits, and whether it was the last (fewer than asked: the ranking ended)."""
    hits = answer.get("hits")
    if not isinstance(hits, list):
        raise errors.SemrankError(f"the search answer has no hits list: {str(answer)[:200]}")
    return hits, len(hits) < asked


def _warn_window_end() -> None:
    warnings.warn(
        f"iter_hits stopped at hit {MAX_RESULT_WINDOW:,}, the deepest a search pages to "
        "(Elasticsearch's max_result_window); more may match: narrow the search (a filter) to "
        "see the rest",
        UserWarning,
        stacklevel=3,
    )


def _hit(data: Mapping[str, Any]) -> RerankHit:
    document = data.get("document")
    if isinstance(document, dict) and set(document) == {"text"}:
        document = document["text"]  # strings come back wrapped as {"text": ...}
    chunk = data.get("chunk")
    if chunk is not None:  # known keys only: a newer server may send more
        chunk = ChunkSpan(
            index=int(chunk["index"]),
            start=int(chunk["start"]),
            end=int(chunk["end"]),
            field=chunk.get("field"),
        )
    return RerankHit(
        index=int(data["index"]),
        relevance_score=float(data["relevance_score"]),
        document=document,
        tokens=int(data.get("tokens", 0)),
        truncated=bool(data.get("truncated", False)),
        num_chunks=int(data.get("num_chunks", 1)),
        chunk=chunk,
        pruned=bool(data.get("pruned", False)),
    )


def _as_sent(response: RerankResponse, documents: Sequence[Document]) -> RerankResponse:
    """Returned documents as the caller sent them: the server wraps strings as {"text": ...},
    which cannot tell a string from a dict that holds only "text"."""
    results = [
        hit if hit.document is None else dataclasses.replace(hit, document=documents[hit.index])
        for hit in response.results
    ]
    return dataclasses.replace(response, results=results)


def _batch_as_sent(response: BatchResponse, queries: Sequence[BatchItem]) -> BatchResponse:
    results = [
        [hit if hit.document is None else dataclasses.replace(hit, document=docs[hit.index])
         for hit in group]
        for group, docs in zip(response.results, (q[1] for q in queries), strict=True)
    ]  # fmt: skip
    return dataclasses.replace(response, results=results)


def _rerank_response(data: Mapping[str, Any]) -> RerankResponse:
    return RerankResponse(
        id=str(data.get("id", "")),
        model=str(data["model"]),
        results=[_hit(item) for item in data["results"]],
        reranked=bool(data.get("reranked", True)),
        input_tokens=int(data["usage"]["total_tokens"]),
        warnings=[str(w) for w in (data.get("meta") or {}).get("warnings") or []],
    )


def _batch_response(data: Mapping[str, Any]) -> BatchResponse:
    return BatchResponse(
        id=str(data.get("id", "")),
        model=str(data["model"]),
        results=[[_hit(item) for item in group["results"]] for group in data["results"]],
        reranked=bool(data.get("reranked", True)),
        input_tokens=int(data["usage"]["total_tokens"]),
        reranked_by_query=[bool(group.get("reranked", True)) for group in data["results"]],
        warnings=[str(w) for group in data["results"] for w in group.get("warnings") or []],
    )


def _models(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [dict(model) for model in data["data"]]


def _json_object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object, got {type(data).__name__}")
    return data


_ERROR_CLASSES: dict[str, type[errors.SemrankError]] = {
    cls.error_type: cls for cls in errors.HTTP_STATUS
}
_STATUS_CLASSES: dict[int, type[errors.SemrankError]] = {
    400: errors.InvalidInputError,
    401: errors.AuthenticationError,
    413: errors.RequestTooLargeError,
    422: errors.InvalidInputError,
    429: errors.OverloadedError,
    503: errors.BackendUnavailableError,
    504: errors.DeadlineExceededError,
}


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    if response.is_redirect:
        raise _redirected(response)
    message, error_type = response.text or response.reason_phrase, ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):  # semrank's {error, error_type}; else Cohere's or FastAPI's
        found = body.get("error") or body.get("message") or body.get("detail")
        message, error_type = str(found or message), str(body.get("error_type") or "")
    # A proxy's or gateway's error has no semrank error_type: its status says what it is.
    cls = _ERROR_CLASSES.get(error_type) or _STATUS_CLASSES.get(
        response.status_code, errors.SemrankError
    )
    # A proxy's HTML error page is not a message: bounded as the server bounds its own.
    exc = cls(f"{response.status_code} from {response.request.url}: {message[:MAX_MESSAGE]}")
    exc.status_code = response.status_code
    exc.retry_after = _retry_after_seconds(
        response.headers.get("retry-after"), sent=response.headers.get("date")
    )
    raise exc


MAX_MESSAGE = 2000


def _retry_after_seconds(value: str | None, *, sent: str | None = None) -> float | None:
    """Retry-After as seconds: a number of seconds, or an HTTP date (a proxy's). A date is
    counted from the answer's own ``Date`` (``sent``) where it has one: both are the sender's
    clock, so a client clock minutes off (no NTP, a VM just resumed) does not turn a wait of
    two minutes into none, or into an hour."""
    if value is None:
        return None
    try:
        seconds: float | None = float(value)
    except ValueError:
        when = _http_date(value)
        now = (_http_date(sent) if sent else None) or datetime.datetime.now(datetime.UTC)
        seconds = None if when is None else (when - now).total_seconds()
    return max(0.0, seconds) if seconds is not None and math.isfinite(seconds) else None


def _http_date(date: str) -> datetime.datetime | None:
    try:
        when = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:  # asctime and "-0000" dates are UTC (RFC 9110)
        when = when.replace(tzinfo=datetime.UTC)
    return when


def _parse(response: httpx.Response, parse: Callable[[Any], T]) -> T:
    """``parse(response JSON)``; a body that is not what a semrank server sends is a
    ``SemrankError`` naming the URL (usually ``base_url`` points at another service)."""
    try:
        return parse(response.json())
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        error = errors.SemrankError(
            f"{response.status_code} from {response.request.url} is not a semrank answer "
            f"({type(exc).__name__}: {exc}; body {response.text!r:.120}); check that base_url "
            "points at `semrank serve`"
        )
        error.status_code = response.status_code
        raise error from exc


def _redirected(response: httpx.Response) -> errors.SemrankError:
    """A redirect (a proxy's login page, http:// to https://) named with where it points: not
    followed, since the API key would go along to that address. A semrank server sends none."""
    location = response.headers["location"]
    with contextlib.suppress(httpx.InvalidURL):
        location = str(response.request.url.join(location))
    error = errors.SemrankError(
        f"{response.status_code} from {response.request.url} redirects to {location}; the "
        "client follows no redirects (the API key would go along): set base_url to the semrank "
        "server's own address"
    )
    error.status_code = response.status_code
    return error


def _readiness(response: httpx.Response) -> bool:
    """``/ready``'s answer as a semrank server gives it (200 ready; 503 starting or draining).
    What stands in front answering for a server not there yet is False too: a gateway's
    502/503/504, a proxy's 404 before it routes to the container (Traefik), a 429 to a poll
    too often; anything else (another service's 200, a redirect to a login page, a 401) is an
    error naming what answered."""
    with contextlib.suppress(ValueError):
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("models"), list):
            said = (response.status_code, body.get("status"))
            if said == (200, "ready") or said in ((503, "starting"), (503, "draining")):
                return said[0] == 200
    if response.status_code in _NOT_THERE_YET:
        return False
    _raise_for_error(response)
    return _parse(response, _not_readiness)


_NOT_THERE_YET = (404, 429, 502, 503, 504)


def _not_readiness(data: Any) -> bool:
    raise ValueError("not the readiness of a semrank server ({status, models})")


# What OpenSSL says of a TLS handshake answered in plain HTTP (3.0; 3.2 and later).
_TLS_TO_PLAIN_HTTP = ("wrong version number", "record layer failure", "packet length too long")


def _transport_error(
    exc: httpx.TransportError, timeout: object, http: httpx.Client | httpx.AsyncClient
) -> errors.SemrankError:
    """A connection refused, dropped or timed out, as a semrank error naming the URL and the
    fix. Only a connection that never opened means the server is not there: one dropped
    mid-request (a body far past the server's --max-body-bytes, which it stops reading) is
    not told to start a server that is running."""
    url, cause = exc.request.url, str(exc) or type(exc).__name__
    if http.is_closed:  # closed by another thread or task while the request ran
        return _closed_error()
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        seconds = timeout.read if isinstance(timeout, httpx.Timeout) else timeout
        return errors.DeadlineExceededError(
            f"no answer from {url} within the client's timeout of {seconds} s "
            f"({type(exc).__name__}); pass a larger timeout= to the client (above any "
            "timeout_ms= sent), or timeout_ms= below it with fail_open=True to get the input "
            "order back in time"
        )
    if url.scheme == "https" and any(said in cause.lower() for said in _TLS_TO_PLAIN_HTTP):
        return errors.SemrankError(
            f"cannot talk TLS to {url}: {cause}; `semrank serve` speaks plain HTTP, so use an "
            "http:// base_url unless a TLS proxy stands in front of it"
        )
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return errors.SemrankError(
            f"cannot reach the semrank server at {url}: {cause}; start it with `semrank serve`, "
            "or pass the right base_url"
        )
    if _body_size(exc.request) > LARGE_BODY_BYTES:
        return errors.SemrankError(
            f"the connection to {url} was dropped before an answer came ({cause}); a server "
            "drops a request whose body is far past its --max-body-bytes: send fewer or shorter "
            "documents per request"
        )
    return errors.SemrankError(
        f"the server at {url} closed the connection without an answer ({cause}); check "
        "base_url (http:// or https://, the port `semrank serve` listens on), or retry if it "
        "was restarting"
    )


# A body this large may be what a server dropped (semrank serve's --max-body-bytes: 5 MiB).
LARGE_BODY_BYTES = 1 << 20


def _body_size(request: httpx.Request) -> int:
    try:
        return len(request.content)
    except httpx.RequestNotRead:  # a streamed body
        return 0


def _http_error(exc: httpx.HTTPError) -> errors.SemrankError:
    return errors.SemrankError(
        f"the answer from the semrank server could not be read ({type(exc).__name__}: {exc}); "
        "check base_url and any proxy between this client and `semrank serve`"
    )


def _headers(api_key: object) -> dict[str, str]:
    # HTTP headers carry printable ASCII only: httpx would raise UnicodeEncodeError on "é".
    if isinstance(api_key, str) and api_key != api_key.strip():
        raise errors.InvalidInputError(
            "api_key begins or ends with whitespace (a key read from a file keeps its newline); "
            "pass key.strip()"
        )
    if api_key is not None and not (
        isinstance(api_key, str) and api_key.isascii() and api_key.isprintable()
    ):
        raise errors.InvalidInputError(
            "api_key must be a string of printable ASCII characters (the server's key) or "
            f"None, got {type(api_key).__name__}; copy the key exactly as `semrank serve` has it"
        )
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _checked_timeout(timeout: object) -> float | httpx.Timeout | None:
    """The client timeout in seconds: a positive number, None (wait forever), or an
    ``httpx.Timeout``; httpx itself raises a bare ValueError on a negative one."""
    if timeout is None or isinstance(timeout, httpx.Timeout):
        return timeout
    timeout = _python_scalar(timeout)
    if isinstance(timeout, numbers.Real) and is_finite_number(timeout) and float(timeout) > 0:
        # Kept as given when a Python number, so error messages show the user's own value.
        return timeout if isinstance(timeout, int | float) else float(timeout)
    raise errors.InvalidInputError(
        f"timeout must be a positive number of seconds, or None for no limit, got "
        f"{timeout!r:.60}; e.g. timeout=60"
    )


def _checked_base_url(base_url: object) -> str | httpx.URL:
    if not isinstance(base_url, str | httpx.URL):
        raise errors.InvalidInputError(
            f"base_url must be the server's URL as a string, got {type(base_url).__name__} "
            f"({base_url!r:.60}); e.g. 'http://127.0.0.1:8000'"
        )
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise errors.InvalidInputError(
            f"base_url {str(base_url)!r:.80} is not a URL ({exc}); e.g. 'http://127.0.0.1:8000'"
        ) from None
    if url.scheme not in ("http", "https"):
        raise errors.InvalidInputError(
            f"base_url {str(base_url)!r:.80} must start with http:// or https://; e.g. "
            "'http://127.0.0.1:8000'"
        )
    if url.userinfo:  # httpx sent them as Basic auth in place of the key, and errors showed them
        raise errors.InvalidInputError(
            "base_url holds a user name or password (user:password@host); give the server's "
            "key as api_key=, and a proxy's credentials to httpx through transport="
        )
    if "?" in str(base_url):  # the paths were appended after it ("/?x=1/v1/rerank")
        raise errors.InvalidInputError(
            f"base_url {str(base_url)!r:.80} has a query string; give the server's address "
            "without one, e.g. 'http://127.0.0.1:8000' or 'https://host/prefix'"
        )
    return base_url


def _require_open(http: httpx.Client | httpx.AsyncClient) -> None:
    """A closed client is refused by name; httpx would raise a bare RuntimeError."""
    if http.is_closed:
        raise _closed_error()


def _closed_error() -> errors.SemrankError:
    return errors.SemrankError(
        "this semrank client is closed (close() was called or its `with` block ended); "
        "create a new SemrankClient / AsyncSemrankClient for more requests"
    )


def _settings(base_url: object, api_key: object, timeout: object, transport: Any) -> dict[str, Any]:
    """The httpx client's arguments, checked (kept: a forked process makes its own pool)."""
    return {
        "base_url": _checked_base_url(base_url),
        "headers": _headers(api_key),
        "timeout": _checked_timeout(timeout),
        "transport": transport,
        "follow_redirects": False,  # httpx's default, relied on: see _redirected
    }


def _pickled_settings(settings: dict[str, Any], kind: str) -> dict[str, Any]:
    """What a copy of a client takes to another process (a spawn pool, a deep copy): its
    settings, the API key with them; not its connection pool, whose locks and sockets do not
    pickle (a bare "cannot pickle '_thread.RLock' object"). The copy opens its own pool."""
    if settings["transport"] is not None:
        raise errors.InvalidInputError(
            f"this {kind} has its own transport=, whose connections cannot be pickled or "
            f"copied; create one {kind} per process (or copy) instead"
        )
    return dict(settings)


def _require_unused(used: bool, where: str) -> None:
    """A transport= the caller built holds its own connections, which cannot be remade here:
    used in another process or loop, it would be shared with this one."""
    if used:
        raise errors.SemrankError(
            f"this client was used in another {where} with its own transport=, whose "
            f"connections cannot be shared with this one; make one client per {where}"
        )


class SemrankClient:
    """Blocking client. Keyword options are the server's fields (``top_n``, ``min_score``,
    ``chunking``, ``timeout_ms``, ``fail_open``, ``rank_fields``, ``return_documents``...)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._start(_settings(base_url, api_key, timeout, transport))

    def _start(self, settings: dict[str, Any]) -> None:
        self._settings = settings
        self._timeout = settings["timeout"]
        self._http = httpx.Client(**settings)
        self._pid, self._used = os.getpid(), False

    def __getstate__(self) -> dict[str, Any]:
        return _pickled_settings(self._settings, "SemrankClient")

    def __setstate__(self, settings: dict[str, Any]) -> None:
        self._start(settings)

    def _connections(self) -> httpx.Client:
        """The client's connection pool, a new one in a forked process: parent and children
        shared one kept-alive socket and read each other's answers (gunicorn --preload,
        multiprocessing)."""
        _require_open(self._http)
        if os.getpid() != self._pid:
            if self._settings["transport"] is None:
                self._http = httpx.Client(**self._settings)
            else:
                _require_unused(self._used, "process")
            self._pid = os.getpid()
        self._used = True
        return self._http

    def __enter__(self) -> SemrankClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections; the client refuses further requests."""
        self._http.close()

    def _call(self, method: str, path: str, body: Any, parse: Callable[[Any], T]) -> T:
        http = self._connections()
        try:
            response = http.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise _transport_error(exc, self._timeout, http) from exc
        except httpx.HTTPError as exc:  # a body that does not decode, a URL httpx refuses...
            raise _http_error(exc) from exc
        _raise_for_error(response)
        return _parse(response, parse)

    def rerank(self, query: str, documents: Sequence[Document], **options: Any) -> RerankResponse:
        """``POST /v1/rerank``: ``documents`` (strings, or dicts read through ``rank_fields``)
        ranked best first for ``query``; returned documents are the objects sent."""
        body = _rerank_body(query, documents, options)
        return _as_sent(self._call("POST", "/v1/rerank", body, _rerank_response), documents)

    def rerank_batch(self, queries: Sequence[BatchItem], **options: Any) -> BatchResponse:
        """Several ``(query, documents)`` groups in one request, scored in merged model calls;
        a group may be ``(query, documents, {"top_n": 3, "min_score": 0.5})``, its own
        selection (``options`` apply to every group)."""
        body = _batch_body(queries, options)
        return _batch_as_sent(
            self._call("POST", "/v1/rerank/batch", body, _batch_response), queries
        )

    def models(self) -> list[dict[str, Any]]:
        """The served models (``GET /v1/models``): ``id``, ``kind``, ``max_length``, ``default``."""
        return self._call("GET", "/v1/models", None, _models)

    def search(self, index: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /v1/indexes/{index}/search`` with a retriever tree; the response as JSON."""
        path, checked = _search_request(index, body)
        return self._call("POST", path, checked, _json_object)

    def iter_hits(
        self, index: str, body: Mapping[str, Any], *, page_size: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every hit of ``search(index, body)``, best first, asked for a page at a time
        (``from`` / ``size``: ``page_size`` hits, else the body's ``size``, else 100; from the
        body's ``from``). The ranking is searched again for each page, so a write between pages
        may move a hit across a page's edge. Paging ends at hit 10,000, the deepest a search
        reaches (as in Elasticsearch), with a ``UserWarning`` when that last page was full."""
        return self._pages(_paged_search(index, body, page_size))

    def _pages(self, search: _PagedSearch) -> Iterator[dict[str, Any]]:
        start = search.start
        while start < MAX_RESULT_WINDOW:
            body = search.page(start)
            hits, last = _page_hits(
                self._call("POST", search.path, body, _json_object), body["size"]
            )
            yield from hits
            if last:
                return
            start += len(hits)
        _warn_window_end()

    def ready(self) -> bool:
        """Whether the semrank server says it is ready (``/ready``); False too while it cannot
        be reached or a gateway says it is unavailable. A ``SemrankError`` where something
        else answers: another service, a redirect (a proxy's login page)."""
        http = self._connections()
        try:
            response = http.get("/ready")
        except httpx.TransportError:
            return False
        except httpx.HTTPError as exc:  # an answer that does not decode: something else answered
            raise _http_error(exc) from exc
        return _readiness(response)


def _stale(owner: tuple[int, Any], http: httpx.AsyncClient) -> bool:
    """A pool that will not serve again: closed, of a loop that ended, or of the parent of
    this forked process."""
    return http.is_closed or owner[1].is_closed() or owner[0] != os.getpid()


LoopEndCloser = AsyncGenerator[None, None]


async def _closed_at_loop_end(http: httpx.AsyncClient) -> LoopEndCloser:
    """Once started, left open in its event loop, which closes it, and so ``http``, in that
    loop before the loop is closed (asyncio.run, as any runner calling
    ``loop.shutdown_asyncgens()``); dropped while the loop runs (the client was collected),
    the loop closes it too. Nothing runs for a loop already closed."""
    pid = os.getpid()
    try:
        yield
    finally:
        if os.getpid() == pid:  # a forked child's copy: its sockets are the parent's too
            with contextlib.suppress(RuntimeError):
                await http.aclose()


class AsyncSemrankClient:
    """The same as ``SemrankClient``, for asyncio."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._start(_settings(base_url, api_key, timeout, transport))

    def _start(self, settings: dict[str, Any]) -> None:
        self._settings = settings
        self._timeout = settings["timeout"]
        self._http = httpx.AsyncClient(**settings)
        self._owner: tuple[int, Any] | None = None  # (process, event loop) of its connections
        self._switches = 0
        self._closed = False  # by aclose(): a pool closed as its loop ended is replaced
        # Per (process, event loop): its pool, and what closes that pool when the loop ends.
        self._pools: dict[tuple[int, Any], tuple[httpx.AsyncClient, LoopEndCloser]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return _pickled_settings(self._settings, "AsyncSemrankClient")

    def __setstate__(self, settings: dict[str, Any]) -> None:
        self._start(settings)

    async def _connections(self) -> httpx.AsyncClient:
        """The client's connection pool, its own in each forked process and event loop:
        connections opened in a loop that has ended failed every other call ("Event loop is
        closed"), and a forked child shared its parent's socket."""
        if self._closed:
            raise _closed_error()
        owner = (os.getpid(), asyncio.get_running_loop())
        if self._settings["transport"] is None and (owner != self._owner or self._http.is_closed):
            self._http = await self._pool_in(owner)
        self._owner = owner
        return self._http

    async def _pool_in(self, owner: tuple[int, Any]) -> httpx.AsyncClient:
        """The pool of this process and loop, made at its first call there and closed when the
        loop ends (asyncio.run closes it; a pool left in an ended loop could not be closed and
        kept its socket until a garbage collection). Kept while its loop runs: another loop
        may call in between. Once loops keep alternating (asyncio.run per call) no connection
        is kept between calls, for loops closed without closing what was left in them."""
        for stale in [key for key, (http, _) in self._pools.items() if _stale(key, http)]:
            del self._pools[stale]
        if owner not in self._pools:
            http = self._http
            if self._owner is not None:  # the first loop takes the pool made by __init__
                self._switches += 1
                settings = dict(self._settings)
                if self._switches > 1:
                    settings["limits"] = httpx.Limits(max_keepalive_connections=0)
                http = httpx.AsyncClient(**settings)
            closer = _closed_at_loop_end(http)
            await anext(closer)  # now the loop's own to close
            self._pools[owner] = (http, closer)
        return self._pools[owner][0]

    async def __aenter__(self) -> AsyncSemrankClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections; the client refuses further requests."""
        # Closed whatever happens: connections of a loop that has ended cannot be closed.
        self._closed = True
        with contextlib.suppress(RuntimeError):
            await self._http.aclose()

    async def _call(self, method: str, path: str, body: Any, parse: Callable[[Any], T]) -> T:
        http = await self._connections()
        try:
            response = await http.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise _transport_error(exc, self._timeout, http) from exc
        except RuntimeError:  # a transport= of the caller's, bound to a loop that ended
            _require_unused(self._settings["transport"] is not None, "event loop")
            raise
        except httpx.HTTPError as exc:
            raise _http_error(exc) from exc
        _raise_for_error(response)
        return _parse(response, parse)

    async def rerank(
        self, query: str, documents: Sequence[Document], **options: Any
    ) -> RerankResponse:
        body = _rerank_body(query, documents, options)
        return _as_sent(await self._call("POST", "/v1/rerank", body, _rerank_response), documents)

    async def rerank_batch(self, queries: Sequence[BatchItem], **options: Any) -> BatchResponse:
        body = _batch_body(queries, options)
        answer = await self._call("POST", "/v1/rerank/batch", body, _batch_response)
        return _batch_as_sent(answer, queries)

    async def models(self) -> list[dict[str, Any]]:
        return await self._call("GET", "/v1/models", None, _models)

    async def search(self, index: str, body: Mapping[str, Any]) -> dict[str, Any]:
        path, checked = _search_request(index, body)
        return await self._call("POST", path, checked, _json_object)

    def iter_hits(
        self, index: str, body: Mapping[str, Any], *, page_size: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """``SemrankClient.iter_hits``: ``async for hit in client.iter_hits(...)``."""
        return self._pages(_paged_search(index, body, page_size))

    async def _pages(self, search: _PagedSearch) -> AsyncIterator[dict[str, Any]]:
        start = search.start
        while start < MAX_RESULT_WINDOW:
            body = search.page(start)
            answer = await self._call("POST", search.path, body, _json_object)
            hits, last = _page_hits(answer, body["size"])
            for hit in hits:
                yield hit
            if last:
                return
            start += len(hits)
        _warn_window_end()

    async def ready(self) -> bool:
        http = await self._connections()
        try:
            response = await http.get("/ready")
        except httpx.TransportError:
            return False
        except httpx.HTTPError as exc:
            raise _http_error(exc) from exc
        return _readiness(response)
