"""CLI commands of this stage (registered by ``semrank.cli``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer

from semrank._files import partition_path
from semrank.errors import InvalidInputError


def _base_directory(base: str | None, *, new_head: bool = True) -> Path:
    """A local encoder folder, or a catalog name resolved by ``semrank.models``: the encoder a
    new head goes on (``new_head``: no --init-from), and the bi-encoder that mines negatives and
    teaches."""
    if base and Path(base).expanduser().is_dir():
        folder = Path(base).expanduser()
    else:
        from semrank.models import resolve, resolve_embedding_model

        folder = (resolve(base) if base else resolve_embedding_model()).path
    if (folder / "blend.json").is_file():
        raise InvalidInputError(
            f"--base {base!r} is a blend of models, not an encoder; to continue from its "
            f"cross-encoder, give --init-from {folder / 'cross-encoder'}"
        )
    if new_head:  # with --init-from the base only mines and teaches: any encoder does
        _check_head_base(folder, base)
    return folder


def _model_config(folder: Path, option: str, named: str | None) -> dict[str, Any]:
    import json

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InvalidInputError(
            f"{option} {named!r}: cannot read {folder}/config.json ({error})"
        ) from None
    return config if isinstance(config, dict) else {}


def _check_head_base(folder: Path, named: str | None) -> None:
    """A cross-encoder given as --base lost its head (a new one was fitted) and mined with its
    own encoder; a non-BERT encoder failed with a traceback after mining (the head fit reads
    BERT's pooler)."""
    config = _model_config(folder, "--base", named)
    if "data_digest" in config:  # a run's record: "is a None model" said nothing
        raise InvalidInputError(
            f"--base {named!r} is a training run's folder, not a model; its model is "
            f"{folder / 'best'}: give --init-from {folder / 'best'} to continue from it"
        )
    architectures = config.get("architectures") or []
    classifier = any(str(a).endswith("ForSequenceClassification") for a in architectures)
    gated = config.get("model_type") == "semrank_gated_bert"  # mining cannot load it either
    if gated or (config.get("model_type") == "bert" and classifier):
        raise InvalidInputError(
            f"--base {named!r} is a cross-encoder; --base is the encoder a new head goes on (and "
            f"the bi-encoder that mines negatives): give --init-from {folder} to continue from it"
        )
    if config.get("model_type") != "bert":
        raise InvalidInputError(
            f"--base {named!r} is a {config.get('model_type')!r} model; semrank train starts from "
            "BERT-family encoders for a new head (MiniLM, BERT, TinyBERT); --init-from a "
            "cross-encoder of another family trains it, with any encoder as --base to mine"
        )


def _report_task(text: str) -> tuple[str, Path, Path]:
    name, sep, files = text.partition("=")
    run, sep2, qrels = partition_path(files)
    if not (sep and sep2 and name):
        raise InvalidInputError(f"bad --report {text!r}; use NAME=RUN.json[.gz]:QRELS.txt")
    return name, Path(run).expanduser(), Path(qrels).expanduser()


# What a run imports at some point: missing ones were found after mining (minutes to hours).
TRAINING_MODULES = ("torch", "transformers", "tqdm", "sklearn", "ir_measures", "pytrec_eval")


def _require_training_packages() -> None:
    import importlib.util

    from semrank.errors import BackendUnavailableError

    missing = [name for name in TRAINING_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise BackendUnavailableError(
            f"semrank train needs {', '.join(missing)}: pip install 'semrank[train]'"
        )


def train_command(
    data: list[str] = typer.Option(
        ...,
        "--data",
        help="Training data PATH[,weight=W][,limit=N][,name=X][,corpus=FILE]; repeatable "
        "(corpus: unjudged passages, JSONL of {text, title?}, to mine negatives from).",
    ),
    output: Path = typer.Option(..., "--output", help="Run folder (checkpoints, best/, last/)."),
    base: str | None = typer.Option(
        None, "--base", help="Starting checkpoint (folder or model name; default all-MiniLM-L6-v2)."
    ),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Stop after this many steps."),
    max_minutes: float | None = typer.Option(None, "--max-minutes", help="Stop after this time."),
    batch_queries: int = typer.Option(4, "--batch-queries", help="Queries per optimiser step."),
    negatives: int = typer.Option(7, "--negatives", help="Negatives per query."),
    mining: str = typer.Option(
        "dense", "--mining", help='Negatives: "dense" (bi-encoder) or "hybrid" (+ BM25).'
    ),
    architecture: str = typer.Option(
        "cross",
        "--architecture",
        help='"cross" (BERT + a new head), "gated" (starts as the bi-encoder; see docs) or "bi" '
        "(fine-tunes the bi-encoder itself, exported as a sentence-transformers model).",
    ),
    max_length: int = typer.Option(128, "--max-length", help="Tokens per (query, passage) pair."),
    lr: float = typer.Option(5e-5, "--lr", help="Peak learning rate."),
    distill_weight: float = typer.Option(1.0, "--distill-weight", help="Weight of the KL term."),
    teacher_encoder: list[str] = typer.Option(
        [],
        "--teacher-encoder",
        help="A further bi-encoder FOLDER[:WEIGHT] whose cosine joins the distillation teacher "
        "(training only, e.g. a larger embedding model); repeatable.",
    ),
    layer_lr_decay: float = typer.Option(
        1.0, "--layer-lr-decay", help="Each lower layer's learning rate x this (1: same)."
    ),
    eval_every: int = typer.Option(0, "--eval-every", help="Also validate every N steps."),
    eval_minutes: float = typer.Option(20.0, "--eval-minutes", help="Validate every N minutes."),
    val_source: str | None = typer.Option(None, "--val-source", help="Data name to hold out from."),
    val_queries: int = typer.Option(200, "--val-queries", help="Held-out queries (0: none)."),
    val_candidates: int = typer.Option(
        20, "--val-candidates", help="Candidates per held-out query (its positives first)."
    ),
    init_from: str | None = typer.Option(
        None,
        "--init-from",
        help="Start from this trained cross-encoder (e.g. an earlier run's best/), keeping its "
        "head; --base still mines negatives and teaches.",
    ),
    teacher_model: str | None = typer.Option(
        None,
        "--teacher-model",
        help="A cross-encoder FOLDER[:WEIGHT] whose logits join the distillation teacher.",
    ),
    report: list[str] = typer.Option(
        [], "--report", help="Report-only re-ranking task NAME=RUN.json.gz:QRELS; repeatable."
    ),
    onnx: bool = typer.Option(True, "--onnx/--no-onnx", help="Add model.onnx to the best model."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUTPUT/checkpoint.pt."),
    seed: int = typer.Option(0, "--seed"),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads."),
) -> None:
    """Fine-tune a cross-encoder re-ranker (needs the "train" extra of semrank: torch)."""
    from semrank.train import DataSpec, TrainConfig, parse_teacher_encoder, train

    _require_training_packages()
    if max_steps is None and max_minutes is None:
        raise InvalidInputError("give --max-steps or --max-minutes (or both)")
    specs = tuple(DataSpec.parse(d) for d in data)
    missing = [str(spec.path) for spec in specs if not spec.path.exists()]
    if missing:
        raise InvalidInputError(f"--data path not found: {', '.join(missing)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = TrainConfig(
        base=_base_directory(base, new_head=init_from is None),
        data=specs,
        output=output.expanduser(),
        max_steps=max_steps,
        max_minutes=max_minutes,
        batch_queries=batch_queries,
        negatives=negatives,
        mining=mining,
        architecture=architecture,
        max_length=max_length,
        lr=lr,
        distill_weight=distill_weight,
        teacher_encoders=tuple(parse_teacher_encoder(t) for t in teacher_encoder),
        layer_lr_decay=layer_lr_decay,
        eval_every=eval_every,
        eval_minutes=eval_minutes,
        val_source=val_source,
        val_queries=val_queries,
        val_candidates=val_candidates,
        **_cross_encoder_options(init_from, teacher_model),
        report_tasks=tuple(_report_task(r) for r in report),
        export_onnx=onnx,
        seed=seed,
        threads=threads,
    )
    typer.echo(str(train(config, resume=resume)))


def _require_cross_encoder(folder: Path, named: str, *, option: str = "--init-from") -> None:
    """--init-from keeps the model's head (an encoder without one trained from a random head:
    its fit to the teacher is skipped); --teacher-model scores with it."""
    config = _model_config(folder, option, named)
    architectures = [str(a) for a in config.get("architectures") or []]
    gated = config.get("model_type") == "semrank_gated_bert"
    if not gated and not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise InvalidInputError(
            f"{option} {named!r} is not a cross-encoder (architectures {architectures}); "
            "give an earlier run's best/ folder (an encoder goes in --base or --teacher-encoder)"
        )
    from semrank.train._model import check_one_logit

    if not gated:  # its score is one scaled cosine, whatever num_labels' default says
        check_one_logit(folder, config)  # before mining, which may take hours


def _cross_encoder_options(init_from: str | None, teacher_model: str | None) -> dict[str, Any]:
    from semrank.train import parse_teacher_encoder

    expected = "the best/ folder of an earlier `semrank train` run, or another cross-encoder"
    options: dict[str, Any] = {}
    if init_from is not None:
        # No weight: a ':' in the folder's own name stays part of it.
        folder = Path(init_from).expanduser()
        parse_teacher_encoder(f"{folder}:1", what="--init-from", expected=expected)
        _require_cross_encoder(folder, init_from)
        options["init_from"] = folder
    if teacher_model is not None:
        folder, weight = parse_teacher_encoder(
            teacher_model, what="--teacher-model", expected=expected
        )
        _require_cross_encoder(folder, str(folder), option="--teacher-model")
        options["teacher_model"], options["teacher_model_weight"] = folder, weight
    return options


def register(app: typer.Typer) -> None:
    """Add this stage's commands to ``app``."""
    app.command("train")(train_command)
