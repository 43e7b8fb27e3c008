"""Number checks shared by the public API's argument validation.

numpy scalars count (``np.int64(10)`` is an integer, ``np.float32(0.5)`` a number: they come
straight out of users' arrays); bools do not, although Python makes them ints.
"""

from __future__ import annotations

import decimal
import json
import math
import numbers
import sys
import unicodedata
import uuid
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from semrank.errors import InvalidInputError

# The largest count semrank takes (hits, windows, rank_constant): 10**320 overflowed a float (a
# 500) and k = 10**12 asked the HNSW index for a terabyte.
MAX_COUNT = 1_000_000


def is_int(value: object, *, at_least: int | None = None) -> bool:
    """An integer, optionally ``>= at_least``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return False
    return at_least is None or int(value) >= at_least


# Largest fusion weight or field boost: larger ones overflow float32 scores to inf / NaN.
MAX_WEIGHT = 1e6


def is_finite_number(
    value: object, *, at_least: float | None = None, at_most: float | None = None
) -> bool:
    """A finite real number, optionally ``>= at_least`` and ``<= at_most``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float (JSON allows 10**400)
        return False
    if not math.isfinite(number):
        return False
    return (at_least is None or number >= at_least) and (at_most is None or number <= at_most)


def require_collection(value: object, *, expected: str, hint: str, ordered: bool = True) -> None:
    """``value`` must be a list-like collection (a ``Sequence``, or with ``ordered=False`` any
    iterable), never a lone string, which Python would happily iterate letter by letter."""
    kind = Sequence if ordered else Iterable
    if isinstance(value, str | bytes) or not isinstance(value, kind):
        hint = array_hint(value) or hint
        raise InvalidInputError(f"{expected}, got {type(value).__name__} ({value!r:.60}); {hint}")


def array_hint(value: object) -> str | None:
    """The fix for a numpy array or pandas Series passed where a list goes (neither is a
    ``Sequence``), or None."""
    if callable(getattr(value, "tolist", None)):
        return f"convert the {type(value).__name__} to a list with .tolist()"
    return None


# How each DataFrame.to_json layout that is not one object per record holds the table.
_PANDAS_LAYOUTS = {
    "columns": "each column's values under row labels (orient='columns', its default)",
    "index": "each row under its row label (orient='index')",
    "split": "rows as lists beside a list of column names (orient='split')",
}


def pandas_layout_hint(data: object) -> str | None:
    """What is wrong, and the fix, when ``data`` is a pandas ``DataFrame.to_json`` file holding
    columns or rows under labels rather than one object per record; None otherwise."""
    orient = _pandas_orient(data)
    if orient is None:
        return None
    return (
        f"it looks like pandas' DataFrame.to_json() output with {_PANDAS_LAYOUTS[orient]}, "
        "not one object per document; write it with "
        "df.to_json(PATH, orient='records', lines=True) as a .jsonl file"
    )


def _pandas_orient(data: object) -> str | None:
    """The orient of a ``DataFrame.to_json`` file that is not records, or None. 'columns' and
    'index' are told by pandas' default row labels ("0", "1", ...) as inner or outer keys, so
    an object whose fields are objects with keys of their own is not taken for one."""
    if not isinstance(data, dict) or not data:
        return None
    if {"columns", "data"} <= set(data) and set(data) <= {"columns", "index", "data", "name"}:
        return "split"
    inner = list(data.values())
    if not all(isinstance(value, dict) for value in inner):
        return None
    keys = list(inner[0])
    if any(list(value) != keys for value in inner):
        return None
    if _row_labels(list(data)):
        return "index"
    return "columns" if keys and _row_labels(keys) else None


def _row_labels(keys: list[Any]) -> bool:
    """pandas' default index as JSON keys: "0", "1", ... in order."""
    return keys == [str(number) for number in range(len(keys))]


def _json_leaves(value: object) -> Iterator[object]:
    """Every string, number and other leaf of a JSON-like value (dict keys too), walked with a
    stack, not recursion: a kilobyte of JSON can nest deeper than Python's recursion limit."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, list | tuple):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        else:
            yield item


class UnreadableJSONError(json.JSONDecodeError):
    """JSON that Python cannot read (nested too deeply, an integer too long): a file of JSON
    all the same, unlike text that fails to parse."""


class RepeatedKeyError(UnreadableJSONError):
    """An object naming a key twice: json keeps only the last value, silently dropping the
    others (the data would be changed, not read)."""


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``'s ``object_pairs_hook``: the object, or ``RepeatedKeyError`` naming the
    key given twice. Runs for every object read, so the common case is one dict and a length
    comparison."""
    data = dict(pairs)
    if len(data) == len(pairs):
        return data
    key = next(key for key, count in Counter(key for key, _ in pairs).items() if count > 1)
    raise RepeatedKeyError(
        f"an object with the key {key!r:.60} twice, of which only the last value would be "
        "kept; give each key once",
        "",
        0,
    )


def loads_json(text: str) -> Any:
    """``json.loads``, with JSON nested past Python's recursion limit (a few kilobytes of
    brackets), an integer too long for Python (over 4,300 digits) or an object naming a key
    twice raised as unreadable JSON, which every reader of files reports with the file and
    the fix, instead of a traceback or a silently dropped value."""
    try:
        return json.loads(text, object_pairs_hook=unique_keys)
    except RecursionError:
        raise UnreadableJSONError(
            f"nested more than {MAX_JSON_DEPTH} levels deep, too deep to read; flatten it", text, 0
        ) from None
    except json.JSONDecodeError:
        raise
    except ValueError:  # Python reads integers of at most 4,300 digits (int_max_str_digits)
        raise UnreadableJSONError(
            "an integer of more than 4,300 digits, too long to read; write it as a string",
            text,
            0,
        ) from None


# Nesting a JSON value may have to be stored or sent back: the server's JSON writer
# (pydantic) stops at about 250 levels, so a deeper document was stored and then failed every
# search that returned it (500).
MAX_JSON_DEPTH = 200


_NESTING = (list, tuple, dict)


def json_depth_over(value: object, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a JSON-like ``value`` nests deeper than ``limit`` lists / objects (a stack, not
    recursion: a kilobyte of JSON can nest deeper than Python's recursion limit)."""
    if not isinstance(value, _NESTING):
        return False
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:  # only containers are pushed: a list of a million numbers is one step
        item, depth = pending.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children if isinstance(child, _NESTING))
    return False


def is_id_value(value: object) -> bool:
    """A document id as given: a string, a UUID, or a finite number that is not a boolean
    (``str()`` would turn ``True`` into the id "True" and a tuple into "(1, 2)"). Database
    drivers hand ids over as ``Decimal`` and ``UUID``: both are ids."""
    if isinstance(value, str | uuid.UUID):
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Integral):  # of any size Python writes as text (a float
        return _writes_as_text(value)  # conversion overflows past 1e308)
    if isinstance(value, decimal.Decimal):
        return value.is_finite()
    return isinstance(value, numbers.Real) and math.isfinite(value)


_TOO_LONG_INT = f"an integer of over {sys.get_int_max_str_digits():,} digits"


def _writes_as_text(value: object) -> bool:
    """Python refuses to write an integer of over 4,300 digits as text (a ValueError from
    repr() and str() themselves)."""
    try:
        repr(value)
    except ValueError:
        return False
    return True


def not_an_id(value: object) -> str:
    """Why ``value``, which ``is_id_value`` refuses, is no id: "X is not ...; the fix"."""
    if not _writes_as_text(value):
        return f"{_TOO_LONG_INT} is too long to write as text; write the id as a string"
    return f"{value!r:.60} is not a string or a finite number; ids are strings or numbers"


def id_problem(value: object) -> str | None:
    """What is wrong with ``value`` as a document or query id read into an index or a collection
    ("is ...; the fix"), or None: ids are strings or finite numbers (7 is the id "7"; UUIDs and
    Decimals too), never blank, never booleans, never a float with a whole value."""
    if isinstance(value, bool):  # str() would make JSON true the id "True"
        return (
            f"is the boolean {json.dumps(value)}; ids are strings or numbers: write it as "
            f'"{json.dumps(value)}" if that is the id'
        )
    if value is None or (isinstance(value, str) and not value.strip()):
        return f"is {value!r}; give it an id"
    if not is_id_value(value):
        return f"is not usable: {not_an_id(value)}"
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return _whole_float_problem(float(value))
    return None


def _whole_float_problem(value: float) -> str | None:
    """A float with a whole value (JSON 1.0) as an id would be the text "1.0", which never
    matches the qrels, the database or a lookup that say "1"."""
    if not value.is_integer():
        return None
    return (
        f"is the float {value!r}, not the id {int(value)}: pandas writes an integer column "
        "holding a missing value (NaN) as floats; write the ids as integers or strings (fill "
        "the gaps, then .astype('int64') or .astype(str))"
    )


def is_valid_unicode(value: object) -> bool:
    """Whether every string in ``value`` (a string, or a JSON-like object: keys too) can be
    encoded as UTF-8. Lone surrogates, which a JSON ``"\\ud800"`` escape or a careless decoder
    produce, cannot: they cannot be tokenized, stored or sent back."""
    return all(_is_utf8(leaf) for leaf in _json_leaves(value) if isinstance(leaf, str))


def has_non_finite_number(value: object) -> bool:
    """Whether a JSON-like ``value`` holds NaN or an infinity anywhere (Python's json reads and
    writes them, but they are not JSON: a client gets ``null`` back, or text "nan" is scored)."""
    return any(isinstance(leaf, float) and not math.isfinite(leaf) for leaf in _json_leaves(value))


def arrays_equal(first: object, second: object) -> bool:
    """Same shape and values, NaN equal to NaN (a hit no re-ranker scored is NaN in both).

    For dataclasses holding arrays: their generated ``__eq__`` compared the fields as a tuple,
    and numpy's element-wise ``==`` then raised "the truth value of an array is ambiguous".
    """
    a, b = np.asarray(first), np.asarray(second)
    floats = np.issubdtype(a.dtype, np.floating) and np.issubdtype(b.dtype, np.floating)
    return bool(np.array_equal(a, b, equal_nan=floats))


def array_dicts_equal(first: Mapping[str, Any], second: Mapping[str, Any]) -> bool:
    """Same keys, and ``arrays_equal`` values under each."""
    return first.keys() == second.keys() and all(
        arrays_equal(value, second[key]) for key, value in first.items()
    )


def _is_utf8(text: str) -> bool:
    if text.isascii():  # the common case, without the copy that encode() makes
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Characters that carry no words: control, format (zero-width space, byte-order mark) and
# combining marks with nothing to combine with. A text of only these (and spaces) is blank.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Mn", "Me", "Zs", "Zl", "Zp"})


def is_blank(text: str) -> bool:
    """Whether ``text`` has no visible character: ``str.strip()`` keeps U+200B, U+FEFF and NUL,
    which tokenizers drop, so such a query read as no text at all."""
    import unicodedata

    return all(c.isspace() or unicodedata.category(c) in _INVISIBLE_CATEGORIES for c in text)


def blank_kind(text: str) -> str | None:
    """How a text with no visible character is described ("empty", or "blank (...)" showing
    what it holds), or None for a text with words."""
    if not is_blank(text):
        return None
    return "empty" if not text.strip() else f"blank ({text!r:.40}: no visible character)"


def require_unicode(value: object, where: str) -> None:
    """``is_valid_unicode(value)``, or an error naming where the lone surrogate is (found with
    a stack, as ``_json_leaves`` walks: recursion failed on a value nested 2,000 deep)."""
    if is_valid_unicode(value):
        return
    pending = [(value, where)]
    while pending:
        item, at = pending.pop()
        if isinstance(item, str):
            _refuse_lone_surrogate(item, at)
        elif isinstance(item, dict):  # in order: each key, then its value
            for key, inner in reversed(list(item.items())):
                pending.append((inner, _deeper(at, f".{key}" if isinstance(key, str) else "")))
                pending.append((key, f"{at} (a field name)"))
        elif isinstance(item, list | tuple):
            pending.extend(
                (inner, _deeper(at, f"[{n}]")) for n, inner in reversed(list(enumerate(item)))
            )


def _deeper(where: str, step: str) -> str:
    """``where`` one level down; past 200 characters the path is cut (a value nested a
    thousand levels deep named a path of thousands)."""
    if len(where) <= 200:
        return where + step
    return where if where.endswith("…") else where + "…"


def _refuse_lone_surrogate(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        found = text[error.start]
        # How Python keeps a byte that is not UTF-8 (a command-line argument in Latin-1).
        byte = ord(found) - 0xDC00 if 0xDC80 <= ord(found) <= 0xDCFF else None
        raise InvalidInputError(
            f"{where} holds a lone surrogate ({found!r} at character {error.start})"
            + ("" if byte is None else f", or the byte {byte:#04x} of text that is not UTF-8")
            + "; text must be valid Unicode: read files as UTF-8 and send surrogate pairs whole"
            + ("" if byte is None else " (convert text in another encoding: iconv -t UTF-8)")
        ) from None


def nfc(text: str) -> str:
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def field_key(keys: Collection[Any], name: str) -> Any | None:
    """The key among ``keys`` (a document's, or a list of field names) that field ``name``
    means, spelled as ``keys`` spell it: ``name`` itself, else the one key that is the same text
    under Unicode NFC. A header saved decomposed ("re\u0301sume\u0301", as macOS tools write
    it) read as another name than the composed one a keyboard types. None: no such key."""
    if name in keys:
        return name
    wanted = nfc(name)
    matches = [key for key in keys if isinstance(key, str) and nfc(key) == wanted]
    if len(matches) > 1:
        raise InvalidInputError(
            f"field {name!r} is spelled {len(matches)} ways that read alike ({matches!r}: the "
            "same letters, composed and decomposed); give the fields distinct names"
        )
    return matches[0] if matches else None


def require_flags(**flags: object) -> None:
    """Each flag ``True`` or ``False``: ``"no"`` or ``0`` would otherwise count as true or false
    by Python's truthiness."""
    for name, value in flags.items():
        if not isinstance(value, bool | np.bool_):
            raise InvalidInputError(f"{name} must be True or False, got {value!r}")
