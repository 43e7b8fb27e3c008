"""Index aliases in PostgreSQL: table ``semrank.aliases`` (alias -> index, migration 2), whose
rows go with their index's (``ON DELETE CASCADE``). The actions themselves are applied as the
embedded store applies them (``semrank.store._aliases.applied``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from semrank.errors import IndexNotFoundError
from semrank.store.postgres._pool import acquire_pool, pooled_connection, redact, release_pool
from semrank.store.postgres._schema import ensure_migrated

# Taken by an alias change, and (in SHARE mode, which it conflicts with) by an index's create:
# an alias and an index created at once cannot take the same name.
ALIAS_CHANGE_LOCK = "LOCK TABLE semrank.aliases IN SHARE ROW EXCLUSIVE MODE"
INDEX_CREATE_LOCK = "LOCK TABLE semrank.aliases IN SHARE MODE"

Change = Callable[[Mapping[str, str], Callable[[str], bool]], dict[str, str]]


def list_postgres_aliases(dsn: str) -> dict[str, str]:
    """Every alias of ``dsn``'s database and the index it names."""
    pool = acquire_pool(dsn)
    try:
        ensure_migrated(pool, dsn)
        with pooled_connection(pool, dsn) as conn:
            return dict(conn.execute("SELECT alias, index_name FROM semrank.aliases").fetchall())
    finally:
        release_pool(dsn)


def resolve_postgres_alias(dsn: str, name: str) -> str:
    """The index alias ``name`` names, else ``name``."""
    pool = acquire_pool(dsn)
    try:
        ensure_migrated(pool, dsn)
        with pooled_connection(pool, dsn) as conn:
            row = conn.execute(
                "SELECT index_name FROM semrank.aliases WHERE alias = %s", (name,)
            ).fetchone()
    finally:
        release_pool(dsn)
    return name if row is None else str(row[0])


def update_postgres_aliases(dsn: str, change: Change) -> None:
    """Apply ``change`` (the aliases now, whether a name is an index -> the aliases after) in
    one transaction, the table locked against other changes and creates meanwhile."""
    import psycopg

    pool = acquire_pool(dsn)
    try:
        ensure_migrated(pool, dsn)
        with pooled_connection(pool, dsn) as conn, conn.transaction():
            conn.execute(ALIAS_CHANGE_LOCK)
            now = dict(conn.execute("SELECT alias, index_name FROM semrank.aliases").fetchall())
            indexes = {row[0] for row in conn.execute("SELECT name FROM semrank.indexes")}
            after = change(now, indexes.__contains__)
            try:
                _write(conn, now, after)
            except psycopg.errors.ForeignKeyViolation as exc:  # its index dropped meanwhile
                raise IndexNotFoundError(
                    f"an index named by the alias actions was dropped from {redact(dsn)} "
                    "meanwhile; nothing was changed"
                ) from exc
    finally:
        release_pool(dsn)


def _write(conn: Any, now: Mapping[str, str], after: Mapping[str, str]) -> None:
    gone = [alias for alias in now if now[alias] != after.get(alias)]
    if gone:
        conn.execute("DELETE FROM semrank.aliases WHERE alias = ANY(%s)", (gone,))
    for alias, index in after.items():
        if now.get(alias) != index:
            conn.execute(
                "INSERT INTO semrank.aliases (alias, index_name) VALUES (%s, %s)", (alias, index)
            )
