"""Document filters (Elasticsearch filter-context DSL): parsing, refusals and the reference
semantics every store is compared against."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from semrank.errors import InvalidInputError
from semrank.retrieve import document_values, fields_read, matches, parse_filter
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
        ({"range": {"a": {"format": "yyyy"}}}, "['format'] not supported"),
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
