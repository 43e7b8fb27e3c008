"""The server's index endpoints over indexes kept in PostgreSQL (``semrank serve --store DSN``).

The same requests as tests/test_server_indexes.py, against the private PostgreSQL server of
tests/test_postgres_server.py (skipped without it): the HTTP answers must not depend on where
the indexes are kept, and must not show the server's database to clients.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from test_postgres_server import pg_database, pg_dsn, pg_server  # noqa: F401 (fixtures)
from test_server_indexes import DOCS

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(reranker: Any, pg_dsn: str) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    from semrank.pipeline import forget_open_indexes
    from semrank.server import ServerConfig, create_app

    app = create_app(ServerConfig(store=pg_dsn), rerankers={"minilm": reranker})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http
    forget_open_indexes()


async def _make_index(client: httpx.AsyncClient, name: str = "docs", **settings: Any) -> None:
    body = {"name": name, "embedding_model": None, **settings}
    created = await client.post("/v1/indexes", json=body)
    assert created.status_code == 201, created.text
    added = await client.post(f"/v1/indexes/{name}/documents", json={"documents": DOCS})
    assert added.status_code == 200, added.text
    assert added.json() == {"upserted": len(DOCS), "written": len(DOCS), "skipped": 0}


async def test_index_lifecycle_in_postgres(client: httpx.AsyncClient, pg_dsn: str) -> None:  # noqa: F811
    from semrank.store import list_indexes, open_index

    await _make_index(client)
    assert list_indexes(store=pg_dsn) == ["docs"]  # kept in the database, not in a folder
    with open_index("docs", store=pg_dsn) as stored:
        assert len(stored) == len(DOCS)
    assert (await client.get("/v1/indexes")).json()["data"] == [{"name": "docs", "aliases": []}]
    info = (await client.get("/v1/indexes/docs")).json()
    assert info["backend"] == "postgresql" and info["documents"] == len(DOCS)
    assert info["location"].startswith("<index store> semrank.")  # not the server's database
    again = await client.post("/v1/indexes", json={"name": "docs"})
    assert again.status_code == 409 and again.json()["error_type"] == "index_exists"
    assert "127.0.0.1" not in again.text and "<index store>" in again.text
    deleted = await client.post("/v1/indexes/docs/documents/delete", json={"ids": ["d2", "zz"]})
    assert deleted.json() == {"deleted": 1}
    assert (await client.get("/v1/indexes/docs")).json()["documents"] == len(DOCS) - 1
    assert (await client.delete("/v1/indexes/docs")).json() == {"deleted": 1}
    assert list_indexes(store=pg_dsn) == []
    missing = await client.get("/v1/indexes/docs")
    assert missing.status_code == 404 and missing.json()["error_type"] == "index_not_found"
    assert "127.0.0.1" not in missing.text
    assert "create it with POST /v1/indexes" in missing.json()["error"]  # not the CLI's command


async def test_search_bm25_and_reranked_with_the_served_model(
    client: httpx.AsyncClient, reranker: Any
) -> None:
    await _make_index(client)
    bm25 = await client.post("/v1/indexes/docs/search", json={"query": "flea blood", "size": 3})
    assert bm25.status_code == 200, bm25.text
    assert bm25.json()["hits"][0]["id"] in {"d1", "d3"}
    reranked = await client.post(
        "/v1/indexes/docs/search",
        json={"query": "what do fleas eat", "retriever": "bm25+rerank", "size": 4},
    )
    assert reranked.status_code == 200, reranked.text
    hits = reranked.json()["hits"]
    texts = [f"{hit['document']['title']}\n{hit['document']['text']}" for hit in hits]
    scores = reranker.score("what do fleas eat", texts)
    assert [hit["rerank_score"] for hit in hits] == pytest.approx(scores.tolist(), abs=1e-5)


async def test_an_index_recreated_elsewhere_is_reopened(
    client: httpx.AsyncClient,
    pg_dsn: str,  # noqa: F811
) -> None:
    """Another process drops the index and creates one of the same name with other fields: the
    server's held handle must not keep searching with the old settings."""
    from semrank.store import create_index, drop_index

    await _make_index(client)
    first = await client.post("/v1/indexes/docs/search", json={"query": "Paris", "size": 1})
    assert first.json()["hits"][0]["id"] == "d2"
    drop_index("docs", store=pg_dsn)
    with create_index("docs", fields=("title",), embedding_model=None, store=pg_dsn) as fresh:
        fresh.upsert([{"id": "t1", "title": "Paris in spring", "text": "nothing"}])
    info = (await client.get("/v1/indexes/docs")).json()
    assert info["settings"]["text_fields"] == ["title"] and info["documents"] == 1
    again = await client.post("/v1/indexes/docs/search", json={"query": "Paris", "size": 1})
    assert again.status_code == 200, again.text
    assert [hit["id"] for hit in again.json()["hits"]] == ["t1"]
    drop_index("docs", store=pg_dsn)
    gone = await client.post("/v1/indexes/docs/search", json={"query": "Paris", "size": 1})
    assert gone.status_code == 404 and gone.json()["error_type"] == "index_not_found"


async def test_prepare_is_refused_with_the_reason(client: httpx.AsyncClient) -> None:
    await _make_index(client)
    answer = await client.post("/v1/indexes/docs/prepare")
    assert answer.status_code == 422
    message = answer.json()["message"]
    assert "postgresql store" in message and "only the embedded local store" in message


def test_a_database_that_cannot_be_reached_fails_before_the_models_load(
    pg_dsn: str,  # noqa: F811
) -> None:
    from semrank.errors import SemrankError
    from semrank.server._run import check_store

    check_store(pg_dsn)  # reachable: no error
    wrong = pg_dsn.rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(SemrankError, match="no_such_database"):
        check_store(wrong)


async def test_a_database_that_cannot_be_reached_is_a_503_that_hides_its_address(
    reranker: Any,
) -> None:
    from semrank.server import ServerConfig, create_app
    from semrank.store.postgres._pool import UNREACHABLE
    from test_postgres_server import _free_port

    dsn = f"postgresql://someone:secret@127.0.0.1:{_free_port()}/search"  # nothing listens
    app = create_app(ServerConfig(store=dsn), rerankers={"minilm": reranker})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            for answer in (await http.get("/v1/indexes"), await http.get("/v1/indexes/docs")):
                assert answer.status_code == 503, answer.text
                assert answer.json()["message"] == UNREACHABLE
                assert "127.0.0.1" not in answer.text and "someone" not in answer.text


async def test_connections_broken_by_a_server_restart_are_replaced(
    client: httpx.AsyncClient,
    pg_dsn: str,  # noqa: F811
) -> None:
    """What a restart or an idle timeout does to the pool's connections, for this database
    only: every one is terminated. The next requests get fresh ones (they failed with 500s)."""
    import psycopg

    await _make_index(client)
    searches = [
        client.post("/v1/indexes/docs/search", json={"query": "flea blood", "size": 2})
        for _ in range(6)
    ]
    import asyncio

    assert {answer.status_code for answer in await asyncio.gather(*searches)} == {200}
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert ended is not None and ended[0] >= 1
    for _ in range(4):
        answer = await client.post("/v1/indexes/docs/search", json={"query": "flea", "size": 2})
        assert answer.status_code == 200, answer.text


def test_a_postgres_handle_let_go_stays_open_until_its_last_search_ends(
    pg_dsn: str,  # noqa: F811
) -> None:
    """A drop over HTTP lets go of the handle while searches hold it; closing it then closed
    the shared pool under them (500s, "the pool is closed")."""
    from semrank.pipeline import forget_open_indexes, search, using_index
    from semrank.store import create_index

    with create_index("docs", embedding_model=None, store=pg_dsn) as index:
        index.upsert(DOCS)
    with using_index("docs", store=pg_dsn) as held:
        forget_open_indexes("docs", store=pg_dsn)
        assert [hit.id for hit in search(held, "Paris", k=1).hits] == ["d2"]
    assert [hit.id for hit in search("docs", "Paris", k=1, store=pg_dsn).hits] == ["d2"]
    forget_open_indexes()


async def test_the_server_keeps_one_pool_for_its_lifetime(
    client: httpx.AsyncClient,
    pg_dsn: str,  # noqa: F811
) -> None:
    """Without an index handle held, each list, create or drop made a pool (and two
    connections) and closed it again."""
    from semrank.store.postgres import _pool

    pool = _pool._POOLS[pg_dsn][1]
    for _ in range(3):
        assert (await client.get("/v1/indexes")).status_code == 200
    await _make_index(client, "kept")
    assert (await client.delete("/v1/indexes/kept")).status_code == 200
    assert _pool._POOLS[pg_dsn][1] is pool and not pool.closed


def test_a_handle_to_an_index_dropped_elsewhere_is_closed_when_the_reopen_fails(
    pg_dsn: str,  # noqa: F811
) -> None:
    """The stale handle was retired but never closed when the index had gone, so its pool
    stayed referenced for good."""
    from semrank.errors import IndexNotFoundError
    from semrank.pipeline import forget_open_indexes, open_cached
    from semrank.store import create_index, drop_index
    from semrank.store.postgres import _pool

    create_index("gone", embedding_model=None, store=pg_dsn).close()
    held = open_cached("gone", store=pg_dsn)
    drop_index("gone", store=pg_dsn)  # another process
    with pytest.raises(IndexNotFoundError):
        open_cached("gone", store=pg_dsn)
    assert held._closed  # type: ignore[attr-defined]
    assert pg_dsn not in _pool._POOLS  # no handle holds the pool any more
    forget_open_indexes()


async def test_a_query_that_only_filters_browses_a_postgres_index(
    client: httpx.AsyncClient,
) -> None:
    """A filter-only _search (Elasticsearch's filter context) over PostgreSQL finds what
    _count counts, in id order, paged by from and size, as on the embedded store."""
    await _make_index(client)
    tenant = {"bool": {"filter": {"terms": {"title": ["Paris", "Oceans", "Fleas"]}}}}
    for query, ids, score in (
        (tenant, ["d1", "d2", "d4"], 0.0),
        ({"match_all": {}}, ["d1", "d2", "d3", "d4"], 1.0),
        ({"range": {"title": {"gte": "P"}}}, ["d2"], 1.0),
    ):
        found = await client.post("/docs/_search", json={"query": query})
        assert found.status_code == 200, found.text
        hits = found.json()["hits"]["hits"]
        assert [(h["_id"], h["_score"]) for h in hits] == [(i, score) for i in ids], query
        counted = await client.post("/docs/_count", json={"query": query})
        assert counted.json()["count"] == len(ids)
    paged = await client.post("/docs/_search", json={"query": tenant, "from": 1, "size": 2})
    assert [h["_id"] for h in paged.json()["hits"]["hits"]] == ["d2", "d4"], paged.text


async def test_search_highlights_a_postgres_index_as_an_embedded_one(
    client: httpx.AsyncClient,
) -> None:
    """Highlights read the index's own BM25 analysis ("fleas" marks "Flea"), kept in the
    database's index settings as in an embedded index's."""
    await _make_index(client)
    body = {"query": {"match": {"text": "fleas blood"}}, "highlight": {"fields": {"text": {}}}}
    found = await client.post("/docs/_search", json=body)
    assert found.status_code == 200, found.text
    hits = {hit["_id"]: hit.get("highlight") for hit in found.json()["hits"]["hits"]}
    assert hits["d3"] == {"text": ["<em>Flea</em> larvae eat organic debris, not <em>blood</em>."]}
    assert hits["d1"] == {
        "text": ["<em>Fleas</em> feed on the <em>blood</em> of mammals and birds."]
    }


async def test_a_search_of_several_postgres_indexes_keeps_one_id_in_each_apart(
    client: httpx.AsyncClient,
) -> None:
    """/a,b/_search, a pattern and /_search over indexes in PostgreSQL, as embedded ones: one id
    in two indexes is two hits, each naming its index; _count sums; a missing name is a 404."""
    await _make_index(client)
    await _make_index(client, "copy")
    body = {"query": {"match": {"text": "flea blood"}}, "size": 20}
    alone = (await client.post("/docs/_search", json=body)).json()["hits"]["hits"]
    for path in ("/docs,copy/_search", "/*/_search", "/_search"):
        both = await client.post(path, json=body)
        assert both.status_code == 200, (path, both.text)
        found = [(h["_index"], h["_id"]) for h in both.json()["hits"]["hits"]]
        assert sorted(found) == sorted(
            (index, h["_id"]) for h in alone for index in ("copy", "docs")
        ), path
    counted = await client.post("/c*,docs/_count", json={"query": {"match_all": {}}})
    assert counted.json()["count"] == 2 * len(DOCS), counted.text
    missing = await client.post("/docs,nosuch/_search", json=body)
    assert missing.status_code == 404 and "'nosuch'" in missing.text


async def test_elasticsearch_msearch_and_probes_in_postgres(client: httpx.AsyncClient) -> None:
    """_msearch, typed_keys, health, _cat, GET /{index} and _mapping answer as over the
    embedded store."""
    from test_server_es_msearch import fill, msearch_answers, probes_answer, typed_keys_answer

    await fill(client)
    await msearch_answers(client)
    await probes_answer(client)
    await typed_keys_answer(client)


async def test_a_point_in_time_and_a_scroll_sort_by_fields_in_postgres(
    client: httpx.AsyncClient,
) -> None:
    """The embedded store's sorted paging (test_server_es_scroll.py), on PostgreSQL: a pit
    by search_after and a scroll list what one big sorted search answers."""
    from test_server_es_scroll import check_sorted_paging

    await check_sorted_paging(client)
