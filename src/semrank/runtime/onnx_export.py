"""Export Hugging Face checkpoints to ONNX directly from their weights (no torch needed).

``export_onnx`` builds the graph from config.json + model.safetensors with ``onnx.helper``;
``onnx_model_path`` returns a cached export (or the directory's own ``model.onnx``, or the
``onnx/model.onnx`` of a folder without weights).

Graph contract: inputs ``input_ids`` and ``attention_mask`` (int64 [batch, seq]) plus
``token_type_ids`` for BERT; output ``logits`` [batch, num_labels] for the
"sequence-classification" head or ``last_hidden_state`` [batch, seq, hidden] for "encoder".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import onnx

from semrank._files import user_home
from semrank._process import removed_if_stopped
from semrank.errors import BackendUnavailableError, ModelLoadError, UnsupportedArchitectureError
from semrank.models.loading import config_architecture, custom_code_refusal, read_json_object
from semrank.runtime._arch_bert import build_bert_like
from semrank.runtime._graph import GraphBuilder
from semrank.runtime._weights import Weights, graph_file, load_weights, weight_files

T = TypeVar("T")

__all__ = [
    "ENCODER_ARCHITECTURES",
    "EXPORTER_VERSION",
    "SUPPORTED_ARCHITECTURES",
    "ExportHead",
    "default_cache_dir",
    "export_onnx",
    "onnx_model_path",
    "prune_cache",
]

# Bump whenever the produced graph changes, so stale cached exports are not reused.
EXPORTER_VERSION = "1"

ExportHead = Literal["sequence-classification", "encoder"]

# architecture -> (family, head it naturally carries)
_ARCHITECTURES: dict[str, tuple[str, ExportHead]] = {
    "BertForSequenceClassification": ("bert", "sequence-classification"),
    "BertModel": ("bert", "encoder"),
    "XLMRobertaForSequenceClassification": ("roberta", "sequence-classification"),
    "XLMRobertaModel": ("roberta", "encoder"),
    "RobertaForSequenceClassification": ("roberta", "sequence-classification"),
    "RobertaModel": ("roberta", "encoder"),
    "ModernBertForSequenceClassification": ("modernbert", "sequence-classification"),
    "ModernBertModel": ("modernbert", "encoder"),
    "SemrankGatedBertForSequenceClassification": ("gated-bert", "sequence-classification"),
    # Saved with the pre-training head, as many sentence-transformers folders are (e.g.
    # all-distilroberta-v1): the encoder is the model's, the language-model head is left out.
    "BertForMaskedLM": ("bert", "encoder"),
    "XLMRobertaForMaskedLM": ("roberta", "encoder"),
    "RobertaForMaskedLM": ("roberta", "encoder"),
    "ModernBertForMaskedLM": ("modernbert", "encoder"),
}
SUPPORTED_ARCHITECTURES: tuple[str, ...] = tuple(_ARCHITECTURES)
ENCODER_ARCHITECTURES: tuple[str, ...] = tuple(
    name for name, (_, head) in _ARCHITECTURES.items() if head == "encoder"
)


def read_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    if not path.is_file():
        raise ModelLoadError(f"{model_dir} has no config.json; expected a Hugging Face model dir")
    return read_json_object(path)


def architecture_of(config: dict[str, Any], model_dir: Path) -> str:
    # As model loading reads it: without "architectures", the encoder of its model_type (the
    # torch backend ran such a folder, this one refused it).
    name = config_architecture(config)
    if name is None:
        raise UnsupportedArchitectureError(
            f"{model_dir / 'config.json'} names no architecture and no known model_type; "
            f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    if name not in _ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"{model_dir}: unsupported architecture {name} for the ONNX Runtime and OpenVINO "
            f"backends (supported: {', '.join(SUPPORTED_ARCHITECTURES)}); the torch backend runs "
            "transformers' own classes: backend='torch' (CLI: --backend torch; needs the "
            "torch extra)"
        )
    return name


def export_onnx(model_dir: Path, head: ExportHead) -> onnx.ModelProto:
    """Build the ONNX graph of the checkpoint in ``model_dir`` with the requested head."""
    config = read_config(model_dir)
    architecture = architecture_of(config, model_dir)
    family, _ = _ARCHITECTURES[architecture]
    weights = load_weights(model_dir)
    try:
        _check_hidden_size(model_dir, config, weights)
        _check_heads(model_dir, config)
        return _build(config, weights, family, head)
    except ModelLoadError as exc:  # a weight the architecture needs is not there
        refusal = custom_code_refusal(model_dir)
        if refusal is None:
            raise
        raise UnsupportedArchitectureError(refusal) from exc
    except (KeyError, TypeError, ValueError) as exc:  # a missing or malformed config entry
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ModelLoadError(
            f"{model_dir / 'config.json'} does not describe a usable {architecture} "
            f"({type(exc).__name__}: {detail}); save the config again with "
            "model.save_pretrained(dir)"
        ) from exc


def _build(
    config: dict[str, Any], weights: Weights, family: str, head: ExportHead
) -> onnx.ModelProto:
    g = GraphBuilder()
    if family == "modernbert":
        from semrank.runtime._arch_modernbert import build_modernbert

        build_modernbert(g, config, weights, head=head)
    elif family == "gated-bert":
        if head != "sequence-classification":
            raise UnsupportedArchitectureError(
                "a gated cross-encoder only scores pairs; it has no encoder head"
            )
        from semrank.runtime._arch_gated import build_gated_bert

        build_gated_bert(g, config, weights)
    else:
        build_bert_like(g, config, weights, roberta=family == "roberta", head=head)
    return g.model(f"semrank-{family}-{head}", EXPORTER_VERSION)


def _check_hidden_size(model_dir: Path, config: dict[str, Any], weights: Weights) -> None:
    """Weights saved for another config would only fail later, inside the runtime."""
    hidden = int(config["hidden_size"])
    for name, array in weights.items():
        if name.endswith(("word_embeddings.weight", "tok_embeddings.weight")):
            if array.ndim != 2 or array.shape[1] != hidden:
                raise ModelLoadError(
                    f"{model_dir / 'config.json'} says hidden_size {hidden} but weight {name} "
                    f"in {model_dir} has shape "
                    f"{tuple(array.shape)}; the config and the weights belong to different models"
                )
            return


def _check_heads(model_dir: Path, config: dict[str, Any]) -> None:
    """Attention splits hidden_size into equal heads: 0 heads was a bare ZeroDivisionError, a
    count that does not divide it a shape error from inside ONNX Runtime."""
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    if heads < 1 or hidden % heads:
        raise ModelLoadError(
            f"{model_dir / 'config.json'} says num_attention_heads {heads}, which does not "
            f"divide hidden_size {hidden} into equal heads; the config is damaged or belongs "
            "to another model: save it again with model.save_pretrained(dir)"
        )


def default_cache_dir() -> Path:
    """``$SEMRANK_CACHE/onnx``, else ``$XDG_CACHE_HOME/semrank/onnx`` (``~/.cache`` when
    unset), as the index home follows XDG_DATA_HOME."""
    root = os.environ.get("SEMRANK_CACHE")
    if root:
        return Path(root).expanduser() / "onnx"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (
        (Path(xdg).expanduser() if xdg else _home("SEMRANK_CACHE") / ".cache") / "semrank" / "onnx"
    )


def _home(variable: str) -> Path:
    """The user's home folder, or an error naming ``variable``: with HOME unset and a uid
    that has no passwd entry (``env -i``, a container's arbitrary uid) Path.home() raised a
    RuntimeError (a traceback)."""
    try:
        return user_home()
    except RuntimeError:
        raise BackendUnavailableError(
            f"this process has no home folder (HOME is unset or empty and its user has none): set "
            f"{variable} (or HOME)"
        ) from None


def load_rebuilding_stale_cache(steps: Callable[[list[Path]], T], cache: Path) -> tuple[T, Path]:
    """``steps(made)``, which appends every file it reuses or writes to ``made``, the graph it
    runs from first; when it fails with ``ModelLoadError``, the cached files it used are dropped
    and it runs once more. Returns what it loaded, and that first graph.

    A cached graph that no longer loads (truncated by a crash or a full disk, edited by hand, or
    pruned by another process meanwhile) is rebuilt; one that fails again when freshly built is
    a real error and is raised. The cached files of a load that succeeds are marked used. Checks
    of what the graph is (its inputs and outputs) belong after, on the graph returned: their
    refusals are no cache problem, and rebuilding (an int8 quantization) would not change them.
    """
    discarded: set[Path] = set()
    while True:
        made: list[Path] = []
        try:
            loaded = steps(made)
        except ModelLoadError:
            stale = [p for p in made if p.is_relative_to(cache) and p not in discarded]
            if not stale:
                raise
            for path in stale:
                _discard_cached(path, cache)
                discarded.add(path)
            continue
        for path in made:
            if path.is_relative_to(cache):
                mark_used(path, cache)
        return loaded, made[0]


def _discard_cached(path: Path, cache: Path) -> None:
    if path.parent != cache:  # a folder entry: <key>/model.onnx + .data, <key>.ov-int8/model.xml
        shutil.rmtree(path.parent, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def onnx_model_path(model_dir: Path, head: ExportHead, *, cache_dir: Path | None = None) -> Path:
    """Path of a ready ONNX graph: the directory's own (``graph_file``), or a cached export.

    Small graphs are cached as ``<key>.onnx``; graphs over the 2 GiB protobuf limit as
    ``<key>/model.onnx`` with their weights in ``<key>/model.onnx.data``. The key is the
    folder's and head's digest, then its content's: writing an export prunes the folder's
    earlier ones (``prune_cache``).
    """
    model_dir = Path(model_dir)
    if uses_own_graph(model_dir):
        return graph_file(model_dir)
    cache = cache_dir or default_cache_dir()
    source = _source_key(model_dir, head)
    key = f"{source}-{_cache_key(model_dir, head)}"
    for candidate in (cache / f"{key}.onnx", cache / key / "model.onnx"):
        if candidate.is_file():
            mark_used(candidate, cache)  # before it is loaded: pruning then leaves it alone
            return candidate
    model = export_onnx(model_dir, head)
    try:
        path = _write_atomically(model, cache, key)
    except OSError as exc:
        raise ModelLoadError(
            f"cannot save the ONNX export of {model_dir} in {cache} ({exc.strerror or exc}); "
            "set SEMRANK_CACHE to a folder this user may write with room for it"
        ) from exc
    # The folder's other exports; the one just written counts as in use, so it stays.
    prune_cache(cache, superseded=re.compile(rf"{source}-[0-9a-f]{{32}}(\.onnx)?"))
    return path


def uses_own_graph(model_dir: Path) -> bool:
    """Whether the folder's own graph (``graph_file``) is run: it has no weights, or it was
    made from the weights beside it. ``semrank train --onnx`` records which (``GRAPH_SOURCE``);
    a graph without that record counts as made from them when it is at least as new as every
    weight file. Weights saved later win: the graph beside them is then stale."""
    graph = graph_file(model_dir)
    if not graph.is_file():
        return False
    try:
        weights = weight_files(model_dir)
    except ModelLoadError:
        return True
    # Times alone were wrong for weights copied in with their old times kept (cp -p, rsync
    # -a): the stale graph scored the new model. Files as recorded (size, time) are not read
    # again; others are, as a copy may have kept another file's time.
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        recorded = json.loads((model_dir / GRAPH_SOURCE).read_text("utf-8"))
        if recorded.get("stamps") == _stamps(model_dir):
            return True
        return bool(recorded["weights"] == weights_digest(model_dir))
    return graph.stat().st_mtime >= max(path.stat().st_mtime for path in weights)


# Beside a model.onnx semrank wrote: what it was made from (graph_source).
GRAPH_SOURCE = "model.onnx.source.json"


def graph_source(model_dir: Path) -> dict[str, Any]:
    """What a folder's model.onnx is made from: the digest of its config and weights, and
    their sizes and times (which spare reading them again while they are unchanged)."""
    return {"weights": weights_digest(model_dir), "stamps": _stamps(model_dir)}


def _stamps(model_dir: Path) -> dict[str, list[int]]:
    files = [model_dir / "config.json", *weight_files(model_dir)]
    return {path.name: [path.stat().st_size, path.stat().st_mtime_ns] for path in files}


def weights_digest(model_dir: Path, prefix: bytes = b"") -> str:
    """The digest of ``prefix``, then a folder's config.json and weight files."""
    digest = hashlib.sha256(prefix)
    digest.update((model_dir / "config.json").read_bytes())
    for path in weight_files(model_dir):
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def _source_key(model_dir: Path, head: str) -> str:
    """The folder and head an export is made from, whatever its content: the start of every
    export's name, so a new export finds the ones it replaces."""
    return hashlib.sha256(f"{model_dir.resolve()}\n{head}".encode()).hexdigest()[:16]


def _cache_key(model_dir: Path, head: str) -> str:
    exporter = f"semrank-export:{EXPORTER_VERSION}:{head}\n".encode()
    return weights_digest(model_dir, prefix=exporter)[:32]


def share_like_new_files(path: str | Path) -> None:
    """Give a cache file (or folder and its files) made by mkstemp/mkdtemp, which are private
    (0600/0700), the permissions the umask gives new files: a cache filled by one user (a
    Docker build as root) must stay readable by the user who runs the service."""
    target = Path(path)
    if target.is_dir():
        target.chmod(0o777 & ~_UMASK)
        for child in target.iterdir():
            share_like_new_files(child)
    else:
        target.chmod(0o666 & ~_UMASK)


def _umask() -> int:
    """The process's umask, read once. Linux reports it in /proc; elsewhere it is set to read
    it back, which would race with threads creating files meanwhile (hence once, at import)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()


def _write_atomically(model: onnx.ModelProto, cache: Path, key: str) -> Path:
    """Write under a temporary name, then rename: readers never see a half-written export."""
    cache.mkdir(parents=True, exist_ok=True)
    weight_bytes = sum(len(t.raw_data) for t in model.graph.initializer)
    if weight_bytes > EXTERNAL_DATA_THRESHOLD:
        return _write_external(model, cache, key)
    fd, tmp = tempfile.mkstemp(prefix=key, suffix=".tmp", dir=cache)
    os.close(fd)
    try:
        with removed_if_stopped(tmp):
            onnx.save_model(model, tmp)
            share_like_new_files(tmp)
            target = cache / f"{key}.onnx"
            os.replace(tmp, target)
        return target
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_external(model: onnx.ModelProto, cache: Path, key: str) -> Path:
    """A directory with model.onnx + model.onnx.data, renamed into place as a whole."""
    tmp_dir = Path(tempfile.mkdtemp(prefix=key, suffix=".tmp", dir=cache))
    try:
        with removed_if_stopped(tmp_dir):
            onnx.save_model(
                model,
                str(tmp_dir / "model.onnx"),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location="model.onnx.data",
            )
            share_like_new_files(tmp_dir)
            target = cache / key
            try:
                os.replace(tmp_dir, target)
            except OSError:  # another process finished the same export first
                if not (target / "model.onnx").is_file():
                    raise
        return target / "model.onnx"
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


# Above this many weight bytes the graph is saved with external data (protobuf caps at 2 GiB).
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


# A cache entry not used for this long is removed when another is written.
UNUSED_FOR_S = 30 * 86400
# An entry used this recently may be being loaded by another process: it is never removed.
IN_USE_FOR_S = 3600


def mark_used(path: Path, cache: Path) -> None:
    """Record a use of the cache entry holding ``path`` in its access time (its modification
    time still says when it was written). A cache written by another user may refuse it; its
    entries then age from their last read or write."""
    entry = cache / path.relative_to(cache).parts[0]
    with contextlib.suppress(OSError):
        os.utime(entry, ns=(time.time_ns(), entry.stat().st_mtime_ns))


def prune_cache(cache: Path, *, superseded: re.Pattern[str] | None = None) -> None:
    """Remove entries of ``cache`` whose name ``superseded`` matches in full (earlier exports
    of a model folder just exported again) and entries unused for ``UNUSED_FOR_S`` (models no
    longer run, graphs of older runtimes, temporary files of killed writes).

    Whatever was used or written in the last ``IN_USE_FOR_S`` stays: another process may have
    found it and not yet loaded it, or be renaming it into place. A folder entry is renamed
    away before it is deleted, so no reader finds one half deleted. Errors (a cache shared with
    another user) leave the entry; pruning never fails a load."""
    now = time.time()
    try:
        entries = list(cache.iterdir())
    except OSError:
        return
    for entry in entries:
        with contextlib.suppress(OSError):
            idle = now - _last_used(entry, now)
            replaced = superseded is not None and superseded.fullmatch(entry.name) is not None
            if (
                entry.name.endswith(_DELETING)
                or idle > UNUSED_FOR_S
                or (replaced and idle > IN_USE_FOR_S)
            ):
                _remove_entry(entry)


_DELETING = ".deleting"


def _last_used(entry: Path, now: float) -> float:
    """An entry stamped after ``now`` (written while the clock ran ahead, copied from a machine
    whose clock does) is stamped ``now``: left so, it never aged, and was never removed."""
    info = entry.lstat()
    last = max(info.st_atime, info.st_mtime)
    if last > now:
        os.utime(entry, (now, now), follow_symlinks=False)
        return now
    return last


def _remove_entry(entry: Path) -> None:
    if not entry.is_dir() or entry.is_symlink():
        entry.unlink(missing_ok=True)
        return
    doomed = entry
    if not entry.name.endswith(_DELETING):
        doomed = entry.with_name(f"{entry.name}.{os.getpid()}{_DELETING}")
        entry.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)
