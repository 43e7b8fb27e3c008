"""ONNX export: cache reuse, pre-exported models, errors, and a torch-free query path."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from semrank.errors import BackendUnavailableError, ModelLoadError, UnsupportedArchitectureError
from semrank.models.spec import ResolvedModel
from semrank.runtime import CrossEncoderScorer, load_scorer
from semrank.runtime.onnx_export import (
    SUPPORTED_ARCHITECTURES,
    export_onnx,
    onnx_model_path,
    uses_own_graph,
)
from tiny_models import random_pairs


def cross_encoder(model_dir: Path, max_length: int = 64) -> ResolvedModel:
    return ResolvedModel(
        name="tiny",
        path=model_dir,
        kind="cross-encoder",
        architecture="",
        max_length=max_length,
        activation="sigmoid",
    )


def test_second_load_reuses_the_cached_export(tiny_model, tmp_path: Path) -> None:
    model_dir = tiny_model("bert", max_length=64, seed=5)
    cache = tmp_path / "cache"
    first = onnx_model_path(model_dir, "sequence-classification", cache_dir=cache)
    stamp = first.stat().st_mtime_ns
    second = onnx_model_path(model_dir, "sequence-classification", cache_dir=cache)
    assert second == first and second.stat().st_mtime_ns == stamp
    assert [p.name for p in cache.iterdir()] == [first.name]  # no temp files left behind
    # Another head or changed weights are different cache entries.
    encoder = onnx_model_path(model_dir, "encoder", cache_dir=cache)
    assert encoder != first


def test_changed_config_invalidates_the_cache(tiny_model, tmp_path: Path) -> None:
    model_dir = shutil.copytree(tiny_model("bert", max_length=64), tmp_path / "model")
    cache = tmp_path / "cache"
    before = onnx_model_path(model_dir, "sequence-classification", cache_dir=cache)
    config = json.loads((model_dir / "config.json").read_text())
    config["layer_norm_eps"] = 1e-5
    (model_dir / "config.json").write_text(json.dumps(config))
    after = onnx_model_path(model_dir, "sequence-classification", cache_dir=cache)
    assert after != before and len(list(cache.iterdir())) == 2


@pytest.mark.parametrize("entry", ["file", "folder"])
def test_an_export_replaced_by_a_newer_one_of_its_folder_is_pruned(
    tiny_model, tmp_path: Path, monkeypatch, entry: str
) -> None:
    """Every retrained folder (or new exporter version) left one more export behind, forever."""
    from semrank.runtime import onnx_export

    if entry == "folder":  # graphs over 2 GiB are a folder with external data
        monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_THRESHOLD", 1000)
    model_dir = shutil.copytree(tiny_model("bert", max_length=64), tmp_path / "model")
    cache = tmp_path / "cache"
    head = "sequence-classification"
    other = onnx_model_path(tiny_model("bert", max_length=64, seed=3), head, cache_dir=cache)
    first = onnx_model_path(model_dir, head, cache_dir=cache)
    _change_config(model_dir, layer_norm_eps=1e-5)
    second = onnx_model_path(model_dir, head, cache_dir=cache)
    assert first.is_file()  # used a moment ago: another process may be loading it now
    for path in (first, other):
        _last_used(path, cache, seconds_ago=onnx_export.IN_USE_FOR_S + 60)
    _change_config(model_dir, layer_norm_eps=1e-6)
    third = onnx_model_path(model_dir, head, cache_dir=cache)
    assert not first.exists() and second.is_file() and third.is_file()
    assert other.is_file()  # another folder's export stays while it is in use
    _last_used(other, cache, seconds_ago=onnx_export.UNUSED_FOR_S + 60)
    _change_config(model_dir, layer_norm_eps=1e-7)
    fourth = onnx_model_path(model_dir, head, cache_dir=cache)
    assert not other.exists()  # unused for a month
    assert {p.name for p in cache.iterdir()} == {
        path.relative_to(cache).parts[0] for path in (second, third, fourth)
    }


def test_an_export_stamped_in_the_future_ages_from_when_it_is_next_seen(
    tiny_model, tmp_path: Path
) -> None:
    """An export written while the clock ran a year ahead (or copied from such a machine) was
    used "in a year": never idle, so never pruned once replaced, nor after a month unused."""
    from semrank.runtime import onnx_export

    model_dir = shutil.copytree(tiny_model("bert", max_length=64), tmp_path / "model")
    cache = tmp_path / "cache"
    head = "sequence-classification"
    first = onnx_model_path(model_dir, head, cache_dir=cache)
    _last_used(first, cache, seconds_ago=-365 * 86400)
    _change_config(model_dir, layer_norm_eps=1e-5)
    onnx_model_path(model_dir, head, cache_dir=cache)  # replaces it, and prunes
    stamps = first.stat()
    assert max(stamps.st_atime, stamps.st_mtime) <= time.time()  # idle from now on
    _last_used(first, cache, seconds_ago=onnx_export.IN_USE_FOR_S + 60)  # may be loading: passed
    _change_config(model_dir, layer_norm_eps=1e-6)
    onnx_model_path(model_dir, head, cache_dir=cache)
    assert not first.exists()


def _change_config(model_dir: Path, **changes: object) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, **changes}))


def _last_used(path: Path, cache: Path, *, seconds_ago: float) -> None:
    then = time.time() - seconds_ago
    os.utime(cache / path.relative_to(cache).parts[0], (then, then))


def test_load_scorer_uses_the_environment_cache(tiny_model, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SEMRANK_CACHE", str(tmp_path))
    model_dir = tiny_model("bert", max_length=64, seed=6)
    load_scorer(cross_encoder(model_dir))
    exported = list((tmp_path / "onnx").glob("*.onnx"))
    assert len(exported) == 1
    stamp = exported[0].stat().st_mtime_ns
    load_scorer(cross_encoder(model_dir))
    assert list((tmp_path / "onnx").glob("*.onnx")) == exported
    assert exported[0].stat().st_mtime_ns == stamp


def test_a_bundled_model_onnx_is_used_as_is(tiny_model, tmp_path: Path) -> None:
    source = tiny_model("bert", max_length=64)
    model_dir = shutil.copytree(source, tmp_path / "with-onnx")
    onnx.save_model(export_onnx(source, "sequence-classification"), model_dir / "model.onnx")
    (model_dir / "model.safetensors").unlink()  # weights are no longer needed
    cache = tmp_path / "cache"
    path = onnx_model_path(model_dir, "sequence-classification", cache_dir=cache)
    assert path == model_dir / "model.onnx" and not cache.exists()
    pairs = random_pairs(10)
    np.testing.assert_allclose(
        load_scorer(cross_encoder(model_dir)).score_pairs(pairs),
        load_scorer(cross_encoder(source)).score_pairs(pairs),
        atol=1e-6,
    )


def hub_onnx_folder(source: Path, target: Path) -> Path:
    """``source`` as a hub repo in Optimum's layout ships it: config and tokenizer, the graph
    in onnx/, no weights."""
    model_dir = shutil.copytree(source, target)
    (model_dir / "model.safetensors").unlink()
    (model_dir / "onnx").mkdir()
    graph = export_onnx(source, "sequence-classification")
    onnx.save_model(graph, model_dir / "onnx" / "model.onnx")
    return model_dir


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_a_folder_whose_graph_is_in_onnx_is_run(tiny_model, tmp_path: Path, backend: str) -> None:
    """A repo shipping onnx/model.onnx and no weights (Optimum's layout) was refused as missing
    "model.safetensors or pytorch_model.bin or model.onnx"; onnx/ was not looked in."""
    from semrank import Reranker

    pytest.importorskip("openvino" if backend == "openvino" else "onnxruntime")
    source = tiny_model("roberta", max_length=64)
    model_dir = hub_onnx_folder(source, tmp_path / "hub-onnx")
    assert onnx_model_path(model_dir, "sequence-classification") == model_dir / "onnx/model.onnx"
    query, docs = "flea", [doc for _, doc in random_pairs(8)]
    np.testing.assert_allclose(
        Reranker(str(model_dir), backend=backend).score(query, docs, raw=True),
        Reranker(str(source), backend=backend).score(query, docs, raw=True),
        atol=1e-5,
    )
    with pytest.raises(ModelLoadError, match=r"holds only onnx/model\.onnx.*backend 'onnx'"):
        Reranker(str(model_dir), backend="torch")


@pytest.mark.parametrize("backend", ["onnx", "openvino", "openvino-int8"])
def test_a_shipped_graph_reading_inputs_semrank_does_not_feed_is_refused(
    tiny_model, tmp_path: Path, backend: str
) -> None:
    """A shipped graph that reads position_ids loaded, then every score failed with a bare
    KeyError: 'position_ids' (a traceback from the CLI); openvino-int8 raised it calibrating."""
    from onnx import TensorProto, helper

    from semrank import Reranker

    pytest.importorskip("onnxruntime" if backend == "onnx" else "openvino")
    if backend == "openvino-int8":
        pytest.importorskip("nncf")
    model_dir = hub_onnx_folder(tiny_model("bert", max_length=64), tmp_path / "position-ids")
    graph = onnx.load(model_dir / "onnx" / "model.onnx")
    ids = helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "seq"])
    graph.graph.input.append(ids)
    onnx.save_model(graph, model_dir / "onnx" / "model.onnx")
    with pytest.raises(ModelLoadError, match=r"onnx/model\.onnx takes inputs position_ids"):
        Reranker(str(model_dir), backend=backend).score("flea", ["a dog"])


def test_a_refused_shipped_graph_is_not_quantized_again(tiny_model, tmp_path: Path, monkeypatch):
    """The refusal above, on onnx-int8, dropped the int8 graph as a stale cache file and
    quantized the folder's graph once more, on every load."""
    from onnx import TensorProto, helper

    from semrank import Reranker

    monkeypatch.setenv("SEMRANK_CACHE", str(tmp_path / "cache"))
    model_dir = hub_onnx_folder(tiny_model("bert", max_length=64), tmp_path / "position-ids")
    graph = onnx.load(model_dir / "onnx" / "model.onnx")
    ids = helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "seq"])
    graph.graph.input.append(ids)
    onnx.save_model(graph, model_dir / "onnx" / "model.onnx")
    stamps = []
    for _ in range(2):
        with pytest.raises(ModelLoadError, match=r"onnx/model\.onnx takes inputs position_ids"):
            Reranker(str(model_dir), backend="onnx-int8")
        [quantized] = (tmp_path / "cache" / "onnx").glob("*.int8.onnx")
        stamps.append((quantized.stat().st_ino, quantized.stat().st_mtime_ns))
    assert stamps[0] == stamps[1]  # the second load reused it: nothing was quantized again


def test_an_fp16_shipped_graph_is_refused_by_onnx_int8_naming_the_fix(tiny_model, tmp_path: Path):
    """Optimum's model_fp16.onnx copied as model.onnx runs on backend='onnx', but onnx-int8
    quantized it (twice) into a graph ONNX Runtime refused as INVALID_GRAPH, naming the cache."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from semrank import Reranker

    source = tiny_model("bert", max_length=64)
    model_dir = shutil.copytree(source, tmp_path / "fp16")
    (model_dir / "model.safetensors").unlink()
    fp16 = convert_float_to_float16(export_onnx(source, "sequence-classification"))
    onnx.save_model(fp16, model_dir / "model.onnx")
    assert Reranker(str(model_dir), backend="onnx").score("flea", ["a dog"]).shape == (1,)
    with pytest.raises(ModelLoadError, match=r"fp16/model\.onnx is an fp16 graph.*backend='onnx'"):
        Reranker(str(model_dir), backend="onnx-int8")


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_a_shipped_graph_semrank_cannot_read_scores_from_is_refused_at_load(
    tiny_model, tmp_path: Path, backend: str
) -> None:
    """An encoder's graph in a cross-encoder's folder was refused as "ONNX graph outputs
    ['last_hidden_state'] do not include 'logits'", naming no file; a graph of three logits
    loaded, and every score failed with "cross-encoder returned logits of shape (1, 3)"."""
    from semrank import Reranker

    pytest.importorskip("openvino" if backend == "openvino" else "onnxruntime")
    source = tiny_model("bert", max_length=64)
    encoder = shutil.copytree(source, tmp_path / "encoder-graph")
    (encoder / "model.safetensors").unlink()
    (encoder / "onnx").mkdir()
    onnx.save_model(export_onnx(source, "encoder"), encoder / "onnx" / "model.onnx")
    with pytest.raises(ModelLoadError, match=r"onnx/model\.onnx gives .*'logits' of 2 is read"):
        Reranker(str(encoder), backend=backend)
    three = hub_onnx_folder(tiny_model("bert", max_length=64, num_labels=3), tmp_path / "three")
    shutil.copy(source / "config.json", three / "config.json")  # which says one label
    with pytest.raises(ModelLoadError, match=r"onnx/model\.onnx gives 3 logits per pair"):
        Reranker(str(three), backend=backend)


def test_weights_win_over_an_onnx_folder_beside_them(tiny_model, tmp_path: Path) -> None:
    """Beside weights, onnx/ is not read (as on the hub, where it is not fetched): semrank runs
    its own export of the weights, whatever graph onnx/ holds."""
    model_dir = shutil.copytree(tiny_model("bert", max_length=64), tmp_path / "with-both")
    (model_dir / "onnx").mkdir()
    (model_dir / "onnx" / "model.onnx").write_bytes(b"a graph of other weights")
    assert not uses_own_graph(model_dir)
    assert onnx_model_path(model_dir, "sequence-classification").parent != model_dir / "onnx"


def test_onnx_variants_without_model_onnx_are_named(tiny_model, tmp_path: Path) -> None:
    """Which of Optimum's variants to run (quantized, O1-O4, fp16) is the user's choice: the
    refusal names them and how to pick one; the picked one then runs."""
    from semrank import Reranker
    from semrank.models import resolve

    model_dir = hub_onnx_folder(tiny_model("bert", max_length=64), tmp_path / "variants")
    graphs = model_dir / "onnx"
    (graphs / "model.onnx").rename(graphs / "model_O2.onnx")
    (graphs / "model_quantized.onnx").write_bytes(b"another graph")
    with pytest.raises(ModelLoadError, match=r"model_O2\.onnx, model_quantized\.onnx.*cp "):
        resolve(str(model_dir))
    shutil.copy(graphs / "model_O2.onnx", model_dir / "model.onnx")
    assert Reranker(str(model_dir)).score("flea", ["a dog", "paris"]).shape == (2,)


def test_unsupported_architecture_names_it_and_the_supported_ones(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(UnsupportedArchitectureError) as info:
        export_onnx(tmp_path, "encoder")
    assert f"{tmp_path}: unsupported architecture GPT2LMHeadModel" in str(info.value)
    assert all(name in str(info.value) for name in SUPPORTED_ARCHITECTURES)
    # The fix that works for a classifier transformers knows (DistilBERT, DeBERTa, ELECTRA).
    assert "backend='torch' (CLI: --backend torch" in str(info.value)


def test_missing_weights_raise_model_load_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(ModelLoadError, match=r"model\.safetensors"):
        export_onnx(tmp_path, "encoder")


@pytest.mark.parametrize("keep", [0, 4, 30, "half"])
def test_truncated_safetensors_name_the_file(tiny_model, tmp_path: Path, keep) -> None:
    model_dir = shutil.copytree(tiny_model("bert", max_length=64), tmp_path / "model")
    weights = model_dir / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2 if keep == "half" else keep])
    with pytest.raises(ModelLoadError, match=r"model\.safetensors is not a valid safetensors"):
        export_onnx(model_dir, "sequence-classification")


def _edit_config(model_dir: Path, **changes: object) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key)
        else:
            config[key] = value
    (model_dir / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hidden_size": None}, r"config\.json does not describe .*'hidden_size'"),
        ({"num_hidden_layers": "two"}, r"config\.json does not describe .*'two'"),
        ({"hidden_size": 64}, r"hidden_size 64 but weight .*word_embeddings.* \(\d+, 32\)"),
        # A bare ZeroDivisionError, and a shape error from inside ONNX Runtime's loader.
        ({"num_attention_heads": 0}, r"num_attention_heads 0, which does not divide .* 32"),
        ({"num_attention_heads": 3}, r"num_attention_heads 3, which does not divide .* 32"),
    ],
)
def test_config_that_does_not_match_the_weights_is_a_model_load_error(
    tiny_model, tmp_path: Path, changes, message
) -> None:
    model_dir = shutil.copytree(tiny_model("bert", max_length=64), tmp_path / "model")
    _edit_config(model_dir, **changes)
    with pytest.raises(ModelLoadError, match=message):
        export_onnx(model_dir, "sequence-classification")


def test_layer_norm_gamma_and_beta_names_load_as_transformers_loads_them(
    tiny_model, tmp_path
) -> None:
    """TensorFlow-era checkpoints call a LayerNorm's parameters gamma/beta: refused as missing
    '...LayerNorm.weight' (transformers renames them on load)."""
    from safetensors.numpy import load_file, save_file

    from semrank.runtime._weights import load_weights

    model_dir = shutil.copytree(tiny_model("bert", max_length=64), tmp_path / "model")
    weights_file = model_dir / "model.safetensors"
    current = load_file(str(weights_file))
    renamed = {
        name.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
            "LayerNorm.bias", "LayerNorm.beta"
        ): a
        for name, a in current.items()
    }
    assert renamed.keys() != current.keys()
    save_file(renamed, str(weights_file))
    loaded = load_weights(model_dir)
    assert loaded.keys() == current.keys()
    assert all((loaded[name] == current[name]).all() for name in current)


def test_unsupported_activation_is_an_unsupported_architecture(tiny_model, tmp_path) -> None:
    model_dir = shutil.copytree(tiny_model("bert", max_length=64), tmp_path / "model")
    _edit_config(model_dir, hidden_act="mish")
    with pytest.raises(UnsupportedArchitectureError, match="'mish'"):
        export_onnx(model_dir, "sequence-classification")


def test_unreadable_config_through_load_scorer(tiny_model, tmp_path: Path) -> None:
    model_dir = shutil.copytree(tiny_model("bert", max_length=64), tmp_path / "model")
    (model_dir / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"config\.json"):
        load_scorer(cross_encoder(model_dir), backend="onnx")


NEEDS_OPENVINO = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None or importlib.util.find_spec("nncf") is None,
    reason="the openvino backends need openvino and nncf: pip install 'semrank[openvino]'",
)


@pytest.mark.parametrize(
    "backend",
    [
        "onnx",
        "onnx-int8",
        pytest.param("openvino", marks=NEEDS_OPENVINO),
        pytest.param("openvino-int8", marks=NEEDS_OPENVINO),
    ],
)
def test_a_corrupt_cached_export_is_rebuilt(
    tiny_model, tmp_path: Path, monkeypatch, backend: str
) -> None:
    monkeypatch.setenv("SEMRANK_CACHE", str(tmp_path))
    model_dir = tiny_model("bert", max_length=64, seed=6)
    pairs = random_pairs(4)
    expected = load_scorer(cross_encoder(model_dir), backend=backend).score_pairs(pairs)
    cached = sorted(p for p in (tmp_path / "onnx").rglob("*") if p.suffix in (".onnx", ".xml"))
    assert cached
    for path in cached:  # a crash or a full disk left them truncated
        path.write_bytes(path.read_bytes()[:100])
    scores = load_scorer(cross_encoder(model_dir), backend=backend).score_pairs(pairs)
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    rebuilt = sorted(p for p in (tmp_path / "onnx").rglob("*") if p.suffix in (".onnx", ".xml"))
    assert rebuilt == cached and all(p.stat().st_size > 100 for p in rebuilt)


def test_a_broken_bundled_model_onnx_is_named(tiny_model, tmp_path: Path) -> None:
    model_dir = shutil.copytree(tiny_model("bert", max_length=64), tmp_path / "model")
    (model_dir / "model.safetensors").unlink()  # a folder that ships its graph, no weights
    (model_dir / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(ModelLoadError, match=r"ONNX Runtime cannot load .*model\.onnx"):
        load_scorer(cross_encoder(model_dir), backend="onnx")


def test_weights_win_over_a_model_onnx_beside_them(tiny_model, tmp_path: Path) -> None:
    """A model.onnx beside the weights was used even after new weights were saved into the
    folder: the old graph scored the new model."""
    model_dir = shutil.copytree(tiny_model("bert", max_length=64), tmp_path / "model")
    (model_dir / "model.onnx").write_bytes(b"a graph of other weights")
    later = (model_dir / "model.onnx").stat().st_mtime + 60
    os.utime(model_dir / "model.safetensors", (later, later))  # new weights saved after it
    pairs = [("what do fleas eat", "Fleas feed on blood.")]
    scores = load_scorer(cross_encoder(model_dir), backend="onnx").score_pairs(pairs)
    expected = load_scorer(cross_encoder(tiny_model("bert", max_length=64)), backend="onnx")
    assert scores.tolist() == pytest.approx(expected.score_pairs(pairs).tolist(), abs=1e-6)


def test_weights_copied_in_with_old_times_win_over_the_graph_made_from_others(
    tiny_model, tmp_path: Path
) -> None:
    """Which graph runs was told by file times alone: new weights copied in with their old
    times kept (cp -p, rsync -a) looked older than the model.onnx of the weights before them,
    and that stale graph scored the new model."""
    from semrank.train._model import _export_onnx

    model_dir = shutil.copytree(tiny_model("bert", max_length=64), tmp_path / "model")
    _export_onnx(model_dir)  # as semrank train --onnx leaves a folder
    retrained = tiny_model("bert", max_length=64, seed=1)
    shutil.copy2(retrained / "model.safetensors", model_dir / "model.safetensors")
    earlier = (model_dir / "model.onnx").stat().st_mtime - 60
    os.utime(model_dir / "model.safetensors", (earlier, earlier))
    pairs = [("what do fleas eat", "Fleas feed on blood.")]
    scores = load_scorer(cross_encoder(model_dir), backend="onnx").score_pairs(pairs)
    expected = load_scorer(cross_encoder(retrained), backend="onnx").score_pairs(pairs)
    assert scores.tolist() == pytest.approx(expected.tolist(), abs=1e-6)
    # The graph made from the weights beside it still runs as it is (no export), also once
    # they are touched (their content decides, not their times).
    _export_onnx(model_dir)
    assert uses_own_graph(model_dir)
    os.utime(model_dir / "model.safetensors", (earlier - 60, earlier - 60))
    assert uses_own_graph(model_dir)


def test_a_graph_record_without_file_stamps_is_checked_by_content(
    tiny_model, tmp_path: Path
) -> None:
    """A record holding only the weights' digest (as semrank train wrote it before recording
    stamps) fell back to comparing times, which kept the stale graph."""
    from semrank.runtime.onnx_export import GRAPH_SOURCE
    from semrank.train._model import _export_onnx

    model_dir = shutil.copytree(tiny_model("bert", max_length=64), tmp_path / "model")
    _export_onnx(model_dir)
    record = model_dir / GRAPH_SOURCE
    record.write_text(json.dumps({"weights": json.loads(record.read_text())["weights"]}))
    assert uses_own_graph(model_dir)
    shutil.copy2(tiny_model("bert", max_length=64, seed=1) / "model.safetensors", model_dir)
    earlier = (model_dir / "model.onnx").stat().st_mtime - 60
    os.utime(model_dir / "model.safetensors", (earlier, earlier))
    assert not uses_own_graph(model_dir)


def test_an_upgrade_keeps_the_cached_exports_keys(tiny_model) -> None:
    """A cache key is the digest of the exporter's version and head, then the config and the
    weights: a refactor that hashed a digest instead changed every key, and each model would
    have been exported again after an upgrade."""
    import hashlib

    from semrank.runtime.onnx_export import EXPORTER_VERSION, _cache_key

    model_dir = tiny_model("bert", max_length=64)
    digest = hashlib.sha256(f"semrank-export:{EXPORTER_VERSION}:sequence-classification\n".encode())
    digest.update((model_dir / "config.json").read_bytes())
    digest.update((model_dir / "model.safetensors").read_bytes())
    assert _cache_key(model_dir, "sequence-classification") == digest.hexdigest()[:32]


def test_unknown_backend_is_rejected(tiny_model) -> None:
    with pytest.raises(BackendUnavailableError, match="'tensorrt'"):
        load_scorer(cross_encoder(tiny_model("bert")), backend="tensorrt")


def test_default_backend_loads_and_uses_model_activation(tiny_model) -> None:
    model = ResolvedModel(
        name="tiny",
        path=tiny_model("bert"),
        kind="cross-encoder",
        architecture="",
        max_length=1000,
        activation="sigmoid",
    )
    scorer = load_scorer(model)
    assert isinstance(scorer, CrossEncoderScorer)
    assert scorer.activation == "sigmoid"
    assert scorer.max_length == 64  # clamped to the position embeddings


def test_cuda_request_without_cuda_is_a_clear_error(tiny_model) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this ONNX Runtime has CUDA")
    with pytest.raises(BackendUnavailableError, match="onnxruntime-gpu"):
        load_scorer(cross_encoder(tiny_model("bert")), device="cuda")


def test_onnx_path_never_imports_torch(tiny_model, minilm_dir: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from semrank.models.spec import ResolvedModel
        from semrank.runtime import load_embedder, load_scorer
        cross = ResolvedModel(name="t", path=Path({str(tiny_model("bert"))!r}),
            kind="cross-encoder", architecture="", max_length=64, activation="sigmoid")
        bi = ResolvedModel(name="m", path=Path({str(minilm_dir)!r}),
            kind="bi-encoder", architecture="BertModel", max_length=128, activation="cosine")
        assert load_scorer(cross).score_pairs([("q", "a document")]).shape == (1,)
        assert load_embedder(bi).embed(["hello"]).shape == (1, 384)
        leaked = sorted(m for m in ("torch", "transformers") if m in sys.modules)
        print("LEAKED", leaked)
        sys.exit(1 if leaked else 0)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_torch_backend_without_torch_names_the_extra(tiny_model) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # makes "import torch" fail as if not installed
        from pathlib import Path
        from semrank.errors import BackendUnavailableError
        from semrank.models.spec import ResolvedModel
        from semrank.runtime import load_scorer
        cross = ResolvedModel(name="t", path=Path({str(tiny_model("bert"))!r}),
            kind="cross-encoder", architecture="", max_length=64, activation="sigmoid")
        try:
            load_scorer(cross, backend="torch")
        except BackendUnavailableError as exc:
            print(exc)
            sys.exit(0 if "pip install 'semrank[torch]'" in str(exc) else 1)
        sys.exit(2)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_large_graphs_are_cached_with_external_data(
    tiny_model, tmp_path: Path, monkeypatch
) -> None:
    from semrank.runtime import onnx_export

    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_THRESHOLD", 1000)  # tiny model counts as large
    model_dir = tiny_model("bert", max_length=64)
    cache = tmp_path / "cache"
    path = onnx_model_path(model_dir, "sequence-classification", cache_dir=cache)
    assert path.name == "model.onnx" and (path.parent / "model.onnx.data").is_file()
    assert onnx_model_path(model_dir, "sequence-classification", cache_dir=cache) == path
    assert [p.name for p in cache.iterdir()] == [path.parent.name]  # temp dir removed
    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_THRESHOLD", 10**12)
    pairs = random_pairs(8)
    np.testing.assert_allclose(
        load_scorer(cross_encoder(model_dir)).score_pairs(pairs),
        _scores_from(path, model_dir, pairs),
        atol=1e-6,
    )


def _scores_from(onnx_path: Path, model_dir: Path, pairs: list[tuple[str, str]]) -> np.ndarray:
    from semrank.runtime._scorers import CrossEncoderScorer
    from semrank.runtime.onnx_backend import create_session, session_forward
    from semrank.runtime.tokenizer import load_tokenizer

    forward = session_forward(create_session(onnx_path))
    return CrossEncoderScorer(load_tokenizer(model_dir, 64), forward).score_pairs(pairs)


def test_a_cross_encoder_model_onnx_is_not_used_as_an_encoder(tiny_model, tmp_path: Path) -> None:
    from semrank.runtime import load_embedder

    source = tiny_model("bert", max_length=64)
    model_dir = shutil.copytree(source, tmp_path / "with-onnx")
    onnx.save_model(export_onnx(source, "sequence-classification"), model_dir / "model.onnx")
    (model_dir / "model.safetensors").unlink()  # the graph alone (with weights, they win)
    model = ResolvedModel(
        name="tiny",
        path=model_dir,
        kind="bi-encoder",
        architecture="",
        max_length=64,
        activation="cosine",
    )
    with pytest.raises(ModelLoadError, match="last_hidden_state"):
        load_embedder(model)


def test_cached_exports_are_readable_by_other_users(tiny_model, tmp_path: Path) -> None:
    """Exports were written 0600 (mkstemp): a cache filled by root in a Docker build could not
    be read by the user running the service."""
    from semrank.runtime.onnx_export import onnx_model_path

    mask = os.umask(0o022)
    try:
        path = onnx_model_path(tiny_model("bert"), "sequence-classification", cache_dir=tmp_path)
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_cache_that_cannot_be_written_names_semrank_cache(tiny_model, tmp_path: Path) -> None:
    from semrank.runtime.onnx_export import onnx_model_path

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ModelLoadError, match="SEMRANK_CACHE"):
        onnx_model_path(tiny_model("bert"), "sequence-classification", cache_dir=blocker / "x")


def test_a_model_onnx_written_after_the_weights_is_run(tiny_model, tmp_path: Path) -> None:
    """`semrank train --onnx` writes model.onnx after the weights: that graph is the one run
    (exporting again needed a writable cache)."""
    model_dir = shutil.copytree(tiny_model("bert", max_length=64), tmp_path / "model")
    (model_dir / "model.onnx").write_bytes(b"the folder's own graph")
    with pytest.raises(ModelLoadError, match=r"ONNX Runtime cannot load .*model\.onnx"):
        load_scorer(cross_encoder(model_dir), backend="onnx")


def test_the_onnx_cache_follows_semrank_cache_then_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """XDG_CACHE_HOME was ignored (the index home follows XDG_DATA_HOME): a container with a
    read-only HOME and XDG_CACHE_HOME set could not save its exports."""
    from semrank.runtime.onnx_export import default_cache_dir

    monkeypatch.delenv("SEMRANK_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "semrank" / "onnx"
    monkeypatch.setenv("SEMRANK_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine" / "onnx"


def test_no_home_folder_names_the_variable_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """HOME unset and a uid without a passwd entry (env -i, a container's arbitrary uid):
    Path.home() raised a RuntimeError, shown as a traceback."""
    from semrank.errors import BackendUnavailableError
    from semrank.runtime.onnx_export import default_cache_dir
    from semrank.store import default_home

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    for name in ("SEMRANK_CACHE", "SEMRANK_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    with pytest.raises(BackendUnavailableError, match=r"no home folder .*set SEMRANK_CACHE"):
        default_cache_dir()
    with pytest.raises(BackendUnavailableError, match=r"no home folder .*set \$SEMRANK_HOME"):
        default_home()


def test_only_the_shards_the_index_names_are_read(tiny_model, tmp_path: Path) -> None:
    """A newer sharded checkpoint copied over an older one (cp, rsync without --delete) left
    both's shards, and every one was read: tensors of whichever sorted last, a mix of two
    models, scored with no word said."""
    import shutil

    import transformers

    from semrank.errors import ModelLoadError
    from semrank.runtime._weights import load_weights

    old, new = tiny_model("bert", seed=5), tiny_model("bert", seed=0)
    folder = tmp_path / "model"
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(old))
    model.save_pretrained(folder, max_shard_size="20KB")
    older_shards = sorted(p.name for p in folder.glob("model-*-of-*.safetensors"))
    staging = tmp_path / "new"
    transformers.AutoModelForSequenceClassification.from_pretrained(str(new)).save_pretrained(
        staging, max_shard_size="40KB"
    )
    for path in staging.iterdir():
        shutil.copy(path, folder / path.name)  # over the old folder, deleting nothing
    assert sorted(p.name for p in folder.glob("model-*-of-*.safetensors")) != older_shards
    expected = load_weights(staging)
    loaded = load_weights(folder)
    assert loaded.keys() == expected.keys()
    assert all(np.array_equal(loaded[name], expected[name]) for name in expected)
    (folder / "model.safetensors.index.json").unlink()
    with pytest.raises(ModelLoadError, match="holds shards of 2 checkpoints"):
        load_weights(folder)


def _jina_v2_layout(model_dir: Path, target: Path) -> Path:
    """A copy of an XLM-RoBERTa cross-encoder as jina-reranker-v2 saves one: its config names
    the folder's own code in auto_map (and no model_type), its layers are flash-attention
    blocks (fused Wqkv, mixer / mlp / norm1 / norm2)."""
    from safetensors.numpy import load_file, save_file

    shutil.copytree(model_dir, target)
    config = json.loads((target / "config.json").read_text())
    config.pop("model_type")
    config["auto_map"] = {
        "AutoConfig": "configuration_xlm_roberta.XLMRobertaFlashConfig",
        "AutoModelForSequenceClassification": "modeling_xlm_roberta."
        "XLMRobertaForSequenceClassification",
    }
    (target / "config.json").write_text(json.dumps(config))
    renames = [
        ("encoder.layer.", "encoder.layers."), ("attention.output.dense", "mixer.out_proj"),
        ("attention.output.LayerNorm", "norm1"), ("intermediate.dense", "mlp.fc1"),
        ("output.dense", "mlp.fc2"), ("output.LayerNorm", "norm2"),
        ("embeddings.LayerNorm", "emb_ln"),
    ]  # fmt: skip
    weights, renamed = load_file(str(target / "model.safetensors")), {}
    for name, array in weights.items():
        if ".attention.self.query." in name:
            parts = [weights[name.replace("query", part)] for part in ("query", "key", "value")]
            name, array = name.replace("attention.self.query", "mixer.Wqkv"), np.concatenate(parts)
        elif ".attention.self." in name:
            continue
        for old, new in renames:
            name = name.replace(old, new)
        renamed[name] = array
    save_file(renamed, str(target / "model.safetensors"))
    return target


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_a_model_with_its_own_code_is_refused_naming_it(tiny_model, tmp_path, backend) -> None:
    """jina-reranker-v2's folder failed with "checkpoint is missing weight
    'roberta.embeddings.LayerNorm.weight'; is it the right architecture?" (ONNX, HTTP 500), and
    on torch transformers asked on stdin whether to run the folder's code."""
    if backend == "torch":
        pytest.importorskip("transformers")
    folder = _jina_v2_layout(tiny_model("roberta"), tmp_path / "jina")
    with pytest.raises(UnsupportedArchitectureError, match=r"its own Python code") as info:
        load_scorer(cross_encoder(folder), backend=backend, device="cpu")
    assert "XLMRobertaForSequenceClassification" in str(info.value)
    assert "trust_remote_code" in str(info.value)
