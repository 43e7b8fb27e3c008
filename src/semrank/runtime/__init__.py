"""Inference runtime: turns a resolved model into a ``PairScorer`` or an ``Embedder``.

The default backend is ONNX Runtime (no torch); ``backend="torch"`` uses transformers as the
reference and GPU path. This is the only package that imports onnxruntime or torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from semrank.errors import BackendUnavailableError, InvalidInputError
from semrank.runtime._scorers import BiEncoderScorer, CrossEncoderScorer, Embedder
from semrank.runtime.base import (
    Activation,
    BatchingConfig,
    PairScorer,
    ScorerKind,
    TextTokenizer,
    apply_activation,
)

if TYPE_CHECKING:
    from semrank.models.spec import ResolvedModel

__all__ = [
    "BACKENDS",
    "Activation",
    "BatchingConfig",
    "BiEncoderScorer",
    "CrossEncoderScorer",
    "Embedder",
    "PairScorer",
    "ScorerKind",
    "TextTokenizer",
    "apply_activation",
    "load_embedder",
    "load_scorer",
]

BACKENDS = ("onnx", "torch")


def _backend(backend: str | None) -> str:
    chosen = backend or "onnx"
    if chosen not in BACKENDS:
        raise BackendUnavailableError(
            f"unknown backend {chosen!r}; choose one of: {', '.join(BACKENDS)}"
        )
    return chosen


def _max_length(model: ResolvedModel) -> int:
    """The model's max_length, clamped to what its position embeddings allow."""
    if model.max_length < 8:
        raise InvalidInputError(f"model {model.name}: max_length {model.max_length} is too small")
    config_path = Path(model.path) / "config.json"
    if not config_path.is_file():
        return model.max_length
    config = json.loads(config_path.read_text("utf-8"))
    limit = int(config.get("max_position_embeddings", model.max_length))
    if config.get("model_type") in ("roberta", "xlm-roberta"):
        limit -= int(config.get("pad_token_id", 1)) + 1  # positions start after padding_idx
    return min(model.max_length, limit)


def load_embedder(
    model: ResolvedModel,
    *,
    backend: str | None = None,
    device: str | None = None,
    batching: BatchingConfig | None = None,
    threads: int | None = None,
) -> Embedder:
    """An ``Embedder`` (``embed(texts) -> float32 (n, dim)``) for an encoder model."""
    options = {
        "max_length": _max_length(model),
        "pooling": model.pooling,
        "normalize": model.normalize,
        "batching": batching,
        "device": device,
    }
    if _backend(backend) == "torch":
        from semrank.runtime.torch_backend import load_torch_embedder

        return load_torch_embedder(Path(model.path), **options)  # type: ignore[arg-type]
    from semrank.runtime.onnx_backend import load_onnx_embedder

    return load_onnx_embedder(Path(model.path), threads=threads, **options)  # type: ignore[arg-type]


def load_scorer(
    model: ResolvedModel,
    *,
    backend: str | None = None,
    device: str | None = None,
    batching: BatchingConfig | None = None,
    threads: int | None = None,
) -> PairScorer:
    """A ``PairScorer`` for a cross-encoder or bi-encoder model (default backend: onnx)."""
    if model.kind == "bi-encoder":
        embedder = load_embedder(
            model, backend=backend, device=device, batching=batching, threads=threads
        )
        return BiEncoderScorer(embedder)
    max_length = _max_length(model)
    if _backend(backend) == "torch":
        from semrank.runtime.torch_backend import load_torch_cross_encoder

        scorer = load_torch_cross_encoder(
            Path(model.path), max_length=max_length, batching=batching, device=device
        )
    else:
        from semrank.runtime.onnx_backend import load_onnx_cross_encoder

        scorer = load_onnx_cross_encoder(
            Path(model.path),
            max_length=max_length,
            batching=batching,
            device=device,
            threads=threads,
        )
    scorer.activation = model.activation
    return scorer
