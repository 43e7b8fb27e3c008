"""A private PostgreSQL server for the PostgreSQL tests, and checks of what they rely on.

The server (PostgreSQL 16 + pgvector + PL/Python 3) is installed by ``.ci/postgres.sh`` under
``$SEMRANK_PG_HOME`` (default /opt/semrank-pg); without it these tests skip. Each test session
starts its own cluster in a temporary directory on a free localhost port (as
``$SEMRANK_PG_USER``, default ``postgres``, when running as root: PostgreSQL refuses root), and
each test gets a fresh database. Other test files import the fixtures from here.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_HOME = Path(os.environ.get("SEMRANK_PG_HOME", "/opt/semrank-pg"))
SUPERUSER = "semrank"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _installed() -> str | None:
    """Why the server cannot be used, or None."""
    needed = [
        PG_HOME / "bin" / "postgres",
        PG_HOME / "lib" / "postgresql" / "vector.so",
        PG_HOME / "lib" / "postgresql" / "plpython3.so",
    ]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        listed = ", ".join(missing)
        return f"PostgreSQL for tests not installed ({listed} missing): run .ci/postgres.sh"
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        return "psycopg 3 not installed: pip install 'semrank[postgres]'"
    return None


@dataclass(frozen=True)
class PostgresServer:
    port: int
    directory: Path

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def psql(self, database: str, sql: str) -> subprocess.CompletedProcess[str]:
        """Run ``sql`` through the real ``psql`` client (stops at the first error)."""
        return subprocess.run(
            [str(PG_HOME / "bin" / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-d", self.dsn(database), "-c", sql],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip


def _as_server_user() -> tuple[list[str], int | None]:
    """The command prefix running PostgreSQL as a non-root user, and that user's uid."""
    if os.geteuid() != 0:
        return [], None
    user = os.environ.get("SEMRANK_PG_USER", "postgres")
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        pytest.skip(f"running as root and user {user!r} is missing: run .ci/postgres.sh")
    return ["runuser", "-u", user, "--"], uid


def start_server(prefix: str) -> tuple[PostgresServer, list[str]]:
    """A new PostgreSQL server in a temporary folder, and its ``pg_ctl`` command without the
    action (``[*ctl, "stop"]``); skips the test where PostgreSQL is not installed."""
    reason = _installed()
    if reason:
        pytest.skip(reason)
    run_as, uid = _as_server_user()
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    if uid is not None:
        os.chown(directory, uid, -1)
    bindir, data, port = PG_HOME / "bin", directory / "data", _free_port()
    run = {"check": True, "capture_output": True, "timeout": 180}
    subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
         "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
        **run,
    )  # fmt: skip
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off"
    ctl = [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-o", options,
           "-l", str(directory / "server.log"), "-w", "-t", "120"]  # fmt: skip
    try:
        subprocess.run([*ctl, "start"], **run)
    except subprocess.CalledProcessError:
        log = (directory / "server.log").read_text(errors="replace")
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start:\n{log}")
    return PostgresServer(port, directory), ctl


def stop_server(server: PostgresServer, ctl: list[str]) -> None:
    with contextlib.suppress(subprocess.SubprocessError):
        subprocess.run([*ctl, "-m", "immediate", "stop"], capture_output=True, timeout=180)
    shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server, ctl = start_server("semrank-pg-")
    try:
        yield server
    finally:
        stop_server(server, ctl)


@pytest.fixture
def pg_database(pg_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the private server; yields its name."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield name
    from semrank.store.postgres import _pool

    for dsn in [d for d in list(_pool._POOLS) if d.endswith(f"/{name}")]:
        while dsn in _pool._POOLS:
            _pool.release_pool(dsn)
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_dsn(pg_server: PostgresServer, pg_database: str) -> str:
    return pg_server.dsn(pg_database)


# --- what the other PostgreSQL tests rely on -----------------------------------------------
def test_server_has_pgvector_and_plpython(pg_dsn: str) -> None:
    import psycopg

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("CREATE EXTENSION IF NOT EXISTS plpython3u")
        distance = conn.execute("SELECT '[1,0]'::vector <=> '[0,1]'::vector").fetchone()
        assert distance is not None and distance[0] == pytest.approx(1.0)
        conn.execute(
            "CREATE FUNCTION py_sum(a int, b int) RETURNS int LANGUAGE plpython3u "
            "AS $$ import urllib.request; return a + b $$"
        )
        assert conn.execute("SELECT py_sum(2, 3)").fetchone() == (5,)


def test_migrations_are_idempotent(pg_dsn: str) -> None:
    import psycopg

    from semrank.store.postgres import MIGRATIONS, migrate

    with psycopg.connect(pg_dsn) as conn:
        assert migrate(conn) == [version for version, _, _ in MIGRATIONS]
        assert migrate(conn) == []
        rows = conn.execute("SELECT version FROM semrank.migrations ORDER BY 1").fetchall()
        assert [r[0] for r in rows] == [version for version, _, _ in MIGRATIONS]
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'semrank' ORDER BY 1"
        ).fetchall()
        assert {"documents", "indexes", "migrations"} <= {t[0] for t in tables}
