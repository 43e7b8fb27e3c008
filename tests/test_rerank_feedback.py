"""Pseudo-relevance feedback: documents that resemble a query's best ones move up.

The reference is computed here with numpy from the blend's raw scores (feedback off) and the
embedding model's own embeddings, independently of ``semrank.rerank._feedback``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from semrank import CascadeConfig, Reranker
from semrank.errors import InvalidInputError, ModelLoadError
from semrank.models import resolve_embedding_model
from semrank.rerank._blend import write_blend
from semrank.rerank._feedback import FeedbackConfig
from semrank.runtime import load_embedder
from semrank.runtime._scorers import BiEncoderScorer

QUERY = "how do fleas live"
DOCS = [
    "Fleas are small wingless insects that feed on the blood of mammals.",
    "A flea lives on its host and lays eggs in the fur of cats and dogs.",
    "Flea larvae grow in carpets and hatch into adult fleas within weeks.",
    "Paris is the capital of France and its largest city.",
    "The stock market fell sharply on Monday after the bank report.",
    "Ticks and fleas spread diseases between pets and people.",
]
CONFIG = FeedbackConfig(top_k=2, weight=4.0, min_documents=3)


def _blend(directory: Path, tiny_model, feedback: FeedbackConfig | None) -> Path:
    shutil.copytree(tiny_model("bert"), directory / "cross-encoder")
    write_blend(
        directory,
        [("cross-encoder", None, 0.75), ("all-minilm-l6-v2", "bi-encoder", 4.0)],
        bias=-1.5,
        feedback=("all-minilm-l6-v2", feedback) if feedback is not None else None,
    )
    return directory


@pytest.fixture(scope="module")
def feedback_dir(tiny_model, tmp_path_factory) -> Path:
    return _blend(tmp_path_factory.mktemp("feedback"), tiny_model, CONFIG)


def _reference(raw: np.ndarray, docs: list[str], config: FeedbackConfig) -> np.ndarray:
    vectors = load_embedder(resolve_embedding_model()).embed(docs)
    top = np.argsort(-raw, kind="stable")[: config.top_k]
    mean = np.array(
        [np.mean([vectors[i] @ vectors[t] for t in top if t != i]) for i in range(len(docs))]
    )
    return raw + config.weight * (mean - mean.mean())


def test_feedback_adds_the_centred_similarity_to_the_best_documents(feedback_dir: Path):
    plain = Reranker(feedback_dir, feedback=False).score(QUERY, DOCS, raw=True)
    with_feedback = Reranker(feedback_dir).score(QUERY, DOCS, raw=True)
    np.testing.assert_allclose(with_feedback, _reference(plain, DOCS, CONFIG), atol=1e-4)
    assert not np.allclose(with_feedback, plain, atol=1e-3)
    # The list's mean raw score stays where it was, so 0..1 scores keep their level.
    assert with_feedback.mean() == pytest.approx(plain.mean(), abs=1e-4)


def test_copies_of_a_document_get_one_score_wherever_they_stand(feedback_dir: Path):
    order = [1, 0, 0, *range(2, len(DOCS))]  # the best-scored passage sent twice
    twin = [DOCS[i] for i in order]
    scores = Reranker(feedback_dir).score(QUERY, twin, raw=True)
    assert scores[1] == scores[2]
    # Reference: feedback over the distinct texts, each copy given its text's shift.
    plain = Reranker(feedback_dir, feedback=False).score(QUERY, DOCS, raw=True)
    vectors = load_embedder(resolve_embedding_model()).embed(DOCS)
    top = np.argsort(-plain, kind="stable")[: CONFIG.top_k]
    similar = np.array(
        [np.mean([vectors[i] @ vectors[t] for t in top if t != i]) for i in range(len(DOCS))]
    )
    shift = CONFIG.weight * (similar - similar.mean())  # centred over the distinct documents
    np.testing.assert_allclose(scores, (plain + shift)[order], atol=1e-4)
    # The copy moves no other document: the list without it scores the same.
    alone = Reranker(feedback_dir).score(QUERY, DOCS, raw=True)
    np.testing.assert_allclose(scores[[1, 0, *range(3, len(twin))]], alone, atol=1e-5)


def test_texts_the_model_reads_alike_are_copies_whatever_their_order(feedback_dir: Path):
    """'A' and 'A ' (same tokens) were two documents: whichever came first was a top document
    and pulled its twin up by ~1 of cosine, so the input order decided both scores."""
    reranker = Reranker(feedback_dir)
    plain = Reranker(feedback_dir, feedback=False).score(QUERY, DOCS, raw=True)
    best = int(np.argmax(plain))
    twin = DOCS[best] + " "
    others = [d for i, d in enumerate(DOCS) if i != best]
    forward = reranker.score(QUERY, [*others, DOCS[best], twin], raw=True)
    backward = reranker.score(QUERY, [*others, twin, DOCS[best]], raw=True)
    assert forward[-1] == pytest.approx(forward[-2], abs=1e-5)
    np.testing.assert_allclose(forward, backward, atol=1e-5)
    alone = reranker.score(QUERY, [*others, DOCS[best]], raw=True)
    np.testing.assert_allclose(forward[:-1], alone, atol=1e-5)  # as one document sent twice


def test_feedback_reorders_the_results_it_returns(feedback_dir: Path):
    reranker = Reranker(feedback_dir)
    scores = reranker.score(QUERY, DOCS)
    results = reranker.rerank(QUERY, DOCS, top_n=3)
    assert [r.index for r in results] == np.argsort(-scores, kind="stable")[:3].tolist()
    assert [r.relevance_score for r in results] == pytest.approx(np.sort(scores)[::-1][:3])


def test_short_lists_and_switched_off_feedback_score_each_document_alone(feedback_dir: Path):
    on, off = Reranker(feedback_dir), Reranker(feedback_dir, feedback=False)
    short = DOCS[: CONFIG.min_documents - 1]
    np.testing.assert_allclose(on.score(QUERY, short), off.score(QUERY, short), atol=1e-6)
    alone = off.score(QUERY, DOCS[:1])[0]
    assert off.score(QUERY, DOCS)[0] == pytest.approx(alone, abs=1e-6)
    assert off.feedback is None and on.feedback is not None


def test_feedback_reuses_the_embeddings_of_the_windows_just_scored(feedback_dir: Path):
    reranker = Reranker(feedback_dir)
    bi_encoder = reranker.scorer.components[1].scorer  # type: ignore[attr-defined]
    assert isinstance(bi_encoder, BiEncoderScorer)
    query = "a query no earlier test used"
    before = bi_encoder.embedded_texts
    windows = sum(result.num_chunks for result in reranker.rerank(query, DOCS))
    # Each window and the query embedded once: the feedback's comparisons cost nothing more.
    assert bi_encoder.embedded_texts - before == windows + 1


def test_several_queries_need_no_second_pass_even_past_the_embedding_memory(feedback_dir: Path):
    queries = ["how do fleas live", "where is paris", "what moved the stock market"]
    counts = []
    for memory in (2, 4096):  # 2: far fewer than one call's windows
        reranker = Reranker(feedback_dir)
        bi_encoder = reranker.scorer.components[1].scorer  # type: ignore[attr-defined]
        bi_encoder.cache_size = memory
        # Different windows per query: each list's feedback needs its own embeddings.
        reranker.rerank_many(queries, [[f"{q} - {doc}" for doc in DOCS] for q in queries])
        counts.append(bi_encoder.embedded_texts)
    assert counts[0] == counts[1]


def test_a_bi_encoder_component_found_by_name_alone_can_carry_feedback(tiny_model, tmp_path: Path):
    directory = _blend(tmp_path, tiny_model, None)
    spec = json.loads((directory / "blend.json").read_text())
    del spec["components"][1]["kind"]  # resolved as a bi-encoder from the catalog
    spec["feedback"] = {"model": "all-minilm-l6-v2", "top_k": 2, "min_documents": 3}
    (directory / "blend.json").write_text(json.dumps(spec))
    assert Reranker(directory).feedback is not None


def test_feedback_keeps_a_cascades_pruned_documents_below_the_read_ones(feedback_dir: Path):
    reranker = Reranker(feedback_dir, cascade=CascadeConfig(keep=4))
    results = reranker.rerank(QUERY, DOCS)
    flags = [r.pruned for r in results]
    assert flags == sorted(flags)  # every read document first
    assert sum(flags) == len(DOCS) - 4
    read_scores = [r.relevance_score for r in results if not r.pruned]
    assert min(read_scores) > max(r.relevance_score for r in results if r.pruned)


def test_the_bundled_default_has_feedback_and_it_can_be_switched_off(reranker):
    assert reranker.feedback is not None
    assert reranker.feedback.config.top_k >= 1
    with pytest.raises(InvalidInputError, match="feedback must be True or False"):
        Reranker(feedback="no")  # type: ignore[arg-type]


def test_embedding_memory_is_bounded_and_answers_like_a_fresh_model():
    model = resolve_embedding_model()
    small = BiEncoderScorer(load_embedder(model), cache_size=2)
    fresh = BiEncoderScorer(load_embedder(model))
    pairs = [(QUERY, doc) for doc in DOCS]
    np.testing.assert_allclose(small.score_pairs(pairs), fresh.score_pairs(pairs), atol=1e-6)
    assert len(small._recent) <= len(DOCS) + 1  # the latest call's texts are kept whole
    small.score_pairs(pairs[:1])
    assert len(small._recent) == 2
    np.testing.assert_allclose(small.score_pairs(pairs), fresh.score_pairs(pairs), atol=1e-6)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"top_k": 2}, "naming its 'model'"),
        ({"model": "cross-encoder"}, "is a cross-encoder; feedback needs a bi-encoder"),
        ({"model": "nosuch"}, "is not one of the blend's components"),
        ({"model": "all-minilm-l6-v2", "weight": "heavy"}, "feedback weight"),
        ({"model": "all-minilm-l6-v2", "top_k": 0}, "top_k must be an integer of at least 2"),
        ({"model": "all-minilm-l6-v2", "depth": 3}, "bad feedback entry"),
    ],
)
def test_bad_feedback_entries_are_named(
    tiny_model, tmp_path: Path, entry: dict[str, object], message: str
):
    directory = _blend(tmp_path, tiny_model, None)
    spec = json.loads((directory / "blend.json").read_text())
    spec["feedback"] = entry
    (directory / "blend.json").write_text(json.dumps(spec))
    with pytest.raises(ModelLoadError, match=message):
        Reranker(directory)


@pytest.mark.parametrize(
    "options",
    [{"top_k": 1}, {"min_documents": 1.5}, {"weight": float("nan")}, {"top_k": True}],
)
def test_feedback_config_refuses_bad_values(options: dict[str, object]):
    with pytest.raises(InvalidInputError, match="feedback"):
        FeedbackConfig(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize("flag", [[], ["--no-feedback"]])
def test_rerank_cli_applies_feedback_unless_told_not_to(
    feedback_dir: Path, tmp_path: Path, flag: list[str]
):
    from typer.testing import CliRunner

    from semrank.cli import app

    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    args = ["rerank", QUERY, "--docs", str(docs), "--model", str(feedback_dir), "--json", *flag]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    got = {r["index"]: r["relevance_score"] for r in json.loads(result.output)["results"]}
    want = Reranker(feedback_dir, feedback=not flag).score(QUERY, DOCS)
    assert [got[i] for i in range(len(DOCS))] == pytest.approx(want.tolist(), abs=1e-5)


def test_the_server_passes_its_feedback_setting_to_the_rerankers_it_loads(feedback_dir: Path):
    from semrank.server._engines import ModelRegistry
    from semrank.server._metrics import Metrics
    from semrank.server.config import from_environment

    for setting in (True, False):
        config = from_environment(
            {"feedback": setting, "cache_size": 0}, model_specs=[f"fb={feedback_dir}"]
        )
        registry = ModelRegistry(config, Metrics())
        registry.load()
        assert (registry.engines["fb"].reranker.feedback is not None) is setting


@pytest.mark.parametrize("feedback", [True, False])
def test_eval_cli_ranks_by_the_scores_with_or_without_feedback(
    feedback_dir: Path, tmp_path: Path, feedback: bool
):
    from typer.testing import CliRunner

    from semrank.cli import app
    from semrank.eval import evaluate, load_candidates, load_qrels, reranked_run

    hits = [
        {"qid": "q", "docid": f"d{i}", "rank": i + 1, "score": 1.0, "content": text}
        for i, text in enumerate(DOCS)
    ]
    candidates, qrels = tmp_path / "candidates.json", tmp_path / "qrels.txt"
    candidates.write_text(json.dumps([{"query": QUERY, "hits": hits}]), encoding="utf-8")
    # d4 judged relevant: with this tiny model feedback moves it (5th vs 6th), so runs differ.
    qrels.write_text("q 0 d0 1\nq 0 d1 2\nq 0 d2 1\nq 0 d4 1\n", encoding="utf-8")
    flag = "--feedback" if feedback else "--no-feedback"
    args = ["eval", "--candidates", str(candidates), "--qrels", str(qrels), "--json"]
    result = CliRunner().invoke(app, [*args, "--model", str(feedback_dir), flag])
    assert result.exit_code == 0, result.output
    expected = {}
    for setting in (True, False):
        reranker = Reranker(feedback_dir, feedback=setting)
        lists = load_candidates(candidates)
        scores = {c.query_id: reranker.score(c.query, [h.text for h in c.hits]) for c in lists}
        expected[setting] = evaluate(load_qrels(qrels), reranked_run(lists, scores)).aggregate
    assert expected[True]["nDCG@10"] != pytest.approx(expected[False]["nDCG@10"], abs=1e-4)
    assert json.loads(result.stdout)["reranked"] == pytest.approx(expected[feedback], abs=1e-6)


def test_twins_whose_scores_drift_in_a_chain_are_one_document() -> None:
    """Each of three copies scores within 1e-3 of the next but the last is 1.5e-3 from the
    first: they are one document (the grouping compared with a group's first member only)."""
    import numpy as np

    from semrank.rerank._feedback import _distinct_documents

    vectors = np.ones((4, 4)) / 2
    vectors[3] = [0.5, -0.5, 0.5, -0.5]  # another document, its score in the chain's range
    document_of, first = _distinct_documents(
        ["a", "b", "c", "d"], vectors, np.array([0.0, 0.0009, 0.0015, 0.001])
    )
    assert document_of.tolist() == [0, 0, 0, 1] and first.tolist() == [0, 3]
