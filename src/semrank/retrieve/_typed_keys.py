"""Elasticsearch's ``typed_keys``: each aggregation's name in the answer prefixed with its
type, as Elasticsearch writes them (``sterms#shops``, ``avg#price``,
``date_histogram#per_month``), sub-aggregations inside buckets too. The Java client and
elasticsearch-py's DSL read the type from the prefix to parse each aggregation.

A ``terms`` aggregation's type is its field's in Elasticsearch (``sterms`` for keywords,
``lterms`` for whole numbers and booleans, ``dterms`` for other numbers); semrank's fields
have no types, so it is read from the keys the aggregation answered, every bucket of it
together (a sub-aggregation is one type in every bucket of its parent): ``lterms`` where they
are all whole numbers or booleans, ``dterms`` where they are numbers and some are not whole,
``sterms`` otherwise (strings, or no buckets at all).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from semrank.retrieve._aggs import (
    Aggregation,
    MetricAgg,
    RangeAgg,
    TermsAgg,
    buckets_of,
    parse_aggs,
)
from semrank.retrieve._histograms import DateHistogramAgg, HistogramAgg
from semrank.retrieve._subaggs import Bucketed

__all__ = ["typed_keys"]

# A metric's type where Elasticsearch names it otherwise than the request does (percentiles
# are estimated with a TDigest there: exact here, answered in the same shape).
METRIC_TYPES = {"percentiles": "tdigest_percentiles"}


def typed_keys(aggs: Any, answer: Mapping[str, Any]) -> dict[str, Any]:
    """``answer`` (``aggregate``'s, of ``aggs``: the request's ``aggs`` or parsed ones) with
    each aggregation named ``type#name``, at every depth."""
    (typed,) = _typed(parse_aggs(aggs), [answer])
    return typed


def _typed(
    aggs: Mapping[str, Aggregation], holders: list[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """``holders`` (an answer, or every bucket of one aggregation) with ``aggs``' names typed;
    their other keys (a bucket's key, doc_count) as they were, first."""
    typed = [{k: v for k, v in holder.items() if k not in aggs} for holder in holders]
    for name, agg in aggs.items():
        answers = [holder[name] for holder in holders]
        kind = type_name(agg, answers)
        if isinstance(agg, Bucketed):
            answers = _with_typed_buckets(agg.aggs, answers)
        for holder, answered in zip(typed, answers, strict=True):
            holder[f"{kind}#{name}"] = answered
    return typed


def _with_typed_buckets(
    aggs: Mapping[str, Aggregation], answers: list[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Bucket aggregations' ``answers`` with their buckets' sub-aggregations typed, all the
    buckets of all of them at once (a sub-aggregation's type from all its answers)."""
    typed = iter(_typed(aggs, [bucket for answer in answers for bucket in buckets_of(answer)]))
    rebuilt = []
    for answer in answers:
        buckets = answer["buckets"]
        if isinstance(buckets, Mapping):  # keyed: {key: bucket}
            again: Any = {key: next(typed) for key in buckets}
        else:
            again = [next(typed) for _ in buckets]
        rebuilt.append({**answer, "buckets": again})
    return rebuilt


def type_name(agg: Aggregation, answers: list[Mapping[str, Any]]) -> str:
    """The type Elasticsearch names ``agg`` by in a typed key, given its ``answers``."""
    inner = agg.agg if isinstance(agg, Bucketed) else agg
    if isinstance(inner, MetricAgg):
        return METRIC_TYPES.get(inner.kind, inner.kind)
    if isinstance(inner, TermsAgg):
        return _terms_type([bucket for answer in answers for bucket in buckets_of(answer)])
    if isinstance(inner, RangeAgg):
        return "range"
    if isinstance(inner, DateHistogramAgg):
        return "date_histogram"
    assert isinstance(inner, HistogramAgg)
    return "histogram"


def _terms_type(buckets: list[Mapping[str, Any]]) -> str:
    keys = [bucket["key"] for bucket in buckets]
    if not keys or not all(isinstance(key, int | float) for key in keys):
        return "sterms"  # booleans' keys are 0 and 1 (with key_as_string): lterms
    return "lterms" if all(isinstance(key, int) for key in keys) else "dterms"
