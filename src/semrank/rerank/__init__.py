"""Re-ranking semantics, written once for every backend."""

from semrank.rerank._config import NO_CHUNKING, Aggregation, CascadeConfig, ChunkingConfig
from semrank.rerank._documents import document_texts
from semrank.rerank._reranker import Reranker
from semrank.rerank._results import ChunkSpan, Document, RerankResult, select_results

__all__ = [
    "NO_CHUNKING",
    "Aggregation",
    "CascadeConfig",
    "ChunkSpan",
    "ChunkingConfig",
    "Document",
    "RerankResult",
    "Reranker",
    "document_texts",
    "select_results",
]
