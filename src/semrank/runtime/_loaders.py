"""One table from concrete backend name to loader, and each backend's batching defaults.

Batching defaults (benchmarks/backends.py): on CPU, length-sorted batches of 8 beat padded
batches of 32 by 1.1-1.4x for every backend (less padding, activations stay in cache);
OpenVINO also rounds padded lengths to multiples of 16 so it sees few distinct shapes. GPUs
want big batches to fill the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from semrank.runtime._scorers import CrossEncoderScorer, Embedder
from semrank.runtime.base import BatchingConfig

__all__ = ["CONCRETE_BACKENDS", "default_batching", "load_cross_encoder", "load_embedder"]

CONCRETE_BACKENDS = (
    "onnx",
    "onnx-int8",
    "openvino",
    "openvino-bf16",
    "openvino-int8",
    "torch",
    "torch-fp16",
)

CPU_BATCHING = BatchingConfig(max_batch_size=8, token_budget=4096)
OPENVINO_BATCHING = BatchingConfig(max_batch_size=8, token_budget=4096, length_multiple=16)
GPU_BATCHING = BatchingConfig(max_batch_size=128, token_budget=128 * 512, length_multiple=8)


def default_batching(backend: str, device: str | None) -> BatchingConfig:
    if (device is not None and device.startswith("cuda")) or backend == "torch-fp16":
        return GPU_BATCHING
    if backend.startswith("openvino"):
        return OPENVINO_BATCHING
    return CPU_BATCHING


def _options(backend: str, options: dict[str, Any]) -> dict[str, Any]:
    options = dict(options)
    if options.get("batching") is None:
        options["batching"] = default_batching(backend, options.get("device"))
    if backend.startswith("openvino"):
        options.pop("device", None)  # CPU only
        # int8 runs the layers it leaves in floating point in f32, so its only loss is int8.
        options["precision"] = "bf16" if backend == "openvino-bf16" else "f32"
        options["int8"] = backend == "openvino-int8"
    elif backend.startswith("torch"):
        options["fp16"] = backend == "torch-fp16"
    else:
        options["int8"] = backend == "onnx-int8"
    return options


def load_cross_encoder(backend: str, model_dir: Path, **options: Any) -> CrossEncoderScorer:
    options = _options(backend, options)
    if backend.startswith("openvino"):
        from semrank.runtime.openvino_backend import load_openvino_cross_encoder

        return load_openvino_cross_encoder(model_dir, **options)
    if backend.startswith("torch"):
        from semrank.runtime.torch_backend import load_torch_cross_encoder

        return load_torch_cross_encoder(model_dir, **options)
    from semrank.runtime.onnx_backend import load_onnx_cross_encoder

    return load_onnx_cross_encoder(model_dir, **options)


def load_embedder(backend: str, model_dir: Path, **options: Any) -> Embedder:
    options = _options(backend, options)
    if backend.startswith("openvino"):
        from semrank.runtime.openvino_backend import load_openvino_embedder

        return load_openvino_embedder(model_dir, **options)
    if backend.startswith("torch"):
        from semrank.runtime.torch_backend import load_torch_embedder

        return load_torch_embedder(model_dir, **options)
    from semrank.runtime.onnx_backend import load_onnx_embedder

    return load_onnx_embedder(model_dir, **options)
