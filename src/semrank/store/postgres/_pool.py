"""Connection pools (psycopg 3 + psycopg_pool), one per DSN and process, shared by the stores
opened on it and closed when the last of them closes."""

from __future__ import annotations

import re
import threading
from typing import Any

from semrank.errors import BackendUnavailableError, InvalidInputError

DSN_SCHEMES = ("postgresql://", "postgres://")
POOL_MAX_SIZE = 8

_POOLS: dict[str, tuple[int, Any]] = {}  # dsn -> (users, ConnectionPool)
_LOCK = threading.Lock()


def is_postgres_dsn(value: object) -> bool:
    """Whether ``value`` names a PostgreSQL database (``postgresql://...``)."""
    return isinstance(value, str) and value.startswith(DSN_SCHEMES)


def redact(dsn: str) -> str:
    """``dsn`` without its password, for messages and ``index info``."""
    hidden = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)
    return re.sub(r"(password=)[^&\s]*", r"\1***", hidden)  # ?password=... and key=value DSNs


def _import_pool() -> Any:
    try:
        import psycopg  # noqa: F401
        from psycopg_pool import ConnectionPool
    except ImportError as exc:
        raise BackendUnavailableError(
            "the PostgreSQL store needs psycopg 3: pip install 'psycopg[binary]' psycopg_pool"
        ) from exc
    return ConnectionPool


def acquire_pool(dsn: str) -> Any:
    """The open pool for ``dsn`` (created on first use); pair every call with ``release_pool``."""
    if not is_postgres_dsn(dsn):
        raise InvalidInputError(f"not a PostgreSQL DSN: {dsn!r}; use postgresql://user@host/db")
    connection_pool = _import_pool()
    with _LOCK:
        users, pool = _POOLS.get(dsn, (0, None))
        if pool is None:
            _check_connects(dsn)
            pool = connection_pool(
                dsn, min_size=1, max_size=POOL_MAX_SIZE, open=False, name="semrank"
            )
            try:
                pool.open(wait=True, timeout=30)
            except Exception as exc:  # PoolTimeout: the server is unreachable
                pool.close()
                raise BackendUnavailableError(
                    f"cannot connect to PostgreSQL at {redact(dsn)}: {exc}; check the DSN and "
                    "that the server is running"
                ) from exc
        _POOLS[dsn] = (users + 1, pool)
        return pool


def _check_connects(dsn: str) -> None:
    """One plain connection first: a wrong password, database or port fails now with its
    cause, where the pool would retry for its whole timeout and report only that."""
    import psycopg

    try:
        psycopg.connect(dsn, connect_timeout=10).close()
    except psycopg.Error as exc:
        cause = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise BackendUnavailableError(
            f"cannot connect to PostgreSQL at {redact(dsn)}: {cause}; check the DSN (user, "
            "password, database, port) and that the server is running"
        ) from exc


def release_pool(dsn: str) -> None:
    with _LOCK:
        users, pool = _POOLS.get(dsn, (0, None))
        if pool is None:
            return
        if users <= 1:
            del _POOLS[dsn]
            pool.close()
        else:
            _POOLS[dsn] = (users - 1, pool)
