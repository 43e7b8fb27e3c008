"""Elasticsearch's ``_cat`` tables, as its clients and people at a terminal read them:
``GET /_cat`` (the list), ``/_cat/indices``, ``/_cat/aliases``, ``/_cat/health`` and
``/_cat/count``. Each answers a text table (``v``: with a header line), or JSON or YAML
(``format``, any case); ``h`` picks columns by name, alias (``dc`` for ``docs.count``) or
wildcard (``docs.*``), ``s`` sorts rows (``s=docs.count:desc,index``; numbers and sizes as
numbers), ``help`` lists the columns, ``bytes`` sets the unit of sizes. ``format=yaml`` needs
PyYAML, which semrank does not depend on: without it, it is refused naming json and text.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from fnmatch import fnmatchcase
from operator import itemgetter
from typing import Any

from fastapi import Request
from fastapi.responses import PlainTextResponse, Response

from semrank.errors import InvalidInputError
from semrank.server._es_body import query_flag, query_list
from semrank.server._es_probes import COMMON_PARAMS, HEALTH_STATUSES, on_indexes, refuse_options
from semrank.server._es_router import es_router
from semrank.server._index_routes import IndexNameInPath, on_registry

router = es_router()

CAT_PARAMS = COMMON_PARAMS | {"format", "h", "v", "s", "help", "bytes", "pri", "time", "ts"}
INDICES_PARAMS = CAT_PARAMS | {"health"}
# ``bytes`` units, Elasticsearch's short names (k, m...) too.
BYTE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4, "pb": 1024**5}
UNIT_NAMES = {**{unit: unit for unit in BYTE_UNITS}, **{u[0]: u for u in BYTE_UNITS if u != "b"}}
Cell = str | int | float


@dataclasses.dataclass(frozen=True, kw_only=True)
class Column:
    """A ``_cat`` column as Elasticsearch declares it: its name, aliases and description;
    ``right``: aligned right (numbers); ``size``: a byte count, shown in ``bytes`` units."""

    name: str
    aliases: tuple[str, ...] = ()
    desc: str
    right: bool = False
    size: bool = False
    timestamp: bool = False  # left out with ts=false


def _col(name: str, aliases: str, desc: str, **kind: bool) -> Column:
    return Column(name=name, aliases=tuple(filter(None, aliases.split(","))), desc=desc, **kind)


# The columns semrank answers, with Elasticsearch's names, aliases and descriptions.
PRIMARY_SHARDS = _col(  # in the indices and health tables alike
    "pri", "p,shards.primary,shardsPrimary", "number of primary shards", right=True
)
INDICES = (
    _col("health", "h", "current health status"),
    _col("status", "s", "open/close status"),
    _col("index", "i,idx", "index name"),
    _col("uuid", "id,uuid", "index uuid"),
    PRIMARY_SHARDS,
    _col("rep", "r,shards.replica,shardsReplica", "number of replica shards", right=True),
    _col("docs.count", "dc,docsCount", "available docs", right=True),
    _col("docs.deleted", "dd,docsDeleted", "deleted docs", right=True),
    _col("store.size", "ss,storeSize", "store size of primaries & replicas", right=True, size=True),
    _col("pri.store.size", "", "store size of primaries", right=True, size=True),
    _col("dataset.size", "", "total size of dataset", right=True, size=True),
)
ALIASES = (
    _col("alias", "a", "alias name"),
    _col("index", "i,idx", "index alias points to"),
    _col("filter", "f,fi", "filter"),
    _col("routing.index", "ri,routingIndex", "index routing"),
    _col("routing.search", "rs,routingSearch", "search routing"),
    _col("is_write_index", "w,isWriteIndex", "write index"),
)
TIMESTAMPS = (
    _col("epoch", "t,time", "seconds since 1970-01-01 00:00:00", right=True, timestamp=True),
    _col("timestamp", "ts,hms,hhmmss", "time in HH:MM:SS", timestamp=True),
)
HEALTH = (
    *TIMESTAMPS,
    _col("cluster", "cl", "cluster name"),
    _col("status", "st", "health status"),
    _col("node.total", "nt,nodeTotal", "total number of nodes", right=True),
    _col("node.data", "nd,nodeData", "number of nodes that can store data", right=True),
    _col("shards", "t,sh,shards.total,shardsTotal", "total number of shards", right=True),
    PRIMARY_SHARDS,
    _col("relo", "r,shards.relocating,shardsRelocating", "number of relocating nodes", right=True),
    _col("init", "i,shards.initializing,shardsInitializing", "number of initializing nodes",
         right=True),
    _col("unassign", "u,shards.unassigned,shardsUnassigned", "number of unassigned shards",
         right=True),
    _col("unassign.pri", "up,shards.unassigned.primary,shardsUnassignedPrimary",
         "number of unassigned primary shards", right=True),
    _col("pending_tasks", "pt,pendingTasks", "number of pending tasks", right=True),
    _col("max_task_wait_time", "mtwt,maxTaskWaitTime", "wait time of longest task pending",
         right=True),
    _col("active_shards_percent", "asp,activeShardsPercent", "active number of shards in percent",
         right=True),
)  # fmt: skip
COUNT = (*TIMESTAMPS, _col("count", "dc,docs.count,docsCount", "the document count", right=True))
CAT_PATHS = ("/_cat/aliases", "/_cat/count", "/_cat/health", "/_cat/indices")


@router.get("/_cat", summary="The _cat tables semrank answers, as Elasticsearch's GET /_cat")
async def cat_list(request: Request) -> PlainTextResponse:
    refuse_options(request, COMMON_PARAMS)
    named = {"/_cat/aliases": "/{alias}", "/_cat/count": "/{index}", "/_cat/indices": "/{index}"}
    lines = [f"{path}\n{path}{named[path]}" if path in named else path for path in CAT_PATHS]
    return PlainTextResponse("=^.^=\n" + "\n".join(lines) + "\n")


async def _cat_indices(request: Request, index: str) -> Response | list[dict[str, Any]]:
    refuse_options(request, INDICES_PARAMS)
    table = _table_asked(request, INDICES)
    health = request.query_params.get("health", "green").lower()
    if health not in HEALTH_STATUSES:
        raise InvalidInputError(f"health={health!r:.40}: give green, yellow or red")

    def row(store: Any) -> dict[str, Cell]:
        info = store.info()
        size = info.size_bytes
        return {
            "health": "green", "status": "open", "index": store.name, "uuid": "-", "pri": 1,
            "rep": 0, "docs.count": info.documents, "docs.deleted": 0, "store.size": size,
            "pri.store.size": size, "dataset.size": size,
        }  # fmt: skip

    rows = sorted(await on_indexes(request, index, row), key=lambda found: str(found["index"]))
    return table.answer([found for found in rows if health == "green"])


@router.get("/_cat/aliases", summary="Aliases, as Elasticsearch's _cat/aliases (text or JSON)")
async def cat_aliases(request: Request) -> Any:
    return await _cat_aliases(request, None)


@router.get("/_cat/aliases/{name}", summary="An alias, as Elasticsearch's _cat/aliases")
async def cat_alias(name: str, request: Request) -> Any:
    return await _cat_aliases(request, name)


async def _cat_aliases(request: Request, name: str | None) -> Response | list[dict[str, Any]]:
    from semrank.store import list_aliases

    refuse_options(request, CAT_PARAMS)
    table = _table_asked(request, ALIASES)
    aliases = await on_registry(request, list_aliases)
    wanted = [] if name is None else [pattern for pattern in name.split(",") if pattern]
    rows: list[dict[str, Cell]] = [
        {"alias": alias, "index": index, "filter": "-", "routing.index": "-",
         "routing.search": "-", "is_write_index": "-"}
        for alias, index in aliases.items()
        if not wanted or any(fnmatchcase(alias, pattern) for pattern in wanted)
    ]  # fmt: skip
    return table.answer(rows)


@router.get("/_cat/health", summary="Cluster health as a line, as Elasticsearch's _cat/health")
async def cat_health(request: Request) -> Any:
    """One node holding each index as one shard, every shard active: green."""
    refuse_options(request, CAT_PARAMS)
    table = _table_asked(request, HEALTH)
    shards = len(await on_indexes(request, "_all", lambda store: store.name))
    row: dict[str, Cell] = {
        **_now(), "cluster": "semrank", "status": "green", "node.total": 1, "node.data": 1,
        "shards": shards, "pri": shards, "relo": 0, "init": 0, "unassign": 0,
        "unassign.pri": 0, "pending_tasks": 0, "max_task_wait_time": "-",
        "active_shards_percent": "100.0%",
    }  # fmt: skip
    return table.answer([row])


async def _cat_count(request: Request, index: str) -> Response | list[dict[str, Any]]:
    refuse_options(request, CAT_PARAMS)
    table = _table_asked(request, COUNT)
    counts = await on_indexes(request, index, lambda store: store.info().documents)
    return table.answer([{**_now(), "count": sum(counts)}])


def _every_and_named(
    path: str, answer: Callable[[Request, str], Awaitable[Any]], summary: str
) -> None:
    """``GET path`` (every index) and ``GET path/{index}`` (those it names), answered by
    ``answer(request, index)``."""

    async def every(request: Request) -> Any:
        return await answer(request, "_all")

    async def named(index: IndexNameInPath, request: Request) -> Any:
        return await answer(request, index)

    name = path.strip("/").replace("/", "_")
    for route, handler, of in ((path, every, "every index"), (f"{path}/{{index}}", named, "these")):
        router.add_api_route(
            route,
            handler,
            methods=["GET"],
            summary=f"{summary} ({of})",
            operation_id=f"{name}_{handler.__name__}",
        )


_every_and_named(
    "/_cat/indices", _cat_indices, "Indexes, as Elasticsearch's _cat/indices (text, JSON, YAML)"
)
_every_and_named("/_cat/count", _cat_count, "How many documents, as Elasticsearch's _cat/count")


def _now() -> dict[str, Cell]:
    now = time.time()
    return {"epoch": int(now), "timestamp": time.strftime("%H:%M:%S", time.gmtime(now))}


# --- the table -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class CatTable:
    """A ``_cat`` answer as the request asks it: ``shown`` (column, name shown) pairs, the
    rows' order (``order``: column and descending), ``unit`` of sizes, the format."""

    columns: tuple[Column, ...]
    shown: tuple[tuple[Column, str], ...]
    order: tuple[tuple[Column, bool], ...]
    unit: str | None
    answer_format: str
    verbose: bool
    help: bool

    def answer(self, rows: Sequence[Mapping[str, Cell]]) -> Response | list[dict[str, Any]]:
        if self.help:
            return PlainTextResponse(_help(self.columns))
        for column, descending in reversed(self.order):  # stable: the first key sorts last
            rows = sorted(rows, key=itemgetter(column.name), reverse=descending)
        picked = [
            {shown: self._rendered(column, row[column.name]) for column, shown in self.shown}
            for row in rows
        ]
        if self.answer_format == "json":
            return picked
        if self.answer_format == "yaml":
            return _yaml(picked)
        return PlainTextResponse(self._text(picked))

    def _rendered(self, column: Column, value: Cell) -> str:
        return _size(int(value), self.unit) if column.size else str(value)

    def _text(self, picked: list[dict[str, str]]) -> str:
        names = [shown for _, shown in self.shown]
        lines = [dict(zip(names, names, strict=True))] if self.verbose else []
        lines += picked
        widths = {name: max((len(line[name]) for line in lines), default=0) for name in names}
        right = {shown: column.right for column, shown in self.shown}
        return "".join(
            " ".join(_cell(line[n], widths[n], right[n]) for n in names).rstrip() + "\n"
            for line in lines
        )


def _table_asked(request: Request, columns: tuple[Column, ...]) -> CatTable:
    """What the request asks of a table of ``columns``, checked before anything is read."""
    answer_format = request.query_params.get("format", "text").lower()
    if answer_format not in ("json", "yaml", "text", "txt"):
        raise InvalidInputError(
            f"format={answer_format!r:.40}: give json, yaml or text (the default)"
        )
    stamped = query_flag(request, "ts") is not False
    kept = tuple(column for column in columns if stamped or not column.timestamp)
    return CatTable(
        columns=columns,
        shown=tuple(_shown_columns(query_list(request, "h"), kept)),
        order=tuple(_order(query_list(request, "s"), columns)),
        unit=_byte_unit(request),
        answer_format="text" if answer_format == "txt" else answer_format,
        verbose=bool(query_flag(request, "v")),
        help=bool(query_flag(request, "help")),
    )


def _named(columns: Sequence[Column]) -> dict[str, Column]:
    """Each column by its name and aliases (a later column's alias wins, as in
    Elasticsearch: ``t`` is _cat/health's shards, not its epoch)."""
    found: dict[str, Column] = {}
    for column in columns:
        found.update(dict.fromkeys(column.aliases, column))
    found.update({column.name: column for column in columns})
    return found


def _shown_columns(asked: list[str], columns: tuple[Column, ...]) -> list[tuple[Column, str]]:
    """The columns ``h`` asks for, each once, shown by the name asked (an alias shows as
    itself, a wildcard's columns by their names); all of them where ``h`` names none."""
    if not asked:
        return [(column, column.name) for column in columns]
    named = _named(columns)
    shown: dict[str, tuple[Column, str]] = {}
    for name in asked:
        if "*" in name:
            for column in columns:
                if any(fnmatchcase(n, name) for n in (column.name, *column.aliases)):
                    shown.setdefault(column.name, (column, column.name))
        elif name in named:
            shown.setdefault(named[name].name, (named[name], name))
        else:
            raise InvalidInputError(
                f"h: unknown column {name!r:.60}; the columns are "
                f"{', '.join(column.name for column in columns)} (?help lists their aliases)"
            )
    return list(shown.values())


def _order(asked: list[str], columns: tuple[Column, ...]) -> list[tuple[Column, bool]]:
    """``s``'s sort keys: a column's name or alias, ``:asc`` (the default) or ``:desc``."""
    named = _named(columns)
    order = []
    for key in asked:
        name, _, direction = key.partition(":")
        if name not in named or direction not in ("", "asc", "desc"):
            raise InvalidInputError(
                f"s: cannot sort by {key!r:.60}; give columns (names or aliases), each with "
                f"an optional :asc or :desc, e.g. s={columns[0].name}:desc,{columns[1].name} "
                "(?help lists the columns)"
            )
        order.append((named[name], direction == "desc"))
    return order


def _help(columns: tuple[Column, ...]) -> str:
    """Elasticsearch's ``?help``: each column's name, aliases and description."""
    cells = [(column.name, ",".join(column.aliases), column.desc) for column in columns]
    widths = [max(len(cell[i]) for cell in cells) for i in range(3)]
    return "".join(
        " | ".join(value.ljust(width) for value, width in zip(cell, widths, strict=True)) + "\n"
        for cell in cells
    )


def _cell(value: str, width: int, right: bool) -> str:
    return value.rjust(width) if right else value.ljust(width)


def _yaml(rows: list[dict[str, str]]) -> Response:
    try:
        import yaml
    except ImportError:  # not a dependency of semrank's
        raise InvalidInputError(
            "format=yaml needs PyYAML, which this server does not have; give format=json or "
            "text (or pip install pyyaml where semrank runs)"
        ) from None
    dumped = yaml.safe_dump(rows, sort_keys=False, default_flow_style=False, explicit_start=True)
    return Response(dumped, media_type="application/yaml")


def _byte_unit(request: Request) -> str | None:
    unit = request.query_params.get("bytes")
    if unit is not None and unit not in UNIT_NAMES:
        raise InvalidInputError(f"bytes={unit!r:.40}: give one of {', '.join(UNIT_NAMES)}")
    return None if unit is None else UNIT_NAMES[unit]


def _size(size: int, unit: str | None) -> str:
    """A size as Elasticsearch's _cat writes it: a whole number of ``unit``, or else the
    largest unit it makes one of, to one decimal ("4.5kb", "208b")."""
    if unit is not None:
        return str(size // BYTE_UNITS[unit])
    name = next((name for name, scale in reversed(BYTE_UNITS.items()) if size >= scale), "b")
    value = f"{size / BYTE_UNITS[name]:.1f}".removesuffix(".0")
    return f"{value}{name}"
