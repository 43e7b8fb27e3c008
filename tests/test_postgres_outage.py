"""A database outage ends: searches work again at once, not after the pool's reconnect back-off.

Runs its own PostgreSQL server (the session's is shared by the other tests), stops it long
enough for psycopg_pool's reconnect delay to grow past the pool's wait, and starts it again.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from semrank.errors import BackendUnavailableError
from semrank.store import create_index, open_index
from test_postgres_server import start_server, stop_server

pytestmark = pytest.mark.slow


@pytest.fixture
def private_server() -> Iterator[tuple[str, list[str]]]:
    """(DSN, the pg_ctl command without its action) of a server only this test uses."""
    server, ctl = start_server("semrank-pg-outage-")
    try:
        yield server.dsn(), ctl
    finally:
        stop_server(server, ctl)


def test_searches_work_again_as_soon_as_the_database_is_back(private_server) -> None:  # type: ignore[no-untyped-def]
    dsn, ctl = private_server
    with create_index("o", store=dsn, embedding_model=None) as index:
        index.upsert([{"id": "1", "text": "fleas bite dogs"}])
    with open_index("o", store=dsn) as index:
        assert index.search_bm25("fleas", k=1).ids.tolist() == ["1"]
        subprocess.run([*ctl, "-m", "fast", "stop"], check=True, capture_output=True, timeout=60)
        down_until = time.monotonic() + 20  # the pool's reconnect delay doubles: 1, 2, 4, 8, 16 s
        while time.monotonic() < down_until:
            with pytest.raises(BackendUnavailableError):
                index.search_bm25("fleas", k=1)
            time.sleep(1)
        subprocess.run([*ctl, "start"], check=True, capture_output=True, timeout=120)
        started = time.monotonic()
        assert index.search_bm25("fleas", k=1).ids.tolist() == ["1"]
        assert time.monotonic() - started < 5  # the pool's own wait is 10 s


def test_after_a_restart_requests_wait_for_busy_pooled_connections_not_a_new_slot(
    private_server,
) -> None:  # type: ignore[no-untyped-def]
    """After a restart, every request of a pool whose connections were busy connected on its
    own; past the server's (or the role's) connection limit each answered 503 for ~15 s."""
    import psycopg

    from semrank.store.postgres import _pool

    dsn, _ = private_server
    with create_index("o", store=dsn, embedding_model=None) as index:
        index.upsert([{"id": "1", "text": "fleas bite dogs"}])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE ROLE lim LOGIN CONNECTION LIMIT 1; GRANT USAGE ON SCHEMA semrank TO lim; "
            "GRANT SELECT ON ALL TABLES IN SCHEMA semrank TO lim"
        )
    limited = dsn.replace("://semrank@", "://lim@")
    with open_index("o", store=limited) as index:
        assert index.search_bm25("fleas", k=1).ids.tolist() == ["1"]
        pool = _pool._POOLS[limited][1]
        held = pool.getconn()  # the pool's one connection, busy: the role has no slot left
        try:
            _pool._RECONNECTING.add(pool)  # as after a restart, until the pool has one ready
            done: list[object] = []
            waiter = threading.Thread(target=lambda: done.append(index.search_bm25("fleas", k=1)))
            waiter.start()
            time.sleep(1.0)
        finally:
            pool.putconn(held)  # handed back: the waiting request takes it
        waiter.join(timeout=30)
        assert len(done) == 1 and done[0].ids.tolist() == ["1"]  # type: ignore[attr-defined]
