"""What a document filter costs the PostgreSQL store's searches, and what the filter index costs
its writes.

    python benchmarks/postgres_filters.py --dsn postgresql://user@host/db --documents 100000

Creates an index of generated documents (random words, a ``source`` field of 1,000 values, a
``lang`` of 5, a nested ``meta.author``) in ``--dsn``'s database, timing the ingest, then times
BM25 and vector searches with selective and broad ``term`` filters (medians of ``--rounds``) and
prints the plan of each (``EXPLAIN ANALYZE``, its node lines). ``--without-doc-index`` drops the
GIN index on ``doc`` first (the database is the benchmark's: the index is not recreated), to
measure what it costs the ingest. The index is dropped at the end unless ``--keep``;
``--existing`` searches the one a run kept (no ingest: the plans of another semrank's SQL on the
same rows).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from _cli import run  # benchmarks/ is on sys.path

from semrank.retrieve import parse_filter
from semrank.store import create_index
from semrank.store.postgres import PostgresStore
from semrank.store.postgres import _queries as q
from semrank.store.postgres._filters import filter_condition

WORDS = [f"term{n}" for n in range(20_000)]
LANGS = ["en", "en", "en", "de", "fr", "es", "ja"]
FILTERS = {
    "selective term (0.1%)": {"term": {"source": "src7"}},
    "selective nested term (0.1%)": {"term": {"meta.author": "author7"}},
    "broad term (43%)": {"term": {"lang": "en"}},
    "terms, 3 values (0.3%)": {"terms": {"source": ["src1", "src2", "src3"]}},
}


class HashEmbedder:
    """Unit vectors seeded by each text's digest: the same text always maps to the same one."""

    dim = 384

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
            rows.append(np.random.default_rng(seed).standard_normal(self.dim))
        matrix = np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)
        return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def documents(count: int) -> Iterator[dict[str, Any]]:
    rng = np.random.default_rng(0)
    for n in range(count):
        yield {
            "id": f"d{n}",
            "text": " ".join(rng.choice(WORDS, size=30)),
            "source": f"src{n % 1000}",
            "lang": LANGS[n % len(LANGS)],
            "meta": {"author": f"author{n % 1000}", "year": 2000 + n % 25},
        }


def median_seconds(action: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def plan(store: PostgresStore, kind: str, spec: Any, vector: np.ndarray) -> list[str]:
    """The plan's node lines of the store's BM25 (all fields) or vector query for ``spec``."""
    from psycopg import sql

    keep, args = filter_condition(parse_filter(spec))
    if kind == "bm25":
        query = q.bm25_query(store._part, None, keep)
        terms = q.analyse(["term1 term2"], store.settings.bm25)[0]
        args.update(index=store.name, k1=1.2, b=0.75, k=10, terms=terms, query="")
    else:  # as the store's first try runs it (its exact rerun, when short of k, is not shown)
        query = q.knn_query(store._part, keep)
        args.update(vector=q.vector_literal(vector), k=10)
    with store._connection() as conn, conn.transaction():
        conn.execute("SET LOCAL hnsw.iterative_scan = strict_order")
        conn.execute("SET LOCAL hnsw.max_scan_tuples = 20000")
        rows = conn.execute(sql.SQL("EXPLAIN (ANALYZE, COSTS off) ") + query, args).fetchall()
    wanted = ("Scan", "Join", "Sort", "Limit", "Execution", "Recheck", "Rows Removed")
    return [row[0] for row in rows if any(word in row[0] for word in wanted)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--without-doc-index", action="store_true")
    parser.add_argument("--plans", action="store_true", help="print each search's plan")
    parser.add_argument("--keep", action="store_true", help="keep the index at the end")
    parser.add_argument("--existing", action="store_true", help="search the index kept")
    args = parser.parse_args()
    embedder = HashEmbedder()
    if args.existing:
        store = PostgresStore(args.dsn, "filters_bench", embedder=embedder)
    else:
        created = create_index("filters_bench", store=args.dsn, embedder=embedder)
        assert isinstance(created, PostgresStore)
        store = created
    try:
        if args.without_doc_index:
            with store._connection() as conn:
                conn.execute("DROP INDEX IF EXISTS semrank.documents_doc")
        if not args.existing:
            started = time.perf_counter()
            store.upsert(documents(args.documents))
            print(f"ingest of {args.documents} documents: {time.perf_counter() - started:.1f} s")
        with store._connection() as conn:
            conn.execute(f"ANALYZE {store._part_name}")
        vector = embedder.embed(["a query"])[0]
        searches = {
            "bm25": lambda flt: store.search_bm25("term1 term2", k=10, filter=flt),
            "vector": lambda flt: store.search_vector(vector, k=10, filter=flt),
        }
        for kind, search in searches.items():
            seconds = median_seconds(lambda search=search: search(None), args.rounds)
            print(f"{kind:6} no filter: {1000 * seconds:8.1f} ms")
            for name, spec in FILTERS.items():
                seconds = median_seconds(lambda s=search, f=spec: s(f), args.rounds)
                print(f"{kind:6} {name:30} {1000 * seconds:8.1f} ms")
                if args.plans:
                    print("\n".join(f"    {line}" for line in plan(store, kind, spec, vector)))
    finally:
        store.close()
        if not args.keep:
            from semrank.store.postgres import drop_postgres_index

            drop_postgres_index(args.dsn, "filters_bench")


if __name__ == "__main__":
    run(main)
