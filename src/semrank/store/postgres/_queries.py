"""The SQL of the PostgreSQL store's retrieval: BM25 computed in SQL, and pgvector knn.

BM25 (the Lucene variant and parameters of the embedded store) is computed in SQL rather than
ranked with ``ts_rank_cd``, which has no IDF and no length normalisation against the corpus
average and ranks far worse on BEIR collections. Over all text fields it reads the ``terms``
column (term frequencies from the embedded store's analyser, so both stores rank alike); the
statistics come from ``semrank.indexes`` (document count and total length, kept by every write)
and the postings from the GIN index on ``terms``. Only documents sharing a term with the query
are touched. A single field is analysed at query time with PostgreSQL's english configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import sql

from semrank.retrieve import BM25Params
from semrank.store.postgres._schema import TEXT_CONFIG

# The shared scoring: {postings} yields (term, qtf, id, len, tf, keep) for every document sharing
# a term with the query; document frequencies count them all, a filter (keep) drops hits only.
_SCORE = """
WITH stats AS ({stats}),
postings AS MATERIALIZED ({postings}),
df AS (SELECT term, count(*)::float8 AS df FROM postings GROUP BY term)
SELECT p.id,
       sum(p.qtf * ln(1 + (stats.n - df.df + 0.5) / (df.df + 0.5)) * p.tf
           / (p.tf + %(k1)s * (1 - %(b)s + %(b)s * p.len / stats.avgdl)))::real AS score
FROM postings AS p JOIN df USING (term) CROSS JOIN stats
WHERE p.keep
GROUP BY p.id
ORDER BY score DESC, p.id
LIMIT %(k)s
"""

_EVERY = sql.SQL("TRUE")  # no filter

# All text fields: terms analysed by semrank (query terms passed in), stats kept by writers.
_ALL_FIELDS_STATS = """
SELECT doc_count::float8 AS n,
       greatest(total_length, 1)::float8 / greatest(doc_count, 1) AS avgdl
FROM semrank.indexes WHERE name = %(index)s
"""
_ALL_FIELDS_POSTINGS = """
SELECT t.term, t.qtf, d.id, d.terms_length::float8 AS len, (d.terms ->> t.term)::float8 AS tf,
       {keep} AS keep
FROM {part} AS d
CROSS JOIN (SELECT term, count(*)::float8 AS qtf FROM unnest(%(terms)s::text[]) AS term
            GROUP BY term) AS t
WHERE d.terms ?| %(terms)s::text[] AND d.terms ? t.term
"""

# One field: analysed on the fly with the english configuration (no index; a scan).
_FIELD_STATS = """
SELECT count(*)::float8 AS n, greatest(sum({length}), 1)::float8 / greatest(count(*), 1) AS avgdl
FROM {part} AS d
"""
_FIELD_POSTINGS = """
SELECT u.lexeme AS term, coalesce(cardinality(q.positions), 1)::float8 AS qtf, d.id,
       ({length})::float8 AS len, coalesce(cardinality(u.positions), 1)::float8 AS tf,
       {keep} AS keep
FROM {part} AS d
CROSS JOIN LATERAL unnest({tsv}) AS u
JOIN unnest(to_tsvector({config}::regconfig, %(query)s)) AS q ON q.lexeme = u.lexeme
"""


def bm25_query(
    partition: sql.Composable, keys: Sequence[str] | None, keep: sql.Composable = _EVERY
) -> sql.Composed:
    """BM25 over all text fields (``keys=None``: the indexed ``terms``) or over one field, read
    from the first of its spellings ``keys`` each document has; hits are the documents passing
    ``keep`` (a condition over the partition aliased ``d``)."""
    if keys is None:
        return sql.SQL(_SCORE).format(
            stats=sql.SQL(_ALL_FIELDS_STATS),
            postings=sql.SQL(_ALL_FIELDS_POSTINGS).format(part=partition, keep=keep),
        )
    config = sql.Literal(TEXT_CONFIG)
    tsv = _field_tsvector(keys)
    length = sql.SQL("semrank.tsvector_length({tsv})").format(tsv=tsv)
    return sql.SQL(_SCORE).format(
        stats=sql.SQL(_FIELD_STATS).format(length=length, part=partition),
        postings=sql.SQL(_FIELD_POSTINGS).format(
            part=partition, tsv=tsv, length=length, config=config, keep=keep
        ),
    )


def _field_tsvector(keys: Sequence[str]) -> sql.Composed:
    """One field of ``d.doc`` (the first of its spellings ``keys`` it has), analysed."""
    values = [sql.SQL("d.doc ->> {}").format(sql.Literal(key)) for key in keys]
    return sql.SQL("to_tsvector({config}::regconfig, coalesce({values}, ''))").format(
        config=sql.Literal(TEXT_CONFIG), values=sql.SQL(", ").join(values)
    )


def shares_a_term(keys: Sequence[str] | None) -> sql.Composable:
    """Whether a document of the partition aliased ``d`` shares a term with the query (named
    parameters ``terms``, analysed, and ``query``) over all text fields (``keys=None``: the
    GIN-indexed ``terms``) or one field: the documents ``bm25_query`` scores, each above 0."""
    if keys is None:
        return sql.SQL("d.terms ?| %(terms)s::text[]")
    return sql.SQL(
        "tsvector_to_array({tsv}) && tsvector_to_array(to_tsvector({config}::regconfig, %(query)s))"
    ).format(tsv=_field_tsvector(keys), config=sql.Literal(TEXT_CONFIG))


def analyse(texts: Sequence[str], params: BM25Params) -> list[list[str]]:
    """Terms of each text exactly as the embedded store's BM25 (bm25s) analyses them, with the
    index's analysis version."""
    from semrank.retrieve._bm25 import _tokenize

    if not texts:
        return []
    tokens: list[list[str]] = _tokenize(list(texts), params, return_ids=False)
    return tokens


def term_frequencies(tokens: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for token in tokens:
        counts[token] = counts.get(token, 0) + 1
    return counts


VECTOR_KNN = """
SELECT id, (1 - (embedding <=> %(vector)s::vector))::real AS score
FROM {part} AS d
WHERE embedding IS NOT NULL AND {keep}
ORDER BY (embedding <=> %(vector)s::vector) {exact}
LIMIT %(k)s
"""


def knn_query(
    partition: sql.Composable, keep: sql.Composable = _EVERY, *, exact: bool = False
) -> sql.Composed:
    """The ``k`` nearest rows passing ``keep``; ``exact``: ordered by an expression the HNSW
    index does not serve (``+ 0``), so every passing row is read (the planner's settings, such
    as enable_indexscan, only weigh plans, and may leave the index scan the cheapest)."""
    return sql.SQL(VECTOR_KNN).format(
        part=partition, keep=keep, exact=sql.SQL("+ 0" if exact else "")
    )


def vector_literal(row: Any) -> str:
    """pgvector's text form of a float32 vector (float64 reprs parse back to the same float32)."""
    import json

    import numpy as np

    return json.dumps(np.asarray(row, dtype=np.float32).tolist())
