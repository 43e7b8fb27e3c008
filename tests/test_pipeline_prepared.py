"""Prepared windows: an index's document windows embedded once, reused by re-ranking searches."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from semrank import Reranker
from semrank.errors import InvalidInputError
from semrank.pipeline import build_retriever, forget_open_indexes, prepare_index, search
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
    assert f"of {len(DOCS) + 1} documents" in out  # prepared again, with the same model


def test_index_prepare_cli_names_a_model_that_cannot_be_prepared(tmp_path: Path, tiny_model):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    home = str(tmp_path / "home")
    run("index", "create", "fleas", "--from", str(corpus), "--no-dense", "--home", home)
    with pytest.raises(InvalidInputError, match="has no bi-encoder"):
        run("index", "prepare", "fleas", "--model", str(tiny_model("bert")), "--home", home)
