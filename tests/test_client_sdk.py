"""semrank.client against a live app: the async client over ASGI, the sync one over a uvicorn
server on a free localhost port (in a thread)."""

from __future__ import annotations

import contextlib
import gc
import json
import re
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from semrank import errors
from semrank.client import AsyncSemrankClient, SemrankClient
from semrank.server import ServerConfig, create_app
from serving import live_server

QUERY = "what do fleas eat"
DOCS = [
    "Paris is the capital of France and has many museums.",
    "Fleas feed on the blood of mammals and birds.",
    "The ocean is deep and cold; fish swim in it.",
    "Adult fleas drink blood; larvae eat organic debris.",
]
LONG_DOC = " ".join(["The weather was mild and the market was busy."] * 60) + " Fleas eat blood."


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


def test_an_answer_that_does_not_decode_is_a_semrank_error_from_ready_too() -> None:
    """An answer whose body does not decode (a proxy's "Content-Encoding: gzip" over plain
    bytes) was a SemrankError from rerank() but httpx's raw DecodingError from ready()."""
    import asyncio

    def garbled(request: httpx.Request) -> httpx.Response:
        headers = {"content-encoding": "gzip", "content-type": "application/json"}
        return httpx.Response(200, headers=headers, content=b"not gzip")

    async def ready_async() -> bool:
        transport = httpx.MockTransport(garbled)
        async with AsyncSemrankClient("http://test", transport=transport) as client:
            return await client.ready()

    with SemrankClient("http://test", transport=httpx.MockTransport(garbled)) as client:
        for call in (lambda: client.rerank(QUERY, DOCS), client.ready):
            with pytest.raises(errors.SemrankError, match="could not be read") as caught:
                call()
            assert "DecodingError" in str(caught.value)
    with pytest.raises(errors.SemrankError, match="could not be read"):
        asyncio.run(ready_async())


def test_a_dropped_connection_is_not_told_to_start_a_server() -> None:
    """A connection the server dropped mid-request (it stops reading a body far past
    --max-body-bytes), and one closed by another thread, were "cannot reach the semrank server
    ... start it with `semrank serve`" although it was running."""

    def dropped(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset", request=request)

    with (
        SemrankClient("http://test", transport=httpx.MockTransport(dropped)) as client,
        pytest.raises(errors.SemrankError) as caught,
    ):
        client.rerank(QUERY, DOCS)
    said = str(caught.value)  # a small body: not the body's size
    assert "closed the connection without an answer" in said and "check base_url" in said
    with (
        SemrankClient("http://test", transport=httpx.MockTransport(dropped)) as client,
        pytest.raises(errors.SemrankError) as caught,
    ):
        client.rerank(QUERY, ["x" * 1000] * 2000)  # 2 MB
    said = str(caught.value)
    assert "was dropped before an answer came" in said and "--max-body-bytes" in said
    assert "start it with `semrank serve`" not in said
    closing = SemrankClient("http://test")

    def closed_meanwhile(request: httpx.Request) -> httpx.Response:
        closing.close()
        raise httpx.ReadError("bad file descriptor", request=request)

    closing._http._transport = httpx.MockTransport(closed_meanwhile)
    with pytest.raises(errors.SemrankError, match="this semrank client is closed"):
        closing.rerank(QUERY, DOCS)


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


# --------------------------------------------------------------------------- argument checks

HITS = [{"index": 0, "relevance_score": 0.5}]
ANSWER = {"id": "r1", "model": "m", "results": HITS, "usage": {"total_tokens": 3}}
BATCH_ANSWER = ANSWER | {"results": [{"results": HITS}]}


def _recording(sent: list[Any]) -> httpx.MockTransport:
    """A server that records each request's path and JSON body and answers like semrank."""

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode()
        sent.append((path, json.loads(request.content or b"null")))
        return httpx.Response(200, json=BATCH_ANSWER if path.endswith("/batch") else ANSWER)

    return httpx.MockTransport(handler)


def test_numpy_scalars_are_sent_as_plain_json_numbers() -> None:
    sent: list[Any] = []
    with SemrankClient("http://test", transport=_recording(sent)) as client:
        client.rerank(
            np.str_("q"),
            [np.str_("a"), {"text": "b", "year": np.int32(1999)}],
            top_n=np.int64(1),
            min_score=np.float32(0.25),
            chunking={"overlap_tokens": np.int64(8), "enabled": np.bool_(True)},
        )
        client.rerank_batch([("q", ("a",))], top_n=np.uint8(2))
    assert sent == [
        (
            "/v1/rerank",
            {
                "query": "q",
                "documents": ["a", {"text": "b", "year": 1999}],
                "top_n": 1,
                "min_score": 0.25,
                "chunking": {"overlap_tokens": 8, "enabled": True},
                "response_format": "cohere",  # the shape the client reads, named
            },
        ),
        ("/v1/rerank/batch", {"queries": [{"query": "q", "documents": ["a"]}], "top_n": 2}),
    ]


def test_values_json_cannot_carry_are_refused_naming_the_argument() -> None:
    sent: list[Any] = []
    nan, inf = float("nan"), float("inf")
    cases: list[tuple[Callable[[SemrankClient], object], str]] = [
        (lambda c: c.rerank("q", ["a"], min_score=nan), r"min_score must be a finite number"),
        (lambda c: c.rerank("q", ["a"], min_score=-inf), r"min_score must be a finite number"),
        (
            lambda c: c.rerank("q", ["a"], chunking={"top_k": inf}),
            r"chunking\.top_k must be a finite number, got inf",
        ),
        (lambda c: c.rerank("q\ud800", ["a"]), r"query holds a lone surrogate"),
        (lambda c: c.rerank("q", ["a", "b\udfff"]), r"documents\[1\] holds a lone surrogate"),
        (
            lambda c: c.rerank_batch([("q", ["a"]), ("r", [{"text": "\ud800"}])]),
            r"queries\[1\]\.documents\[0\]\.text holds a lone surrogate",
        ),
        (lambda c: c.rerank("q", ["a"], rank_fields={"text"}), r"rank_fields cannot be sent .*set"),
        (lambda c: c.rerank("q", [{1: "a"}]), r"documents\[0\] has a field name 1 of type int"),
    ]
    with SemrankClient("http://test", transport=_recording(sent)) as client:
        for call, message in cases:
            with pytest.raises(errors.InvalidInputError, match=message):
                call(client)
    assert sent == []  # refused before anything was sent


def test_search_refuses_a_missing_index_name_or_body() -> None:
    sent: list[Any] = []
    with SemrankClient("http://test", transport=_recording(sent)) as client:
        for index in (None, "", "  ", "..", 3):
            with pytest.raises(errors.InvalidInputError, match=r"index must be the name of an"):
                client.search(index, {"query": "fleas"})  # type: ignore[arg-type]
        with pytest.raises(errors.InvalidInputError, match=r"search body must be a dict"):
            client.search("docs", None)  # type: ignore[arg-type]
        assert sent == []
        client.search("my docs?1", {"query": "fleas", "size": np.int64(2)})
    # The name is one path segment: the space and the question mark are escaped (a slash is
    # refused: the server decodes %2F before routing).
    assert sent == [("/v1/indexes/my%20docs%3F1/search", {"query": "fleas", "size": 2})]


@pytest.mark.parametrize("timeout", [-1, 0, float("nan"), float("inf"), True, "60"])
def test_timeouts_that_are_not_positive_seconds_are_refused(timeout: object) -> None:
    with pytest.raises(errors.InvalidInputError, match=r"timeout must be a positive number"):
        SemrankClient(timeout=timeout)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidInputError, match=r"timeout must be a positive number"):
        AsyncSemrankClient(timeout=timeout)  # type: ignore[arg-type]


def test_constructor_arguments_httpx_would_choke_on_are_refused() -> None:
    sent: list[Any] = []
    # Accepted: no limit, and a numpy number of seconds.
    for timeout in (None, np.float64(2.5)):
        with SemrankClient("http://test", timeout=timeout, transport=_recording(sent)) as client:
            client.rerank("q", ["a"])
    assert len(sent) == 2
    with pytest.raises(errors.InvalidInputError, match=r"api_key must be a string of printable"):
        SemrankClient(api_key="kéy")
    with pytest.raises(errors.InvalidInputError, match=r"base_url must be the server's URL"):
        SemrankClient(None)  # type: ignore[arg-type]


def test_a_closed_client_says_so() -> None:
    sent: list[Any] = []
    client = SemrankClient("http://test", transport=_recording(sent))
    assert client.rerank("q", ["a"]).results[0].index == 0
    client.close()
    for call in (lambda: client.rerank("q", ["a"]), client.models, client.ready):
        with pytest.raises(errors.SemrankError, match=r"client is closed.*create a new"):
            call()
    assert len(sent) == 1


@pytest.mark.anyio
async def test_async_client_shares_the_checks() -> None:
    sent: list[Any] = []
    async with AsyncSemrankClient("http://test", transport=_recording(sent)) as client:
        await client.rerank("q", ["a"], top_n=np.int64(1))
        with pytest.raises(errors.InvalidInputError, match=r"min_score must be a finite"):
            await client.rerank("q", ["a"], min_score=float("nan"))
        with pytest.raises(errors.InvalidInputError, match=r"query holds a lone surrogate"):
            await client.rerank_batch([("\ud800", ["a"])])
        with pytest.raises(errors.InvalidInputError, match=r"index must be the name of an"):
            await client.search(None, {})  # type: ignore[arg-type]
    with pytest.raises(errors.SemrankError, match=r"client is closed"):
        await client.rerank("q", ["a"])
    with pytest.raises(errors.SemrankError, match=r"client is closed"):
        await client.ready()
    sent_body = {"query": "q", "documents": ["a"], "top_n": 1, "response_format": "cohere"}
    assert sent == [("/v1/rerank", sent_body)]


@pytest.mark.anyio
async def test_the_client_says_which_documents_a_cascade_pruned(tiny_model: Any) -> None:
    from semrank import Reranker
    from semrank.rerank import CascadeConfig

    cascaded = Reranker(tiny_model("bert"), cascade=CascadeConfig(keep=2))
    app = create_app(ServerConfig(), rerankers={"tiny": cascaded})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with AsyncSemrankClient("http://test", transport=transport) as client:
            response = await client.rerank(QUERY, DOCS)
    local = cascaded.rerank(QUERY, DOCS)
    assert [(h.index, h.pruned) for h in response.results] == [(r.index, r.pruned) for r in local]
    assert [h.pruned for h in response.results] == [False, False, True, True]


@pytest.mark.anyio
async def test_client_reads_every_answer_the_server_gives(reranker: Any) -> None:
    """A chunk of a multi-field document (it carries `field`) broke the client; Voyage's
    top_k / truncation options got Voyage's shape, which the client could not read; a dict of
    only "text" came back as a string."""
    from semrank.client import BATCH_OPTIONS, CHUNKING_OPTIONS, RERANK_OPTIONS
    from semrank.server.schemas import BatchRerankRequest, ChunkingOptions, V1RerankRequest

    assert set(V1RerankRequest.model_fields) - {
        "query", "documents", "response_format"
    } == RERANK_OPTIONS  # fmt: skip
    assert set(BatchRerankRequest.model_fields) - {"queries"} == BATCH_OPTIONS
    assert set(ChunkingOptions.model_fields) == CHUNKING_OPTIONS
    docs = [{"title": "Fleas", "body": LONG_DOC}, {"text": "Fleas eat blood."}]
    app = create_app(ServerConfig(), rerankers={"minilm": reranker})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with AsyncSemrankClient("http://test", transport=transport) as client:
            fields = await client.rerank(QUERY, docs[:1], rank_fields=["title", "body"])
            voyage = await client.rerank(QUERY, DOCS, top_k=1, truncation=True)
            returned = await client.rerank(QUERY, docs[1:], return_documents=True)
            with pytest.raises(errors.InvalidInputError, match="unknown option 'topn'"):
                await client.rerank(QUERY, DOCS, topn=1)
            with pytest.raises(errors.InvalidInputError, match="unknown chunking option"):
                await client.rerank(QUERY, DOCS, chunking={"max_chunk": 1})
    chunk = fields.results[0].chunk
    assert chunk is not None and chunk.field == "body" and "Fleas" in LONG_DOC[chunk.start :]
    assert len(voyage.results) == 1
    assert returned.results[0].document == {"text": "Fleas eat blood."}


def test_errors_carry_status_and_retry_after_even_before_sending() -> None:
    with SemrankClient("http://127.0.0.1:9") as client:
        with pytest.raises(errors.InvalidInputError) as refused:
            client.rerank(QUERY, "one string")
        assert refused.value.status_code is None and refused.value.retry_after is None
    with pytest.raises(errors.InvalidInputError, match="is not a URL"):
        SemrankClient("http://[::1")
    with pytest.raises(errors.InvalidInputError, match="http:// or https://"):
        SemrankClient("127.0.0.1:8000")


@pytest.mark.parametrize(
    "header", ["Sun Nov  6 08:49:37 2099", "Sun, 06 Nov 2099 08:49:37 -0000", "inf", "nan"]
)
def test_retry_after_in_every_form_a_proxy_may_send(header: str) -> None:
    """An asctime or -0000 date raised a raw TypeError; inf and nan were taken as seconds."""
    from semrank.client import _retry_after_seconds

    seconds = _retry_after_seconds(header)
    if header in ("inf", "nan"):
        assert seconds is None
    else:
        assert seconds is not None and seconds > 1e9  # in 2099


def test_a_retry_after_date_counts_from_the_answers_date_not_this_machines_clock() -> None:
    """A proxy's dated Retry-After two minutes ahead of its Date was measured against this
    machine's clock: with that clock ahead of the proxy's (here by decades), no wait at all."""

    def busy(request: httpx.Request) -> httpx.Response:
        dates = {"Date": "Sun, 06 Nov 1994 08:49:37 GMT"}
        return httpx.Response(
            503, text="busy", headers={**dates, "Retry-After": "Sun, 06 Nov 1994 08:51:37 GMT"}
        )

    transport = httpx.MockTransport(busy)
    with (
        SemrankClient("http://test", transport=transport) as client,
        pytest.raises(errors.BackendUnavailableError) as unavailable,
    ):
        client.rerank(QUERY, DOCS)
    assert unavailable.value.retry_after == 120.0


def test_a_batch_answer_says_which_queries_fell_back_to_input_order() -> None:
    hit = {"index": 0, "relevance_score": 0.0, "tokens": 0, "truncated": False}
    body = {
        "id": "x", "model": "m", "reranked": False, "usage": {"total_tokens": 3},
        "results": [
            {"query_index": 0, "results": [hit], "reranked": True},
            {"query_index": 1, "results": [hit], "reranked": False},
        ],
    }  # fmt: skip
    with SemrankClient("http://test", transport=_answering(200, body)) as client:
        answer = client.rerank_batch([("a", ["d"]), ("b", ["e"])], fail_open=True)
    assert answer.reranked_by_query == [True, False] and not answer.reranked


def test_a_body_over_the_servers_limit_is_a_413_for_the_async_client_too(reranker: Any) -> None:
    """The server answered 413 without reading the body and closed; httpx's async client reads
    the answer only once it has sent everything, so it said "cannot reach the server: ;"."""
    import asyncio

    app = create_app(ServerConfig(), rerankers={"minilm": reranker})
    # Just over the default limit (5 MiB): more than the sockets buffer
    documents = ["x" * 1000] * 5300

    async def over_the_limit(url: str) -> errors.SemrankError:
        async with AsyncSemrankClient(url) as client:
            with pytest.raises(errors.SemrankError) as refused:
                await client.rerank(QUERY, documents)
        return refused.value

    with live_server(app) as url:
        refused = asyncio.run(over_the_limit(url))
    assert isinstance(refused, errors.RequestTooLargeError), refused
    assert refused.status_code == 413 and "--max-body-bytes" in str(refused)


def test_the_client_passes_on_warnings_and_the_librarys_chunking_config(reranker: Any) -> None:
    """A query cut to fit the model was said in meta.warnings and x-semrank-warning, which the
    client dropped; ChunkingConfig, the library's own type, was refused as chunking=."""
    from semrank import ChunkingConfig

    app = create_app(ServerConfig(), rerankers={"minilm": reranker})
    long_query = "fleas " * 400
    with live_server(app) as url, SemrankClient(url) as client:
        one = client.rerank(long_query, DOCS)
        batch = client.rerank_batch([(long_query, DOCS), (QUERY, DOCS)])
        plain = client.rerank(QUERY, DOCS)
        configured = client.rerank(QUERY, [LONG_DOC], chunking=ChunkingConfig(max_chunks=2))
        as_dict = client.rerank(QUERY, [LONG_DOC], chunking={"max_chunks": 2})
    assert one.warnings and "the query is" in one.warnings[0]
    assert batch.warnings and "the query is" in batch.warnings[0]
    assert plain.warnings == []
    assert configured.results[0].num_chunks == as_dict.results[0].num_chunks == 2


def test_gateway_errors_are_classed_by_status_and_bad_arguments_named() -> None:
    """A proxy's 429 (HTML, Retry-After) was a plain SemrankError, so retry loops catching
    OverloadedError missed it; a deeply nested document raised RecursionError; an index name
    with '/' was a bare 404; a key read from a file with its newline was 'not a string'."""
    html = "<html><body>Too Many Requests</body></html>"

    def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, text=html, headers={"Retry-After": "3"})

    with SemrankClient("http://test", transport=httpx.MockTransport(busy)) as client:
        with pytest.raises(errors.OverloadedError) as overloaded:
            client.rerank(QUERY, DOCS)
        nested: dict[str, Any] = {"text": "fleas"}
        for _ in range(3000):
            nested = {"text": "fleas", "n": nested}
        with pytest.raises(errors.InvalidInputError, match="documents nests too deeply"):
            client.rerank(QUERY, [nested])
        with pytest.raises(errors.InvalidInputError, match="without '/'"):
            client.search("a/b", {"query": "fleas"})
    assert overloaded.value.status_code == 429 and overloaded.value.retry_after == 3.0
    with pytest.raises(errors.InvalidInputError, match=r"whitespace.*key\.strip\(\)"):
        SemrankClient("http://test", api_key="k1\n")


def test_a_batch_query_may_set_its_own_top_n_and_min_score(reranker: Any) -> None:
    """The server takes top_n / min_score per query of a batch; the client refused them."""
    app = create_app(ServerConfig(), rerankers={"minilm": reranker})
    with live_server(app) as url, SemrankClient(url) as client:
        answer = client.rerank_batch(
            [(QUERY, DOCS, {"top_n": 1}), (QUERY, DOCS, {"min_score": 0.999999}), (QUERY, DOCS)]
        )
        with pytest.raises(errors.InvalidInputError, match="unknown option 'model'"):
            client.rerank_batch([(QUERY, DOCS, {"model": "x"})])
    assert [len(group) for group in answer.results] == [1, 0, len(DOCS)]
    assert answer.results[0][0].index == answer.results[2][0].index  # the same best document


def test_an_oversized_body_sent_after_100_continue_gets_its_413(reranker: Any) -> None:
    """A chunked body with Expect: 100-continue: the first read sends "100 Continue", so the
    client uploads; the drain was skipped for any Expect header and the client's upload hit a
    closed connection (BrokenPipeError) instead of reading the 413."""
    app = create_app(ServerConfig(max_body_bytes=100_000), rerankers={"minilm": reranker})
    body = b'{"query": "q", "documents": ["' + b"x" * 300_000 + b'"]}'  # under 4x the limit
    with live_server(app) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(
                b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
            )
            assert sock.recv(4096).startswith(b"HTTP/1.1 100")  # as curl waits for it
            for start in range(0, len(body), 65536):
                chunk = body[start : start + 65536]
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
            answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_a_batch_items_option_names_must_be_strings() -> None:
    refused = pytest.raises(errors.InvalidInputError, match="option names must be strings")
    with SemrankClient("http://127.0.0.1:9") as client, refused:
        client.rerank_batch([(QUERY, DOCS, {1: 2})])  # type: ignore[dict-item]


FORK_DOCS = ["apple facts and apple trees", "violin strings and bows", "quartz crystals", "tigers"]


def test_a_client_used_before_a_fork_gives_each_process_its_own_answers(reranker: Any) -> None:
    """Parent and forked children shared one kept-alive socket and read each other's answers
    (gunicorn --preload, multiprocessing): crossed rankings, or broken responses."""
    import os

    app = create_app(ServerConfig(), rerankers={"minilm": reranker})
    with live_server(app) as url, SemrankClient(url) as client:
        assert client.ready()  # the connection the fork copies
        children = []
        for position, word in ((1, "violin"), (2, "quartz")):
            pid = os.fork()
            if pid == 0:  # the child: exit 0 only if every answer is its own
                try:
                    ok = all(
                        client.rerank(word, FORK_DOCS, top_n=1).results[0].index == position
                        for _ in range(8)
                    )
                finally:
                    os._exit(0 if ok else 1)
            children.append(pid)
        mine = [client.rerank("apple", FORK_DOCS, top_n=1).results[0].index for _ in range(8)]
        statuses = [os.waitpid(pid, 0)[1] for pid in children]
    assert mine == [0] * 8 and statuses == [0, 0]


def test_a_client_goes_to_a_spawned_process_pool_and_copies_open_their_own_pool(
    reranker: Any,
) -> None:
    """A client handed to a ProcessPoolExecutor (or a spawn Pool, or copy.deepcopy) failed
    with "cannot pickle '_thread.RLock' object", from inside httpx's connection pool."""
    import asyncio
    import copy
    import multiprocessing
    import pickle
    from concurrent.futures import ProcessPoolExecutor

    app = create_app(ServerConfig(api_keys=frozenset({"k"})), rerankers={"minilm": reranker})
    spawn = multiprocessing.get_context("spawn")
    with live_server(app) as url, SemrankClient(url, api_key="k", timeout=30) as client:
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            answer = pool.submit(client.rerank, "violin", FORK_DOCS, top_n=1).result(timeout=120)
        assert answer.results[0].index == 1
        copied = copy.deepcopy(client)
        copied.close()  # its own pool: the original still serves
        assert client.rerank("quartz", FORK_DOCS, top_n=1).results[0].index == 2
        async_copy = pickle.loads(pickle.dumps(AsyncSemrankClient(url, api_key="k")))
        answered = asyncio.run(async_copy.rerank("tigers", FORK_DOCS, top_n=1))
        assert answered.results[0].index == 3
    for own in (
        SemrankClient("http://test", transport=httpx.MockTransport(lambda r: httpx.Response(200))),
        AsyncSemrankClient("http://test", transport=httpx.ASGITransport(app=app)),
    ):
        with pytest.raises(errors.InvalidInputError, match=r"one \w*SemrankClient per process"):
            pickle.dumps(own)


def test_one_async_client_serves_several_event_loops(reranker: Any) -> None:
    """asyncio.run() twice with one client: every other call raised "Event loop is closed"."""
    import asyncio

    app = create_app(ServerConfig(), rerankers={"minilm": reranker})
    with live_server(app) as url:
        client = AsyncSemrankClient(url)

        async def first() -> int:
            return (await client.rerank("violin", FORK_DOCS, top_n=1)).results[0].index

        assert [asyncio.run(first()) for _ in range(3)] == [1, 1, 1]
        # No connection is left open in each loop that ended (one socket per call piled up
        # until a garbage collection, each with two ResourceWarnings).
        gc.disable()
        try:
            before = _sockets()
            assert [asyncio.run(first()) for _ in range(6)] == [1] * 6
            time.sleep(0.2)  # the server side closes its end
            assert _sockets() <= before
        finally:
            gc.enable()
        asyncio.run(client.aclose())
        # A transport= of the caller's cannot be remade for the new loop: said, not a
        # RuntimeError on every other call.
        own = AsyncSemrankClient(url, transport=httpx.AsyncHTTPTransport())

        async def once() -> int:
            return (await own.rerank("violin", FORK_DOCS, top_n=1)).results[0].index

        assert asyncio.run(once()) == 1
        with pytest.raises(errors.SemrankError, match="make one client per event loop"):
            asyncio.run(once())
        asyncio.run(own.aclose())  # closed, whatever its connections' loop

    # One that holds nothing of a loop's (a mock, an ASGI app) serves loop after loop.
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"model": "m", "results": [], "usage": {"total_tokens": 1}})

    mocked = AsyncSemrankClient("http://m", transport=httpx.MockTransport(answer))
    for _ in range(2):
        assert asyncio.run(mocked.rerank("q", ["a"])).results == []


def _sockets() -> int:
    import os

    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


def test_credentials_or_a_query_in_base_url_are_refused_and_tls_to_http_is_named(
    reranker: Any,
) -> None:
    """user:password@ replaced the API key with Basic auth and appeared in every error message;
    a query string put the paths after it."""
    for url, said in (
        ("http://alice:s3cret@127.0.0.1:8000", "base_url holds a user name or password"),
        ("http://127.0.0.1:8000?x=1", "has a query string"),
    ):
        with pytest.raises(errors.InvalidInputError, match=said) as refused:
            SemrankClient(url, api_key="k")
        assert "s3cret" not in str(refused.value)
    app = create_app(ServerConfig(), rerankers={"minilm": reranker})
    with (
        live_server(app) as url,
        SemrankClient(url.replace("http:", "https:")) as client,
        pytest.raises(errors.SemrankError, match="speaks plain HTTP, so use an http://"),
    ):
        client.rerank("q", ["a"])

    def openssl_32(request: httpx.Request) -> httpx.Response:  # its words for the same thing
        raise httpx.ConnectError("[SSL] record layer failure (_ssl.c:1000)", request=request)

    newer = SemrankClient("https://127.0.0.1:9", transport=httpx.MockTransport(openssl_32))
    with pytest.raises(errors.SemrankError, match="speaks plain HTTP"):
        newer.rerank("q", ["a"])


def _another_web_server() -> Any:
    """Not semrank: a service with its own /ready, and a proxy that sends /sso/... to a login
    page."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse
    from starlette.routing import Route

    async def ok(request: Any) -> PlainTextResponse:
        return PlainTextResponse("OK")

    async def login(request: Any) -> HTMLResponse:
        return HTMLResponse("<html>sign in</html>")

    async def to_login(request: Any) -> RedirectResponse:
        return RedirectResponse("/login?next=/sso", status_code=302)

    async def not_routed_yet(request: Any) -> PlainTextResponse:  # Traefik before the pod is up
        return PlainTextResponse("404 page not found", status_code=404)

    async def polled_too_often(request: Any) -> PlainTextResponse:
        return PlainTextResponse("slow down", status_code=429)

    return Starlette(
        routes=[
            Route("/ready", ok),
            Route("/login", login),
            Route("/sso/{rest:path}", to_login, methods=["GET", "POST"]),
            Route("/starting/{rest:path}", not_routed_yet),
            Route("/limited/{rest:path}", polled_too_often),
        ]
    )


def test_ready_is_what_a_semrank_server_says_and_another_server_is_named(reranker: Any) -> None:
    """Another web server's /ready (or a proxy's login page) answering 200 was ready() True,
    and a redirect a silent False; a redirect on any other call said only "302 ...: Found"."""
    import asyncio

    def ready(url: str) -> bool:
        with SemrankClient(url) as client:
            return client.ready()

    async def ready_async(url: str) -> bool:
        async with AsyncSemrankClient(url) as client:
            return await client.ready()

    app = create_app(ServerConfig(), rerankers={"minilm": reranker})
    with live_server(app) as url:
        assert ready(url) is True and asyncio.run(ready_async(url)) is True
        app.state.phase = "draining"  # semrank's 503 with its readiness body: not ready
        assert ready(url) is False and asyncio.run(ready_async(url)) is False
    with live_server(_another_web_server()) as url:
        for check in (ready, lambda url: asyncio.run(ready_async(url))):
            with pytest.raises(errors.SemrankError, match="is not a semrank answer") as caught:
                check(url)
            assert f"200 from {url}/ready" in str(caught.value) and "'OK'" in str(caught.value)
            assert caught.value.status_code == 200  # type: ignore[attr-defined]
            redirected = f"redirects to {url}/login?next=/sso"
            with pytest.raises(errors.SemrankError, match=re.escape(redirected)):
                check(f"{url}/sso")
            # A proxy answering for a server not there yet: a wait loop goes on waiting.
            assert check(f"{url}/starting") is False and check(f"{url}/limited") is False
        with (
            SemrankClient(f"{url}/sso") as behind_login,
            pytest.raises(errors.SemrankError, match="follows no redirects") as caught,
        ):
            behind_login.rerank(QUERY, DOCS)
        assert f"302 from {url}/sso/v1/rerank {redirected}" in str(caught.value)
        assert caught.value.status_code == 302  # type: ignore[attr-defined]


def test_an_async_clients_connections_close_when_their_event_loop_ends(reranker: Any) -> None:
    """The pools of the first event loops an async client was used in (asyncio.run per call)
    kept their kept-alive sockets open until a garbage collection."""
    import asyncio

    app = create_app(ServerConfig(), rerankers={"minilm": reranker})
    with live_server(app) as url:
        client = AsyncSemrankClient(url)

        async def rank() -> int:
            return (await client.rerank("violin", FORK_DOCS, top_n=1)).results[0].index

        async def rank_twice() -> int:  # within a loop, its connection is kept for the next call
            loop_sockets = _sockets()  # the loop's own (its self-pipe)
            assert await rank() == 1
            kept = _sockets() - loop_sockets
            assert await rank() == 1
            return kept

        gc.disable()
        try:
            before = _sockets()
            assert asyncio.run(rank_twice()) == 2  # the client's end and the server's
            for _ in range(3):
                time.sleep(0.2)  # the server side closes its end
                assert _sockets() <= before
                assert asyncio.run(rank()) == 1
        finally:
            gc.enable()
        asyncio.run(client.aclose())
        with pytest.raises(errors.SemrankError, match="this semrank client is closed"):
            asyncio.run(rank())


def test_iter_hits_pages_through_every_hit_to_the_window(
    reranker: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client had no paging helper: a caller wrote the from / size loop, and its edge at
    10,000 (a 422 past it), by hand. iter_hits yields every hit of the ranking, a page at a
    time, and stops at the window with a warning where more may match."""
    import semrank.client as client_module

    docs = [{"id": f"d{n:02d}", "text": f"flea number {n} " + "flea " * (n % 5)} for n in range(23)]
    docs.append({"id": "other", "text": "Paris is in France."})
    app = create_app(ServerConfig(index_home=str(tmp_path)), rerankers={"minilm": reranker})
    body = {"query": "flea", "retriever": "bm25", "size": 50, "return_documents": False}
    with live_server(app) as url, SemrankClient(url) as client:
        http = httpx.Client(base_url=url)
        assert http.post("/v1/indexes", json={"name": "docs", "embedding_model": None}).is_success
        assert http.post("/v1/indexes/docs/documents", json={"documents": docs}).is_success
        whole = [hit["id"] for hit in client.search("docs", body)["hits"]]
        assert len(whole) == 23  # every flea document, in one page
        paged = [hit["id"] for hit in client.iter_hits("docs", body, page_size=5)]
        assert paged == whole
        later = [hit["id"] for hit in client.iter_hits("docs", {**body, "from": 20, "size": 2})]
        assert later == whole[20:]
        with pytest.raises(errors.InvalidInputError, match=r"page_size .* from 1 to 10,000"):
            client.iter_hits("docs", body, page_size=0)
        # Past the window (made small here: the server's is 10,000) no page is asked for.
        monkeypatch.setattr(client_module, "MAX_RESULT_WINDOW", 12)
        with pytest.warns(UserWarning, match="stopped at hit 12, the deepest a search pages"):
            capped = [hit["id"] for hit in client.iter_hits("docs", body, page_size=5)]
        assert capped == whole[:12]
        http.close()


@pytest.mark.anyio
async def test_the_async_client_pages_the_same_hits(reranker: Any, tmp_path: Any) -> None:
    docs = [{"id": f"d{n}", "text": "flea " * (n + 1)} for n in range(7)]
    app = create_app(ServerConfig(index_home=str(tmp_path)), rerankers={"minilm": reranker})
    body = {"query": "flea", "retriever": "bm25", "size": 3}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            await http.post("/v1/indexes", json={"name": "docs", "embedding_model": None})
            await http.post("/v1/indexes/docs/documents", json={"documents": docs})
        async with AsyncSemrankClient("http://test", transport=transport) as client:
            whole = (await client.search("docs", {**body, "size": 10}))["hits"]
            paged = [hit async for hit in client.iter_hits("docs", body)]
    assert [hit["id"] for hit in paged] == [hit["id"] for hit in whole] and len(paged) == 7
