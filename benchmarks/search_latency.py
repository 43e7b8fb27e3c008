"""Latency of one search through hybrid + re-rank of 100 candidates (p50 / p95), per stage.

    semrank index create scifact --from ../shared/data/eval/scifact      # once
    python benchmarks/search_latency.py --index scifact \
        --queries ../shared/data/eval/scifact/queries.jsonl

Each query is timed for the first stage alone (hybrid: BM25 + dense, RRF) and for the whole
two-stage search (hybrid, then the default re-ranker over the top ``--window``), after warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from _cli import run  # benchmarks/ is on sys.path

from semrank.eval import load_queries
from semrank.pipeline import build_retriever, search


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def time_queries(
    index: str, queries: list[str], retriever: object, home: Path | None
) -> list[float]:
    seconds = []
    for query in queries:
        started = time.perf_counter()
        search(index, query, retriever=retriever, k=10, home=home)  # type: ignore[arg-type]
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="scifact")
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--count", type=int, default=20, help="queries to time")
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    texts = list(load_queries(args.queries).values())[: args.count + 2]
    first = build_retriever("hybrid")
    full = build_retriever("hybrid", rerank=True, model=args.model, window=args.window)
    time_queries(args.index, texts[:2], full, args.home)  # warm-up: load models, open index
    report = {}
    for name, retriever in (("hybrid", first), (f"hybrid+rerank@{args.window}", full)):
        seconds = time_queries(args.index, texts[2:], retriever, args.home)
        report[name] = {
            "queries": len(seconds),
            "p50_s": round(statistics.median(seconds), 4),
            "p95_s": round(percentile(seconds, 0.95), 4),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    run(main)
