"""A real ``semrank serve`` process on a free localhost port: the official Cohere SDK against it,
and graceful shutdown (SIGTERM finishes the request in flight)."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from semrank.models import default_spec
from serving import semrank_serve

cohere = pytest.importorskip("cohere", reason="pip install cohere (the dev extra has it)")

API_KEY = "test-key"
QUERY = "what do fleas eat"
DOCS = [
    "Paris is the capital of France and has many museums.",
    "Fleas feed on the blood of mammals and birds.",
    "The ocean is deep and cold; fish swim in it.",
    "Adult fleas drink blood; larvae eat organic debris.",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("serve") / "server.log"
    # The alias lets Cohere clients keep their model name; the model is the default Reranker().
    alias = f"rerank-v3.5={default_spec().name}"
    with semrank_serve(log, "--model", alias, "--api-key", API_KEY) as (url, _):
        yield url


def test_cohere_client_v2_gets_the_reranker_results(server: str, reranker: Any) -> None:
    client = cohere.ClientV2(api_key=API_KEY, base_url=server)
    response = client.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS, top_n=3)
    want = reranker.rerank(QUERY, DOCS, top_n=3)
    assert [r.index for r in response.results] == [r.index for r in want]
    for got, expected in zip(response.results, want, strict=True):
        assert got.relevance_score == pytest.approx(expected.relevance_score, abs=1e-5)
    assert response.meta.api_version.version == "2"
    assert response.meta.billed_units.search_units == 1


def test_cohere_client_v1_gets_results_and_documents(server: str, reranker: Any) -> None:
    client = cohere.Client(api_key=API_KEY, base_url=server)
    documents = [DOCS[0], {"text": DOCS[1]}, DOCS[2], {"text": DOCS[3]}]
    response = client.rerank(
        model="rerank-v3.5", query=QUERY, documents=documents, top_n=2, return_documents=True
    )
    want = reranker.rerank(QUERY, DOCS, top_n=2)
    assert [r.index for r in response.results] == [r.index for r in want]
    for got, expected in zip(response.results, want, strict=True):
        assert got.relevance_score == pytest.approx(expected.relevance_score, abs=1e-5)
        assert got.document.text == DOCS[got.index]


def test_cohere_client_with_a_wrong_key_gets_401(server: str) -> None:
    client = cohere.ClientV2(api_key="not-the-key", base_url=server)
    with pytest.raises(cohere.core.ApiError) as raised:
        client.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS)
    assert raised.value.status_code == 401
    assert raised.value.body["error_type"] == "unauthorized"


def _in_flight(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    line = next(line for line in text.splitlines() if line.startswith("semrank_requests_in_flight"))
    return float(line.split()[-1])


@pytest.mark.slow
def test_sigterm_finishes_the_request_in_flight(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    # A long batching window keeps the request in flight while the signal arrives.
    with semrank_serve(log, "--batch-wait-ms", "1500") as (url, process):
        outcome: dict[str, Any] = {}

        def call() -> None:
            body = {"query": QUERY, "documents": DOCS}
            outcome["response"] = httpx.post(f"{url}/v2/rerank", json=body, timeout=60)

        thread = threading.Thread(target=call)
        thread.start()
        for _ in range(400):  # bounded wait until the server holds the request
            if _in_flight(url) >= 1:
                break
            time.sleep(0.01)
        assert _in_flight(url) >= 1
        process.send_signal(signal.SIGTERM)
        thread.join(timeout=60)
        # uvicorn re-raises the signal once it has shut down cleanly.
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    assert outcome["response"].status_code == 200
    assert len(outcome["response"].json()["results"]) == len(DOCS)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(line["message"] == "stopped" for line in lines)
    assert not [line for line in lines if line["level"] in ("error", "critical")]
