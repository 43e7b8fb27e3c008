"""A search's highlights: each hit's fragments per field (Elasticsearch's ``highlight``).

Lexical fragments mark the terms of the tree's match queries (with the index's BM25 analysis);
semantic ones (``type: "semantic"``) are the windows of a document its re-ranker scored best.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Sequence
from fnmatch import fnmatchcase
from typing import Any

from semrank.errors import InvalidInputError
from semrank.pipeline._context import ReadWindows, SearchContext
from semrank.pipeline._nodes import BM25, Retriever, TextSimilarityReranker, tree_nodes
from semrank.retrieve import HighlightOptions, HighlightSpec, highlight_text, query_terms
from semrank.store import ALL_TEXT_FIELDS
from semrank.store._base import field_text, field_value

Highlights = dict[str, list[str]]


def check_highlight(spec: HighlightSpec, tree: Retriever) -> None:
    """A semantic highlight needs a re-ranker's windows: refused, before the search runs, for
    a tree without one (a lexical fallback would answer another question than the one asked,
    unsaid)."""
    if spec.semantic and not any(isinstance(n, TextSimilarityReranker) for n in tree_nodes(tree)):
        raise InvalidInputError(
            'highlight type "semantic" shows the passages a re-ranker scored best, and this '
            "search re-ranks nothing: add a text_similarity_reranker to the retriever (or "
            '"+rerank" to a shorthand, --rerank to `semrank search`), or highlight with type '
            '"unified" (the query\'s words)'
        )


def hit_highlights(
    spec: HighlightSpec,
    tree: Retriever,
    ctx: SearchContext,
    ids: Sequence[str],
    documents: Sequence[dict[str, Any]],
) -> list[Highlights]:
    """Each hit's fragments by field, only fields with a fragment (as Elasticsearch answers)."""
    searched = _searched_texts(tree, ctx)
    terms_of: dict[tuple[str, bool], dict[str, int]] = {}
    params = ctx.store.settings.bm25
    answers = []
    for hit_id, document in zip(ids, documents, strict=True):
        found: Highlights = {}
        for pattern, options in spec.fields:
            for name in _field_names(pattern, document):
                if name in found:  # the first pattern naming a field decides its options
                    continue
                if options.semantic:
                    fragments = _semantic(ctx, hit_id, document, name, options)
                else:
                    key = (name, options.require_field_match)
                    if key not in terms_of:
                        texts = _texts_for(searched, name, options, ctx)
                        terms_of[key] = query_terms(texts, params)
                    # A list's values apart: a fragment never joins two of them.
                    values = field_value(document, name)  # a string, or a list of them
                    fragments = highlight_text(values, terms_of[key], params, options)
                if fragments:
                    found[name] = fragments
        answers.append(found)
    return answers


def _field_names(pattern: str, document: dict[str, Any]) -> Iterator[str]:
    """The document's fields of text a highlight field names: itself (a dotted path too), or
    with ``*`` wildcards its top-level ones (numbers and objects have no words to mark, as
    Elasticsearch highlights text fields only)."""
    if not any(c in pattern for c in "*?["):
        if _is_text(field_value(document, pattern)):
            yield pattern
        return
    for name, value in document.items():
        if fnmatchcase(name, pattern) and _is_text(value):
            yield name


def _is_text(value: object) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(v, str) for v in value) and bool(value)
    )


# (the fields a match query searched, None for a tree without one: every field), its text
_Searched = list[tuple[tuple[str, ...] | None, str]]


def _searched_texts(tree: Retriever, ctx: SearchContext) -> _Searched:
    """The texts the tree's match queries searched, with their fields; a tree without any
    (knn alone, re-ranked) has its query texts highlight every field: the words searched for."""
    nodes = tree_nodes(tree)
    lexical = [n for n in nodes if isinstance(n, BM25)]
    if lexical:
        return [
            (tuple(name for name, _ in n.fields) or (n.field,), ctx.text(n.text)) for n in lexical
        ]
    texts = {ctx.text(t) for t in tree.query_texts() if t is not None or ctx.query is not None}
    return [(None, text) for text in sorted(texts)]


def _texts_for(
    searched: _Searched, name: str, options: HighlightOptions, ctx: SearchContext
) -> list[str]:
    """The texts whose terms highlight field ``name``: with ``require_field_match`` (the
    default, as in Elasticsearch) those of queries searching it, else every one."""
    if not options.require_field_match:
        return [text for _, text in searched]
    text_fields = ctx.store.settings.text_fields
    return [
        text
        for fields, text in searched
        if fields is None or name in fields or (ALL_TEXT_FIELDS in fields and name in text_fields)
    ]


def _semantic(
    ctx: SearchContext,
    hit_id: str,
    document: dict[str, Any],
    name: str,
    options: HighlightOptions,
) -> list[str]:
    """The windows of field ``name`` the re-ranker scored best, best first: the parts of its
    windows within the field, where it re-ranked on every text field (none for a hit it did not
    re-rank, or a field it did not read)."""
    read = (ctx.windows or {}).get(hit_id)
    span = None if read is None else _field_in(read, name, document, ctx)
    if read is None or span is None:
        return []
    encode = html.escape if options.encoder == "html" else str
    fragments = []
    for start, end, _ in sorted(read.spans, key=lambda window: -window[2]):
        text = read.text[max(start, span[0]) : min(end, span[1])].strip()
        if text:
            fragments.append(encode(text))
    return fragments[: options.number_of_fragments or None]


def _field_in(
    read: ReadWindows, name: str, document: dict[str, Any], ctx: SearchContext
) -> tuple[int, int] | None:
    """Where field ``name`` lies in the text the re-ranker read: all of it where it read that
    field, its part where it read the text fields joined (``Store.text_of``), else None."""
    if read.field == name:
        return 0, len(read.text)
    if read.field != ALL_TEXT_FIELDS:
        return None
    at = 0
    for field in ctx.store.settings.text_fields:
        part = field_text(document, field)
        if not part:
            continue
        if field == name:
            return at, at + len(part)
        at += len(part) + 1  # the line break joining them
    return None
