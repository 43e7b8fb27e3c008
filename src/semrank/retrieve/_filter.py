"""Document filters: the non-scoring part of Elasticsearch's query DSL.

A filter decides which documents a first-stage retriever may return; it never changes a score.
Accepted clauses (as in Elasticsearch's filter context): ``term``, ``terms``, ``range``,
``exists``, ``ids``, ``match_all`` and ``bool`` (``must`` / ``filter`` / ``should`` /
``must_not``), given as one object or a list (all must hold).

Fields are dotted paths into a document's JSON (``meta.lang``); arrays match when any element
does, as in Elasticsearch. Values compare as keywords: strings exactly (``case_insensitive`` on
``term``), numbers numerically, booleans only with booleans. A path ending in ``.keyword`` (the
sub-field Elasticsearch's dynamic mapping adds to strings) reads the field without the suffix
when the document has no such key, so filters written for Elasticsearch run unchanged.

A ``range`` bound may be Elasticsearch date math (``now-30d/d``, ``2024-01-01||+1M/d``,
``semrank.retrieve._datemath``) or an ISO 8601 date at any offset, which rounds as
Elasticsearch fills its missing parts (``lte 2024-01-31`` is all of that day), read in the
range's ``time_zone`` and ``format`` where it gives them (``_dateformat``): kept as written in
the filter and its ``to_dict``, and turned by ``resolved`` (when a search runs) into an
``InstantRange``, which compares the documents' values as instants (ISO 8601 strings at their
offsets, numbers as epoch milliseconds).

``matches`` is the reference semantics; stores that evaluate filters elsewhere (SQL) are tested
against it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeAlias

from semrank.errors import InvalidInputError
from semrank.retrieve._dateformat import (
    check_format,
    check_time_zone,
    formatted_anchor,
    formatted_date,
    zone_of,
)
from semrank.retrieve._datemath import (
    DateMath,
    is_date_math,
    parse_date_math,
    plain_date,
    resolved_bound,
    value_instant,
)

Scalar: TypeAlias = str | int | float | bool
# A range bound: a value, or date math (or an ISO 8601 date) resolved when a search runs.
Bound: TypeAlias = Scalar | DateMath


class FieldValues(Protocol):
    """A document's values at a field path (flattened; nulls dropped); with ``leaves``, an
    object at the path contributes every value inside it (what ``exists`` asks of an object)."""

    def __call__(self, path: str, *, leaves: bool = False) -> Sequence[Scalar]: ...


SUPPORTED = ("term", "terms", "range", "exists", "ids", "match_all", "bool")
KEYWORD_SUFFIX = ".keyword"
# A terms list this long is a join done in JSON; Elasticsearch's own limit is 65,536.
MAX_TERMS = 65_536
MAX_DEPTH = 20
# The dot-separated parts of a field path a query may name. PostgreSQL reads each way of
# splitting a path into keys (a key may hold dots), whose SQL/JSON paths grow with the cube of
# the parts: 1,000 parts were 500 MB of path text. Elasticsearch maps fields 20 objects deep.
MAX_FIELD_PARTS = 32


@dataclasses.dataclass(frozen=True, kw_only=True)
class Term:
    """The field holds one of ``values`` (``term``: one value; ``terms``: any of several)."""

    field: str
    values: tuple[Scalar, ...]
    case_insensitive: bool = False

    def matches(self, doc_id: str, values: FieldValues) -> bool:
        have = values(self.field)
        if self.case_insensitive:
            wanted = {_fold(v) for v in self.values}
            return any(_fold(v) in wanted for v in have)
        return any(_same(v, w) for v in have for w in self.values)

    def to_dict(self) -> dict[str, Any]:
        if len(self.values) == 1:
            if self.case_insensitive:
                body = {"value": self.values[0], "case_insensitive": True}
                return {"term": {self.field: body}}
            return {"term": {self.field: self.values[0]}}
        return {"terms": {self.field: list(self.values)}}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Range:
    """The field holds a value within the bounds (numbers with numbers, strings with strings;
    date bounds, every bound or none, compare once ``resolved``: as instants, ``time_zone``
    and ``format`` as written)."""

    field: str
    gt: Bound | None = None
    gte: Bound | None = None
    lt: Bound | None = None
    lte: Bound | None = None
    time_zone: str | None = None
    format: str | None = None

    def matches(self, doc_id: str, values: FieldValues) -> bool:
        if self.has_date_math():  # not resolved by the caller: at the present time
            return self.resolved(_utc_now()).matches(doc_id, values)
        return any(self._within(v) for v in values(self.field))

    def has_date_math(self) -> bool:
        return any(isinstance(getattr(self, k), DateMath) for k in _BOUNDS)

    def resolved(self, now: datetime) -> Range | InstantRange:
        """A date range as the instants its bounds name at ``now`` (in its time zone): both
        ends inclusive (``resolved_bound``), the tighter of two on one side (``gt`` beside
        ``gte``); this range itself where it holds no date."""
        if not self.has_date_math():
            return self
        zone = UTC if self.time_zone is None else zone_of(self.time_zone)
        ends: dict[str, int] = {}
        for key in _BOUNDS:
            value = getattr(self, key)
            if isinstance(value, DateMath):
                side, instant = resolved_bound(key, value, now, zone)
                held = ends.get(side)
                tighter = max if side == "gte" else min
                ends[side] = instant if held is None else tighter(held, instant)
        return InstantRange(field=self.field, since=ends.get("gte"), until=ends.get("lte"))

    def _within(self, value: Scalar) -> bool:
        checks = (
            (self.gt, lambda b: value > b),
            (self.gte, lambda b: value >= b),
            (self.lt, lambda b: value < b),
            (self.lte, lambda b: value <= b),
        )
        for bound, holds in checks:
            if bound is None:
                continue
            if isinstance(bound, DateMath) or not _comparable(value, bound) or not holds(bound):
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        bounds = {k: getattr(self, k) for k in (*_BOUNDS, "time_zone", "format")}
        written = {k: v.text if isinstance(v, DateMath) else v for k, v in bounds.items()}
        return {"range": {self.field: {k: v for k, v in written.items() if v is not None}}}


@dataclasses.dataclass(frozen=True, kw_only=True)
class InstantRange:
    """A date range resolved: the field holds a date (``value_instant``: an ISO 8601 string at
    any offset, a number of epoch milliseconds) from ``since`` to ``until``, milliseconds since
    1970 UTC, both included (None: open)."""

    field: str
    since: int | None = None
    until: int | None = None

    def matches(self, doc_id: str, values: FieldValues) -> bool:
        return any(self.holds(value_instant(v)) for v in values(self.field))

    def holds(self, instant: int | None) -> bool:
        if instant is None:
            return False
        return (self.since is None or instant >= self.since) and (
            self.until is None or instant <= self.until
        )

    def to_dict(self) -> dict[str, Any]:
        ends = {"gte": self.since, "lte": self.until}
        body = {k: v for k, v in ends.items() if v is not None}
        return {"range": {self.field: {**body, "format": "epoch_millis"}}}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Exists:
    """The field holds at least one non-null value."""

    field: str

    def matches(self, doc_id: str, values: FieldValues) -> bool:
        return len(values(self.field, leaves=True)) > 0

    def to_dict(self) -> dict[str, Any]:
        return {"exists": {"field": self.field}}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Ids:
    """The document's id is one of ``values``."""

    values: frozenset[str]

    def matches(self, doc_id: str, values: FieldValues) -> bool:
        return doc_id in self.values

    def to_dict(self) -> dict[str, Any]:
        return {"ids": {"values": sorted(self.values)}}


@dataclasses.dataclass(frozen=True, kw_only=True)
class MatchAll:
    """Every document."""

    def matches(self, doc_id: str, values: FieldValues) -> bool:
        return True

    def to_dict(self) -> dict[str, Any]:
        return {"match_all": {}}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Bool:
    """All of ``must``, at least ``minimum_should_match`` of ``should``, none of ``must_not``
    (``must`` and ``filter`` are one list here: nothing scores in a filter)."""

    must: tuple[Filter, ...] = ()
    should: tuple[Filter, ...] = ()
    must_not: tuple[Filter, ...] = ()
    minimum_should_match: int = 0

    def matches(self, doc_id: str, values: FieldValues) -> bool:
        if not all(f.matches(doc_id, values) for f in self.must):
            return False
        if any(f.matches(doc_id, values) for f in self.must_not):
            return False
        if self.minimum_should_match <= 0:
            return True
        hits = sum(1 for f in self.should if f.matches(doc_id, values))
        return hits >= self.minimum_should_match

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for key in ("must", "should", "must_not"):
            clauses = getattr(self, key)
            if clauses:
                body["filter" if key == "must" else key] = [c.to_dict() for c in clauses]
        if self.should:
            body["minimum_should_match"] = self.minimum_should_match
        return {"bool": body}


Filter: TypeAlias = Term | Range | InstantRange | Exists | Ids | MatchAll | Bool


# A filter as given: Elasticsearch JSON (a query object or a list of them) or parsed.
FilterSpec: TypeAlias = Filter | Mapping[str, Any] | Sequence[Any]


def as_filter(spec: FilterSpec, where: str = "filter") -> Filter:
    """``spec`` parsed where given as JSON (errors name ``where``)."""
    return spec if isinstance(spec, Filter) else parse_filter(spec, where)


def optional_filter(spec: FilterSpec | None, where: str = "filter") -> Filter | None:
    """``as_filter`` where a filter is given (a search's, a node's), None where none is."""
    return None if spec is None else as_filter(spec, where)


def all_of(*filters: Filter | None) -> Filter | None:
    """The filter every one of ``filters`` must pass (None where none is given)."""
    given = tuple(f for f in filters if f is not None)
    if len(given) <= 1:
        return given[0] if given else None
    return Bool(must=given)


def matches_everything(flt: Filter) -> bool:
    """Whether ``flt`` passes every document whatever it holds (``match_all``, an empty
    ``bool`` or list, or only such clauses): a delete by such a filter empties the index."""
    if isinstance(flt, MatchAll):
        return True
    if not isinstance(flt, Bool) or flt.must_not:
        return False
    if not all(matches_everything(clause) for clause in flt.must):
        return False
    passing = sum(1 for clause in flt.should if matches_everything(clause))
    return passing >= flt.minimum_should_match


def resolved(flt: Filter, now: datetime | None = None) -> Filter:
    """``flt`` with every date math bound resolved at ``now`` (default: the present, in UTC):
    what a store compares. Called where a search starts, so a filter kept and reused means
    "now" each time; ``flt`` itself where it holds no date math."""
    if isinstance(flt, Range):
        return flt.resolved(_utc_now() if now is None else now)
    if not isinstance(flt, Bool):
        return flt
    when = _utc_now() if now is None else now  # one present for every clause

    def each(clauses: tuple[Filter, ...]) -> tuple[Filter, ...]:
        return tuple(resolved(clause, when) for clause in clauses)

    parts = (each(flt.must), each(flt.should), each(flt.must_not))
    if parts == (flt.must, flt.should, flt.must_not):
        return flt
    return dataclasses.replace(flt, must=parts[0], should=parts[1], must_not=parts[2])


def _utc_now() -> datetime:
    return datetime.now(UTC)


def fields_read(flt: Filter) -> Iterator[str]:
    """Every field path the filter reads (a store loads just these)."""
    if isinstance(flt, Bool):
        for clause in (*flt.must, *flt.should, *flt.must_not):
            yield from fields_read(clause)
    elif isinstance(flt, Term | Range | InstantRange | Exists):
        yield flt.field


def document_values(
    document: Mapping[str, Any], path: str, *, leaves: bool = False
) -> list[Scalar]:
    """The scalars at ``path`` (dotted; arrays and arrays of objects flattened); with
    ``leaves``, also every scalar inside an object found there."""
    found = _walk(document, path.split("."), leaves)
    if not found and path.endswith(KEYWORD_SUFFIX) and path not in document:
        found = _walk(document, path[: -len(KEYWORD_SUFFIX)].split("."), leaves)
    return found


def matches(flt: Filter, doc_id: str, document: Mapping[str, Any]) -> bool:
    """Whether the document passes the filter (the reference every store agrees with); date
    math is resolved at the present time unless ``flt`` is ``resolved`` already (resolve once
    before matching many documents)."""

    def values(path: str, *, leaves: bool = False) -> list[Scalar]:
        return document_values(document, path, leaves=leaves)

    return flt.matches(doc_id, values)


def _walk(node: Any, parts: list[str], leaves: bool) -> list[Scalar]:
    if isinstance(node, list):
        return [v for item in node for v in _walk(item, parts, leaves)]
    if not parts:
        if leaves and isinstance(node, Mapping):
            return [v for item in node.values() for v in _walk(item, [], leaves)]
        return [node] if _is_scalar(node) else []
    if not isinstance(node, Mapping):
        return []
    # A key may itself hold dots ({"meta.lang": "en"}), as Elasticsearch reads it too.
    for cut in range(len(parts), 0, -1):
        key = ".".join(parts[:cut])
        if key in node:
            return _walk(node[key], parts[cut:], leaves)
    return []


def _is_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int | bool)


def _kind(value: Bound) -> str:
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, int | float) else "string"


def _comparable(a: Scalar, b: Scalar) -> bool:
    return _kind(a) == _kind(b) and _kind(a) != "bool"


def _same(a: Scalar, b: Scalar) -> bool:
    return _kind(a) == _kind(b) and a == b


def _fold(value: Scalar) -> tuple[str, Scalar]:
    if isinstance(value, str):
        return ("string", value.casefold())
    return (_kind(value), value)


# --- parsing -----------------------------------------------------------------------------


def parse_filter(spec: Any, where: str = "filter") -> Filter:
    """A filter from its Elasticsearch JSON (one query object or a list of them: all hold)."""
    return _parse(spec, where, 0)


def _parse(spec: Any, where: str, depth: int) -> Filter:
    if depth > MAX_DEPTH:
        raise InvalidInputError(f"{where}: filters nest at most {MAX_DEPTH} deep")
    if isinstance(spec, list):
        return Bool(must=tuple(_parse(s, f"{where}[{i}]", depth + 1) for i, s in enumerate(spec)))
    if not isinstance(spec, dict) or len(spec) != 1:
        raise InvalidInputError(
            f'{where} must be one query object such as {{"term": {{"lang": "en"}}}} '
            f"(or a list of them), got {_shown(spec)}"
        )
    kind, body = next(iter(spec.items()))
    parser = _PARSERS.get(kind)
    if parser is None:
        raise InvalidInputError(
            f"{where}: {kind!r} is not a supported filter; use one of {', '.join(SUPPORTED)}"
            + (" (term matches a field's exact value)" if kind in ("match", "match_phrase") else "")
        )
    return parser(body, f"{where}.{kind}", depth)


def _object(body: Any, where: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInputError(f"{where} must be a JSON object, got {_shown(body)}")
    return body


def _one_field(body: Any, where: str, options: set[str]) -> tuple[str, Any]:
    """``{field: value}``, optionally beside options such as ``boost`` (ignored in a filter)."""
    body = _object(body, where)
    fields = [k for k in body if k not in options]
    if len(fields) != 1:
        raise InvalidInputError(f"{where} names one field, got {sorted(fields) or 'none'}")
    name = fields[0]
    _check_boost(body.get("boost"), where)
    return _field(name, where), body[name]


def _field(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name.strip() or name.startswith(".") or name.endswith("."):
        raise InvalidInputError(f"{where}: field name {name!r} is not a dotted field path")
    check_field_parts(name, where)
    return name


def check_field_parts(name: str, where: str) -> None:
    """Refuses a field path of more than MAX_FIELD_PARTS dot-separated parts."""
    parts = name.count(".") + 1
    if parts > MAX_FIELD_PARTS:
        raise InvalidInputError(
            f"{where}: field name {name:.60}... has {parts:,} dot-separated parts; a query "
            f"names fields of at most {MAX_FIELD_PARTS} (flatten deeper documents, or give "
            "the field a shorter name)"
        )


def _check_boost(value: Any, where: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise InvalidInputError(f"{where}.boost must be a number, got {_shown(value)}")


def _value(value: Any, where: str) -> Scalar:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInputError(f"{where}: {value} is not a finite number")
    if not isinstance(value, str | int | float | bool):
        raise InvalidInputError(f"{where} must be a string, number or boolean, got {_shown(value)}")
    return value


def _term(body: Any, where: str, depth: int) -> Filter:
    name, value = _one_field(body, where, {"boost"})
    insensitive = False
    if isinstance(value, dict):
        unknown = set(value) - {"value", "boost", "case_insensitive"}
        if unknown or "value" not in value:
            raise InvalidInputError(
                f"{where}.{name} takes 'value' (and 'case_insensitive', 'boost'), "
                f"got {sorted(value)}"
            )
        _check_boost(value.get("boost"), f"{where}.{name}")
        insensitive = value.get("case_insensitive", False)
        if not isinstance(insensitive, bool):
            raise InvalidInputError(f"{where}.{name}.case_insensitive must be true or false")
        value = value["value"]
    return Term(
        field=name, values=(_value(value, f"{where}.{name}"),), case_insensitive=insensitive
    )


def _terms(body: Any, where: str, depth: int) -> Filter:
    name, values = _one_field(body, where, {"boost"})
    if not isinstance(values, list) or not values:
        raise InvalidInputError(
            f"{where}.{name} must be a non-empty list of values, got {_shown(values)}"
        )
    if len(values) > MAX_TERMS:
        raise InvalidInputError(f"{where}.{name}: at most {MAX_TERMS} values, got {len(values)}")
    return Term(
        field=name, values=tuple(_value(v, f"{where}.{name}[{i}]") for i, v in enumerate(values))
    )


_BOUNDS = ("gt", "gte", "lt", "lte")


def _range(body: Any, where: str, depth: int) -> Filter:
    name, spec = _one_field(body, where, set())
    at = f"{where}.{name}"
    spec = _object(spec, at)
    unknown = set(spec) - {*_BOUNDS, "boost", "time_zone", "format"}
    if unknown:
        raise InvalidInputError(
            f"{at}: {sorted(unknown)} not supported; give gt, gte, lt and/or lte (and for "
            "dates time_zone, format), as numbers, strings or dates (ISO 8601, date math)"
        )
    _check_boost(spec.get("boost"), at)
    zone = _optional(spec, "time_zone", at, check_time_zone)
    formats = _optional(spec, "format", at, check_format)
    dated = zone is not None or formats is not None
    bounds = {
        k: _bound(spec[k], f"{at}.{k}", formats, dated) for k in _BOUNDS if spec.get(k) is not None
    }
    if not bounds:
        raise InvalidInputError(f"{at}: give at least one of gt, gte, lt, lte")
    _check_bound_kinds(bounds, spec, at)
    return Range(field=name, time_zone=zone, format=formats, **bounds)


def _optional(spec: dict[str, Any], key: str, at: str, check: Callable[[Any, str], str]) -> Any:
    return None if spec.get(key) is None else check(spec[key], f"{at}.{key}")


def _check_bound_kinds(bounds: dict[str, Bound], spec: dict[str, Any], at: str) -> None:
    """Refused: dates beside other values (a range compares instants or values, not both),
    and bounds of more than one kind (numbers with strings) or booleans."""
    dates = [k for k, v in bounds.items() if isinstance(v, DateMath)]
    if dates and len(dates) < len(bounds):
        other = next(k for k in bounds if k not in dates)
        raise InvalidInputError(
            f"{at}: {other} {spec[other]!r} is not a date (ISO 8601 such as 2024-01-31, or "
            f"date math) while {dates[0]} {spec[dates[0]]!r} is; a range compares dates with "
            "dates, values with values"
        )
    kinds = {_kind(v) for v in bounds.values()}
    if "bool" in kinds or len(kinds) > 1:
        raise InvalidInputError(
            f"{at}: bounds must be all numbers or all strings (dates, date math), got "
            f"{_shown({k: spec[k] for k in bounds})}"
        )


def _bound(value: Any, where: str, formats: str | None, dated: bool) -> Bound:
    """A range bound: date math where it is (``now-1d``, ``2024-01-01||+1M``), a date in
    ``formats`` or, where none is given, an ISO 8601 date (read as Elasticsearch reads it:
    ``lte 2024-01-31`` is all of that day), else a value, refused in a range that is
    ``dated`` (it gives a format or time zone)."""
    if is_date_math(value):
        anchor = None if formats is None else formatted_anchor(formats)
        return parse_date_math(value, where, anchor)
    if formats is not None:
        date = formatted_date(value, formats)
    else:
        date = plain_date(value) if isinstance(value, str) else None
    if date is None and dated:
        raise InvalidInputError(
            f"{where}: {_shown(value)} is not a date in format "
            f"{formats or 'strict_date_optional_time'} (ISO 8601 such as 2024-01-31T10:00, "
            "or date math such as now-1d/d)"
        )
    return _value(value, where) if date is None else date


def _exists(body: Any, where: str, depth: int) -> Filter:
    body = _object(body, where)
    if set(body) - {"field", "boost"} or "field" not in body:
        raise InvalidInputError(f'{where} takes {{"field": NAME}}, got {_shown(body)}')
    _check_boost(body.get("boost"), where)
    return Exists(field=_field(body["field"], where))


def _ids(body: Any, where: str, depth: int) -> Filter:
    body = _object(body, where)
    values = body.get("values")
    if set(body) - {"values", "boost"} or not isinstance(values, list):
        raise InvalidInputError(f'{where} takes {{"values": [ID, ...]}}, got {_shown(body)}')
    if not all(isinstance(v, str) for v in values):
        raise InvalidInputError(f"{where}.values must be document ids (strings)")
    return Ids(values=frozenset(values))


def _match_all(body: Any, where: str, depth: int) -> Filter:
    if set(_object(body, where)) - {"boost"}:
        raise InvalidInputError(f"{where} takes no options, got {_shown(body)}")
    return MatchAll()


_BOOL_KEYS = {"must", "filter", "should", "must_not", "minimum_should_match", "boost"}


def _bool(body: Any, where: str, depth: int) -> Filter:
    body = _object(body, where)
    unknown = set(body) - _BOOL_KEYS
    if unknown:
        raise InvalidInputError(
            f"{where}: {sorted(unknown)} not supported; use must, filter, should, must_not "
            "and minimum_should_match"
        )
    _check_boost(body.get("boost"), where)

    def clauses(key: str) -> tuple[Filter, ...]:
        spec = body.get(key, [])
        items = spec if isinstance(spec, list) else [spec]
        return tuple(_parse(s, f"{where}.{key}[{i}]", depth + 1) for i, s in enumerate(items))

    must, should = clauses("must") + clauses("filter"), clauses("should")
    # Elasticsearch: with should clauses but no must/filter, at least one should must hold.
    default = 1 if should and not must else 0
    minimum = _minimum_should_match(body.get("minimum_should_match", default), where)
    if minimum > len(should):
        raise InvalidInputError(
            f"{where}.minimum_should_match is {minimum} but there are {len(should)} should "
            "clauses: no document could match"
        )
    return Bool(
        must=must, should=should, must_not=clauses("must_not"), minimum_should_match=minimum
    )


def _minimum_should_match(value: Any, where: str) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(
            f"{where}.minimum_should_match must be a whole number of clauses (0 or more), got "
            f"{_shown(value)}"
        )
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_PARSERS: dict[str, Callable[[Any, str, int], Filter]] = {
    "term": _term,
    "terms": _terms,
    "range": _range,
    "exists": _exists,
    "ids": _ids,
    "match_all": _match_all,
    "bool": _bool,
}
