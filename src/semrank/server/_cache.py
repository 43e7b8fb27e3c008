"""A bounded LRU cache of raw pair scores, keyed by (scorer, query hash, document hash).

Repeated queries over the same candidates (pagination, retries, several users asking the same
thing) then skip the model. Scores are cached per scored pair, so chunks cache too.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence

# The scorer's scope: the served model's name and its role ("model", or a cascade's "pruner"),
# kept apart (a model served as "m:pruner" shared keys with m's pruner, named so in metrics).
CacheKey = tuple[Hashable, bytes, bytes]


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def pair_keys(model: Hashable, pairs: Sequence[tuple[str, str]]) -> list[CacheKey]:
    """Keys of ``pairs`` scored by ``model`` (its scope in the cache). Texts are hashed, so
    the cache holds no query or document text and its memory is bounded by its entry count (a
    query may be megabytes); each distinct query is hashed once, not once per document."""
    queries = {query: _digest(query) for query in {query for query, _ in pairs}}
    return [(model, queries[query], _digest(document)) for query, document in pairs]


def pair_key(model: Hashable, query: str, document: str) -> CacheKey:
    """The key of one pair (``pair_keys`` of a list of one)."""
    return pair_keys(model, [(query, document)])[0]


class ScoreCache:
    """Thread-safe LRU map from ``pair_key`` to a raw float score."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[CacheKey, float] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get_many(self, keys: Sequence[CacheKey]) -> list[float | None]:
        """Scores for ``keys`` (None where missing); hits become most recently used."""
        if not self.enabled:
            return [None] * len(keys)
        found: list[float | None] = []
        with self._lock:
            for key in keys:
                value = self._entries.get(key)
                if value is not None:
                    self._entries.move_to_end(key)
                found.append(value)
        return found

    def put_many(self, keys: Sequence[CacheKey], scores: Sequence[float]) -> None:
        if not self.enabled:
            return
        with self._lock:
            for key, score in zip(keys, scores, strict=True):
                self._entries[key] = float(score)
                self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
