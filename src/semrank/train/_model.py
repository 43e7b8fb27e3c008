"""The cross-encoder being trained: built from a bi-encoder checkpoint, head fitted, exported."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from semrank.train._evaluate import encode_pairs
from semrank.train._sampling import GroupSampler

log = logging.getLogger("semrank.train")


def build_cross_encoder(base: Path) -> tuple[Any, Any]:
    """``BertForSequenceClassification`` (1 logit) on the base encoder's weights, and tokenizer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "newly initialized classifier" is expected here
    model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=1)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    return model, tokenizer


def load_encoder(base: Path) -> tuple[Any, Any]:
    """The base checkpoint as a plain encoder (the bi-encoder teacher), and its tokenizer."""
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(str(base)), AutoTokenizer.from_pretrained(str(base))


def fit_head_to_teacher(
    model: Any, tokenizer: Any, sampler: GroupSampler, *, queries: int, max_length: int, scale: float
) -> float:
    """Least-squares fit of the classifier to the teacher's within-query score differences.

    The frozen pooled [CLS] features of (query, passage) pairs are regressed on the scaled
    bi-encoder cosine, both centred per query (only differences within a list matter to a
    re-ranker), so that the first training steps start from scores that already rank.
    Returns the fit's correlation. The sampler's state is restored: the probe costs no data.
    """
    import torch

    state = sampler.state()
    features, targets = [], []
    model.eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        for _ in range(max(1, queries // 16)):
            batch = sampler.next_batch(16)
            pairs = [(q, p) for q, ps in zip(batch.queries, batch.passages, strict=True) for p in ps]
            encoded = encode_pairs(tokenizer, pairs, max_length=max_length)
            pooled = model.bert(**encoded).pooler_output.float().numpy()
            pooled = pooled.reshape(len(batch.queries), -1, pooled.shape[-1])
            features.append(pooled - pooled.mean(1, keepdims=True))
            teacher = batch.teacher * scale
            targets.append(teacher - teacher.mean(1, keepdims=True))
    sampler.restore(state)
    model.train()
    x = np.concatenate(features).reshape(-1, features[0].shape[-1]).astype(np.float64)
    y = np.concatenate(targets).reshape(-1).astype(np.float64)
    ridge = 1e-2 * np.trace(x.T @ x) / x.shape[1]
    w = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ y)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(w).float().unsqueeze(0))
        model.classifier.bias.zero_()
    return float(np.corrcoef(x @ w, y)[0, 1])


def export_model(
    model: Any, tokenizer: Any, target: Path, *, metadata: dict[str, Any], onnx: bool = False
) -> Path:
    """Hugging Face layout (config.json, model.safetensors, tokenizer), optionally + model.onnx."""
    target.mkdir(parents=True, exist_ok=True)
    model.config.architectures = ["BertForSequenceClassification"]
    model.save_pretrained(str(target), safe_serialization=True)
    tokenizer.save_pretrained(str(target))
    (target / "semrank_training.json").write_text(json.dumps(metadata, indent=2, default=str))
    if onnx:
        _export_onnx(target)
    return target


def _export_onnx(target: Path) -> None:
    try:
        from semrank.runtime.onnx_export import export_onnx
    except ImportError:  # the runtime's exporter is optional here; HF layout is enough
        log.warning("semrank.runtime.onnx_export not available; skipped model.onnx")
        return
    import onnx

    onnx.save(export_onnx(target, "sequence-classification"), str(target / "model.onnx"))
