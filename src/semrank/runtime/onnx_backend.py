"""ONNX Runtime backend: the default, torch-free inference path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from semrank.errors import BackendUnavailableError, ModelLoadError
from semrank.runtime._batching import BatchArrays, graph_output, refuse_unfed_inputs
from semrank.runtime._forks import kept_in_forked_children
from semrank.runtime._quantize import quantized_model_path
from semrank.runtime._scorers import BiEncoderScorer, CrossEncoderScorer, Embedder, Forward
from semrank.runtime.base import BatchingConfig
from semrank.runtime.onnx_export import (
    ExportHead,
    default_cache_dir,
    load_rebuilding_stale_cache,
    onnx_model_path,
)
from semrank.runtime.tokenizer import load_tokenizer

__all__ = [
    "BiEncoderScorer",
    "CrossEncoderScorer",
    "Embedder",
    "create_session",
    "load_onnx_cross_encoder",
    "load_onnx_embedder",
]

_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def create_session(
    path: Path, *, device: str | None = None, threads: int | None = None
) -> ort.InferenceSession:
    """An inference session with full graph optimisation (fusing attention, GELU, LayerNorm)."""
    device = (device or "cpu").split(":")[0]
    if device not in _PROVIDERS:
        raise BackendUnavailableError(f"onnx backend has no device {device!r}; use 'cpu' or 'cuda'")
    provider = _PROVIDERS[device]
    if provider not in ort.get_available_providers():
        raise BackendUnavailableError(
            f"ONNX Runtime here has no {provider}; install onnxruntime-gpu or use device='cpu'"
        )
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads:
        options.intra_op_num_threads = int(threads)
    providers = [provider] if provider == "CPUExecutionProvider" else [provider, _PROVIDERS["cpu"]]
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime's errors (Fail, InvalidProtobuf...) subclass Exception
        raise ModelLoadError(
            f"ONNX Runtime cannot load {path}: {exc}. The graph is corrupt or does not match "
            "the checkpoint's config.json"
        ) from exc
    if provider not in session.get_providers():
        # onnxruntime-gpu lists CUDA wherever it is installed; without a usable GPU or driver
        # the session falls back to the CPU with only a warning (fp32, no bf16: slower).
        raise BackendUnavailableError(
            f"ONNX Runtime could not start {provider} here (no usable GPU, driver or CUDA "
            f"libraries; its session runs on {session.get_providers()}); fix the CUDA setup, or "
            "leave the device out to run on the CPU"
        )
    return session


def session_forward(session: ort.InferenceSession, output_index: int = 0) -> Forward:
    """A forward function feeding the session only the inputs its graph declares, returning
    its output at ``output_index`` (``graph_output`` picks it)."""
    names = [i.name for i in session.get_inputs()]

    def forward(batch: BatchArrays) -> np.ndarray:
        outputs = session.run(None, {name: batch[name] for name in names})
        return np.asarray(outputs[output_index])

    return kept_in_forked_children(forward)


def _dimensions(shape: list[int | str | None] | None) -> tuple[int | None, ...] | None:
    if shape is None:
        return None
    return tuple(size if isinstance(size, int) else None for size in shape)  # str: symbolic


def _checked_forward(
    model_dir: Path,
    head: ExportHead,
    output: str,
    *,
    device: str | None,
    threads: int | None,
    int8: bool,
) -> Forward:
    """A forward over the folder's graph, refused at load when semrank cannot run it."""
    cache = default_cache_dir()

    def steps(made: list[Path]) -> ort.InferenceSession:
        path = onnx_model_path(model_dir, head)
        made.append(path)
        if int8:
            path = quantized_model_path(path, cache_dir=cache)
            made.append(path)
        return create_session(path, device=device, threads=threads)

    session, graph = load_rebuilding_stale_cache(steps, cache)
    refuse_unfed_inputs(graph, (graph_input.name for graph_input in session.get_inputs()))
    outputs = [((out.name,), _dimensions(out.shape)) for out in session.get_outputs()]
    return session_forward(session, graph_output(graph, outputs, output))


def load_onnx_cross_encoder(
    model_dir: Path,
    *,
    max_length: int,
    batching: BatchingConfig | None = None,
    device: str | None = None,
    threads: int | None = None,
    int8: bool = False,
) -> CrossEncoderScorer:
    forward = _checked_forward(
        model_dir, "sequence-classification", "logits", device=device, threads=threads, int8=int8
    )
    tokenizer = load_tokenizer(model_dir, max_length)
    return CrossEncoderScorer(tokenizer, forward, batching=batching)


def load_onnx_embedder(
    model_dir: Path,
    *,
    max_length: int,
    pooling: str = "mean",
    normalize: bool = True,
    batching: BatchingConfig | None = None,
    device: str | None = None,
    threads: int | None = None,
    int8: bool = False,
) -> Embedder:
    forward = _checked_forward(
        model_dir, "encoder", "last_hidden_state", device=device, threads=threads, int8=int8
    )
    tokenizer = load_tokenizer(model_dir, max_length)
    return Embedder(tokenizer, forward, pooling=pooling, normalize=normalize, batching=batching)
