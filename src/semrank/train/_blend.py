"""Fit the weights of a blend (cross-encoder + bi-encoder) on held-out training judgments.

A logistic regression of relevance on the components' raw scores: the blend's sigmoid output is
then a calibrated probability of relevance, so thresholds mean the same across queries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semrank.train._data import DataSpec
from semrank.train._evaluate import RankingTask


@dataclass(frozen=True, kw_only=True)
class BlendFit:
    """Weights per component (in the order given), bias, and the fit's size."""

    weights: tuple[float, ...]
    bias: float
    pairs: int
    positives: int


def blend_features(models: list[str | Path], task: RankingTask) -> tuple[np.ndarray, np.ndarray]:
    """Raw scores of every model for every candidate pair (n, len(models)) and 0/1 labels."""
    from semrank import Reranker

    rerankers = [Reranker(model) for model in models]
    columns: list[list[np.ndarray]] = [[] for _ in models]
    labels: list[int] = []
    for qid, candidates in task.candidates.items():
        texts = [text for _, text in candidates]
        for column, reranker in zip(columns, rerankers, strict=True):
            column.append(reranker.score(task.queries[qid], texts, raw=True))
        judged = task.qrels.get(qid, {})
        labels.extend(1 if judged.get(doc_id, 0) > 0 else 0 for doc_id, _ in candidates)
    features = np.stack([np.concatenate(column) for column in columns], axis=1)
    return features.astype(np.float64), np.asarray(labels, dtype=np.int64)


def fit_blend(models: list[str | Path], task: RankingTask, *, l2: float = 1.0) -> BlendFit:
    """Logistic regression of the labels on the models' raw scores (scikit-learn)."""
    from sklearn.linear_model import LogisticRegression

    features, labels = blend_features(models, task)
    if labels.min() == labels.max():
        raise ValueError(f"task {task.name!r} needs both relevant and non-relevant candidates")
    regression = LogisticRegression(C=1.0 / l2, max_iter=1000).fit(features, labels)
    return BlendFit(
        weights=tuple(float(w) for w in regression.coef_[0]),
        bias=float(regression.intercept_[0]),
        pairs=int(labels.size),
        positives=int(labels.sum()),
    )


def _spec_of(saved: dict[str, Any]) -> DataSpec:
    corpus = saved.get("corpus")
    return DataSpec(
        **{**saved, "path": Path(saved["path"]), "corpus": Path(corpus) if corpus else None}
    )


def validation_task_of_run(run_dir: Path) -> RankingTask:
    """The held-out validation split a `semrank train` run used (rebuilt from its config)."""
    from semrank.train._loop import TrainConfig, prepare_data

    saved = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    data = tuple(_spec_of(spec) for spec in saved["data"])
    config = TrainConfig(
        base=Path(saved["base"]),
        data=data,
        output=run_dir,
        val_source=saved.get("val_source"),
        val_queries=int(saved["val_queries"]),
        val_candidates=int(saved["val_candidates"]),
        mining_depth=int(saved["mining_depth"]),
        mining=saved.get("mining", "dense"),
        seed=int(saved.get("seed", 0)),
        max_length=int(saved.get("max_length", TrainConfig.max_length)),
    )
    _, task, _ = prepare_data(config)
    if task is None:
        raise ValueError(f"run {run_dir} kept no validation split")
    return task
