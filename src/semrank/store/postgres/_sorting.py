"""The PostgreSQL store's sorted filter search: the passing documents' sort values read as
columns (``sort_columns``) in one grouped query, a row per distinct value, not per document.

The passing documents are numbered in a materialized CTE; one row answers their ids (UTF-8,
joined by the byte 0xFF, which no UTF-8 text holds), and each sort field's distinct value
comes with the numbers of the documents holding it, packed as int4s (``numbered_values_query``,
which ``held_values`` sends sub-aggregations' values with too). ``semrank.retrieve._sort_columns``
orders them as it orders the embedded store's: one ordering for every store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from psycopg import sql

from semrank.retrieve import Filter
from semrank.retrieve._sort import Sort
from semrank.retrieve._sort_columns import SortColumn, SortTable
from semrank.store.postgres._filters import FilterSQL

__all__ = [
    "candidates_table",
    "int4s",
    "numbered_values_query",
    "ordered_query",
    "pushable",
    "single_numbers_query",
    "sort_columns_query",
    "sort_table",
]

_ID_SEPARATOR = b"\xff"  # a byte no UTF-8 text holds


def numbered_values_query(
    part: sql.Composable,
    flt: Filter,
    fields: Sequence[str],
    *,
    kept: str,
    first: str,
    per_field: str,
) -> tuple[sql.Composable, dict[str, Any]]:
    """One query over the documents passing ``flt``, numbered from 0 (``r``) in the
    materialized CTE ``m`` (``kept``: its other columns): the row of ``-1`` (``-1, NULL,
    NULL``, then ``first``, a scalar subquery over ``m``), then each field's rows
    (``per_field``: a SELECT whose placeholders are the field's number and the values of a
    document there, ``f.v`` of ``m AS d CROSS JOIN LATERAL (...) AS f``). ``held_values``' and
    ``sort_columns``' shape: every document numbered once, a row per distinct value."""
    builder = FilterSQL()
    keep = builder.condition(flt)
    each = [
        sql.SQL(per_field).format(sql.Literal(n), builder.field_values(field))
        for n, field in enumerate(fields)
    ]
    query = sql.SQL(
        "WITH m AS MATERIALIZED (SELECT row_number() OVER () - 1 AS r, {} FROM {} AS d WHERE {}) "
        "SELECT -1, NULL::jsonb, NULL::bytea, ({}) {}"
    ).format(
        sql.SQL(kept),
        part,
        keep,
        sql.SQL(first),
        sql.SQL(" ").join(sql.SQL("UNION ALL ") + one for one in each),
    )
    return query, builder.params


def sort_columns_query(
    part: sql.Composable, flt: Filter, fields: Sequence[str]
) -> tuple[sql.Composable, dict[str, Any]]:
    """The query ``sort_table`` reads: the row of ``-1`` holds the passing ids, each other a
    field's distinct values (one jsonb array: one parse, not one a value), how many
    documents' numbers each has (int4s) and those numbers (int4s, big-endian)."""
    return numbered_values_query(
        part,
        flt,
        fields,
        kept="d.id, d.doc",
        first="SELECT string_agg(convert_to(m.id, 'UTF8'), '\\xff'::bytea ORDER BY m.r) FROM m",
        per_field="SELECT {}, jsonb_agg(g.v ORDER BY g.k), string_agg(int4send(g.c::int4), "
        "''::bytea ORDER BY g.k), string_agg(g.numbers, ''::bytea ORDER BY g.k) FROM (SELECT "
        "row_number() OVER () AS k, g.* FROM (SELECT f.v, count(*) AS c, "
        "string_agg(int4send(d.r::int4), ''::bytea) AS numbers FROM m AS d CROSS JOIN "
        "LATERAL ({}) AS f GROUP BY f.v) AS g) AS g",
    )


def int4s(packed: bytes | None) -> np.ndarray:
    """Numbers packed as big-endian int4s (``int4send``, joined), as int64s."""
    return np.frombuffer(packed or b"", dtype=">i4").astype(np.int64)


def sort_table(fields: Sequence[str], rows: list[Any]) -> SortTable:
    """``sort_columns_query``'s rows as the table ``order_table`` orders (each score 1)."""
    found = {n: (values, counts, numbers) for n, values, counts, numbers in rows}
    joined = bytes(found[-1][2] or b"")
    ids = [part.decode() for part in joined.split(_ID_SEPARATOR)] if joined else []
    columns = {}
    for n, field in enumerate(fields):
        values, counts, numbers = found[n]
        held = int4s(counts)
        groups = np.repeat(np.arange(len(held), dtype=np.int64), held)
        rows_of = int4s(numbers)
        columns[field] = SortColumn(values or [], rows_of, groups)
    return SortTable(ids, np.ones(len(ids)), columns)


# --- the first hits ordered in SQL: single-valued number fields --------------------------
def pushable(sort: Sort) -> bool:
    """Whether ``sort`` names only document fields of one key each (``_score``, ``_doc``,
    ``_id``, dotted names and ``.keyword`` take the general path): those whose one value a
    document's ``doc -> key`` is, the ones ``ordered_query`` may order."""
    return all(key.on_field and "." not in key.field for key in sort.keys)


def single_numbers_query(
    part: sql.Composable, flt: Filter, fields: Sequence[str]
) -> tuple[sql.Composable, dict[str, Any]]:
    """Whether every passing document holds nothing or one number at each field (a JSON
    number, not a list, null or object): then jsonb's order of them is ``_sort``'s (numbers
    compare as numbers, exactly: each is a double's shortest text or a whole number)."""
    builder = FilterSQL()
    keep = builder.condition(flt)
    single = sql.SQL(" AND ").join(
        sql.SQL("coalesce(jsonb_typeof(d.doc -> {}), 'number') = 'number'").format(
            sql.Literal(field)
        )
        for field in fields
    )
    query = sql.SQL("SELECT NOT EXISTS (SELECT FROM {} AS d WHERE ({}) AND NOT ({}))").format(
        part, keep, single
    )
    return query, builder.params


def ordered_query(
    part: sql.Composable, flt: Filter, sort: Sort, cursor: list[Any] | None, limit: int
) -> tuple[sql.Composable, dict[str, Any]]:
    """The first ``limit`` passing documents in ``sort``'s order after ``cursor``
    (``search_after_cursor``'s values), each with its one value of each sort field: ``ORDER
    BY`` the values (missing first or last), then the id by code point (``COLLATE "C"``:
    UTF-8's byte order)."""
    builder = FilterSQL()
    keep = builder.condition(flt)
    fields = sort.fields
    values = [
        sql.SQL("d.doc -> {} AS {}").format(sql.Literal(field), sql.Identifier(f"k{n}"))
        for n, field in enumerate(fields)
    ]
    order = [
        sql.SQL("s.{} {} NULLS {}").format(
            sql.Identifier(f"k{fields.index(key.field)}"),
            sql.SQL("DESC" if key.descending else "ASC"),
            sql.SQL("FIRST" if key.missing == "_first" else "LAST"),
        )
        for key in sort.keys
    ]
    after = sql.SQL("TRUE") if cursor is None else _after(sort, cursor, builder.params)
    query = sql.SQL(
        "SELECT s.id, {} FROM (SELECT d.id, {} FROM {} AS d WHERE {}) AS s WHERE {} "
        'ORDER BY {}, s.id COLLATE "C" LIMIT {}'
    ).format(
        sql.SQL(", ").join(
            sql.SQL("s.{}").format(sql.Identifier(f"k{n}")) for n in range(len(fields))
        ),
        sql.SQL(", ").join(values),
        part,
        keep,
        after,
        sql.SQL(", ").join(order),
        sql.Literal(max(limit, 0)),
    )
    return query, builder.params


def _after(sort: Sort, cursor: list[Any], params: dict[str, Any]) -> sql.Composable:
    """Whether a row sorts after ``cursor``: after it on a criterion, tied on those before
    (tied on all: after its id, where the cursor ends with one), as ``_sort._compare``."""
    from psycopg.types.json import Jsonb

    fields = sort.fields
    either: list[sql.Composable] = []
    tied: list[sql.Composable] = []
    for n, key in enumerate(sort.keys):
        value = sql.SQL("s.{}").format(sql.Identifier(f"k{fields.index(key.field)}"))
        params[f"after{n}"] = None if cursor[n] is None else Jsonb(cursor[n])
        at = sql.Placeholder(f"after{n}")
        last = key.missing == "_last"
        if cursor[n] is None:
            beyond = sql.SQL("FALSE") if last else sql.SQL("{} IS NOT NULL").format(value)
            same = sql.SQL("{} IS NULL").format(value)
        else:
            beyond = sql.SQL("coalesce({} {} {}, {})").format(
                value,
                sql.SQL("<" if key.descending else ">"),
                at,
                sql.SQL("TRUE" if last else "FALSE"),
            )
            same = sql.SQL("coalesce({} = {}, FALSE)").format(value, at)
        either.append(sql.SQL(" AND ").join([*tied, beyond]))
        tied.append(same)
    if len(cursor) > len(sort.keys):
        params["after_id"] = cursor[-1][1]
        either.append(sql.SQL(" AND ").join([*tied, sql.SQL('s.id COLLATE "C" > %(after_id)s')]))
    return sql.SQL("({})").format(sql.SQL(" OR ").join(sql.SQL("({})").format(e) for e in either))


def candidates_table(fields: Sequence[str], rows: list[Any]) -> SortTable:
    """``ordered_query``'s rows as a table (each document's one value a field, or none)."""
    columns = {
        field: SortColumn.of([[] if row[n + 1] is None else [row[n + 1]] for row in rows])
        for n, field in enumerate(fields)
    }
    return SortTable([row[0] for row in rows], np.ones(len(rows)), columns)
