"""Elasticsearch's scroll and point-in-time reads (?scroll=, /_search/scroll, /_pit, a body's
pit), as elasticsearch.helpers.scan and reindex scripts call them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving import app_client, live_server
from test_server_es_docs import _es_error

pytestmark = pytest.mark.anyio

MAPPINGS = {"properties": {"text": {"type": "text"}, "tenant": {"type": "keyword"}}}
DOCS = 300  # d000..d299; every third holds "flea"


def _doc(n: int) -> dict[str, Any]:
    words = "flea blood" if n % 3 == 0 else "ocean water"
    return {
        "text": f"{words} {'flea ' * (n % 7) if n % 3 == 0 else ''}number {n}",
        "tenant": f"t{n % 4}",
    }


@pytest.fixture
async def client(tmp_path: Path, reranker: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(
        tmp_path, reranker, max_search_contexts=3, max_search_context_hits=700
    ) as http:
        await _fill(http)
        yield http


async def _fill(
    client: httpx.AsyncClient,
    name: str = "docs",
    count: int = DOCS,
    made: tuple[str, Callable[[int], dict[str, Any]]] = ("d", _doc),
) -> None:
    """``count`` documents in a new index: ``made``'s prefix and number are each one's id,
    its function of the number its source."""
    created = await client.put(f"/{name}", json={"mappings": MAPPINGS})
    assert created.status_code == 200, created.text
    prefix, document = made
    lines = []
    for n in range(count):
        lines += [{"index": {"_id": f"{prefix}{n:03d}"}}, document(n)]
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    done = await client.post(
        f"/{name}/_bulk", content=body, headers={"content-type": "application/x-ndjson"}
    )
    assert done.status_code == 200 and done.json()["errors"] is False, done.text


async def _scroll_all(
    client: httpx.AsyncClient, body: dict[str, Any], path: str = "/docs/_search"
) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """Every hit of a scroll, its first answer, and its id."""
    first = await client.post(f"{path}?scroll=1m", json=body)
    assert first.status_code == 200, first.text
    answer = first.json()
    scroll_id, hits = answer["_scroll_id"], list(answer["hits"]["hits"])
    page = answer
    while page["hits"]["hits"]:
        got = await client.post("/_search/scroll", json={"scroll": "1m", "scroll_id": scroll_id})
        assert got.status_code == 200, got.text
        page = got.json()
        assert page["_scroll_id"] == scroll_id
        hits += page["hits"]["hits"]
    return hits, answer, scroll_id


async def test_a_scroll_reads_every_document_once_in_pages(client: httpx.AsyncClient) -> None:
    """_search with ?scroll= answered from/size only: an export stopped at 10,000 hits and
    paged by re-running the search; now pages of size come until the listing is through."""
    hits, first, _ = await _scroll_all(client, {"size": 37, "query": {"match_all": {}}})
    assert len(first["hits"]["hits"]) == 37
    assert first["hits"]["total"] == {"value": DOCS, "relation": "eq"}
    ids = [hit["_id"] for hit in hits]
    assert sorted(ids) == [f"d{n:03d}" for n in range(DOCS)] and len(ids) == len(set(ids))
    assert ids == sorted(ids)  # the store's order: first written first
    assert hits[5]["_source"] == _doc(5) and hits[5]["_index"] == "docs"


async def test_a_filter_and_a_match_scroll_as_their_searches_rank(
    client: httpx.AsyncClient,
) -> None:
    tenant = {"query": {"term": {"tenant": "t1"}}, "size": 20}
    hits, first, _ = await _scroll_all(client, tenant)
    assert [h["_id"] for h in hits] == [f"d{n:03d}" for n in range(DOCS) if n % 4 == 1]
    assert first["hits"]["total"]["value"] == DOCS // 4
    match = {"query": {"match": {"text": "flea"}}, "size": 15}
    hits, first, _ = await _scroll_all(client, match)
    fleas = [f"d{n:03d}" for n in range(DOCS) if n % 3 == 0]
    assert sorted(h["_id"] for h in hits) == fleas and first["hits"]["total"]["value"] == 100
    scores = [h["_score"] for h in hits]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1]
    # The same ranking a plain search gives for its first page.
    plain = await client.post("/docs/_search", json={**match, "size": 15})
    assert [h["_id"] for h in plain.json()["hits"]["hits"]] == [h["_id"] for h in hits[:15]]
    # helpers.scan's sort: the matched documents in the store's order, unscored.
    hits, first, _ = await _scroll_all(client, {**match, "sort": "_doc"})
    assert [h["_id"] for h in hits] == fleas
    assert hits[0]["_score"] is None and hits[0]["sort"] == [0] and hits[1]["sort"] == [1]


async def test_deleted_documents_are_skipped_and_pages_stay_full(
    client: httpx.AsyncClient,
) -> None:
    first = await client.post("/docs/_search?scroll=1m", json={"size": 10})
    scroll_id = first.json()["_scroll_id"]
    for n in range(10, 25):  # all of the next page and half of the one after
        assert (await client.delete(f"/docs/_doc/d{n:03d}")).status_code == 200
    page = await client.post("/_search/scroll", json={"scroll_id": scroll_id})
    assert [h["_id"] for h in page.json()["hits"]["hits"]] == [f"d{n:03d}" for n in range(25, 35)]


async def test_expired_cleared_and_unknown_scrolls_are_404(client: httpx.AsyncClient) -> None:
    first = await client.post("/docs/_search?scroll=300ms", json={"size": 5})
    scroll_id = first.json()["_scroll_id"]
    await asyncio.sleep(0.5)
    expired = await client.post("/_search/scroll", json={"scroll_id": scroll_id})
    assert "No search context found" in _es_error(expired, 404, "search_context_missing_exception")
    unknown = await client.get("/_search/scroll", params={"scroll_id": "bm9wZQ"})
    _es_error(unknown, 404, "search_context_missing_exception")
    kept = (await client.post("/docs/_search?scroll=1m", json={"size": 5})).json()["_scroll_id"]
    other = (await client.post("/docs/_search?scroll=1m", json={"size": 5})).json()["_scroll_id"]
    cleared = await client.request("DELETE", "/_search/scroll", json={"scroll_id": [kept]})
    assert cleared.status_code == 200 and cleared.json() == {"succeeded": True, "num_freed": 1}
    again = await client.request("DELETE", "/_search/scroll", json={"scroll_id": kept})
    assert again.status_code == 404 and again.json()["num_freed"] == 0
    gone = await client.post("/_search/scroll", json={"scroll_id": kept})
    _es_error(gone, 404, "search_context_missing_exception")
    assert (await client.post("/_search/scroll", json={"scroll_id": other})).status_code == 200
    every = await client.delete("/_search/scroll/_all")
    assert every.json() == {"succeeded": True, "num_freed": 1}


async def test_open_contexts_and_the_hits_they_hold_are_capped(
    client: httpx.AsyncClient,
) -> None:
    """3 contexts and 700 hits at most (the fixture's limits): a listing of more hits than
    the limit is a 400; one past what the others leave, or a fourth context, a 429."""
    await _fill(client, "more", 500)
    over = await client.post("/docs,more/_search?scroll=1m", json={"size": 5})
    assert "more than 700 hits" in _es_error(over, 400, "invalid_request")
    held = await client.post("/more/_search?scroll=1m", json={"size": 5})
    assert held.status_code == 200
    no_room = await client.post("/docs/_search?scroll=1m", json={"size": 5})
    _es_error(no_room, 429, "too_many_scroll_contexts_exception")
    for _ in range(2):
        small = await client.post(
            "/docs/_search?scroll=1m", json={"query": {"ids": {"values": ["d001"]}}}
        )
        assert small.status_code == 200, small.text
    fourth = await client.post(
        "/docs/_search?scroll=1m", json={"query": {"ids": {"values": ["d001"]}}}
    )
    assert "too many scroll contexts" in _es_error(
        fourth, 429, "too_many_scroll_contexts_exception"
    )


async def test_a_scroll_refuses_what_it_cannot_page(client: httpx.AsyncClient) -> None:
    for body, said in (
        ({"from": 10}, "using [from] is not allowed in a scroll context"),
        ({"size": 0}, "[size] cannot be [0] in a scroll context"),
        ({"aggs": {"t": {"terms": {"field": "tenant"}}}}, "aggregations are not supported"),
        ({"sort": ["_doc", {"tenant": "asc"}]}, "sort by the field first"),
        ({"sort": [{"_shard_doc": "desc"}]}, "only asc is supported"),
    ):
        refused = await client.post("/docs/_search?scroll=1m", json=body)
        assert said in _es_error(refused, 400, "invalid_request")
    bad = await client.post("/docs/_search?scroll=soon", json={})
    assert "as a time value" in _es_error(bad, 400, "invalid_request")
    long = await client.post("/docs/_search?scroll=2d", json={})
    assert "too large" in _es_error(long, 400, "invalid_request")
    # Without scroll or a point in time a sort is a sorted search's (test_sort.py), not a 400.
    by_doc = await client.post("/docs/_search", json={"sort": "_doc"})
    assert by_doc.status_code == 200, by_doc.text


async def test_a_point_in_time_pages_by_from_and_by_search_after(
    client: httpx.AsyncClient,
) -> None:
    opened = await client.post("/docs/_pit?keep_alive=1m")
    assert opened.status_code == 200, opened.text
    pit = opened.json()["id"]
    body = {
        "pit": {"id": pit, "keep_alive": "1m"},
        "query": {"match": {"text": "flea"}},
        "size": 30,
    }
    first = (await client.post("/_search", json=body)).json()
    assert first["pit_id"] == pit and first["hits"]["total"]["value"] == 100
    second = (await client.post("/_search", json={**body, "from": 30})).json()
    ids = [h["_id"] for h in first["hits"]["hits"] + second["hits"]["hits"]]
    assert len(set(ids)) == 60
    # search_after over _shard_doc: the store's order, every hit once, unaffected by writes.
    sorted_body = {**body, "sort": [{"_shard_doc": "asc"}]}
    seen: list[str] = []
    page = (await client.post("/_search", json=sorted_body)).json()["hits"]["hits"]
    await client.put("/docs/_doc/d000x", json={"text": "flea"})  # added since: not listed
    while page:
        seen += [h["_id"] for h in page]
        after = {**sorted_body, "search_after": page[-1]["sort"]}
        page = (await client.post("/_search", json=after)).json()["hits"]["hits"]
    assert seen == [f"d{n:03d}" for n in range(DOCS) if n % 3 == 0]
    with_index = await client.post("/docs/_search", json=body)
    assert "[indices] cannot be used with point in time" in _es_error(
        with_index, 400, "invalid_request"
    )
    closed = await client.request("DELETE", "/_pit", json={"id": pit})
    assert closed.json() == {"succeeded": True, "num_freed": 1}
    _es_error(await client.post("/_search", json=body), 404, "search_context_missing_exception")


async def test_helpers_scan_exports_an_index_over_a_real_server(
    tmp_path: Path, reranker: Any
) -> None:
    """elasticsearch-py's helpers.scan (search ?scroll=, /_search/scroll, clear_scroll)."""
    elasticsearch = pytest.importorskip(
        "elasticsearch", reason="the official elasticsearch client is not installed"
    )
    from elasticsearch import helpers

    async with app_client(tmp_path, reranker) as http:
        await _fill(http)
        app = http._transport.app  # type: ignore[attr-defined]
        with live_server(app) as url, elasticsearch.Elasticsearch(url) as es:
            scan = helpers.scan(es, index="docs", size=40, scroll="1m")
            found = await asyncio.to_thread(list, scan)
        assert sorted(hit["_id"] for hit in found) == [f"d{n:03d}" for n in range(DOCS)]
        assert app.state.search_contexts.room() == app.state.search_contexts.max_hits


async def test_time_values_too_long_to_convert_are_400_not_500(
    client: httpx.AsyncClient,
) -> None:
    """A scroll or keep_alive of hundreds of digits overflowed float (thousands: int()) into
    a 500; digits of other scripts passed as a number; Elasticsearch reads "1M" as "1m"."""
    for value in ("9" * 5000 + "m", "9" * 400 + "m", "9" * 30 + "nanos"):
        refused = await client.post(f"/docs/_search?scroll={value}", json={"size": 5})
        assert "too large" in _es_error(refused, 400, "invalid_request")
        pit = await client.post(f"/docs/_pit?keep_alive={value}")
        assert "too large" in _es_error(pit, 400, "invalid_request")
    arabic = await client.post("/docs/_search?scroll=\u0661m", json={"size": 5})
    assert "as a time value" in _es_error(arabic, 400, "invalid_request")
    upper = await client.post("/docs/_search?scroll=1M", json={"size": 5})
    assert upper.status_code == 200 and len(upper.json()["hits"]["hits"]) == 5


async def test_pages_asked_at_once_on_one_scroll_id_hold_different_hits(
    client: httpx.AsyncClient,
) -> None:
    """Two /_search/scroll requests at once both read from the same position: the same hits
    twice (and the scroll ended early); now each answers its own page."""
    first = (await client.post("/docs/_search?scroll=1m", json={"size": 20})).json()
    scroll_id, seen = first["_scroll_id"], [h["_id"] for h in first["hits"]["hits"]]
    while True:
        pages = await asyncio.gather(
            *(client.post("/_search/scroll", json={"scroll_id": scroll_id}) for _ in range(3))
        )
        found = [h["_id"] for page in pages for h in page.json()["hits"]["hits"]]
        if not found:
            break
        seen += found
    assert sorted(seen) == [f"d{n:03d}" for n in range(DOCS)]


async def test_scroll_ids_in_the_path_as_elasticsearch_still_takes_them(
    client: httpx.AsyncClient,
) -> None:
    """GET / POST / DELETE /_search/scroll/{id} (deprecated in Elasticsearch 7, still served)
    were a 404 "no route"."""
    t1 = {"query": {"term": {"tenant": "t1"}}, "size": 5}  # d001, d005, d009...
    ids = [
        (await client.post("/docs/_search?scroll=1m", json=t1)).json()["_scroll_id"]
        for _ in range(3)
    ]
    got = await client.get(f"/_search/scroll/{ids[0]}")
    assert got.status_code == 200 and got.json()["hits"]["hits"][0]["_id"] == "d021"
    posted = await client.post(f"/_search/scroll/{ids[0]}", params={"scroll": "1m"})
    assert posted.status_code == 200 and posted.json()["hits"]["hits"][0]["_id"] == "d041"
    cleared = await client.delete(f"/_search/scroll/{ids[0]},{ids[1]}")
    assert cleared.status_code == 200 and cleared.json()["num_freed"] == 2
    _es_error(
        await client.get(f"/_search/scroll/{ids[0]}"), 404, "search_context_missing_exception"
    )
    unknown = await client.post("/_search/scroll/bm9wZQ")
    _es_error(unknown, 404, "search_context_missing_exception")
    assert (await client.delete("/_search/scroll/_all")).json()["num_freed"] == 1


async def test_a_context_past_the_open_limit_is_refused_before_its_listing(
    client: httpx.AsyncClient,
) -> None:
    """The limit on open contexts was checked once the query had been listed (up to the
    limit on hits held: a million keys built, then thrown away): a 4th scroll over too many
    hits answered the 400 of the listing, not the 429 of the contexts."""
    await _fill(client, "more", 500)
    for _ in range(3):
        small = await client.post(
            "/docs/_search?scroll=1m", json={"query": {"ids": {"values": ["d001"]}}}
        )
        assert small.status_code == 200, small.text
    fourth = await client.post("/docs,more/_search?scroll=1m", json={"size": 5})
    assert "too many scroll contexts" in _es_error(
        fourth, 429, "too_many_scroll_contexts_exception"
    )


async def test_point_in_time_pages_by_from_neither_repeat_nor_skip_after_deletes(
    client: httpx.AsyncClient,
) -> None:
    """A page by from read past its own positions to replace deleted documents, so the next
    page (from + size) answered some of the same hits again."""
    pit = (await client.post("/docs/_pit?keep_alive=1m")).json()["id"]
    body = {"pit": {"id": pit}, "sort": ["_shard_doc"], "size": 10}
    assert (await client.post("/_search", json=body)).status_code == 200  # listed now
    for n in (3, 4, 12):
        assert (await client.delete(f"/docs/_doc/d{n:03d}")).status_code == 200
    seen: list[str] = []
    for start in range(0, 40, 10):
        page = (await client.post("/_search", json={**body, "from": start})).json()
        assert page["hits"]["total"]["value"] == DOCS
        seen += [h["_id"] for h in page["hits"]["hits"]]
    assert seen == [f"d{n:03d}" for n in range(40) if n not in (3, 4, 12)]


async def test_a_match_scrolls_under_the_default_limit_on_hits_held(
    tmp_path: Path, reranker: Any
) -> None:
    """A scroll of a match query (helpers.scan with preserve_order) asked the store for one
    hit past --max-search-context-hits: 1,000,001 by default, over its k limit, a 400."""
    async with app_client(tmp_path, reranker) as http:
        await _fill(http)
        match = {"query": {"match": {"text": "flea"}}, "size": 40}
        hits, first, _ = await _scroll_all(http, match)
        assert first["hits"]["total"]["value"] == 100 and len({h["_id"] for h in hits}) == 100


async def test_a_point_in_time_holds_a_bounded_count_of_small_listings(
    tmp_path: Path, reranker: Any
) -> None:
    """Each distinct query searched with a pit keeps its listing: one matching nothing held no
    hit, so a client could keep any number of them (each keyed by its whole query, up to
    --max-body-bytes) for a day. A listing now counts as one hit at least against
    --max-search-context-hits, and is keyed by a digest of its query."""
    async with app_client(tmp_path, reranker, max_search_context_hits=5) as client:
        await _fill(client, count=3)
        pit = (await client.post("/docs/_pit?keep_alive=1m")).json()["id"]
        padding = ["x" * 1000] * 100  # a query of 100 KB, matching nothing
        answers = []
        for n in range(6):
            query = {"ids": {"values": [f"none{n}", *padding]}}
            body = {"pit": {"id": pit}, "query": query}
            answers.append(await client.post("/_search", json=body))
        assert [a.status_code for a in answers[:5]] == [200] * 5, answers[0].text
        _es_error(answers[5], 429, "too_many_scroll_contexts_exception")
        # The same query again reads its listing: no more room needed.
        again = {"pit": {"id": pit}, "query": {"ids": {"values": ["none0", *padding]}}}
        assert (await client.post("/_search", json=again)).status_code == 200
        contexts = client._transport.app.state.search_contexts  # type: ignore[attr-defined]
        (held,) = [one.state for one in contexts._open.values()]
        assert all(len(key) < 200 for key in held.listings)


# --- sorted by fields ---------------------------------------------------------------------------
DATED = 260  # e000..e259: 40 dates, so that many share one; every 25th has none


def _dated(n: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"text": f"{'flea' if n % 3 else 'ocean'} number {n}", "rank": n % 9}
    if n % 25:
        doc["date"] = f"2024-{1 + n * 7 % 12:02d}-{1 + n * 11 % 28:02d}T0{n % 3}:00:00Z"
    return doc


async def _fill_dated(client: httpx.AsyncClient) -> None:
    await _fill(client, "dated", DATED, ("e", _dated))


async def _one_sorted_search(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> tuple[list[str], list[list[Any]]]:
    """The ids and sort values (without the tie-breaking id) of one big sorted search."""
    found = await client.post("/dated/_search", json={**body, "size": 1000})
    assert found.status_code == 200, found.text
    hits = found.json()["hits"]["hits"]
    return [h["_id"] for h in hits], [h["sort"][:-1] for h in hits]


async def _pit_pages(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> tuple[list[str], list[list[Any]]]:
    """Every hit of a point in time paged by search_after: ids and sort values."""
    pit = (await client.post("/dated/_pit?keep_alive=1m")).json()["id"]
    paged = {**body, "pit": {"id": pit, "keep_alive": "1m"}, "size": 37}
    ids: list[str] = []
    values: list[list[Any]] = []
    page = (await client.post("/_search", json=paged)).json()
    while page["hits"]["hits"]:
        assert page["pit_id"] == pit, page
        ids += [h["_id"] for h in page["hits"]["hits"]]
        values += [h["sort"] for h in page["hits"]["hits"]]
        after = {**paged, "search_after": values[-1]}
        page = (await client.post("/_search", json=after)).json()
    closed = await client.request("DELETE", "/_pit", json={"id": pit})
    assert closed.json()["succeeded"] is True
    return ids, values


SORTED_QUERIES = (
    {"sort": [{"date": "desc"}]},
    {"sort": [{"rank": "asc"}, {"date": {"order": "asc", "missing": "_first"}}]},
    {"query": {"match": {"text": "flea"}}, "sort": [{"date": "asc"}]},
)


async def check_sorted_paging(client: httpx.AsyncClient) -> None:
    """A point in time paged by search_after and a scroll, each sorted by fields, list what
    one big sorted search answers: every hit once, in its order, with its sort values (a
    point in time's ending with _shard_doc, the hit's position)."""
    await _fill_dated(client)
    for body in SORTED_QUERIES:
        ids, values = await _one_sorted_search(client, body)
        assert len(ids) > 150 and values[0] != values[-1]
        for shard_doc in ([], [{"_shard_doc": "asc"}]):
            asked = {**body, "sort": [*body["sort"], *shard_doc]}
            pit_ids, pit_values = await _pit_pages(client, asked)
            assert pit_ids == ids, asked
            assert [v[:-1] for v in pit_values] == values
            assert [v[-1] for v in pit_values] == list(range(len(ids)))
        hits, first, _ = await _scroll_all(client, {**body, "size": 23}, "/dated/_search")
        assert [h["_id"] for h in hits] == ids and [h["sort"] for h in hits] == values
        assert first["hits"]["total"] == {"value": len(ids), "relation": "eq"}
        assert hits[0]["_score"] is None and hits[0]["_source"] == _dated(int(ids[0][1:]))


async def test_a_point_in_time_and_a_scroll_sort_by_fields(client: httpx.AsyncClient) -> None:
    """A scroll or point in time sorted by a field was refused ("sorting by a field is not
    supported"): Elasticsearch's recommended deep paging, a pit with [{date: desc},
    {_shard_doc: asc}] and search_after, could not run."""
    await check_sorted_paging(client)


async def test_a_sorted_listing_counts_against_the_hits_held(client: httpx.AsyncClient) -> None:
    """Sorted listings hold hits as others do (the fixture's 700 at most), keep their scores
    where the sort asks, and refuse a tree no sorted search sorts."""
    await _fill_dated(client)
    sort = {"sort": [{"date": "desc"}, "_score"], "track_scores": True}
    hits, _, scroll_id = await _scroll_all(client, {**sort, "size": 100}, "/dated/_search")
    assert len(hits) == DATED and hits[0]["_score"] == 1.0 and hits[0]["sort"][-1] == 1.0
    both = {"sort": [{"date": "desc"}]}
    held = await client.post("/dated,docs/_search?scroll=1m", json=both)
    left = f"the {700 - DATED} the open scroll"
    assert left in _es_error(held, 429, "too_many_scroll_contexts_exception")
    await client.request("DELETE", "/_search/scroll", json={"scroll_id": [scroll_id]})
    await _fill(client, "more")  # 860 documents in all
    whole = await client.post("/dated,docs,more/_search?scroll=1m", json=both)
    assert "more than 700 hits" in _es_error(whole, 400, "invalid_request")
    rrf = {
        "retriever": {
            "rrf": {
                "retrievers": [
                    {"standard": {"query": {"match": {"text": "flea"}}}},
                    {"standard": {"query": {"match": {"text": "number"}}}},
                ]
            }
        },
        "sort": [{"date": "desc"}],
    }
    refused = await client.post("/dated/_search?scroll=1m", json=rrf)
    assert "cannot be sorted by fields" in _es_error(refused, 400, "invalid_request")


async def test_helpers_scan_keeps_a_field_sort_over_a_real_server(
    tmp_path: Path, reranker: Any
) -> None:
    """helpers.scan(preserve_order=True) with a sort by fields pages the scroll in that
    order, as one sorted search answers."""
    elasticsearch = pytest.importorskip(
        "elasticsearch", reason="the official elasticsearch client is not installed"
    )
    from elasticsearch import helpers

    async with app_client(tmp_path, reranker) as http:
        await _fill_dated(http)
        query = {"sort": [{"date": "desc"}, {"rank": "asc"}]}
        ids, values = await _one_sorted_search(http, query)
        app = http._transport.app  # type: ignore[attr-defined]
        with live_server(app) as url, elasticsearch.Elasticsearch(url) as es:
            scan = helpers.scan(
                es, index="dated", query=query, size=40, scroll="1m", preserve_order=True
            )
            found = await asyncio.to_thread(list, scan)
        assert [hit["_id"] for hit in found] == ids
        assert [hit["sort"] for hit in found] == values
