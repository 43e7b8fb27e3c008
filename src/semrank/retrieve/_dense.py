"""Dense retrieval over L2-normalised embeddings: exact (one matmul) or HNSW (usearch).

Inner product equals cosine similarity for normalised vectors. Exact search costs one
``(n, dim) @ (dim,)`` product, a few milliseconds up to ~10^5 vectors; past a size threshold an
HNSW graph (usearch: a single-file index with prebuilt wheels) answers in sub-linear time.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from semrank.errors import BackendUnavailableError, InvalidInputError
from semrank.retrieve._hits import Hits, top_k

# Below this many vectors exact search is fast enough and always right.
DEFAULT_ANN_THRESHOLD = 20_000
MIN_BEAM = 200  # smallest HNSW search beam (ef)


@runtime_checkable
class TextEmbedder(Protocol):
    """What dense retrieval needs from an embedding model (``semrank.runtime.Embedder``)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 ``(len(texts), dim)``, L2-normalised. (An ``embed_queries`` method, where
        there is one, embeds queries: a model with a query prompt reads them otherwise.)"""
        ...


def _usearch_index() -> Any:
    from semrank.runtime import load_onnxruntime_first

    load_onnxruntime_first()  # afterwards it would crash the process
    try:
        from usearch.index import Index
    except ImportError as exc:
        raise BackendUnavailableError(
            "HNSW search needs the usearch package: pip install usearch (or 'semrank[search]'); "
            "indexes below the ANN threshold use exact search without it"
        ) from exc
    return Index


def unit_query_vector(vector: np.ndarray, dim: int) -> np.ndarray:
    """``vector`` as a float32 unit vector: the stored vectors are unit length, so only a unit
    query makes each inner product a cosine (a longer one would scale every score)."""
    try:
        query = np.asarray(vector, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):  # numpy's "could not convert string to float" named no fix
        raise InvalidInputError(
            f"a query vector is numbers (the query's embedding), got {type(vector).__name__} "
            f"({vector!r:.60}); embed a text first (a store's embed_queries([text])[0]), or "
            "search by text with semrank.pipeline's Dense() retriever"
        ) from None
    if query.shape[0] != dim:
        raise InvalidInputError(
            f"query vector has {query.shape[0]} dimensions but the index stores {dim}-d vectors"
        )
    peak = float(np.abs(query).max()) if query.size else 0.0
    if not np.isfinite(peak) or peak == 0.0:
        raise InvalidInputError(
            "query vector is all zeros or not finite, so it has no direction to compare by "
            "cosine similarity; give a non-zero vector of finite numbers (the query's embedding)"
        )
    query = query / peak  # to the largest component first: a norm of huge values overflows
    return (query / np.linalg.norm(query)).astype(np.float32)


class ExactVectorIndex:
    """Brute-force inner-product search."""

    kind = "exact"

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors: np.ndarray = np.asarray(vectors, dtype=np.float32)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def search(
        self,
        vector: np.ndarray,
        k: int,
        num_candidates: int | None = None,
        allowed: np.ndarray | None = None,
    ) -> Hits:
        """The ``k`` nearest rows; with ``allowed`` (rows, ascending), the nearest of those."""
        if len(self) == 0:
            return Hits.empty(np.int64)
        scores = self.vectors @ unit_query_vector(vector, self.dim)
        if allowed is None:
            return top_k(scores, k)
        hits = top_k(scores[allowed], k)
        return Hits(allowed[hits.ids], hits.scores)


# usearch adds vectors from several threads at once by default, and such adds leave some nodes
# unreachable by any search (usearch issue #735: 1-5 of 300 clustered vectors in 5 of 8 builds
# here, for good): a document its own text could not find. One thread builds every node in.
ADD_THREADS = 1
# Saved graphs built that way say so; older ones are built again once.
SERIAL_GRAPH = "serial"


class HNSWVectorIndex:
    """Approximate inner-product search on a usearch HNSW graph; hits carry the keys the
    vectors were added under."""

    kind = "hnsw"

    def __init__(self, index: object, dim: int, size: int) -> None:
        self._index = index
        self.dim = dim
        self._size = size
        # The beam width is a setting of the shared graph, not an argument of its search: set
        # and searched under one lock, or a search runs with another thread's width.
        self._search_lock = threading.Lock()

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        *,
        keys: np.ndarray | None = None,
        connectivity: int = 32,
        expansion_add: int = 200,
    ) -> HNSWVectorIndex:
        """A graph over ``vectors``; a hit's id is its row's ``keys`` entry (default: the row
        position)."""
        Index = _usearch_index()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index = Index(
            ndim=vectors.shape[1],
            metric="ip",
            dtype="f32",
            connectivity=connectivity,
            expansion_add=expansion_add,
        )
        keys = np.arange(len(vectors)) if keys is None else keys
        index.add(np.asarray(keys, dtype=np.uint64), vectors, threads=ADD_THREADS)
        return cls(index, int(vectors.shape[1]), len(vectors))

    def update(self, stale: np.ndarray, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Remove the ``stale`` keys, then add ``vectors`` under ``keys`` (a rewritten row is
        stale and added again): milliseconds per row where building the graph again takes
        minutes. Only for an index loaded with ``view=False``."""
        if len(stale):
            self._index.remove(np.asarray(stale, dtype=np.uint64))  # type: ignore[attr-defined]
        if len(keys):
            added = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(keys), self.dim)
            graph: Any = self._index
            graph.add(np.asarray(keys, dtype=np.uint64), added, threads=ADD_THREADS)
        self._size = len(self._index)  # type: ignore[arg-type]

    def save(self, path: Path) -> None:
        self._index.save(str(path))  # type: ignore[attr-defined]

    @classmethod
    def load(cls, path: Path, dim: int, size: int, *, view: bool = True) -> HNSWVectorIndex:
        Index = _usearch_index()
        index = Index.restore(str(path), view=view)
        if index is None:
            raise FileNotFoundError(path)
        return cls(index, dim, size)

    def __len__(self) -> int:
        return self._size

    def search(
        self,
        vector: np.ndarray,
        k: int,
        num_candidates: int | None = None,
        allowed: np.ndarray | None = None,
        *,
        exact_up_to: int = DEFAULT_ANN_THRESHOLD,
    ) -> Hits:
        """``num_candidates`` is the HNSW beam width (ef), as in Elasticsearch's knn.

        ``allowed``: the keys hits may have (ascending), a filter applied before the top ``k``
        is taken, not after: up to ``exact_up_to`` of them are searched exactly (fewer vectors
        than the graph is worth); more, the graph is searched for more hits than ``k``, more
        each time, until ``k`` of them are allowed or every node was returned."""
        if self._size == 0 or k <= 0:
            return Hits.empty(np.int64)
        # A beam below ~200 loses recall on 384-d embeddings; wider costs little at this size.
        query = unit_query_vector(vector, self.dim)
        if allowed is None:
            return self._search_graph(query, min(k, self._size), num_candidates)
        if len(allowed) <= exact_up_to:
            return self._search_exactly(query, k, allowed)
        # As many as k allowed hits are expected among the nearest k / share, twice that.
        count = min(self._size, max(k, math.ceil(2 * k * self._size / max(len(allowed), 1))))
        while True:
            found = self._search_graph(query, count, num_candidates)
            kept = np.isin(found.ids, allowed)
            if int(kept.sum()) >= k or count >= self._size:
                return Hits(found.ids[kept], found.scores[kept]).top(k)
            count = min(self._size, 4 * count)

    def _search_graph(self, query: np.ndarray, count: int, num_candidates: int | None) -> Hits:
        index = self._index
        with self._search_lock:
            # The beam never needs to pass the index's size (a huge num_candidates ran it out
            # of memory).
            beam = max(count, min(num_candidates or 0, self._size), MIN_BEAM)
            index.expansion_search = beam  # type: ignore[attr-defined]
            matches = index.search(query, count)  # type: ignore[attr-defined]
        # usearch's "ip" distance is 1 - dot product.
        scores = 1.0 - np.asarray(matches.distances, dtype=np.float32)
        return Hits.from_scores(np.asarray(matches.keys, dtype=np.int64), scores)

    def _search_exactly(self, query: np.ndarray, k: int, allowed: np.ndarray) -> Hits:
        """The nearest ``k`` of the ``allowed`` keys by their stored vectors."""
        stored = self._index.get(np.asarray(allowed, dtype=np.uint64))  # type: ignore[attr-defined]
        present = [i for i, vector in enumerate(stored) if vector is not None]
        if not present:
            return Hits.empty(np.int64)
        vectors = np.stack([np.asarray(stored[i], dtype=np.float32) for i in present])
        hits = top_k(vectors @ query, k)
        keys = np.asarray(allowed, dtype=np.int64)[present]
        return Hits(keys[hits.ids], hits.scores)


VectorIndex = ExactVectorIndex | HNSWVectorIndex


def build_vector_index(
    vectors: np.ndarray, *, ann_threshold: int = DEFAULT_ANN_THRESHOLD
) -> VectorIndex:
    """Exact search below ``ann_threshold`` vectors, HNSW from there on."""
    if len(vectors) >= ann_threshold:
        return HNSWVectorIndex.build(vectors)
    return ExactVectorIndex(vectors)
