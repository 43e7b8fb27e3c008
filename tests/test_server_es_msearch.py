"""Elasticsearch's _msearch, typed_keys, and the cluster and index probes (_cluster/health, the
_cat tables, GET /{index}, _mapping, _stats, _nodes) over the embedded store, and the APIs
semrank refuses by name; tests/test_postgres_server_indexes.py runs ``probes_answer``,
``msearch_answers`` and ``typed_keys_answer`` over PostgreSQL."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from test_server_indexes import _served_index

pytestmark = pytest.mark.anyio

NDJSON = {"content-type": "application/x-ndjson"}
MAPPINGS = {"properties": {"title": {"type": "text"}, "text": {"type": "text"}}}
DOCS = {
    "d1": {"title": "Fleas", "text": "Fleas feed on the blood of mammals and birds.", "tag": "a"},
    "d2": {"title": "Paris", "text": "Paris is the capital of France.", "tag": "b"},
    "d3": {"title": "Larvae", "text": "Flea larvae eat debris, not blood.", "tag": "a"},
}
FLEAS = {"query": {"match": {"text": "flea blood"}}}


def _ndjson(*lines: dict[str, Any] | str) -> str:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)


async def fill(client: httpx.AsyncClient, name: str = "news") -> None:
    """The index ``name`` made as elasticsearch-py makes one, holding DOCS."""
    created = await client.put(f"/{name}", json={"mappings": MAPPINGS})
    assert created.status_code == 200, created.text
    lines = [line for i, doc in DOCS.items() for line in ({"index": {"_id": i}}, doc)]
    filled = await client.post(f"/{name}/_bulk", content=_ndjson(*lines), headers=NDJSON)
    assert filled.status_code == 200 and not filled.json()["errors"], filled.text


def _es_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["x-elastic-product"] == "Elasticsearch"
    assert response.json()["status"] == status
    return str(response.json()["error"]["reason"])


@pytest.fixture
async def client(index_client: httpx.AsyncClient) -> httpx.AsyncClient:
    await fill(index_client)
    return index_client


# --- _msearch ----------------------------------------------------------------------------------


async def msearch_answers(client: httpx.AsyncClient) -> None:
    """Each search answers as its own _search does, in order; a failing one is an error item."""
    alone = await client.post("/news/_search", json={**FLEAS, "size": 2})
    assert alone.status_code == 200, alone.text
    body = _ndjson(
        {},  # the path's index
        {**FLEAS, "size": 2},
        {"index": "nosuch"},
        FLEAS,
        {"index": ["news"], "search_type": "dfs_query_then_fetch", "preference": "_local"},
        {"query": {"term": {"tag": "a"}}, "_source": False},
        {"index": "news"},
        {"bogus": 1},
        "",  # an empty header line, as {}
        {"size": 0, "aggs": {"tags": {"terms": {"field": "tag"}}}},
    )
    answer = await client.post("/news/_msearch", content=body, headers=NDJSON)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-elastic-product"] == "Elasticsearch"
    first, missing, filtered, bad, aggregated = answer.json()["responses"]
    assert first["status"] == 200 and first["hits"] == alone.json()["hits"]
    assert missing["status"] == 404 and missing["error"]["type"] == "index_not_found"
    assert "'nosuch'" in missing["error"]["root_cause"][0]["reason"]
    assert filtered["status"] == 200
    assert [(h["_id"], "_source" in h) for h in filtered["hits"]["hits"]] == [
        ("d1", False),
        ("d3", False),
    ]
    assert bad["status"] == 400 and bad["error"]["reason"].startswith("line 8: bogus: unknown key")
    buckets = aggregated["aggregations"]["tags"]["buckets"]
    assert {(b["key"], b["doc_count"]) for b in buckets} == {("a", 2), ("b", 1)}


async def test_msearch_answers_each_search_as_search_does(client: httpx.AsyncClient) -> None:
    await msearch_answers(client)
    # Without an index in the path, a header without one searches every index.
    every = await client.post("/_msearch", content=_ndjson({}, FLEAS), headers=NDJSON)
    hits = every.json()["responses"][0]["hits"]["hits"]
    assert {(hit["_index"], hit["_id"]) for hit in hits} == {("news", "d1"), ("news", "d3")}
    # A missing index left out where the header (or the query string) says to ignore it.
    skipping = _ndjson({"index": "news,nosuch", "ignore_unavailable": True}, FLEAS)
    skipped = await client.post("/_msearch", content=skipping, headers=NDJSON)
    assert skipped.json()["responses"][0]["status"] == 200
    by_query = await client.post(
        "/_msearch?ignore_unavailable=true", content=_ndjson({"index": "nosuch,news"}, FLEAS),
        headers=NDJSON,
    )  # fmt: skip
    assert by_query.json()["responses"][0]["status"] == 200


async def test_a_malformed_msearch_is_refused_whole_naming_its_line(
    client: httpx.AsyncClient,
) -> None:
    cases = {
        _ndjson({}, FLEAS, {"index": "news"}): "line 3 of the _msearch body is a header without",
        _ndjson({}, "{not json"): "line 2 of the _msearch body is not valid JSON",
        _ndjson({}, "[1]"): "line 2 of the _msearch body must be a JSON object",
        _ndjson({"version": True}, FLEAS): "line 1: the header's 'version' is not supported",
        _ndjson({"search_type": "scan"}, FLEAS): "line 1: search_type 'scan' is not supported",
        _ndjson({"index": 7}, FLEAS): "line 1: the header's index must be an index name",
        _ndjson({"ignore_unavailable": "yes"}, FLEAS): "line 1: the header's ignore_unavailable",
        "\n\n": "the _msearch request body holds no searches",
    }
    for body, said in cases.items():
        refused = await client.post("/news/_msearch", content=body, headers=NDJSON)
        assert _es_error(refused, 400).startswith(said), (body, refused.text)
    as_form = await client.post(
        "/_msearch", content=_ndjson({}, FLEAS), headers={"content-type": "text/plain"}
    )
    assert "the _msearch body was sent with Content-Type 'text/plain'" in _es_error(as_form, 400)
    for query, said in (
        ("rest_total_hits_as_int=maybe", "rest_total_hits_as_int='maybe' must be true or"),
        ("max_concurrent_searches=0", "max_concurrent_searches='0' must be a positive"),
    ):
        refused = await client.post(
            f"/_msearch?{query}", content=_ndjson({}, FLEAS), headers=NDJSON
        )
        assert said in _es_error(refused, 400)


async def test_a_search_with_a_pit_is_refused_not_run_without_it(
    client: httpx.AsyncClient,
) -> None:
    """A body's pit was dropped: the search ran on the header's indexes, as if none were
    given, and answered 200 with hits of no point in time."""
    opened = await client.post("/news/_pit?keep_alive=1m")
    pit = {"id": opened.json()["id"], "keep_alive": "1m"}
    body = _ndjson({}, {**FLEAS, "pit": pit}, {}, FLEAS)
    answer = await client.post("/_msearch", content=body, headers=NDJSON)
    paged, plain = answer.json()["responses"]
    assert paged["status"] == 400 and "hits" not in paged
    assert paged["error"]["reason"].startswith("line 2: pit is not supported in _msearch")
    assert plain["status"] == 200


async def test_msearch_is_held_to_the_servers_limits_as_one_request(
    reranker: Any, tmp_path: Path
) -> None:
    """At most --max-batch-queries searches; their re-rankers' windows together at most
    --max-documents: the search that takes the request past it answers a 413 item."""
    tree = {
        "text_similarity_reranker": {
            "retriever": {"standard": FLEAS},
            "field": "text",
            "inference_text": "what do fleas eat",
            "inference_id": "minilm",
            "rank_window_size": 3,
        }
    }
    async with _served_index(reranker, tmp_path, max_batch_queries=3, max_documents=5) as client:
        await fill(client)
        four = _ndjson(*[line for _ in range(4) for line in ({}, FLEAS)])
        too_many = await client.post("/news/_msearch", content=four, headers=NDJSON)
        assert "4 searches exceed this server's limit of 3" in _es_error(too_many, 413)
        # Counted before any line is read: 100,000 tiny searches held the event loop for
        # seconds (each read and checked) only to be refused.
        unread = _ndjson(*[line for _ in range(4) for line in ({}, "{not json")])
        refused = await client.post("/news/_msearch", content=unread, headers=NDJSON)
        assert "4 searches exceed this server's limit of 3" in _es_error(refused, 413)
        windows = _ndjson({}, {"retriever": tree}, {}, {"retriever": tree}, {}, FLEAS)
        answer = await client.post("/news/_msearch?max_concurrent_searches=1", content=windows,
                                   headers=NDJSON)  # fmt: skip
        first, second, third = answer.json()["responses"]
        assert first["status"] == 200 and third["status"] == 200
        assert second["status"] == 413
        assert second["error"]["reason"].startswith(
            "search 2 re-ranks 3 documents, which with the 3 of the searches before it exceed "
            "this server's limit of 5"
        )


# --- probes ------------------------------------------------------------------------------------


async def probes_answer(client: httpx.AsyncClient) -> None:
    """Health, _cat, GET /{index} and _mapping of the index "news" (filled by ``fill``) with
    the alias "live"."""
    aliased = await client.put("/news/_alias/live")
    assert aliased.status_code == 200, aliased.text
    health = await client.get("/_cluster/health/live?wait_for_status=green&timeout=5s")
    assert health.status_code == 200, health.text
    assert health.headers["x-elastic-product"] == "Elasticsearch"
    assert (health.json()["status"], health.json()["active_shards"]) == ("green", 1)
    index = (await client.get("/live")).json()
    assert index == {
        "news": {
            "aliases": {"live": {}},
            "mappings": {
                "_meta": {
                    "semrank": {
                        "id_field": "id",
                        "embedding_model": None,
                        "untyped_fields": ["tag"],
                    }
                },
                "properties": {"title": {"type": "text"}, "text": {"type": "text"}},
            },
            "settings": {
                "index": {
                    "number_of_shards": "1",
                    "number_of_replicas": "0",
                    "provided_name": "news",
                }
            },
        }
    }
    flat = (await client.get("/news?flat_settings=true")).json()["news"]["settings"]
    assert flat["index.number_of_shards"] == "1"
    mapping = {"news": {"mappings": index["news"]["mappings"]}}
    assert (await client.get("/ne*/_mapping")).json() == mapping
    assert (await client.get("/_mapping")).json() == mapping
    (row,) = (await client.get("/_cat/indices?format=json")).json()
    assert {k: row[k] for k in ("health", "status", "index", "pri", "rep", "docs.count")} == {
        "health": "green", "status": "open", "index": "news", "pri": "1", "rep": "0",
        "docs.count": str(len(DOCS)),
    }  # fmt: skip
    assert int((await client.get("/_cat/indices?format=json&bytes=b")).json()[0]["store.size"]) > 0
    table = await client.get("/_cat/indices/live?v&h=index,docs.count")
    assert table.headers["content-type"].startswith("text/plain")
    assert table.text == f"index docs.count\nnews  {len(DOCS):>10}\n"
    aliases = await client.get("/_cat/aliases?format=json")
    assert [(a["alias"], a["index"]) for a in aliases.json()] == [("live", "news")]
    assert (await client.get("/_cat/aliases/li*")).text.split() == ["live", "news", *"-" * 4]
    for path in ("/nosuch", "/nosuch/_mapping", "/_cluster/health/nosuch", "/_cat/indices/nosuch"):
        missing = await client.get(path)
        assert "'nosuch'" in _es_error(missing, 404), path
        assert missing.json()["error"]["type"] == "index_not_found"


async def test_the_probes_answer_from_the_index(client: httpx.AsyncClient) -> None:
    await probes_answer(client)


async def test_probe_options_semrank_cannot_answer_are_refused(client: httpx.AsyncClient) -> None:
    for path, said in (
        ("/_cluster/health?level=indices", "level: semrank answers level=cluster only"),
        ("/_cluster/health?wait_for_status=blue", "wait_for_status='blue': give green, yellow"),
        ("/_cat/indices?h=index,size", "h: unknown column 'size'; the columns are health,"),
        ("/_cat/indices?format=smile", "format='smile': give json, yaml or text"),
        ("/_cat/indices?bytes=kib", "bytes='kib': give one of b, kb,"),
        ("/_cat/indices?s=index:up", "s: cannot sort by 'index:up'; give columns"),
        ("/_cat/indices?s=size", "s: cannot sort by 'size'"),
        ("/_cat/indices?health=blue", "health='blue': give green, yellow or red"),
        ("/_stats/indexing", "_stats metric 'indexing': semrank answers docs and store"),
        ("/_nodes/stats", "GET /_nodes/.../stats: semrank keeps no node stats"),
        ("/news?include_type_name=true", "query-string parameter 'include_type_name': not"),
    ):
        assert _es_error(await client.get(path), 400).startswith(said), path


async def test_get_of_an_index_leaves_semranks_own_pages_and_routes_alone(
    client: httpx.AsyncClient,
) -> None:
    """GET /docs is the API's page (an index named docs is still made, written and searched
    by its other routes); GET /health and HEAD of an index are what they were."""
    page = await client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "x-elastic-product" not in page.headers
    made = await client.put("/docs", json={"mappings": MAPPINGS})
    assert made.status_code == 200, made.text
    assert (await client.get("/docs/_mapping")).json()["docs"]["mappings"]["properties"]
    assert (await client.get("/health")).json() == {"status": "ok"}
    assert (await client.head("/news")).status_code == 200
    assert (await client.head("/nosuch")).status_code == 404


async def test_cat_tables_sort_pick_columns_and_explain_them(client: httpx.AsyncClient) -> None:
    """s sorts (numbers as numbers, several keys), h takes Elasticsearch's aliases and
    wildcards, help lists the columns, format takes any case, health filters."""
    await fill(client, "big")
    await client.post("/big/_doc/d4?refresh=true", json={"text": "Moths eat wool."})
    await fill(client, "aa")
    await client.delete("/aa/_doc/d1?refresh=true")

    async def rows(query: str) -> list[dict[str, str]]:
        answer = await client.get(f"/_cat/indices?format=json&{query}")
        assert answer.status_code == 200, answer.text
        return list(answer.json())

    by_count = await rows("s=docs.count:desc,index&h=i,dc")
    assert by_count == [
        {"i": "big", "dc": "4"}, {"i": "news", "dc": "3"}, {"i": "aa", "dc": "2"}
    ]  # fmt: skip
    assert [row["index"] for row in await rows("s=dc,i:desc&h=index")] == ["aa", "news", "big"]
    assert [row["index"] for row in await rows("s=index&h=index")] == ["aa", "big", "news"]
    assert list((await rows("h=docs.*,index"))[0]) == ["docs.count", "docs.deleted", "index"]
    assert await rows("h=i&health=RED") == []
    upper = await client.get("/_cat/indices/news?format=JSON&h=h,s,ss&bytes=k")
    (row,) = upper.json()
    assert (row["h"], row["s"]) == ("green", "open") and row["ss"].isdigit()
    table = (await client.get("/_cat/indices?v&s=docs.count&h=index,dc")).text
    assert table == "index dc\naa     2\nnews   3\nbig    4\n"
    helped = (await client.get("/_cat/indices?help")).text.splitlines()
    cells = [[cell.strip() for cell in line.split(" | ")] for line in helped]
    assert cells[6] == ["docs.count", "dc,docsCount", "available docs"]
    assert len(helped) == 11 and len({line.index(" | ") for line in helped}) == 1  # aligned
    aliases = (await client.get("/_cat/aliases?help")).text.splitlines()
    assert aliases[0].split(" | ")[1].strip() == "a"


async def test_cat_yaml_is_answered_where_pyyaml_is_installed(client: httpx.AsyncClient) -> None:
    yaml = pytest.importorskip("yaml")
    answer = await client.get("/_cat/indices?format=yaml&h=index,docs.count")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(answer.text) == [{"index": "news", "docs.count": str(len(DOCS))}]


async def test_cat_health_count_and_the_list_of_tables(client: httpx.AsyncClient) -> None:
    await fill(client, "more")
    (health,) = (await client.get("/_cat/health?format=json")).json()
    assert (health["cluster"], health["status"], health["shards"], health["pri"]) == (
        "semrank", "green", "2", "2"
    )  # fmt: skip
    assert int(health["epoch"]) > 1_700_000_000 and len(health["timestamp"]) == 8
    line = (await client.get("/_cat/health?ts=false&h=st,t,node.total")).text
    assert line.split() == ["green", "2", "1"]  # t: shards (a later column's alias wins)
    assert (await client.get("/_cat/count?h=count")).text == f"{2 * len(DOCS)}\n"
    counted = await client.get("/_cat/count/news?format=json&ts=false")
    assert counted.json() == [{"count": str(len(DOCS))}]
    listed = (await client.get("/_cat")).text.splitlines()
    assert listed[0] == "=^.^=" and "/_cat/indices/{index}" in listed
    for path in listed[1:]:
        served = await client.get(path.replace("{index}", "news").replace("{alias}", "x*"))
        assert served.status_code == 200, (path, served.text)


async def test_stats_and_nodes_answer_the_one_node(client: httpx.AsyncClient) -> None:
    await fill(client, "more")
    await client.delete("/more/_doc/d1?refresh=true")
    stats = (await client.get("/_stats")).json()
    assert stats["_shards"] == {"total": 2, "successful": 1 + 1, "failed": 0}
    assert stats["_all"]["total"]["docs"] == {"count": 2 * len(DOCS) - 1, "deleted": 0}
    sizes = [
        stats["indices"][name]["primaries"]["store"]["size_in_bytes"] for name in ("news", "more")
    ]
    assert min(sizes) > 0 and stats["_all"]["primaries"]["store"]["size_in_bytes"] == sum(sizes)
    one = (await client.get("/more/_stats/docs")).json()
    assert one["indices"]["more"]["total"] == {"docs": {"count": len(DOCS) - 1, "deleted": 0}}
    assert list(one["indices"]) == ["more"] and "store" not in one["_all"]["total"]
    for path in ("/_nodes", "/_nodes/http", "/_nodes/_all/http"):
        nodes = (await client.get(path, headers={"host": "search.example:9201"})).json()
        (node,) = nodes["nodes"].values()
        assert node["http"]["publish_address"] == "search.example:9201", path
        assert node["version"] == (await client.get("/")).json()["version"]["number"]


async def test_unserved_elasticsearch_apis_are_refused_by_name(client: httpx.AsyncClient) -> None:
    """Each says what it is and what semrank answers instead, in Elasticsearch's shape (it
    was "invalid index name '_xpack'", or a 404 naming the rerank routes)."""
    for method, path, said in (
        ("GET", "/_xpack", "(X-Pack and license information); semrank has no licensed"),
        ("GET", "/_license", "(X-Pack and license information)"),
        ("GET", "/_settings", "(index settings); GET /{index} answers each index's settings"),
        ("PUT", "/news/_settings", "(index settings)"),
        ("GET", "/_cat/nodes", "(this _cat table); GET /_cat lists the tables"),
        ("GET", "/_cluster/state", "(this cluster API); semrank is one node"),
        ("GET", "/_cluster/settings", "(this cluster API)"),
        ("GET", "/_ingest/pipeline", "(ingest pipelines); semrank has none"),
        ("PUT", "/_index_template/logs", "(index templates); semrank has none: PUT /{index}"),
        ("GET", "/_template", "(index templates)"),
        ("GET", "/_security/_authenticate", "(security (users, roles, API keys))"),
    ):
        reason = _es_error(await client.request(method, path), 400)
        assert reason.startswith(f"semrank does not serve Elasticsearch's {method} {path} ")
        assert said in reason, path
    assert (await client.get("/news")).status_code == 200  # GET /{index} is what it was


async def test_refusals_point_to_sections_docs_server_md_has(client: httpx.AsyncClient) -> None:
    """A refusal naming "docs/server.md, SECTION" names a heading there (the _security one named
    an "Authentication" section the page never had; its keys are under "Keys")."""
    headings = [
        line.lstrip("#").strip().replace("`", "")
        for line in (Path(__file__).parents[1] / "docs" / "server.md").read_text().splitlines()
        if line.startswith("#")
    ]
    for path in ("/_security/_authenticate", "/news?include_type_name=true"):
        reason = _es_error(await client.get(path), 400)
        named = re.findall(r"docs/server\.md, ([^)]+)\)", reason)
        assert named, reason
        for section in named:
            assert any(heading.startswith(section) for heading in headings), (section, path)


# --- typed_keys --------------------------------------------------------------------------------
TYPED_AGGS = {
    "tags": {
        "terms": {"field": "tag"},
        "aggs": {
            "ranks": {"terms": {"field": "rank"}},
            "scores": {"terms": {"field": "score"}},
            "p": {"percentiles": {"field": "rank", "percents": [50]}},
            "per_step": {"histogram": {"field": "rank", "interval": 2, "keyed": True},
                         "aggs": {"top": {"max": {"field": "score"}}}},
        },
    },
    "flags": {"terms": {"field": "flag"}},
    "nothing": {"terms": {"field": "nosuch"}},
    "mean": {"avg": {"field": "rank"}},
    "spread": {"extended_stats": {"field": "rank"}},
    "few": {"range": {"field": "rank", "ranges": [{"to": 2}]},
            "aggs": {"kinds": {"cardinality": {"field": "tag"}}}},
    "per_day": {"date_histogram": {"field": "day", "calendar_interval": "day"}},
}  # fmt: skip
EXTRA = {
    "d1": {"rank": 1, "score": 0.5, "flag": True, "day": "2024-05-01"},
    "d2": {"rank": 2, "score": 1.0, "flag": False, "day": "2024-05-02"},
    "d3": {"rank": 3, "score": 1.5, "flag": True, "day": "2024-05-02"},
}


def _typed_names(answer: Any) -> set[str]:
    """Every key of ``answer`` with a ``#`` in it, at any depth."""
    if isinstance(answer, dict):
        found = {key for key in answer if "#" in key}
        return found.union(*(_typed_names(value) for value in answer.values()))
    if isinstance(answer, list):
        return set().union(*(_typed_names(value) for value in answer))
    return set()


async def typed_keys_answer(client: httpx.AsyncClient) -> None:
    """typed_keys names each aggregation type#name, sub-aggregations in every bucket too, in
    _search and _msearch; without it the names are as asked. "news" is ``fill``'s."""
    for doc_id, fields in EXTRA.items():
        updated = await client.post(f"/news/_update/{doc_id}?refresh=true", json={"doc": fields})
        assert updated.status_code == 200, updated.text
    body = {"size": 0, "aggs": TYPED_AGGS}
    plain = (await client.post("/news/_search", json=body)).json()["aggregations"]
    typed = await client.post("/news/_search?typed_keys=true", json=body)
    assert typed.status_code == 200, typed.text
    aggs = typed.json()["aggregations"]
    assert list(aggs) == [
        "sterms#tags", "lterms#flags", "sterms#nothing", "avg#mean", "extended_stats#spread",
        "range#few", "date_histogram#per_day",
    ]  # fmt: skip
    assert _typed_names(plain) == set()
    assert _typed_names(aggs) == {
        *aggs, "lterms#ranks", "dterms#scores", "tdigest_percentiles#p", "histogram#per_step",
        "max#top", "cardinality#kinds",
    }  # fmt: skip
    (first, second) = aggs["sterms#tags"]["buckets"]
    assert (first["key"], first["doc_count"]) == ("a", 2)  # d1, d3
    assert [b["key"] for b in first["lterms#ranks"]["buckets"]] == [1, 3]
    # b's one score is 1.0 (answered 1): dterms still, as a's scores are not whole
    assert second["dterms#scores"]["buckets"][0]["doc_count"] == 1
    assert first["histogram#per_step"]["buckets"]["2.0"]["max#top"] == {"value": 1.5}
    assert first["tdigest_percentiles#p"] == plain["tags"]["buckets"][0]["p"]
    assert aggs["avg#mean"] == plain["mean"] and aggs["sterms#nothing"]["buckets"] == []
    ndjson = _ndjson({}, body, {}, {"size": 0, "aggs": {"mean": {"avg": {"field": "rank"}}}})
    many = await client.post("/news/_msearch?typed_keys", content=ndjson, headers=NDJSON)
    assert many.status_code == 200, many.text
    (one, two) = many.json()["responses"]
    assert one["aggregations"] == aggs and two["aggregations"] == {"avg#mean": plain["mean"]}


async def test_typed_keys_names_each_aggregation_with_its_type(client: httpx.AsyncClient) -> None:
    await typed_keys_answer(client)
    for path in ("/news/_search?typed_keys=maybe", "/_msearch?typed_keys=maybe"):
        sent = (
            {"content": _ndjson({}, {}), "headers": NDJSON} if "msearch" in path else {"json": {}}
        )
        said = _es_error(await client.post(path, **sent), 400)  # type: ignore[arg-type]
        assert said.startswith("query-string parameter typed_keys='maybe' must be true or false")
