"""Metrics through ir-measures, checked against values worked out by hand in this file."""

from __future__ import annotations

import math
import warnings

import pytest
from scipy import stats

from semrank.errors import InvalidInputError
from semrank.eval import Evaluation, Run, ScoredDoc, compare, evaluate, load_qrels, load_trec_run
from semrank.eval.metrics import split_measure_names


def ranking(*doc_ids: str) -> list[ScoredDoc]:
    # Deliberately identical scores: the list order alone must define the ranking.
    return [ScoredDoc(doc_id=d, score=1.0) for d in doc_ids]


QRELS = {
    "q1": {"d1": 2, "d2": 0, "d3": 1, "d5": 1},  # d5 relevant but never retrieved
    "q2": {"a": 1},
}
RUN = Run(name="hand", rankings={"q1": ranking("d2", "d1", "d4", "d3"), "q2": ranking("a", "b")})

# q1, ranks 1..4 = d2 (rel 0), d1 (rel 2), d4 (unjudged = 0), d3 (rel 1); gain = rel,
# discount = log2(rank + 1):
DCG_Q1 = 0 / math.log2(2) + 2 / math.log2(3) + 0 / math.log2(4) + 1 / math.log2(5)
# ideal order of q1's judgments: 2, 1, 1 (d1, d3, d5)
IDCG_Q1 = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
NDCG10_Q1 = DCG_Q1 / IDCG_Q1  # ~0.5406
RR10_Q1 = 1 / 2  # first relevant (rel >= 1) document at rank 2
R100_Q1 = 2 / 3  # d1 and d3 of {d1, d3, d5}
AP_Q1 = (1 / 2 + 2 / 4) / 3  # precision at ranks 2 and 4, over 3 relevant documents
# q2: the only relevant document is at rank 1, so every measure is 1.


def test_per_query_values_match_the_hand_computation() -> None:
    result = evaluate(QRELS, RUN)
    expected_q1 = {"nDCG@10": NDCG10_Q1, "RR@10": RR10_Q1, "R@100": R100_Q1, "AP": AP_Q1}
    for measure, value in expected_q1.items():
        assert result.per_query[measure]["q1"] == pytest.approx(value, abs=1e-9), measure
        assert result.per_query[measure]["q2"] == pytest.approx(1.0), measure
    assert result.aggregate["nDCG@10"] == pytest.approx((NDCG10_Q1 + 1.0) / 2)
    assert result.aggregate["AP"] == pytest.approx((AP_Q1 + 1.0) / 2)
    assert list(result.aggregate) == ["nDCG@10", "RR@10", "R@100", "AP"]
    assert result.query_count == 2


def test_list_order_decides_even_with_tied_scores() -> None:
    # pytrec_eval alone would sort tied scores by doc id; the evaluator must not.
    swapped = Run(name="swapped", rankings={"q1": ranking("d1", "d2", "d4", "d3")})
    result = evaluate(QRELS, swapped, ["RR@10", "nDCG@10"])
    assert result.per_query["RR@10"]["q1"] == 1.0
    dcg = 2 / math.log2(2) + 1 / math.log2(5)
    assert result.per_query["nDCG@10"]["q1"] == pytest.approx(dcg / IDCG_Q1)


def test_cutoff_and_relevance_threshold_parameters() -> None:
    result = evaluate(QRELS, RUN, ["nDCG@1", "RR(rel=2)@10", "P@2"])
    assert result.per_query["nDCG@1"]["q1"] == 0.0  # rank 1 is d2, judged 0
    assert result.per_query["RR(rel=2)@10"]["q1"] == pytest.approx(1 / 2)  # d1 has rel 2
    assert result.per_query["P@2"]["q1"] == pytest.approx(1 / 2)


def test_unjudged_queries_are_left_out_and_unanswered_ones_score_zero() -> None:
    run = Run(name="r", rankings={"q2": ranking("a"), "q_unjudged": ranking("x")})
    result = evaluate(QRELS, run, ["nDCG@10"])
    # q1 is judged but the run has nothing for it: it counts, as 0 (trec_eval -c).
    assert result.per_query["nDCG@10"] == {"q1": 0.0, "q2": 1.0}
    assert result.aggregate["nDCG@10"] == 0.5


def test_a_measures_value_does_not_depend_on_the_others_asked_for() -> None:
    """In one ir-measures call, plain nDCG took a gains-mapped nDCG's gains, NumRet a
    judged_only measure's filter, and one of two nDCGs of one cutoff read 0.0."""
    gains = "nDCG(gains={0:0,1:1,2:3})@10"
    together = [
        [gains, "nDCG@10"],
        ["nDCG@10", gains],
        [gains, "nDCG@5"],
        ["P(judged_only=True)@10", "NumRet"],
        [gains, "nDCG(judged_only=True)@3"],
    ]
    for measures in together:
        combined = list(evaluate(QRELS, RUN, measures).aggregate.values())
        alone = [next(iter(evaluate(QRELS, RUN, [m]).aggregate.values())) for m in measures]
        assert combined == pytest.approx(alone), measures
    assert evaluate(QRELS, RUN, ["NumRet"]).per_query["NumRet"]["q1"] == 4.0  # d4 unjudged too


def test_a_judged_query_with_an_empty_ranking_counts_as_zero_for_every_measure() -> None:
    """Judged@10 divided by the ranking's length and crashed (ZeroDivisionError)."""
    run = Run(name="r", rankings={"q1": [], "q2": ranking("a")})
    result = evaluate(QRELS, run, ["Judged@10", "nDCG@10"])
    assert result.per_query["nDCG@10"]["q1"] == 0.0
    assert result.aggregate["Judged@10"] == pytest.approx(0.5)


def test_trec_files_round_trip_through_the_metrics(tmp_path) -> None:
    (tmp_path / "qrels.txt").write_text("q1 0 d1 2\nq1 0 d2 0\nq1 0 d3 1\nq1 0 d5 1\n")
    # Run-file order comes from the scores, not the line order.
    (tmp_path / "run.trec").write_text(
        "q1 Q0 d3 4 0.1 t\nq1 Q0 d2 1 0.9 t\nq1 Q0 d1 2 0.8 t\nq1 Q0 d4 3 0.7 t\n"
    )
    result = evaluate(load_qrels(tmp_path / "qrels.txt"), load_trec_run(tmp_path / "run.trec"))
    assert result.per_query["nDCG@10"]["q1"] == pytest.approx(NDCG10_Q1)


def test_unknown_measure_is_a_readable_error() -> None:
    with pytest.raises(InvalidInputError, match="unknown measure 'MAPP@10'"):
        evaluate(QRELS, RUN, ["MAPP@10"])


def test_a_single_measure_name_string_is_one_measure() -> None:
    assert list(evaluate(QRELS, RUN, "nDCG@10").aggregate) == ["nDCG@10"]
    with pytest.raises(InvalidInputError, match="measure names must be strings"):
        evaluate(QRELS, RUN, [None])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("qrels", "run", "message"),
    [
        ({}, RUN, "qrels is empty"),
        (None, RUN, "qrels must be a dict"),
        ({"q1": {"d1": "1"}}, RUN, r"qrels\['q1'\] must map doc ids to integer relevance"),
        ({"q1": "d1"}, RUN, r"qrels\['q1'\] must map doc ids"),
        (QRELS, {"q1": {"d1": 1.0}}, "run must be a semrank.eval.Run"),
    ],
)
def test_bad_qrels_or_run_are_named(qrels, run, message) -> None:
    with pytest.raises(InvalidInputError, match=message):
        evaluate(qrels, run)


def test_measure_names_split_on_commas_outside_parentheses() -> None:
    assert split_measure_names(None) == ["nDCG@10", "RR@10", "R@100", "AP"]
    assert split_measure_names(["nDCG@10, AP", "RR(rel=2,judged_only=True)@10"]) == [
        "nDCG@10",
        "AP",
        "RR(rel=2,judged_only=True)@10",
    ]


def evaluation(name: str, values: dict[str, float]) -> Evaluation:
    mean = sum(values.values()) / len(values)
    return Evaluation(run_name=name, aggregate={"m": mean}, per_query={"m": values})


def test_paired_comparison_by_hand() -> None:
    a = evaluation("a", {"1": 0.2, "2": 0.5, "3": 0.9, "only_a": 0.0})
    b = evaluation("b", {"1": 0.4, "2": 0.5, "3": 0.5})
    result = compare(a, b, "m")
    # common queries 1, 2, 3; differences b - a = +0.2, 0, -0.4
    diffs = [0.2, 0.0, -0.4]
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    t = mean / (sd / math.sqrt(3))
    assert (result.queries, result.wins, result.ties, result.losses) == (3, 1, 1, 1)
    assert result.mean_a == pytest.approx((0.2 + 0.5 + 0.9) / 3)
    assert result.delta == pytest.approx(mean)
    assert result.t_statistic == pytest.approx(t)
    assert result.p_value == pytest.approx(2 * stats.t.sf(abs(t), df=2))


def test_identical_runs_have_no_difference() -> None:
    a = evaluation("a", {"1": 0.3, "2": 0.7})
    result = compare(a, a, "m")
    assert (result.wins, result.ties, result.losses) == (0, 2, 0)
    assert result.p_value == 1.0
    assert math.isnan(result.t_statistic)


def test_the_same_change_on_every_query_has_no_t_test() -> None:
    """No variance: t is infinite, scipy warned of precision loss and p read 0 (shown as
    p < 0.0001 from two queries)."""
    a = evaluation("a", {"1": 0.25, "2": 0.5})
    b = evaluation("b", {"1": 0.75, "2": 1.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = compare(a, b, "m")
    assert (result.wins, result.ties, result.losses) == (2, 0, 0)
    assert math.isnan(result.p_value) and math.isnan(result.t_statistic)


def test_num_q_and_num_rel_count_judged_queries_the_run_missed() -> None:
    """As trec_eval -c: NumRel comes from the qrels whatever the run holds (ir-measures gave
    an unranked query 0 for both)."""
    qrels = {"1": {"a": 1}, "2": {"b": 1}, "3": {"c": 1, "d": 2, "e": 0}}
    run = Run(name="r", rankings={"1": [ScoredDoc(doc_id="a", score=1.0)], "2": []})
    result = evaluate(qrels, run, ["NumQ", "NumRel", "NumRet", "RR@10"])
    assert result.aggregate == {"NumQ": 3, "NumRel": 4, "NumRet": 1, "RR@10": pytest.approx(1 / 3)}
    assert result.per_query["NumRel"] == {"1": 1, "2": 1, "3": 2}


def test_compare_unknown_measure() -> None:
    a = evaluation("a", {"1": 0.3})
    with pytest.raises(InvalidInputError, match="'nDCG@10' was not computed"):
        compare(a, a, "nDCG@10")


# --------------------------------------------------------------------------- measures refused


def _provider_missing(name: str) -> bool:
    import ir_measures

    return not getattr(ir_measures, name).is_available()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        # A cutoff of 0 aborted pytrec_eval's C code (RR@0 silently scored 0.0).
        *[
            (f"{m}@0", rf"measure '{m}@0': the cutoff .* must be a whole number .* got 0")
            for m in ("nDCG", "P", "R", "AP", "RR")
        ],
        ("nDCG@10.5", r"got 10\.5; e\.g\. nDCG@10"),
        ("nDCG@99999999999", "from 1 to 2147483647, got 99999999999"),
        ("IPrec@2.0", "recall level must be a fraction from 0.0 to 1.0, got 2.0"),
        ("nDCG(foo=1)@10", "unknown parameter 'foo' \\(it takes cutoff, dcg, gains"),
        ("P(rel=1.5)@5", r"rel=1\.5 is invalid .*expected int"),
        ("RR(judged_only=True)@10", "no installed ir-measures provider computes RR with these"),
        # gdeval (perl) needs numeric query ids; QRELS has q1, q2. It died with exit 25.
        ("ERR@10", r"gdeval, which computes ERR@10, needs numeric query ids, got 'q1'"),
        ('nDCG(dcg="exp-log2")@10', r"computes nDCG\(dcg='exp-log2'\)@10, needs numeric query"),
        pytest.param(
            "alpha_nDCG@10",
            r"cannot be computed .*pip install ir-measures\[pyndeval\].*use one of .*nDCG",
            marks=pytest.mark.skipif(not _provider_missing("pyndeval"), reason="installed"),
        ),
        *[
            pytest.param(
                name,
                r"cannot be computed .*pip install ir-measures\[cwl_eval\]",
                marks=pytest.mark.skipif(not _provider_missing("cwl_eval"), reason="installed"),
            )
            for name in ("SDCG@10", "INST(T=1)", "NERR10(min_rel=1)")
        ],
    ],
)
def test_measures_that_cannot_be_computed_are_refused_by_name(name: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        evaluate(QRELS, RUN, ["nDCG@10", name])


def test_gdeval_measures_work_on_numeric_ids_and_refuse_ids_it_would_misread() -> None:
    # gdeval's ERR@10: sum over ranks r of R_r / r * prod_{i<r} (1 - R_i), with
    # R = (2**grade - 1) / 2**4. Query 1: a grade-1 document at rank 2 -> (1/16) / 2.
    qrels = {"1": {"a": 1}, "2": {"b": 2}}
    run = Run(name="r", rankings={"1": ranking("x", "a"), "2": ranking("b")})
    result = evaluate(qrels, run, ["ERR@10"])
    assert result.per_query["ERR@10"] == pytest.approx({"1": 1 / 32, "2": 3 / 16}, abs=1e-5)
    # gdeval reads 'a-1' as query 1: it would silently score another query.
    dashed = Run(name="r", rankings={"a-1": ranking("a")})
    with pytest.raises(InvalidInputError, match="needs numeric query ids, got 'a-1'"):
        evaluate({"a-1": {"a": 1}}, dashed, ["ERR@10"])
    with pytest.raises(InvalidInputError, match="takes relevance grades up to 4, got 5"):
        evaluate({"1": {"a": 5}}, run, ["ERR@10"])


def test_one_query_that_changed_has_no_p_value() -> None:
    """p = 1.0 read as "no evidence" next to a +0.4 change; a t-test on one pair is undefined."""
    result = compare(evaluation("a", {"1": 0.1}), evaluation("b", {"1": 0.5}), "m")
    assert result.wins == 1 and math.isnan(result.p_value)
    same = compare(evaluation("a", {"1": 0.5}), evaluation("b", {"1": 0.5}), "m")
    assert same.p_value == 1.0


def test_measure_names_parse_on_a_python_without_ast_num(monkeypatch: pytest.MonkeyPatch) -> None:
    """ir-measures' parser reads a cutoff through ast.Num, deprecated in Python 3.12 (an
    error under -W error) and removed in 3.14: every `semrank eval` would crash there."""
    import ast

    from semrank.eval.metrics import parse_measures

    monkeypatch.delattr(ast, "Num")
    names = ["nDCG@10", "RR@10", "R@100", "AP", "RR(rel=2)@10", "nDCG(dcg='exp-log2')@10"]
    assert [str(m) for m in parse_measures(names)] == names
    assert [str(m) for m in parse_measures(["MRR@10", "IPrec@0.5"])] == ["RR@10", "IPrec@0.5"]
    # ir-measures' providers carry a NAME as measures do: refused as measures, not a crash.
    with pytest.raises(InvalidInputError, match=r"unknown measure 'judged@10'"):
        parse_measures(["judged@10"])


def test_queries_judged_only_below_zero_are_left_out_and_never_crash() -> None:
    """A query judged only -2 (TREC Web Track junk) made trec_eval's C code memset a negative
    size: the process died (SIGSEGV) or hung. Such queries, and empty judgment dicts, are left
    out alike for every measure (nDCG counted an empty one as 0, RR@10 left it out)."""
    import subprocess
    import sys

    script = (
        "from semrank.eval import Run, ScoredDoc, evaluate\n"
        "run = Run(name='x', rankings={q: [ScoredDoc(doc_id=d, score=1.0)] for q, d in "
        "(('q0', 'd1'), ('q1', 'd2'), ('q2', 'd3'))})\n"
        "qrels = {'q0': {'d1': 1}, 'q1': {'d2': -2}, 'q2': {}}\n"
        "for _ in range(3):\n"
        "    e = evaluate(qrels, run, ['nDCG@10', 'RR@10', 'AP', 'R@100', 'P@10'])\n"
        "print(sorted(e.aggregate.items()), e.query_count)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    expected = [("AP", 1.0), ("P@10", 0.1), ("R@100", 1.0), ("RR@10", 1.0), ("nDCG@10", 1.0)]
    assert done.stdout.strip() == f"{expected} 1"
    with pytest.raises(InvalidInputError, match="no judgment of 0 or above"):
        evaluate({"q1": {"d2": -2}, "q2": {}}, Run(name="x", rankings={}), ["AP"])
