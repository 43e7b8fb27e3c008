"""What aggregations read that is not one store's documents: a bucket's documents, their
values held in arrays (``HeldRows``: sub-aggregations), and the documents of several indexes as one
(``SeveralIndexes``: a search of ``"a,b"``). Both answer ``AggregatedStore``'s questions, so
every aggregation computes over them as over a store, by the same code.

Each knows the documents it stands for by its own ``matched`` filter (a ``MatchAll`` of its
own, told apart by identity): an aggregation passes the ``within`` it was given on to the
store, so a question ``within`` that object is about those documents, and any other filter
is read within them; a ``MatchAll`` not its own asks of the whole index (a ``terms`` with
``min_doc_count`` 0 lists every value of the index, as Elasticsearch does).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from semrank.retrieve._aggs import (
    AggregatedStore,
    ValueCounts,
    ValueKey,
    _within,
    summed_counts,
    value_key,
)
from semrank.retrieve._filter import Filter, MatchAll, Range, Scalar
from semrank.retrieve._held import HeldValues, concatenated

__all__ = ["HeldRows", "SeveralIndexes", "counts_of", "sets_of"]


def counts_of(value_lists: Iterable[Sequence[Scalar]]) -> ValueCounts:
    """``ValueCounts`` of documents' values (one list a document, a value as often as it
    holds it)."""
    times: dict[ValueKey, int] = {}
    holding: dict[ValueKey, int] = {}
    documents = 0
    for held in value_lists:
        values = [value_key(v) for v in held]
        documents += bool(values)
        for key in values:
            times[key] = times.get(key, 0) + 1
        for key in set(values):
            holding[key] = holding.get(key, 0) + 1
    return ValueCounts(counts=holding, occurrences=times, documents=documents)


def sets_of(value_lists: Iterable[Sequence[Scalar]]) -> list[tuple[ValueKey, ...]]:
    """The distinct values (keyed) of each document holding two or more (``value_sets``)."""
    found: list[tuple[ValueKey, ...]] = []
    for held in value_lists:
        values = {value_key(v) for v in held}
        if len(values) > 1:
            found.append(tuple(values))
    return found


class HeldRows:
    """A bucket's documents, as the values of the fields its sub-aggregations read
    (``held``), read once from ``index`` for every bucket of an aggregation: its buckets'
    sub-aggregations, however deep, ask the index nothing more (but the whole index's
    values, once a field, shared through ``index_counts``)."""

    def __init__(
        self,
        index: AggregatedStore,
        held: HeldValues,
        index_counts: dict[tuple[str, Filter], ValueCounts] | None = None,
    ) -> None:
        self.index = index
        self.held = held
        self.matched: Filter = MatchAll()
        self.index_counts = {} if index_counts is None else index_counts

    def holding(self, rows: np.ndarray) -> HeldRows:
        """Some of these documents (a bucket's: ascending row numbers), of the same index."""
        return HeldRows(self.index, self.held.part(rows), self.index_counts)

    def value_counts(self, field: str, within: Filter) -> ValueCounts:
        if within is not self.matched:
            key = (field, within)
            if key not in self.index_counts:
                self.index_counts[key] = self.index.value_counts(field, within)
            return self.index_counts[key]
        return self.held.fields[field].counts()

    def value_sets(self, field: str, within: Filter) -> list[tuple[ValueKey, ...]]:
        return self.held.fields[field].value_sets(self._passing(within))

    def count_matching(self, filter: Filter) -> int:
        if filter is self.matched:
            return self.held.size
        return int(np.count_nonzero(self._passing(filter)))

    def held_values(self, fields: Sequence[str], within: Filter) -> HeldValues:
        if within is self.matched:
            return self.held
        return self.held.part(np.flatnonzero(self._passing(within)))

    def _passing(self, flt: Filter) -> np.ndarray:
        """Whether each row passes ``flt`` (a range aggregation's range), read as the
        reference reads documents, from the fields held: a range once per distinct value."""
        if flt is self.matched:
            return np.ones(self.held.size, dtype=bool)
        if isinstance(flt, Range) and flt.field in self.held.fields:
            field = self.held.fields[flt.field]
            each = [flt.matches("", lambda _, *, leaves=False, v=v: [v]) for _, v in field.keys]
            passing = np.zeros(self.held.size, dtype=bool)
            passing[field.rows[np.asarray(each, dtype=bool)[field.codes]]] = True
            return passing

        def reader(row: int) -> Any:
            return lambda path, *, leaves=False: self._values(path, row)

        return np.fromiter((flt.matches("", reader(r)) for r in range(self.held.size)), bool)

    def _values(self, path: str, row: int) -> list[Scalar]:
        field = self.held.fields.get(path)
        return [] if field is None else field.row_values(row)


class SeveralIndexes:
    """The documents of several indexes, each passing its own filter (``parts``: ``(store,
    within)``), as one: counts summed (an index's documents are no other's), values and
    rows put together, so that every aggregation over them is exact: terms counted over
    all before ordering and cutting, an avg from the sum and count of all, a cardinality of
    the union of the values, percentiles of all of them."""

    def __init__(self, parts: Sequence[tuple[AggregatedStore, Filter]]) -> None:
        self.parts = list(parts)
        self.matched: Filter = MatchAll()

    def _within(self, flt: Filter) -> list[tuple[AggregatedStore, Filter]]:
        if flt is self.matched:
            return self.parts
        if isinstance(flt, MatchAll):  # the whole of each index
            return [(store, flt) for store, _ in self.parts]
        return [(store, _within(within, flt)) for store, within in self.parts]

    def value_counts(self, field: str, within: Filter) -> ValueCounts:
        found = [store.value_counts(field, flt) for store, flt in self._within(within)]
        entries = ((key, n, f.occurrences[key]) for f in found for key, n in f.counts.items())
        return summed_counts(entries, sum(f.documents for f in found))

    def value_sets(self, field: str, within: Filter) -> list[tuple[ValueKey, ...]]:
        return [s for store, flt in self._within(within) for s in store.value_sets(field, flt)]

    def count_matching(self, filter: Filter) -> int:
        return sum(store.count_matching(flt) for store, flt in self._within(filter))

    def held_values(self, fields: Sequence[str], within: Filter) -> HeldValues:
        parts = [store.held_values(fields, flt) for store, flt in self._within(within)]
        return concatenated(parts, fields)
