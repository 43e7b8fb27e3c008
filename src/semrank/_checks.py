"""Number checks shared by the public API's argument validation.

numpy scalars count (``np.int64(10)`` is an integer, ``np.float32(0.5)`` a number: they come
straight out of users' arrays); bools do not, although Python makes them ints.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence

from semrank.errors import InvalidInputError


def is_int(value: object, *, at_least: int | None = None) -> bool:
    """An integer, optionally ``>= at_least``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return False
    return at_least is None or int(value) >= at_least


def is_finite_number(value: object, *, at_least: float | None = None) -> bool:
    """A finite real number, optionally ``>= at_least``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    number = float(value)
    return math.isfinite(number) and (at_least is None or number >= at_least)


def require_collection(value: object, *, expected: str, hint: str, ordered: bool = True) -> None:
    """``value`` must be a list-like collection (a ``Sequence``, or with ``ordered=False`` any
    iterable), never a lone string, which Python would happily iterate letter by letter."""
    kind = Sequence if ordered else Iterable
    if isinstance(value, str | bytes) or not isinstance(value, kind):
        raise InvalidInputError(f"{expected}, got {type(value).__name__} ({value!r:.60}); {hint}")
