"""``semrank.store.reindex`` (and `semrank index reindex`): one index's documents copied into
another, batch by batch, as the step before an alias is moved. The checks are functions of a
(source, dest-maker) pair, run here on the embedded store and in test_postgres_reindex.py on
PostgreSQL and across the two."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from semrank.errors import InvalidInputError
from semrank.store import Store, create_index, create_index_like, open_index, reindex
from semrank.store._reindex import vectors_note
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
MakeDest = Callable[..., Store]  # (source, name, embedder=HashingEmbedder()) -> a new index


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


class CountingEmbedder(HashingEmbedder):
    """The source's embedder, counting the texts it embeds: the destination's model, which a
    copy between indexes of one model must not run."""

    def __init__(self) -> None:
        self.texts = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts += len(texts)
        return super().embed(texts)


def check_vectors_are_copied_not_embedded(source: Store, make_dest: MakeDest) -> None:
    """Same model, same text fields: every stored vector is copied, the destination's model
    embeds nothing, and its knn hits are the source's. A subset of the fields is another
    text: embedded, and said."""
    model = CountingEmbedder()
    with make_dest(source, "vectors", model) as dest:
        counts = reindex(source, dest, batch_size=3)
        assert model.texts == 0, "the destination embedded copied documents"
        assert (counts.vectors_copied, counts.embedded) == (len(DOCS), 0)
        assert vectors_note(counts, source.name, dest.name) == (
            f"7 stored vectors copied from index {source.name!r}; no document was embedded again"
        )
        for query in QUERIES:
            assert knn(dest, query) == knn(source, query) and knn(dest, query)
        ids = [doc["id"] for doc in DOCS]
        theirs, ours = source.stored_vectors(ids), dest.stored_vectors(ids)
        for doc_id in ids:  # bit for bit, across stores too
            assert ours[doc_id][0] == theirs[doc_id][0]
            assert np.array_equal(ours[doc_id][1], theirs[doc_id][1])
        model.texts = 0
        titles = reindex(source, dest, reshape=lambda fields: {"title": fields["title"]})
        assert model.texts == len(DOCS) and titles.embedded == len(DOCS)
        note = vectors_note(titles, source.name, dest.name) or ""
        assert note.startswith("7 documents embedded again") and "_source subset" in note


CHECKS = [
    check_copy_of_matching_documents,
    check_create_reports_conflicts,
    check_max_docs_and_ids,
    check_interrupted_copy_loses_nothing,
    check_vectors_are_copied_not_embedded,
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
    def make_dest(source: Store, name: str, embedder: Any = None) -> Store:
        embedder = embedder or HashingEmbedder()
        return create_index_like(source, name, home=tmp_path, embedder=embedder)

    check(local_source, make_dest)


def test_another_model_or_probe_embeds_again_and_says_why(
    local_source: Store, tmp_path: Path
) -> None:
    """Vectors are copied only between indexes of one model: another maximum length, or a
    model whose probe vector differs, embeds every document again (and says why)."""
    model = CountingEmbedder()
    options = {"home": tmp_path, "embedding_model": "default", "embedder": model}
    with create_index("short", embedding_max_length=64, **options) as dest:
        counts = reindex(local_source, dest)
        assert model.texts == len(DOCS) and counts.vectors_copied == 0
        note = vectors_note(counts, "src", "short") or ""
        assert "7 documents embedded again by index 'short'" in note
        assert note.endswith("max length 64) is not that of index 'src' ('all-minilm-l6-v2')")
    model.texts = 0
    probe = [1.0] + [0.0] * 383
    local_source._store_probe(probe)
    with create_index("fresh", **options) as dest:  # no probe, no vectors: takes the source's
        assert reindex(local_source, dest).vectors_copied == len(DOCS) and model.texts == 0
        assert dest.embedding_probe() == probe
    with create_index("rebuilt", **options) as dest:
        dest._store_probe([0.0, 1.0] + [0.0] * 382)
        counts = reindex(local_source, dest)
        assert counts.embedded == len(DOCS) and model.texts == len(DOCS)
        assert "embeds a probe text otherwise" in (counts.embedded_why or "")


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


def test_cli_reindex_copies_the_vectors_and_says_so(local_source: Store, tmp_path: Path) -> None:
    """The index's model is never loaded: its vectors come from the source (a model run
    would give other vectors than the source's test embedder)."""
    from semrank.cli import app

    home = str(tmp_path)
    result = CliRunner().invoke(app, ["index", "reindex", "src", "dst", "--home", home])
    assert result.exit_code == 0, result.output
    assert "7 stored vectors copied from index 'src'; no document was embedded again" in (
        result.output
    )
    with open_index("dst", home=home) as dest:
        ids = [doc["id"] for doc in DOCS]
        copied, stored = dest.stored_vectors(ids), local_source.stored_vectors(ids)
        assert all(np.array_equal(copied[i][1], stored[i][1]) for i in ids)


def test_cli_reindex_into_an_alias_writes_into_its_index(tmp_path: Path) -> None:
    """As the server's _reindex does (and Elasticsearch): an alias as DEST is the index it
    names, not a name refused as an alias's; one naming SOURCE is SOURCE itself."""
    from semrank.cli import app
    from semrank.store import update_aliases

    home = str(tmp_path)
    for name in ("a", "b"):
        with create_index(name, home=home, embedding_model=None) as index:
            index.upsert(DOCS[:2] if name == "a" else DOCS[2:4])
    update_aliases([{"add": {"index": "b", "alias": "other"}}], home=home)
    update_aliases([{"add": {"index": "a", "alias": "live"}}], home=home)
    done = CliRunner().invoke(app, ["index", "reindex", "a", "other", "--home", home])
    assert done.exit_code == 0, done.output
    assert "into index 'b' (2 new, 0 replaced); it holds 4" in done.output
    itself = CliRunner().invoke(app, ["index", "reindex", "a", "live", "--home", home])
    assert "would write into it too" in str(itself.exception)
