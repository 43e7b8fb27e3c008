"""Re-ranking candidate lists with a scoring function, depth curves and the Markdown report."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from semrank.errors import InvalidInputError
from semrank.eval import (
    Candidate,
    CandidateList,
    candidates_to_run,
    compare,
    depth_curve,
    evaluate,
    reranked_run,
    score_candidates,
)
from semrank.eval.report import DELTA_PLOT, DEPTH_PLOT, ReportData, write_report


def word_overlap(query: str, documents: list[str]) -> np.ndarray:
    """A transparent stand-in for a model: how many query words each document contains."""
    words = set(query.split())
    return np.array([len(words & set(doc.split())) for doc in documents], dtype=np.float32)


def candidate_list(query_id: str, query: str, texts: list[str]) -> CandidateList:
    hits = tuple(
        Candidate(doc_id=f"{query_id}-{i}", rank=i + 1, score=10.0 - i, text=text)
        for i, text in enumerate(texts)
    )
    return CandidateList(query_id=query_id, query=query, hits=hits)


LISTS = [
    # overlaps: 0, 1, 2, 1, 0
    candidate_list("q1", "red fox", ["blue sky", "red car", "red fox", "a fox", "grey wolf"]),
    # overlaps: 0, 1
    candidate_list("q2", "cats", ["dogs", "cats"]),
]
QRELS = {"q1": {"q1-2": 1, "q1-4": 0}, "q2": {"q2-1": 1}}


def ids(run, query_id: str) -> list[str]:
    return [d.doc_id for d in run.rankings[query_id]]


def test_scores_are_kept_in_first_stage_order_and_counted() -> None:
    progress: list[int] = []
    outcome = score_candidates(LISTS, word_overlap, depth=3, on_query=progress.append)
    assert outcome.scores["q1"].tolist() == [0.0, 1.0, 2.0]  # only the top 3 were scored
    assert outcome.scores["q2"].tolist() == [0.0, 1.0]
    assert outcome.pairs == 5 and progress == [3, 2]
    assert outcome.pairs_per_second > 0


def test_outcomes_are_equal_when_their_scores_and_counts_are() -> None:
    outcome = score_candidates(LISTS, word_overlap, depth=3)
    assert outcome == dataclasses.replace(outcome, scores=dict(outcome.scores))  # ValueError before
    other = {**outcome.scores, "q2": outcome.scores["q2"] + 1}
    assert outcome != dataclasses.replace(outcome, scores=other)


def test_reranked_order_ties_keep_first_stage_order_and_the_tail_follows() -> None:
    outcome = score_candidates(LISTS, word_overlap, depth=4)
    run = reranked_run(LISTS, outcome.scores)
    # q1 top 4 by overlap: q1-2 (2), then the tie q1-1 / q1-3 (1) in first-stage order, q1-0 (0);
    # q1-4 was below the depth and stays last.
    assert ids(run, "q1") == ["q1-2", "q1-1", "q1-3", "q1-0", "q1-4"]
    scores = [d.score for d in run.rankings["q1"]]
    assert scores == sorted(scores, reverse=True)  # a run file written from it keeps the order
    assert ids(run, "q2") == ["q2-1", "q2-0"]


def test_shallower_depth_reorders_only_the_head() -> None:
    outcome = score_candidates(LISTS, word_overlap, depth=5)
    run = reranked_run(LISTS, outcome.scores, depth=2)
    assert ids(run, "q1") == ["q1-1", "q1-0", "q1-2", "q1-3", "q1-4"]


def test_reranking_improves_the_fixture_and_the_comparison_counts_it() -> None:
    outcome = score_candidates(LISTS, word_overlap)
    before = evaluate(QRELS, candidates_to_run(LISTS), ["RR@10"])
    after = evaluate(QRELS, reranked_run(LISTS, outcome.scores), ["RR@10"])
    # first stage: relevant at rank 3 (q1) and rank 2 (q2); re-ranked: both at rank 1
    assert before.per_query["RR@10"] == {"q1": pytest.approx(1 / 3), "q2": 0.5}
    assert after.aggregate["RR@10"] == 1.0
    comparison = compare(before, after, "RR@10")
    assert (comparison.wins, comparison.ties, comparison.losses) == (2, 0, 0)


def test_depth_curve_uses_the_scores_once() -> None:
    outcome = score_candidates(LISTS, word_overlap, depth=5)
    curve = depth_curve(LISTS, outcome, QRELS, ["RR@10"], depths=(1, 2, 3, 10))
    # depth 10 > 5 candidates: capped at 5; q1's relevant doc (rank 3) moves up from depth 3
    assert list(curve) == [1, 2, 3, 5]
    assert curve[1]["RR@10"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert curve[2]["RR@10"] == pytest.approx((1 / 3 + 1) / 2)
    assert curve[3]["RR@10"] == 1.0
    shallow = score_candidates(LISTS, word_overlap, depth=2)
    assert list(depth_curve(LISTS, shallow, QRELS, ["RR@10"], depths=(1, 2, 3))) == [1, 2]


def test_bad_depth_and_bad_scorer_output() -> None:
    with pytest.raises(InvalidInputError, match="depth must be at least 1"):
        score_candidates(LISTS, word_overlap, depth=0)
    with pytest.raises(InvalidInputError, match=r"returned shape \(1,\) for 5 documents"):
        score_candidates(LISTS, lambda q, docs: np.zeros(1, dtype=np.float32))


@pytest.mark.parametrize("depth", [-1, 0, 1.5, "5"])
def test_reranked_run_rejects_a_bad_depth_instead_of_dropping_hits(depth) -> None:
    outcome = score_candidates(LISTS, word_overlap)
    with pytest.raises(InvalidInputError, match="depth must be at least 1"):
        reranked_run(LISTS, outcome.scores, depth=depth)
    with pytest.raises(InvalidInputError, match="depth must be at least 1"):
        score_candidates(LISTS, word_overlap, depth=depth)


def test_reranked_run_names_a_query_without_scores() -> None:
    with pytest.raises(InvalidInputError, match="no scores for query 'q1'"):
        reranked_run(LISTS, {})


def test_nan_scores_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="NaN or infinite scores for query 'q1'"):
        score_candidates(LISTS, lambda q, docs: np.full(len(docs), np.nan, dtype=np.float32))


def test_report_writes_markdown_and_png_plots(tmp_path: Path) -> None:
    measures = ["nDCG@10", "RR@10"]
    outcome = score_candidates(LISTS, word_overlap)
    before = evaluate(QRELS, candidates_to_run(LISTS), measures)
    after = evaluate(QRELS, reranked_run(LISTS, outcome.scores), measures)
    data = ReportData(
        title="fixture",
        first_stage=before,
        reranked=after,
        comparisons=[compare(before, after, m) for m in measures],
        depth_curve=depth_curve(LISTS, outcome, QRELS, measures, depths=(1, 2, 5)),
        details={"re-ranker": "word overlap"},
    )
    report = write_report(data, tmp_path / "report")
    text = report.read_text()
    assert f"![per-query delta]({DELTA_PLOT})" in text and f"({DEPTH_PLOT})" in text
    assert f"| RR@10 | {before.aggregate['RR@10']:.4f} | 1.0000 |" in text
    assert "**re-ranker**: word overlap" in text
    for plot in (DELTA_PLOT, DEPTH_PLOT):
        assert (tmp_path / "report" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_depth_plot_leaves_counts_out(tmp_path: Path) -> None:
    """NumRet (1,000 at depth 1,000) shared the 0..1 axis and flattened every other line."""
    from semrank.eval.report import _curve_measures

    def report(measures: list[str]) -> Path:
        outcome = score_candidates(LISTS, word_overlap)
        before = evaluate(QRELS, candidates_to_run(LISTS), measures)
        after = evaluate(QRELS, reranked_run(LISTS, outcome.scores), measures)
        data = ReportData(
            title="t", first_stage=before, reranked=after,
            comparisons=[compare(before, after, m) for m in measures],
            depth_curve=depth_curve(LISTS, outcome, QRELS, measures, depths=(1, 2)),
        )  # fmt: skip
        assert _curve_measures(data) == [m for m in measures if m != "NumRet"]
        folder = tmp_path / "-".join(measures)
        write_report(data, folder)
        return folder

    counts_only = report(["NumRet"])
    assert "| NumRet |" in (counts_only / "report.md").read_text()
    assert not (counts_only / DEPTH_PLOT).exists()  # an empty plot says nothing
    assert (report(["RR@10", "NumRet"]) / DEPTH_PLOT).exists()


def test_report_leaves_the_callers_matplotlib_backend_alone(tmp_path: Path) -> None:
    """write_report switched pyplot to Agg: in a notebook every later plt.show() drew nothing."""
    import matplotlib
    import matplotlib.pyplot as plt

    before = evaluate(QRELS, candidates_to_run(LISTS), ["RR@10"])
    scores = score_candidates(LISTS, word_overlap).scores
    after = evaluate(QRELS, reranked_run(LISTS, scores), ["RR@10"])
    was = matplotlib.get_backend()
    matplotlib.use("svg")  # stands in for a notebook's inline backend: any backend not Agg
    try:
        plt.figure()  # a figure of the caller's, still to be shown
        write_report(ReportData(title="t", first_stage=before, reranked=after), tmp_path)
        assert matplotlib.get_backend() == "svg"
        assert plt.get_fignums() == [1]  # the report's figures are not left in pyplot's care
    finally:
        plt.close("all")
        matplotlib.use(was)
    assert (tmp_path / DELTA_PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_for_first_stage_only(tmp_path: Path) -> None:
    before = evaluate(QRELS, candidates_to_run(LISTS), ["RR@10"])
    (tmp_path / DELTA_PLOT).write_bytes(b"an earlier report's plot")
    text = write_report(ReportData(title="t", first_stage=before), tmp_path).read_text()
    assert "| RR@10 |" in text and "png" not in text
    assert not (tmp_path / DELTA_PLOT).exists()  # left beside report.md, it told another story


def test_depth_curve_includes_the_depth_re_ranked() -> None:
    """A depth of 30 or 5 was on no curve (the report showed nothing at the depth it used)."""
    outcome = score_candidates(LISTS, word_overlap, depth=4)
    assert list(depth_curve(LISTS, outcome, QRELS, ["RR@10"], depths=(1, 2, 10))) == [1, 2, 4]


def test_the_per_query_plot_of_many_queries_stays_a_readable_size(tmp_path: Path) -> None:
    """A bar per query made a 67,320-pixel-wide image for 3,400 queries."""
    import struct

    from semrank.eval.metrics import Evaluation

    rng = np.random.default_rng(0)
    queries = [f"q{n}" for n in range(3000)]
    before = {q: float(v) for q, v in zip(queries, rng.random(3000), strict=True)}
    after = {q: float(v) for q, v in zip(queries, rng.random(3000), strict=True)}
    data = ReportData(
        title="many",
        first_stage=Evaluation(run_name="a", aggregate={"AP": 0.5}, per_query={"AP": before}),
        reranked=Evaluation(run_name="b", aggregate={"AP": 0.5}, per_query={"AP": after}),
    )
    write_report(data, tmp_path)
    header = (tmp_path / DELTA_PLOT).read_bytes()[:24]
    width, height = struct.unpack(">II", header[16:24])  # the PNG's IHDR
    assert width <= 4000 and height < 1000


def test_reprs_summarise_instead_of_printing_every_text_and_score() -> None:
    """A notebook cell showing SciFact's collection printed 8 MB, TREC DL's candidate lists
    2 MB, a RerankOutcome pages of score arrays."""
    from semrank.eval import BeirCollection, Document

    text = "long passage " * 100
    big = candidate_list("q1", "a query", [text] * 500)
    outcome = score_candidates([big], word_overlap, depth=500)
    run = reranked_run([big], outcome.scores)
    evaluation = evaluate({"q1": {"q1-3": 1}}, run, ["RR@10"])
    collection = BeirCollection(
        corpus={str(i): Document(doc_id=str(i), text=text) for i in range(500)},
        queries={"q1": "a query"},
        qrels={"q1": {"1": 1, "2": 0}},
    )
    shown = {repr(x): x for x in (big, outcome, run, evaluation, collection)}
    assert all(len(line) < 200 and "long passage" not in line for line in shown)
    assert repr(big) == "CandidateList(query_id='q1', query='a query', hits=<500 candidates>)"
    assert "scores=<1 queries>, pairs=500" in repr(outcome)
    assert repr(run) == "Run(name='reranked', rankings=<1 queries, 500 entries>)"
    assert repr(evaluation) == (
        f"Evaluation(run_name='reranked', aggregate={evaluation.aggregate!r}, "
        "per_query=<1 queries>)"
    )
    assert repr(collection) == (
        "BeirCollection(corpus=<500 documents>, queries=<1 queries>, qrels=<2 judgments>)"
    )
