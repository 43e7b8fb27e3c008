"""The FastAPI application: ``create_app(config)``.

Startup loads the models (in a thread) and starts one batcher per model; shutdown first marks
the server draining (``/ready`` answers 503), then lets the batchers finish what is queued.
uvicorn itself stops accepting connections and waits for in-flight requests before that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi import FastAPI

from semrank import __version__
from semrank.server._edge import EdgeMiddleware
from semrank.server._engines import ModelRegistry
from semrank.server._errors import install_error_handlers
from semrank.server._index_routes import router as index_router
from semrank.server._logging import LOGGER_NAME, configure_logging, log_fields
from semrank.server._metrics import Metrics
from semrank.server._rerank_routes import router as rerank_router
from semrank.server._service import RerankService
from semrank.server._system_routes import models_router, probes
from semrank.server.config import ENV_CONFIG_JSON, ServerConfig

logger = logging.getLogger(LOGGER_NAME)

DESCRIPTION = """Self-hosted re-ranking with Cohere-, Jina-, Voyage-, Together- and
TEI-compatible endpoints, plus semrank's batch and search APIs. Errors are
`{"error": "...", "error_type": "...", "message": "...", "detail": "..."}` (one text, under each
key vendors' clients read)."""


def create_app(
    config: ServerConfig | None = None, *, rerankers: Mapping[str, Any] | None = None
) -> FastAPI:
    """The app for ``config``; ``rerankers`` serves ready-made Reranker objects instead of
    loading ``config.models`` (tests, embedding the server in another program)."""
    config = config or ServerConfig()
    metrics = Metrics()
    registry = ModelRegistry(config, metrics)
    for name, reranker in (rerankers or {}).items():
        registry.add(name, reranker)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not registry.engines:
            await asyncio.to_thread(registry.load)
        await registry.start()
        app.state.phase = "ready"
        logger.info("ready", extra=log_fields(models=sorted(registry.engines)))
        try:
            yield
        finally:
            app.state.phase = "draining"
            await registry.close()
            logger.info("stopped")

    app = FastAPI(
        title="semrank",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.metrics = metrics
    app.state.registry = registry
    app.state.service = RerankService(config, registry, metrics)
    app.state.phase = "starting"
    install_error_handlers(app, retry_after_s=config.retry_after_s)
    app.add_middleware(EdgeMiddleware, max_body_bytes=config.max_body_bytes, metrics=metrics)
    for router in (probes, models_router, rerank_router, index_router):
        app.include_router(router)
    return app


def app_from_environment() -> FastAPI:
    """The app factory each ``--workers`` process imports (config from the parent's env)."""
    text = os.environ.get(ENV_CONFIG_JSON)
    config = ServerConfig.from_json(text) if text else ServerConfig()
    configure_logging(config.log_level, json_lines=config.log_json)
    return create_app(config)
