"""A learned linear blend of several scorers, itself a ``PairScorer``.

``sigmoid(bias + sum_i weight_i * raw_i)``: every component scores the same pair, so the blend
is as batch-invariant as its parts and its 0..1 scores mean the same across queries. The
weights are fitted on training data (``semrank.train._blend.fit_blend``, which
``benchmarks/build_default_model.py`` runs) and stored next to the
components in ``blend.json``:

    {"format": "semrank-blend/1", "bias": -1.2, "doc_tokens": 128,
     "components": [{"model": "cross-encoder", "weight": 0.8},
                    {"model": "all-minilm-l6-v2", "kind": "bi-encoder", "weight": 6.5}]}

A component's ``model`` is a folder beside blend.json, or any name ``semrank.models.resolve``
knows. ``doc_tokens`` (optional) is the document window the blend reads: a model trained on
128-token pairs reads longer documents best as 128-token chunks, not as one long window.
``feedback`` (optional, ``{"model": <a bi-encoder component>, "top_k": 2, "weight": 4.0,
"min_documents": 10}``) lets each query's best documents pull up their look-alikes
(``semrank.rerank._feedback``); the blend's pair scores themselves stay batch-invariant.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from semrank._checks import is_finite_number
from semrank.errors import InvalidInputError, ModelLoadError, SemrankError
from semrank.models import ResolvedModel, resolve
from semrank.rerank._feedback import Feedback, FeedbackConfig, WindowEmbedder
from semrank.rerank._memo import RecentScores
from semrank.runtime import load_scorer
from semrank.runtime.base import (
    Activation,
    BatchingConfig,
    PairScorer,
    ScorerKind,
    TextTokenizer,
    query_token_limit,
)

BLEND_FILE = "blend.json"
BLEND_FORMAT = "semrank-blend/1"


@dataclass(frozen=True, kw_only=True)
class BlendComponent:
    """One scorer of a blend and the weight of its raw score."""

    scorer: PairScorer
    weight: float
    source: Path | None = None  # the component model's directory, to share it with a pruner
    name: str = ""  # as blend.json names it


class BlendScorer:
    """``PairScorer`` whose raw score is ``bias + sum(weight * component raw score)``."""

    kind: ScorerKind = "cross-encoder"
    activation: Activation = "sigmoid"

    def __init__(
        self,
        components: Sequence[BlendComponent],
        *,
        bias: float,
        doc_tokens: int | None = None,
        feedback: Feedback | None = None,
    ) -> None:
        if not components:
            raise ModelLoadError("a blend needs at least one component")
        self.components = tuple(components)
        self.bias = float(bias)
        self.doc_tokens = doc_tokens
        self.feedback = feedback
        self.max_length = min(c.scorer.max_length for c in self.components)
        # Components share a vocabulary in practice; the first one plans chunks for all.
        self.tokenizer: TextTokenizer = self.components[0].scorer.tokenizer

    @property
    def backend(self) -> str | None:
        """The components' backend, as a served model's startup log names it (a blend, the
        default model included, was logged as backend None). Components load on one backend
        choice, yet `auto` may settle each its own way: every distinct one is named."""
        names = dict.fromkeys(getattr(c.scorer, "backend", None) for c in self.components)
        return ",".join(str(name) for name in names if name is not None) or None

    def doc_token_budget(self, query: str) -> int:
        budget = min(c.scorer.doc_token_budget(query) for c in self.components)
        return budget if self.doc_tokens is None else min(budget, self.doc_tokens)

    def query_token_limit(self, doc_tokens: int | None = None) -> int | None:
        return query_token_limit(*(c.scorer for c in self.components), doc_tokens=doc_tokens)

    def remember_component(self, source: Path) -> RecentScores | None:
        """The component loaded from ``source``, made to remember its latest pairs (or None)."""
        for index, component in enumerate(self.components):
            if component.source != source:
                continue
            shared = component.scorer
            if not isinstance(shared, RecentScores):
                shared = RecentScores(shared)
                components = list(self.components)
                components[index] = dataclasses.replace(component, scorer=shared)
                self.components = tuple(components)
            return shared
        return None

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        total = np.full(len(pairs), self.bias, dtype=np.float32)
        for component in self.components:
            total += np.float32(component.weight) * component.scorer.score_pairs(pairs)
        return total


def is_blend(model: ResolvedModel) -> bool:
    """Whether ``model``'s directory describes a blend."""
    return (Path(model.path) / BLEND_FILE).is_file()


def read_blend(directory: Path) -> dict[str, Any]:
    """The blend description in ``directory``, checked."""
    path = directory / BLEND_FILE
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    if not isinstance(spec, dict) or spec.get("format") != BLEND_FORMAT:
        raise ModelLoadError(f"{path} is not a {BLEND_FORMAT} description")
    components = spec.get("components")
    if not isinstance(components, list) or not components:
        raise ModelLoadError(f"{path} lists no components")
    for entry in components:
        if not isinstance(entry, dict) or "model" not in entry or "weight" not in entry:
            raise ModelLoadError(f"{path}: each component needs 'model' and 'weight': {entry!r}")
        _check_number(path, f"component {entry['model']!r} weight", entry["weight"])
    _check_number(path, "bias", spec.get("bias", 0.0))
    _check_feedback_entry(path, spec.get("feedback"), components)
    doc_tokens = spec.get("doc_tokens")
    if doc_tokens is not None and (type(doc_tokens) is not int or doc_tokens < 1):
        raise ModelLoadError(f"{path}: doc_tokens must be a positive integer, got {doc_tokens!r}")
    return spec


def _check_number(path: Path, what: str, value: object) -> None:
    # A string was a traceback at load; NaN loaded and scored NaN (invalid JSON out).
    if not is_finite_number(value):
        raise ModelLoadError(f"{path}: {what} must be a finite number, got {value!r}")


def _check_feedback_entry(path: Path, entry: object, components: list[Any]) -> None:
    """``feedback`` (optional) names one of the blend's components and valid settings."""
    if entry is None:
        return
    if not isinstance(entry, dict) or "model" not in entry:
        raise ModelLoadError(f"{path}: feedback must be an object naming its 'model': {entry!r}")
    if not any(component["model"] == entry["model"] for component in components):
        raise ModelLoadError(
            f"{path}: feedback model {entry['model']!r} is not one of the blend's components; "
            "name its bi-encoder component (feedback compares documents by their embeddings)"
        )
    _feedback_config(path, entry)


def load_blend_scorer(
    directory: Path,
    *,
    backend: str | None = None,
    device: str | None = None,
    batching: BatchingConfig | None = None,
    threads: int | None = None,
) -> BlendScorer:
    """Load every component of the blend in ``directory`` on the same backend."""
    spec = read_blend(directory)
    components = []
    feedback_entry = spec.get("feedback")
    feedback = None
    for entry in spec["components"]:
        local = directory / str(entry["model"])
        name: str | Path = local if local.is_dir() else str(entry["model"])
        try:
            model = resolve(name, kind=entry.get("kind"))
        except SemrankError as exc:  # named with the file that names the component
            raise type(exc)(
                f"{directory / BLEND_FILE}: component {entry['model']!r}: {exc}",
                client_message=exc.client_message,
            ) from exc
        scorer = load_scorer(
            model, backend=backend, device=device, batching=batching, threads=threads
        )
        components.append(
            BlendComponent(
                scorer=scorer,
                weight=float(entry["weight"]),
                source=model.path,
                name=str(entry["model"]),
            )
        )
        if feedback_entry is not None and feedback_entry["model"] == entry["model"]:
            feedback = _feedback(directory / BLEND_FILE, feedback_entry, scorer)
    return BlendScorer(
        components,
        bias=float(spec.get("bias", 0.0)),
        doc_tokens=spec.get("doc_tokens"),
        feedback=feedback,
    )


def _feedback_config(path: Path, entry: dict[str, Any]) -> FeedbackConfig:
    options = {key: value for key, value in entry.items() if key != "model"}
    try:
        return FeedbackConfig(**options)
    except (TypeError, InvalidInputError) as exc:
        raise ModelLoadError(f"{path}: bad feedback entry {entry!r}: {exc}") from exc


def _feedback(path: Path, entry: dict[str, Any], scorer: PairScorer) -> Feedback:
    """The feedback entry on its loaded component, which must embed texts (a bi-encoder)."""
    if scorer.kind != "bi-encoder" or not hasattr(scorer, "embed_normalized"):
        raise ModelLoadError(
            f"{path}: feedback model {entry['model']!r} is a {scorer.kind}; feedback needs a "
            "bi-encoder component (it compares documents by their embeddings)"
        )
    embedder = cast(WindowEmbedder, scorer)  # checked above: it has embed_normalized
    return Feedback(config=_feedback_config(path, entry), embedder=embedder)


def write_blend(
    directory: Path,
    components: Sequence[tuple[str, str | None, float]],
    *,
    bias: float,
    doc_tokens: int | None = None,
    feedback: tuple[str, FeedbackConfig] | None = None,
) -> Path:
    """Write ``blend.json``: components as (model, kind or None, weight); ``feedback`` as
    (bi-encoder component's model, config)."""
    entries = []
    for model, kind, weight in components:
        entry: dict[str, Any] = {"model": model, "weight": float(weight)}
        if kind is not None:
            entry["kind"] = kind
        entries.append(entry)
    payload: dict[str, Any] = {"format": BLEND_FORMAT, "bias": float(bias)}
    if doc_tokens is not None:
        payload["doc_tokens"] = int(doc_tokens)
    payload["components"] = entries
    if feedback is not None:
        model, config = feedback
        payload["feedback"] = {"model": model, **dataclasses.asdict(config)}
    path = directory / BLEND_FILE
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path
