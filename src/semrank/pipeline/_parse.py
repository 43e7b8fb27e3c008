"""Elasticsearch retriever JSON -> retriever tree.

Accepted: ``standard`` (``match``, ``multi_match``, or either as a ``bool`` query's ``must``
beside its ``filter`` and ``must_not``), ``knn``, ``rrf``, ``linear``,
``text_similarity_reranker``, semrank's ``cutoff``; nested to any depth; a ``filter`` on every
Elasticsearch retriever (``semrank.retrieve.parse_filter``; a parent's holds for its children
too); either the bare retriever object or a whole ``_search`` body ``{"retriever": {...},
"size": n}``, or a classic one (``query``, ``knn``, ``rank.rrf``: ``_classic_tree``, the tree
that answers it). Unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from semrank._checks import MAX_WEIGHT, UnreadableJSONError, is_finite_number, loads_json
from semrank.errors import DataFormatError, InvalidInputError
from semrank.pipeline._context import PLACEHOLDER
from semrank.pipeline._nodes import (
    BM25,
    FUSION_WINDOW,
    RRF,
    ConstantScore,
    Cutoff,
    Knn,
    Linear,
    Retriever,
    TextSimilarityReranker,
    check_page,
    check_window,
    own_filter,
    tree_nodes,
)
from semrank.pipeline._post import with_hit_stages
from semrank.pipeline._sorting import SortRequest, sort_request
from semrank.retrieve import (
    NORMALIZERS,
    Filter,
    HighlightSpec,
    all_of,
    as_filter,
    optional_filter,
    parse_filter,
    parse_highlight,
)
from semrank.store import ALL_TEXT_FIELDS, VECTOR_FIELD

# `_source` is taken as true or false only: documents come whole or not at all, and a filter
# that were accepted and ignored would hand back fields the caller meant to leave out.
_SEARCH_BODY_KEYS = {"retriever", "size", "from", "_source", "highlight", "track_scores"}
# Over the tree's ranked hits (``semrank.pipeline._post``), beside a retriever or a query.
HIT_STAGE_KEYS = ("post_filter", "collapse")
# A sort by fields and its paging: a classic body's, or its top standard retriever's.
SORT_KEYS = ("sort", "search_after")
# What to send instead of an Elasticsearch _search key a search body does not take: the one
# text of each, which the library, the CLI and the HTTP server all say.
SEARCH_KEY_HINTS = {
    "_source": "hits carry whole documents (or none); a field filter is not supported",
    "knn": 'a top-level knn search goes into the tree: "retriever": {"rrf": {"retrievers": '
    '[{"standard": ...}, {"knn": ...}]}} (or "retriever": {"knn": ...} alone)',
    "rank": 'rank.rrf is the rrf retriever: "retriever": {"rrf": {"retrievers": [...]}}',
    "min_score": "min_score goes on a text_similarity_reranker retriever (its re-ranking scores)",
    "sort": 'a sort goes into the JSON body: "sort": [{"date": "desc"}] (with a retriever, '
    'into its standard retriever: {"standard": {"query": ..., "sort": [...]}})',
}
# An Elasticsearch _search body's top-level query (its classic shape, before retrievers).
QUERY_DSL_HINT = (
    "Elasticsearch query DSL (match, multi_match, bool) goes under "
    '"retriever": {"standard": {"query": {...}}}'
)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInputError(f"{where} must be a JSON object, got {type(value).__name__}")
    return value


def _keys(
    body: dict[str, Any],
    where: str,
    allowed: set[str],
    required: frozenset[str] | set[str] = frozenset(),
) -> None:
    unknown = set(body) - allowed
    if unknown:
        raise InvalidInputError(
            f"{where}: unsupported key(s) {', '.join(repr(k) for k in sorted(unknown))}; "
            f"supported: {', '.join(sorted(allowed))}"
        )
    missing = set(required) - set(body)
    if missing:
        raise InvalidInputError(f"{where}: missing required key(s) {', '.join(sorted(missing))}")


def _single(spec: dict[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    if len(spec) != 1:
        raise InvalidInputError(
            f"{where} must have exactly one key naming its type ({', '.join(sorted(_PARSERS))}), "
            f"got {', '.join(repr(k) for k in spec) or 'none'}"
        )
    kind, body = next(iter(spec.items()))
    if kind not in _PARSERS:
        raise InvalidInputError(
            f"{where}: unknown retriever {kind!r}; supported: {', '.join(sorted(_PARSERS))}"
        )
    return kind, _object(body, f"{where}.{kind}")


def _text(value: Any, where: str) -> str | None:
    """A query text; the bare placeholder means "the query given at search time" (None)."""
    if value is None or value == PLACEHOLDER:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"{where} must be a string, got {type(value).__name__}")
    return value


def _number(value: Any, where: str) -> float:
    if not is_finite_number(value):
        raise InvalidInputError(f"{where} must be a finite number, got {value!r:.60}")
    return float(value)


def _field_boost(name: Any, where: str) -> tuple[str, float]:
    if not isinstance(name, str):
        raise InvalidInputError(f"{where} must be field names like 'title^2', got {name!r:.60}")
    field, _, boost = name.partition("^")
    try:
        value = float(boost) if boost else 1.0
    except ValueError as exc:
        raise InvalidInputError(f"bad field boost in {name!r}; write e.g. 'title^2'") from exc
    if not is_finite_number(value, at_least=0, at_most=MAX_WEIGHT):
        raise InvalidInputError(
            f"field boost in {name!r} must be a number from 0 to {MAX_WEIGHT:g}; write e.g. "
            "'title^2'"
        )
    return field, value


def _boost(value: Any, where: str) -> float:
    if not is_finite_number(value, at_least=0, at_most=MAX_WEIGHT):
        raise InvalidInputError(
            f"{where} must be a number from 0 to {MAX_WEIGHT:g}, got {value!r:.60}"
        )
    return float(value)


def _check_operator(value: Any, where: str) -> None:
    """Only Elasticsearch's default, "or": BM25 ranks documents with any of the words."""
    if not isinstance(value, str) or value.lower() != "or":
        raise InvalidInputError(f"{where}: only operator 'or' (BM25 ranking) is supported")


def _query_boost(value: Any, where: str) -> float:
    boost = _boost(value, where)
    if boost == 0:  # every score 0: no hit would rank, and a fusion would lose the branch
        raise InvalidInputError(
            f"{where} must be above 0 (0 scores every document 0); omit boost, or drop this "
            "retriever"
        )
    return boost


def _match(body: dict[str, Any], where: str) -> BM25:
    if len(body) != 1:
        raise InvalidInputError(f"{where}.match takes exactly one field, got {list(body)}")
    field, value = next(iter(body.items()))
    boost = 1.0
    if isinstance(value, dict):
        _keys(value, f"{where}.match.{field}", {"query", "operator", "boost"}, {"query"})
        _check_operator(value.get("operator", "or"), f"{where}.match")
        boost = _query_boost(value.get("boost", 1.0), f"{where}.match.{field}.boost")
        value = value["query"]
    if not isinstance(value, str):
        raise InvalidInputError(f"{where}.match.{field} must be the query text")
    text = _text(value, f"{where}.match.{field}")
    if boost == 1.0:
        return BM25(field=field, text=text)
    # Boosted as multi_match's "field^N": the scores scale, which a linear fusion without
    # normalization (or a caller reading scores) sees; a ranking alone would not change.
    return BM25(fields=((field, boost),), text=text)


# Elasticsearch's tie_breaker that each type scores by: best_fields is the best field's score
# (0: the other fields add nothing), most_fields the sum of all (1: each adds all of its own).
_TIE_BREAKERS = {"best_fields": 0.0, "most_fields": 1.0}


def _multi_match(body: dict[str, Any], where: str) -> BM25:
    at = f"{where}.multi_match"
    _keys(body, at, {"query", "fields", "type", "operator", "tie_breaker", "boost"}, {"query"})
    fields = _multi_match_fields(body.get("fields", [ALL_TEXT_FIELDS]), at)
    mode = body.get("type", "best_fields")
    if mode in ("combined_fields", "cross_fields") and [f for f, _ in fields] == [ALL_TEXT_FIELDS]:
        mode = "best_fields"
    if not isinstance(mode, str) or mode not in _TIE_BREAKERS:
        raise InvalidInputError(
            f"{at} type {mode!r} is not supported; use best_fields or most_fields, "
            "or fields ['*'] to search all text fields as one"
        )
    _check_operator(body.get("operator", "or"), at)
    _check_tie_breaker(body.get("tie_breaker", _TIE_BREAKERS[mode]), mode, len(fields), at)
    boost = _query_boost(body.get("boost", 1.0), f"{at}.boost")
    # A query boost scales every field's score, so the best field's and the sum's alike.
    fields = [(name, weight * boost) for name, weight in fields]
    if any(weight > MAX_WEIGHT for _, weight in fields):
        raise InvalidInputError(
            f"{at}: boost {boost:g} times a field's boost is above {MAX_WEIGHT:g}; lower either"
        )
    text = _text(body["query"], f"{at}.query")
    if len(fields) == 1 and fields[0][1] == 1.0:
        return BM25(field=fields[0][0], text=text)
    return BM25(fields=tuple(fields), mode=mode, text=text)


def _multi_match_fields(names: Any, at: str) -> list[tuple[str, float]]:
    if not isinstance(names, list) or not names:
        raise InvalidInputError(
            f"{at}.fields must be a non-empty list, e.g. ['title^2', 'text'], got {names!r:.60}"
        )
    fields = [_field_boost(f, f"{at}.fields") for f in names]
    repeated = sorted(name for name, count in Counter(f for f, _ in fields).items() if count > 1)
    if repeated:  # each listed field is a BM25 search of its own
        raise InvalidInputError(
            f"{at}.fields names {', '.join(map(repr, repeated[:5]))} more than "
            "once; name each field once, with its boost (e.g. 'title^3')"
        )
    if not any(boost > 0 for _, boost in fields):
        raise InvalidInputError(
            f"{at}.fields: every boost is 0, which scores every document 0; give "
            "at least one field a positive boost, e.g. ['title^2', 'text']"
        )
    return fields


def _check_tie_breaker(value: Any, mode: str, field_count: int, at: str) -> None:
    """The tie_breaker the type scores by (any, of one field: it adds nothing); another would
    be a blend of the best field and the rest that semrank does not compute."""
    if not is_finite_number(value, at_least=0, at_most=1):
        raise InvalidInputError(f"{at}.tie_breaker must be a number from 0 to 1, got {value!r:.60}")
    if field_count > 1 and float(value) != _TIE_BREAKERS[mode]:
        raise InvalidInputError(
            f"{at}.tie_breaker {value!r} is not supported: semrank's best_fields scores a "
            "document by its best field alone (tie_breaker 0) and most_fields by the sum of its "
            "fields (tie_breaker 1); use one of those, or leave tie_breaker out"
        )


def _filter(body: dict[str, Any], where: str) -> Filter | None:
    """A retriever's ``filter``: documents it may return (all must pass; none score)."""
    return optional_filter(body.get("filter"), f"{where}.filter")


def _standard(body: dict[str, Any], where: str) -> Retriever:
    given = [key for key in SORT_KEYS if key in body]
    if given:  # the top one's were taken off by _lifted_sort
        raise InvalidInputError(
            f"{where}.{given[0]}: only the top retriever of a tree is sorted; a compound "
            "retriever (rrf, linear, text_similarity_reranker) ranks its children's hits by "
            "score, as in Elasticsearch: sort a standard retriever at the top of the tree"
        )
    _keys(body, where, {"query", "filter"}, {"query"})
    node = _query_node(body["query"], f"{where}.query", where)
    flt = all_of(own_filter(node), _filter(body, where))
    return node if flt is None else dataclasses.replace(node, filter=flt)


def _query_node(spec: Any, at: str, where: str) -> BM25 | ConstantScore:
    """A query object (``standard``'s, or a classic body's top-level ``query``) as a BM25
    node, with its bool query's filter; ``where`` prefixes the match's own errors. A query
    that only filters (``_filter_query``) finds the documents passing it."""
    query = _object(spec, at)
    if not _scores(query):
        return _filter_query(query, at)
    query, query_filter, at = _scoring_query(query, at)
    if len(query) != 1 or next(iter(query)) not in ("match", "multi_match"):
        raise InvalidInputError(
            f"{at}: only 'match' and 'multi_match' queries score (with a bool query's filter "
            f"and must_not beside them), got {list(query)}; a query that only filters takes "
            f"no match beside it"
        )
    kind, inner = next(iter(query.items()))
    inner = _object(inner, f"{at}.{kind}")
    node = _match(inner, where) if kind == "match" else _multi_match(inner, where)
    return node if query_filter is None else dataclasses.replace(node, filter=query_filter)


def _filter_query(query: dict[str, Any], at: str) -> ConstantScore:
    """A query without a match: ``constant_score`` scores its filter's documents its boost
    (default 1); a ``bool`` of filter and must_not clauses alone 0, as Elasticsearch's filter
    context does; any other (``term``, ``range``, ``match_all``, a ``bool`` with must) 1,
    where Elasticsearch scores a term by its frequency (semrank's are filters)."""
    if set(query) == {"constant_score"}:
        body = _object(query["constant_score"], f"{at}.constant_score")
        _keys(body, f"{at}.constant_score", {"filter", "boost"}, {"filter"})
        boost = _boost(body.get("boost", 1.0), f"{at}.constant_score.boost")
        return ConstantScore(parse_filter(body["filter"], f"{at}.constant_score.filter"), boost)
    inner = query.get("bool")
    filter_context = set(query) == {"bool"} and isinstance(inner, dict)
    unscored = filter_context and not {"must", "should"} & set(inner or {})
    return ConstantScore(parse_filter(query, at), 0.0 if unscored else 1.0)


def parse_count_query(spec: Any, where: str = "query") -> BM25 | Filter:
    """An Elasticsearch ``_count`` query: a scoring query as ``_search`` takes it (``match``,
    ``multi_match``, a ``bool`` with one of them in ``must``) as its BM25 node, with its
    filter; any other (``match_all``, ``term``, ``range``, ``constant_score``, a ``bool`` of
    those) as the filter it is, as ``_search`` finds its documents."""
    node = _query_node(spec, where, where)
    return node if isinstance(node, BM25) else as_filter(node.filter)


def _scores(query: dict[str, Any]) -> bool:
    """Whether ``query`` is (or holds as a bool's must) a ``match`` or ``multi_match``."""
    if set(query) == {"bool"} and isinstance(query["bool"], dict):
        must = query["bool"].get("must")
        clauses = must if isinstance(must, list) else [must]
        return any(_scores(c) for c in clauses if isinstance(c, dict))
    return bool(set(query) & {"match", "multi_match"})


def _scoring_query(query: dict[str, Any], where: str) -> tuple[dict[str, Any], Filter | None, str]:
    """A standard retriever's scoring query, its filter and where the query is: a bool query
    in the classic shape ``{"must": <match | multi_match>, "filter": ..., "must_not": ...}``
    has them apart."""
    if set(query) != {"bool"}:
        return query, None, where
    at = f"{where}.bool"
    body = _object(query["bool"], at)
    if "should" in body:
        raise InvalidInputError(
            f"{at}.should is not supported (should clauses only add to scores here); put "
            'the query in "must" and the clauses every hit must pass in "filter"'
        )
    _keys(body, at, {"must", "filter", "must_not"}, {"must"})
    must = body["must"]
    if isinstance(must, list):
        if len(must) != 1:
            raise InvalidInputError(
                f"{at}.must takes one match or multi_match query, got {len(must)} clauses; "
                'put the clauses every hit must pass in "filter"'
            )
        must = must[0]
    clauses = {key: body[key] for key in ("filter", "must_not") if key in body}
    flt = parse_filter({"bool": clauses}, where) if clauses else None
    return _object(must, f"{at}.must"), flt, f"{at}.must"


def _knn(body: dict[str, Any], where: str) -> Retriever:
    allowed = {
        "field",
        "query_vector",
        "query_vector_builder",
        "query_text",
        "k",
        "num_candidates",
        "similarity",
        "filter",
    }
    _keys(body, where, allowed)
    sources = [k for k in ("query_vector", "query_vector_builder", "query_text") if k in body]
    if len(sources) > 1:  # Elasticsearch refuses the pair too; one would be silently ignored
        raise InvalidInputError(
            f"{where}: give only one of query_vector, query_vector_builder and query_text, "
            f"got {' and '.join(sources)}"
        )
    text, model_id = body.get("query_text"), None
    text_at = f"{where}.query_text"
    builder = body.get("query_vector_builder")
    if builder is not None:
        embedding = _object(
            _object(builder, f"{where}.query_vector_builder").get("text_embedding"),
            f"{where}.query_vector_builder.text_embedding",
        )
        _keys(
            embedding,
            f"{where}.query_vector_builder.text_embedding",
            {"model_id", "model_text"},
            {"model_text"},
        )
        text, model_id = embedding["model_text"], embedding.get("model_id")
        text_at = f"{where}.query_vector_builder.text_embedding.model_text"
    vector = body.get("query_vector")
    if vector is None and text is None:
        raise InvalidInputError(f"{where}: give query_vector, query_vector_builder or query_text")
    return Knn(
        field=body.get("field", "embedding"),
        text=_text(text, text_at),
        k=body.get("k"),
        num_candidates=body.get("num_candidates"),
        model_id=model_id,
        vector=None if vector is None else _vector(vector, f"{where}.query_vector"),
        similarity=body.get("similarity"),
        filter=_filter(body, where),
    )


def _vector(value: Any, where: str) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise InvalidInputError(f"{where} must be a non-empty list of numbers, got {value!r:.60}")
    return tuple(_number(x, f"{where}[{i}]") for i, x in enumerate(value))


def _weighted_children(
    items: Any, where: str, with_normalizer: bool
) -> list[tuple[Retriever, float, str | None]]:
    """Children of rrf / linear: bare retrievers or ``{"retriever", "weight"[, "normalizer"]}``."""
    if not isinstance(items, list) or not items:
        raise InvalidInputError(f"{where}.retrievers must be a non-empty list")
    allowed = {"retriever", "weight", "normalizer"} if with_normalizer else {"retriever", "weight"}
    children: list[tuple[Retriever, float, str | None]] = []
    for position, raw in enumerate(items):
        at = f"{where}.retrievers[{position}]"
        item = _object(raw, at)
        if "retriever" not in item:
            children.append((_node(item, at), 1.0, None))
            continue
        _keys(item, at, allowed)
        weight = _number(item.get("weight", 1.0), f"{at}.weight")
        children.append(
            (_node(item["retriever"], f"{at}.retriever"), weight, item.get("normalizer"))
        )
    return children


def _fusion_window(body: dict[str, Any]) -> Any:
    """An rrf / linear window: Elasticsearch's default of 10 where it is left out, wherever the
    node is (a parent asking for more hits gets no more than 10 from it)."""
    window = body.get("rank_window_size")
    return FUSION_WINDOW if window is None else window


def _refuse_multi_field(body: dict[str, Any], where: str, kind: str) -> None:
    """Elasticsearch's multi-field form (``query`` + ``fields``, no ``retrievers``) expands to
    a retriever per field from the index mapping: say how to write that expansion here."""
    if "query" not in body and "fields" not in body:
        return
    query = body.get("query")
    text = query[:60] if isinstance(query, str) else "TEXT"
    named = body.get("fields") if isinstance(body.get("fields"), list) else []
    fields = [f.partition("^")[0] for f in named if isinstance(f, str)]  # type: ignore[union-attr]
    lexical = [f for f in fields if f != VECTOR_FIELD][:3] or ["title", "text"]
    children: list[dict[str, Any]] = [
        {"standard": {"query": {"match": {field: text}}}} for field in lexical
    ]
    children.append({"knn": {"field": VECTOR_FIELD, "query_text": text}})
    example = {"retrievers": children, **({"normalizer": "minmax"} if kind == "linear" else {})}
    raise InvalidInputError(
        f"{where}: the multi-field form (query + fields) is not supported; write its retrievers "
        "instead: a standard match per text field (or one multi_match over them) and a knn "
        "where the index has vectors, e.g. "
        f"{json.dumps({kind: example}, ensure_ascii=False)}"
    )


def _rrf(body: dict[str, Any], where: str) -> Retriever:
    _refuse_multi_field(body, where, "rrf")
    allowed = {"retrievers", "rank_window_size", "rank_constant", "filter"}
    _keys(body, where, allowed, {"retrievers"})
    children = _weighted_children(body["retrievers"], where, with_normalizer=False)
    weights = tuple(w for _, w, _ in children)
    return RRF(
        tuple(r for r, _, _ in children),
        rank_window_size=_fusion_window(body),
        rank_constant=body.get("rank_constant", 60),
        weights=None if all(w == 1.0 for w in weights) else weights,
        filter=_filter(body, where),
    )


def _linear(body: dict[str, Any], where: str) -> Retriever:
    _refuse_multi_field(body, where, "linear")
    allowed = {"retrievers", "rank_window_size", "normalizer", "filter"}
    _keys(body, where, allowed, {"retrievers"})
    default = body.get("normalizer", "none")  # Elasticsearch's default: scores as they are
    children = _weighted_children(body["retrievers"], where, with_normalizer=True)
    normalizers = tuple(n or default for _, _, n in children)
    for name in normalizers:
        if name not in NORMALIZERS:
            raise InvalidInputError(
                f"{where}: unknown normalizer {name!r}; use one of {NORMALIZERS}"
            )
    return Linear(
        tuple(r for r, _, _ in children),
        weights=tuple(w for _, w, _ in children),
        normalizers=normalizers,
        rank_window_size=_fusion_window(body),
        filter=_filter(body, where),
    )


def _reranker(body: dict[str, Any], where: str) -> Retriever:
    allowed = {
        "retriever",
        "field",
        "inference_id",
        "inference_text",
        "rank_window_size",
        "min_score",
        "filter",
    }
    _keys(body, where, allowed, {"retriever"})
    return TextSimilarityReranker(
        _node(body["retriever"], f"{where}.retriever"),
        field=body.get("field", ALL_TEXT_FIELDS),
        inference_id=body.get("inference_id"),
        inference_text=_text(body.get("inference_text"), f"{where}.inference_text"),
        rank_window_size=body.get("rank_window_size", 10),
        min_score=body.get("min_score"),
        filter=_filter(body, where),
    )


def _cutoff(body: dict[str, Any], where: str) -> Retriever:
    _keys(body, where, {"retriever", "size"}, {"retriever", "size"})
    return Cutoff(_node(body["retriever"], f"{where}.retriever"), body["size"])


_PARSERS: dict[str, Callable[[dict[str, Any], str], Retriever]] = {
    "standard": _standard,
    "knn": _knn,
    "rrf": _rrf,
    "linear": _linear,
    "text_similarity_reranker": _reranker,
    "cutoff": _cutoff,
}


def _node(spec: Any, where: str) -> Retriever:
    kind, inner = _single(_object(spec, where), where)
    return _PARSERS[kind](inner, f"{where}.{kind}")


def _load_json(spec: str | Path) -> Any:
    if isinstance(spec, str) and spec.lstrip().startswith("{"):
        try:
            return loads_json(spec)
        except UnreadableJSONError as exc:
            raise InvalidInputError(f"retriever JSON {exc.msg}") from None
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"retriever JSON is not valid ({exc.msg})") from exc
    path = Path(spec).expanduser()
    try:
        # utf-8-sig: Windows editors start files with a byte order mark
        return loads_json(path.read_text("utf-8-sig"))
    except UnreadableJSONError as exc:
        raise InvalidInputError(f"{path}: JSON {exc.msg}") from None
    except FileNotFoundError as exc:
        raise DataFormatError(
            f"retriever file {path} does not exist; give a retriever JSON file, or one of the "
            "shorthands bm25, dense, hybrid, linear (each with an optional +rerank)"
        ) from exc
    except IsADirectoryError as exc:
        raise DataFormatError(f"retriever file {path} is a folder; pass a JSON file") from exc
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"retriever file {path} is not UTF-8; save it as UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc


class SearchBody(NamedTuple):
    """A retriever JSON read: its tree, whether its hits carry documents (``_source``), the
    hits its page skips (a ``_search`` body's ``from``: its tree, cut at ``from + size``, ranks
    them before the page's) and the body's own ``size`` (None where it gives none: a tree's
    own ``cutoff`` is no page size) and its ``highlight`` (None where it asks for none)."""

    tree: Retriever
    source: bool
    offset: int = 0
    size: int | None = None
    highlight: HighlightSpec | None = None
    sort: SortRequest | None = None  # a sort by fields: a classic body's or its standard's


def parse_retriever(spec: dict[str, Any] | str | Path) -> Retriever:
    """A retriever tree from Elasticsearch JSON: a dict, a JSON string or a path to a file.

    A ``_search`` body ``{"retriever": {...}, "size": n}`` is accepted too (``size`` becomes a
    cut-off; a top window below it is refused, as Elasticsearch refuses it).
    """
    return parse_search_body(spec).tree


def parse_search_body(spec: dict[str, Any] | str | Path, *, offset: int = 0) -> SearchBody:
    """``parse_retriever``'s tree, with the body's ``_source`` (true, or false: hits without
    documents, as Elasticsearch answers it; a field filter is refused). ``offset``: the hits a
    page skips, given apart from a ``_search`` body without ``from`` (``search(offset=)``,
    ``--offset``, the HTTP search's ``from``): the body's ``size`` is that page's, as if the
    body said ``from`` (its cut at ``size`` left the page empty)."""
    loaded = _load_json(spec) if isinstance(spec, str | Path) else spec  # a list: named below
    body, sorted_by = _lifted_sort(_object(loaded, "retriever"))
    whole_body = "retriever" in body or _is_classic(body)  # not a bare retriever
    if whole_body and offset and "from" not in body:
        body = {**body, "from": offset}
    try:
        tree = _search_body_tree(body)
    except RecursionError:  # a file nested hundreds of levels deep: bad input, not a bug
        raise InvalidInputError(
            "the retriever tree is nested too deeply to read (hundreds of levels); flatten it"
        ) from None
    _check_tree_size(tree)
    if not whole_body:
        return SearchBody(tree, source=True, sort=sorted_by)
    marks = body.get("highlight")
    if "track_scores" in body:
        sorted_by = _tracking(sorted_by, body["track_scores"])
    return SearchBody(
        tree,
        source=body.get("_source", True),
        offset=_body_from(body),
        size=_body_size(body),
        highlight=None if marks is None else parse_highlight(marks),
        sort=sorted_by,
    )


def _lifted_sort(body: dict[str, Any]) -> tuple[dict[str, Any], SortRequest | None]:
    """The body without its sort, and its sort: a classic body's ``sort`` and
    ``search_after``, or those of its top ``standard`` retriever (a bare one, or a body's);
    Elasticsearch refuses them beside a ``retriever``."""
    beside = [key for key in SORT_KEYS if key in body and "retriever" in body]
    if beside:
        raise InvalidInputError(
            f"search body: {beside[0]!r} cannot be given beside 'retriever' (Elasticsearch "
            f"refuses them together too); put it into the standard retriever: "
            f'{{"retriever": {{"standard": {{"query": ..., "{beside[0]}": ...}}}}}}'
        )
    top = body.get("retriever", body)
    standard = top.get("standard") if isinstance(top, dict) and len(top) == 1 else None
    if isinstance(standard, dict) and any(key in standard for key in SORT_KEYS):
        taken = {k: v for k, v in standard.items() if k in SORT_KEYS}
        kept = {"standard": {k: v for k, v in standard.items() if k not in SORT_KEYS}}
        body = {**body, "retriever": kept} if "retriever" in body else kept
    elif _is_classic(body) and any(key in body for key in SORT_KEYS):
        taken = {k: v for k, v in body.items() if k in SORT_KEYS}
        body = {k: v for k, v in body.items() if k not in SORT_KEYS}
        if "rank" in body:
            raise InvalidInputError(
                "search body: sort cannot be given beside rank (Elasticsearch refuses it: rrf "
                "ranks by its fused scores); drop one of them"
            )
    else:
        return body, None
    return body, sort_request(taken.get("sort"), taken.get("search_after"))


def _tracking(sorted_by: SortRequest | None, value: Any) -> SortRequest | None:
    """A body's ``track_scores``: the sort's hits keep their scores (no sort: they do)."""
    request = sort_request(None if sorted_by is None else sorted_by.sort, None, value)
    if sorted_by is None or request is None:
        return sorted_by
    return dataclasses.replace(sorted_by, track_scores=request.track_scores)


# Retrievers in one tree at most: each runs its own search (a knn one embeds its query text
# first), none of which a deadline stops, and 20,000 knn children in a body held the CPU
# for minutes after the client's answer.
MAX_TREE_NODES = 100


def _check_tree_size(tree: Retriever) -> None:
    """Each retriever, and each field a multi_match lists, is a search of its own."""
    count = sum(max(1, len(getattr(node, "fields", None) or ())) for node in tree_nodes(tree))
    if count > MAX_TREE_NODES:
        raise InvalidInputError(
            f"the retriever tree holds {count} searches (retrievers, and the fields of each "
            f"multi_match); a search takes at most {MAX_TREE_NODES}: combine fewer retrievers "
            "or fields"
        )


def _search_body_tree(body: dict[str, Any]) -> Retriever:
    if "retriever" not in body and not _is_classic(body):
        return _node(body, "retriever")
    hinted = sorted(set(body) & SEARCH_KEY_HINTS.keys() - CLASSIC_SEARCH_KEYS - {"sort"})
    if "_source" in body and isinstance(body["_source"], bool):
        hinted.remove("_source")  # true or false: documents whole or none, as asked
    if hinted:
        raise InvalidInputError(
            f"search body: unsupported key {hinted[0]!r}; {SEARCH_KEY_HINTS[hinted[0]]}"
        )
    size = _body_size(body)
    if "retriever" in body:
        beside = sorted(set(body) & CLASSIC_SEARCH_KEYS)
        if beside:  # Elasticsearch: "cannot specify [retriever] and [query]"
            raise InvalidInputError(
                f"search body: {beside[0]!r} cannot be given beside 'retriever' (Elasticsearch "
                "refuses them together too); send the search as the retriever tree alone, or as "
                "the classic query / knn / rank without a retriever"
            )
        _keys(body, "search body", {*_SEARCH_BODY_KEYS, *HIT_STAGE_KEYS}, {"retriever"})
        tree = _node(body["retriever"], "retriever")
    else:
        _keys(body, "search body", _CLASSIC_BODY_KEYS)
        tree = _classic_tree(body, CLASSIC_SIZE if size is None else size, _body_from(body))
    tree = with_hit_stages(tree, body.get("post_filter"), body.get("collapse"))
    if size is None:
        return tree
    # Elasticsearch holds the page's size to the top window, not from + size: a page reaching
    # past the window returns the window's hits on it (fewer, or none), as its rrf docs say.
    check_window(tree, size)
    return Cutoff(tree, _body_from(body) + size)  # the ranking through the page's end


def _body_from(body: dict[str, Any]) -> int:
    """A body's ``from``: the hits of the ranking its page skips (Elasticsearch's default 0),
    its page ending at most MAX_RESULT_WINDOW deep (``size`` defaults to 10 there too)."""
    offset = body.get("from", 0)
    check_page(offset, body.get("size", CLASSIC_SIZE), ("search body from", "size"))
    return int(offset)


def _body_size(body: dict[str, Any]) -> int | None:
    if "size" not in body:
        return None
    size = body["size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InvalidInputError(
            f"search body size must be a positive integer (the hits to return), got {size!r:.60}"
        )
    return size


# --- the classic _search body: query, knn and rank beside each other, before retrievers ------
# Elasticsearch's search API: https://www.elastic.co/guide/en/elasticsearch/reference/8.13/
# search-search.html (query, knn, rank, sub_searches; size defaults to 10).
CLASSIC_SEARCH_KEYS = frozenset({"query", "knn", "rank", "sub_searches"})
_CLASSIC_BODY_KEYS = {
    *CLASSIC_SEARCH_KEYS,
    *HIT_STAGE_KEYS,
    "size",
    "from",
    "_source",
    "highlight",
    "track_scores",
}
CLASSIC_SIZE = 10


def _is_classic(body: dict[str, Any]) -> bool:
    """Whether a body without ``retriever`` is a classic search body rather than a bare
    retriever: ``{"knn": {...}}`` alone reads as the knn retriever (the same search), unless
    it holds what only the top-level knn takes (a list of them, ``boost``) or has company."""
    if set(body) & (CLASSIC_SEARCH_KEYS - {"knn"}):
        return True
    knn = body.get("knn")
    if knn is None:
        return False
    return len(body) > 1 or not isinstance(knn, dict) or "boost" in knn


def _classic_tree(body: dict[str, Any], size: int, offset: int = 0) -> Retriever:
    """A classic body as the retriever tree that returns Elasticsearch's hits for it.

    ``query`` alone is a ``standard`` retriever and one ``knn`` a knn retriever. Together (or
    several knn searches) Elasticsearch takes the union of the query's matches and each knn's
    k global nearest neighbours, and scores a hit by the sum of its scores times each one's
    boost, 0 from a search that did not find it (knn-search.html, "Combine approximate kNN
    with other features"): that is ``linear`` with weights the boosts and normalizer
    ``none`` (a missing score is 0 there too, and neither BM25 nor a knn score is negative).
    Its window holds every knn's k hits and the query's top ``offset + size`` (the page's
    end: ``from`` pages over the whole sum there, not over a window), which is as deep as a
    query-only hit can be and still be on the page; a knn hit the query ranks below that
    window gets its knn score alone (Elasticsearch adds its query score).
    ``rank: {"rrf": ...}`` fuses the same searches by rank instead (``_legacy_rrf``)."""
    searches = [(node, 1.0) for node in _classic_queries(body)]
    searches += _classic_knns(body.get("knn"), size)
    if "rank" in body:
        return _legacy_rrf(body["rank"], [node for node, _ in searches], size)
    if "sub_searches" in body:
        raise InvalidInputError(
            'search body: sub_searches are fused by rank only: add "rank": {"rrf": {}} (as '
            "Elasticsearch requires), or send one query"
        )
    if not searches:
        raise InvalidInputError("search body: give a query, a knn search, or a retriever")
    if len(searches) == 1 and searches[0][1] == 1.0:
        return searches[0][0]
    knn_ks = (node.k for node, _ in searches if isinstance(node, Knn) and node.k)
    window = max([offset + size, *knn_ks])
    return Linear(
        tuple(node for node, _ in searches),
        weights=tuple(boost for _, boost in searches),
        normalizers=("none",) * len(searches),
        rank_window_size=window,
    )


def _classic_queries(body: dict[str, Any]) -> list[Retriever]:
    """The body's ``query``, or the queries of its ``sub_searches`` (Elasticsearch 8.9-8.13,
    with rank only; never both)."""
    if "sub_searches" not in body:
        return [_query_node(body["query"], "query", "query")] if "query" in body else []
    if "query" in body:
        raise InvalidInputError(
            "search body: give query or sub_searches, not both (Elasticsearch refuses the pair "
            "too); put the query into sub_searches"
        )
    items = body["sub_searches"]
    if not isinstance(items, list) or not items:
        raise InvalidInputError(
            'search body: sub_searches must be a non-empty list of {"query": {...}} objects'
        )
    nodes: list[Retriever] = []
    for position, item in enumerate(items):
        at = f"sub_searches[{position}]"
        _keys(_object(item, at), at, {"query"}, {"query"})
        nodes.append(_query_node(item["query"], f"{at}.query", f"{at}.query"))
    return nodes


def _classic_knns(spec: Any, size: int) -> list[tuple[Retriever, float]]:
    """The top-level ``knn`` (an object or a list of them), each with its ``boost``. Its k
    defaults to ``size``, as in Elasticsearch 8.14 and later (earlier ones required it)."""
    if spec is None:
        return []
    many = isinstance(spec, list)
    if many and not spec:
        raise InvalidInputError("knn must be a knn search object or a non-empty list of them")
    found: list[tuple[Retriever, float]] = []
    for position, item in enumerate(spec if many else [spec]):
        at = f"knn[{position}]" if many else "knn"
        body = dict(_object(item, at))
        boost = _boost(body.pop("boost", 1.0), f"{at}.boost")
        body.setdefault("k", size)
        found.append((_knn(body, at), boost))
    return found


def _legacy_rrf(spec: Any, searches: list[Retriever], size: int) -> Retriever:
    """``rank: {"rrf": {...}}`` (Elasticsearch 8.8-8.13, before the rrf retriever): the same
    fusion over the query (or each of sub_searches) and each knn search, its window
    ``window_size`` (``rank_window_size`` from 8.14), 10 when left out
    (``RankBuilder.DEFAULT_WINDOW_SIZE``, the search's default size). Scores are ranks only,
    so a knn boost changes nothing there, as in Elasticsearch."""
    rank = _object(spec, "rank")
    _keys(rank, "rank", {"rrf"}, {"rrf"})
    rrf = _object(rank["rrf"], "rank.rrf")
    _keys(rrf, "rank.rrf", {"rank_constant", "rank_window_size", "window_size"})
    if {"rank_window_size", "window_size"} <= set(rrf):
        raise InvalidInputError(
            "rank.rrf: give rank_window_size or window_size (its name before Elasticsearch "
            "8.14), not both"
        )
    if len(searches) < 2:
        raise InvalidInputError(
            "rank.rrf fuses at least 2 result sets (a query and a knn search, several knn "
            f"searches or sub_searches), got {len(searches)}; drop rank to run the one search"
        )
    window = rrf.get("rank_window_size", rrf.get("window_size", FUSION_WINDOW))
    return RRF(tuple(searches), rank_window_size=window, rank_constant=rrf.get("rank_constant", 60))
