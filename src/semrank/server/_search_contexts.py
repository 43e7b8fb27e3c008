"""The scroll and point-in-time contexts a server process holds (Elasticsearch's search
contexts): each one's listed hits (``semrank.pipeline.HitList``: keys, scores and sort
values, never documents), kept for its keep-alive after each use, capped in number and in hits held.

A context lives in the worker process that opened it: its id names that process, so that
another worker of ``semrank serve --workers N`` answers a clear 404 rather than "unknown".
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from semrank.errors import InvalidInputError, SearchContextMissingError, TooManySearchContextsError

# Elasticsearch's search.max_keep_alive default: a context is kept a day at most.
MAX_KEEP_ALIVE_S = 24 * 3600.0
# ASCII digits (``\d`` takes any script's), any case (Elasticsearch lower-cases the value).
_DURATION = re.compile(r"^([0-9]+)(d|h|m|s|ms|micros|nanos)$", re.IGNORECASE)
_UNIT_S = {
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "micros": 1e-6,
    "nanos": 1e-9,
}

_MOST_DIGITS = len(str(int(MAX_KEEP_ALIVE_S * 1e9)))  # a day in nanoseconds: 14

State = TypeVar("State")


def time_value_seconds(text: object, name: str) -> float:
    """An Elasticsearch time value (``"1m"``, ``"30s"``, ``"500ms"``) in seconds (inf for a
    number too long to convert: thousands of digits)."""
    found = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if found is None:
        raise InvalidInputError(
            f"failed to parse [{name}] with value [{text!s:.40}] as a time value: give a "
            'number and a unit (d, h, m, s, ms), e.g. "1m"'
        )
    digits = found.group(1).lstrip("0") or "0"
    if len(digits) > _MOST_DIGITS:  # int() refuses thousands of digits, float hundreds
        return math.inf
    return int(digits) * _UNIT_S[found.group(2).lower()]


def keep_alive_seconds(text: object, name: str) -> float:
    """``scroll`` or ``keep_alive`` in seconds (``time_value_seconds``), at most a day, as
    Elasticsearch reads them."""
    seconds = time_value_seconds(text, name)
    if seconds > MAX_KEEP_ALIVE_S:
        raise InvalidInputError(
            f"Keep alive for request ({text!s:.40}) is too large: it must be at most 1d (a "
            "context is kept a day at most); ask again within it to keep it longer"
        )
    return seconds


@dataclass
class _Open:
    state: Any
    keep_alive_s: float
    expires: float
    hits: Callable[[], int]


@dataclass
class SearchContexts:
    """The open contexts of this process: at most ``max_open``, holding ``max_hits`` hits
    together. Expired ones are freed at the next call that reads the table."""

    max_open: int
    max_hits: int
    clock: Callable[[], float] = time.monotonic
    _open: dict[str, _Open] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self, state: Any, keep_alive_s: float, hits: Callable[[], int]) -> str:
        """A new context holding ``state`` (``hits``: how many hits it holds now)."""
        with self._lock:
            self._sweep()
            self._refuse_past_open()
            context_id = _new_id()
            self._open[context_id] = _Open(state, keep_alive_s, self.clock() + keep_alive_s, hits)
            return context_id

    def check_another(self) -> None:
        """Refuses a context past ``max_open`` now, before the search that would fill it runs
        (``open`` checks again: another may have opened meanwhile)."""
        with self._lock:
            self._sweep()
            self._refuse_past_open()

    def _refuse_past_open(self) -> None:
        if len(self._open) >= self.max_open:
            raise TooManySearchContextsError(
                f"Trying to create too many scroll contexts: {len(self._open)} are open, "
                f"the most this server keeps (--max-search-contexts {self.max_open}); "
                "clear them (DELETE /_search/scroll, DELETE /_pit) or let them expire"
            )

    def get(self, context_id: str, kind: type[State], keep_alive_s: float | None) -> State:
        """The state of the context ``context_id``, its keep-alive renewed (``keep_alive_s``:
        a new one); a 404 where there is none of ``kind``."""
        with self._lock:
            self._sweep()
            found = self._open.get(context_id)
            if found is None or not isinstance(found.state, kind):
                raise _missing(context_id)
            if keep_alive_s is not None:
                found.keep_alive_s = keep_alive_s
            found.expires = self.clock() + found.keep_alive_s
            return found.state

    def room(self) -> int:
        """How many more hits the open contexts may hold."""
        with self._lock:
            self._sweep()
            return max(0, self.max_hits - sum(one.hits() for one in self._open.values()))

    def free(self, context_ids: Iterable[str] | None, kind: type) -> int:
        """Frees those of ``context_ids`` (None: every one) that are open contexts of
        ``kind``; how many."""
        with self._lock:
            self._sweep()
            wanted = self._open if context_ids is None else set(context_ids)
            freed = [
                i for i in wanted if isinstance(getattr(self._open.get(i), "state", None), kind)
            ]
            for context_id in freed:
                del self._open[context_id]
            return len(freed)

    def _sweep(self) -> None:
        now = self.clock()
        for context_id in [i for i, one in self._open.items() if one.expires <= now]:
            del self._open[context_id]


def _new_id() -> str:
    """An id naming this process and an unguessable context (Elasticsearch's are base64)."""
    raw = f"{os.getpid()}.{secrets.token_urlsafe(18)}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _missing(context_id: str) -> SearchContextMissingError:
    """Elasticsearch's answer to an id it holds no context for, saying where a worker of
    another process opened it."""
    said = f"No search context found for id [{context_id:.200}]"
    owner = _process_of(context_id)
    if owner is not None and owner != os.getpid():
        return SearchContextMissingError(
            f"{said}: it was opened by another worker process of this server (pid {owner}), "
            "and each worker holds its own scroll and point-in-time contexts; serve with "
            "--workers 1 (or route a client to one worker) to scroll"
        )
    return SearchContextMissingError(
        f"{said} (expired, cleared, or never opened here); start the search again"
    )


def _process_of(context_id: str) -> int | None:
    try:
        raw = base64.urlsafe_b64decode(context_id + "=" * (-len(context_id) % 4))
        pid, _, _ = raw.decode("ascii").partition(".")
        return int(pid)
    except (binascii.Error, ValueError):
        return None
