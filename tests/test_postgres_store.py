"""The PostgreSQL store against the embedded one: same interface, same rankings.

A real PostgreSQL server (see test_postgres_server.py); skipped when it is not installed.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semrank.errors import (
    BackendUnavailableError,
    IndexExistsError,
    IndexNotFoundError,
    IndexVersionError,
    InvalidInputError,
)
from semrank.pipeline import search
from semrank.store import create_index, drop_index, list_indexes, open_index
from test_postgres_server import pg_database, pg_dsn, pg_server  # noqa: F401 (fixtures)
from tiny_models import HashingEmbedder

DOCS = [
    {"id": "d1", "title": "Fleas", "text": "Fleas feed on the blood of mammals and birds."},
    {"id": "d2", "title": "Paris", "text": "Paris is the capital of France; museums abound."},
    {"id": "d3", "title": "Oceans", "text": "The ocean is deep and cold and fish swim in it."},
    {"id": "d4", "title": "Flea larvae", "text": "Adult fleas drink blood, larvae eat debris."},
    {"id": "d5", "title": "Cats", "text": "Cats groom; fleas on cats bite, cats scratch fleas."},
    {"id": "d6", "title": "Blood", "text": "Blood carries oxygen; mammals have red blood."},
]
QUERIES = ["what do fleas eat", "blood of mammals", "capital of France", "deep cold ocean fish"]


@pytest.fixture
def stores(pg_dsn: str, tmp_path: Path):  # type: ignore[no-untyped-def]  # noqa: F811
    embedder = HashingEmbedder()
    options = {"fields": ("title", "text"), "embedding_model": "default", "embedder": embedder}
    local = create_index("t", home=tmp_path, **options)  # type: ignore[arg-type]
    pg = create_index("t", store=pg_dsn, **options)  # type: ignore[arg-type]
    local.upsert(DOCS)
    pg.upsert(DOCS)
    yield local, pg
    local.close()
    pg.close()


def test_documents_roundtrip(stores) -> None:  # type: ignore[no-untyped-def]
    _, pg = stores
    assert len(pg) == 6
    assert pg.get(["d2", "nope", "d1"]) == [
        {"title": "Paris", "text": DOCS[1]["text"]},
        None,
        {"title": "Fleas", "text": DOCS[0]["text"]},
    ]
    generation = pg.generation
    assert pg.upsert(DOCS) == 6 and pg.generation == generation  # unchanged: nothing rewritten
    pg.upsert([{"id": "d2", "title": "Paris", "text": "Paris, city of light.", "year": 2024}])
    assert pg.get(["d2"])[0]["year"] == 2024 and len(pg) == 6 and pg.generation > generation
    # What a search that began before the write asks (a hit rewritten under it runs it again).
    for store in stores:
        before = store.generation
        store.upsert([{"id": "d1", "title": "Fleas", "text": "Fleas again."}])
        assert store.written_since(["d1", "d2", "nope"], before) == {"d1"}
        assert store.written_since(["d1"], store.generation) == set()
    assert "year" in pg.fields_seen
    assert pg.delete(["d3", "d3", "missing"]) == 1
    assert len(pg) == 5 and pg.get(["d3"]) == [None]
    info = pg.info()
    assert info.backend == "postgresql" and info.documents == 5 and info.embedding_dim == 384
    assert info.vector_search == "exact" and "***" not in info.location


def test_an_index_says_it_cannot_be_pickled_and_how_to_open_it_elsewhere(stores) -> None:  # type: ignore[no-untyped-def]
    """A PostgreSQL index handed to a spawn pool failed with "cannot pickle
    '_thread.RLock' object" from its connection pool; the DSN is not shown (a password)."""
    import pickle

    _, pg = stores
    with pytest.raises(InvalidInputError, match=r"pickled .*open_index\('t', store=DSN\)$"):
        pickle.dumps(pg)
    assert len(pg) == 6


def test_a_value_that_changed_type_is_written_as_in_the_embedded_store(stores) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL compared with Python's ==, for which True is 1 and 10 is 10.0: the write was
    counted as skipped and the stored document kept its old values."""
    for store in stores:
        first = {"id": "p", "text": "a lamp", "in_stock": True, "price": 10}
        assert store.upsert_counted([first]).written == 1
        assert store.upsert_counted([first]).written == 0  # as stored: skipped
        changed = {"id": "p", "text": "a lamp", "in_stock": 1, "price": 10.0}
        assert store.upsert_counted([changed]).written == 1, store
        (stored,) = store.get(["p"])
        assert type(stored["in_stock"]) is int and type(stored["price"]) is float


def test_bm25_and_vector_rankings_match_the_embedded_store(stores) -> None:  # type: ignore[no-untyped-def]
    local, pg = stores
    for query in QUERIES:
        ours, theirs = pg.search_bm25(query, k=5), local.search_bm25(query, k=5)
        assert ours.ids.tolist() == theirs.ids.tolist(), query
        np.testing.assert_allclose(ours.scores, theirs.scores, rtol=1e-5)
        vector = local.embed_queries([query])[0]
        ours, theirs = pg.search_vector(vector, k=4), local.search_vector(vector, k=4)
        assert ours.ids.tolist() == theirs.ids.tolist(), query
        np.testing.assert_allclose(ours.scores, theirs.scores, atol=1e-6)
    assert len(pg.search_bm25("zebra unicorn", k=5)) == 0


def test_bm25_analyses_text_beyond_english_as_the_embedded_store(
    pg_dsn: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """PostgreSQL's BM25 analysed with bm25s's own pattern while its settings said version 2:
    Hindi, decomposed accents and Thai found nothing there."""
    import unicodedata

    docs = [
        {"id": "hi", "text": "नई दिल्ली भारत की राजधानी है"},
        {"id": "fr", "text": unicodedata.normalize("NFD", "un résumé du café")},
        {"id": "th", "text": "ร้านนี้ขายข้าวผัดกุ้งอร่อย"},
        {"id": "zh", "text": "北京是中国的首都"},
        {"id": "en", "text": "Fleas feed on blood."},
    ]
    local = create_index("u", home=tmp_path, embedding_model=None)
    pg = create_index("u", store=pg_dsn, embedding_model=None)
    local.upsert(docs)
    pg.upsert(docs)
    assert pg.info().settings.bm25.analysis == 4
    for query, found in (("दिल्ली", "hi"), ("résumé", "fr"), ("ข้าวผัด", "th"), ("首都", "zh")):
        ours, theirs = pg.search_bm25(query, k=3), local.search_bm25(query, k=3)
        assert ours.ids.tolist() == theirs.ids.tolist() == [found], query
        np.testing.assert_allclose(ours.scores, theirs.scores, rtol=1e-5)
    local.close()
    drop_index("u", store=pg_dsn)


def test_pipeline_hybrid_runs_on_postgres(stores) -> None:  # type: ignore[no-untyped-def]
    local, pg = stores
    for query in QUERIES:
        ours = search(pg, query, retriever="hybrid", k=3)
        theirs = search(local, query, retriever="hybrid", k=3)
        assert ours.ids == theirs.ids
        assert ours.hits[0].document == theirs.hits[0].document


def test_field_search_and_errors(stores) -> None:  # type: ignore[no-untyped-def]
    _, pg = stores
    assert pg.search_bm25("larvae", k=3, field="title").ids.tolist() == ["d4"]
    with pytest.raises(InvalidInputError, match="no field 'colour'"):
        pg.search_bm25("red", k=3, field="colour")


def test_a_field_named_composed_searches_documents_that_spell_it_decomposed(
    pg_dsn: str,  # noqa: F811
) -> None:
    """jsonb finds a key as written: a header saved decomposed (macOS) searched as typed
    (composed) matched nothing, where the embedded store found it."""
    composed, decomposed = (unicodedata.normalize(form, "résumé") for form in ("NFC", "NFD"))
    pg = create_index("accents", store=pg_dsn, fields=[composed], embedding_model=None)
    pg.upsert([{"id": "ada", decomposed: "gardener"}, {"id": "bob", decomposed: "plumber"}])
    assert pg.search_bm25("gardener", k=2, field=composed).ids.tolist() == ["ada"]
    assert pg.get(["ada"]) == [{decomposed: "gardener"}]
    pg.close()
    drop_index("accents", store=pg_dsn)


def test_a_field_spelled_both_ways_by_different_documents_is_searched_in_all(
    pg_dsn: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A JSONL file's composed keys and a macOS CSV's decomposed header in one index: the
    embedded store reads each document's own spelling, PostgreSQL read only the spelling
    searched for, so half the documents were never found by a search of that field."""
    composed, decomposed = (unicodedata.normalize(form, "résumé") for form in ("NFC", "NFD"))
    docs = [
        {"id": "ada", composed: "gardener in Paris"},
        {"id": "bob", decomposed: "plumber in Paris"},
        {"id": "cy", composed: "gardener and plumber"},
    ]
    local = create_index("both", home=tmp_path, fields=[composed], embedding_model=None)
    pg = create_index("both", store=pg_dsn, fields=[composed], embedding_model=None)
    for store in (local, pg):
        store.upsert(docs)
    for field in (composed, decomposed):
        for query in ("gardener", "plumber", "paris"):
            ours, theirs = (
                pg.search_bm25(query, k=5, field=field),
                local.search_bm25(query, k=5, field=field),
            )
            assert sorted(ours.ids.tolist()) == sorted(theirs.ids.tolist()), (field, query)
            assert len(ours) == 2, (field, query)
            np.testing.assert_allclose(ours.scores, theirs.scores, rtol=1e-5)
        ours = pg.search_bm25_fields("plumber", k=5, fields=[(field, 1.0)])
        assert sorted(ours.ids.tolist()) == ["bob", "cy"]
    local.close()
    pg.close()
    drop_index("both", store=pg_dsn)


def test_hnsw_index_from_the_threshold(pg_dsn: str) -> None:  # noqa: F811
    pg = create_index("h", store=pg_dsn, embedder=HashingEmbedder(), ann_threshold=3)
    with pg:
        pg.upsert(DOCS)
        assert pg.info().vector_search == "hnsw"
        vector = HashingEmbedder().embed(["fleas blood"])[0]
        assert pg.search_vector(vector, k=2, num_candidates=50).ids.tolist()[0] in {"d1", "d4"}


def test_registry_by_dsn(pg_dsn: str) -> None:  # noqa: F811
    create_index("a", store=pg_dsn, embedding_model=None).close()
    with pytest.raises(IndexExistsError):
        create_index("a", store=pg_dsn, embedding_model=None)
    assert list_indexes(store=pg_dsn) == ["a"]
    with open_index("a", store=pg_dsn) as index:
        assert index.backend == "postgresql" and not index.has_vectors
    drop_index("a", store=pg_dsn)
    with pytest.raises(IndexNotFoundError, match="not found"):
        open_index("a", store=pg_dsn)
    with pytest.raises(InvalidInputError, match="unknown store"):
        open_index("a", store="mysql://x")


def cli(*args: str) -> str:
    """``semrank ARGS`` in a process of its own; its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", "semrank.cli", *args],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_cli_create_info_search(pg_dsn: str, tmp_path: Path) -> None:  # noqa: F811
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS), "utf-8")

    cli("index", "create", "cli", "--from", str(corpus), "--no-dense", "--store", pg_dsn)
    assert json.loads(cli("index", "info", "cli", "--json", "--store", pg_dsn))["documents"] == 6
    hits = json.loads(cli("search", "cli", "fleas blood", "--json", "--store", pg_dsn))["hits"]
    assert hits[0]["id"] in {"d1", "d4"}


def test_cli_create_refuses_what_it_would_refuse_before_reading_the_file(
    pg_dsn: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The embedded store's `index create --from` names a taken name at once; in PostgreSQL a
    taken name, a BM25 method SQL does not compute and a database out of reach were told only
    after the whole corpus was checked (minutes for a large file; here: its broken last line)."""
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS) + "{broken\n", "utf-8")
    taken = {"home": ("--home", str(tmp_path / "home")), "pg": ("--store", pg_dsn)}
    for where in taken.values():
        cli("index", "create", "taken", "--no-dense", *where)
    other_database = pg_dsn.rsplit("/", 1)[0] + "/no_such_database"
    refusals = [
        (("taken", *taken["home"]), "already exists"),
        (("taken", *taken["pg"]), "already exists"),
        (("new", "--bm25-method", "robertson", *taken["pg"]), "lucene method, not 'robertson'"),
        (("new", "--store", other_database), 'database "no_such_database" does not exist'),
    ]
    for args, said in refusals:
        done = subprocess.run(
            [sys.executable, "-m", "semrank.cli", "index", "create", *args, "--from", str(corpus)],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode in (2, 3), done.stderr
        assert said in done.stderr and "checking" not in done.stderr, (args, done.stderr)


def test_a_database_a_newer_semrank_migrated_is_refused_before_any_write(
    pg_dsn: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    import psycopg

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS), "utf-8")
    cli("index", "create", "old", "--from", str(corpus), "--no-dense", "--store", pg_dsn)
    from semrank.store.postgres import MIGRATIONS

    newer = MIGRATIONS[-1][0] + 1
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # a layout this version lacks
        conn.execute(
            "INSERT INTO semrank.migrations (version, name) VALUES (%s, 'newer')", (newer,)
        )
    for args in (("index", "list"), ("index", "add", "old", str(corpus))):
        done = subprocess.run(
            [sys.executable, "-m", "semrank.cli", *args, "--store", pg_dsn],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert f"migrated by a newer semrank (migration {newer};" in done.stderr
        assert "install the newer semrank" in done.stderr and "Traceback" not in done.stderr
    with psycopg.connect(pg_dsn) as conn:
        generation = conn.execute("SELECT max(generation) FROM semrank.documents").fetchone()
    assert generation == (1,)  # the add wrote nothing
    # `semrank sql`'s migrations (100+) are checked against their own family's last
    from semrank.sql._functions import sql_migrations
    from semrank.store.postgres import migrate

    with psycopg.connect(pg_dsn) as conn:
        conn.execute("INSERT INTO semrank.migrations (version, name) VALUES (199, 'newer')")
        conn.commit()
        with pytest.raises(
            IndexVersionError, match=r"\(migration 199; this semrank knows 1\d\d at"
        ) as refused:
            migrate(conn, sql_migrations(), extensions=())
    # An HTTP client is not told the database's name and host.
    assert "upgraded" in str(refused.value.client_message)
    assert "127.0.0.1" not in str(refused.value.client_message)


def test_settings_a_newer_semrank_wrote_are_refused(pg_dsn: str) -> None:  # noqa: F811
    import psycopg

    with create_index("later", store=pg_dsn, embedder=HashingEmbedder()) as index:
        index.upsert(DOCS)  # stores the embedding probe beside the settings: not refused
    with open_index("later", store=pg_dsn, embedder=HashingEmbedder()) as index:
        assert len(index) == len(DOCS)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE semrank.indexes SET settings = settings || '{\"layout\": 2}' "
            "WHERE name = 'later'"
        )
    with pytest.raises(IndexVersionError, match=r"newer semrank .*does not know: layout\)"):
        open_index("later", store=pg_dsn)


def test_index_list_of_an_empty_database_hides_the_password(pg_dsn: str) -> None:  # noqa: F811
    with_password = pg_dsn.replace("://semrank@", "://semrank:secretpw@")
    shown = cli("index", "list", "--store", with_password)
    assert "no indexes in" in shown and "secretpw" not in shown and "***" in shown


def test_a_handle_to_a_dropped_index_names_the_drop(pg_dsn: str) -> None:  # noqa: F811
    held = create_index("gone", store=pg_dsn, embedder=HashingEmbedder())
    with held:
        held.upsert(DOCS)
        drop_index("gone", store=pg_dsn)
        vector = HashingEmbedder().embed(["fleas"])[0]
        reads = {
            "search_bm25": lambda: held.search_bm25("fleas", k=3),
            "search_vector": lambda: held.search_vector(vector, k=3),
            "get": lambda: held.get(["d1"]),
            "len": lambda: len(held),
        }
        for name, read in reads.items():
            with pytest.raises(IndexNotFoundError, match="'gone' was dropped"):
                read()
                pytest.fail(f"{name} read a dropped index")
        with pytest.raises(IndexNotFoundError, match="'gone' was dropped"):
            held.upsert(DOCS[:1])


def test_what_postgres_cannot_store_is_named_before_anything_is_written(stores) -> None:  # type: ignore[no-untyped-def]
    from semrank.errors import DataFormatError

    _, pg = stores
    for bad, named in (
        ({"id": "n1", "text": "nul \u0000 here"}, r"document 'n1' holds a NUL character"),
        # Refused by every store (JSON cannot carry it), before the PostgreSQL check.
        ({"id": "n2", "text": "x", "score": float("nan")}, r"document 'n2': field 'score' holds"),
    ):
        with pytest.raises((DataFormatError, InvalidInputError), match=named):
            pg.upsert([{"id": "ok", "text": "fine"}, bad])
    assert len(pg) == len(DOCS)


def test_a_wrong_password_fails_at_once_with_its_cause(pg_dsn: str) -> None:  # noqa: F811
    import time

    from semrank.errors import BackendUnavailableError
    from semrank.store.postgres import redact

    scheme, rest = pg_dsn.split("://", 1)
    user_host = rest.split("@", 1)[-1]
    wrong = f"{scheme}://semrank_nobody:wrong@{user_host}"
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="cannot connect to PostgreSQL") as caught:
        open_index("t", store=wrong)
    assert time.monotonic() - started < 15  # not the pool's 30 s of retries
    assert "wrong" not in str(caught.value)  # the password is not shown
    assert redact("postgresql://h/db?password=secret&user=u") == (
        "postgresql://h/db?password=***&user=u"
    )


def test_a_document_too_long_for_full_text_is_named(stores) -> None:  # type: ignore[no-untyped-def]
    from semrank.errors import DataFormatError

    _, pg = stores
    huge = " ".join(f"w{i}x{i * 7919}" for i in range(120_000))  # > 1 MB of distinct lexemes
    with pytest.raises(DataFormatError, match=r"likely 'huge' \(the longest\)"):
        pg.upsert([{"id": "small", "text": "fine"}, {"id": "huge", "text": huge}])
    assert len(pg) == len(DOCS)


def test_cli_eval_on_an_index_kept_in_postgres(pg_dsn: str, tmp_path: Path) -> None:  # noqa: F811
    """`semrank eval --index` read only indexes of the embedded store: a user who moved to
    PostgreSQL could not evaluate on their own data any more."""
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS), "utf-8")
    (tmp_path / "queries.tsv").write_text("q1\tfleas blood\n", "utf-8")
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n", "utf-8")

    cli("index", "create", "ev", "--from", str(corpus), "--no-dense", "--store", pg_dsn)
    queries, qrels = str(tmp_path / "queries.tsv"), str(tmp_path / "qrels.tsv")
    report = cli("eval", "--index", "ev", "--store", pg_dsn, "--queries", queries,
                 "--qrels", qrels, "--json")  # fmt: skip
    (run,) = json.loads(report).values()  # the first stage only (--index: no re-ranking)
    assert run["R@100"] == 1.0 and run["nDCG@10"] > 0.5  # d1 is found, near the top


def test_documents_without_text_are_never_found_by_vector(stores) -> None:  # type: ignore[no-untyped-def]
    """Their embedding is close to every query: they outranked documents holding the words. On
    PostgreSQL they keep no vector (a text filter in the query was slow and lost HNSW hits)."""
    local, pg = stores
    blank = [{"id": "b1", "title": "", "text": "  "}, {"id": "b2", "title": " ", "text": "\n"}]
    for store in (local, pg):
        store.upsert(blank)
        written = store.generation
        store.upsert(blank)  # unchanged: skipped, not rewritten for want of a vector
        assert store.generation == written
        vector = local.embed_queries(["what do fleas eat"])[0]
        found = store.search_vector(vector, k=20).ids.tolist()
        assert found and not {"b1", "b2"} & set(found), (store, found)
        assert store.get(["b1"])[0] is not None


def test_a_text_python_calls_blank_is_caught_up_once_not_forever(pg_dsn: str) -> None:  # noqa: F811
    """PostgreSQL's [[:space:]] does not cover U+00A0 or \\x1c, Python's strip() does: such a
    row got no vector, was selected again, and the ingest never returned."""
    pg = create_index("nb", store=pg_dsn, embedder=HashingEmbedder(), embedding_model="default")
    try:
        pg.upsert([{"id": "n", "text": "\u00a0"}, {"id": "s", "text": "\x1c"}, DOCS[0]])
        assert len(pg) == 3
        hits = pg.search_vector(HashingEmbedder().embed(["fleas blood"])[0], k=5)
        assert hits.ids.tolist() == ["d1"]
    finally:
        pg.close()


def test_a_bad_query_vector_is_refused_as_by_the_embedded_store(stores) -> None:  # type: ignore[no-untyped-def]
    """A wrong dimension was pgvector's internal error (HTTP 500); zeros scored NaN."""
    for store in stores:
        with pytest.raises(InvalidInputError, match="query vector has 3 dimensions"):
            store.search_vector(np.ones(3), k=2)
        with pytest.raises(InvalidInputError, match="all zeros or not finite"):
            store.search_vector(np.zeros(384), k=2)
    local, pg = stores
    vector = local.embed_queries(["fleas"])[0] * 1e30  # scale never changes a cosine
    assert (
        pg.search_vector(vector, k=3).ids.tolist() == local.search_vector(vector, k=3).ids.tolist()
    )


def test_a_bm25_method_postgres_cannot_score_is_refused_at_create(pg_dsn: str) -> None:  # noqa: F811
    from semrank.retrieve import BM25Params

    with pytest.raises(InvalidInputError, match="not 'robertson'; create the index with"):
        create_index("rob", store=pg_dsn, embedding_model=None, bm25=BM25Params(method="robertson"))
    assert "rob" not in list_indexes(store=pg_dsn)


def test_a_role_with_table_grants_only_uses_the_store(pg_server, pg_database) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Every use ran CREATE SCHEMA IF NOT EXISTS, which PostgreSQL refuses a role without CREATE
    on the database even when the schema exists: a driver traceback. What the role may not do
    (create an index: the tables' owner's) is named."""
    from semrank.errors import BackendUnavailableError

    owner_dsn = pg_server.dsn(pg_database)
    with create_index("g", store=owner_dsn, embedding_model=None) as owned:
        owned.upsert(DOCS)
    reader = f"reader_{pg_database}"
    grants = (
        f"CREATE ROLE {reader} LOGIN; GRANT USAGE ON SCHEMA semrank TO {reader}; "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA semrank TO {reader}; "
        f"REVOKE CREATE ON DATABASE {pg_database} FROM PUBLIC; "
        f"REVOKE CREATE ON SCHEMA public FROM PUBLIC"
    )
    done = pg_server.psql(pg_database, grants)
    assert done.returncode == 0, done.stderr
    reader_dsn = owner_dsn.replace("://semrank@", f"://{reader}@")
    assert list_indexes(store=reader_dsn) == ["g"]
    with open_index("g", store=reader_dsn) as index:
        assert search(index, "fleas", k=2).ids[0] in {"d1", "d4", "d5"}
        index.upsert([{"id": "d7", "title": "Dogs", "text": "Dogs get fleas too."}])
        assert index.get(["d7"])[0] is not None
    with pytest.raises(BackendUnavailableError, match=rf"role of .*{reader}.* is not allowed"):
        create_index("mine", store=reader_dsn, embedding_model=None)
    # A write of the role that crosses --ann-threshold: committed, then refused the HNSW index
    # (only the owner may add it), it answered 503 every time; now the build waits for the
    # owner and vector searches stay exact.
    with create_index("v", store=owner_dsn, embedder=HashingEmbedder(), ann_threshold=8) as v:
        v.upsert(DOCS)
    pg_server.psql(
        pg_database,
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA semrank TO {reader}",
    )
    with open_index("v", store=reader_dsn, embedder=HashingEmbedder()) as index:
        index.upsert([{"id": f"x{i}", "title": "Cats", "text": f"Cats {i}"} for i in range(4)])
        assert len(index) == 10 and not index.has_hnsw()
        assert "x3" in search(index, retriever={"knn": {"query_text": "Cats 3", "k": 10}}).ids
    with open_index("v", store=owner_dsn, embedder=HashingEmbedder()) as owned:
        owned.upsert([{"id": "x9", "text": "Cats 9"}])
        assert owned.has_hnsw()
    # An index the owner creates after the GRANT is the role's to use too (its partition was
    # the owner's alone: "permission denied for table documents_...").
    with create_index("later", store=owner_dsn, embedding_model=None) as later:
        later.upsert(DOCS)
    with open_index("later", store=reader_dsn) as index:
        assert search(index, "fleas", k=2).ids[0] in {"d1", "d4", "d5"}
        index.upsert([{"id": "d7", "title": "Dogs", "text": "Dogs get fleas too."}])


def test_databases_set_up_otherwise_than_postgresql_s_defaults(pg_server, pg_database) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """pgvector outside the search_path and a read-only database (a hot standby) gave driver
    tracebacks; a database defaulting to SERIALIZABLE failed concurrent writes (HTTP 500)."""
    from semrank.errors import BackendUnavailableError
    from semrank.store.postgres import _pool

    dsn = pg_server.dsn(pg_database)

    def psql(sql: str) -> None:
        done = pg_server.psql(pg_database, f"BEGIN READ WRITE; {sql}; COMMIT")
        assert done.returncode == 0, done.stderr

    psql("CREATE SCHEMA extensions; CREATE EXTENSION vector SCHEMA extensions")
    with pytest.raises(BackendUnavailableError, match=r"does not show pgvector .*search_path"):
        create_index("vec", store=dsn, embedding_model=None)
    psql("ALTER EXTENSION vector SET SCHEMA public")
    psql(f"ALTER DATABASE {pg_database} SET default_transaction_isolation = 'serializable'")
    fresh = f"{dsn}?application_name=fresh"  # new sessions: a pool of their own
    with create_index("iso", store=fresh, embedding_model=None) as index:
        index.upsert(DOCS)
    conn = _pool._connect(fresh)
    try:
        assert conn.execute("SHOW transaction_isolation").fetchone() == ("read committed",)
    finally:
        conn.close()
    psql(f"ALTER DATABASE {pg_database} SET default_transaction_read_only = on")
    with open_index("iso", store=f"{dsn}?application_name=standby") as index:
        with pytest.raises(BackendUnavailableError, match=r"is read-only .*point --store"):
            index.upsert([{"id": "d9", "text": "one more"}])
        assert index.get(["d9"]) == [None]


def test_writers_waiting_on_a_lock_leave_connections_for_other_indexes(pg_dsn: str) -> None:  # noqa: F811
    """Writers of an index whose lock another session held each waited inside PostgreSQL with
    a pooled connection: eight of them left searches of every other index none (HTTP 503
    after 10 s). They now wait in this process, one holding a connection."""
    import threading
    import time

    import psycopg

    from semrank.store.postgres._store import partition_name

    with create_index("busy", store=pg_dsn, embedding_model=None) as busy:
        busy.upsert(DOCS)
    with create_index("other", store=pg_dsn, embedding_model=None) as other:
        other.upsert(DOCS)
    holder = psycopg.connect(pg_dsn)
    holder.execute(f"LOCK TABLE semrank.{partition_name('busy')} IN SHARE MODE")
    index = open_index("busy", store=pg_dsn)
    writers = [
        threading.Thread(target=index.upsert, args=([{"id": f"w{i}", "text": "fleas"}],))
        for i in range(10)
    ]
    try:
        for writer in writers:
            writer.start()
        time.sleep(1.0)  # every writer is waiting by now
        with open_index("other", store=pg_dsn) as searched:
            started = time.monotonic()
            assert search(searched, "fleas", k=2).ids
            assert time.monotonic() - started < 3.0  # the lock is held for 6 s more
        time.sleep(max(0.0, started + 6.0 - time.monotonic()))
    finally:
        holder.rollback()
        holder.close()
        for writer in writers:
            writer.join(timeout=60)
    assert [doc is not None for doc in index.get([f"w{i}" for i in range(10)])] == [True] * 10
    index.close()


def test_statistics_are_gathered_when_stale_not_after_every_write(pg_dsn: str) -> None:  # noqa: F811
    """ANALYZE of the whole partition after every write cost 0.4-0.8 s at 30,000 documents."""
    import psycopg

    from semrank.store.postgres._store import partition_name

    def analyzed() -> object:
        with psycopg.connect(pg_dsn) as conn:
            return conn.execute(
                "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = %s",
                (partition_name("stats"),),
            ).fetchone()[0]

    with create_index("stats", store=pg_dsn, embedding_model=None) as index:
        index.upsert([{"id": f"d{i}", "text": f"fleas {i}"} for i in range(300)])
        first = analyzed()
        assert first is not None  # never gathered: gathered after the first write
        index.upsert([{"id": "one-more", "text": "fleas again"}])
        assert analyzed() == first


def test_an_id_too_long_for_a_btree_key_is_named(stores) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL's index-row error blamed the batch's longest document, another one."""
    from semrank.errors import DataFormatError

    _, pg = stores
    long_id = "x" * 9000
    with pytest.raises(DataFormatError, match=r"document id 'xxx.*is 9,000 bytes"):
        pg.upsert([{"id": long_id, "text": "hello"}, {"id": "other", "text": "long " * 500}])
    assert pg.get(["other"]) == [None]


def test_documents_written_again_unchanged_are_skipped(pg_dsn: str) -> None:  # noqa: F811
    """A text PostgreSQL and Python disagree is blank about (U+00A0), and a float jsonb reads
    back as another number (1.2345678901234568e+29), were rewritten on every ingest."""
    pg = create_index("same", store=pg_dsn, embedder=HashingEmbedder(), embedding_model="default")
    try:
        docs = [
            {"id": "n", "text": "\u00a0"},
            {"id": "g", "text": "x", "small": 0.1, "big": 1.2345678901234568e29, "e": 1e20},
        ]
        pg.upsert(docs)
        generation = pg.generation
        pg.upsert(docs)
        assert pg.generation == generation
        assert pg.get(["g"])[0]["small"] == 0.1
    finally:
        pg.close()


def test_an_embedding_model_changed_in_place_is_refused(pg_dsn: str, tmp_path: Path) -> None:  # noqa: F811
    """As in the embedded store: the index keeps a probe of its model with its first vectors
    (in its settings row: no migration), and a model folder retrained in place is refused
    instead of matching its queries against the old model's vectors."""
    from semrank.errors import IndexModelChangedError
    from tiny_models import write_tiny_model

    model = write_tiny_model(tmp_path / "embedder", "bert", "encoder", seed=0, hidden_size=384)
    with create_index("probed", store=pg_dsn, embedding_model=str(model)) as index:
        index.upsert(DOCS)
        assert len(index.search_vector(index.embed_queries(["cats"])[0], k=3)) == 3
    with open_index("probed", store=pg_dsn) as same:  # the same model: searches as before
        assert len(same.search_vector(same.embed_queries(["cats"])[0], k=3)) == 3
        same.upsert([{"id": "d7", "text": "owls hunt at night"}])  # the probe is kept once
    write_tiny_model(model, "bert", "encoder", seed=1, hidden_size=384)  # retrained in place
    with open_index("probed", store=pg_dsn) as changed:
        with pytest.raises(IndexModelChangedError, match="no longer embeds text as it did"):
            changed.embed_queries(["cats"])
        with pytest.raises(IndexModelChangedError):
            changed.upsert([{"id": "d8", "text": "bats hunt at night"}])
        assert len(changed) == len(DOCS) + 1


def test_a_knn_search_deeper_than_ef_search_returns_k_hits(pg_dsn: str) -> None:  # noqa: F811
    """pgvector's HNSW scan stops at hnsw.ef_search (at most 1000) candidates: k=1200 over an
    HNSW index returned 1000 hits, the exact scan of the same index 1200."""
    rng = np.random.default_rng(0)
    words = [f"w{n}" for n in range(400)]
    docs = [{"id": f"x{n}", "text": " ".join(rng.choice(words, 8))} for n in range(1300)]
    import psycopg

    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # the index scan, as on large tables
        database = conn.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        conn.execute(f'ALTER DATABASE "{database}" SET enable_seqscan = off')
    with create_index("deep", store=pg_dsn, embedder=HashingEmbedder(), ann_threshold=3) as pg:
        pg.upsert(docs)
        assert pg.info().vector_search == "hnsw"
        vector = HashingEmbedder().embed(["w1 w2 w3"])[0]
        hits = pg.search_vector(vector, k=1200)
        assert len(hits) == 1200 and len(set(hits.ids.tolist())) == 1200
        assert bool(np.all(np.diff(hits.scores) <= 1e-6))  # still best first


def test_two_writers_crossing_the_ann_threshold_together_both_succeed(pg_dsn: str) -> None:  # noqa: F811
    """Both ran CREATE INDEX IF NOT EXISTS; one failed with the catalog's UniqueViolation after
    its documents were committed (a 500 over HTTP)."""
    import os
    import time

    with create_index("race", store=pg_dsn, embedder=HashingEmbedder(), ann_threshold=60) as pg:
        pg.upsert([{"id": f"s{i}", "text": f"w{i}"} for i in range(10)])
    script = str(Path(__file__).with_name("_pg_race_writer.py"))
    start = str(time.time() + 4)  # both processes loaded and waiting
    env = {**os.environ, "SEMRANK_TEST_DSN": pg_dsn}
    writers = [
        subprocess.Popen(
            [sys.executable, script, start, name], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        for name in ("a", "b")
    ]  # fmt: skip
    outcomes = [writer.communicate(timeout=120) for writer in writers]
    for writer, (out, err) in zip(writers, outcomes, strict=True):
        assert writer.returncode == 0, err[-600:]
        assert out.strip() == "hnsw"
    with open_index("race", store=pg_dsn) as pg:
        assert len(pg) == 110


def test_nul_in_ids_and_field_queries_reads_as_the_embedded_store(stores) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL text holds no NUL: get, delete and a single-field BM25 search with one were
    driver errors (HTTP 500), where the embedded store answers."""
    for index in stores:
        assert index.get(["a\x00b", "d1"])[0] is None and index.get(["d1"])[0] is not None
        assert index.delete(["a\x00b"]) == 0
        hits = index.search_bm25("fleas\x00blood", k=3, field="text")
        assert len(hits) and hits.ids[0] in {"d1", "d4", "d5", "d6"}
        with pytest.raises(InvalidInputError, match="search query"):
            index.search_bm25("fleas \ud800", k=3, field="text")


def test_a_statement_the_database_cancels_is_a_deadline_not_a_bug(pg_dsn: str) -> None:  # noqa: F811
    from semrank.errors import DeadlineExceededError
    from semrank.store.postgres._pool import acquire_pool, pooled_connection, release_pool

    pool = acquire_pool(pg_dsn)
    try:
        cancelled = pytest.raises(DeadlineExceededError, match="statement_timeout or lock_timeout")
        with cancelled, pooled_connection(pool, pg_dsn) as conn:
            conn.execute("SET LOCAL statement_timeout = 10")
            conn.execute("SELECT pg_sleep(2)")
    finally:
        release_pool(pg_dsn)


def test_what_postgres_cannot_store_is_refused_before_the_first_batch(stores, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Found in the batch that held it: the 256 documents of the batches before were in."""
    from semrank.errors import DataFormatError
    from semrank.store import read_corpus

    _, pg = stores
    good = [{"id": f"g{i}", "text": "fine"} for i in range(300)]
    for bad in ({"id": "bad", "text": "a\u0000b"}, {"id": "x" * 2100, "text": "t"}):
        with pytest.raises(DataFormatError):
            pg.upsert([*good, bad])
        assert len(pg) == len(DOCS)
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in [*good, {"id": "z", "text": "\u0000"}]))
    with pytest.raises(DataFormatError, match="NUL"):  # `index create/add` check a file so
        read_corpus(corpus).count(pg.check_storable)
    assert read_corpus(corpus).count() == 301  # the embedded store holds it


def _field_docs() -> list[dict[str, str]]:
    docs = [{"id": f"t{i}", "title": "flea", "text": "dog"} for i in range(4)]
    docs += [
        {"id": "x", "title": "flea bite itch", "text": "flea dog dog"},
        {"id": "y", "title": "cat", "text": "flea"},
    ]
    return docs + [{"id": f"f{i}", "title": "filler", "text": "nothing here"} for i in range(4)]


def test_most_fields_sums_every_fields_score_on_both_stores(pg_dsn: str, tmp_path: Path) -> None:  # noqa: F811
    """PostgreSQL summed each field's top 4k only: x, best by the sum, lost its text share
    at k=1 and y came first. A field boosted to 0 gave zero-score hits; a bad mode was
    taken as most_fields."""
    options = {"fields": ("title", "text"), "embedding_model": None}
    local = create_index("m", home=tmp_path, **options)  # type: ignore[arg-type]
    pg = create_index("m", store=pg_dsn, **options)  # type: ignore[arg-type]
    both = ((1.0, "title"), (1.0, "text"))
    fields = [(name, boost) for boost, name in both]
    for store in (local, pg):
        store.upsert(_field_docs())
        top = store.search_bm25_fields("flea", k=1, fields=fields, mode="most_fields")
        wide = store.search_bm25_fields("flea", k=10, fields=fields, mode="most_fields")
        assert top.ids.tolist() == ["x"] == wide.ids[:1].tolist(), store
        assert top.scores[0] == pytest.approx(wide.scores[0])
        zero = store.search_bm25_fields("itch", k=5, fields=[("title", 1.0), ("text", 0.0)])
        assert zero.ids.tolist() == ["x"] and (zero.scores > 0).all()
        with pytest.raises(InvalidInputError, match="unknown multi-field mode 'bogus'"):
            store.search_bm25_fields("flea", k=1, fields=fields, mode="bogus")
        store.close()


class _DotEmbedder(HashingEmbedder):
    """A "dot" model: no Normalize step, so its vectors' lengths differ (multi-qa-*-dot-v1)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = super().embed(texts)
        return vectors * np.array([[1.0 + len(text) % 7] for text in texts], dtype=np.float32)


def test_a_model_without_normalize_ranks_by_cosine_on_both_stores(pg_dsn, tmp_path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The embedded store ranked such vectors by inner product (long documents first, scores
    past 1), PostgreSQL by cosine: two rankings of one index."""
    options = {
        "fields": ("title", "text"),
        "embedding_model": "default",
        "embedder": _DotEmbedder(),
    }
    local = create_index("d", home=tmp_path, **options)  # type: ignore[arg-type]
    pg = create_index("d", store=pg_dsn, **options)  # type: ignore[arg-type]
    for store in (local, pg):
        store.upsert(DOCS)
    query = HashingEmbedder().embed(["what do fleas eat blood"])[0]
    texts = [f"{d['title']}\n{d['text']}" for d in DOCS]
    cosine = dict(zip([d["id"] for d in DOCS], HashingEmbedder().embed(texts) @ query, strict=True))
    for store in (local, pg):
        hits = store.search_vector(query, k=3)
        assert hits.ids[0] == "d4", store  # the best cosine, not the longest vector
        np.testing.assert_allclose(hits.scores, [cosine[i] for i in hits.ids], atol=1e-5)
        np.testing.assert_allclose(hits.scores, sorted(cosine.values())[::-1][:3], atol=1e-5)
        store.close()


def test_a_wrong_dimension_is_refused_by_an_emptied_index_too(stores) -> None:  # type: ignore[no-untyped-def]
    """The embedded store answered [] once its exact index was empty, PostgreSQL a 422."""
    for store in stores:
        store.delete([d["id"] for d in DOCS])
        with pytest.raises(InvalidInputError, match="query vector has 3 dimensions"):
            store.search_vector(np.ones(3), k=2)


def test_multi_field_search_of_an_index_past_a_million_documents(pg_dsn, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Every field's hits were asked for with k = the document count, which check_k refuses
    past 1,000,000: every multi_match on a large index failed with a k nobody sent."""
    from semrank.store.postgres import PostgresStore

    pg = create_index("big", store=pg_dsn, fields=("title", "text"), embedding_model=None)
    pg.upsert(_field_docs())
    monkeypatch.setattr(PostgresStore, "__len__", lambda self: 1_000_001)
    fields = [("title", 1.0), ("text", 1.0)]
    assert pg.search_bm25_fields("flea", k=2, fields=fields, mode="most_fields").ids[0] == "x"
    pg.close()


def _child_searches(dsn: str, held: Any, results: Any) -> None:
    from semrank.errors import StorageError
    from semrank.pipeline import search

    results[0] = int(search("forked", "fleas", store=dsn, k=1).ids == ["d1"])
    try:
        held.search_bm25("fleas", k=1)
    except StorageError as exc:
        results[1] = int("opened in another process" in str(exc))
    held.close()  # the parent's handle, closed as its `with` block would: not the child's pool
    results[2] = int(search("forked", "fleas", store=dsn, k=1).ids == ["d1"])


def test_a_forked_child_connects_on_its_own(pg_dsn: str) -> None:  # noqa: F811
    """A child forked after the parent searched shared the parent's pooled connections: raw
    driver errors, then a wait far past the pool's timeout (its threads are not the child's)."""
    import multiprocessing

    from semrank.pipeline import forget_open_indexes, open_cached, search

    with create_index("forked", store=pg_dsn, embedding_model=None) as index:
        index.upsert(DOCS)
    assert search("forked", "fleas", store=pg_dsn, k=1).ids == ["d1"]
    fork = multiprocessing.get_context("fork")
    results = fork.Array("i", [0, 0, 0])
    child = fork.Process(
        target=_child_searches, args=(pg_dsn, open_cached("forked", store=pg_dsn), results)
    )
    child.start()
    child.join(60)
    assert child.exitcode == 0 and list(results) == [1, 1, 1]
    assert search("forked", "fleas", store=pg_dsn, k=1).ids == ["d1"]  # the parent's still work
    forget_open_indexes()


def test_a_request_waits_for_its_turn_to_write_no_longer_than_its_deadline() -> None:
    import time

    from semrank._request import REQUEST_DEADLINE
    from semrank.errors import DeadlineExceededError
    from semrank.store.postgres._pool import write_turn

    with write_turn("postgresql://h/db", "busy"):
        token = REQUEST_DEADLINE.set(time.monotonic() + 0.2)
        try:
            started = time.monotonic()
            busy = pytest.raises(DeadlineExceededError, match="'busy' is busy with other writes")
            with busy, write_turn("postgresql://h/db", "busy"):
                pass
            assert time.monotonic() - started < 2.0
            with write_turn("postgresql://h/db", "another"):  # each index has its own turn
                pass
        finally:
            REQUEST_DEADLINE.reset(token)


def test_write_turns_are_not_kept_for_every_index_ever_written() -> None:
    """A lock was kept per (DSN, index) written for the life of the process: a server whose
    clients make and drop indexes of their own grew by one per index, for good."""
    import threading

    from semrank.store.postgres import _pool
    from semrank.store.postgres._pool import write_turn

    dsn = "postgresql://h/turns"
    holding, waiting, done = threading.Event(), threading.Event(), threading.Event()

    def second_writer() -> None:
        waiting.set()
        with write_turn(dsn, "shared"):
            done.set()

    with write_turn(dsn, "shared"):
        holding.set()
        other = threading.Thread(target=second_writer)
        other.start()
        waiting.wait(5)
        for number in range(50):  # indexes written once each, then never again
            with write_turn(dsn, f"index-{number}"):
                pass
        assert not done.is_set()  # the turn still serialises writers of one index
    other.join(5)
    assert done.is_set()
    assert [key for key in _pool._WRITE_TURNS if key[0] == dsn] == []


def test_both_stores_iterate_every_document_in_pages(stores) -> None:  # type: ignore[no-untyped-def]
    """``Store.iter_documents``: every document with its fields as ``get`` returns them, read
    a page at a time (no store reads a whole index at once), in a stable order: the embedded
    store's as first written, PostgreSQL's by id."""
    local, pg = stores
    for store in stores:
        store.upsert([{"id": "d0", "title": "Zero", "text": "written last, first by id"}])
    written = [doc["id"] for doc in DOCS] + ["d0"]
    for store, order in ((local, written), (pg, sorted(written))):
        documents, pages = _read_in_pages(store, batch_size=3)
        assert [d.id for d in documents] == order, store
        assert [d.fields for d in documents] == store.get(order)
        assert pages == [3, 3, 1], store  # each query a page; a short page is the last
        with pytest.raises(InvalidInputError, match="batch_size must be a positive integer"):
            store.iter_documents(batch_size=0)


def test_both_stores_iterate_the_documents_passing_a_filter(stores) -> None:  # type: ignore[no-untyped-def]
    """``iter_documents(filter=)`` (what `index export --filter` reads): the documents passing
    it, whole and in each store's order; PostgreSQL sends only those (the filter is in each
    page's query), a page of them a query."""
    from semrank.retrieve import matches, parse_filter

    local, pg = stores
    tagged = [{**doc, "tenant": "acme" if n % 2 else "other", "n": n} for n, doc in enumerate(DOCS)]
    for store in stores:
        store.upsert(tagged)
    spec = {"bool": {"filter": {"term": {"tenant": "acme"}}, "must_not": {"term": {"n": 3}}}}
    flt = parse_filter(spec)
    passing = [doc["id"] for doc in tagged if matches(flt, doc["id"], doc)]
    assert passing == ["d2", "d6"]
    for store, order in ((local, passing), (pg, sorted(passing))):
        documents = list(store.iter_documents(batch_size=1, filter=spec))
        assert [d.id for d in documents] == order, store
        assert [d.fields for d in documents] == store.get(order)
        assert list(store.iter_documents(filter={"term": {"tenant": "nobody"}})) == []
        with pytest.raises(InvalidInputError, match="'match' is not a supported filter"):
            store.iter_documents(filter={"match": {"text": "x"}})
    _, pages = _read_in_pages(pg, batch_size=1, filter=spec)
    assert pages == [1, 1, 0]  # only passing rows leave the server


def test_both_stores_count_what_a_search_for_every_hit_returns(stores) -> None:  # type: ignore[no-untyped-def]
    """``count_bm25`` (Elasticsearch's _count of a match query) is the number of hits a BM25
    search returns at any k, per field and filter, without ranking them; ``count_matching``
    the documents passing a filter. Both stores count alike."""
    tagged = [{**doc, "tenant": "acme" if n % 2 else "other"} for n, doc in enumerate(DOCS)]
    for store in stores:
        store.upsert(tagged)
    acme = {"term": {"tenant": "acme"}}
    searches: list[tuple[list[tuple[str, float]], str]] = [
        ([("*", 1.0)], "best_fields"),
        ([("title", 1.0)], "best_fields"),
        ([("title", 2.0), ("text", 1.0)], "most_fields"),
        ([("title", 0.0), ("text", 1.0)], "best_fields"),
    ]
    counts: list[list[int]] = []
    for store in stores:
        counted = []
        for query in [*QUERIES, "zebra", "the"]:
            for fields, mode in searches:
                for flt in (None, acme):
                    hits = store.search_bm25_fields(
                        query, k=100, fields=fields, mode=mode, filter=flt
                    )
                    count = store.count_bm25(query, fields=fields, mode=mode, filter=flt)
                    assert count == len(hits), (store, query, fields, flt)
                    counted.append(count)
        for flt in (acme, {"match_all": {}}, {"ids": {"values": ["d1", "zz"]}}):
            counted.append(store.count_matching(flt))
            assert counted[-1] == len(store.ids_matching(flt)), (store, flt)
        counts.append(counted)
    assert counts[0] == counts[1] and sum(counts[0]) > 0
    assert counts[0][-3:] == [3, 6, 1]


def _read_in_pages(store: Any, batch_size: int, **options: Any) -> tuple[list[Any], list[int]]:
    """``store.iter_documents(batch_size, **options)`` whole, and how many rows each query
    read."""
    owner, name = (
        (store, "_all") if store.backend == "postgresql" else (store.db, "documents_after")
    )
    query, pages = getattr(owner, name), list[int]()

    def counted(*args: Any) -> Any:
        rows = query(*args)
        pages.append(len(rows))
        return rows

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(owner, name, counted)
        documents = list(store.iter_documents(batch_size=batch_size, **options))
    return documents, pages


def test_an_embedded_index_exported_and_created_in_postgres_searches_alike(
    pg_dsn: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The move docs/postgresql.md describes: `index export` from the embedded store piped
    into the `index create` it prints, with --store; the same documents, the same hits."""
    from semrank.pipeline import forget_open_indexes

    home = str(tmp_path / "home")
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS), "utf-8")
    cli("index", "create", "moved", "--from", str(corpus), "--no-dense", "--home", home,
        "--k1", "1.2", "--b", "0.75")  # fmt: skip
    exported = subprocess.run(
        [sys.executable, "-m", "semrank.cli", "index", "export", "moved", "--home", home],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    command = shlex.split(exported.stderr.split(": ", 1)[1])
    assert command[:5] == ["semrank", "index", "create", "moved", "--from"]
    created = subprocess.run(
        [sys.executable, "-m", "semrank.cli", *command[1:], "--store", pg_dsn],
        input=exported.stdout, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    try:
        info = cli_in_process("index", "info", "moved", "--json", "--store", pg_dsn)
        settings = json.loads(info)["settings"]
        assert settings["bm25"]["k1"] == 1.2 and settings["bm25"]["b"] == 0.75
        back = cli_in_process("index", "export", "moved", "--store", pg_dsn).splitlines()
        assert sorted(map(json.loads, back), key=str) == sorted(DOCS, key=str)
        for query in QUERIES:
            hits = [
                json.loads(cli_in_process("search", "moved", query, "--json", *where))["hits"]
                for where in (("--home", home), ("--store", pg_dsn))
            ]
            assert [h["id"] for h in hits[0]] == [h["id"] for h in hits[1]], query
            assert [h["document"] for h in hits[0]] == [h["document"] for h in hits[1]], query
    finally:
        forget_open_indexes()


def cli_in_process(*args: str) -> str:
    """``semrank ARGS`` run in this process (CliRunner); its standard output. For checks after
    the command under test: a process each, as ``cli`` starts, costs a second or more."""
    from typer.testing import CliRunner

    from semrank.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"{result.output}{result.exception!r}"
    return result.stdout


def test_a_search_through_an_alias_follows_its_swap_in_postgres(pg_dsn: str) -> None:  # noqa: F811
    from semrank.store import list_aliases, update_aliases

    for name, doc_id in (("v1", "old"), ("v2", "new")):
        with create_index(name, store=pg_dsn, embedding_model=None) as index:
            index.upsert([{"id": doc_id, "text": f"fleas bite the {doc_id} cat"}])
    update_aliases([{"add": {"index": "v1", "alias": "live"}}], store=pg_dsn)
    before = search("live", "fleas", retriever="bm25", store=pg_dsn)
    swap = [{"remove": {"index": "v1", "alias": "live"}}, {"add": {"index": "v2", "alias": "live"}}]
    with pytest.raises(InvalidInputError, match="alias 'live' already names index 'v1'"):
        update_aliases(swap[1:], store=pg_dsn)
    update_aliases(swap, store=pg_dsn)
    after = search("live", "fleas", retriever="bm25", store=pg_dsn)
    assert ([h.id for h in before.hits], [h.id for h in after.hits]) == (["old"], ["new"])
    with open_index("live", store=pg_dsn) as index:  # writes through the alias reach v2
        assert index.name == "v2"
        index.upsert([{"id": "newer", "text": "dogs"}])
    assert len(open_index("v2", store=pg_dsn)) == 2
    with pytest.raises(InvalidInputError, match="'live' is an alias of index 'v2'"):
        create_index("live", store=pg_dsn, embedding_model=None)
    with pytest.raises(InvalidInputError, match=r"alias of index 'v2'.*drop index 'v2'"):
        drop_index("live", store=pg_dsn)
    with pytest.raises(InvalidInputError, match="is the name of an index"):
        update_aliases([{"add": {"index": "v2", "alias": "v1"}}], store=pg_dsn)
    drop_index("v2", store=pg_dsn)  # its aliases go with it
    assert list_aliases(store=pg_dsn) == {}


def test_a_database_from_before_aliases_keeps_its_roles(pg_server, pg_database) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The aliases table is read by every open: a role granted the tables before it existed
    would have lost every search to "permission denied for table aliases"."""
    from semrank.store import list_aliases, update_aliases
    from semrank.store.postgres import _schema

    owner_dsn = pg_server.dsn(pg_database)
    with create_index("g", store=owner_dsn, embedding_model=None) as owned:
        owned.upsert(DOCS)
    reader = f"reader_{pg_database}"
    before_aliases = (  # the database as the semrank before aliases left it, and its role
        "DROP TABLE semrank.aliases; DELETE FROM semrank.migrations WHERE version = 2; "
        f"CREATE ROLE {reader} LOGIN; GRANT USAGE ON SCHEMA semrank TO {reader}; "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA semrank TO {reader}"
    )
    done = pg_server.psql(pg_database, before_aliases)
    assert done.returncode == 0, done.stderr
    _schema._MIGRATED.clear()
    assert list_indexes(store=owner_dsn) == ["g"]  # the owner's first use upgrades it
    reader_dsn = owner_dsn.replace("://semrank@", f"://{reader}@")
    update_aliases([{"add": {"index": "g", "alias": "live"}}], store=reader_dsn)
    assert list_aliases(store=reader_dsn) == {"live": "g"}
    assert search("live", "fleas", k=2, store=reader_dsn).ids[0] in {"d1", "d4", "d5"}


def owner_role_dsn(pg_server: Any, pg_database: str) -> str:  # noqa: F811
    """The DSN of a new role, owner_<database>, that is not a superuser and may create the
    semrank schema in ``pg_database`` (the vector extension made for it by the superuser)."""
    owner = f"owner_{pg_database}"
    made = pg_server.psql(
        pg_database,
        f"CREATE ROLE {owner} LOGIN; GRANT CREATE ON DATABASE {pg_database} TO {owner}; "
        "CREATE EXTENSION IF NOT EXISTS vector",
    )
    assert made.returncode == 0, made.stderr
    return pg_server.dsn(pg_database).replace("://semrank@", f"://{owner}@")


def test_a_superuser_adding_aliases_leaves_the_owner_its_searches(pg_server, pg_database) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Migration 2 run by another role than the tables' owner (a DBA's superuser) made
    semrank.aliases that role's: the owner, which every open reads the table as, lost every
    search, write and alias change to "permission denied for table aliases"."""
    from semrank.store import update_aliases
    from semrank.store.postgres import _schema

    superuser_dsn = pg_server.dsn(pg_database)
    owner_dsn = owner_role_dsn(pg_server, pg_database)
    with create_index("g", store=owner_dsn, embedding_model=None) as owned:
        owned.upsert(DOCS)
    before_aliases = "DROP TABLE semrank.aliases; DELETE FROM semrank.migrations WHERE version = 2"
    done = pg_server.psql(pg_database, before_aliases)
    assert done.returncode == 0, done.stderr
    _schema._MIGRATED.clear()
    assert list_indexes(store=superuser_dsn) == ["g"]  # the superuser's first use upgrades it
    update_aliases([{"add": {"index": "g", "alias": "live"}}], store=owner_dsn)
    assert search("live", "fleas", k=2, store=owner_dsn).ids[0] in {"d1", "d4", "d5"}
    drop_index("g", store=owner_dsn)
    assert list_indexes(store=owner_dsn) == []


def test_a_reader_first_after_aliases_is_told_what_to_run(pg_server, pg_database) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A role with the documented table grants only, upgraded before the owner used the new
    semrank, was told it lacked grants it has ("permission denied for database ..."): the
    error names the migration and what the owner must run once."""
    from semrank.store.postgres import _schema

    owner_dsn = pg_server.dsn(pg_database)
    with create_index("g", store=owner_dsn, embedding_model=None) as owned:
        owned.upsert(DOCS)
    reader = f"reader_{pg_database}"
    before_aliases = (
        "DROP TABLE semrank.aliases; DELETE FROM semrank.migrations WHERE version = 2; "
        f"CREATE ROLE {reader} LOGIN; GRANT USAGE ON SCHEMA semrank TO {reader}; "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA semrank TO {reader}"
    )
    done = pg_server.psql(pg_database, before_aliases)
    assert done.returncode == 0, done.stderr
    _schema._MIGRATED.clear()
    reader_dsn = owner_dsn.replace("://semrank@", f"://{reader}@")
    with pytest.raises(BackendUnavailableError) as refused:
        search("g", "fleas", k=2, store=reader_dsn)
    said = str(refused.value)
    assert "may not apply semrank's migration 2 (store: index aliases; GIN index" in said
    assert "as the owner of the semrank tables" in said
    assert list_indexes(store=owner_dsn) == ["g"]  # the owner's first use upgrades it
    assert search("g", "fleas", k=2, store=reader_dsn).ids[0] in {"d1", "d4", "d5"}


def test_partial_updates_of_one_document_from_two_processes_all_land(pg_dsn: str) -> None:  # noqa: F811
    """Two server processes (or hosts) on one index each read the document, merged a field
    in and wrote it back: both read one version, and one's field was lost though both
    answered "updated". The read now follows the index's row lock, in the write's
    transaction."""
    from test_store_threads import check_updates_from_processes

    with create_index("docs", store=pg_dsn, embedder=HashingEmbedder()) as index:
        index.upsert([{"id": "d1", "text": "fleas bite"}])
    check_updates_from_processes(pg_dsn)


def test_opening_an_index_by_name_connects_once(pg_dsn: str, monkeypatch: Any) -> None:  # noqa: F811
    """The alias lookup of an open made a pool of its own and closed it before the index made
    another: two first connections where one does, and a role at its connection limit was
    refused while the first's server process was still exiting."""
    from semrank.store.postgres import _pool

    with create_index("once", store=pg_dsn, embedding_model=None) as made:
        made.upsert(DOCS[:1])
    checks: list[str] = []
    plain = _pool._check_connects
    monkeypatch.setattr(_pool, "_check_connects", lambda dsn: (checks.append(dsn), plain(dsn)))
    with open_index("once", store=pg_dsn) as opened:
        assert len(opened) == 1
    assert len(checks) == 1, checks


def test_a_search_by_name_connects_once(pg_dsn: str, monkeypatch: Any) -> None:  # noqa: F811
    """search(name, store=DSN) looked the name up as an alias on a pool of its own, closed
    it, then opened the index on another: one pool now serves both."""
    from semrank.pipeline import forget_open_indexes
    from semrank.store.postgres import _pool

    with create_index("once2", store=pg_dsn, embedding_model=None) as made:
        made.upsert(DOCS[:1])
    forget_open_indexes()
    checks: list[str] = []
    plain = _pool._check_connects
    monkeypatch.setattr(_pool, "_check_connects", lambda dsn: (checks.append(dsn), plain(dsn)))
    assert len(search("once2", "fleas", store=pg_dsn)) <= 1
    assert len(search("once2,once2", "fleas", store=pg_dsn)) <= 1
    forget_open_indexes()
    assert len(checks) == 1, checks
