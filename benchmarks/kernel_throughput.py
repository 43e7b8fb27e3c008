"""How close each backend runs the default's two networks to this CPU's limit.

    python benchmarks/kernel_throughput.py [--backends openvino openvino-bf16 openvino-int8]

For the shipped default's cross-encoder and bi-encoder, every backend runs fixed-shape batches
(``--batch`` inputs of ``--lengths`` tokens, no tokenization, no padding waste) and reports
tokens per second and the arithmetic rate that implies (2 FLOP per weight per token in the
linear layers plus the attention products). From that rate it derives the floor for issue 7's
workload, TREC DL 2019's 100 BM25 candidates of one query: the seconds the default's two
networks need for that query's tokens at this rate. If the end-to-end latency
(``benchmarks/default_latency.py``) is close to the floor, only fewer FLOPs (a cascade, fewer
or shorter windows, a smaller model) or faster arithmetic (int8, AMX) can make it faster.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from _cli import run  # benchmarks/ is on sys.path

from semrank.eval import load_candidates
from semrank.models import resolve
from semrank.rerank._blend import load_blend_scorer
from semrank.runtime import BatchingConfig

DL19 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "eval" / "trec-dl-2019"
HIDDEN, LAYERS, FFN = 384, 6, 1536  # MiniLM-L6: both networks of the default


def flops_per_token(length: int) -> float:
    """Linear layers (4 h^2 + 2 h f weights per layer) and the two attention products."""
    linear = 2 * LAYERS * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * FFN)
    attention = 2 * LAYERS * 2 * length * HIDDEN
    return float(linear + attention)


def batch_of(batch: int, length: int, seed: int = 0) -> dict[str, np.ndarray]:
    ids = np.random.default_rng(seed).integers(1000, 20000, size=(batch, length), dtype=np.int64)
    ids[:, 0] = 101  # [CLS]
    return {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "token_type_ids": np.zeros_like(ids),
    }


def tokens_per_second(forward, batch: int, length: int, seconds: float) -> float:
    arrays = batch_of(batch, length)
    forward(arrays)  # first call: shape compilation
    rates, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 3:
        started = time.perf_counter()
        forward(arrays)
        rates.append(batch * length / (time.perf_counter() - started))
    return statistics.median(rates)


def dl19_tokens(tokenizer, doc_tokens: int) -> tuple[float, float]:
    """Mean tokens per query of (pairs for the cross-encoder, documents for the bi-encoder)."""
    lists = load_candidates(DL19 / "bm25-top100.json.gz")
    pair_tokens, doc_only = [], []
    for candidate_list in lists:
        query = tokenizer.count_tokens(candidate_list.query)
        docs = [min(tokenizer.count_tokens(h.text), doc_tokens) for h in candidate_list.hits]
        pair_tokens.append(sum(query + d + 3 for d in docs))
        doc_only.append(sum(d + 2 for d in docs))
    return statistics.mean(pair_tokens), statistics.mean(doc_only)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends", nargs="+", default=["openvino", "openvino-bf16", "openvino-int8", "onnx-int8"]
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lengths", type=int, nargs="+", default=[96, 128, 256])
    parser.add_argument("--seconds", type=float, default=4.0, help="timing per shape")
    args = parser.parse_args()
    package = Path(resolve("semrank-minilm-l6").path)
    pair_tokens = doc_tokens = None
    if DL19.is_dir():
        blend = load_blend_scorer(package, backend="onnx", batching=BatchingConfig())
        pair_tokens, doc_tokens = dl19_tokens(blend.tokenizer, blend.doc_tokens or 256)
        print(f"DL19 per query: {pair_tokens:.0f} pair tokens, {doc_tokens:.0f} document tokens")
    header = f"{'backend':>14} {'network':>13} {'length':>6} {'tokens/s':>9} {'GFLOP/s':>8}"
    print(header + (f" {'DL19 floor s':>12}" if pair_tokens else ""), flush=True)
    for backend in args.backends:
        blend = load_blend_scorer(package, backend=backend)
        cross, bi = (component.scorer for component in blend.components)
        networks = {"cross-encoder": cross._forward, "bi-encoder": bi.embedder._forward}
        for name, forward in networks.items():
            for length in args.lengths:
                rate = tokens_per_second(forward, args.batch, length, args.seconds)
                gflops = rate * flops_per_token(length) / 1e9
                row = f"{backend:>14} {name:>13} {length:>6} {rate:>9.0f} {gflops:>8.0f}"
                if pair_tokens and length == args.lengths[0]:
                    work = pair_tokens if name == "cross-encoder" else doc_tokens
                    row += f" {work / rate:>12.3f}"
                print(row, flush=True)


if __name__ == "__main__":
    run(main)
