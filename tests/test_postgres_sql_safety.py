"""``semrank.rank`` against servers that misbehave, and who can read its API key.

Each test points the function at a small HTTP server of its own (no model needed): one that
answers unranked documents (fail_open), redirects, trickles its answer, or records what it was
sent. The PostgreSQL server comes from tests/test_postgres_server.py (skipped without it).
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from test_postgres_server import pg_database, pg_dsn, pg_server  # noqa: F401 (fixtures)

RANKED = {"results": [{"index": 0, "relevance_score": 0.9}], "reranked": True}


class _Fake(http.server.BaseHTTPRequestHandler):
    """POST /v1/rerank answers as ``behaviour`` says; ``seen`` records each request's headers."""

    behaviour: ClassVar[str] = "ranked"
    redirect_to: ClassVar[str] = ""
    seen: ClassVar[list[dict[str, str]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen.append(dict(self.headers))
        if self.behaviour == "trickle_headers":  # the status line, a byte a second
            for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n":
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(1.0)
            return
        if self.behaviour == "silent":  # reads the request, never answers
            time.sleep(30.0)
            return
        if self.behaviour == "redirect":
            self.send_response(302)
            self.send_header("Location", self.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        answer = dict(RANKED, reranked=self.behaviour != "unranked")
        page = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        if self.behaviour == "trickle":  # one byte a second: each read alone is quick
            for byte in page:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(1.0)
            return
        self.wfile.write(page)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake() -> Iterator[tuple[str, type[_Fake]]]:
    handler = type("Handler", (_Fake,), {"behaviour": "ranked", "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def installed(pg_dsn: str, fake: tuple[str, type[_Fake]]) -> str:  # noqa: F811
    from semrank.sql import install

    install(pg_dsn, endpoint=fake[0], api_key="stored-secret")
    return pg_dsn


def _cancel_later(dsn: str, pid: int, *, after_s: float) -> threading.Thread:
    """A started thread that cancels backend ``pid``'s statement (pg_cancel_backend, as psql's
    Ctrl-C does) after ``after_s`` seconds; join it when the statement is over."""
    import psycopg

    def cancel() -> None:
        time.sleep(after_s)
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute("SELECT pg_cancel_backend(%s)", (pid,))

    canceller = threading.Thread(target=cancel)
    canceller.start()
    return canceller


def _rank(dsn: str, *settings: tuple[str, str]) -> list[Any]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        for name, value in settings:
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        return conn.execute("SELECT * FROM semrank.rank('q', ARRAY['a document'])").fetchall()


def test_unranked_documents_are_an_error_not_the_input_order(
    installed: str, fake: tuple[str, type[_Fake]]
) -> None:
    import psycopg

    assert _rank(installed) == [("1", 1, pytest.approx(0.9))]
    fake[1].behaviour = "unranked"  # what a --fail-open server answers past its deadline
    with pytest.raises(psycopg.errors.ExternalRoutineException, match="came back unranked"):
        _rank(installed)


def test_redirects_are_not_followed_and_the_key_stays(
    installed: str, fake: tuple[str, type[_Fake]]
) -> None:
    import psycopg

    elsewhere = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Fake,), {"seen": []}))
    threading.Thread(target=elsewhere.serve_forever, daemon=True).start()
    try:
        fake[1].behaviour = "redirect"
        fake[1].redirect_to = f"http://127.0.0.1:{elsewhere.server_address[1]}/v1/rerank"
        with pytest.raises(psycopg.errors.ExternalRoutineException) as caught:
            _rank(installed)
        assert "answered HTTP 302" in str(caught.value)
        assert "does not follow redirects" in (caught.value.diag.message_hint or "")
        assert elsewhere.RequestHandlerClass.seen == []  # type: ignore[attr-defined]
    finally:
        elsewhere.shutdown()
        elsewhere.server_close()


@pytest.mark.parametrize(
    ("behaviour", "settings"),
    [
        ("trickle", (("semrank.timeout_s", "1.5"),)),
        ("trickle", (("semrank.timeout_s", "60"), ("statement_timeout", "1500ms"))),
        ("trickle_headers", (("semrank.timeout_s", "1.5"),)),
    ],
    ids=["body-timeout_s", "body-statement_timeout", "headers-timeout_s"],
)
def test_one_deadline_bounds_the_whole_call(
    installed: str,
    fake: tuple[str, type[_Fake]],
    behaviour: str,
    settings: tuple[tuple[str, str], ...],
) -> None:
    """A server that trickles its answer held the statement for as long as it kept sending:
    the timeout applied to each read. Now one deadline covers the call, within what
    statement_timeout leaves of the statement."""
    import psycopg

    fake[1].behaviour = behaviour
    started = time.monotonic()
    with pytest.raises(psycopg.errors.ExternalRoutineException, match="timed out"):
        _rank(installed, *settings)
    assert time.monotonic() - started < 5.0  # the answer alone takes over 60 s
    sent = json.loads(json.dumps(fake[1].seen[-1]))
    assert sent  # the request reached the server


def test_a_query_cancel_ends_the_call_without_waiting_for_the_server(
    installed: str, fake: tuple[str, type[_Fake]]
) -> None:
    """pg_cancel_backend on a call waiting for a server that does not answer took effect only
    at semrank.timeout_s (and then read as "timed out"): a stuck statement could not be
    cancelled. It now ends within a moment, as a cancel, and the session goes on."""
    import psycopg

    fake[1].behaviour = "silent"
    with psycopg.connect(installed, autocommit=True) as conn:
        conn.execute("SET semrank.timeout_s = '20'")
        pid = conn.info.backend_pid

        canceller = _cancel_later(installed, pid, after_s=0.5)
        started = time.monotonic()
        try:
            with pytest.raises(psycopg.errors.QueryCanceled, match="due to user request"):
                conn.execute("SELECT * FROM semrank.rank('q', ARRAY['a document'])")
        finally:
            canceller.join()
        assert time.monotonic() - started < 5.0  # the server's silence lasts 30 s
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_the_server_is_told_the_deadline(installed: str, fake: tuple[str, type[_Fake]]) -> None:
    """The body carries timeout_ms and fail_open=false, so a server with another default
    deadline or --fail-open works to this call's terms."""
    bodies: list[dict[str, Any]] = []

    class Recording(_Fake):
        seen: ClassVar[list[dict[str, str]]] = []

        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            page = json.dumps(RANKED).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recording)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        _rank(installed, ("semrank.endpoint", endpoint), ("semrank.api_key", "k"),
              ("semrank.timeout_s", "10"))  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert bodies[0]["fail_open"] is False
    assert 9000 <= bodies[0]["timeout_ms"] < 10000


class _Scoring(_Fake):
    """A server with semrank's default --max-documents (1000) whose score of a document is the
    number it holds, the same in any request; ``pause_s`` delays each answer."""

    limit: ClassVar[int] = 1000
    pause_s: ClassVar[float] = 0.0
    sizes: ClassVar[list[int]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        documents = body["documents"]
        type(self).sizes.append(len(documents))
        type(self).seen.append({"timeout_ms": str(body["timeout_ms"])})
        time.sleep(self.pause_s)
        status, answer = 200, {"results": []}
        if len(documents) > self.limit:
            status = 413
            refused = f"{len(documents)} documents exceed this server's limit of {self.limit}"
            answer = {"error": refused + " per request", "error_type": "request_too_large"}
        else:
            scores = [float(text.split()[-1]) for text in documents]
            order = sorted(range(len(documents)), key=lambda i: -scores[i])
            answer["results"] = [{"index": i, "relevance_score": scores[i]} for i in order]
        page = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)


@pytest.fixture
def scoring(installed: str) -> Iterator[tuple[str, type[_Scoring]]]:
    handler = type("Handler", (_Scoring,), {"seen": [], "sizes": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def _rank_many(dsn: str, count: int, endpoint: str, *settings: tuple[str, str]) -> list[Any]:
    """semrank.rank over ``count`` documents "doc N" (N a score: equal for every tenth)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        for name, value in (("semrank.endpoint", endpoint), ("semrank.api_key", "k"), *settings):
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        return conn.execute(
            "SELECT id, rank, relevance_score FROM semrank.rank('q', "
            "(SELECT array_agg('doc ' || (n %% 10) ORDER BY n) FROM generate_series(1, %s) n), "
            "(SELECT array_agg('id' || n ORDER BY n) FROM generate_series(1, %s) n))",
            (count, count),
        ).fetchall()


def test_ten_thousand_documents_go_in_requests_the_server_takes(
    scoring: tuple[str, type[_Scoring]],
    installed: str,
) -> None:
    """10,000 documents were one request, which a server with the default --max-documents
    refused (413, SQLSTATE 38000). They go 1,000 at a time (semrank.batch_size), and the rows
    are what one request would give: best first, ties in document order."""
    rows = _rank_many(installed, 10_000, scoring[0])
    assert scoring[1].sizes == [1000] * 10
    one_call = sorted(range(1, 10_001), key=lambda n: -(n % 10))
    assert [r[0] for r in rows] == [f"id{n}" for n in one_call]
    assert [r[1] for r in rows] == list(range(1, 10_001))
    assert [r[2] for r in rows] == [float(n % 10) for n in one_call]
    scoring[1].sizes.clear()
    assert len(_rank_many(installed, 7, scoring[0], ("semrank.batch_size", "3"))) == 7
    assert scoring[1].sizes == [2, 2, 3]  # even: not a last request of 1


def test_a_batch_size_the_server_refuses_or_no_number_is_named(
    scoring: tuple[str, type[_Scoring]],
    installed: str,
) -> None:
    import psycopg

    scoring[1].limit = 10  # semrank serve --max-documents 10
    with pytest.raises(psycopg.errors.ExternalRoutineException) as caught:
        _rank_many(installed, 30, scoring[0], ("semrank.batch_size", "20"))
    assert "answered HTTP 413" in str(caught.value)
    hint = caught.value.diag.message_hint or ""
    assert "SET semrank.batch_size" in hint
    assert "(semrank.batch_size is 20 here)" in hint  # not "(it is 20 here)": read as the limit
    for bad in ("0", "ten", "2.5"):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=r"semrank\.batch_size is"):
            _rank_many(installed, 3, scoring[0], ("semrank.batch_size", bad))


def test_one_deadline_and_a_cancel_cover_every_batch(
    scoring: tuple[str, type[_Scoring]],
    installed: str,
) -> None:
    """The deadline (semrank.timeout_s) is the whole call's, not each request's, and a cancel
    sends no further batch."""
    import psycopg

    scoring[1].pause_s = 0.6  # each of 10 requests: 6 s in all
    started = time.monotonic()
    with pytest.raises(psycopg.errors.ExternalRoutineException, match="timed out"):
        _rank_many(installed, 10, scoring[0], ("semrank.batch_size", "1"),
                   ("semrank.timeout_s", "2"))  # fmt: skip
    assert time.monotonic() - started < 4.0
    assert 2 <= len(scoring[1].sizes) <= 4  # not all 10
    told = [int(seen["timeout_ms"]) for seen in scoring[1].seen]
    assert told == sorted(told, reverse=True) and told[-1] < 1500  # what was left, less 5%
    time.sleep(1.0)  # the last request sent ends
    scoring[1].sizes.clear()
    with psycopg.connect(installed, autocommit=True) as conn:
        for name, value in (("semrank.endpoint", scoring[0]), ("semrank.api_key", "k"),
                            ("semrank.batch_size", "1"), ("semrank.timeout_s", "60")):  # fmt: skip
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        pid = conn.info.backend_pid

        canceller = _cancel_later(installed, pid, after_s=1.5)
        try:
            with pytest.raises(psycopg.errors.QueryCanceled, match="due to user request"):
                conn.execute("SELECT * FROM semrank.rank('q', array_fill('doc 1'::text, '{10}'))")
        finally:
            canceller.join()
    sent = len(scoring[1].sizes)
    time.sleep(1.5)
    assert sent == len(scoring[1].sizes) < 10  # none after the cancel


def test_a_key_a_header_cannot_carry_is_refused_without_showing_it(installed: str) -> None:
    import psycopg

    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        _rank(installed, ("semrank.api_key", "good\nX-Injected: 1"))
    assert "cannot carry" in str(caught.value) and "X-Injected" not in str(caught.value)


def test_callers_use_the_stored_key_but_cannot_read_it(
    installed: str, fake: tuple[str, type[_Fake]]
) -> None:
    """The key was kept in semrank.settings, which callers had to be able to read; it is now
    in semrank.secrets, which only the owner reads (semrank.rank runs as its owner)."""
    import psycopg

    with psycopg.connect(installed, autocommit=True) as conn:
        conn.execute("DO $$ BEGIN CREATE ROLE caller LOGIN; EXCEPTION WHEN duplicate_object "
                     "THEN NULL; END $$")  # fmt: skip
        conn.execute("GRANT USAGE ON SCHEMA semrank TO caller")
    as_caller = installed.replace("semrank@", "caller@")
    assert _rank(as_caller) == [("1", 1, pytest.approx(0.9))]
    assert fake[1].seen[-1]["Authorization"] == "Bearer stored-secret"
    # No grant on any semrank table was needed, and the key's table stays closed.
    with psycopg.connect(as_caller) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT value FROM semrank.secrets")


def test_an_installed_key_moves_out_of_the_readable_settings(
    pg_dsn: str,  # noqa: F811
    fake: tuple[str, type[_Fake]],
) -> None:
    """A database installed before kept its key in semrank.settings: the upgrade moves it."""
    import psycopg

    from semrank.sql import install

    install(pg_dsn, endpoint=fake[0])
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # as an older version left it
        conn.execute("INSERT INTO semrank.settings VALUES ('api_key', 'old-secret')")
        conn.execute("DELETE FROM semrank.migrations WHERE version = 105")
    assert install(pg_dsn) == [105]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT value FROM semrank.secrets").fetchall() == [("old-secret",)]
        assert (
            conn.execute("SELECT key FROM semrank.settings WHERE key = 'api_key'").fetchall() == []
        )
    _rank(pg_dsn)
    assert fake[1].seen[-1]["Authorization"] == "Bearer old-secret"


def test_the_cli_reads_the_api_key_from_stdin(
    pg_dsn: str,  # noqa: F811
    fake: tuple[str, type[_Fake]],
) -> None:
    """`semrank sql install --api-key KEY` took the key only on the command line, where `ps` shows
    it to every user of the machine and the shell's history keeps it: `--api-key -` reads it
    from stdin."""
    from typer.testing import CliRunner

    from semrank.cli import app

    command = ["sql", "install", "--dsn", pg_dsn, "--endpoint", fake[0], "--api-key", "-"]
    result = CliRunner().invoke(app, command, input="piped-secret\n")
    assert result.exit_code == 0, result.output
    assert "piped-secret" not in result.output
    assert _rank(pg_dsn) == [("1", 1, pytest.approx(0.9))]
    assert fake[1].seen[-1]["Authorization"] == "Bearer piped-secret"


def test_install_refuses_an_endpoint_that_is_no_url(pg_dsn: str) -> None:  # noqa: F811
    from semrank.errors import InvalidInputError
    from semrank.sql import install

    with pytest.raises(InvalidInputError, match="not an http:// or https:// URL"):
        install(pg_dsn, endpoint="localhost:8000")


def test_rows_without_documents_give_no_rows_even_without_a_query(installed: str) -> None:
    """A LATERAL join over rows where some have no candidates (and no query) keeps working."""
    import psycopg

    with psycopg.connect(installed, autocommit=True) as conn:
        for call in ("rank(NULL, NULL)", "rank(NULL, '{}'::text[])", "rank('q', '{}', '{x}')"):
            assert conn.execute(f"SELECT * FROM semrank.{call}").fetchall() == []
        definer = conn.execute(
            "SELECT prosecdef FROM pg_proc WHERE oid = 'semrank.rank'::regproc"
        ).fetchone()
    assert definer == (True,)  # a later CREATE OR REPLACE must repeat the ALTER (migration 105)


def test_an_empty_query_is_refused_before_any_request(
    installed: str, fake: tuple[str, type[_Fake]]
) -> None:
    """'' (or blanks) went to the server, whose 422 came back as SQLSTATE 38000."""
    import psycopg

    with psycopg.connect(installed) as conn:
        for query in ("", "   ", "\t\n"):
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="query is empty"):
                conn.execute("SELECT * FROM semrank.rank(%s, ARRAY['a document'])", (query,))
            conn.rollback()
        # Rows without documents still give no rows, whatever their query.
        assert conn.execute("SELECT * FROM semrank.rank('', '{}'::text[])").fetchall() == []
    assert fake[1].seen == []


def _schema_of_store_owner(dsn: str) -> str:
    """Schema semrank owned by a role that is no superuser, as when that role made the store's
    tables (docs/postgresql.md's Roles); returns that role's DSN."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DO $$ BEGIN CREATE ROLE store_owner LOGIN; EXCEPTION WHEN duplicate_object "
                     "THEN NULL; END $$")  # fmt: skip
        conn.execute("ALTER ROLE store_owner NOSUPERUSER")
        conn.execute("CREATE SCHEMA semrank AUTHORIZATION store_owner")
    return dsn.replace("semrank@", "store_owner@")


def _is_superuser(dsn: str, role: str) -> bool:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        conn.execute(f"ALTER ROLE {role} NOSUPERUSER")  # for the tests after this one
    return bool(row[0])


def test_the_schema_owner_cannot_run_its_code_as_the_superuser(
    pg_dsn: str,  # noqa: F811
    fake: tuple[str, type[_Fake]],
) -> None:
    """The owner of schema semrank could drop semrank.settings and put a view there calling its
    own function: semrank.rank, running as the installing superuser, ran it, and the role made
    itself a superuser. Now settings that are not a superuser's table are refused."""
    import psycopg

    from semrank.sql import install

    as_owner = _schema_of_store_owner(pg_dsn)
    install(pg_dsn, endpoint=fake[0], api_key="stored-secret")
    with psycopg.connect(as_owner, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION semrank.promote() RETURNS text LANGUAGE sql VOLATILE "
                     "AS $$ ALTER ROLE store_owner SUPERUSER; SELECT '30' $$")  # fmt: skip
        conn.execute("DROP TABLE semrank.settings")
        conn.execute(  # the stored endpoint, so that the call succeeds and commits
            f"CREATE VIEW semrank.settings AS SELECT 'endpoint'::text AS key, '{fake[0]}'::text "
            "AS value UNION ALL SELECT 'timeout_s', semrank.promote()"
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
            conn.execute("SELECT * FROM semrank.rank('q', ARRAY['a document'])")
    assert "semrank.settings is a view owned by store_owner" in str(caught.value)
    assert not _is_superuser(pg_dsn, "store_owner")


def test_install_puts_no_key_in_a_table_the_schema_owner_made(
    pg_dsn: str,  # noqa: F811
    fake: tuple[str, type[_Fake]],
) -> None:
    """A semrank.secrets the schema's owner created before `semrank sql install` was kept (CREATE
    TABLE IF NOT EXISTS), and the API key went into it, for that role to read."""
    import psycopg

    from semrank.errors import StorageError
    from semrank.sql import install

    as_owner = _schema_of_store_owner(pg_dsn)
    with psycopg.connect(as_owner, autocommit=True) as conn:
        conn.execute("CREATE TABLE semrank.secrets (key text PRIMARY KEY, value text NOT NULL)")
    with pytest.raises(StorageError, match=r"semrank\.secrets is a table owned by store_owner"):
        install(pg_dsn, endpoint=fake[0], api_key="stored-secret")
    with psycopg.connect(as_owner, autocommit=True) as conn:
        assert conn.execute("SELECT value FROM semrank.secrets").fetchall() == []
