"""OpenVINO backend: the fast CPU path (fp32, bf16 on CPUs with AMX / AVX512_BF16, or int8).

OpenVINO reads the same ONNX graph the ONNX Runtime backend uses (exported from the
safetensors weights, cached), so both run identical weights. ``backend="openvino-int8"`` runs
a static int8 IR quantized from that graph with NNCF (``_quantize_openvino``, cached).
Optional: ``pip install 'semrank[openvino]'``.

OpenVINO's CPU plugin silently runs bf16 on bf16-capable CPUs unless told otherwise, so the
inference precision is always set explicitly: "f32" for ``backend="openvino"`` and for the
layers int8 leaves in floating point, "bf16" for ``backend="openvino-bf16"``.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np

from semrank.errors import BackendUnavailableError, ModelLoadError
from semrank.runtime._batching import BatchArrays, graph_output, refuse_unfed_inputs
from semrank.runtime._forks import kept_in_forked_children
from semrank.runtime._quantize_openvino import calibration_inputs, quantized_ir_path
from semrank.runtime._scorers import CrossEncoderScorer, Embedder, Forward
from semrank.runtime.base import BatchingConfig
from semrank.runtime.onnx_export import (
    ExportHead,
    default_cache_dir,
    load_rebuilding_stale_cache,
    onnx_model_path,
)
from semrank.runtime.tokenizer import HFTokenizer, load_tokenizer

__all__ = ["Precision", "compile_model", "load_openvino_cross_encoder", "load_openvino_embedder"]

Precision = Literal["f32", "bf16"]


def keep_vendor_telemetry_off() -> None:
    """OpenVINO (on import) and NNCF send usage events to Google Analytics unless their user
    opted out, and on Python 3.12+ fork a process from a thread to do it. A self-hosted re-ranker
    sends nothing: their telemetry package is kept from importing, and both fall back to their
    own stubs. A process that imported it before semrank loads OpenVINO keeps it."""
    if "openvino_telemetry" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]


def _import_openvino() -> Any:
    keep_vendor_telemetry_off()
    try:
        import openvino
    except ImportError as exc:
        if importlib.util.find_spec("openvino") is not None:  # installed, but broken
            raise BackendUnavailableError(
                f"OpenVINO is installed but fails to import ({exc}); reinstall it (pip install "
                "--force-reinstall openvino) or use backend='onnx'"
            ) from exc
        raise BackendUnavailableError(
            "the openvino backends need OpenVINO: pip install 'semrank[openvino]' "
            "(or use backend='onnx')"
        ) from exc
    return openvino


def compile_model(path: Path, *, precision: Precision, threads: int | None = None) -> Any:
    """A CPU-compiled model tuned for latency (one stream: one request uses every thread)."""
    ov = _import_openvino()
    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": precision,
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
    }
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    core = ov.Core()
    try:
        return core.compile_model(core.read_model(str(path)), "CPU", config)
    except RuntimeError as exc:
        raise ModelLoadError(f"OpenVINO cannot compile {path}: {exc}") from exc


def compiled_forward(compiled: Any, output_index: int = 0) -> Forward:
    """Forward over a compiled model returning its output at ``output_index``; one infer
    request per thread (requests are not shared)."""
    names = [port.get_any_name() for port in compiled.inputs]
    port = compiled.outputs[output_index]
    local = threading.local()

    def forward(batch: BatchArrays) -> np.ndarray:
        request = getattr(local, "request", None)
        if request is None:
            request = local.request = compiled.create_infer_request()
        result = request.infer({name: batch[name] for name in names})
        return np.array(result[port], dtype=np.float32)  # copy: the buffer is reused

    return kept_in_forked_children(forward)


def _dimensions(shape: Any) -> tuple[int | None, ...] | None:
    """An OpenVINO PartialShape as ``GraphOutput`` dimensions."""
    if shape.rank.is_dynamic:
        return None
    return tuple(size.get_length() if size.is_static else None for size in shape)


def _checked_forward(
    model_dir: Path,
    head: ExportHead,
    output: str,
    tokenizer: HFTokenizer,
    *,
    precision: Precision,
    threads: int | None,
    int8: bool,
) -> Forward:
    """A forward over the folder's graph, refused at load when semrank cannot run it."""
    cache = default_cache_dir()

    def steps(made: list[Path]) -> Any:
        path = onnx_model_path(model_dir, head)
        made.append(path)
        if int8:
            samples = calibration_inputs(tokenizer, head)
            path = quantized_ir_path(path, samples, cache_dir=cache)
            made.append(path)
        return compile_model(path, precision=precision, threads=threads)

    compiled, graph = load_rebuilding_stale_cache(steps, cache)
    refuse_unfed_inputs(graph, (port.get_any_name() for port in compiled.inputs))
    outputs = [
        (port.get_names(), _dimensions(port.get_partial_shape())) for port in compiled.outputs
    ]
    return compiled_forward(compiled, graph_output(graph, outputs, output))


def load_openvino_cross_encoder(
    model_dir: Path,
    *,
    max_length: int,
    precision: Precision = "f32",
    batching: BatchingConfig | None = None,
    threads: int | None = None,
    int8: bool = False,
) -> CrossEncoderScorer:
    tokenizer = load_tokenizer(model_dir, max_length)
    forward = _checked_forward(
        model_dir,
        "sequence-classification",
        "logits",
        tokenizer,
        precision=precision,
        threads=threads,
        int8=int8,
    )
    return CrossEncoderScorer(tokenizer, forward, batching=batching)


def load_openvino_embedder(
    model_dir: Path,
    *,
    max_length: int,
    precision: Precision = "f32",
    pooling: str = "mean",
    normalize: bool = True,
    batching: BatchingConfig | None = None,
    threads: int | None = None,
    int8: bool = False,
) -> Embedder:
    tokenizer = load_tokenizer(model_dir, max_length)
    forward = _checked_forward(
        model_dir,
        "encoder",
        "last_hidden_state",
        tokenizer,
        precision=precision,
        threads=threads,
        int8=int8,
    )
    return Embedder(tokenizer, forward, pooling=pooling, normalize=normalize, batching=batching)
