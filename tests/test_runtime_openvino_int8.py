"""The OpenVINO static int8 backend ("openvino-int8", NNCF post-training quantization).

Tolerances: the tiny random models (hidden size 32, weights of std 0.15) have much wider and
spikier activations than trained models, and the calibration set is English text they were
never trained on, so per-tensor int8 ranges fit them worse than real models. Measured on six
tiny BERT/XLM-R cross-encoders: max |int8 - fp32| 0.19-0.30 of the fp32 score spread, mean
0.03-0.09, Spearman 0.87-0.98 (BERT 0.97-0.98); on all-MiniLM-L6-v2 the max difference of
0..1 scores is 0.02 and nDCG@10 moves by < 0.005. The bounds below leave a margin over the
tiny-model numbers while still failing for a broken graph (ignored mask, wrong inputs or
collapsed ranges make the Spearman correlation drop towards 0).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from semrank.errors import BackendUnavailableError
from semrank.models.spec import ResolvedModel
from semrank.runtime import (
    BACKENDS,
    PairScorer,
    apply_activation,
    load_embedder,
    load_scorer,
    resolve_backend,
)
from semrank.runtime._loaders import CONCRETE_BACKENDS
from semrank.runtime._select import choose_backend
from tiny_models import random_pairs, tiny_spec

BACKEND = "openvino-int8"
needs_openvino_int8 = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None or importlib.util.find_spec("nncf") is None,
    reason="openvino-int8 needs openvino and nncf: pip install 'semrank[openvino]'",
)


def cross_encoder(model_dir: Path) -> ResolvedModel:
    return tiny_spec(model_dir)


def bi_encoder(model_dir: Path) -> ResolvedModel:
    return tiny_spec(model_dir, "bi-encoder")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


# --- registration and selection -------------------------------------------------------------


def test_openvino_int8_is_a_backend_name_but_never_chosen_automatically() -> None:
    assert BACKEND in CONCRETE_BACKENDS
    assert BACKEND in BACKENDS
    assert resolve_backend(BACKEND).backend == BACKEND
    int8_cpu = {"avx2": True, "avx512f": True, "avx512_vnni": True, "amx_int8": True}
    for features in (int8_cpu, {**int8_cpu, "amx_bf16": True}):
        for allow_lossy in (False, True):
            chosen = choose_backend({**features, "openvino": True}, allow_lossy=allow_lossy)
            assert chosen.backend != BACKEND


@pytest.mark.parametrize("missing", ["nncf", "openvino"])
def test_a_missing_nncf_or_openvino_names_the_extra_to_install(
    tiny_model, monkeypatch, missing
) -> None:
    model_dir = tiny_model("bert")
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import <missing>` fail
    with pytest.raises(BackendUnavailableError, match=r"pip install 'semrank\[openvino\]'") as err:
        load_scorer(cross_encoder(model_dir), backend=BACKEND)
    assert missing in str(err.value)


# --- scores ---------------------------------------------------------------------------------


@needs_openvino_int8
def test_int8_scores_stay_close_to_fp32_and_keep_the_ranking(tiny_model) -> None:
    model_dir = tiny_model("bert")
    pairs = random_pairs(60, seed=5)
    ref = load_scorer(cross_encoder(model_dir), backend="openvino").score_pairs(pairs)
    spread = float(ref.max() - ref.min())
    assert spread > 0.05  # the bounds are relative to the spread: a flat model cannot pass
    got = load_scorer(cross_encoder(model_dir), backend=BACKEND).score_pairs(pairs)
    error = np.abs(got - ref)
    assert error.mean() <= 0.15 * spread
    assert error.max() <= 0.4 * spread
    assert spearman(ref, got) > 0.9
    sigmoid_error = apply_activation(got, "sigmoid") - apply_activation(ref, "sigmoid")
    assert np.max(np.abs(sigmoid_error)) < 0.06


@needs_openvino_int8
@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_scores_are_one_float32_per_pair_in_input_order(tiny_model, family) -> None:
    scorer = load_scorer(cross_encoder(tiny_model(family)), backend=BACKEND)
    assert isinstance(scorer, PairScorer)
    assert scorer.backend == BACKEND  # type: ignore[attr-defined]
    pairs = random_pairs(30, seed=11)
    scores = scorer.score_pairs(pairs)
    assert scores.shape == (30,) and scores.dtype == np.float32
    assert np.isfinite(scores).all() and np.ptp(scores) > 0
    order = np.random.default_rng(0).permutation(len(pairs))
    shuffled = scorer.score_pairs([pairs[i] for i in order])
    np.testing.assert_allclose(shuffled, scores[order], atol=1e-5)
    alone = [scorer.score_pairs([pair])[0] for pair in pairs[:5]]  # batched like no other
    np.testing.assert_allclose(alone, scores[:5], atol=1e-5)
    assert scorer.score_pairs([]).shape == (0,)


@needs_openvino_int8
def test_int8_embeddings_are_normalised_and_close_to_fp32(tiny_model) -> None:
    model = bi_encoder(tiny_model("bert", "encoder"))
    texts = [doc for _, doc in random_pairs(20, seed=7)]
    ref = load_embedder(model, backend="openvino").embed(texts)
    got = load_embedder(model, backend=BACKEND).embed(texts)
    assert got.shape == ref.shape and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert np.einsum("ij,ij->i", ref, got).min() > 0.95  # measured 0.96-0.99 on tiny models
    scorer = load_scorer(model, backend=BACKEND)
    assert scorer.score_pairs(random_pairs(4, seed=1)).shape == (4,)


# --- the cached int8 IR -----------------------------------------------------------------------


def _cached_irs(cache: Path) -> list[Path]:
    return sorted((cache / "onnx").glob("*.ov-int8/model.xml"))


@needs_openvino_int8
def test_the_int8_ir_is_cached_per_model_and_reused(
    tiny_model, tmp_path, monkeypatch, capfd
) -> None:
    import nncf
    import openvino

    monkeypatch.setenv("SEMRANK_CACHE", str(tmp_path))
    calls: list[int] = []
    real_quantize = nncf.quantize

    def counting_quantize(*args, **kwargs):
        calls.append(1)
        return real_quantize(*args, **kwargs)

    monkeypatch.setattr(nncf, "quantize", counting_quantize)
    model = cross_encoder(tiny_model("bert"))
    load_scorer(model, backend=BACKEND)
    assert capfd.readouterr().out == ""  # NNCF's logs and progress bars go to stderr
    (ir,) = _cached_irs(tmp_path)
    ops = {op.get_type_name() for op in openvino.Core().read_model(str(ir)).get_ops()}
    assert "FakeQuantize" in ops  # statically quantized, not the fp32 graph saved again
    stamps = [p.stat().st_mtime_ns for p in (ir, ir.with_suffix(".bin"))]
    load_scorer(model, backend=BACKEND)
    assert len(calls) == 1
    assert _cached_irs(tmp_path) == [ir]
    assert [p.stat().st_mtime_ns for p in (ir, ir.with_suffix(".bin"))] == stamps
    assert not list(tmp_path.glob("onnx/*.tmp"))  # no temporary directory left behind
    load_scorer(cross_encoder(tiny_model("bert", num_labels=2)), backend=BACKEND)
    assert len(calls) == 2 and len(_cached_irs(tmp_path)) == 2
