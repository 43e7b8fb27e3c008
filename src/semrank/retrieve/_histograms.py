"""Histograms: Elasticsearch's ``histogram`` (numbers in steps of ``interval``) and
``date_histogram`` (dates by calendar unit or fixed length, in a time zone).

A value's bucket is computed here from the store's per-value counts (``value_counts``), the
same code for every store. A document holding two values of one bucket counts there once, as
in Elasticsearch: where the documents hold more values than there are documents (a field of
several values) and a bucket holds several distinct values, the distinct values of each
document holding several are read (``value_sets``: one store call, whatever the number of
buckets) and a document's second and later values in a bucket taken off its count. Dates are
read as date ranges read them (``value_instant``); other values are in no bucket. With
``min_doc_count`` 0 (the default) the empty buckets between the first and the last (or
``extended_bounds``) are listed; more than MAX_HISTOGRAM_BUCKETS buckets is refused, naming
the interval to widen.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, TypeGuard

from semrank.errors import InvalidInputError
from semrank.retrieve._aggs import (
    AggregatedStore,
    Ranked,
    ValueCounts,
    ValueKey,
    _agg_field,
    _count_option,
    _only,
    _order,
    ranked_part,
    read_with_missing,
)
from semrank.retrieve._dateformat import (
    check_format,
    check_time_zone,
    formatted_anchor,
    formatted_date,
    shown_date,
    zone_of,
)
from semrank.retrieve._datemath import (
    DateMath,
    _rounded,
    _shifted,
    epoch_millis,
    is_date_math,
    parse_date_math,
    value_instant,
)
from semrank.retrieve._filter import Filter, Scalar, _shown, _utc_now

MAX_HISTOGRAM_BUCKETS = 65_536  # Elasticsearch's search.max_buckets
DEFAULT_DATE_FORMAT = "strict_date_optional_time||epoch_millis"
# calendar_interval's names, as Elasticsearch takes them: a unit of date math (q: a quarter).
CALENDAR_UNITS = {
    **dict.fromkeys(("minute", "1m"), "m"),
    **dict.fromkeys(("hour", "1h"), "h"),
    **dict.fromkeys(("day", "1d"), "d"),
    **dict.fromkeys(("week", "1w"), "w"),
    **dict.fromkeys(("month", "1M"), "M"),
    **dict.fromkeys(("quarter", "1q"), "q"),
    **dict.fromkeys(("year", "1y"), "y"),
}
_FIXED_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_TIME = re.compile(r"(?P<sign>[-+]?)(?P<count>\d+)(?P<unit>ms|s|m|h|d)", re.ASCII)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ORDER = (("_key", False),)
Key = int  # a bucket: its start in milliseconds (dates), its number of intervals (numbers)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Bounds:
    """``extended_bounds`` or ``hard_bounds``: ``low`` and ``high`` (None: open), numbers or,
    for dates, instants once resolved."""

    low: float | DateMath | None = None
    high: float | DateMath | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class HistogramAgg:
    """How many documents hold a number in each step of ``interval`` from ``offset``: the
    bucket keyed ``floor((value - offset) / interval) * interval + offset``."""

    field: str
    interval: float
    offset: float = 0.0
    min_doc_count: int = 0
    extended_bounds: Bounds | None = None
    hard_bounds: Bounds | None = None
    order: tuple[tuple[str, bool], ...] = _ORDER
    keyed: bool = False
    missing: Scalar | None = None  # what a document without a value is read as holding

    def key_of(self, kind: str, value: Any) -> Key | None:
        if kind != "number":
            return None
        step = (float(value) - self.offset) / self.interval
        return math.floor(step) if math.isfinite(step) else None

    def start(self, key: Key) -> float:
        return key * self.interval + self.offset

    def next_key(self, key: Key) -> Key:
        return key + 1

    def bound_value(self, bound: float | DateMath, now: datetime) -> float:
        assert not isinstance(bound, DateMath)
        return bound

    def bound_key(self, bound: float | DateMath, now: datetime) -> Key | None:
        return self.key_of("number", self.bound_value(bound, now))

    def bucket(self, key: Key, count: int) -> dict[str, Any]:
        return {"key": self.start(key), "doc_count": count}

    def named(self, key: Key) -> str:
        return str(self.start(key))

    def interval_shown(self) -> str:
        return f"interval {self.interval:g}"

    def compute(
        self, store: AggregatedStore, within: Filter, *, ranked: Ranked | None = None
    ) -> dict[str, Any]:
        return _histogram(self, store, within, ranked)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DateHistogramAgg:
    """How many documents hold a date in each ``calendar`` unit (``m``, ``h``, ``d``, ``w``,
    ``M``, ``q``, ``y``: starting at the zone's minute, hour, midnight, Monday, month...) or
    each ``fixed`` span of milliseconds (counted from 1970 in the zone's wall time), shifted
    by ``offset`` milliseconds; keys are the buckets' first millisecond."""

    field: str
    calendar: str | None = None
    fixed: int | None = None
    time_zone: str = "UTC"
    offset: int = 0
    format: str = DEFAULT_DATE_FORMAT
    min_doc_count: int = 0
    extended_bounds: Bounds | None = None
    hard_bounds: Bounds | None = None
    order: tuple[tuple[str, bool], ...] = _ORDER
    keyed: bool = False
    missing: Scalar | None = None  # what a document without a value is read as holding

    def key_of(self, kind: str, value: Any) -> Key | None:
        instant = value_instant(value)
        if instant is None:
            return None
        try:
            return self._start(instant - self.offset) + self.offset
        except OverflowError:
            raise InvalidInputError(
                f"date_histogram of {self.field!r}: the value {value!r} is a date outside the "
                "years 1 to 9999; filter such documents out of the search"
            ) from None

    def _start(self, instant: int) -> int:
        zone = zone_of(self.time_zone)
        if self.fixed is not None:
            local = instant + _offset_ms(instant, zone)
            return _local_to_instant(local - local % self.fixed, zone)
        unit = "M" if self.calendar == "q" else self.calendar
        assert unit is not None
        time = _rounded((_EPOCH + timedelta(milliseconds=instant)).astimezone(zone), unit, up=False)
        if self.calendar == "q":
            time = _shifted(time, -((time.month - 1) % 3), "M")
        return epoch_millis(time)

    def next_key(self, key: Key) -> Key:
        start = key - self.offset
        if self.fixed is not None:
            local = start + _offset_ms(start, zone_of(self.time_zone))
            later = _local_to_instant(local + self.fixed, zone_of(self.time_zone))
        else:
            time = (_EPOCH + timedelta(milliseconds=start)).astimezone(zone_of(self.time_zone))
            unit, steps = ("M", 3) if self.calendar == "q" else (self.calendar or "d", 1)
            later = self._start(epoch_millis(_shifted(time, steps, unit)))
        return max(later, start + 1) + self.offset  # always forward, whatever the zone does

    def bound_value(self, bound: float | DateMath, now: datetime) -> int:
        assert isinstance(bound, DateMath)
        zone = zone_of(self.time_zone)
        return epoch_millis(bound.resolve(now, round_up=False, zone=zone))

    def bound_key(self, bound: float | DateMath, now: datetime) -> Key | None:
        return self.key_of("number", self.bound_value(bound, now))

    def start(self, key: Key) -> int:
        return key

    def bucket(self, key: Key, count: int) -> dict[str, Any]:
        return {"key_as_string": self.named(key), "key": key, "doc_count": count}

    def named(self, key: Key) -> str:
        return shown_date(key, self.format, zone_of(self.time_zone))

    def interval_shown(self) -> str:
        if self.fixed is not None:
            return f"fixed_interval {_shown_ms(self.fixed)}"
        unit = next(name for name, u in CALENDAR_UNITS.items() if u == self.calendar)
        return f"calendar_interval {unit}"

    def compute(
        self, store: AggregatedStore, within: Filter, *, ranked: Ranked | None = None
    ) -> dict[str, Any]:
        return _histogram(self, store, within, ranked)


def _offset_ms(instant: int, zone: tzinfo) -> int:
    if zone is UTC:
        return 0
    offset = (_EPOCH + timedelta(milliseconds=instant)).astimezone(zone).utcoffset()
    return (offset or timedelta(0)) // timedelta(milliseconds=1)


def _local_to_instant(local: int, zone: tzinfo) -> int:
    """The instant a wall time (milliseconds since 1970 on the zone's clock) names there."""
    if zone is UTC:
        return local
    wall = datetime(1970, 1, 1) + timedelta(milliseconds=local)
    return epoch_millis(wall.replace(tzinfo=zone))


def _shown_ms(millis: int) -> str:
    unit = next(u for u, size in reversed(_FIXED_UNITS.items()) if millis % size == 0)
    return f"{millis // _FIXED_UNITS[unit]}{unit}"


Histogram = HistogramAgg | DateHistogramAgg


def _histogram(
    agg: Histogram, store: AggregatedStore, within: Filter, ranked: Ranked | None
) -> dict[str, Any]:
    found = read_with_missing(store, agg.field, within, agg.missing)
    counts, key_of_value = _bucket_counts(agg, found)
    several = sum(found.counts.values()) > found.documents  # a document holds several values
    if several and any(distinct > 1 for _, distinct in counts.values()):
        _count_documents_once(counts, key_of_value, store.value_sets(agg.field, within))
    now = _utc_now()
    inside = _hard_bounds(agg, now)
    kept = {key: n for key, (n, _) in counts.items() if inside(key)}
    if agg.min_doc_count == 0:
        kept = _with_empty_buckets(agg, kept, inside, now)
    buckets = [(key, n) for key, n in kept.items() if n >= agg.min_doc_count]
    _check_bucket_count(agg, len(buckets))
    buckets.sort(key=lambda item: _sort_key(agg, item, ranked))
    if agg.keyed:
        return {"buckets": {agg.named(key): agg.bucket(key, n) for key, n in buckets}}
    return {"buckets": [agg.bucket(key, n) for key, n in buckets]}


def _bucket_counts(
    agg: Histogram, found: ValueCounts
) -> tuple[dict[Key, tuple[int, int]], dict[ValueKey, Key | None]]:
    """Each bucket's documents (summed over its values) and how many distinct values it
    holds; and each value's bucket (None: in none)."""
    counts: dict[Key, tuple[int, int]] = {}
    key_of_value: dict[ValueKey, Key | None] = {}
    for (kind, value), n in found.counts.items():
        key = key_of_value[kind, value] = agg.key_of(kind, value)
        if key is not None:
            held, distinct = counts.get(key, (0, 0))
            counts[key] = (held + n, distinct + 1)
    return counts, key_of_value


def _count_documents_once(
    counts: dict[Key, tuple[int, int]],
    key_of_value: Mapping[ValueKey, Key | None],
    value_sets: list[tuple[ValueKey, ...]],
) -> None:
    """Take off ``counts`` (summed over each bucket's values) each document's second and later
    distinct values in one bucket (``value_sets``: those of each document holding several),
    so that it counts there once. The buckets are looked up, not computed again per document
    (a date's bucket parses it: once per distinct value)."""
    for values in value_sets:
        keys = [key_of_value.get(value) for value in values]
        if len(set(keys)) == len(keys):  # each value in a bucket of its own (or in none)
            continue
        for key, times in Counter(keys).items():
            if times > 1 and key is not None:
                held, distinct = counts[key]
                counts[key] = (held - (times - 1), distinct)


def _hard_bounds(agg: Histogram, now: datetime) -> Callable[[Key], bool]:
    """Whether a bucket's key (its first value) is within ``hard_bounds``, as Elasticsearch
    keeps a bucket."""
    bounds = agg.hard_bounds or Bounds()
    low, high = (None if b is None else agg.bound_value(b, now) for b in (bounds.low, bounds.high))

    def inside(key: Key) -> bool:
        start = agg.start(key)
        return (low is None or start >= low) and (high is None or start <= high)

    return inside


def _with_empty_buckets(
    agg: Histogram, kept: dict[Key, int], inside: Callable[[Key], bool], now: datetime
) -> dict[Key, int]:
    """``kept`` with a bucket of 0 for each missing between the first and the last, widened
    to the buckets holding the extended bounds (those within the hard bounds)."""
    bounds = agg.extended_bounds or Bounds()
    extended = [agg.bound_key(b, now) for b in (bounds.low, bounds.high) if b is not None]
    ends = [key for key in (*kept, *extended) if key is not None and inside(key)]
    if not ends:
        return kept
    first, last = min(ends), max(ends)
    if isinstance(agg, HistogramAgg) or agg.fixed is not None:  # known before listing them
        step = 1 if isinstance(agg, HistogramAgg) else agg.fixed
        assert step is not None
        _check_bucket_count(agg, (last - first) // step + 1)
    filled: dict[Key, int] = {}
    key = first
    while key <= last:
        filled[key] = kept.get(key, 0)
        _check_bucket_count(agg, len(filled))
        key = agg.next_key(key)
    return filled


def _check_bucket_count(agg: Histogram, count: int) -> None:
    if count > MAX_HISTOGRAM_BUCKETS:
        kind = "histogram" if isinstance(agg, HistogramAgg) else "date_histogram"
        raise InvalidInputError(
            f"{kind} of {agg.field!r}: {agg.interval_shown()} makes more than "
            f"{MAX_HISTOGRAM_BUCKETS:,} buckets (Elasticsearch's search.max_buckets); widen "
            "the interval, or narrow the search, extended_bounds or hard_bounds"
        )


def _sort_key(agg: Histogram, item: tuple[Key, int], ranked: Ranked | None) -> tuple[Any, ...]:
    """A bucket's place: by its count, key or sub-aggregations' values (``ranked``, by the
    bucket's first value)."""
    key, count = item
    parts: list[Any] = []
    for by, descending in (*agg.order, ("_key", False)):  # ties: by key, ascending
        if by in ("_count", "_key"):
            value = count if by == "_count" else key
            parts.append(-value if descending else value)
        else:
            found = None if ranked is None else ranked(agg.start(key), by)
            parts.append(ranked_part(found, descending))
    return tuple(parts)


# --- parsing -----------------------------------------------------------------------------
_COMMON = {"field", "min_doc_count", "extended_bounds", "hard_bounds", "order", "keyed", "missing"}


def parse_histogram(options: Mapping[str, Any], at: str) -> HistogramAgg:
    _only(options, {*_COMMON, "interval", "offset"}, at)
    interval = options.get("interval")
    if not _is_number(interval) or interval <= 0:
        raise InvalidInputError(
            f"{at}.interval must be a number above 0 (the width of a bucket, e.g. 10), got "
            f"{_shown(interval)}"
        )
    offset = options.get("offset", 0)
    if not _is_number(offset) or not 0 <= offset < interval:
        raise InvalidInputError(
            f"{at}.offset must be a number from 0 to below the interval ({interval}), got "
            f"{_shown(offset)}"
        )
    read = _number_bound
    missing = options.get("missing")
    if missing is not None and not _is_number(missing):
        raise InvalidInputError(f"{at}.missing must be a number, got {_shown(missing)}")
    return HistogramAgg(
        missing=missing,
        field=_agg_field(options, at),
        interval=float(interval),
        offset=float(offset),
        extended_bounds=_bounds(options.get("extended_bounds"), f"{at}.extended_bounds", read),
        hard_bounds=_bounds(options.get("hard_bounds"), f"{at}.hard_bounds", read),
        **_common(options, at),
    )


def parse_date_histogram(options: Mapping[str, Any], at: str) -> DateHistogramAgg:
    allowed = {*_COMMON, "calendar_interval", "fixed_interval", "time_zone", "format", "offset"}
    if "interval" in options:
        raise InvalidInputError(
            f"{at}.interval is Elasticsearch's removed name; give calendar_interval (month, "
            "1d...) or fixed_interval (30m, 12h, 7d)"
        )
    _only(options, allowed, at)
    calendar, fixed = _interval(options, at)
    formats = check_format(options.get("format", DEFAULT_DATE_FORMAT), f"{at}.format")
    zone = check_time_zone(options.get("time_zone", "UTC"), f"{at}.time_zone")

    def read(value: Any, where: str) -> DateMath:
        return _date_bound(value, where, options.get("format"))

    missing = options.get("missing")
    if missing is not None and (isinstance(missing, bool) or value_instant(missing) is None):
        raise InvalidInputError(
            f"{at}.missing must be a date (2024-01-01 or epoch milliseconds), got {_shown(missing)}"
        )
    return DateHistogramAgg(
        missing=missing,
        field=_agg_field(options, at),
        calendar=calendar,
        fixed=fixed,
        time_zone=zone,
        offset=_date_offset(options.get("offset", 0), f"{at}.offset"),
        format=formats,
        extended_bounds=_bounds(options.get("extended_bounds"), f"{at}.extended_bounds", read),
        hard_bounds=_bounds(options.get("hard_bounds"), f"{at}.hard_bounds", read),
        **_common(options, at),
    )


def _common(options: Mapping[str, Any], at: str) -> dict[str, Any]:
    keyed = options.get("keyed", False)
    if not isinstance(keyed, bool):
        raise InvalidInputError(f"{at}.keyed must be true or false, got {_shown(keyed)}")
    order = _order(options.get("order"), f"{at}.order") if "order" in options else _ORDER
    return {
        "min_doc_count": _count_option(options, "min_doc_count", at, 0, 0),
        "order": order,
        "keyed": keyed,
    }


def _interval(options: Mapping[str, Any], at: str) -> tuple[str | None, int | None]:
    given = [key for key in ("calendar_interval", "fixed_interval") if key in options]
    if len(given) != 1:
        raise InvalidInputError(
            f"{at} takes one of calendar_interval (minute, hour, day, week, month, quarter, "
            "year) or fixed_interval (30m, 12h, 7d), got "
            f"{' and '.join(given) if given else 'neither'}"
        )
    text = options[given[0]]
    if given[0] == "calendar_interval":
        if isinstance(text, str) and text in CALENDAR_UNITS:
            return CALENDAR_UNITS[text], None
        hint = " (or fixed_interval for several units)" if _TIME.fullmatch(str(text)) else ""
        raise InvalidInputError(
            f"{at}.calendar_interval: {_shown(text)} is not a calendar interval; give one of "
            f"{', '.join(CALENDAR_UNITS)}{hint}"
        )
    found = _TIME.fullmatch(text) if isinstance(text, str) else None
    if found is None or found["sign"] or int(found["count"]) == 0:
        raise InvalidInputError(
            f"{at}.fixed_interval: {_shown(text)} is not a fixed interval; give a whole number "
            "above 0 of ms, s, m, h or d (30m, 12h, 7d; calendar_interval for weeks, months, "
            "quarters and years)"
        )
    return None, int(found["count"]) * _FIXED_UNITS[found["unit"]]


def _date_offset(value: Any, at: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    found = _TIME.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        raise InvalidInputError(
            f"{at} must be a time such as +6h or -1d (ms, s, m, h, d) or milliseconds, got "
            f"{_shown(value)}"
        )
    size = int(found["count"]) * _FIXED_UNITS[found["unit"]]
    return -size if found["sign"] == "-" else size


def _bounds(spec: Any, at: str, read: Callable[[Any, str], Any]) -> Bounds | None:
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or not spec:
        raise InvalidInputError(f'{at} must be a JSON object such as {{"min": 0, "max": 100}}')
    _only(spec, {"min", "max"}, at)
    ends = {k: None if spec.get(k) is None else read(spec[k], f"{at}.{k}") for k in ("min", "max")}
    return Bounds(low=ends["min"], high=ends["max"])


def _number_bound(value: Any, where: str) -> float:
    if not _is_number(value):
        raise InvalidInputError(f"{where} must be a number, got {_shown(value)}")
    return float(value)


def _date_bound(value: Any, where: str, formats: str | None) -> DateMath:
    """A bound as Elasticsearch reads it: date math (``now-1y/y``), or a date in the
    aggregation's ``format`` (default: ISO 8601 or epoch milliseconds)."""
    if is_date_math(value):
        read_anchor = None if formats is None else formatted_anchor(formats)
        return parse_date_math(value, where, read_anchor)
    found = formatted_date(value, formats or DEFAULT_DATE_FORMAT)
    if found is None or isinstance(value, bool):
        raise InvalidInputError(
            f"{where}: {_shown(value)} is not a date in {formats or DEFAULT_DATE_FORMAT} "
            "(e.g. 2024-01-01, epoch milliseconds, now-1y/y)"
        )
    return found


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
