"""Read a Hugging Face checkpoint's weights as float32 numpy arrays, without torch.

safetensors is parsed directly (header + raw buffer) so bf16 checkpoints load too: numpy has
no bfloat16, so those tensors are widened to float32 bit-wise.
"""

from __future__ import annotations

import json
import mmap
import shlex
import struct
from pathlib import Path
from typing import Any

import numpy as np

from semrank.errors import ModelLoadError

_SAFETENSORS_DTYPES: dict[str, str] = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}

Weights = dict[str, np.ndarray]


def weight_files(model_dir: Path) -> list[Path]:
    """The weight files of a checkpoint, preferring safetensors (sharded or not)."""
    single = model_dir / "model.safetensors"
    if single.is_file():
        return [single]
    shards = _shards(model_dir)
    if shards:
        return shards
    legacy = model_dir / "pytorch_model.bin"
    if legacy.is_file():
        return [legacy]
    fix = torch_shards_fix(model_dir)
    if fix:
        raise ModelLoadError(fix)
    graph = graph_file(model_dir)
    if graph.is_file():  # runs on onnx / openvino, not from its weights
        raise ModelLoadError(
            f"{model_dir} holds only {graph.relative_to(model_dir)}: the torch backend (and "
            "training) needs model.safetensors or pytorch_model.bin; run it with backend "
            "'onnx' or 'openvino'"
        )
    raise ModelLoadError(
        f"no weights in {model_dir}: expected model.safetensors, sharded model-*.safetensors, "
        f"pytorch_model.bin, model.onnx or {HUB_GRAPH}"
    )


# Where Hugging Face repos exported with Optimum keep their graph (its quantized and optimised
# variants beside it: model_quantized.onnx, model_O3.onnx...), often without weights at all.
HUB_GRAPH = "onnx/model.onnx"


def graph_file(model_dir: Path) -> Path:
    """The ONNX graph a folder may carry: its model.onnx, else, in a folder without weights,
    onnx/model.onnx (as sentence-transformers' ONNX backend loads it by default). Beside
    weights, onnx/ is not read: semrank exports those weights itself, as it does on the hub."""
    top = model_dir / "model.onnx"
    weights = [model_dir / "model.safetensors", model_dir / "pytorch_model.bin"]
    if top.is_file() or any(p.is_file() for p in weights) or any(model_dir.glob(SHARDS)):
        return top
    return model_dir / HUB_GRAPH


SHARD_INDEX = "model.safetensors.index.json"
SHARDS = "model-*-of-*.safetensors"
TORCH_SHARDS = "pytorch_model-*-of-*.bin"


def torch_shards_fix(model_dir: Path) -> str | None:
    """Why a sharded PyTorch checkpoint (``pytorch_model-00001-of-00002.bin``...) is refused and
    the one command that saves it as model.safetensors; None where the folder holds none."""
    shards = sorted(model_dir.glob(TORCH_SHARDS))
    if not shards:
        return None
    folder = json.dumps(str(model_dir.resolve()))  # a Python string literal, quotes escaped
    convert = (
        f"from transformers import {_model_class(model_dir)} as M; "
        f"M.from_pretrained({folder}).save_pretrained({folder}, safe_serialization=True)"
    )
    return (
        f"{model_dir} holds a sharded PyTorch checkpoint ({shards[0].name}, ...), which semrank "
        "does not read; convert it to model.safetensors once (needs torch and transformers): "
        f"python -c {shlex.quote(convert)}"
    )


def _model_class(model_dir: Path) -> str:
    """The class config.json names (its head kept), else AutoModel."""
    try:
        name = json.loads((model_dir / "config.json").read_text("utf-8"))["architectures"][0]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return "AutoModel"
    return name if isinstance(name, str) and name.isidentifier() else "AutoModel"


def _shards(model_dir: Path) -> list[Path]:
    """The shards a sharded checkpoint is made of: those its index names (as transformers
    reads them), else every ``model-*-of-N`` file of one N. A newer checkpoint copied over an
    older one (cp, rsync without --delete) left both's shards, and every shard was read: the
    tensors of whichever sorted last, a mix of two models, with no word said."""
    index = model_dir / SHARD_INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text("utf-8"))["weight_map"]
            names = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelLoadError(
                f"cannot read {index} ({exc}); save the model again with save_pretrained"
            ) from exc
        missing = [name for name in names if not (model_dir / name).is_file()]
        if missing:
            raise ModelLoadError(
                f"{index} names shards that are missing: {', '.join(missing[:3])}; copy the "
                "whole checkpoint again"
            )
        return [model_dir / name for name in names]
    found = sorted(model_dir.glob(SHARDS))
    totals = {path.stem.rpartition("-of-")[2] for path in found}
    if len(totals) > 1:
        raise ModelLoadError(
            f"{model_dir} holds shards of {len(totals)} checkpoints (model-*-of-"
            f"{', -of-'.join(sorted(totals))}) and no {SHARD_INDEX} to tell which is the "
            "model's; delete the old shards or copy the index too"
        )
    return found


def load_weights(model_dir: Path) -> Weights:
    weights: Weights = {}
    for path in weight_files(model_dir):
        if path.suffix == ".safetensors":
            weights.update(_read_safetensors(path))
        else:
            weights.update(_read_torch_bin(path))
    return dequantize_int8({_current_name(name): array for name, array in weights.items()})


# TensorFlow-era checkpoints name a LayerNorm's parameters gamma/beta; transformers renames them
# on load (such a checkpoint was refused here as "missing weight ...LayerNorm.weight").
_OLD_LAYER_NORM_NAMES = {"LayerNorm.gamma": "LayerNorm.weight", "LayerNorm.beta": "LayerNorm.bias"}


def _current_name(name: str) -> str:
    for old, new in _OLD_LAYER_NORM_NAMES.items():
        if name.endswith(old):
            return name[: -len(old)] + new
    return name


# Weight-only int8 (how semrank ships its own model small): a matrix ``W`` is stored as
# ``W.int8`` (int8, same shape) and ``W.int8_scale`` (float32): one scale per row, or per group of
# consecutive columns of each row (shape rows x groups), and read back as float32 ``W.int8 *
# scale``: the graph computes in fp32, only the file is small. Groups of 64 cost 6% more bytes
# than one scale per row and keep far more precision where a row holds a few large values.
INT8_SUFFIX, SCALE_SUFFIX = ".int8", ".int8_scale"
INT8_GROUP = 64


def holds_int8(model_dir: Path) -> bool:
    """Whether the checkpoint stores semrank's weight-only int8 tensors (which other readers,
    transformers among them, do not know)."""
    return any(
        name.endswith(INT8_SUFFIX)
        for path in weight_files(model_dir)
        if path.suffix == ".safetensors"
        for name in _safetensors_parts(path)[0]  # the header only: nothing decoded
    )


def dequantize_int8(weights: Weights) -> Weights:
    """Replace every ``name.int8`` / ``name.int8_scale`` pair by the float32 ``name``."""
    out: Weights = {}
    for name, array in weights.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        if name.endswith(INT8_SUFFIX):
            base = name[: -len(INT8_SUFFIX)]
            scale = weights.get(base + SCALE_SUFFIX)
            if scale is None:
                raise ModelLoadError(f"int8 tensor {name} has no {base + SCALE_SUFFIX}")
            out[base] = _dequantize(name, array, scale)
        else:
            out[name] = array
    return out


def _dequantize(name: str, values: np.ndarray, scale: np.ndarray) -> np.ndarray:
    rows, cols = values.shape
    groups = scale.reshape(rows, -1).astype(np.float32)
    if scale.shape[0] != rows or cols % groups.shape[1]:
        raise ModelLoadError(f"int8 tensor {name} {values.shape} has scales of shape {scale.shape}")
    grouped = values.astype(np.float32).reshape(rows, groups.shape[1], -1) * groups[:, :, None]
    return grouped.reshape(rows, cols)


def quantize_int8(weights: Weights, *, min_size: int = 4096, group: int | None = None) -> Weights:
    """Symmetric int8 for matrices of at least ``min_size`` values, the rest unchanged: one scale
    per ``group`` consecutive values of a row (per row when ``group`` is None or does not
    divide the row)."""
    out: Weights = {}
    for name, array in weights.items():
        if array.ndim != 2 or array.size < min_size or array.dtype.kind != "f":
            out[name] = np.ascontiguousarray(array)
            continue
        rows, cols = array.shape
        size = group if group and cols % group == 0 else cols
        matrix = array.astype(np.float32).reshape(rows, cols // size, size)
        scale = np.abs(matrix).max(axis=2) / 127.0
        scale[scale == 0] = 1.0
        values = np.clip(np.rint(matrix / scale[:, :, None]), -127, 127).astype(np.int8)
        out[name + INT8_SUFFIX] = values.reshape(rows, cols)
        out[name + SCALE_SUFFIX] = (scale[:, 0] if size == cols else scale).astype(np.float32)
    return out


def _safetensors_parts(path: Path) -> tuple[dict[str, Any], memoryview]:
    """(header, tensor bytes) of a safetensors file, memory-mapped."""
    size = path.stat().st_size
    if size < 8:
        raise _broken_safetensors(path, f"it is {size} bytes long")
    with path.open("rb") as fh:
        data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    (header_len,) = struct.unpack("<Q", data[:8])
    if 8 + header_len > size:
        raise _broken_safetensors(path, f"its header claims {header_len} bytes of {size}")
    try:
        header = json.loads(data[8 : 8 + header_len])
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise _broken_safetensors(path, f"its header is not JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise _broken_safetensors(path, "its header is not a JSON object")
    return header, memoryview(data)[8 + header_len :]


def _read_safetensors(path: Path) -> Weights:
    # Memory-mapped: float32 tensors are views, so a large checkpoint is not copied twice.
    header, body = _safetensors_parts(path)
    out: Weights = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            start, end = info["data_offsets"]
            if not 0 <= start <= end <= len(body):
                raise ValueError(f"bytes {start}..{end} lie outside the {len(body)}-byte body")
            out[name] = _decode(body[start:end], info["dtype"], info["shape"], path, name)
        except (KeyError, TypeError, ValueError) as exc:
            raise _broken_safetensors(path, f"tensor {name!r} is unreadable ({exc})") from exc
    return out


def _broken_safetensors(path: Path, why: str) -> ModelLoadError:
    return ModelLoadError(
        f"{path} is not a valid safetensors file: {why}. It is probably truncated or corrupt; "
        "download or save the checkpoint again."
    )


def _decode(buf: memoryview, dtype: str, shape: list[int], path: Path, name: str) -> np.ndarray:
    if dtype == "BF16":
        halves = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
        return halves.view(np.float32).reshape(shape)
    if dtype not in _SAFETENSORS_DTYPES:
        raise ModelLoadError(f"{path}: tensor {name} has unsupported dtype {dtype}")
    array = np.frombuffer(buf, dtype=_SAFETENSORS_DTYPES[dtype]).reshape(shape)
    return array.astype(np.float32, copy=False) if array.dtype.kind == "f" else array


def _read_torch_bin(path: Path) -> Weights:
    try:
        import torch
    except ImportError as exc:
        raise ModelLoadError(
            f"{path} is a pytorch_model.bin checkpoint, which needs torch to read; "
            "install it with pip install 'semrank[torch]' or convert the checkpoint to "
            "model.safetensors"
        ) from exc
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.detach().float().numpy() for k, v in state.items() if v.is_floating_point()}
