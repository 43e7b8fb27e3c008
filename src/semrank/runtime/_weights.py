"""Read a Hugging Face checkpoint's weights as float32 numpy arrays, without torch.

safetensors is parsed directly (header + raw buffer) so bf16 checkpoints load too: numpy has
no bfloat16, so those tensors are widened to float32 bit-wise.
"""

from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path

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
    shards = sorted(model_dir.glob("model-*-of-*.safetensors"))
    if shards:
        return shards
    legacy = model_dir / "pytorch_model.bin"
    if legacy.is_file():
        return [legacy]
    raise ModelLoadError(
        f"no weights in {model_dir}: expected model.safetensors, sharded model-*.safetensors, "
        "pytorch_model.bin or model.onnx"
    )


def load_weights(model_dir: Path) -> Weights:
    weights: Weights = {}
    for path in weight_files(model_dir):
        if path.suffix == ".safetensors":
            weights.update(_read_safetensors(path))
        else:
            weights.update(_read_torch_bin(path))
    return weights


def _read_safetensors(path: Path) -> Weights:
    # Memory-mapped: float32 tensors are views, so a large checkpoint is not copied twice.
    with path.open("rb") as fh:
        data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    body = memoryview(data)[8 + header_len :]
    out: Weights = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[name] = _decode(body[start:end], info["dtype"], info["shape"], path, name)
    return out


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
