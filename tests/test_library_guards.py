"""Library calls that used to answer wrongly or with a raw traceback (from a fuzzing review):
a cascade's pruned documents passing a pipeline's min_score, weights on fusion children being
ignored, unchecked flags and field values, ambiguous error positions, pickling."""

from __future__ import annotations

import copy
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from semrank import Reranker
from semrank.errors import DataFormatError, InvalidInputError
from semrank.pipeline import BM25, RRF, Knn, Linear, Rerank, search, search_many
from semrank.rerank import CascadeConfig
from semrank.store import create_index

QUERY = "how do fleas spread between pets"
TEXTS = [
    "Lyon and Paris are cities in France.",
    "Fleas move between animals when pets sleep close together.",
    "Shares fell sharply on the exchange this week.",
    "Cats catch fleas outdoors and bring them home to dogs.",
    "Bake the cake for forty minutes with lemon zest.",
    "Flea larvae live in carpets and pet bedding.",
]
DOCS = [{"id": str(i), "text": text} for i, text in enumerate(TEXTS)]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    store = create_index("guards", home=tmp_path_factory.mktemp("home"), fields=["text"])
    store.upsert(DOCS)
    return store


@pytest.fixture(scope="module")
def cascade(tiny_model):  # type: ignore[no-untyped-def]
    return Reranker(tiny_model("bert"), cascade=CascadeConfig(keep=2), feedback=False)


def test_a_pipeline_min_score_drops_documents_the_cascade_never_read(index, cascade) -> None:  # type: ignore[no-untyped-def]
    direct = cascade.rerank(QUERY, TEXTS, min_score=0.0)
    assert len(direct) == 2  # only the two the cascade kept have model scores
    tree = BM25() >> Rerank(model=cascade, min_score=0.0, window=len(TEXTS))
    # Every document shares a word with the query ("a", "the"...) or not: rank all of them.
    found = search(index, "fleas pets the a", retriever=tree, k=len(TEXTS))
    read = cascade.rerank("fleas pets the a", [d["text"] for d in DOCS], min_score=0.0)
    assert [hit.id for hit in found.hits] == [str(r.index) for r in read]
    assert len(found.hits) <= 2


def test_weights_on_fusion_children_are_used(index) -> None:  # type: ignore[no-untyped-def]
    weighted = RRF((0.0 * BM25(), Knn()))
    assert weighted.weights == (0.0, 1.0) and weighted.retrievers == (BM25(), Knn())
    dense_only = search(index, "fleas on pets", retriever=Knn(), k=3).ids
    assert search(index, "fleas on pets", retriever=weighted, k=3).ids == dense_only
    assert Linear((2.0 * BM25(), Knn())).weights == (2.0, 1.0)
    with pytest.raises(InvalidInputError, match="weights given twice"):
        RRF((0.5 * BM25(), Knn()), weights=(1.0, 1.0))


def test_a_query_with_a_lone_surrogate_is_named(index) -> None:  # type: ignore[no-untyped-def]
    for tree in (BM25(), Knn()):
        with pytest.raises(InvalidInputError, match="query holds a lone surrogate"):
            search(index, "fleas \ud800", retriever=tree)


def test_search_many_refuses_ids_equal_as_text_and_names_a_bad_query(index) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInputError, match="query id '1' is given twice"):
        search_many(index, {1: "fleas", "1": "pets"})
    with pytest.raises(InvalidInputError, match=r"^query '1': no query text"):
        search_many(index, ["fleas", None])  # type: ignore[list-item]  # a tree without text


def test_flags_field_values_and_positions_are_checked(reranker: Reranker) -> None:
    with pytest.raises(InvalidInputError, match="raw must be True or False, got 'no'"):
        reranker.score(QUERY, ["a"], raw="no")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"documents\[0\]\.text is a bytes"):
        reranker.score(QUERY, [{"text": b"abc"}])
    numpy_valued = reranker.score(QUERY, [{"text": np.array(["fleas", "pets"])}])
    as_list = reranker.score(QUERY, [{"text": ["fleas", "pets"]}])
    assert numpy_valued.tolist() == as_list.tolist()
    assert reranker.score(QUERY, [{"text": np.float32(1.5)}]).tolist() == (
        reranker.score(QUERY, ["1.5"]).tolist()
    )
    with pytest.raises(InvalidInputError, match=r"documents\[1\]\[1\] is a NoneType"):
        reranker.rerank_many(["a", "b"], [["x"], ["y", None]])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match=r"^documents\[1\] is a NoneType"):
        reranker.rerank("a", ["y", None])  # type: ignore[list-item]


def test_batching_must_be_a_config(tiny_model) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInputError, match="batching must be a BatchingConfig, got dict"):
        Reranker(tiny_model("bert"), batching={"max_batch": 2})  # type: ignore[arg-type]


def test_a_reranker_says_it_cannot_be_pickled(reranker: Reranker) -> None:
    for copier in (pickle.dumps, copy.deepcopy):
        with pytest.raises(InvalidInputError, match="cannot be pickled or deep-copied"):
            copier(reranker)


def test_an_index_says_it_cannot_be_pickled_and_how_to_open_it_elsewhere(index) -> None:  # type: ignore[no-untyped-def]
    """An index handed to a spawn pool or ProcessPoolExecutor failed with "cannot pickle
    '_thread.RLock' object" from inside its handles."""
    home = repr(str(index.path.parent))
    for copier in (pickle.dumps, copy.deepcopy):
        with pytest.raises(
            InvalidInputError, match=rf"cannot be pickled .*open_index\('guards', home={home}\)"
        ):
            copier(index)
    assert len(index) == len(DOCS)  # still open


def test_a_null_id_is_named_as_null(tmp_path: Path) -> None:
    store = create_index("ids", home=tmp_path, embedding_model=None)
    with pytest.raises(DataFormatError, match=r"record 1: its id \('id'\) is None"):
        store.upsert([{"id": None, "text": "x"}])


def test_fusion_helpers_refuse_what_they_cannot_fuse() -> None:
    """The exported helpers returned NaN scores for a NaN rank constant, or failed with a bare
    TypeError / AttributeError from inside numpy and bm25s."""
    from semrank.retrieve import BM25Index, Hits, linear_combination, rrf, top_k

    hits = Hits(np.array(["a", "b"], dtype=object), np.array([2.0, 1.0], dtype=np.float32))
    for call, named in [
        (lambda: rrf([hits], rank_constant=float("nan")), "rank_constant must be an integer"),
        (lambda: rrf([hits], rank_constant="60"), "got '60'"),
        (lambda: rrf([hits, None]), r"rankings\[1\] is None"),
        (lambda: linear_combination([hits], normalizers=None), "normalizers must be one name"),
        (lambda: top_k(np.ones(3), None), "k must be an integer"),
        (lambda: BM25Index.build(["fleas", None]), r"texts\[1\] is None"),
        (lambda: BM25Index.build(["fleas"]).search(None, 3), "a BM25 query is a string"),
        (lambda: Hits(np.ones(2), np.ones(3)), "2 ids but 3 scores"),
        # An IndexError from inside numpy, and every hit but the last for "the first -1".
        (lambda: Hits.from_scores(np.array(["a", "b", "c"]), [1.0, 2.0]), "3 ids but 2 scores"),
        (lambda: hits.top(-1), "k must be an integer of at least 0, got -1"),
    ]:
        with pytest.raises(InvalidInputError, match=named):
            call()
    assert rrf([hits, hits], rank_constant=np.int64(1)).ids.tolist() == ["a", "b"]
    assert hits.top(np.int64(5)).ids.tolist() == ["a", "b"] and len(hits.top(0)) == 0
    # What worked before the checks still does.
    assert rrf([hits], rank_constant=60.0).scores.tolist() == rrf([hits]).scores.tolist()
    names = np.array(["minmax", "none"])
    assert linear_combination([hits, hits], normalizers=names).ids.tolist() == ["a", "b"]
    assert len(linear_combination([hits, hits], normalizers=(n for n in names))) == 2


def test_linear_normalizers_as_one_name_or_one_per_retriever(index) -> None:  # type: ignore[no-untyped-def]
    """A string was split into letters ("got 6 normalizers for 2 ranked lists") and to_dict()
    failed with zip()'s ValueError."""
    one = Linear((BM25(), BM25(field="text")), normalizers="minmax")
    assert one.normalizers == ("minmax", "minmax")
    assert [r["normalizer"] for r in one.to_dict()["linear"]["retrievers"]] == ["minmax"] * 2
    assert search(index, "fleas", retriever=one).ids
    for bad in (["minmax"], ["minmax", "cosine"], 5):
        with pytest.raises(InvalidInputError, match="normalizers"):
            Linear((BM25(), BM25(field="text")), normalizers=bad)  # type: ignore[arg-type]


def test_flags_of_search_and_upsert_and_lone_string_ids_are_checked(index) -> None:  # type: ignore[no-untyped-def]
    from semrank.pipeline import prepare_index

    with pytest.raises(InvalidInputError, match="with_documents must be True or False"):
        search(index, "fleas", with_documents="no")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="refresh must be True or False"):
        index.upsert([{"id": "x", "text": "more fleas"}], refresh="no")
    with pytest.raises(InvalidInputError, match="wrap a single id in a list"):
        prepare_index(index, ids="12")  # type: ignore[arg-type]


def test_a_model_folder_may_be_inspected_by_its_path_as_text(tiny_model) -> None:  # type: ignore[no-untyped-def]
    """resolve() takes a str, so inspect_directory, its public neighbour, took one too and
    failed dividing a str by a str."""
    from semrank.models import inspect_directory

    folder = tiny_model("bert")
    assert inspect_directory(str(folder), name="x").path == folder


def test_a_blend_cannot_be_forced_to_another_kind() -> None:
    """Reranker(kind="bi-encoder") loaded the bundled blend as a cross-encoder, silently. The
    refusal is the caller's to fix (exit 2, 422), not a model that failed to load (exit 3)."""
    from semrank.errors import exit_code_for

    with pytest.raises(InvalidInputError, match="kind='bi-encoder' cannot apply") as refused:
        Reranker(kind="bi-encoder")
    assert exit_code_for(refused.value) == 2
    assert "--embedding-model all-minilm-l6-v2" in str(refused.value)
    assert Reranker(kind="cross-encoder").scorer.kind == "cross-encoder"


def test_a_statement_the_database_cancelled_is_the_environment_s_exit_status() -> None:
    """A statement_timeout during `index add` exited 1, the status of a bug."""
    from semrank.errors import DeadlineExceededError, InternalError, exit_code_for

    assert exit_code_for(DeadlineExceededError("cancelled at its statement_timeout")) == 3
    assert exit_code_for(InternalError("a bug")) == 1


TYPED_USE = """
from typing import assert_type

from semrank import CascadeConfig, ChunkingConfig, Reranker
from semrank.pipeline import Hit, SearchResults, search
from semrank.retrieve import Hits


def read(results: SearchResults, hits: Hits, reranker: Reranker) -> None:
    for hit in results:
        assert_type(hit, Hit)
    assert_type(results[0], Hit)
    assert_type(results[:2], SearchResults)
    for doc_id, score in hits:
        assert_type(doc_id, str | int)
        assert_type(score, float)
    assert_type(reranker.chunking, ChunkingConfig)
    assert_type(reranker.cascade, CascadeConfig | None)
    assert_type(search("name", "query"), SearchResults)
"""


@pytest.mark.slow
def test_a_type_checker_sees_the_items_of_search_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`for hit in search(...)` failed (not iterable), and so did mypy and pyright on it."""
    api = pytest.importorskip("mypy.api")
    import semrank

    snippet = tmp_path / "snippet.py"
    snippet.write_text(TYPED_USE, encoding="utf-8")
    # The semrank under test, not whichever one site-packages names.
    monkeypatch.setenv("MYPYPATH", str(Path(semrank.__file__).parents[1]))
    # mypy raises the recursion limit for the whole process (2**14); tests after this one that
    # check how JSON nested past the usual limit is refused then read it through.
    limit = sys.getrecursionlimit()
    try:
        out, err, status = api.run([
            str(snippet), "--follow-imports=silent", "--ignore-missing-imports",
            "--python-version=3.11", "--cache-dir", str(tmp_path / "cache"),
        ])  # fmt: skip
    finally:
        sys.setrecursionlimit(limit)
    assert status == 0, out + err
