"""Re-ranking quality: semrank's default (or any) model on judged collections.

* TREC DL 2019 passages: the 43 judged queries' BM25 top-100 candidates (given), re-ranked.
* SciFact (BEIR, test split): a BM25-only semrank index is built in a temporary home, its
  top-``--depth`` hits per query are re-ranked. ``--scifact-queries N`` evaluates the first N
  test queries only (300 x 100 pairs take long on a small CPU).

Prints nDCG@10, RR@10, R@100 and AP of the first stage and the re-ranked run, the paired
t-test p value, wins / ties / losses and throughput. Reads ../shared/data; a collection that
is absent is skipped with a message.

    python benchmarks/quality.py                          # both collections, default model
    python benchmarks/quality.py --model DIR --collections dl19
    python benchmarks/quality.py --json-out quality.json --report-dir reports/
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _cli import run  # benchmarks/ is on sys.path

from semrank.eval import (
    DEFAULT_MEASURES,
    CandidateList,
    Qrels,
    candidates_to_run,
    compare,
    depth_curve,
    evaluate,
    load_beir,
    load_candidates,
    load_qrels,
    reranked_run,
    score_candidates,
)
from semrank.eval.first_stage import retrieve_candidates
from semrank.eval.report import ReportData, write_report

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "eval"
COLLECTIONS = ("dl19", "scifact")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="re-ranker name or directory (default: semrank default)")
    parser.add_argument(
        "--backend", help="a semrank backend (default: auto, which is bf16 for the default model)"
    )
    parser.add_argument("--collections", nargs="*", default=list(COLLECTIONS), choices=COLLECTIONS)
    parser.add_argument("--depth", type=int, default=100, help="candidates re-ranked per query")
    parser.add_argument("--scifact-queries", type=int, default=None, help="first N test queries")
    parser.add_argument("--json-out", type=Path, help="write {collection: {run: {measure: v}}}")
    parser.add_argument("--report-dir", type=Path, help="a Markdown report per collection here")
    return parser.parse_args()


def dl19_candidates() -> tuple[list[CandidateList], Qrels] | None:
    folder = DATA / "trec-dl-2019"
    if not folder.is_dir():
        print(f"skipping TREC DL 2019: {folder} not found", file=sys.stderr)
        return None
    return load_candidates(folder / "bm25-top100.json.gz"), load_qrels(folder / "qrels.txt")


def scifact_candidates(depth: int, limit: int | None) -> tuple[list[CandidateList], Qrels] | None:
    """BM25 top-``depth`` from a temporary semrank index of the SciFact corpus."""
    from semrank.pipeline import search
    from semrank.store import create_index, read_corpus

    folder = DATA / "scifact"
    if not folder.is_dir():
        print(f"skipping SciFact: {folder} not found", file=sys.stderr)
        return None
    collection = load_beir(folder, split="test")
    queries = dict(list(collection.queries.items())[:limit])
    with tempfile.TemporaryDirectory(prefix="semrank-quality-") as home:
        store = create_index("scifact", home=home, embedding_model=None)
        store.upsert(read_corpus(folder))
        lists = retrieve_candidates(
            queries,
            index="scifact",
            retriever="bm25",
            k=depth,
            search=lambda _index, query, **kw: search(store, query, **kw),
            text_of=lambda fields: store.text_of(dict(fields)),
        )
        store.close()
    qrels = {q: collection.qrels[q] for q in queries}
    return lists, qrels


def evaluate_collection(
    name: str,
    lists: list[CandidateList],
    qrels: Qrels,
    score: Callable[[str, list[str]], Any],
    args: argparse.Namespace,
) -> dict[str, dict[str, float]]:
    measures = list(DEFAULT_MEASURES)
    first = evaluate(qrels, candidates_to_run(lists), measures)
    outcome = score_candidates(lists, score, depth=args.depth)
    second = evaluate(qrels, reranked_run(lists, outcome.scores, name="reranked"), measures)
    comparisons = [compare(first, second, m) for m in measures]
    print(
        f"\n{name}: {first.query_count} queries, {outcome.pairs} pairs re-ranked, "
        f"{outcome.pairs_per_second:.1f} pairs/s"
    )
    print(f"{'measure':<10}{'first stage':>12}{'reranked':>10}{'delta':>9}{'p':>9}{'W/T/L':>12}")
    for c in comparisons:
        wtl = f"{c.wins}/{c.ties}/{c.losses}"
        print(
            f"{c.measure:<10}{first.aggregate[c.measure]:>12.4f}{second.aggregate[c.measure]:>10.4f}"
            f"{second.aggregate[c.measure] - first.aggregate[c.measure]:>+9.4f}"
            f"{c.p_value:>9.4f}{wtl:>12}"
        )
    if args.report_dir:
        data = ReportData(
            title=f"semrank quality: {name}",
            first_stage=first,
            reranked=second,
            comparisons=comparisons,
            depth_curve=depth_curve(lists, outcome, qrels, measures),
            details={
                "re-ranker": args.model or "semrank default",
                "throughput": f"{outcome.pairs_per_second:.1f} pairs/s",
            },
        )
        print(f"report: {write_report(data, args.report_dir / name)}")
    return {"first_stage": first.aggregate, "reranked": second.aggregate}


def main() -> None:
    args = parse_args()
    from semrank import Reranker

    started = time.perf_counter()
    reranker = Reranker(args.model, backend=args.backend)
    print(f"model: {reranker.name}; depth {args.depth}")

    def score(query: str, docs: list[str]) -> Any:
        return reranker.score(query, docs, raw=True)  # raw: no ties from a saturated sigmoid

    loaders = {
        "dl19": lambda: dl19_candidates(),
        "scifact": lambda: scifact_candidates(args.depth, args.scifact_queries),
    }
    results = {}
    for name in args.collections:
        loaded = loaders[name]()
        if loaded is not None:
            results[name] = evaluate_collection(name, *loaded, score, args)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if args.json_out:
        args.json_out.write_text(json.dumps({"model": reranker.name, **results}, indent=2))


if __name__ == "__main__":
    run(main)
