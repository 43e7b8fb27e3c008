"""Document versions and conditional writes on PostgreSQL, as on the embedded store
(test_versions.py), and a database made before migration 3."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from semrank.errors import IndexVersionError
from semrank.store import Expected, Store, create_index, open_index
from test_postgres_server import pg_database, pg_dsn, pg_server  # noqa: F401 (fixtures)
from test_store_delete_listed import CHECKS as DELETE_LISTED_CHECKS
from test_versions import (
    _versions,
    check_conditional_writes,
    check_two_writers_one_wins,
    check_versions_count_writes,
    race_increments,
)


def test_postgres_versions_count_writes(pg_dsn: str) -> None:  # noqa: F811
    with create_index("v", store=pg_dsn, embedding_model=None) as index:
        check_versions_count_writes(index)


def test_postgres_conditional_writes(pg_dsn: str) -> None:  # noqa: F811
    with create_index("v", store=pg_dsn, embedding_model=None) as index:
        check_conditional_writes(index)


def test_postgres_two_writers_racing_lose_no_update(pg_dsn: str) -> None:  # noqa: F811
    with create_index("v", store=pg_dsn, embedding_model=None) as index:
        index.upsert([{"id": "n", "text": "n", "count": 0}])
        with open_index("v", store=pg_dsn) as other:
            check_two_writers_one_wins(index, other)
    race_increments(lambda: open_index("v", store=pg_dsn))


def test_a_database_from_before_versions_opens_at_version_1(pg_server, pg_database) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from semrank.store.postgres import _schema

    dsn = pg_server.dsn(pg_database)
    with create_index("old", store=dsn, embedding_model=None) as index:
        index.upsert([{"id": "a", "text": "one"}, {"id": "b", "text": "two"}])
    before_versions = (  # the database as the semrank before versions left it
        "ALTER TABLE semrank.documents DROP COLUMN version, DROP COLUMN seq_no; "
        "ALTER TABLE semrank.indexes DROP COLUMN seq_no; "
        "DELETE FROM semrank.migrations WHERE version = 3"
    )
    done = pg_server.psql(pg_database, before_versions)
    assert done.returncode == 0, done.stderr
    _schema._MIGRATED.clear()
    with open_index("old", store=dsn) as index:  # its first use migrates it
        assert _versions(index, ["a", "b"]) == [(1, 0), (1, 0)]
        index.upsert([{"id": "a", "text": "changed"}], expected={"a": Expected(seq_no=0)})
        assert _versions(index, ["a", "b"]) == [(2, 1), (1, 0)]
    # A semrank without migration 3 (its writes would keep no versions) refuses it now.
    older = tuple(m for m in _schema.MIGRATIONS if m[0] < 3)
    import psycopg

    with psycopg.connect(dsn) as conn, pytest.raises(IndexVersionError, match="migration 3;"):
        _schema.migrate(conn, older)


@pytest.mark.parametrize("check", DELETE_LISTED_CHECKS)
def test_postgres_delete_listed_leaves_documents_written_since(
    pg_dsn: str,  # noqa: F811
    check: Callable[[Store, Store], None],
) -> None:
    with (
        create_index("v", store=pg_dsn, embedding_model=None) as index,
        open_index("v", store=pg_dsn) as other,
    ):
        check(index, other)
