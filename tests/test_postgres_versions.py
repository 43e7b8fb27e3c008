"""Document versions and conditional writes on PostgreSQL, as on the embedded store
(test_versions.py), and a database made before migration 3."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from semrank.errors import IndexVersionError
from semrank.store import Expected, Store, create_index, list_indexes, open_index
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

    with (
        psycopg.connect(dsn) as conn,
        pytest.raises(IndexVersionError, match="this semrank knows 2 at most"),
    ):
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


# --- several processes, a version at the top of its range (test_versions_processes.py) ----------


@pytest.mark.parametrize("how", ["library", "bulk"])
def test_postgres_increments_from_processes_lose_none(pg_dsn: str, how: str) -> None:  # noqa: F811
    from test_versions_processes import check_increments_from_processes

    create_index("v", store=pg_dsn, embedding_model=None).close()
    check_increments_from_processes(pg_dsn, how)


def test_postgres_writes_past_the_highest_version_are_refused(pg_dsn: str) -> None:  # noqa: F811
    from test_versions_processes import check_writes_past_the_highest_version_are_refused

    with create_index("v", store=pg_dsn, embedding_model=None) as index:
        check_writes_past_the_highest_version_are_refused(index)


# --- migration 3 and the roles of docs/postgresql.md ("Roles") -----------------------------------

_BEFORE_VERSIONS = (  # the database as the semrank before versions left it
    "ALTER TABLE semrank.documents DROP COLUMN version, DROP COLUMN seq_no; "
    "ALTER TABLE semrank.indexes DROP COLUMN seq_no; "
    "DELETE FROM semrank.migrations WHERE version = 3"
)


def _owned_database(pg_server, pg_database: str) -> str:  # type: ignore[no-untyped-def]  # noqa: F811
    """A DSN of a role (not a superuser) owning semrank's tables, with index g of 2 documents
    made before migration 3."""
    from semrank.store.postgres import _schema
    from test_postgres_store import owner_role_dsn

    owner_dsn = owner_role_dsn(pg_server, pg_database)
    with create_index("g", store=owner_dsn, embedding_model=None) as index:
        index.upsert([{"id": "a", "text": "one"}, {"id": "b", "text": "two"}])
    done = pg_server.psql(pg_database, _BEFORE_VERSIONS)
    assert done.returncode == 0, done.stderr
    _schema._MIGRATED.clear()
    return owner_dsn


def _owners(pg_server, pg_database: str) -> set[str]:  # type: ignore[no-untyped-def]  # noqa: F811
    """The owners of semrank's tables and of every partition of its documents."""
    listed = pg_server.psql(
        pg_database,
        "SELECT DISTINCT c.relowner::regrole FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = 'semrank' AND c.relkind IN ('r', 'p')",
    )
    assert listed.returncode == 0, listed.stderr
    return {line.strip() for line in listed.stdout.splitlines() if line.strip()}


@pytest.mark.parametrize("migrator", ["owner", "superuser"])
def test_migration_3_keeps_a_non_superuser_owner_s_tables(  # type: ignore[no-untyped-def]
    pg_server,  # noqa: F811
    pg_database,  # noqa: F811
    migrator: str,
) -> None:
    """Migration 3 applied by the tables' owner (not a superuser), or by a DBA's superuser:
    the owner reads every document at version 1, writes versions, and still owns the tables
    and every partition (a partition made after the migration included)."""
    owner_dsn = _owned_database(pg_server, pg_database)
    first = owner_dsn if migrator == "owner" else pg_server.dsn(pg_database)
    assert list_indexes(store=first) == ["g"]  # its first use migrates the database
    with open_index("g", store=owner_dsn) as index:
        assert _versions(index, ["a", "b"]) == [(1, 0), (1, 0)]
        index.upsert([{"id": "a", "text": "changed"}], expected={"a": Expected(seq_no=0)})
        assert _versions(index, ["a", "b"]) == [(2, 1), (1, 0)]
    with create_index("h", store=owner_dsn, embedding_model=None) as index:
        index.upsert([{"id": "c", "text": "three"}])
        assert _versions(index, ["c"]) == [(1, 1)]
    assert _owners(pg_server, pg_database) == {f"owner_{pg_database}"}


def test_a_role_with_grants_only_is_told_to_have_the_owner_apply_migration_3(  # type: ignore[no-untyped-def]
    pg_server,  # noqa: F811
    pg_database,  # noqa: F811
) -> None:
    """A role with the documented table grants only, first to use the database after the
    upgrade, may not add the columns: refused, naming migration 3 and what the owner runs;
    once the owner has, its reads and conditional writes work."""
    from semrank.errors import BackendUnavailableError, VersionConflictError

    owner_dsn = _owned_database(pg_server, pg_database)
    reader = f"reader_{pg_database}"
    grants = (
        f"CREATE ROLE {reader} LOGIN; GRANT USAGE ON SCHEMA semrank TO {reader}; "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA semrank TO {reader}; "
        f"REVOKE CREATE ON DATABASE {pg_database} FROM PUBLIC"
    )
    done = pg_server.psql(pg_database, grants)
    assert done.returncode == 0, done.stderr
    reader_dsn = owner_dsn.replace(f"://owner_{pg_database}@", f"://{reader}@")
    with pytest.raises(BackendUnavailableError) as refused:
        open_index("g", store=reader_dsn)
    said = str(refused.value)
    assert "may not apply semrank's migration 3 (store: document versions" in said
    assert "as the owner of the semrank tables" in said
    assert list_indexes(store=owner_dsn) == ["g"]  # the owner's first use migrates it
    with open_index("g", store=reader_dsn) as index:
        assert list(index.search_bm25("one", k=1).ids) == ["a"]
        index.upsert([{"id": "a", "text": "changed"}], expected={"a": Expected(seq_no=0)})
        with pytest.raises(VersionConflictError):
            index.upsert([{"id": "a", "text": "lost"}], expected={"a": Expected(seq_no=0)})
        assert _versions(index, ["a", "b"]) == [(2, 1), (1, 0)]
    assert _owners(pg_server, pg_database) == {f"owner_{pg_database}"}
