"""Named indexes kept open across searches, one handle per index and process.

A server answers many requests on one index at once, and any of them (or another process) may
drop it or create it again under its name. So a handle is lent for the length of a ``with``
block (``using_index``); a drop, or a newer handle replacing a stale one, retires it, and a
retired handle is closed when its last borrower is done, never under a request still using it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from semrank.store import DB_NAME, LocalStore, Store, index_path, open_index
from semrank.store._aliases import resolve_index_name
from semrank.store._registry import BEFORE_DROP
from semrank.store._targets import resolve_targets

if TYPE_CHECKING:
    from semrank.store.postgres import PostgresStore

Key = Path | tuple[str, str]  # an embedded index's folder, or (DSN, name) in PostgreSQL


@dataclass(eq=False)
class _Held:
    store: Store
    identity: object  # what tells this index from one dropped and created again since
    users: int = 0
    retired: bool = False
    last_used: float = 0.0


# Indexes held open at most (the least recently used idle ones are closed past it): each holds
# its search structures and up to about 12 file descriptors (SQLite's two connections, WAL and
# shared memory; BM25, vector and prepared-window files), under a limit often of 1,024.
MAX_HELD = 100
FDS_PER_INDEX = 12
FDS_KEPT_FREE = 256  # connections, models, logs


def _held_limit() -> int:
    """``MAX_HELD``, or fewer where the open-files limit would not hold that many."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, ValueError, OSError):  # no such limit here (Windows)
        return MAX_HELD
    if soft == resource.RLIM_INFINITY:
        return MAX_HELD
    return min(MAX_HELD, max(4, (soft - FDS_KEPT_FREE) // FDS_PER_INDEX))


_OPEN: dict[Key, _Held] = {}
_OPEN_LOCK = threading.Lock()


# The handles a forked child inherited: kept, never destroyed there (see _forget_after_fork).
_INHERITED: list[dict[Key, _Held]] = []


def _forget_after_fork() -> None:
    """A forked child starts holding nothing: the parent's handles (SQLite connections,
    database pools) are not usable there, and a child writing through them lost its writes.
    They are set aside, neither closed (that would end the parent's use of them) nor dropped:
    dropping them destroyed their models' OpenVINO / ONNX Runtime thread pools in the child,
    which waited for the parent's threads for good (a subprocess started with a preexec_fn,
    or a fork pool, hung before it began)."""
    global _OPEN, _OPEN_LOCK
    _INHERITED.append(_OPEN)
    _OPEN = {}
    _OPEN_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


@contextmanager
def using_index(
    index: str | Store, home: str | Path | None = None, *, store: str | None = None
) -> Iterator[Store]:
    """The named index, or the one an alias of that name names (``store``: a PostgreSQL DSN,
    or None / ``"local"`` for the embedded store under ``home``), open for the ``with`` block;
    a Store is used as it is. Held by the index's own name: a search through an alias moved to
    another index since opens that one."""
    if isinstance(index, Store):
        yield index
        return
    with ExitStack() as held:
        with _pool_kept(store):
            name = resolve_index_name(index, home, store=store)
            opened = held.enter_context(_using_own_name(name, home, store))
        yield opened


@contextmanager
def _pool_kept(store: str | None) -> Iterator[None]:
    """A PostgreSQL DSN's pool kept open while names are looked up and their indexes opened:
    a lookup's own pool, closed before the index opened another, made two first connections
    (and a role at its connection limit was refused while the first's server process exited)."""
    if not _is_dsn(store):
        yield
        return
    from semrank.store.postgres import acquire_pool, release_pool

    pool = acquire_pool(str(store))
    try:
        yield
    finally:
        release_pool(str(store), pool)


@contextmanager
def _using_own_name(name: str, home: str | Path | None, store: str | None) -> Iterator[Store]:
    """``using_index`` of an index by its own name (an alias already resolved)."""
    held = _hold_postgres(name, str(store)) if _is_dsn(store) else _hold_local(name, home)
    _close(_evicted())
    try:
        yield held.store
    finally:
        _let_go(held)


@contextmanager
def using_indexes(
    targets: str,
    home: str | Path | None = None,
    *,
    store: str | None = None,
    ignore_unavailable: bool = False,
    allow_no_indices: bool = True,
) -> Iterator[list[Store]]:
    """The indexes ``targets`` names by Elasticsearch's multi-target syntax (``"a,b"``,
    ``"logs-*"``, ``"_all"``: ``semrank.store._targets``), each open for the ``with`` block
    as ``using_index`` holds one; none where a pattern matched nothing."""
    with ExitStack() as held:
        with _pool_kept(store):
            names = resolve_targets(  # aliases resolved: each name is an index's own
                targets,
                home,
                store=store,
                ignore_unavailable=ignore_unavailable,
                allow_no_indices=allow_no_indices,
            )
            opened = [held.enter_context(_using_own_name(name, home, store)) for name in names]
        yield opened


def open_cached(
    index: str | Store, home: str | Path | None = None, *, store: str | None = None
) -> Store:
    """``index`` itself if it is a Store, else the named index, opened once per process. The
    handle is not lent: a drop in another thread may close it, and so may opening more than
    ``MAX_HELD`` other indexes (threads, and code that keeps a handle, use ``using_index``)."""
    with using_index(index, home, store=store) as opened:
        return opened


def forget_open_indexes(
    index: str | None = None, home: str | Path | None = None, *, store: str | None = None
) -> None:
    """Let go of the indexes kept open: only ``index`` (before it is dropped) or all of them
    (in tests). Each is closed once the requests using it are done."""
    with _OPEN_LOCK:
        if index is None:
            keys = list(_OPEN)
        else:
            keys = [(str(store), index) if _is_dsn(store) else index_path(index, home)]
        idle = _take_out([(key, _OPEN[key]) for key in keys if key in _OPEN])
    _close(idle)


BEFORE_DROP.append(forget_open_indexes)


def _is_dsn(store: str | None) -> bool:
    return store not in (None, "local")


def _local_identity(path: Path) -> object:
    """The database file's inode: it tells a dropped (and created again) index from the one
    held."""
    try:
        return (path / DB_NAME).stat().st_ino
    except OSError:
        return -1


# How often a request looks for held embedded indexes that another process dropped.
_SWEEP_EVERY_S = 1.0
_last_sweep = 0.0


def let_go_of_dropped_indexes() -> None:
    """Retire held embedded indexes whose database file is gone or replaced. Dropped by
    another process (the CLI, another server worker), they kept their deleted files open (disk
    space, file descriptors, memory) until a request named them again, which a workload that
    drops uniquely named indexes never sends."""
    global _last_sweep
    now = time.monotonic()
    with _OPEN_LOCK:
        if now - _last_sweep < _SWEEP_EVERY_S:
            return
        _last_sweep = now
        local = [(key, held) for key, held in _OPEN.items() if isinstance(key, Path)]
    gone = [(key, held) for key, held in local if _local_identity(key) != held.identity]
    with _OPEN_LOCK:
        idle = _take_out(gone)
    _close(idle)
    if gone:  # the loaded models' prepared windows of it map its files too
        from semrank.pipeline._prepare import forget_windows_at  # it imports this module

        for folder, _ in gone:
            forget_windows_at(folder)


def _hold_local(name: str, home: str | Path | None) -> _Held:
    let_go_of_dropped_indexes()
    path = index_path(name, home)
    identity = _local_identity(path)
    with _OPEN_LOCK:
        held = _OPEN.get(path)
        if held is not None and held.identity == identity:
            held.users += 1
            return held
        stale = _OPEN.pop(path, None)
        stale_idle = _retire(stale)
        try:
            return _keep(path, _Held(open_index(name, home=home), identity))
        finally:
            if stale_idle:
                _close_store(cast(_Held, stale).store)


def _hold_postgres(name: str, dsn: str) -> _Held:
    """As ``_hold_local``; the index row's creation time is the identity. Checking it is one
    query on the held handle, made outside the lock so other requests do not queue behind it."""
    key = (dsn, name)
    with _OPEN_LOCK:
        held = _OPEN.get(key)
        if held is not None:
            held.users += 1
    if held is not None:
        try:
            fresh = _created_at(held.store) == held.identity
        except BaseException:
            _let_go(held)
            raise
        if fresh:
            return held
        _let_go(held)
    return _reopen_postgres(key, stale=held)


def _reopen_postgres(key: tuple[str, str], *, stale: _Held | None) -> _Held:
    """Retire ``stale`` and open the index again. The open (network round trips) runs outside
    the lock: requests on other indexes must not queue behind it."""
    dsn, name = key
    with _OPEN_LOCK:
        current = _OPEN.get(key)
        if current is not None and current is not stale:
            current.users += 1  # another request has just reopened it
            return current
        _OPEN.pop(key, None)
        stale_idle = _retire(current)
    if stale_idle:
        cast(_Held, current).store.close()
    opened = open_index(name, store=dsn)
    try:
        identity = _created_at(opened)
    except BaseException:
        opened.close()
        raise
    with _OPEN_LOCK:
        winner = _OPEN.get(key)
        if winner is None:
            return _keep(key, _Held(opened, identity))
        winner.users += 1  # another request opened it meanwhile: use that handle
    opened.close()
    return winner


def _keep(key: Key, held: _Held) -> _Held:
    """Register a newly opened handle, lent once (to the caller). Called under the lock."""
    held.users = 1
    held.last_used = time.monotonic()
    _OPEN[key] = held
    return held


def _evicted() -> list[_Held]:
    """Idle handles retired to bring the held ones back to ``_held_limit()``, for the caller to
    close outside the lock."""
    limit = _held_limit()
    with _OPEN_LOCK:
        excess = len(_OPEN) - limit
        if excess <= 0:
            return []
        idle = sorted(
            ((key, held) for key, held in _OPEN.items() if held.users == 0),
            key=lambda item: item[1].last_used,
        )[:excess]
        return _take_out(idle)


def _take_out(entries: Sequence[tuple[Key, _Held]]) -> list[_Held]:
    """Remove the (key, handle) ``entries`` still held from the table and retire them; returns
    those nobody uses, for the caller to ``_close`` outside the lock. Called under the lock."""
    idle = []
    for key, held in entries:
        if _OPEN.get(key) is held:
            del _OPEN[key]
            if _retire(held):
                idle.append(held)
    return idle


def _close(handles: list[_Held]) -> None:
    for held in handles:
        _close_store(held.store)


def _close_store(store: Store) -> None:
    """Close a held index. The loaded models let go of an embedded one's prepared windows too:
    they map its files, and once it is no longer held no sweep sees another process drop it,
    so its deleted files stayed mapped (a later search of it hands the windows over again)."""
    store.close()
    if isinstance(store, LocalStore):
        from semrank.pipeline._prepare import forget_windows_at  # it imports this module

        forget_windows_at(store.path)


def _let_go(held: _Held) -> None:
    with _OPEN_LOCK:
        held.users -= 1
        held.last_used = time.monotonic()
        idle = held.retired and held.users == 0
    if idle:
        _close_store(held.store)


def _retire(held: _Held | None) -> bool:
    """Mark a handle no longer handed out; True when nobody uses it (the caller closes it).
    Called under the lock."""
    if held is None or held.retired:
        return False
    held.retired = True
    return held.users == 0


def _created_at(store: Store) -> object:
    return cast("PostgresStore", store).created_at()
