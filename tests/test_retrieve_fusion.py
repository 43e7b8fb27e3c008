"""Fusion arithmetic, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from semrank.errors import InvalidInputError
from semrank.retrieve import Hits, linear_combination, normalize_scores, rrf


def hits(ids: list[str], scores: list[float]) -> Hits:
    array = np.empty(len(ids), dtype=object)
    array[:] = ids
    return Hits(array, np.array(scores, dtype=np.float32))


A = hits(["a", "b", "c"], [9.0, 5.0, 1.0])
B = hits(["c", "d"], [0.8, 0.2])


def as_dict(result: Hits) -> dict[str, float]:
    return {str(i): float(s) for i, s in zip(result.ids, result.scores, strict=True)}


def test_hits_iterate_and_index_as_id_score_pairs() -> None:
    assert list(A) == [("a", 9.0), ("b", 5.0), ("c", 1.0)]  # TypeError: not iterable before
    assert A[0] == ("a", 9.0) and A[-1] == ("c", 1.0) and ("b", 5.0) in A
    tail = A[1:]
    assert isinstance(tail, Hits) and tail.as_dict() == {"b": 5.0, "c": 1.0}
    positions = Hits(np.array([4, 2]), np.array([0.5, 0.25], dtype=np.float32))
    assert [type(part) for part in positions[0]] == [int, float]  # Python's, not numpy's
    assert dict(positions) == {4: 0.5, 2: 0.25}
    with pytest.raises(IndexError, match="hit 3 is out of range for 3 hits"):
        A[3]


def test_hits_are_equal_when_their_ids_order_and_scores_are() -> None:
    # ValueError "the truth value of an array ... is ambiguous" before, for any two Hits.
    ranked = hits(["a", "b", "c"], [9.0, 5.0, 1.0])
    assert ranked[1:] == Hits.from_scores(np.array(["b", "c"], dtype=object), [5.0, 1.0])
    assert ranked != ranked[:2] and ranked != hits(["b", "a", "c"], [9.0, 5.0, 1.0])
    assert ranked != hits(["a", "b", "c"], [9.0, 5.0, 2.0]) and ranked != list(ranked)
    positions = Hits(np.array([4, 2]), np.array([0.5, np.nan], dtype=np.float32))
    assert positions == Hits(np.array([4, 2]), np.array([0.5, np.nan], dtype=np.float32))
    assert positions != Hits(np.array(["4", "2"], dtype=object), positions.scores)


def test_rrf_by_hand() -> None:
    fused = rrf([A, B], rank_constant=60)
    expected = {"a": 1 / 61, "b": 1 / 62, "c": 1 / 63 + 1 / 61, "d": 1 / 62}
    assert fused.ids.tolist() == ["c", "a", "b", "d"]  # b and d tie: first seen wins
    for doc_id, score in as_dict(fused).items():
        assert score == pytest.approx(expected[doc_id], rel=1e-6)


def test_rrf_window_and_weights() -> None:
    fused = rrf([A, B], rank_constant=1, rank_window_size=1, weights=[1.0, 3.0])
    # windows keep only "a" (rank 1) and "c" (rank 1): a = 1/2, c = 3/2
    assert as_dict(fused) == pytest.approx({"c": 1.5, "a": 0.5})


def test_minmax_linear_by_hand() -> None:
    fused = linear_combination([A, B], weights=[1.0, 2.0], normalizers="minmax")
    # A -> a 1, b 0.5, c 0 ; B -> c 1, d 0 ; missing documents get the list minimum (0).
    assert as_dict(fused) == pytest.approx({"a": 1.0, "b": 0.5, "c": 2.0, "d": 0.0})
    assert fused.ids.tolist()[:2] == ["c", "a"]


def test_zscore_missing_documents_get_the_list_minimum() -> None:
    z = normalize_scores(np.array([9.0, 5.0, 1.0]), "zscore")
    np.testing.assert_allclose(z, [1.2247449, 0.0, -1.2247449], rtol=1e-6)
    fused = linear_combination([A, B], normalizers=["zscore", "none"])
    # Absent from the z-scored list: its (negative) lowest; absent from the raw list: 0.
    expected = {"a": z[0], "b": z[1], "c": z[2] + 0.8, "d": z[2] + 0.2}
    assert as_dict(fused) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("normalizer", ["none", "l2_norm"])
def test_a_missing_document_gets_0_not_the_lists_lowest_score(normalizer: str) -> None:
    # As in Elasticsearch: "c", found by the second list only, gets nothing from the first
    # (it used to get the first list's lowest, 9.0, and rank above "b" under "none").
    bm25, knn = hits(["a", "b"], [10.0, 9.0]), hits(["c", "a"], [0.9, 0.1])
    fused = as_dict(linear_combination([bm25, knn], normalizers=normalizer))
    first = normalize_scores(np.array([10.0, 9.0]), normalizer)
    second = normalize_scores(np.array([0.9, 0.1]), normalizer)
    expected = {"a": first[0] + second[1], "b": first[1], "c": second[0]}
    assert fused == pytest.approx(expected, rel=1e-6)
    if normalizer == "none":
        assert list(fused) == ["a", "b", "c"]


def test_normalizer_edge_cases() -> None:
    np.testing.assert_array_equal(normalize_scores(np.array([3.0, 3.0]), "minmax"), [1.0, 1.0])
    np.testing.assert_allclose(normalize_scores(np.array([3.0, 4.0]), "l2_norm"), [0.6, 0.8])
    with pytest.raises(InvalidInputError, match="normalizer"):
        normalize_scores(np.array([1.0]), "softmax")
    with pytest.raises(InvalidInputError, match="weights"):
        rrf([A, B], weights=[1.0])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, "1", None])
def test_fusion_weights_must_be_finite_and_non_negative(bad) -> None:
    for fuse in (rrf, linear_combination):
        with pytest.raises(InvalidInputError, match="weights must be finite numbers from 0 to"):
            fuse([A, B], weights=[bad, 1.0])


def test_rank_window_size_must_be_an_integer() -> None:
    with pytest.raises(InvalidInputError, match=r"rank_window_size must be an integer, got 1\.5"):
        rrf([A, B], rank_window_size=1.5)  # type: ignore[arg-type]


def test_numpy_weights_and_window_are_accepted() -> None:
    plain = rrf([A, B], weights=[2.0, 1.0], rank_window_size=2)
    from_arrays = rrf(
        [A, B], weights=list(np.array([2.0, 1.0], np.float32)), rank_window_size=np.int64(2)
    )
    assert list(from_arrays.ids) == list(plain.ids)
    np.testing.assert_allclose(from_arrays.scores, plain.scores)


def test_a_top_k_is_the_head_of_every_longer_top_k_when_scores_tie() -> None:
    """argpartition picked an arbitrary subset of the documents tied with the k-th score: a
    top 5 held positions a top 10 left out (BM25 on a genre field: "The Hangover" first in the
    top 100 and missing from the top 5). Ties break by position, as Lucene's by doc id."""
    from semrank.retrieve._hits import top_k

    tied = np.array([1.0] * 30 + [2.0] * 3, dtype=np.float32)
    assert top_k(tied, 5).ids.tolist() == [30, 31, 32, 0, 1]
    assert top_k(tied, 10).ids.tolist() == [30, 31, 32, *range(7)]
    with_nan = np.array([np.nan, 1.0, 2.0, np.nan, 0.5], dtype=np.float32)
    assert top_k(with_nan, 2).ids.tolist() == [2, 1]
    assert top_k(with_nan, 3).ids.tolist() == [2, 1, 4]
    rng = np.random.default_rng(0)
    for trial in range(300):
        scores = rng.integers(0, 4, size=int(rng.integers(1, 60))).astype(np.float32)
        whole = top_k(scores, len(scores), positive_only=bool(trial % 2)).ids.tolist()
        for k in range(1, len(scores) + 1):
            assert top_k(scores, k, positive_only=bool(trial % 2)).ids.tolist() == whole[:k]
