"""Derived index files, published atomically.

Each snapshot (a BM25 index of one field, or the embedding matrix with its optional HNSW graph)
is a directory ``derived/<kind>.g<generation>`` written under a temporary name and renamed into
place: a reader sees a complete snapshot or none. ``snapshot.json`` inside records what it holds.
Older generations are removed once a newer one is published, and so are newer ones that a
restored backup's lost history left (``prune_other_histories``); leftovers of a crashed writer
(``.tmp-*``) are ignored and cleaned up.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from semrank._files import fsync_dir, fsync_file

DERIVED = "derived"
_NAME = re.compile(r"^(?P<kind>[A-Za-z0-9_.-]+)\.g(?P<gen>\d+)$")
_STALE_TMP_SECONDS = 3600.0
PREPARED_PREFIX = "prepared-"


def field_key(field: str) -> str:
    """A file-name-safe, collision-free key for a field name (``"*"`` -> ``all``)."""
    if field == "*":
        return "bm25-all"
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", field)[:40]
    digest = hashlib.sha1(field.encode("utf-8")).hexdigest()[:8]
    return f"bm25-f-{safe}-{digest}"


def prepared_key(name: str) -> str:
    """A file-name-safe, collision-free key for a prepared table's name."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:40]
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return f"{PREPARED_PREFIX}{safe}-{digest}"


def latest_by_kind(root: Path, prefix: str) -> dict[str, tuple[int, Path]]:
    """The newest published snapshot of every kind starting with ``prefix``, in one scan:
    ``{kind: (generation, directory)}``."""
    best: dict[str, tuple[int, Path]] = {}
    folder = root / DERIVED
    if not folder.is_dir():
        return best
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if not match or not match["kind"].startswith(prefix):
            continue
        if not (entry / "snapshot.json").is_file():
            continue
        kind, generation = match["kind"], int(match["gen"])
        if kind not in best or generation > best[kind][0]:
            best[kind] = (generation, entry)
    return best


def at(root: Path, kind: str, generation: int) -> Path | None:
    """The published snapshot of ``kind`` for ``generation``, if there is one."""
    directory = root / DERIVED / f"{kind}.g{generation}"
    return directory if (directory / "snapshot.json").is_file() else None


def latest(root: Path, kind: str) -> tuple[int, Path] | None:
    """The newest published snapshot of ``kind``: ``(generation, directory)``."""
    return latest_by_kind(root, kind).get(kind)


def published(root: Path, kind: str) -> list[tuple[int, Path]]:
    """Every published snapshot of ``kind``, newest first: ``[(generation, directory)]``."""
    folder = root / DERIVED
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match and match["kind"] == kind and (entry / "snapshot.json").is_file():
            found.append((int(match["gen"]), entry))
    return sorted(found, key=lambda item: item[0], reverse=True)


def read_meta(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "snapshot.json").read_text("utf-8"))


def publish(
    root: Path,
    kind: str,
    generation: int,
    write: Callable[[Path], dict[str, Any]],
) -> Path:
    """Write a snapshot with ``write(tmp_dir) -> meta`` and rename it into place."""
    folder = root / DERIVED
    # Not parents=True: an index dropped meanwhile (its folder renamed away) must not come back
    # as a folder of search files without a database, which blocks creating the name again.
    folder.mkdir(exist_ok=True)
    tmp = folder / f".tmp-{kind}-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        meta = write(tmp)
        meta = {"kind": kind, "generation": generation, "created": time.time(), **meta}
        (tmp / "snapshot.json").write_text(json.dumps(meta), "utf-8")
        for file in tmp.iterdir():
            fsync_file(file)
        target = folder / f"{kind}.g{generation}"
        try:
            os.rename(tmp, target)
        except OSError:
            if (target / "snapshot.json").is_file():  # another process published the same
                shutil.rmtree(tmp, ignore_errors=True)
            else:  # a damaged one (its snapshot.json gone) blocked every save: replaced
                _replace_damaged(tmp, target)
        fsync_dir(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    prune(root, kind, keep=generation)
    return target


def _replace_damaged(tmp: Path, target: Path) -> None:
    """Put ``tmp`` where a damaged snapshot is. The damaged one is moved aside, not deleted in
    place: another process may have just published a good one there (removing that under its
    readers cost them a rebuild), and whichever lands, both are the same generation's."""
    aside = target.parent / f".tmp-damaged-{uuid.uuid4().hex}"
    with contextlib.suppress(OSError):  # moved already, by a process doing the same
        os.rename(target, aside)
    try:
        os.rename(tmp, target)
    except OSError:
        if not (target / "snapshot.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another process's good one is in place
    shutil.rmtree(aside, ignore_errors=True)


def prune(root: Path, kind: str, *, keep: int) -> None:
    """Remove snapshots of ``kind`` older than generation ``keep`` (best effort: a reader that
    still memory-maps one keeps its data until it closes, on POSIX)."""
    folder = root / DERIVED
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match and match["kind"] == kind and int(match["gen"]) < keep:
            shutil.rmtree(entry, ignore_errors=True)


def prune_other_histories(
    root: Path, kind: str, *, keep: int, state: Callable[[], tuple[int, dict[int, str]]]
) -> None:
    """Remove snapshots of ``kind`` newer than ``keep`` that the database never wrote: left by
    the history a restored backup threw away. ``state()`` is the database's generation and
    ``{generation: commit token}`` history, read after the folder is listed: a snapshot listed
    was published after its write committed, so a writer in another process running ahead in
    this history is never taken for another one. Those too old for the history to tell are
    kept; a reader that memory-maps a removed one keeps its data until it closes, on POSIX, as
    with ``prune``."""
    newer = [(number, folder) for number, folder in published(root, kind) if number > keep]
    if not newer:
        return
    generation, history = state()
    for number, directory in newer:
        if number <= generation:
            try:
                commit = read_meta(directory).get("commit")
            except (OSError, ValueError):
                continue  # damaged or removed meanwhile: not this function's to judge
            if number not in history or history[number] == commit:
                continue
        shutil.rmtree(directory, ignore_errors=True)


def clean_temporaries(root: Path) -> None:
    """Drop temporary directories left by writers that died (older than an hour)."""
    folder = root / DERIVED
    if not folder.is_dir():
        return
    now = time.time()
    for entry in folder.glob(".tmp-*"):
        try:
            if unchanged_for(entry, _STALE_TMP_SECONDS, now):
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue


def unchanged_for(entry: Path, seconds: float, now: float) -> bool:
    """Whether ``entry`` was last changed over ``seconds`` before ``now``. One changed after
    ``now`` (written while the clock ran ahead, or by a host whose clock does) is stamped
    ``now``: left so, it was never old enough, and stayed for good."""
    changed = entry.stat().st_mtime
    if changed > now:
        os.utime(entry, (now, now))
        return False
    return now - changed > seconds


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data), "utf-8")
