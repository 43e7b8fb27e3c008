"""Elasticsearch's document and index APIs (_bulk, _doc, _create, _update, _mget, PUT and
DELETE /{index}, _refresh), as elasticsearch-py and the vector stores built on it call them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.anyio

# As elasticsearch-py 9 sends them: helpers.bulk's NDJSON, and every other body.
NDJSON = {
    "content-type": "application/vnd.elasticsearch+x-ndjson; compatible-with=9",
    "accept": "application/vnd.elasticsearch+json; compatible-with=9",
}
JSON = {
    "content-type": "application/vnd.elasticsearch+json; compatible-with=9",
    "accept": "application/vnd.elasticsearch+json; compatible-with=9",
}
# A BM25-only index with a filterable keyword (no dense_vector property: no embeddings).
MAPPINGS = {
    "properties": {
        "title": {"type": "text"},
        "text": {"type": "text"},
        "tenant": {"type": "keyword"},
    }
}
FLEAS = {"title": "Fleas", "text": "Fleas feed on the blood of mammals and birds."}
PARIS = {"title": "Paris", "text": "Paris is the capital of France."}


@pytest.fixture
def client(index_client: httpx.AsyncClient) -> httpx.AsyncClient:
    return index_client


def _ndjson(*lines: dict[str, Any]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def _items(answer: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A _bulk answer's items as (action, item) pairs."""
    return [(op, item) for entry in answer["items"] for op, item in entry.items()]


def _es_error(response: httpx.Response, status: int, error_type: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["x-elastic-product"] == "Elasticsearch"
    error = response.json()["error"]
    assert response.json()["status"] == status and error["type"] == error_type, response.text
    return str(error["reason"])


async def _create(client: httpx.AsyncClient, name: str = "docs") -> None:
    created = await client.put(f"/{name}", json={"mappings": MAPPINGS}, headers=JSON)
    assert created.status_code == 200, created.text
    assert created.json() == {"acknowledged": True, "shards_acknowledged": True, "index": name}


async def _source(client: httpx.AsyncClient, doc_id: str, index: str = "docs") -> Any:
    got = await client.get(f"/{index}/_doc/{doc_id}")
    return got.json().get("_source") if got.status_code == 200 else None


async def test_a_bulk_fill_is_found_by_search_count_and_get(client: httpx.AsyncClient) -> None:
    """helpers.bulk's request: NDJSON of index actions, ids given, generated or the source's
    own id field; then _search, _count and GET see them (no refresh needed)."""
    await _create(client)
    body = _ndjson(
        {"index": {"_id": "d1"}},
        {**FLEAS, "tenant": "acme"},
        {"index": {"_index": "docs", "_id": 2}},  # a number is the id "2", as an ingest reads
        PARIS,
        {"create": {}},
        {"title": "Flea larvae", "text": "Flea larvae eat debris, not blood."},
        {"index": {}},
        {"id": "own", "text": "Oceans are deep and cold."},  # the index's id field
    )
    done = await client.post("/docs/_bulk?refresh=wait_for", content=body, headers=NDJSON)
    assert done.status_code == 200 and done.headers["x-elastic-product"] == "Elasticsearch"
    answer = done.json()
    assert answer["errors"] is False and isinstance(answer["took"], int)
    ops = [(op, i["_id"], i["result"], i["status"]) for op, i in _items(answer)]
    generated = ops[2][1]
    assert ops == [
        ("index", "d1", "created", 201),
        ("index", "2", "created", 201),
        ("create", generated, "created", 201),
        ("index", "own", "created", 201),
    ]
    assert len(generated) == 20 and generated.replace("-", "").replace("_", "").isalnum()
    assert await _source(client, "own") == {"text": "Oceans are deep and cold."}
    search = {"query": {"match": {"text": "flea blood"}}}
    hits = (await client.post("/docs/_search", json=search, headers=JSON)).json()["hits"]["hits"]
    assert {hit["_id"] for hit in hits} == {"d1", generated}
    count = await client.post("/docs/_count", json={"query": {"term": {"tenant": "acme"}}})
    assert count.json()["count"] == 1
    # Without an index in the path, each action names its own; a JSON type is taken too.
    deletion = _ndjson({"delete": {"_index": "docs", "_id": "2"}})
    again = await client.post(
        "/_bulk", content=deletion, headers={"content-type": "application/json"}
    )
    assert again.json()["items"] == [
        {"delete": {"_index": "docs", "_id": "2", "_version": 2, "result": "deleted",
                    "_seq_no": 5, "_primary_term": 1, "status": 200,
                    "_shards": {"total": 1, "successful": 1, "failed": 0}}}
    ]  # fmt: skip
    assert (await client.get("/v1/indexes/docs")).json()["documents"] == 3


async def test_bulk_actions_apply_in_order_and_a_failing_item_fails_alone(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Mixed actions, some failing: each item says its result or error (errors: true), the
    others are written, and an id given several times ends as its last action leaves it."""
    await _create(client)
    await client.put("/docs/_doc/d1", json=FLEAS, headers=JSON)
    body = _ndjson(
        {"index": {"_id": "d1"}}, {**FLEAS, "tenant": "acme"},
        {"create": {"_id": "d1"}}, PARIS,
        {"update": {"_id": "d1"}}, {"doc": {"tenant": "acme"}},
        {"update": {"_id": "d1"}}, {"doc": {"title": "Fleas!"}},
        {"update": {"_id": "nope"}}, {"doc": {"title": "x"}},
        {"update": {"_id": "up"}}, {"doc": PARIS, "doc_as_upsert": True},
        {"index": {"_id": "bad"}}, {"colour": "nothing a search could find"},
        {"index": {"_id": "clash"}}, {"id": "other", **PARIS},
        {"delete": {"_id": "never"}},
        {"index": {"_id": "tmp"}}, PARIS,
        {"delete": {"_id": "tmp"}},
        {"index": {"_index": "missing", "_id": "m"}}, PARIS,
    )  # fmt: skip
    answer = (await client.post("/docs/_bulk", content=body, headers=NDJSON)).json()
    assert answer["errors"] is True
    items = [
        (op, i["_id"], i.get("result"), i["status"], i.get("error", {}).get("type"))
        for op, i in _items(answer)
    ]
    assert items == [
        ("index", "d1", "updated", 200, None),
        ("create", "d1", None, 409, "version_conflict_engine_exception"),
        ("update", "d1", "noop", 200, None),  # the index action set it already
        ("update", "d1", "updated", 200, None),
        ("update", "nope", None, 404, "document_missing_exception"),
        ("update", "up", "created", 201, None),
        ("index", "bad", None, 400, "data_format_error"),
        ("index", "clash", None, 400, "invalid_request"),
        ("delete", "never", "not_found", 404, None),  # not an error, as in Elasticsearch
        ("index", "tmp", "created", 201, None),
        ("delete", "tmp", "deleted", 200, None),
        ("index", "m", None, 404, "index_not_found"),
    ]
    reasons = {i["_id"]: i["error"]["reason"] for _, i in _items(answer) if "error" in i}
    assert "none of the index's text fields title, text" in reasons["bad"]
    assert "'id' field ('other') is not its _id" in reasons["clash"]
    assert "'missing' not found" in reasons["m"] and str(tmp_path) not in reasons["m"]
    assert await _source(client, "d1") == {**FLEAS, "title": "Fleas!", "tenant": "acme"}
    assert await _source(client, "up") == PARIS
    for absent in ("nope", "bad", "clash", "tmp", "never"):
        assert await _source(client, absent) is None, absent


async def test_a_bulk_fill_is_stored_and_numbered_in_its_order(client: httpx.AsyncClient) -> None:
    """Documents of one _bulk were written in the order of a set of their ids (another each
    server process): a filter search, which answers them in the store's order (Elasticsearch's
    index order), listed them shuffled, and their _seq_no did not follow the request."""
    await _create(client)
    ids = [f"doc-{n}" for n in range(24)]
    lines = [line for i in ids for line in ({"index": {"_id": i}}, {**PARIS, "tenant": "acme"})]
    answer = (await client.post("/docs/_bulk", content=_ndjson(*lines), headers=NDJSON)).json()
    assert [item["_seq_no"] for _, item in _items(answer)] == sorted(
        item["_seq_no"] for _, item in _items(answer)
    )
    listed = await client.post(
        "/docs/_search", json={"query": {"term": {"tenant": "acme"}}, "size": 24}, headers=JSON
    )
    assert [hit["_id"] for hit in listed.json()["hits"]["hits"]] == ids


async def test_bulk_actions_on_an_index_and_its_alias_apply_in_their_order(
    client: httpx.AsyncClient,
) -> None:
    """An index named by itself and by its alias in one _bulk is one index: a delete by its
    name of a document just indexed through the alias deletes it (applied as two indexes, the
    delete found nothing and the document stayed)."""
    await _create(client)
    aliased = await client.post(
        "/_aliases", json={"actions": [{"add": {"index": "docs", "alias": "live"}}]}
    )
    assert aliased.status_code == 200, aliased.text
    body = _ndjson(
        {"index": {"_index": "docs", "_id": "first"}}, PARIS,
        {"index": {"_index": "live", "_id": "d1"}}, FLEAS,
        {"delete": {"_index": "docs", "_id": "d1"}},
        {"index": {"_index": "live", "_id": "d2"}}, FLEAS,
        {"update": {"_index": "docs", "_id": "d2"}}, {"doc": {"tenant": "acme"}},
    )  # fmt: skip
    answer = (await client.post("/_bulk", content=body, headers=NDJSON)).json()
    assert answer["errors"] is False, answer
    items = [(op, i["_index"], i["_id"], i["result"], i["status"]) for op, i in _items(answer)]
    assert items == [
        ("index", "docs", "first", "created", 201),
        ("index", "docs", "d1", "created", 201),
        ("delete", "docs", "d1", "deleted", 200),
        ("index", "docs", "d2", "created", 201),
        ("update", "docs", "d2", "updated", 200),
    ]
    assert await _source(client, "d1") is None
    assert await _source(client, "d2") == {**FLEAS, "tenant": "acme"}


async def test_concurrent_partial_updates_of_one_document_all_land(
    client: httpx.AsyncClient,
) -> None:
    """Updates of one document at once, each adding its own field: every one is in the
    document after (each read and wrote it back unguarded, and most were lost though all
    answered "updated")."""
    import asyncio

    await _create(client)
    await client.put("/docs/_doc/d1", json=FLEAS, headers=JSON)
    updates = [
        client.post("/docs/_update/d1", json={"doc": {f"field{n}": n}}, headers=JSON)
        for n in range(12)
    ]
    answers = await asyncio.gather(*updates)
    assert [answer.json()["result"] for answer in answers] == ["updated"] * 12
    assert await _source(client, "d1") == {**FLEAS, **{f"field{n}": n for n in range(12)}}


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'{"index": {}}\n{"text": "a b c"', "line 2 of the _bulk body is not valid JSON"),
        (b'{"index": {}}\n{"text": "a"}\n{"upsert": {}}\n', "line 3 of the _bulk body is not an"),
        (b'{"index": {}}\n', "line 1: the index action has no document line after it"),
        (b'{"delete": {}}\n', "line 1: a delete action needs an _id"),
        (b'{"index": {"if_seq_no": 3}}\n{"text": "a"}\n', "if_primary_term go together"),
        (b'{"index": {"version": 3}}\n{"text": "a"}\n', "internal versioning can not be"),
        (b'{"update": {"_id": "1"}}\n{"script": "ctx._source.n++"}\n', "no scripts"),
        (b'{"update": {"_id": "1"}}\n{"doc_as_upsert": true}\n', 'needs "doc"'),
        (b'{"index": {"_id": true}}\n{"text": "a"}\n', "line 1: _id is the boolean true"),
        (b'{"index": {"_id": "a", "_id": "b"}}\n{"text": "a"}\n', "'_id' twice"),
    ],
)
async def test_a_malformed_bulk_body_is_refused_whole_naming_its_line(
    client: httpx.AsyncClient, body: bytes, said: str
) -> None:
    await _create(client)
    first = _ndjson({"index": {"_id": "first"}}, PARIS)  # before the bad line: not written
    refused = await client.post("/docs/_bulk", content=first + body, headers=NDJSON)
    reason = _es_error(refused, 400, "invalid_request")
    lines = first.count(b"\n")
    if said.startswith("line "):  # the line numbers count the whole body's lines
        number = int(said.split()[1].rstrip(":"))
        said = said.replace(f"line {number}", f"line {number + lines}", 1)
    assert said in reason, reason
    assert await _source(client, "first") is None


async def test_bulk_takes_ndjson_and_json_only_and_needs_an_index(
    client: httpx.AsyncClient,
) -> None:
    """A text/plain or form body (which a page of any site may send without a preflight) is
    refused, as Elasticsearch refuses it; so is an action naming no index."""
    await _create(client)
    body = _ndjson({"index": {"_id": "x"}}, PARIS)
    for sent in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {} if sent is None else {"content-type": sent}
        refused = await client.post("/docs/_bulk", content=body, headers=headers)
        assert "send NDJSON with Content-Type: application/x-ndjson" in _es_error(
            refused, 400, "invalid_request"
        )
    for taken in ("application/x-ndjson", "application/json", NDJSON["content-type"]):
        done = await client.post("/docs/_bulk", content=body, headers={"content-type": taken})
        assert done.status_code == 200 and not done.json()["errors"], (taken, done.text)
    empty = await client.post("/docs/_bulk", content=b"\n\n", headers=NDJSON)
    assert "holds no actions" in _es_error(empty, 400, "invalid_request")
    nowhere = await client.post("/_bulk", content=body, headers=NDJSON)
    assert "names no _index" in _es_error(nowhere, 400, "invalid_request")
    versioned = await client.post("/docs/_bulk?version=2", content=body, headers=NDJSON)
    assert "'version'" in _es_error(versioned, 400, "invalid_request")


async def test_put_bulk_as_elasticsearch_py_9_sends_it_answers_as_elasticsearch(
    client: httpx.AsyncClient,
) -> None:
    """elasticsearch-py 9's helpers.bulk sends PUT /_bulk, a one-segment path: its answer
    needs the product header (the client raises UnsupportedProductError without it), and its
    errors Elasticsearch's shape and 400, as POST's do."""
    await _create(client)
    body = _ndjson({"index": {"_index": "docs", "_id": "x"}}, PARIS)
    done = await client.put("/_bulk", content=body, headers=NDJSON)
    assert done.status_code == 200 and not done.json()["errors"], done.text
    assert done.headers["x-elastic-product"] == "Elasticsearch"
    assert await _source(client, "x") == PARIS
    nowhere = await client.put("/_bulk", content=_ndjson({"index": {}}, PARIS), headers=NDJSON)
    assert "names no _index" in _es_error(nowhere, 400, "invalid_request")
    in_path = await client.put("/docs/_bulk", content=body, headers=NDJSON)
    assert in_path.headers["x-elastic-product"] == "Elasticsearch"


async def test_one_document_routes_answer_as_elasticsearch(client: httpx.AsyncClient) -> None:
    """es.index / es.create / es.get / es.exists / es.update / es.delete."""
    await _create(client)
    made = await client.put("/docs/_doc/d1", json=FLEAS, headers=JSON)
    assert made.status_code == 201 and made.json()["result"] == "created", made.text
    assert made.json()["_index"] == "docs" and made.json()["_id"] == "d1"
    again = await client.put("/docs/_doc/d1?refresh=true", json=FLEAS, headers=JSON)
    assert again.status_code == 200 and again.json()["result"] == "updated"
    generated = await client.post("/docs/_doc", json=PARIS, headers=JSON)
    assert generated.status_code == 201 and len(generated.json()["_id"]) == 20
    taken = await client.put("/docs/_create/d1", json=PARIS, headers=JSON)
    assert "[d1]: version conflict" in _es_error(taken, 409, "version_conflict_engine_exception")
    as_create = await client.put("/docs/_doc/d1?op_type=create", json=PARIS, headers=JSON)
    assert as_create.status_code == 409
    got = await client.get("/docs/_doc/d1")
    assert got.status_code == 200
    assert got.json() == {"_index": "docs", "_id": "d1", "_version": 2, "_seq_no": 2,
                          "_primary_term": 1, "found": True, "_source": FLEAS}  # fmt: skip
    assert (await client.get("/docs/_doc/d1?_source=false")).json().get("_source") is None
    only = await client.get("/docs/_doc/d1?_source_includes=title")
    assert only.json()["_source"] == {"title": "Fleas"}
    missing = await client.get("/docs/_doc/nope")
    assert missing.status_code == 404
    assert missing.json() == {"_index": "docs", "_id": "nope", "found": False}
    assert (await client.head("/docs/_doc/d1")).status_code == 200  # es.exists
    assert (await client.head("/docs/_doc/nope")).status_code == 404
    merged = await client.post("/docs/_update/d1", json={"doc": {"tenant": "acme"}}, headers=JSON)
    assert merged.json()["result"] == "updated"
    same = await client.post("/docs/_update/d1", json={"doc": {"tenant": "acme"}}, headers=JSON)
    assert same.json()["result"] == "noop"
    assert await _source(client, "d1") == {**FLEAS, "tenant": "acme"}
    lacking = await client.post("/docs/_update/nope", json={"doc": PARIS}, headers=JSON)
    assert "doc_as_upsert" in _es_error(lacking, 404, "document_missing_exception")
    upsert = {"doc": PARIS, "doc_as_upsert": True}
    assert (await client.post("/docs/_update/nope", json=upsert)).status_code == 201
    scripted = await client.post("/docs/_update/nope", json={"script": {"source": "x"}})
    assert "no scripts" in _es_error(scripted, 400, "invalid_request")
    gone = await client.delete("/docs/_doc/nope")
    assert gone.status_code == 200 and gone.json()["result"] == "deleted"
    again_gone = await client.delete("/docs/_doc/nope")
    assert again_gone.status_code == 404 and again_gone.json()["result"] == "not_found"
    unsearchable = await client.put("/docs/_doc/x", json={"colour": "red"}, headers=JSON)
    assert "none of the index's text fields" in _es_error(unsearchable, 400, "data_format_error")
    no_index = await client.put("/nosuch/_doc/x", json=PARIS, headers=JSON)
    assert "'nosuch'" in _es_error(no_index, 404, "index_not_found")


async def test_an_encoded_slash_in_a_document_id_is_part_of_the_id(
    client: httpx.AsyncClient,
) -> None:
    """elasticsearch-py quotes an id's slash (%2F): the id "a/b" is written and read as such."""
    await _create(client)
    made = await client.put("/docs/_doc/a%2Fb", json=PARIS, headers=JSON)
    assert made.status_code == 201 and made.json()["_id"] == "a/b", made.text
    assert (await client.get("/docs/_doc/a%2Fb")).json()["_source"] == PARIS
    ids = (await client.post("/docs/_mget", json={"ids": ["a/b"]})).json()["docs"]
    assert [(doc["_id"], doc["found"]) for doc in ids] == [("a/b", True)]


async def test_mget_reads_docs_and_ids_each_index_once(client: httpx.AsyncClient) -> None:
    await _create(client)
    await client.put("/docs/_doc/d1", json=FLEAS, headers=JSON)
    first = {"_index": "docs", "_id": "d1", "_source": ["title"]}
    asked = {"docs": [first, {"_index": "docs", "_id": "none"}, {"_index": "nosuch", "_id": "d1"}]}
    docs = (await client.post("/_mget", json=asked, headers=JSON)).json()["docs"]
    assert docs[0]["found"] is True and docs[0]["_source"] == {"title": "Fleas"}
    assert docs[1] == {"_index": "docs", "_id": "none", "found": False}
    assert docs[2]["error"]["type"] == "index_not_found" and "found" not in docs[2]
    by_ids = await client.post("/docs/_mget", json={"ids": ["none", "d1"]}, headers=JSON)
    assert [doc["found"] for doc in by_ids.json()["docs"]] == [False, True]
    nowhere = await client.post("/_mget", json={"ids": ["d1"]}, headers=JSON)
    assert "/{index}/_mget" in _es_error(nowhere, 400, "invalid_request")


async def test_indexes_are_created_and_dropped_as_elasticsearch_does(
    client: httpx.AsyncClient,
) -> None:
    """es.indices.create / delete / refresh: the mappings' text properties are the text
    fields; an index that exists is Elasticsearch's 400, which create-if-missing code ignores.
    Other routes on one-segment paths answer as before."""
    mappings = {"properties": {"content": {"type": "text"}, "vector": {"type": "dense_vector"}}}
    body = {"mappings": mappings, "settings": {"number_of_shards": 1}, "aliases": {"live": {}}}
    created = await client.put("/lli", json=body, headers=JSON)
    assert created.status_code == 200, created.text
    settings = (await client.get("/v1/indexes/lli")).json()["settings"]
    assert settings["text_fields"] == ["content"] and settings["embedding_model"] is not None
    assert (await client.get("/_alias/live")).json() == {"lli": {"aliases": {"live": {}}}}
    await _create(client)  # text and keyword properties only: BM25 alone
    assert (await client.get("/v1/indexes/docs")).json()["settings"]["embedding_model"] is None
    exists = await client.put("/docs", json={"mappings": MAPPINGS}, headers=JSON)
    assert "index [docs] already exists" in _es_error(
        exists, 400, "resource_already_exists_exception"
    )
    taken_alias = await client.put("/other", json={"aliases": {"live": {}}}, headers=JSON)
    assert taken_alias.status_code in (400, 409), taken_alias.text
    assert (await client.head("/other")).status_code == 404  # a create is whole or nothing
    filtered = await client.put("/other", json={"aliases": {"a": {"filter": {}}}}, headers=JSON)
    assert "alias options" in _es_error(filtered, 400, "invalid_request")
    refreshed = await client.post("/docs/_refresh")
    assert refreshed.status_code == 200 and refreshed.json()["_shards"]["failed"] == 0
    nosuch = await client.post("/nosuch/_refresh")
    assert nosuch.status_code == 404, nosuch.text
    dropped = await client.delete("/docs")
    assert dropped.status_code == 200 and dropped.json() == {"acknowledged": True}
    assert "'docs'" in _es_error(await client.delete("/docs"), 404, "index_not_found")
    assert (await client.get("/v1/indexes/docs")).status_code == 404
    for method, path in (("DELETE", "/health"), ("PUT", "/rerank")):  # semrank's own 405
        other = await client.request(method, path)
        assert other.status_code == 405 and isinstance(other.json()["error"], str), other.text
        assert "x-elastic-product" not in other.headers
    assert (await client.get("/health")).status_code == 200


async def test_bulk_and_index_creation_need_the_key_and_keep_the_document_limit(
    reranker: Any, tmp_path: Path
) -> None:
    from semrank.pipeline import forget_open_indexes
    from semrank.server import ServerConfig, create_app

    config = ServerConfig(index_home=str(tmp_path), api_keys=frozenset({"k1"}), max_documents=2)
    app = create_app(config, rerankers={"minilm": reranker})
    key = {"authorization": "ApiKey k1"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            refused = await http.put("/docs", json={"mappings": MAPPINGS}, headers=JSON)
            assert _es_error(refused, 401, "unauthorized")
            created = await http.put("/docs", json={"mappings": MAPPINGS}, headers={**JSON, **key})
            assert created.status_code == 200, created.text
            body = _ndjson({"index": {"_id": "a"}}, FLEAS, {"index": {"_id": "b"}}, PARIS)
            unkeyed = await http.post("/docs/_bulk", content=body, headers=NDJSON)
            assert _es_error(unkeyed, 401, "unauthorized")
            assert (await http.delete("/docs")).status_code == 401
            done = await http.post("/docs/_bulk", content=body, headers={**NDJSON, **key})
            assert done.status_code == 200 and not done.json()["errors"], done.text
            three = body + _ndjson({"delete": {"_id": "a"}})
            over = await http.post("/docs/_bulk", content=three, headers={**NDJSON, **key})
            assert "3 actions exceed" in _es_error(over, 413, "request_too_large")
    forget_open_indexes()
