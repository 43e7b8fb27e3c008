"""Running the app under uvicorn (what ``semrank serve`` calls)."""

from __future__ import annotations

import os
from typing import Any

from semrank.server._logging import configure_logging
from semrank.server.config import ENV_CONFIG_JSON, ServerConfig


def run_server(config: ServerConfig) -> None:
    """Serve until SIGINT/SIGTERM; then finish in-flight requests (up to shutdown_timeout_s)."""
    import uvicorn

    check_before_start(config)
    configure_logging(config.log_level, json_lines=config.log_json)
    options: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "log_config": None,  # keep the JSON handler configure_logging installed
        "log_level": config.log_level,
        "access_log": False,  # the app writes its own access log, with request ids
        "timeout_graceful_shutdown": max(1, round(config.shutdown_timeout_s)),
        "lifespan": "on",
    }
    if config.workers > 1:
        # Each worker process builds its own app (and loads its own models) from this.
        os.environ[ENV_CONFIG_JSON] = config.to_json()
        uvicorn.run(
            "semrank.server.app:app_from_environment",
            factory=True,
            workers=config.workers,
            **options,
        )
        return
    from semrank.server.app import create_app

    uvicorn.run(create_app(config), **options)


def check_before_start(config: ServerConfig) -> None:
    """Name a bad backend, device or model before uvicorn starts: uvicorn reports an error
    raised while the app starts up as a traceback."""
    from semrank.models import resolve
    from semrank.runtime import resolve_backend

    resolve_backend(config.backend, config.device)
    for entry in config.models:
        resolve(entry.source)
