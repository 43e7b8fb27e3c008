"""bm25s's index build, with its per-document Python loops done as whole-array numpy steps.

bm25s builds an index from a list of documents' term-id lists, counting each document's terms
with a ``Counter``: most of a rebuild's time (10 s of 20 s for 200,000 documents of 75 words,
plus 1.4 s turning the stored term arrays into lists, and about 550 MB for those lists). A write
to an embedded index rebuilds its BM25 index, so that time was spent on every write. Here the
counts, scores and sparse matrix come from sorting (term, document) keys, a run of documents at
a time (twice: once to count each term's documents, then to score and place the entries), and
the idf and BM25L/BM25+ correction arrays from bm25s's own functions. The result is bm25s's index,
equal array for array (``tests/test_retrieve_bm25_build.py`` compares them for every method):
bm25s still searches, saves and loads it.

The term-frequency part is computed in float64, as bm25s's per-document step does under
NumPy 2's promotion rules (NEP 50); under NumPy 1 that step is float32, so there bm25s builds
the index itself (``fast_build_applies``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

# Terms counted and scored per step: bounds the int64 and float64 temporaries (about 80 bytes
# a term). Sorting all 23 million terms of 200,000 documents at once took 1.1 GB of them.
CHUNK = 1 << 19


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
    doc_frequencies = np.zeros(n_vocab, np.int64)
    for _, words, _ in _term_counts(terms, offsets):
        doc_frequencies += np.bincount(words, minlength=n_vocab)
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
    indptr = np.zeros(n_vocab + 1, dtype=np.int64)
    np.cumsum(doc_frequencies, out=indptr[1:])
    scorer = _Scorer(
        retriever=retriever, tfc_fn=tfc_fn, lengths=lengths, average=average, idf=idf,
        nonoccurrence=nonoccurrence,
    )  # fmt: skip
    data, indices = _matrix(retriever, scorer, terms, offsets, indptr)
    retriever.nonoccurrence_array = nonoccurrence
    retriever.scores = {"data": data, "indices": indices, "indptr": indptr, "num_docs": n_docs}
    vocab_dict = dict(vocab)
    if "" not in vocab_dict:  # bm25s's empty token, after the matrix's columns
        vocab_dict[""] = max(vocab_dict.values(), default=-1) + 1
    retriever.vocab_dict = vocab_dict
    retriever.unique_token_ids_set = set(vocab_dict.values())


def _term_counts(
    terms: np.ndarray, offsets: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(document, term, count)`` of every term in every document, a run of documents holding
    about ``CHUNK`` terms at a time, each run's ordered by term and then document (the order of
    a CSC matrix's entries, which bm25s sorts its entries in)."""
    n_docs, first = len(offsets) - 1, 0
    while first < n_docs:
        end = int(np.searchsorted(offsets, offsets[first] + CHUNK, side="right")) - 1
        end = max(end, first + 1)  # a document longer than CHUNK is a step of its own
        documents = np.repeat(
            np.arange(first, end, dtype=np.int64), np.diff(offsets[first : end + 1])
        )
        keys = terms[offsets[first] : offsets[end]].astype(np.int64) * n_docs + documents
        first = end
        if not len(keys):  # empty documents only
            continue
        keys.sort()
        starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        unique = keys[starts]
        yield unique % n_docs, unique // n_docs, np.diff(np.append(starts, len(keys)))


def _matrix(
    retriever: Any, scorer: _Scorer, terms: np.ndarray, offsets: np.ndarray, indptr: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The CSC matrix's ``(data, indices)``: each run of documents' entries placed after the
    earlier runs' entries of the same term, so that each term's documents stay in order."""
    data = np.empty(indptr[-1], dtype=retriever.dtype)
    indices = np.empty(indptr[-1], dtype=retriever.int_dtype)
    next_free = indptr[:-1].copy()
    for docs, words, counts in _term_counts(terms, offsets):
        starts = np.flatnonzero(np.concatenate(([True], words[1:] != words[:-1])))
        runs = np.diff(np.append(starts, len(words)))
        at = np.arange(len(words)) + np.repeat(next_free[words[starts]] - starts, runs)
        next_free[words[starts]] += runs
        data[at] = scorer.scores(docs, words, counts)
        indices[at] = docs
    return data, indices


@dataclass(frozen=True, kw_only=True)
class _Scorer:
    """Scores entries as bm25s scores one document's: ``idf * tfc`` (minus the non-occurrence
    score for BM25L/BM25+), in float64 until placed in the index's dtype."""

    retriever: Any
    tfc_fn: Any
    lengths: np.ndarray
    average: Any
    idf: np.ndarray
    nonoccurrence: np.ndarray | None

    def scores(self, docs: np.ndarray, words: np.ndarray, counts: np.ndarray) -> np.ndarray:
        retriever = self.retriever
        tfc = self.tfc_fn(
            tf_array=counts.astype(retriever.dtype), l_d=self.lengths[docs], l_avg=self.average,
            k1=retriever.k1, b=retriever.b, delta=retriever.delta,
        )  # fmt: skip
        scores = self.idf[words] * tfc
        if self.nonoccurrence is not None:
            scores -= self.nonoccurrence[words]
        return scores
