"""A database outage ends: searches work again at once, not after the pool's reconnect back-off.

Runs its own PostgreSQL server (the session's is shared by the other tests), stops it long
enough for psycopg_pool's reconnect delay to grow past the pool's wait, and starts it again.
"""

from __future__ import annotations

import subprocess
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
