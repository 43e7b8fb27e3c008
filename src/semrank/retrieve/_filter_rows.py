"""Filters evaluated over every row of an index at once: a boolean mask per search.

``FieldTable`` reads the values of the fields filters ask for from each document once (per
state of the index) and keeps them indexed by value: a ``term`` is a dictionary lookup, a
``range`` two binary searches, so a filtered search costs no JSON parsing. Its masks agree
with ``semrank.retrieve.matches`` (the reference) document by document: the values are
``document_values``'s.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from semrank.retrieve._filter import (
    Bool,
    Exists,
    Filter,
    Ids,
    MatchAll,
    Range,
    Scalar,
    Term,
    _fold,
    _kind,
    document_values,
    fields_read,
)


@dataclass(frozen=True)
class _Column:
    """One field's values: rows by exact value, and numbers and strings in sorted order."""

    exact: dict[tuple[str, Scalar], np.ndarray]  # (kind, value) -> rows holding it
    sorted_values: dict[str, tuple[list[Scalar], np.ndarray]]  # kind -> (values, their rows)
    has_value: np.ndarray  # rows with any value (a range without bounds)
    has_leaf: np.ndarray  # rows with any value, inside objects too (``exists``)


class _ColumnReader:
    """One field's values gathered a document at a time: the documents stream past (a corpus
    parsed whole held several times its size to read one short field)."""

    def __init__(self, path: str, rows: int) -> None:
        self.path = path
        self.exact: dict[tuple[str, Scalar], list[int]] = {}
        self.by_kind: dict[str, list[tuple[Scalar, int]]] = {"number": [], "string": []}
        self.has_value = np.zeros(rows, dtype=bool)
        self.has_leaf = np.zeros(rows, dtype=bool)

    def add(self, row: int, document: Mapping[str, Any]) -> None:
        values = document_values(document, self.path)
        self.has_value[row] = bool(values)
        self.has_leaf[row] = bool(values) or bool(document_values(document, self.path, leaves=True))
        for value in values:
            kind = _kind(value)
            self.exact.setdefault((kind, value), []).append(row)
            if kind != "bool":
                self.by_kind[kind].append((value, row))

    def column(self) -> _Column:
        sorted_values = {}
        for kind, pairs in self.by_kind.items():
            pairs.sort(key=lambda pair: pair[0])
            sorted_values[kind] = ([v for v, _ in pairs], np.array([r for _, r in pairs], int))
        rows = {
            key: np.unique(np.array(found, dtype=np.int64)) for key, found in self.exact.items()
        }
        return _Column(rows, sorted_values, self.has_value, self.has_leaf)


class FieldTable:
    """The filter-relevant values of a fixed list of rows (``ids[row]`` is a document id)."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = list(ids)
        self.row_of = {doc_id: row for row, doc_id in enumerate(self.ids)}
        self._columns: dict[str, _Column] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def missing(self, flt: Filter) -> list[str]:
        """The fields ``flt`` reads that this table has not read yet."""
        return sorted({path for path in fields_read(flt) if path not in self._columns})

    def add_fields(self, documents: Iterable[Mapping[str, Any]], paths: Iterable[str]) -> None:
        """Read ``paths`` of ``documents`` (one per row, in row order), in one pass that keeps
        no document: a generator reading them one at a time holds one at a time (with no
        paths, it is not read at all)."""
        readers = [_ColumnReader(path, len(self.ids)) for path in paths]
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

    def rows_of(self, ids: Iterable[str]) -> np.ndarray:
        """The row of each id, -1 where the table has none."""
        return np.array([self.row_of.get(doc_id, -1) for doc_id in ids], dtype=np.int64)

    def mask(self, flt: Filter) -> np.ndarray:
        """Whether each row passes ``flt`` (its fields read already: ``missing`` is empty)."""
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
        raise TypeError(f"not a filter: {type(flt).__name__}")

    def _with_rows(self, rows: np.ndarray) -> np.ndarray:
        found = np.zeros(len(self), dtype=bool)
        found[rows[rows >= 0]] = True
        return found

    def _bool_mask(self, flt: Bool) -> np.ndarray:
        passing = np.ones(len(self), dtype=bool)
        for clause in flt.must:
            passing &= self.mask(clause)
        for clause in flt.must_not:
            passing &= ~self.mask(clause)
        if flt.minimum_should_match > 0:
            hits = np.zeros(len(self), dtype=np.int64)
            for clause in flt.should:
                hits += self.mask(clause)
            passing &= hits >= flt.minimum_should_match
        return passing

    def _term_mask(self, flt: Term) -> np.ndarray:
        exact = self._columns[flt.field].exact
        if flt.case_insensitive:
            wanted = {_fold(v) for v in flt.values}
            keys = [key for key in exact if _fold(key[1]) in wanted]
        else:
            keys = [(_kind(v), v) for v in flt.values]
        found = [exact[key] for key in keys if key in exact]
        return self._with_rows(np.concatenate(found) if found else np.empty(0, np.int64))

    def _range_mask(self, flt: Range) -> np.ndarray:
        column = self._columns[flt.field]
        bounds = {k: getattr(flt, k) for k in ("gt", "gte", "lt", "lte")}
        given = {k: v for k, v in bounds.items() if v is not None}
        if not given:  # no bound excludes anything
            return column.has_value.copy()
        kinds = {_kind(v) for v in given.values()}
        if len(kinds) != 1 or "bool" in kinds:  # values compare with none of them
            return np.zeros(len(self), dtype=bool)
        values, rows = column.sorted_values[kinds.pop()]
        low, high = 0, len(values)
        if "gt" in given:
            low = max(low, bisect.bisect_right(values, given["gt"]))
        if "gte" in given:
            low = max(low, bisect.bisect_left(values, given["gte"]))
        if "lt" in given:
            high = min(high, bisect.bisect_left(values, given["lt"]))
        if "lte" in given:
            high = min(high, bisect.bisect_right(values, given["lte"]))
        return self._with_rows(rows[low:high] if low < high else np.empty(0, np.int64))
