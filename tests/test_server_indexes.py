"""Index admin and search endpoints, against a temporary index home."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.anyio

DOCS = [
    {"id": "d1", "title": "Fleas", "text": "Fleas feed on the blood of mammals and birds."},
    {"id": "d2", "title": "Paris", "text": "Paris is the capital of France."},
    {"id": "d3", "title": "Flea larvae", "text": "Flea larvae eat organic debris, not blood."},
    {"id": "d4", "title": "Oceans", "text": "The ocean is deep and cold; fish swim in it."},
]


@pytest.fixture
def client(index_client: httpx.AsyncClient) -> httpx.AsyncClient:
    return index_client


async def _make_index(client: httpx.AsyncClient, name: str = "docs") -> None:
    created = await client.post("/v1/indexes", json={"name": name, "embedding_model": None})
    assert created.status_code == 201, created.text
    assert created.json()["location"] == f"<index home>/{name}"  # not the server's folder
    added = await client.post(f"/v1/indexes/{name}/documents", json={"documents": DOCS})
    assert added.json() == {"upserted": len(DOCS), "written": len(DOCS), "skipped": 0}
    # Sent again, as stored: nothing rewritten (the CLI's "already stored as given, skipped").
    again = await client.post(f"/v1/indexes/{name}/documents", json={"documents": DOCS})
    assert again.json() == {"upserted": len(DOCS), "written": 0, "skipped": len(DOCS)}


async def test_an_encoded_slash_is_part_of_the_index_name(client: httpx.AsyncClient) -> None:
    """Paths ending in a slash are served without it; one written %2F stayed in the name
    no more once decoded, and DELETE /v1/indexes/docs%2F dropped "docs"."""
    await _make_index(client)
    for sent in ("docs%2F", "docs%2F/", "docs%2f%2F"):
        assert (await client.delete(f"/v1/indexes/{sent}")).status_code in (404, 422), sent
        assert (await client.get(f"/v1/indexes/{sent}")).status_code in (404, 422), sent
    assert (await client.get("/v1/indexes/docs/")).json()["name"] == "docs"
    assert (await client.get("/v1/indexes")).json()["data"] == [{"name": "docs", "aliases": []}]
    # Inside a path, too: it was routed as a slash (past a proxy filtering paths as written).
    body = {"ids": [DOCS[0]["id"]]}
    for path in ("/v1/indexes/docs%2Fdocuments%2Fdelete", "/v1/indexes/docs%5Cdocuments/delete"):
        refused = await client.post(path, json=body)
        assert refused.status_code in (404, 405, 422), (path, refused.text)
    assert (await client.get("/v1/indexes/docs")).json()["documents"] == len(DOCS)


async def test_index_lifecycle(client: httpx.AsyncClient, tmp_path: Path) -> None:
    await _make_index(client)
    assert (await client.get("/v1/indexes")).json()["data"] == [{"name": "docs", "aliases": []}]
    info = (await client.get("/v1/indexes/docs")).json()
    assert info["documents"] == len(DOCS) and info["settings"]["text_fields"] == ["title", "text"]
    assert info["location"] == "<index home>/docs"  # not the server's folder
    again = await client.post("/v1/indexes", json={"name": "docs"})
    assert again.status_code == 409 and again.json()["error_type"] == "index_exists"
    # Errors name the index, not where the server keeps it.
    assert str(tmp_path) not in again.text and "<index home>" in again.text
    deleted = await client.post("/v1/indexes/docs/documents/delete", json={"ids": ["d2", "zz"]})
    assert deleted.json() == {"deleted": 1}
    assert (await client.get("/v1/indexes/docs")).json()["documents"] == len(DOCS) - 1
    assert (await client.delete("/v1/indexes/docs")).json() == {"deleted": 1}
    missing = await client.get("/v1/indexes/docs")
    assert missing.status_code == 404 and missing.json()["error_type"] == "index_not_found"
    assert str(tmp_path) not in missing.text


async def test_listing_lets_go_of_indexes_another_process_dropped(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """With --workers N a worker that did not serve a drop kept the index's deleted files open
    until a request named it again; listing is a request on every index."""
    import asyncio

    from semrank.store import drop_index

    await _make_index(client, "gone")
    searched = await client.post("/v1/indexes/gone/search", json={"query": "fleas"})
    assert searched.status_code == 200  # the server now holds the index open
    drop_index("gone", home=tmp_path)  # as another worker or the CLI does
    await asyncio.sleep(1.1)  # held indexes are looked at about once a second
    assert (await client.get("/v1/indexes")).json()["data"] == []
    descriptors = Path("/proc/self/fd")
    if descriptors.is_dir():
        held = []
        for fd in descriptors.iterdir():
            try:
                held.append(os.readlink(fd))
            except OSError:  # closed since it was listed
                continue
        assert not [target for target in held if target.startswith(str(tmp_path))]


async def test_search_bm25_and_reranked_with_the_served_model(
    client: httpx.AsyncClient, reranker: Any
) -> None:
    await _make_index(client)
    bm25 = await client.post("/v1/indexes/docs/search", json={"query": "flea blood", "size": 3})
    assert bm25.status_code == 200, bm25.text
    bm25_hits = bm25.json()["hits"]
    assert bm25_hits[0]["id"] in {"d1", "d3"} and "rerank_score" not in bm25_hits[0]
    tree = {
        "text_similarity_reranker": {
            "retriever": {"standard": {"query": {"match": {"text": "{{query}}"}}}},
            "field": "text",
            "inference_id": "minilm",
            "rank_window_size": 10,
        }
    }
    reranked = await client.post(
        "/v1/indexes/docs/search", json={"query": "what do fleas eat", "retriever": tree}
    )
    assert reranked.status_code == 200, reranked.text
    hits = reranked.json()["hits"]
    texts = [hit["document"]["text"] for hit in hits]
    scores = reranker.score("what do fleas eat", texts)
    assert [hit["rerank_score"] for hit in hits] == pytest.approx(scores.tolist(), abs=1e-5)
    assert [hit["rank"] for hit in hits] == list(range(1, len(hits) + 1))


async def test_search_errors(client: httpx.AsyncClient) -> None:
    await _make_index(client)
    unknown_model = await client.post(
        "/v1/indexes/docs/search",
        json={
            "query": "fleas",
            "retriever": {
                "text_similarity_reranker": {
                    "retriever": {"standard": {"query": {"match": {"text": "{{query}}"}}}},
                    "field": "text",
                    "inference_id": "BAAI/bge-reranker-v2-m3",
                }
            },
        },
    )
    assert unknown_model.status_code == 404
    assert unknown_model.json()["error_type"] == "model_not_found"
    # The key that named it, and the fix that keeps the tree (a pasted Elasticsearch id).
    assert unknown_model.json()["error"].startswith("text_similarity_reranker's inference_id: ")
    assert "leave inference_id out for the default model" in unknown_model.json()["error"]
    bad_tree = await client.post(
        "/v1/indexes/docs/search", json={"query": "fleas", "retriever": {"nonsense": {}}}
    )
    assert bad_tree.status_code == 422 and "nonsense" in bad_tree.json()["error"]
    as_path = await client.post(
        "/v1/indexes/docs/search", json={"query": "fleas", "retriever": "/etc/passwd"}
    )
    assert as_path.status_code == 422 and "shorthand" in as_path.json()["error"]
    shorthand = await client.post(
        "/v1/indexes/docs/search", json={"query": "fleas", "retriever": "bm25+rerank"}
    )
    assert shorthand.status_code == 200 and shorthand.json()["hits"][0]["rerank_score"] is not None
    no_index = await client.post("/v1/indexes/nope/search", json={"query": "fleas"})
    assert no_index.status_code == 404
    # The fix an HTTP client can make, not the server's CLI and folder.
    assert "POST /v1/indexes" in no_index.json()["error"]
    assert "semrank index create" not in no_index.json()["error"]
    dense = await client.post(
        "/v1/indexes/docs/search", json={"query": "fleas", "retriever": "dense"}
    )
    assert dense.status_code == 422 and "has no embeddings" in dense.json()["error"]
    assert "embedding_model (POST /v1/indexes)" in dense.json()["error"]
    assert "semrank index create" not in dense.json()["error"]


async def test_a_fixed_query_vector_that_cannot_follow_the_query_is_422(
    client: httpx.AsyncClient,
) -> None:
    """A hybrid example pasted with its query_vector: the body's query replaced the match text,
    and the knn searched its fixed vector for every query (a 200 mixing two searches)."""
    await _make_index(client)
    example = {
        "rrf": {
            "retrievers": [
                {"standard": {"query": {"match": {"text": "flea blood"}}}},
                {"knn": {"field": "embedding", "query_vector": [0.1, 0.2, 0.3], "k": 3}},
            ]
        }
    }
    body = {"query": "capital of France", "retriever": example}
    refused = await client.post("/v1/indexes/docs/search", json=body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error_type"] == "invalid_request"
    message = refused.json()["error"]
    assert message.startswith("retriever.rrf.retrievers[1].knn.query_vector is a fixed vector")
    assert 'query_text: "{{query}}"' in message


async def test_a_rerank_window_over_the_document_limit_is_413(client: httpx.AsyncClient) -> None:
    await _make_index(client)
    reranker = {
        "retriever": {"standard": {"query": {"match": {"text": "{{query}}"}}}},
        "field": "text",
        "rank_window_size": 1001,  # the default max_documents is 1000, as for /v1/rerank
    }
    tree = {"rrf": {"retrievers": [{"text_similarity_reranker": reranker}]}}
    body = {"query": "flea", "retriever": tree}
    response = await client.post("/v1/indexes/docs/search", json=body)
    assert response.status_code == 413, response.text
    assert response.json()["error_type"] == "request_too_large"
    assert "rank_window_size 1001" in response.json()["error"]
    assert "limit of 1000" in response.json()["error"]
    reranker["rank_window_size"] = 1000
    allowed = await client.post("/v1/indexes/docs/search", json=body)
    assert allowed.status_code == 200, allowed.text
    # Several re-rankers in one tree each score their window: held to the limit together.
    reranker["rank_window_size"] = 600
    tree["rrf"]["retrievers"] = [{"text_similarity_reranker": reranker}] * 2  # type: ignore[index]
    together = await client.post("/v1/indexes/docs/search", json=body)
    assert together.status_code == 413, together.text
    assert "re-ranks 1200 documents (rank_window_size 600 + 600)" in together.json()["error"]


async def test_documents_without_searchable_words_are_stored_and_match_nothing(
    client: httpx.AsyncClient,
) -> None:
    created = await client.post("/v1/indexes", json={"name": "blank", "embedding_model": None})
    assert created.status_code == 201, created.text
    blank = [{"id": "b1", "title": "", "text": ""}, {"id": "b2", "title": "the", "text": "of"}]
    added = await client.post("/v1/indexes/blank/documents", json={"documents": blank})
    assert added.status_code == 200 and added.json() == {
        "upserted": 2,
        "written": 2,
        "skipped": 0,
    }, added.text
    found = await client.post("/v1/indexes/blank/search", json={"query": "fleas"})
    assert found.status_code == 200 and found.json()["hits"] == [], found.text


async def test_an_empty_id_field_or_an_object_id_is_refused(client: httpx.AsyncClient) -> None:
    no_field = await client.post("/v1/indexes", json={"name": "x", "id_field": ""})
    assert no_field.status_code == 422 and "id_field" in no_field.json()["error"], no_field.text
    created = await client.post("/v1/indexes", json={"name": "ids", "embedding_model": None})
    assert created.status_code == 201, created.text
    bad = [{"id": {"nested": 1}, "text": "fleas"}]
    added = await client.post("/v1/indexes/ids/documents", json={"documents": bad})
    assert added.status_code == 422, added.text
    assert "is not a string or a finite number" in added.json()["error"]
    assert (await client.get("/v1/indexes/ids")).json()["documents"] == 0
    huge = [{"id": 10**400, "text": "a very long number"}]  # a float conversion overflows
    added = await client.post("/v1/indexes/ids/documents", json={"documents": huge})
    assert added.status_code == 200, added.text
    gone = await client.post("/v1/indexes/ids/documents/delete", json={"ids": [10**400]})
    assert gone.status_code == 200 and gone.json()["deleted"] == 1, gone.text


async def test_prepare_embeds_the_windows_ahead_and_search_gives_the_same_hits(
    client: httpx.AsyncClient,
) -> None:
    await _make_index(client)
    body = {"query": "flea blood", "retriever": "bm25+rerank", "size": 3}
    before = (await client.post("/v1/indexes/docs/search", json=body)).json()["hits"]
    prepared = await client.post("/v1/indexes/docs/prepare", json={"model": "minilm"})
    assert prepared.status_code == 200, prepared.text
    [table] = prepared.json()["prepared"]
    assert table["documents"] == len(DOCS) and table["windows"] >= len(DOCS)
    info = (await client.get("/v1/indexes/docs")).json()
    assert any(kind.startswith("prepared-") for kind in info["derived"])
    after = (await client.post("/v1/indexes/docs/search", json=body)).json()["hits"]
    assert [hit["id"] for hit in after] == [hit["id"] for hit in before]
    for old, new in zip(before, after, strict=True):
        assert abs(old["score"] - new["score"]) < 1e-3


async def test_prepare_errors_name_the_index_model_and_field(client: httpx.AsyncClient) -> None:
    missing = await client.post("/v1/indexes/nosuch/prepare", json={})
    assert missing.status_code == 404 and "nosuch" in missing.json()["error"]
    await _make_index(client)
    model = await client.post("/v1/indexes/docs/prepare", json={"model": "nosuch-model"})
    assert model.status_code in (400, 404, 422) and "nosuch-model" in model.json()["error"]
    field = await client.post("/v1/indexes/docs/prepare", json={"field": "nosuch_field"})
    assert field.status_code == 422 and "nosuch_field" in field.json()["error"]
    # A form a web page can send across sites without a preflight: refused, not prepared.
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    as_form = await client.post("/v1/indexes/docs/prepare", headers=form)
    assert as_form.status_code == 422, as_form.text
    assert "sent with Content-Type 'application/x-www-form-urlencoded'" in as_form.json()["error"]
    # Nor what a page sends with no body (fetch, sendBeacon) or a safelisted type with "json"
    # in its parameters: a browser sends those across sites without a preflight either.
    for headers in (
        {"Origin": "https://10.9.9.9"},  # an address: past the keyless server's name check
        {"Sec-Fetch-Site": "cross-site"},
        {"Content-Type": "text/plain; x=json"},
    ):
        refused = await client.post("/v1/indexes/docs/prepare", headers=headers)
        assert refused.status_code == 422, (headers, refused.text)
    assert "prepared-" not in str((await client.get("/v1/indexes/docs")).json()["derived"])
    foreign = await client.post("/v1/indexes/docs/prepare", headers={"Origin": "https://10.9.9.9"})
    assert "Origin 'https://10.9.9.9', Host 'test'" in foreign.json()["error"]
    named = await client.post(
        "/v1/indexes/docs/prepare", headers={"Origin": "https://elsewhere.example"}
    )
    assert named.status_code == 401  # a keyless server answers pages by address only
    mine = {"Origin": "http://127.0.0.1:8000", "Host": "127.0.0.1:8000"}
    own = await client.post("/v1/indexes/docs/prepare", headers=mine)
    assert own.status_code == 200, own.text  # a page of the server's own address may


async def test_prepare_with_a_key_is_not_refused_for_its_origin(
    reranker: Any, tmp_path: Path
) -> None:
    """Behind a proxy that rewrites Host, a same-site page's Origin differs from the Host the
    server sees: with a key (which another site's page cannot send unasked) it is not refused."""
    from semrank.pipeline import forget_open_indexes
    from semrank.server import ServerConfig, create_app

    config = ServerConfig(index_home=str(tmp_path), api_keys=frozenset({"k1"}))
    app = create_app(config, rerankers={"minilm": reranker})
    key = {"Authorization": "Bearer k1"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            created = await http.post(
                "/v1/indexes", json={"name": "d", "embedding_model": None}, headers=key
            )
            assert created.status_code == 201, created.text
            await http.post("/v1/indexes/d/documents", json={"documents": DOCS}, headers=key)
            proxied = {**key, "Origin": "https://rank.example.com"}
            prepared = await http.post("/v1/indexes/d/prepare", headers=proxied)
            assert prepared.status_code == 200, prepared.text
    forget_open_indexes()


async def test_prepare_needs_no_body(client: httpx.AsyncClient) -> None:
    missing = await client.post("/v1/indexes/nosuch/prepare")
    assert missing.status_code == 404 and "nosuch" in missing.json()["error"], missing.text


async def test_own_bodies_refuse_unknown_keys_and_ambiguous_settings(
    client: httpx.AsyncClient,
) -> None:
    # text_fields is the name index info shows; fields is the request's: ignoring it would
    # create an index over title/text whose documents' "body" no search finds.
    typo = await client.post("/v1/indexes", json={"name": "x", "text_fields": ["body"]})
    assert typo.status_code == 422 and "text_fields" in typo.json()["error"], typo.text
    assert "text_fields: unknown key; check its spelling" in typo.json()["error"]
    null_id = await client.post("/v1/indexes", json={"name": "x", "id_field": None})
    assert null_id.status_code == 422 and "id_field" in null_id.json()["error"], null_id.text
    twice = await client.post("/v1/indexes", json={"name": "x", "fields": ["text", "text"]})
    assert twice.status_code == 422 and "'text' named twice" in twice.json()["error"], twice.text
    # A long list was checked in quadratic time (40,000 names: 17 s of a request thread).
    many = [f"f{i}" for i in range(50_000)]
    too_many = await client.post("/v1/indexes", json={"name": "x", "fields": many})
    assert too_many.status_code == 422, too_many.text
    assert "at most 1000 text fields, and 50000 were named" in too_many.json()["error"]
    as_id = await client.post("/v1/indexes", json={"name": "x", "fields": ["id", "text"]})
    assert as_id.status_code == 422 and "'id' is the id field" in as_id.json()["error"]
    assert (await client.get("/v1/indexes")).json()["data"] == []
    await _make_index(client)
    source = await client.post("/v1/indexes/docs/search", json={"query": "flea", "_source": False})
    assert source.status_code == 422 and "return_documents: false" in source.json()["error"]
    dsl = {"query": {"match": {"text": "flea"}}}  # Elasticsearch's _search body
    as_es = await client.post("/v1/indexes/docs/search", json=dsl)
    assert as_es.status_code == 422 and '"retriever": {"standard"' in as_es.json()["error"]
    # The same words the library and CLI say (the parser's, said in one place).
    from semrank.pipeline import QUERY_DSL_HINT

    assert as_es.json()["error"] == f"query: query is the search text, a string; {QUERY_DSL_HINT}"
    # The search body's hints are for the search body only.
    made = await client.post("/v1/indexes", json={"name": "y", "_source": False})
    assert made.json()["error"] == "_source: unknown key; check its spelling"
    top_n = await client.post("/v1/indexes/docs/search", json={"query": "flea", "top_n": 1})
    assert top_n.status_code == 422 and "top_n" in top_n.json()["error"], top_n.text
    # Elasticsearch's other _search keys are spelt right: say where each goes, or what is taken.
    for key, hint in (
        ("knn", 'a top-level knn search goes into the tree: "retriever": {"rrf"'),
        ("rank", "rank.rrf is the rrf retriever"),
        ("min_score", "min_score goes on a text_similarity_reranker retriever"),
        ("track_total_hits", "takes query, retriever, size, from, filter, return_documents,"),
    ):
        es_key = await client.post("/v1/indexes/docs/search", json={"query": "flea", key: {}})
        assert es_key.status_code == 422 and es_key.json()["error"].startswith(f"{key}: unknown")
        assert hint in es_key.json()["error"]
    # Over HTTP the query is the body's `query` (the message named only the CLI's argument).
    placeholder = {"standard": {"query": {"match": {"text": "{{query}}"}}}}
    no_text = await client.post("/v1/indexes/docs/search", json={"retriever": placeholder})
    assert no_text.status_code == 422 and "`query` in an HTTP search body" in no_text.text


async def test_documents_the_index_could_never_find_are_refused(
    client: httpx.AsyncClient,
) -> None:
    await _make_index(client)
    body_only = [{"id": "n1", "text": "zebra"}, {"id": "n2", "body": "zebra stripes"}]
    refused = await client.post("/v1/indexes/docs/documents", json={"documents": body_only})
    assert refused.status_code == 422, refused.text
    assert (
        "record 2 (id 'n2') has none of the index's text fields title, text"
        in (refused.json()["error"])
    )
    twice = [{"id": "q", "text": "one"}, {"id": "q", "text": "two"}]
    repeated = await client.post("/v1/indexes/docs/documents", json={"documents": twice})
    assert repeated.status_code == 422 and "repeats the id 'q'" in repeated.json()["error"]
    assert (await client.get("/v1/indexes/docs")).json()["documents"] == len(DOCS)


async def test_an_add_names_the_text_fields_the_index_keeps_but_does_not_search(
    client: httpx.AsyncClient,
) -> None:
    """The documents' text in overview only: stored, never found by a search, and the answer
    said nothing of it."""
    await _make_index(client)  # its adds, with title and text alone, carry no warnings
    movies = [{"id": "m1", "title": "Interstellar", "overview": "a wormhole to other stars"}]
    added = await client.post("/v1/indexes/docs/documents", json={"documents": movies})
    assert added.status_code == 200, added.text
    (said,) = added.json()["warnings"]
    assert "hold text in overview, which index 'docs' keeps but does not search" in said
    assert 'create an index with "fields" naming them' in said
    assert added.headers["x-semrank-warning"] == said
    found = await client.post("/v1/indexes/docs/search", json={"query": "wormhole"})
    assert found.json()["hits"] == []  # what the warning is about
    again = await client.post("/v1/indexes/docs/documents", json={"documents": movies})
    assert "warnings" not in again.json()  # said once: the index keeps the field now


async def test_a_document_naming_a_field_twice_is_refused_not_cut(
    client: httpx.AsyncClient,
) -> None:
    await _make_index(client)
    body = b'{"documents": [{"id": "t", "text": "ticks", "title": "Ticks", "title": "Mites"}]}'
    json_type = {"content-type": "application/json"}
    refused = await client.post("/v1/indexes/docs/documents", content=body, headers=json_type)
    assert refused.status_code == 422, refused.text
    assert "the key 'title' twice" in refused.json()["error"]
    assert (await client.get("/v1/indexes/docs")).json()["documents"] == len(DOCS)


async def test_a_top_window_below_size_is_refused_as_elasticsearch_does(
    client: httpx.AsyncClient,
) -> None:
    await _make_index(client)
    tree = {
        "text_similarity_reranker": {
            "retriever": {"standard": {"query": {"match": {"text": "{{query}}"}}}},
            "field": "text",
            "rank_window_size": 1,
        }
    }
    body = {"query": "flea", "retriever": tree, "size": 2}
    narrow = await client.post("/v1/indexes/docs/search", json=body)
    assert narrow.status_code == 422, narrow.text
    # Named as the request names it (the CLI's --top-n was named in HTTP answers too).
    assert "rank_window_size 1 is below the 2 hits asked for (size)" in narrow.json()["error"]
    # The same tree in a _search body with its own size: the body's cut-off hides no window.
    search_body = {"query": "flea", "retriever": {"retriever": tree, "size": 2}, "size": 2}
    in_body = await client.post("/v1/indexes/docs/search", json=search_body)
    assert in_body.status_code == 422, in_body.text
    assert "rank_window_size 1 is below the 2 hits asked for" in in_body.json()["error"]
    tree["text_similarity_reranker"]["rank_window_size"] = 2
    wide = await client.post("/v1/indexes/docs/search", json=body)
    assert wide.status_code == 200, wide.text
    assert {hit["id"] for hit in wide.json()["hits"]} == {"d1", "d3"}  # the two flea documents
    # A shorthand re-ranks enough for the size asked: 100 by default, more for larger sizes.
    many = await client.post(
        "/v1/indexes/docs/search", json={"query": "flea", "retriever": "bm25+rerank", "size": 150}
    )
    assert many.status_code == 200, many.text
    over = await client.post(
        "/v1/indexes/docs/search", json={"query": "flea", "retriever": "bm25+rerank", "size": 1001}
    )
    assert over.status_code == 413 and "size 1001 with 'bm25+rerank'" in over.json()["error"]


async def test_dropping_an_index_leaves_the_other_open_indexes_to_their_users(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    from semrank.pipeline import open_cached

    await _make_index(client, "kept")
    await _make_index(client, "gone")
    in_use = open_cached("kept", tmp_path)  # the handle a request on "kept" is working with
    assert (await client.delete("/v1/indexes/gone")).json() == {"deleted": 1}
    assert in_use.info().documents == len(DOCS)  # still open: its request goes on
    assert open_cached("kept", tmp_path) is in_use
    found = await client.post("/v1/indexes/kept/search", json={"query": "fleas", "size": 1})
    assert found.status_code == 200, found.text


async def test_a_relative_index_home_is_not_shown_either(
    reranker: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from semrank.pipeline import forget_open_indexes
    from semrank.server import ServerConfig, create_app

    monkeypatch.chdir(tmp_path)
    app = create_app(ServerConfig(index_home="rel"), rerankers={"minilm": reranker})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await _make_index(client, "docs")
            info = (await client.get("/v1/indexes/docs")).json()
    forget_open_indexes()
    assert info["location"] == "<index home>/docs"


async def test_an_index_home_the_server_cannot_make_is_a_503_logged_as_an_error(
    reranker: Any, read_only_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A read-only file system was the client's 422 invalid_request, logged at info, telling
    it to pass --home: the server's folder is its operator's to fix, not the caller's."""
    from semrank.server import ServerConfig, create_app

    home = read_only_folder / "home"
    app = create_app(ServerConfig(index_home=str(home)), rerankers={"minilm": reranker})
    caplog.set_level(logging.INFO)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            created = await client.post("/v1/indexes", json={"name": "docs"})
    assert created.status_code == 503 and created.headers["retry-after"]
    answer = created.json()
    assert answer["error_type"] == "storage_error"
    assert answer["error"] == (
        "the server's index home cannot be created or written (Read-only file system); its "
        "operator must give it a writable folder"
    )
    failed = [r for r in caplog.records if r.getMessage() == "request failed"]
    assert [r.levelno for r in failed] == [logging.ERROR]
    assert f"index home {home} cannot be created" in failed[0].fields["error"]  # type: ignore[attr-defined]


async def test_one_upsert_request_is_one_transaction(client: httpx.AsyncClient) -> None:
    """Batches of 256 committed on their own: requests writing the same ids at once left a mix
    of them (256 documents of one, the rest of another), and a failure half-way kept half."""
    created = await client.post("/v1/indexes", json={"name": "big", "embedding_model": None})
    assert created.status_code == 201, created.text
    documents = [{"id": f"d{i}", "text": f"passage number {i}"} for i in range(300)]
    added = await client.post("/v1/indexes/big/documents", json={"documents": documents})
    assert added.json() == {"upserted": 300, "written": 300, "skipped": 0}
    info = (await client.get("/v1/indexes/big")).json()
    assert info["documents"] == 300 and info["generation"] == 1  # one commit


async def test_numeric_ids_delete_as_they_were_added(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/indexes", json={"name": "nums", "embedding_model": None})
    assert created.status_code == 201, created.text
    docs = [{"id": 7, "text": "fleas"}, {"id": "8", "text": "ticks"}]
    added = await client.post("/v1/indexes/nums/documents", json={"documents": docs})
    assert added.status_code == 200, added.text
    deleted = await client.post("/v1/indexes/nums/documents/delete", json={"ids": [7]})
    assert deleted.status_code == 200 and deleted.json() == {"deleted": 1}, deleted.text
    boolean = await client.post("/v1/indexes/nums/documents/delete", json={"ids": [True]})
    assert boolean.status_code == 422, boolean.text
    assert (await client.get("/v1/indexes/nums")).json()["documents"] == 1


async def test_a_query_cut_to_fit_the_reranker_is_said_on_search(client: httpx.AsyncClient) -> None:
    """The rerank routes said so (header, meta.warnings); a search re-ranking the same query
    cut it silently."""
    await _make_index(client)
    long_query = "do fleas " + "really " * 600 + "bite"
    body = {"query": long_query, "retriever": "bm25+rerank", "size": 2}
    response = await client.post("/v1/indexes/docs/search", json=body)
    assert response.status_code == 200, response.text
    (warning,) = response.json()["warnings"]
    assert warning.startswith("the query is 6") and "read its first" in warning
    assert response.headers["x-semrank-warning"] == warning
    short = await client.post("/v1/indexes/docs/search", json={**body, "query": "do fleas bite"})
    assert "warnings" not in short.json() and "x-semrank-warning" not in short.headers


async def test_a_search_names_the_served_model_as_the_rerank_routes_do(
    reranker: Any, tiny_model: Any, tmp_path: Path
) -> None:
    """A model served as `--model rr=/srv/models/...` was "model 'rr'" in /v1/rerank's
    warnings but "model '/srv/models/...'" in a search's (and in prepare's 422): another name
    for the same model, and the server's folder told to its clients."""
    import shutil

    from semrank import Reranker
    from semrank.pipeline import forget_open_indexes
    from semrank.server import ServerConfig, create_app

    folder = tmp_path / "models" / "checkpoint"
    shutil.copytree(tiny_model("bert"), folder)
    rerankers = {"minilm": reranker, "rr": Reranker(str(folder))}
    app = create_app(ServerConfig(index_home=str(tmp_path / "home")), rerankers=rerankers)
    long_query = "do fleas " + "really " * 100 + "bite"
    tree = {"standard": {"query": {"match": {"text": "fleas"}}}}
    reranked = {"text_similarity_reranker": {"retriever": tree, "inference_id": "rr"}}
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                await _make_index(client)
                body = {"query": long_query, "documents": ["fleas bite"], "model": "rr"}
                said = (await client.post("/v1/rerank", json=body)).json()["meta"]["warnings"]
                search = {"query": long_query, "retriever": reranked}
                searched = await client.post("/v1/indexes/docs/search", json=search)
                prepare = await client.post("/v1/indexes/docs/prepare", json={"model": "rr"})
    finally:
        forget_open_indexes()
    assert searched.status_code == 200, searched.text
    (warning,) = searched.json()["warnings"]
    assert "; model 'rr' read its first" in said[0]  # /v1/rerank's words
    assert warning.startswith("the query is ") and "; model 'rr' read its first" in warning
    assert prepare.status_code == 422 and "model 'rr' has no bi-encoder" in prepare.text
    assert str(tmp_path) not in searched.text + prepare.text


async def test_a_rerank_shorthand_fits_a_low_document_limit(reranker: Any, tmp_path: Path) -> None:
    """Under --max-documents 5, "bm25+rerank" re-ranked its usual 100 and was refused whatever
    the size, pointing at a rank_window_size a shorthand does not have."""
    async with _served_index(reranker, tmp_path, max_documents=5) as client:
        body = {"query": "fleas", "retriever": "bm25+rerank", "size": 3}
        found = await client.post("/v1/indexes/docs/search", json=body)
        too_many = await client.post("/v1/indexes/docs/search", json={**body, "size": 6})
    assert found.status_code == 200, found.text
    assert found.json()["hits"][0]["rerank_score"] is not None
    assert too_many.status_code == 413 and "at most 5 hits" in too_many.json()["error"]


async def test_a_search_past_its_deadline_is_counted_as_rejected(client: httpx.AsyncClient) -> None:
    """The rerank routes' 504s were counted in semrank_rejected_requests_total, an index
    search's were not."""
    await _make_index(client)
    body = {"query": "flea blood", "retriever": "bm25+rerank", "timeout_ms": 1}
    statuses = [(await client.post("/v1/indexes/docs/search", json=body)).status_code]
    while statuses[-1] != 504 and len(statuses) < 5:  # 1 ms is nearly always too short
        statuses.append((await client.post("/v1/indexes/docs/search", json=body)).status_code)
    assert statuses[-1] == 504, statuses
    # Most 504s of a wide tree came from the search thread's own check, which named no fix.
    wide = {"rrf": {"retrievers": [{"standard": {"query": {"match": {"*": "blood"}}}}] * 99}}
    for _ in range(5):
        late = await client.post(
            "/v1/indexes/docs/search", json={"query": "q", "retriever": wide, "timeout_ms": 1}
        )
        statuses.append(late.status_code)
        if late.status_code == 504:
            assert late.json()["error"].startswith("the search did not finish within the request")
    metrics = (await client.get("/metrics")).text
    line = next(
        x for x in metrics.splitlines() if 'rejected_requests_total{reason="deadline"}' in x
    )
    assert float(line.split()[-1]) == statuses.count(504)


async def test_an_unfinished_ingest_is_said_without_the_servers_paths(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Index info gave clients the server's file paths, host name and process ids of an
    unfinished ingest, and a model folder's path; a search of such an index said nothing (the
    CLI warns)."""
    from semrank.models import resolve_embedding_model
    from semrank.pipeline import forget_open_indexes
    from semrank.store import create_index
    from semrank.store._base import stdin_source

    source = tmp_path / "private" / "corpus.jsonl"
    model_path = str(resolve_embedding_model().path)
    with create_index("half", home=tmp_path, embedding_model=None) as index:
        index.upsert([{"id": "d1", "text": "fleas bite"}])
        index.begin_ingest(source, id_field="id")  # and never ended: interrupted
        index.begin_ingest(Path(stdin_source("5c378a284a2e1705")), id_field="id")  # piped in
    with create_index("pathy", home=tmp_path, embedding_model=model_path):
        pass
    forget_open_indexes()
    info = (await client.get("/v1/indexes/half")).json()
    searched = await client.post("/v1/indexes/half/search", json={"query": "fleas"})
    pathy = (await client.get("/v1/indexes/pathy")).json()
    assert list(info["unfinished_ingests"]) == ["corpus.jsonl", "-"]
    mark = info["unfinished_ingests"]["corpus.jsonl"]
    assert set(mark) == {"started", "running"} and mark["running"] is False
    assert str(tmp_path) not in json.dumps(info) and str(tmp_path) not in json.dumps(pathy)
    assert pathy["settings"]["embedding_model"] == f"<path>/{Path(model_path).name}"
    assert searched.status_code == 200 and searched.json()["hits"][0]["id"] == "d1"
    assert "is incomplete" in searched.json()["warnings"][0]
    assert "is incomplete" in searched.headers["x-semrank-warning"]


async def test_a_damaged_index_file_names_the_http_fix_not_the_servers_path(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    created = await client.post("/v1/indexes", json={"name": "broken", "embedding_model": None})
    assert created.status_code == 201, created.text
    from semrank.pipeline import forget_open_indexes

    forget_open_indexes()
    (tmp_path / "broken" / "documents.sqlite").write_bytes(b"not a database at all" * 100)
    searched = await client.post("/v1/indexes/broken/search", json={"query": "fleas"})
    assert searched.status_code == 422, searched.text
    error = searched.json()["error"]
    assert "DELETE /v1/indexes/broken" in error
    assert str(tmp_path) not in error and "semrank index drop" not in error
    dropped = await client.delete("/v1/indexes/broken")
    assert dropped.status_code in (200, 204), dropped.text
    assert (await client.post("/v1/indexes/broken/search", json={"query": "x"})).status_code == 404


async def test_documents_nested_deeper_than_a_response_can_carry_are_refused(
    client: httpx.AsyncClient,
) -> None:
    """A 300-deep document was stored (200), and every search returning it was then a 500
    (pydantic's writer stops at about 250 levels); a rerank returning one was a 500 too."""
    deep: object = "insects"
    for _ in range(300):
        deep = [deep]
    created = await client.post("/v1/indexes", json={"name": "p", "embedding_model": None})
    assert created.status_code == 201
    doc = {"id": "bad", "text": "insects", "meta": deep}
    stored = await client.post("/v1/indexes/p/documents", json={"documents": [doc]})
    assert stored.status_code == 422 and "more than 200 levels" in stored.json()["error"]
    assert (await client.post("/v1/indexes/p/search", json={"query": "insects"})).status_code == 200
    body = {"query": "q", "documents": [{"text": "a", "meta": deep}], "return_documents": True}
    reranked = await client.post("/v1/rerank", json=body)
    assert reranked.status_code == 422 and "documents[0] nests" in reranked.json()["error"]
    shallow = {"text": "a", "meta": [[["fine"]]]}
    ok = await client.post("/v1/rerank", json={**body, "documents": [shallow]})
    assert ok.status_code == 200 and ok.json()["results"][0]["document"] == shallow


async def test_an_index_whose_model_folder_went_away_names_no_server_folder(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Its dense search answered with the server's path to the model and CLI advice."""
    import shutil

    from semrank.models import resolve_embedding_model
    from semrank.pipeline import forget_open_indexes
    from semrank.store import create_index

    folder = tmp_path / "models" / "emb"
    shutil.copytree(resolve_embedding_model().path, folder)
    with create_index("moved", home=tmp_path, embedding_model=str(folder)) as index:
        index.upsert([{"id": "d1", "text": "fleas bite"}])
    forget_open_indexes()
    (folder / "model.safetensors").write_bytes(b"")  # damaged: a 500, naming the folder
    body = {"query": "x", "retriever": "dense"}
    damaged = await client.post("/v1/indexes/moved/search", json=body)
    assert damaged.status_code == 500 and str(tmp_path) not in damaged.text
    assert "cannot be loaded on the server" in damaged.json()["error"]
    forget_open_indexes()
    shutil.rmtree(folder)
    searched = await client.post("/v1/indexes/moved/search", json=body)
    assert searched.status_code == 404, searched.text
    assert "cannot be loaded on the server" in searched.json()["error"]
    assert str(tmp_path) not in searched.text
    from semrank.errors import ModelNotFoundError
    from semrank.pipeline import search

    with pytest.raises(ModelNotFoundError, match="index 'moved''s embedding model does not load"):
        search("moved", "x", retriever="dense", home=tmp_path)  # the CLI's words: its folder


async def test_a_write_over_the_document_limit_is_413_and_writes_are_admitted(
    client: httpx.AsyncClient,
) -> None:
    """Writes ignored --max-documents (1,500 documents embedded for 30 s) and --max-pending."""
    await _make_index(client)
    many = [{"id": f"n{i}", "text": "flea"} for i in range(1001)]  # the default limit is 1000
    refused = await client.post("/v1/indexes/docs/documents", json={"documents": many})
    assert refused.status_code == 413 and "limit of 1000" in refused.json()["error"]
    assert "--max-documents" in refused.json()["error"]
    service = client._transport.app.state.service  # type: ignore[attr-defined]
    with service.admission.admit():  # another request holds every place
        service.admission.limit, before = 1, service.admission.limit
        try:
            busy = await client.post("/v1/indexes/docs/documents", json={"documents": many[:1]})
        finally:
            service.admission.limit = before
    assert busy.status_code == 429, busy.text
    written = await client.post("/v1/indexes/docs/documents", json={"documents": many[:1000]})
    assert written.status_code == 200 and written.json() == {
        "upserted": 1000,
        "written": 1000,
        "skipped": 0,
    }


async def test_searches_waiting_on_an_index_leave_the_rerank_routes_their_threads(
    reranker: Any, tmp_path: Path
) -> None:
    """A search waits while its index is built again after a write (minutes for a large HNSW
    graph); waiting searches took every request thread, and /v1/rerank calls of two documents
    timed out behind them."""
    import asyncio

    from semrank.pipeline import open_cached

    async with _served_index(reranker, tmp_path, request_threads=2) as client:
        handle = open_cached("docs", tmp_path)  # the server's own handle
        handle._build_lock.acquire()  # as a build after a write holds it
        try:
            waiting = [
                asyncio.create_task(client.post("/v1/indexes/docs/search", json={"query": q}))
                for q in ("fleas", "paris", "ocean")
            ]
            await asyncio.sleep(0.5)  # every index thread is now waiting
            body = {"query": "fleas", "documents": ["fleas bite", "paris"]}
            reranked = await asyncio.wait_for(client.post("/v2/rerank", json=body), 30)
            assert reranked.status_code == 200, reranked.text
            assert not any(task.done() for task in waiting)
        finally:
            handle._build_lock.release()
        assert all(r.status_code == 200 for r in await asyncio.gather(*waiting))


@contextlib.asynccontextmanager
async def _served_index(
    reranker: Any, home: Path, **config: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app built with ``config``, serving the index "docs" made in ``home``."""
    from semrank.pipeline import forget_open_indexes
    from semrank.server import ServerConfig, create_app

    app = create_app(ServerConfig(index_home=str(home), **config), rerankers={"minilm": reranker})
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                await _make_index(client)
                yield client
    finally:
        forget_open_indexes()


async def test_an_optional_dependency_not_installed_is_a_503_naming_its_extra(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server installed without [search] answered every index route with a bare 500."""
    import sys

    from semrank.retrieve import _bm25

    monkeypatch.setitem(sys.modules, "Stemmer", None)  # import Stemmer: ModuleNotFoundError
    _bm25._stemmer.cache_clear()
    _bm25._stemmer_languages.cache_clear()
    try:
        created = await client.post("/v1/indexes", json={"name": "nostem", "embedding_model": None})
    finally:
        _bm25._stemmer.cache_clear()
        _bm25._stemmer_languages.cache_clear()
    assert created.status_code == 503, created.text
    assert created.json()["error"] == (
        "this needs 'Stemmer': pip install 'semrank[search]' (it is not installed)"
    )


# elasticsearch-py 9.5's requests, as it sends them (captured): es.search(index="docs",
# retriever=..., size=3) and es.search(index="docs") with nothing to send.
ES_CLIENT_HEADERS = {
    "user-agent": "elasticsearch-py/9.5.1 (Python/3.11.7; elastic-transport/9.4.2)",
    "accept": "application/vnd.elasticsearch+json; compatible-with=9",
    "content-type": "application/vnd.elasticsearch+json; compatible-with=9",
    "x-elastic-client-meta": "es=9.5.1,py=3.11.7,t=9.4.2,ur=2.8.0",
}
ES_TREE = {"standard": {"query": {"match": {"text": "flea blood"}}}}
ES_SEARCH = b'{"retriever":{"standard":{"query":{"match":{"text":"flea blood"}}}},"size":3}'


def _es_error(response: httpx.Response, status: int, error_type: str) -> str:
    """The reason of an error in Elasticsearch's shape, which elasticsearch-py reads."""
    assert response.status_code == status, response.text
    assert response.headers["x-elastic-product"] == "Elasticsearch"
    error = response.json()["error"]
    assert response.json()["status"] == status and error["type"] == error_type
    assert error["root_cause"] == [{"type": error_type, "reason": error["reason"]}]
    return str(error["reason"])


async def test_elasticsearch_py_searches_are_answered_as_elasticsearch_answers(
    client: httpx.AsyncClient,
) -> None:
    """elasticsearch-py posts to /{index}/_search (a 404 here) and refuses a 2xx answer
    without X-Elastic-Product: Elasticsearch (UnsupportedProductError)."""
    await _make_index(client)
    found = await client.post("/docs/_search", content=ES_SEARCH, headers=ES_CLIENT_HEADERS)
    assert found.status_code == 200, found.text
    assert found.headers["x-elastic-product"] == "Elasticsearch"
    answer = found.json()
    assert answer["timed_out"] is False and answer["_shards"]["failed"] == 0
    assert isinstance(answer["took"], int)
    body = {"retriever": ES_TREE, "size": 3}
    own = (await client.post("/v1/indexes/docs/search", json=body)).json()["hits"]
    assert {h["id"] for h in own} == {"d1", "d3"}  # the fleas
    expected = [("docs", h["id"], h["score"], h["document"]) for h in own]
    hits = answer["hits"]["hits"]
    assert [(h["_index"], h["_id"], h["_score"], h["_source"]) for h in hits] == expected
    # Every match counted (of 2 here), whatever the page's size, as Elasticsearch counts.
    assert answer["hits"]["total"] == {"value": len(own), "relation": "eq"}
    assert answer["hits"]["max_score"] == own[0]["score"]
    # _source: false leaves the documents out; GET with a body is a search too.
    bare = await client.post("/docs/_search", json={**body, "_source": False})
    kept = [set(hit) for hit in bare.json()["hits"]["hits"]]
    assert kept == [{"_index", "_id", "_score"}] * len(own)
    got = await client.request("GET", "/docs/_search", json=body, headers=ES_CLIENT_HEADERS)
    assert got.json()["hits"] == answer["hits"]
    zebras = {"standard": {"query": {"match": {"text": "zebra"}}}}
    nothing = (await client.post("/docs/_search", json={"retriever": zebras})).json()["hits"]
    assert nothing == {"total": {"value": 0, "relation": "eq"}, "max_score": None, "hits": []}


async def test_elasticsearch_search_errors_are_elasticsearch_errors(
    client: httpx.AsyncClient,
) -> None:
    """Refusals in Elasticsearch's error shape, with its 400 for a body it cannot take
    (elasticsearch-py's BadRequestError), saying what to send instead."""
    await _make_index(client)
    # No query at all is Elasticsearch's match_all: every document, score 1, the first ten.
    for empty in (b"", b"{}", b'{"size": 2}'):
        every = await client.post("/docs/_search", content=empty, headers=ES_CLIENT_HEADERS)
        hits = every.json()["hits"]["hits"]
        assert [(h["_id"], h["_score"]) for h in hits] == [
            (doc["id"], 1.0) for doc in DOCS[: 2 if b"size" in empty else 10]
        ], every.text
    both = {"retriever": ES_TREE, "query": {"match": {"text": "flea"}}}
    classic = await client.post("/docs/_search", json=both)
    said = _es_error(classic, 400, "invalid_request")
    assert "'query' cannot be given beside 'retriever'" in said
    fields = await client.post("/docs/_search", json={"retriever": ES_TREE, "_source": 1})
    assert "_source: give true, false, a field" in _es_error(fields, 400, "invalid_request")
    deep = await client.post("/docs/_search", json={"retriever": ES_TREE, "from": 9_999})
    assert "from + size (9,999 + 10 = 10,009) is above 10,000" in _es_error(
        deep, 400, "invalid_request"
    )
    shorthand = await client.post("/docs/_search", json={"retriever": "bm25+rerank"})
    assert "POST /v1/indexes/{name}/search" in _es_error(shorthand, 400, "invalid_request")
    placeholder = {"standard": {"query": {"match": {"text": "{{query}}"}}}}
    unfilled = await client.post("/docs/_search", json={"retriever": placeholder})
    assert "{{query}}" in _es_error(unfilled, 400, "invalid_request")
    broken = await client.post("/docs/_search", content=b'{"retriever":', headers=ES_CLIENT_HEADERS)
    assert "not valid JSON" in _es_error(broken, 400, "invalid_request")
    missing = await client.post("/nosuch/_search", content=ES_SEARCH, headers=ES_CLIENT_HEADERS)
    assert "'nosuch'" in _es_error(missing, 404, "index_not_found")
    # semrank's own route keeps its shape and its 422.
    own = await client.post("/v1/indexes/docs/search", json={"size": -1})
    assert own.status_code == 422 and "x-elastic-product" not in own.headers, own.text


async def test_a_window_below_ten_without_size_answers_the_windows_hits(
    client: httpx.AsyncClient,
) -> None:
    """Elasticsearch refuses a top rank_window_size below a size the body gives; a body with
    no size gets the window's hits. Without a size it was refused here, as if 10 were asked."""
    await _make_index(client)
    one = {"rrf": {"retrievers": [ES_TREE], "rank_window_size": 1}}
    unsized = await client.post("/docs/_search", json={"retriever": one})
    assert unsized.status_code == 200, unsized.text
    hits = unsized.json()["hits"]
    own = await client.post("/v1/indexes/docs/search", json={"retriever": one, "size": 1})
    assert [h["_id"] for h in hits["hits"]] == [h["id"] for h in own.json()["hits"]]
    # The total counts what the rrf matched (both fleas), not its window, as Elasticsearch.
    assert len(hits["hits"]) == 1 and hits["total"] == {"value": 2, "relation": "eq"}
    sized = await client.post("/docs/_search", json={"retriever": one, "size": 2})
    assert "rank_window_size 1 is below the 2 hits" in _es_error(sized, 400, "invalid_request")


async def test_semranks_search_route_without_size_answers_the_windows_hits(
    client: httpx.AsyncClient,
) -> None:
    """POST /v1/indexes/{name}/search runs under _search's rules: a tree whose top window is
    below 10 and no size gets the window's hits (it was refused as below the 10 hits of a size
    the client never sent), the same as _search answers; a size given is still checked."""
    await _make_index(client)
    one = {"rrf": {"retrievers": [ES_TREE], "rank_window_size": 1}}
    es = await client.post("/docs/_search", json={"retriever": one})
    for body in ({"retriever": one}, {"retriever": {"retriever": one, "_source": False}}):
        own = await client.post("/v1/indexes/docs/search", json=body)
        assert own.status_code == 200, own.text
        es_ids = [h["_id"] for h in es.json()["hits"]["hits"]]
        assert [h["id"] for h in own.json()["hits"]] == es_ids and len(es_ids) == 1
    sized = await client.post("/v1/indexes/docs/search", json={"retriever": one, "size": 2})
    assert sized.status_code == 422 and "rank_window_size 1 is below the 2 hits" in sized.text


async def test_an_rrf_without_a_window_is_elasticsearchs_ten_wherever_it_is(
    client: httpx.AsyncClient,
) -> None:
    """An rrf without rank_window_size read as many hits as its parent asked: a re-ranker of
    window 100 above it re-ranked 100 documents, and a size 20 got 20 hits, where Elasticsearch
    defaults the window to 10 and refuses both bodies."""
    await _make_index(client)
    fused = {"rrf": {"retrievers": [ES_TREE]}}
    reranker = {
        "retriever": fused,
        "field": "text",
        "inference_text": "flea",
        "rank_window_size": 100,
    }
    nested = await client.post(
        "/docs/_search", json={"retriever": {"text_similarity_reranker": reranker}}
    )
    reason = _es_error(nested, 400, "invalid_request")
    assert "rank_window_size 100 is above its child rrf's rank_window_size 10" in reason
    sized = await client.post("/docs/_search", json={"retriever": fused, "size": 20})
    reason = _es_error(sized, 400, "invalid_request")
    assert "rank_window_size 10 is below the 20 hits asked for (size)" in reason
    assert "rrf and linear default to 10, as in Elasticsearch" in reason
    fused["rrf"]["rank_window_size"] = 100  # type: ignore[index]
    both = await client.post(
        "/docs/_search", json={"retriever": {"text_similarity_reranker": reranker}, "size": 20}
    )
    assert both.status_code == 200, both.text


async def test_elasticsearch_search_options_in_the_query_string_are_not_ignored(
    client: httpx.AsyncClient,
) -> None:
    """Elasticsearch takes size, from, sort, _source_includes... in the query string too
    (elasticsearch-py sends sort="title:asc" and source_includes there): they were ignored,
    and ?size=1 answered every hit, ?from=2 the first page again, ?_source_includes=title
    whole documents. Each is refused; options that change nothing here are let be."""
    await _make_index(client)
    hints = {
        "size=1": "send it in the JSON body",
        "from=2": "send it in the JSON body",
        "sort=title%3Aasc": "a sort goes into the JSON body",
        "q=flea": 'in the JSON body instead, e.g. "query": {"match"',
        "terminate_after=5": "semrank does not stop a search early",
        "stored_fields=title": "whose body takes retriever (or the classic query, knn and",
    }
    for query, hint in hints.items():
        sent = await client.post(
            f"/docs/_search?{query}", content=ES_SEARCH, headers=ES_CLIENT_HEADERS
        )
        reason = _es_error(sent, 400, "invalid_request")
        assert reason.startswith(f"query-string parameter '{query.split('=')[0]}'"), reason
        assert hint in reason, reason
    # An unknown body key's answer lists every key the body takes, aggs and highlight too.
    typo = await client.post("/docs/_search", json={"aggregation": {}})
    assert "_source, fields, highlight, aggs" in _es_error(typo, 400, "invalid_request")
    own = await client.post("/v1/indexes/docs/search", json={"query": "flea", "aggregations": {}})
    said = own.json()["error"]
    assert said.endswith("search_after, track_scores, post_filter and collapse"), own.text
    path = "/docs/_search?filter_path=hits.hits._id&pretty=true&routing=x"
    let_be = await client.post(path, content=ES_SEARCH, headers=ES_CLIENT_HEADERS)
    assert let_be.status_code == 200 and let_be.json()["hits"]["hits"], let_be.text
    # The _source filters are applied (elasticsearch-py's vector store helper sends one).
    sources = {
        "_source_includes=title,metadata": [{"title"}],
        "_source_includes=ti*&_source_includes=text": [{"title", "text"}],
        "_source_excludes=text": [{"title"}],
        "_source_includes=t*&_source_excludes=title": [{"text"}],
    }
    for query, fields in sources.items():
        filtered = await client.post(f"/docs/_search?{query}", json={"retriever": ES_TREE})
        hits = filtered.json()["hits"]["hits"]
        assert [set(hit["_source"]) for hit in hits] == fields * 2, (query, filtered.text)


async def test_elasticsearch_py_index_exists_answers_for_semrank_indexes(
    client: httpx.AsyncClient,
) -> None:
    """es.indices.exists(index=...) is HEAD /{index}: it was a 404 (False) for an index that
    is there, so "create it if missing" code went on to create it. Other paths answer as
    before: HEAD where GET is, a 405 on a POST route; a GET of one segment is es.indices.get
    (an index's info, or a 404 index_not_found)."""
    await _make_index(client, "fleas")
    there = await client.head("/fleas", headers=ES_CLIENT_HEADERS)
    assert there.status_code == 200 and there.content == b""
    assert there.headers["x-elastic-product"] == "Elasticsearch"  # the client checks a 2xx
    missing = await client.head("/nosuch", headers=ES_CLIENT_HEADERS)
    assert missing.status_code == 404  # the client's False
    assert (await client.head("/health")).status_code == 200
    assert (await client.head("/rerank")).status_code == 405
    assert list((await client.get("/fleas")).json()) == ["fleas"]
    unknown = await client.get("/v1")
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "index_not_found"
    await client.delete("/v1/indexes/fleas")
    assert (await client.head("/fleas", headers=ES_CLIENT_HEADERS)).status_code == 404
    # An index named like one of FastAPI's pages is probed as an index (the Swagger page
    # answered HEAD /docs 200 either way); GET still serves the page.
    assert (await client.head("/docs", headers=ES_CLIENT_HEADERS)).status_code == 404
    await _make_index(client, "docs")
    assert (await client.head("/docs", headers=ES_CLIENT_HEADERS)).status_code == 200
    assert (await client.head("/openapi.json")).status_code == 404
    page = await client.get("/docs")
    assert page.status_code == 200 and "swagger" in page.text.lower()


async def test_elasticsearch_py_keys_info_and_warnings(reranker: Any, tmp_path: Path) -> None:
    """elasticsearch-py sends its key as 'ApiKey <key>', asks GET / (es.info(), which
    LangChain's retrievers call first) and raises a Warning header as ElasticsearchWarning."""
    from semrank.pipeline import forget_open_indexes
    from semrank.server import ServerConfig, create_app

    config = ServerConfig(index_home=str(tmp_path), api_keys=frozenset({"k1"}))
    app = create_app(config, rerankers={"minilm": reranker})
    key = {**ES_CLIENT_HEADERS, "authorization": "ApiKey k1"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            created = await http.post("/v1/indexes", json={"name": "docs"}, headers=key)
            assert created.status_code == 201, created.text  # the key is taken everywhere
            await http.post("/v1/indexes/docs/documents", json={"documents": DOCS}, headers=key)
            found = await http.post("/docs/_search", content=ES_SEARCH, headers=key)
            assert found.status_code == 200 and found.json()["hits"]["hits"], found.text
            wrong = {**key, "authorization": "ApiKey nope"}
            refused = await http.post("/docs/_search", content=ES_SEARCH, headers=wrong)
            assert "not accepted" in _es_error(refused, 401, "unauthorized")
            info = await http.get("/", headers=key)
            assert info.headers["x-elastic-product"] == "Elasticsearch"
            assert info.json()["version"]["number"].split(".")[0] in ("8", "9")
            assert (await http.head("/", headers=key)).status_code == 200  # es.ping()
            long_text = "do fleas " + "really " * 600 + "bite"
            reranker = {"retriever": ES_TREE, "field": "text", "inference_text": long_text}
            tree = {"text_similarity_reranker": reranker}
            cut = await http.post("/docs/_search", json={"retriever": tree}, headers=key)
            assert cut.status_code == 200, cut.text
            (warning,) = cut.headers.get_list("warning")
            said = cut.headers["x-semrank-warning"]
            assert warning.startswith("299 ") and warning.endswith(f' "{said}"'), warning
    forget_open_indexes()


def test_elasticsearch_source_filters_reach_inside_objects_as_elasticsearch_does() -> None:
    """A wildcard that names a field inside an object (``*.lang``) left ``_source`` empty:
    objects were looked into only for patterns starting with their own path."""
    from semrank.server._es_body import filtered_source as _filtered_source

    source = {"title": "Fleas", "metadata": {"lang": "en", "year": 2020}, "text": "bite"}
    assert _filtered_source(source, ["*.lang"], []) == {"metadata": {"lang": "en"}}
    assert _filtered_source(source, ["metadata.year"], []) == {"metadata": {"year": 2020}}
    assert _filtered_source(source, ["metadata"], []) == {"metadata": source["metadata"]}
    assert _filtered_source(source, ["*"], ["*.lang"]) == {
        "title": "Fleas",
        "metadata": {"year": 2020},
        "text": "bite",
    }
    assert _filtered_source(source, ["nothing*"], []) == {}


async def test_an_app_mounted_in_another_answers_elasticsearch_py_as_served_alone(
    reranker: Any, tmp_path: Path
) -> None:
    """Mounted (host.mount("/search", app), as docs/server.md shows), the Elasticsearch paths
    were told by the path with the mount's prefix: a 200 without X-Elastic-Product (which
    elasticsearch-py refuses), a 422 in semrank's shape, GET /search/ (es.info()) a 404, and
    a rerank route with a doubled slash (a base URL ending in one) a 404."""
    from semrank.pipeline import forget_open_indexes
    from semrank.server import ServerConfig, create_app
    from test_server_api import mounted_in_a_host

    semrank_app = create_app(ServerConfig(index_home=str(tmp_path)), rerankers={"m": reranker})
    async with mounted_in_a_host(semrank_app, "/search") as http:
        await _make_index(http)
        found = await http.post("/docs/_search", content=ES_SEARCH, headers=ES_CLIENT_HEADERS)
        assert found.status_code == 200, found.text
        assert found.headers["x-elastic-product"] == "Elasticsearch"
        assert {hit["_id"] for hit in found.json()["hits"]["hits"]} == {"d1", "d3"}
        refused = await http.post("/docs/_search", json={"retriever": ES_TREE, "size": -1})
        assert "size" in _es_error(refused, 400, "invalid_request")
        info = await http.get("/", headers=ES_CLIENT_HEADERS)
        assert info.status_code == 200, info.text
        assert info.headers["x-elastic-product"] == "Elasticsearch"
        body = {"query": "fleas", "documents": ["Fleas drink blood.", "Paris"]}
        assert (await http.post("/v1//rerank", json=body)).status_code == 200
    forget_open_indexes()


async def test_lines_logged_while_a_request_is_served_carry_its_request_id(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The slow-build warning a write causes (logged by the store, in a request thread) carried
    no request id: nothing tied it to the write's access line and its duration."""
    from semrank.server._logging import configure_logging
    from semrank.store import _local

    await _make_index(client)
    monkeypatch.setattr(_local, "SLOW_BUILD_S", 0.0)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("info")
        body = {"documents": [{"id": "d5", "text": "Cats chase mice."}]}
        headers = {"x-request-id": "write-1"}
        written = await client.post("/v1/indexes/docs/documents", json=body, headers=headers)
        await client.get("/v1/indexes/docs")  # a line after the request names no id of its own
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    assert written.status_code == 200, written.text
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    (slow,) = [line for line in lines if "building its BM25 search files" in line["message"]]
    assert slow["request_id"] == "write-1" and slow["logger"] == "semrank.store._local"
    access = [line for line in lines if line["logger"] == "semrank.server.access"]
    assert [line["request_id"] == "write-1" for line in access] == [True, False]


async def test_elasticsearch_search_takes_filters_in_its_retriever_tree(
    client: httpx.AsyncClient,
) -> None:
    """The classic LangChain / LlamaIndex shape: a bool query's must beside its filter, and a
    retriever's own filter; bad clauses are named by their path, in Elasticsearch's 400."""
    await _make_index(client)
    query = {"bool": {"must": {"match": {"text": "blood"}}, "filter": {"term": {"title": "Fleas"}}}}
    found = await client.post("/docs/_search", json={"retriever": {"standard": {"query": query}}})
    assert [h["_id"] for h in found.json()["hits"]["hits"]] == ["d1"], found.text  # not d3
    not_d1 = {"bool": {"must_not": {"ids": {"values": ["d1"]}}}}
    tree = {"standard": {"query": {"match": {"text": "blood"}}, "filter": not_d1}}
    found = await client.post("/docs/_search", json={"retriever": tree})
    assert [h["_id"] for h in found.json()["hits"]["hits"]] == ["d3"], found.text
    bad = {"standard": {"query": {"match": {"text": "blood"}}, "filter": {"prefix": {"t": "x"}}}}
    refused = await client.post("/docs/_search", json={"retriever": bad})
    said = _es_error(refused, 400, "invalid_request")
    assert "retriever.standard.filter: 'prefix' is not a supported filter" in said


async def test_elasticsearch_count_counts_the_documents_a_query_matches(
    client: httpx.AsyncClient,
) -> None:
    """elasticsearch-py's es.count(index=..., query=...) posts to /{index}/_count (a 404 here):
    a match query counts the documents its search returns at any size (sharing a term, passing
    its filter), a filter query those passing it, no query every document."""
    await _make_index(client)

    async def searched(query: dict[str, Any]) -> int:
        body = {"query": query, "size": 100}
        return len((await client.post("/docs/_search", json=body)).json()["hits"]["hits"])

    blood = {"match": {"text": "blood"}}
    fleas = {"bool": {"must": blood, "filter": {"term": {"title": "Fleas"}}}}
    both = {"multi_match": {"query": "flea paris", "fields": ["title^2", "text"]}}
    for query in (blood, fleas, both, {"match": {"text": "zebra"}}):
        counted = await client.post("/docs/_count", json={"query": query})
        assert counted.status_code == 200, counted.text
        assert counted.json()["count"] == await searched(query), query
    assert [await searched(q) for q in (blood, fleas, both)] == [2, 1, 3]
    tenant = {"bool": {"filter": {"terms": {"title": ["Paris", "Oceans"]}}}}
    for query, count in (({"match_all": {}}, 4), (tenant, 2), ({"ids": {"values": ["d1"]}}, 1)):
        counted = await client.post("/docs/_count", json={"query": query})
        assert counted.json() == {
            "count": count,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        }
        assert counted.headers["x-elastic-product"] == "Elasticsearch"
    every = await client.post("/docs/_count", content=b"", headers=ES_CLIENT_HEADERS)
    assert every.json()["count"] == len(DOCS), every.text
    got = await client.request("GET", "/docs/_count", json={"query": blood})
    assert got.json()["count"] == 2
    # Refused in Elasticsearch's shape, naming what was wrong.
    bad = await client.post("/docs/_count", json={"query": {"prefix": {"title": "x"}}})
    assert "query: 'prefix' is not a supported filter" in _es_error(bad, 400, "invalid_request")
    sized = await client.post("/docs/_count", json={"query": blood, "size": 3})
    assert "size" in _es_error(sized, 400, "invalid_request")
    asked = await client.post("/docs/_count?q=title:fleas", json={})
    assert "'q'" in _es_error(asked, 400, "invalid_request")
    missing = await client.post("/nosuch/_count", json={})
    assert "'nosuch'" in _es_error(missing, 404, "index_not_found")


async def _make_second_index(client: httpx.AsyncClient) -> None:
    """Index "more": a "d1" of its own (one id in two indexes) and one more flea."""
    created = await client.post("/v1/indexes", json={"name": "more", "embedding_model": None})
    assert created.status_code == 201, created.text
    more = [
        {"id": "d1", "title": "Cats", "text": "Cats chase fleas, blood and flea, flea, flea."},
        {"id": "m2", "title": "Dogs", "text": "Dogs sleep."},
    ]
    added = await client.post("/v1/indexes/more/documents", json={"documents": more})
    assert added.status_code == 200, added.text


async def test_elasticsearch_search_and_count_of_several_indexes(
    client: httpx.AsyncClient,
) -> None:
    """/a,b/_search, patterns, /_all and no index (elasticsearch-py's es.search() without
    index=, a 400 before) search every index named, each hit naming its own; _count sums."""
    await _make_index(client)
    await _make_second_index(client)
    body = {"query": {"match": {"text": "flea blood"}}, "size": 10}
    both = await client.post("/docs,more/_search", json=body)
    assert both.status_code == 200, both.text
    hits = both.json()["hits"]["hits"]
    found = [(h["_index"], h["_id"]) for h in hits]
    assert found[0] == ("more", "d1")  # four fleas: its own BM25 statistics score it best
    assert {("docs", "d1"), ("docs", "d3")} <= set(found) and len(found) == len(set(found))
    assert {h["_source"]["title"] for h in hits if h["_id"] == "d1"} == {"Fleas", "Cats"}
    for path in ("/_search", "/_all/_search", "/*/_search", "/do*,m*/_search"):
        every = await client.post(path, json=body)
        assert every.status_code == 200, (path, every.text)
        assert every.json()["hits"]["hits"] == hits, path
    bare = await client.get("/_search", headers=ES_CLIENT_HEADERS)
    assert {h["_index"] for h in bare.json()["hits"]["hits"]} == {"docs", "more"}
    # semrank's own route takes the same names; each hit says its index.
    own = await client.post("/v1/indexes/docs,more/search", json={"query": "flea blood"})
    assert [(h["index"], h["id"]) for h in own.json()["hits"]] == found
    one = await client.post("/v1/indexes/docs/search", json={"query": "flea blood"})
    assert {h["index"] for h in one.json()["hits"]} == {"docs"}
    # _count: the sum of each index's.
    for path, count in (("/docs,more/_count", 6), ("/_count", 6), ("/m*/_count", 2)):
        counted = await client.post(path, json={"query": {"match_all": {}}})
        assert counted.json()["count"] == count, (path, counted.text)
    flea = {"query": {"match": {"text": "flea"}}}
    each = [
        (await client.post(f"/{n}/_count", json=flea)).json()["count"] for n in ("docs", "more")
    ]
    summed = await client.request("GET", "/_all/_count", json=flea)
    assert summed.json()["count"] == sum(each) and all(each), (summed.text, each)


async def test_elasticsearch_missing_indexes_answer_as_elasticsearchs_defaults(
    client: httpx.AsyncClient,
) -> None:
    """A named index that is not there is a 404 (ignore_unavailable=true leaves it out); a
    pattern matching nothing finds nothing (allow_no_indices=false makes it a 404)."""
    await _make_index(client)
    body = {"query": {"match": {"text": "flea"}}}
    missing = await client.post("/docs,nosuch/_search", json=body)
    assert "'nosuch'" in _es_error(missing, 404, "index_not_found")
    ignored = await client.post("/docs,nosuch/_search?ignore_unavailable=true", json=body)
    assert {h["_index"] for h in ignored.json()["hits"]["hits"]} == {"docs"}, ignored.text
    empty = await client.post("/zz*/_search", json=body)
    assert empty.status_code == 200 and empty.json()["hits"]["hits"] == [], empty.text
    assert (await client.post("/zz*/_count", json=body)).json()["count"] == 0
    strict = await client.post("/zz*/_search?allow_no_indices=false", json=body)
    assert "no index matches 'zz*'" in _es_error(strict, 404, "index_not_found")
    bad = await client.post("/docs/_search?ignore_unavailable=maybe", json=body)
    assert "ignore_unavailable='maybe' must be true or false" in _es_error(
        bad, 400, "invalid_request"
    )
    await _make_second_index(client)
    aggs = {**body, "aggs": {"t": {"terms": {"field": "title"}}}}
    both = await client.post("/docs,more/_search", json=aggs)  # the indexes' documents as one
    alone = await client.post("/docs/_search", json=aggs)
    assert alone.status_code == 200 and alone.json()["aggregations"]["t"]["buckets"]
    titles = {b["key"] for b in both.json()["aggregations"]["t"]["buckets"]}
    hits = {hit["_source"]["title"] for hit in both.json()["hits"]["hits"]}
    assert (
        titles == hits and {b["key"] for b in alone.json()["aggregations"]["t"]["buckets"]} < titles
    )
    # Writes still name one index.
    write = await client.put("/docs,more/_doc/x", json={"text": "flea"})
    assert write.status_code in (400, 404) and "docs,more" in write.text


async def test_elasticsearch_ignore_unavailable_leaves_out_one_named_index_too(
    client: httpx.AsyncClient,
) -> None:
    """?ignore_unavailable=true on a single missing index answered its 404, the option being
    read only for a list of several; Elasticsearch answers no hits, and so does semrank."""
    await _make_index(client)
    body = {"query": {"match": {"text": "flea"}}}
    gone = await client.post("/nosuch/_search?ignore_unavailable=true", json=body)
    assert gone.status_code == 200, gone.text
    assert gone.json()["hits"]["hits"] == [] and gone.json()["hits"]["total"]["value"] == 0
    counted = await client.post("/nosuch/_count?ignore_unavailable=true", json=body)
    assert counted.status_code == 200 and counted.json()["count"] == 0, counted.text
    # An index that is there is searched as without the option, aggregations too.
    aggs = {**body, "aggs": {"t": {"terms": {"field": "title"}}}}
    there = await client.post("/docs/_search?ignore_unavailable=true", json=aggs)
    plain = await client.post("/docs/_search", json=aggs)
    assert there.status_code == 200 and there.json()["hits"]["hits"], there.text
    assert there.json()["hits"] == plain.json()["hits"]
    assert there.json()["aggregations"] == plain.json()["aggregations"]
    missing = await client.post("/nosuch/_search", json=body)
    assert "'nosuch'" in _es_error(missing, 404, "index_not_found")


async def test_elasticsearch_search_browses_by_a_query_that_only_filters(
    client: httpx.AsyncClient,
) -> None:
    """_count took filter-only queries that _search refused (400 "only 'match' and
    'multi_match'"): a search finds the documents _count counts, scored as Elasticsearch
    scores them (a bool of filters 0, constant_score its boost, others 1), first written
    first, paged with from and size."""
    await _make_index(client)
    tenant = {"bool": {"filter": {"terms": {"title": ["Paris", "Oceans", "Fleas"]}}}}
    queries = (
        (tenant, ["d1", "d2", "d4"], 0.0),
        ({"term": {"title": "Paris"}}, ["d2"], 1.0),
        ({"match_all": {}}, ["d1", "d2", "d3", "d4"], 1.0),
        ({"constant_score": {"filter": {"ids": {"values": ["d3", "d1"]}}, "boost": 2}},
         ["d1", "d3"], 2.0),
    )  # fmt: skip
    for query, ids, score in queries:
        found = await client.post("/docs/_search", json={"query": query})
        assert found.status_code == 200, found.text
        hits = found.json()["hits"]["hits"]
        assert [(h["_id"], h["_score"]) for h in hits] == [(i, score) for i in ids], query
        counted = await client.post("/docs/_count", json={"query": query})
        assert counted.json()["count"] == len(ids)
    paged = await client.post("/docs/_search", json={"query": tenant, "from": 1, "size": 1})
    assert [h["_id"] for h in paged.json()["hits"]["hits"]] == ["d2"], paged.text
    retriever = {"standard": {"query": {"term": {"title": "Oceans"}}}}
    tree = await client.post("/docs/_search", json={"retriever": retriever})
    assert [h["_id"] for h in tree.json()["hits"]["hits"]] == ["d4"], tree.text
    bad = await client.post("/docs/_search", json={"query": {"prefix": {"title": "x"}}})
    assert "query: 'prefix' is not a supported filter" in _es_error(bad, 400, "invalid_request")


async def test_elasticsearch_count_refuses_query_string_options_in_its_own_words(
    client: httpx.AsyncClient,
) -> None:
    """A _count's ?size= was told to go in the JSON body, where the count then refused it
    ('size: unknown key'), and ?min_score= to go on a text_similarity_reranker retriever,
    which a _count has not: each now says that a _count's body takes a query alone."""
    await _make_index(client)
    blood = {"query": {"match": {"text": "blood"}}}
    for name in ("size", "from", "_source", "min_score", "terminate_after", "df"):
        refused = await client.post(f"/docs/_count?{name}=1", json=blood)
        reason = _es_error(refused, 400, "invalid_request")
        assert reason.startswith(f"query-string parameter '{name}': not supported"), reason
        assert "_count, whose JSON body takes a query alone" in reason, reason
        assert "retriever" not in reason and "in the JSON body (" not in reason, reason
    asked = await client.post("/docs/_count?q=text:blood", json={})
    assert '"query": {"match"' in _es_error(asked, 400, "invalid_request")
    counted = await client.post("/docs/_count?filter_path=count&pretty=true", json=blood)
    assert counted.json()["count"] == 2, counted.text  # options that change nothing still pass


async def test_semranks_own_search_takes_a_filter_for_the_whole_tree(
    client: httpx.AsyncClient,
) -> None:
    await _make_index(client)
    asked = {"query": "blood", "retriever": "bm25"}
    everything = await client.post("/v1/indexes/docs/search", json=asked)
    ids = [h["id"] for h in everything.json()["hits"]]
    assert "d1" in ids and len(ids) > 1, everything.text
    not_d1 = {"bool": {"must_not": {"ids": {"values": ["d1"]}}}}
    found = await client.post("/v1/indexes/docs/search", json={**asked, "filter": not_d1})
    assert [h["id"] for h in found.json()["hits"]] == [i for i in ids if i != "d1"], found.text
    bad = await client.post("/v1/indexes/docs/search", json={**asked, "filter": {"match": {}}})
    assert bad.status_code == 422, bad.text
    assert bad.json()["error"].startswith("filter: 'match' is not a supported filter")


async def test_elasticsearch_search_takes_classic_query_knn_and_rank_bodies(
    client: httpx.AsyncClient,
) -> None:
    """elasticsearch-py's vector store strategies (under LangChain's and LlamaIndex's stores)
    send a top-level query or knn, not a retriever: each was refused. Each is now answered with
    the hits of the retriever tree that is the same search."""
    created = await client.post("/v1/indexes", json={"name": "vec"})  # the bundled embedder
    assert created.status_code == 201, created.text
    tagged = [
        {**doc, "metadata": {"kind": "pest" if "lea" in doc["title"] else "other"}} for doc in DOCS
    ]
    await client.post("/v1/indexes/vec/documents", json={"documents": tagged})
    pests = [{"term": {"metadata.kind.keyword": "pest"}}]
    match = {"match": {"text": {"query": "blood of birds"}}}
    knn = {"field": "embedding", "query_text": "insects", "k": 2, "num_candidates": 50}
    cases = [
        ({"query": {"bool": {"must": [match], "filter": pests}}},
         {"standard": {"query": {"bool": {"must": [match], "filter": pests}}}}),
        ({"knn": {**knn, "filter": pests}}, {"knn": {**knn, "filter": pests}}),
        ({"query": match, "knn": {**knn, "boost": 0.5}},
         {"linear": {"retrievers": [{"retriever": {"standard": {"query": match}}, "weight": 1},
                                    {"retriever": {"knn": knn}, "weight": 0.5}],
                     "rank_window_size": 4}}),
        ({"query": match, "knn": knn, "rank": {"rrf": {"window_size": 4}}},
         {"rrf": {"retrievers": [{"standard": {"query": match}}, {"knn": knn}],
                  "rank_window_size": 4}}),
    ]  # fmt: skip
    for classic, tree in cases:
        answer = await client.post("/vec/_search", json={**classic, "size": 4})
        assert answer.status_code == 200, (classic, answer.text)
        same = await client.post("/vec/_search", json={"retriever": tree, "size": 4})
        hits = [(h["_id"], h["_score"]) for h in answer.json()["hits"]["hits"]]
        assert hits and hits == [(h["_id"], h["_score"]) for h in same.json()["hits"]["hits"]]
        if "filter" in json.dumps(classic):
            assert {h for h, _ in hits} <= {"d1", "d3"}, classic
    # Without a size, and with the body's _source flag.
    bare = (await client.post("/vec/_search", json={"query": match, "_source": False})).json()
    assert len(bare["hits"]["hits"]) == 2  # the two documents with "blood"
    assert [set(h) for h in bare["hits"]["hits"]] == [{"_index", "_id", "_score"}] * 2
    vector_field = {**knn, "field": "vector"}  # LangChain's default name: the retriever's refusal
    refused = await client.post("/vec/_search", json={"knn": vector_field, "size": 2})
    assert "knn field 'vector' is not a vector field" in _es_error(refused, 400, "invalid_request")
    one = await client.post("/vec/_search", json={"query": match, "rank": {"rrf": {}}})
    assert "rank.rrf fuses at least 2 result sets" in _es_error(one, 400, "invalid_request")


async def test_documents_delete_takes_a_filter_instead_of_ids(client: httpx.AsyncClient) -> None:
    """{"filter": ...} deletes every document passing it (as the reference matches them);
    ids and filter together, neither, or a filter passing every document are a 422 deleting
    nothing."""
    from semrank.retrieve import matches, parse_filter

    await _make_index(client)
    path = "/v1/indexes/docs/documents/delete"
    for body, said in [
        ({"ids": ["d1"], "filter": {"ids": {"values": ["d2"]}}}, 'give "ids" (a list'),
        ({}, "naming the documents to delete, got neither"),
        ({"filter": {"match_all": {}}}, 'filter {"match_all": {}} passes every document'),
        ({"filter": []}, "filter [] passes every document"),
        ({"filter": {"match": {"text": "blood"}}}, "filter: 'match' is not a supported filter"),
    ]:
        refused = await client.post(path, json=body)
        assert refused.status_code == 422, refused.text
        assert said in refused.json()["error"], refused.text
    assert (await client.get("/v1/indexes/docs")).json()["documents"] == len(DOCS)
    spec = {"bool": {"should": [{"term": {"title": "Paris"}}, {"term": {"title": "Fleas"}}]}}
    flt = parse_filter(spec)
    doomed = {d["id"] for d in DOCS if matches(flt, d["id"], d)}
    assert doomed == {"d1", "d2"}
    deleted = await client.post(path, json={"filter": spec})
    assert deleted.status_code == 200 and deleted.json() == {"deleted": 2}, deleted.text
    assert (await client.get("/v1/indexes/docs")).json()["documents"] == len(DOCS) - 2
    found = await client.post("/v1/indexes/docs/search", json={"query": "blood paris flea"})
    assert {h["id"] for h in found.json()["hits"]} == {"d3"}, found.text
    again = await client.post(path, json={"filter": spec})
    assert again.json() == {"deleted": 0}


async def test_a_search_pages_with_from_on_both_search_routes(
    client: httpx.AsyncClient,
) -> None:
    """A search UI's page 2 ("from": 10) was refused on both routes ("paging is not
    supported"); it is now hits 11-20 of the same search for 20, ranked 11 to 20, and
    Elasticsearch's total counts the hits ranked down to the page's last."""
    created = await client.post("/v1/indexes", json={"name": "many"})  # the bundled embedder
    assert created.status_code == 201, created.text
    notes = [
        {"id": f"n{i}", "title": f"Flea note {i}", "text": "fleas bite " * (i % 7 + 1) + "x" * i}
        for i in range(25)
    ]
    await client.post("/v1/indexes/many/documents", json={"documents": notes})

    async def own(body: dict[str, Any]) -> list[dict[str, Any]]:
        answer = await client.post("/v1/indexes/many/search", json={"query": "fleas", **body})
        assert answer.status_code == 200, answer.text
        return list(answer.json()["hits"])

    for retriever in ("bm25", "dense", "hybrid", "hybrid+rerank"):
        top20 = await own({"retriever": retriever, "size": 20})
        page2 = await own({"retriever": retriever, "size": 10, "from": 10})
        assert [h["rank"] for h in page2] == list(range(11, 21)), retriever
        assert [{**h, "rank": 0} for h in page2] == [{**h, "rank": 0} for h in top20[10:]]
    tree = {"standard": {"query": {"match": {"text": "fleas"}}}}
    es_top = (await client.post("/many/_search", json={"retriever": tree, "size": 20})).json()
    es_page = (
        await client.post("/many/_search", json={"retriever": tree, "size": 10, "from": 10})
    ).json()
    assert es_page["hits"]["hits"] == es_top["hits"]["hits"][10:]
    assert es_page["hits"]["total"] == {"value": 25, "relation": "eq"}  # every match counted
    last = await client.post("/many/_search", json={"query": tree["standard"]["query"], "from": 20})
    assert len(last.json()["hits"]["hits"]) == 5  # a classic body pages too
    assert last.json()["hits"]["total"] == {"value": 25, "relation": "eq"}
    past = await client.post("/many/_search", json={"retriever": tree, "from": 40})
    assert past.json()["hits"] == {"total": {"value": 25, "relation": "eq"}, "max_score": None,
                                   "hits": []}  # fmt: skip
    windowed = {"rrf": {"retrievers": [tree, {"knn": {"query_text": "fleas"}}],
                        "rank_window_size": 15}}  # fmt: skip
    short = await client.post("/many/_search", json={"retriever": windowed, "from": 10})
    assert len(short.json()["hits"]["hits"]) == 5  # the window's hits on the page
    deep = await client.post("/v1/indexes/many/search", json={"query": "x", "from": 9_991})
    assert deep.status_code == 422, deep.text
    assert deep.json()["error"].startswith("from + size (9,991 + 10 = 10,001) is above 10,000")
    body = {"retriever": tree, "from": 10}
    twice = await client.post("/v1/indexes/many/search", json={"retriever": body, "from": 5})
    assert twice.status_code == 422 and "give one of them" in twice.json()["error"], twice.text
    assert [h["rank"] for h in await own({"retriever": body})] == list(range(11, 21))
    # A request's from beside a body giving a size and no from: that page (it was empty).
    sized = {"retriever": tree, "size": 10}
    assert await own({"retriever": sized, "from": 10}) == await own({"retriever": body})


async def test_a_search_body_given_as_the_retriever_keeps_its_own_size(
    client: httpx.AsyncClient,
) -> None:
    """A retriever given as a whole _search body with "size": 15 and no request size answered
    10 hits, where the library, the CLI and POST /{index}/_search give the body's 15."""
    created = await client.post("/v1/indexes", json={"name": "sized", "embedding_model": None})
    assert created.status_code == 201, created.text
    notes = [{"id": f"n{i}", "title": f"Note {i}", "text": "fleas " * (i + 1)} for i in range(20)]
    await client.post("/v1/indexes/sized/documents", json={"documents": notes})
    tree = {"standard": {"query": {"match": {"text": "fleas"}}}}
    for body, count in (({"retriever": tree, "size": 15}, 15), ({"retriever": tree}, 10)):
        found = await client.post("/v1/indexes/sized/search", json={"retriever": body})
        assert len(found.json()["hits"]) == count, (body, found.text)
    paged = {"retriever": tree, "size": 15, "from": 10}  # hits 11-20: the index holds 20
    found = await client.post("/v1/indexes/sized/search", json={"retriever": paged})
    assert [h["rank"] for h in found.json()["hits"]] == list(range(11, 21)), found.text
    # semrank's own cutoff retriever is no body size: it gives what it gives, 5 of the 10 asked.
    cut = {"cutoff": {"retriever": tree, "size": 5}}
    for path, body in (
        ("/v1/indexes/sized/search", {"retriever": cut}),
        ("/sized/_search", {"retriever": cut}),
        ("/sized/_search", {"retriever": cut, "from": 3}),
    ):
        found = await client.post(path, json=body)
        assert found.status_code == 200, (path, body, found.text)
        hits = found.json()["hits"]
        assert len(hits if isinstance(hits, list) else hits["hits"]) == 5 - body.get("from", 0)
    over = {"retriever": {"retriever": tree, "size": 5}, "size": 8}  # its 5 without a word
    refused = await client.post("/v1/indexes/sized/search", json=over)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"].startswith("size 8 is above the search body's size 5")


async def test_elasticsearch_alias_routes_swap_searches_to_the_new_index(
    client: httpx.AsyncClient,
) -> None:
    """Re-indexing without downtime: the alias readers search moves to the new index at once."""
    await _make_index(client, "v1")
    created = await client.post("/v1/indexes", json={"name": "v2", "embedding_model": None})
    assert created.status_code == 201, created.text
    newer = [{"id": "n1", "title": "Fleas", "text": "Fleas drink blood, the new index says."}]
    await client.post("/v1/indexes/v2/documents", json={"documents": newer})
    put = await client.put("/v1/_alias/live")
    assert put.status_code == 200 and put.json() == {"acknowledged": True}
    ids = lambda answer: [hit["_id"] for hit in answer.json()["hits"]["hits"]]  # noqa: E731
    before = await client.post("/live/_search", content=ES_SEARCH, headers=ES_CLIENT_HEADERS)
    assert ids(before) == ["d1", "d3"]
    taken = await client.post(
        "/_aliases", json={"actions": [{"add": {"index": "v2", "alias": "live"}}]}
    )
    assert "already names index 'v1'" in _es_error(taken, 400, "invalid_request")
    swap = [{"remove": {"index": "v1", "alias": "live"}}, {"add": {"index": "v2", "alias": "live"}}]
    swapped = await client.post("/_aliases", json={"actions": swap})
    assert swapped.json() == {"acknowledged": True}, swapped.text
    after = await client.post("/live/_search", content=ES_SEARCH, headers=ES_CLIENT_HEADERS)
    assert ids(after) == ["n1"] and after.headers["x-elastic-product"] == "Elasticsearch"
    # Each hit names the index holding it, not the alias (a client acting on a hit by its
    # _index reaches that index after another swap too), as Elasticsearch's hits do.
    held_in = lambda answer: {hit["_index"] for hit in answer.json()["hits"]["hits"]}  # noqa: E731
    assert (held_in(before), held_in(after)) == ({"v1"}, {"v2"})
    counted = await client.post("/live/_count", json={})
    assert counted.json()["count"] == 1
    # A write through the alias goes to its index.
    added = await client.post("/v1/indexes/live/documents", json={"documents": DOCS[1:2]})
    assert (
        added.status_code == 200 and (await client.get("/v1/indexes/v2")).json()["documents"] == 2
    )
    assert (await client.get("/_alias")).json() == {
        "v1": {"aliases": {}},
        "v2": {"aliases": {"live": {}}},
    }
    assert (await client.get("/_alias/live")).json() == {"v2": {"aliases": {"live": {}}}}
    assert (await client.get("/live/_alias")).json() == {"v2": {"aliases": {"live": {}}}}
    assert (await client.head("/_alias/live")).status_code == 200
    listed = (await client.get("/v1/indexes")).json()["data"]
    assert listed == [{"name": "v1", "aliases": []}, {"name": "v2", "aliases": ["live"]}]
    missing = await client.get("/_alias/nope")
    assert "alias [nope] missing" in _es_error(missing, 404, "aliases_not_found_exception")
    assert (await client.head("/_alias/nope")).status_code == 404
    unknown = await client.get("/nope/_alias")
    assert "'nope' not found" in _es_error(unknown, 404, "index_not_found")
    bad = await client.post("/_aliases", json={"actions": [{"frob": {"index": "v1"}}]})
    assert "unknown action 'frob'" in _es_error(bad, 400, "invalid_request")
    dropped_alias = await client.delete("/v1/indexes/live")
    assert dropped_alias.status_code == 422 and "alias of index 'v2'" in dropped_alias.text
    removed = await client.delete("/v2/_alias/live")
    assert removed.json() == {"acknowledged": True}
    again = await client.delete("/v2/_alias/live")
    assert "not found" in _es_error(again, 404, "aliases_not_found_exception")
    gone = await client.post("/live/_search", content=ES_SEARCH, headers=ES_CLIENT_HEADERS)
    assert gone.status_code == 404


async def test_search_highlights_as_elasticsearch_does(client: httpx.AsyncClient) -> None:
    """A _search body's highlight: each hit's fragments under "highlight", only fields with
    one (no key on a hit without any), the query's words marked with the index's stemming
    ("fleas" marks "Flea"); semrank's own route answers the same under each hit."""
    await _make_index(client)
    classic = {
        "query": {"match": {"text": "fleas blood"}},
        "highlight": {
            "fields": {"text": {}, "title": {}},
            "pre_tags": ["<b>"],
            "post_tags": ["</b>"],
        },
    }
    found = await client.post("/docs/_search", json=classic)
    assert found.status_code == 200, found.text
    hits = {hit["_id"]: hit for hit in found.json()["hits"]["hits"]}
    assert hits["d3"]["highlight"] == {
        "text": ["<b>Flea</b> larvae eat organic debris, not <b>blood</b>."]
    }  # title not searched (require_field_match, Elasticsearch's default): not highlighted
    assert "_source" in hits["d3"]
    loose = {**classic, "highlight": {"fields": ["title"], "require_field_match": False}}
    titles = (await client.post("/docs/_search", json={**loose, "_source": False})).json()
    assert {h["_id"]: h.get("highlight") for h in titles["hits"]["hits"]} == {
        "d1": {"title": ["<em>Fleas</em>"]},
        "d3": {"title": ["<em>Flea</em> larvae"]},
    }
    assert all("_source" not in h for h in titles["hits"]["hits"])
    unmatched = {"retriever": {"standard": {"query": {"match": {"title": "paris"}}}}}
    plain = await client.post(
        "/docs/_search", json={**unmatched, "highlight": {"fields": ["text"]}}
    )
    assert [set(h) for h in plain.json()["hits"]["hits"]] == [
        {"_index", "_id", "_score", "_source"}
    ]
    own = await client.post(
        "/v1/indexes/docs/search", json={"query": "fleas blood", "highlight": "text"}
    )
    by_id = {hit["id"]: hit.get("highlight") for hit in own.json()["hits"]}
    assert by_id["d3"] == {"text": ["<em>Flea</em> larvae eat organic debris, not <em>blood</em>."]}


async def test_bad_highlight_options_are_refused_naming_them(client: httpx.AsyncClient) -> None:
    await _make_index(client)
    search = {"query": {"match": {"text": "fleas"}}}
    for highlight, named in (
        ({"fields": {"text": {"fragment_size": 0}}}, "fragment_size"),
        ({"fields": {"text": {}}, "order": "best"}, "order"),
        ({"fields": {}}, "fields"),
        ({"fields": {"text": {"type": "semantic"}}}, "re-ranks nothing"),
    ):
        refused = await client.post("/docs/_search", json={**search, "highlight": highlight})
        assert named in _es_error(refused, 400, "invalid_request")
        own = await client.post(
            "/v1/indexes/docs/search", json={"query": "fleas", "highlight": highlight}
        )
        assert own.status_code == 422 and named in own.json()["error"], own.text


async def test_a_semantic_highlight_shows_the_reranked_text(client: httpx.AsyncClient) -> None:
    """type "semantic" beside a text_similarity_reranker: the text the served model read,
    untagged (short documents are one window each); without one, a 400 naming the fix."""
    await _make_index(client)
    reranked = {
        "text_similarity_reranker": {
            "retriever": {"standard": {"query": {"match": {"text": "flea blood"}}}},
            "field": "text",
            "inference_text": "what do fleas eat",
        }
    }
    highlight = {"fields": {"text": {"type": "semantic"}, "title": {"type": "semantic"}}}
    found = await client.post("/docs/_search", json={"retriever": reranked, "highlight": highlight})
    assert found.status_code == 200, found.text
    by_id = {hit["_id"]: hit["highlight"] for hit in found.json()["hits"]["hits"]}
    texts = {doc["id"]: doc["text"] for doc in DOCS}
    # Only the field the model read: the title was not re-ranked on.
    assert by_id == {hit_id: {"text": [texts[hit_id]]} for hit_id in ("d1", "d3")}


FACETED = [
    {"id": "f1", "text": "blood of mammals", "source": "wiki", "price": 3},
    {"id": "f2", "text": "blood and birds", "source": ["wiki", "docs"], "price": 12.5},
    {"id": "f3", "text": "blood donors", "source": "docs", "price": 120},
    {"id": "f4", "text": "deep oceans", "source": "blog"},
]
FACETS = {
    "sources": {"terms": {"field": "source.keyword", "missing": "none"}},
    "cheapest": {"min": {"field": "price"}},
    "prices": {"range": {"field": "price", "ranges": [{"to": 10}, {"from": 10}]}},
}


async def test_both_search_routes_answer_aggregations_over_every_matching_document(
    client: httpx.AsyncClient,
) -> None:
    """Facets beside the hits: over the three documents matching "blood", not the one hit
    returned; size 0 answers them alone, with how many documents matched."""
    created = await client.post("/v1/indexes", json={"name": "shop", "embedding_model": None})
    assert created.status_code == 201, created.text
    added = await client.post("/v1/indexes/shop/documents", json={"documents": FACETED})
    assert added.status_code == 200, added.text
    sources = [{"key": "docs", "doc_count": 2}, {"key": "wiki", "doc_count": 2}]
    prices = [
        {"key": "*-10.0", "to": 10.0, "doc_count": 1},
        {"key": "10.0-*", "from": 10.0, "doc_count": 2},
    ]
    match = {"match": {"text": "blood"}}
    for name in ("aggs", "aggregations"):
        found = await client.post("/shop/_search", json={"query": match, "size": 1, name: FACETS})
        assert found.status_code == 200, found.text
        answer = found.json()
        assert len(answer["hits"]["hits"]) == 1
        assert answer["hits"]["total"] == {"value": 3, "relation": "eq"}
        assert answer["aggregations"]["sources"] == {
            "doc_count_error_upper_bound": 0, "sum_other_doc_count": 0, "buckets": sources
        }  # fmt: skip
        assert answer["aggregations"]["cheapest"] == {"value": 3.0}
        assert answer["aggregations"]["prices"] == {"buckets": prices}
    alone = await client.post("/shop/_search", json={"size": 0, "aggs": FACETS})
    assert alone.status_code == 200, alone.text
    assert alone.json()["hits"] == {
        "total": {"value": 4, "relation": "eq"}, "max_score": None, "hits": []
    }, alone.text  # fmt: skip
    every = alone.json()["aggregations"]["sources"]["buckets"]
    assert {"key": "none", "doc_count": 0} not in every and {"key": "blog", "doc_count": 1} in every
    plain = await client.post("/shop/_search", json={"query": match})
    assert "aggregations" not in plain.json(), plain.text  # none asked: none answered
    own = await client.post(
        "/v1/indexes/shop/search", json={"query": "blood", "size": 1, "aggs": FACETS}
    )
    assert own.status_code == 200, own.text
    assert own.json()["aggregations"]["sources"]["buckets"] == sources
    assert own.json()["matched"] == 3 and len(own.json()["hits"]) == 1
    bad = {"query": match, "aggs": {"h": {"geo_bounds": {"field": "price"}}}}
    refused = await client.post("/shop/_search", json=bad)
    reason = _es_error(refused, 400, "invalid_request")
    assert "'geo_bounds' is not a supported aggregation; supported: terms, min" in reason
    steps = {
        "h": {"histogram": {"field": "price", "interval": 50}},
        "s": {"stats": {"field": "price"}},
    }
    found = await client.post("/shop/_search", json={"query": match, "size": 0, "aggs": steps})
    assert found.status_code == 200, found.text
    assert found.json()["aggregations"] == {
        "h": {"buckets": [{"key": 0.0, "doc_count": 2}, {"key": 50.0, "doc_count": 0},
            {"key": 100.0, "doc_count": 1}]},
        "s": {"count": 3, "min": 3.0, "max": 120.0, "avg": 45.166666666666664, "sum": 135.5},
    }  # fmt: skip
    tiny = {"h": {"histogram": {"field": "price", "interval": 0.001}}}
    refused = await client.post("/shop/_search", json={"query": match, "aggs": tiny})
    assert "more than 65,536 buckets" in _es_error(refused, 400, "invalid_request")
    both = await client.post("/shop/_search", json={"aggs": FACETS, "aggregations": FACETS})
    assert "both aggs and aggregations" in _es_error(both, 400, "invalid_request")
    nested = {"aggs": {"s": {"terms": {"field": "source"}, "aggs": FACETS}}}
    answered = await client.post("/v1/indexes/shop/search", json={"query": "blood", **nested})
    assert answered.status_code == 200, answered.text
    per_source = answered.json()["aggregations"]["s"]["buckets"]
    assert [b["sources"]["buckets"] for b in per_source if b["key"] == "wiki"] == [
        [{"key": "wiki", "doc_count": 2}, {"key": "docs", "doc_count": 1}]
    ]  # f2 holds both: in the wiki bucket, with its docs value
