"""Elasticsearch's ``_delete_by_query``, ``_update_by_query`` and ``_reindex``: the maintenance
calls around aliases (copy an index into a new one, move the alias, drop the old one).

Each runs to its end within the request (no tasks: ``wait_for_completion=false`` is refused)
and answers Elasticsearch's shape. A query is what ``_count`` takes: a filter query (term,
range, bool, ids, match_all, ...) or a match query, whose every hit (sharing a term with it and
passing its filter) is acted on, as Elasticsearch acts on every document a query matches.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from semrank.errors import IndexNotFoundError, InvalidInputError
from semrank.server._es_body import filtered_source
from semrank.server._es_router import es_router
from semrank.server._es_routes import (
    refuse_query_string_options,
    say_es_warnings,
    target_options,
)
from semrank.server._index_routes import (
    IndexNameInPath,
    _where,
    with_targets,
    write_blocking,
)
from semrank.server.schemas import (
    EsByQueryResponse,
    EsDeleteByQueryRequest,
    EsReindexRequest,
    EsReindexResponse,
    EsUpdateByQueryRequest,
    EsUpdateByQueryResponse,
)
from semrank.store._reindex import CONFLICTS, vectors_note

router = es_router()

# Query-string options taken: those changing nothing semrank does (one pass, one shard, writes
# searchable at once, no throttling), and those read here (conflicts, max_docs,
# wait_for_completion, which must be true) or by target_options.
TAKEN_PARAMS = frozenset(
    {"refresh", "timeout", "wait_for_active_shards", "pretty", "human", "error_trace",
     "filter_path", "scroll", "scroll_size", "requests_per_second", "slices", "require_alias",
     "allow_no_indices", "ignore_unavailable", "expand_wildcards", "conflicts", "max_docs",
     "wait_for_completion"}
)  # fmt: skip
NO_SCRIPTS = (
    "semrank runs no scripts; change documents with POST /{index}/_update/{id} and a partial "
    '"doc", or with _bulk update actions'
)
SCROLL_SIZE = 1000  # Elasticsearch's default batch: what "batches" counts in


def _param_hint(name: str) -> str:
    if name == "q":
        return 'send the query in the JSON body ("query": {...})'
    return (
        "not supported by semrank's _delete_by_query, _update_by_query and _reindex (no "
        "routing, pipelines, scripts or tasks)"
    )


def _options(
    request: Request, body_conflicts: str | None, body_max: int | None
) -> tuple[str, int | None]:
    """``conflicts`` and ``max_docs``, from the body or the query string (elasticsearch-py
    sends conflicts there); ``wait_for_completion=false`` (a task) is refused."""
    refuse_query_string_options(request, TAKEN_PARAMS, hint=_param_hint)
    params = request.query_params
    if params.get("wait_for_completion", "true").lower() == "false":
        raise InvalidInputError(
            "wait_for_completion=false: semrank keeps no tasks; the request runs to its end and "
            "answers what it did (leave the parameter out)"
        )
    conflicts = body_conflicts or params.get("conflicts") or "abort"
    if conflicts not in CONFLICTS:
        raise InvalidInputError(f"conflicts {conflicts!r:.40}: give abort or proceed")
    given = params.get("max_docs")
    if given is None:
        return conflicts, body_max
    if not given.isdigit() or int(given) < 1:
        raise InvalidInputError(f"max_docs {given!r:.40} must be a positive integer")
    if body_max is not None and body_max != int(given):
        raise InvalidInputError(
            f"max_docs is {given} in the query string and {body_max} in the body; give it once"
        )
    return conflicts, int(given)


def _refuse(name: str, value: Any, instead: str) -> None:
    if value is not None:
        raise InvalidInputError(f"{name} is not supported: {instead}")


def _parsed_query(query: dict[str, Any] | None, what: str) -> Any:
    """The body's query read as ``_count`` reads it, before any index is opened."""
    from semrank.pipeline import parse_count_query

    if query is None:
        raise InvalidInputError(
            f'a {what} body needs a "query" naming the documents, e.g. {{"term": {{"tenant": '
            '"acme"}}; {"match_all": {}} names every document'
        )
    return parse_count_query(query)


def _answer(response: Response, answer: Any, warnings: list[str]) -> Any:
    say_es_warnings(response, warnings)
    return answer


def _answer_or_conflict(response: Response, answer: Any, warnings: list[str]) -> Any:
    """``answer``, with status 409 where it lists failures (``conflicts=abort`` met version
    conflicts), as Elasticsearch answers its failures' status."""
    if not answer.failures:
        return _answer(response, answer, warnings)
    _answer(response, None, warnings)
    content = answer.model_dump(by_alias=True)
    return JSONResponse(content, status_code=409, headers=dict(response.headers))


def _conflict(index: str, doc_id: str, reason: str) -> dict[str, Any]:
    cause = {"type": "version_conflict_engine_exception", "reason": reason, "index": index}
    return {"index": index, "id": doc_id, "cause": cause, "status": 409}


CREATE_CONFLICT = "[{id}]: version conflict, document already exists (op_type create)"


# --- _delete_by_query ------------------------------------------------------------------------
@router.post(
    "/{index}/_delete_by_query",
    response_model=EsByQueryResponse,
    summary="Delete every document a query matches, as Elasticsearch's _delete_by_query",
)
async def delete_by_query(
    index: IndexNameInPath, body: EsDeleteByQueryRequest, request: Request, response: Response
) -> Any:
    conflicts, max_docs = _options(request, body.conflicts, body.max_docs)
    _refuse("slice", body.slice, "semrank deletes in one pass")
    _refuse("sort", body.sort, "the documents matched are deleted in no order")
    _parsed_query(body.query, "_delete_by_query")
    started = time.perf_counter()

    def work(stores: list[Any]) -> tuple[Any, list[dict[str, Any]]]:
        from semrank.store._by_query import DeleteCounts

        counts, failures = DeleteCounts(), []
        for store in stores:
            left = None if max_docs is None else max_docs - counts.deleted
            if left == 0 or counts.stopped:
                break
            done = _delete_matching(store, body.query, left, conflicts)
            failures += [_conflict(store.name, c.id, c.reason) for c in done.conflicts]
            counts += done
        return counts, failures

    run = with_targets(request, index, work, **target_options(request))
    counts, failures = await write_blocking(request, run)
    answer = EsByQueryResponse(
        took=_ms(started),
        total=counts.total,
        deleted=counts.deleted,
        batches=counts.batches,
        version_conflicts=len(counts.conflicts),
        failures=failures if conflicts == "abort" else [],
    )
    return _answer_or_conflict(response, answer, [])


def _delete_matching(
    store: Any, query: dict[str, Any] | None, max_docs: int | None, conflicts: str
) -> Any:
    """A filter's documents deleted in one write transaction (``delete_matching``: no write
    lands in between, so none conflicts); a match query's, a capped or an everything
    filter's listed, then deleted a batch at a time, each only if not written since it was
    listed (``delete_listed``)."""
    from semrank.pipeline import ids_matching_query, parse_count_query
    from semrank.retrieve import Filter, matches_everything
    from semrank.store._by_query import DeleteCounts, delete_listed

    read = parse_count_query(query)
    if isinstance(read, Filter) and max_docs is None and not matches_everything(read):
        deleted = int(store.delete_matching(read))
        return DeleteCounts(total=deleted, deleted=deleted, batches=1 if deleted else 0)
    listed_at = store.generation  # before the listing: a write after it is a conflict
    ids = ids_matching_query(store, query)
    return delete_listed(
        store,
        ids,
        listed_at=listed_at,
        conflicts=conflicts,
        max_docs=max_docs,
        batch_size=SCROLL_SIZE,
    )


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def _batches(documents: int) -> int:
    return math.ceil(documents / SCROLL_SIZE)


# --- _update_by_query ------------------------------------------------------------------------
UNCHANGED = (
    "_update_by_query without a script rewrites documents to pick up changed mappings; a "
    "semrank index analyses and embeds every document with the settings it was created with, "
    "which never change, so the {n} documents matched are left as they are (noops, their versions "
    "unchanged); to change text fields or the embedding model, _reindex into a new index and "
    "move the alias"
)


@router.post(
    "/{index}/_update_by_query",
    response_model=EsUpdateByQueryResponse,
    summary="Count the documents a query matches as noops (semrank runs no scripts)",
)
async def update_by_query(
    index: IndexNameInPath, body: EsUpdateByQueryRequest, request: Request, response: Response
) -> Any:
    """Without a script Elasticsearch indexes each matched document again, as its mappings are
    now; semrank's settings are fixed at creation, so there is nothing to pick up: each matched
    document is a noop, and a script is refused. Their versions are left as they are (where
    Elasticsearch's re-index bumps them): writing them again would analyse and embed every
    one anew (hours on a CPU for a large index) to change nothing but the numbers."""
    from semrank.pipeline import count_documents

    _refuse("script", body.script, NO_SCRIPTS)
    _, max_docs = _options(request, body.conflicts, body.max_docs)
    _refuse("slice", body.slice, "semrank reads in one pass")
    _refuse("sort", body.sort, "documents are read in no order")
    query = body.query or {"match_all": {}}  # Elasticsearch's default: every document
    _parsed_query(query, "_update_by_query")
    started = time.perf_counter()

    def work(stores: list[Any]) -> int:
        return sum(count_documents(store, query) for store in stores)

    run = with_targets(request, index, work, **target_options(request))
    matched = await write_blocking(request, run)
    matched = matched if max_docs is None else min(matched, max_docs)
    answer = EsUpdateByQueryResponse(
        took=_ms(started), total=matched, noops=matched, batches=_batches(matched)
    )
    return _answer(response, answer, [UNCHANGED.format(n=matched)])


# --- _reindex --------------------------------------------------------------------------------
SOURCE_KEYS = frozenset({"index", "query", "_source", "size"})
DEST_KEYS = frozenset({"index", "op_type", "version_type"})
REMOTE = (
    "semrank reindexes between its own indexes; copy another cluster's documents with "
    "`semrank index create NAME --from FILE` (or _bulk) from an export of them"
)


@router.post(
    "/_reindex",
    response_model=EsReindexResponse,
    summary="Copy an index's documents (those a query matches) into another, as "
    "Elasticsearch's _reindex",
)
async def reindex(body: EsReindexRequest, request: Request, response: Response) -> Any:
    _refuse("script", body.script, NO_SCRIPTS)
    _refuse("size", body.size, "give max_docs, the most documents copied")
    conflicts, max_docs = _options(request, body.conflicts, body.max_docs)
    plan = _ReindexPlan.read(body, conflicts, max_docs)
    started = time.perf_counter()
    counts, source, dest = await write_blocking(request, lambda: plan.run(_where(request)))
    failures = [_conflict(dest, i, CREATE_CONFLICT.format(id=i)) for i in counts.conflicts]
    answer = EsReindexResponse(
        took=_ms(started),
        total=counts.read,
        created=counts.created,
        updated=counts.updated,
        batches=counts.batches,
        version_conflicts=len(counts.conflicts),
        failures=failures if conflicts == "abort" else [],
    )
    note = vectors_note(counts, source, dest)
    return _answer_or_conflict(response, answer, [] if note is None else [note])


class _ReindexPlan:
    """A ``_reindex`` body, checked before any index is opened."""

    def __init__(self, **parts: Any) -> None:
        self.source: str = parts["source"]
        self.dest: str = parts["dest"]
        self.query: dict[str, Any] | None = parts["query"]
        self.fields: tuple[list[str], list[str]] | None = parts["fields"]
        self.batch_size: int = parts["batch_size"]
        self.op_type: str = parts["op_type"]
        self.conflicts: str = parts["conflicts"]
        self.max_docs: int | None = parts["max_docs"]

    @classmethod
    def read(cls, body: EsReindexRequest, conflicts: str, max_docs: int | None) -> _ReindexPlan:
        from semrank.store._reindex import check_reindex_options

        source, dest = body.source, body.dest
        _refuse("source.remote", source.get("remote"), REMOTE)
        _known_keys(source, SOURCE_KEYS, "source")
        _known_keys(dest, DEST_KEYS, "dest")
        if dest.get("version_type", "internal") != "internal":
            raise InvalidInputError(
                f"dest.version_type {dest['version_type']!r:.40}: semrank's _reindex does not "
                "copy the source's versions; the copies get the destination's own (1 when "
                "created, +1 when a copy changes a document, kept when copied unchanged): leave "
                'it out (internal), or give op_type "create" to copy only the ids dest lacks'
            )
        query = source.get("query")
        if query is not None:
            _parsed_query(query, "_reindex")
        op_type = dest.get("op_type", "index")
        check_reindex_options(op_type, conflicts, max_docs)
        return cls(
            source=_one_index(source.get("index"), "source.index"),
            dest=_one_index(dest.get("index"), "dest.index"),
            query=query,
            fields=_source_fields(source.get("_source")),
            batch_size=_batch_size(source.get("size", SCROLL_SIZE)),
            op_type=op_type,
            conflicts=conflicts,
            max_docs=max_docs,
        )

    def run(self, where: dict[str, Any]) -> tuple[Any, str, str]:
        """The copy: (its counts, the source and destination indexes' names)."""
        from semrank.pipeline import ids_matching_query, parse_count_query, using_index
        from semrank.retrieve import Filter
        from semrank.store import reindex

        with using_index(self.source, **where) as source:
            read = None if self.query is None else parse_count_query(self.query)
            flt = read if isinstance(read, Filter) else None
            ids = (
                None if read is None or flt is not None else ids_matching_query(source, self.query)
            )
            reshape = None if self.fields is None else _reshaping(*self.fields)
            with _destination(source, self.dest, where) as dest:
                counts = reindex(
                    source,
                    dest,
                    filter=flt,
                    ids=ids,
                    op_type=self.op_type,
                    conflicts=self.conflicts,
                    max_docs=self.max_docs,
                    batch_size=self.batch_size,
                    reshape=reshape,
                )
                return counts, source.name, dest.name


@contextlib.contextmanager
def _destination(source: Any, name: str, where: dict[str, Any]) -> Iterator[Any]:
    """The index ``name`` (or the one its alias names), else a new one made as ``source``."""
    from semrank.store import create_index_like, open_index

    try:
        dest = open_index(name, **where)
    except IndexNotFoundError:
        dest = create_index_like(source, name, **where)
    with dest:
        yield dest


def _reshaping(
    includes: list[str], excludes: list[str]
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda fields: filtered_source(fields, includes, excludes)


def _known_keys(part: dict[str, Any], known: frozenset[str], where: str) -> None:
    for key in part:
        if key not in known:
            raise InvalidInputError(
                f"{where}.{key!r:.60} is not supported; {where} takes {', '.join(sorted(known))}"
                + (f" ({NO_SCRIPTS})" if key == "pipeline" or "script" in key else "")
            )


def _one_index(name: Any, where: str) -> str:
    from semrank.store._targets import is_multi_target

    if isinstance(name, list) and len(name) == 1:
        name = name[0]
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"{where} must name one index (or alias), got {name!r:.60}")
    if is_multi_target(name):
        raise InvalidInputError(
            f"{where} {name!r:.60} names several indexes; semrank reindexes one index (or "
            "alias) per request: send one request per index"
        )
    return name


def _source_fields(source: Any) -> tuple[list[str], list[str]] | None:
    """``source._source``: (includes, excludes) of the fields copied (true or absent: all of
    them), from a list or a string of fields, or Elasticsearch's object of the two."""
    if source is None or source is True:
        return None
    if isinstance(source, dict) and source and set(source) <= set(_SOURCE_KEYS):
        parts = {_SOURCE_KEYS[key]: _field_list(value) for key, value in source.items()}
        # A part not a field list, or an empty list of fields to copy (no document): refused.
        if None not in parts.values() and parts.get("includes") != []:
            return parts.get("includes") or [], parts.get("excludes") or []
    listed = _field_list(source)
    if not listed:
        raise InvalidInputError(
            f"source._source {source!r:.60}: give the fields to copy (a list, or "
            '{"includes": [...], "excludes": [...]}; every field without it); a reindex copies '
            "documents, so false is refused"
        )
    return listed, []


_SOURCE_KEYS = {"includes": "includes", "include": "includes", "excludes": "excludes",
                "exclude": "excludes"}  # fmt: skip


def _field_list(value: Any) -> list[str] | None:
    """A list of field patterns from a list or a comma-separated string (None: neither)."""
    if isinstance(value, str):
        value = [part for part in value.split(",") if part]
    if isinstance(value, list) and all(isinstance(f, str) for f in value):
        return value
    return None


def _batch_size(size: Any) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 10_000:
        raise InvalidInputError(
            f"source.size {size!r:.40} must be an integer from 1 to 10000 (documents per batch)"
        )
    return size
