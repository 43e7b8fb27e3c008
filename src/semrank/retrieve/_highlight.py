"""Highlighting: the fragments of a field's text that hold a search's terms, as Elasticsearch's
``highlight`` returns them (search UIs and RAG apps show why a hit matched).

Words are matched with the index's own BM25 analysis (lowercasing, stemming, stop words,
pairs of letters in scripts written without spaces), so "running" in a query marks "runs" in a
document, as the search itself matched it. A field's text is cut into fragments of about
``fragment_size`` characters on word boundaries (Elasticsearch's plain highlighter), and those
holding most query terms are returned.
"""

from __future__ import annotations

import html
import re
import unicodedata
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import Any

from semrank._checks import MAX_COUNT, is_int
from semrank.errors import InvalidInputError
from semrank.retrieve._bm25 import (
    _IDEOGRAPHS,
    _UNSPACED,
    _UNSPACED_RUN,
    LEGACY_ANALYSIS,
    LEGACY_PATTERN,
    MARKS_ANALYSIS,
    BM25Params,
    _mark_ranges,
    _tokenize,
)

LEXICAL_TYPES = ("unified", "plain", "fvh")  # Elasticsearch's names; one highlighter here
SEMANTIC_TYPE = "semantic"  # Elasticsearch's for semantic_text: the re-ranker's best windows
ORDERS = ("none", "score")
ENCODERS = ("default", "html")


@dataclass(frozen=True, kw_only=True)
class HighlightOptions:
    """One field's highlighting (Elasticsearch's options and defaults).

    ``number_of_fragments`` 0 returns the whole field, highlighted; ``order`` "none" returns
    fragments in document order, "score" those with most query terms first; ``no_match_size``
    characters from the field's start are returned when nothing matched (0: nothing). Text is
    returned as it is stored, HTML included, unless ``encoder`` is "html" (Elasticsearch's
    default leaves it too); the tags are never escaped.
    """

    type: str = "unified"
    fragment_size: int = 100
    number_of_fragments: int = 5
    pre_tags: tuple[str, ...] = ("<em>",)
    post_tags: tuple[str, ...] = ("</em>",)
    order: str = "none"
    encoder: str = "default"
    no_match_size: int = 0
    require_field_match: bool = True

    def __post_init__(self) -> None:
        _choice("type", self.type, (*LEXICAL_TYPES, SEMANTIC_TYPE))
        _choice("order", self.order, ORDERS)
        _choice("encoder", self.encoder, ENCODERS)
        _count("fragment_size", self.fragment_size, at_least=1)
        _count("number_of_fragments", self.number_of_fragments, at_least=0)
        _count("no_match_size", self.no_match_size, at_least=0)
        if not isinstance(self.require_field_match, bool):
            raise InvalidInputError(
                f"highlight require_field_match must be true or false, got "
                f"{self.require_field_match!r:.60}"
            )
        object.__setattr__(self, "pre_tags", _tags("pre_tags", self.pre_tags))
        object.__setattr__(self, "post_tags", _tags("post_tags", self.post_tags))
        if len(self.pre_tags) != len(self.post_tags):
            raise InvalidInputError(
                f"highlight pre_tags and post_tags pair up: got {len(self.pre_tags)} pre_tags "
                f"and {len(self.post_tags)} post_tags; give as many of each"
            )

    @property
    def semantic(self) -> bool:
        return self.type == SEMANTIC_TYPE


def _choice(name: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        raise InvalidInputError(
            f"highlight {name} {value!r:.60} is not supported; choose one of: {', '.join(choices)}"
        )


def _count(name: str, value: object, *, at_least: int) -> None:
    if not is_int(value, at_least=at_least) or int(value) > MAX_COUNT:  # type: ignore[call-overload]
        raise InvalidInputError(
            f"highlight {name} must be an integer from {at_least} to {MAX_COUNT:,}, got "
            f"{value!r:.60}"
        )


def _tags(name: str, value: object) -> tuple[str, ...]:
    """Tags as a tuple of strings: Elasticsearch takes a list, a lone string is one tag."""
    tags = (value,) if isinstance(value, str) else value
    if not isinstance(tags, list | tuple) or not tags or not all(isinstance(t, str) for t in tags):
        raise InvalidInputError(
            f'highlight {name} must be a list of strings such as ["<em>"], got {value!r:.60}'
        )
    return tuple(tags)


@dataclass(frozen=True, kw_only=True)
class HighlightSpec:
    """What a search highlights: each field name (``*`` wildcards allowed) with its options."""

    fields: tuple[tuple[str, HighlightOptions], ...]

    @property
    def semantic(self) -> bool:
        return any(options.semantic for _, options in self.fields)


_OPTION_NAMES = frozenset(f.name for f in fields(HighlightOptions))


def parse_highlight(spec: object) -> HighlightSpec:
    """Elasticsearch's ``highlight`` object (``{"fields": {"text": {...}}, "pre_tags": [...],
    ...}``, its options applying to every field unless the field sets its own; ``fields`` may
    also be a list of one-field objects, or of names), a field name, or a list of names."""
    if isinstance(spec, HighlightSpec):
        return spec
    if isinstance(spec, str):
        spec = {"fields": [spec]}
    elif isinstance(spec, list | tuple):
        spec = {"fields": list(spec)}
    if not isinstance(spec, Mapping):
        raise InvalidInputError(
            f'highlight must be a JSON object such as {{"fields": {{"text": {{}}}}}}, a field '
            f"name or a list of them, got {type(spec).__name__}"
        )
    _known_keys(spec, {"fields", *_OPTION_NAMES}, "highlight")
    shared = _options({k: v for k, v in spec.items() if k != "fields"}, HighlightOptions(), "")
    named = _field_specs(spec.get("fields"))
    return HighlightSpec(
        fields=tuple((name, _options(own, shared, f" {name}")) for name, own in named)
    )


def _field_specs(value: object) -> list[tuple[str, Mapping[str, Any]]]:
    """``fields`` as (name, own options) pairs, in the order given."""
    items: list[tuple[object, object]] = []
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, list | tuple):
        for entry in value:
            if isinstance(entry, str):
                items.append((entry, {}))
            elif isinstance(entry, Mapping) and len(entry) == 1:
                items.extend(entry.items())
            else:
                items = []
                break
    if not items:
        raise InvalidInputError(
            'highlight needs fields to highlight: "fields": {"text": {}} (options inside each '
            f"field's object), a list of such objects, or of names; got {value!r:.60}"
        )
    pairs = []
    for name, own in items:
        if not isinstance(name, str) or not name.strip():
            raise InvalidInputError(f"highlight field names are strings, got {name!r:.60}")
        if not isinstance(own, Mapping):
            raise InvalidInputError(
                f"highlight field {name!r}: its options are a JSON object ({{}} for the "
                f"defaults), got {own!r:.60}"
            )
        pairs.append((name, own))
    return pairs


def _options(given: Mapping[str, Any], base: HighlightOptions, where: str) -> HighlightOptions:
    _known_keys(given, _OPTION_NAMES, f"highlight{where}")
    try:
        return replace(base, **given)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{exc}" if not where else f"field{where}: {exc}") from None


def _known_keys(given: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    unknown = sorted(set(given) - set(allowed), key=str)
    if unknown:
        raise InvalidInputError(
            f"{where}: unsupported option {unknown[0]!r:.60}; supported: "
            f"{', '.join(sorted(allowed))}"
        )


# --- finding the query's terms in a text -----------------------------------------------------
def query_terms(texts: Iterable[str], params: BM25Params) -> dict[str, int]:
    """The analysed terms of ``texts`` (BM25's analysis), each numbered in order of first
    occurrence (which picks its tag where several are given)."""
    numbered: dict[str, int] = {}
    for terms in _tokenize(list(texts), params, return_ids=False):
        for term in terms:
            numbered.setdefault(term, len(numbered))
    return numbered


@dataclass(frozen=True)
class _Match:
    start: int
    end: int
    terms: frozenset[int]


def term_matches(text: str, terms: Mapping[str, int], params: BM25Params) -> list[_Match]:
    """The spans of ``text`` whose analysis gives one of ``terms``, in order, overlapping ones
    (pairs of letters sharing one) joined."""
    if not terms:
        return []
    words, found = [], []
    for match in _word_pattern(params.analysis).finditer(text):
        if match.lastgroup == "run":
            found += _run_matches(match, terms)
        else:
            words.append(match)
    # One analysis call for every distinct word, each its own text: what BM25 made of it.
    distinct = list(dict.fromkeys(w[0] for w in words))
    analysed = _tokenize(distinct, params, return_ids=False) if distinct else []
    hits = {
        word: frozenset(terms[t] for t in word_terms if t in terms)
        for word, word_terms in zip(distinct, analysed, strict=True)
    }
    found += [_Match(w.start(), w.end(), hits[w[0]]) for w in words if hits[w[0]]]
    return _joined(sorted(found, key=lambda m: (m.start, m.end)))


@lru_cache(maxsize=4)
def _word_pattern(analysis: int) -> re.Pattern[str]:
    """Words as BM25's analysis reads them; from analysis 3 on, runs of scripts written
    without spaces apart (``run``), whose terms are pairs of letters within them."""
    if analysis == LEGACY_ANALYSIS:
        return re.compile(f"(?P<word>{LEGACY_PATTERN.removeprefix('(?u)')})")
    letters = f"[\\w{_mark_ranges()}]"
    if analysis == MARKS_ANALYSIS:
        return re.compile(f"(?P<word>{letters}{{2,}})")
    spaced = f"(?:(?![{_UNSPACED}]){letters})"
    return re.compile(f"(?P<run>[{_UNSPACED}]+)|(?P<word>{spaced}{{2,}})")


def _run_matches(run: re.Match[str], terms: Mapping[str, int]) -> list[_Match]:
    """Each place in a run of an unspaced script where a query term of that script occurs
    (its pairs of letters, or one ideograph)."""
    found = []
    text = unicodedata.normalize("NFC", run[0])
    if len(text) != len(run[0]):  # offsets would not fit the stored text: left unmarked
        return []
    for term, number in terms.items():
        if not (_UNSPACED_RUN.fullmatch(term) or re.fullmatch(f"[{_IDEOGRAPHS}]", term)):
            continue
        at = text.find(term)
        while at >= 0:
            found.append(
                _Match(run.start() + at, run.start() + at + len(term), frozenset([number]))
            )
            at = text.find(term, at + 1)
    return found


def _joined(matches: list[_Match]) -> list[_Match]:
    joined: list[_Match] = []
    for match in matches:
        if joined and match.start < joined[-1].end:
            last = joined[-1]
            joined[-1] = _Match(last.start, max(last.end, match.end), last.terms | match.terms)
        else:
            joined.append(match)
    return joined


# --- fragments ---------------------------------------------------------------------------------
def highlight_text(
    text: str | Sequence[str],
    terms: Mapping[str, int],
    params: BM25Params,
    options: HighlightOptions,
) -> list[str]:
    """The highlighted fragments of ``text`` for ``terms`` (``query_terms``), by ``options``:
    none where nothing matched and ``no_match_size`` is 0. A field's list of strings is given
    as that list: each value is cut apart, so no fragment joins two values (as Elasticsearch
    cuts a multi-valued field), and ``number_of_fragments`` 0 returns each matching value."""
    values = [text] if isinstance(text, str) else list(text)
    found = [(value, term_matches(value, terms, params)) for value in values]
    if not any(matches for _, matches in found):
        return _no_match(values[0], options) if values else []
    if options.number_of_fragments == 0:
        return [
            _rendered(value, _stripped(value, 0, len(value)), matches, options)
            for value, matches in found
            if matches
        ]
    pieces = [
        (value, span, inside)
        for value, matches in found
        for span, inside in _pieces(value, matches, options.fragment_size)
        if inside
    ]
    ranked = sorted(range(len(pieces)), key=lambda n: (_weight(pieces[n][2]), n))
    chosen = ranked[: options.number_of_fragments]
    if options.order == "none":
        chosen.sort()
    return [_rendered(*pieces[n], options) for n in chosen]


def _weight(matches: list[_Match]) -> tuple[int, int]:
    """A fragment's place among others (lowest first): most distinct query terms, then most
    matches."""
    distinct = frozenset[int]().union(*(m.terms for m in matches))
    return -len(distinct), -len(matches)


def _no_match(text: str, options: HighlightOptions) -> list[str]:
    """Elasticsearch's ``no_match_size``: the field's start, cut on a word boundary."""
    if options.no_match_size == 0:
        return []
    start = _stripped(text, 0, len(text))[0]
    end = _cut(text, start, start + options.no_match_size, [])
    span = _stripped(text, start, end)
    return [_rendered(text, span, [], options)] if span[1] > span[0] else []


def _pieces(
    text: str, matches: list[_Match], size: int
) -> list[tuple[tuple[int, int], list[_Match]]]:
    """``text`` cut into consecutive pieces of at most ``size`` characters (longer only where
    one word is), each trimmed of surrounding space, with the matches inside it."""
    pieces = []
    start, next_match = 0, 0
    while start < len(text):
        end = _cut(text, start, start + size, matches)
        inside = []
        while next_match < len(matches) and matches[next_match].end <= end:
            inside.append(matches[next_match])
            next_match += 1
        span = _stripped(text, start, end)
        if span[1] > span[0]:
            pieces.append((span, inside))
        start = end
    return pieces


def _cut(text: str, start: int, limit: int, matches: list[_Match]) -> int:
    """Where a piece from ``start`` ends: the last word boundary at or before ``limit`` (not
    inside a match), or, where a word runs past it, the first one after."""
    if limit >= len(text):
        return len(text)
    for at in range(limit, start, -1):
        if _boundary(text, at) and not _inside(matches, at):
            return at
    at = limit + 1
    while at < len(text) and not (_boundary(text, at) and not _inside(matches, at)):
        at += 1
    return at


def _boundary(text: str, at: int) -> bool:
    """Whether a cut between ``text[at - 1]`` and ``text[at]`` leaves every word whole (letters
    of a script written without spaces are words' pairs, and may be cut between)."""
    before, after = text[at - 1], text[at]
    if not (_in_word(before) and _in_word(after)):
        return True
    return _UNSPACED_RUN.fullmatch(before + after) is not None and not _is_mark(after)


def _in_word(char: str) -> bool:
    return char.isalnum() or char == "_" or _is_mark(char)


def _is_mark(char: str) -> bool:
    return unicodedata.category(char).startswith("M")


def _inside(matches: list[_Match], at: int) -> bool:
    """Whether ``at`` falls inside one of ``matches`` (in order, apart): a search, not a scan
    of every match at every place a cut is tried (a 1 MB field took 75 s)."""
    before = bisect_left(matches, at, key=lambda m: m.start) - 1
    return before >= 0 and at < matches[before].end


def _stripped(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _rendered(
    text: str, span: tuple[int, int], matches: list[_Match], options: HighlightOptions
) -> str:
    """``text[start:end]`` with each match between its tags (the tag of its first query term,
    in turn where several are given), the text escaped where ``encoder`` is "html"."""
    encode = html.escape if options.encoder == "html" else str
    parts, at = [], span[0]
    for match in matches:
        tag = min(match.terms) % len(options.pre_tags)
        parts += [
            encode(text[at : match.start]),
            options.pre_tags[tag],
            encode(text[match.start : match.end]),
            options.post_tags[tag],
        ]
        at = match.end
    parts.append(encode(text[at : span[1]]))
    return "".join(parts)
