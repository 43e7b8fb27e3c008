"""Document filters (``semrank.retrieve.Filter``) as SQL over a partition's ``doc`` column.

Each field clause becomes SQL/JSON path (``jsonb_path_exists``) whose values travel as path
variables (``$v``, ``$gt``...) in a bound ``jsonb`` parameter; the path text (field names,
quoted and escaped) is bound too, so nothing a filter holds is formatted into the statement.
The semantics are ``semrank.retrieve.matches``' (tested against it, docs/postgresql.md):

* lax mode compares as the reference does: strings exactly and by code point, numbers
  numerically, booleans only with booleans; a comparison of mismatched types is unknown (false);
* a dotted path reads the longest key present at each object (``{"meta.lang": ...}`` before
  ``{"meta": {"lang": ...}}``): one path per way of splitting it, each guarded by the absence of
  the longer keys; arrays are unwrapped (``[*]``) before every step and at the end;
* ``case_insensitive`` compares ``lower(upper(...))`` of both sides in SQL (jsonpath has no case
  folding): Python's ``casefold`` except where folding changes a string's length (ß, ligatures);
* a date range (``InstantRange``) reads each value as ``value_instant`` does, in SQL
  (``_INSTANT``): a number as epoch milliseconds, a string matching the ISO 8601 pattern and
  naming a real date and time as its instant in milliseconds, by integer arithmetic (no cast that
  could fail on a row, no session time zone).
* a ``term`` also carries ``d.doc @? path``, its path with the values as literals, which the GIN
  ``jsonb_path_ops`` index on ``doc`` serves (no index serves ``jsonb_path_exists``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from semrank._checks import is_valid_unicode
from semrank.errors import InvalidInputError
from semrank.retrieve import Filter
from semrank.retrieve._filter import (
    KEYWORD_SUFFIX,
    Bool,
    Exists,
    Ids,
    InstantRange,
    MatchAll,
    Range,
    Scalar,
    Term,
    resolved,
)

# Arrays nested in arrays are unwrapped this many levels deep at each step, and lax mode
# unwraps one more (``[[[[["a"]]]]]`` is read, one level deeper is not); the reference flattens
# any depth.
ARRAY_NESTING = 4
# A path of more parts than this splits into dotted keys at the document's top level only: the
# ways of splitting a path double with each part.
MAX_SPLIT_PARTS = 6
_UNWRAP = "[*]" * ARRAY_NESTING
_SCALAR = '? (@.type() == "string" || @.type() == "number" || @.type() == "boolean")'
# Id lists already sent for the statements of one aggregating transaction: an ``Ids`` filter's
# values (by identity) -> the temporary table holding them (``PostgresStore.count_and_aggregate``).
ID_TABLES: ContextVar[Mapping[int, str] | None] = ContextVar("semrank_id_tables", default=None)


class FilterSQL:
    """Builds one filter's condition over ``d.id`` / ``d.doc``, collecting its parameters
    (named ``flt0``, ``flt1``...: they join a query's other named parameters)."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def condition(self, flt: Filter | None) -> sql.Composable:
        if flt is None or isinstance(flt, MatchAll):
            return sql.SQL("TRUE")
        if isinstance(flt, Bool):
            return self._bool(flt)
        if isinstance(flt, Ids):
            return self._ids(flt)
        if not _holdable(flt.field):
            return sql.SQL("FALSE")  # no document holds such a key: none was stored
        if isinstance(flt, Term):
            return self._term(flt)
        if isinstance(flt, Range):
            return self._range(flt)
        if isinstance(flt, InstantRange):
            return self._with_keyword_fallback(
                flt.field, lambda path: self._instants_within(path, flt), leaves=False
            )
        if isinstance(flt, Exists):
            return self._path_exists(flt.field, None, {})
        raise TypeError(f"not a document filter: {flt!r}")

    def _term(self, flt: Term) -> sql.Composable:
        # A value PostgreSQL cannot hold (a NUL, a lone surrogate) equals no stored value.
        flt = dataclasses.replace(flt, values=tuple(v for v in flt.values if _holdable(v)))
        if not flt.values:
            return sql.SQL("FALSE")
        if flt.case_insensitive:
            return self._folded_term(flt)
        return self._path_exists(flt.field, "@ == $v", {"v": list(flt.values)}, flt.values)

    def _bind(self, value: Any) -> sql.Placeholder:
        name = f"flt{len(self.params)}"
        self.params[name] = value
        return sql.Placeholder(name)

    def _bound_path(self, path: str, variables: dict[str, Any]) -> sql.Composable:
        return sql.SQL("jsonb_path_exists(d.doc, {}::jsonpath, {}::jsonb)").format(
            self._bind(path), self._bind(Jsonb(variables))
        )

    def _path_exists(
        self,
        field: str,
        predicate: str | None,
        variables: dict[str, Any],
        equal_to: Sequence[Scalar] = (),
    ) -> sql.Composable:
        """Whether a value at ``field`` satisfies ``predicate`` (None: any value, objects read
        for the scalars inside them, as ``exists`` does). ``equal_to``: the values that
        ``predicate`` tests equality with, for a conjunct the GIN index on ``doc`` serves."""

        def path_for(path: str, test: str | None) -> str:
            if test is None:
                tests = [f"exists({s})" for s in field_selectors(path, leaves=True)]
            else:
                tests = [f"exists({s} ? ({test}))" for s in field_selectors(path)]
            return f"$ ? ({' || '.join(tests)})"

        def at(path: str) -> sql.Composable:
            exact = self._bound_path(path_for(path, predicate), variables)
            if not equal_to:
                return exact
            return sql.SQL("(d.doc @? {}::jsonpath AND {})").format(
                self._bind(path_for(path, equal_to_any(equal_to))), exact
            )

        return self._with_keyword_fallback(field, at, leaves=predicate is None)

    def _with_keyword_fallback(
        self, field: str, at: Callable[[str], sql.Composable], *, leaves: bool
    ) -> sql.Composable:
        """``at(field)``, or for a ``field.keyword`` the document lacks (no value there, no
        such key), ``at(field)`` of the field without the suffix."""
        if not field.endswith(KEYWORD_SUFFIX):
            return at(field)
        found = [f"exists({s})" for s in field_selectors(field, leaves=leaves)]
        found.append(f"exists($.{quoted(field)})")
        return sql.SQL("({} OR (NOT {} AND {}))").format(
            at(field),
            self._bound_path(f"$ ? ({' || '.join(found)})", {}),
            at(field[: -len(KEYWORD_SUFFIX)]),
        )

    def field_values(self, field: str) -> sql.Composable:
        """A subquery of the scalars ``v`` (jsonb) at ``field`` of ``d.doc``, a value again
        each time the document repeats it: the reference's ``document_values``, its
        ``.keyword`` fallback included (jsonb groups numbers numerically: 1 is 1.0, as the
        reference's values compare)."""
        if not _holdable(field):
            return sql.SQL("SELECT NULL::jsonb AS v WHERE FALSE")  # no document holds the key
        paths = self._selectors(field)
        if field.endswith(KEYWORD_SUFFIX):
            found = [f"exists({s})" for s in field_selectors(field)]
            found.append(f"exists($.{quoted(field)})")
            paths = sql.SQL("CASE WHEN {} THEN {} ELSE {} END").format(
                self._bound_path(f"$ ? ({' || '.join(found)})", {}),
                paths,
                self._selectors(field[: -len(KEYWORD_SUFFIX)]),
            )
        return sql.SQL("SELECT v FROM unnest({}) AS p, jsonb_path_query(d.doc, p) AS v").format(
            paths
        )

    def _selectors(self, field: str) -> sql.Composable:
        return sql.SQL("{}::jsonpath[]").format(self._bind(field_selectors(field)))

    def _range(self, flt: Range) -> sql.Composable:
        bounds = {op: getattr(flt, op) for op in ("gt", "gte", "lt", "lte")}
        symbols = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
        given = {op: value for op, value in bounds.items() if value is not None}
        bad = next((value for value in given.values() if not _holdable(value)), None)
        if bad is not None:
            raise InvalidInputError(
                f"range.{flt.field}: the bound {bad!r} holds a NUL character or a lone "
                "surrogate, which the PostgreSQL store cannot compare; give valid text"
            )
        predicate = " && ".join(f"@ {symbols[op]} ${op}" for op in given)
        return self._path_exists(flt.field, predicate, given)

    def _folded_term(self, flt: Term) -> sql.Composable:
        """Strings folded in SQL; other values (numbers, booleans) compare as without it."""
        strings = [v for v in flt.values if isinstance(v, str)]
        others = [v for v in flt.values if not isinstance(v, str)]
        parts: list[sql.Composable] = []
        if others:
            parts.append(self._path_exists(flt.field, "@ == $v", {"v": others}))
        if strings:
            parts.append(self._with_keyword_fallback(
                flt.field, lambda path: self._folded_strings(path, strings), leaves=False
            ))  # fmt: skip
        return sql.SQL("({})").format(sql.SQL(" OR ").join(parts))

    def _folded_strings(self, field: str, strings: list[str]) -> sql.Composable:
        selectors = [f'{s} ? (@.type() == "string")' for s in field_selectors(field)]
        return sql.SQL(
            "EXISTS (SELECT FROM unnest({}::jsonpath[]) AS p, jsonb_path_query(d.doc, p) AS v "
            "WHERE lower(upper(v #>> '{{}}')) = ANY "
            "(SELECT lower(upper(s)) FROM unnest({}::text[]) AS s))"
        ).format(self._bind(selectors), self._bind(strings))

    def _instants_within(self, field: str, flt: InstantRange) -> sql.Composable:
        """Whether a value at ``field`` is a date from ``flt.since`` to ``flt.until``."""
        ends: list[sql.Composable] = [sql.SQL("i.ms IS NOT NULL")]
        if flt.since is not None:
            ends.append(sql.SQL("i.ms >= {}::numeric").format(self._bind(flt.since)))
        if flt.until is not None:
            ends.append(sql.SQL("i.ms <= {}::numeric").format(self._bind(flt.until)))
        return sql.SQL(
            "EXISTS (SELECT FROM unnest({}::jsonpath[]) AS p, jsonb_path_query(d.doc, p) AS v, "
            "LATERAL ({}) AS i WHERE {})"
        ).format(self._bind(field_selectors(field)), _INSTANT, sql.SQL(" AND ").join(ends))

    def _ids(self, flt: Ids) -> sql.Composable:
        table = (ID_TABLES.get() or {}).get(id(flt.values))
        if table is not None:  # sent once already: not again with each statement
            return sql.SQL("d.id IN (SELECT id FROM {})").format(sql.Identifier(table))
        ids = [i for i in sorted(flt.values) if _holdable(i)]  # others were refused at ingest
        return sql.SQL("d.id = ANY({}::text[])").format(self._bind(ids))

    def _bool(self, flt: Bool) -> sql.Composable:
        conditions = [self.condition(c) for c in flt.must]
        conditions += [sql.SQL("NOT {}").format(self.condition(c)) for c in flt.must_not]
        if flt.minimum_should_match == 1:  # an OR the planner can serve by a BitmapOr
            should = [self.condition(c) for c in flt.should]
            conditions.append(sql.SQL("({})").format(sql.SQL(" OR ").join(should)))
        elif flt.minimum_should_match > 1:
            should = [self.condition(c) for c in flt.should]
            counted = sql.SQL(" + ").join(sql.SQL("({})::int").format(c) for c in should)
            conditions.append(
                sql.SQL("({} >= {})").format(counted, sql.Literal(flt.minimum_should_match))
            )
        if not conditions:
            return sql.SQL("TRUE")
        return sql.SQL("({})").format(sql.SQL(" AND ").join(conditions))


# ``value_instant`` of ``v`` (a jsonb scalar) as ``ms``: numeric epoch milliseconds, or NULL. A
# string is taken apart by the ISO 8601 pattern ``_ANCHOR`` reads (ASCII digits), checked as
# ``datetime`` checks its parts (the day against its month's length before ``make_date`` counts
# days from it), its offset subtracted.
_ISO_PARTS = (
    r"^([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2})(?:T([0-9]{2})(?::([0-9]{2})(?::([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?)?)?(Z|([+-])([0-9]{2})(?::?([0-9]{2}))?)?)?)?)?$"
)
_INSTANT = sql.SQL(
    "SELECT CASE jsonb_typeof(v) WHEN 'number' THEN floor(v::numeric) WHEN 'string' THEN ("
    "SELECT CASE"
    " WHEN y < 1 OR mo NOT BETWEEN 1 AND 12 OR dd < 1 OR h > 23 OR mi > 59 OR s > 59"
    "  OR oh > 18 OR om > 59 THEN NULL"
    " WHEN dd > extract(day FROM make_date(y, mo, 1) + interval '1 month - 1 day') THEN NULL"
    " ELSE ((make_date(y, mo, 1) - date '1970-01-01' + dd - 1)::numeric * 86400"
    "  + h * 3600 + mi * 60 + s) * 1000 + frac - sign * (oh * 60 + om) * 60000"
    " END FROM regexp_match(v #>> '{{}}', {}) AS m, LATERAL (SELECT m[1]::int AS y,"
    " coalesce(m[2], '1')::int AS mo, coalesce(m[3], '1')::int AS dd,"
    " coalesce(m[4], '0')::int AS h, coalesce(m[5], '0')::int AS mi,"
    " coalesce(m[6], '0')::int AS s, rpad(coalesce(left(m[7], 3), ''), 3, '0')::int AS frac,"
    " CASE m[9] WHEN '-' THEN -1 ELSE 1 END AS sign,"
    " coalesce(m[10], '0')::int AS oh, coalesce(m[11], '0')::int AS om) AS part"
    ") END AS ms"
).format(sql.Literal(_ISO_PARTS))


def _holdable(value: Scalar) -> bool:
    """Whether PostgreSQL text can hold ``value`` (every stored document's text could)."""
    return not isinstance(value, str) or ("\x00" not in value and is_valid_unicode(value))


def filter_condition(
    flt: Filter | None, now: datetime | None = None
) -> tuple[sql.Composable, dict[str, Any]]:
    """``flt`` as a condition over a partition aliased ``d``, and its named parameters (its
    date math ``resolved`` at ``now``, default the present: SQL compares plain bounds)."""
    builder = FilterSQL()
    return builder.condition(None if flt is None else resolved(flt, now)), builder.params


# --- paths -----------------------------------------------------------------------------------


def field_selectors(field: str, *, leaves: bool = False) -> list[str]:
    """SQL/JSON paths whose items together are the reference's ``_walk`` of ``field`` (its
    ``document_values`` but for the ``.keyword`` fallback): one per way of splitting ``field``
    into keys, each taken only where the document has no longer key."""
    parts = field.split(".")
    end = f".** {_SCALAR}" if leaves else f"{_UNWRAP} {_SCALAR}"
    nested = len(parts) <= MAX_SPLIT_PARTS
    return ["$" + "".join(steps) + end for steps in _steps(parts, top=True, nested=nested)]


def _steps(parts: Sequence[str], *, top: bool, nested: bool) -> Iterator[list[str]]:
    """For each way of reading ``parts`` as keys (below the top level only with ``nested``):
    the path steps, each taking its key only where no longer key (more of the parts joined by
    dots) is present in that object."""
    if not parts:
        yield []
        return
    splits = top or nested
    for cut in range(len(parts), 0, -1) if splits else (1,):
        key = ".".join(parts[:cut])
        longer = [".".join(parts[:n]) for n in range(cut + 1, len(parts) + 1)] if splits else []
        guard = f" ? ({' && '.join(f'!exists(@.{quoted(k)})' for k in longer)})" if longer else ""
        step = ("" if top else _UNWRAP) + guard + f".{quoted(key)}"
        for rest in _steps(parts[cut:], top=False, nested=nested):
            yield [step, *rest]


def equal_to_any(values: Sequence[Scalar]) -> str:
    """A jsonpath predicate: ``@`` equals one of ``values``, written as literals. The same test
    as ``@ == $v`` with ``$v`` the list of them, but a GIN ``jsonb_path_ops`` index finds the
    documents passing it (it reads no variables); ``doc @? path`` evaluates it for the index,
    the exact check with variables stays beside it."""
    return " || ".join(f"@ == {json.dumps(value, ensure_ascii=False)}" for value in values)


def quoted(key: str) -> str:
    """A key as an SQL/JSON path string literal (JSON's escapes, which jsonpath reads)."""
    return json.dumps(key, ensure_ascii=False)
