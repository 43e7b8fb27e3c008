"""A small client for a semrank server, sync and async (httpx), covering semrank's extras.

>>> from semrank.client import SemrankClient
>>> with SemrankClient("http://127.0.0.1:8000") as client:
...     response = client.rerank("what is a flea", ["Fleas are insects.", "Paris is in France."])
...     response.results[0].index
0

Any Cohere-compatible SDK works against the server too; this client adds min_score, chunking,
deadlines with fail_open, per-result truncation and chunk facts, and the batch endpoint. Errors
come back as ``semrank.errors`` exceptions (the class the server raised), with ``status_code``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from semrank import errors

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


def _rerank_body(
    query: str, documents: Sequence[Document], options: Mapping[str, Any]
) -> dict[str, Any]:
    return {"query": query, "documents": list(documents), **_options(**options)}


def _batch_body(
    queries: Sequence[tuple[str, Sequence[Document]]], options: Mapping[str, Any]
) -> dict[str, Any]:
    items = [{"query": query, "documents": list(docs)} for query, docs in queries]
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


_ERROR_CLASSES: dict[str, type[errors.SemrankError]] = {
    cls.error_type: cls for cls in errors.HTTP_STATUS
}


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
        message, error_type = str(body["error"]), str(body.get("error_type", ""))
    except (ValueError, KeyError, TypeError):
        message, error_type = response.text or response.reason_phrase, ""
    cls = _ERROR_CLASSES.get(error_type, errors.SemrankError)
    exc = cls(f"{response.status_code} from {response.request.url}: {message}")
    exc.status_code = response.status_code  # type: ignore[attr-defined]
    exc.retry_after = response.headers.get("retry-after")  # type: ignore[attr-defined]
    raise exc


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
        self._http = httpx.Client(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    def __enter__(self) -> SemrankClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self._http.request(method, path, json=body)
        _raise_for_error(response)
        return response.json()

    def rerank(self, query: str, documents: Sequence[Document], **options: Any) -> RerankResponse:
        return _rerank_response(
            self._call("POST", "/v1/rerank", _rerank_body(query, documents, options))
        )

    def rerank_batch(
        self, queries: Sequence[tuple[str, Sequence[Document]]], **options: Any
    ) -> BatchResponse:
        """Several ``(query, documents)`` groups in one request, scored in merged model calls."""
        return _batch_response(
            self._call("POST", "/v1/rerank/batch", _batch_body(queries, options))
        )

    def models(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/models")["data"])

    def search(self, index: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /v1/indexes/{index}/search`` with a retriever tree; the response as JSON."""
        result: dict[str, Any] = self._call("POST", f"/v1/indexes/{index}/search", dict(body))
        return result

    def ready(self) -> bool:
        return self._http.get("/ready").status_code == 200


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
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncSemrankClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = await self._http.request(method, path, json=body)
        _raise_for_error(response)
        return response.json()

    async def rerank(
        self, query: str, documents: Sequence[Document], **options: Any
    ) -> RerankResponse:
        body = _rerank_body(query, documents, options)
        return _rerank_response(await self._call("POST", "/v1/rerank", body))

    async def rerank_batch(
        self, queries: Sequence[tuple[str, Sequence[Document]]], **options: Any
    ) -> BatchResponse:
        body = _batch_body(queries, options)
        return _batch_response(await self._call("POST", "/v1/rerank/batch", body))

    async def models(self) -> list[dict[str, Any]]:
        return list((await self._call("GET", "/v1/models"))["data"])

    async def search(self, index: str, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", f"/v1/indexes/{index}/search", dict(body))
        return result

    async def ready(self) -> bool:
        return (await self._http.get("/ready")).status_code == 200
