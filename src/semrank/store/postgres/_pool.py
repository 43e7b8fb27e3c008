"""Connection pools (psycopg 3 + psycopg_pool), one per DSN and process, shared by the stores
opened on it and closed when the last of them closes."""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from semrank._locks import KeyedLocks
from semrank._request import REQUEST_DEADLINE
from semrank.errors import (
    BackendUnavailableError,
    DeadlineExceededError,
    InvalidInputError,
    StorageError,
)
from semrank.store._dsn import (
    DSN_SCHEMES,
    encoding_hint,
    is_postgres_dsn,
    redact_in,
    unencoded_password,
)
from semrank.store._dsn import redact_dsn as redact

__all__ = ["DSN_SCHEMES", "is_postgres_dsn", "redact"]  # re-exported, as before

POOL_MAX_SIZE = 8
# Seconds a request waits for a connection when all are busy or the server is down (psycopg's
# 30 s default held request threads for half a minute each during an outage).
POOL_WAIT_S = 10.0
# What HTTP clients are told when the database cannot be reached: the cause names its host,
# port or user, which only the server's log shows.
UNREACHABLE = (
    "the index store (PostgreSQL) cannot be reached or did not answer; try again later "
    "(the server log has the cause)"
)

NOT_PERMITTED = (
    "the index store (PostgreSQL) does not allow semrank's database role this operation "
    "(the server log has the cause)"
)

_POOLS: dict[str, tuple[int, Any]] = {}  # dsn -> (users, ConnectionPool)
# Pools that lost a connection and have none ready: requests connect directly meanwhile.
_RECONNECTING: weakref.WeakSet[Any] = weakref.WeakSet()
_DIRECT = threading.BoundedSemaphore(POOL_MAX_SIZE)
_LOCK = threading.Lock()
_OWNERS: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()  # pool -> its pid
# One writer of an index at a time in this process, waiting here rather than on the index's
# row lock inside PostgreSQL: writers waiting there held a pooled connection each, and eight
# of them (a long lock held elsewhere) left searches of every other index none (HTTP 503).
_WRITE_TURNS = KeyedLocks()  # (dsn, index) -> its turn


def _forget_after_fork() -> None:
    """A forked child starts without pools: the parent's connections (its sockets) and the
    pools' worker threads are not the child's, and using them gave raw driver errors and waits
    past any timeout. They are dropped, not closed: closing would end the parent's sessions."""
    global _DIRECT, _LOCK
    _POOLS.clear()
    _RECONNECTING.clear()
    _DIRECT = threading.BoundedSemaphore(POOL_MAX_SIZE)
    _LOCK = threading.Lock()
    _WRITE_TURNS.forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _import_pool() -> Any:
    try:
        import psycopg  # noqa: F401
        from psycopg_pool import ConnectionPool
    except ImportError as exc:
        raise BackendUnavailableError(
            "the PostgreSQL store needs psycopg 3: pip install 'semrank[postgres]'"
        ) from exc
    return ConnectionPool


def acquire_pool(dsn: str) -> Any:
    """The open pool for ``dsn`` (created on first use); pair every call with ``release_pool``."""
    if not is_postgres_dsn(dsn):
        raise InvalidInputError(
            f"not a PostgreSQL DSN: {redact(dsn)!r}; use postgresql://user@host/db"
        )
    connection_pool = _import_pool()
    with _LOCK:
        users, pool = _POOLS.get(dsn, (0, None))
        if pool is None:
            _check_connects(dsn)
            pool = connection_pool(
                dsn,
                min_size=1,
                max_size=POOL_MAX_SIZE,
                open=False,
                name="semrank",
                timeout=POOL_WAIT_S,
                configure=_read_committed,
            )
            try:
                pool.open(wait=True, timeout=30)
            except Exception as exc:  # PoolTimeout: the server is unreachable
                pool.close()
                raise unreachable(dsn, exc) from exc
            _OWNERS[pool] = os.getpid()
        _POOLS[dsn] = (users + 1, pool)
        return pool


@contextmanager
def write_turn(dsn: str, name: str) -> Iterator[None]:
    """This process's turn to write index ``name`` of ``dsn``, taken before a connection; an
    HTTP request waits for it no longer than its deadline."""
    with _WRITE_TURNS.turn((dsn, name)) as turn:
        deadline = REQUEST_DEADLINE.get()
        wait = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        if not turn.acquire(timeout=wait):
            raise DeadlineExceededError(
                f"index {name!r} is busy with other writes (another is waiting on a lock in "
                "PostgreSQL); retry later, or with a longer timeout_ms",
                client_message=f"index {name!r} is busy with other writes; retry later",
            )
        try:
            yield
        finally:
            turn.release()


def _check_connects(dsn: str) -> None:
    """One plain connection first: a wrong password, database or port fails now with its
    cause, where the pool would retry for its whole timeout and report only that."""
    _connect(dsn).close()


def _connect(dsn: str) -> Any:
    """A plain connection to ``dsn``, or ``unreachable`` naming why not."""
    import psycopg

    try:
        conn = psycopg.connect(dsn, connect_timeout=int(POOL_WAIT_S))
    except psycopg.Error as exc:
        raise unreachable(dsn, exc) from exc
    _read_committed(conn)
    return conn


def _read_committed(conn: Any) -> None:
    """semrank's statements are written for READ COMMITTED, PostgreSQL's default: a database
    or role defaulting to REPEATABLE READ or SERIALIZABLE failed concurrent writes with
    serialization errors (HTTP 500)."""
    import psycopg

    conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED


def unreachable(dsn: str, exc: BaseException) -> BackendUnavailableError:
    """A database that refused, dropped or never answered a connection, naming the cause."""
    cause = " ".join(str(exc).split())
    garbled = unencoded_password(dsn)
    # libpq quotes the DSN's parts when it cannot parse it ("invalid percent-encoded token:
    # ..."), and a password it misread as the host in its other errors.
    if type(exc).__name__ == "ProgrammingError" or garbled:
        cause = redact_in(cause, dsn)
    cause = cause[:300] or type(exc).__name__
    hint = f"; {encoding_hint(dsn)}" if garbled else ""
    return BackendUnavailableError(
        f"cannot connect to PostgreSQL at {redact(dsn)}: {cause}; check the DSN (user, "
        f"password, database, port) and that the server is running{hint}",
        client_message=UNREACHABLE,
    )


@contextmanager
def pooled_connection(pool: Any, dsn: str) -> Iterator[Any]:
    """A working connection from ``pool``, committed at the end of the block (rolled back on
    an error) and handed back. A server that is down, restarting or gone away (or a pool closed
    under the caller) is a ``BackendUnavailableError`` naming the cause (HTTP 503), not a
    driver traceback."""
    import psycopg

    conn, pooled = _working_connection(pool, dsn)
    try:
        with conn:  # a pooled connection is not closed by this, only committed or rolled back
            yield conn
    except (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable) as exc:
        raise cancelled(dsn, exc) from exc
    except psycopg.OperationalError as exc:
        if not _lost_server(exc):
            raise  # e.g. a value over a PostgreSQL limit: the caller names it
        raise unreachable(dsn, exc) from exc
    except psycopg.errors.InsufficientPrivilege as exc:
        raise not_permitted(dsn, exc) from exc
    except psycopg.errors.ReadOnlySqlTransaction as exc:
        raise read_only(dsn, exc) from exc
    except (psycopg.errors.UndefinedObject, psycopg.errors.UndefinedFunction) as exc:
        if "vector" not in str(exc):
            raise
        raise vector_unseen(dsn, exc) from exc
    finally:
        if pooled:
            pool.putconn(conn)
        else:
            conn.close()
            _DIRECT.release()


def cancelled(dsn: str, exc: BaseException) -> DeadlineExceededError:
    """PostgreSQL cancelled a statement: its statement_timeout or lock_timeout (the role's, the
    database's or the DSN's options) passed. A deadline (HTTP 504), not a bug (500)."""
    cause = " ".join(str(exc).split())[:200]
    return DeadlineExceededError(
        f"PostgreSQL at {redact(dsn)} cancelled the query ({cause}): its statement_timeout or "
        "lock_timeout passed; raise it for the semrank role, or send smaller searches or writes",
        client_message="the database cancelled the query (its statement or lock timeout)",
    )


def not_permitted(dsn: str, exc: BaseException) -> BackendUnavailableError:
    """The role of ``dsn`` lacks a privilege (a grant, or ownership of the tables)."""
    cause = " ".join(str(exc).split())[:300]
    return BackendUnavailableError(
        f"the PostgreSQL role of {redact(dsn)} is not allowed this ({cause}): searching and "
        "writing documents need USAGE on schema semrank and SELECT, INSERT, UPDATE, DELETE on "
        "its tables; creating, dropping and refreshing indexes needs the owner of the "
        "semrank tables (docs/postgresql.md, 'Roles')",
        client_message=NOT_PERMITTED,
    )


def read_only(dsn: str, exc: BaseException) -> BackendUnavailableError:
    """A write to a database that takes none: a hot standby, or default_transaction_read_only."""
    cause = " ".join(str(exc).split())[:200]
    return BackendUnavailableError(
        f"PostgreSQL at {redact(dsn)} is read-only ({cause}): a hot standby, or a database or "
        "role with default_transaction_read_only on; point --store (SEMRANK_STORE) at the "
        "primary for writes",
        client_message="the index store (PostgreSQL) is read-only; writes need its primary",
    )


def vector_unseen(dsn: str, exc: BaseException) -> BackendUnavailableError:
    """pgvector's type or operators not on the role's search_path (installed in a schema of
    its own, e.g. ``extensions``)."""
    cause = " ".join(str(exc).split())[:200]
    return BackendUnavailableError(
        f"PostgreSQL at {redact(dsn)} does not show pgvector to semrank's role ({cause}): "
        "put the schema pgvector is installed in on the role's search_path (ALTER ROLE ... "
        'SET search_path = "$user", public, extensions), or install it in public',
        client_message=NOT_PERMITTED,
    )


def _working_connection(pool: Any, dsn: str) -> tuple[Any, bool]:
    """A connection that answers, and whether it is the pool's.

    A pooled connection found broken (a server restart, an outage) goes back to the pool, which
    replaces it on a back-off that grows to minutes: waiting for that answered 503 for 86 s
    after a 3-minute outage had ended. So until the pool has a connection ready again, each
    request connects directly (and fails at once while the server is still down)."""
    import psycopg
    from psycopg_pool import PoolClosed, PoolTimeout

    if _OWNERS.get(pool, os.getpid()) != os.getpid():
        raise StorageError(
            f"the connections to {redact(dsn)} were opened in another process (this one was "
            "forked from it) and cannot be shared: open the index again in this process "
            "(semrank.store.open_index, or search it by name)"
        )
    if pool in _RECONNECTING:
        if pool.get_stats().get("pool_available", 0) == 0:
            try:
                return _direct_connection(dsn), False
            except BackendUnavailableError as exc:
                # The server is back but has no slot for one more ("too many clients": the
                # pool's connections are busy, not gone): wait for one of them instead (every
                # request answered 503 for 15 s after a restart).
                if not _no_slot(exc.__cause__):
                    raise
        _RECONNECTING.discard(pool)  # it has connected again (or holds idle ones to check)
    try:
        conn = pool.getconn()
    except (PoolTimeout, PoolClosed) as exc:
        raise unreachable(dsn, exc) from exc
    try:
        pool.check_connection(conn)
    except psycopg.Error:
        pool.putconn(conn)
        _RECONNECTING.add(pool)
        return _direct_connection(dsn), False
    return conn, True


# PostgreSQL's words for SQLSTATE 53300, which psycopg leaves unset on a connection that failed
# to start: every slot taken, the role's or database's CONNECTION LIMIT, and the slots left
# reserved for superusers (what an application's role meets first).
_NO_SLOT_WORDS = ("too many c", "connection slots are reserved")


def _no_slot(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    text = str(exc)
    return getattr(exc, "sqlstate", None) == "53300" or any(w in text for w in _NO_SLOT_WORDS)


def _direct_connection(dsn: str) -> Any:
    """A connection of its own, at most ``POOL_MAX_SIZE`` at once in this process (a busy
    server would otherwise open one per request thread while its pool recovers)."""
    if not _DIRECT.acquire(timeout=POOL_WAIT_S):
        raise unreachable(dsn, TimeoutError("every direct connection is busy"))
    try:
        return _connect(dsn)
    except BaseException:
        _DIRECT.release()
        raise


def _lost_server(exc: Any) -> bool:
    """Whether ``exc`` says the server is gone or cannot serve now: no SQLSTATE (the client
    lost the connection), class 08 (connection exception), 53 (insufficient resources, e.g.
    too many connections) or 57P (shut down, crashed, starting up)."""
    state = getattr(exc, "sqlstate", None)
    return state is None or str(state).startswith(("08", "53", "57P"))


def release_pool(dsn: str, pool_held: Any = None) -> None:
    """Let go of one use of ``dsn``'s pool; ``pool_held``, where given, is the pool the caller
    acquired: one another process made (a forked child closing the parent's handle) is not
    this process's to release."""
    with _LOCK:
        users, pool = _POOLS.get(dsn, (0, None))
        if pool is None or (pool_held is not None and pool_held is not pool):
            return
        if users <= 1:
            del _POOLS[dsn]
            pool.close()
        else:
            _POOLS[dsn] = (users - 1, pool)
