"""Model descriptions: the catalog entries and what loading resolves a model to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from semrank.runtime.base import Activation, ScorerKind

Pooling = Literal["mean", "cls"]


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A known model in the catalog."""

    name: str
    # "bundled:<python package>", "package:<folder in semrank/models/bundled>", "hub:<repo id>"
    # or "path:<dir>"
    source: str
    kind: ScorerKind
    architecture: str  # e.g. "BertForSequenceClassification", "BertModel"
    max_length: int
    license: str
    activation: Activation
    description: str = ""
    pooling: Pooling = "mean"
    normalize: bool = True
    default: bool = False


@dataclass(frozen=True, kw_only=True)
class ResolvedModel:
    """A model whose files are on local disk, ready for a runtime to load.

    ``path`` is a directory in Hugging Face layout: config.json, model.safetensors (or
    pytorch_model.bin, or model.onnx for pre-exported models) and tokenizer.json.
    """

    name: str
    path: Path
    kind: ScorerKind
    architecture: str
    max_length: int
    activation: Activation
    pooling: Pooling = "mean"
    normalize: bool = True
    num_labels: int = 1
