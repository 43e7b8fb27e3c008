"""Document filters (Elasticsearch filter-context DSL): parsing, refusals and the reference
semantics every store is compared against."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from semrank.errors import InvalidInputError
from semrank.retrieve import document_values, fields_read, matches, parse_filter, resolved
from semrank.retrieve._filter import InstantRange
from semrank.retrieve._filter_rows import FieldTable

DOCS: dict[str, dict[str, Any]] = {
    "a": {"lang": "en", "year": 2019, "tags": ["ml", "ir"], "meta": {"source": "arxiv"}},
    "b": {"lang": "de", "year": 2021.5, "tags": "ir", "meta": {"source": "acl"}, "draft": True},
    "c": {"lang": "EN", "year": "2020", "authors": [{"name": "Ada"}, {"name": "Bo"}]},
    "d": {"lang": None, "tags": [], "meta.source": "dotted", "date": "2024-03-01"},
}


def passing(spec: Any) -> list[str]:
    flt = parse_filter(spec)
    return [doc_id for doc_id, doc in DOCS.items() if matches(flt, doc_id, doc)]


SEMANTICS: list[tuple[Any, list[str]]] = [
        ({"term": {"lang": "en"}}, ["a"]),
        ({"term": {"lang": {"value": "en", "case_insensitive": True}}}, ["a", "c"]),
        ({"term": {"lang.keyword": "de"}}, ["b"]),
        ({"terms": {"tags": ["ir", "nlp"]}}, ["a", "b"]),
        ({"term": {"year": 2019.0}}, ["a"]),  # numbers compare numerically
        ({"term": {"year": "2019"}}, []),  # a string is not the number 2019
        ({"term": {"draft": True}}, ["b"]),
        ({"term": {"draft": 1}}, []),  # booleans only equal booleans
        ({"term": {"meta.source": "acl"}}, ["b"]),
        ({"term": {"meta.source": "dotted"}}, ["d"]),  # a key holding dots
        ({"term": {"authors.name": "Bo"}}, ["c"]),  # arrays of objects flatten
        ({"range": {"year": {"gte": 2019, "lt": 2021}}}, ["a"]),  # "2020" is a string
        ({"range": {"year": {"gt": 2019}}}, ["b"]),
        ({"range": {"date": {"gte": "2024-01-01", "lte": "2024-12-31"}}}, ["d"]),
        ({"exists": {"field": "lang"}}, ["a", "b", "c"]),  # null does not exist
        ({"exists": {"field": "tags"}}, ["a", "b"]),  # nor does []
        ({"ids": {"values": ["b", "d", "zz"]}}, ["b", "d"]),
        ({"match_all": {}}, ["a", "b", "c", "d"]),
        ([{"term": {"tags": "ir"}}, {"range": {"year": {"lt": 2020}}}], ["a"]),
        ({"bool": {"must_not": {"term": {"lang": "en"}}}}, ["b", "c", "d"]),
        ({"bool": {"should": [{"term": {"lang": "de"}}, {"ids": {"values": ["d"]}}]}}, ["b", "d"]),
        # With a filter clause, should clauses are optional (Elasticsearch's default 0)...
        ({"bool": {"filter": {"exists": {"field": "meta"}}, "should": {"term": {"lang": "x"}}}},
         ["a", "b"]),
        # ...unless minimum_should_match asks for them.
        ({"bool": {"filter": {"exists": {"field": "meta"}}, "should": {"term": {"lang": "de"}},
                   "minimum_should_match": 1}}, ["b"]),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "expected"), SEMANTICS)
def test_filter_semantics(spec: Any, expected: list[str]) -> None:
    assert passing(spec) == expected


@pytest.mark.parametrize(("spec", "expected"), SEMANTICS)
def test_a_field_table_masks_rows_as_the_reference_matches(spec: Any, expected: list[str]) -> None:
    """What the embedded store evaluates a filter by: every row at once from values read once."""
    flt = parse_filter(spec)
    table = FieldTable(list(DOCS))
    table.add_fields(list(DOCS.values()), table.missing(flt))
    assert table.missing(flt) == []
    assert [doc_id for doc_id, ok in zip(DOCS, table.mask(flt), strict=True) if ok] == expected


def test_a_field_table_agrees_with_the_reference_on_mixed_values() -> None:
    rng = random.Random(7)
    pool: list[Any] = [1, 1.0, 2, 2.5, "1", "a", "A", "b", True, False, None, [], {"x": 1}]
    docs = {f"d{n}": {"v": rng.choice(pool), "w": [rng.choice(pool) for _ in range(2)]}
            for n in range(60)}  # fmt: skip
    specs = [
        {"term": {"v": 1}}, {"term": {"v": True}}, {"term": {"w": {"value": "a",
        "case_insensitive": True}}}, {"terms": {"w": [2.5, "b"]}}, {"range": {"v": {"gt": 1}}},
        {"range": {"w": {"gte": "a", "lte": "b"}}}, {"range": {"w": {"gt": 1, "lt": 2.5}}},
        {"exists": {"field": "v"}}, {"bool": {"should": [{"term": {"v": "a"}},
        {"exists": {"field": "w.x"}}], "must_not": {"term": {"w": False}}}},
    ]  # fmt: skip
    table = FieldTable(list(docs))
    for spec in specs:
        flt = parse_filter(spec)
        table.add_fields(list(docs.values()), table.missing(flt))
        expected = [matches(flt, doc_id, doc) for doc_id, doc in docs.items()]
        assert table.mask(flt).tolist() == expected, spec


def test_a_field_table_of_a_value_per_row_is_compact() -> None:
    """Each distinct value had its own small array (~500 bytes a row beside the value: a url
    field cost ~100 MB for 200,000 documents); the values now share three arrays."""
    import tracemalloc

    rows = 20_000
    docs = [{"url": f"https://example.com/{n:06d}", "n": n % 7} for n in range(rows)]
    table = FieldTable([f"d{n}" for n in range(rows)])
    tracemalloc.start()
    try:
        table.add_fields(docs, ["url"])
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held < 40 * rows, held  # the values themselves are the documents' strings
    flt = parse_filter({"bool": {"should": [{"term": {"url": "https://example.com/000042"}},
                       {"range": {"url": {"gt": "https://example.com/019997"}}}]}})  # fmt: skip
    assert np.flatnonzero(table.mask(flt)).tolist() == [42, 19998, 19999]


def test_a_field_table_updated_after_writes_agrees_with_the_reference() -> None:
    """A table brought to a later state (rows rewritten, added, deleted: only the rows
    written since read) masks rows as the reference does, as a table read whole would."""
    rng = random.Random(3)
    pool: list[Any] = [1, 1.0, 2, 2.5, 10**20, 1e20, "1", "a", "A", "b", "ß", "SS", True, False,
                       None, [], {"x": 1}, {"x": "a"}]  # fmt: skip

    def doc() -> dict[str, Any]:
        return {"v": rng.choice(pool), "w": [rng.choice(pool) for _ in range(rng.randint(0, 3))]}

    specs = [
        {"term": {"v": 1}}, {"term": {"v": True}}, {"term": {"w": {"value": "ss",
        "case_insensitive": True}}}, {"terms": {"w": [2.5, "b", False]}},
        {"range": {"v": {"gt": 1}}}, {"range": {"w": {"gte": "a", "lte": "b"}}},
        {"range": {"v": {"lte": 1e20}}}, {"exists": {"field": "w.x"}}, {"term": {"w.x": "a"}},
    ]  # fmt: skip
    flts = [parse_filter(spec) for spec in specs]
    for _ in range(60):
        docs = {key: doc() for key in range(rng.randint(0, 25))}
        table = FieldTable([f"d{key}" for key in docs], np.array(list(docs)))
        table.add_fields(list(docs.values()), ["v", "w"][: rng.randint(1, 2)])
        for _ in range(3):
            fresh = {key for key in docs if rng.random() < 0.2}
            docs = {key: doc() if key in fresh else d for key, d in docs.items()
                    if rng.random() > 0.15 or key in fresh}  # fmt: skip
            for key in range(max(docs, default=0) + 1, max(docs, default=0) + rng.randint(1, 4)):
                docs[key], _ = doc(), fresh.add(key)
            keys = sorted(docs)
            marks = np.array([key in fresh for key in keys], dtype=bool)
            rows = ([f"d{key}" for key in keys], np.array(keys, dtype=np.int64), marks)
            table = table.updated(rows, [(key, docs[key]) for key in keys if key in fresh])
            for flt in flts:
                if table.missing(flt):
                    table = table.updated(rows, [(key, docs[key]) for key in keys],
                                          table.missing(flt))  # fmt: skip
                expected = [matches(flt, f"d{key}", docs[key]) for key in keys]
                assert table.mask(flt).tolist() == expected, flt


def test_a_date_range_after_a_write_parses_only_the_values_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A date range's first search after each write parsed every distinct value of the
    column again (1.4 s for 200,000 date-times); the values an earlier state parsed are
    carried over, and only the new ones are parsed."""
    from semrank.retrieve import _filter_rows

    parsed: list[Any] = []
    parse = _filter_rows.value_instant

    def counted(value: Any) -> Any:
        parsed.append(value)
        return parse(value)

    monkeypatch.setattr(_filter_rows, "value_instant", counted)
    day = datetime(2024, 1, 1, tzinfo=UTC)
    docs = {key: {"d": (day + timedelta(hours=key)).isoformat()} for key in range(500)}
    table = FieldTable([f"d{key}" for key in docs], np.array(list(docs)))
    table.add_fields(list(docs.values()), ["d"])
    flt = parse_filter({"range": {"d": {"gte": "2024-01-10", "lt": "2024-01-12T06:00:00Z"}}})
    assert np.count_nonzero(table.mask(flt)) == 54 and len(parsed) == 500
    docs[3] = {"d": "2024-01-11T00:30:00Z"}  # rewritten into the range
    docs[500] = {"d": [1704931200000, "2024-01-11"]}  # a new row: epoch millis, a day
    del docs[230]  # 2024-01-10T14:00, gone
    parsed.clear()
    keys = sorted(docs)
    rows = ([f"d{key}" for key in keys], np.array(keys), np.isin(keys, [3, 500]))
    table = table.updated(rows, [(3, docs[3]), (500, docs[500])])
    assert table.ids == [f"d{key}" for key in sorted(docs)]
    expected = [matches(flt, f"d{key}", docs[key]) for key in sorted(docs)]
    assert table.mask(flt).tolist() == expected and sum(expected) == 55
    assert sorted(map(str, parsed)) == ["1704931200000", "2024-01-11", "2024-01-11T00:30:00Z"]


def test_a_field_table_built_by_writes_equals_one_read_whole() -> None:
    """After any sequence of upserts, rewrites, deletes and re-adds (a deleted last key taken
    again), the table kept up to date by the rows written (``rows_after``, then ``updated``)
    has the rows, values and masks of a table of that state read from scratch."""
    rng = random.Random(7)
    day = datetime(2024, 1, 1, tzinfo=UTC)

    def doc() -> dict[str, Any]:
        when = day + timedelta(minutes=rng.randrange(0, 20_000))
        return {"c": rng.choice(["a", "b", 1, 2.5, True, None]),
                "d": rng.choice([when.isoformat(), when.strftime("%Y-%m-%d"),
                                 int(when.timestamp() * 1000), "nope"])}  # fmt: skip

    specs = [{"term": {"c": "a"}}, {"terms": {"c": [1, True]}}, {"range": {"c": {"gt": 1}}},
             {"range": {"d": {"gte": "2024-01-05", "lt": "2024-01-09"}}},
             {"range": {"d": {"gte": "now-10y/d"}}}, {"exists": {"field": "c"}},
             {"ids": {"values": ["d3", "d40"]}}]  # fmt: skip
    flts = [parse_filter(spec) for spec in specs]
    for _ in range(20):
        docs = {key: doc() for key in range(rng.randint(0, 40))}
        ids = {key: f"d{key}" for key in docs}
        table = FieldTable([ids[key] for key in docs], np.array(list(docs)))
        table.add_fields(list(docs.values()), ["c", "d"])
        for _ in range(6):
            [table.mask(flt) for flt in flts]  # dates parsed: carried to the next state
            written: set[int] = set()
            for _ in range(rng.randint(0, 6)):
                action, keys = rng.random(), sorted(docs)
                if action < 0.3 and keys:  # a rewrite
                    key = rng.choice(keys)
                elif action < 0.5 and keys:  # a delete
                    key = rng.choice(keys)
                    del docs[key]
                    written.discard(key)
                    continue
                else:  # a new row, maybe taking the last key again (SQLite's max + 1)
                    key = max(docs, default=-1) + 1
                    ids[key] = f"n{rng.randrange(10**6)}"
                docs[key] = doc()
                written.add(key)
            keys = sorted(docs)
            present = np.array(keys, dtype=np.int64) if rng.random() < 0.7 else None
            if present is None and set(table.keys.tolist()) - set(keys):
                present = np.array(keys, dtype=np.int64)  # a delete: every key listed
            rows = table.rows_after([(key, ids[key]) for key in sorted(written)], present)
            table = table.updated(rows, [(key, docs[key]) for key in sorted(written)])
            whole = FieldTable([ids[key] for key in keys], np.array(keys, dtype=np.int64))
            whole.add_fields([docs[key] for key in keys], ["c", "d"])
            assert table.ids == whole.ids and table.keys.tolist() == keys
            for flt in flts:
                assert table.mask(flt).tolist() == whole.mask(flt).tolist(), flt
                expected = [matches(flt, ids[key], docs[key]) for key in keys]
                assert table.mask(flt).tolist() == expected, flt


def test_filters_round_trip_through_their_json() -> None:
    specs = [
        {"term": {"lang": {"value": "en", "case_insensitive": True}}},
        {"terms": {"tags": ["ir", 3, True]}},
        {"range": {"year": {"gt": 1, "lte": 9.5}}},
        {"bool": {"filter": [{"exists": {"field": "x"}}], "must_not": [{"ids": {"values": ["a"]}}],
                  "should": [{"term": {"y": 1}}], "minimum_should_match": 1}},
        [{"match_all": {}}, {"term": {"a.b": "c"}}],
    ]  # fmt: skip
    for spec in specs:
        flt = parse_filter(spec)
        assert parse_filter(flt.to_dict()) == flt
        # Same documents pass after the round trip.
        assert passing(flt.to_dict()) == passing(spec)


def test_fields_read_lists_every_field_a_filter_reads() -> None:
    flt = parse_filter(
        {"bool": {"must": {"term": {"a": 1}}, "should": [{"range": {"b.c": {"gt": 0}}}],
                  "must_not": [{"exists": {"field": "d"}}, {"ids": {"values": ["x"]}}]}}
    )  # fmt: skip
    assert sorted(fields_read(flt)) == ["a", "b.c", "d"]


def test_document_values_flattens_and_drops_nulls() -> None:
    doc = {"a": [1, None, [2, {"b": 3}]], "n": float("nan"), "o": {"p": {"q": "r"}}}
    assert document_values(doc, "a") == [1, 2]
    assert document_values(doc, "a.b") == [3]
    assert document_values(doc, "n") == []  # not a comparable value
    assert document_values(doc, "o.p.q") == ["r"]
    assert document_values(doc, "o.p") == []  # an object is not a value
    assert document_values(doc, "o", leaves=True) == ["r"]  # what exists asks of an object


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ({"match": {"title": "x"}}, "'match' is not a supported filter"),
        ({"term": {"a": 1, "b": 2}}, "names one field"),
        ({"term": {"a": None}}, "must be a string, number or boolean"),
        ({"term": {"a": [1, 2]}}, "must be a string, number or boolean"),
        ({"terms": {"a": []}}, "non-empty list"),
        ({"range": {"a": {"gte": 1, "lt": "z"}}}, "all numbers or all strings"),
        ({"range": {"a": {"relation": "within"}}}, "['relation'] not supported"),
        (
            {"range": {"a": {"gte": 1, "format": "yyyy||epoch_millis"}}},
            "range.a.format: 'yyyy' not supported; use strict_date_optional_time",
        ),
        (
            {"range": {"a": {"gte": 1, "time_zone": "Mars/Olympus"}}},
            "range.a.time_zone: 'Mars/Olympus' is not a time zone",
        ),
        ({"range": {"a": {"gte": "2024", "lt": "2024b"}}}, "lt '2024b' is not a date"),
        ({"range": {"a": {"gte": "v1", "time_zone": "+01:00"}}}, "'v1' is not a date"),
        ({"range": {"a": {"gte": 1.5, "format": "yyyy-MM-dd"}}}, "1.5 is not a date in format"),
        ({"range": {"a": {}}}, "at least one of gt, gte, lt, lte"),
        ({"exists": {"name": "a"}}, 'takes {"field": NAME}'),
        ({"ids": {"values": [1]}}, "document ids (strings)"),
        ({"bool": {"should": [{"term": {"a": 1}}], "minimum_should_match": 2}}, "no document"),
        ({"bool": {"minimum_should_match": "75%"}}, "whole number of clauses"),
        ({"bool": {"must": {"term": {"a": 1}}, "boost": "x"}}, "boost must be a number"),
        ({"term": {"": "x"}}, "not a dotted field path"),
        ("lang:en", "must be one query object"),
        ({}, "must be one query object"),
    ],
)
def test_bad_filters_are_refused_naming_what_and_where(spec: Any, named: str) -> None:
    with pytest.raises(InvalidInputError, match="filter") as caught:
        parse_filter(spec)
    assert named in str(caught.value)


def test_a_refusal_names_the_path_of_a_nested_clause() -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_filter({"bool": {"filter": [{"term": {"a": 1}}, {"prefix": {"b": "x"}}]}})
    assert str(caught.value).startswith("filter.bool.filter[1]: 'prefix' is not a supported")


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    spec: Any = {"term": {"a": 1}}
    for _ in range(200):
        spec = {"bool": {"must": spec}}
    with pytest.raises(InvalidInputError, match="nest at most"):
        parse_filter(spec)


# --- date math in range bounds -------------------------------------------------------------

# A Thursday, in a leap year's February (Elasticsearch reads now to the millisecond).
NOW = datetime(2024, 2, 29, 15, 30, 12, 345678, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# (bound, date math, what Elasticsearch compares a date field with: its docs' rounding table).
ROUNDING: list[tuple[str, str, str, datetime]] = [
    ("gte", "now-30d/d", ">=", _at("2024-01-30T00:00")),  # rounded down
    ("gt", "now-30d/d", ">", _at("2024-01-30T23:59:59.999")),  # rounded up
    ("lt", "now-30d/d", "<", _at("2024-01-30T00:00")),  # rounded down
    ("lte", "now-30d/d", "<=", _at("2024-01-30T23:59:59.999")),  # rounded up
    ("gte", "now/M", ">=", _at("2024-02-01T00:00")),
    ("lte", "now/M", "<=", _at("2024-02-29T23:59:59.999")),
    ("gt", "now/y", ">", _at("2024-12-31T23:59:59.999")),
    ("lt", "now/w", "<", _at("2024-02-26T00:00")),  # weeks start on Monday
    ("lte", "now/w", "<=", _at("2024-03-03T23:59:59.999")),
    ("gte", "now-1h/h", ">=", _at("2024-02-29T14:00")),
    ("gt", "now-1H/H", ">", _at("2024-02-29T14:59:59.999")),
    ("lt", "now/m", "<", _at("2024-02-29T15:30")),
    ("gt", "now/s", ">", _at("2024-02-29T15:30:12.999")),
    ("lte", "now-2m/s", "<=", _at("2024-02-29T15:28:12.999")),
    ("gte", "now/d-1d+12h", ">=", _at("2024-02-28T12:00")),  # steps apply left to right
    ("lte", "now/d-1d+12h", "<=", _at("2024-02-29T11:59:59.999")),
    ("gte", "now-1M/d", ">=", _at("2024-01-29T00:00")),
    ("lt", "now+1y/d", "<", _at("2025-02-28T00:00")),  # Feb 29 + 1y is Feb 28
    ("gte", "2024-01-31||+1M/d", ">=", _at("2024-02-29T00:00")),  # Jan 31 + 1M is Feb 29
    ("lt", "2024-01-31||+1M/M", "<", _at("2024-02-01T00:00")),
    ("lte", "2024-01-31T10:00:00+02:00||/h", "<=", _at("2024-01-31T08:59:59.999")),
    ("gt", "2023-12-31T23:59:59.5Z||/s", ">", _at("2023-12-31T23:59:59.999")),
]
# Not rounded: to the millisecond (a date-time to the second with a Z, in that very second,
# fell on the wrong side while bounds were compared as strings: it is now its instant).
UNROUNDED: list[tuple[str, str, str, datetime]] = [
    ("gte", "now", ">=", _at("2024-02-29T15:30:12.345")),
    ("gt", "now", ">", _at("2024-02-29T15:30:12.345")),
    ("lt", "now-1d", "<", _at("2024-02-28T15:30:12.345")),
    ("lte", "now-1d", "<=", _at("2024-02-28T15:30:12.345")),
    ("gt", "2024-01-31||", ">", _at("2024-01-31T00:00")),
    ("lte", "2024-01-31||+36h", "<=", _at("2024-02-01T12:00")),
]
_COMPARE = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_ms(instant: datetime) -> int:
    return (instant - _EPOCH) // _MS


def _stored_forms(instant: datetime, *, to_the_second: bool) -> list[str]:
    """The ways documents write dates near ``instant``: date only, and date-times in UTC to
    the second, millisecond and microsecond, with Z or +00:00."""
    forms = [
        instant.strftime("%Y-%m-%d"),
        instant.strftime("%Y-%m-%dT%H:%M:%S.") + f"{instant.microsecond // 1000:03d}Z",
        instant.isoformat(timespec="microseconds"),  # ...+00:00
    ]
    return [*forms, instant.strftime("%Y-%m-%dT%H:%M:%SZ")] if to_the_second else forms


def _date_math_docs(boundary: datetime, *, to_the_second: bool) -> dict[str, dict[str, Any]]:
    steps = [timedelta(days=1), timedelta(hours=1), timedelta(seconds=1), _MS, timedelta(0)]
    near = [boundary + sign * step for step in steps for sign in (-1, 1)]
    texts = {text for t in near for text in _stored_forms(t, to_the_second=to_the_second)}
    docs: dict[str, dict[str, Any]] = {text: {"published": text} for text in sorted(texts)}
    docs["epoch millis"] = {"published": _epoch_ms(boundary)}
    docs["epoch millis before"] = {"published": _epoch_ms(boundary) - 1}
    docs["one in range"] = {"published": ["1999-01-01", "2050-01-01"]}
    return docs


def _elasticsearch_passes(
    docs: dict[str, dict[str, Any]], compare: str, bound: datetime
) -> list[str]:
    """What Elasticsearch returns on a date field: each stored date (to the millisecond, UTC
    where it names no zone) compared with the bound's instant."""
    passing = []
    for doc_id, doc in docs.items():
        values = doc["published"] if isinstance(doc["published"], list) else [doc["published"]]
        instants = [_at(v) if isinstance(v, str) else _EPOCH + v * _MS for v in values]
        truncated = [t.replace(microsecond=t.microsecond // 1000 * 1000) for t in instants]
        if any(_COMPARE[compare](t, bound) for t in truncated):
            passing.append(doc_id)
    return passing


@pytest.mark.parametrize(
    ("key", "math", "compare", "bound", "to_the_second"),
    [(*case, True) for case in ROUNDING + UNROUNDED],
    ids=[f"{k} {m}" for k, m, _, _ in ROUNDING + UNROUNDED],
)
def test_date_math_passes_what_elasticsearch_passes_on_a_date_field(
    key: str, math: str, compare: str, bound: datetime, to_the_second: bool
) -> None:
    """``now-30d/d`` was compared as the string "now-30d/d" ("n" sorts after every digit: gte
    passed nothing, lt everything). Resolved at a fixed now, each bound rounds as
    Elasticsearch's does, and date-only and date-time strings of any precision compare as
    their instants do; the embedded store's mask agrees with the reference."""
    edge = bound if compare in (">=", "<") else bound + _MS  # where passing starts or stops
    docs = _date_math_docs(edge, to_the_second=to_the_second)
    flt = parse_filter({"range": {"published": {key: math}}})
    expected = _elasticsearch_passes(docs, compare, bound)
    assert 0 < len(expected) < len(docs)
    now_flt = resolved(flt, NOW)
    assert [i for i, doc in docs.items() if matches(now_flt, i, doc)] == expected
    table = FieldTable(list(docs))
    table.add_fields(list(docs.values()), table.missing(flt))
    assert [i for i, ok in zip(docs, table.mask(flt, NOW), strict=True) if ok] == expected


# The calendar's last units (9999-12-31 is a Friday): rounded up, each ends at its last
# millisecond, which no instant follows.
_LAST = _at("9999-12-31T23:59:59.999")
CALENDAR_END: list[tuple[str, str, str, datetime]] = [
    ("gte", "9999-12-31||/d", ">=", _at("9999-12-31T00:00")),
    ("lt", "9999-12-31||/d", "<", _at("9999-12-31T00:00")),
    ("lte", "9999-12-31||/d", "<=", _LAST),
    ("gt", "9999-12-31||/d", ">", _LAST),
    ("gte", "9999-12-31||/w", ">=", _at("9999-12-27T00:00")),
    ("lte", "9999-12-31||/w", "<=", _LAST),
    ("lt", "9999-06-15||/y", "<", _at("9999-01-01T00:00")),
    ("lte", "9999-06-15||/y", "<=", _LAST),
    ("lte", "9999-12-31T23:59:59.999Z||", "<=", _LAST),
    ("gt", "9999-12-31T23:59:59.999Z||", ">", _LAST),
]
# Dates a "valid until" field holds for "never ends", and dates before them.
CALENDAR_END_DATES = (
    "2024-05-01", "9999-01-01", "9999-12-26T23:59:59Z", "9999-12-27", "9999-12-30",
    "9999-12-31", "9999-12-31T00:00:00Z", "9999-12-31T12:00:00.5Z", "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999999+00:00",
)  # fmt: skip


@pytest.mark.parametrize(
    ("key", "math", "compare", "bound"),
    CALENDAR_END,
    ids=[f"{k} {m}" for k, m, _, _ in CALENDAR_END],
)
def test_date_math_at_the_end_of_year_9999_passes_what_elasticsearch_passes(
    key: str, math: str, compare: str, bound: datetime
) -> None:
    """A bound in year 9999 rounded up was refused as leaving the years 1 to 9999 (even a gte,
    which is not rounded up: "9999-12-31||/d" names that day's first millisecond), and an lte
    of the calendar's last millisecond failed at search time without naming the bound."""
    docs: dict[str, dict[str, Any]] = {text: {"published": text} for text in CALENDAR_END_DATES}
    flt = parse_filter({"range": {"published": {key: math}}})
    expected = _elasticsearch_passes(docs, compare, bound)
    now_flt = resolved(flt, NOW)
    assert [i for i, doc in docs.items() if matches(now_flt, i, doc)] == expected
    table = FieldTable(list(docs))
    table.add_fields(list(docs.values()), table.missing(flt))
    assert [i for i, ok in zip(docs, table.mask(flt, NOW), strict=True) if ok] == expected


def test_date_math_is_resolved_when_used_and_round_trips_as_written() -> None:
    """A filter parsed once and kept (a server's tree) means "now" each time it is resolved,
    and its JSON is the expression, not the date it resolved to."""
    spec = {"range": {"published": {"gte": "now-30d/d", "lt": "2030-01-01"}}}
    flt = parse_filter(spec)
    assert flt.to_dict() == spec and parse_filter(flt.to_dict()) == flt
    later = NOW + timedelta(days=40)
    since = resolved(flt, NOW).to_dict()["range"]["published"]
    assert since == {"gte": _epoch_ms(_at("2024-01-30")), "lte": _epoch_ms(_at("2030-01-01")) - 1,
                     "format": "epoch_millis"}  # fmt: skip
    later_since = resolved(flt, later).to_dict()["range"]["published"]["gte"]
    assert later_since == _epoch_ms(_at("2024-03-10"))
    assert flt.to_dict() == spec  # resolving leaves the filter as it was
    docs = {"feb": {"published": "2024-02-15T08:00:00Z"}}
    assert matches(resolved(flt, NOW), "feb", docs["feb"])
    assert not matches(resolved(flt, later), "feb", docs["feb"])
    # Unresolved, a match reads the present (real) time: a recent date passes, an old one not.
    today = datetime.now(UTC)
    recent = {"published": (today - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    old = {"published": (today - timedelta(days=60)).strftime("%Y-%m-%d")}
    assert matches(flt, "recent", recent) and not matches(flt, "old", old)


def test_a_date_math_bound_beside_a_plain_one_on_its_side_keeps_the_tighter() -> None:
    """``gt`` date math resolves to a ``gte``: beside a plain ``gte`` both must hold."""
    flt = parse_filter({"range": {"d": {"gte": "2024-02-10", "gt": "now-30d/d"}}})
    assert resolved(flt, NOW) == InstantRange(field="d", since=_epoch_ms(_at("2024-02-10")))
    flt = parse_filter({"range": {"d": {"gte": "2024-01-10", "gt": "now-30d/d"}}})
    assert resolved(flt, NOW) == InstantRange(field="d", since=_epoch_ms(_at("2024-01-31")))


@pytest.mark.parametrize(
    ("bound", "named"),
    [
        ("now-x", "unit 'x' is not a date math unit"),
        ("now-30", "a unit is missing after -30"),
        ("now1d", "a step starts with +, - or /"),
        ("now||-1d", "now takes no ||"),
        ("||+1M", "no date before ||"),
        ("01/02/2024||+1M", "is not an ISO 8601 date"),
        ("2024-02-30||", "is not a date (day is out of range for month)"),
        ("now/2d", "rounding takes a unit alone (/d)"),
        ("now+9000y", "leaves the years 1 to 9999"),
        ("now-99999999999d", "a count is at most 2147483647"),
    ],
)
def test_bad_date_math_is_refused_naming_the_bound(bound: str, named: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_filter({"bool": {"filter": [{"range": {"published": {"gte": bound}}}]}})
    assert str(caught.value).startswith("filter.bool.filter[0].range.published.gte: ")
    assert named in str(caught.value)


def test_a_string_starting_with_now_is_no_date_math() -> None:
    assert matches(parse_filter({"range": {"w": {"gte": "nowhere"}}}), "x", {"w": "nowt"})


# --- plain ISO 8601 date bounds ----------------------------------------------------------------

# (bound, plain date, what Elasticsearch compares a date field with: a missing time of day (hour,
# minute, second) rounds down for gte/lt and up for gt/lte; a missing month or day is the 1st).
PLAIN_DATES: list[tuple[str, str, str, datetime]] = [
    ("lte", "2024-01-31", "<=", _at("2024-01-31T23:59:59.999")),  # all of that day
    ("gt", "2024-01-31", ">", _at("2024-01-31T23:59:59.999")),  # after that day
    ("gte", "2024-01-31", ">=", _at("2024-01-31T00:00")),
    ("lt", "2024-01-31", "<", _at("2024-01-31T00:00")),
    ("lte", "2024-01", "<=", _at("2024-01-01T23:59:59.999")),  # the 1st, not all of January
    ("gt", "2024", ">", _at("2024-01-01T23:59:59.999")),
    ("gte", "2024-02", ">=", _at("2024-02-01T00:00")),
    ("lte", "2024-01-31T10", "<=", _at("2024-01-31T10:59:59.999")),
    ("gt", "2024-01-31T10:30Z", ">", _at("2024-01-31T10:30:59.999")),
    ("lt", "2024-01-31T10:30:15+00:00", "<", _at("2024-01-31T10:30:15")),
    ("lte", "2024-01-31T10:30:15Z", "<=", _at("2024-01-31T10:30:15.999")),
    ("gte", "2024-01-31T00:00:00Z", ">=", _at("2024-01-31T00:00")),  # 2024-01-31 passes
]
# A fraction is to the millisecond (not rounded: stored to the second with a Z, in that very
# second, compares as its instant, as for unrounded date math).
PLAIN_UNROUNDED: list[tuple[str, str, str, datetime]] = [
    ("lte", "2024-01-31T10:30:15.5Z", "<=", _at("2024-01-31T10:30:15.5")),
    ("gt", "2024-01-31T10:30:15.123456", ">", _at("2024-01-31T10:30:15.123")),
]


@pytest.mark.parametrize(
    ("key", "date", "compare", "bound", "to_the_second"),
    [(*case, True) for case in PLAIN_DATES + PLAIN_UNROUNDED],
    ids=[f"{k} {d}" for k, d, _, _ in PLAIN_DATES + PLAIN_UNROUNDED],
)
def test_a_plain_date_bound_passes_what_elasticsearch_passes_on_a_date_field(
    key: str, date: str, compare: str, bound: datetime, to_the_second: bool
) -> None:
    """``lte "2024-01-31"`` was compared as that string, so it left out "2024-01-31T10:00:00Z"
    (and ``gt`` let it in). A plain ISO 8601 bound now rounds as Elasticsearch fills a missing
    part of it, on the reference and the embedded store's mask, and keeps its JSON."""
    edge = bound if compare in (">=", "<") else bound + _MS
    docs = _date_math_docs(edge, to_the_second=to_the_second)
    spec = {"range": {"published": {key: date}}}
    flt = parse_filter(spec)
    assert flt.to_dict() == spec
    expected = _elasticsearch_passes(docs, compare, bound)
    assert 0 < len(expected) < len(docs)
    assert [i for i, doc in docs.items() if matches(flt, i, doc)] == expected
    table = FieldTable(list(docs))
    table.add_fields(list(docs.values()), table.missing(flt))
    assert [i for i, ok in zip(docs, table.mask(flt), strict=True) if ok] == expected


_LITERAL = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def test_date_only_strings_pass_a_plain_date_bound_as_they_did() -> None:
    """Rounding changes nothing for stored dates as precise as the bound (``lte 2024-01-31``
    is ``lt 2024-02-01`` for them): each passes as its string compared. (Only a longer stored
    value, within the time the bound rounds over, or a shorter one naming the bound's instant,
    as ``2024`` beside ``gte 2024-01``, passes otherwise: as in Elasticsearch.)"""
    days = [datetime(2023, 12, 25, tzinfo=UTC) + timedelta(days=n) for n in range(72)]
    for form in ("%Y-%m-%d", "%Y-%m", "%Y", "%Y-%m-%dT%H"):  # stored values and bounds alike
        stored = sorted({f"{d + timedelta(hours=7 * n):{form}}" for n, d in enumerate(days)})
        docs = {text: {"d": text} for text in stored}
        for bound in stored:
            for key, holds in _LITERAL.items():
                flt = parse_filter({"range": {"d": {key: bound}}})
                passed = [i for i, doc in docs.items() if matches(flt, i, doc)]
                assert passed == [text for text in stored if holds(text, bound)], (key, bound)


@pytest.mark.parametrize(
    "bound",
    ["2024-01-31abc", "v2024", "20240131", "2024-1-5", "2024-02-30", "2024-13", "0000",
     "2024-01-31 10:00", "2024-01-31t10", "2024-01-31T25", "٢٠٢٤-01-31"],
)  # fmt: skip
def test_a_string_that_is_no_iso_date_stays_a_string(bound: str) -> None:
    """Only an ISO 8601 date (or date-time) is read as a date: anything else, an impossible
    date or non-ASCII digits included, compares as written."""
    stored = ["2024-01-31", "2024-01-31T10:00:00Z", "2024-01-31abc", "2024-02-01", "v2024"]
    docs = {text: {"d": text} for text in stored}
    for key, holds in _LITERAL.items():
        flt = parse_filter({"range": {"d": {key: bound}}})
        assert resolved(flt, NOW) == flt and flt.to_dict() == {"range": {"d": {key: bound}}}
        passed = [i for i, doc in docs.items() if matches(flt, i, doc)]
        assert passed == [text for text in stored if holds(text, bound)], (key, bound)


@pytest.mark.parametrize("bound", ["9999-12-31", "9999-12-31T23", "9999-12-31||/d", "9999||/y"])
def test_a_bound_rounding_up_to_the_end_of_year_9999_passes_every_date(bound: str) -> None:
    """``lte "9999-12-31"`` (an open end some data uses) rounds up to the last millisecond
    there is (date math rounding there was refused as leaving the years 1 to 9999): every
    date passes, none is after it."""
    stored = ["2024-01-31", "9999-12-31", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59.999+00:00"]
    docs = {text: {"d": text} for text in stored}
    for key, expected in (("lte", stored), ("gt", [])):
        flt = parse_filter({"range": {"d": {key: bound}}})
        assert [i for i, doc in docs.items() if matches(flt, i, doc)] == expected, key


# --- dates as instants: offsets, epoch milliseconds, time_zone, format ------------------------


def _instant_of(value: Any) -> datetime | None:
    """What Elasticsearch's default date format (strict_date_optional_time||epoch_millis) reads
    a stored value as, to the millisecond: a number as epoch milliseconds, an ISO 8601 string
    at its offset (none: UTC)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _EPOCH + value * _MS
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)


def _passing_both_ways(spec: Any, docs: dict[str, Any], now: datetime = NOW) -> list[str]:
    """The ids the reference passes, checked to be the embedded store's mask's too."""
    flt = parse_filter(spec)
    assert parse_filter(flt.to_dict()) == flt  # time_zone and format kept as written
    now_flt = resolved(flt, now)
    passed = [i for i, doc in docs.items() if matches(now_flt, i, doc)]
    assert resolved(parse_filter(now_flt.to_dict()), now) == now_flt  # its JSON is its own
    table = FieldTable(list(docs))
    table.add_fields(list(docs.values()), table.missing(flt))
    assert [i for i, ok in zip(docs, table.mask(flt, now), strict=True) if ok] == passed
    return passed


# The instants 2024-03-01T08:59:59.999Z, 09:00Z and 09:00:00.001Z, each written several ways.
_AROUND_NINE = [
    "2024-03-01T10:59:59.999+02:00", "2024-03-01T03:29:59.999-0530", "2024-03-01T08:59:59.999",
    "2024-03-01T10:00:00+02:00", "2024-03-01T09:00:00Z", "2024-03-01T04:00-05", "2024-03-01T09",
    "2024-03-01T10:00:00.001+01:00", "2024-03-01T09:00:00.001999Z",
]  # fmt: skip
DATED_DOCS: dict[str, dict[str, Any]] = {
    **{text: {"d": text} for text in _AROUND_NINE},
    "epoch before": {"d": 1709283599999},
    "epoch at": {"d": 1709283600000},
    "epoch after": {"d": 1709283600001},
    "not a date": {"d": "2024-03-01T09:00:00Zabc"},
    "a boolean": {"d": True},
    "day": {"d": "2024-03-01"},
    "day before": {"d": "2024-02-29"},
}


# One instant, 09:00Z, as bounds at several offsets (and none: UTC).
OFFSET_BOUNDS = [(key, bound) for key in ("gte", "gt", "lt", "lte") for bound in (
    "2024-03-01T09:00:00.000Z", "2024-03-01T11:00:00.000+02:00", "2024-03-01T03:30:00.000-05:30",
    "2024-03-01T09:00:00.000",
)]  # fmt: skip


@pytest.mark.parametrize(("key", "bound"), OFFSET_BOUNDS)
def test_dates_at_any_offset_and_epoch_millis_compare_as_instants(key: str, bound: str) -> None:
    """``10:00:00+02:00`` compared with a date bound by its digits (as 10:00 UTC), an epoch
    millisecond number never passed one, and a bound at another offset was no date at all (a
    string). As on an Elasticsearch date field, each stored value is now its instant."""
    instant = _at("2024-03-01T09:00")
    expected = [
        i for i, doc in DATED_DOCS.items()
        if (at := _instant_of(doc["d"])) is not None and _LITERAL[key](at, instant)
    ]  # fmt: skip
    assert 0 < len(expected) < len(DATED_DOCS) - 2
    assert _passing_both_ways({"range": {"d": {key: bound}}}, DATED_DOCS) == expected


# (range, the first and last instants it passes: None, open).
ZONED_RANGES: list[tuple[dict[str, Any], str | None, str | None]] = [
    # A day in Paris: 23 hours where summer time starts.
    ({"gte": "2024-03-31", "lte": "2024-03-31", "time_zone": "Europe/Paris"},
     "2024-03-30T23:00", "2024-03-31T21:59:59.999"),
    ({"gte": "2024-03-01T10:00", "lt": "2024-03-01T11:00", "time_zone": "+01:00"},
     "2024-03-01T09:00", "2024-03-01T09:59:59.999"),
    # A bound with its own offset keeps it.
    ({"gte": "2024-03-01T09:00Z", "lt": "2024-03-01T11:00", "time_zone": "-05:00"},
     "2024-03-01T09:00", "2024-03-01T15:59:59.999"),
    # now is the instant; rounding is in the zone (NOW is 2024-02-29T15:30:12.345Z).
    ({"gte": "now/d", "time_zone": "+10:00"}, "2024-02-29T14:00", None),
    ({"gte": "now-1d/d", "lt": "now/d", "time_zone": "America/Los_Angeles"},
     "2024-02-28T08:00", "2024-02-29T07:59:59.999"),
    ({"lte": "now-1h/h", "time_zone": "+05:30"}, None, "2024-02-29T15:29:59.999"),
    ({"gt": "2024-03-30||+1d/d", "time_zone": "Europe/Paris"}, "2024-03-31T22:00", None),
    # format: epoch numbers (or their strings), alternatives, a date math anchor.
    ({"gte": 1709283600000, "lt": "1709283600002", "format": "epoch_millis"},
     "2024-03-01T09:00", "2024-03-01T09:00:00.001"),
    ({"gt": 1709283599, "lte": 1709283600, "format": "epoch_second"},
     "2024-03-01T09:00", "2024-03-01T09:00:00.999"),
    ({"gte": "2024-03-01", "lte": 1709283600, "format": "yyyy-MM-dd||epoch_second"},
     "2024-03-01T00:00", "2024-03-01T09:00:00.999"),
    ({"gte": "1709251200||+9h", "format": "epoch_second"}, "2024-03-01T09:00", None),
    ({"lte": "2024-03-01", "format": "strict_date_optional_time", "time_zone": "+09:00"},
     None, "2024-03-01T14:59:59.999"),
]  # fmt: skip


def zoned_docs(first: str | None, last: str | None) -> dict[str, dict[str, Any]]:
    """Dates a millisecond before, at and after each end, as UTC strings and epoch numbers."""
    edges = [_at(t) for t in (first, last) if t is not None]
    near = sorted({edge + step * _MS for edge in edges for step in (-1, 0, 1)})
    docs = {f"{t:%Y-%m-%dT%H:%M:%S.%f}"[:-3] + "Z": {"d": f"{t:%Y-%m-%dT%H:%M:%S.%f}Z"}
            for t in near}  # fmt: skip
    return docs | {f"epoch {t}": {"d": _epoch_ms(t)} for t in near}


@pytest.mark.parametrize(("spec", "first", "last"), ZONED_RANGES)
def test_a_range_time_zone_and_format_pass_what_elasticsearch_passes(
    spec: dict[str, Any], first: str | None, last: str | None
) -> None:
    """``time_zone`` and ``format`` were refused ("dates are read in UTC"). A bound naming no
    offset is now read in ``time_zone``, date math rounds there (``now`` stays the instant),
    and ``format`` reads epoch seconds and milliseconds and its alternatives."""
    docs = zoned_docs(first, last)
    low, high = (_at(first) if first else None), (_at(last) if last else None)
    expected = [
        i for i, doc in docs.items()
        if (low is None or _instant_of(doc["d"]) >= low)
        and (high is None or _instant_of(doc["d"]) <= high)
    ]  # fmt: skip
    assert _passing_both_ways({"range": {"d": spec}}, docs) == expected


def test_a_range_time_zone_and_format_are_refused_naming_what_is_wrong() -> None:
    cases = {
        "'yyyy/MM/dd' not supported; use strict_date_optional_time, date_optional_time, "
        "strict_date, date, yyyy-MM-dd, epoch_millis, epoch_second": {
            "gte": "2024/03/01", "format": "yyyy/MM/dd"},
        "'2024-03-01T10:00' is not a date in format yyyy-MM-dd": {
            "gte": "2024-03-01T10:00", "format": "yyyy-MM-dd"},
        "'+25:00' is not a time zone; give a UTC offset": {"gte": "now", "time_zone": "+25:00"},
        "'abc' before || is not a date in the format": {
            "gte": "abc||+1d", "format": "epoch_millis"},
    }  # fmt: skip
    for named, spec in cases.items():
        with pytest.raises(InvalidInputError) as caught:
            parse_filter({"range": {"d": spec}})
        assert str(caught.value).startswith("filter.range.d.") and named in str(caught.value)
