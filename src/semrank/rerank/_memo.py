"""One scorer shared by a cascade's pruner and a blend's component, scoring each pair once.

With a cascade over a blend that contains the embedding model, the pruner scores every pair with
that model and the blend then scores the kept pairs with it again. Both hold the same
``RecentScores``: the blend's call finds the pruner's scores of the same request and only scores
what it has not seen. A scorer's raw score of a pair does not depend on the other pairs it is
batched with, so a remembered score is exactly what a fresh call would return.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from semrank.runtime.base import (
    Activation,
    PairScorer,
    ScorerKind,
    TextTokenizer,
    query_token_limit,
)

__all__ = ["RecentScores"]


class RecentScores:
    """``PairScorer`` that remembers the pairs of its latest call (one request, bounded)."""

    def __init__(self, inner: PairScorer) -> None:
        self.inner = inner
        self.kind: ScorerKind = inner.kind
        self.activation: Activation = inner.activation
        self.calibration: tuple[float, float] | None = getattr(inner, "calibration", None)
        self.backend: str | None = getattr(inner, "backend", None)  # what a server's log names
        self.max_length: int = inner.max_length
        self.tokenizer: TextTokenizer = inner.tokenizer
        self._latest: dict[tuple[str, str], np.float32] = {}
        self.scored_pairs = 0  # pairs sent to the inner scorer, for tests and benchmarks

    def forget(self) -> None:
        """Drop the latest call's pairs (a benchmark's repeat is then scored again)."""
        self._latest = {}

    def doc_token_budget(self, query: str) -> int:
        return self.inner.doc_token_budget(query)

    def query_token_limit(self, doc_tokens: int | None = None) -> int | None:
        return query_token_limit(self.inner, doc_tokens=doc_tokens)

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        latest = self._latest  # one read: another thread may swap the dict meanwhile
        keys = [(query, document) for query, document in pairs]
        missing = list(dict.fromkeys(key for key in keys if key not in latest))
        fresh = dict(latest) if missing else latest
        if missing:
            scores = np.asarray(self.inner.score_pairs(missing), dtype=np.float32)
            fresh.update(zip(missing, scores, strict=True))
            self.scored_pairs += len(missing)
        out = np.fromiter((fresh[key] for key in keys), dtype=np.float32, count=len(keys))
        # Keep only this call's pairs: the next request brings its own.
        self._latest = {key: fresh[key] for key in keys}
        return out
