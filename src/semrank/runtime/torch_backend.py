"""torch + transformers backend: the reference implementation and the GPU path.

torch is imported lazily inside the loaders, so importing ``semrank.runtime`` never pulls it in.
Tokenization, batching and pooling are the shared ones, so only the forward pass differs from
the ONNX backend.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from semrank.errors import BackendUnavailableError, ModelLoadError, UnsupportedArchitectureError
from semrank.models.loading import custom_code_refusal
from semrank.runtime._batching import BatchArrays
from semrank.runtime._scorers import CrossEncoderScorer, Embedder, Forward
from semrank.runtime._weights import holds_int8, load_weights
from semrank.runtime.base import BatchingConfig
from semrank.runtime.tokenizer import load_tokenizer

__all__ = [
    "load_checkpoint",
    "load_torch_cross_encoder",
    "load_torch_embedder",
    "resolve_torch_device",
]


def _import_torch() -> Any:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise BackendUnavailableError(
            "the torch backend needs torch and transformers; install them with "
            "pip install 'semrank[torch]' (or use backend='onnx')"
        ) from exc
    return torch, transformers


def resolve_torch_device(device: str | None) -> str:
    torch, _ = _import_torch()
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailableError(
            f"device {device!r} requested but torch has no CUDA here; use device='cpu' or "
            "install a CUDA build of torch"
        )
    if device.startswith("mps") and not torch.backends.mps.is_available():
        raise BackendUnavailableError(f"device {device!r} requested but MPS is not available")
    return device


def _torch_forward(model: Any, device: str, output: str) -> Forward:
    torch, _ = _import_torch()
    accepted = _accepted_inputs(model)
    loaded_in = os.getpid()

    def forward(batch: BatchArrays) -> np.ndarray:
        if os.getpid() != loaded_in and device == "cpu":
            _one_thread_after_fork(torch)
        inputs = {k: torch.from_numpy(v).to(device) for k, v in batch.items() if k in accepted}
        with torch.inference_mode():
            result = getattr(model(**inputs), output)
        return np.asarray(result.float().cpu().numpy())

    return forward


def _one_thread_after_fork(torch: Any) -> None:
    """In a process forked from the one that loaded the model: torch's CPU pool (OpenMP) is
    the parent's, whose threads the child lacks, and the child's first model call with more
    than one thread waited for them for good (a ``multiprocessing`` fork pool, gunicorn
    ``--preload``). One thread needs no pool, so the child scores, slower; the warning says
    how to keep every thread."""
    if torch.get_num_threads() == 1:
        return
    torch.set_num_threads(1)
    warnings.warn(
        f"process {os.getpid()} was forked after semrank's torch backend ran in its parent: "
        "torch's CPU threads do not survive a fork, so torch now runs on one thread here. "
        "Load the Reranker in each process after the fork (or use the 'spawn' start method, "
        "or backend='onnx') to use every core",
        RuntimeWarning,
        stacklevel=2,
    )


def _accepted_inputs(model: Any) -> set[str]:
    """The tokenizer outputs ``model`` reads: segment ids wherever its forward takes them and it
    has more than one segment type (BERT, ELECTRA, ALBERT: ELECTRA scored 0.4 off without
    them); RoBERTa-style models have one type, ModernBERT none."""
    import inspect

    names = {"input_ids", "attention_mask"}
    segments = inspect.signature(model.forward).parameters.get("token_type_ids")
    required = segments is not None and segments.default is inspect.Parameter.empty
    if required or (segments and getattr(model.config, "type_vocab_size", 0) > 1):
        names.add("token_type_ids")  # the gated model always reads them: query vs passage
    return names


def _load(
    auto_class: str, model_dir: Path, device: str, fp16: bool = False, threads: int | None = None
) -> Any:
    torch, _ = _import_torch()
    if threads is not None:
        # torch has one intra-op pool per process: the cap applies to every torch model in it.
        torch.set_num_threads(threads)
    model = load_checkpoint(auto_class, model_dir).to(device).eval()
    if fp16:
        if not device.startswith("cuda"):
            raise BackendUnavailableError(
                f"backend 'torch-fp16' needs a CUDA device, got {device!r}; use backend='torch'"
            )
        # fp16 halves memory traffic and runs on the tensor cores; outputs are cast back to
        # float32 in the forward.
        model = model.half()
    return model


def load_checkpoint(auto_class: str, model_dir: Path) -> Any:
    """The transformers model (``auto_class``, e.g. "AutoModelForSequenceClassification") of
    ``model_dir`` on the CPU, semrank's int8 weights widened; a checkpoint that would leave a
    weight at its random start is refused."""
    torch, transformers = _import_torch()
    from semrank.runtime import torch_gated  # noqa: F401  (registers semrank's gated model)

    auto = getattr(transformers, auto_class)
    try:
        with _no_loading_bar(transformers):
            if holds_int8(model_dir):
                # transformers reads W.int8 / W.int8_scale as unknown tensors and leaves W
                # random: semrank's own model scored at random here (and trained from random).
                model, info = _from_int8(auto, transformers.AutoConfig, model_dir, torch)
            else:
                # False, not unset: unset, transformers asked on stdin whether to run the
                # folder's code (a prompt in a CLI run, a hang or an error in a server thread).
                model, info = auto.from_pretrained(
                    str(model_dir), output_loading_info=True, trust_remote_code=False
                )
    except Exception as exc:  # OSError, SafetensorError, RuntimeError on mismatched shapes...
        refusal = custom_code_refusal(model_dir)
        if refusal is not None:
            raise UnsupportedArchitectureError(refusal) from exc
        raise ModelLoadError(f"transformers cannot load {model_dir}: {exc}") from exc
    _require_every_weight(model_dir, info, pooler_used=auto_class != "AutoModel")
    # transformers 5 keeps a checkpoint's stored dtype: bf16 / fp16 hub checkpoints ran in 16
    # bits on the CPU (scores 0.008 off fp32). The reference backend computes in fp32; 16 bits
    # are torch-fp16's, on CUDA.
    return model.float()


class _HiddenBar:
    """transformers' progress-bar setting is process-wide: loads in several threads at once
    hide it once, and the first load's view of it is put back when the last one ends."""

    lock = threading.Lock()
    loads = 0
    shown_before = False
    hub_hidden_before = False  # transformers' switch turns huggingface_hub's on too


@contextlib.contextmanager
def _no_loading_bar(transformers: Any) -> Iterator[None]:
    """transformers 5 draws a "Loading weights" bar on stderr at every load of a folder: each
    Reranker on this backend printed it (into ``semrank serve``'s JSON log lines, a notebook's
    cell, a CLI's output). Hidden during semrank's loads only."""
    from huggingface_hub import utils as hub

    hf_logging = transformers.utils.logging
    with _HiddenBar.lock:
        if _HiddenBar.loads == 0:
            _HiddenBar.shown_before = hf_logging.is_progress_bar_enabled()
            _HiddenBar.hub_hidden_before = hub.are_progress_bars_disabled()
            hf_logging.disable_progress_bar()
        _HiddenBar.loads += 1
    try:
        yield
    finally:
        with _HiddenBar.lock:
            _HiddenBar.loads -= 1
            if _HiddenBar.loads == 0 and _HiddenBar.shown_before:
                hf_logging.enable_progress_bar()
            if _HiddenBar.loads == 0 and not _HiddenBar.hub_hidden_before:
                hub.enable_progress_bars()
            elif _HiddenBar.loads == 0:
                hub.disable_progress_bars()


def _from_int8(auto: Any, auto_config: Any, model_dir: Path, torch: Any) -> tuple[Any, Any]:
    """The network built from its config with the checkpoint's weights, int8 ones widened,
    named as the network names them (with or without its base-model prefix, ``bert.``)."""
    model = auto.from_config(auto_config.from_pretrained(str(model_dir)))
    state = {name: torch.from_numpy(np.array(a)) for name, a in load_weights(model_dir).items()}
    own, prefix = set(model.state_dict()), f"{model.base_model_prefix}."
    candidates = [
        state,
        {name.removeprefix(prefix): value for name, value in state.items()},
        {prefix + name: value for name, value in state.items()},
    ]
    best = max(candidates, key=lambda named: len(own & set(named)))
    result = model.load_state_dict(best, strict=False)
    return model, {"missing_keys": list(result.missing_keys)}


def _require_every_weight(model_dir: Path, info: dict[str, Any], *, pooler_used: bool) -> None:
    """A weight the checkpoint lacks is left at its random start by transformers (with a log
    line): refused, except an embedder's pooler, which no semrank output reads (a BERT
    classifier's head reads it)."""
    missing = [
        name
        for name in info.get("missing_keys", [])
        if not name.endswith("position_ids") and (pooler_used or ".pooler." not in f".{name}")
    ]
    if missing:
        raise ModelLoadError(
            f"{model_dir} lacks weights the network needs ({', '.join(sorted(missing)[:4])}"
            f"{', ...' if len(missing) > 4 else ''}): transformers would leave them random; "
            "check that the folder holds the whole checkpoint"
        )


def load_torch_cross_encoder(
    model_dir: Path,
    *,
    max_length: int,
    batching: BatchingConfig | None = None,
    device: str | None = None,
    fp16: bool = False,
    threads: int | None = None,
) -> CrossEncoderScorer:
    resolved = resolve_torch_device(device)
    model = _load("AutoModelForSequenceClassification", model_dir, resolved, fp16, threads)
    tokenizer = load_tokenizer(model_dir, max_length)
    return CrossEncoderScorer(
        tokenizer, _torch_forward(model, resolved, "logits"), batching=batching
    )


def load_torch_embedder(
    model_dir: Path,
    *,
    max_length: int,
    pooling: str = "mean",
    normalize: bool = True,
    batching: BatchingConfig | None = None,
    device: str | None = None,
    fp16: bool = False,
    threads: int | None = None,
) -> Embedder:
    resolved = resolve_torch_device(device)
    model = _load("AutoModel", model_dir, resolved, fp16, threads)
    tokenizer = load_tokenizer(model_dir, max_length)
    forward = _torch_forward(model, resolved, "last_hidden_state")
    return Embedder(tokenizer, forward, pooling=pooling, normalize=normalize, batching=batching)
