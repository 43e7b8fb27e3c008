"""GPU paths: ONNX Runtime CUDA and torch fp16. Skipped (with the reason) where no GPU is usable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from semrank.models.spec import ResolvedModel
from semrank.runtime import load_scorer, resolve_backend
from tiny_models import random_pairs, tiny_spec


def _ort_cuda() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


needs_ort_cuda = pytest.mark.skipif(
    not _ort_cuda(), reason="no CUDAExecutionProvider (install onnxruntime-gpu on a GPU machine)"
)
needs_torch_cuda = pytest.mark.skipif(not _torch_cuda(), reason="torch has no CUDA device here")


def cross_encoder(model_dir: Path) -> ResolvedModel:
    return tiny_spec(model_dir)


@needs_ort_cuda
def test_onnx_cuda_matches_cpu_and_is_the_automatic_choice(tiny_model) -> None:
    model = cross_encoder(tiny_model("bert"))
    pairs = random_pairs(40, seed=11)
    cpu = load_scorer(model, backend="onnx", device="cpu").score_pairs(pairs)
    gpu = load_scorer(model, backend="onnx", device="cuda").score_pairs(pairs)
    np.testing.assert_allclose(gpu, cpu, atol=1e-3)
    assert resolve_backend(None).device.startswith("cuda")


@needs_torch_cuda
def test_torch_fp16_on_cuda_stays_close_to_fp32(tiny_model) -> None:
    model = cross_encoder(tiny_model("bert"))
    pairs = random_pairs(40, seed=12)
    ref = load_scorer(model, backend="torch", device="cpu").score_pairs(pairs)
    got = load_scorer(model, backend="torch-fp16", device="cuda").score_pairs(pairs)
    spread = float(ref.max() - ref.min())
    assert np.max(np.abs(got - ref)) <= 0.05 * spread
    assert np.corrcoef(np.argsort(np.argsort(ref)), np.argsort(np.argsort(got)))[0, 1] > 0.98


def test_torch_fp16_on_cpu_is_a_clear_error(tiny_model) -> None:
    pytest.importorskip("torch")
    from semrank.errors import BackendUnavailableError

    with pytest.raises(BackendUnavailableError, match="CUDA"):
        load_scorer(cross_encoder(tiny_model("bert")), backend="torch-fp16", device="cpu")
