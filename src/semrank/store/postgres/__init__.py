"""Indexes in PostgreSQL: documents in a table, english full text (tsvector + GIN, BM25 scored
in SQL) and pgvector embeddings (``vector(384)``, HNSW with cosine ops), behind the same
``Store`` interface as the embedded store, so ``semrank.pipeline`` runs on either.

>>> from semrank.store import create_index
>>> index = create_index("scifact", store="postgresql://localhost/search")
"""

from semrank.store.postgres._aliases import (
    list_postgres_aliases,
    resolve_postgres_alias,
    update_postgres_aliases,
)
from semrank.store.postgres._pool import (
    DSN_SCHEMES,
    acquire_pool,
    is_postgres_dsn,
    redact,
    release_pool,
)
from semrank.store.postgres._schema import MIGRATIONS, SCHEMA, TEXT_CONFIG, VECTOR_DIM, migrate
from semrank.store.postgres._store import (
    PostgresStore,
    check_postgres_can_create,
    check_postgres_storable,
    drop_postgres_index,
    list_postgres_indexes,
    partition_name,
)

__all__ = [
    "DSN_SCHEMES",
    "MIGRATIONS",
    "SCHEMA",
    "TEXT_CONFIG",
    "VECTOR_DIM",
    "PostgresStore",
    "acquire_pool",
    "check_postgres_can_create",
    "check_postgres_storable",
    "drop_postgres_index",
    "is_postgres_dsn",
    "list_postgres_aliases",
    "list_postgres_indexes",
    "migrate",
    "partition_name",
    "redact",
    "release_pool",
    "resolve_postgres_alias",
    "update_postgres_aliases",
]
