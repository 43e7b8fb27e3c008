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
    # "bundled:<python package>[==<version>]", "package:<folder in semrank/models/bundled>",
    # "hub:<repo id>" or "path:<dir>"
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
    # bf16 measured within issue 7's bounds (0..1 scores within 0.02 of fp32, nDCG@10 within
    # 0.005 on TREC DL 2019): backend "auto" may then run it in bf16 where the CPU has bf16.
    bf16_measured: bool = False


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
    # sentence-transformers' do_lower_case: a bi-encoder's texts are lowercased before its
    # tokenizer reads them (a cased tokenizer trained on lowercased text).
    lowercase: bool = False
    # sentence-transformers' prompts (config_sentence_transformers.json): the text put before
    # a query and before a document, as its encode_query / encode_document do (e5: "query: ").
    query_prompt: str = ""
    document_prompt: str = ""
    num_labels: int = 1
    bf16_measured: bool = False  # from the catalog entry (see ModelSpec)
    # A cross-encoder's logit is read as scale * logit + shift (`semrank train`'s calibration).
    calibration: tuple[float, float] | None = None
