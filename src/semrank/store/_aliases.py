"""Index aliases: a second name for one index, moved to another index atomically.

Elasticsearch's way of re-indexing without downtime: build the new index beside the live one,
then point the alias that readers (and writers) use at it in one step. In semrank an alias names
exactly ONE index (a search names several itself: "a,b", "logs-*"; an alias of several would
need a write index), so adding an alias that names another index is refused unless the same
action list removes it there first. An alias never shares a name with an index, and dropping
an index removes its aliases (as Elasticsearch does).

Embedded store: ``.aliases.json`` in the index home (``{"aliases": {alias: index}}``), replaced
whole (written beside it, then renamed) holding a lock on the home folder, so two processes
changing aliases at once both keep their change. PostgreSQL: table ``semrank.aliases`` (see
``postgres/_schema.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semrank._files import fsync_dir, written_whole
from semrank.errors import IndexNotFoundError, InvalidInputError, StorageError
from semrank.store._registry import _make_home, _postgres, index_path, resolve_home
from semrank.store._sqlite import DB_NAME

ALIASES_FILE = ".aliases.json"  # a dot name: never an index's (index names start alphanumeric)
_THREADS = threading.Lock()  # flock excludes other processes; this, other threads here
ANY_INDEX = frozenset({"*", "_all"})  # a remove's index: whichever the alias names


class AliasNotFoundError(IndexNotFoundError):
    """A ``remove`` names an alias that does not name that index (HTTP 404, as Elasticsearch's
    aliases_not_found_exception)."""

    error_type = "aliases_not_found_exception"


@dataclass(frozen=True, kw_only=True)
class AliasAction:
    """One ``add`` or ``remove`` of an alias on an index."""

    kind: str
    index: str
    alias: str
    must_exist: bool | None = None


# --- reading actions --------------------------------------------------------------------------
_KEYS = {
    "add": frozenset({"index", "indices", "alias", "aliases", "is_write_index"}),
    "remove": frozenset({"index", "indices", "alias", "aliases", "must_exist"}),
}
EXAMPLE = (
    '[{"remove": {"index": "old", "alias": "live"}}, {"add": {"index": "new", "alias": "live"}}]'
)


def parse_actions(actions: object) -> list[AliasAction]:
    """Elasticsearch's alias actions (``[{"add": {"index": ..., "alias": ...}}, {"remove":
    ...}]``) as ``AliasAction``s; an ``InvalidInputError`` naming what is wrong in one."""
    if isinstance(actions, str | bytes) or not isinstance(actions, Sequence) or not actions:
        raise InvalidInputError(
            f"alias actions must be a non-empty list of actions such as {EXAMPLE}, got "
            f"{actions!r:.80}"
        )
    return [parsed for number, action in enumerate(actions) for parsed in _one(number, action)]


def _one(number: int, action: object) -> list[AliasAction]:
    where = f"alias action {number}"
    if not isinstance(action, Mapping) or len(action) != 1:
        raise InvalidInputError(
            f"{where} ({action!r:.80}) must be an object with one key, add or remove, e.g. "
            '{"add": {"index": "new", "alias": "live"}}'
        )
    kind, body = next(iter(action.items()))
    if kind == "remove_index":
        raise InvalidInputError(
            f"{where}: remove_index is not supported (semrank does not drop indexes in an alias "
            "request); drop the old index after the swap (DELETE /v1/indexes/{name}, "
            "`semrank index drop NAME`)"
        )
    if kind not in _KEYS:
        raise InvalidInputError(f"{where}: unknown action {kind!r:.40}; use add or remove")
    if not isinstance(body, Mapping):
        raise InvalidInputError(f"{where}: {kind} takes an object, got {body!r:.80}")
    unknown = sorted(str(key) for key in body if key not in _KEYS[kind])
    if unknown:
        raise InvalidInputError(
            f"{where}: {kind} option(s) {', '.join(map(repr, unknown))} not supported (semrank's "
            f"aliases have no filter or routing); {kind} takes {', '.join(sorted(_KEYS[kind]))}"
        )
    flags = _flags(where, kind, body)
    indexes = _names(where, kind, body, "index", "indices")
    aliases = _names(where, kind, body, "alias", "aliases")
    return [
        AliasAction(kind=kind, index=index, alias=alias, must_exist=flags)
        for index in indexes
        for alias in aliases
    ]


def _flags(where: str, kind: str, body: Mapping[str, Any]) -> bool | None:
    for flag in ("is_write_index", "must_exist"):
        if flag in body and not isinstance(body[flag], bool):
            raise InvalidInputError(f"{where}: {flag} must be true or false, got {body[flag]!r}")
    if body.get("is_write_index") is False:
        raise InvalidInputError(
            f"{where}: is_write_index false is not supported: a semrank alias names one index, "
            "which is its write index; leave is_write_index out"
        )
    return body.get("must_exist")


def _names(where: str, kind: str, body: Mapping[str, Any], one: str, many: str) -> list[str]:
    if (one in body) == (many in body):
        raise InvalidInputError(f"{where}: {kind} needs {one!r} (or {many!r}: a list), one of them")
    names = [body[one]] if one in body else body[many]
    if isinstance(names, str) or not isinstance(names, list) or not names:
        raise InvalidInputError(f"{where}: {many} must be a non-empty list, got {names!r:.80}")
    for name in names:
        if not isinstance(name, str):
            raise InvalidInputError(f"{where}: {one} must be a name, got {name!r:.80}")
    return names


# --- applying actions (the same for both stores) ---------------------------------------------
def applied(
    current: Mapping[str, str], actions: Sequence[AliasAction], is_index: Callable[[str], bool]
) -> dict[str, str]:
    """``current`` (alias -> index) after ``actions`` in order; an error leaves it unchanged
    (the caller writes nothing), so a swap happens whole or not at all."""
    aliases = dict(current)
    for action in actions:
        if action.kind == "add":
            _add(aliases, action, is_index)
        else:
            _remove(aliases, action)
    return aliases


def _add(aliases: dict[str, str], action: AliasAction, is_index: Callable[[str], bool]) -> None:
    index, alias = action.index, action.alias
    check_alias_name(alias)
    if index in aliases:
        raise InvalidInputError(
            f"add: {index!r} is an alias (of index {aliases[index]!r}), not an index; name the "
            f"index itself: {aliases[index]!r}"
        )
    if not is_index(index):
        raise IndexNotFoundError(f"add: index {index!r} not found; create it first")
    if is_index(alias):
        raise InvalidInputError(
            f"add: alias {alias!r} is the name of an index, and an alias and an index cannot "
            f"share a name; choose another alias name (or drop index {alias!r} first)"
        )
    held = aliases.get(alias)
    if held is not None and held != index:
        raise InvalidInputError(
            f"add: alias {alias!r} already names index {held!r}, and a semrank alias names one "
            f"index; to move it to {index!r}, remove it from {held!r} in the same actions: "
            f'[{{"remove": {{"index": "{held}", "alias": "{alias}"}}}}, '
            f'{{"add": {{"index": "{index}", "alias": "{alias}"}}}}]'
        )
    aliases[alias] = index


def _remove(aliases: dict[str, str], action: AliasAction) -> None:
    held = aliases.get(action.alias)
    if held is not None and (action.index in ANY_INDEX or held == action.index):
        del aliases[action.alias]
        return
    if action.must_exist is False:
        return
    names = f" (it names index {held!r})" if held else ""
    on = "" if action.index in ANY_INDEX else f" on index {action.index!r}"
    raise AliasNotFoundError(
        f"remove: alias {action.alias!r} not found{on}{names}; "
        'give "must_exist": false to let a remove of a missing alias pass'
    )


def check_alias_name(alias: str) -> None:
    """An alias is named as an index is (it is used where one is, in paths and URLs)."""
    try:
        index_path(alias, Path("."))
    except InvalidInputError as exc:
        raise InvalidInputError(
            str(exc).replace("invalid index name", "invalid alias name")
        ) from None


# --- the library's functions ------------------------------------------------------------------
def update_aliases(
    actions: Sequence[Mapping[str, Any]],
    *,
    home: str | Path | None = None,
    store: str | None = None,
) -> None:
    """Apply Elasticsearch alias ``actions`` atomically: all of them or, on an error naming the
    bad one, none. A swap: ``[{"remove": {"index": "old", "alias": "live"}}, {"add": {"index":
    "new", "alias": "live"}}]``."""
    parsed = parse_actions(actions)
    postgres = _postgres(store)
    if postgres is not None:
        postgres.update_postgres_aliases(
            str(store), lambda now, is_index: applied(now, parsed, is_index)
        )
        return
    root = resolve_home(home)
    with aliases_locked(root):
        current = _read(root)
        changed = applied(current, parsed, lambda name: _is_local_index(root, name))
        if changed != current:
            _write(root, changed)


def list_aliases(home: str | Path | None = None, *, store: str | None = None) -> dict[str, str]:
    """Every alias and the index it names (alias -> index), sorted by alias."""
    postgres = _postgres(store)
    found = postgres.list_postgres_aliases(str(store)) if postgres else _read(resolve_home(home))
    return dict(sorted(found.items()))


def resolve_index_name(
    name: str, home: str | Path | None = None, *, store: str | None = None
) -> str:
    """The index ``name`` is an alias of, else ``name`` itself: every index opened by name
    (``open_index``, the pipeline's held indexes) is looked up through this."""
    if not isinstance(name, str):
        return name  # refused, as a bad name, by what opens it
    postgres = _postgres(store)
    if postgres is not None:
        return postgres.resolve_postgres_alias(str(store), name)
    root = resolve_home(home)
    if _is_local_index(root, name):
        return name  # no alias takes an index's name: a damaged alias file stops aliases only
    return _read(root).get(name, name)


def alias_target(name: str, home: str | Path | None, store: str | None) -> str | None:
    """The index alias ``name`` names; None when it is no alias."""
    resolved = resolve_index_name(name, home, store=store)
    return None if resolved == name else resolved


def refuse_alias_name(
    name: str, home: str | Path | None, store: str | None, *, dropping: bool = False
) -> None:
    """An index is not created with an alias's name, nor dropped by one (``dropping``: the
    fix is then to drop the index it names, or remove the alias alone)."""
    target = alias_target(name, home, store)
    if target is None:
        return
    if dropping:
        raise InvalidInputError(
            f"{name!r} is an alias of index {target!r}, not an index, and is not dropped: drop "
            f"index {target!r} (its aliases go with it), or remove only the alias (semrank "
            f"index alias {name} --remove; over HTTP DELETE /{target}/_alias/{name})"
        )
    raise InvalidInputError(
        f"{name!r} is an alias of index {target!r}, and an index cannot take an alias's name; "
        f"choose another name, or remove alias {name!r} first"
    )


# --- the embedded store's file ----------------------------------------------------------------
def _is_local_index(root: Path, name: str) -> bool:
    try:
        return (index_path(name, root) / DB_NAME).is_file()
    except InvalidInputError:
        return False


@contextlib.contextmanager
def aliases_locked(root: Path) -> Iterator[None]:
    """The home's aliases held by this thread alone (threads of this process, and processes,
    wait): a read, change and write of the file loses no other writer's change. An index
    drop holds it too, so an alias added meanwhile does not outlive its index."""
    with _THREADS:
        if not root.is_dir():
            yield  # no home: no index, no alias file to change
            return
        # The home folder itself is locked: a lock file would be left in every home that an
        # index was created or dropped in.
        try:
            folder = os.open(root, os.O_RDONLY)
        except OSError:  # Windows opens no folder as a file: the threads' lock only
            yield
            return
        try:
            _flock(folder)
            yield
        finally:
            os.close(folder)  # lets go of the lock


def _flock(folder: int) -> None:
    try:
        import fcntl
    except ImportError:  # not POSIX: the threads' lock only
        return
    fcntl.flock(folder, fcntl.LOCK_EX)


def _read(root: Path) -> dict[str, str]:
    """The home's aliases; none where it has no alias file. Read whole each time (a few hundred
    bytes, read only for names that are no index): a cache keyed by the file's inode, time and
    size could keep an old mapping where a swap reuses all three within one clock tick."""
    path = root / ALIASES_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):  # no home (or a file): the open says so
        return {}
    except OSError as exc:
        raise _damaged(path, exc.strerror or str(exc)) from exc
    try:
        found = json.loads(text)["aliases"]
    except (ValueError, KeyError, TypeError) as exc:
        raise _damaged(path, str(exc)) from exc
    if not isinstance(found, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in found.items()
    ):
        raise _damaged(path, "aliases is not an object of alias: index names")
    return dict(found)


def _damaged(path: Path, why: str) -> StorageError:
    return StorageError(
        f"the alias file {path} cannot be read ({why}); restore it, or remove it (its aliases "
        "are then gone: add them again)",
        client_message="the server's alias file cannot be read; its operator must repair it",
    )


def _write(root: Path, aliases: Mapping[str, str]) -> None:
    _make_home(root)
    path = root / ALIASES_FILE
    text = json.dumps({"aliases": dict(sorted(aliases.items()))}, indent=1) + "\n"
    try:
        with written_whole(path) as partial, partial.open("w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        raise StorageError(
            f"the alias file {path} cannot be written ({exc.strerror or exc}); check that this "
            "user may write the index home and that the disk has space",
            client_message="the server's alias file cannot be written; its operator must check "
            "its index home",
        ) from exc
    fsync_dir(root)


def forget_aliases_of(root: Path, index: str) -> None:
    """Remove the aliases of a dropped index (called holding ``aliases_locked``)."""
    current = _read(root)
    kept = {alias: named for alias, named in current.items() if named != index}
    if kept != current:
        _write(root, kept)
