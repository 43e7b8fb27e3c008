"""Sub-aggregations: a bucket aggregation (``terms``, ``range``, ``histogram``,
``date_histogram``) holding ``aggs`` of its own, computed over each bucket's documents and
answered inside the bucket, as Elasticsearch nests them (``{"key": "blog", "doc_count": 5,
"avg_price": {"value": 12.5}}``).

The store is asked once (``field_rows``): the values of every field the aggregation and
those below it read, of each document it aggregates. The buckets and everything below them
are then computed from those rows (``HeldRows``), by the same code as over a store: one
query for a top-level bucket aggregation with sub-aggregations, whatever their depth or
number of buckets (and one more per field a ``terms`` with ``min_doc_count`` 0 lists the
index's values of). A document is in a bucket where the bucket counts it: a terms bucket's
value (or its ``missing``), a range holding one of its numbers, a histogram step holding
one of its values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from semrank.retrieve._aggregated import HeldRows
from semrank.retrieve._aggs import (
    AggregatedStore,
    Aggregation,
    FieldRow,
    RangeAgg,
    TermsAgg,
    aggregate,
    value_key,
)
from semrank.retrieve._filter import Filter, Scalar
from semrank.retrieve._histograms import DateHistogramAgg, HistogramAgg

__all__ = ["Bucketed", "fields_read"]

BucketAgg = TermsAgg | RangeAgg | HistogramAgg | DateHistogramAgg


@dataclasses.dataclass(frozen=True, kw_only=True)
class Bucketed:
    """``agg``'s buckets, each holding ``aggs`` over its documents."""

    agg: BucketAgg
    aggs: Mapping[str, Aggregation]

    @property
    def field(self) -> str:
        return self.agg.field

    def compute(self, store: AggregatedStore, within: Filter) -> dict[str, Any]:
        if isinstance(store, HeldRows):  # a bucket's: its rows hold every field below
            held = store.holding(store.field_rows((), within))
        else:
            held = HeldRows(store, store.field_rows(sorted(fields_read(self)), within))
        answer = self.agg.compute(held, held.matched)
        buckets = answer["buckets"]
        members = _members(self.agg, held.rows)
        for position, bucket in enumerate(
            buckets.values() if isinstance(buckets, dict) else buckets
        ):
            inside = held.holding(members.get(_identity(self.agg, position, bucket), []))
            bucket.update(aggregate(inside, self.aggs, inside.matched))
        return answer


def fields_read(agg: Aggregation) -> set[str]:
    """The fields ``agg`` and its sub-aggregations read."""
    if isinstance(agg, Bucketed):
        return {agg.field}.union(*(fields_read(sub) for sub in agg.aggs.values()))
    return {agg.field}


def _members(agg: BucketAgg, rows: list[FieldRow]) -> dict[Hashable, list[FieldRow]]:
    """The rows in each bucket, by the bucket's identity (a row may be in several)."""
    identities = _identities(agg)
    found: dict[Hashable, list[FieldRow]] = {}
    for row in rows:
        for identity in identities(row.get(agg.field, [])):
            found.setdefault(identity, []).append(row)
    return found


def _identities(agg: BucketAgg) -> Callable[[list[Scalar]], set[Hashable]]:
    """The buckets a document holding ``values`` is in (those a document without one is in,
    where the aggregation reads it as ``missing``), each value's looked up once."""
    of_value = _value_buckets(agg)
    known: dict[Hashable, frozenset[Hashable]] = {}

    def buckets(values: list[Scalar]) -> set[Hashable]:
        if not values and agg.missing is not None:
            values = [agg.missing]
        found: set[Hashable] = set()
        for value in values:
            key = value_key(value)
            if key not in known:
                known[key] = frozenset(of_value(*key))
            found |= known[key]
        return found

    return buckets


def _value_buckets(agg: BucketAgg) -> Callable[[str, Any], set[Hashable]]:
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
    if isinstance(agg, TermsAgg) and "key_as_string" in bucket:  # a boolean's
        return ("bool", bool(bucket["key"]))
    if isinstance(agg, TermsAgg):
        return value_key(bucket["key"])
    return bucket["key"]
