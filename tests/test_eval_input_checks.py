"""What evaluate, Run and candidates_to_run do with inputs built by hand (numpy labels, integer
ids, runs of the wrong shape): a correct result or an error naming the value, never a raw
AttributeError, a crash inside pytrec_eval or a silently merged ranking."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from semrank.errors import InvalidInputError
from semrank.eval import (
    Candidate,
    CandidateList,
    Run,
    ScoredDoc,
    candidates_to_run,
    evaluate,
    write_trec_run,
)
from semrank.eval.metrics import MAX_RELEVANCE


def ranking(*doc_ids: object) -> list[ScoredDoc]:
    return [ScoredDoc(doc_id=d, score=1.0) for d in doc_ids]  # type: ignore[arg-type]


def candidate_list(query_id: str, *doc_ids: str) -> CandidateList:
    hits = tuple(
        Candidate(doc_id=d, rank=i, score=1.0 / i, text=f"text {d}")
        for i, d in enumerate(doc_ids, start=1)
    )
    return CandidateList(query_id=query_id, query=f"query {query_id}", hits=hits)


STRING_QRELS = {"q1": {"d1": 1}}
STRING_RUN = Run(name="r", rankings={"q1": ranking("d2", "d1")})

# Query 7: documents 70 (grade 2) and 71 (grade 0), ranked 71 then 70. The only relevant
# document is at rank 2, so RR = 1/2 and nDCG@10 = (2 / log2(3)) / (2 / log2(2)) = 1 / log2(3).
RR_7 = 1 / 2
NDCG_7 = 1 / math.log2(3)


# --------------------------------------------------------------------------- numpy and int ids


def test_numpy_labels_and_integer_ids_are_evaluated_as_their_strings() -> None:
    qrels = {np.int64(7): {70: np.int64(2), np.int32(71): np.int64(0)}}
    run = Run(name="ints", rankings={7: ranking(np.int64(71), 70)})  # type: ignore[dict-item]
    result = evaluate(qrels, run, ["RR@10", "nDCG@10"])  # type: ignore[arg-type]
    assert result.per_query["RR@10"] == {"7": pytest.approx(RR_7)}
    assert result.per_query["nDCG@10"] == {"7": pytest.approx(NDCG_7)}


def test_integer_qrels_ids_match_the_string_ids_of_a_run() -> None:
    # load_trec_run gives string ids; qrels built in code often have integer ones.
    run = Run(name="strings", rankings={"7": ranking("71", "70")})
    result = evaluate({7: {70: 2, 71: 0}}, run, ["RR@10"])  # type: ignore[dict-item]
    assert result.per_query["RR@10"] == {"7": pytest.approx(RR_7)}


def test_an_id_given_both_as_integer_and_as_string_is_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"qrels hold query '1' twice"):
        evaluate({1: {"d1": 1}, "1": {"d1": 0}}, STRING_RUN)  # type: ignore[dict-item]
    with pytest.raises(InvalidInputError, match=r"qrels\['q1'\] judges document '5' twice"):
        evaluate({"q1": {5: 1, "5": 0}}, STRING_RUN)  # type: ignore[dict-item]
    with pytest.raises(InvalidInputError, match=r"Run rankings hold query '1' twice"):
        Run(name="r", rankings={1: ranking("a"), "1": ranking("b")})  # type: ignore[dict-item]


def test_other_id_types_are_refused_by_name() -> None:
    with pytest.raises(InvalidInputError, match=r"query id of qrels must be a string .*float"):
        evaluate({1.5: {"d1": 1}}, STRING_RUN)  # type: ignore[dict-item]
    with pytest.raises(InvalidInputError, match=r"doc id at Run rankings\['q1'\]\[0\] .*NoneType"):
        Run(name="r", rankings={"q1": ranking(None)})


# --------------------------------------------------------------------------- label range


@pytest.mark.parametrize("label", [10**20, -(10**20), 2**32, 2**62, MAX_RELEVANCE + 1])
def test_labels_trec_eval_cannot_hold_are_refused(label: int) -> None:
    # 2**32 was silently read as 0 by trec_eval, 2**62 crashed the process, 10**20 raised a
    # raw OverflowError/SystemError.
    with pytest.raises(InvalidInputError, match=rf"qrels\['q1'\]\['d1'\] is {label}, beyond"):
        evaluate({"q1": {"d1": label}}, STRING_RUN, ["RR@10"])


def test_the_largest_accepted_label_still_counts_as_relevant() -> None:
    result = evaluate({"q1": {"d1": MAX_RELEVANCE}}, STRING_RUN, ["RR@10"])
    assert result.per_query["RR@10"] == {"q1": 0.5}  # d1 is at rank 2
    lowest = evaluate({"q1": {"d1": -MAX_RELEVANCE, "d2": 1}}, STRING_RUN, ["RR@10"])
    assert lowest.per_query["RR@10"] == {"q1": 1.0}  # d2 at rank 1


# --------------------------------------------------------------------------- measures


@pytest.mark.parametrize("measures", [None, 10])
def test_measures_that_are_not_names_are_refused(measures: object) -> None:
    with pytest.raises(InvalidInputError, match=r"measures must be a list of names"):
        evaluate(STRING_QRELS, STRING_RUN, measures)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- Run shape


@pytest.mark.parametrize(
    ("rankings", "message"),
    [
        ([("q1", ranking("d1"))], r"Run rankings must be a dict \{query_id: \[ScoredDoc"),
        ({"q1": [{"doc_id": "d1", "score": 1.0}]}, r"rankings\['q1'\]\[0\] must be a ScoredDoc"),
        ({"q1": "d1"}, r"rankings\['q1'\] must be a list of ScoredDoc, got str"),
        ({"q1": {"d1": 1.0}}, r"rankings\['q1'\] must be a list of ScoredDoc, got dict"),
    ],
)
def test_runs_of_the_wrong_shape_are_refused_when_built(rankings: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Run(name="r", rankings=rankings)  # type: ignore[arg-type]


def test_a_run_needs_a_string_name() -> None:
    with pytest.raises(InvalidInputError, match="Run name must be a string, got NoneType"):
        Run(name=None)  # type: ignore[arg-type]


def test_a_document_listed_twice_in_a_ranking_is_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"query 'q1' lists document 'd2' twice"):
        Run(name="r", rankings={"q1": ranking("d2", "d1", "d2")})


def test_evaluate_checks_a_run_changed_after_it_was_built() -> None:
    run = Run(name="r", rankings={"q1": ranking("d2", "d1")})
    run.rankings["q1"].append(ScoredDoc(doc_id="d2", score=0.0))
    with pytest.raises(InvalidInputError, match=r"query 'q1' lists document 'd2' twice"):
        evaluate(STRING_QRELS, run)
    run.rankings["q2"] = [{"doc_id": "d1"}]  # type: ignore[list-item]
    run.rankings["q1"].pop()
    with pytest.raises(InvalidInputError, match=r"rankings\['q2'\]\[0\] must be a ScoredDoc"):
        evaluate(STRING_QRELS, run)


def test_integer_ids_are_written_to_run_files_as_numbers(tmp_path: Path) -> None:
    run = Run(name="r", rankings={7: [ScoredDoc(doc_id=np.int64(71), score=2.0)]})  # type: ignore[dict-item,arg-type]
    path = write_trec_run(run, tmp_path / "run.trec")
    assert path.read_text() == "7 Q0 71 1 2.0 r\n"
    with pytest.raises(InvalidInputError, match=r"run must be a semrank.eval.Run \(.*\), got dict"):
        write_trec_run({"q1": ranking("d1")}, tmp_path / "other.trec")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- candidates_to_run


def test_candidates_to_run_keeps_the_given_order() -> None:
    run = candidates_to_run([candidate_list("q1", "b", "a"), candidate_list("q2", "c")])
    assert {q: [d.doc_id for d in r] for q, r in run.rankings.items()} == {
        "q1": ["b", "a"],
        "q2": ["c"],
    }


@pytest.mark.parametrize(
    ("candidates", "message"),
    [
        (None, r"candidates must be a list of CandidateList, got NoneType"),
        ({"q1": ["d1"]}, r"candidates must be a list of CandidateList, got dict"),
        ([{"query_id": "q1"}], r"candidates\[0\] must be a CandidateList, got dict"),
    ],
)
def test_candidates_that_are_not_candidate_lists_are_refused(
    candidates: object, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        candidates_to_run(candidates)  # type: ignore[arg-type]


def test_a_query_with_two_candidate_lists_is_refused() -> None:
    lists = [candidate_list("q1", "a"), candidate_list("q2", "b"), candidate_list("q1", "c")]
    with pytest.raises(InvalidInputError, match=r"query id 'q1' has two candidate lists.*\[2\]"):
        candidates_to_run(lists)


def test_a_candidate_list_holding_a_document_twice_is_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"query 'q1' lists document 'a' twice"):
        candidates_to_run([candidate_list("q1", "a", "b", "a")])
