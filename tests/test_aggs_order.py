"""Buckets ordered by a metric sub-aggregation and metrics and terms over date fields, on the
embedded store and through the Elasticsearch route; PostgreSQL's parity with both (and a
reference) is in test_postgres_filter.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from semrank.errors import InvalidInputError
from semrank.pipeline import search
from semrank.store import create_index

# Many shops of one cheap document each, one of an expensive one: "lux" has the fewest
# documents and the highest average, so a top-2 by count would never see it.
SALES = [
    {"id": f"c{n}", "text": "sale", "shop": f"cheap{n % 3}", "price": 1 + n % 2, "when": day}
    for n, day in enumerate(["2024-01-01", "2024-01-02T08:00:00Z", "2024-01-02T08:00:00Z"] * 3)
] + [
    {"id": "l1", "text": "sale", "shop": "lux", "price": 500, "when": 1704067200000},
    {"id": "l2", "text": "sale", "shop": "lux", "when": ["2024-01-01", 1704067200000]},
    {"id": "n1", "text": "sale", "shop": "none"},
]
MS_2024 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("order")
    with create_index("sales", home=path, embedding_model=None) as store:
        store.upsert(SALES)
    return path


def _aggregate(home: Path, aggs: Any) -> Any:
    every = {"standard": {"query": {"match_all": {}}}}
    found = search("sales", None, retriever=every, k=0, home=home, aggs=aggs).aggregations
    assert found is not None
    return found


def _prices(shop: str) -> list[float]:
    return [float(d["price"]) for d in SALES if d["shop"] == shop and "price" in d]


def test_terms_ordered_by_a_sub_aggregation_rank_every_bucket_before_the_size_cut(
    home: Path,
) -> None:
    aggs = {
        "shops": {
            "terms": {"field": "shop", "size": 2, "order": {"avg_price": "desc"}},
            "aggs": {"avg_price": {"avg": {"field": "price"}}},
        }
    }
    shops = _aggregate(home, aggs)["shops"]
    averages = {s: sum(_prices(s)) / len(_prices(s)) for s in {"cheap0", "cheap1", "cheap2", "lux"}}
    top = sorted(averages, key=lambda s: -averages[s])[:2]
    assert [b["key"] for b in shops["buckets"]] == top and top[0] == "lux"
    assert shops["buckets"][0]["avg_price"] == {"value": 500.0}
    # Every other bucket's documents; "none" (no price: an avg of none) sorts last.
    assert shops["sum_other_doc_count"] == len(SALES) - sum(
        b["doc_count"] for b in shops["buckets"]
    )
    ascending = dict(aggs)
    ascending["shops"] = {
        **aggs["shops"],
        "terms": {"field": "shop", "order": {"avg_price": "asc"}},
    }
    keys = [b["key"] for b in _aggregate(home, ascending)["shops"]["buckets"]]
    assert keys[-1] == "none" and keys[-2] == "lux"  # no value: last either way


def test_orders_by_multi_value_metrics_several_keys_and_on_histograms(home: Path) -> None:
    aggs = {
        "by_max": {
            "terms": {"field": "shop", "order": [{"st.max": "desc"}, {"_key": "desc"}]},
            "aggs": {"st": {"stats": {"field": "price"}}},
        },
        "by_median": {
            "terms": {"field": "shop", "order": {"p[50]": "asc"}},
            "aggs": {"p": {"percentiles": {"field": "price", "percents": [50], "keyed": False}}},
        },
        "by_p50_dot": {
            "terms": {"field": "shop", "order": {"p.50": "desc"}},
            "aggs": {"p": {"percentiles": {"field": "price", "percents": [50.0]}}},
        },
        "steps": {
            "histogram": {"field": "price", "interval": 100, "order": {"n": "desc"}},
            "aggs": {"n": {"value_count": {"field": "price"}}},
        },
    }
    found = _aggregate(home, aggs)
    maxima = {s: max(_prices(s), default=None) for s in ("cheap0", "cheap1", "cheap2", "lux")}
    # lux 500, then the cheap shops of max 2, by key descending, then "none" (no max).
    assert [b["key"] for b in found["by_max"]["buckets"]] == [
        "lux", *sorted((s for s in maxima if maxima[s] == 2), reverse=True),
        *sorted((s for s in maxima if maxima[s] == 1), reverse=True), "none",
    ]  # fmt: skip
    medians = [b["p"]["values"][0]["value"] for b in found["by_median"]["buckets"]]
    assert medians[:-1] == sorted(medians[:-1]) and medians[-1] is None
    assert found["by_p50_dot"]["buckets"][0]["key"] == "lux"
    steps = found["steps"]["buckets"]  # the most prices first: 0 (9), 500 (1), the empty ones
    assert [s["key"] for s in steps] == [0.0, 500.0, 100.0, 200.0, 300.0, 400.0]
    assert [s["n"]["value"] for s in steps] == sorted(
        (s["n"]["value"] for s in steps), reverse=True
    )


def test_metrics_and_terms_over_dates_answer_epoch_millis_and_dates_as_strings(home: Path) -> None:
    aggs = {
        "first": {"min": {"field": "when"}},
        "last": {"max": {"field": "when", "format": "yyyy-MM-dd"}},
        "spread": {"stats": {"field": "when"}},
        "median": {"percentiles": {"field": "when", "percents": [50]}},
        "or_later": {"max": {"field": "when", "missing": "2025-03-01T00:00:00Z"}},
        "days": {"terms": {"field": "when"}, "aggs": {"spent": {"sum": {"field": "price"}}}},
        "years": {"max": {"field": "price"}},  # no dates: a plain number
    }
    found = _aggregate(home, aggs)
    day2 = MS_2024 + (24 + 8) * 3_600_000
    assert found["first"] == {
        "value": float(MS_2024),
        "value_as_string": "2024-01-01T00:00:00.000Z",
    }
    assert found["last"] == {"value": float(day2), "value_as_string": "2024-01-02"}
    spread = found["spread"]
    assert spread["count"] == 3 * 3 + 1 + 2  # every value, two in l2
    assert spread["min_as_string"] == "2024-01-01T00:00:00.000Z"
    assert spread["max_as_string"] == "2024-01-02T08:00:00.000Z"
    # Six values a day: the median halfway between them (exact, not a TDigest's estimate).
    assert found["median"]["values"] == {
        "50.0": (MS_2024 + day2) / 2,
        "50.0_as_string": "2024-01-01T16:00:00.000Z",
    }
    assert found["or_later"]["value_as_string"] == "2025-03-01T00:00:00.000Z"  # n1's
    days = found["days"]["buckets"]
    # 2024-01-01 written as a day, as epoch millis and both in one document: one bucket, each
    # document once (c0, c3, c6, l1, l2).
    assert [(b["key"], b["key_as_string"], b["doc_count"]) for b in days] == [
        (day2, "2024-01-02T08:00:00.000Z", 6),
        (MS_2024, "2024-01-01T00:00:00.000Z", 5),
    ]
    assert days[1]["spent"]["value"] == sum(
        d.get("price", 0) for d in SALES if d["id"] in ("c0", "c3", "c6", "l1", "l2")
    )
    assert found["years"] == {"value": 500.0}


def _instant(value: Any) -> int:
    if isinstance(value, int):
        return value
    return int(datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp() * 1000)


def test_value_count_and_cardinality_of_dates_count_instants_as_the_other_metrics_do(
    home: Path,
) -> None:
    """2024-01-01 and its epoch milliseconds are one value of a date field (Elasticsearch
    keeps numbers): cardinality counts instants, value_count every value as stats does."""
    aggs = {
        "kinds": {"cardinality": {"field": "when"}},
        "values": {"value_count": {"field": "when"}},
        "spread": {"stats": {"field": "when"}},
    }
    found = _aggregate(home, aggs)
    held = [d["when"] for d in SALES if "when" in d]
    every = [v for when in held for v in (when if isinstance(when, list) else [when])]
    assert found["kinds"] == {"value": len({_instant(v) for v in every})} == {"value": 2}
    assert found["values"] == {"value": len(every)} == {"value": found["spread"]["count"]}


def test_extended_stats_of_dates_write_each_value_as_a_date_as_elasticsearch_does(
    home: Path,
) -> None:
    found = _aggregate(home, {"e": {"extended_stats": {"field": "when"}}})["e"]
    written = {k for k in found if k.endswith("_as_string")}
    assert {"std_deviation_as_string", "std_deviation_sampling_as_string"} <= written
    assert found["std_deviation_as_string"] == (
        datetime.fromtimestamp(int(found["std_deviation"]) / 1000, UTC).isoformat(
            timespec="milliseconds"
        )
    ).replace("+00:00", "Z")
    bounds = found["std_deviation_bounds_as_string"]
    assert set(bounds) == set(found["std_deviation_bounds"])
    assert bounds["upper"] > found["max_as_string"] > found["min_as_string"] > bounds["lower"]
    # Square milliseconds past the year 9999: no date to write (Elasticsearch's would fail).
    assert "variance_as_string" not in written


def test_a_metric_below_buckets_reads_dates_alike_in_every_bucket(tmp_path: Path) -> None:
    """A bucket whose documents hold a date field as epoch milliseconds only is not read as
    numbers beside those holding date strings: the date field is decided once."""
    docs = [
        {"id": "a", "text": "x", "shop": "strings", "when": "2024-01-01"},
        {"id": "b", "text": "x", "shop": "millis", "when": MS_2024},
    ]
    with create_index("sales", home=tmp_path, embedding_model=None) as store:
        store.upsert(docs)
    metrics = {
        "first": {"min": {"field": "when"}},
        "kinds": {"cardinality": {"field": "when"}},
        "spread": {"extended_stats": {"field": "when"}},
    }
    aggs = {
        "shops": {"terms": {"field": "shop"}, "aggs": metrics},
        "deeper": {
            "terms": {"field": "text"},
            "aggs": {"shops": {"terms": {"field": "shop"}, "aggs": metrics}},
        },
    }
    found = _aggregate(tmp_path, aggs)
    (text,) = found["deeper"]["buckets"]
    for bucket in [*found["shops"]["buckets"], *text["shops"]["buckets"]]:
        assert bucket["first"]["value_as_string"] == "2024-01-01T00:00:00.000Z", bucket
        assert bucket["spread"]["min_as_string"] == "2024-01-01T00:00:00.000Z", bucket
    assert len(found["shops"]["buckets"]) == len(text["shops"]["buckets"]) == 2


def test_an_empty_min_or_max_ranks_as_elasticsearch_s_infinity(home: Path) -> None:
    """Elasticsearch starts a min at +Infinity and a max at -Infinity: a bucket of no values
    is first by min descending or max ascending, last the other way; an avg of none (NaN)
    last either way."""

    def ordered(metric: str, path: str, direction: str) -> list[str]:
        aggs = {
            "shops": {
                "terms": {"field": "shop", "order": {path: direction}},
                "aggs": {"m": {metric: {"field": "price"}}},
            }
        }
        return [b["key"] for b in _aggregate(home, aggs)["shops"]["buckets"]]

    assert ordered("min", "m", "desc")[0] == "none"
    assert ordered("min", "m", "asc")[-1] == "none"
    assert ordered("max", "m.value", "asc")[0] == "none"
    assert ordered("max", "m", "desc")[-1] == "none"
    assert ordered("stats", "m.min", "desc")[0] == "none"
    assert ordered("extended_stats", "m.max", "asc")[0] == "none"
    assert ordered("avg", "m", "desc")[-1] == ordered("avg", "m", "asc")[-1] == "none"
    assert ordered("stats", "m.avg", "desc")[-1] == "none"


@pytest.mark.parametrize(
    ("order", "sub", "reason"),
    [
        ({"nope": "desc"}, {"avg": {"field": "price"}}, "The provided aggregation [nope] either"),
        ({"a": "desc"}, {"stats": {"field": "price"}}, "a metric name must be specified"),
        ({"a.median": "asc"}, {"stats": {"field": "price"}}, "Unknown metric name [median]"),
        ({"a.98": "asc"}, {"percentiles": {"field": "price"}}, "Unknown metric name [98]"),
        ({"a.max": "asc"}, {"avg": {"field": "price"}}, 'Either drop the key (a la "a")'),
        ({"a": "asc"}, {"terms": {"field": "shop"}}, "Buckets can only be sorted on a sub-agg"),
        ({"a>b": "asc"}, {"avg": {"field": "price"}}, "Buckets can only be sorted on a sub-agg"),
    ],
)
def test_an_order_path_naming_no_metric_below_is_refused_as_elasticsearch_does(
    home: Path, order: Any, sub: Any, reason: str
) -> None:
    aggs = {"shops": {"terms": {"field": "shop", "order": order}, "aggs": {"a": sub}}}
    with pytest.raises(InvalidInputError) as refused:
        _aggregate(home, aggs)
    assert f"Invalid aggregation order path [{next(iter(order))}]. " in str(refused.value)
    assert reason in str(refused.value)


@pytest.mark.anyio
async def test_the_elasticsearch_route_orders_by_a_metric_and_refuses_a_bad_path(
    index_client: httpx.AsyncClient,
) -> None:
    headers = {"content-type": "application/json"}
    assert (await index_client.put("/sales", json={}, headers=headers)).status_code == 200
    lines = "".join(
        json.dumps({"index": {"_id": d["id"]}}) + "\n" + json.dumps(
            {k: v for k, v in d.items() if k != "id"}
        ) + "\n"
        for d in SALES
    )  # fmt: skip
    ndjson = {"content-type": "application/x-ndjson"}
    bulk = await index_client.post("/sales/_bulk?refresh=true", content=lines, headers=ndjson)
    assert bulk.status_code == 200 and not bulk.json()["errors"], bulk.text
    aggs = {
        "shops": {
            "terms": {"field": "shop", "size": 1, "order": {"latest": "desc"}},
            "aggs": {"latest": {"max": {"field": "when"}}},
        }
    }
    answer = await index_client.post(
        "/sales/_search", json={"size": 0, "aggs": aggs}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    (top,) = answer.json()["aggregations"]["shops"]["buckets"]
    assert top["latest"]["value_as_string"] == "2024-01-02T08:00:00.000Z"
    aggs["shops"]["terms"]["order"] = {"latest.value.x": "desc"}
    refused = await index_client.post(
        "/sales/_search", json={"size": 0, "aggs": aggs}, headers=headers
    )
    assert refused.status_code == 400
    assert "Invalid aggregation order path [latest.value.x]" in refused.json()["error"]["reason"]
