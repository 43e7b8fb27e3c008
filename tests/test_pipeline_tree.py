"""Retriever trees: Elasticsearch JSON parsing, Python composition, running, hit metadata."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semrank.errors import (
    DataFormatError,
    IndexNotFoundError,
    InvalidInputError,
    ModelNotFoundError,
)
from semrank.pipeline import (
    BM25,
    RRF,
    ConstantScore,
    Cutoff,
    Dense,
    Knn,
    Linear,
    Ranking,
    Rerank,
    Retriever,
    TextSimilarityReranker,
    as_retriever,
    check_window,
    parse_retriever,
    parse_shorthand,
    search,
    search_many,
)
from semrank.retrieve import Hits, linear_combination, matches, parse_filter, rrf
from semrank.store import LocalStore, Store, create_index, update_aliases

DOCS = [
    {
        "id": "eclipse",
        "title": "Solar eclipse",
        "text": "The moon passes between the sun and the earth and hides the sun.",
    },
    {
        "id": "tides",
        "title": "Tides",
        "text": "The moon's gravity pulls the oceans and makes the tides.",
    },
    {
        "id": "paris",
        "title": "Paris",
        "text": "Paris is the capital of France, on the river Seine.",
    },
    {
        "id": "python",
        "title": "Python",
        "text": "Python is a programming language used for data science.",
    },
    {
        "id": "cats",
        "title": "Cats",
        "text": "Cats are small furry animals kept as pets; they purr.",
    },
    {"id": "dogs", "title": "Dogs", "text": "Dogs are loyal animals; puppies love to play fetch."},
]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    store = create_index("tree", home=tmp_path_factory.mktemp("home"))
    store.upsert(DOCS)
    return store


class CountingScorer:
    """A stand-in model for the re-ranking node: scores = number of 'moon' in the text.

    The node under test is the tree's re-ranking logic, not a model."""

    name = "moon-counter"

    def score(self, query: str, documents: list[str]) -> np.ndarray:
        return np.array([d.lower().count("moon") / 10 for d in documents], dtype=np.float32)


def test_standard_match_equals_the_store_bm25(index: LocalStore) -> None:
    spec = {"standard": {"query": {"match": {"text": "moon sun"}}}}
    results = search(index, retriever=spec, k=3)
    expected = index.search_bm25("moon sun", k=3, field="text")
    assert results.ids == expected.ids.tolist()
    np.testing.assert_allclose(results.scores, expected.scores)
    assert [h.first_stage_rank for h in results.hits] == [1, 2, 3][: len(results)]
    assert all(h.rerank_score is None for h in results.hits)


def test_multi_match_best_fields_with_boosts(index: LocalStore) -> None:
    spec = {
        "standard": {
            "query": {
                "multi_match": {"query": "python programming cats", "fields": ["title", "text^3"]}
            }
        }
    }
    results = search(index, retriever=spec, k=2)
    title = index.search_bm25("python programming cats", k=6, field="title").as_dict()
    text = index.search_bm25("python programming cats", k=6, field="text").as_dict()
    best = {d: max(title.get(d, 0.0), 3 * text.get(d, 0.0)) for d in {*title, *text}}
    top = sorted(best, key=lambda d: -best[d])[:2]
    assert results.ids == top
    assert results.scores.tolist() == pytest.approx([best[d] for d in top], rel=1e-5)


def test_rrf_tree_equals_the_fusion_of_its_children(index: LocalStore) -> None:
    spec = {
        "rrf": {
            "retrievers": [
                {"standard": {"query": {"match": {"*": "moon"}}}},
                {"knn": {"field": "embedding", "query_text": "moon", "k": 4, "num_candidates": 10}},
            ],
            "rank_window_size": 5,
            "rank_constant": 20,
        }
    }
    tree = parse_retriever(spec)
    assert isinstance(tree, RRF) and isinstance(tree.retrievers[1], Knn)
    results = search(index, retriever=tree, k=5)
    expected = rrf(
        [
            index.search_bm25("moon", k=5),
            index.search_vector(index.embed_queries(["moon"])[0], k=4),
        ],
        rank_constant=20,
    )
    assert results.ids == expected.ids.tolist()[:5]
    np.testing.assert_allclose(results.scores, expected.scores[:5], rtol=1e-6)


def test_linear_tree_with_weights_and_normalizers(index: LocalStore) -> None:
    spec = {
        "linear": {
            "retrievers": [
                {
                    "retriever": {"standard": {"query": {"match": {"*": "animals pets"}}}},
                    "weight": 2,
                    "normalizer": "minmax",
                },
                {
                    "retriever": {
                        "knn": {"field": "embedding", "query_text": "animals pets", "k": 6}
                    },
                    "weight": 1,
                    "normalizer": "zscore",
                },
            ],
            "rank_window_size": 6,
        }
    }
    results = search(index, retriever=spec, k=3)
    vector = index.embed_queries(["animals pets"])[0]
    expected = linear_combination(
        [index.search_bm25("animals pets", k=6), index.search_vector(vector, k=6)],
        weights=[2, 1],
        normalizers=["minmax", "zscore"],
    )
    assert results.ids == expected.ids.tolist()[:3]


def test_reranker_keeps_first_stage_rank_and_score(index: LocalStore) -> None:
    tree = BM25() >> Rerank(CountingScorer(), window=4) % 2
    assert isinstance(tree, Cutoff) and isinstance(tree.retriever, TextSimilarityReranker)
    first = index.search_bm25("the moon and the sun", k=4)
    results = search(index, "the moon and the sun", retriever=tree, k=10)
    assert len(results) == 2
    top = results.hits[0]
    assert top.id == "eclipse" and top.score == pytest.approx(0.1)
    assert top.rerank_score == pytest.approx(0.1)
    position = first.ids.tolist().index(top.id)
    assert top.first_stage_rank == position + 1
    assert top.first_stage_score == pytest.approx(float(first.scores[position]))


def test_search_results_iterate_and_index_as_their_hits(index: LocalStore) -> None:
    results = search(index, "the moon and the sun", retriever="bm25", k=3)
    assert [hit.id for hit in results] == results.ids  # TypeError: not iterable before
    assert results[0] == results.hits[0] and results[-1] == results.hits[-1]
    head = results[:2]
    assert head.hits == results.hits[:2] and head.warnings == results.warnings
    assert results.hits[1] in results and list(reversed(results)) == results.hits[::-1]
    assert results == search(index, "the moon and the sun", retriever="bm25", k=3)
    with pytest.raises(IndexError):
        results[len(results)]


def test_rankings_are_equal_when_their_arrays_are(index: LocalStore) -> None:
    first = Ranking.from_hits(index.search_bm25("the moon and the sun", k=3))
    again = Ranking.from_hits(index.search_bm25("the moon and the sun", k=3))
    assert first == again  # ValueError (the truth value of an array is ambiguous) before
    assert len(first) == 2 and first != first.top(1)
    assert first != dataclasses.replace(first, reranked=True)


def test_min_score_and_window(index: LocalStore) -> None:
    tree = TextSimilarityReranker(
        BM25(), inference_id=CountingScorer(), rank_window_size=6, min_score=0.05
    )
    results = search(index, "moon", retriever=tree, k=10)
    assert results.ids and all(h.rerank_score >= 0.05 for h in results.hits)  # type: ignore[operator]
    assert set(results.ids) <= {"eclipse", "tides"}


def test_python_operators_build_es_trees() -> None:
    bm25, dense = BM25(), Dense(k=50)
    assert (bm25 | dense) == RRF((bm25, dense))
    assert (bm25 | dense | BM25(field="title")).retrievers[2] == BM25(field="title")  # type: ignore[attr-defined]
    linear = 0.3 * bm25 + 0.7 * dense
    assert isinstance(linear, Linear) and linear.weights == (0.3, 0.7)
    assert (bm25 % 5) == Cutoff(bm25, 5)
    with pytest.raises(TypeError, match="re-ranking stage"):
        bm25 >> dense  # type: ignore[operator]


def test_to_dict_round_trips(index: LocalStore) -> None:
    tree = (BM25(field="title") | Knn(k=5)) >> Rerank(
        "all-minilm-l6-v2", window=20, min_score=0.1
    ) % 3
    data = json.loads(json.dumps(tree.to_dict()))
    assert parse_retriever(data) == tree
    assert data["cutoff"]["retriever"]["text_similarity_reranker"]["inference_text"] == "{{query}}"


def test_a_tree_of_more_retrievers_than_a_search_takes_is_refused() -> None:
    """No deadline stops a first stage: 20,000 knn children in one body held the server's CPU
    for minutes after its 504."""
    knn = {"knn": {"field": "embedding", "query_text": "q", "k": 5, "num_candidates": 10}}
    nested = {"rrf": {"retrievers": [{"rrf": {"retrievers": [knn] * 60}}, knn, *[knn] * 40]}}
    with pytest.raises(
        InvalidInputError, match=r"holds 103 searches .*; a search takes at most 100"
    ):
        parse_retriever({"retriever": nested})
    assert len(parse_retriever({"rrf": {"retrievers": [knn] * 99}}).retrievers) == 99  # type: ignore[attr-defined]
    # A multi_match's fields are searches too: 500,000 of them got a server OOM-killed.
    fields = [f"f{i}" for i in range(101)]
    wide = {"standard": {"query": {"multi_match": {"query": "q", "fields": fields}}}}
    with pytest.raises(InvalidInputError, match=r"holds 101 searches"):
        parse_retriever(wide)
    twice = {"standard": {"query": {"multi_match": {"query": "q", "fields": ["t", "t^2"]}}}}
    with pytest.raises(InvalidInputError, match=r"names 't' more than once"):
        parse_retriever(twice)


def test_query_overrides_and_placeholders(index: LocalStore) -> None:
    spec = {"standard": {"query": {"match": {"*": "{{query}}"}}}}
    assert search(index, "capital of France", retriever=spec, k=1).ids == ["paris"]
    literal = {"standard": {"query": {"match": {"*": "capital of France"}}}}
    assert search(index, "purring cats", retriever=literal, k=1).ids == ["cats"]  # query wins
    with pytest.raises(InvalidInputError, match="no query text"):
        search(index, retriever=spec)


def test_an_unknown_inference_id_is_named_with_the_fix(index: LocalStore) -> None:
    # Elasticsearch's examples name their own inference endpoints: say which key holds the name.
    tree = {
        "text_similarity_reranker": {
            "retriever": {"standard": {"query": {"match": {"*": "{{query}}"}}}},
            "field": "text",
            "inference_id": "my-msmarco-minilm-model",
        }
    }
    with pytest.raises(ModelNotFoundError) as refused:
        search(index, "cats", retriever=tree)
    message = str(refused.value)
    assert message.startswith("text_similarity_reranker's inference_id: model 'my-msmarco-minil")
    assert message.endswith(
        "; leave inference_id out for the default model (Elasticsearch's "
        ".rerank-v1-elasticsearch names it too)"
    )


class RecordingScorer(CountingScorer):
    """CountingScorer that keeps the query texts it was asked to score for."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def score(self, query: str, documents: list[str]) -> np.ndarray:
        self.queries.append(query)
        return super().score(query, documents)


def test_a_tree_with_a_placeholder_reads_its_literal_texts_as_written(index: LocalStore) -> None:
    fixed_clause = {
        "rrf": {
            "retrievers": [
                {"standard": {"query": {"match": {"title": "Paris"}}}},
                {"standard": {"query": {"match": {"*": "{{query}}"}}}},
            ]
        }
    }
    assert set(search(index, "purring cats", retriever=fixed_clause, k=6).ids) == {"paris", "cats"}
    # In Python a text left out is the placeholder.
    python_tree = BM25(field="title", text="Paris") | BM25()
    assert set(search(index, "purring cats", retriever=python_tree, k=6).ids) == {"paris", "cats"}
    filled = search(index, "capital", retriever=BM25(text="{{query}} France seine"), k=1)
    assert filled.ids == ["paris"]
    scorer = RecordingScorer()
    reranked = BM25() >> Rerank(scorer, window=3, text="moon")
    search(index, "capital of France", retriever=reranked, k=3)
    assert scorer.queries == ["moon"]  # the re-ranker's own text, not the search's query
    knn_fixed = Knn(text="moon", k=2) | BM25()
    moon = search(index, retriever=Knn(text="moon", k=2), k=2).ids
    assert set(moon) <= set(search(index, "capital of France", retriever=knn_fixed, k=6).ids)
    with pytest.raises(InvalidInputError, match="no query text"):
        search(index, retriever=fixed_clause)  # the placeholder still needs a query


def test_a_tree_without_a_placeholder_takes_the_query_given(index: LocalStore) -> None:
    scorer = RecordingScorer()
    example = BM25(text="capital of France") >> Rerank(scorer, window=3, text="capital")
    assert search(index, "purring cats", retriever=example, k=1).ids == ["cats"]
    assert scorer.queries == ["purring cats"]
    assert search(index, retriever=example, k=1).ids == ["paris"]  # no query: the literals
    assert scorer.queries[-1] == "capital"


def test_a_search_body_size_above_the_top_window_is_refused() -> None:
    reranker = {
        "text_similarity_reranker": {
            "retriever": {"standard": {"query": {"match": {"*": "{{query}}"}}}},
            "rank_window_size": 2,
        }
    }
    with pytest.raises(InvalidInputError, match="rank_window_size 2 is below the 5 hits"):
        parse_retriever({"retriever": reranker, "size": 5})
    cut = parse_retriever({"retriever": reranker, "size": 2})
    assert isinstance(cut, Cutoff)
    check_window(cut, 10)  # the body's own cut asks the re-ranker for 2 hits: within its window
    wide_cut = TextSimilarityReranker(BM25(), rank_window_size=2) % 5
    check_window(wide_cut, 2)
    with pytest.raises(InvalidInputError, match="rank_window_size 2 is below the 5 hits"):
        check_window(wide_cut, 5)  # the edges' check looks through the cut-off


def test_linear_json_defaults_to_no_normalization_as_elasticsearch() -> None:
    bm25 = {"standard": {"query": {"match": {"*": "{{query}}"}}}}
    knn = {"knn": {"field": "embedding", "query_text": "{{query}}"}}
    plain = parse_retriever({"linear": {"retrievers": [{"retriever": bm25}, knn]}})
    assert isinstance(plain, Linear) and plain.normalizers == ("none", "none")
    children = [{"retriever": bm25, "normalizer": "l2_norm"}, knn]
    top_level = parse_retriever({"linear": {"retrievers": children, "normalizer": "minmax"}})
    assert isinstance(top_level, Linear) and top_level.normalizers == ("l2_norm", "minmax")
    assert (BM25() + Knn()).to_dict()["linear"]["retrievers"][0]["normalizer"] == "minmax"


def test_a_match_boost_scales_the_scores(index: LocalStore) -> None:
    boosted = {"standard": {"query": {"match": {"text": {"query": "moon sun", "boost": 2}}}}}
    tree = parse_retriever(boosted)
    assert tree == BM25(fields=(("text", 2.0),), text="moon sun")
    assert parse_retriever(json.loads(json.dumps(tree.to_dict()))) == tree
    plain = search(index, retriever={"standard": {"query": {"match": {"text": "moon sun"}}}})
    results = search(index, retriever=tree)
    assert results.ids == plain.ids
    np.testing.assert_allclose(results.scores, 2 * plain.scores, rtol=1e-6)
    bad = {"standard": {"query": {"match": {"text": {"query": "moon", "boost": "x"}}}}}
    with pytest.raises(InvalidInputError, match=r"match\.text\.boost must be a number"):
        parse_retriever(bad)


def test_a_knn_query_vector_is_scaled_to_unit_length(index: LocalStore) -> None:
    vector = index.embed_queries(["moon and sun"])[0].astype(np.float64)
    unit = search(index, retriever=Knn(vector=tuple(vector)), k=3)
    tripled = search(index, retriever={"knn": {"query_vector": (3 * vector).tolist(), "k": 3}})
    assert tripled.ids == unit.ids and float(tripled.scores.max()) <= 1.0 + 1e-5
    np.testing.assert_allclose(tripled.scores, unit.scores, rtol=1e-5)
    # Its length overflows a float (inf): it was searched as all zeros, and refused as such.
    huge = (vector / np.abs(vector).max() * 1.7e308).tolist()
    enormous = search(index, retriever={"knn": {"query_vector": huge, "k": 3}})
    assert enormous.ids == unit.ids
    np.testing.assert_allclose(enormous.scores, unit.scores, rtol=1e-5)
    # Between the second and third cosines: keeps the top two. (At the second cosine itself,
    # rebuilt from its float32 score, it fell above it on the onnxruntime backend.)
    threshold = float(unit.scores[1]) + float(unit.scores[2]) - 1
    kept = search(index, retriever=Knn(vector=tuple(5 * vector), similarity=threshold), k=6)
    assert kept.ids == unit.ids[:2]
    with pytest.raises(InvalidInputError, match=r"all zeros.*give a non-zero vector"):
        parse_retriever({"knn": {"query_vector": [0, 0.0]}})


def test_a_fixed_query_vector_is_refused_where_the_query_would_replace_the_texts(
    index: LocalStore,
) -> None:
    """An Elasticsearch hybrid example (match + knn query_vector) run with a query: the query
    replaced the match text but the knn kept searching its vector, so every query got the same
    knn hits, fused in without a word (in `semrank eval`, across every query)."""
    vector = index.embed_queries(["moon and sun"])[0].tolist()
    example = {
        "rrf": {
            "retrievers": [
                {"standard": {"query": {"match": {"*": "moon sun"}}}},
                {"knn": {"field": "embedding", "query_vector": vector, "k": 2}},
            ]
        }
    }
    as_written = search(index, retriever=example, k=3)  # no query: the tree as written
    assert {"eclipse", "tides"} <= set(as_written.ids)
    path = r"^retriever\.rrf\.retrievers\[1\]\.knn\.query_vector is a fixed vector"
    with pytest.raises(InvalidInputError, match=path) as refused:
        search(index, "puppies", retriever=example)
    assert 'query_text: "{{query}}"' in str(refused.value)
    assert 'query_vector_builder.text_embedding.model_text: "{{query}}"' in str(refused.value)
    with pytest.raises(InvalidInputError, match=path) as refused:  # said once, for all
        search_many(index, {"q1": "puppies", "q2": "capital of France"}, retriever=example)
    assert "without a query" not in str(refused.value)  # eval's queries cannot be left out
    with pytest.raises(InvalidInputError, match=path):  # a body's size is no step of the tree
        search(index, "puppies", retriever={"retriever": example, "size": 2})
    with pytest.raises(InvalidInputError, match=r"^retriever\.knn\.query_vector is a fixed"):
        search(index, "puppies", retriever=Knn(vector=tuple(vector)))
    # A placeholder elsewhere says where the query goes: the vector is a fixed clause, kept.
    placed = BM25(text="{{query}}") | Knn(vector=tuple(vector), k=2)
    assert {"dogs", "eclipse", "tides"} <= set(search(index, "puppies", retriever=placed).ids)


def test_knn_scores_are_elasticsearchs_score_for_a_cosine_field(index: LocalStore) -> None:
    """(1 + cosine) / 2, as Elasticsearch's knn ``_score``: a ``linear`` retriever's weights
    (normalizer none, its default) fuse a knn list with a BM25 one as they do there. The
    ``similarity`` threshold stays the raw cosine, as there."""
    vector = index.embed_queries(["moon and sun"])[0]
    cosines = index.search_vector(vector, k=3)
    hits = search(index, retriever=Knn(vector=tuple(vector.astype(np.float64))), k=3)
    assert hits.ids == cosines.ids.tolist()
    np.testing.assert_allclose(hits.scores, (1 + cosines.scores) / 2, rtol=1e-6)
    kept = search(index, retriever=Knn(vector=tuple(vector), similarity=float(cosines.scores[0])))
    assert kept.ids == cosines.ids[:1].tolist()


def test_shorthands_are_parsed_in_one_place() -> None:
    assert parse_shorthand(" hybrid+rerank ") == ("hybrid", True)
    assert parse_shorthand("linear") == ("linear", False)
    for not_one in ("bm25+", "bm25+rerank+rerank", "rerank", "tree.json", ""):
        assert parse_shorthand(not_one) is None


def test_parse_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown retriever 'bm42'"):
        parse_retriever({"bm42": {}})
    with pytest.raises(InvalidInputError, match="unsupported key"):
        parse_retriever({"rrf": {"retrievers": [{"knn": {"query_text": "x"}}], "fusion": 1}})
    with pytest.raises(InvalidInputError, match="'prefix' is not a supported filter"):
        parse_retriever({"standard": {"query": {"prefix": {"topic": "x"}}}})
    with pytest.raises(InvalidInputError, match="query_vector"):
        parse_retriever({"knn": {"field": "embedding", "k": 3}})
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(DataFormatError, match=r"bad\.json"):
        parse_retriever(tmp_path / "bad.json")


def test_shorthands_and_search_many(index: LocalStore) -> None:
    assert as_retriever("bm25") == BM25()
    assert isinstance(as_retriever("hybrid+rerank"), TextSimilarityReranker)
    run = search_many(index, {"q1": "capital of France", "q2": "puppies"}, retriever="hybrid", k=2)
    assert set(run) == {"q1", "q2"} and next(iter(run["q1"])) == "paris"
    assert next(iter(run["q2"])) == "dogs"


def test_a_trees_own_search_takes_the_options_of_search(index: LocalStore) -> None:
    """``Retriever.search`` says "see semrank.pipeline.search" but took neither ``store`` nor
    ``with_documents`` (a TypeError): a tree could not search by name an index in PostgreSQL,
    nor leave the documents out."""
    tree = BM25() >> Rerank(CountingScorer(), window=5)
    bare = tree.search(index, "moon", k=3, with_documents=False)
    assert bare.ids == search(index, "moon", retriever=tree, k=3).ids
    assert bare.hits and all(hit.document is None for hit in bare.hits)
    by_name = tree.search(index.name, "moon", k=3, home=index.path.parent, store="local")
    assert by_name.ids == bare.ids and by_name.hits[0].document is not None


def test_knn_on_a_bm25_only_index(tmp_path: Path) -> None:
    store = create_index("plain", home=tmp_path, embedding_model=None)
    store.upsert(DOCS[:2])
    with pytest.raises(InvalidInputError, match="no embeddings"):
        search(store, "moon", retriever="dense")
    hits = Hits(np.array(["eclipse"], dtype=object), np.array([1.0], dtype=np.float32))
    assert search(store, "moon hides the sun", k=1).ids == hits.ids.tolist()


def test_search_by_name_notices_a_recreated_index(tmp_path: Path) -> None:
    from semrank.store import drop_index

    create_index("again", home=tmp_path, embedding_model=None).upsert(DOCS[:1])
    assert search("again", "moon", home=tmp_path).ids == ["eclipse"]
    drop_index("again", home=tmp_path)
    create_index("again", home=tmp_path, embedding_model=None).upsert(DOCS[2:3])
    assert search("again", "capital", home=tmp_path).ids == ["paris"]


class WrongLengthScorer:
    def score(self, query: str, documents: list[str]) -> np.ndarray:
        return np.ones(1, dtype=np.float32)


def test_bad_python_arguments_are_named(index: LocalStore) -> None:
    with pytest.raises(InvalidInputError, match=r"query must be a string.*int"):
        search(index, 5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="queries must be a list"):
        search_many(index, "moon")
    with pytest.raises(InvalidInputError, match="retriever cannot be a Rerank; bind"):
        search(index, "moon", retriever=Rerank(CountingScorer()))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"rrf retrievers\[1\] must be a retriever"):
        RRF((BM25(), 5))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"both sides of \|"):
        BM25() | 5  # type: ignore[operator]
    with pytest.raises(InvalidInputError, match=r"fusion weight.*nan"):
        float("nan") * BM25()
    with pytest.raises(InvalidInputError, match="min_score must be a finite number, got nan"):
        BM25() >> Rerank(CountingScorer(), min_score=float("nan"))
    with pytest.raises(InvalidInputError, match="re-ranking model must be"):
        Rerank(5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="cut-off k"):
        Rerank(CountingScorer()) % 0
    with pytest.raises(InvalidInputError, match="query text must be a string"):
        search(index, retriever=BM25(text=5))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="knn vector must be a list"):
        Knn(vector="abc")  # type: ignore[arg-type]


def test_reranking_checks_the_field_and_the_models_scores(index: LocalStore) -> None:
    with pytest.raises(InvalidInputError, match="no field 'body' to re-rank on"):
        search(index, "moon", retriever=BM25() >> Rerank(CountingScorer(), field="body"))
    with pytest.raises(InvalidInputError, match=r"must return \d+ finite scores.*got \(1,\)"):
        search(index, "moon", retriever=BM25() >> Rerank(WrongLengthScorer(), window=4))


def test_numpy_integers_count_and_become_plain_ints(index: LocalStore) -> None:
    tree = BM25() >> Rerank(CountingScorer(), window=np.int64(4)) % np.int64(2)  # type: ignore[arg-type]
    assert json.loads(json.dumps(tree.to_dict()))["cutoff"]["size"] == 2
    assert len(search(index, "moon", retriever=tree, k=np.int64(3))) == 2  # type: ignore[arg-type]


def test_bad_json_values_are_named() -> None:
    child = {"retriever": {"knn": {"query_text": "x"}}, "weight": "abc"}
    with pytest.raises(InvalidInputError, match=r"retrievers\[0\]\.weight must be a finite"):
        parse_retriever({"rrf": {"retrievers": [child]}})
    with pytest.raises(InvalidInputError, match="query_vector must be a non-empty list"):
        parse_retriever({"knn": {"query_vector": "abc"}})
    multi = {"multi_match": {"query": "x", "fields": "title"}}
    with pytest.raises(InvalidInputError, match="fields must be a non-empty list"):
        parse_retriever({"standard": {"query": multi}})


@dataclasses.dataclass(frozen=True)
class DeletesAfterRetrieval(Retriever):
    """BM25, then a delete of one of its hits: a writer racing the search, made deterministic."""

    victim: str

    def run(self, ctx: Any, size: int) -> Any:
        ranking = BM25().run(ctx, size)
        ctx.store.delete([self.victim])
        return ranking

    def to_dict(self) -> dict[str, Any]:
        return {"test": {"victim": self.victim}}


def test_a_document_deleted_during_the_search_is_left_out_not_scored_empty(
    tmp_path: Path,
) -> None:
    store = create_index("racing", home=tmp_path, embedding_model=None)
    for retriever in (
        DeletesAfterRetrieval("eclipse"),
        TextSimilarityReranker(DeletesAfterRetrieval("eclipse"), inference_id=CountingScorer()),
    ):
        store.upsert(DOCS)
        results = search(store, "moon sun", retriever=retriever, k=5)
        assert "eclipse" not in results.ids and "tides" in results.ids
        assert all(hit.document is not None for hit in results.hits)
        assert [hit.rank for hit in results.hits] == list(range(1, len(results) + 1))
    store.close()


# --- Elasticsearch semantics found by a review (session 18) -----------------------------------
ZEBRA_DOCS = [
    {"id": "a1", "a": "zebra zebra zebra", "b": "cat"},
    {"id": "a2", "a": "zebra zebra", "b": "cat dog"},
    {"id": "a3", "a": "zebra zebra horse", "b": "cow"},
    {"id": "b1", "a": "cat", "b": "zebra zebra zebra"},
    {"id": "b2", "a": "cat dog", "b": "zebra zebra"},
    {"id": "b3", "a": "cow", "b": "zebra zebra horse"},
    {"id": "x", "a": "zebra horse horse horse horse", "b": "zebra horse horse horse horse"},
]


@pytest.fixture(scope="module")
def zebras(tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    store = create_index(
        "zebras", home=tmp_path_factory.mktemp("zebras"), fields=("a", "b"), embedding_model=None
    )
    store.upsert(ZEBRA_DOCS)
    return store


@pytest.mark.parametrize("kind", ["rrf", "linear"])
def test_fusion_reads_ten_hits_per_retriever_by_default_whatever_the_size(
    zebras: LocalStore, kind: str
) -> None:
    """x is 4th in both fields: fused over Elasticsearch's default window of 10 it is first, so
    the top 1 must be the top of the top 10 (with a window of 1, a1 won unfused)."""
    children = [{"standard": {"query": {"match": {f: "zebra"}}}} for f in ("a", "b")]
    if kind == "linear":
        children = [{"retriever": c, "normalizer": "minmax"} for c in children]
    spec = {kind: {"retrievers": children}}
    top10 = search(zebras, retriever=spec, k=10).ids
    assert kind == "linear" or top10[0] == "x"
    assert search(zebras, retriever=spec, k=1).ids == top10[:1]
    assert search(zebras, retriever=spec, k=3).ids == top10[:3]


@pytest.fixture(scope="module")
def herd(tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    """30 documents matching "zebra" in both fields: more than a fusion's default window."""
    store = create_index(
        "herd", home=tmp_path_factory.mktemp("herd"), fields=("a", "b"), embedding_model=None
    )
    store.upsert(
        [
            {"id": f"z{i}", "a": "zebra " * (i % 7 + 1), "b": "zebra " * (i % 5 + 1)}
            for i in range(30)
        ]
    )
    return store


class ReadCounter(CountingScorer):
    """Records how many documents each re-ranking read."""

    def __init__(self) -> None:
        self.read: list[int] = []

    def score(self, query: str, documents: list[str]) -> np.ndarray:
        self.read.append(len(documents))
        return super().score(query, documents)


@pytest.mark.parametrize("kind", ["rrf", "linear"])
def test_a_nested_fusion_without_a_window_hands_its_parent_elasticsearchs_ten(
    herd: LocalStore, kind: str
) -> None:
    """An rrf / linear left without rank_window_size read max(hits asked, 10): a re-ranker of
    window 30 above it re-ranked 30 documents where Elasticsearch's default window is 10 wherever
    the node is (and Elasticsearch refuses a parent window above a compound child's)."""
    children = [{"standard": {"query": {"match": {f: "zebra"}}}} for f in ("a", "b")]
    fusion = {kind: {"retrievers": children}}

    def reranked(window: int) -> dict[str, Any]:
        body = {"retriever": fusion, "field": "a", "rank_window_size": window}
        return {"text_similarity_reranker": body}

    with pytest.raises(InvalidInputError) as refused:
        parse_retriever(reranked(30))
    assert str(refused.value).startswith(
        f"text_similarity_reranker rank_window_size 30 is above its child {kind}'s "
        "rank_window_size 10: the child returns at most 10 hits; raise the child's "
        "rank_window_size to at least 30"
    )
    with pytest.raises(InvalidInputError, match="rrf rank_window_size 30 is above its child"):
        parse_retriever({"rrf": {"retrievers": [fusion], "rank_window_size": 30}})
    counter = ReadCounter()
    tree = dataclasses.replace(parse_retriever(reranked(10)), inference_id=counter)
    assert len(search(herd, "zebra", retriever=tree, k=10)) == 10 and counter.read == [10]
    assert len(search(herd, "zebra", retriever=fusion)) == 10  # its window, at the top too
    fusion[kind]["rank_window_size"] = 30
    counter.read.clear()
    tree = dataclasses.replace(parse_retriever(reranked(30)), inference_id=counter)
    assert len(search(herd, "zebra", retriever=tree, k=30)) == 30 and counter.read == [30]


def test_a_k_above_a_json_trees_window_is_refused_not_cut_short(
    herd: LocalStore, tmp_path: Path
) -> None:
    """A tree saved as JSON with an rrf / linear left without rank_window_size returned k hits
    until today's Elasticsearch windows, then 10 of the k asked, unsaid (the CLI and server
    refuse such a size): a k above a JSON tree's top window is refused in the library too."""
    children = [{"standard": {"query": {"match": {f: "zebra"}}}} for f in ("a", "b")]
    saved = tmp_path / "hybrid.json"
    saved.write_text(json.dumps({"rrf": {"retrievers": children}}), encoding="utf-8")
    for spec in (saved, str(saved), json.loads(saved.read_text())):
        with pytest.raises(InvalidInputError) as refused:
            search(herd, "zebra", retriever=spec, k=20)
        assert str(refused.value).startswith(
            "the retriever's rank_window_size 10 is below the 20 hits asked for (k): it returns "
            "at most 10; raise rank_window_size to at least 20 (rrf and linear default to 10"
        )
        with pytest.raises(InvalidInputError, match="below the 20 hits asked for"):
            search_many(herd, ["zebra"], retriever=spec, k=20)
        assert len(search(herd, "zebra", retriever=spec)) == 10  # no k: the window's hits
    windowed = {"rrf": {"retrievers": children, "rank_window_size": 20}}
    assert len(search(herd, "zebra", retriever=windowed, k=20)) == 20
    small = {"rrf": {"retrievers": children, "rank_window_size": 3}}
    assert len(search(herd, "zebra", retriever=small)) == 3  # as a body without size
    assert len(search_many(herd, ["zebra"], retriever=small)["0"]) == 3
    # A tree built in Python still returns what it gives, as composed stages do.
    assert len(search(herd, "zebra", retriever=RRF(tuple(BM25(field=f) for f in "ab")), k=20)) == 20


def test_a_python_fusion_reads_what_its_parent_asks_and_says_so_in_json(herd: LocalStore) -> None:
    """``|`` and the shorthands keep reading the re-ranker's whole window: a fusion built without
    one takes its parent's, which its Elasticsearch JSON then states."""
    counter = ReadCounter()
    composed = (BM25(field="a") | BM25(field="b")) >> Rerank(counter, field="a", window=25)
    assert len(search(herd, "zebra", retriever=composed, k=25)) == 25 and counter.read == [25]
    data = composed.to_dict()["text_similarity_reranker"]
    assert data["retriever"]["rrf"]["rank_window_size"] == 25
    hybrid = as_retriever("hybrid+rerank", size=10)
    assert isinstance(hybrid, TextSimilarityReranker) and isinstance(hybrid.retriever, RRF)
    assert hybrid.retriever.rank_window_size == hybrid.rank_window_size == 100
    assert len(search(herd, "zebra", retriever=BM25(field="a") | BM25(field="b"), k=20)) == 20


def test_a_python_fusion_over_a_smaller_rerank_window_still_builds_and_runs(
    index: LocalStore,
) -> None:
    """A fusion built in Python without a window was given its parent's (50), and then refused
    its own child re-ranker's window of 20, which nobody had asked it to check."""
    inner = (BM25() >> Rerank(CountingScorer(), window=4)) | Knn(k=6)
    tree = inner >> Rerank(CountingScorer(), window=6)
    assert len(search(index, "moon", retriever=tree, k=6)) == 6
    assert tree.to_dict()["text_similarity_reranker"]["rank_window_size"] == 6


def test_fusion_keeps_the_rerank_score_whatever_the_order_of_its_retrievers(
    index: LocalStore,
) -> None:
    reranked = BM25() >> Rerank(CountingScorer(), window=6)
    dense = Knn(k=6)
    first = search(index, "moon", retriever=RRF((reranked, dense)), k=4)
    second = search(index, "moon", retriever=RRF((dense, reranked)), k=4)
    assert first.ids == second.ids
    scored = [h.rerank_score for h in second.hits if h.rerank_score is not None]
    assert len(scored) >= 2  # the two moon documents were scored by the model
    assert [h.rerank_score for h in first.hits] == [h.rerank_score for h in second.hits]
    assert [h.first_stage_rank for h in first.hits] == [h.first_stage_rank for h in second.hits]


@pytest.mark.parametrize(
    ("knn", "message"),
    [
        ({"query_vector": [0.1] * 4, "query_text": "moon"}, "only one of"),
        (
            {
                "query_vector": [0.1] * 4,
                "query_vector_builder": {"text_embedding": {"model_text": "moon"}},
            },
            "only one of",
        ),
        ({"query_text": "moon", "k": 8, "num_candidates": 3}, r"k \(8\) must not exceed"),
        ({"query_text": "moon", "num_candidates": 20_000}, "at most 10,000"),
        ({"query_text": "moon", "num_candidates": 10**12}, "at most 1,000,000"),
    ],
)
def test_knn_refuses_what_elasticsearch_refuses(knn: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_retriever({"knn": knn})


@pytest.mark.parametrize(
    "body",
    [
        {"retriever": {"standard": {"query": {"match": {"*": "moon"}}}}, "_source": ["title"]},
        {"retriever": {"standard": {"query": {"match": {"*": "moon"}}}}, "size": 0},
        {"retriever": {"standard": {"query": {"match": {"*": "moon"}}}}, "size": True},
        {"standard": {"query": {"match": {"*": {"query": "moon", "boost": 0}}}}},
        {"standard": {"query": {"multi_match": {"query": "moon", "fields": ["title^0"]}}}},
    ],
)
def test_bodies_that_would_be_ignored_or_return_nothing_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_retriever(body)
    message = str(caught.value)
    assert any(word in message for word in ("_source", "size", "boost")), message


def test_a_search_body_source_flag_is_taken_and_a_field_filter_refused(index: LocalStore) -> None:
    """ "_source": false (which POST /{index}/_search takes) was refused in Python and the CLI
    as "a field filter is not supported"; false now leaves the documents out, true keeps them."""
    tree = {"standard": {"query": {"match": {"text": "moon"}}}}
    bare = search(index, retriever={"retriever": tree, "_source": False}, k=2)
    assert len(bare) == 2 and [hit.document for hit in bare.hits] == [None, None]
    whole = search(index, retriever=json.dumps({"retriever": tree, "_source": True}), k=2)
    assert whole.ids == bare.ids and all(hit.document for hit in whole.hits)
    for source in (["title"], {"includes": ["title"]}, "false"):
        with pytest.raises(InvalidInputError) as refused:
            parse_retriever({"retriever": tree, "_source": source})
        assert "a field filter is not supported" in str(refused.value)


@pytest.mark.parametrize("kind", ["rrf", "linear"])
def test_the_multi_field_form_is_told_the_retrievers_to_write(index: LocalStore, kind: str) -> None:
    """rrf / linear with query + fields (Elasticsearch 9.1's multi-field form) was refused as
    "unsupported key(s) 'fields', 'query'", saying nothing of what to write instead."""
    simplified = {kind: {"query": "moon", "fields": ["title^2", "text", "embedding"]}}
    with pytest.raises(InvalidInputError) as refused:
        parse_retriever({"retriever": simplified, "size": 3})
    message = str(refused.value)
    assert message.startswith(
        f"retriever.{kind}: the multi-field form (query + fields) is not supported; write its "
        "retrievers instead: a standard match per text field"
    )
    example = json.loads(message[message.index("e.g. ") + len("e.g. ") :])
    fields = [c["standard"]["query"]["match"] for c in example[kind]["retrievers"][:-1]]
    assert fields == [{"title": "moon"}, {"text": "moon"}]
    assert example[kind]["retrievers"][-1] == {"knn": {"field": "embedding", "query_text": "moon"}}
    assert search(index, retriever=example, k=3).ids[:2] in (
        ["eclipse", "tides"],
        ["tides", "eclipse"],
    )


def test_a_classic_search_body_is_told_where_its_keys_go() -> None:
    """Library and CLI said only "unknown retriever 'query'" / "unsupported key(s) 'from'"
    where the HTTP server said what to write instead."""
    from semrank.pipeline import SEARCH_KEY_HINTS

    tree = {"standard": {"query": {"match": {"text": "moon"}}}}
    for key, value in (("min_score", 1),):
        with pytest.raises(InvalidInputError) as refused:
            parse_retriever({"retriever": tree, key: value})
        assert (
            str(refused.value)
            == f"search body: unsupported key {key!r}; " + (SEARCH_KEY_HINTS[key])
        )
    # A sort beside a retriever: Elasticsearch's refusal, and where the sort goes instead.
    with pytest.raises(InvalidInputError, match="put it into the standard retriever"):
        parse_retriever({"retriever": tree, "sort": ["_score"]})


@pytest.mark.parametrize(
    ("options", "fields", "mode"),
    [
        ({"operator": "or", "tie_breaker": 0}, (("title", 1.0), ("text", 3.0)), "best_fields"),
        ({"operator": "OR", "boost": 2}, (("title", 2.0), ("text", 6.0)), "best_fields"),
        ({"type": "most_fields", "tie_breaker": 1}, (("title", 1.0), ("text", 3.0)), "most_fields"),
    ],
)
def test_multi_match_takes_the_defaults_and_boost_that_equal_its_scoring(
    index: LocalStore, options: dict[str, Any], fields: tuple[tuple[str, float], ...], mode: str
) -> None:
    query = {"query": "python programming cats", "fields": ["title", "text^3"], **options}
    tree = parse_retriever({"standard": {"query": {"multi_match": query}}})
    assert tree == BM25(fields=fields, mode=mode, text="python programming cats")
    unboosted = BM25(fields=(("title", 1.0), ("text", 3.0)), mode=mode, text=query["query"])
    plain = search(index, retriever=unboosted, k=3)
    results = search(index, retriever=tree, k=3)
    assert results.ids == plain.ids  # a query boost scales the scores as match's boost does
    np.testing.assert_allclose(results.scores, options.get("boost", 1) * plain.scores, rtol=1e-6)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"operator": "and"}, r"multi_match: only operator 'or'"),
        ({"tie_breaker": 0.3}, r"tie_breaker 0\.3 is not supported: .*best field alone"),
        ({"type": "most_fields", "tie_breaker": 0}, r"most_fields by the sum"),
        ({"tie_breaker": "x"}, r"tie_breaker must be a number from 0 to 1"),
        ({"boost": 0}, r"multi_match\.boost must be above 0"),
        ({"boost": -1}, r"multi_match\.boost must be a number from 0"),
        ({"type": ["best_fields"]}, r"type \['best_fields'\] is not supported"),  # was a 500
    ],
)
def test_multi_match_refuses_options_it_would_not_score_by(
    options: dict[str, Any], message: str
) -> None:
    query = {"query": "cats", "fields": ["title", "text"], **options}
    with pytest.raises(InvalidInputError, match=message):
        parse_retriever({"standard": {"query": {"multi_match": query}}})


def test_a_bad_model_text_is_named_by_its_own_key() -> None:
    builder = {"text_embedding": {"model_text": 5}}
    with pytest.raises(InvalidInputError) as refused:
        parse_retriever({"knn": {"field": "embedding", "query_vector_builder": builder}})
    assert str(refused.value) == (
        "retriever.knn.query_vector_builder.text_embedding.model_text must be a string, got int"
    )


def test_key_names_a_client_sent_are_quoted_in_errors() -> None:
    with pytest.raises(InvalidInputError, match=r"'\\ud800'"):
        parse_retriever({"rrf": {"retrievers": [], "\ud800": 1}})
    with pytest.raises(InvalidInputError, match=r"'\\ud800'"):
        parse_retriever({"standard": {}, "\ud800": 1})


def test_a_misspelt_shorthand_names_the_shorthands(index: LocalStore) -> None:
    with pytest.raises(DataFormatError, match="one of the shorthands bm25, dense, hybrid, linear"):
        search(index, "fleas", retriever="bm25+rerankk")


@pytest.mark.parametrize(
    ("spec", "query", "named"),
    [
        ({"knn": {"field": "embedding", "query_text": "   ", "k": 3}}, None, "knn retriever"),
        ({"knn": {"field": "embedding", "query_text": "{{query}}", "k": 3}}, " ", "query is"),
        ({"standard": {"query": {"match": {"*": ""}}}}, None, "blank"),
        # Invisible characters str.strip() keeps (zero-width space, byte-order mark, NUL).
        ({"knn": {"field": "embedding", "query_text": "\u200b", "k": 3}}, None, "knn retriever"),
        ("dense", "\ufeff\u200b", "query is blank"),
        ("dense", "\x00", "query is blank"),
    ],
)
def test_a_blank_query_text_is_refused_not_embedded(
    index: LocalStore, spec: dict[str, Any] | str, query: str | None, named: str
) -> None:
    """The embedding of whitespace is near every document: a blank knn text returned arbitrary
    neighbours with a 200, where a blank top-level query was already refused."""
    with pytest.raises(InvalidInputError, match=r"blank|empty") as refused:
        search(index, query, retriever=spec, k=3)
    assert named in str(refused.value)


@pytest.mark.parametrize("model_id", [5, ["minilm"], {"name": "x"}])
def test_a_knn_model_id_must_be_a_name(model_id: object) -> None:
    builder = {"text_embedding": {"model_id": model_id, "model_text": "{{query}}"}}
    with pytest.raises(InvalidInputError, match="model_id must be a model name"):
        parse_retriever({"knn": {"field": "embedding", "query_vector_builder": builder}})


@pytest.mark.parametrize(
    "spec",
    [
        {"knn": {"field": "embedding", "query_text": "fleas", "k": 10**320}},
        {"rrf": {"retrievers": [{"standard": {"query": {"match": {"*": "fleas"}}}}],
                 "rank_window_size": 10**320}},
        {"rrf": {"retrievers": [{"standard": {"query": {"match": {"*": "fleas"}}}}],
                 "rank_constant": 10**320}},
        {"knn": {"field": "embedding", "query_text": "fleas", "k": 10**12}},
    ],
)  # fmt: skip
def test_counts_past_any_use_are_refused_naming_the_bound(spec: dict[str, Any]) -> None:
    """10**320 overflowed a float inside the search (a 500), k = 10**12 made the HNSW index
    allocate for a trillion hits (out of memory)."""
    with pytest.raises(InvalidInputError, match="positive integer of at most 1,000,000"):
        parse_retriever(spec)


def test_trees_that_cannot_be_read_are_named() -> None:
    """A list was a raw TypeError, JSON nested hundreds deep a RecursionError traceback, and a
    weight before >> was dropped without a word (Python binds 0.3 * BM25() first)."""
    from semrank.pipeline import BM25, Knn, Rerank

    with pytest.raises(InvalidInputError, match="must be a JSON object, got list"):
        parse_retriever([{"standard": {}}])  # type: ignore[arg-type]
    deep = '{"standard": {"query": {"match": {"*": "x"}}}}'
    for _ in range(900):
        deep = '{"cutoff": {"retriever": ' + deep + ', "size": 5}}'
    with pytest.raises(InvalidInputError, match="nested more than 200 levels deep"):
        parse_retriever(deep)
    # Python binds 0.3 * BM25() first: >> and % carry the weight to the branch (it was lost).
    from semrank.pipeline import Cut, TextSimilarityReranker

    for branch in (0.3 * BM25() >> Rerank(window=5), 0.3 * BM25() % 50, 0.3 * BM25() >> Cut(50)):
        assert (branch + Knn()).weights == (0.3, 1.0)
    with pytest.raises(InvalidInputError, match=r"weight \(0.3\) .* would be lost"):
        TextSimilarityReranker(0.3 * BM25())


@dataclasses.dataclass(frozen=True)
class EndsTheRequest(Retriever):
    """A first stage during which the request ends (its client leaves): returns nothing."""

    gone: Any

    def run(self, ctx: Any, size: int) -> Ranking:
        self.gone.set()
        return Ranking.from_hits(Hits(np.array([], dtype=object), np.array([], np.float32)))

    def to_dict(self) -> dict[str, Any]:
        return {}


def test_a_tree_stops_at_its_next_search_once_its_request_is_over(index: LocalStore) -> None:
    """The server's deadline stopped re-ranking but not the rest of a first stage: an rrf of
    many retrievers searched on for a request answered 504 long before, or whose client left."""
    import contextvars
    import threading
    import time

    from semrank._request import REQUEST_DEADLINE, REQUEST_GONE
    from semrank.errors import ClientDisconnectedError, DeadlineExceededError

    tree = {"rrf": {"retrievers": [{"standard": {"query": {"match": {"*": "moon"}}}}] * 2}}

    def run_in(deadline: float | None, gone: Any, spec: Any) -> Any:
        context = contextvars.copy_context()
        context.run(REQUEST_DEADLINE.set, deadline)
        context.run(REQUEST_GONE.set, gone)
        return context.run(search, index, "moon", retriever=spec, k=3)

    alone = search(index, "moon", retriever=tree, k=3)
    assert run_in(time.monotonic() + 60, threading.Event(), tree).ids == alone.ids
    with pytest.raises(DeadlineExceededError, match="deadline passed before a BM25 search"):
        run_in(time.monotonic() - 1, None, tree)
    gone = threading.Event()
    leaving = RRF(retrievers=(EndsTheRequest(gone), BM25(text="moon")))
    with pytest.raises(ClientDisconnectedError, match="request ended before a BM25 search"):
        run_in(None, gone, leaving)


def test_hits_a_cascade_left_unread_have_no_rerank_score(index: LocalStore) -> None:
    """Their place-holding scores came back as rerank_score, like the read hits' (a client
    thresholding them took unread documents for judged ones)."""
    from semrank import CascadeConfig, Reranker

    reranker = Reranker(cascade=CascadeConfig(keep=2), feedback=False)
    tree = BM25() >> Rerank(reranker, window=6)
    results = search(index, "moon Paris Python cats dogs", retriever=tree, k=6)
    assert len(results) == 6
    read = [hit for hit in results.hits if hit.rerank_score is not None]
    assert len(read) == 2 and results.hits[:2] == read  # the read ones first
    assert all(hit.score < read[-1].score for hit in results.hits[2:])  # their place kept
    assert [hit.to_dict()["rerank_score"] for hit in results.hits[2:]] == [None] * 4
    # Fused with a re-ranker that read them all, every hit has that score, in either order.
    full = BM25() >> Rerank(Reranker(feedback=False), window=6)
    for children in ((tree, full), (full, tree)):
        fused = search(index, "moon Paris Python cats dogs", retriever=RRF(children), k=6)
        assert all(hit.rerank_score is not None for hit in fused.hits), children


# --- filters ---------------------------------------------------------------------------------
TAGGED = [
    dict(doc, lang=lang, year=year, tags=tags)
    for doc, lang, year, tags in zip(
        DOCS,
        ["en", "de", "en", "en", "de", "en"],
        [2001, 2005, 2010, 2015, 2020, 2024],
        [["space"], ["space", "sea"], ["city"], ["code"], ["pets"], ["pets", "play"]],
        strict=True,
    )
]


@pytest.fixture(scope="module")
def tagged(index: LocalStore, tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    store = create_index("tagged", home=tmp_path_factory.mktemp("tagged"), embedder=index.embedder)
    store.upsert(TAGGED)
    return store


def _passes(spec: Any) -> set[str]:
    flt = parse_filter(spec)
    return {d["id"] for d in TAGGED if matches(flt, d["id"], d)}


def _ids(results: Any) -> list[str]:
    return [hit.id for hit in results]


ENGLISH = {"term": {"lang.keyword": "en"}}
RECENT = {"range": {"year": {"gte": 2010}}}


def test_a_query_that_only_filters_finds_the_passing_documents_in_storage_order(
    tagged: LocalStore,
) -> None:
    """A classic query or standard retriever without a match (refused before) browses the
    index: the documents passing it, first written first, scored as Elasticsearch scores a
    filter context (0), a constant_score (its boost) or another filter query (1)."""
    english = [d["id"] for d in TAGGED if d["id"] in _passes(ENGLISH)]
    filtered = {"query": {"bool": {"filter": [ENGLISH]}}, "size": 3}
    found = search(tagged, retriever=filtered, k=None)
    assert _ids(found) == english[:3] and {hit.score for hit in found} == {0.0}
    page = search(tagged, retriever={**filtered, "from": 2}, k=None)
    assert _ids(page) == english[2:5]
    # The embedded store's filter table finds what the documents read one by one pass.
    assert tagged.first_matching(ENGLISH, 3) == Store.first_matching(tagged, ENGLISH, 3)
    boosted = {"standard": {"query": {"constant_score": {"filter": RECENT, "boost": 3}}}}
    tree = parse_retriever(boosted)
    assert tree == ConstantScore(RECENT, 3.0) and parse_retriever(tree.to_dict()) == tree
    hits = search(tagged, retriever=tree, k=10)
    recent = [d["id"] for d in TAGGED if d["id"] in _passes(RECENT)]
    assert [(h.id, h.score) for h in hits] == [(i, 3.0) for i in recent]
    # A parent's filter holds for it, as for every leaf.
    both = search(tagged, retriever=ConstantScore(RECENT, 1.0) % 10, k=10)
    assert set(_ids(both)) == _passes(RECENT)
    under = {"rrf": {"retrievers": [boosted], "filter": ENGLISH, "rank_window_size": 10}}
    assert set(_ids(search(tagged, retriever=under, k=10))) == _passes([RECENT, ENGLISH])
    # A query given has no text to replace: refused, not ignored.
    with pytest.raises(InvalidInputError, match="reads no query text"):
        search(tagged, "moon", retriever=boosted)


@pytest.mark.parametrize("leaf", [BM25(), Knn()], ids=["bm25", "knn"])
def test_a_filtered_leaf_returns_the_k_best_passing_documents(
    tagged: LocalStore, leaf: Retriever
) -> None:
    query = "the moon and the sun"
    everything = _ids(search(tagged, query, retriever=leaf, k=6))
    filtered = dataclasses.replace(leaf, filter=ENGLISH)
    expected = [i for i in everything if i in _passes(ENGLISH)][:2]
    assert _ids(search(tagged, query, retriever=filtered, k=2)) == expected


def test_fusion_and_reranking_filter_every_retriever_below_them(tagged: LocalStore) -> None:
    query = "animals and the moon"
    both = [ENGLISH, RECENT]
    passing = _passes(both)
    # A parent's filter holds for each child with the child's own: rrf over filtered children.
    tree = RRF((BM25(filter=ENGLISH), Knn()), rank_window_size=6, filter=RECENT)
    children = [
        tagged.search_bm25(query, k=6, filter=parse_filter(both)),
        tagged.search_vector(tagged.embed_queries([query])[0], k=6, filter=parse_filter(RECENT)),
    ]
    fused = rrf(children, rank_window_size=6)
    assert _ids(search(tagged, query, retriever=tree, k=3)) == fused.ids.tolist()[:3]
    assert set(_ids(search(tagged, query, retriever=tree, k=6))) <= _passes(RECENT)
    linear = Linear((BM25(), Knn()), filter=both)
    assert set(_ids(search(tagged, query, retriever=linear, k=6))) == passing
    reranked = TextSimilarityReranker(BM25(), inference_id=CountingScorer(), filter=ENGLISH)
    same = TextSimilarityReranker(BM25(filter=ENGLISH), inference_id=CountingScorer())
    results = search(tagged, query, retriever=reranked, k=6)
    assert _ids(results) == _ids(search(tagged, query, retriever=same, k=6))
    assert set(_ids(results)) <= _passes(ENGLISH)


def test_filters_in_json_and_in_python_are_one_tree(tagged: LocalStore) -> None:
    body = {
        "text_similarity_reranker": {
            "retriever": {"rrf": {"retrievers": [
                {"standard": {"query": {"bool": {"must": [{"match": {"text": "moon"}}],
                                                 "filter": ENGLISH,
                                                 "must_not": {"term": {"tags": "code"}}}}}},
                {"knn": {"query_text": "moon", "filter": [RECENT]}},
            ], "filter": {"exists": {"field": "tags"}}}},
            "inference_text": "moon", "filter": {"range": {"year": {"lt": 2024}}},
        }
    }  # fmt: skip
    tree = parse_retriever(body)
    standard = BM25(
        field="text",
        text="moon",
        filter={"bool": {"filter": ENGLISH, "must_not": {"term": {"tags": "code"}}}},
    )
    fusion = RRF(
        (standard, Knn(text="moon", filter=[RECENT])),
        rank_window_size=10,
        filter={"exists": {"field": "tags"}},
    )
    python = TextSimilarityReranker(
        fusion, inference_text="moon", filter={"range": {"year": {"lt": 2024}}}
    )
    assert tree == python
    assert parse_retriever(json.loads(json.dumps(tree.to_dict()))) == tree
    results = search(tagged, None, retriever=body, k=5)
    assert _ids(results) == _ids(search(tagged, None, retriever=python, k=5))
    assert set(_ids(results)) <= _passes({"range": {"year": {"lt": 2024}}})
    # A fused operand with a filter of its own keeps it (not flattened into the parent).
    filtered = RRF((BM25(), Knn()), filter=ENGLISH)
    assert (filtered | BM25(text="x")).retrievers[0] == filtered


def test_search_many_runs_the_filters_of_its_tree(tagged: LocalStore) -> None:
    run = search_many(tagged, ["moon", "animals"], retriever=BM25(filter=RECENT), k=6)
    assert set().union(*run.values()) <= _passes(RECENT) and run["1"]


def test_a_search_filter_holds_for_the_whole_tree_with_its_own(tagged: LocalStore) -> None:
    """search(filter=) / search_many(filter=): as if set on the tree's top retriever."""
    tree = RRF((BM25(filter=ENGLISH), Knn()), rank_window_size=6)
    query = "the moon and the sun"
    on_top = search(tagged, query, retriever=dataclasses.replace(tree, filter=RECENT), k=6)
    given = search(tagged, query, retriever=tree, k=6, filter=RECENT)
    assert _ids(given) == _ids(on_top) and set(_ids(given)) <= _passes(RECENT)
    assert _ids(search(tagged, query, k=6, filter=parse_filter(ENGLISH))) == [
        i for i in _ids(search(tagged, query, k=6)) if i in _passes(ENGLISH)
    ]
    run = search_many(tagged, {"q": "moon", "r": "animals"}, k=6, filter=[RECENT, ENGLISH])
    assert set().union(*run.values()) <= _passes(RECENT) & _passes(ENGLISH) and run["r"]
    with pytest.raises(InvalidInputError, match=r"^filter: 'prefix' is not a supported"):
        search(tagged, query, filter={"prefix": {"a": "b"}})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"standard": {"query": {"match": {"text": "x"}}, "filter": {"match": {"a": "b"}}}},
         "retriever.standard.filter: 'match' is not a supported filter"),
        ({"rrf": {"retrievers": [{"knn": {"query_text": "x", "filter": [{"term": {"a": 1}},
          {"range": {"y": {}}}]}}]}},
         "retriever.rrf.retrievers[0].knn.filter[1].range.y: give at least one of"),
        ({"standard": {"query": {"bool": {"must": {"match": {"text": "x"}},
          "filter": {"terms": {"a": []}}}}}},
         "retriever.standard.query.bool.filter[0].terms.a must be a non-empty list"),
        ({"standard": {"query": {"bool": {"must": {"match": {"text": "x"}},
          "should": [{"term": {"a": 1}}]}}}},
         "retriever.standard.query.bool.should is not supported"),
        ({"standard": {"query": {"bool": {"filter": {"prefix": {"a": 1}}}}}},
         "retriever.standard.query.bool.filter[0]: 'prefix' is not a supported filter"),
        ({"standard": {"query": {"constant_score": {"filter": {"term": {"a": 1}}, "boost": -1}}}},
         "retriever.standard.query.constant_score.boost must be a number from 0"),
        ({"standard": {"query": {"bool": {"must": [{"match": {"a": "x"}},
                                                   {"match": {"b": "y"}}]}}}},
         "must takes one match or multi_match query, got 2"),
    ],
)  # fmt: skip
def test_bad_filters_in_a_tree_are_named_by_their_path(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        parse_retriever(body)


def test_a_bad_python_filter_is_named_by_its_node() -> None:
    with pytest.raises(InvalidInputError, match=r"^knn filter.term names one field"):
        Knn(filter={"term": {"a": 1, "b": 2}})


# --- classic _search bodies: query, knn and rank.rrf ----------------------------------------
def _knn_scores(store: LocalStore, query: str, k: int, flt: Any = None) -> dict[str, float]:
    """Elasticsearch's knn ``_score`` of the k nearest documents: (1 + cosine) / 2."""
    vector = store.embed_queries([query])[0]
    hits = store.search_vector(vector, k=k, filter=None if flt is None else parse_filter(flt))
    return {doc: (1.0 + score) / 2.0 for doc, score in hits.as_dict().items()}


def test_a_classic_query_body_is_its_standard_retriever(tagged: LocalStore) -> None:
    """LangChain's BM25 strategy: a bool query's must beside its filter, no retriever."""
    query = {"bool": {"must": [{"match": {"text": {"query": "moon Paris"}}}], "filter": [ENGLISH]}}
    classic = search(tagged, retriever={"query": query, "size": 3})
    tree = search(tagged, retriever={"retriever": {"standard": {"query": query}}, "size": 3})
    assert _ids(classic) == _ids(tree) and classic.scores.tolist() == tree.scores.tolist()
    expected = tagged.search_bm25("moon Paris", k=3, field="text", filter=parse_filter(ENGLISH))
    assert _ids(classic) == expected.ids.tolist() and set(_ids(classic)) <= _passes(ENGLISH)
    bare = search(tagged, retriever={"query": query, "_source": False}, k=2)
    assert [hit.document for hit in bare.hits] == [None, None]


def test_a_classic_knn_body_is_its_knn_retriever(tagged: LocalStore) -> None:
    """LangChain's dense strategy: a top-level knn with its filter list; k hits at most."""
    knn = {"field": "embedding", "query_text": "animals", "k": 2, "num_candidates": 50}
    knn["filter"] = [RECENT]
    classic = search(tagged, retriever={"knn": knn, "size": 4})
    tree = search(tagged, retriever={"retriever": {"knn": knn}, "size": 4})
    assert _ids(classic) == _ids(tree) and classic.scores.tolist() == tree.scores.tolist()
    expected = _knn_scores(tagged, "animals", 2, RECENT)
    assert _ids(classic) == list(expected) and set(_ids(classic)) <= _passes(RECENT)
    # Without k, Elasticsearch's default: the body's size.
    unbounded = {key: value for key, value in knn.items() if key != "k"}
    assert len(search(tagged, retriever={"knn": unbounded, "size": 3})) == 3


@pytest.mark.parametrize("size", [2, 5])
def test_query_and_knn_sum_their_boosted_scores_as_elasticsearch_does(
    tagged: LocalStore, size: int
) -> None:
    """Elasticsearch scores a hit of query + knn by the sum of the query's score and each
    knn's score times its boost (0 from a search that did not find it), over the union of
    the query's matches and each knn's k nearest neighbours."""
    body = {
        "query": {"match": {"text": "the moon and the sun"}},
        "knn": [
            {"field": "embedding", "query_text": "animals", "k": 3, "num_candidates": 20,
             "boost": 2.0, "filter": ENGLISH},
            {"field": "embedding", "query_text": "the sea", "k": 2, "num_candidates": 20},
        ],
        "size": size,
    }  # fmt: skip
    results = search(tagged, retriever=body)
    bm25 = tagged.search_bm25("the moon and the sun", k=6, field="text").as_dict()
    animals = _knn_scores(tagged, "animals", 3, ENGLISH)
    sea = _knn_scores(tagged, "the sea", 2)
    summed = {
        doc: bm25.get(doc, 0.0) + 2.0 * animals.get(doc, 0.0) + sea.get(doc, 0.0)
        for doc in {*bm25, *animals, *sea}
    }
    best = sorted(summed, key=lambda doc: -summed[doc])[:size]
    assert _ids(results) == best
    assert results.scores.tolist() == pytest.approx([summed[d] for d in best], rel=1e-5)
    tree = parse_retriever(body)
    assert isinstance(tree, Cutoff) and isinstance(tree.retriever, Linear)
    assert tree.retriever.normalizers == ("none", "none", "none")
    assert tree.retriever.weights == (1.0, 2.0, 1.0)


@pytest.mark.parametrize("window_key", ["window_size", "rank_window_size"])
def test_rank_rrf_fuses_the_query_and_knn_as_the_rrf_retriever(
    index: LocalStore, window_key: str
) -> None:
    """Elasticsearch 8.8-8.13's rank.rrf (window_size, renamed rank_window_size in 8.14)."""
    knn = {"field": "embedding", "query_text": "moon", "k": 4, "num_candidates": 10, "boost": 3}
    body = {
        "query": {"match": {"*": "moon"}},
        "knn": knn,
        "rank": {"rrf": {window_key: 5, "rank_constant": 20}},
        "size": 5,
    }
    results = search(index, retriever=body)
    expected = rrf(
        [
            index.search_bm25("moon", k=5),
            index.search_vector(index.embed_queries(["moon"])[0], k=4),
        ],
        rank_constant=20,
    )
    assert results.ids == expected.ids.tolist()[:5]
    np.testing.assert_allclose(results.scores, expected.scores[:5], rtol=1e-6)
    # Elasticsearch's default window is 10, the search's default size: a size above it is
    # refused, as there.
    body["rank"] = {"rrf": {}}
    assert len(search(index, retriever={**body, "size": 10})) <= 10
    with pytest.raises(InvalidInputError, match="rank_window_size 10 is below the 11 hits"):
        parse_retriever({**body, "size": 11})
    queries = [{"query": {"match": {field: "moon"}}} for field in ("title", "text")]
    subs = {"sub_searches": queries, "rank": {"rrf": {}}}
    both = rrf([index.search_bm25("moon", k=10, field=f) for f in ("title", "text")])
    assert search(index, retriever=subs).ids == both.ids.tolist()[:10]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"retriever": {"standard": {"query": {"match": {"text": "x"}}}},
          "query": {"match": {"text": "x"}}},
         "search body: 'query' cannot be given beside 'retriever'"),
        ({"retriever": {"standard": {"query": {"match": {"text": "x"}}}}, "knn": {}},
         "search body: 'knn' cannot be given beside 'retriever'"),
        ({"query": {"match": {"text": "x"}}, "rank": {"rrf": {}}},
         "rank.rrf fuses at least 2 result sets"),
        ({"query": {"match": {"text": "x"}}, "knn": {"query_text": "x"},
          "rank": {"rrf": {"window_size": 5, "rank_window_size": 5}}},
         "give rank_window_size or window_size"),
        ({"query": {"match": {"text": "x"}}, "knn": {"query_text": "x"}, "rank": {"linear": {}}},
         "rank: unsupported key(s) 'linear'"),
        ({"sub_searches": [{"query": {"match": {"text": "x"}}}]},
         'sub_searches are fused by rank only: add "rank": {"rrf": {}}'),
        ({"query": {"match": {"text": "x"}}, "sub_searches": [], "rank": {"rrf": {}}},
         "give query or sub_searches, not both"),
        ({"query": {"match": {"text": "x"}}, "knn": [], "size": 3},
         "knn must be a knn search object or a non-empty list"),
        ({"knn": [{"query_text": "x", "boost": -1}]}, "knn[0].boost must be a number from 0"),
        ({"knn": {"query_text": "x", "inner_hits": {}}, "size": 2},
         "knn: unsupported key(s) 'inner_hits'"),
        ({"query": {"match_phrase": {"lang": "en"}}},
         "query: 'match_phrase' is not a supported filter"),
        ({"query": {"bool": {"must": {"match": {"text": "x"}}, "filter": {"prefix": {"a": "b"}}}}},
         "query.bool.filter[0]: 'prefix' is not a supported filter"),
        ({"query": {"match": {"text": "x"}}, "highlight": {}},
         "highlight needs fields to highlight"),
        ({"query": {"match": {"text": "x"}}, "from": -5},
         "search body from must be a non-negative integer"),
        ({"query": {"match": {"text": "x"}}, "from": 9995, "size": 10},
         "search body from + size (9,995 + 10 = 10,005) is above 10,000"),
    ],
)  # fmt: skip
def test_classic_bodies_are_refused_naming_the_key(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        parse_retriever(body)


def test_a_classic_knn_names_a_vector_field_as_the_knn_retriever_does(index: LocalStore) -> None:
    """LangChain's default vector field is "vector": refused as in a knn retriever, naming
    the index's own."""
    knn = {"field": "vector", "query_text": "moon", "k": 2, "num_candidates": 10}
    for body in ({"knn": knn, "size": 2}, {"retriever": {"knn": knn}, "size": 2}):
        with pytest.raises(InvalidInputError, match="knn field 'vector' is not a vector field"):
            search(index, retriever=body)


@pytest.fixture(scope="module")
def shelf(tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    """30 embedded documents that all match "moon tide": two pages of 10 and more."""
    store = create_index("shelf", home=tmp_path_factory.mktemp("shelf"))
    store.upsert(
        [
            {
                "id": f"d{i}",
                "title": f"Note {i}",
                "text": "the moon " * (i % 7 + 1) + "pulls the tide " * (i % 3 + 1) + "x" * i,
            }
            for i in range(30)
        ]
    )
    return store


class LengthScorer:
    """A stand-in re-ranking model: longer documents score higher (one order, no ties)."""

    name = "length"

    def score(self, query: str, documents: list[str]) -> np.ndarray:
        return np.array([len(d) / 1000 for d in documents], dtype=np.float32)


PAGED_TREES = {
    "bm25": BM25(),
    "dense": Knn(),
    "hybrid": BM25() | Knn(),
    "reranked": (BM25() | Knn()) >> Rerank(LengthScorer(), window=30),
}


@pytest.mark.parametrize("name", PAGED_TREES)
def test_page_two_is_hits_11_to_20_of_the_search_for_20(shelf: LocalStore, name: str) -> None:
    """A search UI's "page 2" (Elasticsearch's from: 10, size: 10) was refused ("paging is not
    supported"); offset=10 now returns hits 11-20 of the same search for 20, ranked 11 to 20,
    each with its first-stage rank and score as they were."""
    tree = PAGED_TREES[name]
    top20 = search(shelf, "moon tide", retriever=tree, k=20)
    page2 = search(shelf, "moon tide", retriever=tree, k=10, offset=10)
    assert len(top20) == 20 and page2.ids == top20.ids[10:]
    assert page2.scores.tolist() == top20.scores[10:].tolist()
    assert [hit.rank for hit in page2] == list(range(11, 21))
    assert [dataclasses.replace(hit, rank=0) for hit in page2] == [
        dataclasses.replace(hit, rank=0) for hit in top20.hits[10:]
    ]
    assert page2.ranked == 20 and top20.ranked == 20
    assert tree.search(shelf, "moon tide", k=10, offset=10).ids == page2.ids


def test_a_search_body_pages_over_its_top_window_as_elasticsearch(shelf: LocalStore) -> None:
    """A _search body's from: its page is the top window's hits from there (fewer, or none,
    where the page reaches past the window, as Elasticsearch's rrf documents it); only a
    size above the window is refused."""
    children = [{"standard": {"query": {"match": {f: "moon tide"}}}} for f in ("title", "text")]
    children.append({"knn": {"query_text": "moon tide"}})
    fusion = {"rrf": {"retrievers": children, "rank_window_size": 15}}
    whole = search(shelf, retriever={"retriever": fusion, "size": 15})
    page = search(shelf, retriever={"retriever": fusion, "size": 10, "from": 10})
    assert page.ids == whole.ids[10:] and [hit.rank for hit in page] == list(range(11, 16))
    assert page.scores.tolist() == whole.scores[10:].tolist()
    past = search(shelf, retriever={"retriever": fusion, "size": 10, "from": 20})
    assert len(past) == 0 and past.ranked == 15
    assert search(shelf, retriever=fusion, k=5, offset=10).ids == whole.ids[10:]
    with pytest.raises(InvalidInputError, match="rank_window_size 15 is below the 20 hits"):
        search(shelf, retriever={"retriever": fusion, "size": 20, "from": 10})
    classic = {"query": {"match": {"text": "moon tide"}}, "size": 10}
    assert (
        search(shelf, retriever={**classic, "from": 10}).ids
        == search(shelf, retriever={**classic, "size": 20}).ids[10:]
    )
    with pytest.raises(InvalidInputError, match="offset=5 and the search body's from 10"):
        search(shelf, retriever={**classic, "from": 10}, offset=5)
    with pytest.raises(InvalidInputError) as deep:
        search(shelf, "moon", k=10, offset=9_991)
    assert str(deep.value).startswith(
        "offset + k (9,991 + 10 = 10,001) is above 10,000, the deepest hit a page reaches "
        "(Elasticsearch's index.max_result_window)"
    )
    for bad in (-1, 1.5, True):
        with pytest.raises(InvalidInputError, match="offset must be a non-negative integer"):
            search(shelf, "moon", offset=bad)  # type: ignore[arg-type]


def test_a_k_above_a_search_bodys_own_size_is_refused(shelf: LocalStore) -> None:
    """search(retriever={..., "size": 4}, k=6) returned the body's 4 hits without a word (an
    offset beside a body's from was already refused); k up to the size is taken."""
    classic = {"query": {"match": {"text": "moon tide"}}, "size": 4}
    assert len(search(shelf, retriever=classic)) == 4
    assert search(shelf, retriever=classic, k=3).ids == search(shelf, retriever=classic).ids[:3]
    with pytest.raises(InvalidInputError, match=r"^k 6 is above the search body's size 4"):
        search(shelf, retriever=classic, k=6)
    paged = {**classic, "from": 2}  # hits 3-6
    assert search(shelf, retriever=paged, k=4).ids == search(shelf, retriever=paged).ids
    with pytest.raises(InvalidInputError, match=r"^k 5 is above the search body's size 4"):
        search(shelf, retriever=paged, k=5)


@pytest.mark.parametrize("sized", [True, False], ids=["size", "no-size"])
def test_a_classic_query_and_knn_body_pages_over_the_whole_sum(
    shelf: LocalStore, sized: bool
) -> None:
    """LangChain's hybrid body (query + knn) with from: 10 returned no hits, as its sum was
    cut at a window of size hits; Elasticsearch pages over the whole sum, as a query does."""
    knn = {"field": "embedding", "query_text": "moon tide", "k": 5, "num_candidates": 20}
    body: dict[str, Any] = {"query": {"match": {"text": "moon tide"}}, "knn": knn}
    top20 = search(shelf, retriever={**body, "size": 20})
    page = search(shelf, retriever={**body, "from": 10, **({"size": 10} if sized else {})})
    assert len(top20) == 20 and page.ids == top20.ids[10:]
    assert page.scores.tolist() == top20.scores[10:].tolist()
    assert [hit.rank for hit in page] == list(range(11, 21)) and page.ranked == 20


def test_an_offset_pages_a_search_body_that_gives_a_size_and_no_from(shelf: LocalStore) -> None:
    """offset=10 beside a _search body saying "size": 10 (and no from) returned no hits: the
    body's size cut the ranking at 10 before the page began; it is now that page's size, as
    if the body said from."""
    query = {"match": {"text": "moon tide"}}
    top20 = search(shelf, retriever={"query": query, "size": 20})
    for body in ({"query": query, "size": 10}, {"retriever": {"standard": {"query": query}},
                                                 "size": 10}):  # fmt: skip
        page = search(shelf, retriever=body, offset=10)
        assert page.ids == top20.ids[10:] and [hit.rank for hit in page] == list(range(11, 21))
        assert search(shelf, retriever=json.dumps(body), offset=10).ids == page.ids


def test_search_highlights_the_match_queries_words(index: LocalStore, tmp_path: Path) -> None:
    """highlight= (or a _search body's): each hit's fragments per field, from the terms of
    the match queries that searched that field (Elasticsearch's require_field_match), stemmed
    as BM25 reads them; a knn alone has its query's words highlighted."""
    results = search(index, "moons pulling", highlight="text", k=2)
    assert results[0].id == "tides"
    assert results[0].highlight == {
        "text": ["The <em>moon</em>'s gravity <em>pulls</em> the oceans and makes the tides."]
    }
    assert results[0].to_dict()["highlight"] == results[0].highlight
    assert "highlight" not in search(index, "moon", k=1)[0].to_dict()  # none asked
    titled = {"multi_match": {"query": "tides", "fields": ["title"]}}
    body = {"query": titled, "highlight": {"fields": {"*": {}}}, "_source": False}
    (hit,) = search(index, None, retriever=body)
    assert hit.document is None and hit.highlight == {"title": ["<em>Tides</em>"]}
    loose = {**body, "highlight": {"fields": {"*": {}}, "require_field_match": False}}
    (hit,) = search(index, None, retriever=loose)
    assert hit.highlight == {
        "title": ["<em>Tides</em>"],
        "text": ["The moon's gravity pulls the oceans and makes the <em>tides</em>."],
    }
    dense = search(index, "capital France", retriever=Knn(), k=1, highlight=["text"])
    assert dense[0].highlight == {
        "text": ["Paris is the <em>capital</em> of <em>France</em>, on the river Seine."]
    }
    # Fields of text only: an object's repr or a number has no words of the document's.
    nested = create_index("nested", home=tmp_path, embedding_model=None)
    nested.upsert([{"id": "n", "text": "tides", "meta": {"tides": 1}, "year": 2024}])
    fields = {"fields": ["text", "meta", "year", "meta.tides"], "require_field_match": False}
    (hit,) = search(nested, "tides 2024", highlight=fields)
    assert hit.highlight == {"text": ["<em>tides</em>"]}
    with pytest.raises(InvalidInputError, match="highlight is given both"):
        search(index, None, retriever=body, highlight="text")
    with pytest.raises(InvalidInputError, match="number_of_fragments"):
        search(index, "moon", highlight={"fields": {"text": {"number_of_fragments": -1}}})


def test_a_list_fields_values_are_highlighted_apart(tmp_path: Path) -> None:
    """A field holding a list of strings: each value cut apart, as Elasticsearch cuts a
    multi-valued field, so no fragment joins two values (or shows a value without a match);
    number_of_fragments 0 returns each matching value whole."""
    shelf = create_index("shelf", home=tmp_path, fields=("text", "notes"), embedding_model=None)
    notes = ["tides follow the moon", "unrelated remark", "the sea rises with tides"]
    shelf.upsert([{"id": "n", "text": "coasts", "notes": notes}])
    expected = ["<em>tides</em> follow the moon", "the sea rises with <em>tides</em>"]
    for options in ({}, {"number_of_fragments": 0}):
        (hit,) = search(shelf, "tides", highlight={"fields": {"notes": options}})
        assert hit.highlight == {"notes": expected}, options
    (hit,) = search(shelf, "tides", highlight={"fields": {"notes": {"number_of_fragments": 1}}})
    assert hit.highlight == {"notes": expected[:1]}
    nothing = {"fields": {"notes": {"no_match_size": 10}}}
    (hit,) = search(shelf, "coasts", highlight=nothing)
    assert hit.highlight == {"notes": ["tides"]}  # the first value's start


def test_a_semantic_highlight_shows_the_windows_the_reranker_scored_best(
    tmp_path: Path, reranker: Any
) -> None:
    """type "semantic": a long document's windows best first, by the re-ranker's own window
    scores (of the field it read; the part within a field where it read every text field);
    a tree that re-ranks nothing is refused rather than highlighted some other way."""
    filler = "The city council discussed parking fees and road repairs. " * 60
    text = filler + "Fleas are small wingless insects that feed on blood. " + filler
    store = create_index("long", home=tmp_path, embedding_model=None)
    store.upsert([{"id": "long", "title": "Council notes", "text": text}, *DOCS])
    semantic = {"fields": {"text": {"type": "semantic", "number_of_fragments": 2}}}
    for field in ("text", "*"):
        tree = TextSimilarityReranker(BM25(), field=field, inference_id=reranker)
        (hit,) = search(store, "what is a flea", retriever=tree, k=1, highlight=semantic)
        read = store.rerank_text_of(store.get(["long"])[0], field)  # "*": the title first
        windows = reranker.rerank("what is a flea", [read])[0].window_scores
        best_two = sorted(windows, key=lambda window: -window[2])[:2]
        inside = len(read) - len(text)  # where the text field starts in what was read
        parts = [read[max(s, inside) : e].strip() for s, e, _ in best_two]
        assert hit.highlight == {"text": parts}
        assert "Fleas are small" in hit.highlight["text"][0]
    both = {"fields": {"title": {"type": "semantic"}, "text": {}}}
    tree = TextSimilarityReranker(BM25(), field="*", inference_id=reranker)
    (hit,) = search(store, "what is a flea", retriever=tree, k=1, highlight=both)
    assert hit.highlight is not None and hit.highlight["title"] == ["Council notes"]
    assert "<em>Fleas</em>" in hit.highlight["text"][0]  # lexical beside it
    with pytest.raises(InvalidInputError, match="re-ranks nothing"):
        search(store, "fleas", highlight=semantic)


FACET_DOCS = [
    {
        "id": f"d{n}",
        "text": "moon" if n % 2 else "sun",
        "source": ["wiki", "docs", "blog"][n % 3],
        "year": 2020 + n % 4,
    }
    for n in range(30)
]


def _source_buckets(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    counts: dict[str, int] = {}
    for doc in docs:
        counts[doc["source"]] = counts.get(doc["source"], 0) + 1
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [{"key": key, "doc_count": n} for key, n in ordered]


def test_aggregations_read_every_document_the_tree_matches(tmp_path: Path) -> None:
    """Not the page: every document a match shares a term with, a filter passes, or any
    retriever of an rrf matches (past its rank_window_size), as Elasticsearch aggregates."""
    store = create_index("facets", home=tmp_path)
    store.upsert(FACET_DOCS)
    aggs = {"sources": {"terms": {"field": "source"}}, "first": {"min": {"field": "year"}}}
    moon = [doc for doc in FACET_DOCS if doc["text"] == "moon"]
    results = search(store, "moon", k=2, aggs=aggs)
    assert len(results) == 2 and results.matched == len(moon) == 15
    assert results.aggregations is not None
    assert results.aggregations["sources"]["buckets"] == _source_buckets(moon)
    assert results.aggregations["first"] == {"value": 2021.0}  # odd n: 2021 and 2023
    assert results.to_dict()["aggregations"] == results.aggregations

    wiki = {"standard": {"query": {"term": {"source": "wiki"}}}}
    only = search(store, None, retriever=wiki, k=0, aggs=aggs)
    assert only.hits == [] and only.matched == 10
    assert only.aggregations is not None
    assert only.aggregations["sources"]["buckets"] == [{"key": "wiki", "doc_count": 10}]

    match = {"standard": {"query": {"match": {"text": "moon"}}}}
    fused = {"rrf": {"retrievers": [match, wiki], "rank_window_size": 3}}
    union = [doc for doc in FACET_DOCS if doc["text"] == "moon" or doc["source"] == "wiki"]
    results = search(store, None, retriever=fused, k=3, aggs=aggs)
    assert len(results) == 3 and results.matched == len(union) == 20
    assert results.aggregations is not None
    assert results.aggregations["sources"]["buckets"] == _source_buckets(union)
    # A search filter holds for the aggregated documents too.
    blog = search(store, "moon", aggs=aggs, filter={"term": {"source": "blog"}})
    assert blog.aggregations is not None and blog.matched == 5
    assert blog.aggregations["sources"]["buckets"] == [{"key": "blog", "doc_count": 5}]


def test_a_knn_search_aggregates_its_k_nearest(index: LocalStore) -> None:
    """Elasticsearch aggregates a knn search's top k: here more than the one hit returned."""
    titles = {"titles": {"terms": {"field": "title"}}}
    results = search(index, None, retriever=Knn(text="moon", k=2), k=1, aggs=titles)
    nearest = search(index, None, retriever=Knn(text="moon", k=2), k=2)
    assert results.matched == 2 and results.aggregations is not None
    keys = {bucket["key"] for bucket in results.aggregations["titles"]["buckets"]}
    assert keys == {hit.document["title"] for hit in nearest if hit.document}


def test_unsupported_aggregations_are_refused_naming_what_is(index: LocalStore) -> None:
    for aggs, said in [
        ({"p": {"geo_bounds": {"field": "year"}}}, "'geo_bounds' is not a supp"),
        ({"h": {"histogram": {"field": "year"}}}, "interval must be a number above 0"),
        ({"h": {"histogram": {"field": "year", "interval": 2, "offset": 2}}}, "offset must be"),
        ({"d": {"date_histogram": {"field": "year"}}}, "takes one of calendar_interval"),
        ({"d": {"date_histogram": {"field": "y", "interval": "1d"}}}, "removed name"),
        (
            {"d": {"date_histogram": {"field": "y", "calendar_interval": "2d"}}},
            "'2d' is not a calendar interval; give one of minute, 1m",
        ),
        ({"d": {"date_histogram": {"field": "y", "fixed_interval": "1M"}}}, "not a fixed interv"),
        (
            {"d": {"date_histogram": {"field": "y", "fixed_interval": "1d", "time_zone": "Mars"}}},
            "'Mars' is not a time zone",
        ),
        (
            {"d": {"date_histogram": {"field": "y", "fixed_interval": "1d", "format": "dd/MM"}}},
            "'dd/MM' not supported",
        ),
        (
            {
                "d": {
                    "date_histogram": {
                        "field": "y",
                        "calendar_interval": "day",
                        "extended_bounds": {"min": "yesterday"},
                    }
                }
            },
            "extended_bounds.min: 'yesterday' is not a date",
        ),
        ({"t": {"avg": {"field": "n"}, "aggs": {}}}, "avg holds no sub-aggregations"),
        (
            {"t": {"terms": {"field": "title"}, "aggs": {}, "aggregations": {}}},
            "gives both aggs and aggregations",
        ),
        ({"p": {"percentiles": {"field": "n", "percents": [101]}}}, "percents must be"),
        ({"e": {"extended_stats": {"field": "n", "sigma": -1}}}, "sigma must be a number"),
        ({"h": {"histogram": {"field": "n", "interval": 1, "missing": "x"}}}, "missing must"),
        ({"t": {"terms": {"field": "title", "size": 0}}}, "size must be a whole number"),
        ({"t": {"terms": {"field": "title", "order": {"_count": "up"}}}}, "order by _count"),
        ({"r": {"range": {"field": "year", "ranges": [{}]}}}, "takes from and/or to"),
        ({"m": {"avg": {}}}, 'takes a "field"'),
        (["terms"], "must be a JSON object of named aggregations"),
    ]:
        with pytest.raises(InvalidInputError, match=re.escape(said)):
            search(index, "moon", aggs=aggs)  # type: ignore[arg-type]


DATED_FACET_DOCS = [
    {"id": "a", "text": "moon", "published": "2024-01-31T23:30:00Z", "price": 7},
    {"id": "b", "text": "moon", "published": ["2024-02-01T00:10:00Z", "2024-02-03"], "price": 12},
    {"id": "c", "text": "moon", "published": 1714521600000, "price": [31, 38]},  # 2024-05-01
    {"id": "d", "text": "sun", "published": "2024-03-15", "price": 2},
    {"id": "e", "text": "moon", "published": "not a date", "price": "9"},
]


def test_histograms_and_stats_bucket_what_the_search_matches(tmp_path: Path) -> None:
    """Documents per month (in a time zone, empty months listed), prices in steps of 10, and
    stats: the documents matching "moon", a document with two values in a bucket once."""
    store = create_index("dated", home=tmp_path)
    store.upsert(DATED_FACET_DOCS)
    aggs = {
        "months": {"date_histogram": {"field": "published", "calendar_interval": "month"}},
        "paris": {
            "date_histogram": {
                "field": "published",
                "calendar_interval": "1M",
                "time_zone": "Europe/Paris",
                "format": "yyyy-MM-dd",
                "min_doc_count": 1,
            }
        },
        "prices": {"histogram": {"field": "price", "interval": 10}},
        "price_stats": {"stats": {"field": "price"}},
    }
    results = search(store, "moon", k=1, aggs=aggs)
    assert results.aggregations is not None and results.matched == 4
    months = results.aggregations["months"]["buckets"]
    assert [(b["key_as_string"], b["doc_count"]) for b in months] == [
        ("2024-01-01T00:00:00.000Z", 1), ("2024-02-01T00:00:00.000Z", 1),
        ("2024-03-01T00:00:00.000Z", 0), ("2024-04-01T00:00:00.000Z", 0),
        ("2024-05-01T00:00:00.000Z", 1),
    ]  # fmt: skip
    assert months[0]["key"] == 1704067200000
    paris = results.aggregations["paris"]["buckets"]  # 23:30 UTC on Jan 31 is February there
    assert [(b["key_as_string"], b["doc_count"]) for b in paris] == [
        ("2024-02-01", 2), ("2024-05-01", 1)
    ]  # fmt: skip
    assert paris[0]["key"] == 1706742000000  # midnight in Paris, 23:00 UTC
    prices = results.aggregations["prices"]["buckets"]
    assert prices == [{"key": 0.0, "doc_count": 1}, {"key": 10.0, "doc_count": 1},
        {"key": 20.0, "doc_count": 0}, {"key": 30.0, "doc_count": 1}]  # fmt: skip
    stats = results.aggregations["price_stats"]
    assert stats == {"count": 4, "min": 7.0, "max": 38.0, "avg": 22.0, "sum": 88.0}
    nothing = search(store, "moon", k=0, aggs={"s": {"stats": {"field": "nope"}}})
    assert nothing.aggregations == {
        "s": {"count": 0, "min": None, "max": None, "avg": None, "sum": 0.0}
    }


def test_metrics_count_each_number_a_document_repeats_buckets_the_document_once(
    tmp_path: Path,
) -> None:
    """As Elasticsearch's doc values hold them: [3, 3] sums to 6 and is two values (a
    keyword's ["u", "u"] one), and is one document in the bucket of 3."""
    store = create_index("repeats", home=tmp_path)
    store.upsert([{"id": "a", "text": "x", "n": [3, 3], "s": ["u", "u"]},
        {"id": "b", "text": "y", "n": 4}])  # fmt: skip
    aggs = {kind: {kind: {"field": "n"}} for kind in ("sum", "value_count", "avg", "stats")}
    aggs |= {"strings": {"value_count": {"field": "s"}}, "terms": {"terms": {"field": "n"}}}
    aggs |= {"steps": {"histogram": {"field": "n", "interval": 10}}}
    found = store.aggregate(aggs)
    assert found["sum"] == {"value": 10.0} and found["value_count"] == {"value": 3}
    assert found["avg"] == {"value": pytest.approx(10 / 3)}
    assert found["stats"] == {"count": 3, "min": 3.0, "max": 4.0, "avg": pytest.approx(10 / 3),
        "sum": 10.0}  # fmt: skip
    assert found["strings"] == {"value": 1}
    assert found["terms"]["buckets"] == [{"key": 3, "doc_count": 1}, {"key": 4, "doc_count": 1}]
    assert found["steps"]["buckets"] == [{"key": 0.0, "doc_count": 2}]


def test_a_histogram_of_too_many_buckets_is_refused_naming_the_interval(tmp_path: Path) -> None:
    store = create_index("dated", home=tmp_path)
    store.upsert(DATED_FACET_DOCS)
    minutes = {"m": {"date_histogram": {"field": "published", "fixed_interval": "1m"}}}
    with pytest.raises(InvalidInputError, match="fixed_interval 1m makes more than 65,536 buck"):
        search(store, "moon", aggs=minutes)
    minutes = {"m": {"date_histogram": {"field": "published", "calendar_interval": "1m"}}}
    with pytest.raises(InvalidInputError, match="calendar_interval minute makes more than 65,5"):
        search(store, "moon", aggs=minutes)
    cents = {"c": {"histogram": {"field": "price", "interval": 0.0001}}}
    with pytest.raises(
        InvalidInputError, match=re.escape("histogram of 'price': interval 0.0001 makes")
    ):
        search(store, "moon", aggs=cents)
    # Only the buckets holding documents: as many as the values of the documents matched.
    sparse = {"m": {"date_histogram": {"field": "published", "fixed_interval": "1m",
        "min_doc_count": 1}}}  # fmt: skip
    found = search(store, "moon", k=0, aggs=sparse).aggregations
    assert found is not None and len(found["m"]["buckets"]) == 4  # "moon": a, b (two), c


# Two dates of one day in each document (one more over midnight, one more holding an instant
# twice, as text and as epoch milliseconds): a day's documents, each counted once.
MULTI_DATED_DOCS = [
    *(
        {
            "id": f"d{day}",
            "text": "x",
            "published": [f"2024-01-{day:02d}T{h}Z" for h in ("01:00", "05:00")],
        }
        for day in range(1, 29)
    ),
    {"id": "night", "text": "x", "published": ["2024-01-01T23:00Z", "2024-01-02T01:00Z"]},
    {
        "id": "twice",
        "text": "x",
        "published": ["2024-01-03T12:00:00Z", 1704283200000, "2024-01-03T13:00Z"],
    },
]
DAILY = {"days": {"date_histogram": {"field": "published", "calendar_interval": "day"}}}


def recorded(calls: list[str], name: str, method: Any) -> Any:
    """``method``, noting ``name`` in ``calls`` at each call."""

    def call(*args: Any) -> Any:
        calls.append(name)
        return method(*args)

    return call


def test_a_daily_histogram_of_documents_of_several_dates_asks_the_store_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A document holding two dates of a day counts there once, found by one store call for
    every bucket: not a count per day of several dates (a year of days: 365 queries)."""
    store = create_index("multi", home=tmp_path)
    store.upsert(MULTI_DATED_DOCS)
    calls: list[str] = []
    for name in ("value_counts", "count_matching"):
        monkeypatch.setattr(store, name, recorded(calls, name, getattr(store, name)))
    days = store.aggregate(DAILY)["days"]["buckets"]
    assert [b["doc_count"] for b in days] == [2, 2, 2] + [1] * 25
    assert days[0]["key_as_string"] == "2024-01-01T00:00:00.000Z" and len(days) == 28
    assert calls == ["value_counts"]  # and one call of value_sets: no count_matching per day
    # The base class's default (reading the documents) finds the embedded table's sets.
    every = parse_filter({"match_all": {}})
    expected = sorted(sorted(held) for held in Store.value_sets(store, "published", every))
    assert sorted(sorted(held) for held in store.value_sets("published", every)) == expected
    numbers = [value for held in expected for value in held if value[0] == "number"]
    assert len(expected) == 30 and numbers == [("number", 1704283200000)]


# --- one search over several indexes ----------------------------------------------------------
# "shared" holds an "eclipse" of its own: one id in two indexes, two hits.
SHARED_DOCS = [
    *DOCS[3:],
    {"id": "eclipse", "title": "Moon", "text": "The moon, the moon, the moon."},
]


@pytest.fixture(scope="module")
def several(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with "sky" (the first half of DOCS), "shared", "rest" (the second half of DOCS)
    and "union" (all of DOCS)."""
    home = tmp_path_factory.mktemp("several")
    named = {"sky": DOCS[:3], "shared": SHARED_DOCS, "rest": DOCS[3:], "union": DOCS}
    for name, docs in named.items():
        store = create_index(name, home=home)
        store.upsert(docs)
        store.close()
    return home


def _found(results: Any) -> list[tuple[str | None, str]]:
    return [(hit.index, hit.id) for hit in results]


def test_one_id_in_two_indexes_is_two_hits_each_with_its_own_document(several: Path) -> None:
    results = search("sky,shared", "moon", k=10, home=several)
    assert ("sky", "eclipse") in _found(results) and ("shared", "eclipse") in _found(results)
    documents = {(hit.index, hit.id): hit.document for hit in results}
    assert documents[("shared", "eclipse")] == {"title": "Moon", "text": SHARED_DOCS[-1]["text"]}
    assert documents[("sky", "eclipse")] == {"title": DOCS[0]["title"], "text": DOCS[0]["text"]}
    assert results[0].to_dict()["index"] == "shared"  # three moons: the best BM25 hit
    # A search of one index names it in each hit too.
    assert {hit.index for hit in search("sky", "moon", home=several)} == {"sky"}


def test_a_knn_over_two_indexes_ranks_as_one_index_holding_both(several: Path) -> None:
    """Cosine similarity is per document: the merged knn is the knn of the union, where no
    id repeats (DOCS split between "sky" and "rest")."""
    union = search("union", "the moon hides the sun", retriever=Knn(k=5), k=5, home=several)
    merged = search("sky,rest", "the moon hides the sun", retriever=Knn(k=5), k=5, home=several)
    assert [hit.id for hit in merged] == union.ids and len(merged) == 5
    np.testing.assert_allclose(merged.scores, union.scores, rtol=1e-5)
    assert [hit.first_stage_rank for hit in merged] == [1, 2, 3, 4, 5]


def test_a_reranker_reads_the_merged_window_of_every_index(several: Path) -> None:
    tree = TextSimilarityReranker(
        RRF((BM25(), Knn())), inference_id=CountingScorer(), rank_window_size=20
    )
    results = search("sky,shared", "moon", retriever=tree, k=3, home=several, highlight="text")
    assert _found(results)[0] == ("shared", "eclipse")  # four moons (title too) outscore one
    assert set(_found(results)[1:]) == {("sky", "eclipse"), ("sky", "tides")}
    assert [hit.rerank_score for hit in results] == pytest.approx([0.4, 0.1, 0.1])
    for hit in results:  # each hit highlighted from its own document
        assert hit.highlight is not None and "<em>moon</em>" in hit.highlight["text"][0]


def test_patterns_and_every_index_name_the_indexes_searched(several: Path) -> None:
    def indexes(spec: str) -> set[str | None]:
        return {hit.index for hit in search(spec, "moon animals", k=20, home=several)}

    assert indexes("s*") == {"sky", "shared"}
    assert indexes("_all") == indexes("*") == {"sky", "shared", "rest", "union"}
    assert indexes("*,-union,-r*") == {"sky", "shared"}
    assert indexes("sky,sky") == {"sky"}
    with pytest.raises(InvalidInputError, match="starts with an exclusion"):
        indexes("-sky,s*")  # it left out nothing: s* added sky back
    # A pattern matching nothing finds nothing; a named index that is not there is an error.
    assert len(search("nothing-*", "moon", home=several)) == 0
    with pytest.raises(IndexNotFoundError, match=r"index 'nope' .* not found"):
        search("sky,nope", "moon", home=several)
    with pytest.raises(InvalidInputError, match="empty name"):
        search("sky,", "moon", home=several)
    with pytest.raises(InvalidInputError, match="search_many reads one index"):
        search_many("sky,shared", ["moon"], home=several)


def test_a_count_over_several_indexes_sums_and_aggregations_merge(several: Path) -> None:
    counted = search("sky,shared", "moon", k=0, home=several)
    alone = [search(name, "moon", k=0, home=several).matched for name in ("sky", "shared")]
    assert counted.matched == sum(n for n in alone if n is not None) == 3
    aggs = {"t": {"terms": {"field": "title", "size": 2}}, "n": {"cardinality": {"field": "id"}}}
    split = search("sky,rest", "moon animals", home=several, aggs=aggs)
    whole = search("union", "moon animals", home=several, aggs=aggs)
    assert split.aggregations == whole.aggregations and split.matched == whole.matched == 4


def test_a_field_only_some_of_several_indexes_have_finds_nothing_in_the_others(
    tmp_path: Path,
) -> None:
    """As Elasticsearch searches an unmapped field: a match on "body" over "sky" (title, text)
    and "notes" (body) finds the notes; a field no index has is still refused."""
    with create_index("sky", home=tmp_path, embedding_model=None) as sky:
        sky.upsert(DOCS[:3])
    with create_index("notes", home=tmp_path, fields=("body",), embedding_model=None) as notes:
        notes.upsert([{"id": "n1", "body": "the moon at night"}, {"id": "n2", "body": "cats"}])

    def body(query: dict[str, Any], k: int = 10) -> Any:
        return search("sky,notes", None, retriever={"standard": {"query": query}}, k=k,
            home=tmp_path)  # fmt: skip

    assert _found(body({"match": {"body": "moon"}})) == [("notes", "n1")]
    assert body({"match": {"body": "moon"}}, k=0).matched == 1
    both = body({"multi_match": {"query": "moon", "fields": ["body", "text"]}})
    assert set(_found(both)) == {("notes", "n1"), ("sky", "eclipse"), ("sky", "tides")}
    with pytest.raises(InvalidInputError, match="index 'sky' has no field 'nope'"):
        body({"match": {"nope": "moon"}})


def test_a_knn_over_several_indexes_finds_nothing_in_one_without_embeddings(
    tmp_path: Path,
) -> None:
    """A knn (or hybrid) over "sky" (embedded) and "plain" (BM25 only) was refused ("index
    'plain' has no embeddings"); as Elasticsearch's knn matches nothing in an index without
    the vector field, it answers sky's nearest, and BM25 still reads both. None embedded, or
    another vector field, is still refused."""
    with create_index("sky", home=tmp_path) as sky:
        sky.upsert(DOCS[:3])
    for name, docs in {"plain": DOCS[3:], "bare": DOCS[:1]}.items():
        with create_index(name, home=tmp_path, embedding_model=None) as store:
            store.upsert(docs)
    query = "the moon hides the sun"
    alone = search("sky", query, retriever=Knn(k=3), k=3, home=tmp_path)
    mixed = search("plain,sky", query, retriever=Knn(k=3), k=3, home=tmp_path)
    assert _found(mixed) == [("sky", i) for i in alone.ids] and len(mixed) == 3
    assert search("sky,plain", query, retriever=Knn(k=3), k=0, home=tmp_path).matched == 3
    hybrid = search("sky,plain", "moon animals", retriever=BM25() | Knn(), k=20, home=tmp_path)
    assert {hit.index for hit in hybrid} == {"sky", "plain"}
    with pytest.raises(InvalidInputError, match="not a vector field"):
        search("plain,sky", query, retriever=Knn(field="vec"), home=tmp_path)
    with pytest.raises(InvalidInputError, match="index 'plain' has no embeddings"):
        search("plain,bare", query, retriever=Knn(), home=tmp_path)


def test_a_pattern_matches_alias_names_too_as_in_elasticsearch(tmp_path: Path) -> None:
    """An alias "live" of index "v2": "liv*" (and "*e") search v2, as Elasticsearch expands a
    wildcard to aliases; an exclusion leaves out indexes by their own names."""
    for name, docs in {"v2": DOCS[:3], "other": DOCS[3:]}.items():
        with create_index(name, home=tmp_path, embedding_model=None) as store:
            store.upsert(docs)
    update_aliases([{"add": {"index": "v2", "alias": "live"}}], home=tmp_path)

    def indexes(spec: str) -> set[str | None]:
        return {hit.index for hit in search(spec, "moon animals", k=20, home=tmp_path)}

    assert indexes("liv*") == {"v2"}
    assert indexes("l*,o*") == indexes("*e,*r") == {"v2", "other"}
    assert indexes("liv*,-v2") == set()


def test_a_knn_over_several_indexes_matches_their_merged_k_nearest(tmp_path: Path) -> None:
    """Elasticsearch merges the shards' nearest into one top k: a knn with k 3 over two
    indexes matched (and aggregated) 6 documents, 3 of each; its count embeds nothing more
    and re-ranks nothing."""
    from tiny_models import HashingEmbedder

    embeds: list[int] = []

    class CountingEmbedder(HashingEmbedder):
        def embed(self, texts: Any) -> np.ndarray:
            embeds.append(len(texts))
            return super().embed(texts)

    options: dict[str, Any] = {"home": tmp_path, "embedding_model": "default"}
    first = create_index("first", embedder=CountingEmbedder(), **options)
    second = create_index("second", embedder=CountingEmbedder(), **options)
    first.upsert([{"id": f"a{n}", "text": "moon " * (1 + n % 4), "tag": "a"} for n in range(8)])
    second.upsert([{"id": f"b{n}", "text": f"moon sun {n}", "tag": "b"} for n in range(8)])
    knn = {"knn": {"field": "embedding", "query_text": "{{query}}", "k": 3, "num_candidates": 10}}
    embeds.clear()
    alone = search([first, second], "moon", retriever=knn)
    searched = len(embeds)
    aggs = {"tags": {"terms": {"field": "tag"}}}
    counted = search([first, second], "moon", retriever=knn, count_matches=True, aggs=aggs)
    assert len(alone) == 3 and counted.matched == 3
    assert sum(b["doc_count"] for b in counted.aggregations["tags"]["buckets"]) == 3
    assert len(embeds) == 2 * searched  # the counted search embedded as the search alone
    scorer = CountingScorer()
    calls: list[str] = []
    scorer.score = recorded(calls, "score", scorer.score)  # type: ignore[method-assign]
    reranked = TextSimilarityReranker(Knn(k=3), inference_id=scorer, rank_window_size=3)
    assert search([first, second], "moon", retriever=reranked, count_matches=True).matched == 3
    assert calls == ["score"]  # the total re-ranked nothing
