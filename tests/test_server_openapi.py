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
    assert "401" in paths["/v1/models"]["get"]["responses"]  # it takes the API key too
    # Clients generated from the document call operations by id: ids stay as they were.
    assert paths["/rerank"]["post"]["operationId"] == "rerank_tei_rerank_post"
    error = document["components"]["schemas"]["ErrorBody"]
    assert set(error["required"]) == {"error", "error_type", "message", "detail"}
    responses = paths["/v2/rerank"]["post"]["responses"]
    assert {"401", "413", "422", "429", "504"} <= set(responses)
    assert json.loads(render()) == document


SERVER_DOC = COMMITTED.parent / "server.md"


def test_the_operations_page_names_only_real_flags_metrics_and_statuses() -> None:
    import re

    from typer.testing import CliRunner

    from semrank.cli import app
    from semrank.errors import HTTP_STATUS
    from semrank.server._metrics import Metrics

    text = SERVER_DOC.read_text(encoding="utf-8")
    helped = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    flags = set(re.findall(r"`(--[a-z-]+)", text))  # the flags the page quotes
    assert flags and {flag for flag in flags if flag not in helped} == set()
    families = {family.name for family in Metrics().registry.collect()}
    named = {name.removesuffix("_total") for name in re.findall(r"semrank_[a-z_]+", text)}
    assert named and named - families == set()
    statuses = {int(code) for code in re.findall(r"^\| (\d{3}) \|", text, re.MULTILINE)}
    # 400 is the edge's (a body that is not JSON never reaches semrank's errors).
    assert statuses == (set(HTTP_STATUS.values()) - {500}) | {400}


def test_bounds_are_json_schema_keywords() -> None:
    """Pydantic wrote a bound on an optional, validated integer as "ge" / "le", which JSON
    Schema does not know: generated clients and validators lost the limits."""
    document = json.loads((Path(__file__).parents[1] / "docs" / "openapi.json").read_text())
    found: list[str] = []

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            found.extend(f"{where}/{k}" for k in node if k in {"ge", "le", "gt", "lt"})
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for n, value in enumerate(node):
                walk(value, f"{where}[{n}]")

    walk(document, "")
    assert found == []
    timeout = document["components"]["schemas"]["V2RerankRequest"]["properties"]["timeout_ms"]
    assert timeout["anyOf"][0]["minimum"] == 1


def test_index_names_are_described_as_the_store_accepts_them() -> None:
    from semrank.server.schemas import INDEX_NAME_PATTERN
    from semrank.store._registry import _NAME

    assert f"^{_NAME.pattern}$" == INDEX_NAME_PATTERN
    paths = openapi_document()["paths"]
    parameter = paths["/v1/indexes/{name}"]["get"]["parameters"][0]
    assert parameter["schema"]["pattern"] == INDEX_NAME_PATTERN
