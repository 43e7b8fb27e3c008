"""semrank's HTTP server: rerank APIs (Cohere, Jina, Voyage, Together, TEI), batch
re-ranking, search, metrics. Start it with ``semrank serve``; embed it with ``create_app``.

Lazy, so that ``semrank --help`` (which imports ``semrank.server.commands``) needs no FastAPI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["ModelEntry", "ServerConfig", "create_app", "from_environment"]

if TYPE_CHECKING:
    from semrank.server.app import create_app
    from semrank.server.config import ModelEntry, ServerConfig, from_environment

_HOMES = {
    "create_app": "semrank.server.app",
    "ModelEntry": "semrank.server.config",
    "ServerConfig": "semrank.server.config",
    "from_environment": "semrank.server.config",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'semrank.server' has no attribute {name!r}")
