"""Sorting hits by document fields (Elasticsearch's sort, search_after, track_scores): the
reference ordering, the embedded store's sorted search against it, the library, the CLI and
both HTTP routes. PostgreSQL's parity: tests/test_postgres_sort.py."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from semrank.errors import InvalidInputError
from semrank.pipeline import search
from semrank.retrieve import document_values, parse_filter, resolved
from semrank.retrieve._filter import matches
from semrank.retrieve._sort import parse_sort, reference_sort
from semrank.store import Store, create_index

ES_JSON = {"content-type": "application/json"}


def sort_corpus() -> dict[str, dict[str, Any]]:
    """Prices (several, none, floats), dates at offsets, by day and as epoch milliseconds,
    words, booleans, a field of mixed types, and many ties."""
    rng = random.Random(20260301)
    docs: dict[str, dict[str, Any]] = {}
    for n in range(120):
        doc: dict[str, Any] = {"text": f"words of document {n}", "group": rng.choice("abc")}
        doc["price"] = rng.choice([n % 7, float(n % 5) + 0.5, [n % 4, n % 9], [], None, 3])
        doc["when"] = rng.choice(
            [
                "2024-03-01T10:00:00+02:00",  # 08:00 UTC: before the next one
                "2024-03-01T09:00:00Z",
                f"2024-02-{1 + n % 28:02d}",
                1709280000000 + n * 60_000,  # epoch millis beside ISO strings: a date field
                ["2024-01-05T00:00:00-05:00", "2023-12-31"],
                None,
            ]
        )
        doc["tag"] = rng.choice(["zeta", "Alpha", "beta", "Ünï", ["x", "b"], None])
        doc["flag"] = rng.choice([True, False, None])
        doc["mixed"] = rng.choice([1, "one"])
        docs[f"d{n:03d}"] = {k: v for k, v in doc.items() if v is not None}
    return docs


SORTS: list[Any] = [
    "price",
    [{"price": "desc"}],
    [{"price": {"order": "asc", "mode": "max"}}],
    [{"price": {"order": "desc", "mode": "avg", "missing": "_first"}}],
    [{"price": {"mode": "sum"}}, {"when": "desc"}],
    [{"when": {"order": "asc"}}],
    [{"when": {"order": "desc", "missing": "_first"}}],
    ["tag"],
    [{"tag": "desc"}, {"price": {"mode": "median"}}],
    [{"flag": "desc"}, "group"],
    ["group", "_doc"],
    ["group", {"_id": "desc"}],
]
FILTERS: list[Any] = [{"match_all": {}}, {"term": {"group": "a"}}, {"exists": {"field": "price"}}]
# Each sort over each filter: the parity cases of every store.
PARITY = pytest.mark.parametrize(
    ("flt", "sort"),
    [(flt, sort) for flt in FILTERS for sort in SORTS],
    ids=[f"{f}-{n}" for f in ("all", "term", "exists") for n in range(len(SORTS))],
)


@pytest.fixture(scope="module")
def sorted_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, dict[str, Any]]:
    docs = sort_corpus()
    store = create_index("sorting", home=tmp_path_factory.mktemp("home"), embedding_model=None)
    store.upsert([{"id": doc_id, **doc} for doc_id, doc in docs.items()])
    return store, docs


def expected(docs: dict[str, Any], flt: Any, sort: Any, **page: Any) -> list[list[Any]]:
    """The reference: every document passing ``flt``, ordered in Python."""
    passing = resolved(parse_filter(flt))
    kept = [(i, d) for i, d in docs.items() if matches(passing, i, d)]
    return [hit.sort for hit in reference_sort(kept, parse_sort(sort), limit=1000, **page)]


def searched(store: Store, flt: Any, sort: Any, size: int = 200, **more: Any) -> list[Any]:
    body = {"query": flt, "sort": sort, "size": size, **more}
    return [hit.sort for hit in search(store, retriever=body, with_documents=False)]


# --- the reference ordering ---------------------------------------------------------------
def test_the_reference_orders_as_elasticsearch_defaults_say() -> None:
    docs = [
        ("a", {"p": [3, 9], "d": "2024-03-01T10:00:00+02:00"}),
        ("b", {"p": 5, "d": "2024-03-01T09:00:00Z"}),
        ("c", {"d": "2024-03-01"}),
        ("d", {"p": [2, 7], "d": 1709290000000}),
    ]
    ordered = reference_sort(docs, parse_sort("p"), limit=10)
    assert [h.sort for h in ordered] == [[2, "d"], [3, "a"], [5, "b"], [None, "c"]]  # min asc
    desc = reference_sort(docs, parse_sort([{"p": "desc"}]), limit=10)
    assert [h.sort for h in desc] == [[9, "a"], [7, "d"], [5, "b"], [None, "c"]]  # max desc
    by_date = reference_sort(docs, parse_sort("d"), limit=10)
    # 10:00+02:00 is 08:00 UTC, before 09:00Z: dates sort by instant, as epoch millis
    assert [h.sort for h in by_date] == [
        [1709251200000, "c"],
        [1709280000000, "a"],
        [1709283600000, "b"],
        [1709290000000, "d"],
    ]


def test_id_sorts_by_the_document_id_in_its_order() -> None:
    """_id is the id (as Elasticsearch sorted it, where its field data is on), not a field no
    document holds: descending was ascending, by the tie-breaker alone."""
    docs = [("b", {}), ("a", {}), ("c", {})]
    desc = reference_sort(docs, parse_sort([{"_id": "desc"}]), limit=10)
    assert [h.sort for h in desc] == [["c", "c"], ["b", "b"], ["a", "a"]]
    after = reference_sort(docs, parse_sort([{"_id": "desc"}]), limit=10, after=["b"])
    assert [h.sort for h in after] == [["a", "a"]]


def test_a_field_of_incompatible_types_is_refused_naming_it() -> None:
    docs = [("a", {"m": 1}), ("b", {"m": "one"})]
    with pytest.raises(InvalidInputError, match=r"cannot sort on field 'm'.*number, string"):
        reference_sort(docs, parse_sort("m"), limit=10)
    with pytest.raises(InvalidInputError, match="mode avg sorts numbers and dates"):
        reference_sort([("a", {"w": "x"})], parse_sort([{"w": {"mode": "avg"}}]), limit=10)


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ([], "empty list"),
        ([{"p": "up"}], 'order must be "asc" or "desc"'),
        ([{"p": {"missing": 0}}], "missing must be"),
        ([{"p": {"mode": "mean"}}], "mode must be one of"),
        ([{"p": {"format": "x"}}], "unsupported option 'format'"),
        ([{"p": "asc", "q": "desc"}], "with one field"),
        (7, "must be a field name"),
    ],
)
def test_bad_sorts_are_refused_naming_what(spec: Any, named: str) -> None:
    with pytest.raises(InvalidInputError, match=named):
        parse_sort(spec)


# --- the embedded store against the reference ----------------------------------------------
@PARITY
def test_embedded_sorted_search_is_the_reference_order(
    sorted_index: Any, flt: Any, sort: Any
) -> None:
    assert searched(sorted_index[0], flt, sort) == expected(sorted_index[1], flt, sort)


# Cursors that are no hit's sort values: between held values, before and after them all,
# missing (null), dates as written, without the tie-breaking id.
CURSORS: list[tuple[Any, list[Any]]] = [
    ("price", [2.5]),
    ("price", [3, "d050"]),
    ([{"price": "desc"}], [100]),
    ([{"price": "desc"}], [-1, "d000"]),
    ([{"price": {"order": "desc", "missing": "_first"}}], [None, "d060"]),
    ([{"price": {"mode": "avg"}}], [None]),
    ([{"when": "desc"}], ["2024-03-01T09:30:00+01:00"]),
    ([{"when": "desc"}], [1709280000000, "d010"]),
    (["tag", {"flag": "desc"}], ["b", True]),
    (["tag", {"flag": "desc"}], ["beta", None, "d005"]),
    (["_doc"], ["d07"]),
]


@pytest.mark.parametrize(("sort", "after"), CURSORS, ids=[str(n) for n in range(len(CURSORS))])
def test_embedded_search_after_any_cursor_is_the_reference_order(
    sorted_index: Any, sort: Any, after: Any
) -> None:
    store, docs = sorted_index
    flt = {"match_all": {}}
    got = searched(store, flt, sort, search_after=after)
    assert got == expected(docs, flt, sort, after=after)


@pytest.mark.parametrize("sort", [s for s in SORTS if "_doc" not in str(s)])
def test_a_match_search_sorts_its_hits_as_the_reference(sorted_index: Any, sort: Any) -> None:
    """A scoring search's window (every document holds "document") orders as a filter's."""
    store, docs = sorted_index
    assert searched(store, {"match": {"text": "document"}}, sort) == expected(
        docs, {"match_all": {}}, sort
    )


def test_a_mixed_field_is_refused_by_the_store_too(sorted_index: Any) -> None:
    store, _ = sorted_index
    with pytest.raises(InvalidInputError, match="cannot sort on field 'mixed'"):
        searched(store, {"match_all": {}}, "mixed")


@pytest.mark.parametrize("sort", [SORTS[1], SORTS[6], SORTS[9]], ids=["price", "when", "flag"])
def test_search_after_pages_together_are_the_whole_sorted_list(
    sorted_index: Any, sort: Any
) -> None:
    store, docs = sorted_index
    check_pages(store, docs, sort, size=7)


def check_pages(store: Store, docs: dict[str, Any], sort: Any, *, size: int) -> None:
    """Pages of ``size`` hits, each after the last one's sort values, until one is empty:
    together the reference's whole list, no hit skipped, none twice, ties included."""
    whole = expected(docs, {"match_all": {}}, sort)
    pages: list[Any] = []
    page = searched(store, {"match_all": {}}, sort, size=size)
    while page:
        pages += page
        page = searched(store, {"match_all": {}}, sort, size=size, search_after=page[-1])
    assert pages == whole
    assert len({tuple(map(str, p)) for p in pages}) == len(docs)


def test_a_scored_search_sorts_its_retrieved_hits_and_nulls_no_score(sorted_index: Any) -> None:
    store, docs = sorted_index
    body = {"query": {"match": {"text": "document"}}, "sort": [{"price": "desc"}], "size": 200}
    results = search(store, retriever=body, with_documents=False)
    assert not results.scores_tracked
    values = [hit.sort[0] for hit in results]
    present = [v for v in values if v is not None]
    assert present == sorted(present, reverse=True) and len(results) == len(docs)
    tracked = search(store, retriever={**body, "track_scores": True}, with_documents=False)
    assert tracked.scores_tracked and tracked.ids == results.ids


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"retriever": {"standard": {"query": {"match_all": {}}}}, "sort": "price"}, "beside"),
        (
            {
                "retriever": {
                    "rrf": {
                        "retrievers": [
                            {"standard": {"query": {"match": {"text": "a"}}, "sort": "price"}},
                            {"standard": {"query": {"match": {"text": "b"}}}},
                        ]
                    }
                }
            },
            "only the top retriever",
        ),
        ({"query": {"match_all": {}}, "search_after": [1, "d001"]}, "give the same sort"),
        ({"query": {"match_all": {}}, "sort": "price", "search_after": [1, "x", 2]}, "2 of them"),
        (
            {"query": {"match_all": {}}, "sort": "price", "search_after": ["x", "d1"]},
            "cannot follow",
        ),
        ({"query": {"match_all": {}}, "sort": "price", "search_after": [1], "from": 5}, "from 5"),
    ],
)
def test_bad_sorted_searches_are_refused_naming_the_fix(
    sorted_index: Any, body: Any, named: str
) -> None:
    store, _ = sorted_index
    with pytest.raises(InvalidInputError, match=named):
        search(store, retriever=body)


def test_the_library_takes_sort_and_search_after_as_arguments(sorted_index: Any) -> None:
    store, docs = sorted_index
    first = search(store, retriever={"query": {"match_all": {}}}, sort=[{"when": "desc"}], k=5)
    after = search(
        store, retriever={"query": {"match_all": {}}}, sort=[{"when": "desc"}], k=5,
        search_after=first[-1].sort,
    )  # fmt: skip
    whole = expected(docs, {"match_all": {}}, [{"when": "desc"}])
    assert [h.sort for h in [*first, *after]] == whole[:10]


def test_several_indexes_sort_their_union(tmp_path: Path) -> None:
    for name, prices in (("one", [5, 1, 3]), ("two", [4, 2, 1])):
        create_index(name, home=tmp_path, embedding_model=None).upsert(
            [{"id": f"d{n}", "text": "x", "price": p} for n, p in enumerate(prices)]
        )
    results = search("one,two", retriever={"query": {"match_all": {}}}, sort="price", home=tmp_path)
    assert [h.sort for h in results] == [
        [1, "one:d1"], [1, "two:d2"], [2, "two:d1"], [3, "one:d2"], [4, "two:d0"], [5, "one:d0"],
    ]  # fmt: skip
    page = search(
        "one,two", retriever={"query": {"match_all": {}}}, sort="price", home=tmp_path,
        search_after=[1, "one:d1"], k=2,
    )  # fmt: skip
    assert [(h.index, h.id) for h in page] == [("two", "d2"), ("two", "d1")]


# --- CLI and HTTP ---------------------------------------------------------------------------
def test_semrank_search_sorts_by_the_sort_flag(sorted_index: Any, tmp_path: Path) -> None:
    from semrank.cli import app

    home = tmp_path / "cli"
    docs = {"a": {"text": "x", "price": 3}, "b": {"text": "y", "price": [1, 9]}, "c": {"text": "z"}}
    create_index("t", home=home, embedding_model=None).upsert(
        [{"id": i, **d} for i, d in docs.items()]
    )
    tree = '{"query": {"match_all": {}}}'
    base = ["search", "t", "--retriever", tree, "--home", str(home), "--json"]
    ran = CliRunner().invoke(app, [*base, "--sort", "price:desc"])
    assert ran.exit_code == 0, ran.output
    assert [h["sort"] for h in json.loads(ran.stdout)["hits"]] == [[9, "b"], [3, "a"], [None, "c"]]
    after = CliRunner().invoke(app, [*base, "--sort", "price:desc", "--search-after", '[9, "b"]'])
    assert [h["id"] for h in json.loads(after.stdout)["hits"]] == ["a", "c"]


async def _fill(client: httpx.AsyncClient, docs: dict[str, Any]) -> None:
    created = await client.post("/v1/indexes", json={"name": "docs", "embedding_model": None})
    assert created.status_code in (200, 201), created.text
    listed = [{"id": i, **d} for i, d in docs.items()]
    added = await client.post("/v1/indexes/docs/documents", json={"documents": listed})
    assert added.status_code == 200, added.text


@pytest.mark.anyio
async def test_es_search_pages_sorted_hits_with_search_after(
    index_client: httpx.AsyncClient,
) -> None:
    docs = sort_corpus()
    await _fill(index_client, docs)
    sort = [{"when": {"order": "desc"}}, {"price": "asc"}]
    whole = expected(docs, {"term": {"group": "b"}}, sort)
    body: dict[str, Any] = {"query": {"term": {"group": "b"}}, "sort": sort, "size": 9}
    pages: list[Any] = []
    while True:
        answer = await index_client.post("/docs/_search", json=body, headers=ES_JSON)
        assert answer.status_code == 200, answer.text
        hits = answer.json()["hits"]["hits"]
        if not hits:
            break
        assert all(hit["_score"] is None for hit in hits), hits[0]
        assert answer.json()["hits"]["max_score"] is None
        pages += [hit["sort"] for hit in hits]
        body["search_after"] = hits[-1]["sort"]
    assert pages == whole


@pytest.mark.anyio
async def test_es_search_refuses_a_sort_beside_a_retriever(index_client: httpx.AsyncClient) -> None:
    await _fill(index_client, {"a": {"text": "x", "price": 1}})
    body = {"retriever": {"standard": {"query": {"match_all": {}}}}, "sort": ["price"]}
    answer = await index_client.post("/docs/_search", json=body, headers=ES_JSON)
    assert answer.status_code == 400
    assert "standard retriever" in answer.json()["error"]["reason"]
    inside = {"retriever": {"standard": {"query": {"match_all": {}}, "sort": ["price"]}}}
    ok = await index_client.post("/docs/_search", json={**inside, "track_scores": True})
    assert ok.status_code == 200, ok.text
    assert ok.json()["hits"]["hits"][0]["sort"] == [1, "a"]
    assert ok.json()["hits"]["hits"][0]["_score"] == 1.0  # track_scores


@pytest.mark.anyio
async def test_own_search_route_takes_a_sort(index_client: httpx.AsyncClient) -> None:
    docs = {
        "a": {"text": "x", "d": "2024-03-01T10:00:00+02:00"},
        "b": {"text": "y", "d": "2024-03-01T09:00:00Z"},
    }
    await _fill(index_client, docs)
    body = {"retriever": {"standard": {"query": {"match_all": {}}}}, "sort": [{"d": "desc"}]}
    answer = await index_client.post("/v1/indexes/docs/search", json=body)
    assert answer.status_code == 200, answer.text
    assert [h["sort"] for h in answer.json()["hits"]] == [
        [1709283600000, "b"],
        [1709280000000, "a"],
    ]
    bad = await index_client.post("/v1/indexes/docs/search", json={**body, "sort": [{"d": "up"}]})
    assert bad.status_code in (400, 422) and "asc" in bad.text


def test_sort_values_of_every_store_method_are_document_values(sorted_index: Any) -> None:
    store, docs = sorted_index
    found = dict(store.sort_values(parse_filter({"match_all": {}}), ["price", "when"]))
    for doc_id, doc in docs.items():
        assert sorted(map(str, found[doc_id][0])) == sorted(map(str, document_values(doc, "price")))
        assert sorted(map(str, found[doc_id][1])) == sorted(map(str, document_values(doc, "when")))


def test_a_sort_field_of_too_many_parts_is_refused() -> None:
    """As filters and aggregations refuse it (PostgreSQL's paths of it grew with the cube of
    its parts): a sort key of more than 32 dot-separated parts."""
    with pytest.raises(InvalidInputError, match="at most 32"):
        parse_sort([{".".join(["a"] * 33): "asc"}])
    with pytest.raises(InvalidInputError, match="at most 32"):
        parse_sort(".".join(["x"] * 500))
    assert parse_sort(".".join(["a"] * 32)).fields == [".".join(["a"] * 32)]
