"""bm25s's index build, with its per-document Python loops done as whole-array numpy steps.

bm25s builds an index from a list of documents' term-id lists, counting each document's terms
with a ``Counter``: most of a rebuild's time (10 s of 20 s for 200,000 documents of 75 words,
plus 1.4 s turning the stored term arrays into lists, and about 550 MB for those lists). A write
to an embedded index rebuilds its BM25 index, so that time was spent on every write. Here the
counts, scores and sparse matrix come from sorting one array of (term, document) keys, and the
idf and BM25L/BM25+ correction arrays from bm25s's own functions. The result is bm25s's index,
equal array for array (``tests/test_retrieve_bm25_build.py`` compares them for every method):
bm25s still searches, saves and loads it.

The term-frequency part is computed in float64, as bm25s's per-document step does under
NumPy 2's promotion rules (NEP 50); under NumPy 1 that step is float32, so there bm25s builds
the index itself (``fast_build_applies``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Pairs scored per step: bounds the float64 temporaries (about 8 bytes x 4 per pair).
CHUNK = 1 << 22


def fast_build_applies() -> bool:
    """Whether a NumPy float64 scalar plus a float32 array is float64 here (NEP 50)."""
    return bool((np.float64(1.0) + np.ones(1, np.float32)).dtype == np.float64)


def build_into(
    retriever: Any, terms: np.ndarray, offsets: np.ndarray, vocab: dict[str, int]
) -> None:
    """Index the documents ``terms[offsets[n]:offsets[n + 1]]`` (ids into ``vocab``) into the
    fresh ``bm25s.BM25`` ``retriever``, setting what its ``index()`` sets."""
    from bm25s import scoring

    lengths = np.diff(offsets).astype(np.int64)
    n_docs, n_vocab = len(lengths), len(vocab)
    docs, words, counts = _term_counts(terms, lengths, n_docs)
    doc_frequencies = np.bincount(words, minlength=n_vocab)
    frequencies = dict(enumerate(doc_frequencies.tolist()))
    average = lengths.mean() if n_docs else np.float64("nan")
    idf_fn = scoring._select_idf_scorer(retriever.idf_method)
    tfc_fn = scoring._select_tfc_scorer(retriever.method)
    nonoccurrence = None
    if retriever.method in retriever.methods_requiring_nonoccurrence:
        nonoccurrence = scoring._build_nonoccurrence_array(
            doc_frequencies=frequencies, n_docs=n_docs, compute_idf_fn=idf_fn,
            calculate_tfc_fn=tfc_fn, l_d=average, l_avg=average, k1=retriever.k1,
            b=retriever.b, delta=retriever.delta, dtype=retriever.dtype,
        )  # fmt: skip
    idf = scoring._build_idf_array(
        doc_frequencies=frequencies, n_docs=n_docs, compute_idf_fn=idf_fn, dtype=retriever.dtype
    )
    data = _scores(retriever, tfc_fn, (docs, words, counts), lengths, average, idf, nonoccurrence)
    indptr = np.zeros(n_vocab + 1, dtype=np.int64)
    np.cumsum(doc_frequencies, out=indptr[1:])
    retriever.nonoccurrence_array = nonoccurrence
    retriever.scores = {
        "data": data,
        "indices": docs.astype(retriever.int_dtype),
        "indptr": indptr,
        "num_docs": n_docs,
    }
    vocab_dict = dict(vocab)
    if "" not in vocab_dict:  # bm25s's empty token, after the matrix's columns
        vocab_dict[""] = max(vocab_dict.values(), default=-1) + 1
    retriever.vocab_dict = vocab_dict
    retriever.unique_token_ids_set = set(vocab_dict.values())


def _term_counts(
    terms: np.ndarray, lengths: np.ndarray, n_docs: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(document, term, count)`` of every term in every document, ordered by term and then
    document: the order of a CSC matrix's entries (bm25s sorts its entries so)."""
    if not len(terms):
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    documents = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
    keys = np.sort(terms.astype(np.int64) * n_docs + documents)
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    counts = np.diff(np.append(starts, len(keys)))
    unique = keys[starts]
    return unique % n_docs, unique // n_docs, counts


def _scores(
    retriever: Any,
    tfc_fn: Any,
    entries: tuple[np.ndarray, np.ndarray, np.ndarray],
    lengths: np.ndarray,
    average: Any,
    idf: np.ndarray,
    nonoccurrence: np.ndarray | None,
) -> np.ndarray:
    """Each entry's score, computed as bm25s computes one document's: ``idf * tfc`` (minus the
    non-occurrence score for BM25L/BM25+), cast to the index's dtype."""
    docs, words, counts = entries
    data = np.empty(len(docs), dtype=retriever.dtype)
    for start in range(0, len(docs), CHUNK):
        part = slice(start, start + CHUNK)
        tf = counts[part].astype(retriever.dtype)
        tfc = tfc_fn(
            tf_array=tf, l_d=lengths[docs[part]], l_avg=average,
            k1=retriever.k1, b=retriever.b, delta=retriever.delta,
        )  # fmt: skip
        scores = idf[words[part]] * tfc
        if nonoccurrence is not None:
            scores -= nonoccurrence[words[part]]
        data[part] = scores
    return data
