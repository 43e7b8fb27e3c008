"""Filters evaluated over every row of an index at once: a boolean mask per search.

``FieldTable`` reads the values of the fields filters ask for from each document once (per
state of the index) and keeps them indexed by value: a ``term`` is a dictionary lookup, a
``range`` two binary searches, so a filtered search costs no JSON parsing. Its masks agree
with ``semrank.retrieve.matches`` (the reference) document by document: the values are
``document_values``'s. A date range reads a column's values as instants, each distinct value
parsed once (at the first date range on it; after a write, only the values new to the
column: the others' instants are carried over), then two binary searches.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from itertools import compress, pairwise
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from semrank.retrieve._datemath import value_instant
from semrank.retrieve._filter import (
    Bool,
    Exists,
    Filter,
    Ids,
    InstantRange,
    MatchAll,
    Range,
    Scalar,
    Term,
    _fold,
    _kind,
    document_values,
    fields_read,
    resolved,
)
from semrank.retrieve._held import HeldValues, held_field

if TYPE_CHECKING:
    from semrank.retrieve._sort_columns import SortColumn

_KINDS = ("number", "string", "bool")
_Key = TypeVar("_Key")


def in_sorted(values: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Whether each of ``values`` is in ``sorted_keys`` (ascending): two binary searches, not
    ``np.isin``'s hashing of both (a quarter second for 200,000 keys)."""
    if not len(sorted_keys):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, values), len(sorted_keys) - 1)
    return np.asarray(sorted_keys[at] == values, dtype=bool)


def _ids_array(ids: Sequence[str]) -> np.ndarray:
    array = np.empty(len(ids), dtype=object)
    array[:] = ids
    return array


_NO_ROWS = np.empty(0, dtype=np.int32)


@dataclass(frozen=True)
class _Values:
    """One kind's distinct values, ascending, and the rows holding each: those of
    ``values[i]`` are ``rows[starts[i]:starts[i + 1]]``. Three arrays for the whole field, not
    one per value: a field with a value per document (a url) cost ~500 bytes a row that way."""

    values: list[Scalar]
    starts: np.ndarray  # int64, one more than values
    rows: np.ndarray  # int32, ascending within each value (a row again where it repeats it)

    def rows_of(self, value: Scalar) -> np.ndarray:
        """The rows holding ``value`` (equal as Python compares: 1 is 1.0)."""
        at = bisect.bisect_left(self.values, value)
        if at < len(self.values) and self.values[at] == value:
            return self.rows[self.starts[at] : self.starts[at + 1]]
        return _NO_ROWS

    def rows_between(self, low: int, high: int) -> np.ndarray:
        """The rows of ``values[low:high]``."""
        return self.rows[self.starts[low] : self.starts[high]] if low < high else _NO_ROWS

    def merged(
        self, new_row: np.ndarray, added: dict[Scalar, list[int]]
    ) -> tuple[_Values, np.ndarray]:
        """These values with each row renumbered by ``new_row`` (-1: dropped), and ``added``'s
        (value -> rows, none of them a renumbered one's) merged in; values left with no row go.
        And where each of these values is among the merged ones (-1: gone)."""
        inserted, groups = self._placed(sorted(added))
        old_groups = np.repeat(np.arange(len(self.values)), np.diff(self.starts))
        kept_rows = new_row[self.rows] if len(self.rows) else _NO_ROWS
        kept = kept_rows >= 0
        shift = np.arange(len(self.values)) + np.searchsorted(
            np.array([at for at, _ in inserted], dtype=np.int64),
            np.arange(len(self.values)),
            side="right",
        )
        new_groups = [groups[value] for value in added for _ in added[value]]
        all_groups = np.concatenate([shift[old_groups[kept]], np.array(new_groups, np.int64)])
        all_rows = np.concatenate(
            [kept_rows[kept], np.fromiter((r for v in added for r in added[v]), np.int64)]
        )
        order = np.lexsort((all_rows, all_groups))
        merged = self._with_inserted(inserted)
        counts = np.bincount(all_groups, minlength=len(merged))
        starts = np.concatenate([[0], np.cumsum(counts[counts > 0])]).astype(np.int64)
        values = list(compress(merged, counts.tolist()))
        final = np.where(counts > 0, np.cumsum(counts > 0) - 1, -1)
        return _Values(values, starts, all_rows[order].astype(np.int32)), final[shift]

    def _placed(
        self, new_values: list[Scalar]
    ) -> tuple[list[tuple[int, Scalar]], dict[Scalar, int]]:
        """Where each of ``new_values`` (ascending) goes among the merged values: the ones to
        insert ``(before which old value, value)``, and each one's merged position."""
        inserted: list[tuple[int, Scalar]] = []
        position: dict[Scalar, int] = {}
        for value in new_values:
            at = bisect.bisect_left(self.values, value)
            position[value] = at + len(inserted)  # after every value inserted before it
            if at == len(self.values) or self.values[at] != value:
                inserted.append((at, value))
        return inserted, position

    def _with_inserted(self, inserted: list[tuple[int, Scalar]]) -> list[Scalar]:
        merged: list[Scalar] = []
        done = 0
        for at, value in inserted:
            merged.extend(self.values[done:at])
            merged.append(value)
            done = at
        merged.extend(self.values[done:])
        return merged


@dataclass(frozen=True)
class _Dates:
    """Which of a kind's values (``_Values.values``) are dates, and each one's instant (ms)."""

    dated: np.ndarray  # bool, one per value
    ms: np.ndarray  # int64, one per value (0 where not dated)

    @classmethod
    def of(cls, values: Sequence[Scalar]) -> _Dates:
        read = [value_instant(value) for value in values]
        dated = np.array([instant is not None for instant in read], dtype=bool)
        # Past int64 only as numbers far beyond year 9999, which no bound reaches.
        clipped = [min(max(i, _INT64_MIN), _INT64_MAX) for i in read if i is not None]
        ms = np.zeros(len(read), dtype=np.int64)
        ms[dated] = np.array(clipped, dtype=np.int64)
        return cls(dated, ms)

    def carried(self, values: Sequence[Scalar], at: np.ndarray) -> _Dates:
        """The dates of ``values``, where this one's value ``i`` is ``values[at[i]]`` (-1:
        gone): only the values new there parsed."""
        kept = at >= 0
        known = np.zeros(len(values), dtype=bool)
        known[at[kept]] = True
        new = np.flatnonzero(~known)
        parsed = _Dates.of([values[i] for i in new.tolist()])
        dated, ms = np.zeros(len(values), dtype=bool), np.zeros(len(values), dtype=np.int64)
        dated[at[kept]], ms[at[kept]] = self.dated[kept], self.ms[kept]
        dated[new], ms[new] = parsed.dated, parsed.ms
        return _Dates(dated, ms)


_DATED_KINDS = ("number", "string")


@dataclass(frozen=True)
class _Column:
    """One field's values by kind ("number", "string", "bool"), and which rows have any."""

    by_kind: dict[str, _Values]
    has_value: np.ndarray  # rows with any value (a range without bounds)
    has_leaf: np.ndarray  # rows with any value, inside objects too (``exists``)
    # The dates of ``by_kind``'s values, if known when the column was made (carried from the
    # column of an earlier state); else parsed at the first date range.
    dates_given: dict[str, _Dates] | None = None

    @cached_property
    def dates(self) -> dict[str, _Dates]:
        """Which values of each kind that may be a date are, and their instants."""
        if self.dates_given is not None:
            return self.dates_given
        return {kind: _Dates.of(self.by_kind[kind].values) for kind in _DATED_KINDS}

    def dates_parsed(self) -> dict[str, _Dates] | None:
        """``dates`` if known already (another thread may be parsing them: not waited for)."""
        return self.__dict__.get("dates", self.dates_given)

    @cached_property
    def instants(self) -> _Instants:
        """The values that are dates (``value_instant``), a row's each, ascending: each
        distinct value parsed once (for the first state of the index with it), at the first
        date range."""
        ms: list[np.ndarray] = []
        rows: list[np.ndarray] = []
        for kind, dates in self.dates.items():
            values = self.by_kind[kind]
            counts = np.diff(values.starts)
            held = np.repeat(dates.dated, counts)
            ms.append(np.repeat(dates.ms, counts)[held])
            rows.append(values.rows[held])
        all_ms = np.concatenate(ms)
        order = np.argsort(all_ms, kind="stable")
        return _Instants(all_ms[order], np.concatenate(rows)[order])


@dataclass(frozen=True)
class _Instants:
    """A column's dates: ``ms[i]`` (milliseconds since 1970, ascending) is held by row
    ``rows[i]`` (a row holding several dates is there for each)."""

    ms: np.ndarray  # int64
    rows: np.ndarray  # int32

    def rows_within(self, since: int | None, until: int | None) -> np.ndarray:
        low = 0 if since is None else int(np.searchsorted(self.ms, since, side="left"))
        high = len(self.ms) if until is None else int(np.searchsorted(self.ms, until, "right"))
        return self.rows[low:high] if low < high else _NO_ROWS


def _groups_and_firsts(values: _Values) -> tuple[np.ndarray, np.ndarray]:
    """The value (its position in ``values.values``) of each of ``values.rows``, and whether
    it is the row's first time with that value (a row repeating a value is there again)."""
    groups = np.repeat(np.arange(len(values.values)), np.diff(values.starts))
    first = np.ones(len(values.rows), dtype=bool)
    first[1:] = (values.rows[1:] != values.rows[:-1]) | (groups[1:] != groups[:-1])
    return groups, first


def _instants_of(column: _Column) -> list[int | None]:
    """Each of a column's values (kind by kind, as ``sort_column`` lists them) as a date's
    instant in milliseconds, None where it is no date."""
    found: list[int | None] = []
    for kind in _KINDS:
        if kind not in _DATED_KINDS:
            found += [None] * len(column.by_kind[kind].values)
            continue
        dates = column.dates[kind]
        found += [
            ms if dated else None
            for dated, ms in zip(dates.dated.tolist(), dates.ms.tolist(), strict=True)
        ]
    return found


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_NO_VALUES = _Values([], np.zeros(1, dtype=np.int64), _NO_ROWS)
_NO_COLUMN = _Column(
    dict.fromkeys(_KINDS, _NO_VALUES), np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
)


class _ColumnReader:
    """One field's values gathered a document at a time: the documents stream past (a corpus
    parsed whole held several times its size to read one short field)."""

    def __init__(self, path: str, rows: int) -> None:
        self.path = path
        self.by_kind: dict[str, dict[Scalar, list[int]]] = {kind: {} for kind in _KINDS}
        self.has_value = np.zeros(rows, dtype=bool)
        self.has_leaf = np.zeros(rows, dtype=bool)

    def add(self, row: int, document: Mapping[str, Any]) -> None:
        values = document_values(document, self.path)
        self.has_value[row] = bool(values)
        self.has_leaf[row] = bool(values) or bool(document_values(document, self.path, leaves=True))
        for value in values:  # a value twice in one document: its row twice (aggregations'
            self.by_kind[_kind(value)].setdefault(value, []).append(row)  # sums count both)

    def column(self, base: _Column = _NO_COLUMN, new_row: np.ndarray = _NO_ROWS) -> _Column:
        """The values read, with ``base``'s (another table's column) for the rows ``new_row``
        gives them (its row -> this table's, -1: not kept) merged in."""
        kept = new_row >= 0
        self.has_value[new_row[kept]] = base.has_value[kept]
        self.has_leaf[new_row[kept]] = base.has_leaf[kept]
        merged = {kind: base.by_kind[kind].merged(new_row, self.by_kind[kind]) for kind in _KINDS}
        by_kind = {kind: values for kind, (values, _) in merged.items()}
        known = base.dates_parsed()
        dates = None
        if known is not None:  # parsed for the earlier state: only new values parsed now
            dates = {
                kind: known[kind].carried(by_kind[kind].values, merged[kind][1])
                for kind in _DATED_KINDS
            }
        return _Column(by_kind, self.has_value, self.has_leaf, dates)


class FieldTable:
    """The filter-relevant values of a fixed list of rows (``ids[row]`` is a document id;
    ``keys[row]``, ascending, what the rows are known by across states: the store's row
    numbers)."""

    def __init__(self, ids: Sequence[str], keys: np.ndarray | None = None) -> None:
        self.ids = list(ids)
        self.keys = np.arange(len(self.ids)) if keys is None else np.asarray(keys, np.int64)
        if self.keys.shape != (len(self.ids),):
            raise ValueError(f"{len(self.keys)} keys for {len(self.ids)} ids")
        self._columns: dict[str, _Column] = {}

    @cached_property
    def row_of(self) -> dict[str, int]:
        """Each id's row: built at the first search by ids, not for each state of the index
        (two threads building it at once build the same)."""
        return {doc_id: row for row, doc_id in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def missing(self, flt: Filter) -> list[str]:
        """The fields ``flt`` reads that this table has not read yet."""
        return sorted({path for path in fields_read(flt) if path not in self._columns})

    def copy(self) -> FieldTable:
        """A table of the same rows and fields, to read more fields into while this one is
        used (they share the rows and the fields' values, none of which changes)."""
        twin = FieldTable.__new__(FieldTable)
        twin.ids, twin.keys = self.ids, self.keys
        if "row_of" in self.__dict__:  # built already: shared, as the ids are
            twin.row_of = self.row_of
        twin._columns = dict(self._columns)
        return twin

    def add_fields(self, documents: Iterable[Mapping[str, Any]], paths: Iterable[str]) -> None:
        """Read ``paths`` of ``documents`` (one per row, in row order), in one pass that keeps
        no document: a generator reading them one at a time holds one at a time (with no
        paths, it is not read at all)."""
        readers = [_ColumnReader(path, len(self)) for path in paths]
        if not readers:
            return
        count = 0
        for row, document in enumerate(documents):
            if row >= len(self.ids):
                raise ValueError(f"more documents than the table's {len(self.ids)} rows")
            for reader in readers:
                reader.add(row, document)
            count = row + 1
        if count != len(self.ids):
            raise ValueError(f"{count} documents for a table of {len(self.ids)} rows")
        for reader in readers:
            self._columns[reader.path] = reader.column()

    def updated(
        self,
        rows: tuple[Sequence[str], np.ndarray, np.ndarray],
        documents: Iterable[tuple[int, Mapping[str, Any]]],
        paths: Sequence[str] = (),
    ) -> FieldTable:
        """This table's fields, and ``paths`` too, for the rows ``(ids, keys, fresh)`` of a
        later state (``fresh`` marks those written since), read from ``documents``, ``(key,
        document)`` in key order: the fresh rows' for this table's fields, every row's for
        ``paths``; the others keep this table's values for their key, and rows whose key is
        gone go. A row given no document holds no value (a reader skipping rows written
        meanwhile checks the state did not move). A new table: this one is left as it is."""
        ids, keys, fresh = rows
        keys = np.asarray(keys, dtype=np.int64)
        if len(ids) != len(keys) or len(fresh) != len(keys):
            raise ValueError(f"{len(ids)} ids, {len(keys)} keys, {len(fresh)} fresh marks")
        unchanged = not fresh.any() and np.array_equal(keys, self.keys)
        table = self.copy() if unchanged else FieldTable(ids, keys)
        kept = {} if unchanged else self._columns
        readers = table._read(documents, fresh, [*kept], paths)
        new_row = self._rows_in(table, fresh)
        for reader in readers[: len(kept)]:
            table._columns[reader.path] = reader.column(kept[reader.path], new_row)
        for reader in readers[len(kept) :]:
            table._columns[reader.path] = reader.column()
        return table

    def rows_after(
        self, written: Sequence[tuple[int, str]], present: np.ndarray | None = None
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The rows ``(ids, keys, fresh)`` of a later state, for ``updated``: this table's
        rows whose key is in ``present`` (every key then, ascending; None: all kept), and
        ``written``'s ``(key, id)``, the rows written since in key order (a key this table
        has takes the written id), marked fresh. In arrays: no Python step per row of the
        table, only per row written."""
        if not written and present is None:
            return self.ids, self.keys, np.zeros(len(self), dtype=bool)
        keys, ids = self.keys, _ids_array(self.ids)
        if present is not None:
            kept = in_sorted(keys, present)
            keys, ids = keys[kept], ids[kept]
        written_keys = np.fromiter((key for key, _ in written), np.int64, len(written))
        others = ~in_sorted(keys, written_keys)  # the rows not written since
        all_keys = np.concatenate([keys[others], written_keys])
        order = np.argsort(all_keys, kind="stable")
        all_ids = np.concatenate([ids[others], _ids_array([i for _, i in written])])
        fresh = np.zeros(len(all_keys), dtype=bool)
        fresh[len(all_keys) - len(written) :] = True
        return all_ids[order].tolist(), all_keys[order], fresh[order]

    def _rows_in(self, later: FieldTable, fresh: np.ndarray) -> np.ndarray:
        """Each row's row in ``later``: the one of its key, -1 where that is gone or fresh."""
        new_row = np.full(len(self), -1, dtype=np.int64)
        if len(later):
            at = np.minimum(np.searchsorted(later.keys, self.keys), len(later) - 1)
            same = (later.keys[at] == self.keys) & ~fresh[at]
            new_row[same] = at[same]
        return new_row

    def _read(
        self,
        documents: Iterable[tuple[int, Mapping[str, Any]]],
        fresh: np.ndarray,
        fresh_paths: Sequence[str],
        paths: Sequence[str],
    ) -> list[_ColumnReader]:
        """Readers of ``fresh_paths`` (of the rows ``fresh`` marks) then of ``paths`` (of
        every row), that read ``documents`` ``(key, document)`` in key order (with no paths,
        they are not read at all)."""
        readers = [_ColumnReader(path, len(self)) for path in [*fresh_paths, *paths]]
        if not readers:
            return []
        keys, row = self.keys.tolist(), 0
        for key, document in documents:
            while row < len(keys) and keys[row] < key:
                row += 1
            if row == len(keys) or keys[row] != key:
                raise ValueError(f"a document of key {key}, which the table has no row of")
            start = 0 if fresh[row] else len(fresh_paths)
            for reader in readers[start:]:
                reader.add(row, document)
        return readers

    def rows_of(self, ids: Iterable[str]) -> np.ndarray:
        """The row of each id, -1 where the table has none."""
        return np.array([self.row_of.get(doc_id, -1) for doc_id in ids], dtype=np.int64)

    def mask(self, flt: Filter, now: datetime | None = None) -> np.ndarray:
        """Whether each row passes ``flt`` (its fields read already: ``missing`` is empty),
        its date math ``resolved`` at ``now`` (default: the present)."""
        return self._mask(resolved(flt, now))

    def value_counts(
        self, path: str, passing: np.ndarray
    ) -> tuple[list[tuple[Scalar, int, int]], int]:
        """How many of the rows ``passing`` marks hold each value of ``path`` (read already)
        and how many times, and how many rows hold any: bincounts per kind of value, no
        document read."""
        column = self._columns[path]
        found: list[tuple[Scalar, int, int]] = []
        for values in column.by_kind.values():
            groups, first = _groups_and_firsts(values)
            kept = passing[values.rows]
            held = np.bincount(groups[kept & first], minlength=len(values.values))
            times = np.bincount(groups[kept], minlength=len(values.values))
            found += [
                (v, n, t)
                for v, n, t in zip(values.values, held.tolist(), times.tolist(), strict=True)
                if n
            ]
        return found, int(np.count_nonzero(column.has_value & passing))

    def value_sets(
        self, path: str, passing: np.ndarray, keyed: Callable[[Scalar], _Key]
    ) -> list[list[_Key]]:
        """The distinct values of ``path`` (read already) of each row ``passing`` marks that
        holds two or more (in row order), each as ``keyed`` gives it (called once per distinct
        value, not per row): a histogram counts such a row once in a bucket of two of them. In
        arrays: a Python step per value of those rows only."""
        every: list[_Key] = []  # the values of every kind, numbered in turn
        rows, numbers = [_NO_ROWS], [np.empty(0, dtype=np.int64)]
        for values in self._columns[path].by_kind.values():
            groups, first = _groups_and_firsts(values)
            kept = passing[values.rows] & first
            rows.append(values.rows[kept])
            numbers.append(groups[kept] + len(every))
            every += map(keyed, values.values)
        all_rows, all_numbers = np.concatenate(rows), np.concatenate(numbers)
        several = np.bincount(all_rows, minlength=len(self))[all_rows] > 1
        all_rows, all_numbers = all_rows[several], all_numbers[several]
        order = np.argsort(all_rows, kind="stable")
        all_rows, all_numbers = all_rows[order], all_numbers[order]
        bounds = [0, *(np.flatnonzero(np.diff(all_rows)) + 1).tolist(), len(all_rows)]
        held = [every[n] for n in all_numbers.tolist()]  # Python lists: no array per row
        return [held[start:end] for start, end in pairwise(bounds) if start < end]

    def held_values(self, paths: Sequence[str], passing: np.ndarray) -> HeldValues:
        """The values of ``paths`` (read already) of the rows ``passing`` marks (numbered
        from 0 in row order), a value as often as the row holds it, in arrays: what
        sub-aggregations read."""
        rows = np.flatnonzero(passing)
        position = np.full(len(self), -1, dtype=np.int64)
        position[rows] = np.arange(len(rows))
        fields = {}
        for path in paths:
            every: list[Scalar] = []  # the values of every kind, numbered in turn
            groups, held = [_NO_ROWS.astype(np.int64)], [_NO_ROWS.astype(np.int64)]
            for values in self._columns[path].by_kind.values():
                of_row, _ = _groups_and_firsts(values)
                kept = passing[values.rows]
                groups.append(of_row[kept] + len(every))
                held.append(position[values.rows[kept]])
                every += values.values
            fields[path] = held_field(
                every, np.concatenate(groups), np.concatenate(held), len(rows)
            )
        return HeldValues(len(rows), fields)

    def row_values(self, path: str, passing: np.ndarray) -> dict[int, list[Scalar]]:
        """The values of ``path`` (read already) of each row ``passing`` marks that holds any,
        a value again where the row repeats it (as ``document_values`` gives them)."""
        held: dict[int, list[Scalar]] = {}
        for values in self._columns[path].by_kind.values():
            groups = np.repeat(np.arange(len(values.values)), np.diff(values.starts))
            kept = passing[values.rows] if len(values.rows) else np.zeros(0, dtype=bool)
            for row, group in zip(values.rows[kept].tolist(), groups[kept].tolist(), strict=True):
                held.setdefault(row, []).append(values.values[group])
        return held

    def sort_column(self, path: str, passing: np.ndarray) -> SortColumn:
        """The values of ``path`` (read already) of the rows ``passing`` marks, as a sorted
        search orders them: entry ``n`` is the ``n``-th passing row. In arrays: a Python step
        per distinct value only (their dates parsed once per column, as date ranges read them)."""
        from semrank.retrieve._sort_columns import SortColumn  # which imports the stores'

        column = self._columns[path]
        entry = np.cumsum(passing, dtype=np.int64) - 1
        values: list[Scalar] = []
        rows, groups = [_NO_ROWS.astype(np.int64)], [np.empty(0, dtype=np.int64)]
        for kind in _KINDS:
            held = column.by_kind[kind]
            numbers = np.repeat(np.arange(len(held.values)), np.diff(held.starts))
            kept = passing[held.rows] if len(held.rows) else np.zeros(0, dtype=bool)
            rows.append(entry[held.rows[kept]])
            groups.append(numbers[kept] + len(values))
            values += held.values
        return SortColumn(
            values, np.concatenate(rows), np.concatenate(groups), lambda: _instants_of(column)
        )

    def _mask(self, flt: Filter) -> np.ndarray:
        if isinstance(flt, Bool):
            return self._bool_mask(flt)
        if isinstance(flt, MatchAll):
            return np.ones(len(self), dtype=bool)
        if isinstance(flt, Ids):
            return self._with_rows(self.rows_of(flt.values))
        if isinstance(flt, Exists):
            return self._columns[flt.field].has_leaf.copy()
        if isinstance(flt, Term):
            return self._term_mask(flt)
        if isinstance(flt, Range):
            return self._range_mask(flt)
        if isinstance(flt, InstantRange):
            return self._instant_mask(flt)
        raise TypeError(f"not a filter: {type(flt).__name__}")

    def _with_rows(self, rows: np.ndarray) -> np.ndarray:
        found = np.zeros(len(self), dtype=bool)
        found[rows[rows >= 0]] = True
        return found

    def _bool_mask(self, flt: Bool) -> np.ndarray:
        passing = np.ones(len(self), dtype=bool)
        for clause in flt.must:
            passing &= self._mask(clause)
        for clause in flt.must_not:
            passing &= ~self._mask(clause)
        if flt.minimum_should_match > 0:
            hits = np.zeros(len(self), dtype=np.int64)
            for clause in flt.should:
                hits += self._mask(clause)
            passing &= hits >= flt.minimum_should_match
        return passing

    def _term_mask(self, flt: Term) -> np.ndarray:
        by_kind = self._columns[flt.field].by_kind
        found = [by_kind[_kind(v)].rows_of(v) for v in flt.values if not flt.case_insensitive]
        if flt.case_insensitive:
            wanted = {_fold(v) for v in flt.values}
            found += [by_kind[kind].rows_of(v) for kind, v in wanted if kind != "string"]
            strings = by_kind["string"]
            folded = {v for kind, v in wanted if kind == "string"}
            found += [
                strings.rows_between(at, at + 1)
                for at, v in enumerate(strings.values)
                if isinstance(v, str) and v.casefold() in folded
            ]
        return self._with_rows(np.concatenate(found) if found else _NO_ROWS)

    def _range_mask(self, flt: Range) -> np.ndarray:
        column = self._columns[flt.field]
        bounds = {k: getattr(flt, k) for k in ("gt", "gte", "lt", "lte")}
        given = {k: v for k, v in bounds.items() if v is not None}
        if not given:  # no bound excludes anything
            return column.has_value.copy()
        kinds = {_kind(v) for v in given.values()}
        if len(kinds) != 1 or "bool" in kinds:  # values compare with none of them
            return np.zeros(len(self), dtype=bool)
        sorted_values = column.by_kind[kinds.pop()]
        values = sorted_values.values
        low, high = 0, len(values)
        if "gt" in given:
            low = max(low, bisect.bisect_right(values, given["gt"]))
        if "gte" in given:
            low = max(low, bisect.bisect_left(values, given["gte"]))
        if "lt" in given:
            high = min(high, bisect.bisect_left(values, given["lt"]))
        if "lte" in given:
            high = min(high, bisect.bisect_right(values, given["lte"]))
        return self._with_rows(sorted_values.rows_between(low, high))

    def _instant_mask(self, flt: InstantRange) -> np.ndarray:
        instants = self._columns[flt.field].instants
        return self._with_rows(instants.rows_within(flt.since, flt.until))
