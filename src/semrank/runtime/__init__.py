"""Inference runtime: turns a resolved model into a ``PairScorer`` or an ``Embedder``.

Backends: "onnx" (ONNX Runtime fp32, always installed), "onnx-int8" (dynamic int8),
"openvino" (fp32), "openvino-bf16", "openvino-int8" (static int8, NNCF-calibrated), "torch"
(transformers reference), "torch-fp16" (GPU). ``backend=None`` means "auto": chosen from the
machine's features (see ``_select``; int8 is never chosen), and for a catalog model whose bf16
loss was measured within bounds (``bf16_measured``) "auto" means "fast" (bf16 where the CPU has
it); ``semrank info`` shows the choice.
This is the only package that imports onnxruntime or openvino, and the only one that runs torch
for inference (``semrank.train`` uses torch for the model it trains).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from semrank.errors import (
    BackendUnavailableError,
    InvalidInputError,
    ModelLoadError,
    UnknownBackendError,
)

# ONNX Runtime (1.2x builds) records a device id and a usage event under ~/.cache/Microsoft and
# tries to send them to Microsoft from its threads, unless told not to before it is imported.
# A self-hosted re-ranker sends nothing; a user who wants it sets ORT_DISABLE_TELEMETRY=0. Set
# here, as every import of onnxruntime in semrank is inside this package.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from semrank.runtime import _loaders
from semrank.runtime._scorers import BiEncoderScorer, CrossEncoderScorer, Embedder
from semrank.runtime._select import (
    BackendChoice,
    choose_backend,
    cpu_flags,
    default_threads,
    detect_features,
    refuse_emulated_bf16,
)
from semrank.runtime.base import (
    Activation,
    BatchingConfig,
    PairScorer,
    ScorerKind,
    TextTokenizer,
    apply_activation,
)

if TYPE_CHECKING:
    from semrank.models.spec import ResolvedModel

__all__ = [
    "BACKENDS",
    "Activation",
    "BackendChoice",
    "BatchingConfig",
    "BiEncoderScorer",
    "CrossEncoderScorer",
    "Embedder",
    "PairScorer",
    "ScorerKind",
    "TextTokenizer",
    "apply_activation",
    "detect_features",
    "load_embedder",
    "load_onnxruntime_first",
    "load_scorer",
    "model_backend",
    "require_device",
    "resolve_backend",
]

BACKENDS = ("auto", "fast", *_loaders.CONCRETE_BACKENDS)


def load_onnxruntime_first() -> None:
    """Import ONNX Runtime now, if installed, before a native library that breaks it.

    With usearch 2.26 (its SIMD kernels) loaded first, importing onnxruntime crashes the
    process (SIGSEGV); in the other order both work. Dense search calls this before usearch.
    """
    with contextlib.suppress(ImportError):
        import onnxruntime  # noqa: F401


def _backend(backend: str | None) -> str:
    if backend is not None and not isinstance(backend, str):
        raise UnknownBackendError(
            f"backend must be a name, got {type(backend).__name__} ({backend!r:.60}); choose "
            f"one of: {', '.join(BACKENDS)}"
        )
    if backend is not None and not backend.strip():  # an unset shell variable ("$BACKEND")
        raise UnknownBackendError(
            f"backend {backend!r} is blank; leave it out for 'auto', or choose one of: "
            f"{', '.join(BACKENDS)}"
        )
    chosen = backend or "auto"
    if chosen not in BACKENDS:
        raise UnknownBackendError(
            f"unknown backend {chosen!r}; choose one of: {', '.join(BACKENDS)}"
        )
    return chosen


def _check_device(device: str | None) -> None:
    if device is not None and not device.strip():  # "" ran as the CPU in one place, not another
        raise UnknownBackendError(
            f"device {device!r} is blank; leave it out for the CPU (or a GPU ONNX Runtime has), "
            "or use 'cpu', 'cuda', 'cuda:N' or (torch) 'mps'"
        )
    kind, _, number = (device or "cpu").partition(":")
    if kind not in ("cpu", "cuda", "mps") or (number and not number.isdigit()):
        raise UnknownBackendError(
            f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or (torch) 'mps'"
        )


def _check_pairing(backend: str, device: str | None) -> None:
    """A backend asked for a device it cannot run on: OpenVINO ran such a request on the CPU
    without a word, and torch-fp16 failed at load with a traceback."""
    where = (device or "cpu").partition(":")[0]
    if backend.startswith("openvino") and where != "cpu":
        raise BackendUnavailableError(
            f"backend {backend!r} runs on the CPU only, not on {device!r}; drop the device, or "
            "use backend 'onnx' (with onnxruntime-gpu) or 'torch' for a GPU"
        )
    refuse_emulated_bf16(backend, cpu_flags())
    if backend == "torch-fp16" and where != "cuda" and not (device is None and _torch_has_cuda()):
        raise BackendUnavailableError(
            f"backend 'torch-fp16' needs a CUDA device (device 'cuda'), got {device or 'cpu'!r}; "
            "run it on a machine with a GPU, or use backend 'torch' on the CPU"
        )
    if where == "mps" and not backend.startswith("torch"):
        raise BackendUnavailableError(
            f"device {device!r} (Apple GPU) runs only with backend 'torch', not {backend!r}"
        )


def resolve_backend(backend: str | None = None, device: str | None = None) -> BackendChoice:
    """The concrete backend and device a load with these arguments uses, and why.

    ``None``/"auto": the fastest backend with fp32 results on this machine; "fast": the
    fastest one whose precision loss was measured within bounds (bf16 on capable CPUs).
    """
    chosen = _backend(backend)
    _check_device(device)
    if device is not None and device.partition(":")[0] == "cpu":
        device = "cpu"  # one CPU device: "cpu:0" picked ONNX fp32 over the bf16 of "cpu"
    if chosen not in ("auto", "fast"):
        _check_pairing(chosen, device)
        return BackendChoice(backend=chosen, device=device or "", reason="requested")
    if device is not None and device.startswith("mps"):
        return BackendChoice(backend="torch", device=device, reason="only torch runs on MPS")
    features = dict(detect_features())
    if device is not None and device.startswith("cuda"):
        features["torch_cuda"] = _torch_has_cuda()
    return choose_backend(features, device=device, allow_lossy=chosen == "fast")


def model_backend(model: ResolvedModel, backend: str | None) -> str | None:
    """``backend`` for ``model``: "auto" becomes "fast" where its bf16 loss was measured."""
    if backend in (None, "auto") and model.bf16_measured:
        return "fast"
    return backend


def require_device(choice: BackendChoice) -> None:
    """Fail now, naming what to install, when ``choice`` asks for a GPU this machine's
    libraries cannot reach (a load would fail the same way, but later: a server would have
    started its workers first)."""
    if choice.device.startswith("mps"):
        if not _torch_has_mps():
            raise BackendUnavailableError(
                f"device {choice.device!r}: torch has no MPS device here (Apple silicon with a "
                "torch build for it), or leave --device out to run on the CPU"
            )
        return
    if not choice.device.startswith("cuda"):
        return
    if choice.backend.startswith("torch"):
        available, fix = _torch_has_cuda(), "install a CUDA build of torch"
    else:
        available, fix = bool(detect_features()["onnxruntime_cuda"]), "pip install onnxruntime-gpu"
    if not available:
        raise BackendUnavailableError(
            f"device {choice.device!r} with backend {choice.backend!r}: no CUDA here ({fix}, "
            "or leave --device out to run on the CPU)"
        )


def _torch_has_mps() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.backends.mps.is_available())


def _torch_has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _max_length(model: ResolvedModel) -> int:
    """The model's max_length, clamped to what its position embeddings allow."""
    if model.max_length < 8:
        raise InvalidInputError(f"model {model.name}: max_length {model.max_length} is too small")
    config_path = Path(model.path) / "config.json"
    if not config_path.is_file():
        return model.max_length
    try:
        config = json.loads(config_path.read_text("utf-8"))
        limit = int(config.get("max_position_embeddings", model.max_length))
        if config.get("model_type") in ("roberta", "xlm-roberta"):
            limit -= int(config.get("pad_token_id", 1)) + 1  # positions start after padding_idx
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise ModelLoadError(
            f"cannot read {config_path}: {exc}; it must be the JSON object that "
            "model.save_pretrained(dir) writes"
        ) from exc
    return min(model.max_length, limit)


def load_embedder(
    model: ResolvedModel,
    *,
    backend: str | None = None,
    device: str | None = None,
    batching: BatchingConfig | None = None,
    threads: int | None = None,
    warmup: bool = True,
) -> Embedder:
    """An ``Embedder`` (``embed(texts) -> float32 (n, dim)``) for an encoder model.

    One loaded copy per model and settings in a process while anything holds it: each open
    index loaded its own (115-160 MB each, and a served blend's bi-encoder another), kept for
    the process's life. Embedders are thread-safe, so sharing one changes no result."""
    choice = resolve_backend(model_backend(model, backend), device)
    options = {
        "max_length": _max_length(model),
        "pooling": model.pooling,
        "normalize": model.normalize,
        "batching": batching,
        "device": choice.device or device,
        "threads": threads if threads is not None else default_threads(),
    }
    texts = (model.lowercase, model.query_prompt, model.document_prompt)  # read before the model
    key = (choice.backend, *files_stamp(Path(model.path)), *options.values(), *texts)
    with _SHARED_EMBEDDERS_LOCK:
        embedder = _SHARED_EMBEDDERS.get(key)
        if embedder is None:
            embedder = _loaders.load_embedder(choice.backend, Path(model.path), **options)
            embedder.backend = choice.backend
            # Steps before the tokenizer, the same on every backend: set here, once.
            embedder.lowercase = model.lowercase
            embedder.query_prompt = model.query_prompt
            embedder.document_prompt = model.document_prompt
            _SHARED_EMBEDDERS[key] = embedder
    if warmup:
        embedder.embed(["warm up"])  # first-call allocations and kernel selection, at load
    return embedder


def files_stamp(folder: Path) -> tuple[Any, ...]:
    """The folder and its files' sizes and times: a model retrained in place is another model
    (its index's probe must see the new weights, not a copy loaded before)."""
    folder = folder.resolve()
    try:
        # Sub-folders too (a blend's cross-encoder/, sentence-transformers' modules): a file
        # rewritten inside one leaves the folder's own time as it was.
        files = sorted(
            (str(f.relative_to(folder)), f.stat().st_size, f.stat().st_mtime_ns)
            for f in folder.rglob("*")
        )
    except OSError:
        files = []
    return (str(folder), tuple(files))


_SHARED_EMBEDDERS: weakref.WeakValueDictionary[tuple[Any, ...], Embedder] = (
    weakref.WeakValueDictionary()
)
_SHARED_EMBEDDERS_LOCK = threading.Lock()


def load_scorer(
    model: ResolvedModel,
    *,
    backend: str | None = None,
    device: str | None = None,
    batching: BatchingConfig | None = None,
    threads: int | None = None,
    warmup: bool = True,
) -> PairScorer:
    """A ``PairScorer`` for a cross-encoder or bi-encoder model.

    ``backend``: None/"auto" (fastest fp32 backend here, or "fast" for a ``bf16_measured``
    model), "fast" (may use bf16 where measured within bounds), or one of ``CONCRETE_BACKENDS``;
    ``resolve_backend`` says which and why.
    """
    if model.kind == "bi-encoder":
        embedder = load_embedder(
            model,
            backend=backend,
            device=device,
            batching=batching,
            threads=threads,
            warmup=warmup,
        )
        return BiEncoderScorer(embedder)
    choice = resolve_backend(model_backend(model, backend), device)
    scorer = _loaders.load_cross_encoder(
        choice.backend,
        Path(model.path),
        max_length=_max_length(model),
        batching=batching,
        device=choice.device or device,
        threads=threads if threads is not None else default_threads(),
    )
    scorer.activation = model.activation
    scorer.calibration = model.calibration
    scorer.backend = choice.backend
    if warmup:
        scorer.score_pairs([("warm up", "warm up")])
    return scorer
