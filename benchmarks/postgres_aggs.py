"""What a search's aggregations cost the PostgreSQL store when the search matches many
documents.

    python benchmarks/postgres_aggs.py --dsn postgresql://user@host/db --documents 100000

Creates an index of generated documents (a ``source`` field of 1,000 values, a ``price``, a
date ``when`` of three values per document) written in SQL (no embedding, no BM25 analysis in
Python: each document's ``terms`` are written as semrank would analyse ``"common"``), then times
(medians of ``--rounds``) a ``match`` search for a word every document holds, ``size: 0``, with
terms+avg+range aggregations, and a daily ``date_histogram`` of the multi-date field, and the
same aggregations with ``store.aggregate`` over the whole index (a filter: no ids). The index is
dropped at the end.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from _cli import run  # benchmarks/ is on sys.path

from semrank.pipeline import search
from semrank.store import create_index
from semrank.store.postgres import PostgresStore, drop_postgres_index

AGGS = {
    "sources": {"terms": {"field": "source"}},
    "price": {"avg": {"field": "price"}},
    "prices": {
        "range": {"field": "price", "ranges": [{"to": 10}, {"from": 10, "to": 50}, {"from": 50}]}
    },
}
DAYS = {"days": {"date_histogram": {"field": "when", "calendar_interval": "day"}}}


def fill(store: PostgresStore, count: int) -> None:
    """``count`` documents written in one SQL statement (the index's statistics kept)."""
    store.upsert([{"id": "seed", "text": "common"}])  # the statistics' row, and a real terms
    with store._connection() as conn, conn.transaction():
        conn.execute(
            f"INSERT INTO {store._part_name} (index_name, id, doc, body, terms, terms_length, "
            "generation) SELECT %(index)s, 'd' || n, jsonb_build_object('text', 'common', "
            "'source', 'src' || (n %% 1000), 'price', (n %% 100) + 0.5, 'when', jsonb_build_array("
            "to_char(date '2024-01-01' + (n %% 365), 'YYYY-MM-DD'), "
            "to_char(date '2024-01-01' + ((n + 1) %% 365), 'YYYY-MM-DD'), "
            "to_char(date '2024-01-01' + ((n * 7) %% 365), 'YYYY-MM-DD'))), "
            "'common', s.terms, s.terms_length, s.generation FROM generate_series(1, %(n)s) AS n, "
            f"(SELECT terms, terms_length, generation FROM {store._part_name} WHERE id = 'seed') s",
            {"index": store.name, "n": count},
        )
        conn.execute(
            "UPDATE semrank.indexes SET doc_count = doc_count + %(n)s, "
            "total_length = total_length + %(n)s WHERE name = %(index)s",
            {"index": store.name, "n": count},
        )
        conn.execute(f"ANALYZE {store._part_name}")


def median_seconds(action: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    created = create_index("aggs_bench", store=args.dsn)
    assert isinstance(created, PostgresStore)
    store = created
    try:
        started = time.perf_counter()
        fill(store, args.documents)
        print(f"ingest of {args.documents} documents in SQL: {time.perf_counter() - started:.1f} s")
        found = search(store, "common", k=0, aggs=AGGS)
        print(f"matched {found.matched}; {found.aggregations and found.aggregations['price']}")
        timed = {
            "match, terms+avg+range": lambda: search(store, "common", k=0, aggs=AGGS),
            "match, daily date_histogram": lambda: search(store, "common", k=0, aggs=DAYS),
            "aggregate(), terms+avg+range": lambda: store.aggregate(AGGS),
            "aggregate(), daily date_histogram": lambda: store.aggregate(DAYS),
        }
        for name, action in timed.items():
            print(f"{name:36} {median_seconds(action, args.rounds):8.3f} s")
    finally:
        store.close()
        drop_postgres_index(args.dsn, "aggs_bench")


if __name__ == "__main__":
    run(main)
