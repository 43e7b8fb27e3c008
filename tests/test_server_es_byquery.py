"""Elasticsearch's _delete_by_query, _update_by_query and _reindex, as elasticsearch-py sends
them, and the reindex-then-move-the-alias recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from test_server_es_docs import JSON, NDJSON, _create, _es_error, _ndjson

pytestmark = pytest.mark.anyio

DOCS = {
    "d1": {"title": "Fleas", "text": "Fleas feed on blood.", "tenant": "acme", "year": 2001},
    "d2": {"title": "Paris", "text": "Paris is the capital of France.", "tenant": "globex"},
    "d3": {"title": "Flea larvae", "text": "Larvae eat debris.", "tenant": "acme", "year": 2003},
    "d4": {"title": "Oceans", "text": "The ocean is deep.", "tenant": "initech", "year": 2004},
}


@pytest.fixture
def client(index_client: httpx.AsyncClient) -> httpx.AsyncClient:
    return index_client


async def _filled(client: httpx.AsyncClient, name: str = "docs") -> None:
    await _create(client, name)
    lines = [line for i, doc in DOCS.items() for line in ({"index": {"_id": i}}, doc)]
    done = await client.post(f"/{name}/_bulk", content=_ndjson(*lines), headers=NDJSON)
    assert done.json()["errors"] is False, done.text


async def _ids(client: httpx.AsyncClient, name: str) -> set[str]:
    found = await client.post(f"/{name}/_search", json={"size": 100}, headers=JSON)
    assert found.status_code == 200, found.text
    return {hit["_id"] for hit in found.json()["hits"]["hits"]}


async def test_delete_by_query_deletes_what_a_filter_or_match_query_matches(
    client: httpx.AsyncClient,
) -> None:
    await _filled(client)
    body = {"query": {"term": {"tenant": "acme"}}}
    done = await client.post("/docs/_delete_by_query?conflicts=proceed&refresh=true", json=body)
    assert done.status_code == 200 and done.headers["x-elastic-product"] == "Elasticsearch"
    answer = done.json()
    assert (answer["total"], answer["deleted"], answer["batches"]) == (2, 2, 1)
    assert answer["failures"] == [] and answer["timed_out"] is False and "took" in answer
    assert await _ids(client, "docs") == {"d2", "d4"}
    # A match query deletes its every hit (documents sharing a term with it).
    matched = {"query": {"match": {"text": "ocean"}}}
    assert (await client.post("/docs/_delete_by_query", json=matched)).json()["deleted"] == 1
    assert await _ids(client, "docs") == {"d2"}


async def test_delete_by_query_max_docs_match_all_and_aliases(client: httpx.AsyncClient) -> None:
    await _filled(client)
    await client.put("/docs/_alias/live")
    capped = {"query": {"range": {"year": {"gte": 2000}}}, "max_docs": 2}
    assert (await client.post("/live/_delete_by_query", json=capped)).json()["deleted"] == 2
    assert len(await _ids(client, "docs")) == 2
    every = {"query": {"match_all": {}}}  # asked for by name: every document goes
    assert (await client.post("/do*/_delete_by_query", json=every)).json()["deleted"] == 2
    assert await _ids(client, "docs") == set()


@pytest.fixture
def writer_after_listing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Another writer, changing d1's tenant (a handle of its own, as another process) right
    after a _delete_by_query lists the ids it will delete; its listings' ids, returned."""
    import semrank.pipeline
    from semrank.store import open_index

    real = semrank.pipeline.ids_matching_query
    listed: list[str] = []

    def listing_then_a_write(store: Any, query: Any = None) -> list[str]:
        ids = real(store, query)
        listed.extend(ids)
        with open_index("docs", home=tmp_path) as other:
            other.upsert([{**DOCS["d1"], "id": "d1", "tenant": "moved"}])
        return ids

    monkeypatch.setattr(semrank.pipeline, "ids_matching_query", listing_then_a_write)
    return listed


async def test_delete_by_query_leaves_a_document_written_since_it_was_listed(
    client: httpx.AsyncClient, writer_after_listing: list[str]
) -> None:
    """Elasticsearch deletes what its snapshot holds only if still in that version: a
    document written meanwhile is a version conflict, a 409 failure by default."""
    await _filled(client)
    done = await client.post("/docs/_delete_by_query", json={"query": {"match_all": {}}})
    assert done.status_code == 409, done.text
    answer = done.json()
    assert sorted(writer_after_listing) == sorted(DOCS)
    assert (answer["total"], answer["deleted"], answer["version_conflicts"]) == (4, 3, 1)
    (failure,) = answer["failures"]
    assert (failure["index"], failure["id"], failure["status"]) == ("docs", "d1", 409)
    assert failure["cause"]["type"] == "version_conflict_engine_exception"
    assert "since the query listed it" in failure["cause"]["reason"]
    assert await _ids(client, "docs") == {"d1"}  # the write kept, not lost
    got = await client.get("/docs/_doc/d1")
    assert got.json()["_source"]["tenant"] == "moved"


async def test_delete_by_query_conflicts_proceed_counts_them(
    client: httpx.AsyncClient, writer_after_listing: list[str]
) -> None:
    await _filled(client)
    body = {"query": {"range": {"year": {"gte": 2000}}}, "max_docs": 3}
    done = await client.post("/docs/_delete_by_query?conflicts=proceed", json=body)
    assert done.status_code == 200, done.text
    answer = done.json()
    assert (answer["deleted"], answer["version_conflicts"], answer["failures"]) == (2, 1, [])
    assert await _ids(client, "docs") == {"d1", "d2"}


@pytest.mark.parametrize(
    ("path", "body", "said"),
    [
        ("/docs/_delete_by_query", {}, 'needs a "query"'),
        ("/docs/_delete_by_query", {"query": {"match_all": {}}, "slice": {"id": 0}}, "slice"),
        ("/docs/_delete_by_query?wait_for_completion=false", {"query": {"match_all": {}}},
         "keeps no tasks"),
        ("/docs/_delete_by_query?q=tenant:acme", {"query": {"match_all": {}}}, "JSON body"),
        ("/docs/_update_by_query", {"script": {"source": "ctx._source.n++"}}, "_update"),
        ("/_reindex", {"source": {"index": "docs"}, "dest": {"index": "x"},
                       "script": {"source": "x"}}, "runs no scripts"),
        ("/_reindex", {"source": {"index": "docs", "remote": {"host": "http://h:9200"}},
                       "dest": {"index": "x"}}, "source.remote"),
        ("/_reindex", {"source": {"index": "docs"}, "dest": {"index": "docs"}},
         "would write into it too"),
        ("/_reindex", {"source": {"index": "do*"}, "dest": {"index": "x"}}, "several indexes"),
        ("/_reindex", {"source": {"index": "docs"}, "dest": {"index": "x", "pipeline": "p"}},
         "dest.'pipeline'"),
        ("/_reindex", {"source": {"index": "docs"}, "dest": {"index": "x", "op_type": "up"}},
         "op_type"),
        ("/_reindex", {"source": {"index": "docs"}, "dest": {"index": "x",
                                                             "version_type": "external"}},
         "does not copy the source's versions"),
        ("/_reindex", {"source": {"index": "docs", "_source": {"includes": 5}},
                       "dest": {"index": "x"}}, "source._source"),
        ("/_reindex", {"source": {"index": "docs", "_source": {"includes": []}},
                       "dest": {"index": "x"}}, "source._source"),
    ],
)  # fmt: skip
async def test_what_semrank_cannot_do_is_refused_naming_it(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], said: str
) -> None:
    await _filled(client)
    reason = _es_error(await client.post(path, json=body), 400, "invalid_request")
    assert said in reason, reason
    assert await _ids(client, "docs") == set(DOCS)  # nothing deleted or written


async def test_update_by_query_counts_noops_and_says_why(client: httpx.AsyncClient) -> None:
    await _filled(client)
    before = (await client.get("/docs/_doc/d1")).json()
    done = await client.post("/docs/_update_by_query", json={"query": {"term": {"tenant": "acme"}}})
    assert done.status_code == 200, done.text
    answer = done.json()
    assert (answer["total"], answer["noops"], answer["updated"]) == (2, 2, 0)
    assert "_reindex into a new index" in done.headers["warning"]
    after = (await client.get("/docs/_doc/d1")).json()  # a noop: its version is as it was
    assert (after["_version"], after["_seq_no"]) == (before["_version"], before["_seq_no"])


async def test_reindex_then_move_the_alias(client: httpx.AsyncClient) -> None:
    """The recipe: copy the live index (the acme documents, two fields) into a new one made
    with its settings, then move the alias in one _aliases call."""
    await _filled(client, "docs-v1")
    await client.put("/docs-v1/_alias/live")
    body = {
        "source": {"index": "live", "query": {"term": {"tenant": "acme"}},
                   "_source": ["title", "tenant"], "size": 1},
        "dest": {"index": "docs-v2"},
    }  # fmt: skip
    done = await client.post("/_reindex?refresh=true", json=body)
    assert done.status_code == 200, done.text
    answer = done.json()
    assert (answer["total"], answer["created"], answer["updated"]) == (2, 2, 0)
    assert answer["batches"] == 2 and answer["version_conflicts"] == 0
    made = (await client.get("/v1/indexes/docs-v2")).json()
    assert made["settings"]["text_fields"] == ["title", "text"]
    got = await client.get("/docs-v2/_doc/d1")
    assert got.json()["_source"] == {"title": "Fleas", "tenant": "acme"}
    moved = {
        "actions": [{"remove": {"index": "docs-v1", "alias": "live"}},
                    {"add": {"index": "docs-v2", "alias": "live"}}]
    }  # fmt: skip
    assert (await client.post("/_aliases", json=moved)).status_code == 200
    assert await _ids(client, "live") == {"d1", "d3"}
    # A match query copies its every hit.
    matched = {"source": {"index": "docs-v1", "query": {"match": {"title": "paris"}}},
               "dest": {"index": "live"}}  # fmt: skip
    again = (await client.post("/_reindex", json=matched)).json()
    assert (again["total"], again["created"]) == (1, 1)
    assert await _ids(client, "docs-v2") == {"d1", "d2", "d3"}


async def test_reindex_with_op_type_create_reports_conflicts(client: httpx.AsyncClient) -> None:
    await _filled(client)
    await _create(client, "copy")
    await client.put("/copy/_doc/d2", json={"title": "Mine"})
    body: dict[str, Any] = {"source": {"index": "docs", "size": 1},
                            "dest": {"index": "copy", "op_type": "create"}}  # fmt: skip
    stopped = await client.post("/_reindex", json=body)
    assert stopped.status_code == 409, stopped.text  # conflicts abort, as in Elasticsearch
    answer = stopped.json()
    assert answer["version_conflicts"] == 1 and answer["created"] == 1
    [failure] = answer["failures"]
    assert failure["id"] == "d2" and failure["status"] == 409
    assert failure["cause"]["type"] == "version_conflict_engine_exception"
    body["conflicts"] = "proceed"
    went_on = (await client.post("/_reindex", json=body)).json()
    assert went_on["created"] == 2 and went_on["version_conflicts"] == 2
    assert went_on["failures"] == []
    got = await client.get("/copy/_doc/d2")
    assert got.json()["_source"] == {"title": "Mine"}
    assert await _ids(client, "copy") == set(DOCS)


async def test_reindex_from_an_index_that_is_not_there_is_a_404(client: httpx.AsyncClient) -> None:
    body = {"source": {"index": "nope"}, "dest": {"index": "x"}}
    _es_error(await client.post("/_reindex", json=body), 404, "index_not_found")
    assert json.loads((await client.get("/v1/indexes")).text)["data"] == []


async def test_reindex_copies_stored_vectors_and_says_so(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """An index of the same model takes the source's vectors: none is embedded again (the
    server's model would give other vectors than the test embedder that made them)."""
    from semrank.store import create_index, open_index
    from tiny_models import HashingEmbedder

    options = {"home": tmp_path, "embedding_model": "default", "embedder": HashingEmbedder()}
    with create_index("embedded", **options) as source:  # type: ignore[arg-type]
        source.upsert([{"id": i, **doc} for i, doc in DOCS.items()])
        made = source.stored_vectors(list(DOCS))
    body = {"source": {"index": "embedded"}, "dest": {"index": "embedded-v2"}}
    done = await client.post("/_reindex", json=body)
    assert done.status_code == 200, done.text
    assert "4 stored vectors copied from index 'embedded'" in done.headers["warning"]
    with open_index("embedded-v2", home=tmp_path) as dest:
        copied = dest.stored_vectors(list(DOCS))
    assert all((copied[i][1] == made[i][1]).all() for i in DOCS)


async def test_reindex_source_filter_object_and_max_docs_given_twice(
    client: httpx.AsyncClient,
) -> None:
    """source._source as Elasticsearch's object (includes / excludes) is applied; max_docs
    given in the query string and the body with two values is refused, as Elasticsearch
    refuses it, rather than one of them silently winning."""
    await _filled(client)
    body = {"source": {"index": "docs", "_source": {"excludes": ["text", "year"]}},
            "dest": {"index": "slim"}}  # fmt: skip
    done = await client.post("/_reindex", json=body)
    assert done.status_code == 200, done.text
    got = await client.get("/slim/_doc/d1")
    assert got.json()["_source"] == {"title": "Fleas", "tenant": "acme"}
    both = {"source": {"index": "docs", "_source": {"includes": ["t*"], "excludes": ["text"]}},
            "dest": {"index": "slimmer"}}  # fmt: skip
    assert (await client.post("/_reindex", json=both)).status_code == 200
    got = await client.get("/slimmer/_doc/d2")
    assert got.json()["_source"] == {"title": "Paris", "tenant": "globex"}
    twice = {"query": {"match_all": {}}, "max_docs": 2}
    refused = await client.post("/docs/_delete_by_query?max_docs=1", json=twice)
    assert "max_docs" in _es_error(refused, 400, "invalid_request")
    assert await _ids(client, "docs") == set(DOCS)
    agreed = await client.post("/docs/_delete_by_query?max_docs=2", json=twice)
    assert agreed.json()["deleted"] == 2


async def test_a_reindex_stopped_by_a_bad_document_says_what_it_copied(
    client: httpx.AsyncClient,
) -> None:
    """A destination refusing a document part way: the error says how many were copied
    before it, that the source is unchanged, and how to finish; the source is whole."""
    await _filled(client)
    put = await client.put("/docs/_doc/d9", json={"tenant": "acme", "text": "Its text only."})
    assert put.status_code == 201, put.text  # copied without "text", it holds no text
    body = {"source": {"index": "docs", "size": 2, "_source": ["tenant", "title"]},
            "dest": {"index": "copy"}}  # fmt: skip
    reason = _es_error(await client.post("/_reindex", json=body), 400, "data_format_error")
    assert "stopped after copying 4 documents (4 new, 0 replaced)" in reason, reason
    assert "index 'docs' is unchanged" in reason and "id 'd9'" in reason
    assert await _ids(client, "docs") == {*DOCS, "d9"}
    assert await _ids(client, "copy") == set(DOCS)
