"""``semrank.store.reindex`` (and `semrank index reindex`): one index's documents copied into
another, batch by batch, as the step before an alias is moved. The checks are functions of a
(source, dest-maker) pair, run here on the embedded store and in test_postgres_reindex.py on
PostgreSQL and across the two."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from semrank.errors import InvalidInputError
from semrank.store import Store, create_index, create_index_like, open_index, reindex
from tiny_models import HashingEmbedder

DOCS = [
    {"id": f"d{i}", "title": title, "text": text, "tenant": tenant, "year": 2000 + i}
    for i, (title, text, tenant) in enumerate(
        [
            ("Fleas", "Fleas feed on the blood of mammals and birds.", "acme"),
            ("Paris", "Paris is the capital of France; museums abound.", "globex"),
            ("Oceans", "The ocean is deep and cold and fish swim in it.", "acme"),
            ("Flea larvae", "Adult fleas drink blood, larvae eat debris.", "acme"),
            ("Cats", "Cats groom; fleas on cats bite, cats scratch fleas.", "globex"),
            ("Blood", "Blood carries oxygen; mammals have red blood.", "acme"),
            ("Tides", "The moon pulls the oceans and makes the tides.", "initech"),
        ]
    )
]
ACME = {"term": {"tenant": "acme"}}
QUERIES = ["fleas blood", "ocean fish", "capital of France"]
MakeDest = Callable[[Store, str], Store]


def everything(index: Store) -> dict[str, dict[str, Any]]:
    return {doc.id: doc.fields for doc in index.iter_documents()}


def expected(source: Store, flt: Any) -> dict[str, dict[str, Any]]:
    return {doc.id: doc.fields for doc in source.iter_documents(filter=flt)}


def check_copy_of_matching_documents(source: Store, make_dest: MakeDest) -> None:
    """The dest holds exactly the source's matching documents, searched as they are there:
    BM25 and vector hits of the copy are the source's hits restricted to the filter."""
    with make_dest(source, "copy") as dest:
        counts = reindex(source, dest, filter=ACME, batch_size=2)
        wanted = expected(source, ACME)
        assert everything(dest) == wanted and len(wanted) == 4
        assert (counts.read, counts.created, counts.updated, counts.batches) == (4, 4, 0, 2)
        assert dest.settings.text_fields == source.settings.text_fields
        for query in QUERIES:  # a BM25 of fewer documents weighs words otherwise: same hits
            assert {i for i, _ in bm25(dest, query)} == {i for i, _ in bm25(source, query, ACME)}
            assert knn(dest, query) == knn(source, query, ACME)
        again = reindex(source, dest)  # every document now: the four replaced, three new
        assert (again.created, again.updated) == (3, 4) and everything(dest) == everything(source)
        for query in QUERIES:
            assert bm25(dest, query) == bm25(source, query) and bm25(dest, query)
            assert knn(dest, query) == knn(source, query)


def bm25(index: Store, query: str, flt: Any = None) -> list[tuple[str, float]]:
    hits = index.search_bm25(query, k=10, filter=flt)
    return ranked(zip(hits.ids, hits.scores, strict=True))


def knn(index: Store, query: str, flt: Any = None) -> list[tuple[str, float]]:
    hits = index.search_vector(index.embed_queries([query])[0], k=10, filter=flt)
    pairs = zip(hits.ids, hits.scores, strict=True)  # ties at 0 (no word shared) in any order
    return ranked((i, s) for i, s in pairs if s > 1e-6)


def ranked(pairs: Any) -> list[tuple[str, float]]:
    """Hits by score, ties (which stores order as they find them) by id."""
    rounded = [(str(i), round(float(s), 4)) for i, s in pairs]
    return sorted(rounded, key=lambda hit: (-hit[1], hit[0]))


def check_create_reports_conflicts(source: Store, make_dest: MakeDest) -> None:
    with make_dest(source, "created") as dest:
        dest.upsert([{"id": "d1", "title": "Mine", "text": "kept as it is"}])
        stopped = reindex(source, dest, op_type="create", batch_size=3)
        # The batch meeting the conflict is written (its other ids), then the copy stops.
        assert stopped.conflicts == ("d1",) and stopped.stopped and stopped.created == 2
        assert len(dest) == 3
        went_on = reindex(source, dest, op_type="create", conflicts="proceed", batch_size=3)
        assert set(went_on.conflicts) == {"d0", "d1", "d2"} and went_on.created == 4
        assert dest.get(["d1"]) == [{"title": "Mine", "text": "kept as it is"}]
        assert len(dest) == len(DOCS)


def check_max_docs_and_ids(source: Store, make_dest: MakeDest) -> None:
    with make_dest(source, "some") as dest:
        assert reindex(source, dest, max_docs=3, batch_size=2).created == 3
        assert len(dest) == 3
    with make_dest(source, "by-id") as dest:
        counts = reindex(source, dest, ids=["d6", "gone", "d2", "d6"])
        assert counts.created == 2 and set(everything(dest)) == {"d2", "d6"}


def check_interrupted_copy_loses_nothing(source: Store, make_dest: MakeDest) -> None:
    """A copy stopped after its first batch leaves the source whole and the batch copied;
    running it again finishes it."""
    before = everything(source)

    def stop(count: int) -> None:
        raise KeyboardInterrupt

    with make_dest(source, "half") as dest:
        with pytest.raises(KeyboardInterrupt):
            reindex(source, dest, batch_size=3, progress=stop)
        assert everything(source) == before and len(dest) == 3
        reindex(source, dest, batch_size=3)
        assert everything(dest) == before


CHECKS = [
    check_copy_of_matching_documents,
    check_create_reports_conflicts,
    check_max_docs_and_ids,
    check_interrupted_copy_loses_nothing,
]


def fill(index: Store) -> Store:
    index.upsert(DOCS)
    return index


@pytest.fixture
def local_source(tmp_path: Path) -> Any:
    source = create_index(
        "src", home=tmp_path, embedding_model="default", embedder=HashingEmbedder()
    )
    with fill(source):
        yield source


@pytest.mark.parametrize("check", CHECKS)
def test_reindex_on_the_embedded_store(
    check: Callable[[Store, MakeDest], None], local_source: Store, tmp_path: Path
) -> None:
    def make_dest(source: Store, name: str) -> Store:
        return create_index_like(source, name, home=tmp_path, embedder=HashingEmbedder())

    check(local_source, make_dest)


def test_an_index_is_not_copied_into_itself(local_source: Store, tmp_path: Path) -> None:
    same = open_index("src", home=tmp_path, embedder=HashingEmbedder())
    with same, pytest.raises(InvalidInputError, match="would write into it too"):
        reindex(local_source, same)
    with pytest.raises(InvalidInputError, match="op_type 'upsert'"):
        reindex(local_source, local_source, op_type="upsert")


def test_cli_reindex_creates_the_copy_with_the_source_settings(tmp_path: Path) -> None:
    from semrank.cli import app

    home = str(tmp_path)
    with fill(create_index("src", home=home, fields=("title",), embedding_model=None)):
        pass
    filtered = ["--filter", '{"term": {"tenant": "acme"}}']
    result = CliRunner().invoke(app, ["index", "reindex", "src", "dst", *filtered, "--home", home])
    assert result.exit_code == 0, result.output
    assert "copied 4 documents" in result.output and "new index 'dst'" in result.output
    with open_index("dst", home=home) as dest, open_index("src", home=home) as source:
        assert dest.settings.text_fields == ("title",) and dest.settings.embedding_model is None
        assert everything(dest) == expected(source, ACME)
    again = ["index", "reindex", "src", "dst", "--create-only", "--home", home]
    second = CliRunner().invoke(app, again)
    assert second.exit_code == 0, second.output
    assert "3 new" in second.output and "left 4 documents" in second.output
