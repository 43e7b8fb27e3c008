"""Two-stage search: Elasticsearch-style retriever trees over a ``semrank.store`` index.

>>> from semrank.pipeline import BM25, Rerank, search
>>> pipeline = BM25() >> Rerank(window=100) % 10
>>> search("scifact", "cancer stem cells", retriever=pipeline).ids
>>> search("scifact", "…", retriever={"rrf": {"retrievers": [...]}})   # Elasticsearch JSON
"""

from semrank.pipeline._context import (
    PLACEHOLDER,
    ScoresDocuments,
    SearchContext,
    default_model_name,
    load_reranker,
)
from semrank.pipeline._nodes import (
    BM25,
    DEFAULT_RERANK_WINDOW,
    RRF,
    Chain,
    Cut,
    Cutoff,
    Dense,
    Knn,
    Linear,
    Rerank,
    Retriever,
    Stage,
    TextSimilarityReranker,
    Weighted,
    bind_rerankers,
    check_window,
    has_placeholder,
    hits_without_size,
    reranking_nodes,
    top_window,
)
from semrank.pipeline._open import (
    forget_open_indexes,
    let_go_of_dropped_indexes,
    open_cached,
    using_index,
)
from semrank.pipeline._parse import (
    QUERY_DSL_HINT,
    SEARCH_KEY_HINTS,
    SearchBody,
    parse_retriever,
    parse_search_body,
)
from semrank.pipeline._prepare import PreparedWindows, prepare_index, use_prepared
from semrank.pipeline._ranking import Hit, Ranking, SearchResults
from semrank.pipeline._search import (
    FIRST_STAGES,
    Shorthand,
    as_retriever,
    build_retriever,
    check_vectors_follow,
    parse_shorthand,
    read_retriever,
    rerank_window_for,
    search,
    search_many,
)

__all__ = [
    "BM25",
    "DEFAULT_RERANK_WINDOW",
    "FIRST_STAGES",
    "PLACEHOLDER",
    "QUERY_DSL_HINT",
    "RRF",
    "SEARCH_KEY_HINTS",
    "Chain",
    "Cut",
    "Cutoff",
    "Dense",
    "Hit",
    "Knn",
    "Linear",
    "PreparedWindows",
    "Ranking",
    "Rerank",
    "Retriever",
    "ScoresDocuments",
    "SearchBody",
    "SearchContext",
    "SearchResults",
    "Shorthand",
    "Stage",
    "TextSimilarityReranker",
    "Weighted",
    "as_retriever",
    "bind_rerankers",
    "build_retriever",
    "check_vectors_follow",
    "check_window",
    "default_model_name",
    "forget_open_indexes",
    "has_placeholder",
    "hits_without_size",
    "let_go_of_dropped_indexes",
    "load_reranker",
    "open_cached",
    "parse_retriever",
    "parse_search_body",
    "parse_shorthand",
    "prepare_index",
    "read_retriever",
    "rerank_window_for",
    "reranking_nodes",
    "search",
    "search_many",
    "top_window",
    "use_prepared",
    "using_index",
]
