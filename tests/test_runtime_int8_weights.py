"""Weight-only int8 checkpoints: small files, fp32 graphs, scores close to the original."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from semrank import Reranker
from semrank.errors import ModelLoadError
from semrank.runtime._weights import dequantize_int8, load_weights, quantize_int8
from tiny_models import random_pairs


def test_round_trip_error_is_bounded_by_half_a_step():
    rng = np.random.default_rng(0)
    weights = {"w": rng.normal(size=(64, 128)).astype(np.float32), "b": np.ones(64, np.float32)}
    packed = quantize_int8(weights)
    assert packed["w.int8"].dtype == np.int8 and "b" in packed and "w" not in packed
    restored = dequantize_int8(packed)
    step = np.abs(weights["w"]).max(axis=1, keepdims=True) / 127
    assert np.all(np.abs(restored["w"] - weights["w"]) <= step / 2 + 1e-7)
    np.testing.assert_array_equal(restored["b"], weights["b"])


def test_grouped_scales_bound_the_error_per_group_and_beat_one_scale_per_row():
    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(16, 256)).astype(np.float32)
    matrix[:, 7] *= 40.0  # one outlier column: a per-row scale wastes its steps on it
    packed = quantize_int8({"w": matrix}, min_size=1, group=64)
    assert packed["w.int8_scale"].shape == (16, 4)
    restored = dequantize_int8(packed)["w"]
    step = np.abs(matrix.reshape(16, 4, 64)).max(axis=2, keepdims=True) / 127
    error = np.abs(restored - matrix).reshape(16, 4, 64)
    assert np.all(error <= step / 2 + 1e-6)
    per_row = dequantize_int8(quantize_int8({"w": matrix}, min_size=1))["w"]
    assert np.abs(restored - matrix).mean() < 0.5 * np.abs(per_row - matrix).mean()


def test_group_that_does_not_divide_a_row_falls_back_to_one_scale_per_row():
    matrix = np.arange(3 * 100, dtype=np.float32).reshape(3, 100)
    packed = quantize_int8({"w": matrix}, min_size=1, group=64)
    assert packed["w.int8_scale"].shape == (3,)


def test_scales_of_the_wrong_shape_are_named():
    packed = {"w.int8": np.ones((4, 64), np.int8), "w.int8_scale": np.ones((4, 3), np.float32)}
    with pytest.raises(ModelLoadError, match=r"w\.int8 \(4, 64\)"):
        dequantize_int8(packed)


@pytest.mark.parametrize("group", [None, 16])
def test_int8_checkpoint_scores_close_to_fp32(tiny_model, tmp_path: Path, group: int | None):
    source = tiny_model("bert")
    target = tmp_path / "int8"
    shutil.copytree(source, target)
    packed = quantize_int8(load_weights(source), min_size=256, group=group)
    assert any(v.ndim == 2 for k, v in packed.items() if k.endswith(".int8_scale")) == bool(group)
    save_file(packed, str(target / "model.safetensors"))
    assert (target / "model.safetensors").stat().st_size < (
        source / "model.safetensors"
    ).stat().st_size
    pairs = random_pairs(40, seed=3)
    full, small = Reranker(source), Reranker(target)
    for query in sorted({q for q, _ in pairs}):
        docs = [d for q, d in pairs if q == query]
        np.testing.assert_allclose(small.score(query, docs), full.score(query, docs), atol=0.02)


@pytest.mark.parametrize("head", ["sequence-classification", "encoder"])
def test_the_torch_backend_reads_int8_weights_as_every_other_backend(
    tiny_model, tmp_path: Path, head: str
):
    """transformers read W.int8 / W.int8_scale as unknown tensors and left W at random: the
    bundled model scored at random on backend='torch' (the reference backend)."""
    pytest.importorskip("torch")
    from semrank.runtime import load_scorer
    from tiny_models import tiny_spec

    source = tiny_model("bert", head)
    target = tmp_path / "int8"
    shutil.copytree(source, target)
    save_file(quantize_int8(load_weights(source), min_size=256), str(target / "model.safetensors"))
    kind = "cross-encoder" if head == "sequence-classification" else "bi-encoder"
    spec = tiny_spec(target, kind)
    reference = load_scorer(spec, backend="onnx", threads=1)
    torch_run = load_scorer(spec, backend="torch", threads=1)
    pairs = random_pairs(12, seed=5)
    if kind == "cross-encoder":
        expected, got = reference.score_pairs(pairs), torch_run.score_pairs(pairs)
    else:
        texts = [d for _, d in pairs]
        expected = reference.embedder.embed(texts)  # type: ignore[attr-defined]
        got = torch_run.embedder.embed(texts)  # type: ignore[attr-defined]
    np.testing.assert_allclose(got, expected, atol=1e-3)
