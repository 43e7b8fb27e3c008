"""``semrank.rank`` from SQL against a real ``semrank serve`` and a real PostgreSQL server:
same order and scores as the Python API; a down server is a readable SQL error that leaves the
session usable."""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serving import free_port, semrank_serve
from test_postgres_server import (  # noqa: F401 (fixtures)
    PG_HOME,
    PostgresServer,
    pg_database,
    pg_dsn,
    pg_server,
)

QUERY = "what do fleas eat"
DOCS = {
    "d1": "Fleas feed on the blood of mammals and birds.",
    "d2": "Paris is the capital of France and has many museums.",
    "d3": "Adult fleas drink blood; flea larvae eat organic debris.",
    "d4": "Cats scratch when fleas bite them.",
    "d5": "The ocean is deep and cold; fish swim in it.",
}

# A full-text first stage over a plain table, re-ranked in the same statement.
CTE = """
WITH hits AS (
    SELECT id, body FROM docs
    WHERE to_tsvector('english', body) @@ websearch_to_tsquery('english', 'fleas or blood')
    ORDER BY ts_rank_cd(to_tsvector('english', body),
                        websearch_to_tsquery('english', 'fleas or blood')) DESC, id
    LIMIT 10
)
SELECT r.id, r.rank, r.relevance_score
FROM semrank.rank('what do fleas eat',
                  (SELECT array_agg(body ORDER BY id) FROM hits),
                  (SELECT array_agg(id ORDER BY id) FROM hits)) AS r
ORDER BY r.rank
"""


@pytest.fixture(scope="module")
def semrank_server(reranker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``semrank serve`` (the bundled model) on a free localhost port."""
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    with semrank_serve(log_path, wait_s=120.0) as (url, _):  # up to ~2 min on a busy machine
        yield url


@pytest.fixture
def installed(pg_dsn: str, semrank_server: str) -> str:  # noqa: F811
    import psycopg

    from semrank.sql import install

    assert install(pg_dsn, endpoint=semrank_server) == [
        100,
        101,
        102,
        103,
        104,
        105,
        106,
        107,
        108,
        109,
        110,
        111,
        112,
        113,
        114,
        115,
    ]
    assert install(pg_dsn, endpoint=semrank_server) == []  # idempotent
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id text PRIMARY KEY, body text NOT NULL)")
        conn.cursor().executemany("INSERT INTO docs VALUES (%s, %s)", list(DOCS.items()))
    return pg_dsn


def _psql_rows(server: PostgresServer, dsn: str, sql: str) -> list[list[str]]:
    database = dsn.rsplit("/", 1)[1]
    done = server.psql(database, sql)
    assert done.returncode == 0, done.stderr
    return [line.split("|") for line in done.stdout.splitlines() if line]


def test_cte_from_psql_matches_the_python_api(
    installed: str,
    pg_server: PostgresServer,  # noqa: F811
    reranker: Any,
) -> None:
    rows = _psql_rows(pg_server, installed, CTE)
    candidates = ["d1", "d3", "d4"]  # the full-text hits, in id order
    assert sorted(r[0] for r in rows) == candidates
    expected = reranker.rerank(QUERY, [DOCS[i] for i in candidates])
    assert [r[0] for r in rows] == [candidates[e.index] for e in expected]
    assert [int(r[1]) for r in rows] == [1, 2, 3]
    for row, result in zip(rows, expected, strict=True):
        assert float(row[2]) == pytest.approx(result.relevance_score, abs=1e-5)


def test_positions_when_ids_are_null_and_empty_input(installed: str) -> None:
    import psycopg

    with psycopg.connect(installed) as conn:
        rows = conn.execute(
            "SELECT id, rank FROM semrank.rank(%s, %s) ORDER BY rank", (QUERY, list(DOCS.values()))
        ).fetchall()
        assert sorted(r[0] for r in rows) == ["1", "2", "3", "4", "5"]
        assert rows[-1][0] in {"2", "5"}  # Paris or the ocean: least about fleas
        assert conn.execute("SELECT * FROM semrank.rank('q', '{}'::text[])").fetchall() == []
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="ids has 1 elements"):
            conn.execute("SELECT * FROM semrank.rank('q', ARRAY['a', 'b'], ARRAY['x'])")
        # Arrays of arrays: ids came back as Python's "['a']", documents as pydantic's words
        one_d = "must be one-dimensional text"
        nested = (("ARRAY['a', 'b']", "ARRAY[['x'], ['y']]"), ("ARRAY[['a']]", "NULL"))
        for documents, ids in nested:
            conn.rollback()  # the error before ended the transaction
            with pytest.raises(psycopg.errors.InvalidParameterValue, match=one_d):
                conn.execute(f"SELECT * FROM semrank.rank('q', {documents}, {ids})")


def test_server_down_is_a_clear_error_and_the_session_goes_on(installed: str) -> None:
    import psycopg

    with psycopg.connect(installed) as conn:
        down = f"http://127.0.0.1:{free_port()}"
        conn.execute("SELECT set_config('semrank.endpoint', %s, false)", (down,))
        conn.execute("SAVEPOINT before_rank")
        with pytest.raises(psycopg.errors.ExternalRoutineException) as caught:
            conn.execute("SELECT * FROM semrank.rank('q', ARRAY['a document'])")
        assert "cannot reach the semrank server at http://127.0.0.1:" in str(caught.value)
        assert caught.value.diag.message_hint and "semrank serve" in caught.value.diag.message_hint
        conn.execute("ROLLBACK TO SAVEPOINT before_rank")
        assert conn.execute("SELECT count(*) FROM docs").fetchone() == (len(DOCS),)
        conn.rollback()
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_server_errors_become_sql_errors(installed: str) -> None:
    import psycopg

    with psycopg.connect(installed) as conn:
        with pytest.raises(psycopg.errors.ExternalRoutineException, match="answered HTTP 4"):
            conn.execute("SELECT * FROM semrank.rank('q', ARRAY['doc'], NULL, 'no-such-model')")
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM semrank.rank('q', ARRAY['doc'])").fetchone() == (
            1,
        )


def test_an_http_error_has_no_empty_hint_and_a_server_warning_reaches_sql(installed: str) -> None:
    """A 404 showed "HINT:  None"; the server's warning that it cut a long query was lost."""
    import psycopg

    notices: list[str] = []
    with psycopg.connect(installed) as conn:
        conn.add_notice_handler(lambda diag: notices.append(str(diag.message_primary)))
        with pytest.raises(psycopg.errors.ExternalRoutineException) as caught:
            conn.execute("SELECT * FROM semrank.rank('q', ARRAY['doc'], NULL, 'no-such-model')")
        assert caught.value.diag.message_hint is None
        conn.rollback()
        long_query = " ".join(["fleas"] * 400)
        rows = conn.execute("SELECT * FROM semrank.rank(%s, ARRAY['doc'])", (long_query,))
        assert len(rows.fetchall()) == 1
    assert any("query" in notice and "semrank.rank" in notice for notice in notices), notices


def test_install_refuses_an_api_key_no_header_can_carry(pg_dsn: str) -> None:  # noqa: F811
    from semrank.errors import InvalidInputError
    from semrank.sql import install

    with pytest.raises(InvalidInputError, match="HTTP header cannot carry"):
        install(pg_dsn, api_key="bad key é")


def test_install_needs_a_superuser_and_says_so(pg_dsn: str) -> None:  # noqa: F811
    import psycopg

    from semrank.errors import BackendUnavailableError, InvalidInputError
    from semrank.sql import install

    with pytest.raises(InvalidInputError, match="not a PostgreSQL DSN"):
        install("mysql://nope")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DO $$ BEGIN CREATE ROLE app LOGIN; EXCEPTION WHEN duplicate_object THEN "
                     "NULL; END $$")  # fmt: skip
    as_app = pg_dsn.replace("semrank@", "app@")
    with pytest.raises(BackendUnavailableError, match="needs a superuser"):
        install(as_app)


def test_the_documented_hybrid_query_runs(
    installed: str,
    pg_server: PostgresServer,  # noqa: F811
    reranker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """docs/postgresql.md's hybrid example, run by psql on a semrank index."""
    import re

    from semrank.store import create_index
    from test_postgres_store import HashingEmbedder

    docs_md = Path(__file__).resolve().parents[1] / "docs" / "postgresql.md"
    example = re.search(r"```sql\n(\\set q .*?)```", docs_md.read_text("utf-8"), re.S)
    assert example is not None, "the hybrid example is missing from docs/postgresql.md"
    embedder = HashingEmbedder()
    with create_index("scifact", store=installed, embedder=embedder) as index:
        index.upsert([{"id": k, "title": "", "text": v} for k, v in DOCS.items()])
    sql = example.group(1).replace("cancer stem cells resist chemotherapy", "fleas blood")
    script = tmp_path_factory.mktemp("psql") / "hybrid.sql"
    script.write_text(sql, "utf-8")
    vector = "[" + ",".join(str(float(v)) for v in embedder.embed(["fleas blood"])[0]) + "]"
    done = subprocess.run(
        [str(PG_HOME / "bin" / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
         "-v", f"qvec={vector}", "-d", installed, "-f", str(script)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [line.split("|") for line in done.stdout.splitlines() if line]
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1)) and len(rows) >= 3
    expected = reranker.rerank("fleas blood", [DOCS[r[1]] for r in rows])
    assert [rows[e.index][1] for e in expected] == [r[1] for r in rows]


class _NotSemrank(http.server.BaseHTTPRequestHandler):
    """Another service at the configured endpoint: 200 (or 418) with an HTML page."""

    status = 200

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        page = b"<html>please log in</html>"
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args: Any) -> None:
        pass


def test_bad_input_and_settings_are_named_sql_errors(installed: str) -> None:
    """A NULL query, a timeout setting that is no number of seconds and an endpoint that is not
    semrank's: each its own message (not the server's 422, 'cannot reach' or a KeyError)."""
    import psycopg

    from semrank.errors import InvalidInputError
    from semrank.sql import install

    for timeout_s in (0, 1e10):
        with pytest.raises(InvalidInputError, match="timeout_s must be a number of seconds above"):
            install(installed, timeout_s=timeout_s)
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotSemrank)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        with psycopg.connect(installed) as conn:
            with pytest.raises(psycopg.errors.NullValueNotAllowed, match="query is NULL"):
                conn.execute("SELECT * FROM semrank.rank(NULL, ARRAY['a document'])")
            conn.rollback()
            for timeout in ("abc", "0", "-1", "inf", "1e10"):  # 1e10: an OverflowError
                conn.execute("SELECT set_config('semrank.timeout_s', %s, false)", (timeout,))
                with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
                    conn.execute("SELECT * FROM semrank.rank('q', ARRAY['a document'])")
                assert f"semrank.timeout_s is '{timeout}'" in str(caught.value)
                assert (
                    caught.value.diag.message_hint and "timeout_s" in caught.value.diag.message_hint
                )
                conn.rollback()
            endpoint = f"http://127.0.0.1:{other.server_address[1]}"
            conn.execute("SELECT set_config('semrank.endpoint', %s, false)", (endpoint,))
            with pytest.raises(psycopg.errors.ExternalRoutineException) as answer:
                conn.execute("SELECT * FROM semrank.rank('q', ARRAY['a document'])")
            assert "is not a semrank rerank answer" in str(answer.value)
            # Another service's answer is not shown: any caller may set semrank.endpoint, and
            # would read what the database server reaches (services they cannot).
            assert "please log in" not in str(answer.value)
            conn.rollback()
            _NotSemrank.status = 418
            conn.execute("SELECT set_config('semrank.endpoint', %s, false)", (endpoint,))
            with pytest.raises(psycopg.errors.ExternalRoutineException) as answer:
                conn.execute("SELECT * FROM semrank.rank('q', ARRAY['a document'])")
            shown = str(answer.value)
            assert "answered HTTP 418: an answer that is not semrank's (26 bytes" in shown
            assert "please log in" not in shown
            conn.rollback()
            assert conn.execute("SELECT count(*) FROM docs").fetchone() == (len(DOCS),)
    finally:
        _NotSemrank.status = 200
        other.shutdown()
        other.server_close()


def test_only_http_endpoints_and_a_stored_key_only_for_the_stored_endpoint(installed: str) -> None:
    """urllib would open file:// URLs as the database server's user, and a session pointing
    semrank.endpoint at its own listener would receive the stored API key."""
    import psycopg

    from semrank.sql import install

    with psycopg.connect(installed) as conn:
        conn.execute("SELECT set_config('semrank.endpoint', 'file:///etc/passwd#', false)")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="not an http"):
            conn.execute("SELECT * FROM semrank.rank('q', ARRAY['a document'])")
        conn.rollback()
    with psycopg.connect(installed) as conn:
        stored = conn.execute(
            "SELECT value FROM semrank.settings WHERE key = 'endpoint'"
        ).fetchone()[0]
    install(installed, api_key="stored-secret")
    try:
        with psycopg.connect(installed) as conn:
            elsewhere = "http://127.0.0.1:9"  # a listener of the session's choosing
            conn.execute("SELECT set_config('semrank.endpoint', %s, false)", (elsewhere,))
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="stored key is sent"):
                conn.execute("SELECT * FROM semrank.rank('q', ARRAY['a document'])")
            conn.rollback()
            # With the stored endpoint, the stored key goes out as before.
            conn.execute("SELECT set_config('semrank.endpoint', %s, false)", (stored,))
            conn.execute("SELECT set_config('semrank.api_key', '', false)")
            rows = conn.execute("SELECT * FROM semrank.rank('fleas', ARRAY['fleas bite'])")
            assert len(rows.fetchall()) == 1
    finally:
        with psycopg.connect(installed, autocommit=True) as conn:
            conn.execute("DELETE FROM semrank.settings WHERE key = 'api_key'")


class _NanScores(_NotSemrank):
    """A rerank-shaped answer whose score is NaN (json.dumps writes it as NaN)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        page = json.dumps({"results": [{"index": 0, "relevance_score": float("nan")}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)


def test_a_score_that_is_not_a_finite_number_is_refused(installed: str) -> None:
    import psycopg

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NanScores)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        with psycopg.connect(installed) as conn:
            endpoint = f"http://127.0.0.1:{other.server_address[1]}"
            conn.execute("SELECT set_config('semrank.endpoint', %s, false)", (endpoint,))
            with pytest.raises(psycopg.errors.ExternalRoutineException, match="not a finite"):
                conn.execute("SELECT * FROM semrank.rank('q', ARRAY['a document'])")
    finally:
        other.shutdown()
        other.server_close()


def test_a_body_over_the_servers_limit_is_named_not_a_server_down(
    installed: str, tmp_path: Path
) -> None:
    """The server answers 413 and hangs up while a large body is still being sent: rank said
    "cannot reach the semrank server ... start it with `semrank serve`"."""
    import psycopg

    with (
        semrank_serve(tmp_path / "small.log", "--max-body-bytes", "2000", wait_s=120.0) as (
            url,
            _,
        ),
        psycopg.connect(installed) as conn,
    ):
        conn.execute("SELECT set_config('semrank.endpoint', %s, false)", (url,))
        with pytest.raises(psycopg.errors.ExternalRoutineException) as caught:
            conn.execute(
                "SELECT * FROM semrank.rank('q', (SELECT array_agg(repeat('word ', 20000)) "
                "FROM generate_series(1, 40)))"
            )
    said = f"{caught.value} {caught.value.diag.message_hint}"
    assert "cannot reach" not in said and "max-body-bytes" in said, said


def test_more_documents_than_the_server_takes_go_in_several_requests(
    installed: str, reranker: Any, tmp_path: Path
) -> None:
    """10,000 documents were one request, refused by the server's --max-documents (413, SQLSTATE
    38000). They now go semrank.batch_size at a time; with scores that do not depend on the
    list (--no-feedback), the rows are those one call would give."""
    import psycopg

    from semrank import Reranker

    documents = [f"{text} ({n})" for n in range(3) for text in DOCS.values()]  # 15, none equal
    flags = ("--max-documents", "4", "--no-feedback")
    with (
        semrank_serve(tmp_path / "four.log", *flags, wait_s=120.0) as (url, _),
        psycopg.connect(installed) as conn,
    ):
        conn.execute("SELECT set_config('semrank.endpoint', %s, false)", (url,))
        with pytest.raises(psycopg.errors.ExternalRoutineException) as caught:
            conn.execute("SELECT * FROM semrank.rank(%s, %s)", (QUERY, documents))
        assert "semrank.batch_size" in (caught.value.diag.message_hint or "")  # 1000 by default
        conn.rollback()
        conn.execute("SELECT set_config('semrank.endpoint', %s, false)", (url,))
        conn.execute("SET semrank.batch_size = '4'")
        ids = [f"doc-{n}" for n in range(len(documents))]
        rows = conn.execute(
            "SELECT id, rank, relevance_score FROM semrank.rank(%s, %s, %s)",
            (QUERY, documents, ids),
        ).fetchall()
    expected = Reranker(feedback=False).rerank(QUERY, documents)
    assert [r[0] for r in rows] == [ids[e.index] for e in expected]
    assert [r[1] for r in rows] == list(range(1, len(documents) + 1))
    for row, result in zip(rows, expected, strict=True):
        assert row[2] == pytest.approx(result.relevance_score, abs=1e-5)
