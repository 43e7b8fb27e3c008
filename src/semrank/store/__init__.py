"""Persistent, crash-safe named indexes: documents, BM25 and embeddings on local disk.

>>> from semrank.store import create_index, read_corpus
>>> index = create_index("scifact")
>>> index.upsert(read_corpus("scifact/"))           # BEIR folder, .jsonl[.gz], .json, .csv
>>> index.search_bm25("cancer stem cells", k=10)    # Hits(ids, scores)
"""

from semrank.store._aliases import list_aliases, resolve_index_name, update_aliases
from semrank.store._base import (
    ALL_TEXT_FIELDS,
    VECTOR_FIELD,
    DocumentVersion,
    Expected,
    IndexInfo,
    IndexSettings,
    PreparedArrays,
    Store,
    UpsertCounts,
    VersionedDocument,
    field_text,
)
from semrank.store._by_query import DeleteCounts, delete_listed
from semrank.store._corpus import Corpus, Document, read_corpus
from semrank.store._dsn import is_postgres_dsn, redact_dsn
from semrank.store._local import LocalStore
from semrank.store._registry import (
    DEFAULT_EMBEDDING,
    HOME_ENV,
    create_index,
    default_home,
    drop_index,
    index_path,
    list_indexes,
    open_index,
    resolve_home,
    writable_home,
)
from semrank.store._reindex import ReindexCounts, create_index_like, reindex
from semrank.store._sqlite import DB_NAME

__all__ = [
    "ALL_TEXT_FIELDS",
    "DB_NAME",
    "DEFAULT_EMBEDDING",
    "HOME_ENV",
    "VECTOR_FIELD",
    "Corpus",
    "DeleteCounts",
    "Document",
    "DocumentVersion",
    "Expected",
    "IndexInfo",
    "IndexSettings",
    "LocalStore",
    "PreparedArrays",
    "ReindexCounts",
    "Store",
    "UpsertCounts",
    "VersionedDocument",
    "create_index",
    "create_index_like",
    "default_home",
    "delete_listed",
    "drop_index",
    "field_text",
    "index_path",
    "is_postgres_dsn",
    "list_aliases",
    "list_indexes",
    "open_index",
    "read_corpus",
    "redact_dsn",
    "reindex",
    "resolve_home",
    "resolve_index_name",
    "update_aliases",
    "writable_home",
]
