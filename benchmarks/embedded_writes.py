"""What one write costs the next search of an embedded index past the ANN threshold.

    python benchmarks/embedded_writes.py --documents 30000 --rounds 5

The documents carry random unit vectors from a stand-in embedder (a hash of the text seeds
them), so the time measured is the index's own: the first search builds the HNSW graph and the
BM25 index from the documents, and each round then upserts one document (alternately a new one
and a rewritten one) with ``refresh=False`` and times the next vector search and the next BM25
search, which bring those structures up to date (``upsert``'s default refresh does the same work
before it returns). Medians over the rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from _cli import run  # benchmarks/ is on sys.path

from semrank.store import create_index

WORDS = [f"term{n}" for n in range(20_000)]


class HashEmbedder:
    """Unit vectors seeded by each text's digest: the same text always maps to the same one."""

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
            rows.append(np.random.default_rng(seed).standard_normal(self.dim))
        matrix = np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)
        return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def document(number: int, rng: np.random.Generator) -> dict[str, str]:
    return {"id": f"d{number}", "text": " ".join(rng.choice(WORDS, size=80))}


def timed(action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--bm25-only", action="store_true", help="no vectors: time BM25 alone (no graph build)"
    )
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    embedder = HashEmbedder()
    query = embedder.embed(["a query"])[0]
    with tempfile.TemporaryDirectory() as home:
        if args.bm25_only:
            index = create_index("writes", home=Path(home), embedding_model=None)
        else:
            index = create_index("writes", home=Path(home), ann_threshold=20_000, embedder=embedder)
        index.upsert((document(n, rng) for n in range(args.documents)), refresh=False)
        search_vector = (
            (lambda: None) if args.bm25_only else lambda: index.search_vector(query, k=10)
        )
        vector_build = timed(search_vector)
        bm25_build = timed(lambda: index.search_bm25("term1 term2", k=10))
        vector_rounds, bm25_rounds = [], []
        for round_number in range(args.rounds):
            number = args.documents + round_number if round_number % 2 else round_number
            index.upsert([document(number, rng)], refresh=False)
            vector_rounds.append(timed(search_vector))
            bm25_rounds.append(timed(lambda: index.search_bm25("term1 term2", k=10)))
        index.close()
    print(f"{args.documents} documents, {args.rounds} rounds of one upsert")
    if not args.bm25_only:  # no vector search ran: its lines would read 0.00 s
        graph = "graph built" if args.documents >= 20_000 else "exact, under the ANN threshold"
        print(f"vector search after ingest ({graph}): {vector_build:8.2f} s")
        median = statistics.median(vector_rounds)
        print(f"vector search after one write, median:      {median:8.2f} s")
    print(f"BM25 search after ingest (index built):     {bm25_build:8.2f} s")
    print(f"BM25 search after one write, median:        {statistics.median(bm25_rounds):8.2f} s")


if __name__ == "__main__":
    run(main)
