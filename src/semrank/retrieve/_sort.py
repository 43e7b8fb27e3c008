"""Ordering hits by document fields: Elasticsearch's ``sort`` and ``search_after``.

``parse_sort`` reads a ``sort`` as Elasticsearch 8 does (``"date"``, ``["date", {"price":
"desc"}]``, ``{"price": {"order": "desc", "missing": "_first", "mode": "avg"}}``, ``_score``,
``_doc``). ``order_entries`` orders documents one at a time in Python: the reference
(``reference_sort``, over whole documents) that ``semrank.retrieve._sort_columns.order_table``,
the ordering every store's sorted search runs over the values the store says its documents
hold, is checked against; the two share the sort's reading of types, values and cursors here.

semrank keeps no mapping, so a field's sort type is read from the values of the documents
sorted: numbers sort as numbers, booleans false before true, strings as keywords (by code
point, Elasticsearch's UTF-8 byte order), and strings that are all dates (``value_instant``:
ISO 8601 at their offset; numbers beside them are epoch milliseconds, as a date field reads
them) by their instant, answered as epoch milliseconds. Values of types no one field could
hold together (numbers and words, booleans and anything else) are refused, as Elasticsearch
refuses a sort over incompatible types. Ties are broken by index, then id, and that key ends
each hit's ``sort`` values (as a point in time's implicit ``_shard_doc`` does), so that
``search_after`` pages never skip nor repeat a hit.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from semrank._checks import is_finite_number
from semrank.errors import InvalidInputError
from semrank.retrieve._datemath import value_instant
from semrank.retrieve._filter import Scalar, _kind, check_field_parts
from semrank.store._targets import hit_key, split_key

SCORE, DOC, ID = "_score", "_doc", "_id"
# Sorted by the document's id: _doc (index order; the stores keep none in common) and _id.
BY_ID = (DOC, ID)
MODES = ("min", "max", "sum", "avg", "median")
NUMERIC_MODES = ("sum", "avg", "median")
_KEY_OPTIONS = {"order", "missing", "mode", "unmapped_type"}
SortValue = Scalar | None


@dataclass(frozen=True, kw_only=True)
class SortKey:
    """One sort criterion: a document field (or ``_score``, ``_doc``), its direction, where
    documents without a value go, and which of several values counts (None: Elasticsearch's
    default, the smallest ascending and the largest descending)."""

    field: str
    descending: bool = False
    missing: Literal["_first", "_last"] = "_last"
    mode: str | None = None

    @property
    def on_field(self) -> bool:
        return self.field not in (SCORE, *BY_ID)

    def to_dict(self) -> dict[str, Any]:
        options: dict[str, Any] = {"order": "desc" if self.descending else "asc"}
        if self.on_field and self.missing != "_last":
            options["missing"] = self.missing
        if self.mode is not None:
            options["mode"] = self.mode
        return {self.field: options}


@dataclass(frozen=True)
class Sort:
    """A search's sort: its criteria in order (ties then broken by index and id)."""

    keys: tuple[SortKey, ...]

    @property
    def fields(self) -> list[str]:
        """The document fields it reads, each once."""
        return list(dict.fromkeys(key.field for key in self.keys if key.on_field))

    @property
    def by_score(self) -> bool:
        return any(key.field == SCORE for key in self.keys)

    def to_dict(self) -> list[dict[str, Any]]:
        return [key.to_dict() for key in self.keys]


def parse_sort(spec: Any, where: str = "sort") -> Sort:
    """Elasticsearch's ``sort``: a field name, ``{field: "asc" | "desc"}``, ``{field:
    {"order", "missing", "mode"}}``, or a non-empty list of them (a ``Sort`` as it is)."""
    if isinstance(spec, Sort):
        return spec
    items = spec if isinstance(spec, list) else [spec]
    if not items:
        raise InvalidInputError(f'{where} is an empty list; give fields, e.g. ["date", "_score"]')
    return Sort(tuple(_sort_key(item, f"{where}[{n}]") for n, item in enumerate(items)))


def _sort_key(item: Any, where: str) -> SortKey:
    if isinstance(item, SortKey):
        return item
    if isinstance(item, str) and item:
        check_field_parts(item, where)
        return SortKey(field=item, descending=item == SCORE)
    if not isinstance(item, dict) or len(item) != 1:
        raise InvalidInputError(
            f'{where} must be a field name or {{"field": {{"order": "asc"}}}} with one field, '
            f"got {item!r:.80}"
        )
    field, options = next(iter(item.items()))
    check_field_parts(field, where)
    if isinstance(options, str):
        options = {"order": options}
    if not isinstance(options, dict):
        raise InvalidInputError(f'{where}.{field} must be "asc", "desc" or an options object')
    unknown = sorted(set(options) - _KEY_OPTIONS)
    if unknown:
        raise InvalidInputError(
            f"{where}.{field}: unsupported option {unknown[0]!r}; supported: "
            f"{', '.join(sorted(_KEY_OPTIONS))} (semrank reads a field's type from its values)"
        )
    return SortKey(
        field=field,
        descending=_order(options.get("order"), field, where),
        missing=_missing(options.get("missing", "_last"), field, where),
        mode=_mode(options.get("mode"), field, where),
    )


def _order(value: Any, field: str, where: str) -> bool:
    if value is None:
        return field == SCORE  # Elasticsearch: _score descending, every other ascending
    if value not in ("asc", "desc"):
        raise InvalidInputError(f'{where}.{field}.order must be "asc" or "desc", got {value!r:.40}')
    return bool(value == "desc")


def _missing(value: Any, field: str, where: str) -> Literal["_first", "_last"]:
    if value == "_first":
        return "_first"
    if value == "_last":
        return "_last"
    raise InvalidInputError(
        f'{where}.{field}.missing must be "_first" or "_last", got {value!r:.40}; semrank does '
        "not sort a missing value as a given one (filter such documents out, or sort them first "
        "or last)"
    )


def _mode(value: Any, field: str, where: str) -> str | None:
    if value is None:
        return None
    if value not in MODES or field in (SCORE, *BY_ID):
        raise InvalidInputError(
            f"{where}.{field}.mode must be one of {', '.join(MODES)} (a field's several values), "
            f"got {value!r:.40}"
        )
    return str(value)


class SortEntry(NamedTuple):
    """A document to order: its index (None in a search of one), its id, its score, and the
    values of each of the sort's fields (``document_values``')."""

    index_name: str | None
    id: str
    score: float
    values: Sequence[Sequence[Scalar]]

    @property
    def key(self) -> str:
        """What its ``sort`` values end with: its id, or hit key ``index:id`` of several."""
        return self.id if self.index_name is None else hit_key(self.index_name, self.id)


class SortedHit(NamedTuple):
    """An ordered document: its position among the entries given, and its ``sort`` values
    (one per criterion, then the tie-breaking key)."""

    position: int
    sort: list[SortValue]


def order_entries(
    entries: Sequence[SortEntry], sort: Sort, *, after: Sequence[Any] | None = None, limit: int
) -> list[SortedHit]:
    """The first ``limit`` of ``entries`` in ``sort``'s order (after the hit whose ``sort``
    values are ``after``, where given), with their ``sort`` values: the reference ordering,
    one entry at a time (``reference_sort``'s; the stores' searches run ``order_table``)."""
    fields = sort.fields
    kinds = {f: _field_kind(f, [e.values[n] for e in entries]) for n, f in enumerate(fields)}
    check_modes(sort, kinds)
    rows = [_sort_values(entry, sort, fields, kinds) for entry in entries]
    positions = list(range(len(entries)))
    if after is not None:
        keyed = any(entry.index_name is not None for entry in entries)
        cursor = search_after_cursor(after, sort, kinds, keyed=keyed)
        positions = [p for p in positions if _compare(rows[p], cursor, sort) > 0]
    ordered = _ordered(positions, rows, sort)[: max(limit, 0)]
    return [SortedHit(p, [*rows[p][:-1], entries[p].key]) for p in ordered]


def _field_kind(field: str, values: Iterable[Sequence[Scalar]]) -> str | None:
    """The type ``field`` sorts as over the documents' values (None: no document holds one)."""
    kinds: set[str] = set()
    dated = True
    for held in values:
        for value in held:
            kind = _kind(value)
            kinds.add(kind)
            if kind == "string" and dated and value_instant(value) is None:
                dated = False
    return sort_kind(field, kinds, dated=dated)


def sort_kind(field: str, kinds: set[str], *, dated: bool) -> str | None:
    """The type a field of values of ``kinds`` sorts as (``dated``: its strings are all
    dates), or the refusal of types no field holds together."""
    if not kinds:
        return None
    if kinds == {"bool"} or kinds == {"number"}:
        return kinds.pop()
    if "bool" not in kinds and dated:
        return "date"  # ISO dates, and epoch milliseconds beside them
    if kinds == {"string"}:
        return "string"
    raise InvalidInputError(
        f"cannot sort on field {field!r}: the documents searched hold values of several types "
        f"there ({', '.join(sorted(kinds))}), which Elasticsearch refuses as incompatible sort "
        "types; filter to documents of one type, or sort on another field"
    )


def check_modes(sort: Sort, kinds: dict[str, str | None]) -> None:
    """A sum, average or median is refused on a field of words or booleans."""
    for key in sort.keys:
        if key.mode in NUMERIC_MODES and kinds.get(key.field) in ("string", "bool"):
            raise InvalidInputError(
                f"sort.{key.field}: mode {key.mode} sorts numbers and dates, and {key.field!r} "
                f"holds {kinds[key.field]}s; use min or max"
            )


def _sort_values(
    entry: SortEntry, sort: Sort, fields: list[str], kinds: dict[str, str | None]
) -> list[Any]:
    """The entry's value for each criterion, then its tie-breaking key (index, id)."""
    found: list[Any] = []
    for key in sort.keys:
        if key.field == SCORE:
            found.append(float(entry.score))
        elif key.field in BY_ID:
            found.append(entry.id)
        else:
            held = entry.values[fields.index(key.field)]
            found.append(reduced_value(held, kinds[key.field], key))
    found.append((entry.index_name or "", entry.id))
    return found


def reduced_value(held: Sequence[Scalar], kind: str | None, key: SortKey) -> SortValue:
    """The one value a document sorts by: its values as the field's type reads them, the
    smallest ascending and the largest descending unless ``key.mode`` says otherwise."""
    if not held or kind is None:
        return None
    values: list[Any] = [value_instant(v) for v in held] if kind == "date" else list(held)
    mode = key.mode or ("max" if key.descending else "min")
    if mode == "min":
        return min(values)
    if mode == "max":
        return max(values)
    total = sum(values)
    if mode == "sum":
        return total
    reduced = total / len(values) if mode == "avg" else statistics.median(values)
    return int(reduced // 1) if kind == "date" else reduced  # a date stays whole milliseconds


def _ordered(positions: list[int], rows: list[list[Any]], sort: Sort) -> list[int]:
    """``positions`` in sort order: stable sorts from the last criterion to the first, over
    the tie-breaking key first (a missing value goes first or last whatever the direction)."""
    positions.sort(key=lambda p: rows[p][-1])
    for n in range(len(sort.keys) - 1, -1, -1):
        key = sort.keys[n]
        present = [p for p in positions if rows[p][n] is not None]
        absent = [p for p in positions if rows[p][n] is None]
        present.sort(key=lambda p: rows[p][n], reverse=key.descending)
        positions = absent + present if key.missing == "_first" else present + absent
    return positions


def _compare(row: list[Any], cursor: list[Any], sort: Sort) -> int:
    """-1, 0 or 1: whether ``row`` sorts before, with or after ``cursor`` (which may lack
    the tie-breaking key: then a hit tied on every criterion is not after it)."""
    for n, key in enumerate(sort.keys):
        mine, theirs = row[n], cursor[n]
        if mine is None or theirs is None:
            if mine is None and theirs is None:
                continue
            last = key.missing == "_last"
            return (1 if last else -1) if mine is None else (-1 if last else 1)
        if mine != theirs:
            before = mine < theirs
            return (1 if before else -1) if key.descending else (-1 if before else 1)
    if len(cursor) > len(sort.keys):
        tie, other = row[-1], cursor[-1]
        return (tie > other) - (tie < other)
    return 0


def search_after_cursor(
    after: Sequence[Any], sort: Sort, kinds: dict[str, str | None], *, keyed: bool
) -> list[Any]:
    """``search_after``'s values read as the criteria's (and the tie-breaking key's)."""
    count = len(sort.keys)
    if not isinstance(after, list | tuple) or len(after) not in (count, count + 1):
        raise InvalidInputError(
            f"search_after must be the last hit's sort values: {count + 1} of them (one per "
            f"sort criterion, then its tie-breaking key), or {count} without that key; got "
            f"{after!r:.80}"
        )
    cursor: list[Any] = [
        _cursor_value(value, key, kinds.get(key.field))
        for value, key in zip(after, sort.keys, strict=False)
    ]
    if len(after) > count:
        if not isinstance(after[-1], str):
            raise InvalidInputError(
                f"search_after's last value must be the last hit's id (its sort's last value), "
                f"got {after[-1]!r:.60}"
            )
        last = after[-1]
        cursor.append(split_key(last) if keyed and ":" in last else ("", last))
    return cursor


def _cursor_value(value: Any, key: SortKey, kind: str | None) -> SortValue:
    if value is None:
        return None
    if key.field == SCORE or kind in ("number", "date"):
        if kind == "date" and isinstance(value, str) and value_instant(value) is not None:
            return value_instant(value)  # a date as written, not as its milliseconds
        if is_finite_number(value):
            return value
    elif key.field in BY_ID or kind in ("string", None):
        if isinstance(value, str) or kind is None:
            return value
    elif kind == "bool" and isinstance(value, bool):
        return value
    raise InvalidInputError(
        f"search_after: {value!r:.60} cannot follow sort on {key.field!r}, which sorts "
        f"{'number' if key.field == SCORE else (kind or 'no value')}s here; pass the last hit's "
        "sort values as they came"
    )


def reference_sort(
    documents: Iterable[tuple[str, dict[str, Any]]],
    sort: Sort,
    *,
    after: Sequence[Any] | None = None,
    limit: int,
    score: float = 1.0,
) -> list[SortedHit]:
    """``order_entries`` over whole documents ``(id, fields)``: the reference the stores'
    ``sort_values`` are checked against."""
    from semrank.retrieve._filter import document_values

    fields = sort.fields
    listed = list(documents)
    entries = [
        SortEntry(None, doc_id, score, [document_values(doc, f) for f in fields])
        for doc_id, doc in listed
    ]
    return order_entries(entries, sort, after=after, limit=limit)
