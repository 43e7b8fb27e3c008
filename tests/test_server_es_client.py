"""The official Elasticsearch client (elasticsearch-py) against a live semrank server: its own
request shapes, product header check and content types, from info() to msearch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serving import live_server

elasticsearch = pytest.importorskip("elasticsearch")

MAPPINGS = {"properties": {"title": {"type": "text"}, "text": {"type": "text"}}}
DOCS = {
    "d1": {"title": "Fleas", "text": "Fleas feed on the blood of mammals and birds.", "tag": "a"},
    "d2": {"title": "Paris", "text": "Paris is the capital of France.", "tag": "b"},
    "d3": {"title": "Larvae", "text": "Flea larvae eat debris, not blood.", "tag": "a"},
    "d4": {"title": "Oceans", "text": "Oceans are deep and cold.", "tag": "b"},
}
FLEA_QUERY = {"match": {"text": "flea blood"}}


@pytest.fixture
def es(reranker: Any, tmp_path: Path) -> Iterator[Any]:
    """A client of a live server (the bundled model as "minilm", indexes in ``tmp_path``)
    holding the index "news", filled by helpers.bulk."""
    pytest.importorskip("bm25s")
    from elasticsearch import Elasticsearch, helpers

    from semrank.pipeline import forget_open_indexes
    from semrank.server import ServerConfig, create_app

    app = create_app(ServerConfig(index_home=str(tmp_path)), rerankers={"minilm": reranker})
    with live_server(app) as url, Elasticsearch(url, request_timeout=60) as client:
        client.indices.create(index="news", mappings=MAPPINGS)
        actions = [{"_index": "news", "_id": i, "_source": doc} for i, doc in DOCS.items()]
        assert helpers.bulk(client, actions) == (len(DOCS), [])
        yield client
    forget_open_indexes()


def test_info_and_the_index_probes(es: Any) -> None:
    """What a client or tool asks before it searches: the cluster, its health, whether an
    index is there, its mappings and settings, and the _cat table."""
    from elasticsearch import NotFoundError

    assert es.info()["version"]["number"].split(".")[0] in ("8", "9")
    assert es.indices.exists(index="news") and not es.indices.exists(index="nosuch")
    es.indices.put_alias(index="news", name="live")
    got = es.indices.get(index="live")  # an alias answers by its index's own name
    assert list(got) == ["news"]
    assert got["news"]["aliases"] == {"live": {}}
    assert got["news"]["settings"]["index"]["number_of_shards"] == "1"
    properties = got["news"]["mappings"]["properties"]
    assert properties == {"title": {"type": "text"}, "text": {"type": "text"}}
    assert got["news"]["mappings"]["_meta"]["semrank"]["untyped_fields"] == ["tag"]
    assert es.indices.get_mapping(index="news")["news"]["mappings"]["properties"] == properties
    health = es.cluster.health(wait_for_status="green")
    assert health["status"] == "green" and health["active_primary_shards"] == 1
    assert es.cluster.health(index="news", wait_for_status="yellow")["status"] == "green"
    (row,) = es.cat.indices(format="json")
    assert (row["index"], row["health"], row["docs.count"]) == ("news", "green", str(len(DOCS)))
    table = es.cat.indices(v=True)
    assert table.splitlines()[0].split()[:3] == ["health", "status", "index"]
    assert table.splitlines()[1].split()[:3] == ["green", "open", "news"]
    with pytest.raises(NotFoundError) as missing:
        es.indices.get(index="nosuch")
    assert missing.value.meta.status == 404 and "nosuch" in str(missing.value)


def test_documents_one_by_one(es: Any) -> None:
    from elasticsearch import NotFoundError

    created = es.index(index="news", id="d9", document={"text": "Moths eat wool."})
    assert created["result"] == "created"
    assert es.get(index="news", id="d9")["_source"] == {"text": "Moths eat wool."}
    assert es.count(index="news")["count"] == len(DOCS) + 1
    assert es.delete(index="news", id="d9")["result"] == "deleted"
    with pytest.raises(NotFoundError):
        es.get(index="news", id="d9")
    assert es.count(index="news", query={"term": {"tag": "a"}})["count"] == 2


def test_search_and_msearch_answer_alike(es: Any, reranker: Any) -> None:
    """A query and a retriever tree (re-ranked by the served model) through search(); the same
    searches through msearch() answer the same hits, and a search of a missing index fails
    alone."""
    query_hits = es.search(index="news", query=FLEA_QUERY, size=3)["hits"]["hits"]
    assert {hit["_id"] for hit in query_hits} == {"d1", "d3"}
    tree = {
        "text_similarity_reranker": {
            "retriever": {"standard": {"query": FLEA_QUERY}},
            "field": "text",
            "inference_text": "what do fleas eat",
            "inference_id": "minilm",
            "rank_window_size": 10,
        }
    }
    reranked = es.search(index="news", retriever=tree)["hits"]["hits"]
    texts = [hit["_source"]["text"] for hit in reranked]
    scores = reranker.score("what do fleas eat", texts).tolist()
    assert [hit["_score"] for hit in reranked] == pytest.approx(scores, abs=1e-5)
    answer = es.msearch(
        searches=[
            {"index": "news"},
            {"query": FLEA_QUERY, "size": 3},
            {"index": "nosuch"},
            {"query": FLEA_QUERY},
            {},
            {"retriever": tree},
        ],
        index="news",
    )
    first, missing, third = answer["responses"]
    assert first["status"] == 200 and first["hits"]["hits"] == query_hits
    assert missing["status"] == 404 and "nosuch" in missing["error"]["reason"]
    assert [hit["_id"] for hit in third["hits"]["hits"]] == [hit["_id"] for hit in reranked]
    assert [hit["_score"] for hit in third["hits"]["hits"]] == pytest.approx(scores, abs=1e-5)


def test_a_sniffing_client_finds_the_one_node_and_reads_typed_aggregations(es: Any) -> None:
    """sniff_on_start asks GET /_nodes/_all/http and connects to the address it answers;
    typed_keys, cat's s and h and _stats through the client's own calls."""
    from elastic_transport import SniffOptions
    from elasticsearch import Elasticsearch
    from elasticsearch._sync.client._base import default_sniff_callback

    served = es.transport.node_pool.all()[0].config
    url = f"{served.scheme}://{served.host}:{served.port}"
    with Elasticsearch(url, sniff_on_start=True, request_timeout=60) as sniffing:
        found = default_sniff_callback(sniffing.transport, SniffOptions(True, None))
        assert [(node.host, node.port) for node in found] == [(served.host, served.port)]
        answer = sniffing.search(
            index="news", size=0, typed_keys=True, aggs={"tags": {"terms": {"field": "tag"}}}
        )
    assert [b["key"] for b in answer["aggregations"]["sterms#tags"]["buckets"]] == ["a", "b"]
    rows = es.cat.indices(format="json", h="i,dc", s="dc:desc")
    assert list(rows) == [{"i": "news", "dc": str(len(DOCS))}]
    stats = es.indices.stats(index="news", metric="docs")
    assert stats["indices"]["news"]["primaries"]["docs"]["count"] == len(DOCS)


def test_the_search_options_a_client_sends_by_default_are_read(es: Any) -> None:
    """elasticsearch-py's search with track_total_hits, source filters, fields, min_score,
    timeout and rest_total_hits_as_int, as dashboards and LangChain's store send them."""
    from elasticsearch import BadRequestError

    found = es.search(
        index="news",
        query=FLEA_QUERY,
        size=1,
        track_total_hits=True,
        source=["title"],
        fields=["tag"],
        timeout="5s",
    )
    assert found["hits"]["total"] == {"value": 2, "relation": "eq"}  # of d1 and d3, not 1
    hit = found["hits"]["hits"][0]
    assert hit["_source"] == {"title": DOCS[hit["_id"]]["title"]} and hit["fields"] == {
        "tag": ["a"]
    }
    best = found["hits"]["hits"][0]["_score"]
    above = es.search(index="news", query=FLEA_QUERY, min_score=best + 1e-3)["hits"]["hits"]
    at_best = es.search(index="news", query=FLEA_QUERY, min_score=best)["hits"]["hits"]
    assert above == [] and len(at_best) == 2  # both fleas score alike
    untracked = es.search(index="news", query=FLEA_QUERY, track_total_hits=False)
    assert "total" not in untracked["hits"]
    as_int = es.search(index="news", query=FLEA_QUERY, rest_total_hits_as_int=True)
    assert as_int["hits"]["total"] == 2
    with pytest.raises(BadRequestError, match="explain: true is not supported"):
        es.search(index="news", query=FLEA_QUERY, explain=True)
