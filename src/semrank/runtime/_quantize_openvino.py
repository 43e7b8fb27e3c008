"""Static int8 OpenVINO IR of fp32 ONNX graphs (NNCF post-training quantization), cached.

Unlike ONNX Runtime's dynamic int8 (``_quantize``), static quantization fixes the range of
every activation ahead of time from a calibration set (``_calibration``: queries, relevant
and unrelated passages, long documents), so the int8 kernels need no per-call range search.
In NNCF's transformer mode only MatMul inputs become int8 (the linear layers and the two
attention products); softmax, LayerNorm and GELU stay in f32, and SmoothQuant first moves
activation outliers into the weights.

The cache key is the fp32 graph's bytes, the tokenized calibration inputs (so a different
tokenizer or max_length recalibrates), the settings and the NNCF and OpenVINO versions. The
IR (``model.xml`` + ``model.bin``) is written to a temporary directory renamed into place,
so readers never see half a model.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from semrank._process import removed_if_stopped
from semrank.errors import BackendUnavailableError, ModelLoadError
from semrank.runtime._batching import BatchArrays, pad_batch, refuse_unfed_inputs
from semrank.runtime._calibration import calibration_pairs, calibration_texts
from semrank.runtime.onnx_export import ExportHead, prune_cache, share_like_new_files
from semrank.runtime.tokenizer import HFTokenizer

__all__ = [
    "OpenVINOQuantizationSettings",
    "calibration_inputs",
    "quantized_ir_path",
    "require_nncf",
]

INSTALL_HINT = "pip install 'semrank[openvino]'"


@dataclass(frozen=True, kw_only=True)
class OpenVINOQuantizationSettings:
    """``nncf.quantize`` arguments; see the NNCF post-training quantization docs."""

    # "mixed": symmetric int8 weights, asymmetric activations (the GELU/LayerNorm outputs
    # feeding the MatMuls are far from zero-centred); NNCF's default for transformers.
    preset: Literal["mixed", "performance"] = "mixed"
    model_type: Literal["transformer"] = "transformer"
    target_device: Literal["CPU", "ANY"] = "CPU"
    # At least the calibration set's size, so every calibration input is used.
    subset_size: int = 300
    fast_bias_correction: bool = True


def require_nncf() -> str:
    """NNCF's version; a clear error where NNCF or OpenVINO is not installed."""
    for module in ("openvino", "nncf"):
        if importlib.util.find_spec(module) is None:
            raise BackendUnavailableError(
                f"backend 'openvino-int8' needs OpenVINO and NNCF ({module} is not installed): "
                f"{INSTALL_HINT} (or use backend='onnx-int8')"
            )
    return importlib.metadata.version("nncf")


def calibration_inputs(tokenizer: HFTokenizer, head: ExportHead) -> list[BatchArrays]:
    """One unpadded model input per calibration example (padding would skew the ranges)."""
    if head == "encoder":
        encoded = tokenizer.encode_texts(calibration_texts())
    else:
        encoded = tokenizer.encode_pairs(calibration_pairs())
    return [pad_batch([item], tokenizer.pad_id) for item in encoded]


def quantized_ir_path(
    fp32_path: Path,
    samples: Sequence[BatchArrays],
    settings: OpenVINOQuantizationSettings | None = None,
    *,
    cache_dir: Path,
) -> Path:
    """Path of the int8 IR (model.xml) of ``fp32_path``, quantizing it on first use."""
    settings = settings or OpenVINOQuantizationSettings()
    nncf_version = require_nncf()
    target = cache_dir / f"{_cache_key(fp32_path, samples, settings, nncf_version)}.ov-int8"
    if not (target / "model.xml").is_file():
        _quantize_atomically(fp32_path, target, samples, settings)
        prune_cache(cache_dir)  # IR of exports since replaced, or of older NNCF/OpenVINO
    return target / "model.xml"


def _cache_key(
    fp32_path: Path,
    samples: Sequence[BatchArrays],
    settings: OpenVINOQuantizationSettings,
    nncf_version: str,
) -> str:
    openvino_version = importlib.metadata.version("openvino")
    digest = hashlib.sha256()
    header = f"semrank-ov-int8:{nncf_version}:{openvino_version}:{sorted(asdict(settings).items())}"
    digest.update(f"{header}\n".encode())
    for sample in samples:
        for name in sorted(sample):
            digest.update(name.encode())
            digest.update(sample[name].tobytes())
    external_data = fp32_path.parent / (fp32_path.name + ".data")
    for path in (fp32_path, external_data):
        if path.is_file():
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 22):
                    digest.update(chunk)
    return digest.hexdigest()[:32]


def _quantize_atomically(
    source: Path,
    target: Path,
    samples: Sequence[BatchArrays],
    settings: OpenVINOQuantizationSettings,
) -> None:
    from semrank.runtime.openvino_backend import _import_openvino

    openvino = _import_openvino()

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=target.stem, suffix=".tmp", dir=target.parent))
    try:
        with removed_if_stopped(tmp_dir):  # a kill mid-way left it in the cache
            try:
                model = openvino.Core().read_model(str(source))
            except RuntimeError as exc:
                message = f"OpenVINO cannot read {source} to quantize it: {exc}"
                raise ModelLoadError(message) from exc
            # Calibration feeds the inputs of every batch: another was a KeyError out of NNCF.
            refuse_unfed_inputs(source, (port.get_any_name() for port in model.inputs))
            quantized = _quantize(model, samples, settings)
            # fp16 compression would round the weights left in floating point a second time.
            openvino.save_model(quantized, str(tmp_dir / "model.xml"), compress_to_fp16=False)
            share_like_new_files(tmp_dir)
            try:
                os.replace(tmp_dir, target)
            except OSError:  # another process finished the same quantization first
                if not (target / "model.xml").is_file():
                    raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _quantize(
    model: Any, samples: Sequence[BatchArrays], settings: OpenVINOQuantizationSettings
) -> Any:
    import nncf

    names = [port.get_any_name() for port in model.inputs]

    def model_inputs(sample: BatchArrays) -> dict[str, Any]:
        return {name: sample[name] for name in names}  # RoBERTa graphs take no token types

    with _nncf_output_to_stderr():
        return nncf.quantize(
            model,
            nncf.Dataset(list(samples), model_inputs),
            preset=nncf.QuantizationPreset(settings.preset),
            model_type=nncf.ModelType(settings.model_type),
            target_device=nncf.TargetDevice(settings.target_device),
            subset_size=min(settings.subset_size, len(samples)),
            fast_bias_correction=settings.fast_bias_correction,
        )


@contextlib.contextmanager
def _nncf_output_to_stderr() -> Iterator[None]:
    """NNCF logs and draws progress bars on stdout, which would corrupt JSON output there."""
    consoles = [
        handler
        for handler in logging.getLogger("nncf").handlers
        if isinstance(handler, logging.StreamHandler)
        and not isinstance(handler, logging.FileHandler)
    ]
    previous = [handler.setStream(sys.stderr) for handler in consoles]
    try:
        with contextlib.redirect_stdout(sys.stderr):  # rich progress bars write to sys.stdout
            yield
    finally:
        for handler, stream in zip(consoles, previous, strict=True):
            if stream is not None:
                handler.setStream(stream)
