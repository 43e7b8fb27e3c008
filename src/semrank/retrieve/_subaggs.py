"""Sub-aggregations: a bucket aggregation (``terms``, ``range``, ``histogram``,
``date_histogram``) holding ``aggs`` of its own, computed over each bucket's documents and
answered inside the bucket, as Elasticsearch nests them (``{"key": "blog", "doc_count": 5,
"avg_price": {"value": 12.5}}``).

The store is asked once (``held_values``): the values of every field the aggregation and
those below it read, of each document it aggregates, in arrays (``_held``). The buckets and
everything below them are then computed from those (``HeldRows``), by the same code as over
a store: one query for a top-level bucket aggregation with sub-aggregations, whatever their
depth or number of buckets (and one more per field a ``terms`` with ``min_doc_count`` 0 lists
the index's values of). A document is in a bucket where the bucket counts it: a terms bucket's
value (or its ``missing``), a range holding one of its numbers, a histogram step holding
one of its values.

Ordered by a sub-aggregation (``"order": {"avg_price": "desc"}``), that metric is computed
for every bucket (the fields it reads only), before the buckets are cut to ``size``: exact,
not over a shard's top buckets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import numpy as np

from semrank.retrieve._aggorder import order_metrics, order_value, split_path
from semrank.retrieve._aggregated import HeldRows
from semrank.retrieve._aggs import (
    AggregatedStore,
    Aggregation,
    MetricAgg,
    RangeAgg,
    Ranked,
    TermsAgg,
    aggregate,
    bucket_identity,
    buckets_of,
    count_buckets,
    date_key,
    read_with_missing,
    value_key,
)
from semrank.retrieve._filter import Filter
from semrank.retrieve._held import HeldField, HeldValues, distinct
from semrank.retrieve._histograms import DateHistogramAgg, HistogramAgg

__all__ = ["Bucketed", "fields_read"]

BucketAgg = TermsAgg | RangeAgg | HistogramAgg | DateHistogramAgg
_Members = dict[Hashable, np.ndarray]  # each bucket's rows (ascending), by its identity
_NO_ROWS = np.empty(0, dtype=np.int64)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Bucketed:
    """``agg``'s buckets, each holding ``aggs`` over its documents."""

    agg: BucketAgg
    aggs: Mapping[str, Aggregation]

    @property
    def field(self) -> str:
        return self.agg.field

    def compute(self, store: AggregatedStore, within: Filter) -> dict[str, Any]:
        if isinstance(store, HeldRows):  # a bucket's: it holds every field below
            held = HeldRows(store.index, store.held_values((), within), store.index_counts)
        else:
            held = HeldRows(store, store.held_values(sorted(fields_read(self)), within))
        decided = _dates_decided(self, held)
        agg, aggs = decided.agg, decided.aggs
        members = _members(agg, held.held)
        ranked = _ranking(agg, aggs, held, members)
        if ranked is None or isinstance(agg, RangeAgg):
            answer = agg.compute(held, held.matched)
        else:
            answer = agg.compute(held, held.matched, ranked=ranked)
        count_buckets(answer)  # before their sub-aggregations: those would multiply them
        for position, bucket in enumerate(buckets_of(answer)):
            inside = held.holding(members.get(_identity(agg, position, bucket), _NO_ROWS))
            bucket.update(aggregate(inside, aggs, inside.matched))
        return answer


def _dates_decided(bucketed: Bucketed, held: HeldRows) -> Bucketed:
    """``bucketed`` with whether each terms and metric in it reads its field as dates
    decided, where not yet, over all the documents ``held`` (the top bucket aggregation's):
    every bucket answers alike (a bucket whose documents hold a date field's epoch
    milliseconds only is no bucket of numbers beside those holding date strings)."""

    def decided(agg: Any) -> Any:
        if isinstance(agg, Bucketed):
            return Bucketed(agg=decided(agg.agg), aggs={n: decided(a) for n, a in agg.aggs.items()})
        if isinstance(agg, TermsAgg | MetricAgg) and agg.dates is None:
            found = read_with_missing(held, agg.field, held.matched, agg.missing)
            return dataclasses.replace(agg, dates=agg.reads_dates(found))
        return agg

    result: Bucketed = decided(bucketed)
    return result


def fields_read(agg: Aggregation) -> set[str]:
    """The fields ``agg`` and its sub-aggregations read."""
    if isinstance(agg, Bucketed):
        return {agg.field}.union(*(fields_read(sub) for sub in agg.aggs.values()))
    return {agg.field}


def _ranking(
    agg: BucketAgg, subs: Mapping[str, Aggregation], held: HeldRows, members: _Members
) -> Ranked | None:
    """Each bucket's values of the sub-aggregations ``agg`` is ordered by (None: it is
    ordered by count and key only), those metrics computed once a bucket over its documents'
    values of the fields they read."""
    metrics = order_metrics(getattr(agg, "order", ()), subs)
    if not metrics:
        return None
    fields = {metric.field for metric in metrics.values()}
    reading = HeldRows(
        held.index,
        HeldValues(held.held.size, {f: held.held.fields[f] for f in sorted(fields)}),
        held.index_counts,
    )
    answers: dict[Hashable, dict[str, Any]] = {}

    def value(identity: Hashable, path: str) -> float | None:
        if identity not in answers:
            inside = reading.holding(members.get(identity, _NO_ROWS))
            answers[identity] = aggregate(inside, metrics, inside.matched)
        name = split_path(path)[0]
        return order_value(answers[identity][name], metrics[name], path)

    return value


def _members(agg: BucketAgg, held: HeldValues) -> _Members:
    """The rows in each bucket (ascending), by the bucket's identity (a row may be in
    several): each distinct value's buckets looked up once, then every row's in arrays."""
    field, of_value = held.fields[agg.field], _value_buckets(agg)
    identities: dict[Hashable, int] = {}
    each = [[identities.setdefault(b, len(identities)) for b in of_value(*k)] for k in field.keys]
    rows, buckets = _pairs(field, each)
    if agg.missing is not None:  # documents without a value: in the buckets of ``missing``
        without = np.flatnonzero(np.diff(field.starts) == 0)
        for identity in of_value(*value_key(agg.missing)):
            rows = np.concatenate([rows, without])
            number = identities.setdefault(identity, len(identities))
            buckets = np.concatenate([buckets, np.full(len(without), number, np.int64)])
    pairs, _ = distinct(buckets * max(held.size, 1) + rows)  # by bucket, then row; each once
    bucket_of, row_of = np.divmod(pairs, max(held.size, 1))
    bounds = np.searchsorted(bucket_of, np.arange(len(identities) + 1))
    return {identity: row_of[bounds[n] : bounds[n + 1]] for identity, n in identities.items()}


def _pairs(field: HeldField, each: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Each (row, bucket) of ``field``'s rows, ``each[code]`` the buckets of a value."""
    lengths = np.array([len(b) for b in each], dtype=np.int64)
    flat = np.array([b for bs in each for b in bs], dtype=np.int64)
    key_starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    codes = field.codes[field.first]
    times = lengths[codes] if len(codes) else np.zeros(0, dtype=np.int64)
    ends = np.cumsum(times)
    at = np.repeat(key_starts[codes] - (ends - times), times) + np.arange(
        int(ends[-1]) if len(ends) else 0
    )
    return np.repeat(field.rows[field.first], times), flat[at]


def _value_buckets(agg: BucketAgg) -> Callable[[str, Any], set[Hashable]]:
    if isinstance(agg, TermsAgg) and agg.dates:  # a date field's values: by their instant
        return lambda kind, value: {date_key((kind, value)) or (kind, value)}
    if isinstance(agg, TermsAgg):
        return lambda kind, value: {(kind, value)}
    if isinstance(agg, RangeAgg):
        return lambda kind, value: {
            n for n, r in enumerate(agg.ranges) if kind == "number" and r.holds(value)
        }

    def step(kind: str, value: Any) -> set[Hashable]:
        key = agg.key_of(kind, value)
        return set() if key is None else {agg.start(key)}

    return step


def _identity(agg: BucketAgg, position: int, bucket: Mapping[str, Any]) -> Hashable:
    """The identity ``_value_buckets`` gives the bucket answered as ``bucket``."""
    if isinstance(agg, RangeAgg):
        return position  # answered in the order of its ranges
    if isinstance(agg, TermsAgg):
        return bucket_identity(bucket)
    return bucket["key"]
