"""post_filter and collapse on the PostgreSQL store: its hits are the reference's over its own
ranking (tests/test_facets.py), and its totals and facet counts the embedded store's.

A real PostgreSQL server (see test_postgres_server.py); skipped when it is not installed.
"""

from __future__ import annotations

from typing import Any

import pytest

from semrank.errors import InvalidInputError
from semrank.pipeline import search
from test_facets import (
    QUERIES,
    SORTS,
    STAGED,
    check_collapse,
    check_odd_collapse,
    facet_corpus,
    facets,  # noqa: F401 (fixture: the embedded store of the same documents)
    odd_corpus,
    passing,
    ranking,
    staged,
)
from test_postgres_filter import filled_database
from test_postgres_server import pg_database, pg_dsn, pg_server  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def pg_facets(pg_server):  # type: ignore[no-untyped-def]  # noqa: F811
    with filled_database(pg_server, facet_corpus()) as (store, docs):
        yield store, docs


@STAGED
def test_postgresql_post_filter_is_the_reference_and_counts_as_embedded(
    pg_facets: Any,
    facets: Any,  # noqa: F811
    query: Any,
    post_filter: Any,
) -> None:
    store, docs = pg_facets
    expected = passing(docs, ranking(store, query), post_filter)
    found = staged(store, query, post_filter=post_filter, size=12)
    assert found.ids == expected[:12]
    embedded = staged(facets[0], query, post_filter=post_filter, size=12)
    assert (found.matched, found.aggregations) == (embedded.matched, embedded.aggregations)


@pytest.mark.parametrize("sort", SORTS, ids=["score", "price", "brand-price"])
@pytest.mark.parametrize("query", QUERIES[:2], ids=["match", "match_all"])
def test_postgresql_collapse_is_the_reference(pg_facets: Any, query: Any, sort: Any) -> None:
    assert check_collapse(*pg_facets, query, sort)


def test_postgresql_refuses_a_multi_valued_collapse_field(pg_facets: Any) -> None:
    store, _ = pg_facets
    with pytest.raises(InvalidInputError, match="must be single valued"):
        search(store, retriever={"query": {"match_all": {}}, "collapse": {"field": "colours"}})


@pytest.mark.parametrize("field", ["kind", "meta.kind"])
def test_postgresql_collapse_groups_odd_values_as_the_reference(
    pg_server: Any,  # noqa: F811
    tmp_path: Any,
    field: str,
) -> None:
    """Nested and dotted fields, 7 and 7.0, booleans, numbers past 2^53, a keyword given twice:
    grouped, shown and counted as the reference and the embedded store do."""
    from semrank.store import create_index

    docs = odd_corpus()
    embedded = create_index("odd", home=tmp_path, embedding_model=None)
    embedded.upsert([{"id": doc_id, **doc} for doc_id, doc in docs.items()])
    with filled_database(pg_server, docs) as (store, _):
        assert check_odd_collapse(store, docs, field) == check_odd_collapse(embedded, docs, field)
        with pytest.raises(InvalidInputError, match=r"no document holds collapse\.field"):
            search(store, retriever={"query": {"match_all": {}}, "collapse": {"field": "kinds"}})
