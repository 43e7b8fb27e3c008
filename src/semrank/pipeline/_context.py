"""Per-search state: the index, the query, and process-wide caches of loaded models."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from semrank._checks import is_blank, require_unicode
from semrank._locks import KeyedLocks
from semrank.errors import InvalidInputError
from semrank.pipeline._ranking import Ranking
from semrank.retrieve import Filter, Hits, all_of
from semrank.store import Store
from semrank.store._targets import hit_key, split_key

PLACEHOLDER = "{{query}}"
# Elasticsearch's preconfigured re-rank endpoints mean "the default model" here.
_ES_DEFAULT_RERANKERS = {".rerank-v1-elasticsearch", ".rerank-v1"}


@runtime_checkable
class ScoresDocuments(Protocol):
    """What a re-ranking node needs: ``semrank.Reranker`` or anything with the same ``score``."""

    def score(self, query: str, documents: Sequence[Any]) -> np.ndarray: ...


# The models trees name, loaded once and kept for the next search; a few at most (a notebook
# comparing checkpoints held every one, 150 MB each).
_RERANKERS: OrderedDict[Any, ScoresDocuments] = OrderedDict()
_RERANKERS_KEPT = 4
_RERANKERS_LOCK = threading.Lock()
_LOADING = KeyedLocks()  # one load per model at a time
if hasattr(os, "register_at_fork"):  # a load a parent's thread ran would hold a child's
    os.register_at_fork(after_in_child=_LOADING.forget_after_fork)


def default_model_name(model: str | None) -> str | None:
    """The model a re-ranking node names: None (the default) for Elasticsearch's default ids."""
    return None if model in _ES_DEFAULT_RERANKERS else model


def model_ref(
    model: str | os.PathLike[str] | ScoresDocuments | None,
) -> str | ScoresDocuments | None:
    """A model folder given as a ``pathlib.Path`` (as ``Reranker()`` takes it) as the path
    string model names are; anything else as it is."""
    return os.fspath(model) if isinstance(model, os.PathLike) else model


def load_reranker(model: str | os.PathLike[str] | ScoresDocuments | None) -> ScoresDocuments:
    """A ``semrank.Reranker`` for ``model`` (a name, path or None = default), cached per process."""
    model = model_ref(model)
    if model is not None and not isinstance(model, str):
        return model
    name = default_model_name(model)
    key = _model_key(name)
    with _RERANKERS_LOCK:
        if key in _RERANKERS:
            _RERANKERS.move_to_end(key)
            return _RERANKERS[key]
    # One load per model at a time, without holding up searches with models already loaded.
    with _LOADING.turn(key) as loading, loading:
        return _load_once(name, key)


def _load_once(name: str | None, key: Any) -> ScoresDocuments:
    """The re-ranker of ``key``: loaded by a search before this one, or loaded now."""
    with _RERANKERS_LOCK:
        if key in _RERANKERS:
            return _RERANKERS[key]
    from semrank.rerank import Reranker

    reranker = Reranker(name)
    with _RERANKERS_LOCK:
        _RERANKERS[key] = reranker
        while len(_RERANKERS) > _RERANKERS_KEPT:
            _RERANKERS.popitem(last=False)
    return reranker


def _model_key(name: str | None) -> Any:
    """A model folder by where it is and what its files are now: by the name as typed, a
    relative path read another folder's model after a chdir, and a model retrained in place
    (best/ replaced whole) kept scoring with the old weights."""
    folder = None if name is None else Path(name).expanduser()
    if folder is None or not folder.is_dir():
        return name
    from semrank.runtime import files_stamp

    return files_stamp(folder)


@dataclass(frozen=True)
class ReadWindows:
    """What a re-ranker read of one hit: the ``field`` it re-ranked on (``*``: the text fields
    joined), that ``text``, and its windows as (start, end, score), offsets into ``text``."""

    field: str
    text: str
    spans: tuple[tuple[int, int, float], ...]


@dataclass
class SearchContext:
    """One search over ``store`` for ``query`` (None: the tree's own texts).

    How a node's text meets the query: a text left out, or ``{{query}}``, is the query (and
    ``"... {{query}} ..."`` has it filled in). A literal text is read as written when the tree has
    a placeholder anywhere (``keep_literals``, set by ``search``): such a tree says where the
    query goes, so ``match: {title: "Rome"}`` beside it is a fixed clause, as in Elasticsearch.
    A tree without any placeholder (an Elasticsearch example as published) has the query replace
    its literals when one is given, and reads them as written when none is.
    """

    store: Store
    query: str | None = None
    keep_literals: bool = False
    # What the search should tell its caller (a query cut to fit a re-ranking model).
    warnings: list[str] = field(default_factory=list)
    # The filters of the nodes above the one running, all of which its hits must pass.
    filter: Filter | None = None
    # The time date math in filters (now-30d/d) is resolved at: one for the whole search.
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    # Set where the search highlights semantically: each re-ranked hit's windows, by id (the
    # outermost re-ranker's, which runs last), shared by every node as warnings are.
    windows: dict[str, ReadWindows] | None = None
    # A search of several indexes: their stores, by name (``store`` is the first). Its leaf
    # retrievers run on each (``each_index``), and the ids of what they return are hit keys
    # ``index:id`` (``semrank.store._targets.hit_key``): one id in two indexes is two hits.
    several: dict[str, Store] | None = None
    # Set on the context of one index of several (``on``): a field that index lacks reads
    # empty there (``holds``), as Elasticsearch reads an unmapped field, where others hold it.
    one_of_several: bool = False
    _vectors: dict[str, np.ndarray] = field(default_factory=dict)
    _documents: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    # Each index's query vectors, where the search reads several (their models may differ).
    _index_vectors: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def text(self, literal: str | None, *, where: str = "the retriever") -> str:
        """The query text a node reads for its ``literal`` (None: left out), by the rule in the
        class docstring (``where``: the retriever key that holds it, for the error when there is
        no text at all)."""
        if literal is not None and not isinstance(literal, str):
            raise InvalidInputError(
                f"a retriever's query text must be a string, got {type(literal).__name__} "
                f"({literal!r:.60}); leave it out to use the query given at search time"
            )
        require_unicode(literal, "a retriever's query text")
        if literal is not None and PLACEHOLDER not in literal:
            text = self.query if self.query is not None and not self.keep_literals else literal
        elif self.query is None:
            raise InvalidInputError(
                "no query text: give the search a query (the QUERY argument of `semrank "
                "search`, `query` in an HTTP search body, search(..., query=) in Python) or put "
                f"the text into {where}"
            )
        else:
            text = self.query if literal is None else literal.replace(PLACEHOLDER, self.query)
        if is_blank(text):  # embedded, blank text is close to every document: arbitrary hits
            raise InvalidInputError(
                f"the query text of {where} is blank ({text!r:.40}); give words to search for"
            )
        return text

    def within(self, own: Filter | None) -> SearchContext:
        """This search as the children of a node with filter ``own`` run it: their hits must
        pass it too (warnings and cached vectors and documents stay shared)."""
        if own is None:
            return self
        return dataclasses.replace(self, filter=all_of(self.filter, own))

    @property
    def stores(self) -> list[Store]:
        """The indexes the search reads: one, or those of a search of several."""
        return [self.store] if self.several is None else list(self.several.values())

    def store_of(self, hit_id: str) -> Store:
        """The index holding hit ``hit_id`` (a hit key where the search reads several)."""
        return self.store if self.several is None else self.several[split_key(hit_id)[0]]

    def on(self, store: Store) -> SearchContext:
        """This search on ``store`` alone (one of several), sharing its warnings and windows."""
        vectors = self._index_vectors.setdefault(store.name, {})
        return dataclasses.replace(
            self, store=store, several=None, one_of_several=True, _vectors=vectors, _documents={}
        )

    def each_index(self, run: Callable[[SearchContext], Ranking], limit: int) -> Ranking:
        """A leaf retriever's ``run``: on the index, or on each of several, their hits merged
        best score first into one ranking of hit keys, cut to ``limit`` (ties: the index named
        first). Each index scores its own hits (BM25 by its own statistics), as Elasticsearch
        scores each shard's."""
        if self.several is None:
            return run(self)
        keys: list[str] = []
        scores: list[np.ndarray] = []
        for name, store in self.several.items():
            part = run(self.on(store))
            keys.extend(hit_key(name, str(i)) for i in part.ids.tolist())
            scores.append(part.scores)
        merged = np.concatenate(scores) if scores else np.empty(0, dtype=np.float32)
        order = np.argsort(-merged, kind="stable")[: max(limit, 0)]
        ids = np.empty(len(keys), dtype=object)
        ids[:] = keys
        return Ranking.from_hits(Hits(ids[order], merged[order]))

    def check_field(self, field: str, *, purpose: str = "") -> None:
        """``Store.check_field`` of the index, or of any of several (a field only some of them
        hold reads empty in the others, as Elasticsearch reads a missing field)."""
        first_error: InvalidInputError | None = None
        for store in self.stores:
            try:
                store.check_field(field, purpose=purpose)
                return
            except InvalidInputError as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error

    def holds(self, field: str) -> bool:
        """Whether a search of ``field`` reads the index: always where the search reads it
        alone (its store refuses a field it lacks, naming it); where it is one of several,
        whether it has the field (a search of those that lack it finds nothing there, as
        Elasticsearch searches an unmapped field; ``check_field`` refuses one none has)."""
        if not self.one_of_several:
            return True
        try:
            self.store.check_field(field)
        except InvalidInputError:
            return False
        return True

    def query_vector(self, text: str) -> np.ndarray:
        if text not in self._vectors:
            self._vectors[text] = self.store.embed_queries([text])[0]
            self._warn_if_unknown(text)
        return self._vectors[text]

    def _warn_if_unknown(self, text: str) -> None:
        """Said as the re-ranker says it: a query in a script the embedding model never saw
        is mostly unknown tokens, and its nearest documents are near by chance."""
        tokenizer = getattr(self.store.embedder, "tokenizer", None)
        counter = getattr(tokenizer, "unknown_tokens", None)
        if counter is None:  # a user's TextEmbedder: no vocabulary to ask
            return
        unknown, count = counter(text)
        # A model folder by its name: an HTTP client is not told the server's folders.
        model = Path(str(self.store.settings.embedding_model)).name
        said = (
            f"embedding model {model!r} reads {unknown} of the "
            f"query's {count} tokens as unknown: it does not know this language or script, so "
            "the dense (knn) hits say little; index with a multilingual embedding model"
        )
        if unknown and 2 * unknown >= count and said not in self.warnings:
            self.warnings.append(said)

    def stored_hits(self, ranking: Ranking) -> tuple[Ranking, list[dict[str, Any]]]:
        """``ranking`` without hits whose document was deleted after the retrievers read the
        index (a concurrent delete), and the documents of the rest."""
        documents = self.documents(ranking.ids.tolist())
        kept = [i for i, document in enumerate(documents) if document is not None]
        if len(kept) < len(documents):
            ranking = ranking.take(np.array(kept, dtype=np.int64))
        return ranking, [document for document in documents if document is not None]

    def documents(self, ids: Sequence[str]) -> list[dict[str, Any] | None]:
        missing = [i for i in ids if i not in self._documents]
        by_index: dict[str, list[str]] = {}
        for key in missing:  # a search of several reads each index's hits from that index
            by_index.setdefault(self.store_of(key).name, []).append(key)
        for name, keys in by_index.items():
            store = self.store if self.several is None else self.several[name]
            own = keys if self.several is None else [split_key(key)[1] for key in keys]
            self._documents.update(zip(keys, store.get(own), strict=True))
        return [self._documents[i] for i in ids]
