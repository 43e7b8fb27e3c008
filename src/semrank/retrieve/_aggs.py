"""Aggregations (facets): Elasticsearch's ``aggs`` over the documents a search matches.

Supported: ``terms`` (buckets of a field's values), the metrics ``min``, ``max``, ``avg``,
``sum``, ``value_count``, ``cardinality`` (exact), ``stats`` (count, min, max, avg and sum),
``extended_stats`` and ``percentiles`` (exact), numeric ``range`` buckets, and ``histogram`` and
``date_histogram`` (``_histograms``); a bucket aggregation's own ``aggs`` in ``_subaggs``.
A field's values are those filters read (``document_values``: dotted paths,
arrays flattened, ``.keyword`` read as the field where the document has no such key), numbers
equal as numbers (1 is 1.0). Buckets count documents (a document holding ``[3, 3]`` is one
document in the bucket of 3); metrics count values as Elasticsearch's doc values hold them:
numbers and booleans every one (``[3, 3]`` sums to 6, ``value_count`` 2), strings each distinct
one of a document once (a keyword's ordinals). Metrics read numbers only; ``value_count`` and
``cardinality`` every value.

A store answers three questions (``AggregatedStore``): how many matched documents hold each
value of a field, and how often it occurs in them (``value_counts``), the distinct values of
each matched document holding several (``value_sets``: a histogram counts a document once in a
bucket of two of its values), and how many pass a filter (``count_matching``); everything else
is computed here from those, so every store buckets, orders and sums alike.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from semrank.errors import InvalidInputError
from semrank.retrieve._dateformat import check_format, shown_date
from semrank.retrieve._datemath import value_instant
from semrank.retrieve._filter import (
    Filter,
    MatchAll,
    Range,
    Scalar,
    _field,
    _kind,
    _shown,
    all_of,
)

if TYPE_CHECKING:
    from semrank.retrieve._held import HeldValues
    from semrank.retrieve._histograms import DateHistogramAgg, HistogramAgg
    from semrank.retrieve._subaggs import Bucketed

SUPPORTED_AGGS = (
    "terms", "min", "max", "avg", "sum", "value_count", "cardinality", "stats", "extended_stats",
    "percentiles", "range", "histogram", "date_histogram",
)  # fmt: skip
METRICS = (
    "min", "max", "avg", "sum", "value_count", "cardinality", "stats", "extended_stats",
    "percentiles",
)  # fmt: skip
BUCKET_AGGS = ("terms", "range", "histogram", "date_histogram")  # those that may hold aggs
MAX_DEPTH = 8  # how deep sub-aggregations nest
DEFAULT_PERCENTS = (1.0, 5.0, 25.0, 50.0, 75.0, 95.0, 99.0)
MAX_AGGS = 100
MAX_BUCKETS = 10_000  # a terms size or ranges list; Elasticsearch's search.max_buckets is 65,536
MAX_ANSWER_BUCKETS = 65_536  # Elasticsearch's search.max_buckets: one answer's, every level
# The buckets the aggregations being computed in this thread have made (None: none running).
# Sub-aggregations multiply (terms x terms x terms of a few values each is millions of
# buckets), so they are counted as each level is made, before the level below is computed.
_BUCKETS_MADE: ContextVar[list[int] | None] = ContextVar("semrank_buckets_made", default=None)
# How keys of different kinds sort ("date": a date field's, where numbers are dates too).
_KIND_ORDER = {"bool": 0, "number": 1, "date": 1, "string": 2}
DATE_FORMAT = "strict_date_optional_time||epoch_millis"  # a date field's, written ISO 8601
# A value as aggregations tell values apart: its kind, and the value (an integral float as int).
ValueKey: TypeAlias = tuple[str, Scalar]
# A bucket's value of an order path naming a sub-aggregation (``avg_price``, ``stats.max``),
# by the bucket's identity (a terms bucket's ValueKey, a histogram bucket's key); None: none.
Ranked: TypeAlias = Callable[[Hashable, str], "float | None"]
INTRINSIC_ORDERS = ("_count", "_key")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ValueCounts:
    """The values of one field among the matched documents: how many documents hold each
    (``counts``), how many times each occurs in them (``occurrences``: ``[3, 3]`` twice), and
    how many documents hold any value (``documents``)."""

    counts: dict[ValueKey, int]
    occurrences: dict[ValueKey, int]
    documents: int


def value_key(value: Scalar) -> ValueKey:
    """``value`` as aggregations key it: 2.0 is 2 (stores keep whichever they met first), and
    a whole number past a long's range the double Elasticsearch keys it by (PostgreSQL reads
    a stored 1e300 as the integer 10**300)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return ("number", int(value))
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        with contextlib.suppress(OverflowError):  # past a double too: kept as it is
            return ("number", float(value))
    return (_kind(value), value)


def counted(triples: Any, documents: int) -> ValueCounts:
    """``(value, documents holding it, occurrences)`` triples as ``ValueCounts`` (equal keys
    summed), ``documents`` holding any value."""
    entries = ((value_key(v), int(holding), int(times)) for v, holding, times in triples if holding)
    return summed_counts(entries, documents)


def summed_counts(entries: Iterable[tuple[ValueKey, int, int]], documents: int) -> ValueCounts:
    """``(key, documents holding it, occurrences)`` entries as ``ValueCounts``, the entries
    of one key summed (several stores' counts, or values keyed alike), ``documents``
    holding any value."""
    counts: dict[ValueKey, int] = {}
    occurrences: dict[ValueKey, int] = {}
    for key, holding, times in entries:
        counts[key] = counts.get(key, 0) + holding
        occurrences[key] = occurrences.get(key, 0) + times
    return ValueCounts(counts=counts, occurrences=occurrences, documents=documents)


def with_missing(found: ValueCounts, missing: Scalar | None, without: int) -> ValueCounts:
    """``found`` with the ``without`` documents holding no value read as holding ``missing``
    once (Elasticsearch's ``missing``), where given."""
    if missing is None or without <= 0:
        return found
    key = value_key(missing)
    return ValueCounts(
        counts={**found.counts, key: found.counts.get(key, 0) + without},
        occurrences={**found.occurrences, key: found.occurrences.get(key, 0) + without},
        documents=found.documents + without,
    )


def read_with_missing(
    store: AggregatedStore, field: str, within: Filter, missing: Scalar | None
) -> ValueCounts:
    """``store``'s value counts of ``field`` in ``within``, documents without one holding
    ``missing`` where given (one more count)."""
    found = store.value_counts(field, within)
    if missing is None:
        return found
    return with_missing(found, missing, store.count_matching(within) - found.documents)


def reads_dates(keys: Iterable[ValueKey]) -> bool:
    """Whether a field of the values ``keys`` is read as a date field: one of them is a
    string naming a date as date ranges read it (``2024-01-01``, ``2024-01-01T10:00Z``; not
    ``2024``, a number written as text), as Elasticsearch maps a field of date strings a
    date. Its numbers are then epoch milliseconds, and its other values no dates."""
    return any(_date_text(value) for _, value in keys)


def _date_text(value: Scalar) -> bool:
    if not isinstance(value, str) or not value[:4].isdigit() or value.isdigit():
        return False  # cheap: a million words are not parsed
    return value_instant(value) is not None


def date_key(key: ValueKey) -> ValueKey | None:
    """The instant ``key`` (a value of a date field) names, keyed ``("date", millis)``; None
    where it names none (a word, a boolean)."""
    kind, value = key
    instant = None if kind == "bool" else value_instant(value)
    return None if instant is None else ("date", instant)


def date_shown(millis: float, formats: str | None) -> str | None:
    """``millis`` written as Elasticsearch writes a date field's value (``value_as_string``,
    ``key_as_string``: ISO 8601, or ``formats``' first), a fraction dropped; None where
    it is no date of the years 1 to 9999 (a sum of dates)."""
    try:
        return shown_date(int(millis), formats or DATE_FORMAT)
    except (OverflowError, ValueError):
        return None


def _instants(found: ValueCounts, *, others: bool = False) -> ValueCounts:
    """``found``'s dates (and numbers: epoch milliseconds) as numbers of milliseconds, equal
    instants one value; other values (words) left out, or as they are where ``others``.
    A document holding one instant in two forms is one document of it only in ``counts``'
    sum (which no metric reads): occurrences are exact."""
    entries = []
    for key, n in found.counts.items():
        instant = date_key(key)
        if instant is not None:
            entries.append((("number", instant[1]), n, found.occurrences[key]))
        elif others:
            entries.append((key, n, found.occurrences[key]))
    return summed_counts(entries, found.documents)


class AggregatedStore(Protocol):
    """What aggregating needs of a store."""

    def value_counts(self, field: str, within: Filter) -> ValueCounts: ...

    def value_sets(self, field: str, within: Filter) -> list[tuple[ValueKey, ...]]: ...

    def count_matching(self, filter: Filter) -> int: ...

    def held_values(self, fields: Sequence[str], within: Filter) -> HeldValues: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class TermsAgg:
    """The ``size`` values held by most documents (``order``: ``(key, descending)`` pairs,
    ``_count``, ``_key`` or a sub-aggregation's path, ranked by ``compute``'s caller), those
    held by at least ``min_doc_count``; documents without a value counted under ``missing``
    where given. Over a date field (``reads_dates``, or a ``format`` given) its dates are
    keyed by their instant, ``key_as_string`` written in ``format``; ``dates`` decides
    that where given (a bucket aggregation decides it once for its buckets' documents)."""

    field: str
    size: int = 10
    order: tuple[tuple[str, bool], ...] = (("_count", True), ("_key", False))
    min_doc_count: int = 1
    missing: Scalar | None = None
    format: str | None = None
    dates: bool | None = None

    def reads_dates(self, found: ValueCounts) -> bool:
        if self.dates is not None:
            return self.dates
        return self.format is not None or reads_dates(found.counts)

    def compute(
        self, store: AggregatedStore, within: Filter, *, ranked: Ranked | None = None
    ) -> dict[str, Any]:
        found = read_with_missing(store, self.field, within, self.missing)
        counts = dict(found.counts)
        if self.min_doc_count == 0:  # every value of the index, as Elasticsearch lists them
            for key in store.value_counts(self.field, MatchAll()).counts:
                counts.setdefault(key, 0)
        if self.reads_dates(found):
            counts = _by_instant(counts, found, lambda: store.value_sets(self.field, within))
        kept = [(key, n) for key, n in counts.items() if n >= self.min_doc_count]
        kept.sort(key=lambda item: self._sort_key(item, ranked))
        shown = kept[: self.size]
        return {
            "doc_count_error_upper_bound": 0,
            "sum_other_doc_count": sum(n for _, n in kept[self.size :]),
            "buckets": [_bucket(key, n, self.format) for key, n in shown],
        }

    def _sort_key(self, item: tuple[ValueKey, int], ranked: Ranked | None) -> tuple[Any, ...]:
        (kind, value), count = item
        parts: list[Any] = []
        for by, descending in (*self.order, ("_key", False)):  # ties: by key, ascending
            if by == "_count":
                parts.append(-count if descending else count)
            elif by == "_key":
                parts.append(_Keyed((_KIND_ORDER[kind], value), descending))
            else:
                parts.append(
                    ranked_part(None if ranked is None else ranked(item[0], by), descending)
                )
        return tuple(parts)


def ranked_part(value: float | None, descending: bool) -> tuple[bool, float]:
    """A sub-aggregation's value in a bucket's sort key: None (no value) last either way, as
    Elasticsearch sorts a NaN (an infinity sorts as a number)."""
    if value is None:
        return (True, 0.0)
    return (False, -value if descending else value)


def _by_instant(
    counts: dict[ValueKey, int],
    found: ValueCounts,
    value_sets: Callable[[], list[tuple[ValueKey, ...]]],
) -> dict[ValueKey, int]:
    """A date field's ``counts`` keyed by instant (``date_key``; other values as they are):
    a document holding two values of one instant (``2024-01-01`` and its epoch
    milliseconds) counted there once, its values read (``value_sets``) where it may."""
    merged: dict[ValueKey, int] = {}
    instant_of = {key: date_key(key) or key for key in counts}
    for key, n in counts.items():
        merged[instant_of[key]] = merged.get(instant_of[key], 0) + n
    several = sum(found.counts.values()) > found.documents  # a document holds several values
    if several and len(merged) < len(counts):
        for values in value_sets():
            held = Counter(instant_of.get(v) or date_key(v) or v for v in values)
            for key, times in held.items():
                if times > 1 and key in merged:
                    merged[key] -= times - 1
    return merged


@dataclasses.dataclass(frozen=True)
class _Keyed:
    """A bucket key in a sort, descending where asked (keys of one kind compare as values)."""

    key: tuple[int, Scalar]
    descending: bool

    def __lt__(self, other: _Keyed) -> bool:
        return other.key < self.key if self.descending else self.key < other.key


def _bucket(key: ValueKey, count: int, formats: str | None) -> dict[str, Any]:
    kind, value = key
    if kind == "bool":  # as Elasticsearch answers a boolean field's buckets
        return {"key": int(value), "key_as_string": str(value).lower(), "doc_count": count}
    if kind == "date":  # and a date field's
        assert isinstance(value, int)
        return {"key": value, "key_as_string": date_shown(value, formats), "doc_count": count}
    return {"key": value, "doc_count": count}


def bucket_identity(bucket: Mapping[str, Any]) -> ValueKey:
    """The value a terms bucket answered as ``bucket`` counts (its key in ``compute``)."""
    key, written = bucket["key"], bucket.get("key_as_string")
    if written in ("true", "false"):
        return ("bool", bool(key))
    return ("date", key) if "key_as_string" in bucket else value_key(key)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MetricAgg:
    """One number (or a few) from a field's values: ``kind`` is one of METRICS; documents
    without a value read as holding ``missing`` where given. ``percents``/``keyed``: a
    ``percentiles``'; ``sigma``: an ``extended_stats``' bounds, in standard deviations. Over
    a date field (``reads_dates``, or a ``format`` given) the numeric metrics read its dates
    as epoch milliseconds, and write them as dates too (``value_as_string``, in
    ``format``)."""

    kind: str
    field: str
    missing: Scalar | None = None
    percents: tuple[float, ...] = DEFAULT_PERCENTS
    keyed: bool = True
    sigma: float = 2.0
    format: str | None = None
    dates: bool | None = None

    def reads_dates(self, found: ValueCounts) -> bool:
        if self.dates is not None:
            return self.dates
        return self.format is not None or reads_dates(found.counts)

    def compute(self, store: AggregatedStore, within: Filter) -> dict[str, Any]:
        return self.of(read_with_missing(store, self.field, within, self.missing))

    def of(self, found: ValueCounts) -> dict[str, Any]:
        """This metric of ``found``, the values of the documents it reads."""
        dates = self.reads_dates(found)
        if self.kind in ("value_count", "cardinality"):
            # A date field's values are numbers there: 2024-01-01 and its epoch milliseconds
            # one value, a date written twice in a document counted twice.
            return _counted_values(self.kind, _instants(found, others=True) if dates else found)
        if dates:
            return _as_dates(self._of_numbers(_instants(found)), self.format)
        return self._of_numbers(found)

    def _of_numbers(self, found: ValueCounts) -> dict[str, Any]:
        numbers = [(float(v), n) for (kind, v), n in found.occurrences.items() if kind == "number"]
        if self.kind in ("stats", "extended_stats"):
            stats = _stats(numbers)
            return stats if self.kind == "stats" else _extended(stats, numbers, self.sigma)
        if self.kind == "percentiles":
            return _percentiles(numbers, self.percents, self.keyed)
        if self.kind == "min":
            return {"value": min((v for v, _ in numbers), default=None)}
        if self.kind == "max":
            return {"value": max((v for v, _ in numbers), default=None)}
        total = _sum(v * n for v, n in numbers)  # exact: the same sum in either order
        if self.kind == "sum":
            return {"value": _finite(total)}
        held = sum(n for _, n in numbers)
        return {"value": _finite(total / held) if held else None}


# A stats' or extended_stats' values Elasticsearch also writes in the field's format
# (``min_as_string``...), a variance in square milliseconds too.
_WRITTEN_STATS = (
    "min", "max", "avg", "sum", "sum_of_squares", "variance", "variance_population",
    "variance_sampling", "std_deviation", "std_deviation_population", "std_deviation_sampling",
)  # fmt: skip


def _counted_values(kind: str, found: ValueCounts) -> dict[str, Any]:
    """``value_count`` (a keyword's values once a document, others each time) or
    ``cardinality`` (distinct values) of ``found``."""
    if kind == "cardinality":
        return {"value": len(found.counts)}
    every = found.occurrences.items()
    return {"value": sum(found.counts[k] if k[0] == "string" else n for k, n in every)}


def _as_dates(answer: dict[str, Any], formats: str | None) -> dict[str, Any]:
    """A metric's ``answer`` over dates with each value also written as a date, as
    Elasticsearch writes them: ``value_as_string``, ``min_as_string``... (a ``stats``' where
    it counted any), ``"50.0_as_string"`` beside a keyed percentile; none where the value is
    null or no date (a sum of dates past the year 9999)."""

    def with_string(into: dict[str, Any], name: str, value: Any, written_as: str) -> None:
        into[name] = value
        shown = None if value is None else date_shown(value, formats)
        if shown is not None:
            into[written_as] = shown

    found: dict[str, Any] = {}
    values = answer.get("values")
    if isinstance(values, dict):  # keyed percentiles
        for key, value in values.items():
            with_string(found, key, value, f"{key}_as_string")
        return {"values": found}
    if isinstance(values, list):
        items = [dict(item) for item in values]
        for item in items:
            with_string(item, "value", item["value"], "value_as_string")
        return {"values": items}
    found.update(answer)
    if not answer.get("count", 1):  # a stats of no values: none
        return found
    names = ["value"] if "value" in answer else [n for n in _WRITTEN_STATS if n in answer]
    for name in names:
        with_string(found, name, answer[name], f"{name}_as_string")
    if "std_deviation_bounds" in answer:  # extended_stats' bounds, written in one object too
        found["std_deviation_bounds_as_string"] = {
            name: shown
            for name, value in answer["std_deviation_bounds"].items()
            if value is not None and (shown := date_shown(value, formats)) is not None
        }
    return found


def _sum(terms: Iterable[float]) -> float:
    """``math.fsum`` of ``terms``, or the infinity it runs into past a double's range (where
    fsum raises): answered as None (``_finite``), not a server error."""
    listed = list(terms)
    try:
        return math.fsum(listed)
    except OverflowError:
        return sum(listed)


def _finite(value: float | None) -> float | None:
    """``value``, None where it is past a double's range (infinite or NaN: a sum of 1e308
    twice, a variance of 1e300), which JSON cannot hold (Elasticsearch writes "Infinity")."""
    return value if value is None or math.isfinite(value) else None


def _stats(numbers: list[tuple[float, int]]) -> dict[str, Any]:
    """Elasticsearch's ``stats``: how many numbers, their min, max, avg (None: none) and sum."""
    count = sum(n for _, n in numbers)
    total = _sum(v * n for v, n in numbers)
    return {
        "count": count,
        "min": min((v for v, _ in numbers), default=None),
        "max": max((v for v, _ in numbers), default=None),
        "avg": _finite(total / count) if count else None,
        "sum": _finite(total),
    }


def _extended(
    stats: dict[str, Any], numbers: list[tuple[float, int]], sigma: float
) -> dict[str, Any]:
    """Elasticsearch's ``extended_stats``: ``stats`` and the sum of squares, the variance and
    standard deviation of the population (``variance``, ``std_deviation``) and of a sample
    (n - 1), and ``sigma`` deviations either side of the mean. The variance sums squared
    distances from the mean (exact in any order), not Elasticsearch's sum of squares less the
    squared sum, which cancels digits; None where there are no numbers (sampling: fewer than
    two)."""
    count, avg = stats["count"], stats["avg"]
    squares = _finite(_sum(v * v * n for v, n in numbers)) if count else None
    if avg is None:  # no numbers, or their sum past a double's range: no spread either
        return _extended_of(stats, squares, {"population": None, "sampling": None}, sigma)
    spread = _sum(n * (v - avg) * (v - avg) for v, n in numbers)
    variances = {
        "population": _finite(spread / count),
        "sampling": _finite(spread / (count - 1)) if count > 1 else None,
    }
    return _extended_of(stats, squares, variances, sigma)


def _extended_of(
    stats: dict[str, Any],
    squares: float | None,
    variances: dict[str, float | None],
    sigma: float,
) -> dict[str, Any]:
    avg = stats["avg"]
    deviations = {k: None if v is None else math.sqrt(v) for k, v in variances.items()}

    def bound(side: int, deviation: float | None) -> float | None:
        return None if deviation is None else _finite(avg + side * sigma * deviation)

    bounds: dict[str, float | None] = {}
    for suffix, kind in (
        ("", "population"),
        ("_population", "population"),
        ("_sampling", "sampling"),
    ):
        bounds[f"upper{suffix}"] = bound(1, deviations[kind])
        bounds[f"lower{suffix}"] = bound(-1, deviations[kind])
    return {
        **stats,
        "sum_of_squares": squares,
        "variance": variances["population"],
        "variance_population": variances["population"],
        "variance_sampling": variances["sampling"],
        "std_deviation": deviations["population"],
        "std_deviation_population": deviations["population"],
        "std_deviation_sampling": deviations["sampling"],
        "std_deviation_bounds": bounds,
    }


def _percentiles(
    numbers: list[tuple[float, int]], percents: tuple[float, ...], keyed: bool
) -> dict[str, Any]:
    """Exact percentiles (Elasticsearch estimates them with a TDigest): the value at rank
    ``p / 100 * (n - 1)`` of the n numbers in order, interpolated linearly between the two
    nearest ranks (numpy's default); None where there are no numbers."""
    ordered = sorted(numbers)
    ends, total = [], 0  # ends[i]: the rank after the last of ordered[i]'s copies
    for _, n in ordered:
        total += n
        ends.append(total)

    def at(rank: int) -> float:
        return ordered[bisect.bisect_right(ends, rank)][0]

    found: dict[float, float | None] = {}
    for percent in percents:
        if not total:
            found[percent] = None
            continue
        rank = percent / 100 * (total - 1)
        low, high = at(math.floor(rank)), at(math.ceil(rank))
        part = rank - math.floor(rank)
        value = low + (high - low) * part
        if not math.isfinite(value):  # -1e308 to 1e308: a distance past a double
            value = low * (1 - part) + high * part
        found[percent] = value
    if keyed:
        return {"values": {str(float(p)): v for p, v in found.items()}}
    return {"values": [{"key": float(p), "value": v} for p, v in found.items()]}


@dataclasses.dataclass(frozen=True, kw_only=True)
class RangeBucket:
    """Numbers from ``start`` (included) to ``end`` (excluded); None: open."""

    start: float | None
    end: float | None
    key: str | None = None

    def holds(self, number: float) -> bool:
        return (self.start is None or number >= self.start) and (
            self.end is None or number < self.end
        )

    def label(self) -> str:
        def shown(bound: float | None) -> str:
            return "*" if bound is None else repr(float(bound))

        return self.key if self.key is not None else f"{shown(self.start)}-{shown(self.end)}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class RangeAgg:
    """How many documents hold a number in each of ``ranges`` (a document in several ranges
    counts in each), ordered by their bounds as Elasticsearch orders them."""

    field: str
    ranges: tuple[RangeBucket, ...]
    missing: float | None = None

    def compute(self, store: AggregatedStore, within: Filter) -> dict[str, Any]:
        without = 0  # the documents holding no value, in the ranges holding ``missing``
        if self.missing is not None:
            holding = store.value_counts(self.field, within).documents
            without = store.count_matching(within) - holding
        buckets = []
        for bucket in self.ranges:
            flt = Range(field=self.field, gte=bucket.start, lt=bucket.end)
            answer: dict[str, Any] = {"key": bucket.label()}
            if bucket.start is not None:
                answer["from"] = float(bucket.start)
            if bucket.end is not None:
                answer["to"] = float(bucket.end)
            answer["doc_count"] = store.count_matching(_within(within, flt))
            if self.missing is not None and bucket.holds(self.missing):
                answer["doc_count"] += without
            buckets.append(answer)
        return {"buckets": buckets}


def _within(within: Filter, flt: Filter) -> Filter:
    combined = all_of(None if isinstance(within, MatchAll) else within, flt)
    assert combined is not None
    return combined


Aggregation: TypeAlias = (
    "TermsAgg | MetricAgg | RangeAgg | HistogramAgg | DateHistogramAgg | Bucketed"
)


def aggregate(
    store: AggregatedStore, aggs: Mapping[str, Aggregation], within: Filter
) -> dict[str, Any]:
    """Each of ``aggs`` over the documents of ``store`` passing ``within``, in Elasticsearch's
    shapes (``{name: {"buckets": [...]}}``, ``{name: {"value": ...}}``); more than
    MAX_ANSWER_BUCKETS buckets in all (a bucket's sub-aggregations' included) is refused."""
    if _BUCKETS_MADE.get() is not None:  # a bucket's sub-aggregations: the answer's count
        return _each_of(store, aggs, within)
    counting = _BUCKETS_MADE.set([0])
    try:
        return _each_of(store, aggs, within)
    finally:
        _BUCKETS_MADE.reset(counting)


def _each_of(
    store: AggregatedStore, aggs: Mapping[str, Aggregation], within: Filter
) -> dict[str, Any]:
    from semrank.retrieve._subaggs import Bucketed  # imports this module

    answer = {}
    for name, agg in aggs.items():
        answer[name] = agg.compute(store, within)
        if not isinstance(agg, Bucketed):  # which counts its own, before those below them
            count_buckets(answer[name])
    return answer


def buckets_of(answer: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """A bucket aggregation's answered buckets in order, ``keyed`` ones (``{key: bucket}``)
    too."""
    buckets = answer["buckets"]
    yield from buckets.values() if isinstance(buckets, Mapping) else buckets


def count_buckets(answer: Mapping[str, Any]) -> None:
    """Counts an aggregation's buckets (none for a metric) towards its answer's; refused past
    MAX_ANSWER_BUCKETS, as Elasticsearch refuses more than its search.max_buckets."""
    made = _BUCKETS_MADE.get()
    if made is None or "buckets" not in answer:
        return
    made[0] += len(answer["buckets"])
    if made[0] > MAX_ANSWER_BUCKETS:
        raise InvalidInputError(
            f"Trying to create too many buckets. Must be less than or equal to: "
            f"[{MAX_ANSWER_BUCKETS}] but was [{made[0]}] (every level of the aggregations "
            "together, as Elasticsearch's search.max_buckets counts them); ask for fewer: a "
            "smaller terms size, fewer nested levels, a wider histogram interval, or a "
            "narrower query"
        )


# --- parsing -----------------------------------------------------------------------------


def parse_aggs(spec: Any, where: str = "aggs", depth: int = 0) -> dict[str, Aggregation]:
    """Elasticsearch's ``aggs`` object, ``{name: {type: {...}, "aggs": {...}}}``, read (a
    bucket aggregation's own ``aggs`` too, nested up to MAX_DEPTH); unsupported types are
    refused, naming what is supported (parsed ones are taken as they are)."""
    from semrank.retrieve._histograms import DateHistogramAgg, HistogramAgg  # imports this
    from semrank.retrieve._subaggs import Bucketed

    parsed = TermsAgg | MetricAgg | RangeAgg | HistogramAgg | DateHistogramAgg | Bucketed
    if isinstance(spec, Mapping) and all(isinstance(agg, parsed) for agg in spec.values()):
        return dict(spec)
    if not isinstance(spec, Mapping):
        raise InvalidInputError(
            f'{where} must be a JSON object of named aggregations such as {{"sources": '
            f'{{"terms": {{"field": "source"}}}}}}, got {_shown(spec)}'
        )
    if len(spec) > MAX_AGGS:
        raise InvalidInputError(f"{where}: at most {MAX_AGGS} aggregations, got {len(spec)}")
    return {
        _name(name, where): _parse_one(body, f"{where}.{name}", depth)
        for name, body in spec.items()
    }


def _name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name or any(c in name for c in "[]>"):
        raise InvalidInputError(
            f"{where}: aggregation name {name!r:.60} must be a non-empty string without [, ] or >"
        )
    return name


def _parse_one(body: Any, where: str, depth: int) -> Aggregation:
    if not isinstance(body, Mapping):
        raise InvalidInputError(f"{where} must be a JSON object, got {_shown(body)}")
    nested = [key for key in ("aggs", "aggregations") if key in body]
    if len(nested) > 1:
        raise InvalidInputError(
            f"{where} gives both aggs and aggregations (two names for its sub-aggregations); "
            "give one"
        )
    kinds = [key for key in body if key not in ("meta", "aggs", "aggregations")]
    if len(kinds) != 1 or kinds[0] not in SUPPORTED_AGGS:
        named = f"{kinds[0]!r} is not a supported aggregation" if len(kinds) == 1 else (
            f"names {len(kinds)} aggregation types {sorted(kinds)}; give one"
        )  # fmt: skip
        raise InvalidInputError(f"{where}: {named}; supported: {', '.join(SUPPORTED_AGGS)}")
    kind = kinds[0]
    options = body[kind]
    if not isinstance(options, Mapping):
        raise InvalidInputError(f"{where}.{kind} must be a JSON object, got {_shown(options)}")
    agg = _parse_kind(kind, options, f"{where}.{kind}")
    if not nested:
        from semrank.retrieve._aggorder import check_order  # imports this module

        check_order(agg, {}, f"{where}.{kind}.order")
        return agg
    return _with_sub_aggs(agg, kind, body[nested[0]], f"{where}.{nested[0]}", depth)


def _with_sub_aggs(agg: Aggregation, kind: str, spec: Any, at: str, depth: int) -> Aggregation:
    from semrank.retrieve._subaggs import Bucketed  # imports this module

    if kind not in BUCKET_AGGS:
        raise InvalidInputError(
            f"{at}: {kind} holds no sub-aggregations (a metric); give them to a bucket "
            f"aggregation ({', '.join(BUCKET_AGGS)})"
        )
    if depth + 1 >= MAX_DEPTH:
        raise InvalidInputError(f"{at}: sub-aggregations nest at most {MAX_DEPTH} levels deep")
    from semrank.retrieve._aggorder import check_order  # imports this module

    subs = parse_aggs(spec, at, depth + 1)
    assert not isinstance(agg, MetricAgg | Bucketed)
    check_order(agg, subs, f"{at.rsplit('.', 1)[0]}.{kind}.order")
    return Bucketed(agg=agg, aggs=subs) if subs else agg


def _parse_kind(kind: str, options: Mapping[str, Any], at: str) -> Aggregation:
    if kind == "terms":
        return _terms(options, at)
    if kind == "range":
        return _range(options, at)
    if kind in ("histogram", "date_histogram"):
        from semrank.retrieve import _histograms  # imports this module's helpers

        parse = _histograms.parse_histogram if kind == "histogram" else (
            _histograms.parse_date_histogram
        )  # fmt: skip
        return parse(options, at)
    return _metric(kind, options, at)


def _metric(kind: str, options: Mapping[str, Any], at: str) -> MetricAgg:
    extra = {"percentiles": {"percents", "keyed"}, "extended_stats": {"sigma"}}.get(kind, set())
    if kind not in ("value_count", "cardinality"):  # numbers, or dates written in a format
        extra = {*extra, "format"}
    _only(options, {"field", "missing", *extra}, at)
    settings: dict[str, Any] = {"format": _date_format(options, at)}
    if kind == "percentiles":
        settings["percents"] = _percents(options.get("percents", DEFAULT_PERCENTS), at)
        settings["keyed"] = options.get("keyed", True)
        if not isinstance(settings["keyed"], bool):
            raise InvalidInputError(
                f"{at}.keyed must be true or false, got {_shown(options['keyed'])}"
            )
    if kind == "extended_stats":
        sigma = options.get("sigma", 2.0)
        if not _is_finite(sigma) or sigma < 0:
            raise InvalidInputError(f"{at}.sigma must be a number from 0 up, got {_shown(sigma)}")
        settings["sigma"] = float(sigma)
    missing = _missing(options, at)
    return MetricAgg(kind=kind, field=_agg_field(options, at), missing=missing, **settings)


def _percents(spec: Any, at: str) -> tuple[float, ...]:
    good = isinstance(spec, list | tuple) and 0 < len(spec) <= MAX_BUCKETS
    if not good or not all(_is_finite(p) and 0 <= p <= 100 for p in spec):
        raise InvalidInputError(
            f"{at}.percents must be a non-empty list of numbers from 0 to 100 such as "
            f"[50, 95, 99], got {_shown(spec)}"
        )
    return tuple(dict.fromkeys(float(p) for p in spec))


def _date_format(options: Mapping[str, Any], at: str) -> str | None:
    """An aggregation's ``format``: how it writes dates (and that it reads the field as
    dates)."""
    if options.get("format") is None:
        return None
    return check_format(options["format"], f"{at}.format")


def _is_finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _missing(options: Mapping[str, Any], at: str) -> Scalar | None:
    """An aggregation's ``missing``: the value a document without one is read as holding."""
    missing = options.get("missing")
    if missing is not None and (
        not isinstance(missing, str | int | float)
        or (isinstance(missing, float) and not math.isfinite(missing))
    ):
        raise InvalidInputError(
            f"{at}.missing must be a string, number or boolean, got {_shown(missing)}"
        )
    return missing


def _only(options: Mapping[str, Any], allowed: set[str], at: str) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise InvalidInputError(
            f"{at}: {unknown[0]!r} is not supported; it takes {', '.join(sorted(allowed))}"
        )


def _agg_field(options: Mapping[str, Any], at: str) -> str:
    if "field" not in options:
        raise InvalidInputError(f'{at} takes a "field" to aggregate, e.g. {{"field": "source"}}')
    return _field(options["field"], at)


def _count_option(options: Mapping[str, Any], key: str, at: str, default: int, low: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_BUCKETS:
        raise InvalidInputError(
            f"{at}.{key} must be a whole number from {low} to {MAX_BUCKETS:,}, got {_shown(value)}"
        )
    return value


def _terms(options: Mapping[str, Any], at: str) -> TermsAgg:
    _only(
        options, {"field", "size", "shard_size", "order", "min_doc_count", "missing", "format"}, at
    )
    missing = _missing(options, at)
    _count_option(options, "shard_size", at, 1, 1)  # one shard: read, changes nothing
    return TermsAgg(
        field=_agg_field(options, at),
        size=_count_option(options, "size", at, 10, 1),
        order=_order(options.get("order"), f"{at}.order"),
        min_doc_count=_count_option(options, "min_doc_count", at, 1, 0),
        missing=missing,
        format=_date_format(options, at),
    )


def _order(spec: Any, at: str) -> tuple[tuple[str, bool], ...]:
    """``order``: ``{"_count": "desc"}``, ``_key``, or the path of a metric sub-aggregation
    (``avg_price``, ``stats_price.max``; checked against them by ``check_order``), or a list
    of those."""
    if spec is None:
        return (("_count", True), ("_key", False))
    items = spec if isinstance(spec, list) and spec else [spec]
    order = []
    for item in items:
        if not isinstance(item, Mapping) or len(item) != 1:
            raise InvalidInputError(
                f'{at} must be {{"_count": "desc"}}, {{"_key": "asc"}} or a metric '
                f'sub-aggregation such as {{"avg_price": "desc"}} (or a list of them), got '
                f"{_shown(spec)}"
            )
        (by, direction), *_ = item.items()
        if not isinstance(by, str) or not by or direction not in ("asc", "desc"):
            raise InvalidInputError(
                f"{at}: order by _count, _key or a metric sub-aggregation, asc or desc, got "
                f"{_shown(dict(item))}"
            )
        order.append((by, direction == "desc"))
    return tuple(order)


def _range(options: Mapping[str, Any], at: str) -> RangeAgg:
    _only(options, {"field", "ranges", "keyed", "missing"}, at)
    missing = options.get("missing")
    if missing is not None and not _is_finite(missing):
        raise InvalidInputError(f"{at}.missing must be a number, got {_shown(missing)}")
    if options.get("keyed", False) is not False:
        raise InvalidInputError(f"{at}.keyed: only false (buckets as a list) is supported")
    ranges = options.get("ranges")
    if not isinstance(ranges, list) or not ranges or len(ranges) > MAX_BUCKETS:
        raise InvalidInputError(
            f'{at}.ranges must be a non-empty list such as [{{"to": 10}}, {{"from": 10}}], '
            f"got {_shown(ranges)}"
        )
    buckets = [_range_bucket(item, f"{at}.ranges[{i}]") for i, item in enumerate(ranges)]
    buckets.sort(key=_range_order)
    return RangeAgg(field=_agg_field(options, at), ranges=tuple(buckets), missing=missing)


def _range_order(bucket: RangeBucket) -> tuple[float, float]:
    """Elasticsearch's order of ranges: by from, then to (open ends first, last)."""
    start = -math.inf if bucket.start is None else bucket.start
    return (start, math.inf if bucket.end is None else bucket.end)


def _range_bucket(item: Any, at: str) -> RangeBucket:
    if not isinstance(item, Mapping):
        raise InvalidInputError(f"{at} must be a JSON object with from and/or to")
    _only(item, {"from", "to", "key"}, at)
    bounds = {k: item.get(k) for k in ("from", "to")}
    for name, value in bounds.items():
        finite = isinstance(value, int | float) and math.isfinite(value)
        if value is not None and (isinstance(value, bool) or not finite):
            raise InvalidInputError(f"{at}.{name} must be a number, got {_shown(value)}")
    if bounds["from"] is None and bounds["to"] is None:
        raise InvalidInputError(f"{at} takes from and/or to (numbers)")
    key = item.get("key")
    if key is not None and not isinstance(key, str):
        raise InvalidInputError(f"{at}.key must be a string, got {_shown(key)}")
    return RangeBucket(start=bounds["from"], end=bounds["to"], key=key)
