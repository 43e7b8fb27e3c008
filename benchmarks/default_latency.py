"""The shipped default on TREC DL 2019: latency per query and quality, per backend and cascade.

Issue 7's acceptance numbers for the bundled default (``Reranker()``): each configuration
re-ranks every query's BM25 top-100 (one request = one query and its 100 passages) and reports
the median and 95th-percentile seconds per request, nDCG@10, and for configurations without a
cascade the largest difference of their 0..1 scores from the first configuration's (the fp32
reference). A configuration is ``BACKEND`` or ``BACKEND:KEEP`` (a cascade keeping KEEP documents
for the full model). They run one after another in one process, each warmed up on two queries
first; on a shared machine compare the ratios, not the absolute times.

    python benchmarks/default_latency.py                                # fp32, bf16, each +cascade
    python benchmarks/default_latency.py --configs openvino openvino-bf16:30 --repeats 2
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
DEFAULT_CONFIGS = ["openvino", "openvino:30", "openvino-bf16", "openvino-bf16:30"]


def parse_config(text: str) -> tuple[str, int | None]:
    """``BACKEND`` or ``BACKEND:KEEP`` (cascade keeping KEEP documents for the full model)."""
    backend, _, keep = text.partition(":")
    if keep and not keep.isdigit():
        raise SystemExit(f"--configs {text!r}: KEEP is a number of documents, e.g. onnx:30")
    return backend, int(keep) if keep else None


def run_config(reranker: Reranker, lists: list, repeats: int) -> tuple[dict, dict, list[float]]:
    """Rank-keeping scores and 0..1 scores in input order per query, and request times."""
    scores, relevance, seconds = {}, {}, []
    for candidate_list in lists:
        texts = [hit.text for hit in candidate_list.hits]
        for _ in range(repeats):
            # Each request new to it, as a first one is (a repeat read its windows from
            # memory: half the work).
            forget_windows(reranker)
            started = time.perf_counter()
            results = reranker.rerank(candidate_list.query, texts, return_documents=False)
            seconds.append(time.perf_counter() - started)
        ranked, values = np.zeros(len(texts)), np.zeros(len(texts))
        for rank, result in enumerate(results):
            # Rank-derived scores keep the cascade's order (pruned documents after kept ones).
            ranked[result.index] = len(texts) - rank
            values[result.index] = result.relevance_score
        scores[candidate_list.query_id] = ranked
        relevance[candidate_list.query_id] = values
    return scores, relevance, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS)
    parser.add_argument("--repeats", type=int, default=1, help="timed requests per query")
    parser.add_argument("--queries", type=int, default=None, help="first N queries only")
    args = parser.parse_args()
    if not DL19.is_dir():
        raise SystemExit(f"{DL19} not found: TREC DL 2019 from ../shared/data is needed")
    lists = load_candidates(DL19 / "bm25-top100.json.gz")[: args.queries]
    # With --queries, their judgments only: the others counted as 0 in the mean.
    asked = {candidate_list.query_id for candidate_list in lists}
    qrels = {q: j for q, j in load_qrels(DL19 / "qrels.txt").items() if q in asked}
    reference: dict = {}
    print(f"{'config':>20} {'nDCG@10':>8} {'p50 s':>7} {'p95 s':>7} {'max diff':>9}", flush=True)
    for text in args.configs:
        backend, keep = parse_config(text)
        cascade = CascadeConfig(keep=keep) if keep else None
        reranker = Reranker(backend=backend, cascade=cascade)
        run_config(reranker, lists[:2], 1)  # warm-up: model load, first shapes, caches
        scores, relevance, seconds = run_config(reranker, lists, args.repeats)
        ndcg = evaluate(qrels, reranked_run(lists, scores, name=text), ["nDCG@10"])
        diff = "-"
        if keep is None:
            reference = reference or relevance
            diff = f"{max(np.abs(relevance[q] - reference[q]).max() for q in relevance):.4f}"
        p50, p95 = statistics.median(seconds), float(np.percentile(seconds, 95))
        print(
            f"{text:>20} {ndcg.aggregate['nDCG@10']:8.4f} {p50:7.3f} {p95:7.3f} {diff:>9}",
            flush=True,
        )


if __name__ == "__main__":
    run(main)
