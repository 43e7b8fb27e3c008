"""Sub-aggregations, percentiles, extended_stats and missing on the embedded store, and
aggregations over several indexes (exact: as one index holding all of their documents);
PostgreSQL's parity with both is in test_postgres_filter.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from semrank.errors import InvalidInputError
from semrank.pipeline import search
from semrank.store import create_index

PRODUCTS = [
    {"id": "p1", "text": "red lamp", "shop": "north", "price": 10, "tags": ["home", "light"]},
    {"id": "p2", "text": "red chair", "shop": "north", "price": [20, 20], "tags": ["home"]},
    {"id": "p3", "text": "red desk", "shop": "south", "price": 35, "tags": "office"},
    {"id": "p4", "text": "red pen", "price": 2, "tags": ["office", "home"]},
    {"id": "p5", "text": "red bulb", "shop": "south", "tags": "light"},
    {"id": "p6", "text": "red mug", "shop": "east", "price": 7.5},
    {"id": "p7", "text": "blue mug", "shop": "east", "price": 8},
]
NESTED = {
    "shops": {
        "terms": {"field": "shop", "missing": "online", "size": 2},
        "aggs": {
            "avg_price": {"avg": {"field": "price"}},
            "tags": {
                "terms": {"field": "tags"},
                "aggs": {
                    "steps": {
                        "histogram": {"field": "price", "interval": 10},
                        "aggs": {"n": {"value_count": {"field": "price"}}},
                    }
                },
            },
        },
    },
    "cheap": {
        "range": {"field": "price", "ranges": [{"to": 10}, {"from": 10}], "missing": 0},
        "aggs": {"shops": {"cardinality": {"field": "shop"}}},
    },
    "pct": {"percentiles": {"field": "price", "percents": [0, 25, 50, 90, 100]}},
    "ext": {"extended_stats": {"field": "price", "sigma": 1}},
    "avg_or_zero": {"avg": {"field": "price", "missing": 0}},
    "distinct_tags": {"cardinality": {"field": "tags"}},
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ "first" and "second" splitting PRODUCTS, and "all" holding every one."""
    path = tmp_path_factory.mktemp("aggs")
    for name, docs in {"first": PRODUCTS[:3], "second": PRODUCTS[3:], "all": PRODUCTS}.items():
        with create_index(name, home=path, embedding_model=None) as store:
            store.upsert(docs)
    return path


def _aggregate(index: str, home: Path, aggs: Any, query: str | None = None) -> Any:
    """``aggs`` over the documents of ``index`` matching ``query`` (None: every one)."""
    every = {"standard": {"query": {"match_all": {}}}} if query is None else None
    return search(index, query, retriever=every, k=0, home=home, aggs=aggs)


def _prices(docs: list[dict[str, Any]]) -> list[float]:
    return [float(p) for doc in docs for p in np.atleast_1d(doc.get("price", []))]


def test_each_bucket_holds_its_documents_sub_aggregations(home: Path) -> None:
    """terms -> avg and terms -> terms -> histogram -> value_count, each over its bucket's
    documents: a document of several values in each of their buckets, missing ones under
    ``missing``; a document's repeated value counted as the metric counts it ([20, 20])."""
    found = _aggregate("all", home, NESTED).aggregations
    assert found is not None
    north = [d for d in PRODUCTS if d.get("shop") == "north"]
    shops = found["shops"]
    assert [b["key"] for b in shops["buckets"]] == ["east", "north"]  # 2, 2, then by key
    assert shops["sum_other_doc_count"] == 3  # south 2, online 1
    bucket = shops["buckets"][1]
    assert bucket["doc_count"] == 2
    assert bucket["avg_price"] == {"value": pytest.approx(np.mean(_prices(north)))}
    home_tag = next(t for t in bucket["tags"]["buckets"] if t["key"] == "home")
    assert home_tag["doc_count"] == 2
    steps = {s["key"]: (s["doc_count"], s["n"]["value"]) for s in home_tag["steps"]["buckets"]}
    assert steps == {10.0: (1, 1), 20.0: (1, 2)}
    cheap = {b["key"]: (b["doc_count"], b["shops"]["value"]) for b in found["cheap"]["buckets"]}
    # p5 has no price: 0 (missing), under 10 with p4, p6, p7; shops of those: south, east.
    assert cheap == {"*-10.0": (4, 2), "10.0-*": (3, 2)}


def test_percentiles_and_extended_stats_are_exact(home: Path) -> None:
    found = _aggregate("all", home, NESTED).aggregations
    assert found is not None
    prices = _prices(PRODUCTS)
    expected = {
        str(float(p)): pytest.approx(np.percentile(prices, p)) for p in (0, 25, 50, 90, 100)
    }
    assert found["pct"] == {"values": expected}
    ext = found["ext"]
    assert ext["count"] == len(prices) and ext["sum_of_squares"] == pytest.approx(
        sum(p * p for p in prices)
    )
    assert ext["variance"] == pytest.approx(np.var(prices))
    assert ext["std_deviation_sampling"] == pytest.approx(np.std(prices, ddof=1))
    assert ext["std_deviation_bounds"]["upper"] == pytest.approx(np.mean(prices) + np.std(prices))
    with_zero = [*prices, 0.0]  # p5, without a price, read as 0
    assert found["avg_or_zero"] == {"value": pytest.approx(np.mean(with_zero))}
    unkeyed = _aggregate(
        "all", home, {"p": {"percentiles": {"field": "nope", "percents": [50], "keyed": False}}}
    ).aggregations
    assert unkeyed == {"p": {"values": [{"key": 50.0, "value": None}]}}


def test_a_sub_terms_with_min_doc_count_0_lists_the_index_values(home: Path) -> None:
    aggs = {
        "s": {
            "terms": {"field": "shop"},
            "aggs": {"t": {"terms": {"field": "tags", "min_doc_count": 0}}},
        }
    }
    found = _aggregate("all", home, aggs).aggregations
    assert found is not None
    east = next(b for b in found["s"]["buckets"] if b["key"] == "east")
    assert {t["key"]: t["doc_count"] for t in east["t"]["buckets"]} == {
        "home": 0,
        "light": 0,
        "office": 0,
    }


@pytest.mark.parametrize("query", [None, "red"])
def test_aggregations_over_several_indexes_are_those_of_one_index_of_all(
    home: Path, query: str | None
) -> None:
    """Counts summed before ordering and cutting, avg and percentiles of all the values,
    cardinality of their union, sub-aggregations of each bucket's documents in either."""
    several = _aggregate("first,second", home, NESTED, query)
    one = _aggregate("all", home, NESTED, query)
    assert several.aggregations == one.aggregations
    assert several.matched == one.matched == (7 if query is None else 6)
    # Per index the cut and the avg would differ: the union is not a merge of cut lists.
    first = _aggregate("first", home, NESTED, query).aggregations
    assert first is not None and first["shops"] != one.aggregations["shops"]  # type: ignore[index]
    nothing = _aggregate("none-*", home, NESTED, query)
    assert (
        nothing.aggregations is not None and nothing.aggregations["pct"]["values"]["50.0"] is None
    )


@pytest.mark.anyio
async def test_the_elasticsearch_route_answers_nested_aggregations_of_several_indexes(
    index_client: httpx.AsyncClient,
) -> None:
    """``POST /a,b/_search`` with ``aggs`` inside a terms: Elasticsearch's shapes."""
    headers = {"content-type": "application/json"}
    for name, docs in {"first": PRODUCTS[:3], "second": PRODUCTS[3:]}.items():
        created = await index_client.put(f"/{name}", json={}, headers=headers)
        assert created.status_code == 200, created.text
        lines = "".join(
            json.dumps({"index": {"_id": d["id"]}})
            + "\n"
            + json.dumps({k: v for k, v in d.items() if k != "id"})
            + "\n"
            for d in docs
        )
        bulk = await index_client.post(
            f"/{name}/_bulk?refresh=true",
            content=lines,
            headers={"content-type": "application/x-ndjson"},
        )
        assert bulk.status_code == 200 and not bulk.json()["errors"], bulk.text
    body = {
        "size": 0,
        "aggs": {
            "shops": {
                "terms": {"field": "shop"},
                "aggregations": {"price": {"extended_stats": {"field": "price"}}},
            }
        },
    }
    answer = await index_client.post("/first,second/_search", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    shops = answer.json()["aggregations"]["shops"]["buckets"]
    east = next(b for b in shops if b["key"] == "east")
    assert east["doc_count"] == 2 and east["price"]["avg"] == pytest.approx(7.75)
    assert east["price"]["std_deviation_bounds"]["upper"] == pytest.approx(7.75 + 2 * 0.25)
    bad = dict(body, aggs={"a": {"avg": {"field": "price"}, "aggs": {}}})
    refused = await index_client.post("/first,second/_search", json=bad, headers=headers)
    assert refused.status_code == 400
    assert "avg holds no sub-aggregations" in refused.json()["error"]["reason"]


def test_sub_aggregations_hold_a_few_bytes_a_document(tmp_path: Path) -> None:
    """terms -> avg over 20,000 documents: their values read into arrays, not a dictionary
    and lists per document (which took ~440 bytes a document, 3 s for 200,000)."""
    import tracemalloc

    count = 20_000
    with create_index("many", home=tmp_path, embedding_model=None) as store:
        store.upsert(
            [
                {"id": f"d{n}", "text": "x", "shop": f"s{n % 20}", "price": n % 100}
                for n in range(count)
            ]
        )
        aggs = {"s": {"terms": {"field": "shop"}, "aggs": {"a": {"avg": {"field": "price"}}}}}
        store.aggregate(aggs)  # the filter table's columns read once
        tracemalloc.start()
        try:
            found = store.aggregate(aggs)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    first = found["s"]["buckets"][0]
    assert first["doc_count"] == count // 20
    assert first["a"]["value"] == pytest.approx(np.mean([n % 100 for n in range(0, count, 20)]))
    assert peak < 200 * count


def test_metrics_past_a_double_are_null_not_a_server_error(tmp_path: Path) -> None:
    """A sum of 1e308 twice, the variance of 1e300: past a double's range, answered null
    (JSON holds no infinity), not a 500; percentiles of such numbers stay exact."""
    with create_index("big", home=tmp_path, embedding_model=None) as store:
        store.upsert([{"id": "a", "text": "x", "n": 1e308}, {"id": "b", "text": "y", "n": 1e308}])
        store.upsert([{"id": "c", "text": "z", "n": -1e308}])
        aggs = {
            "sum": {"sum": {"field": "n"}},
            "ext": {"extended_stats": {"field": "n"}},
            "pct": {"percentiles": {"field": "n", "percents": [25, 50]}},
            "t": {"terms": {"field": "text"}, "aggs": {"ext": {"extended_stats": {"field": "n"}}}},
        }
        found = store.aggregate(aggs)
    assert found["sum"] == {"value": None}  # 1e308 - 1e308 + 1e308 overflows in fsum
    ext = found["ext"]
    assert ext["count"] == 3 and ext["sum_of_squares"] is None and ext["variance"] is None
    assert ext["min"] == -1e308 and ext["std_deviation_bounds"]["upper"] is None
    assert found["pct"]["values"] == {"25.0": 0.0, "50.0": 1e308}
    x = next(b for b in found["t"]["buckets"] if b["key"] == "x")
    assert x["ext"]["variance"] == 0.0 and x["ext"]["sum_of_squares"] is None
    json.dumps(found, allow_nan=False)  # what the server answers


def _nested_terms(fields: list[str]) -> dict[str, Any]:
    """terms of ``fields[0]`` holding terms of the next, and so on (each of size 10,000)."""
    spec: dict[str, Any] = {"terms": {"field": fields[-1], "size": 10_000}}
    for field in reversed(fields[:-1]):
        spec = {"terms": {"field": field, "size": 10_000}, "aggs": {"below": spec}}
    return {"top": spec}


def _bucket_total(answer: Any) -> int:
    """Every bucket of an aggregations answer, at every level."""
    if isinstance(answer, list):
        return sum(_bucket_total(item) for item in answer)
    if not isinstance(answer, dict):
        return 0
    found = answer.get("buckets")
    own = 0 if found is None else len(found)
    return own + sum(_bucket_total(value) for value in answer.values())


def test_an_answer_past_elasticsearchs_max_buckets_is_refused_not_computed(
    home: Path, tmp_path: Path
) -> None:
    """terms x terms x terms over one document of 60 values in each field is 219,660 buckets
    (seconds and hundreds of MB for a body of a few lines): refused as Elasticsearch refuses
    more than search.max_buckets (65,536) in one answer, at every level together; 39 values
    (60,879 buckets) are answered, as are the same buckets nested in histograms."""
    import time

    for name, count in (("wide", 60), ("narrow", 39)):
        with create_index(name, home=tmp_path, embedding_model=None) as store:
            doc = {f: [f"{f}{n}" for n in range(count)] for f in ("a", "b", "c")}
            store.upsert([{"id": "d1", "text": "one", **doc}])
    aggs = _nested_terms(["a", "b", "c"])
    started = time.perf_counter()
    with pytest.raises(InvalidInputError, match=r"too many buckets.*\[65536\]"):
        _aggregate("wide", tmp_path, aggs)
    assert time.perf_counter() - started < 2.0  # stopped at the limit, not at the end
    answered = _aggregate("narrow", tmp_path, aggs).aggregations
    assert _bucket_total(answered) == 39**3 + 39**2 + 39
    # Empty histogram steps count too: 301 x 301 of a price's extended bounds.
    steps = {
        "histogram": {"field": "price", "interval": 1, "extended_bounds": {"min": 0, "max": 300}}
    }
    histograms = {"h": {**steps, "aggs": {"inner": steps}}}
    with pytest.raises(InvalidInputError, match=r"too many buckets"):
        _aggregate("all", home, histograms)
