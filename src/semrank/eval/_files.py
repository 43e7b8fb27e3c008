"""Opening collection files: plain or gzip, with errors that name the file and the line."""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from semrank.errors import DataFormatError, InvalidInputError

_GZIP_MAGIC = b"\x1f\x8b"


def format_error(path: Path | str, line: int | None, message: str) -> DataFormatError:
    """A DataFormatError whose message starts with ``file:line:`` like a compiler's."""
    where = f"{path}:{line}" if line is not None else f"{path}"
    return DataFormatError(f"{where}: {message}")


def require_path(path: object, argument: str) -> Path:
    """``path`` as a Path; anything but a str or os.PathLike is refused by name.

    ``Path(None)`` would raise a bare TypeError that the CLI cannot turn into a one-line error.
    """
    if not isinstance(path, str | os.PathLike):
        raise InvalidInputError(
            f"{argument} must be a file path (str or pathlib.Path), got "
            f"{type(path).__name__} ({path!r:.60}); pass the path of the file"
        )
    return Path(path)


def open_text(path: Path | str) -> IO[str]:
    """Open ``path`` for reading text; gzip is recognised by its magic bytes, not the suffix."""
    path = require_path(path, "path")
    if path.is_dir():
        raise DataFormatError(
            f"{path} is a folder; pass a file in it (e.g. {path / 'queries.jsonl'} or "
            f"{path / 'qrels' / 'test.tsv'} of a BEIR folder)"
        )
    if not path.is_file():
        raise DataFormatError(f"{path}: no such file (check the path)")
    with path.open("rb") as probe:
        is_gzip = probe.read(2) == _GZIP_MAGIC
    # utf-8-sig: a byte-order mark (Windows editors write one) is not part of the first line.
    if is_gzip:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig")
    return path.open(encoding="utf-8-sig")


def _unreadable(path: Path | str, exc: Exception) -> Exception:
    if isinstance(exc, zlib.error | EOFError | gzip.BadGzipFile):
        return format_error(path, None, f"the gzip file is damaged or cut short ({exc})")
    return format_error(path, None, f"cannot read the file as UTF-8 text ({exc}); save it as UTF-8")


def numbered_lines(path: Path | str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline) for every non-blank line of ``path``."""
    with open_text(path) as handle:
        try:
            for number, line in enumerate(handle, start=1):
                stripped = line.rstrip("\r\n")
                if stripped.strip():
                    yield number, stripped
        except (UnicodeDecodeError, EOFError, OSError, zlib.error) as exc:
            raise _unreadable(path, exc) from exc


def read_text(path: Path | str) -> str:
    """The whole file as text (gzip or plain)."""
    with open_text(path) as handle:
        try:
            return handle.read()
        except (UnicodeDecodeError, EOFError, OSError, zlib.error) as exc:
            raise _unreadable(path, exc) from exc
