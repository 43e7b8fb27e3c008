"""The probes Elasticsearch's clients and tools call before (and beside) their searches:
``GET /_cluster/health``, ``GET /_cat/indices``, ``GET /_cat/aliases``, ``GET /{index}``,
``GET /{index}/_mapping`` and ``GET /_mapping``, answered from what semrank's indexes know.

semrank is one node holding each index as one shard, with no replicas: an index that opens is
green, and so is the cluster when the store answers (a store that does not answers 503, as
every route does). An index's mappings are its text fields (type ``text``); the other fields
its documents have held have no type semrank knows, and are listed in the mappings' ``_meta``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse

from semrank.errors import InvalidInputError
from semrank.server._auth import require_api_key
from semrank.server._edge import UniqueKeysRoute
from semrank.server._es_routes import (
    ES_ERRORS,
    IndexProbeRoute,
    _listed,
    _refuse_query_string_options,
    _target_options,
)
from semrank.server._index_routes import IndexNameInPath, on_registry, on_targets

router = APIRouter(
    dependencies=[Depends(require_api_key)],
    route_class=UniqueKeysRoute,
    tags=["elasticsearch"],
    responses=ES_ERRORS,
)

# Options that change nothing on one node whose shards are all active (and that wait for
# nothing: a condition they could wait for holds, or never will).
COMMON_PARAMS = frozenset(
    {"pretty", "human", "error_trace", "filter_path", "master_timeout", "local", "timeout",
     "expand_wildcards", "ignore_unavailable", "allow_no_indices"}
)  # fmt: skip
HEALTH_PARAMS = COMMON_PARAMS | {
    "level", "wait_for_status", "wait_for_nodes", "wait_for_active_shards", "wait_for_events",
    "wait_for_no_relocating_shards", "wait_for_no_initializing_shards",
}  # fmt: skip
CAT_PARAMS = COMMON_PARAMS | {"format", "h", "v", "bytes", "health", "pri", "time"}
INDEX_PARAMS = COMMON_PARAMS | {"flat_settings", "include_defaults", "features"}
HEALTH_STATUSES = ("green", "yellow", "red")


def _probe_param_hint(name: str) -> str:
    return (
        "not supported by semrank's Elasticsearch probes, which answer one node holding each "
        "index as one shard (docs/server.md, Elasticsearch probes)"
    )


def _refuse_options(request: Request, taken: frozenset[str]) -> None:
    _refuse_query_string_options(request, taken, hint=_probe_param_hint)


async def _on_indexes(request: Request, index: str, work: Callable[[Any], Any]) -> list[Any]:
    """``work(store)`` for each index ``index`` names (multi-target syntax, aliases resolved;
    an unknown name is a 404), in a worker thread."""
    return await on_targets(
        request,
        index,
        lambda stores: [work(store) for store in stores],
        **_target_options(request),
    )


# --- _cluster/health ---------------------------------------------------------------------------
HEALTH_SUMMARY = "Cluster health, as Elasticsearch's: green while the store answers"


@router.get("/_cluster/health", summary=HEALTH_SUMMARY)
async def cluster_health(request: Request) -> dict[str, Any]:
    return await _health(request, "_all")


@router.get("/_cluster/health/{index}", summary=f"{HEALTH_SUMMARY} (these indexes')")
async def index_health(index: IndexNameInPath, request: Request) -> dict[str, Any]:
    return await _health(request, index)


async def _health(request: Request, index: str) -> dict[str, Any]:
    """Every shard is active (one per index, no replicas), so any wait_for_status is met."""
    _refuse_options(request, HEALTH_PARAMS)
    wanted = request.query_params.get("wait_for_status")
    if wanted is not None and wanted not in HEALTH_STATUSES:
        raise InvalidInputError(f"wait_for_status={wanted!r:.40}: give green, yellow or red")
    if request.query_params.get("level", "cluster") != "cluster":
        raise InvalidInputError(
            "level: semrank answers level=cluster only (each index is green, with one shard: "
            "GET /_cat/indices lists them)"
        )
    shards = len(await _on_indexes(request, index, lambda store: store.name))
    return {
        "cluster_name": "semrank",
        "status": "green",
        "timed_out": False,
        "number_of_nodes": 1,
        "number_of_data_nodes": 1,
        "active_primary_shards": shards,
        "active_shards": shards,
        "relocating_shards": 0,
        "initializing_shards": 0,
        "unassigned_shards": 0,
        "unassigned_primary_shards": 0,
        "delayed_unassigned_shards": 0,
        "number_of_pending_tasks": 0,
        "number_of_in_flight_fetch": 0,
        "task_max_waiting_in_queue_millis": 0,
        "active_shards_percent_as_number": 100.0,
    }


# --- _cat ----------------------------------------------------------------------------------------
INDICES_COLUMNS = (
    "health", "status", "index", "uuid", "pri", "rep", "docs.count", "docs.deleted",
    "store.size", "pri.store.size", "dataset.size",
)  # fmt: skip
ALIASES_COLUMNS = (
    "alias", "index", "filter", "routing.index", "routing.search", "is_write_index"
)  # fmt: skip
LEFT_ALIGNED = frozenset({"health", "status", "index", "uuid", "alias", "filter"})
BYTE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4, "pb": 1024**5}
SIZE_COLUMNS = ("store.size", "pri.store.size", "dataset.size")


@router.get("/_cat/indices", summary="Indexes, as Elasticsearch's _cat/indices (text or JSON)")
async def cat_indices(request: Request) -> Any:
    return await _cat_indices(request, "_all")


@router.get("/_cat/indices/{index}", summary="These indexes, as Elasticsearch's _cat/indices")
async def cat_some_indices(index: IndexNameInPath, request: Request) -> Any:
    return await _cat_indices(request, index)


async def _cat_indices(request: Request, index: str) -> Any:
    _refuse_options(request, CAT_PARAMS)
    unit = _byte_unit(request)

    def row(store: Any) -> dict[str, str]:
        info = store.info()
        size = _size(info.size_bytes, unit)
        return {
            "health": "green", "status": "open", "index": store.name, "uuid": "-", "pri": "1",
            "rep": "0", "docs.count": str(info.documents), "docs.deleted": "0",
            "store.size": size, "pri.store.size": size, "dataset.size": size,
        }  # fmt: skip

    rows = sorted(await _on_indexes(request, index, row), key=lambda found: found["index"])
    return _cat_answer(request, INDICES_COLUMNS, rows)


@router.get("/_cat/aliases", summary="Aliases, as Elasticsearch's _cat/aliases (text or JSON)")
async def cat_aliases(request: Request) -> Any:
    return await _cat_aliases(request, None)


@router.get("/_cat/aliases/{name}", summary="An alias, as Elasticsearch's _cat/aliases")
async def cat_alias(name: str, request: Request) -> Any:
    return await _cat_aliases(request, name)


async def _cat_aliases(request: Request, name: str | None) -> Any:
    from fnmatch import fnmatchcase

    from semrank.store import list_aliases

    _refuse_options(request, CAT_PARAMS)
    aliases = await on_registry(request, list_aliases)
    wanted = [] if name is None else [pattern for pattern in name.split(",") if pattern]
    rows = [
        {"alias": alias, "index": index, "filter": "-", "routing.index": "-",
         "routing.search": "-", "is_write_index": "-"}
        for alias, index in aliases.items()
        if not wanted or any(fnmatchcase(alias, pattern) for pattern in wanted)
    ]  # fmt: skip
    return _cat_answer(request, ALIASES_COLUMNS, rows)


def _cat_answer(request: Request, columns: tuple[str, ...], rows: list[dict[str, str]]) -> Any:
    """``rows`` as ``?format=json`` asks (a list of objects), else as a text table: ``h`` picks
    the columns, ``v`` adds their names as a first line."""
    chosen = _columns(request, columns)
    picked = [{column: row[column] for column in chosen} for row in rows]
    answer_format = request.query_params.get("format", "text")
    if answer_format == "json":
        return picked
    if answer_format != "text":
        raise InvalidInputError(f"format={answer_format!r:.40}: give json or text (the default)")
    verbose = request.query_params.get("v", "false").lower() in ("", "true")
    lines = [dict(zip(chosen, chosen, strict=True))] if verbose else []
    lines += picked
    widths = {c: max((len(line[c]) for line in lines), default=0) for c in chosen}
    text = "".join(
        " ".join(_cell(line[c], widths[c], c in LEFT_ALIGNED) for c in chosen).rstrip() + "\n"
        for line in lines
    )
    return PlainTextResponse(text)


def _cell(value: str, width: int, left: bool) -> str:
    return value.ljust(width) if left else value.rjust(width)


def _columns(request: Request, columns: tuple[str, ...]) -> list[str]:
    asked = _listed(request, "h")
    unknown = [name for name in asked if name not in columns]
    if unknown:
        raise InvalidInputError(
            f"h: unknown column {unknown[0]!r:.60}; the columns are {', '.join(columns)}"
        )
    return asked or list(columns)


def _byte_unit(request: Request) -> str | None:
    unit = request.query_params.get("bytes")
    if unit is not None and unit not in BYTE_UNITS:
        raise InvalidInputError(f"bytes={unit!r:.40}: give one of {', '.join(BYTE_UNITS)}")
    return unit


def _size(size: int, unit: str | None) -> str:
    """A size as Elasticsearch's _cat writes it: a whole number of ``unit``, or else the
    largest unit it makes one of, to one decimal ("4.5kb", "208b")."""
    if unit is not None:
        return str(size // BYTE_UNITS[unit])
    name = next((name for name, scale in reversed(BYTE_UNITS.items()) if size >= scale), "b")
    value = f"{size / BYTE_UNITS[name]:.1f}".removesuffix(".0")
    return f"{value}{name}"


# --- GET /{index}, _mapping ---------------------------------------------------------------------


def _mappings(store: Any) -> dict[str, Any]:
    """What semrank knows of an index's fields, as Elasticsearch's mappings."""
    settings = store.settings
    text = {field: {"type": "text"} for field in settings.text_fields}
    others = [f for f in store.fields_seen if f not in text and f != settings.id_field]
    own = {
        "id_field": settings.id_field,
        "embedding_model": settings.embedding_model,
        "untyped_fields": others,
    }
    return {"_meta": {"semrank": own}, "properties": text}


def _index_settings(name: str) -> dict[str, Any]:
    return {"index": {"number_of_shards": "1", "number_of_replicas": "0", "provided_name": name}}


async def get_index(index: IndexNameInPath, request: Request) -> dict[str, Any]:
    """``es.indices.get``: each index's aliases, mappings and settings, by its own name."""
    from semrank.store import list_aliases

    _refuse_options(request, INDEX_PARAMS)
    flat = request.query_params.get("flat_settings", "false").lower() in ("", "true")
    found = await _on_indexes(request, index, lambda store: (store.name, _mappings(store)))
    aliases = await on_registry(request, list_aliases)
    answer = {}
    for name, mappings in found:
        settings = _index_settings(name)
        answer[name] = {
            "aliases": {alias: {} for alias, of in aliases.items() if of == name},
            "mappings": mappings,
            "settings": _flattened(settings) if flat else settings,
        }
    return answer


def _flattened(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Settings as ``flat_settings=true`` gives them: ``{"index.number_of_shards": "1"}``."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flattened(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


router.add_api_route(
    "/{index}",
    get_index,
    methods=["GET"],
    route_class_override=IndexProbeRoute,
    summary="Index info (aliases, mappings, settings), as Elasticsearch's GET /{index}",
)


@router.get("/_mapping", summary="Every index's mappings, as Elasticsearch's GET /_mapping")
async def every_mapping(request: Request) -> dict[str, Any]:
    return await _mapping(request, "_all")


@router.get("/{index}/_mapping", summary="An index's mappings, as Elasticsearch's _mapping")
async def index_mapping(index: IndexNameInPath, request: Request) -> dict[str, Any]:
    return await _mapping(request, index)


async def _mapping(request: Request, index: str) -> dict[str, Any]:
    _refuse_options(request, COMMON_PARAMS)
    found = await _on_indexes(request, index, lambda store: (store.name, _mappings(store)))
    return {name: {"mappings": mappings} for name, mappings in found}
