"""What a search does to its tree's ranked hits before paging them: Elasticsearch's
``post_filter`` and ``collapse``, for faceted search (a facet's counts come from the
aggregations, over every match; the hits from the facets chosen).

* ``post_filter`` (``PostFilter``): the hits are those of the tree's final ranking that pass
  it; aggregations still read every document the tree matches, and the hits' total counts
  those passing both. Over a ``standard`` search (a match, or a filter) that is the search
  with the post_filter beside its own filters, which scores nothing; over a knn it keeps those
  of its k nearest that pass; over a compound tree (rrf, linear, a re-ranker) those of its
  top window that pass, as Elasticsearch applies post_filter after the query phase: a
  re-ranker's rank_window_size holds (and scores) documents the post_filter then drops, so
  a page may be short.
* ``collapse`` (``Collapse``): the best hit of each value of a single-valued keyword or
  number field, in the ranking's (or the sort's) order, each carrying ``fields: {field:
  [value]}``; hits without the field are one group, its value null, as in Elasticsearch.
  Pages (``from``/``size``) count groups, the total the documents matched; a field no
  searched index holds is refused (Elasticsearch's "no mapping found"). ``inner_hits`` and
  ``max_concurrent_group_searches`` are refused.

Both rank deeper than the page where they drop hits: a tree without a window is asked for
twice as many until the page is full or its ranking ends; one with a window (or a knn's k)
gives it whole once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from semrank._checks import MAX_COUNT
from semrank.errors import InvalidInputError
from semrank.pipeline._context import SearchContext
from semrank.pipeline._nodes import (
    BM25,
    ConstantScore,
    Cutoff,
    HitStage,
    Knn,
    Retriever,
    Weighted,
    top_node,
    top_window,
    tree_nodes,
)
from semrank.pipeline._ranking import Ranking
from semrank.pipeline._sorting import SortRequest, window_values
from semrank.retrieve import Filter, FilterSpec, all_of, as_filter, resolved
from semrank.retrieve._filter import Bool, Ids
from semrank.store._targets import hit_key, split_key

Run = Callable[[SearchContext, int], Ranking]
Keep = Callable[[SearchContext, Ranking], Ranking]


@dataclass(frozen=True)
class PostFilter(HitStage):
    """The hits of ``retriever`` passing ``post_filter`` (Elasticsearch filter JSON or a
    parsed ``Filter``); the module docstring says which."""

    retriever: Retriever
    post_filter: FilterSpec

    def __post_init__(self) -> None:
        object.__setattr__(self, "post_filter", as_filter(self.post_filter, "post_filter"))

    @property
    def parsed(self) -> Filter:
        assert isinstance(self.post_filter, Filter)  # parsed in __post_init__
        return self.post_filter

    def over(self, run: Run) -> Run:
        if isinstance(self.retriever, BM25 | ConstantScore):
            # Its whole ranking, filtered: a filter beside its own scores nothing.
            return lambda ctx, size: run(ctx.within(self.parsed), size)
        return _deepened(self.retriever, run, self._passing)

    def _passing(self, ctx: SearchContext, ranking: Ranking) -> Ranking:
        keys = [str(key) for key in ranking.ids.tolist()]
        passing: set[str] = set()
        for one in ctx.stores:
            own = keys if ctx.several is None else [k for k in keys if split_key(k)[0] == one.name]
            if not own:
                continue
            flt = passing_both(Ids(values=frozenset(_ids_of(ctx, own))), self.parsed, ctx.now)
            found = one.ids_matching(flt)
            passing |= set(found if ctx.several is None else (hit_key(one.name, i) for i in found))
        kept = [n for n, key in enumerate(keys) if key in passing]
        return ranking.take(np.array(kept, dtype=np.int64))


def _ids_of(ctx: SearchContext, keys: list[str]) -> list[str]:
    return keys if ctx.several is None else [split_key(key)[1] for key in keys]


@dataclass(frozen=True)
class Collapse(HitStage):
    """The best hit of ``retriever`` for each value of ``field`` (Elasticsearch's ``collapse``;
    the module docstring says how)."""

    retriever: Retriever
    field: str

    def __post_init__(self) -> None:
        if not isinstance(self.field, str) or not self.field.strip():
            raise InvalidInputError(
                f"collapse.field must be the name of a keyword or number field, got "
                f"{self.field!r:.60}"
            )

    def over(self, run: Run) -> Run:
        deep = _deepened(self.retriever, run, self._heads)

        def collapsed(ctx: SearchContext, size: int) -> Ranking:
            self._require_held(ctx)
            return deep(ctx, size)

        return collapsed

    def _require_held(self, ctx: SearchContext) -> None:
        """A field no searched index holds (a typo, ``_id``) would make every hit one null
        group, a single hit: refused, as Elasticsearch refuses a field it has no mapping for."""
        known: dict[str, None] = {}
        for one in ctx.stores:
            names = [*one.settings.text_fields, *one.fields_seen]
            if any(self.field == name or self.field.startswith(f"{name}.") for name in names):
                return
            known.update(dict.fromkeys(names))
        raise InvalidInputError(
            f"no document holds collapse.field {self.field!r} (no mapping found for it in "
            f"order to collapse on); fields: {', '.join(known)}"
        )

    def _heads(self, ctx: SearchContext, ranking: Ranking) -> Ranking:
        keys = [str(key) for key in ranking.ids.tolist()]
        seen: set[Hashable] = set()
        kept: list[int] = []
        fields: list[dict[str, list[Any]]] = []
        for position, (values,) in enumerate(window_values(ctx, keys, [self.field])):
            value = self._single(keys[position], values)
            group = _group_of(value)
            if group not in seen:
                seen.add(group)
                kept.append(position)
                fields.append({self.field: [value]})
        heads = ranking.take(np.array(kept, dtype=np.int64))
        held = np.empty(len(fields), dtype=object)
        held[:] = fields
        return dataclasses.replace(heads, fields=held)

    def _single(self, key: str, values: list[Any]) -> Any:
        """A hit's one value of the field (None without one: an object holds none, as filters
        read it), refused where it holds several, as Elasticsearch refuses it."""
        if values and all(isinstance(value, str) for value in values):
            # One keyword given twice is one value (Elasticsearch's keyword doc values).
            values = list(dict.fromkeys(values))
        if len(values) > 1:
            raise InvalidInputError(
                f"failed to collapse document {key!r:.80}, the collapse field {self.field!r} "
                f"must be single valued (it holds {len(values)} values); collapse on a field "
                "holding one keyword or number per document"
            )
        return values[0] if values else None


def _group_of(value: Any) -> Hashable:
    """A value's group: 1 and 1.0 are one, "1" and 1 two, as a keyword and a number, True and
    1 two. Numbers compare exactly (Python's == and hash: 7 == 7.0): as floats, ids past 2^53
    (2^53 and 2^53 + 1) were one group, where Elasticsearch's long keeps them apart."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)
    return ("keyword", value)


def _deepened(tree: Retriever, run: Run, keep: Keep) -> Run:
    """``run`` asked for as many hits as ``keep`` needs to leave ``size``: the tree's window
    (or a knn's k) at once where it has one, else twice as many until enough are kept or the
    ranking ends."""
    bound = _ranking_bound(tree)

    def deep(ctx: SearchContext, size: int) -> Ranking:
        depth = max(size, 1, bound or 0)
        while True:
            ranking = run(ctx, depth)
            kept = keep(ctx, ranking)
            ended = len(ranking) < depth or depth >= (bound or MAX_COUNT)
            if len(kept) >= size or ended:
                return kept.top(size)
            depth = min(2 * depth, bound or MAX_COUNT)

    return deep


def _ranking_bound(tree: Retriever) -> int | None:
    """The most hits ``tree`` ranks whatever it is asked: its top window, a knn's k, a cut."""
    top, cut = top_node(tree)
    own = top_window(top) or (top.k if isinstance(top, Knn) else None)
    bounds = [bound for bound in (cut, own) if bound is not None]
    return min(bounds) if bounds else None


def parse_collapse(spec: Any) -> Any:
    """The field of a search body's ``collapse`` (None: not given; ``Collapse`` checks it is
    a name), its other keys refused."""
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = {"field": spec}
    if not isinstance(spec, dict) or "field" not in spec:
        raise InvalidInputError(
            f'collapse must be an object naming its field, e.g. {{"field": "family"}}, got '
            f"{spec!r:.80}"
        )
    for key in spec:
        if key in ("inner_hits", "max_concurrent_group_searches"):
            raise InvalidInputError(
                f"collapse.{key} is not supported: semrank returns each group's best hit "
                "alone (with fields: {field: [value]}); search the group's other hits with a "
                "term filter on its value"
            )
        if key != "field":
            raise InvalidInputError(f"collapse.{key} is not supported; collapse takes field only")
    return spec["field"]


def with_hit_stages(
    tree: Retriever, post_filter: FilterSpec | None = None, collapse: Any = None
) -> Retriever:
    """``tree`` with a ``post_filter`` and a ``collapse`` (JSON, or a field name) over its hits,
    where given: the post_filter first, as Elasticsearch collapses the hits it leaves."""
    field = parse_collapse(collapse)
    if post_filter is not None:
        tree = PostFilter(tree, post_filter)
    if field is not None:
        tree = Collapse(tree, field)
    return tree


def post_filter_of(tree: Retriever) -> Filter | None:
    """The post_filters over ``tree``'s hits (those its total counts), or None."""
    found: list[Filter] = []
    while isinstance(tree, Cutoff | Weighted | HitStage):
        if isinstance(tree, PostFilter):
            found.append(tree.parsed)
        tree = tree.retriever
    return all_of(*found) if found else None


def check_stage_paging(tree: Retriever, sort: SortRequest | None) -> None:
    """A collapsed search pages by ``from``: a cursor past a group's best hit would meet the
    group again on the next page."""
    if sort is not None and sort.search_after is not None and has_collapse(tree):
        raise InvalidInputError(
            "search_after cannot page a collapsed search here: page the groups with from and "
            "size instead"
        )


def passing_both(within: Filter, post: Filter | None, now: datetime) -> Filter:
    """The documents passing ``within`` and ``post`` (where given), date math read at ``now``."""
    return resolved(within if post is None else Bool(must=(within, post)), now)


def has_collapse(tree: Retriever) -> bool:
    return any(isinstance(node, Collapse) for node in tree_nodes(tree))
