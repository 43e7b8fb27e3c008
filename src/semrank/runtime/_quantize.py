"""int8 versions of fp32 ONNX graphs (ONNX Runtime dynamic quantization), cached.

Weights of MatMul/Gemm become int8 (per output channel), activations are quantized on the
fly; on CPUs with VNNI this is ~1.5x fp32. The cache key is the fp32 graph's bytes plus the
quantization settings and the ONNX Runtime version, so a changed model or setting never reuses
a stale file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from semrank._process import removed_if_stopped
from semrank.errors import ModelLoadError
from semrank.runtime.onnx_export import prune_cache, share_like_new_files

__all__ = ["QuantizationSettings", "quantized_model_path"]


@dataclass(frozen=True, kw_only=True)
class QuantizationSettings:
    weight_type: str = "QInt8"
    per_channel: bool = True
    reduce_range: bool = False
    op_types: tuple[str, ...] = ("MatMul", "Gemm")


def quantized_model_path(
    fp32_path: Path, settings: QuantizationSettings | None = None, *, cache_dir: Path
) -> Path:
    """Path of the int8 graph of ``fp32_path``, quantizing it on first use."""
    settings = settings or QuantizationSettings()
    if (fp32_path.parent / (fp32_path.name + ".data")).exists():
        raise ModelLoadError(
            f"{fp32_path} keeps its weights in external data; int8 quantization supports "
            "graphs under 2 GB only; use backend='onnx' or 'openvino-bf16'"
        )
    target = cache_dir / f"{_cache_key(fp32_path, settings)}.int8.onnx"
    if not target.is_file():
        _refuse_fp16(fp32_path)
        _quantize_atomically(fp32_path, target, settings)
        prune_cache(cache_dir)  # int8 graphs of exports since replaced, or of older runtimes
    return target


def _refuse_fp16(graph: Path) -> None:
    """An fp16 graph (Optimum's model_fp16.onnx copied as model.onnx) quantizes into a graph
    ONNX Runtime cannot load (INVALID_GRAPH: its int8 quantizers take fp32 only)."""
    import onnx

    try:
        model = onnx.load(str(graph), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError: a cached export cut short is rebuilt
        raise ModelLoadError(f"cannot read {graph}: {exc}; the graph is corrupt") from exc
    if any(weight.data_type == onnx.TensorProto.FLOAT16 for weight in model.graph.initializer):
        raise ModelLoadError(
            f"{graph} is an fp16 graph, which int8 quantization cannot take: run it with "
            "backend='onnx', or give the fp32 graph (Optimum's onnx/model.onnx) or the model's "
            "weights (model.safetensors), which backend='onnx-int8' quantizes"
        )


def _cache_key(fp32_path: Path, settings: QuantizationSettings) -> str:
    import onnxruntime

    digest = hashlib.sha256()
    digest.update(
        f"semrank-int8:{onnxruntime.__version__}:{sorted(asdict(settings).items())}\n".encode()
    )
    with fp32_path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()[:32]


def _quantize_atomically(source: Path, target: Path, settings: QuantizationSettings) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.stem, suffix=".tmp.onnx", dir=target.parent)
    os.close(fd)
    try:
        with removed_if_stopped(tmp):  # a kill mid-way left it in the cache
            try:
                quantize_dynamic(
                    str(source),
                    tmp,
                    weight_type=getattr(QuantType, settings.weight_type),
                    per_channel=settings.per_channel,
                    reduce_range=settings.reduce_range,
                    op_types_to_quantize=list(settings.op_types),
                )
            except Exception as exc:  # onnx / onnxruntime raise many unrelated types
                raise ModelLoadError(
                    f"cannot quantize {source} to int8: {exc}. The graph is corrupt or does not "
                    "match the checkpoint's config.json; try backend='onnx'"
                ) from exc
            share_like_new_files(tmp)
            os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
