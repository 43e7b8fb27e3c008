"""Weight-only int8 checkpoints: small files, fp32 graphs, scores close to the original."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from semrank import Reranker
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


def test_int8_checkpoint_scores_close_to_fp32(tiny_model, tmp_path: Path):
    source = tiny_model("bert")
    target = tmp_path / "int8"
    shutil.copytree(source, target)
    save_file(quantize_int8(load_weights(source), min_size=256), str(target / "model.safetensors"))
    assert (target / "model.safetensors").stat().st_size < (
        source / "model.safetensors"
    ).stat().st_size
    pairs = random_pairs(40, seed=3)
    full, small = Reranker(source), Reranker(target)
    for query in sorted({q for q, _ in pairs}):
        docs = [d for q, d in pairs if q == query]
        np.testing.assert_allclose(small.score(query, docs), full.score(query, docs), atol=0.02)
