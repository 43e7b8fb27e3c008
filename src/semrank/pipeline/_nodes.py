"""The retriever tree: Elasticsearch's retrievers as Python objects, composable PyTerrier style.

``bm25 >> rerank % 10`` reads "BM25, then re-rank, then keep 10": ``>>`` feeds a retriever's
results to a re-ranking stage, ``%`` cuts a ranking at k, ``|`` fuses by RRF and ``+`` by a
linear combination of min-max normalised scores (``0.3 * bm25 + 0.7 * dense`` sets weights).
Each node runs as ``run(ctx, size) -> Ranking``; ``to_dict()`` gives the Elasticsearch JSON.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import functools
import inspect
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semrank._checks import MAX_COUNT, MAX_WEIGHT, is_finite_number, is_int, require_collection
from semrank._request import check_request_wanted
from semrank._tracing import set_attributes, span
from semrank.errors import InvalidInputError, ModelNotFoundError
from semrank.pipeline._context import (
    PLACEHOLDER,
    ReadWindows,
    ScoresDocuments,
    SearchContext,
    load_reranker,
    model_ref,
)
from semrank.pipeline._prepare import use_prepared
from semrank.pipeline._ranking import Ranking
from semrank.retrieve import (
    NORMALIZERS,
    Filter,
    FilterSpec,
    Hits,
    all_of,
    linear_combination,
    optional_filter,
    resolved,
    rrf,
    unit_query_vector,
)
from semrank.retrieve._filter import Bool
from semrank.store import ALL_TEXT_FIELDS, VECTOR_FIELD, Store

DEFAULT_RERANK_WINDOW = 100


def _positive(name: str, value: int | None) -> int | None:
    """``value`` as a plain int (numpy integers count), or an error naming ``name``."""
    if value is None:
        return None
    if not is_int(value, at_least=1) or int(value) > MAX_COUNT:
        raise InvalidInputError(
            f"{name} must be a positive integer of at most {MAX_COUNT:,}, got {value!r:.40}"
        )
    return int(value)


def _set_positive(node: object, attribute: str, name: str) -> None:
    """Check a frozen node's count and store it as a plain int (so ``to_dict`` is JSON)."""
    object.__setattr__(node, attribute, _positive(name, getattr(node, attribute)))


def _finite(name: str, value: float | None) -> float | None:
    """A threshold: None or a finite number (NaN would silently drop every hit)."""
    if value is not None and not is_finite_number(value):
        raise InvalidInputError(f"{name} must be a finite number, got {value!r}")
    return None if value is None else float(value)


def _refuse_weighted_child(node: str, child: object) -> None:
    """A weight inside a re-ranker or cut-off would be lost (it weighs a fusion, and the
    node's own ranking replaces it): ``>>`` and ``%`` lift it to the branch; built by hand, it
    is refused."""
    if isinstance(child, Weighted):
        raise InvalidInputError(
            f"a weight ({child.weight:g}) on the retriever a {node} reads would be lost; weigh "
            f"the whole branch instead, e.g. {child.weight:g} * (retriever >> Rerank())"
        )


def _set_filter(node: object, name: str) -> None:
    """Parse a frozen node's ``filter`` where given as JSON."""
    flt = optional_filter(getattr(node, "filter", None), f"{name} filter")
    object.__setattr__(node, "filter", flt)


def own_filter(node: Retriever) -> Filter | None:
    """The filter a node carries itself (not its parents'), parsed."""
    flt = getattr(node, "filter", None)
    return flt if isinstance(flt, Filter) else None


def _with_filter(body: dict[str, Any], node: Retriever) -> dict[str, Any]:
    """A node's JSON body with its filter, where it has one."""
    flt = own_filter(node)
    if flt is not None:
        body["filter"] = flt.to_dict()
    return body


@functools.lru_cache(maxsize=64)
def _takes_filter(store_type: type, method: str) -> bool:
    return "filter" in inspect.signature(getattr(store_type, method)).parameters


def _filter_argument(ctx: SearchContext, node: Retriever, method: str) -> dict[str, Any]:
    """``{"filter": ...}`` for the store's search: the node's own filter and its parents'
    (nothing where none is set, so stores that take no filters search unfiltered trees)."""
    flt = all_of(ctx.filter, own_filter(node))
    if flt is None:
        return {}
    flt = resolved(flt, ctx.now)  # the store compares plain bounds, every node at one time
    store: Store = ctx.store
    if not _takes_filter(type(store), method):
        raise InvalidInputError(
            f"index {store.name!r} ({store.backend} store) cannot filter its searches: its "
            f"{method} takes no filter; leave the retriever tree's filters out"
        )
    return {"filter": flt}


def _retriever(name: str, value: object) -> Retriever:
    if not isinstance(value, Retriever):
        hint = (
            "bind a stage to a retriever first, e.g. BM25() >> Rerank(...)"
            if isinstance(value, Stage)
            else "give a retriever such as BM25(), Knn() or a tree of them"
        )
        raise InvalidInputError(f"{name} must be a retriever, got {type(value).__name__}; {hint}")
    return value


def _retrievers(value: object, name: str) -> tuple[Retriever, ...]:
    """A fusion node's children: a non-empty list of retrievers, as a tuple."""
    require_collection(
        value,
        expected=f"{name} retrievers must be a list of retrievers",
        hint="e.g. RRF((BM25(), Knn())) or BM25() | Knn()",
    )
    items = list(value)  # type: ignore[call-overload]
    if not items:
        raise InvalidInputError(f"{name} needs at least one retriever")
    return tuple(_retriever(f"{name} retrievers[{i}]", r) for i, r in enumerate(items))


class Retriever(abc.ABC):
    """A node that produces a ranking for a query."""

    @abc.abstractmethod
    def run(self, ctx: SearchContext, size: int) -> Ranking:
        """The best ``size`` hits (fewer when the node's own window is smaller)."""

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The Elasticsearch retriever JSON of this node."""

    def query_texts(self) -> tuple[str | None, ...]:
        """The query texts this node and its children read (None: left out, which means the
        search's query). A node of your own that reads none can keep this default."""
        return ()

    def __rshift__(self, stage: Stage) -> Retriever:
        if not isinstance(stage, Stage):
            raise TypeError(
                f"the right side of >> must be a re-ranking stage such as Rerank(...) or Cut(k), "
                f"got {type(stage).__name__}; fuse retrievers with | (RRF) or + (linear)"
            )
        if isinstance(self, Weighted):  # 0.3 * BM25() >> Rerank(): the re-ranked branch's weight
            return Weighted(stage.bind(self.retriever), self.weight)
        return stage.bind(self)

    def __mod__(self, k: int) -> Retriever:
        if isinstance(self, Weighted):  # 0.3 * BM25() % 50: Python applies * first
            return Weighted(Cutoff(self.retriever, k), self.weight)
        return Cutoff(self, k)

    def __or__(self, other: Retriever) -> RRF:
        _fusion_operand("|", other)
        return RRF.compose(self, other)

    def __add__(self, other: Retriever) -> Linear:
        _fusion_operand("+", other)
        return Linear.compose(self, other)

    def __rmul__(self, weight: float) -> Weighted:
        if not is_finite_number(weight, at_least=0, at_most=MAX_WEIGHT):
            raise InvalidInputError(
                f"a fusion weight must be a finite number from 0 to {MAX_WEIGHT:g}, got "
                f"{weight!r} (e.g. 0.3 * BM25())"
            )
        return Weighted(self, float(weight))

    __mul__ = __rmul__

    def search(
        self,
        index: Any,
        query: str | None = None,
        *,
        k: int = 10,
        home: Any = None,
        with_documents: bool = True,
        store: str | None = None,
        offset: int = 0,
    ) -> Any:
        """Run this tree on ``index`` (a name or a Store); see ``semrank.pipeline.search``."""
        from semrank.pipeline._search import search

        return search(
            index,
            query,
            retriever=self,
            k=k,
            home=home,
            with_documents=with_documents,
            store=store,
            offset=offset,
        )


def has_placeholder(tree: Retriever) -> bool:
    """Whether ``tree`` says where the search's query goes: some text is left out or holds
    ``{{query}}``. Then its literal texts are fixed clauses (see ``SearchContext``)."""
    return any(
        text is None or (isinstance(text, str) and PLACEHOLDER in text)
        for text in tree.query_texts()
    )


def fixed_vector_paths(tree: Retriever) -> list[str]:
    """Where ``tree``'s Elasticsearch JSON has a knn search a literal ``query_vector`` (e.g.
    ``retriever.rrf.retrievers[1].knn.query_vector``): a vector no query given can replace."""
    if not any(isinstance(node, Knn) and node.vector is not None for node in tree_nodes(tree)):
        return []
    while isinstance(tree, Cutoff):  # a search body's "size": not in the tree as written
        tree = tree.retriever
    return list(_vector_paths(tree.to_dict(), "retriever"))


def _vector_paths(value: Any, where: str) -> Iterator[str]:
    if isinstance(value, list):
        for position, item in enumerate(value):
            yield from _vector_paths(item, f"{where}[{position}]")
    elif isinstance(value, dict):
        for key, inner in value.items():
            if key == "knn" and isinstance(inner, dict) and "query_vector" in inner:
                yield f"{where}.knn.query_vector"
            else:
                yield from _vector_paths(inner, f"{where}.{key}")


def _texts_of(retrievers: Sequence[Retriever]) -> tuple[str | None, ...]:
    return tuple(text for retriever in retrievers for text in retriever.query_texts())


def _fusion_operand(operator: str, other: object) -> None:
    if not isinstance(other, Retriever):
        raise TypeError(
            f"both sides of {operator} must be retrievers such as BM25() or Knn(), got "
            f"{type(other).__name__}; add a re-ranking stage with >> and a cut-off with %"
        )


@dataclass(frozen=True)
class Weighted(Retriever):
    """A retriever with a weight for the fusion it takes part in (alone: the retriever)."""

    retriever: Retriever
    weight: float

    def run(self, ctx: SearchContext, size: int) -> Ranking:
        return self.retriever.run(ctx, size)

    def to_dict(self) -> dict[str, Any]:
        return self.retriever.to_dict()

    def query_texts(self) -> tuple[str | None, ...]:
        return self.retriever.query_texts()


def _split_weights(items: Sequence[Retriever]) -> tuple[list[Retriever], list[float]]:
    retrievers, weights = [], []
    for item in items:
        if isinstance(item, Weighted):
            retrievers.append(item.retriever)
            weights.append(item.weight)
        else:
            retrievers.append(item)
            weights.append(1.0)
    return retrievers, weights


def _set_children(node: Any, name: str) -> None:
    """A fusion's children checked, and weights given on them (``0.5 * BM25()``) moved to its
    ``weights``: the fusion reads only those, so a child's own weight would be ignored."""
    children = _retrievers(node.retrievers, name)
    if any(isinstance(child, Weighted) for child in children):
        if node.weights is not None:
            raise InvalidInputError(
                f"{name}: weights given twice, on the retrievers (e.g. 0.5 * BM25()) and as "
                "weights=; give them one way"
            )
        unwrapped, weights = _split_weights(children)
        children = tuple(unwrapped)
        object.__setattr__(node, "weights", tuple(weights))
    object.__setattr__(node, "retrievers", children)


# --- leaves ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class BM25(Retriever):
    """Lexical retrieval: Elasticsearch ``standard`` with a ``match`` / ``multi_match`` query.

    ``field="*"`` searches all text fields concatenated; ``fields=[("title", 2.0), ...]``
    scores several fields ("best_fields": per document the best boosted field score).
    """

    field: str = ALL_TEXT_FIELDS
    text: str | None = None
    fields: tuple[tuple[str, float], ...] = ()
    mode: str = "best_fields"
    filter: FilterSpec | None = None

    def __post_init__(self) -> None:
        _set_filter(self, "standard")

    def run(self, ctx: SearchContext, size: int) -> Ranking:
        check_request_wanted("a BM25 search of its retriever tree")
        if ctx.several is not None:  # a field no index has is refused, as on one index
            for name in self.field_names():
                ctx.check_field(name)
        return ctx.each_index(lambda one: self._run_on(one, size), size)

    def field_names(self) -> tuple[str, ...]:
        """The fields the node searches."""
        return tuple(name for name, _ in self.fields) if self.fields else (self.field,)

    def _run_on(self, ctx: SearchContext, size: int) -> Ranking:
        text = ctx.text(self.text)
        fields = tuple(pair for pair in self.fields if ctx.holds(pair[0]))
        if not (fields if self.fields else ctx.holds(self.field)):  # one of several lacks them
            return Ranking.from_hits(Hits.empty())
        with _retrieving(ctx, "standard", size) as traced:
            if self.fields:
                filtered = _filter_argument(ctx, self, "search_bm25_fields")
                hits = ctx.store.search_bm25_fields(
                    text, k=size, fields=fields, mode=self.mode, **filtered
                )
            else:
                filtered = _filter_argument(ctx, self, "search_bm25")
                hits = ctx.store.search_bm25(text, k=size, field=self.field, **filtered)
            set_attributes(traced, hits=len(hits.ids))
        return Ranking.from_hits(hits)

    def query_texts(self) -> tuple[str | None, ...]:
        return (self.text,)

    def to_dict(self) -> dict[str, Any]:
        text = self.text if self.text is not None else PLACEHOLDER
        if not self.fields:
            return {"standard": _with_filter({"query": {"match": {self.field: text}}}, self)}
        names = [name if boost == 1.0 else f"{name}^{boost:g}" for name, boost in self.fields]
        query = {"query": text, "fields": names, "type": self.mode}
        return {"standard": _with_filter({"query": {"multi_match": query}}, self)}


def _retrieving(
    ctx: SearchContext, kind: str, k: int, **sizes: int
) -> contextlib.AbstractContextManager[Any]:
    """The span of a first-stage search: its retriever kind, index and k (never its query)."""
    return span("retrieve", retriever=kind, index=ctx.store.name, k=k, **sizes)


@dataclass(frozen=True)
class ConstantScore(Retriever):
    """Every document passing ``filter``, each scored ``score``: Elasticsearch's query that
    only filters (``term``, ``range``, ``match_all``, ``constant_score``, or a ``bool`` whose
    clauses are all ``filter`` / ``must_not``, which scores 0), to browse an index by its
    fields. No score tells them apart, so they come in the store's order (``iter_documents``':
    the embedded store's first-written first, PostgreSQL's by id) where Elasticsearch's come
    in its index order."""

    filter: FilterSpec = dataclasses.field(default_factory=lambda: {"match_all": {}})
    score: float = 1.0

    def __post_init__(self) -> None:
        _set_filter(self, "standard")
        if not is_finite_number(self.score, at_least=0, at_most=MAX_WEIGHT):
            raise InvalidInputError(
                f"a constant score must be a finite number from 0 to {MAX_WEIGHT:g}, got "
                f"{self.score!r:.60}"
            )
        object.__setattr__(self, "score", float(self.score))

    def run(self, ctx: SearchContext, size: int) -> Ranking:
        check_request_wanted("a filter search of its retriever tree")
        return ctx.each_index(lambda one: self._run_on(one, size), size)

    def _run_on(self, ctx: SearchContext, size: int) -> Ranking:
        flt = _filter_argument(ctx, self, "first_matching")["filter"]  # own filter: never {}
        with _retrieving(ctx, "filter", size) as traced:
            ids = np.array(ctx.store.first_matching(flt, size), dtype=object)
            set_attributes(traced, hits=len(ids))
        return Ranking.from_hits(Hits(ids, np.full(len(ids), self.score, dtype=np.float32)))

    def to_dict(self) -> dict[str, Any]:
        flt = own_filter(self)
        assert flt is not None  # set in __post_init__
        if self.score != 0.0:
            query = {"constant_score": {"filter": flt.to_dict(), "boost": self.score}}
        elif isinstance(flt, Bool) and not flt.should:  # filter context: a bool of filters
            query = flt.to_dict()
        else:
            query = {"bool": {"filter": [flt.to_dict()]}}
        return {"standard": {"query": query}}


MAX_NUM_CANDIDATES = 10_000  # Elasticsearch's limit on the knn beam


@dataclass(frozen=True)
class Knn(Retriever):
    """Dense retrieval (Elasticsearch ``knn``) with the index's embedding model.

    Returns ``k`` neighbours (default: what the parent asks for); ``num_candidates`` is the HNSW
    beam width on large indexes; ``similarity`` drops hits below that cosine similarity. A
    ``vector`` is scaled to unit length when searched. A hit's score is ``(1 + cosine) / 2``,
    Elasticsearch's ``_score`` for a cosine vector field, so that a ``linear`` retriever's
    weights fuse as there (the ``similarity`` threshold is the raw cosine, as there too).
    """

    field: str = VECTOR_FIELD
    text: str | None = None
    k: int | None = None
    num_candidates: int | None = None
    vector: tuple[float, ...] | None = None
    similarity: float | None = None
    model_id: str | None = None
    filter: FilterSpec | None = None

    def __post_init__(self) -> None:
        _set_filter(self, "knn")
        _set_positive(self, "k", "knn k")
        _set_positive(self, "num_candidates", "knn num_candidates")
        self._check_candidates()
        object.__setattr__(self, "similarity", _finite("knn similarity", self.similarity))
        if self.model_id is not None and not isinstance(self.model_id, str):
            raise InvalidInputError(
                "knn query_vector_builder.text_embedding.model_id must be a model name (a "
                f"string), got {self.model_id!r:.60}; leave it out for the index's own model"
            )
        if self.vector is not None:
            require_collection(
                self.vector,
                expected="knn vector must be a list of numbers",
                hint="give the query embedding, e.g. vector=(0.1, 0.2, ...)",
            )
            if not self.vector or not all(is_finite_number(x) for x in self.vector):
                raise InvalidInputError(
                    f"knn vector must be a non-empty list of finite numbers, got "
                    f"{self.vector!r:.60}"
                )
            object.__setattr__(self, "vector", tuple(float(x) for x in self.vector))
            if math.hypot(*self.vector) == 0.0:
                raise InvalidInputError(
                    "knn query_vector is all zeros, which has no direction to compare by cosine "
                    "similarity; give a non-zero vector (e.g. the query's embedding) or "
                    "query_text to embed the query"
                )

    def _check_candidates(self) -> None:
        """Elasticsearch's bounds: the beam holds at least the k hits asked for, at most 10,000."""
        if self.num_candidates is None:
            return
        if self.num_candidates > MAX_NUM_CANDIDATES:
            raise InvalidInputError(
                f"knn num_candidates must be at most {MAX_NUM_CANDIDATES:,}, got "
                f"{self.num_candidates}"
            )
        if self.k is not None and self.k > self.num_candidates:
            raise InvalidInputError(
                f"knn k ({self.k}) must not exceed num_candidates ({self.num_candidates}); "
                "raise num_candidates or lower k"
            )

    def run(self, ctx: SearchContext, size: int) -> Ranking:
        check_request_wanted("a knn search of its retriever tree")
        if ctx.several is not None:  # refused where no index has embeddings, as on one index
            _check_vectors_somewhere(ctx.stores, self.field)
        # The k nearest of all the indexes: each one's k nearest, merged and cut to k.
        return ctx.each_index(lambda one: self._run_on(one, size), min(self.k or size, size))

    def _run_on(self, ctx: SearchContext, size: int) -> Ranking:
        if ctx.one_of_several and not ctx.store.has_vectors:
            # Nothing to find there, as Elasticsearch's knn finds nothing in an index that
            # does not map the vector field (``_check_vectors_somewhere`` refuses one none has).
            return Ranking.from_hits(Hits.empty())
        ctx.store.check_vector_field(self.field)
        self._check_model(ctx)
        k = self.k or size
        if self.vector is not None:
            # Stored vectors are unit length: only a unit query makes the inner product a
            # cosine, which `similarity` thresholds and fusion with other lists assume.
            vector = unit_query_vector(np.asarray(self.vector), len(self.vector))
        else:
            vector = ctx.query_vector(ctx.text(self.text, where="the knn retriever's query_text"))
        candidates = max(self.num_candidates or 0, int(1.5 * k))
        filtered = _filter_argument(ctx, self, "search_vector")
        with _retrieving(ctx, "knn", k, num_candidates=candidates) as traced:
            hits = ctx.store.search_vector(vector, k=k, num_candidates=candidates, **filtered)
            set_attributes(traced, hits=len(hits.ids))
        if self.similarity is not None:
            keep = hits.scores >= self.similarity
            hits = Hits(hits.ids[keep], hits.scores[keep])
        hits = hits.top(size)
        return Ranking.from_hits(Hits(hits.ids, ((1.0 + hits.scores) / 2.0).astype(np.float32)))

    def query_texts(self) -> tuple[str | None, ...]:
        return () if self.vector is not None else (self.text,)

    def _check_model(self, ctx: SearchContext) -> None:
        stored = ctx.store.settings.embedding_model
        if self.model_id is None or self.model_id in ("default", stored):
            return
        folder = Path(self.model_id).expanduser()
        if folder.is_dir() and str(folder.resolve()) == stored:  # the folder, named another way
            return
        raise InvalidInputError(
            f"knn model_id {self.model_id!r} differs from the model index {ctx.store.name!r} was "
            f"embedded with ({ctx.store.settings.embedding_model!r}); omit model_id or use that one"
        )

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"field": self.field}
        if self.vector is not None:
            body["query_vector"] = list(self.vector)
        else:
            text = self.text if self.text is not None else PLACEHOLDER
            if self.model_id is not None:
                builder = {"text_embedding": {"model_id": self.model_id, "model_text": text}}
                body["query_vector_builder"] = builder
            else:
                body["query_text"] = text
        for key in ("k", "num_candidates", "similarity"):
            if getattr(self, key) is not None:
                body[key] = getattr(self, key)
        return {"knn": _with_filter(body, self)}


def _check_vectors_somewhere(stores: Sequence[Store], field: str) -> None:
    """A knn over several indexes: ``check_vector_field`` of the first with embeddings (a bad
    field name is refused), or the first index's refusal where none has them."""
    checked = next((store for store in stores if store.has_vectors), None)
    if checked is None and stores:
        checked = stores[0]
    if checked is not None:
        checked.check_vector_field(field)


# --- fusion ----------------------------------------------------------------------------------
# Elasticsearch's default rank_window_size for rrf and linear, wherever the node is: the JSON
# parser gives it to a node that leaves it out. A node built in Python without one (``|``, ``+``,
# the shorthands) reads at least this many hits from each retriever, or the hits asked for when
# more, so a search for the top 1 still fuses (with a window of 1 the first retriever's best hit
# always won) and a re-ranker above it reads its whole window.
FUSION_WINDOW = 10


def _children_in_window(
    name: str, window: int | None, children: Sequence[Retriever]
) -> tuple[Retriever, ...]:
    """A windowed node's children, each able to hand it its whole window. A fusion child built
    without a window reads the hits this node asks of it: its window is set to that (so ``to_dict``
    says it). A child window below this node's is refused, as Elasticsearch refuses it: that
    child returns at most its own window, so this node would read fewer hits than it says.
    A fusion built without a window over a smaller window of its own children is left without
    one: the window it would be given is no user's, and refusing its children for it refused
    Python trees that ran before (``((bm25 | knn) >> Rerank(window=20)) | knn``)."""
    if window is None:
        return tuple(children)
    kept: list[Retriever] = []
    fill = max(window, FUSION_WINDOW)
    for child in children:
        if (
            isinstance(child, RRF | Linear)
            and child.rank_window_size is None
            and _windows_at_least(child.retrievers, fill)
        ):
            child = dataclasses.replace(child, rank_window_size=fill)
        kind = _WINDOWED.get(type(child))
        bound = getattr(child, "rank_window_size", None)
        if kind is not None and bound is not None and bound < window:
            raise InvalidInputError(
                f"{name} {window} is above its child {kind}'s rank_window_size {bound}: the "
                f"child returns at most {bound} hits; raise the child's rank_window_size to at "
                f"least {window} (rrf and linear default to {FUSION_WINDOW}, as in "
                "Elasticsearch), or lower this one"
            )
        kept.append(child)
    return tuple(kept)


def _unscored(child: Ranking, position: int) -> bool:
    return bool(np.isnan(child.rerank_scores[position]))


def _merge_first_stage(fused: Hits, children: list[Ranking]) -> Ranking:
    """Fusion of re-ranked lists keeps each hit's first-stage data from the first list with it,
    looking in the re-ranked lists first: a hit the model scored keeps its re-rank score whatever
    the order of the fused retrievers."""
    if not any(c.reranked for c in children):
        return Ranking.from_hits(fused)
    where: dict[str, tuple[Ranking, int]] = {}
    for child in sorted(children, key=lambda c: not c.reranked):  # stable: order kept otherwise
        for position, doc_id in enumerate(child.ids.tolist()):
            known = where.get(doc_id)
            # A hit a cascade left unread in one list but scored in another keeps that score.
            if known is None or (_unscored(*known) and not _unscored(child, position)):
                where[doc_id] = (child, position)
    picks = [where[i] for i in fused.ids.tolist()]
    return Ranking(
        ids=fused.ids,
        scores=fused.scores.astype(np.float32),
        first_stage_ranks=np.array([c.first_stage_ranks[p] for c, p in picks], dtype=np.int64),
        first_stage_scores=np.array([c.first_stage_scores[p] for c, p in picks], dtype=np.float32),
        rerank_scores=np.array([c.rerank_scores[p] for c, p in picks], dtype=np.float32),
        reranked=True,
    )


@dataclass(frozen=True)
class RRF(Retriever):
    """Reciprocal rank fusion (Elasticsearch ``rrf``); ``weights`` are optional. Without a
    ``rank_window_size`` it reads the hits asked of it, at least 10 (the JSON form's default is
    10, as in Elasticsearch, and the parser passes it explicitly)."""

    retrievers: tuple[Retriever, ...]
    rank_window_size: int | None = None
    rank_constant: int = 60
    weights: tuple[float, ...] | None = None
    composed: bool = field(default=False, compare=False)
    filter: FilterSpec | None = None

    def __post_init__(self) -> None:
        _set_filter(self, "rrf")
        _set_children(self, "rrf")
        _set_positive(self, "rank_window_size", "rrf rank_window_size")
        _set_positive(self, "rank_constant", "rrf rank_constant")
        window, children = self.rank_window_size, self.retrievers
        object.__setattr__(
            self, "retrievers", _children_in_window("rrf rank_window_size", window, children)
        )

    @staticmethod
    def compose(left: Retriever, right: Retriever) -> RRF:
        items = [*(_unfused(left, RRF)), *(_unfused(right, RRF))]
        retrievers, weights = _split_weights(items)
        plain = all(w == 1.0 for w in weights)
        return RRF(tuple(retrievers), weights=None if plain else tuple(weights), composed=True)

    def run(self, ctx: SearchContext, size: int) -> Ranking:
        window = self.rank_window_size or max(size, FUSION_WINDOW)
        inner = ctx.within(own_filter(self))
        children = [r.run(inner, window) for r in self.retrievers]
        fused = rrf(
            [c.hits() for c in children],
            rank_constant=self.rank_constant,
            rank_window_size=window,
            weights=self.weights,
        )
        return _merge_first_stage(fused, children).top(min(size, window))

    def query_texts(self) -> tuple[str | None, ...]:
        return _texts_of(self.retrievers)

    def to_dict(self) -> dict[str, Any]:
        if self.weights is None:
            items: list[Any] = [r.to_dict() for r in self.retrievers]
        else:
            items = [
                {"retriever": r.to_dict(), "weight": w}
                for r, w in zip(self.retrievers, self.weights, strict=True)
            ]
        body: dict[str, Any] = {"retrievers": items, "rank_constant": self.rank_constant}
        if self.rank_window_size is not None:
            body["rank_window_size"] = self.rank_window_size
        return {"rrf": _with_filter(body, self)}


@dataclass(frozen=True)
class Linear(Retriever):
    """Weighted sum of normalised scores (Elasticsearch ``linear``); its window as ``RRF``'s."""

    retrievers: tuple[Retriever, ...]
    weights: tuple[float, ...] | None = None
    # Default "minmax" for every retriever (what `+` means); the JSON form's default is "none",
    # as in Elasticsearch, and the parser passes it explicitly.
    normalizers: tuple[str, ...] | None = None
    rank_window_size: int | None = None
    composed: bool = field(default=False, compare=False)
    filter: FilterSpec | None = None

    def __post_init__(self) -> None:
        _set_filter(self, "linear")
        _set_children(self, "linear")
        _set_positive(self, "rank_window_size", "linear rank_window_size")
        window, children = self.rank_window_size, self.retrievers
        object.__setattr__(
            self, "retrievers", _children_in_window("linear rank_window_size", window, children)
        )
        self._set_normalizers()

    def _set_normalizers(self) -> None:
        """One name applies to every retriever (as ``linear_combination`` reads it); a list
        needs one known name per retriever, checked here rather than at the first search."""
        given: Any = self.normalizers
        if given is None:
            return
        names = (given,) * len(self.retrievers) if isinstance(given, str) else given
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
            raise InvalidInputError(
                f"linear normalizers must be one name or a list of names, got {given!r}"
            )
        unknown = [n for n in names if n not in NORMALIZERS]
        if unknown or len(names) != len(self.retrievers):
            raise InvalidInputError(
                f"linear normalizers {list(names)!r} must name one of {', '.join(NORMALIZERS)} "
                f"for each of its {len(self.retrievers)} retrievers"
            )
        object.__setattr__(self, "normalizers", tuple(names))

    @staticmethod
    def compose(left: Retriever, right: Retriever) -> Linear:
        retrievers, weights = _split_weights([*_unfused(left, Linear), *_unfused(right, Linear)])
        return Linear(tuple(retrievers), weights=tuple(weights), composed=True)

    def _normalizers(self) -> list[str]:
        return list(self.normalizers or ["minmax"] * len(self.retrievers))

    def run(self, ctx: SearchContext, size: int) -> Ranking:
        window = self.rank_window_size or max(size, FUSION_WINDOW)
        inner = ctx.within(own_filter(self))
        children = [r.run(inner, window) for r in self.retrievers]
        fused = linear_combination(
            [c.hits() for c in children],
            weights=self.weights,
            normalizers=self._normalizers(),
            rank_window_size=window,
        )
        return _merge_first_stage(fused, children).top(min(size, window))

    def query_texts(self) -> tuple[str | None, ...]:
        return _texts_of(self.retrievers)

    def to_dict(self) -> dict[str, Any]:
        weights = self.weights or (1.0,) * len(self.retrievers)
        items = [
            {"retriever": r.to_dict(), "weight": w, "normalizer": n}
            for r, w, n in zip(self.retrievers, weights, self._normalizers(), strict=True)
        ]
        body: dict[str, Any] = {"retrievers": items}
        if self.rank_window_size is not None:
            body["rank_window_size"] = self.rank_window_size
        return {"linear": _with_filter(body, self)}


def _unfused(node: Retriever, kind: type) -> list[Retriever]:
    """Operands of a chain like ``a | b | c``: flatten what the operator itself built."""
    # One carrying a filter stays whole: its filter holds for its own retrievers only.
    if isinstance(node, kind) and getattr(node, "composed", False) and own_filter(node) is None:
        retrievers = list(node.retrievers)  # type: ignore[attr-defined]
        weights = node.weights or (1.0,) * len(retrievers)  # type: ignore[attr-defined]
        return [r if w == 1.0 else Weighted(r, w) for r, w in zip(retrievers, weights, strict=True)]
    return [node]


class HitStage(Retriever):
    """A stage over the ranked hits of its ``retriever`` (a search body's ``post_filter`` and
    ``collapse``: ``semrank.pipeline._post``): it keeps some of them, and the tree's window
    and matched documents stay its retriever's. ``over(run)``: the stage over another run of
    the retriever (a sorted one)."""

    retriever: Retriever

    @abc.abstractmethod
    def over(
        self, run: Callable[[SearchContext, int], Ranking]
    ) -> Callable[[SearchContext, int], Ranking]: ...

    def run(self, ctx: SearchContext, size: int) -> Ranking:
        return self.over(self.retriever.run)(ctx, size)

    def query_texts(self) -> tuple[str | None, ...]:
        return self.retriever.query_texts()

    def to_dict(self) -> dict[str, Any]:
        """The retriever's JSON: a stage is a key of the search body, not a retriever."""
        return self.retriever.to_dict()


# --- re-ranking and cut-offs -----------------------------------------------------------------
def _rerank_options(
    model: object, field: object, window: int, min_score: float | None
) -> tuple[int, float | None]:
    """A re-ranking node's options checked: (window as int, min_score as float or None)."""
    name = "text_similarity_reranker rank_window_size"
    checked_window = _positive(name, window)
    if checked_window is None:  # unlike a fusion's window, a re-ranker's has no fallback
        raise InvalidInputError(f"{name} must be a positive integer (default 10), got None")
    checked_min = _finite("text_similarity_reranker min_score", min_score)
    if model is not None and not isinstance(model, str | os.PathLike | ScoresDocuments):
        raise InvalidInputError(
            f"re-ranking model must be a model name or path, a loaded Reranker or an object "
            f"with score(query, documents), got {type(model).__name__} ({model!r:.60})"
        )
    if not isinstance(field, str):
        raise InvalidInputError(
            f"re-ranking field must be a field name ('*': all text fields), got {field!r}"
        )
    return checked_window, checked_min


@dataclass(frozen=True)
class TextSimilarityReranker(Retriever):
    """Re-rank the child's top ``rank_window_size`` with a cross-encoder (or bi-encoder).

    ``inference_id`` is a semrank model name or path (None: the default model) or a loaded
    ``Reranker``; ``field`` is the document field the model reads (``"*"``: all text fields).
    Scores are the model's 0..1 relevance; ``min_score`` drops hits below it.
    """

    retriever: Retriever
    field: str = ALL_TEXT_FIELDS
    inference_id: str | os.PathLike[str] | ScoresDocuments | None = None
    inference_text: str | None = None
    rank_window_size: int = 10
    min_score: float | None = None
    filter: FilterSpec | None = None

    def __post_init__(self) -> None:
        _set_filter(self, "text_similarity_reranker")
        _retriever("text_similarity_reranker retriever", self.retriever)
        _refuse_weighted_child("text_similarity_reranker", self.retriever)
        window, min_score = _rerank_options(
            self.inference_id, self.field, self.rank_window_size, self.min_score
        )
        object.__setattr__(self, "inference_id", model_ref(self.inference_id))
        object.__setattr__(self, "rank_window_size", window)
        object.__setattr__(self, "min_score", min_score)
        (child,) = _children_in_window(
            "text_similarity_reranker rank_window_size", window, (self.retriever,)
        )
        object.__setattr__(self, "retriever", child)

    def run(self, ctx: SearchContext, size: int) -> Ranking:
        inner = ctx.within(own_filter(self))
        child = self.retriever.run(inner, self.rank_window_size).top(self.rank_window_size)
        child, documents = ctx.stored_hits(child)
        if len(child) == 0:
            return child
        ctx.check_field(self.field, purpose=" to re-rank on")
        texts = [
            ctx.store_of(hit_id).rerank_text_of(doc, self.field)
            for hit_id, doc in zip(child.ids.tolist(), documents, strict=True)
        ]
        model = self._model()
        for store in ctx.stores:  # windows embedded at `semrank index prepare`, if any
            use_prepared(store, model)
        query = ctx.text(self.inference_text, where="the text_similarity_reranker's inference_text")
        name = getattr(model, "served_name", None) or getattr(model, "name", None)
        sizes = {"documents": len(texts), "rank_window_size": self.rank_window_size}
        with span("rerank", model=str(name), index=ctx.store.name, **sizes):
            order, scores, unread, windows = _reranked_order(
                model, query, texts, self.min_score, ctx.warnings
            )
        if ctx.windows is not None:
            self._keep_windows(ctx.windows, child.ids[order], [texts[i] for i in order], windows)
        ranked = child.take(order)
        ranked = Ranking(
            ids=ranked.ids,
            scores=scores,
            first_stage_ranks=ranked.first_stage_ranks,
            first_stage_scores=ranked.first_stage_scores,
            # A cascade's pruned hits keep their place below the read ones, but no model score:
            # their place-holding scores read as judgments to a client thresholding them.
            rerank_scores=np.where(unread, np.float32(np.nan), scores),
            reranked=True,
        )
        return ranked.top(size)

    def _keep_windows(
        self,
        kept: dict[str, ReadWindows],
        ids: np.ndarray,
        texts: list[str],
        windows: list[tuple[tuple[int, int, float], ...]],
    ) -> None:
        """Each hit's windows, for a semantic highlight; none for a hit the model left unread
        (a cascade's pruned hits: their scores only hold a place)."""
        for hit_id, text, spans in zip(ids.tolist(), texts, windows, strict=True):
            if spans:
                kept[str(hit_id)] = ReadWindows(field=self.field, text=text, spans=spans)

    def _model(self) -> ScoresDocuments:
        with _naming_inference_id():
            return load_reranker(self.inference_id)

    def query_texts(self) -> tuple[str | None, ...]:
        return (self.inference_text, *self.retriever.query_texts())

    def to_dict(self) -> dict[str, Any]:
        model = self.inference_id
        body: dict[str, Any] = {
            "retriever": self.retriever.to_dict(),
            "field": self.field,
            "inference_text": self.inference_text
            if self.inference_text is not None
            else PLACEHOLDER,
            "rank_window_size": self.rank_window_size,
        }
        if model is not None:
            body["inference_id"] = (
                model if isinstance(model, str) else getattr(model, "name", str(model))
            )
        if self.min_score is not None:
            body["min_score"] = self.min_score
        return {"text_similarity_reranker": _with_filter(body, self)}


_Windows = tuple[tuple[int, int, float], ...]


def _reranked_order(
    model: ScoresDocuments,
    query: str,
    texts: list[str],
    min_score: float | None,
    warnings: list[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[_Windows]]:
    """(positions best first, their scores, whether the model left each unread, the windows
    it read of each: (start, end, score), none where unread), without those below
    ``min_score``; a query the model cut to fit is added to ``warnings``.

    A semrank Reranker ranks through ``rerank``, which knows the documents its cascade pruned
    unread (``score`` gives them a place-holding score below the read ones, which a threshold
    must not let through); any other model through its ``score``.
    """
    from semrank.rerank import Reranker, select_results

    if isinstance(model, Reranker):
        ranked = model.rerank(query, texts, return_documents=False)
        for said in model.query_warnings(query, ranked):  # of every text read, kept or not
            if said not in warnings:
                warnings.append(said)
        results = select_results(ranked, top_n=None, min_score=min_score)
        order = np.array([r.index for r in results], dtype=np.int64)
        unread = np.array([r.pruned for r in results], dtype=bool)
        windows = [() if r.pruned else r.window_scores for r in results]
        scores = np.array([r.relevance_score for r in results], dtype=np.float32)
        return order, scores, unread, windows
    scores = _model_scores(model, model.score(query, texts), len(texts))
    order = np.argsort(-scores, kind="stable")
    if min_score is not None:
        order = order[scores[order] >= min_score]
    # Another model scores each text whole: one window, the document's.
    whole: list[_Windows] = [((0, len(texts[i]), float(scores[i])),) for i in order.tolist()]
    return order, scores[order], np.zeros(len(order), dtype=bool), whole


def _model_scores(model: object, raw: object, expected: int) -> np.ndarray:
    """One finite score per document, or an error naming the model (never a shorter list)."""
    try:
        scores = np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError):
        scores = np.empty(0, dtype=np.float32)
        shape: object = type(raw).__name__
    else:
        shape = scores.shape
    if scores.shape != (expected,) or not np.isfinite(scores).all():
        raise InvalidInputError(
            f"re-ranking model {type(model).__name__} must return {expected} finite scores (one "
            f"per document), got {shape}"
            + ("" if scores.shape != (expected,) else " with NaN or infinite values")
        )
    return scores


@dataclass(frozen=True)
class Cutoff(Retriever):
    """The child's first ``k`` hits (``retriever % k``). JSON: semrank's ``cutoff`` extension."""

    retriever: Retriever
    k: int

    def __post_init__(self) -> None:
        _retriever("cut-off retriever", self.retriever)
        _refuse_weighted_child("cut-off", self.retriever)
        _set_positive(self, "k", "cut-off k")

    def run(self, ctx: SearchContext, size: int) -> Ranking:
        limit = min(size, self.k)
        return self.retriever.run(ctx, limit).top(limit)

    def query_texts(self) -> tuple[str | None, ...]:
        return self.retriever.query_texts()

    def to_dict(self) -> dict[str, Any]:
        return {"cutoff": {"retriever": self.retriever.to_dict(), "size": self.k}}


def _windows_at_least(children: Sequence[Retriever], window: int) -> bool:
    """Whether none of ``children`` has a rank_window_size below ``window``."""
    bounds = (getattr(child, "rank_window_size", None) for child in children)
    return all(bound is None or bound >= window for bound in bounds)


# The nodes with a rank_window_size, by their Elasticsearch names.
_WINDOWED: dict[type, str] = {
    RRF: "rrf",
    Linear: "linear",
    TextSimilarityReranker: "text_similarity_reranker",
}


def top_node(tree: Retriever) -> tuple[Retriever, int | None]:
    """The node that ranks ``tree``'s hits, below its cut-offs, weights and the stages over its
    hits, and the smallest of those cut-offs' ``k`` (None: no cut-off)."""
    cut: int | None = None
    while isinstance(tree, Cutoff | Weighted | HitStage):
        if isinstance(tree, Cutoff):
            cut = tree.k if cut is None else min(cut, tree.k)
        tree = tree.retriever
    return tree, cut


def top_window(tree: Retriever) -> int | None:
    """The top node's ``rank_window_size`` (looking through cut-offs and weights): the most hits
    the tree returns, or None where its top node has no window."""
    window = getattr(top_node(tree)[0], "rank_window_size", None)
    return None if window is None else int(window)


def hits_without_size(tree: Retriever, default: int) -> int:
    """The hits a search that gives no size gets: ``default``, or the top window's hits where
    fewer (Elasticsearch checks a window only against a size given, and answers a body without
    one with the window's hits)."""
    window = top_window(tree)
    return default if window is None else min(default, window)


def check_window(tree: Retriever, size: int, asked_as: str = "size") -> None:
    """Refuse a top node whose window is below the hits asked for, as Elasticsearch does: it
    would quietly return fewer. A cut-off (a ``_search`` body's ``size``, ``% k``) asks its child
    for at most ``k`` hits, so the check looks through it with that count. (The edges call it,
    where a size is asked for explicitly, and so does the library's ``search`` given a ``k``
    and a tree read from JSON; a tree built in Python returns what it gives, as composed
    stages do.)"""
    tree, cut = top_node(tree)
    size = size if cut is None else min(size, cut)
    window = getattr(tree, "rank_window_size", None)
    if window is not None and window < size:
        default = (
            f" (rrf and linear default to {FUSION_WINDOW}, as in Elasticsearch)"
            if isinstance(tree, RRF | Linear)
            else ""
        )
        raise InvalidInputError(
            f"the retriever's rank_window_size {window} is below the {size} hits asked for "
            f"({asked_as}): it returns at most {window}; raise rank_window_size to at "
            f"least {size}{default} or ask for fewer hits"
        )


# Elasticsearch's index.max_result_window: the deepest hit a page may reach (from + size).
MAX_RESULT_WINDOW = 10_000


def check_page(offset: int, size: int, names: tuple[str, str] = ("from", "size")) -> None:
    """Refuse an offset that is no count of hits, or a page ending past MAX_RESULT_WINDOW, as
    Elasticsearch refuses it: each page runs the search down to its last hit, so a page deep
    in the ranking costs what a search for all the hits above it costs. ``names``: the
    offset's and the size's, as the caller was given them."""
    offset_name, size_name = names
    if not is_int(offset, at_least=0):
        raise InvalidInputError(
            f"{offset_name} must be a non-negative integer (the hits to skip: 10 for the second "
            f"page of 10), got {offset!r:.40}"
        )
    end = int(offset) + int(size)
    if int(offset) > 0 and end > MAX_RESULT_WINDOW:
        raise InvalidInputError(
            f"{offset_name} + {size_name} ({int(offset):,} + {int(size):,} = {end:,}) is above "
            f"{MAX_RESULT_WINDOW:,}, the deepest hit a page reaches (Elasticsearch's "
            "index.max_result_window); narrow the search (a query or filter) rather than "
            "paging deeper"
        )


# --- stages: what the right side of >> takes -------------------------------------------------
class Stage(abc.ABC):
    """A transformation of a ranking, bound to a retriever with ``retriever >> stage``."""

    @abc.abstractmethod
    def bind(self, retriever: Retriever) -> Retriever: ...

    def __mod__(self, k: int) -> Stage:
        return Chain((self, Cut(k)))

    def __rshift__(self, other: Stage) -> Stage:
        if not isinstance(other, Stage):
            raise TypeError(f"cannot chain a stage with {type(other).__name__}")
        return Chain((self, other))


@dataclass(frozen=True)
class Rerank(Stage):
    """``retriever >> Rerank(model)``: a ``text_similarity_reranker`` over that retriever."""

    model: str | os.PathLike[str] | ScoresDocuments | None = None
    field: str = ALL_TEXT_FIELDS
    window: int = DEFAULT_RERANK_WINDOW
    min_score: float | None = None
    text: str | None = None

    def __post_init__(self) -> None:
        # Checked where the stage is built, so a bad one is named before it is bound.
        _rerank_options(self.model, self.field, self.window, self.min_score)
        object.__setattr__(self, "model", model_ref(self.model))

    def bind(self, retriever: Retriever) -> Retriever:
        return TextSimilarityReranker(
            retriever,
            field=self.field,
            inference_id=self.model,
            inference_text=self.text,
            rank_window_size=self.window,
            min_score=self.min_score,
        )


@dataclass(frozen=True)
class Cut(Stage):
    """``retriever >> Cut(k)`` == ``retriever % k``."""

    k: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", _positive("cut-off k", self.k))

    def bind(self, retriever: Retriever) -> Retriever:
        return Cutoff(retriever, self.k)


@dataclass(frozen=True)
class Chain(Stage):
    stages: tuple[Stage, ...]

    def bind(self, retriever: Retriever) -> Retriever:
        for stage in self.stages:
            retriever = stage.bind(retriever)
        return retriever


Dense = Knn


def tree_nodes(node: Retriever) -> list[Retriever]:
    """Every node of the tree, outermost first (a stack, not recursion: trees come from
    clients)."""
    found: list[Retriever] = []
    pending = [node]
    while pending:
        current = pending.pop()
        found.append(current)
        names: list[str] = (
            [f.name for f in dataclasses.fields(current)]
            if dataclasses.is_dataclass(current)
            else []
        )
        children: list[Retriever] = []
        for name in names:
            value = getattr(current, name)
            children += [
                c
                for c in (value if isinstance(value, tuple) else (value,))
                if isinstance(c, Retriever)
            ]
        pending.extend(reversed(children))
    return found


def reranking_nodes(node: Retriever) -> list[TextSimilarityReranker]:
    """Every re-ranking node of the tree, outermost first."""
    return [found for found in tree_nodes(node) if isinstance(found, TextSimilarityReranker)]


def bind_rerankers(node: Retriever, load: Callable[[str | None], ScoresDocuments]) -> Retriever:
    """The tree with every re-ranking node that names its model (a name, or None for the
    default) scoring through ``load(name)`` instead: a served model, or one loaded with another
    backend. Elasticsearch's default inference ids name the default (None)."""
    from semrank.pipeline._context import default_model_name

    if not dataclasses.is_dataclass(node):
        return node
    changes: dict[str, Any] = {}
    for item in dataclasses.fields(node):
        value = getattr(node, item.name)
        if isinstance(value, Retriever):
            changes[item.name] = bind_rerankers(value, load)
        elif isinstance(value, tuple) and value and all(isinstance(v, Retriever) for v in value):
            changes[item.name] = tuple(bind_rerankers(v, load) for v in value)
    if isinstance(node, TextSimilarityReranker) and (
        node.inference_id is None or isinstance(node.inference_id, str)
    ):
        with _naming_inference_id():
            changes["inference_id"] = load(default_model_name(node.inference_id))
    return dataclasses.replace(node, **changes) if changes else node


@contextlib.contextmanager
def _naming_inference_id() -> Iterator[None]:
    """A model the tree names that is not there: say which key named it (an id pasted from an
    Elasticsearch example, such as "my-elser-model") and how to use the default instead."""
    try:
        yield
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(
            f"text_similarity_reranker's inference_id: {str(exc).rstrip('.')}; leave "
            "inference_id out for the default model (Elasticsearch's .rerank-v1-elasticsearch "
            "names it too)"
        ) from exc
