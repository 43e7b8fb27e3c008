"""Faceted search: a search body's ``post_filter`` (the hits pass it, the aggregations count
the whole query) and ``collapse`` (the best hit per value of a field), checked against the
reference semantics (``semrank.retrieve.matches``, ``document_values``) applied in Python to
the search's own full ranking, on the embedded store, the library, and both HTTP routes.
PostgreSQL's parity: tests/test_postgres_facets.py."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from semrank.errors import InvalidInputError
from semrank.pipeline import BM25, TextSimilarityReranker, search
from semrank.retrieve import document_values, parse_filter, resolved
from semrank.retrieve._filter import matches
from semrank.store import Store, create_index

FAMILIES = ["boot", "sandal", "sneaker", "loafer", 7, 7.0, None]
WORDS = ["red", "blue", "shoe", "leather", "light"]


def facet_corpus() -> dict[str, dict[str, Any]]:
    """Products: words in varied counts (distinct BM25 scores), a family (keywords, a number
    written as 7 and 7.0, or none), a brand, a price, and colours (several per document)."""
    rng = random.Random(20260419)
    docs: dict[str, dict[str, Any]] = {}
    for n in range(80):
        words = [rng.choice(WORDS) for _ in range(rng.randint(2, 9))]
        doc: dict[str, Any] = {"text": " ".join(words) + f" item{n}"}
        doc["family"] = rng.choice(FAMILIES)
        doc["brand"] = rng.choice(["acme", "zenith", "orbit"])
        doc["price"] = rng.randint(5, 60)
        doc["colours"] = rng.sample(["red", "blue", "green"], rng.randint(1, 2))
        docs[f"p{n:02d}"] = {k: v for k, v in doc.items() if v is not None}
    return docs


QUERIES: list[Any] = [
    {"match": {"text": "red leather"}},
    {"match_all": {}},
    {"bool": {"filter": [{"range": {"price": {"gte": 20}}}]}},
]
POST_FILTERS: list[Any] = [
    {"term": {"brand": "acme"}},
    {
        "bool": {
            "filter": [{"terms": {"brand": ["acme", "orbit"]}}, {"range": {"price": {"lt": 40}}}]
        }
    },
    {"bool": {"must_not": [{"exists": {"field": "family"}}]}},
]
STAGED = pytest.mark.parametrize(
    ("query", "post_filter"),
    [(q, f) for q in QUERIES for f in POST_FILTERS],
    ids=[f"q{a}-f{b}" for a in range(len(QUERIES)) for b in range(len(POST_FILTERS))],
)
SORTS: list[Any] = [None, [{"price": "desc"}], [{"brand": "asc"}, {"price": "asc"}]]


@pytest.fixture(scope="module")
def facets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, dict[str, Any]]:
    docs = facet_corpus()
    store = create_index("facets", home=tmp_path_factory.mktemp("home"), embedding_model=None)
    store.upsert([{"id": doc_id, **doc} for doc_id, doc in docs.items()])
    return store, docs


def ranking(store: Store, query: Any, sort: Any = None) -> list[str]:
    """The search's whole ranking (or sorted list), neither filtered nor collapsed after."""
    body: dict[str, Any] = {"query": query, "size": 1000}
    if sort is not None:
        body["sort"] = sort
    return search(store, retriever=body, with_documents=False).ids


def passing(docs: dict[str, Any], ids: Sequence[str], flt: Any) -> list[str]:
    parsed = resolved(parse_filter(flt))
    return [i for i in ids if matches(parsed, i, docs[i])]


def heads(docs: dict[str, Any], ids: Sequence[str], field: str) -> list[tuple[str, Any]]:
    """The first hit of each value of ``field`` (none: one group), as collapse keeps them."""
    seen: set[Any] = set()
    kept = []
    for doc_id in ids:
        values = document_values(docs[doc_id], field)
        value = values[0] if values else None
        # 7 and 7.0 are one number (Python's == and hash), True no number, 2^53 + 1 not 2^53
        group = (type(value) is bool, value)
        if group not in seen:
            seen.add(group)
            kept.append((doc_id, value))
    return kept


def staged(store: Store, query: Any, **body: Any) -> Any:
    """A search of ``query`` with a body's post_filter, collapse, sort, from and size."""
    return search(store, retriever={"query": query, **body}, aggs=AGGS, with_documents=False)


AGGS = {"brands": {"terms": {"field": "brand"}}, "families": {"terms": {"field": "family"}}}


def brand_counts(docs: dict[str, Any], ids: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for doc_id in ids:
        counts[docs[doc_id]["brand"]] = counts.get(docs[doc_id]["brand"], 0) + 1
    return counts


# --- post_filter ---------------------------------------------------------------------------
@STAGED
def test_post_filter_keeps_the_passing_hits_while_aggs_count_every_match(
    facets: Any, query: Any, post_filter: Any
) -> None:
    store, docs = facets
    everything = ranking(store, query)
    expected = passing(docs, everything, post_filter)
    results = staged(store, query, post_filter=post_filter, size=12)
    assert results.ids == expected[:12]
    assert results.matched == len(expected)  # hits.total: those passing the post_filter
    buckets = results.aggregations["brands"]["buckets"]
    assert {b["key"]: b["doc_count"] for b in buckets} == brand_counts(docs, everything)
    second = staged(store, query, post_filter=post_filter, size=5, **{"from": 5})
    assert second.ids == expected[5:10]


def test_post_filter_over_a_reranker_filters_its_window(facets: Any) -> None:
    """Applied to the final ranking: the re-ranker scores its whole window, and the hits are
    those of it passing the post_filter (fewer than asked, as Elasticsearch's)."""
    store, docs = facets

    class ByLength:
        def score(self, query: str, documents: Sequence[Any]) -> np.ndarray:
            return np.array([len(str(d)) for d in documents], dtype=np.float32)

    tree = TextSimilarityReranker(BM25(field="text"), inference_id=ByLength(), rank_window_size=9)
    window = search(store, "red shoe", retriever=tree, k=9, with_documents=False).ids
    flt = {"term": {"brand": "zenith"}}
    found = search(store, "red shoe", retriever=tree, k=9, post_filter=flt, with_documents=False)
    assert found.ids == passing(docs, window, flt)
    assert 0 < len(found) < 9


def test_post_filter_with_a_field_sort_keeps_the_sorted_passing_hits(facets: Any) -> None:
    store, docs = facets
    query, flt = {"match": {"text": "blue"}}, {"range": {"price": {"gte": 30}}}
    order = ranking(store, query, [{"price": "desc"}])
    results = staged(store, query, post_filter=flt, sort=[{"price": "desc"}], size=7)
    assert results.ids == passing(docs, order, flt)[:7]


def test_library_post_filter_argument_is_the_bodys(facets: Any) -> None:
    store, _ = facets
    flt = {"term": {"brand": "orbit"}}
    given = search(store, "red", post_filter=flt, k=6, with_documents=False)
    body = search(
        store,
        "red",
        retriever={"post_filter": flt, "size": 6, "query": {"match": {"text": "{{query}}"}}},
        with_documents=False,
    )
    assert given.ids == body.ids and given.ids
    with pytest.raises(InvalidInputError, match="given both to the search and in its search body"):
        search(store, retriever={"query": {"match_all": {}}, "post_filter": flt}, post_filter=flt)


# --- collapse ------------------------------------------------------------------------------
@pytest.mark.parametrize("sort", SORTS, ids=["score", "price", "brand-price"])
@pytest.mark.parametrize("query", QUERIES[:2], ids=["match", "match_all"])
def test_collapse_keeps_the_first_hit_of_each_value(facets: Any, query: Any, sort: Any) -> None:
    found = check_collapse(*facets, query, sort)
    # 7 and 7.0 are one group, hits without a family another (a null one), as Elasticsearch's
    assert len(found) == 6 and [None] in [f["family"] for _, f in found]


def check_collapse(store: Store, docs: dict[str, Any], query: Any, sort: Any) -> list[Any]:
    """A collapsed search's pages are the first hit of each family of the whole ranking."""
    expected = heads(docs, ranking(store, query, sort), "family")
    extra = {} if sort is None else {"sort": sort}
    results = staged(store, query, collapse={"field": "family"}, size=3, **extra)
    rest = staged(store, query, collapse={"field": "family"}, size=10, **{"from": 3}, **extra)
    found = [(hit.id, hit.fields) for hit in [*results, *rest]]
    assert found == [(i, {"family": [v]}) for i, v in expected]
    return found


def test_collapse_after_post_filter_pages_the_groups_of_the_passing_hits(facets: Any) -> None:
    store, docs = facets
    query, flt = {"match": {"text": "shoe light"}}, {"term": {"brand": "acme"}}
    expected = heads(docs, passing(docs, ranking(store, query), flt), "brand")
    assert len(expected) == 1  # one brand passes: one group
    expected = heads(docs, passing(docs, ranking(store, query), flt), "price")
    results = staged(store, query, post_filter=flt, collapse={"field": "price"}, size=4)
    assert [(h.id, h.fields) for h in results] == [(i, {"price": [v]}) for i, v in expected[:4]]
    assert results.matched == len(passing(docs, ranking(store, query), flt))


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"collapse": {"field": "colours"}}, "must be single valued"),
        ({"collapse": {"field": "family", "inner_hits": {"name": "x"}}}, "collapse.inner_hits"),
        (
            {"collapse": {"field": "family", "max_concurrent_group_searches": 4}},
            "collapse.max_concurrent_group_searches",
        ),
        ({"collapse": {"field": "family", "size": 2}}, "collapse takes field only"),
        ({"collapse": {"field": ""}}, "collapse.field must be the name"),
        ({"collapse": ["family"]}, "collapse must be an object"),
        (
            {"collapse": {"field": "family"}, "sort": ["price"], "search_after": [10, "p01"]},
            "search_after cannot page a collapsed search",
        ),
    ],
)
def test_bad_collapses_are_refused_naming_the_fix(facets: Any, body: Any, said: str) -> None:
    store, _ = facets
    with pytest.raises(InvalidInputError, match=said):
        search(store, retriever={"query": {"match_all": {}}, **body})


def test_several_indexes_post_filter_and_collapse_their_union(tmp_path: Path) -> None:
    docs = facet_corpus()
    for name, part in (("left", list(docs)[:40]), ("right", list(docs)[40:])):
        store = create_index(name, home=tmp_path, embedding_model=None)
        store.upsert([{"id": doc_id, **docs[doc_id]} for doc_id in part])
    body = {"query": {"match_all": {}}, "sort": [{"price": "asc"}]}
    order = search(
        "left,right", retriever={**body, "size": 100}, home=tmp_path, with_documents=False
    ).ids
    flt = {"term": {"brand": "zenith"}}
    found = search(
        "left,right",
        retriever={**body, "post_filter": flt, "collapse": {"field": "price"}, "size": 12},
        home=tmp_path,
        with_documents=False,
    )
    assert found.ids == [i for i, _ in heads(docs, passing(docs, order, flt), "price")][:12]
    assert {hit.index for hit in found} == {"left", "right"}


# Values a collapse field holds in the wild: nested and dotted paths, a keyword given twice or
# in a list of one, booleans beside strings, 7 and 7.0, numbers past 2^53, 0.0 and 0, an empty
# string, non-ASCII, nulls and empty lists (no value: the null group).
ODD_VALUES: list[Any] = [
    "boot", ["boot"], ["boot", "boot"], "Boot", "", "ßoot", True, "true", False, 7, 7.0,
    2**53 + 1, 2**53, 0.0, 0, None, [], [None],
]  # fmt: skip


def odd_corpus() -> dict[str, dict[str, Any]]:
    """Each odd value at ``kind``, and at ``meta.kind`` (an object's, or a dotted key)."""
    docs: dict[str, dict[str, Any]] = {}
    for n, value in enumerate(ODD_VALUES):
        meta = {"meta": {"kind": value}} if n % 2 else {"meta.kind": value}
        docs[f"o{n:02d}"] = {"text": "shoe " * (n + 1), "kind": value, "rank": n, **meta}
    return docs


def check_odd_collapse(store: Store, docs: dict[str, Any], field: str) -> list[Any]:
    """The first hit of each value of ``field`` in a sort by rank, as the reference groups
    them, and each hit's ``fields`` exactly as JSON writes them (7 stays 7)."""
    body = {"query": {"match_all": {}}, "sort": [{"rank": "asc"}], "collapse": {"field": field}}
    found = search(store, retriever={**body, "size": 100}, with_documents=False)
    expected = heads(docs, sorted(docs, key=lambda i: docs[i]["rank"]), field)
    assert [hit.id for hit in found] == [i for i, _ in expected]
    shown = [json.dumps(hit.fields) for hit in found]
    assert shown == [json.dumps({field: [value]}) for _, value in expected]
    assert found.matched == len(docs)  # the documents matched, not the groups
    return shown


@pytest.mark.parametrize("field", ["kind", "meta.kind"])
def test_collapse_groups_odd_values_as_the_reference(tmp_path: Path, field: str) -> None:
    docs = odd_corpus()
    store = create_index("odd", home=tmp_path, embedding_model=None)
    store.upsert([{"id": doc_id, **doc} for doc_id, doc in docs.items()])
    check_odd_collapse(store, docs, field)


def test_collapse_refuses_a_field_no_document_holds(facets: Any, tmp_path: Path) -> None:
    """A typo (or _id) made every hit one null group: a single hit, said nowhere."""
    store, _ = facets
    for field in ("familly", "_id"):
        said = rf"no document holds collapse\.field '{field}'"
        with pytest.raises(InvalidInputError, match=said):
            staged(store, {"match_all": {}}, collapse={"field": field})
    other = create_index("other", home=tmp_path, embedding_model=None)
    other.upsert([{"id": "x1", "text": "red", "shape": "round"}])
    # Held by one of several indexes: the others' documents are its null group.
    found = search([store, other], retriever={"query": {"match_all": {}}, "collapse": "shape"})
    assert sorted(json.dumps(hit.fields) for hit in found) == [
        '{"shape": ["round"]}',
        '{"shape": [null]}',
    ]


def test_a_collapsed_search_counts_the_documents_it_matched(facets: Any) -> None:
    """Elasticsearch's total counts the hits before collapsing; the page's groups said
    "eq 6" of a query matching dozens."""
    store, _ = facets
    query = {"match": {"text": "red"}}
    everything = ranking(store, query)
    for start in (0, 3, 40):
        found = search(
            store,
            retriever={"query": query, "collapse": {"field": "family"}, "from": start},
            with_documents=False,
        )
        assert found.matched == len(everything) > 6


# --- HTTP ----------------------------------------------------------------------------------
async def _fill(client: httpx.AsyncClient) -> dict[str, Any]:
    docs = facet_corpus()
    items = [{"id": doc_id, **doc} for doc_id, doc in docs.items()]
    created = await client.post("/v1/indexes", json={"name": "shop", "embedding_model": None})
    assert created.status_code in (200, 201), created.text
    added = await client.post("/v1/indexes/shop/documents", json={"documents": items})
    assert added.status_code == 200, added.text
    return docs


@pytest.mark.anyio
async def test_es_search_takes_post_filter_and_collapse(index_client: httpx.AsyncClient) -> None:
    docs = await _fill(index_client)
    query = {"match": {"text": "red"}}
    whole = await index_client.post("/shop/_search", json={"query": query, "size": 100})
    order = [hit["_id"] for hit in whole.json()["hits"]["hits"]]
    flt = {"term": {"brand": "acme"}}
    body = {
        "query": query,
        "post_filter": flt,
        "collapse": {"field": "family"},
        "aggs": {"brands": {"terms": {"field": "brand"}}},
        "size": 4,
    }
    answer = await index_client.post("/shop/_search", json=body)
    assert answer.status_code == 200, answer.text
    hits = answer.json()["hits"]
    expected = heads(docs, passing(docs, order, flt), "family")[:4]
    assert [(h["_id"], h["fields"]) for h in hits["hits"]] == [
        (i, {"family": [v]}) for i, v in expected
    ]
    assert hits["total"] == {"value": len(passing(docs, order, flt)), "relation": "eq"}
    counts = {b["key"]: b["doc_count"] for b in answer.json()["aggregations"]["brands"]["buckets"]}
    assert counts == brand_counts(docs, order)  # every match, not only acme's
    plain = await index_client.post("/shop/_search", json={"query": query, "size": 2})
    assert all("fields" not in hit for hit in plain.json()["hits"]["hits"])


@pytest.mark.anyio
async def test_es_search_fields_and_collapse_answer_both_in_fields(
    index_client: httpx.AsyncClient,
) -> None:
    """A body asking for fields beside a collapse: each hit's fields holds the asked fields'
    values and the collapse field's, as Elasticsearch's (the first merge kept only one)."""
    docs = await _fill(index_client)
    body = {"query": {"match": {"text": "red"}}, "collapse": {"field": "family"}}
    answer = await index_client.post("/shop/_search", json={**body, "fields": ["brand"]})
    assert answer.status_code == 200, answer.text
    hits = answer.json()["hits"]["hits"]
    assert hits
    for hit in hits:
        doc = docs[hit["_id"]]
        asked = {"brand": [doc["brand"]]} if "brand" in doc else {}
        assert hit["fields"] == {"family": [doc.get("family")], **asked}


@pytest.mark.anyio
async def test_es_search_refuses_inner_hits_as_elasticsearch_errors(
    index_client: httpx.AsyncClient,
) -> None:
    await _fill(index_client)
    body = {"query": {"match_all": {}}, "collapse": {"field": "family", "inner_hits": {}}}
    answer = await index_client.post("/shop/_search", json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert "collapse.inner_hits is not supported" in error["reason"], error
    scrolled = await index_client.post(
        "/shop/_search?scroll=1m",
        json={"query": {"match_all": {}}, "collapse": {"field": "family"}},
    )
    assert scrolled.status_code == 400, scrolled.text
    assert "scroll" in scrolled.json()["error"]["reason"]


@pytest.mark.anyio
async def test_own_search_route_takes_post_filter_and_collapse(
    index_client: httpx.AsyncClient,
) -> None:
    docs = await _fill(index_client)
    whole = await index_client.post(
        "/v1/indexes/shop/search", json={"query": "blue leather", "size": 100}
    )
    order = [hit["id"] for hit in whole.json()["hits"]]
    flt = {"range": {"price": {"lte": 30}}}
    body = {"query": "blue leather", "post_filter": flt, "collapse": {"field": "brand"}}
    answer = await index_client.post("/v1/indexes/shop/search", json=body)
    assert answer.status_code == 200, answer.text
    found = [(hit["id"], hit["fields"]) for hit in answer.json()["hits"]]
    assert found == [
        (i, {"brand": [v]}) for i, v in heads(docs, passing(docs, order, flt), "brand")
    ]
    bad = await index_client.post(
        "/v1/indexes/shop/search", json={"query": "blue", "post_filter": {"term": {}}}
    )
    assert bad.status_code == 422 and "post_filter.term" in bad.json()["error"], bad.text


@pytest.mark.anyio
async def test_a_scroll_lists_the_hits_passing_its_post_filter(
    index_client: httpx.AsyncClient,
) -> None:
    docs = await _fill(index_client)
    flt = {"term": {"brand": "orbit"}}
    for query in ({"match_all": {}}, {"match": {"text": "red"}}):
        body = {"query": query, "post_filter": flt, "size": 100}
        scrolled = await index_client.post("/shop/_search?scroll=1m", json=body)
        assert scrolled.status_code == 200, scrolled.text
        ids = {hit["_id"] for hit in scrolled.json()["hits"]["hits"]}
        whole = await index_client.post("/shop/_search", json={"query": query, "size": 100})
        order = [hit["_id"] for hit in whole.json()["hits"]["hits"]]
        assert ids == set(passing(docs, order, flt)) and ids


@pytest.mark.anyio
async def test_es_total_of_a_collapsed_search_counts_documents_not_groups(
    index_client: httpx.AsyncClient,
) -> None:
    await _fill(index_client)
    query = {"match": {"text": "red"}}
    counted = await index_client.post("/shop/_count", json={"query": query})
    for start in (0, 40):
        body = {"query": query, "collapse": {"field": "family"}, "from": start}
        answer = await index_client.post("/shop/_search", json=body)
        assert answer.status_code == 200, answer.text
        total = answer.json()["hits"]["total"]
        assert total == {"value": counted.json()["count"], "relation": "eq"} != 6
    typo = {"query": query, "collapse": {"field": "familly"}}
    refused = await index_client.post("/shop/_search", json=typo)
    assert refused.status_code == 400, refused.text
    assert "no document holds collapse.field 'familly'" in refused.json()["error"]["reason"]
