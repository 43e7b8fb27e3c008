"""Retrieval metrics through ir-measures (pytrec_eval backend) and paired run comparison."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from subprocess import CalledProcessError
from typing import Any

from semrank._checks import is_finite_number, is_int
from semrank.errors import InvalidInputError
from semrank.eval.loaders import Qrels, Run, ScoredDoc, keyed_by_id_text, require_run

DEFAULT_MEASURES: tuple[str, ...] = ("nDCG@10", "RR@10", "R@100", "AP")
# Two per-query values closer than this count as a tie.
TIE_TOLERANCE = 1e-9
# Largest cutoff accepted: far beyond any ranking, below where trec_eval's integers overflow.
MAX_CUTOFF = 2**31 - 1
# $MAX_JUDGMENT of ir-measures' gdeval.pl (ERR, nDCG(dcg="exp-log2")).
GDEVAL_MAX_GRADE = 4
# Largest relevance label (either sign) accepted. trec_eval allocates memory per label value up
# to the largest one (8 bytes each: 10**8 takes 0.8 GB, 2**31 16 GB), keeps labels as 32-bit
# ints (2**32 silently becomes 0) and crashes the process on 2**62; real grades are 0 to 4.
MAX_RELEVANCE = 1_000_000


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

    def __repr__(self) -> str:
        # The means, not every query's value (MS MARCO dev: 7,000 queries per measure).
        return (
            f"Evaluation(run_name={self.run_name!r}, aggregate={self.aggregate!r}, "
            f"per_query=<{self.query_count} queries>)"
        )


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
    """ir-measures Measure objects for names like ``nDCG@10`` or ``RR(rel=2)@10``.

    Each measure is checked here, before any evaluation: the C and perl code behind ir-measures
    aborts the process or raises bare exceptions on what it cannot compute.
    """
    if not isinstance(names, str | Iterable):
        raise InvalidInputError(
            f"measures must be a list of names such as ['nDCG@10', 'AP'] (or one name), got "
            f"{type(names).__name__} ({names!r:.60}); leave it out for {list(DEFAULT_MEASURES)}"
        )
    measures = []
    for name in [names] if isinstance(names, str) else names:
        if not isinstance(name, str):
            raise InvalidInputError(
                f"measure names must be strings such as 'nDCG@10', got {name!r}"
            )
        measure = _parse_measure(name.strip())
        _check_computable(measure, name)
        _check_params(measure, name)
        _check_supported(measure, name)
        measures.append(measure)
    if not measures:
        raise InvalidInputError("no measures given; e.g. --measures nDCG@10,RR@10")
    return measures


# "nDCG@10", "AP", "RR(rel=2)@10": a measure, its parameters and its cutoff, built without
# ir-measures' parser, which reads values through ast.Num (deprecated since Python 3.12, an
# error under -W error; removed in 3.14, where every name failed).
_MEASURE_NAME = re.compile(r"([A-Za-z][A-Za-z0-9_]*)(?:\((.*)\))?(?:@([0-9]+(?:\.[0-9]+)?))?")


def _parse_measure(name: str) -> Any:
    import ir_measures

    try:
        built = _build_measure(name)
        if built is not None:
            return built
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return ir_measures.parse_measure(name)
    # KeyError: an unknown parameter name, e.g. nDCG(foo=1)@10. AttributeError: ir-measures'
    # parser on a Python without ast.Num (3.14).
    except InvalidInputError:
        raise
    except (NameError, ValueError, SyntaxError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidInputError(
            f"unknown measure {name!r} ({exc}); use ir-measures names such as "
            f"{', '.join(DEFAULT_MEASURES)} or RR(rel=2)@10"
        ) from None


def _build_measure(name: str) -> Any:
    """The measure ``name`` spells, or None where it is not that simple form."""
    import ast

    import ir_measures
    from ir_measures.measures import BaseMeasure

    spelled = _MEASURE_NAME.fullmatch(name)
    measure = getattr(ir_measures, spelled[1], None) if spelled else None
    if spelled is None or not isinstance(measure, BaseMeasure):  # providers have NAME too
        return None
    if spelled[2] is not None:
        source = f"measure({spelled[2]})"
        call = ast.parse(source, mode="eval").body
        if not isinstance(call, ast.Call) or call.args or any(k.arg is None for k in call.keywords):
            return None
        measure = measure(**{str(k.arg): _parameter(k, source, name) for k in call.keywords})
    if spelled[3] is not None:
        cutoff = float(spelled[3]) if "." in spelled[3] else int(spelled[3])
        measure = measure @ cutoff
    return measure


def _parameter(keyword: Any, source: str, name: str) -> Any:
    """A measure parameter's value; a bare word (dcg=exp-log2) is named with its quoting
    (ast's own message named an object in memory)."""
    import ast

    try:
        return ast.literal_eval(keyword.value)
    except ValueError:
        value = ast.get_source_segment(source, keyword.value)
        raise InvalidInputError(
            f"measure {name!r}: {keyword.arg}={value} is not a number or quoted text; quote "
            f"text, as in {keyword.arg}='{value}'"
        ) from None


def _available_providers() -> list[Any]:
    """ir-measures' providers installed here, in its own order (pytrec_eval first)."""
    import ir_measures

    return [p for p in ir_measures.DefaultPipeline.providers if p.is_available()]


def _supported_names() -> str:
    names = {m.NAME for p in _available_providers() for m in p.SUPPORTED_MEASURES}
    return ", ".join(sorted(names, key=str.lower))


def _check_computable(measure: Any, name: str) -> None:
    """Refuse a measure no installed provider implements, naming the one that would."""
    import ir_measures

    if any(m.NAME == measure.NAME for p in _available_providers() for m in p.SUPPORTED_MEASURES):
        return
    elsewhere = [
        f"{p.NAME}: {p.install_instructions() or 'see its documentation'}"
        for p in ir_measures.DefaultPipeline.providers
        if any(m.NAME == measure.NAME for m in p.SUPPORTED_MEASURES)
    ]
    hint = f" (it needs {'; or '.join(elsewhere)})" if elsewhere else ""
    raise InvalidInputError(
        f"measure {name!r} cannot be computed with the installed ir-measures providers{hint}; "
        f"use one of {_supported_names()}"
    )


def _example(measure: Any) -> str:
    return f"{measure.NAME}@10" if "cutoff" in measure.SUPPORTED_PARAMS else measure.NAME


def _check_params(measure: Any, name: str) -> None:
    cutoff = measure.params.get("cutoff")
    # A cutoff of 0 aborts pytrec_eval's C code (or silently scores 0 elsewhere), 10.5 has no
    # meaning, and huge ones overflow trec_eval's integers into another cutoff.
    if "cutoff" in measure.params and not (is_int(cutoff, at_least=1) and cutoff <= MAX_CUTOFF):
        raise InvalidInputError(
            f"measure {name!r}: the cutoff (after '@') must be a whole number of documents "
            f"from 1 to {MAX_CUTOFF}, got {cutoff!r}; e.g. {_example(measure)}"
        )
    recall = measure.params.get("recall", 0.0)
    # IPrec@2.0 asks for a recall no ranking reaches: pytrec_eval silently answers 0.
    if not is_finite_number(recall, at_least=0.0, at_most=1.0):
        raise InvalidInputError(
            f"measure {name!r}: the recall level must be a fraction from 0.0 to 1.0, got "
            f"{recall!r}; e.g. {measure.NAME}@0.5"
        )
    try:
        measure.validate_params()
    except AssertionError:
        raise InvalidInputError(
            f"measure {name!r}: {_param_problem(measure)}; see "
            "https://ir-measur.es/en/latest/measures.html for its parameters"
        ) from None


def _param_problem(measure: Any) -> str:
    """What is wrong with the parameters that ir-measures' validate_params() refused."""
    allowed = measure.SUPPORTED_PARAMS
    unknown = sorted(set(measure.params) - set(allowed))
    if unknown:
        return f"unknown parameter {unknown[0]!r} (it takes {', '.join(allowed) or 'none'})"
    for param, info in allowed.items():
        if param not in measure.params:
            if info.required:
                return f"parameter {param} ({info.desc}) is required, e.g. {param}=..."
            continue
        if not info.validate(measure.params[param]):
            expected = getattr(info.dtype, "__name__", "value")
            if isinstance(info.choices, list):
                expected = " or ".join(repr(choice) for choice in info.choices)
            value = measure.params[param]
            return f"{param}={value!r} is invalid ({info.desc}: expected {expected})"
    return "invalid parameters"


def _check_supported(measure: Any, name: str) -> None:
    """The measure exists, but maybe not with these parameters (RR(judged_only=True)@10)."""
    if any(p.supports(measure) for p in _available_providers()):
        return
    raise InvalidInputError(
        f"measure {name!r}: no installed ir-measures provider computes {measure.NAME} with "
        f"these parameters; drop or change them (e.g. {_example(measure)}), or use one of "
        f"{_supported_names()}"
    )


def split_measure_names(values: Sequence[str] | None) -> list[str]:
    """Measure names from repeated and/or comma-separated options (``nDCG@10,AP``)."""
    if not values:
        return list(DEFAULT_MEASURES)
    # Commas inside parentheses belong to parameters: RR(rel=2,judged_only=True)@10.
    names = [name for value in values for name in split_top_level(value)]
    return [name.strip() for name in names if name.strip()]


def split_top_level(text: str) -> list[str]:
    """``text`` split at the commas outside brackets and JSON strings: ``RR(rel=2,x=1)@10``
    and an inline retriever tree ``{"rrf": {"retrievers": [...]}}`` stay whole."""
    parts, current, depth, quoted, escaped = [], "", 0, False, False
    for char in text:
        if quoted:
            quoted = escaped or char != '"'
            escaped = not escaped and char == "\\"
        elif char == '"':
            quoted = True
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0 and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _count_unranked(
    measure: Any,
    judgments: Qrels,
    scored: Mapping[str, Any],
    per_query: dict[str, dict[str, float]],
    aggregate: dict[str, float],
) -> None:
    """NumQ and NumRel of the judged queries the run has no results for, as trec_eval ``-c``
    counts them (ir-measures gives such a query every measure's default, 0: NumRel then
    depended on the run, not the qrels). Their aggregate is the sum over queries."""
    if measure.NAME not in ("NumQ", "NumRel"):
        return
    values = per_query[str(measure)]
    least = int(measure.params.get("rel", 1))
    for query_id, labels in judgments.items():
        if query_id not in scored:
            relevant = sum(label >= least for label in labels.values())
            values[query_id] = 1.0 if measure.NAME == "NumQ" else float(relevant)
    aggregate[str(measure)] = float(sum(values.values()))


def _scored_run(rankings: Mapping[str, list[ScoredDoc]]) -> dict[str, dict[str, float]]:
    # pytrec_eval sorts by score and breaks ties by doc id; scores derived from list positions
    # make it evaluate exactly the order of the run. The rankings are checked (require_run):
    # a document listed twice would be merged here into one entry without a word.
    # An empty ranking is left out: the judged query then counts as 0 like any query the run
    # misses (Judged@k divided by its length, 0, and crashed).
    return {
        query_id: {doc.doc_id: float(len(ranking) - i) for i, doc in enumerate(ranking)}
        for query_id, ranking in rankings.items()
        if ranking
    }


def _provider_groups(measures: list[Any]) -> dict[Any, list[Any]]:
    """Each measure with the first installed provider that computes it (ir-measures' order,
    as its own evaluator does), so a failure can be blamed on the measures of one provider."""
    groups: dict[Any, list[Any]] = {}
    providers = _available_providers()
    for measure in measures:
        provider = next(p for p in providers if p.supports(measure))  # checked by parse_measures
        groups.setdefault(provider, []).append(measure)
    return groups


def _check_gdeval_inputs(measures: list[Any], qrels: Qrels, scored: Mapping[str, Any]) -> None:
    # gdeval.pl keeps only the part of a query id after its last '-' and dies on other
    # non-numeric ids or grades above 4: 'a-1' and 'b-1' would silently both be query 1.
    names = ", ".join(str(m) for m in measures)
    bad_id = next((q for q in (*qrels, *scored) if not re.fullmatch(r"[0-9]+", q)), None)
    if bad_id is not None:
        raise InvalidInputError(
            f"gdeval, which computes {names}, needs numeric query ids, got {bad_id!r}; "
            "number the queries, or use nDCG@10 (computed by pytrec_eval) instead"
        )
    top = max((grade for judged in qrels.values() for grade in judged.values()), default=0)
    if top > GDEVAL_MAX_GRADE:
        raise InvalidInputError(
            f"gdeval, which computes {names}, takes relevance grades up to {GDEVAL_MAX_GRADE}, "
            f"got {top}; rescale the qrels or use nDCG@10 (computed by pytrec_eval) instead"
        )


def _calc(provider: Any, measures: list[Any], qrels: Qrels, scored: Any) -> Any:
    """ir-measures' results for ``measures``; the provider's own failures become one line."""
    try:
        return provider.evaluator(measures, qrels).calc(scored)
    except (ValueError, AssertionError, KeyError, TypeError, CalledProcessError) as exc:
        names = ", ".join(str(m) for m in measures)
        raise InvalidInputError(
            f"{names} could not be computed by ir-measures' {provider.NAME} provider "
            f"({type(exc).__name__}: {str(exc)[:200]}); use measures such as "
            f"{', '.join(DEFAULT_MEASURES)} (the installed providers have {_supported_names()})"
        ) from None


def measured_qrels(qrels: object) -> Qrels:
    """Qrels as ``{query_id: {doc_id: int relevance}}`` with at least one judged query, as
    pytrec_eval takes them: integer ids (numpy's too) become strings, numpy labels ints. The
    queries ``evaluate`` measures: one judged only below 0 is left out."""
    if not isinstance(qrels, Mapping):
        raise InvalidInputError(
            f"qrels must be a dict {{query_id: {{doc_id: relevance}}}}, got {type(qrels).__name__}"
        )
    if not qrels:
        raise InvalidInputError(
            "qrels is empty, so every measure would be undefined; load judgments with load_qrels"
        )
    keyed = keyed_by_id_text(
        qrels,
        "a query id of qrels",
        lambda query_id, raw: (
            f"qrels hold query {query_id!r} twice (as {raw!r} and as another "
            "id with the same text); merge its judgments under one id"
        ),
    )
    checked = {query_id: _checked_judgments(query_id, judged) for query_id, judged in keyed.items()}
    # Left out, as queries without judgments: a query judged only below 0 (junk, -2 in the TREC
    # Web Track) crashed trec_eval's C code (a negative memset: the process died) or hung it.
    judged = {query_id: labels for query_id, labels in checked.items() if _judged(labels)}
    if not judged:
        raise InvalidInputError(
            "qrels hold no judgment of 0 or above, so every measure would be undefined; "
            "give the judged documents' labels (0 = not relevant, 1+ = relevant)"
        )
    return judged


def _judged(labels: dict[str, int]) -> bool:
    return bool(labels) and max(labels.values()) >= 0


def _checked_judgments(query_id: str, judged: object) -> dict[str, int]:
    if not isinstance(judged, Mapping) or not all(is_int(rel) for rel in judged.values()):
        raise InvalidInputError(
            f"qrels[{query_id!r}] must map doc ids to integer relevance labels, got {judged!r:.80}"
        )
    keyed = keyed_by_id_text(
        judged,
        f"a doc id of qrels[{query_id!r}]",
        lambda doc_id, raw: (
            f"qrels[{query_id!r}] judges document {doc_id!r} twice (as {raw!r} "
            "and as another id with the same text); keep one judgment per document"
        ),
    )
    checked: dict[str, int] = {}
    for doc_id, label in keyed.items():
        if not -MAX_RELEVANCE <= label <= MAX_RELEVANCE:
            raise InvalidInputError(
                f"qrels[{query_id!r}][{doc_id!r}] is {label}, beyond the relevance labels "
                f"trec_eval can take (-{MAX_RELEVANCE:_} to {MAX_RELEVANCE:_}); use graded "
                "labels such as 0 (not relevant) to 3"
            )
        checked[doc_id] = int(label)
    return checked


def evaluate(qrels: Qrels, run: Run, measures: Iterable[str] = DEFAULT_MEASURES) -> Evaluation:
    """Evaluate ``run`` against ``qrels``.

    Queries without judgments (none, or only negative labels) are left out; judged queries the
    run has no results for count as 0 (ir-measures' convention, trec_eval ``-c``), so a run
    cannot gain by skipping queries.
    """
    judgments = measured_qrels(qrels)
    scored = _scored_run(require_run(run))
    parsed = parse_measures(measures)
    per_query: dict[str, dict[str, float]] = {str(m): {} for m in parsed}
    aggregate: dict[str, float] = {}
    for provider, group in _provider_groups(parsed).items():
        if provider.NAME == "gdeval":
            _check_gdeval_inputs(group, judgments, scored)
        # One measure per call: in one call ir-measures' pytrec_eval provider gave plain nDCG
        # and NumRet another measure's gains / judged_only, and let two measures of one
        # trec_eval name overwrite each other (one then read 0.0).
        for measure in group:
            results = _calc(provider, [measure], judgments, scored)
            for metric in results.per_query:
                per_query[str(metric.measure)][metric.query_id] = float(metric.value)
            aggregate.update({str(m): float(v) for m, v in results.aggregated.items()})
            _count_unranked(measure, judgments, scored, per_query, aggregate)
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
    if len(common) >= 2 and max(diffs) - min(diffs) > TIE_TOLERANCE:
        result = stats.ttest_rel(ys, xs)
        t_stat, p_value = float(result.statistic), float(result.pvalue)
    elif common and wins == losses == 0:
        p_value = 1.0  # identical on every query: no evidence of a difference
    # One query that changed, or every query by the same amount (no variance: t is infinite
    # and scipy warned of precision loss): no test is defined (p stays NaN, shown as n/a).
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
