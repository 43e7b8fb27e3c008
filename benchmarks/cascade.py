"""Cascade re-ranking on TREC DL 2019: how much quality each ``keep`` costs, and what it saves.

For each ``--keep`` value the bundled embedding model prunes every query's BM25 top-100 to its
best ``keep`` documents, the re-ranker (``--model``, default semrank's) reads only those, and the
pruned documents follow in the pruner's order. Prints nDCG@10 and the median time per query
next to the same re-ranker reading all 100 (no cascade), measured in the same run.

    python benchmarks/cascade.py                      # keep 10, 20, 30, 50 vs none
    python benchmarks/cascade.py --keep 20 40 --model DIR
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from _cli import run  # benchmarks/ is on sys.path

from semrank import CascadeConfig, Reranker
from semrank.eval import evaluate, load_candidates, load_qrels, reranked_run
from semrank.rerank._prepared import forget_windows

DL19 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "eval" / "trec-dl-2019"


def run_one(reranker: Reranker, lists: list, depth: int) -> tuple[dict, float]:
    """Scores in input order that keep the re-ranker's order (pruned documents included)."""
    scores, seconds = {}, []
    for candidate_list in lists:
        texts = [hit.text for hit in candidate_list.hits[:depth]]
        forget_windows(reranker)  # the warm-up's queries are timed cold too
        started = time.perf_counter()
        results = reranker.rerank(candidate_list.query, texts, return_documents=False)
        seconds.append(time.perf_counter() - started)
        order = np.zeros(len(texts), dtype=np.float32)
        for rank, result in enumerate(results):
            order[result.index] = len(texts) - rank
        scores[candidate_list.query_id] = order
    return scores, statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="re-ranker (default: semrank's default)")
    parser.add_argument("--keep", type=int, nargs="+", default=[10, 20, 30, 50])
    parser.add_argument("--depth", type=int, default=100)
    args = parser.parse_args()
    if not DL19.is_dir():
        raise SystemExit(f"{DL19} not found: TREC DL 2019 from ../shared/data is needed")
    lists = load_candidates(DL19 / "bm25-top100.json.gz")
    qrels = load_qrels(DL19 / "qrels.txt")
    print(f"{'keep':>6} {'nDCG@10':>8} {'p50 s/query':>12}")
    for keep in [None, *args.keep]:
        cascade = CascadeConfig(keep=keep) if keep else None
        reranker = Reranker(args.model, cascade=cascade)
        run_one(reranker, lists[:2], args.depth)  # warm-up: model load and first shapes
        scores, p50 = run_one(reranker, lists, args.depth)
        run = reranked_run(lists, scores, name=f"keep={keep}")
        ndcg = evaluate(qrels, run, ["nDCG@10"]).aggregate["nDCG@10"]
        print(f"{keep or 'all':>6} {ndcg:8.4f} {p50:12.3f}", flush=True)


if __name__ == "__main__":
    run(main)
