"""Golden/parity: semrank's whole-array BM25 build against bm25s's own ``index()``, array for
array, for every scoring method bm25s offers."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from semrank.retrieve import _bm25_build
from semrank.retrieve._bm25 import BM25Params, DocTokens

bm25s = pytest.importorskip("bm25s")
METHODS = ("robertson", "lucene", "atire", "bm25l", "bm25+")


def _corpus(seed: int, n_docs: int, n_vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """Zipf-like term ids, documents of 0 to 60 terms (some empty, some repeating a term),
    and a few vocabulary ids no document uses."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 61, n_docs)
    if n_docs > 1:
        lengths[1] = 40
    weights = 1 / np.arange(1, n_vocab - 2)
    terms = rng.choice(n_vocab - 3, size=int(lengths.sum()), p=weights / weights.sum())
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    if n_docs > 1:  # one document that says one word many times
        terms[offsets[1] : offsets[2]] = 5
    return terms.astype(np.int32), offsets.astype(np.int64)


def _by_bm25s(method: str, terms: np.ndarray, offsets: np.ndarray, vocab: dict[str, int]) -> Any:
    retriever = bm25s.BM25(method=method, k1=1.2, b=0.75, delta=0.5)
    corpus = [terms[a:b].tolist() for a, b in pairwise(offsets)]
    retriever.index((corpus, dict(vocab)), show_progress=False)
    return retriever


@pytest.mark.skipif(not _bm25_build.fast_build_applies(), reason="NumPy 1: bm25s builds itself")
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("seed", "n_docs", "n_vocab"), [(0, 1, 8), (1, 300, 50), (2, 2000, 700)])
def test_the_index_equals_bm25s_own_array_for_array(
    method: str, seed: int, n_docs: int, n_vocab: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_bm25_build, "CHUNK", 97)  # scored in many steps, as a large index is
    terms, offsets = _corpus(seed, n_docs, n_vocab)
    vocab = {f"w{number}": number for number in range(n_vocab)}
    expected = _by_bm25s(method, terms, offsets, vocab)
    built = bm25s.BM25(method=method, k1=1.2, b=0.75, delta=0.5)
    _bm25_build.build_into(built, terms, offsets, vocab)

    for key in ("data", "indices", "indptr"):
        assert built.scores[key].dtype == expected.scores[key].dtype, key
        np.testing.assert_array_equal(built.scores[key], expected.scores[key], err_msg=key)
    assert built.scores["num_docs"] == expected.scores["num_docs"]
    assert built.vocab_dict == expected.vocab_dict
    assert built.unique_token_ids_set == expected.unique_token_ids_set
    if expected.nonoccurrence_array is None:
        assert built.nonoccurrence_array is None
    else:
        np.testing.assert_array_equal(built.nonoccurrence_array, expected.nonoccurrence_array)
    query = ["w0", "w5", "w7"]
    np.testing.assert_array_equal(built.get_scores(query), expected.get_scores(query))


def test_combined_terms_are_numbered_as_np_unique_numbers_them() -> None:
    """A write's terms: the old documents' and the rewritten ones', over the terms they use."""
    params = BM25Params()
    old = DocTokens.analyse(["fleas bite dogs", "cats purr", "dogs bark at cats"], params)
    new = DocTokens.analyse(["zebras graze", "fleas jump"], params)
    sources = [(False, 0), (True, 0), (False, 2), (True, 1)]
    combined = DocTokens.combine(old, new, sources)
    rebuilt = DocTokens.analyse(
        ["fleas bite dogs", "zebras graze", "dogs bark at cats", "fleas jump"], params
    )
    words = [[combined.vocab[t] for t in doc] for doc in combined.documents()]
    assert words == [[rebuilt.vocab[t] for t in doc] for doc in rebuilt.documents()]
    assert list(combined.vocab) == sorted(combined.vocab, key=[*old.vocab, *new.vocab].index)
    assert "purr" not in combined.vocab  # its only document was left out


@pytest.mark.skipif(not _bm25_build.fast_build_applies(), reason="NumPy 1: bm25s builds itself")
def test_steps_of_the_build_skip_empty_documents_and_keep_a_long_one_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Built about 13 terms at a time: documents longer than a step (one word said 40 times),
    and steps holding only empty documents."""
    monkeypatch.setattr(_bm25_build, "CHUNK", 13)
    rng = np.random.default_rng(5)
    lengths = np.array([0, 0, 40, 0, 0, 5, 30, 0, 13, 14, 1, 0])
    terms = rng.integers(0, 9, int(lengths.sum())).astype(np.int32)
    terms[:40] = 3
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    vocab = {f"w{number}": number for number in range(10)}
    expected = _by_bm25s("lucene", terms, offsets, vocab)
    built = bm25s.BM25(method="lucene", k1=1.2, b=0.75, delta=0.5)
    _bm25_build.build_into(built, terms, offsets, vocab)
    for key in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(built.scores[key], expected.scores[key], err_msg=key)


@pytest.mark.parametrize(
    "settings",
    [{}, {"stemmer": None}, {"stopwords": None}, {"analysis": 1}, {"analysis": 2}, {"analysis": 3}],
)
def test_texts_analysed_in_steps_get_the_terms_and_numbers_of_one_step(
    settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few texts at a time (the Python lists of a whole corpus took 480 MB at 200,000
    documents), numbered as bm25s numbers every text's terms at once: the same files."""
    from semrank.retrieve import _bm25

    monkeypatch.setattr(_bm25, "ANALYSIS_STEP", 2)
    params = BM25Params(**settings)
    texts = [
        "Runners running a run", "", "the of and", "İstanbul boğazı",  # noqa: RUF001
        "re\u0301sume\u0301 cafés", "北京是中国的首都", "runs ran dogs", "Dogs bark at cats",
        "दिल्ली शहर", "cats purr",
    ]  # fmt: skip
    tokens = _bm25.DocTokens.analyse(texts, params)
    at_once = _bm25._tokenize(texts, params, return_ids=True)
    assert tokens.documents() and [doc.tolist() for doc in tokens.documents()] == at_once.ids
    assert tokens.vocab == tuple(sorted(at_once.vocab, key=at_once.vocab.__getitem__))
    streamed = _bm25.DocTokens.analyse(iter(texts), params)  # an index's rows, as read
    assert streamed.vocab == tokens.vocab
    assert streamed.terms.tolist() == tokens.terms.tolist()
    assert streamed.offsets.tolist() == tokens.offsets.tolist()
