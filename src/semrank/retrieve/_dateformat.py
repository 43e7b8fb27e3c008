"""A range's ``format`` and ``time_zone``: how its bounds are read as dates (and how a date
histogram writes its keys, ``shown_date``).

``format`` names Elasticsearch's date formats, alternatives joined by ``||`` (the first that
reads a bound wins): ``strict_date_optional_time`` (ISO 8601, as a bound is read without a
format), ``yyyy-MM-dd``, ``epoch_millis`` and ``epoch_second`` (numbers, or strings of digits).
It reads the bounds only: stored values are read by the default date format whatever the
range says (``value_instant``), as Elasticsearch reads them by the field's mapping.

``time_zone`` is a UTC offset (``+01:00``, ``-0530``, ``Z``) or an IANA name
(``Europe/Paris``): a bound naming no offset is a wall time there, and date math rounds in it
(``now/d`` is the zone's midnight); ``now`` itself is the present instant either way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from semrank.errors import InvalidInputError
from semrank.retrieve._datemath import DateMath, plain_date

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_EPOCH_NUMBER = re.compile(r"-?\d+(?:\.\d+)?", re.ASCII)
_OFFSET = re.compile(r"([+-])(\d{2})(?::?(\d{2}))?", re.ASCII)


def _iso(value: object) -> DateMath | None:
    return plain_date(value) if isinstance(value, str) else None


def _day(value: object) -> DateMath | None:
    if not isinstance(value, str) or _DAY.fullmatch(value) is None:
        return None
    return _iso(value)  # an ISO 8601 date: rounds as /d


def _epoch(value: object, unit: timedelta, rounding: str | None) -> DateMath | None:
    """``value`` (a number or a string of one) as that many ``unit`` since 1970; a whole
    number rounds as ``rounding`` (``lte 1700000000`` in seconds is all of that second)."""
    written: str | int | float
    number: float
    if isinstance(value, str) and _EPOCH_NUMBER.fullmatch(value):
        written, number = value, float(value) if "." in value else int(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        written = number = value
    else:
        return None
    try:
        anchor = _EPOCH + unit * number
    except OverflowError:
        return None
    whole = float(number).is_integer()
    steps = (("/", 1, rounding),) if rounding is not None and whole else ()
    return DateMath(text=written, anchor=anchor, steps=steps)


_READERS: dict[str, Callable[[object], DateMath | None]] = {
    "strict_date_optional_time": _iso,
    "date_optional_time": _iso,
    "strict_date": _day,
    "date": _day,
    "yyyy-MM-dd": _day,
    "epoch_millis": lambda value: _epoch(value, timedelta(milliseconds=1), None),
    "epoch_second": lambda value: _epoch(value, timedelta(seconds=1), "s"),
}
FORMATS = tuple(_READERS)


def check_format(text: object, where: str) -> str:
    """``text`` where it names supported formats (``||`` between alternatives), else refused
    naming the unknown ones and listing the supported."""
    if not isinstance(text, str) or not text:
        raise InvalidInputError(f"{where} must be a date format name such as epoch_millis")
    unknown = [name for name in text.split("||") if name not in _READERS]
    if unknown:
        raise InvalidInputError(
            f"{where}: {', '.join(map(repr, unknown))} not supported; use "
            f"{', '.join(FORMATS)}, alternatives joined by || (epoch_millis||yyyy-MM-dd)"
        )
    return text


def formatted_date(value: object, formats: str) -> DateMath | None:
    """``value`` read by the first of ``formats`` (checked) that reads it, None by none."""
    for name in formats.split("||"):
        found = _READERS[name](value)
        if found is not None:
            return found
    return None


def formatted_anchor(formats: str) -> Callable[[str], datetime | None]:
    """What reads the date before a date math ``||`` in ``formats``."""

    def read(written: str) -> datetime | None:
        found = formatted_date(written, formats)
        return None if found is None else found.anchor

    return read


def check_time_zone(text: object, where: str) -> str:
    """``text`` where it names a time zone ``zone_of`` reads, else refused saying what does."""
    if isinstance(text, str):
        try:
            zone_of(text)
            return text
        except (ValueError, ZoneInfoNotFoundError):
            pass
    raise InvalidInputError(
        f"{where}: {text!r} is not a time zone; give a UTC offset (+01:00, -05:30) or an IANA "
        "name (Europe/Paris; those need the system's time zone database or the tzdata package)"
    )


@lru_cache(maxsize=256)
def zone_of(text: str) -> tzinfo:
    """The zone ``text`` names (``check_time_zone`` passed it): ValueError or
    ZoneInfoNotFoundError where none."""
    if text in ("Z", "UTC"):
        return UTC
    found = _OFFSET.fullmatch(text)
    if found is None:
        if text.startswith(("+", "-")) or not text.isprintable():
            raise ValueError(text)
        return ZoneInfo(text)
    hours, minutes = int(found[2]), int(found[3] or 0)
    if hours > 18 or minutes > 59:
        raise ValueError(text)
    offset = timedelta(hours=hours, minutes=minutes)
    return timezone(-offset if found[1] == "-" else offset)


def shown_date(millis: int, formats: str, zone: tzinfo = UTC) -> str:
    """The instant ``millis`` (since 1970, UTC) written in the first of ``formats`` (checked),
    as a wall time in ``zone``, as Elasticsearch writes a date histogram's ``key_as_string``:
    ``2024-01-01T00:00:00.000Z`` (``+01:00`` in a zone ahead of UTC), ``2024-01-01``, or
    the number of milliseconds or seconds."""
    name = formats.split("||")[0]
    if name == "epoch_millis":
        return str(millis)
    if name == "epoch_second":
        return str(millis // 1000) if millis % 1000 == 0 else str(millis / 1000)
    local = (_EPOCH + timedelta(milliseconds=millis)).astimezone(zone)
    day = f"{local.year:04d}-{local.month:02d}-{local.day:02d}"
    if _READERS[name] is _day:
        return day
    clock = f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}"
    return f"{day}T{clock}.{local.microsecond // 1000:03d}{_shown_offset(local.utcoffset())}"


def _shown_offset(offset: timedelta | None) -> str:
    seconds = int((offset or timedelta(0)).total_seconds())
    if seconds == 0:
        return "Z"
    sign = "+" if seconds > 0 else "-"
    hours, rest = divmod(abs(seconds), 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{sign}{hours:02d}:{minutes:02d}" + (f":{seconds:02d}" if seconds else "")
