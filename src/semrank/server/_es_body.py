"""The ``_search`` body keys Elasticsearch clients send beside the search itself, read as
Elasticsearch 8 reads them: ``track_total_hits`` (and the query string's
``rest_total_hits_as_int``), ``_source`` as a field filter, ``fields``, ``timeout``, and the
``explain`` / ``profile`` / ``stored_fields`` semrank can only take when they ask nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from fastapi import Request

from semrank.errors import InvalidInputError
from semrank.server.schemas import EsSearchRequest, EsSourceFilter, EsTotal

# Elasticsearch counts hits exactly up to 10,000 unless told otherwise.
DEFAULT_TRACK_TOTAL_HITS = 10_000
ALL_HITS = 2**31 - 1  # track_total_hits: true (Elasticsearch's Integer.MAX_VALUE)
# A search timeout past a day is no deadline of the search's own (the server's still holds).
MAX_TIMEOUT_S = 24 * 3600.0


@dataclass(frozen=True, kw_only=True)
class TotalHits:
    """How an answer gives ``hits.total``: counted exactly up to ``track`` (None: not at all,
    no ``total`` key), as a number alone where ``as_int`` (``rest_total_hits_as_int``)."""

    track: int | None = DEFAULT_TRACK_TOTAL_HITS
    as_int: bool = False

    @classmethod
    def asked(cls, body: EsSearchRequest | None, request: Request | None) -> TotalHits:
        """The body's ``track_total_hits``, overridden by the query string's (as Elasticsearch
        reads it), and the query string's ``rest_total_hits_as_int``."""
        given: object = None if body is None else body.track_total_hits
        as_int = False
        if request is not None:
            given = _query_track_total_hits(request, given)
            as_int = query_flag(request, "rest_total_hits_as_int") or False
        return cls(track=_tracked(given), as_int=as_int)

    def shaped(self, total: EsTotal) -> EsTotal | int | None:
        """``total`` as this answer gives it: capped at ``track`` ("gte" past it)."""
        if self.track is None:
            return None
        if total.value > self.track:
            total = EsTotal(value=self.track, relation="gte")
        return total.value if self.as_int else total


def _tracked(given: object) -> int | None:
    if given is None:
        return DEFAULT_TRACK_TOTAL_HITS
    if given is True:
        return ALL_HITS
    if given is False or given == -1:
        return None
    assert isinstance(given, int)
    return given


def _query_track_total_hits(request: Request, body_value: object) -> object:
    text = request.query_params.get("track_total_hits")
    if text is None:
        return body_value
    if text.lower() in ("true", "false", ""):
        return text.lower() != "false"
    if text.lstrip("-").isdigit() and len(text) < 12 and int(text) >= -1:
        return int(text)
    raise InvalidInputError(
        f"query-string parameter track_total_hits={text!r:.40} must be true, false or a "
        "number of hits to count exactly (at least 0; -1 is false)"
    )


def query_flag(request: Request, name: str) -> bool | None:
    """A true/false query-string parameter (None: not given)."""
    given = request.query_params.get(name)
    if given is None:
        return None
    if given.lower() not in ("true", "false", ""):
        raise InvalidInputError(
            f"query-string parameter {name}={given!r:.40} must be true or false"
        )
    return given.lower() != "false"  # a bare ?name is true, as in Elasticsearch


@dataclass(frozen=True, kw_only=True)
class SourceShown:
    """What of each hit's document its answer shows: its ``_source`` (``wanted``, filtered by
    ``includes`` / ``excludes``) and the ``fields`` asked."""

    wanted: bool = True
    includes: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()

    @classmethod
    def asked(cls, body: EsSearchRequest | None, request: Request | None) -> SourceShown:
        """The body's ``_source``, ``fields`` and ``stored_fields``; the query string's
        ``_source``, ``_source_includes`` and ``_source_excludes`` override its ``_source``
        where given (as Elasticsearch reads them)."""
        body = body or EsSearchRequest.model_validate({})
        wanted, includes, excludes = _source_filter(body.source)
        if _stored_fields_none(body.stored_fields):
            wanted = False
        if request is not None and _SOURCE_PARAMS & set(request.query_params):
            wanted, includes, excludes = _query_source(request)  # the body's, replaced whole
        fields = requested_fields(body.fields)
        return cls(wanted=wanted, includes=includes, excludes=excludes, fields=fields)

    @property
    def reads_documents(self) -> bool:
        return self.wanted or bool(self.fields)

    def source(self, document: dict[str, Any] | None) -> dict[str, Any] | None:
        """A hit's ``_source`` (None: left out)."""
        if not self.wanted or document is None:
            return None
        if self.includes or self.excludes:
            return filtered_source(document, self.includes, self.excludes)
        return document

    def hit_fields(self, document: dict[str, Any] | None) -> dict[str, list[Any]] | None:
        """A hit's ``fields`` (None where none were asked or none has a value, as
        Elasticsearch answers)."""
        if not self.fields or document is None:
            return None
        leaves: dict[str, list[Any]] = {}
        _leaf_values(document, "", leaves)
        found = {
            path: values
            for path, values in leaves.items()
            if any(fnmatchcase(path, pattern) for pattern in self.fields)
        }
        return found or None  # Elasticsearch writes no fields key where none has a value


def _source_filter(given: object) -> tuple[bool, tuple[str, ...], tuple[str, ...]]:
    """A body's ``_source``: whether hits show it, the fields kept, the fields dropped."""
    if given is None or given is True:
        return True, (), ()
    if given is False:
        return False, (), ()
    if isinstance(given, str):
        return True, (given,), ()
    if isinstance(given, list):
        return True, tuple(given), ()
    assert isinstance(given, EsSourceFilter)
    return True, _as_tuple(given.includes), _as_tuple(given.excludes)


def _as_tuple(value: str | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


_SOURCE_PARAMS = frozenset({"_source", "_source_includes", "_source_excludes"})


def _query_source(request: Request) -> tuple[bool, tuple[str, ...], tuple[str, ...]]:
    """The query string's ``_source`` (true, false or the fields to keep), then its
    ``_source_includes`` and ``_source_excludes``: as Elasticsearch's _search, they replace the
    body's ``_source`` whole, showing it unless ``?_source=false``."""
    text = request.query_params.get("_source", "")
    wanted, includes = True, tuple(query_list(request, "_source"))
    if text.lower() in ("true", "false", ""):
        wanted, includes = text.lower() != "false", ()
    includes = tuple(query_list(request, "_source_includes")) or includes
    return wanted, includes, tuple(query_list(request, "_source_excludes"))


def _stored_fields_none(given: str | list[str] | None) -> bool:
    """``stored_fields``: ``"_none_"`` alone (no _source), as semrank stores no field apart
    from its document; anything else is refused."""
    if given is None:
        return False
    if given in ("_none_", ["_none_"]):
        return True
    raise InvalidInputError(
        f"stored_fields {given!r:.80} is not supported: semrank stores no field apart from the "
        'document; ask for fields with "fields": ["title"] or "_source": ["title"] '
        '(stored_fields: "_none_" is taken, as _source: false)'
    )


def requested_fields(given: Sequence[str | dict[str, Any]] | None) -> tuple[str, ...]:
    """The body's ``fields``: names or patterns, or ``{"field": name}`` objects."""
    names = []
    for item in given or ():
        if isinstance(item, dict):
            extra = sorted(set(item) - {"field", "include_unmapped"})
            if "field" not in item or not isinstance(item["field"], str) or extra:
                raise InvalidInputError(
                    f'fields item {item!r:.80}: give a field name or {{"field": name}} '
                    "(a format is not supported: values are answered as the document holds them)"
                )
            item = item["field"]
        names.append(item)
    return tuple(names)


def _leaf_values(value: Any, path: str, found: dict[str, list[Any]]) -> None:
    """Each leaf of ``value`` under its dotted path, its values gathered into an array (an
    object's fields flattened, as Elasticsearch answers fields of object type)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            _leaf_values(inner, f"{path}.{key}" if path else str(key), found)
    elif isinstance(value, list):
        for item in value:
            _leaf_values(item, path, found)
    elif value is not None:
        found.setdefault(path, []).append(value)


def query_list(request: Request, name: str) -> list[str]:
    """A list parameter as Elasticsearch reads one: comma-separated, or the name repeated."""
    values = request.query_params.getlist(name)
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def filtered_source(
    source: dict[str, Any], includes: Sequence[str], excludes: Sequence[str], prefix: str = ""
) -> dict[str, Any]:
    """``_source_includes`` / ``_source_excludes`` as Elasticsearch applies them: dotted field
    paths with ``*`` wildcards, an object kept whole where its own path is included."""
    kept: dict[str, Any] = {}
    for key, value in source.items():
        path = prefix + key
        if any(fnmatchcase(path, pattern) for pattern in excludes):
            continue
        whole = not includes or any(fnmatchcase(path, pattern) for pattern in includes)
        # A pattern naming a field inside (or a wildcard that may: "*.lang") is looked for in
        # an object; one left with nothing of it is left out.
        inside = any(p.startswith(f"{path}.") or "*" in p for p in includes)
        if isinstance(value, dict) and (whole or inside):
            found = filtered_source(value, [] if whole else includes, excludes, f"{path}.")
            if whole or found:
                kept[key] = found
        elif whole:
            kept[key] = value
    return kept


def refuse_asked_extras(body: EsSearchRequest) -> None:
    """``explain`` and ``profile`` are taken where false (they ask nothing)."""
    for key, instead in (
        ("explain", "each hit's _score is its retriever tree's final score"),
        ("profile", "the answer's took and the Server-Timing header time the search"),
    ):
        if getattr(body, key):
            raise InvalidInputError(
                f"{key}: true is not supported by semrank's _search ({instead}); send "
                f"{key}: false or leave it out"
            )


def timeout_ms(body: EsSearchRequest, request: Request, *, query_string: bool) -> int | None:
    """The search's deadline in milliseconds: the body's ``timeout`` (or, where
    ``query_string``, the request's own), held to the server's ``--timeout`` (None: neither)."""
    from semrank.server._search_contexts import time_value_seconds

    given = body.timeout
    if query_string:
        given = request.query_params.get("timeout", given)
    server_s = request.app.state.service.config.request_timeout_s
    server_ms = round(server_s * 1000) if server_s > 0 else None
    if given is None or given.strip() == "-1":  # Elasticsearch's time value for "none"
        return server_ms
    # "0" is a time value to Elasticsearch (no unit needed): the shortest deadline.
    seconds = 0 if given.strip() == "0" else time_value_seconds(given, "timeout")
    if math.isinf(seconds) or seconds > MAX_TIMEOUT_S:  # longer than any search: no deadline
        return server_ms
    asked = max(1, round(seconds * 1000))
    return asked if server_ms is None else min(asked, server_ms)
