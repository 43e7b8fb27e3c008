"""BM25 over one field on PostgreSQL analyses text as the embedded store does (semrank's
analyser: two or more word characters, English stop words and stemming, unspaced scripts as
pairs), where PostgreSQL's english configuration kept one-letter words and split no Thai; and a
database from before the per-field terms is brought in line at its first single-field search."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semrank.errors import IndexVersionError
from semrank.pipeline import search
from semrank.store import create_index, drop_index, open_index
from test_postgres_server import pg_database, pg_dsn, pg_server  # noqa: F401 (fixtures)

DOCS: list[dict[str, Any]] = [
    {"id": "x1", "text": "The x axis and the y axis of a plot", "tags": ["x", "plot"]},
    {"id": "x2", "text": "x marks the spot: x, x and q", "title": "Q and A"},
    {"id": "r2", "text": "R2 D2 in 2024 and 1999", "year": 2024},
    {"id": "fr", "text": unicodedata.normalize("NFD", "un résumé du café à Paris")},
    {"id": "th", "text": "ร้านนี้ขายข้าวผัดกุ้งอร่อย", "title": "Thai food"},
    {"id": "zh", "text": "北京是中国的首都", "tags": ["首都", "北京"]},
    {"id": "en", "text": "Fleas feed on the blood of mammals; it is what it is."},
    {"id": "no", "title": "Only a title, no text"},
]
QUERIES = [
    "x",
    "q",
    "the",
    "it is",
    "x axis",
    "2024",
    "d2",
    "café",
    unicodedata.normalize("NFD", "résumé"),
    "ข้าวผัด",
    "首都",
    "fleas x q",
    "a",
]
FIELDS = ["text", "title", "tags", "year"]


@pytest.fixture
def both(pg_dsn: str, tmp_path: Path):  # type: ignore[no-untyped-def]  # noqa: F811
    local = create_index("f", home=tmp_path, fields=["text", "title"], embedding_model=None)
    pg = create_index("f", store=pg_dsn, fields=["text", "title"], embedding_model=None)
    local.upsert(DOCS)
    pg.upsert(DOCS)
    yield local, pg
    local.close()
    pg.close()
    drop_index("f", store=pg_dsn)


def _scored(hits: Any) -> dict[str, float]:
    return dict(zip(list(hits.ids), map(float, hits.scores), strict=True))


def _assert_same(ours: Any, theirs: Any, why: Any) -> None:
    """The same documents with the same scores (equal scores may come in another order)."""
    mine, reference = _scored(ours), _scored(theirs)
    assert sorted(mine) == sorted(reference), why
    for doc_id, score in reference.items():
        np.testing.assert_allclose(mine[doc_id], score, rtol=1e-5, err_msg=str(why))


def _assert_field_searches_agree(local: Any, pg: Any) -> None:
    for field in FIELDS:
        for query in QUERIES:
            why = (field, query)
            _assert_same(
                pg.search_bm25(query, k=10, field=field),
                local.search_bm25(query, k=10, field=field),
                why,
            )
            fields = [(field, 1.0), ("tags", 0.5)]
            ours = pg.search_bm25_fields(query, k=10, fields=fields, mode="most_fields")
            theirs = local.search_bm25_fields(query, k=10, fields=fields, mode="most_fields")
            _assert_same(ours, theirs, why)
            counted = {"fields": [(field, 1.0)]}
            assert pg.count_bm25(query, **counted) == local.count_bm25(query, **counted), why
            assert sorted(pg.ids_bm25(query, **counted)) == sorted(
                local.ids_bm25(query, **counted)
            ), why


def test_one_field_ranks_as_the_embedded_store(both) -> None:  # type: ignore[no-untyped-def]
    """One-letter words (x, q), stop words, digits, decomposed accents, Thai and Chinese, lists
    and numbers: every single-field search finds and scores what the embedded store does."""
    local, pg = both
    _assert_field_searches_agree(local, pg)
    assert len(pg.search_bm25("x", k=5, field="text")) == 0  # one letter: no term, no hit
    assert pg.search_bm25("ข้าวผัด", k=5, field="text").ids.tolist() == ["th"]


def test_a_match_query_on_one_field_scores_as_the_embedded_store(both, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The docs-run's case: {"match": {"text": ...}} found documents by a one-letter word on
    PostgreSQL and none on the embedded store, and scored x2 0.2205 there, 0.2186 here."""
    local, pg = both
    for query in ("x", "x spot", "plot axis"):
        retriever = {"standard": {"query": {"match": {"text": query}}}}
        ours = search(pg, retriever=retriever, k=10)
        theirs = search(local, retriever=retriever, k=10)
        _assert_same(ours, theirs, query)


def test_a_document_rewritten_changes_its_field_terms(both) -> None:  # type: ignore[no-untyped-def]
    local, pg = both
    changed = [{"id": "x1", "text": "spot the difference", "tags": "plot twist"}]
    local.upsert(changed)
    pg.upsert(changed)
    _assert_field_searches_agree(local, pg)
    assert sorted(pg.search_bm25("spot", k=5, field="text").ids.tolist()) == ["x1", "x2"]


def test_a_database_from_before_field_terms_is_analysed_at_its_first_field_search(
    pg_server,  # type: ignore[no-untyped-def]  # noqa: F811
    pg_database,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Rows written before migration 4 hold no per-field terms: the first single-field search
    gives them theirs (no document lost or changed), and then ranks as the embedded store."""
    import psycopg

    from semrank.store.postgres import _schema

    dsn = pg_server.dsn(pg_database)
    with create_index("old", store=dsn, fields=["text", "title"], embedding_model=None) as pg:
        pg.upsert(DOCS)
    before = (  # the database as the semrank before per-field terms left it
        "ALTER TABLE semrank.documents DROP COLUMN field_terms, DROP COLUMN field_lengths; "
        "DELETE FROM semrank.migrations WHERE version = 4"
    )
    done = pg_server.psql(pg_database, before)
    assert done.returncode == 0, done.stderr
    _schema._MIGRATED.clear()
    local = create_index("old", home=tmp_path, fields=["text", "title"], embedding_model=None)
    local.upsert(DOCS)
    with open_index("old", store=dsn) as pg:  # its first use migrates it
        assert pg.get(["x1", "fr"]) == local.get(["x1", "fr"])
        _assert_field_searches_agree(local, pg)
        assert pg.search_bm25("blood", k=3).ids.tolist() == ["en"]
    unanalysed = "SELECT count(*) FROM semrank.documents WHERE field_terms IS NULL"
    with psycopg.connect(dsn) as conn:
        assert conn.execute(unanalysed).fetchone()[0] == 0
        older = tuple(m for m in _schema.MIGRATIONS if m[0] < 4)
        with pytest.raises(IndexVersionError, match="this semrank knows 3 at most"):
            _schema.migrate(conn, older)  # its writes would store no per-field terms
    local.close()
