"""Locks made per key (an index, a model name), each kept only while someone holds or waits
for it: kept for every key ever used, they grew a long-lived process's memory for good (a
workload that makes and drops indexes, searches naming many models)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable, Iterator


class KeyedLocks:
    """``with locks.turn(key) as lock:`` gives ``key``'s lock (not acquired: the caller takes
    it, with a timeout if it likes); the last of its users to leave removes it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[Hashable, tuple[threading.Lock, int]] = {}  # key -> (lock, users)

    def __iter__(self) -> Iterator[Hashable]:
        with self._guard:
            return iter(list(self._locks))

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.contextmanager
    def turn(self, key: Hashable) -> Iterator[threading.Lock]:
        with self._guard:
            lock, users = self._locks.get(key) or (threading.Lock(), 0)
            self._locks[key] = (lock, users + 1)
        try:
            yield lock
        finally:
            with self._guard:
                held = self._locks.pop(key, None)  # none in a child forked meanwhile
                if held is not None and held[1] > 1:
                    self._locks[key] = (held[0], held[1] - 1)

    def forget_after_fork(self) -> None:
        """A forked child starts with none: a lock a parent's thread held would stay held."""
        self._locks.clear()
        self._guard = threading.Lock()
