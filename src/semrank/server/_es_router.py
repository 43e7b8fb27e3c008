"""The router each Elasticsearch route module registers its routes on."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from semrank.server._auth import require_api_key
from semrank.server._edge import UniqueKeysRoute
from semrank.server._es_routes import ES_ERRORS

__all__ = ["es_router"]


def es_router() -> APIRouter:
    """A router whose routes check the API key, read JSON bodies strictly (``UniqueKeysRoute``)
    and are documented under the ``elasticsearch`` tag with Elasticsearch-shaped errors, as
    ``_es_routes``'s own."""
    return APIRouter(
        dependencies=[Depends(require_api_key)],
        route_class=UniqueKeysRoute,
        tags=["elasticsearch"],
        responses=ES_ERRORS,
    )
