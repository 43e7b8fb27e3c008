"""Elasticsearch date math in range bounds: ``now-30d/d``, ``2024-01-01||+1M/d``.

An expression is an anchor (``now``, or an ISO 8601 date or date-time before ``||``) followed
by steps: ``+N``/``-N`` of a unit (``N`` left out: 1) and rounding ``/unit``, applied left to
right in the range's time zone (UTC unless ``time_zone`` names one: an anchor without its
own offset is read there, days, weeks, months and years go by its calendar, hours and less
by the clock, and rounding finds the start of its day, hour...). Units: ``y`` years, ``M``
months, ``w`` weeks, ``d`` days, ``h``/``H`` hours, ``m`` minutes, ``s`` seconds. As in
Elasticsearch, ``now`` is read to the millisecond, adding months or years keeps the day where
the month has it (Jan 31 + 1M is Feb 28 or 29), a week rounds to its Monday, and rounding goes
down to the start of the unit, or, rounding up (for ``gt`` and ``lte``), to its last
millisecond.

An expression is kept as parsed and resolved when a search runs (``resolve``), so a filter
built once means "now" each time it is used.

A plain bound that is an ISO 8601 date or date-time (``2024-01-31``, ``2024-01-31T10``,
``...T10:00+02:00``) is read as Elasticsearch reads it on a date field (``plain_date``): its
missing time of day rounds as ``/d``, ``/h``, ``/m`` or ``/s`` would, so ``lte 2024-01-31`` is
all of that day.

Resolved (``resolved_bound``), a bound is an instant in milliseconds since 1970 (UTC), which
document values compare with as instants (``value_instant``): ISO 8601 strings at any offset
(none: UTC) and numbers as epoch milliseconds, Elasticsearch's default date format
(``strict_date_optional_time||epoch_millis``).
"""

from __future__ import annotations

import calendar
import dataclasses
import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, tzinfo

from semrank.errors import InvalidInputError

ANCHOR_SEPARATOR = "||"
NOW = "now"
UNITS = "yMwdhHms"
_UNITS_SHOWN = "y, M, w, d, h (or H), m, s"
_ONE_MS = timedelta(milliseconds=1)
_LAST_MS = datetime(9999, 12, 31, 23, 59, 59, 999_000)  # wall time: in any zone
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Elasticsearch reads N as a Java int.
MAX_COUNT = 2**31 - 1
_ANCHOR = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2})(?::(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,9}))?)?)?"
    r"(?P<zone>Z|[+-]\d{2}(?::?\d{2})?)?)?)?)?",
    re.ASCII,  # ASCII digits, as Elasticsearch and the PostgreSQL store read them
)
_STEP = re.compile(r"(?P<op>[-+/])(?P<count>\d*)(?P<unit>.?)")
_FIXED = {
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "H": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class DateMath:
    """A date bound as written (``text``: date math, an ISO 8601 date, a number under an epoch
    ``format``), parsed: its anchor (None: now; naive where it names no offset: read in the
    range's time zone) and its steps, ``(op, count, unit)`` with op ``+``, ``-`` or ``/``
    (rounding)."""

    text: str | int | float
    anchor: datetime | None
    steps: tuple[tuple[str, int, str], ...]

    def resolve(self, now: datetime, *, round_up: bool, zone: tzinfo = UTC) -> datetime:
        """The instant (UTC, to the millisecond) this expression names at ``now``, its steps
        taken in ``zone``; with ``round_up``, a rounding goes to the last millisecond of its
        unit."""
        start = now if self.anchor is None else self.anchor
        try:
            time = _to_millisecond(start if start.tzinfo else start.replace(tzinfo=zone))
            time = time.astimezone(zone)
            for op, count, unit in self.steps:
                if op == "/":
                    time = _rounded(time, unit, up=round_up)
                else:
                    time = _shifted(time, count if op == "+" else -count, unit)
            return _to_millisecond(time)
        except OverflowError:
            raise InvalidInputError(
                f"date {self.text!r} leaves the years 1 to 9999 (at now = "
                f"{now.isoformat()}); give a nearer date"
            ) from None


def is_date_math(value: object) -> bool:
    """Whether a range bound is date math rather than a plain string: ``now`` alone or
    followed by a step, or anything holding ``||`` (``nowhere`` stays a string)."""
    if not isinstance(value, str):
        return False
    if ANCHOR_SEPARATOR in value:
        return True
    return value.startswith(NOW) and (value == NOW or value[len(NOW)] in "+-/| 0123456789")


def parse_date_math(
    text: str, where: str, read_anchor: Callable[[str], datetime | None] | None = None
) -> DateMath:
    """``text`` parsed (``is_date_math`` holds), refused naming ``where`` where it is not
    Elasticsearch date math; checked to resolve at the present time. ``read_anchor`` reads
    the date before ``||`` in a range's ``format`` (None: as ISO 8601)."""
    if text.startswith(NOW):
        anchor, math = None, text[len(NOW) :]
    else:
        written, _, math = text.partition(ANCHOR_SEPARATOR)
        anchor = _anchor(written, text, where, read_anchor)
    steps: list[tuple[str, int, str]] = []
    at = 0
    while at < len(math):
        step = _STEP.match(math, at)
        if step is None:
            why = (
                "now takes no || (write now-1d)"
                if math[at:].startswith("|")
                else (f"{math[at:]!r}: a step starts with +, - or /")
            )
            raise _refused(where, text, why)
        steps.append(_step(step, text, where))
        at = step.end()
    parsed = DateMath(text=text, anchor=anchor, steps=tuple(steps))
    now = datetime.now(UTC)
    try:
        parsed.resolve(now, round_up=False), parsed.resolve(now, round_up=True)
    except InvalidInputError as error:
        raise InvalidInputError(f"{where}: {error}") from None
    return parsed


def _step(step: re.Match[str], text: str, where: str) -> tuple[str, int, str]:
    op, digits, unit = step["op"], step["count"], step["unit"]
    if not unit:
        raise _refused(where, text, f"a unit is missing after {op}{digits}; use {_UNITS_SHOWN}")
    if unit not in UNITS:
        raise _refused(where, text, f"unit {unit!r} is not a date math unit; use {_UNITS_SHOWN}")
    count = int(digits) if digits else 1
    if op == "/" and count != 1:
        raise _refused(where, text, f"rounding takes a unit alone (/{unit}), got /{digits}{unit}")
    if count > MAX_COUNT:
        raise _refused(where, text, f"a count is at most {MAX_COUNT}, got {count}")
    return op, count, unit


def _anchor(
    written: str, text: str, where: str, read_anchor: Callable[[str], datetime | None] | None
) -> datetime:
    if not written:
        raise _refused(where, text, "no date before ||; write one, as in 2024-01-31||+1M")
    if read_anchor is not None:
        anchor = read_anchor(written)
        if anchor is None:
            raise _refused(where, text, f"{written!r} before || is not a date in the format")
        return anchor
    found = _ANCHOR.fullmatch(written)
    if found is None:
        raise _refused(
            where,
            text,
            f"{written!r} before || is not an ISO 8601 date such as 2024-01-31 or "
            "2024-01-31T10:00:00Z (now takes no ||: write now-1d)",
        )
    try:
        return _instant(found)
    except (ValueError, OverflowError) as error:
        raise _refused(where, text, f"{written!r} is not a date ({error})") from None


def _instant(found: re.Match[str]) -> datetime:
    """The time an ``_ANCHOR`` match names (missing parts: the start of the year, month,
    day...): a UTC instant where it names a zone, else naive (a wall time in the range's time
    zone); ValueError or OverflowError where it names none (2024-02-30, offset +25)."""
    parts = {k: int(v) for k, v in found.groupdict().items() if v and k not in ("fraction", "zone")}
    fraction = (found["fraction"] or "0")[:6].ljust(6, "0")
    local = datetime(
        parts["year"], parts.get("month", 1), parts.get("day", 1), parts.get("hour", 0),
        parts.get("minute", 0), parts.get("second", 0), int(fraction),
    )  # fmt: skip
    if found["zone"] is None:
        return local
    return local.replace(tzinfo=UTC) - _offset(found["zone"])


def plain_date(text: str) -> DateMath | None:
    """A plain range bound as the date Elasticsearch reads it on a date field, or None where
    ``text`` is no ISO 8601 date (or date-time) and stays a string compared as written.

    A date counts when it is ``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD``, then optionally ``THH``,
    ``:MM``, ``:SS``, a fraction, and ``Z``, an offset (``+02:00``, ``-0530``, ``+01``) or no
    zone, and names a real date: ``2024-02-30``, ``v2024`` and ``20240131`` stay strings.
    Elasticsearch fills what is
    missing rounding down for ``gte``/``lt`` and up for ``gt``/``lte``, but a missing month or
    day is the 1st either way: so the time of day rounds as ``/d`` (or ``/h``, ``/m``, ``/s``
    after an hour, a minute, a second), and a fraction is to the millisecond."""
    found = _ANCHOR.fullmatch(text)
    if found is None:
        return None
    try:
        anchor = _instant(found)
    except (ValueError, OverflowError):
        return None
    unit = next((u for group, u in _PRECISION if found[group]), "d")
    steps = () if unit is None else (("/", 1, unit),)
    return DateMath(text=text, anchor=anchor, steps=steps)


# The rounding a plain date's finest part gives (none after a fraction: to the millisecond).
_PRECISION: tuple[tuple[str, str | None], ...] = (
    ("fraction", None),
    ("second", "s"),
    ("minute", "m"),
    ("hour", "h"),
)


def _offset(zone: str | None) -> timedelta:
    if zone is None or zone == "Z":
        return timedelta(0)
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 18 or minutes > 59:
        raise ValueError(f"offset {zone} out of range")
    sign = 1 if zone[0] == "+" else -1
    return sign * timedelta(hours=hours, minutes=minutes)


def _refused(where: str, text: str, why: str) -> InvalidInputError:
    return InvalidInputError(
        f"{where}: {text!r} is not date math: {why} (Elasticsearch's syntax: now-30d/d, "
        "2024-01-01||+1M/d)"
    )


def _to_millisecond(time: datetime) -> datetime:
    time = time.astimezone(UTC) if time.tzinfo is not None else time.replace(tzinfo=UTC)
    return time.replace(microsecond=time.microsecond // 1000 * 1000)


def _shifted(time: datetime, count: int, unit: str) -> datetime:
    """``time`` moved ``count`` units: by its zone's calendar (wall time) for days and longer,
    by the clock (UTC) for hours and shorter, as Elasticsearch moves them."""
    if unit in "hHms":
        return (time.astimezone(UTC) + count * _FIXED[unit]).astimezone(time.tzinfo)
    if unit in ("y", "M"):
        months = time.year * 12 + time.month - 1 + count * (12 if unit == "y" else 1)
        year, month = divmod(months, 12)
        if not 1 <= year <= 9999:
            raise OverflowError(year)
        day = min(time.day, calendar.monthrange(year, month + 1)[1])
        return time.replace(year=year, month=month + 1, day=day)
    return time + count * _FIXED[unit]


def _rounded(time: datetime, unit: str, *, up: bool) -> datetime:
    """``time`` down to the start of its ``unit``; ``up``: to that unit's last millisecond."""
    start = {
        "y": lambda: time.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0),
        "M": lambda: time.replace(day=1, hour=0, minute=0, second=0, microsecond=0),
        "w": lambda: _rounded(time, "d", up=False) - timedelta(days=time.weekday()),
        "d": lambda: time.replace(hour=0, minute=0, second=0, microsecond=0),
        "h": lambda: time.replace(minute=0, second=0, microsecond=0),
        "H": lambda: time.replace(minute=0, second=0, microsecond=0),
        "m": lambda: time.replace(second=0, microsecond=0),
        "s": lambda: time.replace(microsecond=0),
    }[unit]()
    if not up:
        return start
    try:
        return _shifted(start, 1, unit) - _ONE_MS
    except OverflowError:  # the unit runs past year 9999: it ends where time does
        return _LAST_MS.replace(tzinfo=time.tzinfo)


def resolved_bound(
    op: str, expression: DateMath, now: datetime, zone: tzinfo = UTC
) -> tuple[str, int]:
    """The bound ``{op: expression}`` names at ``now`` (in ``zone``), as ``(gte or lte,
    milliseconds since 1970)``: both include the instant they name.

    Elasticsearch rounds ``gte`` and ``lt`` down and ``gt`` and ``lte`` up (to the unit's last
    millisecond): ``gt`` then passes from the next millisecond on, and ``lt`` up to the
    millisecond before, so ``lte now/d`` is all of today and ``gt now/d`` starts tomorrow."""
    if op in ("gte", "lt"):
        first = epoch_millis(expression.resolve(now, round_up=False, zone=zone))
        return ("gte", first) if op == "gte" else ("lte", first - 1)
    last = epoch_millis(expression.resolve(now, round_up=True, zone=zone))
    return ("lte", last) if op == "lte" else ("gte", last + 1)


def epoch_millis(time: datetime) -> int:
    """An aware ``time`` as whole milliseconds since 1970-01-01 UTC."""
    return (time - _EPOCH) // _ONE_MS


def value_instant(value: object) -> int | None:
    """A document's value as the instant a date field holds, in milliseconds since 1970 (None:
    no date), as Elasticsearch's default date format reads it: a number is epoch
    milliseconds (a fraction dropped), a string an ISO 8601 date or date-time (the forms a
    bound takes, ``plain_date``) at its offset, UTC where it names none, to the millisecond."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return math.floor(value)
    found = _ANCHOR.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        return None
    # Read once per distinct value of a column (a million dates: every microsecond counts).
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    clock = int(hour or 0), int(minute or 0), int(second or 0)
    if clock[0] > 23 or clock[1] > 59 or clock[2] > 59:
        return None
    try:
        days = date(int(year), int(month or 1), int(day or 1)).toordinal() - _EPOCH_DAY
        offset = 0 if zone is None or zone == "Z" else _offset(zone) // _ONE_MS
    except ValueError:
        return None
    seconds = days * 86_400 + clock[0] * 3600 + clock[1] * 60 + clock[2]
    millis = int(fraction[:3].ljust(3, "0")) if fraction else 0
    return seconds * 1000 + millis - offset
