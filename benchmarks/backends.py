"""Inference backends side by side: speed and precision loss against fp32, one run.

Every backend loads the SAME weights and scores the SAME requests (one query, 100 candidates):
- cross-encoder: a BertForSequenceClassification built from the all-MiniLM-L6-v2 encoder with
  a seeded random one-logit head (or ``--model DIR``);
- bi-encoder: the bundled all-MiniLM-L6-v2 (the default embedding model).
Workloads: TREC DL 2019 BM25 top-100 passages (../shared/data) and synthetic pairs of exactly
128 / 256 tokens. Per backend: pairs/s and p50 / p95 request latency, the median over
``--repeats`` repeats; backends alternate inside each repeat so the load drift of a shared
machine hits all of them; "x fp32" is the pairs/s ratio to ONNX Runtime fp32 in the same run.

Precision (vs "onnx" fp32): max |score difference| on the 0..1 relevance scale over every
scored pair and, for the bi-encoder (a real ranking model), nDCG@10 on all 43 TREC DL 2019
queries (ir-measures). The random cross-encoder head has tiny logits, so its differences are
also reported relative to the fp32 score spread.

    python benchmarks/backends.py --quick       # smoke run
    python benchmarks/backends.py --json-out backends.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _cli import run  # benchmarks/ is on sys.path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import (
    CANDIDATES,
    DL19_CANDIDATES,
    build_minilm_cross_encoder,
    msmarco_requests,
    summarise,
    synthetic_requests,
)

QRELS = DL19_CANDIDATES.parent / "qrels.txt"
ALL_BACKENDS = ("onnx", "onnx-int8", "openvino", "openvino-bf16", "openvino-int8")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="cross-encoder dir (default: MiniLM-L6 + seeded head)")
    parser.add_argument("--backends", nargs="*", default=list(ALL_BACKENDS))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=3, help="requests per workload")
    parser.add_argument("--lengths", type=int, nargs="*", default=[128, 256])
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="*",
        default=[],
        help="also time these max_batch_size values (default: backend's own)",
    )
    parser.add_argument("--no-bi-encoder", action="store_true")
    parser.add_argument("--no-ndcg", action="store_true", help="skip the 43-query nDCG pass")
    parser.add_argument("--quick", action="store_true", help="1 repeat, 1 request")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.requests = 1, 1
    return args


def load_systems(model: Any, backends: list[str], threads: int | None, batch_sizes: list[int]):
    from semrank.runtime import BatchingConfig, load_scorer

    systems = {}
    for backend in backends:
        started = time.perf_counter()
        systems[backend] = load_scorer(model, backend=backend, threads=threads)
        print(f"  loaded {backend} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        for size in batch_sizes:
            batching = BatchingConfig(
                max_batch_size=size,
                token_budget=size * 512,
                length_multiple=16 if backend.startswith("openvino") else 1,
            )
            systems[f"{backend} b{size}"] = load_scorer(
                model, backend=backend, threads=threads, batching=batching
            )
    return systems


def time_backends(systems: dict[str, Any], requests: list, repeats: int) -> dict:
    """Per system: summary of latencies, and the raw scores of the last repeat."""
    timings: dict[str, list[list[float]]] = {name: [] for name in systems}
    scores: dict[str, np.ndarray] = {}
    names = list(systems)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else list(reversed(names)):
            latencies, outputs = [], []
            for query, docs in requests:
                forget = getattr(systems[name], "forget", None)
                if forget is not None:  # a bi-encoder: its repeats read remembered windows
                    forget()
                started = time.perf_counter()
                outputs.append(systems[name].score_pairs([(query, d) for d in docs]))
                latencies.append(time.perf_counter() - started)
            timings[name].append(latencies)
            scores[name] = np.concatenate(outputs)
    return {"speed": {n: summarise(t) for n, t in timings.items()}, "scores": scores}


def score_differences(systems: dict[str, Any], scores: dict[str, np.ndarray]) -> dict:
    from semrank.runtime import apply_activation

    ref_name = next(iter(scores))
    ref = apply_activation(scores[ref_name], systems[ref_name].activation)
    spread = float(ref.max() - ref.min()) or 1.0
    out = {}
    for name, raw in scores.items():
        diff = float(np.max(np.abs(apply_activation(raw, systems[name].activation) - ref)))
        out[name] = {"max_abs_diff": diff, "relative_to_spread": diff / spread}
    return out


def ndcg_at_10(scorer: Any) -> float:
    import ir_measures
    from ir_measures import nDCG

    entries = json.loads(__import__("gzip").open(DL19_CANDIDATES, "rt").read())
    run = {}
    for entry in entries:
        hits = entry["hits"][:CANDIDATES]
        raw = scorer.score_pairs([(entry["query"], h["content"]) for h in hits])
        qid = str(hits[0]["qid"])
        run[qid] = {str(h["docid"]): float(s) for h, s in zip(hits, raw, strict=True)}
    qrels = list(ir_measures.read_trec_qrels(str(QRELS)))
    return float(ir_measures.calc_aggregate([nDCG @ 10], qrels, run)[nDCG @ 10])


def run_model(label: str, model: Any, model_dir: Path, args: argparse.Namespace) -> dict:
    systems = load_systems(model, args.backends, args.threads, args.batch_sizes)
    workloads = {"dl19": msmarco_requests(args.requests)}
    for length in args.lengths:
        workloads[f"synthetic {length}"] = synthetic_requests(model_dir, length, args.requests)
    result: dict[str, Any] = {}
    for workload, requests in workloads.items():
        if not requests:
            continue
        for system in systems.values():
            system.score_pairs([(requests[0][0], d) for d in requests[0][1][:8]])  # warm
        timed = time_backends(systems, requests, args.repeats)
        result[workload] = {
            "speed": timed["speed"],
            "precision": score_differences(systems, timed["scores"]),
        }
        print_table(f"{label} / {workload}", result[workload])
    if not args.no_ndcg and DL19_CANDIDATES.is_file():
        result["ndcg@10"] = {name: ndcg_at_10(s) for name, s in systems.items() if " b" not in name}
        print(
            f"{label} nDCG@10 (TREC DL 2019, BM25 top-100 re-ranked): "
            + ", ".join(f"{k} {v:.4f}" for k, v in result["ndcg@10"].items()),
            flush=True,
        )
    return result


def print_table(title: str, result: dict) -> None:
    speed, precision = result["speed"], result["precision"]
    base = next(iter(speed.values()))["pairs_per_s"]
    print(f"\n{title}")
    print(
        f"{'backend':<20}{'pairs/s':>9}{'x fp32':>8}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'max|diff|':>11}{'rel':>8}"
    )
    for name, values in speed.items():
        p = precision[name]
        print(
            f"{name:<20}{values['pairs_per_s']:>9.1f}{values['pairs_per_s'] / base:>7.2f}x"
            f"{values['p50_ms']:>9.0f}{values['p95_ms']:>9.0f}"
            f"{p['max_abs_diff']:>11.2e}{p['relative_to_spread']:>8.3f}",
            flush=True,
        )


def main() -> None:
    args = parse_args()
    from semrank.models import resolve, resolve_embedding_model
    from semrank.runtime._select import detect_features

    features = detect_features()
    print(
        f"cpu {features['processor']}, {features['cpu_count']} threads; flags "
        + ", ".join(k for k, v in features.items() if v is True)
        + f"; {CANDIDATES} candidates per request; median of {args.repeats} repeats",
        flush=True,
    )
    started = time.perf_counter()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="semrank-backends-") as tmp:
        model_dir = Path(args.model) if args.model else build_minilm_cross_encoder(Path(tmp), 13)
        results["cross-encoder"] = run_model(
            "cross-encoder", resolve(str(model_dir)), model_dir, args
        )
    if not args.no_bi_encoder:
        bi = resolve_embedding_model()
        results["bi-encoder"] = run_model("bi-encoder", bi, Path(bi.path), args)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    run(main)
