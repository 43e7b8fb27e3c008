"""semrank.client against a live app: the async client over ASGI, the sync one over a uvicorn
server on a free localhost port (in a thread)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from semrank import errors
from semrank.client import AsyncSemrankClient, SemrankClient
from semrank.server import ServerConfig, create_app

QUERY = "what do fleas eat"
DOCS = [
    "Paris is the capital of France and has many museums.",
    "Fleas feed on the blood of mammals and birds.",
    "The ocean is deep and cold; fish swim in it.",
    "Adult fleas drink blood; larvae eat organic debris.",
]
LONG_DOC = " ".join(["The weather was mild and the market was busy."] * 60) + " Fleas eat blood."


@contextlib.contextmanager
def live_server(app: Any) -> Iterator[str]:
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(400):  # bounded wait for startup (model already loaded)
            if server.started:
                break
            time.sleep(0.025)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_sync_client_rerank_batch_models_and_errors(reranker: Any) -> None:
    app = create_app(ServerConfig(api_keys=frozenset({"k"})), rerankers={"minilm": reranker})
    with live_server(app) as url:
        with SemrankClient(url, api_key="k") as client:
            response = client.rerank(QUERY, DOCS, top_n=2, return_documents=True)
            batch = client.rerank_batch([(QUERY, DOCS), ("deep sea fish", DOCS[:2])], top_n=1)
            models = client.models()
            with pytest.raises(errors.InvalidInputError) as invalid:
                client.rerank(QUERY, [])
            assert client.ready()
        with (
            SemrankClient(url, api_key="wrong") as stranger,
            pytest.raises(errors.AuthenticationError) as denied,
        ):
            stranger.rerank(QUERY, DOCS)
    want = reranker.rerank(QUERY, DOCS, top_n=2)
    assert [hit.index for hit in response.results] == [r.index for r in want]
    assert [hit.document for hit in response.results] == [DOCS[r.index] for r in want]
    for hit, expected in zip(response.results, want, strict=True):
        assert hit.relevance_score == pytest.approx(expected.relevance_score, abs=1e-5)
    assert response.reranked and response.model == "minilm" and response.input_tokens > 0
    assert [[h.index for h in group] for group in batch.results] == [
        [reranker.rerank(QUERY, DOCS, top_n=1)[0].index],
        [reranker.rerank("deep sea fish", DOCS[:2], top_n=1)[0].index],
    ]
    assert [m["id"] for m in models] == ["minilm"]
    assert invalid.value.status_code == 422  # type: ignore[attr-defined]
    assert denied.value.status_code == 401  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_async_client_extras(reranker: Any) -> None:
    from semrank.rerank import ChunkingConfig

    docs = [DOCS[0], LONG_DOC, DOCS[1]]
    mean = ChunkingConfig(aggregation="mean")
    # A threshold that keeps the long document whatever the default model scores it.
    min_score = reranker.score(QUERY, [LONG_DOC], chunking=mean)[0] / 2
    app = create_app(ServerConfig(batch_wait_ms=100), rerankers={"minilm": reranker})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with AsyncSemrankClient("http://test", transport=transport) as client:
            chunked = await client.rerank(
                QUERY,
                docs,
                chunking={"aggregation": "mean"},
                min_score=float(min_score),
                timeout_ms=60_000,
            )
            late = await client.rerank(QUERY, DOCS, timeout_ms=1, fail_open=True)
            with pytest.raises(errors.DeadlineExceededError):
                await client.rerank(QUERY, DOCS, timeout_ms=1)
            with pytest.raises(errors.ModelNotFoundError):
                await client.rerank(QUERY, DOCS, model="nope")
            models = await client.models()
    want = reranker.rerank(QUERY, docs, chunking=mean, min_score=float(min_score))
    assert [(h.index, h.tokens, h.num_chunks) for h in chunked.results] == [
        (r.index, r.tokens, r.num_chunks) for r in want
    ]
    long_hit = next(h for h in chunked.results if h.index == 1)
    assert long_hit.chunk is not None and long_hit.num_chunks > 1
    assert not late.reranked and [h.index for h in late.results] == [0, 1, 2, 3]
    assert models[0]["default"] is True


def _answering(status: int, body: Any) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    return httpx.MockTransport(handler)


def test_client_failures_are_semrank_errors_with_the_server_message() -> None:
    """Error bodies with and without JSON, answers that are not semrank's, a refused connection
    and a timeout: each a semrank error naming the URL, never httpx's or a KeyError."""
    cases: list[tuple[int, Any, type[errors.SemrankError], str]] = [
        (422, {"error": "top_n: must be >= 1", "error_type": "invalid_request"},
         errors.InvalidInputError, "top_n: must be >= 1"),
        (502, "<html>bad gateway</html>", errors.SemrankError, "<html>bad gateway</html>"),
        (404, {"detail": "Not Found"}, errors.SemrankError, ": Not Found"),
        (200, "<html>login</html>", errors.SemrankError, "is not a semrank answer"),
        (200, {"unexpected": 1}, errors.SemrankError, "is not a semrank answer"),
    ]  # fmt: skip
    for status, body, cls, message in cases:
        with SemrankClient("http://test", transport=_answering(status, body)) as client:
            for call in (lambda: client.rerank(QUERY, DOCS), client.models):
                with pytest.raises(cls, match=message) as caught:
                    call()
                assert type(caught.value) is cls and "http://test/v1/" in str(caught.value)
                assert caught.value.status_code == status  # type: ignore[attr-defined]

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with SemrankClient(f"http://127.0.0.1:{port}") as down:
        with pytest.raises(errors.SemrankError, match="cannot reach the semrank server at"):
            down.rerank(QUERY, DOCS)
        assert down.ready() is False

    def too_slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with (
        SemrankClient("http://test", timeout=2, transport=httpx.MockTransport(too_slow)) as slow,
        pytest.raises(errors.DeadlineExceededError, match="timeout of 2 s"),
    ):
        slow.rerank(QUERY, DOCS)


@pytest.mark.anyio
async def test_client_refuses_a_lone_string_as_documents() -> None:
    """list("abc") would rank the letters a, b and c: refused before anything is sent."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    with SemrankClient("http://test", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(errors.InvalidInputError, match=r"documents must be a list.*got str"):
            client.rerank(QUERY, DOCS[0])
        with pytest.raises(errors.InvalidInputError, match="got str"):
            client.rerank_batch([(QUERY, DOCS[0])])
        with pytest.raises(errors.InvalidInputError, match=r"\(query, documents\) pair"):
            client.rerank_batch([QUERY])  # type: ignore[list-item]
    transport = httpx.MockTransport(handler)
    async with AsyncSemrankClient("http://test", transport=transport) as async_client:
        with pytest.raises(errors.InvalidInputError, match="got dict"):
            await async_client.rerank(QUERY, {"text": DOCS[0]})  # type: ignore[arg-type]
    assert sent == []
