"""OpenTelemetry tracing of the server (semrank[otel]): spans of a rerank and a search request,
the caller's traceparent, the batch a request rode in, and no opentelemetry import when off."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from semrank.errors import BackendUnavailableError, InvalidInputError
from semrank.server.config import from_environment

pytestmark = pytest.mark.anyio

NEEDS_OTEL = "tracing tests need opentelemetry-sdk (pip install 'semrank[otel]')"
QUERY = "what do fleas eat"
DOCS = [
    {"id": "d1", "text": "Fleas feed on the blood of mammals and birds."},
    {"id": "d2", "text": "Paris is the capital of France."},
    {"id": "d3", "text": "Flea larvae eat organic debris, not blood."},
]
TEXTS = [doc["text"] for doc in DOCS]
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def exporter() -> Any:
    pytest.importorskip("opentelemetry.sdk.trace", reason=NEEDS_OTEL)
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    return InMemorySpanExporter()


@contextlib.asynccontextmanager
async def traced_app(
    reranker: Any, exporter: Any, tmp_path: Path, **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app whose spans go to ``exporter`` (a host program's TracerProvider)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from semrank.pipeline import forget_open_indexes
    from semrank.server import ServerConfig, create_app

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    config = ServerConfig(index_home=str(tmp_path), **settings)
    app = create_app(config, rerankers={"minilm": reranker}, tracer_provider=provider)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                yield http
    finally:
        forget_open_indexes()


def by_name(spans: Any) -> dict[str, list[Any]]:
    named: dict[str, list[Any]] = {}
    for span in spans:
        named.setdefault(span.name, []).append(span)
    return named


def only(named: dict[str, list[Any]], name: str) -> Any:
    assert len(named.get(name, [])) == 1, f"{name}: {sorted(named)}"
    return named[name][0]


def assert_child(child: Any, parent: Any) -> None:
    assert child.parent is not None and child.parent.span_id == parent.context.span_id, (
        f"{child.name} is not a child of {parent.name}"
    )


def cross_encoder(spans: list[Any]) -> Any:
    """The one of ``spans`` that the cross-encoder made."""
    (made,) = [span for span in spans if span.attributes["semrank.scorer"] == "cross-encoder"]
    return made


def assert_no_text(spans: Any, texts: list[str]) -> None:
    """No attribute carries a query's or a document's text, nor a piece of one."""
    words = {word for text in texts for word in text.lower().split() if len(word) > 4}
    for span in spans:
        for key, value in span.attributes.items():
            shown = str(value).lower()
            assert not [w for w in words if w in shown], (span.name, key, value)


async def test_a_rerank_request_is_one_trace_of_its_stages(
    reranker: Any, exporter: Any, tmp_path: Path
) -> None:
    async with traced_app(reranker, exporter, tmp_path) as client:
        answer = await client.post("/v1/rerank", json={"query": QUERY, "documents": TEXTS})
    assert answer.status_code == 200, answer.text
    spans = exporter.get_finished_spans()
    named = by_name(spans)
    server = only(named, "POST /v1/rerank")
    assert server.parent is None and server.kind.name == "SERVER"
    assert server.attributes["http.route"] == "/v1/rerank"
    assert server.attributes["http.request.method"] == "POST"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["semrank.request_id"] == answer.headers["x-request-id"]
    rerank = only(named, "semrank.rerank")
    assert_child(rerank, server)
    assert rerank.attributes["semrank.model"] == "minilm"
    assert rerank.attributes["semrank.documents"] == len(TEXTS)
    for stage in ("semrank.plan", "semrank.score", "semrank.aggregate"):
        assert_child(only(named, stage), rerank)
    score, queue, batch = (
        only(named, n) for n in ("semrank.score", "semrank.queue", "semrank.batch")
    )
    pairs = score.attributes["semrank.pairs"]
    assert pairs == len(TEXTS) and score.attributes["semrank.cache_hits"] == 0
    # The request's wait in the batcher, then the model call it rode in (this trace's alone).
    assert_child(queue, score)
    assert_child(batch, score)
    assert queue.end_time <= batch.start_time + 1_000_000  # within a millisecond
    assert queue.attributes["semrank.batch.requests"] == 1
    assert queue.attributes["semrank.batch.pairs"] == pairs
    assert [link.context.span_id for link in queue.links] == [batch.context.span_id]
    assert [link.context.span_id for link in batch.links] == [queue.context.span_id]
    # The model's own tokenizing and run (the default model's blend embeds too), in the call.
    for part in named["semrank.tokenize"] + named["semrank.model.run"]:
        assert_child(part, batch)
    tokenize, run = (
        cross_encoder(named[name]) for name in ("semrank.tokenize", "semrank.model.run")
    )
    assert tokenize.attributes["semrank.pairs"] == pairs
    assert run.attributes["semrank.inputs"] == pairs
    assert run.attributes["semrank.backend"] == reranker.scorer.backend
    assert 0 < run.attributes["semrank.max_tokens"] <= reranker.scorer.max_length
    assert len({span.context.trace_id for span in spans}) == 1
    assert_no_text(spans, [QUERY, *TEXTS])


async def test_a_request_with_a_traceparent_joins_the_callers_trace(
    reranker: Any, exporter: Any, tmp_path: Path
) -> None:
    header = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    async with traced_app(reranker, exporter, tmp_path) as client:
        answer = await client.post(
            "/v1/rerank", json={"query": QUERY, "documents": TEXTS}, headers=header
        )
        assert answer.status_code == 200, answer.text
        unknown = await client.post("/v1/rerank", json={"query": QUERY, "documents": "x"})
        assert unknown.status_code == 422
    spans = exporter.get_finished_spans()
    joined = [span for span in spans if span.context.trace_id == int(CALLER_TRACE, 16)]
    server = only(by_name(joined), "POST /v1/rerank")
    assert server.parent is not None and server.parent.span_id == int(CALLER_SPAN, 16)
    assert server.parent.is_remote
    assert {"semrank.rerank", "semrank.batch", "semrank.model.run"} <= {s.name for s in joined}
    # The next request carried none: a trace of its own, its 4xx not marked as a failure.
    refused = [span for span in spans if span.context.trace_id != int(CALLER_TRACE, 16)]
    assert [span.name for span in refused] == ["POST /v1/rerank"]
    assert refused[0].attributes["http.response.status_code"] == 422
    assert refused[0].status.status_code.name == "UNSET"


async def test_requests_merged_into_one_model_call_link_to_it(
    reranker: Any, exporter: Any, tmp_path: Path
) -> None:
    async with traced_app(reranker, exporter, tmp_path, batch_wait_ms=300.0) as client:
        answers = await asyncio.gather(
            client.post("/v1/rerank", json={"query": QUERY, "documents": TEXTS}),
            client.post("/v1/rerank", json={"query": "capital of France", "documents": TEXTS}),
        )
    assert [answer.status_code for answer in answers] == [200, 200]
    named = by_name(exporter.get_finished_spans())
    batch = only(named, "semrank.batch")
    queues = named["semrank.queue"]
    assert batch.attributes["semrank.batch.requests"] == 2
    assert batch.attributes["semrank.batch.pairs"] == 2 * len(TEXTS)
    assert {link.context.span_id for link in batch.links} == {q.context.span_id for q in queues}
    for queue in queues:
        assert [link.context.span_id for link in queue.links] == [batch.context.span_id]
        assert queue.attributes["semrank.batch.requests"] == 2
    # Two traces; the call and its model run appear in one of them, linked from the other.
    servers = named["POST /v1/rerank"]
    assert len({span.context.trace_id for span in servers}) == 2
    assert batch.context.trace_id in {span.context.trace_id for span in servers}


async def test_a_search_traces_its_first_stage_and_its_rerank(
    reranker: Any, exporter: Any, tmp_path: Path
) -> None:
    tree = {
        "text_similarity_reranker": {
            "retriever": {"standard": {"query": {"match": {"text": "{{query}}"}}}},
            "field": "text",
            "inference_id": "minilm",
            "rank_window_size": 10,
        }
    }
    async with traced_app(reranker, exporter, tmp_path) as client:
        made = await client.post("/v1/indexes", json={"name": "docs", "embedding_model": None})
        assert made.status_code == 201, made.text
        added = await client.post("/v1/indexes/docs/documents", json={"documents": DOCS})
        assert added.status_code == 200, added.text
        exporter.clear()
        found = await client.post(
            "/v1/indexes/docs/search", json={"query": QUERY, "retriever": tree, "size": 2}
        )
    assert found.status_code == 200, found.text
    spans = exporter.get_finished_spans()
    named = by_name(spans)
    server = only(named, "POST /v1/indexes/{name}/search")
    assert server.attributes["http.route"] == "/v1/indexes/{name}/search"
    search = only(named, "semrank.search")
    assert_child(search, server)
    assert search.attributes["semrank.index"] == "docs"
    assert search.attributes["semrank.k"] == 2
    assert search.attributes["semrank.retriever"] == "TextSimilarityReranker"
    retrieve, rerank = only(named, "semrank.retrieve"), only(named, "semrank.rerank")
    assert_child(retrieve, search)
    assert_child(rerank, search)
    assert retrieve.end_time <= rerank.start_time
    assert retrieve.attributes["semrank.retriever"] == "standard"
    assert retrieve.attributes["semrank.index"] == "docs"
    assert retrieve.attributes["semrank.k"] == 10  # the rerank window
    hits = retrieve.attributes["semrank.hits"]
    assert hits == rerank.attributes["semrank.documents"] == 2  # the flea documents
    assert rerank.attributes["semrank.model"] == "minilm"
    assert_child(only(named, "semrank.score"), rerank)
    assert cross_encoder(named["semrank.model.run"]).attributes["semrank.inputs"] == hits
    assert_no_text(spans, [QUERY, *TEXTS])


def test_tracing_off_imports_no_opentelemetry(tmp_path: Path) -> None:
    """Without an endpoint, the library re-ranks without importing opentelemetry, and a server
    serves a rerank and a search without its SDK or exporter (recent FastAPI imports the API
    itself, for its own telemetry, which is off unless a TracerProvider is configured)."""
    script = """
import asyncio, json, sys
import httpx
from semrank import Reranker

def loaded(prefix):
    return sorted(m for m in sys.modules if m == prefix or m.startswith(prefix + "."))

reranker = Reranker()
assert reranker.rerank("fleas", ["Fleas bite.", "Paris"])[0].index == 0
library = loaded("opentelemetry")

async def main():
    from semrank.server import ServerConfig, create_app

    app = create_app(ServerConfig(index_home=sys.argv[1]), rerankers={"m": reranker})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            body = {"query": "fleas", "documents": ["Fleas bite.", "Paris"]}
            statuses = [(await http.post("/v1/rerank", json=body)).status_code]
            await http.post("/v1/indexes", json={"name": "i", "embedding_model": None})
            docs = [{"id": "1", "text": "Fleas bite."}]
            await http.post("/v1/indexes/i/documents", json={"documents": docs})
            search = {"query": "fleas", "retriever": "bm25+rerank"}
            statuses.append((await http.post("/v1/indexes/i/search", json=search)).status_code)
    server = loaded("opentelemetry.sdk") + loaded("opentelemetry.exporter")
    print(json.dumps({"library": library, "statuses": statuses, "server": server}))

asyncio.run(main())
"""
    ran = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert ran.returncode == 0, ran.stderr
    said = json.loads(ran.stdout.splitlines()[-1])
    assert said == {"library": [], "statuses": [200, 200], "server": []}


def test_the_endpoint_and_service_name_come_from_flags_then_the_environment() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318", "OTEL_SERVICE_NAME": "rerank-eu"}
    config = from_environment(environ=env)
    assert (config.otlp_endpoint, config.otlp_service_name) == ("http://otel:4318", "rerank-eu")
    ours = {**env, "SEMRANK_OTLP_ENDPOINT": "http://jaeger:4318"}
    assert from_environment(environ=ours).otlp_endpoint == "http://jaeger:4318"
    flags = {"otlp_endpoint": "https://tempo:4318", "otlp_service_name": "a"}
    assert from_environment(flags, environ=ours).otlp_endpoint == "https://tempo:4318"
    assert from_environment(flags, environ=ours).otlp_service_name == "a"
    off = from_environment(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": " "})
    assert (off.otlp_endpoint, off.otlp_service_name) == (None, "semrank")


@pytest.mark.parametrize(
    ("flags", "env", "said"),
    [
        ({"otlp_endpoint": "localhost:4318"}, {}, "--otlp-endpoint 'localhost:4318'"),
        ({"otlp_endpoint": ""}, {}, "http://localhost:4318"),
        ({"otlp_service_name": " "}, {}, "--otlp-service-name is blank"),
        (
            {},
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4317",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            },
            "$OTEL_EXPORTER_OTLP_PROTOCOL='grpc'",
        ),
    ],
)
def test_a_bad_tracing_setting_is_refused_naming_it(
    flags: dict[str, str], env: dict[str, str], said: str
) -> None:
    with pytest.raises(InvalidInputError, match=None) as refused:
        from_environment(flags, environ=env)
    assert said in str(refused.value)


def test_tracing_without_the_extra_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from semrank.server import ServerConfig, create_app

    # As where opentelemetry is not installed: its import fails.
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    config = ServerConfig(otlp_endpoint="http://localhost:4318")
    with pytest.raises(BackendUnavailableError) as refused:
        create_app(config, rerankers={})
    assert "pip install 'semrank[otel]'" in str(refused.value)


@contextlib.contextmanager
def collector() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    """An OTLP/HTTP collector stand-in on a free port: what it receives, as (path, type, body)."""
    received: list[tuple[str, str, bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append((self.path, self.headers["content-type"], body))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


async def test_spans_are_exported_over_otlp_http_by_shutdown(reranker: Any, tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http", reason=NEEDS_OTEL)
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from semrank.server import ServerConfig, create_app

    with collector() as (url, received):
        config = ServerConfig(index_home=str(tmp_path), otlp_endpoint=url, otlp_service_name="t")
        app = create_app(config, rerankers={"minilm": reranker})
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                body = {"query": QUERY, "documents": TEXTS}
                assert (await http.post("/v1/rerank", json=body)).status_code == 200
        # The app's shutdown sent what the batch processor still held.
    assert received and {path for path, _, _ in received} == {"/v1/traces"}
    assert {kind for _, kind, _ in received} == {"application/x-protobuf"}
    names, services = set(), set()
    for _, _, payload in received:
        export = ExportTraceServiceRequest.FromString(payload)
        for spans in export.resource_spans:
            services |= {a.value.string_value for a in spans.resource.attributes}
            names |= {s.name for scope in spans.scope_spans for s in scope.spans}
    assert "t" in services
    assert {"POST /v1/rerank", "semrank.rerank", "semrank.batch", "semrank.model.run"} <= names


async def test_a_request_dropped_from_the_queue_ends_its_wait_as_failed(
    reranker: Any, exporter: Any, tmp_path: Path
) -> None:
    async with traced_app(reranker, exporter, tmp_path, batch_wait_ms=500.0) as client:
        body = {"query": QUERY, "documents": TEXTS, "timeout_ms": 50}
        answer = await client.post("/v1/rerank", json=body)
    assert answer.status_code == 504, answer.text
    named = by_name(exporter.get_finished_spans())
    queue = only(named, "semrank.queue")
    assert queue.status.status_code.name == "ERROR"
    # Over (answered 504) before the batcher looked again, or found past its deadline.
    assert queue.status.description in {"ClientDisconnectedError", "DeadlineExceededError"}
    assert "semrank.batch" not in named  # the model never ran for it
    server = only(named, "POST /v1/rerank")
    assert server.attributes["http.response.status_code"] == 504
    assert server.status.status_code.name == "ERROR"
