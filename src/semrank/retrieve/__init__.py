"""First-stage retrieval building blocks: BM25 (bm25s), dense (exact / HNSW), fusion and
highlighting.

Everything here works on row positions and plain arrays; ``semrank.store`` maps positions to
document ids and keeps the indexes on disk, ``semrank.pipeline`` composes them into retrievers.
"""

from semrank.retrieve._bm25 import METHODS, BM25Index, BM25Params, DocTokens
from semrank.retrieve._dense import (
    DEFAULT_ANN_THRESHOLD,
    ExactVectorIndex,
    HNSWVectorIndex,
    TextEmbedder,
    VectorIndex,
    build_vector_index,
    unit_query_vector,
)
from semrank.retrieve._filter import (
    Filter,
    FilterSpec,
    all_of,
    as_filter,
    document_values,
    fields_read,
    matches,
    matches_everything,
    optional_filter,
    parse_filter,
    resolved,
)
from semrank.retrieve._fusion import NORMALIZERS, linear_combination, normalize_scores, rrf
from semrank.retrieve._highlight import (
    HighlightOptions,
    HighlightSpec,
    highlight_text,
    parse_highlight,
    query_terms,
)
from semrank.retrieve._hits import Hits, top_k
from semrank.retrieve._typed_keys import typed_keys

__all__ = [
    "DEFAULT_ANN_THRESHOLD",
    "METHODS",
    "NORMALIZERS",
    "BM25Index",
    "BM25Params",
    "DocTokens",
    "ExactVectorIndex",
    "Filter",
    "FilterSpec",
    "HNSWVectorIndex",
    "HighlightOptions",
    "HighlightSpec",
    "Hits",
    "TextEmbedder",
    "VectorIndex",
    "all_of",
    "as_filter",
    "build_vector_index",
    "document_values",
    "fields_read",
    "highlight_text",
    "linear_combination",
    "matches",
    "matches_everything",
    "normalize_scores",
    "optional_filter",
    "parse_filter",
    "parse_highlight",
    "query_terms",
    "resolved",
    "rrf",
    "top_k",
    "typed_keys",
    "unit_query_vector",
]
