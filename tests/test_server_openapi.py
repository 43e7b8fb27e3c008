"""docs/openapi.json is the committed API contract; it must match the app."""

from __future__ import annotations

import json
from pathlib import Path

from semrank.server.openapi import openapi_document, render

COMMITTED = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def test_committed_openapi_is_up_to_date() -> None:
    assert COMMITTED.is_file(), "run: python -m semrank.server.openapi"
    assert COMMITTED.read_text(encoding="utf-8") == render(), (
        "docs/openapi.json is stale; regenerate it with: python -m semrank.server.openapi"
    )


def test_openapi_documents_every_endpoint_and_the_error_body() -> None:
    document = openapi_document()
    paths = document["paths"]
    for path in ("/v2/rerank", "/v1/rerank", "/rerank", "/v1/rerank/batch", "/v1/models"):
        assert "post" in paths[path] or "get" in paths[path]
    for path in ("/health", "/ready", "/metrics"):
        assert "get" in paths[path]
    error = document["components"]["schemas"]["ErrorBody"]
    assert set(error["required"]) == {"error", "error_type", "message", "detail"}
    responses = paths["/v2/rerank"]["post"]["responses"]
    assert {"401", "413", "422", "429", "504"} <= set(responses)
    assert json.loads(render()) == document
