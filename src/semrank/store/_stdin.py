"""Documents piped in on stdin (`index add NAME -`, `index create NAME --from -`): the format
a stream cannot tell by its name, the copy a corpus needs (it is read twice: checked, then
ingested), and the mark an interrupted ingest of it leaves."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from semrank._process import process_alive, process_start_time, removed_if_stopped
from semrank.errors import StorageError

__all__ = ["corpus_file", "piped_format", "stdin_mark"]


def piped_format(
    source: str | None, data_format: str | None, *, usage: str = "index add NAME -"
) -> str | None:
    """The format stdin holds when ``source`` is ``-`` (None for a file, or no corpus):
    --format, which a stream needs (it has no name to tell it by) and a file would ignore.
    ``usage``: the command that reads stdin, as its example shows it."""
    from semrank.errors import InvalidInputError
    from semrank.store._base import STDIN_SOURCE
    from semrank.store._corpus import FORMATS

    choices = (*FORMATS, "ndjson")  # the names the file reader tells formats by
    if source is None and data_format is not None:
        raise InvalidInputError(
            f"--format {data_format!r} says what stdin (--from -) holds, and no --from is "
            "given; drop --format, or add --from - and pipe the documents in"
        )
    if source != STDIN_SOURCE:
        if data_format is not None and source is not None and Path(source).is_fifo():
            raise InvalidInputError(
                f"--format {data_format!r} says what stdin (-) holds, and {source!r} is a pipe; "
                f"pipe the documents to stdin instead (e.g. `cmd | semrank {usage} --format "
                f"{data_format}`)"
            )
        if data_format is not None:
            raise InvalidInputError(
                f"--format {data_format!r} says what stdin (-) holds, and {source!r} is a file, "
                "whose name says its format (.jsonl, .json, .csv, .tsv, optionally .gz); drop "
                "--format, or pass - and pipe the documents in"
            )
        return None
    if data_format is None:
        raise InvalidInputError(
            f"- reads the documents from stdin, which has no name to tell their format by; "
            f"say it with --format ({', '.join(choices)})"
        )
    if data_format.lower() not in choices:
        raise InvalidInputError(
            f"--format {data_format!r} is not a format semrank reads; choose one of: "
            f"{', '.join(choices)}"
        )
    # None: the process was started with stdin closed (`<&-`, some supervisors).
    if sys.stdin is None or sys.stdin.isatty():  # a terminal would wait for typed documents
        state = "closed" if sys.stdin is None else "a terminal"
        raise InvalidInputError(
            f"- reads the documents from stdin, and stdin is {state}; pipe them in "
            f"(e.g. `cat docs.{data_format.lower()} | semrank {usage} --format "
            f"{data_format.lower()}`)"
        )
    return data_format.lower()


@contextlib.contextmanager
def corpus_file(source: str, stdin_format: str | None) -> Iterator[Path]:
    """The corpus file: ``source``, or for stdin a copy named by its format (a corpus is read
    more than once: checked whole, then ingested). Errors name the copy as "stdin"."""
    if stdin_format is None:
        yield Path(source)
        return
    import shutil

    from semrank.errors import SemrankError

    with _stdin_copy_folder() as folder, removed_if_stopped(folder):
        copy = Path(folder) / f"stdin.{stdin_format}"
        try:
            with copy.open("wb") as written:
                shutil.copyfileobj(sys.stdin.buffer, written)
        except OSError as exc:  # a small tmpfs /tmp: "the disk is full" named no folder
            raise _no_room_for_stdin(folder, exc) from exc
        try:
            yield copy
        except SemrankError as exc:
            raise type(exc)(str(exc).replace(str(copy), "stdin")) from exc


def _stdin_copy_folder() -> tempfile.TemporaryDirectory[str]:
    """A folder for the copy, named by this process (its pid namespace, id and start time): a
    process killed (SIGKILL, the OOM killer) cannot remove its copy, so each ingest from stdin
    removes those of processes that have ended."""
    _remove_copies_of_ended_processes()
    try:
        return tempfile.TemporaryDirectory(prefix=f"{_COPY_PREFIX}{_process_tag(os.getpid())}-")
    except OSError as exc:
        raise _no_room_for_stdin(_temporary_folder(), exc) from exc


def _temporary_folder() -> str:
    """Where the copy goes, to name in an error: asking ``tempfile`` raises again where no
    folder is writable (a container's read-only root), which left Python's bare "No usable
    temporary directory found in [...]" as the whole message."""
    try:
        return tempfile.gettempdir()
    except OSError:
        return "a temporary folder"  # the error's text lists the folders it tried


_COPY_PREFIX = "semrank-stdin-"
_COPY_NAME = re.compile(rf"{_COPY_PREFIX}(\w+)\.(\d+)\.(\d+|x)-")


def _pid_namespace() -> str:
    """This process's pid namespace (Linux; "x" elsewhere): a pid names a process only there,
    and a TMPDIR shared with a container holds copies whose pids mean other processes here."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "x"


def _process_tag(pid: int) -> str:
    started = process_start_time(pid)  # tells a process from a later one given its id
    return f"{_pid_namespace()}.{pid}.{'x' if started is None else started}"


def _remove_copies_of_ended_processes() -> None:
    import shutil

    namespace = _pid_namespace()
    with contextlib.suppress(OSError):
        for entry in Path(tempfile.gettempdir()).iterdir():
            named = _COPY_NAME.match(entry.name)
            if named is None or named.group(1) != namespace:  # another namespace's: not judged
                continue
            pid = int(named.group(2))
            if not process_alive(pid) or _process_tag(pid) != ".".join(named.groups()):
                shutil.rmtree(entry, ignore_errors=True)


def _no_room_for_stdin(folder: str, exc: OSError) -> StorageError:
    return StorageError(
        f"the documents piped in are copied to {folder} first (a corpus is read twice: "
        f"checked, then ingested), and that failed ({exc.strerror or exc}); set TMPDIR to a "
        "folder with room for them, or give the file itself instead of -"
    )


def stdin_mark(copy: Path) -> Path:
    """What an ingest from stdin is marked as: the digest of the documents piped in (gunzipped:
    gzip stamps the time), so that piping them in again finishes it and other documents keep
    their own mark."""
    import hashlib

    from semrank._files import raw_lines
    from semrank.store._base import stdin_source

    digest = hashlib.sha256()
    for line in raw_lines(copy):
        digest.update(line)
    return Path(stdin_source(digest.hexdigest()[:16]))
