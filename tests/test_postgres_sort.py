"""Sorting by document fields on the PostgreSQL store: its passing documents' values selected
in SQL (``PostgresStore.sort_values``), ordered as the reference and the embedded store order
them (tests/test_sort.py), search_after pages included.

A real PostgreSQL server (see test_postgres_server.py); skipped when it is not installed.
"""

from __future__ import annotations

from typing import Any

import pytest

from semrank.errors import InvalidInputError
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
