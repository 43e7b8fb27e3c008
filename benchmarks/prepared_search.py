"""Search + re-rank latency with and without prepared windows, side by side (issue 7).

    semrank index create scifact --from ../shared/data/eval/scifact --home H1     # once
    python benchmarks/prepared_search.py --home H1 --copy-to H2 \\
        --queries ../shared/data/eval/scifact/queries.jsonl

Copies the index to a second home, prepares the copy (`semrank index prepare`, timed), then runs
each query through hybrid + re-rank of the top ``--window`` on both, alternating which goes
first, with two separately loaded default re-rankers. Each re-ranker's embedding memory is
cleared before every search, so neither profits from windows an earlier query embedded: the
unprepared side embeds every window, the prepared side only the query. Reports p50 / p95, the
median per-query ratio and the largest score difference between the two sides.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
from _cli import run  # benchmarks/ is on sys.path

from semrank import Reranker
from semrank.eval import load_queries
from semrank.pipeline import build_retriever, prepare_index, search
from semrank.rerank._prepared import forget_windows
from semrank.store import open_index


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed_search(index: object, query: str, reranker: Reranker, window: int) -> tuple[float, dict]:
    forget_windows(reranker)  # cold: no window remembered from an earlier query
    tree = build_retriever("hybrid", rerank=True, model=reranker, window=window)
    started = time.perf_counter()
    results = search(index, query, retriever=tree, k=10)  # type: ignore[arg-type]
    return time.perf_counter() - started, dict(zip(results.ids, results.scores, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="scifact")
    parser.add_argument("--home", type=Path, required=True, help="home of the built index")
    parser.add_argument("--copy-to", type=Path, required=True, help="home for the prepared copy")
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--count", type=int, default=20, help="queries to time")
    parser.add_argument("--window", type=int, default=100)
    args = parser.parse_args()
    if (args.copy_to / args.index).exists():  # prepared already, or a copy of an older index
        raise SystemExit(
            f"--copy-to {args.copy_to / args.index} exists: remove it, or name "
            "another folder (the copy is made and prepared by this run)"
        )
    shutil.copytree(args.home / args.index, args.copy_to / args.index)
    plain = open_index(args.index, home=args.home)
    prepared = open_index(args.index, home=args.copy_to)
    started = time.perf_counter()
    tables = prepare_index(prepared, model=Reranker())
    prepare_seconds = time.perf_counter() - started
    sides = {"plain": (plain, Reranker()), "prepared": (prepared, Reranker())}
    texts = list(load_queries(args.queries).values())[: args.count + 2]
    for index, reranker in sides.values():  # warm-up
        timed_search(index, texts[0], reranker, args.window)
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    ratios, diffs = [], []
    for position, query in enumerate(texts[2:]):
        order = list(sides) if position % 2 == 0 else list(reversed(sides))
        scores = {}
        for name in order:
            index, reranker = sides[name]
            elapsed, scores[name] = timed_search(index, query, reranker, args.window)
            seconds[name].append(elapsed)
        ratios.append(seconds["prepared"][-1] / seconds["plain"][-1])
        shared = scores["plain"].keys() & scores["prepared"].keys()
        plain_scores, prepared_scores = scores["plain"], scores["prepared"]
        gaps = [abs(plain_scores[i] - prepared_scores[i]) for i in shared]
        diffs.append(max(gaps, default=0.0))
    report = {
        "prepare": {
            "seconds": round(prepare_seconds, 1),
            "tables": [
                {"model": t.model, "windows": t.windows, "documents": t.documents} for t in tables
            ],
        },
        **{
            name: {
                "queries": len(values),
                "p50_s": round(statistics.median(values), 3),
                "p95_s": round(percentile(values, 0.95), 3),
            }
            for name, values in seconds.items()
        },
        "median_ratio_prepared_over_plain": round(statistics.median(ratios), 3),
        "max_score_difference": float(np.max(diffs)),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    run(main)
