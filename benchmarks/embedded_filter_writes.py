"""What one write costs the next filtered search of an embedded index (its filter table).

    python benchmarks/embedded_filter_writes.py --documents 200000 --rounds 5 [--home DIR]

A BM25-only index (no vectors: nothing but the filter table is timed) of documents with a
category (50 values) and a distinct date-time each. The first ``count_matching`` of a term and
of a date range read the fields (and parse the dates); each round then upserts one document
(alternately a rewritten one and a new one) and times the next term count and the next date
range count, then deletes one document and times the next term count. Medians over the rounds.
``--home``: build the index there once and reuse it (to time two versions on copies of one).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from _cli import run  # benchmarks/ is on sys.path

from semrank.store import create_index, open_index

WORDS = [f"term{n}" for n in range(5_000)]
START = datetime(2010, 1, 1, tzinfo=UTC)
TERM = {"term": {"cat": "c7"}}
DATES = {"range": {"date": {"gte": "2015-01-01", "lt": "2018-06-01"}}}


def document(number: int, rng: np.random.Generator) -> dict[str, Any]:
    return {
        "id": f"d{number}",
        "text": " ".join(rng.choice(WORDS, size=20)),
        "cat": f"c{number % 50}",
        "date": (START + timedelta(seconds=1237 * number)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def timed(action: Any) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--home", type=Path, default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    home = args.home or Path(tempfile.mkdtemp())
    if (home / "filters").exists():
        index = open_index("filters", home=home)
    else:
        index = create_index("filters", home=home, embedding_model=None)
        index.upsert((document(n, rng) for n in range(args.documents)), refresh=False)
    first_term = timed(lambda: index.count_matching(TERM))
    first_dates = timed(lambda: index.count_matching(DATES))
    rounds: dict[str, list[float]] = {"term": [], "date range": [], "term, a delete": []}
    for number in range(args.rounds):
        written = 2 * args.documents + number if number % 2 else 1000 * number
        index.upsert([document(written, rng)], refresh=False)
        rounds["term"].append(timed(lambda: index.count_matching(TERM)))
        rounds["date range"].append(timed(lambda: index.count_matching(DATES)))
        index.delete([f"d{500 + 997 * number}"])
        rounds["term, a delete"].append(timed(lambda: index.count_matching(TERM)))
    print(f"{len(index)} documents, {args.rounds} rounds")
    index.close()
    print(f"{'first term count (field read):':40} {first_term * 1000:8.1f} ms")
    print(f"{'first date range (read, parsed):':40} {first_dates * 1000:8.1f} ms")
    for name, times in rounds.items():
        median = statistics.median(times) * 1000
        print(f"{name + ' after one write, median:':40} {median:8.1f} ms")


if __name__ == "__main__":
    run(main)
