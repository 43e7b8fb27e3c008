"""Dense retrieval: exact search, and HNSW recall against it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from semrank.errors import InvalidInputError
from semrank.retrieve import ExactVectorIndex, HNSWVectorIndex, build_vector_index
from semrank.runtime import load_onnxruntime_first

# importorskip("usearch") below loads usearch; ONNX Runtime imported after it crashes the process.
load_onnxruntime_first()


def unit_vectors(count: int, dim: int, seed: int) -> np.ndarray:
    """Clustered unit vectors: closer to real embeddings than isotropic noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dim))
    vectors = centres[rng.integers(0, 50, size=count)] + 0.6 * rng.normal(size=(count, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_exact_search_is_the_argmax_of_the_dot_product() -> None:
    vectors = unit_vectors(300, 16, seed=1)
    query = vectors[42]
    hits = ExactVectorIndex(vectors).search(query, 5)
    assert hits.ids[0] == 42 and hits.scores[0] == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(hits.ids, np.argsort(-(vectors @ query))[:5])
    with pytest.raises(InvalidInputError, match="dimensions"):
        ExactVectorIndex(vectors).search(np.ones(3), 5)


def test_a_text_for_a_query_vector_is_refused_saying_how_to_embed_it() -> None:
    """index.search_vector("space travel") raised numpy's bare "could not convert string to
    float" ValueError."""
    index = ExactVectorIndex(unit_vectors(20, 8, seed=3))
    for wrong in ("space travel", ["a", "b"], {"x": 1.0}):
        with pytest.raises(InvalidInputError, match=r"query vector is numbers.*embed_queries"):
            index.search(wrong, 5)  # type: ignore[arg-type]


def test_a_query_of_any_length_scores_cosines() -> None:
    vectors = unit_vectors(50, 8, seed=5)
    unit = ExactVectorIndex(vectors).search(vectors[7], 5)
    scaled = ExactVectorIndex(vectors).search(3 * vectors[7].astype(np.float64), 5)
    np.testing.assert_array_equal(scaled.ids, unit.ids)
    np.testing.assert_allclose(scaled.scores, unit.scores, rtol=1e-6)
    assert scaled.scores[0] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(InvalidInputError, match=r"all zeros.*non-zero vector"):
        ExactVectorIndex(vectors).search(np.zeros(8), 5)


def test_hnsw_recall_at_10_against_exact(tmp_path: Path) -> None:
    vectors = unit_vectors(10_000, 64, seed=2)
    queries = unit_vectors(200, 64, seed=3)
    exact = ExactVectorIndex(vectors)
    ann = build_vector_index(vectors, ann_threshold=5_000)
    assert isinstance(ann, HNSWVectorIndex)
    ann.save(tmp_path / "hnsw.usearch")
    loaded = HNSWVectorIndex.load(tmp_path / "hnsw.usearch", 64, len(vectors))
    found = 0
    for query in queries:
        truth = set(exact.search(query, 10).ids.tolist())
        found += len(truth & set(loaded.search(query, 10, num_candidates=100).ids.tolist()))
    recall = found / (10 * len(queries))
    assert recall >= 0.95, f"HNSW recall@10 {recall:.3f} < 0.95"


def test_every_vector_of_a_graph_is_found_by_itself() -> None:
    """usearch's default concurrent adds left nodes no search reaches (its issue #735): 1-5 of
    300 clustered vectors in most builds, documents their own text could not find, for good.
    Graphs are built and updated by one thread."""
    rng = np.random.default_rng(0)
    for build in range(6):
        centres = rng.normal(size=(10, 384))
        vectors = centres[rng.integers(0, 10, 300)] + 0.3 * rng.normal(size=(300, 384))
        vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
        graph = HNSWVectorIndex.build(vectors[:200])
        graph.update(np.zeros(0, np.int64), np.arange(200, 300), vectors[200:])
        missed = [n for n in range(300) if graph.search(vectors[n], 1).ids.tolist() != [n]]
        assert missed == [], f"build {build}: vectors {missed} are not found by themselves"


def test_small_indexes_stay_exact() -> None:
    assert isinstance(build_vector_index(unit_vectors(10, 8, seed=4)), ExactVectorIndex)


def test_onnx_runtime_still_loads_after_an_hnsw_search() -> None:
    """usearch loaded before onnxruntime crashed the process: a dense search on an HNSW index
    followed by an ONNX Runtime re-ranker (``--backend onnx``) died with SIGSEGV."""
    import subprocess
    import sys

    pytest.importorskip("usearch")
    code = (
        "import numpy as np\n"
        "from semrank.retrieve._dense import HNSWVectorIndex\n"
        "vectors = np.eye(16, dtype=np.float32)\n"
        "print(HNSWVectorIndex.build(vectors).search(vectors[3], 1).ids[0])\n"
        "import onnxruntime\n"
        "print('loaded')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "loaded"]


def test_hnsw_searches_in_threads_use_their_own_beam_width() -> None:
    """The beam width is a setting of the shared graph: a search with a wide beam in one thread
    changed the results of narrow searches running in others (and the other way round)."""
    from concurrent.futures import ThreadPoolExecutor

    pytest.importorskip("usearch")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    # A sparse graph, so that the beam width changes which neighbours are found.
    index = HNSWVectorIndex.build(vectors, connectivity=4, expansion_add=16)
    queries = rng.standard_normal((40, 64)).astype(np.float32)
    alone_wide = [index.search(q, 500, 2000).ids for q in queries]
    alone_narrow = [index.search(q, 5).ids for q in queries]

    def differences(wide: bool, start: int) -> int:
        found = 0
        for step in range(60 if wide else 600):
            i = (start + step) % len(queries)
            if wide:
                found += not np.array_equal(index.search(queries[i], 500, 2000).ids, alone_wide[i])
            else:
                found += not np.array_equal(index.search(queries[i], 5).ids, alone_narrow[i])
        return found

    with ThreadPoolExecutor(6) as pool:
        runs = [pool.submit(differences, t % 2 == 0, t) for t in range(6)]
        assert [run.result() for run in runs] == [0] * 6


def test_a_filtered_hnsw_search_widens_until_k_allowed_hits_are_found() -> None:
    """The allowed keys are the vectors farthest from the query: the graph's nearest hits hold
    none of them, so the search widens (to the whole graph) rather than return fewer than k;
    and a few allowed keys are searched exactly. Both give exact filtered search's top k."""
    pytest.importorskip("usearch")
    vectors = unit_vectors(2_000, 16, seed=4)
    keys = np.arange(len(vectors)) * 7 + 3  # keys are not positions
    graph = HNSWVectorIndex.build(vectors, keys=keys)
    exact = ExactVectorIndex(vectors)
    query = vectors[0]
    farthest = np.sort(np.argsort(vectors @ query)[:100])  # positions, ascending
    expected = exact.search(query, 10, allowed=farthest)
    for exact_up_to in (0, 100):  # widened, then exact
        found = graph.search(query, 10, None, keys[farthest], exact_up_to=exact_up_to)
        np.testing.assert_array_equal(found.ids, keys[expected.ids])
        np.testing.assert_allclose(found.scores, expected.scores, atol=1e-5)
    assert len(graph.search(query, 10, None, keys[:0])) == 0  # nothing allowed: no hits
