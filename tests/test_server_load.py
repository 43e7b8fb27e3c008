"""Concurrent load: every request succeeds, and the batcher merges requests into model calls."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from semrank.server import ServerConfig, create_app

pytestmark = pytest.mark.anyio

CLIENTS = 32
REQUESTS_PER_CLIENT = 20
WORDS = ["flea", "blood", "dog", "cat", "paris", "france", "ocean", "fish", "music", "piano"]


def _request(rng: random.Random) -> dict[str, Any]:
    docs = [" ".join(rng.choices(WORDS, k=rng.randint(3, 12))) for _ in range(rng.randint(2, 6))]
    endpoint = rng.choice(["/v1/rerank", "/v2/rerank", "/rerank"])
    key = "texts" if endpoint == "/rerank" else "documents"
    return {"endpoint": endpoint, "body": {"query": " ".join(rng.choices(WORDS, k=3)), key: docs}}


async def _client(client: httpx.AsyncClient, seed: int) -> list[int]:
    rng = random.Random(seed)
    statuses = []
    for _ in range(REQUESTS_PER_CLIENT):  # bounded: a fixed number of requests per client
        request = _request(rng)
        response = await client.post(request["endpoint"], json=request["body"])
        statuses.append(response.status_code)
    return statuses


def _histogram(text: str, name: str) -> dict[str, float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                samples[sample.labels["le"]] = sample.value
            elif sample.name == f"{name}_count":
                samples["count"] = sample.value
    return samples


@pytest.mark.slow
async def test_concurrent_clients_get_no_errors_and_batches_merge(reranker: Any) -> None:
    # The cache is off so that every request reaches the batcher.
    config = ServerConfig(cache_size=0, batch_wait_ms=5, request_timeout_s=120)
    app = create_app(config, rerankers={"minilm": reranker})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", timeout=120
        ) as client:
            results = await asyncio.gather(*(_client(client, seed) for seed in range(CLIENTS)))
            metrics = (await client.get("/metrics")).text
    statuses = [status for statuses in results for status in statuses]
    assert len(statuses) == CLIENTS * REQUESTS_PER_CLIENT
    assert set(statuses) == {200}
    merged = _histogram(metrics, "semrank_batch_requests")
    # Fewer model calls than requests, and some call carried more than one request.
    assert merged["count"] < CLIENTS * REQUESTS_PER_CLIENT
    assert merged["1.0"] < merged["count"]
