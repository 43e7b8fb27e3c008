"""The probes Elasticsearch's clients and tools call before (and beside) their searches:
``GET /_cluster/health``, ``GET /{index}``, ``GET /{index}/_mapping`` and ``GET /_mapping``,
``GET /_stats`` (documents and store size) and ``GET /_nodes`` (the one node, which sniffing
clients connect to), answered from what semrank's indexes know (``_es_cat``: the ``_cat``
tables).

semrank is one node holding each index as one shard, with no replicas: an index that opens is
green, and so is the cluster when the store answers (a store that does not answers 503, as
every route does). An index's mappings are its text fields (type ``text``); the other fields
its documents have held have no type semrank knows, and are listed in the mappings' ``_meta``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request

from semrank.errors import InvalidInputError
from semrank.server._es_router import es_router
from semrank.server._es_routes import (
    ES_VERSION,
    IndexProbeRoute,
    refuse_query_string_options,
    target_options,
)
from semrank.server._index_routes import IndexNameInPath, on_registry, on_targets

router = es_router()

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
INDEX_PARAMS = COMMON_PARAMS | {"flat_settings", "include_defaults", "features"}
HEALTH_STATUSES = ("green", "yellow", "red")


def _probe_param_hint(name: str) -> str:
    return (
        "not supported by semrank's Elasticsearch probes, which answer one node holding each "
        "index as one shard (docs/server.md, Elasticsearch's _msearch and probes)"
    )


def refuse_options(request: Request, taken: frozenset[str]) -> None:
    refuse_query_string_options(request, taken, hint=_probe_param_hint)


async def on_indexes(request: Request, index: str, work: Callable[[Any], Any]) -> list[Any]:
    """``work(store)`` for each index ``index`` names (multi-target syntax, aliases resolved;
    an unknown name is a 404), in a worker thread."""
    return await on_targets(
        request,
        index,
        lambda stores: [work(store) for store in stores],
        **target_options(request),
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
    refuse_options(request, HEALTH_PARAMS)
    wanted = request.query_params.get("wait_for_status")
    if wanted is not None and wanted not in HEALTH_STATUSES:
        raise InvalidInputError(f"wait_for_status={wanted!r:.40}: give green, yellow or red")
    if request.query_params.get("level", "cluster") != "cluster":
        raise InvalidInputError(
            "level: semrank answers level=cluster only (each index is green, with one shard: "
            "GET /_cat/indices lists them)"
        )
    shards = len(await on_indexes(request, index, lambda store: store.name))
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

    refuse_options(request, INDEX_PARAMS)
    flat = request.query_params.get("flat_settings", "false").lower() in ("", "true")
    found = await on_indexes(request, index, lambda store: (store.name, _mappings(store)))
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
    refuse_options(request, COMMON_PARAMS)
    found = await on_indexes(request, index, lambda store: (store.name, _mappings(store)))
    return {name: {"mappings": mappings} for name, mappings in found}


# --- _stats ---------------------------------------------------------------------------------
STATS_METRICS = ("docs", "store")
STATS_PARAMS = COMMON_PARAMS | {"level", "fields", "completion_fields", "fielddata_fields",
                                "groups", "include_segment_file_sizes",
                                "include_unloaded_segments", "forbid_closed_indices"}  # fmt: skip
STATS_SUMMARY = "Documents and store size, as Elasticsearch's index stats (_stats)"


@router.get("/_stats", summary=f"{STATS_SUMMARY}, of every index")
async def every_stats(request: Request) -> dict[str, Any]:
    return await _stats(request, "_all", "_all")


@router.get("/_stats/{metric}", summary=f"{STATS_SUMMARY}, of every index: these metrics")
async def every_stats_of(metric: str, request: Request) -> dict[str, Any]:
    return await _stats(request, "_all", metric)


@router.get("/{index}/_stats", summary=f"{STATS_SUMMARY}, of these indexes")
async def index_stats(index: IndexNameInPath, request: Request) -> dict[str, Any]:
    return await _stats(request, index, "_all")


@router.get("/{index}/_stats/{metric}", summary=f"{STATS_SUMMARY}: these metrics")
async def index_stats_of(index: IndexNameInPath, metric: str, request: Request) -> dict[str, Any]:
    return await _stats(request, index, metric)


async def _stats(request: Request, index: str, metric: str) -> dict[str, Any]:
    """Each index's ``docs`` and ``store`` (one shard: its primaries are its total), and
    their sums as ``_all``; the other metrics Elasticsearch keeps are refused by name."""
    refuse_options(request, STATS_PARAMS)
    asked = [name for name in metric.split(",") if name]
    unknown = [name for name in asked if name not in (*STATS_METRICS, "_all")]
    if unknown or not asked:
        raise InvalidInputError(
            f"_stats metric {(unknown or [metric])[0]!r:.60}: semrank answers "
            f"{' and '.join(STATS_METRICS)} (or _all, both); GET /_cat/indices lists them too"
        )
    metrics = STATS_METRICS if "_all" in asked else tuple(dict.fromkeys(asked))
    found = await on_indexes(request, index, _sizes)
    indices = {
        name: {"uuid": "-", "health": "green", "status": "open",
               **_both(_stat_sections(metrics, documents, size))}
        for name, documents, size in found
    }  # fmt: skip
    every = _stat_sections(
        metrics, sum(documents for _, documents, _ in found), sum(size for *_, size in found)
    )
    shards = {"total": len(found), "successful": len(found), "failed": 0}
    return {"_shards": shards, "_all": _both(every), "indices": indices}


def _sizes(store: Any) -> tuple[str, int, int]:
    info = store.info()
    return store.name, info.documents, info.size_bytes


def _both(sections: dict[str, Any]) -> dict[str, Any]:
    return {"primaries": sections, "total": sections}


def _stat_sections(metrics: tuple[str, ...], documents: int, size: int) -> dict[str, Any]:
    every = {
        "docs": {"count": documents, "deleted": 0},
        "store": {"size_in_bytes": size, "total_data_set_size_in_bytes": size,
                  "reserved_in_bytes": 0},
    }  # fmt: skip
    return {name: every[name] for name in metrics}


# --- _nodes -----------------------------------------------------------------------------------
NODE_NAME = "semrank"
NODES_SUMMARY = "The one node, as Elasticsearch's nodes info (GET /_nodes): what sniffers read"
# Elasticsearch's other node APIs (statistics, usage, threads), which semrank does not keep.
NODE_APIS = ("stats", "usage", "hot_threads", "reload_secure_settings", "shutdown")


@router.get("/_nodes", summary=NODES_SUMMARY)
async def nodes(request: Request) -> dict[str, Any]:
    return _nodes(request, ())


@router.get("/_nodes/{part}", summary=f"{NODES_SUMMARY}; the path's nodes and metrics")
async def nodes_of(part: str, request: Request) -> dict[str, Any]:
    return _nodes(request, (part,))


@router.get("/_nodes/{nodes}/{metrics}", summary=f"{NODES_SUMMARY}; these nodes and metrics")
async def nodes_metrics(nodes: str, metrics: str, request: Request) -> dict[str, Any]:
    return _nodes(request, (nodes, metrics))


def _nodes(request: Request, parts: tuple[str, ...]) -> dict[str, Any]:
    """One node, whichever nodes or metrics the path names (``_all``, ``_local``, ``http``),
    its HTTP address the one the request came to (the Host header): a sniffing client
    (elasticsearch-py's ``sniff_on_start``, the Java Sniffer) goes on connecting there."""
    refuse_options(request, COMMON_PARAMS | {"flat_settings"})
    refused = [part for part in parts if part in NODE_APIS]
    if refused:
        raise InvalidInputError(
            f"GET /_nodes/.../{refused[0]}: semrank keeps no node {refused[0]}; it answers node "
            "info (GET /_nodes, /_nodes/http) and GET /_cluster/health, /_cat/indices"
        )
    address = _http_address(request)
    node = {
        "name": NODE_NAME, "transport_address": address, "host": address.rpartition(":")[0],
        "ip": address.rpartition(":")[0], "version": ES_VERSION, "build_flavor": "default",
        "roles": ["data", "master"],
        "http": {"bound_address": [address], "publish_address": address},
    }  # fmt: skip
    return {
        "_nodes": {"total": 1, "successful": 1, "failed": 0},
        "cluster_name": "semrank",
        "nodes": {NODE_NAME: node},
    }


def _http_address(request: Request) -> str:
    """``host:port`` as the client reached this server (the scheme's port where the Host
    header gives none)."""
    host = request.headers.get("host") or f"{request.url.hostname}"
    if host.rpartition(":")[2].isdigit() and not host.endswith("]"):
        return host
    return f"{host}:{443 if request.url.scheme == 'https' else 80}"
