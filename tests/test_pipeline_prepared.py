"""Prepared windows: an index's document windows embedded once, reused by re-ranking searches."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from semrank import Reranker
from semrank.errors import InvalidInputError, StorageError
from semrank.pipeline import build_retriever, forget_open_indexes, prepare_index, search
from semrank.pipeline._context import _RERANKERS
from semrank.rerank._blend import write_blend
from semrank.rerank._prepared import window_encoders
from semrank.runtime._scorers import BiEncoderScorer
from semrank.store import Store, create_index, open_index
from test_store_cli import run

pytest.importorskip("bm25s")

DOCS = [
    {"id": "fleas", "title": "Fleas", "text": "Fleas are wingless insects that feed on blood."},
    {"id": "hosts", "title": "Hosts", "text": "A flea lives on its host and lays eggs in the fur."},
    {"id": "larvae", "title": "Larvae", "text": "Flea larvae grow in carpets for weeks. " * 30},
    {"id": "paris", "title": "Paris", "text": "Paris is the capital of France."},
    {"id": "market", "title": "Markets", "text": "The stock market fell on Monday."},
    {"id": "ticks", "title": "Ticks", "text": "Ticks and fleas spread diseases between pets."},
]
QUERY = "how do fleas live"


@pytest.fixture(scope="module")
def blend_dir(tiny_model, tmp_path_factory) -> Path:
    """A blend like the default: a (tiny) cross-encoder and the bundled bi-encoder."""
    directory = tmp_path_factory.mktemp("prepared-blend")
    shutil.copytree(tiny_model("bert"), directory / "cross-encoder")
    write_blend(
        directory,
        [("cross-encoder", None, 0.75), ("all-minilm-l6-v2", "bi-encoder", 4.0)],
        bias=-1.5,
        doc_tokens=24,  # several windows for the long document
    )
    return directory


@pytest.fixture()
def index(tmp_path: Path):
    store = create_index("fleas", home=tmp_path, fields=["title", "text"], embedding_model=None)
    store.upsert(DOCS)
    yield store
    forget_open_indexes()
    store.close()


def bi_encoder(reranker: Reranker) -> BiEncoderScorer:
    [(_, encoder)] = window_encoders(reranker)
    return encoder


def rerank_search(index: Store, reranker: Reranker, query: str = QUERY):
    tree = build_retriever("bm25", rerank=True, model=reranker, window=10)
    return search(index, query, retriever=tree, k=10)


def test_a_prepared_index_reranks_exactly_as_before_and_embeds_only_the_query(
    index: Store, blend_dir: Path
):
    expected = rerank_search(index, Reranker(blend_dir))
    [prepared] = prepare_index(index, model=Reranker(blend_dir))
    assert prepared.model == "all-minilm-l6-v2" and prepared.documents == len(DOCS)
    assert prepared.windows > len(DOCS)  # the long document has several windows

    reranker = Reranker(blend_dir)  # a fresh model: nothing in its memory yet
    encoder = bi_encoder(reranker)
    got = rerank_search(index, reranker)
    assert got.ids == expected.ids
    np.testing.assert_allclose(got.scores, expected.scores, atol=1e-5)
    assert encoder.embedded_texts == 1  # the query; every window came from the table


def test_prepared_windows_survive_reopening_the_index(
    index: Store, blend_dir: Path, tmp_path: Path
):
    prepare_index(index, model=Reranker(blend_dir))
    forget_open_indexes()
    with open_index("fleas", home=tmp_path) as reopened:
        reranker = Reranker(blend_dir)
        rerank_search(reopened, reranker)
        assert bi_encoder(reranker).embedded_texts == 1


def test_a_copied_snapshot_naming_arrays_outside_its_folder_is_not_read(
    index: Store, blend_dir: Path, tmp_path: Path
):
    """snapshot.json's array names were joined into paths: a copied index's could name
    "../../x" and have a search read a file outside the index. Such a table is left unused
    (searches embed the windows, as for any damaged one)."""
    prepare_index(index, model=Reranker(blend_dir))
    [meta_path] = (tmp_path / "fleas" / "derived").glob("prepared-*/snapshot.json")
    outside = tmp_path / "outside.npy"
    first = json.loads(meta_path.read_text())["arrays"][0]
    shutil.copy(meta_path.parent / f"{first}.npy", outside)
    meta = json.loads(meta_path.read_text())
    escape = os.path.relpath(outside.with_suffix(""), meta_path.parent)  # ../../../outside
    meta["arrays"] = [escape if a == first else a for a in meta["arrays"]]
    meta_path.write_text(json.dumps(meta))
    forget_open_indexes()
    with open_index("fleas", home=tmp_path) as reopened:
        assert reopened.prepared() == []
        reranker = Reranker(blend_dir)
        rerank_search(reopened, reranker)
        assert bi_encoder(reranker).embedded_texts > 1  # the windows, not the outside file


def test_windows_that_cannot_be_saved_are_a_storage_error_naming_the_index(
    index: Store, blend_dir: Path, tmp_path: Path
):
    """A full disk or a file in the way was a bare OSError: HTTP 500, a bare errno on the CLI,
    and `index add` into a prepared index said it failed after storing the documents."""
    derived = tmp_path / "fleas" / "derived"
    shutil.rmtree(derived, ignore_errors=True)
    derived.write_text("in the way")
    with pytest.raises(StorageError, match=r"index 'fleas': its prepared windows could not be"):
        prepare_index(index, model=Reranker(blend_dir))


def test_documents_added_after_preparing_are_embedded_at_search_time(index: Store, blend_dir: Path):
    prepare_index(index, model=Reranker(blend_dir))
    index.upsert([{"id": "new", "title": "Fleas", "text": "How fleas live: a new guide."}])
    reranker = Reranker(blend_dir)
    got = rerank_search(index, reranker)
    assert "new" in got.ids
    assert bi_encoder(reranker).embedded_texts == 2  # the query and the new one-window document
    # The same candidates scored by a model that never saw the table.
    texts = [index.text_of(doc or {}, "*") for doc in index.get(got.ids)]
    np.testing.assert_allclose(got.scores, Reranker(blend_dir).score(QUERY, texts), atol=1e-5)


def test_preparing_again_embeds_only_new_windows(index: Store, blend_dir: Path):
    reranker = Reranker(blend_dir)
    encoder = bi_encoder(reranker)
    [first] = prepare_index(index, model=reranker)
    assert encoder.embedded_texts == first.windows  # each distinct window once
    index.upsert([{"id": "new", "title": "Fleas", "text": "How fleas live: a new guide."}])
    before = encoder.embedded_texts
    [second] = prepare_index(index, model=reranker)
    assert second.windows == first.windows + 1
    assert encoder.embedded_texts - before == 1


def test_preparing_given_ids_extends_the_table_with_their_windows_only(
    index: Store, blend_dir: Path
):
    reranker = Reranker(blend_dir)
    prepare_index(index, model=reranker)
    prepare_index(index, model=reranker, field="title")  # another field's table stays as it is
    index.upsert([{"id": "new", "title": "Fleas", "text": "How fleas live: a new guide."}])
    before = bi_encoder(reranker).embedded_texts
    [extended] = prepare_index(index, model=reranker, ids=["new", "new"])
    assert extended.extended and extended.documents == 1
    assert bi_encoder(reranker).embedded_texts - before == 1  # the new one-window document
    fresh = Reranker(blend_dir)
    rerank_search(index, fresh)
    assert bi_encoder(fresh).embedded_texts == 1  # old and new windows all in the table
    fields = sorted(table.meta["field"] for table in index.prepared())
    assert fields == ["*", "title"]


def test_a_table_made_by_another_model_is_not_used(index: Store, blend_dir: Path, tiny_model):
    prepare_index(index, model=Reranker(blend_dir))
    other = Reranker(tiny_model("bert", "encoder"), kind="bi-encoder")
    expected = Reranker(tiny_model("bert", "encoder"), kind="bi-encoder")
    scores = rerank_search(index, other).scores
    assert bi_encoder(other).embedded_texts > 1  # it embedded the windows itself
    np.testing.assert_allclose(scores, rerank_search(index, expected).scores, atol=1e-6)


def test_a_model_without_a_bi_encoder_cannot_be_prepared(index: Store, tiny_model):
    with pytest.raises(InvalidInputError, match="has no bi-encoder"):
        prepare_index(index, model=Reranker(tiny_model("bert")))


def test_index_prepare_cli_and_add_keeps_the_index_prepared(tmp_path: Path, blend_dir: Path):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    home = str(tmp_path / "home")
    run("index", "create", "fleas", "--from", str(corpus), "--no-dense", "--home", home)
    out = run("index", "prepare", "fleas", "--model", str(blend_dir), "--home", home)
    assert f"of {len(DOCS)} documents with all-minilm-l6-v2" in out
    info = json.loads(run("index", "info", "fleas", "--json", "--home", home))
    assert any(kind.startswith("prepared-") for kind in info["derived"])

    more = tmp_path / "more.jsonl"
    more.write_text(json.dumps({"id": "new", "title": "Fleas", "text": "A new guide."}) + "\n")
    out = run("index", "add", "fleas", str(more), "--home", home)
    assert "added the windows of 1 documents" in out  # with the model it was prepared with


def test_index_prepare_cli_names_a_model_that_cannot_be_prepared(tmp_path: Path, tiny_model):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    home = str(tmp_path / "home")
    run("index", "create", "fleas", "--from", str(corpus), "--no-dense", "--home", home)
    with pytest.raises(InvalidInputError, match="has no bi-encoder"):
        run("index", "prepare", "fleas", "--model", str(tiny_model("bert")), "--home", home)


def test_a_table_from_another_precision_of_the_same_model_is_not_used(
    index: Store, blend_dir: Path
):
    prepare_index(index, model=Reranker(blend_dir, backend="onnx"))
    int8 = Reranker(blend_dir, backend="onnx-int8")
    got = rerank_search(index, int8)
    assert bi_encoder(int8).embedded_texts > 1  # its int8 vectors are not the table's fp32 ones
    texts = [index.text_of(doc or {}, "*") for doc in index.get(got.ids)]
    reference = Reranker(blend_dir, backend="onnx-int8").score(QUERY, texts)
    np.testing.assert_allclose(got.scores, reference, atol=1e-5)


def test_preparing_for_another_field_keeps_the_first_table(index: Store, blend_dir: Path):
    prepare_index(index, model=Reranker(blend_dir))
    prepare_index(index, model=Reranker(blend_dir), field="title")
    assert sorted(table.meta["field"] for table in index.prepared()) == ["*", "title"]
    reranker = Reranker(blend_dir)
    rerank_search(index, reranker)
    assert bi_encoder(reranker).embedded_texts == 1


def test_a_recreated_index_hands_its_new_table_to_a_model_that_held_the_old_one(
    index: Store, blend_dir: Path, tmp_path: Path
):
    from semrank.store import drop_index

    reranker = Reranker(blend_dir)
    prepare_index(index, model=reranker)
    rerank_search(index, reranker)
    forget_open_indexes()
    index.close()
    drop_index("fleas", home=tmp_path)
    again = create_index("fleas", home=tmp_path, fields=["title", "text"], embedding_model=None)
    again.upsert([{**doc, "text": doc["text"] + " Again."} for doc in DOCS])
    prepare_index(again, model=Reranker(blend_dir))
    before = bi_encoder(reranker).embedded_texts
    rerank_search(again, reranker)
    # Every window changed; the query is remembered from the first search: nothing embedded.
    assert bi_encoder(reranker).embedded_texts - before == 0
    again.close()


def mapped_files(folder: Path) -> list[str]:
    """The files under ``folder`` this process maps (Linux; elsewhere none are listed)."""
    maps = Path("/proc/self/maps")
    if not maps.is_file():
        return []
    lines = maps.read_text().splitlines()
    return [line.split(maxsplit=5)[-1] for line in lines if str(folder.resolve()) in line]


def test_dropping_an_index_lets_every_model_go_of_its_prepared_windows(
    index: Store, blend_dir: Path, tmp_path: Path
):
    """The models kept the dropped index's tables, mapping its deleted files: their disk space
    and memory were held until the server restarted, and on Windows the drop failed (500)."""
    by_name, by_handle = Reranker(blend_dir), Reranker(blend_dir)
    prepare_index(index, model=by_name)
    tree = build_retriever("bm25", rerank=True, model=by_name, window=10)
    search("fleas", QUERY, home=tmp_path, retriever=tree, k=10)  # the server's way: by name
    rerank_search(index, by_handle)  # a library user's own handle
    assert bi_encoder(by_name)._known and bi_encoder(by_handle)._known
    index.close()
    run("index", "drop", "fleas", "--yes", "--home", str(tmp_path))
    assert not bi_encoder(by_name)._known and not bi_encoder(by_handle)._known
    assert not [path for path in mapped_files(tmp_path) if "prepared-" in path]


def test_an_index_another_process_dropped_has_its_windows_let_go_at_the_next_request(
    index: Store, blend_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from semrank.pipeline import _open, let_go_of_dropped_indexes
    from semrank.store import _registry, drop_index

    reranker = Reranker(blend_dir)
    prepare_index(index, model=reranker)
    index.close()
    tree = build_retriever("bm25", rerank=True, model=reranker, window=10)
    search("fleas", QUERY, home=tmp_path, retriever=tree, k=10)
    with monkeypatch.context() as elsewhere:  # another process: this one is not told
        elsewhere.setattr(_registry, "BEFORE_DROP", [])
        elsewhere.setattr(_registry, "AFTER_DROP", [])
        drop_index("fleas", home=tmp_path)
    assert bi_encoder(reranker)._known
    monkeypatch.setattr(_open, "_last_sweep", float("-inf"))  # the next sweep is due
    let_go_of_dropped_indexes()
    assert not bi_encoder(reranker)._known
    assert not [path for path in mapped_files(tmp_path) if "prepared-" in path]


def test_an_evicted_index_another_process_drops_leaves_no_windows_mapped(
    index: Store, blend_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Closing a held index to make room for another left its prepared windows with the
    models, and the sweep of dropped indexes checks only the held ones: once another process
    dropped it, its deleted files stayed mapped until four newer tables pushed them out."""
    from semrank.pipeline import _open
    from semrank.store import _registry, drop_index

    reranker = Reranker(blend_dir)
    prepare_index(index, model=reranker)
    index.close()
    create_index("other", home=tmp_path, fields=["title", "text"], embedding_model=None).close()
    tree = build_retriever("bm25", rerank=True, model=reranker, window=10)

    first = search("fleas", QUERY, home=tmp_path, retriever=tree, k=10)
    monkeypatch.setattr(_open, "_held_limit", lambda: 1)  # many indexes, or few open files
    search("other", QUERY, home=tmp_path, k=10)  # "fleas" is closed to make room
    assert not bi_encoder(reranker)._known
    embedded = bi_encoder(reranker).embedded_texts
    again = search("fleas", QUERY, home=tmp_path, retriever=tree, k=10)
    assert again.ids == first.ids
    np.testing.assert_allclose(again.scores, first.scores, atol=1e-5)
    # Handed over again, not embedded again (the query is remembered from the first search).
    assert bi_encoder(reranker)._known and bi_encoder(reranker).embedded_texts == embedded
    search("other", QUERY, home=tmp_path, k=10)  # evicted again
    with monkeypatch.context() as elsewhere:  # another process: this one is not told
        elsewhere.setattr(_registry, "BEFORE_DROP", [])
        elsewhere.setattr(_registry, "AFTER_DROP", [])
        drop_index("fleas", home=tmp_path)
    monkeypatch.setattr(_open, "_last_sweep", float("-inf"))  # the next sweep is due
    search("other", QUERY, home=tmp_path, k=10)
    assert not [path for path in mapped_files(tmp_path) if "prepared-" in path]


def test_a_search_handing_windows_over_while_the_index_is_dropped_leaves_none_mapped(
    index: Store, blend_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A search already running handed the dropped index's table back to the model after the
    drop had let go of it (before its folder was renamed away): the model kept mapping the
    deleted files until four newer tables pushed it out (the once-a-second sweep of dropped
    indexes never saw it: the drop had already let go of the index's handle)."""
    from semrank.pipeline import use_prepared, using_index
    from semrank.store import _registry, drop_index

    reranker = Reranker(blend_dir)
    prepare_index(index, model=reranker)
    index.close()
    with using_index("fleas", home=tmp_path) as running:

        def search_hands_over(*_: object, **__: object) -> None:
            assert not bi_encoder(reranker)._known  # the drop has let go of its tables
            assert use_prepared(running, reranker) == 1

        # The search's hand-over, run after the drop's other hooks and before its rename.
        monkeypatch.setattr(_registry, "BEFORE_DROP", [*_registry.BEFORE_DROP, search_hands_over])
        drop_index("fleas", home=tmp_path)
    assert not bi_encoder(reranker)._known
    assert not [path for path in mapped_files(tmp_path) if "prepared-" in path]


def test_windows_read_before_a_drop_and_handed_over_after_it_are_let_go_of(
    index: Store, blend_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A search that read the tables before a drop and handed them over once the drop was
    done (its thread paused in between) left the model mapping the deleted files."""
    from semrank.pipeline import use_prepared, using_index
    from semrank.store import drop_index

    reranker = Reranker(blend_dir)
    prepare_index(index, model=reranker)
    index.close()
    with using_index("fleas", home=tmp_path) as running:
        read_before_the_drop = running.prepared()
        drop_index("fleas", home=tmp_path)
        monkeypatch.setattr(running, "prepared", read_before_the_drop.copy)
        use_prepared(running, reranker)
        assert not bi_encoder(reranker)._known
    read_before_the_drop.clear()  # the search is done with them
    assert not [path for path in mapped_files(tmp_path) if "prepared-" in path]


def test_a_model_holds_a_bounded_number_of_tables(blend_dir: Path, tmp_path: Path):
    reranker = Reranker(blend_dir)
    encoder = bi_encoder(reranker)
    encoder.max_tables = 2
    for number in range(3):
        store = create_index(f"i{number}", home=tmp_path, fields=["text"], embedding_model=None)
        store.upsert([{"id": "a", "text": f"fleas live on cats {number}"}])
        prepare_index(store, model=reranker)
        rerank_search(store, reranker, "fleas")
        store.close()
    assert len(encoder._known) == 2
    forget_open_indexes()


def test_a_damaged_table_costs_time_not_the_search_and_preparing_again_replaces_it(
    index: Store, blend_dir: Path, tmp_path: Path
):
    prepare_index(index, model=Reranker(blend_dir))
    expected = rerank_search(index, Reranker(blend_dir)).ids
    [damaged] = tmp_path.glob("fleas/derived/prepared-*/vectors.npy")
    damaged.unlink()
    forget_open_indexes()
    with open_index("fleas", home=tmp_path) as reopened:  # reads the damaged table afresh
        reranker = Reranker(blend_dir)
        assert rerank_search(reopened, reranker).ids == expected
        assert bi_encoder(reranker).embedded_texts > 1  # no table: the windows were embedded
        prepare_index(reopened, model=Reranker(blend_dir))
        fresh = Reranker(blend_dir)
        assert rerank_search(reopened, fresh).ids == expected
        assert bi_encoder(fresh).embedded_texts == 1


def test_index_add_keeps_the_documents_when_the_prepared_model_no_longer_loads(
    tmp_path: Path, blend_dir: Path
):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    model = tmp_path / "blend-copy"
    shutil.copytree(blend_dir, model)
    home = str(tmp_path / "home")
    run("index", "create", "fleas", "--from", str(corpus), "--no-dense", "--home", home)
    run("index", "prepare", "fleas", "--model", str(model), "--home", home)
    shutil.rmtree(model)
    _RERANKERS.clear()  # as in a new process: the model is loaded from its (gone) folder again
    more = tmp_path / "more.jsonl"
    more.write_text(json.dumps({"id": "new", "title": "Fleas", "text": "A new guide."}) + "\n")
    out = run("index", "add", "fleas", str(more), "--home", home)
    assert "were not brought up to date" in out and "blend-copy" in out
    assert json.loads(run("index", "info", "fleas", "--json", "--home", home))["documents"] == 7


def test_create_prepare_on_postgresql_is_refused_before_anything_is_read(tmp_path: Path):
    with pytest.raises(InvalidInputError, match="--prepare: prepared windows are kept by"):
        run("index", "create", "x", "--prepare", "--store", "postgresql://nobody@nowhere/db")


def test_create_with_prepare_prepares_for_the_default_model(tmp_path: Path, reranker):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    home = str(tmp_path / "home")
    out = run(
        "index", "create", "fleas", "--from", str(corpus), "--no-dense", "--prepare", "--home", home
    )
    assert f"of {len(DOCS)} documents with all-minilm-l6-v2" in out
    with open_index("fleas", home=home) as opened:
        [table] = opened.prepared()
    assert table.meta["model"] is None and table.meta["field"] == "*"  # the default, all text


def test_extending_without_a_table_of_that_precision_creates_none(index: Store, blend_dir: Path):
    prepare_index(index, model=Reranker(blend_dir, backend="onnx"))
    index.upsert([{"id": "new", "title": "Fleas", "text": "How fleas live: a new guide."}])
    assert prepare_index(index, model=Reranker(blend_dir, backend="onnx-int8"), ids=["new"]) == []
    [table] = index.prepared()  # the fp32 table alone, unchanged
    assert table.meta["backend"] == "onnx" and table.meta["windows"] == len(table.arrays["keys"])


def test_preparing_a_field_again_reuses_that_fields_windows(index: Store, blend_dir: Path):
    reranker = Reranker(blend_dir)
    prepare_index(index, model=reranker)
    prepare_index(index, model=reranker, field="title")
    before = bi_encoder(reranker).embedded_texts
    prepare_index(index, model=reranker, field="title")
    assert bi_encoder(reranker).embedded_texts == before


def test_extending_counts_only_stored_documents_and_skips_when_none(index: Store, blend_dir: Path):
    reranker = Reranker(blend_dir)
    prepare_index(index, model=reranker)
    index.delete(["ticks"])
    [table] = index.prepared()
    assert prepare_index(index, model=reranker, ids=["ticks", "nope"]) == []
    assert [t.version for t in index.prepared()] == [table.version]  # nothing written
    [extended] = prepare_index(index, model=reranker, ids=["fleas", "ticks", "nope"])
    assert extended.documents == 1


def test_extending_drops_the_windows_of_changed_and_deleted_documents_once_outgrown(
    index: Store, blend_dir: Path
):
    """`index add` kept every earlier row: old texts' and deleted documents' windows piled up
    (a table several times its live rows, mapped by searches and copied by every add)."""
    reranker = Reranker(blend_dir)
    [first] = prepare_index(index, model=reranker)
    index.delete(["market"])
    kept = [doc for doc in DOCS if doc["id"] != "market"]
    sizes = []
    for revision in range(2):  # every document changed: its earlier windows are dead
        index.upsert([{**doc, "text": f"{doc['text']} revision {revision}"} for doc in kept])
        [extended] = prepare_index(index, model=reranker, ids=[doc["id"] for doc in kept])
        sizes.append(extended.windows)
    assert sizes[0] > first.windows  # under the bound: extended as before, old rows kept
    [table] = index.prepared()
    kept_keys = np.array(table.arrays["keys"])
    reranker = Reranker(blend_dir)
    compacted = rerank_search(index, reranker)
    assert bi_encoder(reranker).embedded_texts == 1  # every live window still in the table

    [fresh] = prepare_index(index, model=Reranker(blend_dir))
    assert sizes[1] == fresh.windows  # over it: compacted to the live windows and no others
    np.testing.assert_array_equal(kept_keys, index.prepared()[0].arrays["keys"])
    expected = rerank_search(index, Reranker(blend_dir))
    assert compacted.ids == expected.ids
    np.testing.assert_allclose(compacted.scores, expected.scores, atol=1e-6)


def test_index_add_names_the_model_and_field_of_a_table_it_cannot_extend(
    tmp_path: Path, blend_dir: Path
):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    home = tmp_path / "home"
    run("index", "create", "fleas", "--from", str(corpus), "--no-dense", "--home", str(home))
    with open_index("fleas", home=home) as store:  # int8: a precision `index add` does not run
        prepare_index(store, model=Reranker(blend_dir, backend="onnx-int8"), field="title")
    forget_open_indexes()
    more = tmp_path / "more.jsonl"
    more.write_text(json.dumps({"id": "new", "title": "Fleas", "text": "A new guide."}) + "\n")
    out = run("index", "add", "fleas", str(more), "--home", str(home))
    assert f"semrank index prepare fleas --model {blend_dir} --field 'title'" in out


def test_a_model_folder_given_as_a_path_object_is_a_model_path(index: Store, blend_dir: Path):
    """Reranker(Path(...)) loads a folder; the search stages and prepare_index refused the same
    Path ("must be a model name or path ... got PosixPath")."""
    from semrank.pipeline import Rerank, TextSimilarityReranker

    by_text = search(
        index, QUERY, retriever=build_retriever("bm25", rerank=True, model=str(blend_dir)), k=5
    )
    stage = Rerank(blend_dir, window=10)
    assert stage.model == str(blend_dir)
    by_path = search(index, QUERY, retriever=build_retriever("bm25") >> stage, k=5)
    assert by_path.ids == by_text.ids
    tree = TextSimilarityReranker(build_retriever("bm25"), inference_id=blend_dir)
    assert search(index, QUERY, retriever=tree, k=5).ids == by_text.ids
    [prepared] = prepare_index(index, model=blend_dir)
    assert prepared.documents == len(DOCS)


def test_a_query_cut_next_to_a_hit_below_min_score_is_said(tiny_model, tmp_path: Path):
    # Said of the hits kept, a query cut next to the long document that min_score then
    # dropped went unsaid.
    reranker = Reranker(tiny_model("bert"))
    docs = [{"id": "short", "text": "flea"}, {"id": "long", "text": "fleas bite dogs " * 60}]
    with create_index("cut", home=tmp_path, embedding_model=None) as index:
        index.upsert(docs)
        query = " ".join(["fleas"] * 20)  # 40 tiny-model tokens: all read next to "flea"
        tree = build_retriever("bm25", rerank=True, model=reranker, window=10, min_score=0.999)
        found = search(index, query, retriever=tree, k=10)
    assert found.ids == []
    assert any("read its first" in warning for warning in found.warnings)


def test_forgotten_windows_are_embedded_again() -> None:
    """The benchmarks timed a repeat of a request that read every window from memory (half
    the default's work), and reported it as the default's latency."""
    from semrank import CascadeConfig, Reranker
    from semrank.rerank._prepared import forget_windows, window_encoders

    reranker = Reranker(cascade=CascadeConfig(keep=2))  # its pruner remembers its latest pairs
    docs = ["Fleas feed on blood.", "Paris is in France.", "Ticks wait in the grass."]

    def embedded() -> int:
        return sum(encoder.embedded_texts for _, encoder in window_encoders(reranker))

    def scored() -> int:  # pairs the latest-call memories sent on to the model
        components = getattr(reranker.scorer, "components", ())
        return sum(int(getattr(c.scorer, "scored_pairs", 0)) for c in components)

    reranker.rerank("what do fleas eat", docs)
    first, pairs = embedded(), scored()
    reranker.rerank("what do fleas eat", docs)
    assert embedded() == first and scored() - pairs < pairs  # (mostly) remembered
    again = scored()
    forget_windows(reranker)
    reranker.rerank("what do fleas eat", docs)
    assert embedded() == 2 * first > 0 and scored() - again == pairs > 0


def test_deleting_by_filter_keeps_the_prepared_windows_in_use(index: Store, blend_dir: Path):
    """A re-ranked search right after delete_matching returns none of the deleted documents,
    scores the rest as before, and still takes every window from the table."""
    reranker = Reranker(blend_dir)
    prepare_index(index, model=reranker)
    before = rerank_search(index, Reranker(blend_dir))
    assert "ticks" in before.ids and "hosts" in before.ids
    assert index.delete_matching({"terms": {"title": ["Ticks", "Hosts"]}}) == 2
    reranker = Reranker(blend_dir)
    after = rerank_search(index, reranker)
    assert bi_encoder(reranker).embedded_texts == 1  # the query; the windows from the table
    assert after.ids and not {"ticks", "hosts"} & set(after.ids)
    kept = [(hit.id, hit.score) for hit in before if hit.id not in ("ticks", "hosts")]
    assert after.ids == [i for i, _ in kept]
    np.testing.assert_allclose(after.scores, [s for _, s in kept], atol=1e-5)
