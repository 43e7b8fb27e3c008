"""The training loop: resumable checkpoints, validation with keep-best, export at the end."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import pickle
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from semrank._checks import is_finite_number, is_int
from semrank._files import fsync_dir, fsync_file, partition_path
from semrank._process import end_as_signal
from semrank.errors import DataFormatError, InvalidInputError, StorageError
from semrank.models.loading import RUN_CHECKPOINT
from semrank.train._data import Collection, DataSpec, load_collection
from semrank.train._evaluate import (
    RankingTask,
    cpu_autocast,
    encode_pairs,
    evaluate_task,
    fit_calibration,
    ndcg_at_10,
    random_order_ndcg,
    task_run,
)
from semrank.train._losses import listwise_loss
from semrank.train._mining import (
    MinedCollection,
    add_teacher_encoder,
    check_mining_mode,
    encoder_model,
    mine_collection,
)
from semrank.train._model import (
    bi_encoder_max_seq_length,
    build_cross_encoder,
    check_architecture,
    check_max_length,
    export_bi_encoder,
    export_model,
    fit_head_to_teacher,
    load_encoder,
)
from semrank.train._sampling import GroupSampler, split_validation

log = logging.getLogger("semrank.train")

CHECKPOINT = RUN_CHECKPOINT  # model loading tells a run folder from a model by it


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything one training run needs; stored in the run folder and the exported model."""

    base: Path
    data: tuple[DataSpec, ...]
    output: Path
    max_steps: int | None = None
    max_minutes: float | None = None
    batch_queries: int = 4
    negatives: int = 7
    mining_depth: int = 30
    # "dense": the bi-encoder's nearest pool passages; "hybrid": interleaved with BM25's.
    mining: str = "dense"
    # "cross": BERT + a new 1-logit head fitted to the bi-encoder; "gated": the segment-gated
    # cross-encoder that starts as the bi-encoder (semrank.runtime.torch_gated); "bi": the
    # bi-encoder itself, distilled (e.g. from a larger teacher encoder) and exported as one.
    architecture: str = "cross"
    # The gated model's cross-attention gates move by this multiple of ``lr``: a gate is one
    # scalar per head whose useful range is several units, the weights' is thousandths.
    gate_lr_multiplier: float = 500.0
    max_length: int = 160
    lr: float = 5e-5
    head_lr_multiplier: float = 5.0
    layer_lr_decay: float = 1.0
    # None: 50 steps, or a tenth of a shorter step budget (a 20-step fine-tune stayed at 12%
    # of its --lr); a number is taken as given.
    warmup_steps: int | None = None
    final_lr_fraction: float = 0.1
    weight_decay: float = 0.01
    distill_weight: float = 1.0
    # Weight of the label cross-entropy: below 1 when the teacher knows more than the labels of
    # easy mined lists teach (they over-fit the validation split's kind of list).
    label_weight: float = 1.0
    teacher_scale: float = 20.0
    # Start from a trained cross-encoder instead of ``base`` + a fitted head (``base`` still
    # mines negatives and gives the bi-encoder teacher scores).
    init_from: Path | None = None
    # A frozen cross-encoder whose logits join the bi-encoder's scaled cosine in the
    # distillation target: distilling an ensemble the student alone cannot match yet.
    teacher_model: Path | None = None
    teacher_model_weight: float = 1.0
    # Further bi-encoders (folder, weight) whose cosine joins the teacher: e.g. a larger
    # embedding model used only at training time, so the student learns more than the mining
    # bi-encoder knows. Scaled by ``teacher_scale`` like the mining bi-encoder's cosine.
    teacher_encoders: tuple[tuple[Path, float], ...] = ()
    head_probe_queries: int = 96
    val_source: str | None = None
    val_queries: int = 200
    val_candidates: int = 20
    eval_every: int = 0
    checkpoint_minutes: float = 10.0
    eval_minutes: float = 20.0
    eval_at_start: bool = False
    report_tasks: tuple[tuple[str, Path, Path], ...] = ()  # (name, run.json.gz, qrels)
    export_onnx: bool = False
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        # Paths given as text are paths (TrainConfig(output="run") failed on .exists()).
        for key in ("base", "output", "init_from", "teacher_model"):
            if isinstance(getattr(self, key), str):
                object.__setattr__(self, key, Path(getattr(self, key)))
        check_mining_mode(self.mining)  # before any model loads, whoever builds the config
        check_architecture(self.architecture)
        _check_positive(
            max_minutes=self.max_minutes,
            lr=self.lr,
            layer_lr_decay=self.layer_lr_decay,
            eval_minutes=self.eval_minutes,
            checkpoint_minutes=self.checkpoint_minutes,
        )
        _check_positive(
            integer=True,
            max_steps=self.max_steps,
            batch_queries=self.batch_queries,
            negatives=self.negatives,
            max_length=self.max_length,
            threads=self.threads,
            warmup_steps=self.warmup_steps,
            val_candidates=self.val_candidates,
        )
        _check_not_negative(
            distill_weight=self.distill_weight,
            label_weight=self.label_weight,
            eval_every=self.eval_every,
            val_queries=self.val_queries,
        )
        _check_positive(teacher_scale=self.teacher_scale)
        if not is_int(self.seed, at_least=0) or self.seed >= 2**32:
            raise InvalidInputError(
                f"seed={self.seed!r} (--seed): must be a whole number from 0 to {2**32 - 1}"
            )
        if self.batch_queries > MAX_BATCH_QUERIES:
            raise InvalidInputError(
                f"batch_queries={self.batch_queries!r} (--batch-queries): at most "
                f"{MAX_BATCH_QUERIES}; each step reads batch_queries x (negatives + 1) pairs"
            )
        if not is_int(self.threads or 1, at_least=1) or (self.threads or 1) > MAX_THREADS:
            raise InvalidInputError(
                f"threads={self.threads!r} (--threads): at most {MAX_THREADS}; give the cores "
                "the run may use"
            )
        if not is_finite_number(self.teacher_model_weight):
            raise InvalidInputError(
                f"teacher_model_weight={self.teacher_model_weight!r}: must be a number"
            )
        for path, weight in self.teacher_encoders:
            if not is_finite_number(weight):
                raise InvalidInputError(
                    f"teacher encoder {path}: weight {weight!r} is not a number"
                )
        names = [spec.source_name for spec in self.data]
        if self.val_source is not None and self.val_source not in names:
            raise InvalidInputError(
                f"val_source={self.val_source!r} (--val-source) is not a --data source; "
                f"choose one of: {', '.join(names)} (set a source's name with ,name=X)"
            )


MAX_THREADS = 1024  # more is a typo: OpenBLAS crashed (SIGSEGV) at 100,000
MAX_BATCH_QUERIES = 1024  # more is a typo: 100,000 filled 24 GB before the first step


def _check_positive(*, integer: bool = False, **values: float | None) -> None:
    """0 or less (or NaN) would never stop (a budget) or give empty batches (a count)."""
    for name, value in values.items():
        good = is_int(value, at_least=1) if integer else is_finite_number(value)
        if value is not None and (not good or value <= 0):
            flag = "--" + name.replace("_", "-")
            whole = " (a whole one)" if integer else ""
            raise InvalidInputError(f"{name}={value!r} ({flag}): must be a positive number{whole}")


def _check_not_negative(**values: float) -> None:
    """Weights and counts where 0 means "off"; NaN would poison the loss, a negative flip it."""
    for name, value in values.items():
        if not is_finite_number(value) or value < 0:
            flag = "--" + name.replace("_", "-")
            raise InvalidInputError(f"{name}={value!r} ({flag}): must be 0 (off) or more")


# What a resumed run may change: budgets and monitoring. Everything else decides what the
# checkpoint is (its architecture, data, validation split...), so changing it would continue
# one run under another's record.
RESUMABLE_CHANGES = frozenset(
    {"output", "max_steps", "max_minutes", "eval_every", "checkpoint_minutes", "eval_minutes",
     "eval_at_start", "report_tasks", "export_onnx", "threads"}
)  # fmt: skip


@dataclass(kw_only=True)
class RunState:
    step: int = 0
    elapsed_s: float = 0.0
    best_val: float = float("-inf")
    best_step: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)
    # (scale, shift) fitted at the latest evaluation: semrank reads an export's scores as
    # sigmoid(scale * logit + shift), so that 0..1 scores are probabilities of relevance
    calibration: list[float] | None = None


def parse_teacher_encoder(
    text: str,
    *,
    what: str = "teacher encoder",
    expected: str = "a sentence-transformers or Hugging Face encoder directory",
) -> tuple[Path, float]:
    """``PATH`` or ``PATH:WEIGHT`` (weight 1) of a teacher model folder, checked."""
    path, sep, weight = partition_path(text, last=True)
    if not sep or not path:
        path, weight = text, "1"
    try:
        value = float(weight)
    except ValueError:
        raise InvalidInputError(
            f"{what} {text!r}: the weight after ':' must be a number, e.g. {path}:1.0"
        ) from None
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise InvalidInputError(
            f"{what} {str(folder)!r} is not a model folder (no config.json); give {expected}"
        )
    return folder, value


def load_data(config: TrainConfig) -> list[Collection]:
    """Every --data source read and checked (a bad file is named before any settings)."""
    if not config.data:
        raise InvalidInputError("no training data: give at least one --data source")
    return [load_collection(spec, seed=config.seed) for spec in config.data]


def prepare_data(
    config: TrainConfig, collections: list[Collection] | None = None
) -> tuple[list[MinedCollection], RankingTask | None, float | None]:
    """Load (unless given), mine (cached under the run folder) and split off the validation
    queries."""
    if collections is None:
        collections = load_data(config)
    encoder, tokenizer = load_encoder(config.base)
    positions = check_max_length(config.base, encoder, config.max_length)
    base = encoder_model(config.base)  # read as search reads it: pooling, prompts, lowercasing
    mined = []
    for collection in collections:
        mined.append(
            mine_collection(
                collection,
                encoder=encoder,
                tokenizer=tokenizer,
                encoder_id=str(Path(config.base).resolve()),  # however it is typed
                depth=config.mining_depth,
                max_length=min(128, positions),
                cache_dir=config.output / "cache",
                mining=config.mining,
                pooling=base.pooling,
                reading=base,
            )
        )
    for path, weight in config.teacher_encoders:
        teacher, teacher_tokenizer = load_encoder(path)
        for mined_collection in mined:
            add_teacher_encoder(
                mined_collection,
                encoder=teacher,
                tokenizer=teacher_tokenizer,
                encoder_id=str(Path(path).resolve()),
                weight=weight,
                max_length=128,
                cache_dir=config.output / "cache",
            )
    val_name = config.val_source or mined[0].name
    source = next((m for m in mined if m.name == val_name), None)
    if source is None or config.val_queries <= 0:
        return mined, None, None
    total = len(source.groups)
    task, teacher = split_validation(
        source, queries=config.val_queries, candidates=config.val_candidates, seed=config.seed
    )
    log.info("validation: %d of %s's %d queries held out", len(task.queries), val_name, total)
    _drop_validation_queries(mined, task)
    return mined, task, teacher


def _drop_validation_queries(mined: list[MinedCollection], task: RankingTask) -> None:
    """A held-out query must not be trained on from another --data source either (two sources
    sharing queries trained on the whole validation split, and kept the best model by it)."""
    held_out = {" ".join(query.split()).casefold() for query in task.queries.values()}
    for collection in mined:
        keep = [
            i
            for i, group in enumerate(collection.groups)
            if " ".join(group.query.split()).casefold() not in held_out
        ]
        if len(keep) < len(collection.groups):
            log.info(
                "validation: %d queries of %s left out of training (the same query, in another "
                "spelling or source, is held out)",
                len(collection.groups) - len(keep),
                collection.name,
            )
            collection.keep_groups(keep)
    emptied = [collection.name for collection in mined if not collection.groups]
    if emptied:
        log.warning("data sources left without training queries: %s", ", ".join(emptied))
        mined[:] = [collection for collection in mined if collection.groups]
    if not mined:  # numpy's "a must be a positive integer" came next
        raise InvalidInputError(
            f"no query is left to train on once the {len(task.queries)} validation queries are "
            "held out (queries differing only in case or spacing count as one); give more "
            "queries, or lower --val-queries"
        )


def learning_rate_factor(config: TrainConfig, state: RunState) -> float:
    """Linear warmup, then linear decay over steps or wall time, whichever runs out first.
    The default warmup takes at most a tenth of a step budget: a 20-step fine-tune never got
    past 12% of its --lr (budgets from 500 steps, the recipes measured here, keep 50 steps)."""
    warmup_steps = config.warmup_steps
    if warmup_steps is None:
        warmup_steps = min(50, config.max_steps // 10) if config.max_steps else 50
    warmup = min(1.0, (state.step + 1) / max(1, warmup_steps))
    progress = 0.0
    if config.max_steps:
        progress = state.step / config.max_steps
    if config.max_minutes:
        progress = max(progress, state.elapsed_s / (60 * config.max_minutes))
    decay = 1.0 - (1.0 - config.final_lr_fraction) * min(1.0, progress)
    return warmup * decay


def _optimizer(model: Any, config: TrainConfig) -> Any:
    import torch

    groups: dict[float, list[Any]] = {}
    for name, parameter in model.named_parameters():
        groups.setdefault(_lr_multiplier(name, config, model.config.num_hidden_layers), []).append(
            parameter
        )
    param_groups = [
        {"params": params, "lr": config.lr * factor, "base_lr": config.lr * factor}
        for factor, params in sorted(groups.items())
    ]
    return torch.optim.AdamW(param_groups, weight_decay=config.weight_decay)


def _lr_multiplier(name: str, config: TrainConfig, layers: int) -> float:
    """The head learns faster; with ``layer_lr_decay`` < 1 each layer below the top learns
    slower by that factor, embeddings slowest, so fine-tuning keeps what pre-training learnt."""
    if name.startswith("classifier"):
        return config.head_lr_multiplier
    if name == "cross_gates":
        return config.gate_lr_multiplier
    match = re.search(r"\.layer\.(\d+)\.", name)
    if match:
        depth = layers - int(match.group(1)) - 1  # 0 for the top layer
    elif "embeddings" in name:
        depth = layers
    else:  # pooler and anything above the encoder
        depth = 0
    return config.layer_lr_decay**depth


def _load_teacher_model(config: TrainConfig, student_tokenizer: Any) -> tuple[Any, Any] | None:
    """The frozen cross-encoder teacher, and its tokenizer when its pair layout differs from the
    student's (None: the student's encoded batch is fed to it as is)."""
    if config.teacher_model is None:
        return None
    teacher, teacher_tokenizer = build_cross_encoder(config.teacher_model)
    log.info("distilling toward bi-encoder + the cross-encoder in %s", config.teacher_model)
    same = (
        teacher_tokenizer.backend_tokenizer.to_str() == student_tokenizer.backend_tokenizer.to_str()
    )
    return teacher.eval(), None if same else teacher_tokenizer


def _train_step(
    models: tuple[Any, Any], tokenizer: Any, optimizer: Any, batch: Any, config: TrainConfig
) -> dict:
    import torch

    model, teacher_model = models
    pairs = [(q, p) for q, ps in zip(batch.queries, batch.passages, strict=True) for p in ps]
    encoded = encode_pairs(tokenizer, pairs, max_length=config.max_length)
    with cpu_autocast():
        logits = model(**encoded).logits[:, 0]
    scores = logits.float().view(len(batch.queries), -1)
    teacher = torch.from_numpy(batch.teacher).float() * config.teacher_scale
    if teacher_model is not None:
        teacher_net, teacher_tokenizer = teacher_model
        teacher_input = encoded
        if teacher_tokenizer is not None:
            teacher_input = encode_pairs(teacher_tokenizer, pairs, max_length=config.max_length)
        with torch.inference_mode(), cpu_autocast():
            extra = teacher_net(**teacher_input).logits[:, 0].float().view_as(scores)
        teacher = teacher + config.teacher_model_weight * extra
    loss, parts = listwise_loss(
        scores, teacher, distill_weight=config.distill_weight, label_weight=config.label_weight
    )
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": float(loss.detach()), **parts}


def _save_checkpoint(
    path: Path, model: Any, optimizer: Any, sampler: GroupSampler, state: RunState
) -> None:
    import torch

    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "sampler": sampler.state(),
        "torch_rng": torch.get_rng_state(),
        "state": asdict(state),
    }
    tmp = path.with_suffix(".tmp")
    try:
        torch.save(payload, tmp)
        fsync_file(tmp)  # on disk before the rename
        tmp.replace(path)  # atomic: a kill mid-save leaves the previous checkpoint intact
        fsync_dir(path.parent)
    except BaseException as exc:  # Ctrl-C too: a half-written .tmp is no checkpoint
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, (OSError, RuntimeError)):  # torch reports a full disk as either
            then = (
                "rerun the command with --resume (it continues from the last checkpoint)"
                if path.exists()
                else f"start again in a new --output (no checkpoint was saved in {path.parent})"
            )
            raise StorageError(
                f"cannot write the checkpoint {path} ({exc}); is the disk full? Free space, "
                f"then {then}"
            ) from None
        raise


def _load_checkpoint(path: Path, model: Any, optimizer: Any, sampler: GroupSampler) -> RunState:
    import torch

    try:
        # Tensors and plain values only: a run folder may come from someone else, and a full
        # unpickle runs whatever code the file names.
        payload = torch.load(path, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" not in str(exc):  # bytes that are no pickle ("Unsupported operand")
            raise _damaged_checkpoint(path, exc) from None
        raise DataFormatError(  # a pickle naming a function or class to call
            f"--resume: the checkpoint {path} holds Python objects that `semrank train` never "
            "saves (loading it could run code), so it is not loaded: it was not written by "
            "semrank; delete it to start the run again from step 0, or name a new --output"
        ) from None
    # An empty file (EOFError), a cut one (RuntimeError: zip archive), another file's bytes
    # (the weights-only unpickler raises KeyError, IndexError... on them).
    except (EOFError, RuntimeError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise _damaged_checkpoint(path, exc) from None
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    sampler.restore(payload["sampler"])
    torch.set_rng_state(payload["torch_rng"])
    return RunState(**payload["state"])


def _damaged_checkpoint(path: Path, exc: Exception) -> DataFormatError:
    best = path.parent / "best"
    then = (
        f"name a new --output, with --init-from {best} to go on from the best model so far"
        if best.exists()
        else "delete it to start the run again from step 0 (--resume without a checkpoint)"
    )
    why = " ".join(str(exc).split())[:200]
    return DataFormatError(f"--resume: the checkpoint {path} is damaged ({why}); {then}")


def _evaluate(
    model: Any,
    tokenizer: Any,
    config: TrainConfig,
    val: RankingTask | None,
    reports: list,
    state: RunState,
) -> dict[str, float]:
    """Validation and report scores; the head's calibration is fitted on the validation lists."""
    metrics: dict[str, float] = {}
    if val is not None:
        run = task_run(model, tokenizer, val, max_length=config.max_length)
        metrics["val_ndcg10"] = ndcg_at_10(val.qrels, run)
        fitted = fit_calibration(val.qrels, run) if config.architecture != "bi" else None
        if fitted is None and config.architecture != "bi":
            log.warning(
                "no score calibration: the validation lists hold relevant candidates only (raise "
                "--val-candidates) or the model ranks them last; 0..1 scores are sigmoid(logit)"
            )
        state.calibration = list(fitted) if fitted else None
    for task in reports:
        metrics[f"{task.name}_ndcg10"] = evaluate_task(
            model, tokenizer, task, max_length=config.max_length
        )
    return metrics


def _metadata(config: TrainConfig, state: RunState, teacher_val: float | None) -> dict[str, Any]:
    """How the exported model was made: the settings with absolute paths (relative ones named
    nothing once the folder moved), the data's digest, the library versions and the time."""
    import time

    return {
        "config": _resolved_paths(json.loads(json.dumps(asdict(config), default=str))),
        "data_digest": _stored_config(config.output / "config.json").get("data_digest"),
        "versions": {name: _version(name) for name in ("semrank", "torch", "transformers")},
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "step": state.step,
        "best_step": state.best_step,
        "best_val_ndcg10": state.best_val if math.isfinite(state.best_val) else None,
        "teacher_val_ndcg10": teacher_val,
        "history": state.history,
        # semrank scores the model as sigmoid(scale * logit + shift); other tools see logits.
        "calibration": (
            {"scale": state.calibration[0], "shift": state.calibration[1]}
            if state.calibration
            else None
        ),
    }


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:  # run from a source tree that is not installed
        return None


def _log_metrics(config: TrainConfig, state: RunState, metrics: dict[str, Any]) -> None:
    row = {"step": state.step, "elapsed_min": round(state.elapsed_s / 60, 2), **metrics}
    state.history.append(row)
    with (config.output / "metrics.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
    log.info("eval %s", json.dumps(row))


def _rewrite_metrics(config: TrainConfig, state: RunState) -> None:
    """The evaluation log as of the checkpoint resumed from: evaluations after it are run
    again, and their rows were in the log twice."""
    rows = "".join(json.dumps(row) + "\n" for row in state.history)
    tmp = config.output / "metrics.jsonl.tmp"
    tmp.write_text(rows, "utf-8")
    tmp.replace(config.output / "metrics.jsonl")  # a kill meanwhile leaves the old log whole


def _finished(config: TrainConfig, state: RunState) -> bool:
    if config.max_steps and state.step >= config.max_steps:
        return True
    return bool(config.max_minutes and state.elapsed_s >= 60 * config.max_minutes)


def _claim_output(config: TrainConfig, *, resume: bool) -> Any:
    """The run folder, created; an earlier run in it is continued only when asked (``resume``)
    and only with its own settings, never overwritten: its checkpoint and best model may be
    hours of work. Returns the folder's lock, held while it is open."""
    output = config.output
    if output.exists() and not output.is_dir():
        raise InvalidInputError(f"--output {output} is a file; name a folder for the run")
    _refuse_a_model_folder(output)
    output.mkdir(parents=True, exist_ok=True)
    lock = _lock_run(output)
    _restore_swapped(output)
    earlier = [name for name in ("config.json", CHECKPOINT, "best") if (output / name).exists()]
    if earlier and not resume:
        raise InvalidInputError(
            f"--output {output} already holds a training run ({', '.join(earlier)}); pass "
            "--resume to continue it, or name a new folder"
        )
    if (output / "best").exists() and not (output / CHECKPOINT).exists():
        raise InvalidInputError(
            f"--resume: {output} holds a best model but no {CHECKPOINT} to continue from (a "
            "run from step 0 would replace that model); name a new --output folder, with "
            f"--init-from {output / 'best'} to start from that model"
        )
    if earlier:
        _check_same_run(config, output / "config.json")
    return lock


def _lock_run(output: Path) -> Any:
    """The run folder held for this process until it ends: a second run (or a --resume while
    the first still ran) wrote into the same folder, and the two runs' files mixed."""
    lock = (output / ".lock").open("a+", encoding="utf-8")
    try:
        import fcntl
    except ImportError:  # not POSIX: unguarded, as before
        return lock
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise InvalidInputError(
            f"--output {output} is in use by a training run that is still going ({holder}); "
            "wait for it to end (or stop it) before resuming, or name another folder"
        ) from None
    lock.truncate(0)
    lock.write(f"process {os.getpid()}")
    lock.flush()
    return lock


def _refuse_a_model_folder(output: Path) -> None:
    """A model's folder (an earlier run's best/, a downloaded checkpoint) also holds a
    config.json: resuming "into" it replaced that file with the run's record and broke the
    model."""
    stored_path = output / "config.json"
    if not stored_path.is_file() or (output / CHECKPOINT).exists():
        return
    try:
        stored = json.loads(stored_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return  # _stored_config names a damaged record
    is_model = isinstance(stored, dict) and ("model_type" in stored or "architectures" in stored)
    if is_model and "data_digest" not in stored:
        raise InvalidInputError(
            f"--output {output} holds a model (its config.json is a model's, not a training "
            f"run's); name a new folder for the run, with --init-from {output} to start from "
            "that model"
        )


def _stored_config(stored_path: Path) -> dict[str, Any]:
    """The run folder's record of its settings ({} where there is none)."""
    if not stored_path.is_file():
        return {}
    try:
        stored = json.loads(stored_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            f"--resume: {stored_path} is damaged ({exc}); the run's settings cannot be checked, "
            f"so name a new folder (its model {stored_path.parent / 'best'}, where there is "
            "one, can seed it with --init-from)"
        ) from None
    if not isinstance(stored, dict):
        raise InvalidInputError(f"--resume: {stored_path} holds no settings; name a new folder")
    return stored


def _check_same_run(config: TrainConfig, stored_path: Path) -> None:
    stored = _stored_config(stored_path)
    if not stored:
        return
    current = _resolved_paths(json.loads(json.dumps(asdict(config), default=str)))
    stored = _as_saved_today(_resolved_paths(stored))
    changed = [
        name
        for name, value in current.items()
        if name not in RESUMABLE_CHANGES and name in stored and stored[name] != value
    ]
    if changed:
        shown = "; ".join(f"{n}: {stored[n]!r} -> {current[n]!r}" for n in changed[:4])
        piped = "; what it read from a pipe, pipe in again" if PIPE in shown else ""
        raise InvalidInputError(
            f"--resume: this command changes what the run in {stored_path.parent} was trained "
            f"with ({shown}); give the same settings (only budgets, evaluation and reports may "
            f"change{piped}), or name a new folder"
        )


# What runs saved by earlier versions (records without record_version) held where today's
# settings mean the same: warmup_steps was 50 by default (now None: min(50, a tenth of
# max_steps), 50 for budgets from 500 steps), and --data values had fewer keys (each new one
# defaults to what the run did without it).
RECORD_VERSION = 2
_OLD_DEFAULT_WARMUP = 50


def _as_saved_today(stored: dict[str, Any]) -> dict[str, Any]:
    from dataclasses import MISSING, fields

    settings = dict(stored)
    earlier = "record_version" not in settings
    if earlier and settings.get("warmup_steps") == _OLD_DEFAULT_WARMUP:
        settings["warmup_steps"] = None
    defaults = {f.name: f.default for f in fields(DataSpec) if f.default is not MISSING}
    if isinstance(settings.get("data"), list):
        settings["data"] = [
            {**defaults, **spec} if isinstance(spec, dict) else spec for spec in settings["data"]
        ]
    return settings


_PATH_KEYS = {"base", "init_from", "teacher_model", "output", "path", "corpus"}
_PATH_LISTS = {"teacher_encoders", "report_tasks"}  # (path, weight), (name, run, qrels)


def _resolved_paths(value: Any, key: str | None = None) -> Any:
    """A run's settings with its file paths absolute: the same run resumed from another
    folder, or with ./data for data, is the same run."""
    if isinstance(value, dict):
        return {k: _resolved_paths(v, k) for k, v in value.items()}
    if isinstance(value, list):
        inner = "path" if key in _PATH_LISTS else key
        return [_resolved_paths(v, inner) for v in value]
    if isinstance(value, str) and key in _PATH_KEYS:
        return _resolved_path(value)
    return value


# A pipe (`--data <(cmd)`, /dev/stdin, a mkfifo) is read once, and its path names nothing after:
# /dev/fd/63 resolved to /proc/PID/fd/pipe:[N], another each run, so a resume given the same
# data through a pipe again was refused as changing it. Recorded as PIPE, a resume that pipes
# it again compares equal; the data digest checks that it held the same.
PIPE = "(a pipe)"
_PIPE_PATHS = re.compile(r"/dev/(fd/\d+|stdin)|/proc/(self|\d+)/fd/.*")


def _resolved_path(value: str) -> str:
    path = Path(value).expanduser()
    if _PIPE_PATHS.fullmatch(value) or path.is_fifo():
        return PIPE
    return str(path.resolve()) if path.exists() else value


def train(config: TrainConfig, *, resume: bool = False) -> Path:
    """Train a re-ranker as configured; returns the exported model folder (best by val)."""
    import torch

    from semrank.runtime._select import default_threads

    threads = config.threads or default_threads()
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(config.seed)
    with _claim_output(config, resume=resume):
        return _train(config, resume=resume)


def _train(config: TrainConfig, *, resume: bool) -> Path:
    reports = [load_trec_task(name, run, qrels) for name, run, qrels in config.report_tasks]
    loaded = load_data(config)
    digest = data_digest(loaded)
    if resume:  # before mining, which may take hours for a changed collection
        _check_same_data(config, digest)
    collections, val, teacher_val = prepare_data(config, loaded)
    _log_validation_references(val, teacher_val, seed=config.seed)
    if val is None and config.architecture != "bi":
        log.warning(
            "no validation split: no score calibration either (its 0..1 scores will be the "
            "logits' sigmoid, which a ranking loss leaves offset); keep --val-queries above 0"
        )
    model, tokenizer = build_cross_encoder(
        config.init_from or config.base, architecture=config.architecture
    )
    teacher_model = _load_teacher_model(config, tokenizer)
    sampler = GroupSampler(
        collections, negatives=config.negatives, depth=config.mining_depth, seed=config.seed
    )
    optimizer = _optimizer(model, config)
    checkpoint = config.output / CHECKPOINT
    evaluation = (val, reports, teacher_val)
    if resume and checkpoint.exists():
        state = _load_checkpoint(checkpoint, model, optimizer, sampler)
        log.info("resumed from %s at step %d", checkpoint, state.step)
        _rewrite_metrics(config, state)
    else:
        if resume:
            log.warning(
                "--resume: no checkpoint in %s yet (one is saved every %g minutes and at each "
                "evaluation): starting from step 0",
                config.output,
                config.checkpoint_minutes,
            )
        state = _fresh_start(model, tokenizer, sampler, config, evaluation)
    # Written once the data and any checkpoint have loaded: a run refused for bad data, or a
    # resume that cannot load, leaves the folder's record as it was.
    _write_record(config, digest, val)
    with _stop_between_steps() as stop:
        window = _run_steps(
            (model, teacher_model), tokenizer, optimizer, sampler, config, state, evaluation, stop
        )
        evaluated = bool(state.history) and state.history[-1]["step"] == state.step  # and saved
        if not evaluated:
            # Before the last evaluation (minutes with reports): a SIGTERM there lost every
            # step since the last checkpoint. A --resume from this one evaluates and exports.
            _save_checkpoint(checkpoint, model, optimizer, sampler, state)
    if stop[0]:  # a signal while that checkpoint was saved: stop, as the signal asked
        _stop_now(state, "evaluates and exports", stop[0])
    if not evaluated:
        mean_loss = sum(window) / len(window) if window else None
        _evaluate_and_keep(model, tokenizer, config, state, val, reports, teacher_val, mean_loss)
        _save_checkpoint(checkpoint, model, optimizer, sampler, state)  # with that evaluation
    return _final_export(model, tokenizer, config, state, teacher_val)


def _log_validation_references(
    val: RankingTask | None, teacher_val: float | None, *, seed: int
) -> None:
    """The teacher's validation score and a random order's: a model's score means something
    only between the two."""
    if val is None:
        log.info("teacher (bi-encoder) val nDCG@10: %s", teacher_val)
        return
    chance = random_order_ndcg(val, seed=seed)
    log.info("teacher (bi-encoder) val nDCG@10: %s; a random order: %.4f", teacher_val, chance)
    _warn_if_validation_cannot_select(val)


def _warn_if_validation_cannot_select(val: RankingTask) -> None:
    """Lists holding only relevant passages score nDCG@10 1.0 whatever the order: validation
    then keeps the first evaluated model as best/ (it said nothing)."""
    judged = val.qrels
    mixed = [
        qid
        for qid, candidates in val.candidates.items()
        if any(judged.get(qid, {}).get(docid, 0) <= 0 for docid, _ in candidates)
    ]
    if not mixed:
        log.warning(
            "every validation list holds only relevant passages, so validation nDCG@10 is 1.0 "
            "for any model and best/ stays the first one evaluated; give data with negatives "
            "(or a corpus= pool to mine them from), or more passages per query"
        )


def data_digest(collections: list[Collection]) -> str:
    """What the run trains and validates on (the split follows from it and the seed): the same
    files edited, grown or cut give another digest (a resumed run would otherwise train on
    another split, or index past its data)."""
    digest = hashlib.sha256()
    for collection in collections:
        digest.update(f"{collection.name}|{collection.weight}|{len(collection.passages)}".encode())
        for passage in collection.passages:
            digest.update(passage.encode() + b"\0")
        for group in collection.groups:
            digest.update(repr((group.query, group.positive_ids, group.negative_ids)).encode())
    return digest.hexdigest()


def _check_same_data(config: TrainConfig, digest: str) -> None:
    stored = _stored_config(config.output / "config.json").get("data_digest")
    if stored is not None and stored != digest:
        raise InvalidInputError(
            f"--resume: the training data differ from what the run in {config.output} was "
            "trained on (a file was edited, grown or cut); resume with the same data, or name "
            "a new folder (--init-from its best model to start from it)"
        )


def _write_record(config: TrainConfig, digest: str, val: RankingTask | None) -> None:
    """config.json, replaced whole (a kill mid-write must not leave half of it): the settings,
    a digest of the data, and the validation queries held out of training."""
    record = {
        **_resolved_paths(json.loads(json.dumps(asdict(config), default=str))),
        "data_digest": digest,
        "validation_queries": sorted(val.queries.values()) if val is not None else [],
        "record_version": RECORD_VERSION,
    }
    path = config.output / "config.json"
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(partial, path)


def _fresh_start(
    model: Any,
    tokenizer: Any,
    sampler: GroupSampler,
    config: TrainConfig,
    evaluation: tuple[RankingTask | None, list, float | None],
) -> RunState:
    """Step 0 of a new run: a plain cross-encoder's new head is first fitted to the teacher
    (a gated or bi model's head is the bi-encoder's cosine already; ``--init-from`` has one)."""
    state = RunState()
    if config.init_from is not None:
        log.info("starting from the cross-encoder in %s", config.init_from)
    elif config.architecture not in ("gated", "bi"):
        fit = fit_head_to_teacher(
            model,
            tokenizer,
            sampler,
            queries=config.head_probe_queries,
            max_length=config.max_length,
            scale=config.teacher_scale,
        )
        log.info("head fitted to the teacher: correlation %.3f", fit)
    if config.eval_at_start:
        _evaluate_and_keep(model, tokenizer, config, state, *evaluation)
    return state


def load_trec_task(name: str, run: Path, qrels: Path) -> RankingTask:
    from semrank.train._evaluate import load_trec_rerank_task

    return load_trec_rerank_task(run, qrels, name=name)


def _evaluate_and_keep(
    model: Any,
    tokenizer: Any,
    config: TrainConfig,
    state: RunState,
    val: RankingTask | None,
    reports: list,
    teacher_val: float | None,
    train_loss: float | None = None,
) -> None:
    """Evaluate; export to ``best/`` when the validation score improved (reports don't select)."""
    start = time.monotonic()
    metrics = _evaluate(model, tokenizer, config, val, reports, state)
    if train_loss is not None:
        metrics["train_loss"] = round(train_loss, 4)  # mean since the previous evaluation
    metrics["eval_s"] = round(time.monotonic() - start, 1)
    _log_metrics(config, state, metrics)
    score = metrics.get("val_ndcg10")
    if score is None or score > state.best_val:  # no val split: keep the latest
        state.best_step = state.step
        if score is not None:  # (the step number was recorded as nDCG@10 without one)
            state.best_val = score
        _export(model, tokenizer, config, state, config.output / "best", teacher_val)
        kept = f"val {score:.4f}" if val is not None else "no validation split: the latest"
        log.info("new best (%s) exported to %s", kept, config.output / "best")


def _export(
    model: Any,
    tokenizer: Any,
    config: TrainConfig,
    state: RunState,
    target: Path,
    teacher_val: float | None,
) -> None:
    """Into a fresh folder swapped in whole: files written over the old model's in place left a
    stale model.onnx beside new weights, and a full disk a half-written model."""
    from safetensors import SafetensorError

    from semrank.runtime.onnx_export import share_like_new_files

    metadata = _metadata(config, state, teacher_val)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        if config.architecture != "bi":
            export_model(model, tokenizer, staging, metadata=metadata)
        else:
            source = config.init_from or config.base
            length = bi_encoder_max_seq_length(source, model.config.max_position_embeddings)
            export_bi_encoder(model, staging, base=source, max_seq_length=length, metadata=metadata)
    except (OSError, RuntimeError, SafetensorError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        kept = f"; {target} keeps the model it held" if target.exists() else ""
        raise StorageError(
            f"cannot write the model to {target} ({exc}); is the disk full, or the folder not "
            f"writable?{kept}"
        ) from None
    # safetensors writes its file private (0600): a model trained by one user (a Docker build
    # as root) could not be loaded by the user who serves it.
    share_like_new_files(staging)
    _swap_in(staging, target)


def _swap_in(staging: Path, target: Path) -> None:
    """``staging`` becomes ``target``; a kill between the renames leaves ``target.old``, which
    the next run of the folder puts back (``_restore_swapped``)."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.replace(old)
    staging.replace(target)
    shutil.rmtree(old, ignore_errors=True)


def _restore_swapped(output: Path) -> None:
    for name in ("best", "last"):
        old = output / f"{name}.old"
        if old.is_dir() and not (output / name).exists():
            old.replace(output / name)


@contextlib.contextmanager
def _stop_between_steps() -> Iterator[list[int]]:
    """Ctrl-C (or SIGTERM, or SIGHUP: a closed terminal, an ssh connection dropped) stops the
    run after the step it is in, with a checkpoint saved: it stopped mid-step, and everything
    since the last checkpoint (up to --checkpoint-minutes) was lost. A second signal stops at
    once. ``stop[0]``: the signal that asked (0: none)."""
    stop = [0]
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers belong to the main thread
        return

    def ask(signum: int, frame: Any) -> None:
        if stop[0]:
            raise KeyboardInterrupt
        stop[0] = signum
        name = signal.Signals(signum).name
        log.warning("%s: stopping after this step, once a checkpoint is saved (again: now)", name)

    asking = [signal.SIGINT, signal.SIGTERM]
    hangup = getattr(signal, "SIGHUP", None)  # Windows has none
    if hangup is not None and signal.getsignal(hangup) is signal.SIG_DFL:
        asking.append(hangup)  # ignored (`nohup`): the run must go on, as it was asked to
    previous = {sig: signal.signal(sig, ask) for sig in asking}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_steps(
    models: tuple[Any, Any],
    tokenizer: Any,
    optimizer: Any,
    sampler: GroupSampler,
    config: TrainConfig,
    state: RunState,
    evaluation: tuple[RankingTask | None, list, float | None],
    stop: list[int],
) -> list[float]:
    """Train until the step/time budget is spent; returns the losses since the last evaluation.
    ``stop[0]`` set (by a signal) ends it after the current step with a checkpoint saved."""
    from tqdm import tqdm

    model = models[0]
    total = config.max_steps or None
    # Off a terminal the bar's \r frames glued the 50-step log lines together in a log file;
    # those lines say the progress there.
    bar = tqdm(
        total=total,
        initial=state.step,
        mininterval=20,
        desc="train",
        dynamic_ncols=True,
        disable=not sys.stderr.isatty(),
    )
    model.train()
    last_checkpoint = last_eval = time.monotonic()
    running: dict[str, float] = {}
    window: list[float] = []
    while not _finished(config, state):
        started = time.monotonic()
        factor = learning_rate_factor(config, state)
        parts = _one_step(models, tokenizer, optimizer, sampler, config, state, factor)
        running = {k: 0.98 * running.get(k, v) + 0.02 * v for k, v in parts.items()}
        window.append(parts["loss"])
        state.step += 1
        state.elapsed_s += time.monotonic() - started
        _report_progress(bar, running, state, factor * config.lr)
        now = time.monotonic()
        eval_due = now - last_eval >= 60 * config.eval_minutes or bool(
            config.eval_every and state.step % config.eval_every == 0
        )
        if eval_due:
            mean_loss = sum(window) / len(window)
            _evaluate_and_keep(model, tokenizer, config, state, *evaluation, mean_loss)
            window.clear()
            state.elapsed_s += time.monotonic() - now
            last_eval = time.monotonic()
        if eval_due or stop[0] or now - last_checkpoint >= 60 * config.checkpoint_minutes:
            _save_checkpoint(config.output / CHECKPOINT, model, optimizer, sampler, state)
            log.info("checkpoint saved at step %d", state.step)
            last_checkpoint = time.monotonic()
        if stop[0]:
            bar.close()
            _stop_now(state, "continues", stop[0])
    bar.close()
    return window


def _stop_now(state: RunState, then: str, signum: int) -> None:
    """End the run as signal ``signum`` asked, its checkpoint saved: Ctrl-C as an interrupt
    (130), SIGTERM (143) and SIGHUP (129) as that signal, as other commands end: a supervisor
    (systemd, Kubernetes, a batch queue) takes 130 for a failure, not for the stop it asked."""
    said = f"stopped at step {state.step}; the same command with --resume {then}"
    log.warning(said)
    if signum != signal.SIGINT:
        end_as_signal(signum)
    raise KeyboardInterrupt(said)


def _one_step(
    models: tuple[Any, Any],
    tokenizer: Any,
    optimizer: Any,
    sampler: GroupSampler,
    config: TrainConfig,
    state: RunState,
    factor: float,
) -> dict[str, float]:
    """One optimiser step at ``factor`` x the learning rate; its loss parts."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    batch = sampler.next_batch(config.batch_queries)
    parts = _train_step(models, tokenizer, optimizer, batch, config)
    if not math.isfinite(parts["loss"]):
        raise InvalidInputError(_diverged(config, state, parts["loss"]))
    return parts


def _diverged(config: TrainConfig, state: RunState, loss: float) -> str:
    """What to do after a diverged step: a resume may not change --lr, so a new folder."""
    best = config.output / "best"
    start = f", with --init-from {best} to start from its best model" if best.is_dir() else ""
    kept = [name for name in ("best/", CHECKPOINT) if (config.output / name).exists()]
    saved = f" ({' and '.join(kept)} kept as saved)" if kept else ""
    return (
        f"the loss became {loss} at step {state.step + 1}: the run diverged at --lr "
        f"{config.lr}{saved}; rerun with a lower --lr in a new --output{start}"
    )


def _report_progress(bar: Any, running: dict[str, float], state: RunState, lr: float) -> None:
    """The bar's loss / lr, and a log line every 50 steps (the bar may not reach a log file)."""
    bar.update(1)
    # refresh=False: the bar redraws at its own interval, not at every step (a log line per step)
    bar.set_postfix(
        loss=f"{running['loss']:.3f}", ce=f"{running['ce']:.3f}", lr=f"{lr:.1e}", refresh=False
    )
    if state.step % 50 == 0:
        log.info(
            "step %d loss %.4f ce %.4f kd %.4f lr %.2e elapsed %.1f min",
            state.step,
            running["loss"],
            running["ce"],
            running["kd"],
            lr,
            state.elapsed_s / 60,
        )


def _final_export(
    model: Any, tokenizer: Any, config: TrainConfig, state: RunState, teacher_val: float | None
) -> Path:
    """Export ``last/`` and return ``best/`` (ONNX is added to the best model when asked)."""
    _export(model, tokenizer, config, state, config.output / "last", teacher_val)
    best = config.output / "best"
    if not (best / "config.json").is_file():  # removed by hand since validation kept it
        log.warning("%s is missing; the last model is exported there", best)
        latest = state.history[-1] if state.history else {}
        state.best_step = state.step  # its record names the model it now holds
        state.best_val = float(latest.get("val_ndcg10", state.best_val))
        _export(model, tokenizer, config, state, best, teacher_val)
    if config.export_onnx and config.architecture != "bi":  # the runtime exports bi-encoders
        from semrank.train._model import _export_onnx

        _export_onnx(best)
    return best
