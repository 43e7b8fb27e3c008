"""Package a `semrank train` run as semrank's shipped default model, and measure it.

    python benchmarks/build_default_model.py --run /root/semrank-runs/minilm-l6-v1 \
        --out src/semrank/models/bundled/semrank-minilm-l6

1. the run's best checkpoint -> ``OUT/cross-encoder`` with weight-only int8, one scale per 64
   weights (about 25 MB);
2. a blend of that cross-encoder and a bi-encoder -- all-MiniLM-L6-v2, or with ``--bi-run`` the
   best checkpoint of a ``semrank train --architecture bi`` run, packed int8 into
   ``OUT/bi-encoder`` -- its weights fitted by logistic regression on the held-out validation
   split (training data only) -> blend.json;
3. TREC DL 2019 nDCG@10 (BM25 top-100 re-ranked) of the fp32 checkpoint, the int8 one and the
   blend, written to ``OUT/scores.json`` for the model card. DL19 is measured, never fitted on.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from _cli import run  # benchmarks/ is on sys.path
from _model_card import training_commands, write_model_card  # benchmarks/ is on sys.path
from safetensors.numpy import save_file

from semrank.eval import evaluate, load_candidates, load_qrels
from semrank.eval.reranking import reranked_run, score_candidates
from semrank.rerank._blend import write_blend
from semrank.rerank._feedback import FeedbackConfig
from semrank.runtime._weights import INT8_GROUP, load_weights, quantize_int8
from semrank.train._blend import fit_blend, validation_task_of_run

ROOT = Path(__file__).resolve().parents[1]
DL19 = ROOT.parent / "shared" / "data" / "eval" / "trec-dl-2019"
COPIED = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def save_int8_weights(checkpoint: Path, target: Path) -> Path:
    """``checkpoint``'s weights as weight-only int8 (a scale per 64 weights) in ``target``."""
    packed = quantize_int8(load_weights(checkpoint), group=INT8_GROUP)
    save_file(packed, str(target / "model.safetensors"))
    return target


def pack_cross_encoder(checkpoint: Path, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        if (checkpoint / name).is_file():
            shutil.copy2(checkpoint / name, target / name)
    return save_int8_weights(checkpoint, target)


def pack_bi_encoder(checkpoint: Path, target: Path) -> Path:
    """A trained bi-encoder (sentence-transformers folder) with weight-only int8 weights."""
    shutil.copytree(checkpoint, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.onnx"))
    return save_int8_weights(checkpoint, target)


def dl19_ndcg(model: str | Path) -> float:
    from semrank import Reranker

    reranker = Reranker(model)
    lists = load_candidates(DL19 / "bm25-top100.json.gz")
    started = time.perf_counter()
    outcome = score_candidates(lists, lambda q, d: reranker.score(q, d, raw=True), depth=100)
    run = reranked_run(lists, outcome.scores, name=str(model))
    value = evaluate(load_qrels(DL19 / "qrels.txt"), run, ["nDCG@10"]).aggregate["nDCG@10"]
    print(f"DL19 nDCG@10 {value:.4f}  {model}  ({time.perf_counter() - started:.0f} s)", flush=True)
    return float(value)


def training_chain(checkpoint: Path) -> list[tuple[Path, dict]]:
    """(folder, training record) of every stage that led to ``checkpoint``, first stage first.

    A stage depends on the checkpoint it started from or, when it started from the base model,
    on the cross-encoder it distilled (its teacher).
    """
    chain = []
    folder: Path | None = checkpoint
    while folder is not None:
        training = json.loads((folder / "semrank_training.json").read_text())
        chain.append((folder, training))
        source = training["config"].get("init_from") or training["config"].get("teacher_model")
        # Stop where an earlier stage's folder is gone (the card names that folder instead).
        known = source and (Path(source) / "semrank_training.json").is_file()
        folder = Path(source) if known else None
    return chain[::-1]


def feedback_setting(text: str) -> FeedbackConfig | None:
    """``--feedback TOP_K:WEIGHT`` ('off': none), read before anything is packed."""
    if text == "off":
        return None
    top_k, _, weight = text.partition(":")
    try:
        return FeedbackConfig(top_k=int(top_k), weight=float(weight))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give TOP_K:WEIGHT, e.g. 2:4.0, or off"
        ) from None


def feedback_of(
    setting: FeedbackConfig | None, bi: str | Path
) -> tuple[str, FeedbackConfig] | None:
    """The blend's feedback entry on its bi-encoder."""
    model = bi.name if isinstance(bi, Path) else bi
    return None if setting is None else (model, setting)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--bi-run", type=Path, default=None, help="a trained bi-encoder's run")
    parser.add_argument("--skip-fp32", action="store_true", help="don't measure the fp32 model")
    parser.add_argument(
        "--feedback",
        default="2:4.0",
        type=feedback_setting,
        help="pseudo-relevance feedback TOP_K:WEIGHT (benchmarks/feedback_select.py), or 'off'",
    )
    args = parser.parse_args()
    if not DL19.is_dir():  # measured after packing: a half package was left behind
        raise SystemExit(f"{DL19} not found: TREC DL 2019 from ../shared/data is needed")
    checkpoint = args.run / "best"
    cross = pack_cross_encoder(checkpoint, args.out / "cross-encoder")
    bi: str | Path = "all-minilm-l6-v2"
    if args.bi_run is not None:
        bi = pack_bi_encoder(args.bi_run / "best", args.out / "bi-encoder")
    task = validation_task_of_run(args.run)
    fit = fit_blend([cross, bi], task)
    print(f"blend fitted on {fit.pairs} pairs ({fit.positives} relevant): {fit}", flush=True)
    training = json.loads((checkpoint / "semrank_training.json").read_text())
    write_blend(
        args.out,
        [
            ("cross-encoder", None, fit.weights[0]),
            (bi.name if isinstance(bi, Path) else bi, "bi-encoder", fit.weights[1]),
        ],
        bias=fit.bias,
        # Read documents in windows of the length the cross-encoder was trained on (SciFact
        # train: 128-token chunks 0.742 vs 256-token windows 0.716 nDCG@10, RESULTS.md).
        doc_tokens=int(training["config"]["max_length"]),
        feedback=feedback_of(args.feedback, bi),
    )
    scores = {
        "dl19_ndcg10_cross_encoder_int8": dl19_ndcg(cross),
        "dl19_ndcg10_blend": dl19_ndcg(args.out),
        "blend_fit": {"weights": fit.weights, "bias": fit.bias, "pairs": fit.pairs,
                      "positives": fit.positives, "task": task.name},
        "training": training,
    }  # fmt: skip
    if not args.skip_fp32:
        scores["dl19_ndcg10_cross_encoder_fp32"] = dl19_ndcg(checkpoint)
    if isinstance(bi, Path):
        scores["dl19_ndcg10_bi_encoder_int8"] = dl19_ndcg(bi)
        scores["bi_encoder_training"] = json.loads(
            (args.bi_run / "best" / "semrank_training.json").read_text()
        )
    (args.out / "scores.json").write_text(json.dumps(scores, indent=2, default=str) + "\n")
    write_model_card(args.out, scores, training_commands(training_chain(checkpoint)))
    print(json.dumps({k: v for k, v in scores.items() if k.startswith("dl19")}, indent=2))


if __name__ == "__main__":
    run(main)
