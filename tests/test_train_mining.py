"""Hard-negative mining: bi-encoder neighbours, plus BM25 word-overlap ones in hybrid mode."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from semrank.errors import InvalidInputError
from semrank.train._data import Collection, QueryGroup
from semrank.train._evaluate import random_order_ndcg
from semrank.train._mining import bm25_rankings, mine_collection, mine_negatives

PASSAGES = [
    "The capital of France is Paris, on the Seine.",  # 0: the positive
    "Paris Hilton opened a new hotel in the capital of Nevada.",  # 1: shares words only
    "Lyon is a large city in the south east of France.",  # 2: topically close
    "Photosynthesis turns light into chemical energy.",  # 3
    "Volcanoes erupt when magma reaches the surface.",  # 4
]


def _collection() -> Collection:
    group = QueryGroup(query="what is the capital of france paris", positive_ids=[0])
    return Collection(name="toy", passages=list(PASSAGES), groups=[group])


def _embeddings() -> tuple[np.ndarray, np.ndarray]:
    """Hand-made unit vectors: the 'bi-encoder' puts passage 2 near the query, 1 far away."""
    passages = np.array(
        [[1, 0, 0], [0, 0, 1], [0.9, 0.43, 0], [0.1, 0.9, 0.4], [0.2, 0.8, 0.5]], dtype=np.float32
    )
    passages /= np.linalg.norm(passages, axis=1, keepdims=True)
    query = np.array([[1, 0.1, 0]], dtype=np.float32)
    return query / np.linalg.norm(query), passages


def test_bm25_ranks_the_word_overlap_passages_first() -> None:
    ranking = bm25_rankings(_collection(), depth=5)[0].tolist()
    assert set(ranking[:2]) == {0, 1}
    assert 3 not in ranking and 4 not in ranking  # no shared term: never a BM25 hit


def test_dense_mining_follows_the_embeddings_only() -> None:
    query, passages = _embeddings()
    group = mine_negatives(_collection(), query, passages, depth=2)[0]
    assert group.positive_ids == [0]
    assert group.negative_ids == [2, 4]  # cosines 0.97, 0.29, 0.19, 0.10


def test_hybrid_mining_interleaves_bm25_negatives() -> None:
    query, passages = _embeddings()
    collection = _collection()
    lexical = bm25_rankings(collection, depth=5)
    group = mine_negatives(collection, query, passages, depth=2, lexical=lexical)[0]
    assert group.negative_ids == [2, 1]  # the dense neighbour, then BM25's word match
    assert 0 not in group.negative_ids


def test_unknown_mining_mode_is_named() -> None:
    with pytest.raises(InvalidInputError, match="'sparse'"):
        mine_collection(
            _collection(),
            encoder=None,
            tokenizer=None,
            encoder_id="x",
            depth=2,
            max_length=32,
            cache_dir=None,
            mining="sparse",
        )


def _mined(name: str, passages: list[str], groups: list[QueryGroup]) -> Any:
    """A mined collection with random embeddings (the teacher's scores are not under test)."""
    from semrank.train._mining import MinedCollection

    vectors = np.random.default_rng(0).normal(size=(len(passages), 3)).astype(np.float32)
    return MinedCollection(
        name=name,
        weight=1.0,
        passages=passages,
        groups=groups,
        query_embeddings=vectors[: len(groups)],
        passage_embeddings=vectors,
    )


def test_validation_lists_hold_at_most_the_candidates_asked_for() -> None:
    """A query with more positives than candidates sliced its negatives with a negative end:
    its list kept nearly every negative (55 for 20 asked)."""
    from semrank.train._sampling import split_validation

    passages = [f"passage {i}" for i in range(60)]
    groups = [
        QueryGroup(query=f"q{g}", positive_ids=list(range(25)), negative_ids=list(range(25, 60)))
        for g in range(4)
    ]
    mined = _mined("many", passages, groups)
    task, _ = split_validation(mined, queries=2, candidates=20, seed=0)
    assert [len(candidates) for candidates in task.candidates.values()] == [20, 20]
    # At most one positive in four: a list of positives alone rates every order 1.0.
    assert all(len(judged) == 5 for judged in task.qrels.values())
    assert random_order_ndcg(task, seed=0) < 0.8


def test_validation_lists_of_many_positives_tell_a_ranking_from_a_random_order() -> None:
    """Vaswani-like data (about 20 relevant per query): 13 of 30 validation lists held positives
    only, a random order scored above the teacher, and best/ was picked by noise."""
    from semrank.train._evaluate import ndcg_at_10
    from semrank.train._sampling import split_validation

    passages = [f"passage {i}" for i in range(200)]
    groups = [
        QueryGroup(
            query=f"q{g}",
            positive_ids=list(range(g, g + 22)),
            negative_ids=[i for i in range(200) if not g <= i < g + 22][:30],
        )
        for g in range(10)
    ]
    mined = _mined("vaswani-like", passages, groups)
    task, _ = split_validation(mined, queries=5, candidates=20, seed=0)
    perfect = {
        qid: {doc: float(doc in task.qrels[qid]) for doc, _ in candidates}
        for qid, candidates in task.candidates.items()
    }
    assert ndcg_at_10(task.qrels, perfect) == 1.0
    assert random_order_ndcg(task, seed=0) < 0.6


def test_a_damaged_mining_cache_is_mined_again_and_rewritten_whole(tiny_base, tmp_path) -> None:
    """A cache cut short (a full disk, a kill) was read as complete: every later run crashed."""
    pytest.importorskip("torch")
    from semrank.train._model import load_encoder

    encoder, tokenizer = load_encoder(tiny_base)
    options = dict(encoder=encoder, tokenizer=tokenizer, encoder_id="tiny", depth=3)
    first = mine_collection(_collection(), max_length=32, cache_dir=tmp_path, **options)
    (folder,) = tmp_path.iterdir()
    groups = folder / "groups.json"
    groups.write_text(groups.read_text()[:5])  # what a full disk left
    again = mine_collection(_collection(), max_length=32, cache_dir=tmp_path, **options)
    (folder / "queries.npy").write_bytes(b"")  # a kill at the first write: EOFError
    again = mine_collection(_collection(), max_length=32, cache_dir=tmp_path, **options)
    assert [g.negative_ids for g in again.groups] == [g.negative_ids for g in first.groups]
    np.testing.assert_array_equal(again.passage_embeddings, first.passage_embeddings)
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no partial folder left
    assert json.loads(groups.read_text())  # whole again


def test_mining_says_how_far_its_embedding_is(tiny_base, tmp_path, caplog) -> None:
    """Mining a large collection (100k pairs, a corpus=) embedded for an hour with nothing
    logged after "embedding N queries and M passages", in a log or at a terminal."""
    pytest.importorskip("torch")
    from semrank.train._mining import embed_texts
    from semrank.train._model import load_encoder

    encoder, tokenizer = load_encoder(tiny_base)
    caplog.set_level("INFO", logger="semrank.train")
    options = dict(encoder=encoder, tokenizer=tokenizer, encoder_id="tiny", depth=3)
    mine_collection(_collection(), max_length=32, cache_dir=tmp_path, **options)
    said = [record.getMessage() for record in caplog.records]
    assert any(line.startswith("mining toy: queries: 1/1 embedded (100%)") for line in said)
    assert any(line.startswith("mining toy: passages: 5/5 embedded (100%)") for line in said)
    caplog.clear()
    embed_texts(encoder, tokenizer, PASSAGES, max_length=32, batch_size=1, label="five")
    shares = [line.split("(")[1].split(")")[0] for line in caplog.messages]
    assert shares == ["20%", "40%", "60%", "80%", "100%"]  # a line per tenth reached
    caplog.clear()
    embed_texts(encoder, tokenizer, PASSAGES[:3], max_length=32, batch_size=1, label="three")
    shares = [line.split("(")[1].split(")")[0] for line in caplog.messages]
    assert shares == ["33%", "66%", "100%"]  # the share done: "1/3 (30%)" disagreed with 1/3


def test_mining_reads_queries_and_passages_with_the_prompts_search_uses(
    tiny_base, pairs_file, tmp_path
) -> None:
    """A base with sentence-transformers prompts (e5's "query: ") had its queries and passages
    mined bare: negatives and teacher scores came from vectors no search makes."""
    pytest.importorskip("torch")
    import dataclasses
    import shutil

    from semrank.models import resolve
    from semrank.runtime import load_embedder
    from semrank.train._loop import prepare_data
    from tiny_models import tiny_train_config

    base = shutil.copytree(tiny_base, tmp_path / "prompted")
    (base / "modules.json").write_text(json.dumps(_ST_MODULES))
    prompts = {"query": "tell me about the ", "document": "facts of "}
    (base / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts}))
    config = tiny_train_config(base, pairs_file, tmp_path / "run", val_queries=0)
    config = dataclasses.replace(config, teacher_encoders=((base, 1.0),))
    config.output.mkdir()
    (mined, *_), _, _ = prepare_data(config)
    search = load_embedder(resolve(base, kind="bi-encoder"), backend="onnx", warmup=False)
    queries = [group.query for group in mined.groups]
    expected = {True: search.embed_queries(queries), False: search.embed(mined.passages)}
    for vectors, teacher in [
        ({True: mined.query_embeddings, False: mined.passage_embeddings}, "mining"),
        ({True: mined.extra_teachers[0].query_embeddings,
          False: mined.extra_teachers[0].passage_embeddings}, "teacher"),
    ]:  # fmt: skip
        for query in (True, False):
            error = np.abs(vectors[query].astype(np.float32) - expected[query]).max()
            assert error < 0.03, (teacher, query)  # bf16 autocast, fp16 storage
    bare = search.embed(queries, prompted=False)
    assert np.abs(mined.query_embeddings.astype(np.float32) - bare).max() > 0.1


_ST_MODULES = [
    {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
    for i, (path, kind) in enumerate(
        [("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Normalize", "Normalize")]
    )
]
