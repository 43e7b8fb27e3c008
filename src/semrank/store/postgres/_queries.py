"""The SQL of the PostgreSQL store's retrieval: BM25 computed in SQL, and pgvector knn.

BM25 (the Lucene variant and parameters of the embedded store) is computed in SQL rather than
ranked with ``ts_rank_cd``, which has no IDF and no length normalisation against the corpus
average and ranks far worse on BEIR collections. Over all text fields it reads the ``terms``
column (term frequencies from the embedded store's analyser, so both stores rank alike); the
statistics come from ``semrank.indexes`` (document count and total length, kept by every write)
and the postings from the GIN index on ``terms``. Only documents sharing a term with the query
are touched. A single field reads ``field_terms`` and ``field_lengths``: each top-level field of
each document analysed at write time by the same analyser, keyed by its name under Unicode NFC
(no index: the field's statistics are summed over the partition at query time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import sql

from semrank._checks import nfc
from semrank.retrieve import BM25Params
from semrank.store._base import field_text

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

# All text fields (``terms``, stats kept by writers) or one (``field_terms`` -> name, stats
# summed here): terms analysed by semrank, as the query's (passed in).
_ALL_FIELDS_STATS = """
SELECT doc_count::float8 AS n,
       greatest(total_length, 1)::float8 / greatest(doc_count, 1) AS avgdl
FROM semrank.indexes WHERE name = %(index)s
"""
_FIELD_STATS = """
SELECT count(*)::float8 AS n, greatest(sum({length}), 1)::float8 / greatest(count(*), 1) AS avgdl
FROM {part} AS d
"""
_POSTINGS = """
SELECT t.term, t.qtf, d.id, ({length})::float8 AS len, ({terms} ->> t.term)::float8 AS tf,
       {keep} AS keep
FROM {part} AS d
CROSS JOIN (SELECT term, count(*)::float8 AS qtf FROM unnest(%(terms)s::text[]) AS term
            GROUP BY term) AS t
WHERE {terms} ?| %(terms)s::text[] AND {terms} ? t.term
"""


def bm25_query(
    partition: sql.Composable, field: str | None, keep: sql.Composable = _EVERY
) -> sql.Composed:
    """BM25 over all text fields (``field=None``: the indexed ``terms``) or over one field;
    hits are the documents passing ``keep`` (a condition over the partition aliased ``d``)."""
    terms, length = _terms_of(field)
    stats: sql.Composable
    if field is None:
        stats = sql.SQL(_ALL_FIELDS_STATS)
    else:
        stats = sql.SQL(_FIELD_STATS).format(length=length, part=partition)
    postings = sql.SQL(_POSTINGS).format(part=partition, terms=terms, length=length, keep=keep)
    return sql.SQL(_SCORE).format(stats=stats, postings=postings)


def _terms_of(field: str | None) -> tuple[sql.Composable, sql.Composable]:
    """The {term: frequency} jsonb and the length of a document aliased ``d``: over all text
    fields, or of ``field`` (0 and NULL where the document has no term there)."""
    if field is None:
        return sql.SQL("d.terms"), sql.SQL("d.terms_length")
    name = sql.Literal(nfc(field))
    return (
        sql.SQL("(d.field_terms -> {})").format(name),
        sql.SQL("coalesce((d.field_lengths ->> {})::integer, 0)").format(name),
    )


def shares_a_term(field: str | None) -> sql.Composable:
    """Whether a document of the partition aliased ``d`` shares a term with the query (named
    parameter ``terms``, analysed) over all text fields (``field=None``: the GIN-indexed
    ``terms``) or ``field``: the documents ``bm25_query`` scores, each above 0."""
    # NULL where the field has no term: false in the WHERE it goes to (no coalesce, which would
    # hide ``terms`` from its GIN index)
    return sql.SQL("{} ?| %(terms)s::text[]").format(_terms_of(field)[0])


def analyse(texts: Sequence[str], params: BM25Params) -> list[list[str]]:
    """Terms of each text exactly as the embedded store's BM25 (bm25s) analyses them, with the
    index's analysis version."""
    from semrank.retrieve._bm25 import _tokenize

    if not texts:
        return []
    tokens: list[list[str]] = _tokenize(list(texts), params, return_ids=False)
    return tokens


def analyse_fields(
    docs: Sequence[dict[str, Any]], params: BM25Params
) -> list[tuple[dict[str, dict[str, int]], dict[str, int]]]:
    """Each document's ``field_terms`` and ``field_lengths``: every top-level field's text as
    the embedded store's single-field BM25 reads it (``field_text``) analysed as ``analyse``
    does, keyed by the field's name under NFC (a key spelled so itself wins over another
    spelling); fields without a term are left out (length 0, as absent)."""
    named: list[tuple[int, str, str]] = []
    for n, doc in enumerate(docs):
        chosen: dict[str, str] = {}
        for key in doc:
            name = nfc(key)
            if name not in chosen or key == name:
                chosen[name] = key
        named.extend((n, name, field_text(doc, key)) for name, key in chosen.items())
    analysed: list[tuple[dict[str, dict[str, int]], dict[str, int]]] = [({}, {}) for _ in docs]
    tokens = analyse([text for _, _, text in named], params)
    for (n, name, _), terms in zip(named, tokens, strict=True):
        if terms:
            analysed[n][0][name] = term_frequencies(terms)
            analysed[n][1][name] = len(terms)
    return analysed


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
