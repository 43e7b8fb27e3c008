"""Retrieval metrics through ir-measures (pytrec_eval backend) and paired run comparison."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from semrank._checks import is_int
from semrank.errors import InvalidInputError
from semrank.eval.loaders import Qrels, Run

DEFAULT_MEASURES: tuple[str, ...] = ("nDCG@10", "RR@10", "R@100", "AP")
# Two per-query values closer than this count as a tie.
TIE_TOLERANCE = 1e-9


@dataclass(frozen=True, kw_only=True)
class Evaluation:
    """Mean and per-query values of each measure, keyed by the ir-measures name."""

    run_name: str
    aggregate: dict[str, float]
    per_query: dict[str, dict[str, float]]  # measure -> query id -> value

    @property
    def query_count(self) -> int:
        """Queries averaged: every judged query (unranked ones count as 0)."""
        return max((len(values) for values in self.per_query.values()), default=0)


@dataclass(frozen=True, kw_only=True)
class PairedComparison:
    """Run B against run A on one measure, over the queries both were evaluated on."""

    measure: str
    queries: int
    mean_a: float
    mean_b: float
    wins: int  # queries where B > A
    ties: int
    losses: int
    t_statistic: float  # paired t-test (scipy.stats.ttest_rel); NaN when undefined
    p_value: float

    @property
    def delta(self) -> float:
        return self.mean_b - self.mean_a


def parse_measures(names: Iterable[str]) -> list[Any]:
    """ir-measures Measure objects for names like ``nDCG@10`` or ``RR(rel=2)@10``."""
    import ir_measures

    measures = []
    for name in [names] if isinstance(names, str) else names:
        if not isinstance(name, str):
            raise InvalidInputError(
                f"measure names must be strings such as 'nDCG@10', got {name!r}"
            )
        try:
            measures.append(ir_measures.parse_measure(name.strip()))
        except (NameError, ValueError, SyntaxError) as exc:
            raise InvalidInputError(
                f"unknown measure {name!r} ({exc}); use ir-measures names such as "
                f"{', '.join(DEFAULT_MEASURES)} or RR(rel=2)@10"
            ) from None
    if not measures:
        raise InvalidInputError("no measures given; e.g. --measures nDCG@10,RR@10")
    return measures


def split_measure_names(values: Sequence[str] | None) -> list[str]:
    """Measure names from repeated and/or comma-separated options (``nDCG@10,AP``)."""
    if not values:
        return list(DEFAULT_MEASURES)
    # Commas inside parentheses belong to parameters: RR(rel=2,judged_only=True)@10.
    names: list[str] = []
    for value in values:
        depth, current = 0, ""
        for char in value:
            depth += (char == "(") - (char == ")")
            if char == "," and depth == 0:
                names.append(current)
                current = ""
            else:
                current += char
        names.append(current)
    return [name.strip() for name in names if name.strip()]


def _scored_run(run: Run) -> dict[str, dict[str, float]]:
    # pytrec_eval sorts by score and breaks ties by doc id; scores derived from list positions
    # make it evaluate exactly the order of the run.
    return {
        query_id: {doc.doc_id: float(len(ranking) - i) for i, doc in enumerate(ranking)}
        for query_id, ranking in run.rankings.items()
    }


def _evaluator(measures: list[Any], qrels: Qrels) -> Any:
    import ir_measures

    provider = ir_measures.pytrec_eval
    if all(provider.supports(measure) for measure in measures):
        return provider.evaluator(measures, qrels)
    return ir_measures.evaluator(measures, qrels)  # e.g. measures only another provider has


def _check_qrels(qrels: object) -> None:
    """Qrels as ``{query_id: {doc_id: int relevance}}`` with at least one judged query."""
    if not isinstance(qrels, Mapping):
        raise InvalidInputError(
            f"qrels must be a dict {{query_id: {{doc_id: relevance}}}}, got {type(qrels).__name__}"
        )
    if not qrels:
        raise InvalidInputError(
            "qrels is empty, so every measure would be undefined; load judgments with load_qrels"
        )
    for query_id, judged in qrels.items():
        if not isinstance(judged, Mapping) or not all(is_int(rel) for rel in judged.values()):
            raise InvalidInputError(
                f"qrels[{query_id!r}] must map doc ids to integer relevance labels, got "
                f"{judged!r:.80}"
            )


def evaluate(qrels: Qrels, run: Run, measures: Iterable[str] = DEFAULT_MEASURES) -> Evaluation:
    """Evaluate ``run`` against ``qrels``.

    Queries without judgments are left out; judged queries the run has no results for count
    as 0 (ir-measures' convention, trec_eval ``-c``), so a run cannot gain by skipping queries.
    """
    _check_qrels(qrels)
    if not isinstance(run, Run):
        raise InvalidInputError(
            f"run must be a semrank.eval.Run (see load_trec_run, candidates_to_run), got "
            f"{type(run).__name__}"
        )
    parsed = parse_measures(measures)
    evaluator = _evaluator(parsed, qrels)
    scored = _scored_run(run)
    per_query: dict[str, dict[str, float]] = {str(m): {} for m in parsed}
    for metric in evaluator.iter_calc(scored):
        per_query[str(metric.measure)][metric.query_id] = float(metric.value)
    aggregate = {str(m): float(v) for m, v in evaluator.calc_aggregate(scored).items()}
    ordered = {str(m): aggregate.get(str(m), math.nan) for m in parsed}
    return Evaluation(run_name=run.name, aggregate=ordered, per_query=per_query)


def compare(a: Evaluation, b: Evaluation, measure: str) -> PairedComparison:
    """Paired t-test and wins/ties/losses of ``b`` over ``a`` on their common queries."""
    from scipy import stats

    values_a, values_b = a.per_query.get(measure), b.per_query.get(measure)
    if values_a is None or values_b is None:
        raise InvalidInputError(f"measure {measure!r} was not computed for both runs")
    common = sorted(set(values_a) & set(values_b))
    xs = [values_a[q] for q in common]
    ys = [values_b[q] for q in common]
    diffs = [y - x for x, y in zip(xs, ys, strict=True)]
    wins = sum(d > TIE_TOLERANCE for d in diffs)
    losses = sum(d < -TIE_TOLERANCE for d in diffs)
    t_stat, p_value = math.nan, math.nan
    if len(common) >= 2 and any(abs(d) > TIE_TOLERANCE for d in diffs):
        result = stats.ttest_rel(ys, xs)
        t_stat, p_value = float(result.statistic), float(result.pvalue)
    elif common:
        p_value = 1.0  # identical on every query: no evidence of a difference
    return PairedComparison(
        measure=measure,
        queries=len(common),
        mean_a=sum(xs) / len(xs) if xs else math.nan,
        mean_b=sum(ys) / len(ys) if ys else math.nan,
        wins=wins,
        ties=len(common) - wins - losses,
        losses=losses,
        t_statistic=t_stat,
        p_value=p_value,
    )
