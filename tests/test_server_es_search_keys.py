"""The _search body keys Elasticsearch clients and UIs send by default: track_total_hits (and
rest_total_hits_as_int), _source as a field filter, fields, timeout, min_score, and the keys
semrank refuses naming what it does instead."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from starlette.requests import Request

pytestmark = pytest.mark.anyio

MAPPINGS = {"properties": {"text": {"type": "text"}, "tag": {"type": "keyword"}}}
# 12 documents about fleas (more than a page of 10), 3 others.
FLEAS = {
    f"f{n}": {
        "text": "fleas " * (1 + n % 4) + "bite",
        "tag": "odd" if n % 2 else "even",
        "meta": {"lang": "en", "secret": n, "tags": ["x", f"t{n}"]},
    }
    for n in range(12)
}
OTHERS = {f"o{n}": {"text": f"oceans are deep {n}", "tag": "sea"} for n in range(3)}
FLEA_QUERY = {"match": {"text": "fleas"}}


@pytest.fixture
async def client(index_client: httpx.AsyncClient) -> httpx.AsyncClient:
    created = await index_client.put("/docs", json={"mappings": MAPPINGS})
    assert created.status_code == 200, created.text
    lines = []
    for doc_id, doc in {**FLEAS, **OTHERS}.items():
        lines += [json.dumps({"index": {"_id": doc_id}}), json.dumps(doc)]
    bulk = await index_client.post(
        "/docs/_bulk",
        content="\n".join(lines) + "\n",
        headers={"content-type": "application/x-ndjson"},
    )
    assert bulk.status_code == 200 and not bulk.json()["errors"], bulk.text
    return index_client


async def _search(client: httpx.AsyncClient, body: dict[str, Any], query: str = "") -> Any:
    found = await client.post(f"/docs/_search{query}", json=body)
    assert found.status_code == 200, found.text
    return found.json()


async def _refused(client: httpx.AsyncClient, body: dict[str, Any], query: str = "") -> str:
    refused = await client.post(f"/docs/_search{query}", json=body)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["type"] == "invalid_request", refused.text
    return str(refused.json()["error"]["reason"])


async def test_track_total_hits_counts_every_match_as_elasticsearch(
    client: httpx.AsyncClient,
) -> None:
    """The total counted every match, not the hits ranked (2 "gte" for a page of 2 of 12)."""
    counted = await client.post("/docs/_count", json={"query": FLEA_QUERY})
    matches = counted.json()["count"]
    assert matches == len(FLEAS)
    page = {"query": FLEA_QUERY, "size": 2}
    exact = {"value": matches, "relation": "eq"}
    assert (await _search(client, page))["hits"]["total"] == exact  # the default: up to 10,000
    assert (await _search(client, {**page, "track_total_hits": True}))["hits"]["total"] == exact
    capped = await _search(client, {**page, "track_total_hits": 5})
    assert capped["hits"]["total"] == {"value": 5, "relation": "gte"}
    assert (await _search(client, {**page, "track_total_hits": 50}))["hits"]["total"] == exact
    for untracked in (False, -1):
        none = await _search(client, {**page, "track_total_hits": untracked})
        assert "total" not in none["hits"] and len(none["hits"]["hits"]) == 2
    # The query string's overrides the body's; rest_total_hits_as_int gives a number.
    said = await _search(client, {**page, "track_total_hits": True}, "?track_total_hits=3")
    assert said["hits"]["total"] == {"value": 3, "relation": "gte"}
    as_int = await _search(client, page, "?rest_total_hits_as_int=true")
    assert as_int["hits"]["total"] == matches
    every = await _search(client, {"size": 1})  # match_all: every document
    assert every["hits"]["total"] == {"value": len(FLEAS) + len(OTHERS), "relation": "eq"}
    bad = await _refused(client, page, "?track_total_hits=lots")
    assert "track_total_hits='lots' must be true, false or a number" in bad
    assert "track_total_hits" in await _refused(client, {**page, "track_total_hits": -2})


async def test_source_takes_fields_lists_and_includes_excludes(
    client: httpx.AsyncClient,
) -> None:
    """``_source`` as a field, a list with wildcards, an includes/excludes object (and
    stored_fields: "_none_" as false); the query string's filters override the body's."""
    one = {"query": {"ids": {"values": ["f1"]}}}

    async def source(extra: dict[str, Any], query: str = "") -> Any:
        hits = (await _search(client, {**one, **extra}, query))["hits"]["hits"]
        return hits[0].get("_source", "absent")

    whole = FLEAS["f1"]
    assert await source({}) == whole and await source({"_source": True}) == whole
    assert await source({"_source": "tag"}) == {"tag": "odd"}
    assert await source({"_source": ["ta*", "meta.lang"]}) == {"tag": "odd", "meta": {"lang": "en"}}
    filtered = {"_source": {"includes": ["meta.*"], "excludes": ["meta.secret"]}}
    assert await source(filtered) == {"meta": {"lang": "en", "tags": ["x", "t1"]}}
    assert await source({"_source": {"excludes": "meta"}}) == {"text": whole["text"], "tag": "odd"}
    assert await source({"_source": False}) == "absent"
    assert await source({"stored_fields": "_none_"}) == "absent"
    assert await source({"_source": ["text"]}, "?_source_includes=tag") == {"tag": "odd"}
    assert await source({"_source": ["text"]}, "?_source=false") == "absent"
    bad = await _refused(client, {**one, "_source": 3})
    assert "_source: give true, false, a field" in bad
    stored = await _refused(client, {**one, "stored_fields": ["tag"]})
    assert "stored_fields ['tag'] is not supported" in stored and '"fields"' in stored


async def test_fields_answers_each_field_as_an_array_of_its_values(
    client: httpx.AsyncClient,
) -> None:
    """ES 8's preferred retrieval: hits carry fields: {"tag": ["odd"]}, an object's leaves by
    their dotted paths, with or without _source."""
    body = {"query": {"ids": {"values": ["f1", "o0"]}}, "sort": [{"tag": "asc"}]}
    asked = {**body, "fields": ["tag", {"field": "meta.*"}], "_source": False}
    hits = (await _search(client, asked))["hits"]["hits"]
    assert [(hit["_id"], "_source" in hit) for hit in hits] == [("f1", False), ("o0", False)]
    assert hits[0]["fields"] == {
        "tag": ["odd"],
        "meta.lang": ["en"],
        "meta.secret": [1],
        "meta.tags": ["x", "t1"],
    }
    assert hits[1]["fields"] == {"tag": ["sea"]}
    plain = (await _search(client, body))["hits"]["hits"]
    assert all("fields" not in hit and "_source" in hit for hit in plain)
    formatted = {**body, "fields": [{"field": "tag", "format": "x"}]}
    assert "a format is not supported" in await _refused(client, formatted)


async def test_min_score_drops_hits_below_it_before_the_page(client: httpx.AsyncClient) -> None:
    everything = (await _search(client, {"query": FLEA_QUERY, "size": 20}))["hits"]["hits"]
    scores = sorted({hit["_score"] for hit in everything}, reverse=True)
    floor = (scores[1] + scores[2]) / 2  # the two best scores pass it
    above = [hit for hit in everything if hit["_score"] >= floor]
    assert 0 < len(above) < len(everything)
    kept = await _search(client, {"query": FLEA_QUERY, "size": 20, "min_score": floor})
    assert kept["hits"]["hits"] == above
    assert kept["hits"]["total"] == {"value": len(above), "relation": "eq"}
    page = await _search(client, {"query": FLEA_QUERY, "from": 1, "size": 20, "min_score": floor})
    assert page["hits"]["hits"] == above[1:]
    sorted_body = {"query": FLEA_QUERY, "min_score": 1, "sort": [{"tag": "asc"}]}
    assert "min_score with a sort by fields" in await _refused(client, sorted_body)
    aggregated = {"query": FLEA_QUERY, "min_score": 1, "aggs": {"t": {"terms": {"field": "tag"}}}}
    assert "min_score with aggregations" in await _refused(client, aggregated)


async def test_timeout_is_a_deadline_and_false_explain_or_profile_ask_nothing(
    client: httpx.AsyncClient,
) -> None:
    base = {"query": FLEA_QUERY, "size": 1}
    for taken in ({"timeout": "2s"}, {"explain": False}, {"profile": False}):
        assert len((await _search(client, {**base, **taken}))["hits"]["hits"]) == 1
    assert len((await _search(client, base, "?timeout=500ms"))["hits"]["hits"]) == 1
    assert "failed to parse [timeout]" in await _refused(client, {**base, "timeout": "soon"})
    for key in ("explain", "profile"):
        said = await _refused(client, {**base, key: True})
        assert f"{key}: true is not supported" in said and f"send {key}: false" in said


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("docvalue_fields", ["tag"], "ask for the fields with"),
        ("terminate_after", 10, "does not stop a search early"),
        ("suggest", {"s": {"text": "flea"}}, "no suggesters"),
        ("script_fields", {"x": {}}, "runs no scripts"),
        ("runtime_mappings", {"x": {}}, "no mappings to add runtime fields"),
        ("rescore", {"window_size": 5}, "text_similarity_reranker"),
        ("indices_boost", [{"docs": 2}], "search each index apart"),
    ],
)
async def test_keys_semrank_cannot_serve_are_refused_naming_what_to_do(
    client: httpx.AsyncClient, key: str, value: Any, said: str
) -> None:
    refused = await _refused(client, {"query": FLEA_QUERY, key: value})
    assert refused.startswith(f"{key}: unknown key;") and said in refused


def _request(query: bytes, server_timeout_s: float) -> Request:
    config = SimpleNamespace(request_timeout_s=server_timeout_s)
    app = SimpleNamespace(state=SimpleNamespace(service=SimpleNamespace(config=config)))
    return Request({"type": "http", "query_string": query, "app": app, "headers": []})


def test_a_timeout_is_held_to_the_servers() -> None:
    from semrank.server._es_body import timeout_ms
    from semrank.server.schemas import EsSearchRequest

    body = EsSearchRequest.model_validate({"timeout": "2s"})
    assert timeout_ms(body, _request(b"", 30), query_string=True) == 2_000
    assert timeout_ms(body, _request(b"", 1.5), query_string=True) == 1_500  # the server's
    assert timeout_ms(body, _request(b"", 0), query_string=True) == 2_000  # none there
    assert timeout_ms(body, _request(b"timeout=250ms", 30), query_string=True) == 250
    assert timeout_ms(body, _request(b"timeout=250ms", 30), query_string=False) == 2_000
    untimed = EsSearchRequest.model_validate({})
    assert timeout_ms(untimed, _request(b"", 0), query_string=True) is None


async def test_msearch_scroll_and_pit_pages_shape_their_totals(client: httpx.AsyncClient) -> None:
    lines = [
        {},
        {"query": FLEA_QUERY, "size": 1},
        {},
        {"query": FLEA_QUERY, "track_total_hits": False},
    ]
    sent = "".join(json.dumps(line) + "\n" for line in lines)
    headers = {"content-type": "application/x-ndjson"}
    many = await client.post(
        "/docs/_msearch?rest_total_hits_as_int=true", content=sent, headers=headers
    )
    first, second = many.json()["responses"]
    assert first["hits"]["total"] == len(FLEAS) and "total" not in second["hits"]
    scrolled = await _search(
        client,
        {"query": FLEA_QUERY, "size": 5, "_source": ["tag"], "fields": ["meta.lang"]},
        "?scroll=1m&rest_total_hits_as_int=true",
    )
    assert scrolled["hits"]["total"] == len(FLEAS)
    hit = scrolled["hits"]["hits"][0]
    assert set(hit["_source"]) == {"tag"} and hit["fields"] == {"meta.lang": ["en"]}
    after = await client.post("/_search/scroll", json={"scroll_id": scrolled["_scroll_id"]})
    assert after.json()["hits"]["total"] == len(FLEAS)  # the first request's shape
    pit = (await client.post("/docs/_pit?keep_alive=1m")).json()["id"]
    paged = await client.post(
        "/_search", json={"pit": {"id": pit}, "query": FLEA_QUERY, "track_total_hits": 4}
    )
    assert paged.json()["hits"]["total"] == {"value": 4, "relation": "gte"}
    refused = await client.post(
        "/_search", json={"pit": {"id": pit}, "query": FLEA_QUERY, "min_score": 0.1}
    )
    assert "min_score is not supported in a scroll or point in time" in refused.text


async def test_track_total_hits_as_the_words_elasticsearch_reads(
    client: httpx.AsyncClient,
) -> None:
    """Elasticsearch reads a body's "true" / "false" (strings) as the booleans; they were a 400."""
    page = {"query": FLEA_QUERY, "size": 1}
    counted = await _search(client, {**page, "track_total_hits": "true"})
    assert counted["hits"]["total"] == {"value": len(FLEAS), "relation": "eq"}
    assert "total" not in (await _search(client, {**page, "track_total_hits": "false"}))["hits"]
    assert "track_total_hits" in await _refused(client, {**page, "track_total_hits": "lots"})


async def test_the_query_strings_source_filters_replace_the_bodys(
    client: httpx.AsyncClient,
) -> None:
    """As Elasticsearch's _search: any of ?_source, ?_source_includes, ?_source_excludes
    replaces the body's _source whole (a body's false or includes do not linger beside it)."""
    one = {"query": {"ids": {"values": ["f1"]}}}

    async def source(extra: dict[str, Any], query: str) -> Any:
        hits = (await _search(client, {**one, **extra}, query))["hits"]["hits"]
        return hits[0].get("_source", "absent")

    assert await source({"_source": False}, "?_source_includes=tag") == {"tag": "odd"}
    everything_but_tag = {key: value for key, value in FLEAS["f1"].items() if key != "tag"}
    kept = await source({"_source": {"includes": ["tag"]}}, "?_source_excludes=tag")
    assert kept == everything_but_tag
    kept = await source({"_source": {"excludes": ["text"]}}, "?_source_includes=text")
    assert kept == {"text": FLEAS["f1"]["text"]}


async def test_fields_matching_nothing_leave_fields_out(client: httpx.AsyncClient) -> None:
    """Elasticsearch writes no fields key on a hit where none of the asked fields has a value
    (an object's own name, a field the document lacks); semrank wrote "fields": {}."""
    body = {"query": {"ids": {"values": ["f1", "o0"]}}, "sort": [{"tag": "asc"}]}
    hits = (await _search(client, {**body, "fields": ["meta"]}))["hits"]["hits"]
    assert all("fields" not in hit for hit in hits)
    hits = (await _search(client, {**body, "fields": ["meta.lang"]}))["hits"]["hits"]
    assert hits[0]["fields"] == {"meta.lang": ["en"]} and "fields" not in hits[1]


async def test_timeout_minus_one_and_zero_as_elasticsearch_reads_them(
    client: httpx.AsyncClient,
) -> None:
    """Elasticsearch's time values "-1" (no timeout) and "0" were refused as unparsable."""
    base = {"query": FLEA_QUERY, "size": 1}
    assert len((await _search(client, {**base, "timeout": "-1"}))["hits"]["hits"]) == 1
    assert len((await _search(client, base, "?timeout=-1"))["hits"]["hits"]) == 1
    assert "failed to parse [timeout]" in await _refused(client, {**base, "timeout": "-2"})


def test_timeout_minus_one_is_the_servers_and_zero_the_shortest() -> None:
    from semrank.server._es_body import timeout_ms
    from semrank.server.schemas import EsSearchRequest

    unbounded = EsSearchRequest.model_validate({"timeout": "-1"})
    assert timeout_ms(unbounded, _request(b"", 30), query_string=True) == 30_000
    assert timeout_ms(unbounded, _request(b"", 0), query_string=True) is None
    zero = EsSearchRequest.model_validate({"timeout": "0"})
    assert timeout_ms(zero, _request(b"", 30), query_string=True) == 1


def test_a_timeout_longer_than_a_day_is_no_deadline_of_its_own() -> None:
    """A search timeout over a day ("2d", or a number of thousands of digits) was refused with
    the scroll keep-alive's wording ("Keep alive for request ... is too large"); it is now no
    deadline of the search's own, the server's --timeout still holding."""
    from semrank.server._es_body import timeout_ms
    from semrank.server.schemas import EsSearchRequest

    for given in ("2d", "48h", "9" * 5000 + "s"):
        long = EsSearchRequest.model_validate({"timeout": given})
        assert timeout_ms(long, _request(b"", 30), query_string=True) == 30_000
        assert timeout_ms(long, _request(b"", 0), query_string=True) is None
    hour = EsSearchRequest.model_validate({"timeout": "1h"})
    assert timeout_ms(hour, _request(b"", 30), query_string=True) == 30_000
    assert timeout_ms(hour, _request(b"", 0), query_string=True) == 3_600_000
