"""The contract between the scoring logic (``semrank.rerank``) and inference backends.

A backend turns (query, document) pairs into one raw float32 score per pair, in input order.
Everything else - ids, ranking, thresholds, chunking, results - lives in ``semrank.rerank``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from semrank._checks import is_int
from semrank.errors import InvalidInputError

ScorerKind = Literal["cross-encoder", "bi-encoder"]
# How a raw score becomes a 0..1 relevance score.
#   sigmoid: one logit (two-label models return logit[1] - logit[0], so sigmoid == softmax[1])
#   cosine:  a cosine similarity in -1..1, mapped linearly to 0..1
Activation = Literal["sigmoid", "cosine"]


@runtime_checkable
class TextTokenizer(Protocol):
    """What the scoring logic needs to know about tokenization to plan chunks and truncation."""

    def count_tokens(self, text: str) -> int:
        """Number of tokens of ``text`` without special tokens."""
        ...

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of each token of ``text`` (no special tokens)."""
        ...


@runtime_checkable
class PairScorer(Protocol):
    """One small protocol every backend implements."""

    kind: ScorerKind
    activation: Activation
    max_length: int
    tokenizer: TextTokenizer

    def doc_token_budget(self, query: str) -> int:
        """How many document tokens fit in one model input next to ``query``."""
        ...

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Raw scores (float32, shape ``(len(pairs),)``) in input order."""
        ...


@dataclass(frozen=True, kw_only=True)
class BatchingConfig:
    """How pairs are grouped into model calls.

    Pairs are sorted by length so each batch pads little; a batch holds at most
    ``max_batch_size`` pairs and at most ``token_budget`` padded tokens. ``length_multiple``
    rounds each batch's padded length up (never past the model's max_length), so a backend
    that compiles per input shape (OpenVINO) sees few distinct shapes.

    Small length-sorted batches are fastest on CPU (little padding, cache-resident
    activations); ``load_scorer`` picks per-backend defaults when ``batching`` is None.
    """

    max_batch_size: int = 32
    token_budget: int = 8192
    length_multiple: int = 1

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "token_budget", "length_multiple"):
            value = getattr(self, name)
            if not is_int(value, at_least=1):
                raise InvalidInputError(
                    f"BatchingConfig {name} must be an integer >= 1, got {value!r}"
                )


def query_token_limit(*scorers: object, doc_tokens: int | None = None) -> int | None:
    """The most query tokens the model inputs of these scorers keep next to a document piece of
    ``doc_tokens`` (None: every input, whatever its piece), or None where a scorer does not
    say: ``query_token_limit()`` is optional in ``PairScorer``, which scorers written before it
    (or by users) do not have."""
    limits = []
    for scorer in scorers:
        method = getattr(scorer, "query_token_limit", None)
        limit = method(doc_tokens) if callable(method) else None
        if limit is None:
            return None
        limits.append(int(limit))
    return min(limits) if limits else None


def apply_activation(
    raw: np.ndarray, activation: Activation, calibration: tuple[float, float] | None = None
) -> np.ndarray:
    """Map raw scores to 0..1, float32 (``calibration``: ``(scale, shift)`` applied first)."""
    raw = np.asarray(raw, dtype=np.float32)
    if calibration is not None:
        raw = (raw * np.float32(calibration[0]) + np.float32(calibration[1])).astype(np.float32)
    if activation == "sigmoid":
        # Stable sigmoid: no overflow warnings for large negative logits.
        out = np.empty_like(raw)
        pos = raw >= 0
        out[pos] = 1.0 / (1.0 + np.exp(-raw[pos]))
        exp_neg = np.exp(raw[~pos])
        out[~pos] = exp_neg / (1.0 + exp_neg)
        return out
    if activation == "cosine":
        return np.clip((raw + 1.0) / 2.0, 0.0, 1.0).astype(np.float32)
    raise ValueError(f"unknown activation {activation!r}")
