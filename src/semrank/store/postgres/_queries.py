"""The SQL of the PostgreSQL store's retrieval: BM25 over tsvectors, and pgvector knn.

BM25 (Lucene variant, the embedded store's default) is computed in SQL from the english
``tsvector`` column rather than ranked with ``ts_rank_cd``: ``ts_rank_cd`` has no IDF and no
length normalisation against the corpus average, so it ranks far worse on BEIR collections. The
statistics come from ``semrank.indexes`` (document count, total length, kept up to date by every
write) and from the GIN index (document frequency of each query term). Only documents sharing a
term with the query are scored, found through the GIN index with an OR query.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from semrank.store.postgres._schema import TEXT_CONFIG

# {tsv}/{length}: the document's tsvector and token count; {part}: the index's partition.
_BM25 = r"""
WITH terms AS (
    SELECT t.lexeme, coalesce(cardinality(t.positions), 1)::float8 AS qtf,
           format('''%%s''', replace(replace(t.lexeme, '\', '\\'), '''', '''''')) AS quoted
    FROM unnest(to_tsvector({config}::regconfig, %(query)s)) AS t
),
stats AS ({stats}),
weighted AS (
    SELECT terms.lexeme, terms.qtf * ln(1 + (stats.n - df.df + 0.5) / (df.df + 0.5)) AS weight
    FROM terms CROSS JOIN stats
    CROSS JOIN LATERAL (
        SELECT count(*)::float8 AS df FROM {part} AS d WHERE {tsv} @@ terms.quoted::tsquery
    ) AS df
),
matched AS (
    SELECT d.id, ({length})::float8 AS len, {tsv} AS tsv
    FROM {part} AS d
    WHERE {tsv} @@ (SELECT string_agg(quoted, ' | ')::tsquery FROM terms)
)
SELECT m.id,
       sum(w.weight * cardinality(u.positions)
           / (cardinality(u.positions) + %(k1)s * (1 - %(b)s + %(b)s * m.len / stats.avgdl))
       )::real AS score
FROM matched AS m
CROSS JOIN stats
CROSS JOIN LATERAL unnest(m.tsv) AS u
JOIN weighted AS w ON w.lexeme = u.lexeme
GROUP BY m.id
ORDER BY score DESC, m.id
LIMIT %(k)s
"""

# All text fields: the stored column and statistics kept by the writers.
_ALL_FIELDS_STATS = """
SELECT doc_count::float8 AS n,
       greatest(total_length, 1)::float8 / greatest(doc_count, 1) AS avgdl
FROM semrank.indexes WHERE name = %(index)s
"""

# One field: analysed on the fly (no index), statistics from a scan of the partition.
_FIELD_STATS = """
SELECT count(*)::float8 AS n, greatest(sum({length}), 1)::float8 / greatest(count(*), 1) AS avgdl
FROM {part} AS d
"""

VECTOR_KNN = """
SELECT id, (1 - (embedding <=> %(vector)s::vector))::real AS score
FROM {part}
WHERE embedding IS NOT NULL
ORDER BY embedding <=> %(vector)s::vector
LIMIT %(k)s
"""


def bm25_query(partition: sql.Composable, field: str | None) -> sql.Composed:
    """BM25 over all text fields (``field=None``: the indexed ``fts`` column) or one field."""
    config = sql.Literal(TEXT_CONFIG)
    if field is None:
        tsv: sql.Composable = sql.SQL("d.fts")
        length: sql.Composable = sql.SQL("d.fts_length")
        stats: sql.Composable = sql.SQL(_ALL_FIELDS_STATS)
    else:
        tsv = sql.SQL("to_tsvector({config}::regconfig, coalesce(d.doc ->> {field}, ''))").format(
            config=config, field=sql.Literal(field)
        )
        length = sql.SQL("semrank.tsvector_length({tsv})").format(tsv=tsv)
        stats = sql.SQL(_FIELD_STATS).format(length=length, part=partition)
    return sql.SQL(_BM25).format(config=config, stats=stats, part=partition, tsv=tsv, length=length)


def knn_query(partition: sql.Composable) -> sql.Composed:
    return sql.SQL(VECTOR_KNN).format(part=partition)


def vector_literal(row: Any) -> str:
    """pgvector's text form of a float32 vector (float64 reprs parse back to the same float32)."""
    import json

    import numpy as np

    return json.dumps(np.asarray(row, dtype=np.float32).tolist())
