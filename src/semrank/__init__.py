"""semrank: a self-hosted semantic re-ranking engine.

>>> from semrank import Reranker
>>> docs = ["Fleas are small insects.", "Paris is in France."]
>>> results = Reranker().rerank("what is a flea", docs)
>>> [(r.index, r.document) for r in results]   # best first; relevance_score in 0..1
[(0, 'Fleas are small insects.'), (1, 'Paris is in France.')]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "BatchingConfig",
    "CascadeConfig",
    "ChunkingConfig",
    "RerankResult",
    "Reranker",
    "__version__",
    "errors",
]

if TYPE_CHECKING:
    from semrank import errors  # `semrank.errors.X` type-checked as Any without it
    from semrank.rerank import CascadeConfig, ChunkingConfig, Reranker, RerankResult
    from semrank.runtime.base import BatchingConfig


def __getattr__(name: str) -> Any:
    # Lazy so that ``import semrank`` (and the CLI's --help) does not load ONNX Runtime.
    if name in {"Reranker", "RerankResult", "ChunkingConfig", "CascadeConfig"}:
        from semrank import rerank

        return getattr(rerank, name)
    if name == "BatchingConfig":  # Reranker(batching=...)
        from semrank.runtime.base import BatchingConfig

        return BatchingConfig
    if name == "errors":
        import importlib

        return importlib.import_module("semrank.errors")
    raise AttributeError(f"module 'semrank' has no attribute {name!r}")


def __dir__() -> list[str]:
    # The lazy names (tab completion listed only TYPE_CHECKING, Any and annotations).
    return sorted(__all__)
