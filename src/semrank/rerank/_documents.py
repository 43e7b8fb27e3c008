"""Turning user documents (strings or objects) into the text the model reads."""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Sequence
from typing import Any, cast

from semrank._checks import (
    array_hint,
    blank_kind,
    field_key,
    has_non_finite_number,
    is_finite_number,
    is_int,
    require_collection,
    require_unicode,
)
from semrank.errors import InvalidInputError
from semrank.rerank._results import Document

DEFAULT_FIELD = "text"


def validate_query(query: object) -> str:
    """The query as a non-empty string, or an error that says what was wrong."""
    if not isinstance(query, str):
        raise InvalidInputError(
            f"query must be a string, got {type(query).__name__} ({query!r:.60})"
        )
    said = blank_kind(query)
    if said is not None:
        raise InvalidInputError(f"query is {said}; pass the text to rank the documents against")
    require_unicode(query, "query")
    return query


def validate_queries(queries: object) -> list[str]:
    """A list of queries for ``rerank_many``, each a non-empty string; with several, an error
    names the query (``queries[i]``)."""
    require_collection(
        queries, expected="queries must be a list of strings", hint="use rerank() for one query"
    )
    listed = list(cast(Sequence[object], queries))
    if len(listed) == 1:
        return [validate_query(listed[0])]
    checked = []
    for position, query in enumerate(listed):
        try:
            checked.append(validate_query(query))
        except InvalidInputError as exc:
            raise InvalidInputError(f"queries[{position}]: {exc}") from None
    return checked


def validate_top_n(top_n: object) -> int | None:
    """``top_n`` as a positive int or None."""
    if top_n is None:
        return None
    if not is_int(top_n):
        raise InvalidInputError(f"top_n must be a positive integer, got {top_n!r}")
    count = int(cast(int, top_n))  # numpy integers become plain ints here
    if count <= 0:
        raise InvalidInputError(f"top_n={top_n} must be >= 1; omit it to return every document")
    return count


def validate_min_score(min_score: object) -> float | None:
    """``min_score`` as a finite float or None."""
    if min_score is None:
        return None
    if not is_finite_number(min_score):
        raise InvalidInputError(f"min_score must be finite (a number), got {min_score!r}")
    return float(cast(float, min_score))


def document_texts(
    documents: Sequence[Document],
    rank_fields: Sequence[str] | None = None,
    *,
    name: str = "documents",
) -> list[str]:
    """The text to score for each document, in order (``name``: how errors call the list)."""
    if isinstance(documents, str | bytes) or not isinstance(documents, Sequence):
        fix = array_hint(documents) or "pass a list of texts, or of objects with a 'text' field"
        raise InvalidInputError(
            f"{name} must be a list of strings or objects, got {type(documents).__name__} "
            f"({documents!r:.60}); {fix}"
        )
    if len(documents) == 0:
        raise InvalidInputError(f"{name} is empty; pass at least one document to rank")
    fields = _validate_fields(rank_fields)
    return [_document_text(doc, f"{name}[{i}]", fields) for i, doc in enumerate(documents)]


# (field, start, end) of each field's text in a multi-field document's composed text.
FieldSpans = tuple[tuple[str, int, int], ...]
FIELD_SEPARATOR = "\n"


def field_spans(
    documents: Sequence[Document], rank_fields: Sequence[str] | None
) -> list[FieldSpans | None]:
    """Where each ranked field's text stands in what ``document_texts`` composed (None where a
    document is read as one text), so that chunk offsets can be given in the caller's fields.
    Call after ``document_texts`` has checked the documents."""
    fields = _validate_fields(rank_fields)
    if fields is None or len(fields) < 2:
        return [None] * len(documents)
    spans: list[FieldSpans | None] = []
    for doc in documents:
        if not isinstance(doc, dict):
            spans.append(None)
            continue
        keys = _document_keys(doc, fields)
        spans.append(_compose([(key, _field_text(doc[key], key)) for key in keys])[1])
    return spans


def _compose(parts: list[tuple[str, str]]) -> tuple[str, FieldSpans]:
    """Several fields read as one text, each labelled, in the order given (as Cohere v1 and
    Together do), and where each field's text stands in it."""
    pieces, spans, position = [], [], 0
    for field, text in parts:
        label = f"{field}: "
        start = position + len(label)
        spans.append((field, start, start + len(text)))
        pieces.append(label + text)
        position = start + len(text) + len(FIELD_SEPARATOR)
    return FIELD_SEPARATOR.join(pieces), tuple(spans)


def _validate_fields(rank_fields: Sequence[str] | None) -> list[str] | None:
    if rank_fields is None:
        return None
    if isinstance(rank_fields, str):
        return [rank_fields]
    if not isinstance(rank_fields, Sequence):
        raise InvalidInputError(
            f"rank_fields must be a list of field names, got {type(rank_fields).__name__} "
            f"({rank_fields!r:.60})"
        )
    fields = list(rank_fields)
    if not fields or not all(isinstance(f, str) and f for f in fields):
        raise InvalidInputError(
            f"rank_fields must be a non-empty list of field names, got {rank_fields!r}"
        )
    # The field's text would be read (and weigh) twice; a composed and a decomposed spelling
    # of one name name one field.
    if any(field_key(fields[:n], field) is not None for n, field in enumerate(fields)):
        raise InvalidInputError(f"rank_fields names a field twice: {rank_fields!r}")
    return fields


def _document_text(doc: Any, where: str, fields: list[str] | None) -> str:
    if isinstance(doc, str | dict):
        # The whole object, not only its ranked fields: it may be returned to the caller.
        require_unicode(doc, where)
    if isinstance(doc, str):
        return doc
    if isinstance(doc, dict):
        return _object_text(doc, where, fields or [DEFAULT_FIELD])
    raise InvalidInputError(
        f"{where} is a {type(doc).__name__} ({doc!r:.60}); each document must be "
        "a string, or an object whose rank_fields hold its text"
    )


def _document_keys(doc: dict[str, Any], fields: list[str]) -> list[Any]:
    """The document's own key for each of ``fields`` (None where it has none): a name matches
    its key under Unicode NFC, and the document's spelling is the one read and reported."""
    return [field_key(doc, field) for field in fields]


def _object_text(doc: dict[str, Any], where: str, fields: list[str]) -> str:
    keys = _document_keys(doc, fields)
    missing = [field for field, key in zip(fields, keys, strict=True) if key is None]
    if missing:
        hint = (
            "pass rank_fields naming the fields to score"
            if fields == [DEFAULT_FIELD]
            else "add the field or change rank_fields"
        )
        raise InvalidInputError(
            f"{where} has no field {missing[0]!r} (it has {sorted(map(str, doc))}); {hint}"
        )
    if all(doc[key] is None for key in keys):  # missing data upstream, not a document
        named = f"{where}.{fields[0]} is" if len(fields) == 1 else f"{where}'s {fields} are all"
        raise InvalidInputError(
            f'{named} null, so it has no text to rank; give a string ("" for an empty '
            "document) or leave the document out"
        )
    if len(keys) == 1:
        return _field_text(doc[keys[0]], f"{where}.{keys[0]}")
    return _compose([(key, _field_text(doc[key], f"{where}.{key}")) for key in keys])[0]


def _field_text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy scalars and arrays
        value = value.tolist()
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):  # str() would score "nan"
        raise InvalidInputError(
            f"{where} is {value!r}, which has no text; give a finite number or a string"
        )
    if not isinstance(value, str | int | float | bool) and has_non_finite_number(value):
        raise InvalidInputError(
            f"{where} holds NaN or an infinity, which has no text (JSON would write NaN, "
            "which is not JSON); give finite numbers or strings"
        )
    if isinstance(value, int | float | bool):
        try:
            return str(value)
        except ValueError:  # an integer of more digits than Python converts to text
            raise InvalidInputError(
                f"{where} is an integer too long to read as text; give it as a string"
            ) from None
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"{where} is a {type(value).__name__} ({value!r:.60}), which has no text; give a "
            "string, a number, or a list or object of those"
        ) from None


def unread_fields_warning(
    documents: Sequence[Any], rank_fields: Sequence[str] | None, *, option: str = "rank_fields"
) -> str | None:
    """Objects ranked without rank_fields are read by their 'text' alone (Cohere's rule), while
    Together's API reads every field by default, and a BEIR corpus keeps its titles apart: say
    which text fields went unread, and how to name them (``option``: the caller's spelling)."""
    if rank_fields is not None:
        return None
    unread = sorted(
        {
            str(key)
            for document in documents
            if isinstance(document, dict)
            for key, value in document.items()
            if key != DEFAULT_FIELD and _is_prose(value)
        }
    )
    if not unread:
        return None
    named = ", ".join(repr(key) for key in unread[:5]) + (", ..." if len(unread) > 5 else "")
    fields = [*unread[:2], DEFAULT_FIELD]
    example = (  # a flag's values as a shell reads them back ('Doc Title' is one value)
        str(fields)
        if option == "rank_fields"
        else " ".join(f"{option} {shlex.quote(f)}" for f in fields)
    )
    return (
        f"documents were read by their {DEFAULT_FIELD!r} field only; their text fields {named} "
        f"were not read: name every field to score in {option} (e.g. {example})"
    )


def _is_prose(value: Any) -> bool:
    """Text of several words: what a title or summary holds, not an id, a URL or a date (with
    its time: "2024-01-01 10:00" has no word of letters)."""
    if not isinstance(value, str):
        return False
    words = [word for word in value.split() if any(c.isalpha() for c in word)]
    return len(words) > 1
