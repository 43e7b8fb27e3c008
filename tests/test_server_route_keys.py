"""Every route of the server, today's Elasticsearch ones included (scroll, point in time,
_msearch, the cluster probes, _reindex, _delete_by_query, _update_by_query), answers 401
without the API key, whatever it is asked; only the liveness, readiness and metrics probes
answer without one. Its metrics label each request by its route's template, never its path."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.anyio

OPEN_PROBES = frozenset({"/health", "/ready", "/metrics"})
KEY = {"Authorization": "Bearer k1"}


@pytest.fixture
async def app_client(reranker: Any, tmp_path: Path) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    pytest.importorskip("bm25s")
    from semrank.pipeline import forget_open_indexes
    from semrank.server import ServerConfig, create_app

    config = ServerConfig(index_home=str(tmp_path), api_keys=frozenset({"k1"}))
    app = create_app(config, rerankers={"minilm": reranker})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield app, http
    forget_open_indexes()


def _requests(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every declared route, its path parameters filled in."""
    asked = []
    for route in app.state.declared_routes:
        path = re.sub(r"\{[^}]+\}", "books", route.path)
        asked += [(method, path) for method in sorted(route.methods)]
    return asked


async def test_every_route_but_the_probes_needs_the_key(app_client: Any) -> None:
    app, client = app_client
    created = await client.put("/books", json={}, headers=KEY)
    assert created.status_code == 200, created.text
    asked = _requests(app)
    paths = {path for _, path in asked}
    for new in (
        "/_search/scroll",
        "/books/_pit",
        "/_pit",
        "/_msearch",
        "/_cluster/health",
        "/_cat/indices",
        "/_reindex",
        "/books/_delete_by_query",
        "/books/_mapping",
    ):
        assert new in paths  # fmt: skip
    for method, path in asked:
        body = None if method in ("GET", "HEAD") else b'{"query": {"match_all": {}}}'
        headers = {"content-type": "application/json"}
        answer = await client.request(method, path, content=body, headers=headers)
        if path in OPEN_PROBES:
            assert answer.status_code == 200, (method, path)
            continue
        assert answer.status_code == 401, (method, path, answer.status_code, answer.text)
    # Nothing was changed by the refused requests: the index and its documents are there.
    assert (await client.get("/v1/indexes/books", headers=KEY)).status_code == 200


async def test_metrics_label_routes_by_template_not_by_ids(app_client: Any) -> None:
    """Scroll ids and index names in paths are not labels (their number is unbounded)."""
    _, client = app_client
    for n in range(20):
        await client.post(f"/_search/scroll/id{n}", headers=KEY)
        await client.get(f"/index{n}/_mapping", headers=KEY)
        await client.head(f"/index{n}", headers=KEY)
        await client.get(f"/nowhere{n}/at/all", headers=KEY)
    text = (await client.get("/metrics")).text
    routes = set(re.findall(r'semrank_requests_total\{route="([^"]*)"', text))
    assert not any(re.search(r"id\d|index\d|nowhere\d", route) for route in routes), routes
    assert "/_search/scroll/{scroll_id}" in routes
