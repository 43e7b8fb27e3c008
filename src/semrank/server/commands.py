"""``semrank serve``: the HTTP server (registered by ``semrank.cli``)."""

from __future__ import annotations

import os
from typing import Any

import typer

from semrank.runtime.commands import BACKEND_HELP
from semrank.server.config import ServerConfig

# Defaults shown in --help come from the config the server runs with (None: not given).
_DEFAULT = ServerConfig()


def register(app: typer.Typer) -> None:
    """Add ``serve`` to ``app``."""
    app.command("serve")(serve)


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind (0.0.0.0 exposes it)."),
    port: int = typer.Option(8000, help="TCP port."),
    model: list[str] = typer.Option(
        [],
        "--model",
        "-m",
        help="Model to serve: NAME or ALIAS=SOURCE (catalog name, directory, hub id). Repeat "
        "for several; the first is the default. Default: the bundled model.",
    ),
    workers: int = typer.Option(
        1, help="Worker processes (each loads its own models); at most twice the usable CPUs."
    ),
    threads: int | None = typer.Option(
        None,
        help="Inference threads per worker (default: the backend's choice; with several "
        "workers, the CPUs this process may use shared out among them).",
    ),
    api_key: list[str] = typer.Option(
        [], "--api-key", help="Accepted Bearer key (repeatable; also SEMRANK_API_KEYS)."
    ),
    backend: str | None = typer.Option(None, help=BACKEND_HELP),
    device: str | None = typer.Option(None, help="Device, e.g. cpu or cuda."),
    cascade_keep: int | None = typer.Option(
        None,
        help="Prune each request to the N best by the embedding model first (0: off). "
        f"Default {_DEFAULT.cascade_keep}.",
    ),
    feedback: bool | None = typer.Option(
        None,
        "--feedback/--no-feedback",
        help="The model's pseudo-relevance feedback (default: on where the model has it); off "
        "scores each document independently of the others in its request.",
    ),
    max_documents: int | None = typer.Option(
        None,
        help="Documents per request at most (a batch: all its queries' documents together; "
        f"Cohere takes up to 10,000). Default {_DEFAULT.max_documents}.",
    ),
    max_body_bytes: int | None = typer.Option(
        None, help=f"Request body size limit in bytes. Default {_DEFAULT.max_body_bytes}."
    ),
    max_request_tokens: int | None = typer.Option(
        None, help=f"Tokens a rerank request may send. Default {_DEFAULT.max_request_tokens}."
    ),
    max_batch_queries: int | None = typer.Option(
        None,
        help=(
            "Queries per /v1/rerank/batch request (and searches per _msearch request) at most. "
            f"Default {_DEFAULT.max_batch_queries}."
        ),
    ),
    max_search_contexts: int | None = typer.Option(
        None,
        help="Elasticsearch scroll and point-in-time contexts open at once, per worker (429 "
        f"past it). Default {_DEFAULT.max_search_contexts}.",
    ),
    max_search_context_hits: int | None = typer.Option(
        None,
        help="Hits the open scroll and point-in-time contexts of a worker hold together (a "
        f"search listing more is refused). Default {_DEFAULT.max_search_context_hits:,}.",
    ),
    max_pending: int | None = typer.Option(
        None,
        help="Requests admitted at once; more get 429 + Retry-After. "
        f"Default {_DEFAULT.max_pending_requests}.",
    ),
    timeout: float | None = typer.Option(
        None,
        help="Default request deadline in seconds (0: none). "
        f"Default {_DEFAULT.request_timeout_s:g}.",
    ),
    fail_open: bool | None = typer.Option(
        None,
        "--fail-open/--no-fail-open",
        help="Past the deadline a rerank request gets its input order back, not 504. Default "
        f"{'on' if _DEFAULT.fail_open else 'off'}.",
    ),
    batch_wait_ms: float | None = typer.Option(
        None,
        help="How long the batcher waits for more requests to merge (ms). "
        f"Default {_DEFAULT.batch_wait_ms:g}.",
    ),
    batch_token_budget: int | None = typer.Option(
        None,
        help="Tokens per model call: merged small requests, or one slice of a large one. "
        f"Default {_DEFAULT.batch_token_budget}.",
    ),
    cache_size: int | None = typer.Option(
        None, help=f"Cached pair scores (0 turns it off). Default {_DEFAULT.cache_size}."
    ),
    auto_truncate: bool | None = typer.Option(
        None,
        "--auto-truncate/--no-auto-truncate",
        help="TEI: truncate when truncate is unset. Default "
        f"{'on' if _DEFAULT.auto_truncate else 'off'}.",
    ),
    return_documents: bool | None = typer.Option(
        None,
        "--return-documents/--no-return-documents",
        help="/v1/rerank's return_documents when a request leaves it out (default: off, as "
        "Cohere, Together and Voyage; Jina's API returns them unless told not to).",
    ),
    index_home: str | None = typer.Option(
        None, help="Directory of the search indexes (default: $SEMRANK_HOME or XDG data dir)."
    ),
    store: str | None = typer.Option(
        None,
        "--store",
        help="Where the search indexes live: 'local' (the default, under --index-home) or a "
        "PostgreSQL DSN postgresql://user@host:port/db (default: $SEMRANK_STORE, unless "
        "--index-home is given).",
    ),
    log_level: str | None = typer.Option(
        None, help=f"debug, info, warning or error. Default {_DEFAULT.log_level}."
    ),
    log_format: str = typer.Option("json", help="json (one object per line) or text."),
    shutdown_timeout: float | None = typer.Option(
        None,
        help="Seconds to finish in-flight requests on SIGTERM; those left get 503 (whole "
        f"seconds, rounded up, at least 1). Default {_DEFAULT.shutdown_timeout_s:g}.",
    ),
    keep_alive_timeout: float | None = typer.Option(
        None,
        help="Seconds an idle client connection stays open; keep it above a load balancer's "
        f"idle timeout (whole seconds, at least 1). Default {_DEFAULT.keep_alive_timeout_s:g}.",
    ),
    otlp_endpoint: str | None = typer.Option(
        None,
        help="Send OpenTelemetry traces to this OTLP/HTTP collector, e.g. http://localhost:4318 "
        "(needs semrank[otel]; default: $SEMRANK_OTLP_ENDPOINT, else "
        "$OTEL_EXPORTER_OTLP_ENDPOINT, else no tracing).",
    ),
    otlp_service_name: str | None = typer.Option(
        None, help="The traces' service.name (default: $OTEL_SERVICE_NAME, else semrank)."
    ),
) -> None:
    """Serve rerank APIs (Cohere v1/v2, Jina, Voyage, TEI...), batch re-ranking and metrics."""
    from semrank.errors import InvalidInputError
    from semrank.server.config import MULTIPROC_ENV, from_environment

    # semrank serve sets it up itself for --workers N; one from the environment (set for
    # gunicorn) put one worker's metrics into files there, or failed at start naming no
    # variable when the folder was missing. Dropped before prometheus_client is imported.
    os.environ.pop(MULTIPROC_ENV, None)
    from semrank.server._logging import configure_logging
    from semrank.server._run import run_server

    if log_format not in ("json", "text"):
        raise InvalidInputError(f"--log-format {log_format!r}: choose json or text")
    # Now, so that a bad flag or variable below is refused in the log's format too (run_server
    # sets the level asked for); nothing logs below warning before then.
    configure_logging("warning", json_lines=log_format == "json")
    overrides: dict[str, Any] = {
        "host": host,
        "port": port,
        "workers": workers,
        "threads": threads,
        "backend": backend,
        "device": device,
        "cascade_keep": cascade_keep,
        "feedback": feedback,
        "max_documents": max_documents,
        "max_body_bytes": max_body_bytes,
        "max_request_tokens": max_request_tokens,
        "max_pending_requests": max_pending,
        "max_batch_queries": max_batch_queries,
        "max_search_contexts": max_search_contexts,
        "max_search_context_hits": max_search_context_hits,
        "fail_open": fail_open,
        "batch_wait_ms": batch_wait_ms,
        "batch_token_budget": batch_token_budget,
        "cache_size": cache_size,
        "auto_truncate": auto_truncate,
        "return_documents": return_documents,
        "index_home": index_home,
        "store": store,
        "log_level": log_level,
        "log_json": log_format == "json",
        "shutdown_timeout_s": shutdown_timeout,
        "keep_alive_timeout_s": keep_alive_timeout,
        "request_timeout_s": timeout,
        "otlp_endpoint": otlp_endpoint,
        "otlp_service_name": otlp_service_name,
    }
    run_server(from_environment(overrides, model_specs=model, api_keys=api_key))
