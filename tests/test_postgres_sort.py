"""Sorting by document fields on the PostgreSQL store: its passing documents' values selected
in SQL (``PostgresStore.sort_values``), ordered as the reference and the embedded store order
them (tests/test_sort.py), search_after pages included.

A real PostgreSQL server (see test_postgres_server.py); skipped when it is not installed.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from semrank.errors import InvalidInputError
from semrank.retrieve._sort import parse_sort
from test_postgres_filter import filled_database
from test_postgres_server import pg_database, pg_dsn, pg_server  # noqa: F401 (fixtures)
from test_sort import CURSORS, PARITY, check_pages, expected, searched, sort_corpus


@pytest.fixture(scope="module")
def pg_sorted(pg_server):  # type: ignore[no-untyped-def]  # noqa: F811
    with filled_database(pg_server, sort_corpus()) as (store, docs):
        yield store, docs


@PARITY
def test_postgresql_sorted_search_is_the_reference_order(
    pg_sorted: Any, flt: Any, sort: Any
) -> None:
    assert searched(pg_sorted[0], flt, sort) == expected(pg_sorted[1], flt, sort)


def test_postgresql_search_after_pages_are_the_reference_list(pg_sorted: Any) -> None:
    store, docs = pg_sorted
    check_pages(store, docs, [{"when": "desc"}, {"price": {"mode": "avg"}}], size=11)


def test_postgresql_refuses_a_mixed_field_as_the_reference_does(pg_sorted: Any) -> None:
    store, _ = pg_sorted
    with pytest.raises(InvalidInputError, match="cannot sort on field 'mixed'"):
        searched(store, {"match_all": {}}, "mixed")


@pytest.mark.parametrize(("sort", "after"), CURSORS, ids=[str(n) for n in range(len(CURSORS))])
def test_postgresql_search_after_any_cursor_is_the_reference_order(
    pg_sorted: Any, sort: Any, after: Any
) -> None:
    store, docs = pg_sorted
    flt = {"match_all": {}}
    assert searched(store, flt, sort, search_after=after) == expected(docs, flt, sort, after=after)


# --- the first hits ordered in SQL (``sort_candidates``): one number a document ------------
def numbers_corpus() -> dict[str, dict[str, Any]]:
    """``num``: at most one number a document (ints, floats, 1 beside 1.0, ties, missing);
    ``listed``: the same but one document holds a list; ``mixed``: one holds a string;
    ``when``: ISO dates at offsets (all take the general path but ``num``)."""
    rng = random.Random(20260302)
    docs: dict[str, dict[str, Any]] = {}
    for n in range(150):
        num = rng.choice([n % 9, (n % 6) / 4, 1, 1.0, -2.5, 1e20, None])
        doc: dict[str, Any] = {"text": f"n {n}", "group": rng.choice("ab"), "num": num}
        doc["listed"] = num
        doc["mixed"] = num
        doc["when"] = rng.choice(["2024-03-01T10:00:00+02:00", "2024-03-01T09:00:00Z", None])
        docs[f"n{n:03d}é" if n % 10 == 0 else f"n{n:03d}"] = {
            k: v for k, v in doc.items() if v is not None
        }
    docs["n051"]["listed"] = [4, 0.5]
    docs["n052"]["mixed"] = "4"
    return docs


@pytest.fixture(scope="module")
def pg_numbers(pg_server):  # type: ignore[no-untyped-def]  # noqa: F811
    with filled_database(pg_server, numbers_corpus()) as (store, docs):
        yield store, docs


NUMBER_SORTS: list[Any] = [
    "num",
    [{"num": "desc"}],
    [{"num": {"order": "asc", "missing": "_first"}}],
    [{"num": {"order": "desc", "missing": "_first", "mode": "avg"}}],
    [{"num": "desc"}, {"listed": "asc"}],
    ["listed"],
    [{"when": "desc"}, "num"],
    ["num", "_id"],
]
NUMBER_FILTERS: list[Any] = [
    {"match_all": {}},
    {"term": {"group": "a"}},
    {"range": {"num": {"gte": 1}}},
]


@pytest.mark.parametrize("flt", NUMBER_FILTERS, ids=["all", "term", "range"])
@pytest.mark.parametrize("sort", NUMBER_SORTS, ids=[str(n) for n in range(len(NUMBER_SORTS))])
@pytest.mark.parametrize("size", [1, 7, 200])
def test_postgresql_orders_single_numbers_in_sql_as_the_reference(
    pg_numbers: Any, flt: Any, sort: Any, size: int
) -> None:
    store, docs = pg_numbers
    assert searched(store, flt, sort, size=size) == expected(docs, flt, sort)[:size]


@pytest.mark.parametrize(
    ("sort", "pushed"),
    [
        ("num", True),
        ([{"num": "desc"}, "num"], True),
        ("listed", False),
        ("when", False),
        (["num", "_id"], False),
        ("mixed", False),
    ],
)
def test_postgresql_orders_in_sql_only_fields_of_one_number(
    pg_numbers: Any, sort: Any, pushed: bool
) -> None:
    """Ordered in SQL, only the page's documents leave the server; else every passing one."""
    store, docs = pg_numbers
    table = store.sort_candidates({"match_all": {}}, parse_sort(sort), after=None, limit=5)
    assert len(table) == (5 if pushed else len(docs))


NUMBER_CURSORS: list[tuple[Any, list[Any]]] = [
    ("num", [1]),  # at a value: ties (1 and 1.0) after nothing without the id
    ("num", [1.0, "n020é"]),  # between ties, by id
    ("num", [0.3]),  # between values
    ("num", [1e30]),  # after every value: the missing ones
    ("num", [None, "n100é"]),  # among the missing
    ([{"num": "desc"}], [-3]),
    ([{"num": {"order": "desc", "missing": "_first"}}], [None, "n020é"]),
    ([{"num": {"order": "asc", "missing": "_first"}}], [None]),
    ([{"num": "desc"}, {"listed": "asc"}], [2, 0.5, "n007"]),
]


@pytest.mark.parametrize(
    ("sort", "after"), NUMBER_CURSORS, ids=[str(n) for n in range(len(NUMBER_CURSORS))]
)
def test_postgresql_search_after_in_sql_is_the_reference_order(
    pg_numbers: Any, sort: Any, after: Any
) -> None:
    store, docs = pg_numbers
    for flt in NUMBER_FILTERS:
        got = searched(store, flt, sort, size=9, search_after=after)
        assert got == expected(docs, flt, sort, after=after)[:9]


def test_postgresql_pages_ordered_in_sql_are_the_reference_list(pg_numbers: Any) -> None:
    store, docs = pg_numbers
    check_pages(store, docs, [{"num": {"order": "desc", "missing": "_first"}}], size=7)


def test_postgresql_refuses_a_bad_cursor_ordered_in_sql_as_the_reference(pg_numbers: Any) -> None:
    store, _ = pg_numbers
    with pytest.raises(InvalidInputError, match="search_after"):
        searched(store, {"match_all": {}}, "num", search_after=["x"])
    with pytest.raises(InvalidInputError, match="cannot sort on field 'mixed'"):
        searched(store, {"match_all": {}}, "mixed")
