"""semrank: a self-hosted semantic re-ranking engine.

>>> from semrank import Reranker
>>> Reranker().rerank("what is a flea", ["Fleas are small insects.", "Paris is in France."])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "CascadeConfig",
    "ChunkingConfig",
    "RerankResult",
    "Reranker",
    "__version__",
    "errors",
]

if TYPE_CHECKING:
    from semrank.rerank import CascadeConfig, ChunkingConfig, Reranker, RerankResult


def __getattr__(name: str) -> Any:
    # Lazy so that ``import semrank`` (and the CLI's --help) does not load ONNX Runtime.
    if name in {"Reranker", "RerankResult", "ChunkingConfig", "CascadeConfig"}:
        from semrank import rerank

        return getattr(rerank, name)
    if name == "errors":
        import importlib

        return importlib.import_module("semrank.errors")
    raise AttributeError(f"module 'semrank' has no attribute {name!r}")
