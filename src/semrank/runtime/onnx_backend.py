"""ONNX Runtime backend: the default, torch-free inference path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from semrank.errors import BackendUnavailableError, ModelLoadError
from semrank.runtime._batching import BatchArrays, refuse_unfed_inputs
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


def session_forward(session: ort.InferenceSession, output: str | None = None) -> Forward:
    """A forward function feeding the session only the inputs its graph declares.

    ``output`` names the wanted output ("logits" or "last_hidden_state"); a pre-exported graph
    with other names is accepted when its first output has the expected rank.
    """
    names = [i.name for i in session.get_inputs()]
    index = _output_index(session, output)

    def forward(batch: BatchArrays) -> np.ndarray:
        outputs = session.run(None, {name: batch[name] for name in names})
        return np.asarray(outputs[index])

    return forward


_OUTPUT_RANK = {"logits": 2, "last_hidden_state": 3}


def _output_index(session: ort.InferenceSession, output: str | None) -> int:
    outputs = session.get_outputs()
    if output is None:
        return 0
    for i, out in enumerate(outputs):
        if out.name == output:
            return i
    rank = len(outputs[0].shape)
    if rank != _OUTPUT_RANK[output]:
        raise ModelLoadError(
            f"ONNX graph outputs {[o.name for o in outputs]} do not include {output!r} and its "
            f"first output has rank {rank}; is model.onnx exported for the other model kind?"
        )
    return 0


def _session_for(
    model_dir: Path, head: ExportHead, device: str | None, threads: int | None, int8: bool
) -> ort.InferenceSession:
    cache = default_cache_dir()

    def steps(made: list[Path]) -> ort.InferenceSession:
        path = onnx_model_path(model_dir, head)
        made.append(path)
        if int8:
            path = quantized_model_path(path, cache_dir=cache)
            made.append(path)
        session = create_session(path, device=device, threads=threads)
        refuse_unfed_inputs(made[0], (graph_input.name for graph_input in session.get_inputs()))
        return session

    return load_rebuilding_stale_cache(steps, cache)


def load_onnx_cross_encoder(
    model_dir: Path,
    *,
    max_length: int,
    batching: BatchingConfig | None = None,
    device: str | None = None,
    threads: int | None = None,
    int8: bool = False,
) -> CrossEncoderScorer:
    session = _session_for(model_dir, "sequence-classification", device, threads, int8)
    tokenizer = load_tokenizer(model_dir, max_length)
    return CrossEncoderScorer(tokenizer, session_forward(session, "logits"), batching=batching)


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
    session = _session_for(model_dir, "encoder", device, threads, int8)
    tokenizer = load_tokenizer(model_dir, max_length)
    return Embedder(
        tokenizer,
        session_forward(session, "last_hidden_state"),
        pooling=pooling,
        normalize=normalize,
        batching=batching,
    )
