"""API tests: httpx against the ASGI app (lifespan running), real bundled model.

Every rerank response is compared with ``Reranker.rerank`` on the same inputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from semrank.server import ServerConfig, create_app

pytestmark = pytest.mark.anyio

QUERY = "what do fleas eat"
DOCS = [
    "Paris is the capital of France and has many museums.",
    "Fleas feed on the blood of mammals and birds.",
    "The ocean is deep and cold; fish swim in it.",
    "Adult fleas drink blood; larvae eat organic debris.",
]
# Longer than all-MiniLM-L6-v2's 256-token window: chunked by default, truncated without.
LONG_DOC = " ".join(["The weather was mild and the market was busy."] * 60) + (
    " Fleas eat blood from their hosts."
)


@contextlib.asynccontextmanager
async def serving(
    reranker: Any,
    *,
    headers: dict[str, str] | None = None,
    more_models: dict[str, Any] | None = None,
    **config: Any,
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    rerankers = {"minilm": reranker, **(more_models or {})}
    app = create_app(ServerConfig(**config), rerankers=rerankers)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers, timeout=60
        ) as client:
            yield app, client


@contextlib.asynccontextmanager
async def mounted_in_a_host(app: Any, prefix: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``app`` mounted at ``prefix`` in a host FastAPI app whose lifespan runs
    ``app``'s, as docs/server.md shows (the client's base URL is the mount's)."""
    from fastapi import FastAPI

    @contextlib.asynccontextmanager
    async def lifespan(host: FastAPI) -> AsyncIterator[None]:
        async with app.router.lifespan_context(app):
            yield

    host = FastAPI(lifespan=lifespan)
    host.mount(prefix, app)
    async with host.router.lifespan_context(host):
        transport = httpx.ASGITransport(app=host)
        base_url = f"http://test{prefix}"
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


def expected(
    reranker: Any, query: str, documents: list[Any], **options: Any
) -> list[dict[str, Any]]:
    return [
        {
            "index": r.index,
            "relevance_score": pytest.approx(r.relevance_score, abs=1e-5),
            "tokens": r.tokens,
            "truncated": r.truncated,
            "num_chunks": r.num_chunks,
        }
        for r in reranker.rerank(query, documents, **options)
    ]


def facts(
    results: list[dict[str, Any]], score_key: str = "relevance_score"
) -> list[dict[str, Any]]:
    keys = ("index", score_key, "tokens", "truncated", "num_chunks")
    return [{("relevance_score" if k == score_key else k): r[k] for k in keys} for r in results]


def metric_samples(text: str, name: str) -> list[Any]:
    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


# --- the endpoints equal Reranker.rerank ----------------------------------------------------


async def test_v2_rerank_equals_reranker(reranker: Any) -> None:
    docs = [*DOCS, LONG_DOC]
    async with serving(reranker) as (_, client):
        response = await client.post(
            "/v2/rerank", json={"model": "minilm", "query": QUERY, "documents": docs, "top_n": 3}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert facts(body["results"]) == expected(reranker, QUERY, docs, top_n=3)
    assert body["meta"]["api_version"] == {"version": "2"}
    assert body["meta"]["billed_units"]["search_units"] == 1
    assert body["meta"]["tokens"]["input_tokens"] > sum(r["tokens"] for r in body["results"])
    assert body["reranked"] is True and response.headers["x-semrank-reranked"] == "true"
    assert body["id"] == response.headers["x-request-id"]


async def test_a_path_ending_in_a_slash_is_served_not_redirected(reranker: Any) -> None:
    """Starlette redirected it (307) to a URL built from the Host header; httpx, and so
    Cohere's SDK, follow no redirect for a POST."""
    body = {"model": "minilm", "query": QUERY, "documents": DOCS}
    async with serving(reranker, headers={"host": "elsewhere.example"}) as (_, client):
        slashed = await client.post("/v2/rerank/", json=body)
        plain = await client.post("/v2/rerank", json=body)
        models = await client.get("/v1/models//")
        metrics = (await client.get("/metrics")).text
    assert slashed.status_code == 200, slashed.text
    assert "location" not in slashed.headers
    assert facts(slashed.json()["results"]) == facts(plain.json()["results"])
    assert models.status_code == 200 and models.json()["data"][0]["id"] == "minilm"
    counted = [
        s.value
        for s in metric_samples(metrics, "semrank_requests_total")
        if s.labels.get("route") == "/v2/rerank" and s.labels.get("status") == "200"
    ]
    assert counted == [2]


async def test_an_app_mounted_without_its_startup_says_how_to_run_it() -> None:
    """Mounted in a user's app (app.mount), whose lifespan does not run a sub-app's, the app
    loaded no model and answered every request 429 "still loading; retry shortly", for good."""
    from fastapi import FastAPI

    host = FastAPI()
    host.mount("/rerank", create_app(ServerConfig()))
    transport = httpx.ASGITransport(app=host)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.post("/rerank/v1/rerank", json={"query": QUERY, "documents": DOCS})
        # Its routes answer as they do served alone (the TEI route's hint was lost).
        tei = await client.post("/rerank/rerank", json={"query": QUERY})
    assert tei.status_code == 422 and "text-embeddings-inference" in tei.json()["error"]
    assert answer.status_code == 503
    assert "app.mount" in answer.json()["message"]
    assert "lifespan_context" in answer.json()["message"]


async def test_an_app_given_rerankers_and_mounted_without_its_startup_says_so(
    reranker: Any,
) -> None:
    """Handed ready-made rerankers (create_app's way to embed it) and mounted without its
    lifespan, the app scored them unbatched while /ready said "starting" for good, so a
    readiness probe never let traffic in: its rerank routes now say how to run the startup."""
    from fastapi import FastAPI

    host = FastAPI()
    host.mount("/rerank", create_app(ServerConfig(), rerankers={"minilm": reranker}))
    transport = httpx.ASGITransport(app=host)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        ready = await client.get("/rerank/ready")
        answer = await client.post("/rerank/v2/rerank", json={"query": QUERY, "documents": DOCS})
    assert ready.status_code == 503 and ready.json()["status"] == "starting"
    assert answer.status_code == 503 and "lifespan_context" in answer.json()["message"]


async def test_an_app_mounted_with_its_startup_run_by_the_host_serves(reranker: Any) -> None:
    """The way the 503 above (and docs/server.md) says works: the host runs the lifespan."""
    semrank_app = create_app(ServerConfig(), rerankers={"minilm": reranker})
    async with mounted_in_a_host(semrank_app, "/rerank") as client:
        assert (await client.get("/ready")).json()["status"] == "ready"
        answer = await client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS})
    assert answer.status_code == 200
    assert facts(answer.json()["results"]) == expected(reranker, QUERY, DOCS)


async def test_a_base_url_ending_in_a_slash_is_served_to_clients_that_add_rerank(
    reranker: Any,
) -> None:
    """Voyage's client and LlamaIndex's JinaRerank post to f"{base_url}/rerank": given
    http://HOST/v1/ they sent POST /v1//rerank (these bodies), answered 404. Only rerank routes
    are merged: DELETE /v1/indexes//documents must not drop an index named "documents"."""
    voyage = {"query": QUERY, "documents": DOCS, "model": "minilm", "top_k": None}
    jina = {"query": QUERY, "documents": DOCS, "model": "minilm", "top_n": 2}
    async with serving(reranker) as (_, client):
        voyage_slashed = await client.post("/v1//rerank", json={**voyage, "truncation": True})
        voyage_plain = await client.post("/v1/rerank", json={**voyage, "truncation": True})
        jina_slashed = await client.post("/v1//rerank", json=jina)
        jina_plain = await client.post("/v1/rerank", json=jina)
        index_route = await client.delete("/v1/indexes//documents")
    assert voyage_slashed.status_code == jina_slashed.status_code == 200, voyage_slashed.text
    assert facts(voyage_slashed.json()["data"]) == facts(voyage_plain.json()["data"])
    assert facts(jina_slashed.json()["results"]) == facts(jina_plain.json()["results"])
    assert index_route.status_code == 404
    assert index_route.json()["error"].startswith("no route DELETE /v1/indexes//documents")


async def test_v1_rerank_objects_rank_fields_and_documents(reranker: Any) -> None:
    docs = [{"title": f"doc {i}", "body": text, "id": i} for i, text in enumerate(DOCS)]
    request = {
        "query": QUERY,
        "documents": docs,
        "rank_fields": ["title", "body"],
        "return_documents": True,
        "max_tokens_per_doc": 8,
    }
    async with serving(reranker) as (_, client):
        response = await client.post("/v1/rerank", json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    want = expected(reranker, QUERY, docs, rank_fields=["title", "body"], max_tokens_per_doc=8)
    assert facts(body["results"]) == want
    assert [r["document"] for r in body["results"]] == [docs[r["index"]] for r in body["results"]]
    assert all(r["truncated"] for r in body["results"])  # max_tokens_per_doc cut them, as Cohere
    assert body["object"] == "rerank" and body["model"] == "minilm"
    assert body["usage"]["total_tokens"] == body["meta"]["tokens"]["input_tokens"] > 0


async def test_rank_fields_name_keys_spelled_composed_or_decomposed(reranker: Any) -> None:
    """Keys saved decomposed (macOS tools write "re\u0301sume\u0301"), rank_fields typed
    composed: a 422 "no such field". They are read as the document spells them, and the
    documents and chunk fields come back in that spelling."""
    composed, decomposed = (unicodedata.normalize(form, "résumé") for form in ("NFC", "NFD"))
    docs = [{"title": f"doc {i}", decomposed: text} for i, text in enumerate([*DOCS, LONG_DOC])]
    request = {
        "query": QUERY,
        "documents": docs,
        "rank_fields": ["title", composed],
        "return_documents": True,
    }
    async with serving(reranker) as (_, client):
        response = await client.post("/v1/rerank", json=request)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert facts(results) == expected(reranker, QUERY, docs, rank_fields=["title", decomposed])
    assert [r["document"] for r in results] == [docs[r["index"]] for r in results]
    (chunked,) = [r for r in results if r["num_chunks"] > 1]
    assert chunked["chunk"]["field"] == decomposed


async def test_objects_read_by_text_alone_name_their_unread_text_fields(reranker: Any) -> None:
    # Together's API reads every field of an object by default, Cohere's its 'text': semrank
    # follows Cohere and says which prose fields went unread (ids and URLs are not prose).
    docs = [
        {"title": "Fleas, tiny blood feeders", "text": "An overview.", "id": "a1"},
        {"title": "Paris and its museums", "text": "An overview.", "url": "http://x.org/p"},
        {
            "title": "A dated note",
            "text": "Dated.",
            "published": "2024-01-01 10:00",
            "code": "A 12",
        },
    ]
    async with serving(reranker) as (_, client):
        plain = await client.post("/v1/rerank", json={"query": QUERY, "documents": docs})
        named = await client.post(
            "/v1/rerank", json={"query": QUERY, "documents": docs, "rank_fields": ["title"]}
        )
        no_prose = await client.post(
            "/v1/rerank",
            json={"query": QUERY, "documents": [{"text": d["text"], "id": "a"} for d in docs]},
        )
    (warning,) = plain.json()["meta"]["warnings"]
    assert "'title' were not read" in warning and "rank_fields" in warning
    assert "published" not in warning and "code" not in warning  # a date, a code: not prose
    assert plain.headers["x-semrank-warning"] == warning
    assert "warnings" not in named.json()["meta"] and "warnings" not in no_prose.json()["meta"]


async def test_a_query_the_model_reads_as_unknown_tokens_is_warned_of(reranker: Any) -> None:
    # The bundled models are English: a Chinese or Thai query is [UNK] tokens to them.
    async with serving(reranker) as (_, client):
        chinese = await client.post("/v2/rerank", json={"query": "跳蚤吃什么", "documents": DOCS})
        english = await client.post("/v2/rerank", json={"query": QUERY, "documents": DOCS})
    (warning,) = chinese.json()["meta"]["warnings"]
    assert warning.startswith("model 'minilm' reads 5 of the query's 5 tokens as unknown")
    assert "use a multilingual model" in warning
    assert "warnings" not in english.json()["meta"]


async def test_a_lone_surrogate_in_the_query_is_named_as_such(reranker: Any) -> None:
    body = b'{"query": "\\ud800 fleas", "documents": ["Fleas eat blood."]}'
    async with serving(reranker) as (_, client):
        response = await client.post(
            "/v2/rerank", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 422
    assert response.json()["error"].startswith("query: holds a lone surrogate")
    assert "send surrogate pairs whole" in response.json()["error"]


async def test_v1_strings_come_back_as_text_objects_only_when_asked(reranker: Any) -> None:
    async with serving(reranker) as (_, client):
        plain = (await client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS})).json()
        with_docs = (
            await client.post(
                "/v1/rerank", json={"query": QUERY, "documents": DOCS, "return_documents": True}
            )
        ).json()
    assert all("document" not in r for r in plain["results"])
    assert [r["document"] for r in with_docs["results"]] == [
        {"text": DOCS[r["index"]]} for r in with_docs["results"]
    ]


async def test_v1_voyage_style_with_top_k(reranker: Any) -> None:
    request = {"query": QUERY, "documents": DOCS, "top_k": 2, "return_documents": True}
    async with serving(reranker) as (_, client):
        body = (await client.post("/v1/rerank", json=request)).json()
    assert body["object"] == "list" and set(body["usage"]) == {"total_tokens"}
    assert facts(body["data"]) == expected(reranker, QUERY, DOCS, top_n=2)
    assert [r["document"] for r in body["data"]] == [DOCS[r["index"]] for r in body["data"]]


async def test_v1_answers_voyages_client_in_voyages_shape(reranker: Any) -> None:
    # What voyageai's client sends when top_k is not given: top_k null, truncation true.
    request = {"query": QUERY, "documents": DOCS, "top_k": None, "truncation": True}
    async with serving(reranker) as (_, client):
        body = (await client.post("/v1/rerank", json=request)).json()
        cohere = (await client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS})).json()
    assert body["object"] == "list" and body["usage"]["total_tokens"] > 0
    assert facts(body["data"]) == expected(reranker, QUERY, DOCS)
    assert cohere["object"] == "rerank" and len(cohere["results"]) == len(DOCS)
    # Together's and Jina's clients require completion_tokens.
    assert cohere["usage"]["completion_tokens"] == 0


async def test_v1_return_documents_default_is_the_servers(reranker: Any) -> None:
    request = {"query": QUERY, "documents": DOCS}
    async with serving(reranker, return_documents=True) as (_, client):
        jina = (await client.post("/v1/rerank", json=request)).json()
        off = (await client.post("/v1/rerank", json={**request, "return_documents": False})).json()
    assert [r["document"] for r in jina["results"]] == [
        {"text": DOCS[r["index"]]} for r in jina["results"]
    ]
    assert all("document" not in r for r in off["results"])


async def test_errors_repeat_the_message_for_vendor_clients(reranker: Any) -> None:
    conflicting = {
        "query": QUERY,
        "documents": DOCS,
        "chunking": False,
        "max_chunks_per_doc": 2,
    }
    async with serving(reranker) as (_, client):
        response = await client.post("/v1/rerank", json=conflicting)
    body = response.json()
    assert response.status_code == 422, body
    assert body["error"].startswith("max_chunks_per_doc=2 asks for chunking")
    assert body["message"] == body["detail"] == body["error"]


async def test_tei_rerank_is_a_bare_array(reranker: Any) -> None:
    request = {"query": QUERY, "texts": DOCS, "return_text": True, "raw_scores": True}
    async with serving(reranker) as (_, client):
        body = (await client.post("/rerank", json=request)).json()
    assert isinstance(body, list)
    assert facts(body, "score") == expected(reranker, QUERY, DOCS, raw_scores=True)
    assert [r["text"] for r in body] == [DOCS[r["index"]] for r in body]


async def test_root_rerank_answers_documents_bodies_as_v1_rerank(reranker: Any) -> None:
    """Clients that add /rerank to a base URL without /v1 (Together 1.x given .../v1, Voyage's
    client, generic Cohere-compatible ones) post the documents shape to TEI's route."""
    together = {"model": "minilm", "query": QUERY, "documents": DOCS, "top_n": 2}
    voyage = {"query": QUERY, "documents": DOCS, "top_k": None, "truncation": True}
    async with serving(reranker) as (_, client):
        at_root = await client.post("/rerank", json=together)
        at_v1 = await client.post("/v1/rerank", json=together)
        voyage_at_root = await client.post("/rerank", json=voyage)
        bad_item = await client.post("/rerank", json={"query": QUERY, "documents": [1]})
        bad_item_v1 = await client.post("/v1/rerank", json={"query": QUERY, "documents": [1]})
    assert at_root.status_code == 200, at_root.text
    body = at_root.json()
    assert body["object"] == "rerank" and body["model"] == "minilm"
    assert facts(body["results"]) == expected(reranker, QUERY, DOCS, top_n=2)
    assert {k: v for k, v in body.items() if k != "id"} == {
        k: v for k, v in at_v1.json().items() if k != "id"
    }
    assert voyage_at_root.json()["object"] == "list"
    assert facts(voyage_at_root.json()["data"]) == expected(reranker, QUERY, DOCS)
    assert bad_item.status_code == 422
    assert bad_item.json()["error"] == bad_item_v1.json()["error"]  # no tag in the location
    assert bad_item.json()["error"].startswith("documents.0: Input should be a valid string, or")


async def test_tei_truncate_false_rejects_inputs_the_model_cannot_read(reranker: Any) -> None:
    texts = [DOCS[0], LONG_DOC]
    async with serving(reranker) as (_, client):
        strict = await client.post(
            "/rerank", json={"query": QUERY, "texts": texts, "truncate": False, "chunking": False}
        )
        lenient = await client.post(
            "/rerank", json={"query": QUERY, "texts": texts, "truncate": True, "chunking": False}
        )
        one_window = {"texts": texts, "truncation_direction": "Left", "chunking": False}
        left_cut = await client.post("/rerank", json={"query": QUERY, **one_window})
        strict_left = await client.post(
            "/rerank", json={"query": QUERY, **one_window, "truncate": False}
        )
        left_whole = await client.post(
            "/rerank", json={"query": QUERY, "texts": texts, "truncation_direction": "Left"}
        )
    # 413, as text-embeddings-inference answers an input it may not truncate.
    assert strict.status_code == 413
    assert strict.json()["error_type"] == "request_too_large" and "[1]" in strict.json()["error"]
    assert "go on past what model" in strict.json()["error"]
    assert "(1 window of up to" in strict.json()["error"]
    assert lenient.status_code == 200
    assert [r["truncated"] for r in lenient.json() if r["index"] == 1] == [True]
    # Haystack's TEI ranker sends Left: texts read whole are scored, one that would be cut (at
    # its end, the only way semrank cuts) is refused with the fix.
    assert left_whole.status_code == 200, left_whole.text
    assert {r["index"]: r["truncated"] for r in left_whole.json()} == {0: False, 1: False}
    assert left_cut.status_code == 413 and "[1]" in left_cut.json()["error"]
    assert "send truncation_direction 'right' (semrank cuts" in left_cut.json()["error"]
    # Forbidding truncation as well: the fix names both fields (truncate: true alone, still
    # from the left, was refused again).
    assert strict_left.status_code == 413
    assert "send truncation_direction 'right' and truncate: true" in strict_left.json()["error"]


async def test_a_413_names_what_limited_the_reading_and_its_real_size(reranker: Any) -> None:
    """With chunking on and max_chunks 1 the 413 said "enable chunking" (it was on) and gave
    the model's whole length as the window ("256 tokens with the query"); TEI's bad texts
    were named "documents"."""
    async with serving(reranker) as (_, client):
        one = {"query": QUERY, "documents": [LONG_DOC], "truncation": False}
        capped = await client.post("/v1/rerank", json={**one, "max_chunks_per_doc": 1})
        unchunked = await client.post("/v1/rerank", json={**one, "chunking": False})
        surrogate = await client.post(
            "/rerank",
            content=b'{"query": "fleas", "texts": ["ab\\ud800cd"]}',
            headers={"content-type": "application/json"},
        )
    assert capped.status_code == unchunked.status_code == 413
    assert "raise max_tokens_per_doc" in capped.json()["error"]
    assert "enable chunking" not in capped.json()["error"]
    assert "enable chunking" in unchunked.json()["error"]
    window = reranker.scorer.doc_token_budget(QUERY)
    assert f"(1 window of up to {window} document tokens)" in capped.json()["error"]
    assert surrogate.status_code == 422
    assert surrogate.json()["error"].startswith("texts[0] holds a lone surrogate")


async def test_chunking_and_min_score_extras(reranker: Any) -> None:
    from semrank.rerank import ChunkingConfig

    docs = [DOCS[0], LONG_DOC, DOCS[1]]
    config = ChunkingConfig(aggregation="max", overlap_tokens=16)
    # A threshold that keeps the long document whatever the default model scores it.
    min_score = float(reranker.score(QUERY, [LONG_DOC], chunking=config)[0]) / 2
    chunking = {"aggregation": "max", "overlap_tokens": 16}
    request = {"query": QUERY, "documents": docs, "chunking": chunking, "min_score": min_score}
    async with serving(reranker) as (_, client):
        body = (await client.post("/v2/rerank", json=request)).json()
    want = expected(reranker, QUERY, docs, chunking=config, min_score=min_score)
    assert facts(body["results"]) == want
    long_result = next(r for r in body["results"] if r["index"] == 1)
    assert long_result["num_chunks"] > 1 and not long_result["truncated"]
    chunk = long_result["chunk"]
    assert 0 <= chunk["start"] < chunk["end"] <= len(LONG_DOC)
    assert all(r["relevance_score"] >= min_score for r in body["results"])


async def test_heading_tokens_option(reranker: Any) -> None:
    from semrank.rerank import ChunkingConfig

    titled = "Flea diet\n" + LONG_DOC
    docs = [DOCS[0], titled]
    async with serving(reranker) as (_, client):
        off = await client.post(
            "/v2/rerank",
            json={"query": QUERY, "documents": docs, "chunking": {"heading_tokens": 0}},
        )
        bad = await client.post(
            "/v2/rerank",
            json={"query": QUERY, "documents": docs, "chunking": {"heading_tokens": -1}},
        )
    want = expected(reranker, QUERY, docs, chunking=ChunkingConfig(heading_tokens=0))
    assert facts(off.json()["results"]) == want
    default = reranker.rerank(QUERY, docs)
    # The default repeats the title, so the long document's windows read more tokens.
    assert next(r.tokens for r in default if r.index == 1) > next(
        r["tokens"] for r in off.json()["results"] if r["index"] == 1
    )
    assert bad.status_code == 422 and "heading_tokens" in bad.text


async def test_batch_equals_rerank_per_query(reranker: Any) -> None:
    queries = [
        {"query": QUERY, "documents": DOCS, "top_n": 2},
        {"query": "capital city of france", "documents": DOCS[:3]},
        {"query": "deep sea fish", "documents": [{"text": d} for d in DOCS]},
    ]
    async with serving(reranker) as (_, client):
        response = await client.post("/v1/rerank/batch", json={"queries": queries, "top_n": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [group["query_index"] for group in body["results"]] == [0, 1, 2]
    for query, group in zip(queries, body["results"], strict=True):
        top_n = query.get("top_n", 3)
        want = expected(reranker, query["query"], query["documents"], top_n=top_n)
        assert facts(group["results"]) == want


async def test_a_min_score_that_is_not_a_number_is_rejected_not_applied(reranker: Any) -> None:
    nan_per_query = {"queries": [{"query": QUERY, "documents": DOCS, "min_score": "nan"}]}
    async with serving(reranker) as (_, client):
        batch = await client.post("/v1/rerank/batch", json=nan_per_query)
        tei = await client.post("/rerank", json={"query": QUERY, "texts": DOCS, "min_score": "nan"})
    for response in (batch, tei):
        assert response.status_code == 422, response.text
        assert "min_score" in response.json()["error"] and "finite" in response.json()["error"]


async def test_model_selection_and_model_list(reranker: Any, tiny_model: Any) -> None:
    from semrank import Reranker

    tiny = Reranker(str(tiny_model("bert")))
    app = create_app(ServerConfig(), rerankers={"minilm": reranker, "tiny": tiny})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            models = (await client.get("/v1/models")).json()
            default = await client.post("/v2/rerank", json={"query": QUERY, "documents": DOCS})
            chosen = await client.post(
                "/v2/rerank", json={"model": "tiny", "query": QUERY, "documents": DOCS}
            )
            missing = await client.post(
                "/v2/rerank", json={"model": "rerank-v3.5", "query": QUERY, "documents": DOCS}
            )
            huge_name = {"model": "m" * 100_000, "query": QUERY, "documents": DOCS}
            huge = await client.post("/v2/rerank", json=huge_name)
    assert [(m["id"], m["kind"], m["default"]) for m in models["data"]] == [
        ("minilm", reranker.scorer.kind, True),
        ("tiny", "cross-encoder", False),
    ]
    assert facts(default.json()["results"]) == expected(reranker, QUERY, DOCS)
    assert facts(chosen.json()["results"]) == expected(tiny, QUERY, DOCS)
    assert chosen.json()["model"] == "tiny"
    assert missing.status_code == 404 and missing.json()["error_type"] == "model_not_found"
    assert "minilm" in missing.json()["error"]
    assert "--model rerank-v3.5=SOURCE" in missing.json()["error"]  # the fix that works
    # The refused value is quoted, but not a hundred thousand characters of it three times.
    assert huge.status_code == 404 and len(huge.content) < 10_000
    assert huge.json()["error"].endswith("more characters)")


async def test_the_model_list_and_one_model_in_cohere_shape(reranker: Any, tiny_model: Any) -> None:
    """Cohere's SDK reads ``models`` (its ListModelsResponse) from GET /v1/models, and one
    model (its GetModelResponse) from GET /v1/models/{name}."""
    from semrank import Reranker

    tiny = Reranker(str(tiny_model("bert")))
    async with serving(reranker, more_models={"tiny": tiny}) as (_, client):
        listed = (await client.get("/v1/models")).json()
        one = await client.get("/v1/models/tiny")
        unknown = await client.get("/v1/models/rerank-v3.5")
    assert listed["models"] == [
        {
            "name": "minilm",
            "endpoints": ["rerank"],
            "default_endpoints": ["rerank"],
            "context_length": reranker.scorer.max_length,
        },
        {
            "name": "tiny",
            "endpoints": ["rerank"],
            "default_endpoints": [],
            "context_length": tiny.scorer.max_length,
        },
    ]
    assert [m["id"] for m in listed["data"]] == ["minilm", "tiny"]  # kept for other clients
    assert one.status_code == 200 and one.json() == listed["models"][1], one.text
    assert unknown.status_code == 404 and unknown.json()["error_type"] == "model_not_found"
    assert "choose one of: minilm, tiny" in unknown.json()["error"]


async def test_names_of_one_model_share_its_weights_and_are_served_apart(
    tiny_model: Any,
) -> None:
    """Vendors' names mapped to one model (--model rerank-v3.5=M --model
    rerank-english-v3.0=M) each loaded their own copy of the weights: 150 MB per name for the
    default model. The same folder, however it is written, is loaded once; each name still
    answers as itself, with the model's scores."""
    from semrank import Reranker
    from semrank.server._engines import load_rerankers
    from semrank.server.config import ModelEntry

    folder, other = tiny_model("bert"), tiny_model("bert", seed=1)
    sources = {"a": str(folder), "b": f"{folder}/", "c": str(other)}
    config = ServerConfig(models=tuple(ModelEntry(name=n, source=s) for n, s in sources.items()))
    loaded = load_rerankers(config)
    assert list(loaded) == ["a", "b", "c"]
    assert loaded["a"] is loaded["b"] and loaded["c"] is not loaded["a"]
    app = create_app(config, rerankers=loaded)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answers = {
                name: await client.post(
                    "/v1/rerank", json={"model": name, "query": QUERY, "documents": DOCS}
                )
                for name in sources
            }
    for name, answer in answers.items():
        assert answer.status_code == 200 and answer.json()["model"] == name, answer.text
        own = Reranker(sources[name])
        assert facts(answer.json()["results"]) == expected(own, QUERY, DOCS)


# What huggingface_hub's InferenceClient("http://HOST:8000", provider="hf-inference", token=KEY)
# sends for get_endpoint_info() (GET {url}/info) and health_check() (GET {url}/health, True on a
# 200; both refuse without provider="hf-inference" from huggingface_hub 0.31 on):
# its build_hf_headers(token=KEY), a bearer token and its user agent.
HF_HUB_HEADERS = {
    "authorization": "Bearer k1",
    "user-agent": "unknown/None; hf_hub/0.34.4; python/3.11.9",
}


async def test_tei_info_describes_the_default_model_as_tei_does(reranker: Any) -> None:
    """TEI's clients and dashboards read GET /info (huggingface_hub's get_endpoint_info()):
    semrank answered 404 "no route GET /info"."""
    from semrank import __version__

    limits = {"max_documents": 200, "max_pending_requests": 32, "batch_token_budget": 4096}
    keys = frozenset({"k1"})
    async with serving(reranker, api_keys=keys, auto_truncate=False, **limits) as (_, client):
        info = await client.get("/info", headers=HF_HUB_HEADERS)
        keyless = await client.get("/info")
        healthy = await client.get("/health", headers=HF_HUB_HEADERS)
        models = (await client.get("/v1/models", headers=HF_HUB_HEADERS)).json()
    assert info.status_code == 200, info.text
    default = models["data"][0]
    assert info.json() == {
        "model_id": default["id"],
        "model_sha": None,
        "model_dtype": None,
        "model_type": {"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}},
        "max_concurrent_requests": 32,
        "max_input_length": default["max_length"],
        "max_batch_tokens": 4096,
        "max_batch_requests": ServerConfig().batch_max_pairs,
        "max_client_batch_size": 200,
        "auto_truncate": False,
        "tokenization_workers": None,
        "version": __version__,
        "sha": None,
        "docker_label": None,
    }
    # Behind the keys as GET /v1/models is (TEI's is too); /health open, as TEI's.
    assert keyless.status_code == 401 and keyless.json()["error_type"] == "unauthorized"
    assert healthy.status_code == 200


async def test_tei_info_of_a_bi_encoder_says_its_pooling(reranker: Any, minilm_dir: Path) -> None:
    from semrank import Reranker

    embedder = Reranker(str(minilm_dir))
    async with serving(embedder, more_models={"other": reranker}) as (_, client):
        info = await client.get("/info")
        head = await client.head("/info")
    assert info.status_code == 200, info.text
    assert info.json()["model_id"] == "minilm"  # the default: the first served
    assert info.json()["model_type"] == {"embedding": {"pooling": embedder.scorer.embedder.pooling}}
    assert info.json()["max_input_length"] == embedder.scorer.max_length
    assert head.status_code == 200 and head.content == b""


async def test_tei_info_without_a_loaded_model_says_why() -> None:
    """An app whose startup never ran (mounted in another without its lifespan) has no model
    to describe: a 503 naming the fix, as its rerank routes answer, not a 500."""
    app = create_app(ServerConfig(), rerankers={})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        info = await client.get("/info")
    assert info.status_code == 503 and "lifespan_context" in info.json()["error"]


# --- errors ---------------------------------------------------------------------------------

BAD_REQUESTS = {
    "missing query": ({"documents": DOCS}, 422, "invalid_request", "query"),
    "empty documents": ({"query": QUERY, "documents": []}, 422, "invalid_request", "documents"),
    "top_n zero": (
        {"query": QUERY, "documents": DOCS, "top_n": 0},
        422,
        "invalid_request",
        "top_n",
    ),
    "blank query": ({"query": "   ", "documents": DOCS}, 422, "invalid_request", "query"),
    "min_score not a number": (
        {"query": QUERY, "documents": DOCS, "min_score": "nan"},
        422,
        "invalid_request",
        "min_score",
    ),
    "document of wrong type": ({"query": QUERY, "documents": [3]}, 422, "invalid_request", "0"),
    "too many documents": (
        {"query": QUERY, "documents": ["d"] * 11},
        413,
        "request_too_large",
        "11 documents",
    ),
}


async def test_a_value_no_member_of_a_union_takes_is_one_plain_error(reranker: Any) -> None:
    """pydantic named each union member it tried ("documents.0.str: ...; documents.0.dict[str,
    any]: ..."); a value that matched a member's type reports that member's errors inside it."""
    async with serving(reranker) as (_, client):
        listed = await client.post("/v1/rerank", json={"query": QUERY, "documents": [["a"], 3]})
        nested = {"query": QUERY, "documents": DOCS, "chunking": {"overlap_tokens": "z"}}
        inner = await client.post("/v1/rerank", json=nested)
        objects = {"query": QUERY, "documents": [{"text": "a"}], "return_documents": True}
        v2 = await client.post("/v2/rerank", json=objects)
        # An unknown key spelt like a type (PascalCase clients) is no union member's name.
        pascal = {"query": QUERY, "documents": DOCS, "chunking": {"Overlap": 1}}
        unknown = await client.post("/v1/rerank", json=pascal)
        batch = {"queries": [{"query": QUERY, "documents": DOCS, "TopN": 2}]}
        batched = await client.post("/v1/rerank/batch", json=batch)
    assert listed.status_code == inner.status_code == v2.status_code == 422
    assert listed.json()["error"] == (
        "documents.0: Input should be a valid string, or a JSON object; got a list; "
        "documents.1: Input should be a valid string, or a JSON object; got a number"
    )
    assert inner.json()["error"].startswith("chunking.overlap_tokens: Input should be a valid")
    assert unknown.json()["error"] == "chunking.Overlap: unknown key; check its spelling"
    assert batched.json()["error"] == "queries.0.TopN: unknown key; check its spelling"
    assert v2.json()["error"].startswith(
        "POST /v2/rerank takes documents as strings, as Cohere's v2 API does; send objects "
        "(with rank_fields) to POST /v1/rerank; documents.0: "
    )


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
async def test_bad_input_gets_a_4xx_with_error_body_and_no_error_log(
    reranker: Any, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    body, status, error_type, mention = BAD_REQUESTS[case]
    caplog.set_level(logging.INFO)
    async with serving(reranker, max_documents=10) as (_, client):
        for path in ("/v1/rerank", "/v2/rerank"):
            response = await client.post(path, json=body)
            assert response.status_code == status, (path, response.text)
            assert response.json()["error_type"] == error_type
            assert mention in response.json()["error"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_oversized_body_and_bad_json(reranker: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    big = b'{"query": "q", "documents": ["' + b"x" * (10 * 1024 * 1024) + b'"]}'
    async with serving(reranker) as (_, client):
        too_big = await client.post(
            "/v1/rerank", content=big, headers={"content-type": "application/json"}
        )
        broken = await client.post(
            "/v1/rerank", content=b"{not json", headers={"content-type": "application/json"}
        )
        metrics = (await client.get("/metrics")).text
    assert too_big.status_code == 413
    # Counted under its route, not "unmatched": the edge answered before routing ran.
    assert 'semrank_requests_total{route="/v1/rerank",status="413"} 1.0' in metrics, metrics
    assert too_big.json()["error_type"] == "request_too_large"
    assert "bytes" in too_big.json()["error"]
    # The same body as every other error (vendors' clients read message or detail).
    assert too_big.json()["message"] == too_big.json()["detail"] == too_big.json()["error"]
    assert broken.status_code == 422 and broken.json()["error_type"] == "invalid_request"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    # Refused at the edge, it still gets the "request rejected" line every refusal gets.
    rejected = [r for r in caplog.records if r.getMessage() == "request rejected"]
    assert any(getattr(r, "fields", {}).get("status") == 413 for r in rejected), rejected


async def test_a_key_given_twice_in_a_body_is_refused_not_dropped(reranker: Any) -> None:
    # JSON readers keep the last value: {"n": 1, "n": 2} came back as {"n": 2}, no word said
    json_type = {"content-type": "application/json"}
    body = b'{"query": "flea", "return_documents": true, "documents": ["x", '
    nested = body + b'{"text": "flea dog", "meta": {"n": 1, "n": 2}}]}'
    async with serving(reranker) as (_, client):
        repeated = await client.post("/v1/rerank", content=nested, headers=json_type)
        top = await client.post(
            "/v2/rerank", content=body + b'"y"], "query": "q"}', headers=json_type
        )
        fine = await client.post(
            "/v1/rerank", content=nested.replace(b'"n": 2', b'"m": 2'), headers=json_type
        )
    assert repeated.status_code == 422, repeated.text
    assert repeated.json()["error_type"] == "invalid_request"
    assert "the request body holds an object with the key 'n' twice" in repeated.json()["error"]
    assert top.status_code == 422 and "the key 'query' twice" in top.json()["error"], top.text
    assert fine.status_code == 200, fine.text
    assert fine.json()["results"][0]["document"]["meta"] == {"n": 1, "m": 2}


async def test_too_many_tokens_is_413(reranker: Any) -> None:
    async with serving(reranker, max_request_tokens=50) as (_, client):
        response = await client.post("/v2/rerank", json={"query": QUERY, "documents": [LONG_DOC]})
        small = await client.post("/v2/rerank", json={"query": "fleas", "documents": ["blood"]})
    assert response.status_code == 413 and "tokens" in response.json()["error"]
    assert small.status_code == 200


async def test_api_keys(reranker: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    body = {"query": QUERY, "documents": DOCS}
    async with serving(reranker, api_keys=frozenset({"k1", "k2"})) as (_, client):
        missing = await client.post("/v2/rerank", json=body)
        wrong = await client.post("/v2/rerank", json=body, headers={"Authorization": "Bearer no"})
        right = await client.post("/v2/rerank", json=body, headers={"Authorization": "Bearer k2"})
        models = await client.get("/v1/models")
        health = await client.get("/health")
        # A body FastAPI cannot read or validate was described before the key was asked for.
        json_type = {"content-type": "application/json"}
        broken = await client.post("/v2/rerank", content=b"{not json", headers=json_type)
        deep = await client.post("/v2/rerank", content=b"[" * 2000 + b"]" * 2000, headers=json_type)
        invalid = await client.post("/v2/rerank", json={"query": QUERY})
        twice = await client.post(
            "/v2/rerank", content=b'{"query": 1, "query": 2}', headers=json_type
        )
        keyed = {**json_type, "Authorization": "Bearer k1"}
        described = await client.post("/v2/rerank", content=b"{not json", headers=keyed)
    assert described.status_code == 422  # with the key, the body's own problem
    for response in (missing, wrong, models, broken, deep, invalid, twice):
        assert response.status_code == 401
        assert response.json()["error_type"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    assert right.status_code == 200 and health.status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


# --- deadlines, overload, cache, probes -----------------------------------------------------


async def test_deadline_fails_with_504_or_returns_input_order_with_fail_open(
    reranker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    body = {"query": QUERY, "documents": DOCS, "timeout_ms": 1, "top_n": 3}
    # The batcher waits 200 ms for company, so a 1 ms deadline always passes first.
    async with serving(reranker, batch_wait_ms=200) as (_, client):
        failed = await client.post("/v1/rerank", json=body)
        opened = await client.post(
            "/v1/rerank", json={**body, "fail_open": True, "return_documents": True}
        )
        tei = await client.post(
            "/rerank", json={"query": QUERY, "texts": DOCS, "timeout_ms": 1, "fail_open": True}
        )
        # Nothing was scored, so a threshold cannot drop anything: min_score is not applied.
        thresholded = await client.post(
            "/v1/rerank", json={**body, "fail_open": True, "min_score": 0.5}
        )
        # A batch of four queries is one request in the counters (it was four).
        queries = [{"query": QUERY, "documents": DOCS}] * 4
        for fail_open in (False, True):
            batch = {"queries": queries, "timeout_ms": 1, "fail_open": fail_open}
            late = await client.post("/v1/rerank/batch", json=batch)
            assert late.status_code == (200 if fail_open else 504), late.text
        metrics = (await client.get("/metrics")).text
    assert failed.status_code == 504
    assert failed.json()["error_type"] == "deadline_exceeded"
    assert opened.status_code == 200 and opened.json()["reranked"] is False
    assert opened.headers["x-semrank-reranked"] == "false"
    assert [r["index"] for r in opened.json()["results"]] == [0, 1, 2]
    assert [r["document"]["text"] for r in opened.json()["results"]] == DOCS[:3]
    assert [r["index"] for r in tei.json()] == [0, 1, 2, 3]
    assert tei.headers["x-semrank-reranked"] == "false"
    assert [(r["index"], r["relevance_score"]) for r in thresholded.json()["results"]] == [
        (0, 0.0),
        (1, 0.0),
        (2, 0.0),
    ]
    assert metric_samples(metrics, "semrank_fail_open_responses_total")[0].value == 4
    rejected = metric_samples(metrics, "semrank_rejected_requests_total")
    assert [s.value for s in rejected if s.labels.get("reason") == "deadline"] == [6]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_server_default_fail_open(reranker: Any) -> None:
    body = {"query": QUERY, "documents": DOCS, "timeout_ms": 1}
    async with serving(reranker, batch_wait_ms=200, fail_open=True) as (_, client):
        response = await client.post("/v2/rerank", json=body)
        refused = await client.post("/v2/rerank", json={**body, "fail_open": False})
    assert response.status_code == 200 and response.json()["reranked"] is False
    assert refused.status_code == 504


async def test_full_queue_gets_429_with_retry_after(reranker: Any) -> None:
    body = {"query": QUERY, "documents": DOCS}
    async with serving(reranker, max_pending_requests=1, batch_wait_ms=300, retry_after_s=3) as (
        app,
        client,
    ):
        first = asyncio.create_task(client.post("/v2/rerank", json=body))
        admission = app.state.service.admission
        for _ in range(500):  # wait (bounded) until the first request holds the only slot
            if admission.pending == 1:
                break
            await asyncio.sleep(0.005)
        assert admission.pending == 1
        second = await client.post("/v2/rerank", json=body)
        assert (await first).status_code == 200
    assert second.status_code == 429
    assert second.headers["retry-after"] == "3"
    assert second.json()["error_type"] == "overloaded"


async def test_score_cache_serves_repeated_requests(reranker: Any) -> None:
    body = {"query": QUERY, "documents": DOCS}
    async with serving(reranker) as (_, client):
        first = (await client.post("/v2/rerank", json=body)).json()
        second = (await client.post("/v2/rerank", json=body)).json()
        metrics = (await client.get("/metrics")).text
    assert first["results"] == second["results"]
    hits = metric_samples(metrics, "semrank_cache_hits_total")
    misses = metric_samples(metrics, "semrank_cache_misses_total")
    assert hits[0].value == len(DOCS) and misses[0].value == len(DOCS)


async def test_probes_metrics_and_timing_headers(reranker: Any) -> None:
    async with serving(reranker) as (app, client):
        health = await client.get("/health")
        ready = await client.get("/ready")
        response = await client.post("/v2/rerank", json={"query": QUERY, "documents": DOCS})
        metrics = await client.get("/metrics")
        missing = await client.get("/v3/nothing")
        # A body with neither TEI's texts nor documents: both named.
        neither = await client.post("/rerank", json={"query": QUERY, "text": DOCS})
        # curl -d '{...}' without -H: form-encoded, at either shape's route.
        form = {"content-type": "application/x-www-form-urlencoded"}
        as_form = [
            await client.post(route, content=json.dumps(body), headers=form)
            for route, body in (
                ("/rerank", {"query": QUERY, "texts": DOCS}),
                ("/v1/rerank", {"query": QUERY, "documents": DOCS}),
            )
        ]
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "models": ["minilm"]}
    assert "total;dur=" in response.headers["server-timing"]
    assert "rerank;dur=" in response.headers["server-timing"]
    assert float(response.headers["x-semrank-time-ms"]) > 0
    requests = metric_samples(metrics.text, "semrank_requests_total")
    assert any(s.labels == {"route": "/v2/rerank", "status": "200"} for s in requests)
    assert metric_samples(metrics.text, "semrank_batch_requests_count")[0].value >= 1
    assert missing.status_code == 404 and missing.json()["error_type"] == "not_found"
    assert "no route GET /v3/nothing" in missing.json()["error"]
    assert "POST /v1/rerank (Cohere v1" in missing.json()["error"]
    assert (
        "searches (Elasticsearch retriever trees) are POST /v1/indexes/{name}/search"
        in (missing.json()["error"])
    )
    assert neither.status_code == 422
    assert "or 'documents' as POST /v1/rerank does" in neither.json()["error"]
    assert "; texts: Field required" in neither.json()["error"]  # no tag in the location
    for response in as_form:
        assert response.status_code == 422
        assert (
            "sent with Content-Type 'application/x-www-form-urlencoded'; send a JSON object"
            in (response.json()["error"])
        )
    assert app.state.phase == "draining"  # the lifespan ended: /ready would now answer 503


async def test_head_probes_and_405s_that_name_every_method(reranker: Any, tmp_path: Path) -> None:
    # Uptime monitors probe with HEAD; a 405 lists the methods of every route on the path
    # (Starlette named only the first route's: GET for /v1/indexes, which also takes POST).
    async with serving(reranker, index_home=str(tmp_path)) as (_, client):
        paths = ("/health", "/ready", "/metrics", "/v1/models", "/v1/indexes")
        heads = [await client.head(path) for path in paths]
        get_models = await client.get("/v1/models")
        wrong = {
            path: await client.put(path) for path in ("/v1/indexes", "/v1/indexes/x", "/health")
        }
    assert [head.status_code for head in heads] == [200] * len(paths)
    assert all(head.content == b"" for head in heads)  # the GET's headers, no body
    assert heads[3].headers["content-length"] == get_models.headers["content-length"]
    allowed = {path: r.headers["allow"] for path, r in wrong.items()}
    assert allowed == {
        "/v1/indexes": "GET, HEAD, POST",
        "/v1/indexes/x": "DELETE, GET, HEAD",
        "/health": "GET, HEAD",
    }
    for path, response in wrong.items():
        assert response.status_code == 405
        assert response.json()["error"] == f"PUT is not allowed on {path}; use {allowed[path]}"


async def test_the_startup_log_says_what_each_model_runs_on_and_where_the_indexes_are(
    tiny_model: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The log named only the served names ("ready", models: [...]): an operator could not
    tell which model file, backend (the automatic choice) or inference threads a server ran,
    nor which folder its index routes served."""
    from semrank import Reranker

    caplog.set_level(logging.INFO, logger="semrank.server")
    model = Reranker(tiny_model("bert"), threads=2)
    app = create_app(ServerConfig(threads=2, index_home=str(tmp_path)), rerankers={"m": model})
    async with app.router.lifespan_context(app):
        pass
    fields = {r.getMessage(): getattr(r, "fields", None) for r in caplog.records}
    line = f"serving model 'm': {model.name} (cross-encoder, backend {model.scorer.backend}, "
    assert fields[f"{line}inference threads: 2)"] == {
        "model": "m",
        "source": model.name,
        "kind": "cross-encoder",
        "backend": model.scorer.backend,
        "threads": 2,
    }
    assert fields["ready"] == {"models": ["m"], "store": "embedded", "index_home": str(tmp_path)}


async def test_the_startup_log_names_the_backend_of_the_default_blend_model(
    reranker: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The default model is a blend of a cross-encoder and a bi-encoder: its line said
    "backend None" (`semrank serve` as the README runs it), so the log never said which backend
    the automatic choice took for the model most servers run."""
    caplog.set_level(logging.INFO, logger="semrank.server")
    app = create_app(ServerConfig(index_home=str(tmp_path)), rerankers={"m": reranker})
    async with app.router.lifespan_context(app):
        pass
    backends = {component.scorer.backend for component in reranker.scorer.components}
    [line] = [r for r in caplog.records if r.getMessage().startswith("serving model 'm'")]
    assert len(backends) == 1 and None not in backends
    assert getattr(line, "fields", {})["backend"] == backends.pop()
    assert "backend None" not in line.getMessage()


async def test_request_ids_are_echoed_when_sane(reranker: Any) -> None:
    body = {"query": QUERY, "documents": DOCS}
    async with serving(reranker) as (_, client):
        mine = await client.post("/v2/rerank", json=body, headers={"x-request-id": "abc-123"})
        junk = await client.post("/v2/rerank", json=body, headers={"x-request-id": "x" * 500})
    assert mine.headers["x-request-id"] == "abc-123" and mine.json()["id"] == "abc-123"
    assert len(junk.headers["x-request-id"]) == 32


async def test_ready_is_503_while_draining(reranker: Any) -> None:
    async with serving(reranker) as (app, client):
        app.state.phase = "draining"
        response = await client.get("/ready")
    assert response.status_code == 503 and response.json()["status"] == "draining"
    assert response.headers["retry-after"] == "1"


async def test_answers_while_draining_close_their_connection(reranker: Any) -> None:
    """A keep-alive client (a load balancer) sent its next request on a connection the
    draining server was about to close: every answer of a drain now says Connection: close."""
    app = create_app(ServerConfig(), rerankers={"minilm": reranker})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        async with app.router.lifespan_context(app):
            served = [await client.get("/ready"), await client.get("/health")]
            reranked = await client.post("/v2/rerank", json={"query": QUERY, "documents": DOCS})
        # The lifespan's end is the server's drain (app.state.phase "draining").
        draining = [await client.get("/ready"), await client.get("/health")]
        refused = await client.post("/v2/rerank", json={"query": QUERY, "documents": DOCS})
    assert [r.status_code for r in [*served, reranked]] == [200, 200, 200]
    assert all("connection" not in r.headers for r in [*served, reranked])
    assert draining[0].status_code == 503 and draining[0].json()["status"] == "draining"
    assert [r.headers.get("connection") for r in [*draining, refused]] == ["close"] * 3


async def test_a_cascaded_model_prunes_through_the_api(tiny_model: Any) -> None:
    from semrank import Reranker
    from semrank.rerank import CascadeConfig

    cascaded = Reranker(tiny_model("bert"), cascade=CascadeConfig(keep=2))
    async with serving(cascaded) as (_, client):
        response = await client.post("/v2/rerank", json={"query": QUERY, "documents": DOCS})
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    local = cascaded.rerank(QUERY, DOCS)
    assert [r["index"] for r in results] == [r.index for r in local]
    assert [r["pruned"] for r in results] == [r.pruned for r in local] == [False] * 2 + [True] * 2
    # The pruner ran through a batcher of its own (merged, dropped with its request), with the
    # model's reading only the two documents it kept.
    assert 'semrank_batch_pairs_sum{model="minilm:pruner"} 4.0' in metrics
    assert 'semrank_batch_pairs_sum{model="minilm"} 2.0' in metrics


async def test_a_model_served_as_another_models_pruner_name_gets_its_own_scores(
    tiny_model: Any,
) -> None:
    """The score cache kept a cascade's pruner's scores under "<name>:pruner", its metrics
    name: a model served under that name was answered the pruner's scores (another model's,
    in another order) for the documents a request to <name> had pruned."""
    from semrank import Reranker
    from semrank.rerank import CascadeConfig

    cascaded = Reranker(tiny_model("bert"), cascade=CascadeConfig(keep=2))
    plain = Reranker(tiny_model("bert"))
    app = create_app(ServerConfig(), rerankers={"m": cascaded, "m:pruner": plain})
    body = {"query": QUERY, "documents": DOCS}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            pruned = await client.post("/v2/rerank", json={**body, "model": "m"})
            served = await client.post("/v2/rerank", json={**body, "model": "m:pruner"})
    assert pruned.status_code == served.status_code == 200, served.text
    assert facts(served.json()["results"]) == expected(plain, QUERY, DOCS)


async def test_min_score_drops_cascade_pruned_documents_as_the_library_does(
    tiny_model: Any,
) -> None:
    from semrank import Reranker
    from semrank.rerank import CascadeConfig

    cascaded = Reranker(tiny_model("bert"), cascade=CascadeConfig(keep=2))
    threshold = 0.0  # every score clears it, so only the pruned rule can drop a document
    async with serving(cascaded) as (_, client):
        body = {"query": QUERY, "documents": DOCS, "min_score": threshold}
        response = await client.post("/v2/rerank", json=body)
    assert response.status_code == 200, response.text
    served = [(r["index"], r["pruned"]) for r in response.json()["results"]]
    local = [(r.index, r.pruned) for r in cascaded.rerank(QUERY, DOCS, min_score=threshold)]
    assert served == local and len(served) == 2 and not any(p for _, p in served)


async def test_limits_name_the_flag_that_raises_them(reranker: Any) -> None:
    batch = {"queries": [{"query": QUERY, "documents": DOCS[:1]}] * 3}
    async with serving(reranker, max_batch_queries=2) as (_, client):
        too_many = await client.post("/v1/rerank/batch", json=batch)
    assert too_many.status_code == 413
    assert "limit of 2 per batch" in too_many.json()["error"]
    assert "--max-batch-queries" in too_many.json()["error"]


async def test_a_query_longer_than_the_model_reads_is_refused_or_flagged(reranker: Any) -> None:
    """A query past what the model reads next to a document was cut without a word, even when
    the client asked for no truncation (Voyage's truncation: false, TEI's truncate: false)."""
    limit = reranker.query_token_limit
    assert limit is not None
    long_query = " ".join(["filler"] * (limit + 40)) + " " + QUERY
    count = reranker.scorer.tokenizer.count_tokens(long_query)
    async with serving(reranker) as (_, client):
        voyage = await client.post(
            "/v1/rerank", json={"query": long_query, "documents": DOCS, "truncation": False}
        )
        tei = await client.post(
            "/rerank", json={"query": long_query, "texts": DOCS, "truncate": False}
        )
        cohere = await client.post("/v2/rerank", json={"query": long_query, "documents": DOCS})
        short = await client.post("/v2/rerank", json={"query": QUERY, "documents": DOCS})
    for refused in (voyage, tei):
        assert refused.status_code == 413, refused.text
        assert f"the query is {count} tokens" in refused.json()["error"]
        assert f"reads {limit} tokens of a query" in refused.json()["error"]
    assert cohere.status_code == 200
    (warning,) = cohere.json()["meta"]["warnings"]
    assert f"read its first {limit}" in warning
    assert cohere.headers["x-semrank-warning"] == warning
    inputs = sum(r["num_chunks"] for r in cohere.json()["results"])
    tokens = sum(r["tokens"] for r in cohere.json()["results"])
    assert cohere.json()["meta"]["tokens"]["input_tokens"] == tokens + limit * inputs
    assert "warnings" not in short.json()["meta"] and "x-semrank-warning" not in short.headers


async def test_cohere_max_tokens_per_doc_caps_the_read_and_keeps_chunking(reranker: Any) -> None:
    """Cohere's default of 4096 sent explicitly read one 128-token window before (chunking was
    switched off whenever the field was given)."""
    documents = [LONG_DOC, DOCS[0]]
    async with serving(reranker) as (_, client):
        plain = await client.post("/v2/rerank", json={"query": QUERY, "documents": documents})
        default = await client.post(
            "/v2/rerank",
            json={"query": QUERY, "documents": documents, "max_tokens_per_doc": 4096},
        )
        small = await client.post(
            "/v2/rerank", json={"query": QUERY, "documents": documents, "max_tokens_per_doc": 20}
        )
    assert facts(default.json()["results"]) == facts(plain.json()["results"])
    long_result = next(r for r in plain.json()["results"] if r["index"] == 0)
    assert long_result["num_chunks"] > 1
    cut = next(r for r in small.json()["results"] if r["index"] == 0)
    assert cut["truncated"] and cut["tokens"] <= 20 and cut["num_chunks"] == 1


async def test_a_request_that_names_no_shape_is_answered_for_voyage_clients_too(
    reranker: Any,
) -> None:
    """Voyage's minimal request (query, documents, model) looks like Cohere's; its clients read
    `data` and found none."""
    async with serving(reranker) as (_, client):
        either = (await client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS})).json()
        cohere = (
            await client.post(
                "/v1/rerank",
                json={"query": QUERY, "documents": DOCS, "response_format": "cohere"},
            )
        ).json()
    assert [(r["index"], r["relevance_score"]) for r in either["data"]] == [
        (r["index"], r["relevance_score"]) for r in either["results"]
    ]
    assert either["usage"]["total_tokens"] > 0
    assert "data" not in cohere and cohere["results"] == either["results"]


async def test_a_document_past_every_window_says_to_raise_max_chunks(reranker: Any) -> None:
    request = {
        "query": QUERY,
        "texts": [LONG_DOC],
        "truncate": False,
        "chunking": {"max_chunks": 2},
    }
    voyage = {"query": QUERY, "documents": [LONG_DOC], "truncation": False, "max_chunks_per_doc": 2}
    async with serving(reranker) as (_, client):
        chunked = await client.post("/rerank", json=request)
        voyage_cut = await client.post("/v1/rerank", json=voyage)
    # Each route names its own fields: TEI's request has texts, truncate and chunking only (it
    # was told to raise max_tokens_per_doc or max_chunks_per_doc, which /rerank ignores).
    assert chunked.status_code == 413, chunked.text
    error = chunked.json()["error"]
    assert error.startswith("texts [0]") and "set truncate: true" in error
    assert "raise chunking.max_chunks" in error and "max_tokens_per_doc" not in error
    assert voyage_cut.status_code == 413, voyage_cut.text
    error = voyage_cut.json()["error"]
    assert error.startswith("documents [0]") and "set truncation: true" in error
    assert "chunking.max_chunks (max_chunks_per_doc)" in error


async def test_a_bug_is_a_500_with_the_request_id_logged_once(
    reranker: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The 500 of an unexpected exception left the edge without x-request-id or timing headers,
    said only "see the server log", and uvicorn logged the traceback a second time."""
    async with serving(reranker) as (app, client):
        engine = app.state.service.engine(None)

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("a bug")

        monkeypatch.setattr(engine.reranker, "rerank", broken)
        with caplog.at_level(logging.ERROR):
            response = await client.post(
                "/v2/rerank",
                json={"query": QUERY, "documents": DOCS},
                headers={"x-request-id": "bug-1"},
            )
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "bug-1" and "x-semrank-time-ms" in response.headers
    assert response.json()["error_type"] == "internal_error"
    assert "request id bug-1" in response.json()["error"]
    logged = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert len(logged) == 1 and logged[0].exc_info is not None


async def test_a_long_query_beside_short_documents_is_read_whole_by_a_cross_encoder() -> None:
    """A cross-encoder cuts a query only next to a document piece that needs the room: a
    350-token query beside short documents was refused (truncation: false) and flagged."""
    from pathlib import Path

    from semrank import Reranker
    from semrank.models import resolve

    bundled = Path(resolve("semrank-minilm-l6").path) / "cross-encoder"
    if not bundled.is_dir():
        pytest.skip("bundled cross-encoder folder not installed")
    plain = Reranker(bundled, feedback=False)
    guaranteed = plain.query_token_limit
    assert guaranteed is not None
    words = ["the"] * (guaranteed + 60)
    query = " ".join(words) + " " + QUERY
    count = plain.scorer.tokenizer.count_tokens(query)
    assert guaranteed < count < 2 * guaranteed - 20  # room beside a short document
    async with serving(plain) as (_, client):
        short = await client.post(
            "/v1/rerank", json={"query": query, "documents": DOCS, "truncation": False}
        )
        long = await client.post(
            "/v1/rerank",
            json={"query": query, "documents": [LONG_DOC], "truncation": False},
        )
        flagged = await client.post("/v2/rerank", json={"query": query, "documents": [LONG_DOC]})
    assert short.status_code == 200, short.text
    assert "warnings" not in short.json().get("meta", {})
    assert long.status_code == 413 and "reads" in long.json()["error"]
    assert "read its first" in flagged.json()["meta"]["warnings"][0]


async def test_voyage_data_beside_cohere_results_carries_no_documents(reranker: Any) -> None:
    """Cohere's, Jina's and Together's answers doubled in size: `data` repeated every document."""
    request = {"query": QUERY, "documents": DOCS, "return_documents": True}
    async with serving(reranker) as (_, client):
        body = (await client.post("/v1/rerank", json=request)).json()
    assert all("document" in r for r in body["results"])
    assert body["data"] and all("document" not in r for r in body["data"])


async def test_batch_errors_name_the_query_and_chunking_off_is_one_way(reranker: Any) -> None:
    queries = [
        {"query": QUERY, "documents": [{"text": "a"}]},
        {"query": "fish", "documents": [{"text": "b"}, {"title": "no text"}]},
    ]
    off = {"enabled": False}
    async with serving(reranker) as (_, client):
        batch = await client.post("/v1/rerank/batch", json={"queries": queries})
        both = await client.post(
            "/v1/rerank",
            json={"query": QUERY, "documents": DOCS, "chunking": off, "max_chunks_per_doc": 8},
        )
    assert batch.status_code == 422 and "queries[1].documents[1]" in batch.json()["error"]
    # chunking: false was refused beside max_chunks_per_doc; {"enabled": false} ignored it.
    assert both.status_code == 422 and "chunking.enabled=false" in both.json()["error"]


async def test_misspelt_keys_of_semranks_own_objects_are_refused(reranker: Any) -> None:
    """They were ignored: 200 with the defaults (six chunks for max_chunk: 1, every result for
    a batch's topn)."""
    one = [{"query": QUERY, "documents": DOCS}]
    bodies = {
        "chunking.max_chunk": (
            "/v2/rerank",
            {"query": QUERY, "documents": DOCS, "chunking": {"max_chunk": 1}},
        ),
        "topn": ("/v1/rerank/batch", {"queries": one, "topn": 1}),
        "minscore": ("/v1/rerank/batch", {"queries": [{**one[0], "minscore": 0.5}]}),
    }
    async with serving(reranker) as (_, client):
        for key, (path, body) in bodies.items():
            answer = await client.post(path, json=body)
            assert answer.status_code == 422, (key, answer.text)
            assert key.split(".")[-1] in answer.json()["error"], answer.text
        vendor = await client.post("/v2/rerank", json={"query": QUERY, "documents": DOCS, "x": 1})
    assert vendor.status_code == 200  # a vendor body still ignores what it does not know


async def test_a_served_trained_model_answers_with_its_calibrated_scores(
    tiny_model: Any, tmp_path: Path
) -> None:
    import shutil

    from semrank import Reranker

    folder = tmp_path / "calibrated"
    shutil.copytree(tiny_model("bert"), folder)
    (folder / "semrank_training.json").write_text('{"calibration": {"scale": 3.0, "shift": 2.0}}')
    reranker = Reranker(str(folder))
    docs = ["apple pie recipe", "violin strings"]
    async with serving(reranker) as (_, client):
        response = await client.post("/v2/rerank", json={"query": "apple", "documents": docs})
    assert response.status_code == 200, response.text
    got = {r["index"]: r["relevance_score"] for r in response.json()["results"]}
    assert [got[0], got[1]] == pytest.approx(reranker.score("apple", docs).tolist(), abs=1e-5)
    raw = reranker.score("apple", docs, raw=True)
    assert got[0] == pytest.approx(float(1 / (1 + np.exp(-(3.0 * raw[0] + 2.0)))), abs=1e-5)


async def test_max_tokens_per_doc_reads_on_unless_the_request_bounds_the_windows(
    reranker: Any,
) -> None:
    """A request's own max_chunks_per_doc bounds the windows whatever its value (16, the
    default, was taken for "not set", so 16 read more than 17); without one, the windows follow
    max_tokens_per_doc, also beside other chunking options."""
    document = " ".join(f"w{n % 97}" for n in range(2400)) + " fleas bite"
    total = reranker.scorer.tokenizer.count_tokens(document)
    base = {"query": "do fleas bite", "documents": [document], "max_tokens_per_doc": total + 5}
    async with serving(reranker) as (_, client):
        free = await client.post("/v1/rerank", json=base)
        sixteen = await client.post("/v1/rerank", json={**base, "max_chunks_per_doc": 16})
        seventeen = await client.post("/v1/rerank", json={**base, "max_chunks_per_doc": 17})
        options = await client.post("/v2/rerank", json={**base, "chunking": {"aggregation": "max"}})
    facts = [r.json()["results"][0] for r in (free, sixteen, seventeen, options)]
    assert not facts[0]["truncated"] and facts[0]["num_chunks"] > 17
    assert [f["num_chunks"] for f in facts[1:3]] == [16, 17] and facts[1]["truncated"]
    assert not facts[3]["truncated"] and facts[3]["num_chunks"] == facts[0]["num_chunks"]


async def test_chunking_true_keeps_the_clients_window_bound(reranker: Any) -> None:
    document = " ".join(f"w{n % 97}" for n in range(2400))
    body = {"query": "q", "documents": [document], "max_chunks_per_doc": 2, "chunking": True}
    async with serving(reranker) as (_, client):
        bounded = await client.post("/v1/rerank", json={**body, "max_tokens_per_doc": 4000})
    (result,) = bounded.json()["results"]
    assert result["num_chunks"] == 2 and result["truncated"]  # read 34 windows before


async def test_two_window_bounds_that_disagree_are_refused(reranker: Any) -> None:
    body = {
        "query": "q",
        "documents": ["a"],
        "max_chunks_per_doc": 2,
        "chunking": {"max_chunks": 3},
    }
    async with serving(reranker) as (_, client):
        response = await client.post("/v1/rerank", json=body)
    assert response.status_code == 422 and "disagree" in response.json()["error"]


async def test_input_tokens_count_the_query_as_read_beside_each_window() -> None:
    """The query read beside the longest window was counted for every window: a short last
    window, beside which the whole query is read, was undercounted."""
    from semrank import Reranker
    from semrank.models import resolve

    cross_encoder = Reranker(str(Path(resolve("semrank-minilm-l6").path) / "cross-encoder"))
    query = " ".join(["how do fleas find a host animal to feed on"] * 30)  # ~330 tokens
    document = " ".join(["Fleas sense warmth, vibration and carbon dioxide from hosts."] * 25)
    # What the model reads, counted by its tokenizer: each window with the query beside it.
    tokenizer = cross_encoder.scorer.hf_tokenizer
    (plan,) = cross_encoder._plan(query, [document], None, cross_encoder.chunking)
    inputs = tokenizer.encode_pairs([(query, piece.text_in(document)) for piece in plan.pieces])
    specials = tokenizer.special_tokens_pair
    read = sum(len(encoded.ids) - specials for encoded in inputs)
    assert len(plan.pieces) == 2
    async with serving(cross_encoder) as (_, client):
        answer = await client.post("/v2/rerank", json={"query": query, "documents": [document]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["meta"]["tokens"]["input_tokens"] == read


async def test_fastapi_s_own_pages_are_labelled_by_their_path(reranker: Any) -> None:
    """/docs and /openapi.json were counted as route="unmatched", with the 404s of unknown
    paths."""
    async with serving(reranker) as (_, client):
        for path in ("/docs", "/openapi.json", "/no/such/route"):
            await client.get(path)
        metrics = await client.get("/metrics")
    requests = metric_samples(metrics.text, "semrank_requests_total")
    labels = {(s.labels["route"], s.labels["status"]) for s in requests}
    assert {("/docs", "200"), ("/openapi.json", "200"), ("unmatched", "404")} <= labels


async def test_v2_returns_documents_when_an_older_cohere_sdk_asks(reranker: Any) -> None:
    """Older Cohere v2 SDKs sent return_documents and read result.document.text: it was
    silently dropped (None)."""
    async with serving(reranker) as (_, client):
        body = {"query": QUERY, "documents": DOCS, "top_n": 2}
        asked = await client.post("/v2/rerank", json={**body, "return_documents": True})
        plain = await client.post("/v2/rerank", json=body)
    assert asked.status_code == plain.status_code == 200
    for result in asked.json()["results"]:
        assert result["document"] == {"text": DOCS[result["index"]]}
    assert all("document" not in result for result in plain.json()["results"])
    assert [r["index"] for r in asked.json()["results"]] == [
        r["index"] for r in plain.json()["results"]
    ]


async def test_v2_bounds_the_windows_when_an_older_cohere_sdk_sends_max_chunks_per_doc(
    reranker: Any,
) -> None:
    """Cohere's v2 SDKs up to 5.11 send max_chunks_per_doc (ClientV2.rerank's cost bound): it
    was silently dropped, and a long document was read in all 16 windows instead of 1."""
    body = {"model": "minilm", "query": QUERY, "documents": [DOCS[1], LONG_DOC]}
    async with serving(reranker) as (_, client):
        bounded = await client.post("/v2/rerank", json={**body, "max_chunks_per_doc": 1})
        on_v1 = await client.post("/v1/rerank", json={**body, "max_chunks_per_doc": 1})
        free = await client.post("/v2/rerank", json=body)
    assert bounded.status_code == on_v1.status_code == free.status_code == 200, bounded.text
    long_read = {r["index"]: r for r in bounded.json()["results"]}[1]
    assert long_read["num_chunks"] == 1 and long_read["truncated"]
    assert facts(bounded.json()["results"]) == facts(on_v1.json()["results"])
    assert {r["index"]: r for r in free.json()["results"]}[1]["num_chunks"] > 1
