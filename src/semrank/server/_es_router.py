"""The router each Elasticsearch route module registers its routes on."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from semrank.server._auth import require_api_key
from semrank.server._edge import UniqueKeysRoute
from semrank.server.schemas import EsErrorBody

__all__ = ["ES_ERRORS", "es_router"]

ES_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": EsErrorBody, "description": text}
    for status, text in (
        (400, "invalid request (semrank's other routes answer 422), or a body that is not JSON"),
        (401, "missing or wrong API key"),
        (404, "unknown index or model"),
        (413, "too many documents re-ranked, or too many bytes"),
        (429, "queue full; see Retry-After"),
        (500, "internal error (see the server log)"),
        (503, "a backend or the index's storage is unavailable, or the server is draining"),
        (504, "deadline exceeded"),
    )
}


def es_router() -> APIRouter:
    """A router whose routes check the API key, read JSON bodies strictly (``UniqueKeysRoute``)
    and are documented under the ``elasticsearch`` tag with Elasticsearch-shaped errors
    (``ES_ERRORS``)."""
    return APIRouter(
        dependencies=[Depends(require_api_key)],
        route_class=UniqueKeysRoute,
        tags=["elasticsearch"],
        responses=ES_ERRORS,
    )
