"""A small client for a semrank server, sync and async (httpx), covering semrank's extras.

>>> from semrank.client import SemrankClient
>>> with SemrankClient("http://127.0.0.1:8000") as client:
...     response = client.rerank("what is a flea", ["Fleas are insects.", "Paris is in France."])
...     response.results[0].index
0

Any Cohere-compatible SDK works against the server too; this client adds min_score, chunking,
deadlines with fail_open, per-result truncation and chunk facts, and the batch endpoint. Errors
come back as ``semrank.errors`` exceptions (the class the server raised), with ``status_code``;
a server that cannot be reached is a ``SemrankError`` and a client timeout a
``DeadlineExceededError`` (both with ``status_code`` None), never a raw httpx exception.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import quote

import httpx

from semrank import errors
from semrank._checks import require_collection

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
    index: int
    start: int
    end: int


@dataclass(frozen=True, kw_only=True)
class RerankHit:
    index: int
    relevance_score: float
    document: Document | None
    tokens: int
    truncated: bool
    num_chunks: int = 1
    chunk: ChunkSpan | None = None


@dataclass(frozen=True, kw_only=True)
class RerankResponse:
    id: str
    model: str
    results: list[RerankHit]
    reranked: bool  # False: the deadline passed and fail_open returned the input order
    input_tokens: int


@dataclass(frozen=True, kw_only=True)
class BatchResponse:
    id: str
    model: str
    results: list[list[RerankHit]]  # one list per query, in request order
    reranked: bool
    input_tokens: int


def _options(**options: Any) -> dict[str, Any]:
    return {name: value for name, value in options.items() if value is not None}


def _documents(documents: object) -> list[Any]:
    """A list of documents; a lone string (or dict) would otherwise be sent letter by letter."""
    require_collection(
        documents,
        expected="documents must be a list of strings or objects",
        hint="wrap a single document in a list: [document]",
    )
    return list(cast(Sequence[Any], documents))


def _rerank_body(query: str, documents: object, options: Mapping[str, Any]) -> dict[str, Any]:
    return {"query": query, "documents": _documents(documents), **_options(**options)}


def _batch_body(queries: object, options: Mapping[str, Any]) -> dict[str, Any]:
    hint = 'pass [(query, documents), ...], e.g. [("what do fleas eat", ["doc 1", "doc 2"])]'
    require_collection(queries, expected="queries must be a list of (query, documents)", hint=hint)
    items = []
    for group in cast(Sequence[Any], queries):
        if isinstance(group, str | bytes) or not isinstance(group, Sequence) or len(group) != 2:
            raise errors.InvalidInputError(
                f"each batch item must be a (query, documents) pair, got {group!r:.60}; {hint}"
            )
        items.append({"query": group[0], "documents": _documents(group[1])})
    return {"queries": items, **_options(**options)}


def _hit(data: Mapping[str, Any]) -> RerankHit:
    document = data.get("document")
    if isinstance(document, dict) and set(document) == {"text"}:
        document = document["text"]  # strings come back wrapped as {"text": ...}
    chunk = data.get("chunk")
    return RerankHit(
        index=int(data["index"]),
        relevance_score=float(data["relevance_score"]),
        document=document,
        tokens=int(data.get("tokens", 0)),
        truncated=bool(data.get("truncated", False)),
        num_chunks=int(data.get("num_chunks", 1)),
        chunk=None if chunk is None else ChunkSpan(**chunk),
    )


def _rerank_response(data: Mapping[str, Any]) -> RerankResponse:
    return RerankResponse(
        id=str(data.get("id", "")),
        model=str(data["model"]),
        results=[_hit(item) for item in data["results"]],
        reranked=bool(data.get("reranked", True)),
        input_tokens=int(data["usage"]["total_tokens"]),
    )


def _batch_response(data: Mapping[str, Any]) -> BatchResponse:
    return BatchResponse(
        id=str(data.get("id", "")),
        model=str(data["model"]),
        results=[[_hit(item) for item in group["results"]] for group in data["results"]],
        reranked=bool(data.get("reranked", True)),
        input_tokens=int(data["usage"]["total_tokens"]),
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


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    message, error_type = response.text or response.reason_phrase, ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):  # semrank's {error, error_type}; else Cohere's or FastAPI's
        found = body.get("error") or body.get("message") or body.get("detail")
        message, error_type = str(found or message), str(body.get("error_type") or "")
    cls = _ERROR_CLASSES.get(error_type, errors.SemrankError)
    exc = cls(f"{response.status_code} from {response.request.url}: {message}")
    exc.status_code = response.status_code  # type: ignore[attr-defined]
    exc.retry_after = response.headers.get("retry-after")  # type: ignore[attr-defined]
    raise exc


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
        error.status_code = response.status_code  # type: ignore[attr-defined]
        raise error from exc


def _transport_error(exc: httpx.TransportError, timeout: object) -> errors.SemrankError:
    """A connection refused or a timeout, as a semrank error naming the URL and the fix."""
    url = exc.request.url
    error: errors.SemrankError
    if isinstance(exc, httpx.TimeoutException):
        error = errors.DeadlineExceededError(
            f"no answer from {url} within the client's timeout of {timeout} s "
            f"({type(exc).__name__}); pass a larger timeout= to the client, or timeout_ms= "
            "with fail_open=True to get the input order back in time"
        )
    else:
        error = errors.SemrankError(
            f"cannot reach the semrank server at {url}: {exc or type(exc).__name__}; start it "
            "with `semrank serve`, or pass the right base_url"
        )
    error.status_code = None  # type: ignore[attr-defined]
    return error


def _index_path(index: str) -> str:
    return f"/v1/indexes/{quote(str(index), safe='')}/search"


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class SemrankClient:
    """Blocking client. Keyword options are the server's fields (``top_n``, ``min_score``,
    ``chunking``, ``timeout_ms``, ``fail_open``, ``rank_fields``, ``return_documents``...)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._timeout = timeout
        self._http = httpx.Client(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    def __enter__(self) -> SemrankClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: Any, parse: Callable[[Any], T]) -> T:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise _transport_error(exc, self._timeout) from exc
        _raise_for_error(response)
        return _parse(response, parse)

    def rerank(self, query: str, documents: Sequence[Document], **options: Any) -> RerankResponse:
        body = _rerank_body(query, documents, options)
        return self._call("POST", "/v1/rerank", body, _rerank_response)

    def rerank_batch(
        self, queries: Sequence[tuple[str, Sequence[Document]]], **options: Any
    ) -> BatchResponse:
        """Several ``(query, documents)`` groups in one request, scored in merged model calls."""
        body = _batch_body(queries, options)
        return self._call("POST", "/v1/rerank/batch", body, _batch_response)

    def models(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/models", None, _models)

    def search(self, index: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /v1/indexes/{index}/search`` with a retriever tree; the response as JSON."""
        return self._call("POST", _index_path(index), dict(body), _json_object)

    def ready(self) -> bool:
        """Whether the server answers ``/ready`` with 200 (False too while it cannot be reached)."""
        try:
            return self._http.get("/ready").status_code == 200
        except httpx.TransportError:
            return False


class AsyncSemrankClient:
    """The same as ``SemrankClient``, for asyncio."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncSemrankClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: Any, parse: Callable[[Any], T]) -> T:
        try:
            response = await self._http.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise _transport_error(exc, self._timeout) from exc
        _raise_for_error(response)
        return _parse(response, parse)

    async def rerank(
        self, query: str, documents: Sequence[Document], **options: Any
    ) -> RerankResponse:
        body = _rerank_body(query, documents, options)
        return await self._call("POST", "/v1/rerank", body, _rerank_response)

    async def rerank_batch(
        self, queries: Sequence[tuple[str, Sequence[Document]]], **options: Any
    ) -> BatchResponse:
        body = _batch_body(queries, options)
        return await self._call("POST", "/v1/rerank/batch", body, _batch_response)

    async def models(self) -> list[dict[str, Any]]:
        return await self._call("GET", "/v1/models", None, _models)

    async def search(self, index: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("POST", _index_path(index), dict(body), _json_object)

    async def ready(self) -> bool:
        try:
            return (await self._http.get("/ready")).status_code == 200
        except httpx.TransportError:
            return False
