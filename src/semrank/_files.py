"""Reading data files, plain or gzip (by content, not name), with errors that name the file and
the line: one reader for every file format semrank reads."""

from __future__ import annotations

import codecs
import contextlib
import contextvars
import functools
import gzip
import io
import itertools
import os
import re
import stat
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar, cast

from semrank.errors import DataFormatError, InvalidInputError, SemrankError

GZIP_MAGIC = b"\x1f\x8b"
# What a damaged or cut-short gzip stream raises while it is read (BadGzipFile is an OSError).
GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)
# Which error a reader raises: the store's readers say InvalidInputError, the others
# DataFormatError (both are exit status 2 and HTTP 422).
ErrorType = type[SemrankError]


# An absolute Windows path's drive letter (C:\ or C:/): its ':' is part of the path.
WINDOWS_DRIVE = re.compile(r"[A-Za-z]:[\\/]")


def partition_path(text: str, *, last: bool = False) -> tuple[str, str, str]:
    """``text`` as ``(path, ":", rest)``, split at its first ':' (at its last with ``last``)
    after any leading drive letter, so that ``C:\\models\\x:0.5`` is ``C:\\models\\x`` and 0.5;
    ``(text, "", "")`` where nothing follows a path."""
    drive = WINDOWS_DRIVE.match(text)
    start = drive.end() if drive else 0
    after = text[start:]
    path, sep, rest = after.rpartition(":") if last else after.partition(":")
    if not sep:
        return text, "", ""
    return text[:start] + path, sep, rest


def fsync_file(path: Path) -> None:
    """Put file ``path``'s bytes on disk (before renaming it into place, so that a power loss
    cannot leave an empty or cut file under the final name). Through a writable descriptor:
    Windows flushes with FlushFileBuffers, which refuses a read-only one (EBADF)."""
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename into folder ``path`` survive a power loss (where the system allows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # Windows opens no folder as a file (EACCES): nothing to flush there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def written_whole(path: Path) -> Iterator[Path]:
    """Where to write file ``path``: a hidden file beside it, renamed into place when the block
    ends, so that a write stopped halfway (Ctrl-C, SIGTERM, SIGHUP, a full disk, an error)
    leaves the earlier file or none, never a cut one that reads as whole; the hidden one is
    removed. A link is written through to its target and an existing file keeps its mode; a
    pipe or device (/dev/stdout), or a folder that takes no new file, is written in place."""
    from semrank._process import removed_if_stopped

    target = Path(os.path.realpath(path))
    if target.exists() and not target.is_file():  # a pipe or a device: nothing to rename over
        yield path
        return
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else None
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666))
    except OSError:  # a folder that takes no new file (or is not there): written in place
        partial = target
    if partial == target:
        yield path
        return
    try:
        with removed_if_stopped(partial):
            yield partial
            if mode is not None:
                os.chmod(partial, mode)
            os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise


def user_home() -> Path:
    """``Path.home()``, an empty HOME read as an unset one (the user's passwd entry): Python
    reads HOME="" as /, so `HOME= semrank index list` looked in /.local/share/semrank, where
    an empty SEMRANK_HOME or XDG_DATA_HOME counts as unset. RuntimeError where there is none."""
    if os.name == "nt" or os.environ.get("HOME") != "":  # Windows reads USERPROFILE
        return Path.home()
    try:
        import pwd

        folder = pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:  # a uid without a passwd entry, as Path.home() raises
        raise RuntimeError("Could not determine home directory.") from None
    if not folder:
        raise RuntimeError("Could not determine home directory.")
    return Path(folder)


def user_name(uid: int) -> str:
    """The login name of user id ``uid``, for messages about who owns a file."""
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):  # Windows; a uid without a passwd entry
        return f"user id {uid}"


def load_npy(path: Path) -> Any:
    """``np.load(path)``, with a ValueError (what a damaged file raises) where the header claims
    more data than the file holds: np.load allocated whatever a damaged or crafted header
    claimed, and a MemoryError for petabytes failed every write to an index for good."""
    import numpy as np

    with path.open("rb") as handle:
        version = np.lib.format.read_magic(handle)
        readers = {(1, 0): np.lib.format.read_array_header_1_0}
        readers[(2, 0)] = np.lib.format.read_array_header_2_0
        if version not in readers:
            raise ValueError(f"{path}: .npy format version {version} is not one numpy.save writes")
        shape, _, dtype = readers[version](handle)
        claimed = dtype.itemsize
        for size in shape:
            claimed *= size
        if claimed > os.fstat(handle.fileno()).st_size - handle.tell():
            raise ValueError(f"{path}: its header claims shape {shape}, more than the file holds")
        handle.seek(0)
        return np.load(handle)


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


def file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file ("no such file", "a folder, not a file", "not a
    file or pipe"), or None where it can: a file, or a pipe (`<(cmd)`, /dev/stdin, a mkfifo),
    which every file option of the CLI reads as it reads a file."""
    if path.is_file() or path.is_fifo():
        return None
    if path.is_dir():
        return "a folder, not a file"
    return "not a file or pipe" if path.exists() else "no such file"


def stdin_bytes(option: str, what: str, example: str, *, typed_ok: bool = False) -> bytes:
    """All of stdin, for ``option`` given as -: a closed stdin (`<&-`) or, unless ``typed_ok``,
    a terminal (which would wait for typing) is refused with ``example``, a command that pipes
    ``what`` in."""
    if sys.stdin is None or (sys.stdin.isatty() and not typed_ok):
        state = "closed" if sys.stdin is None else "a terminal"
        raise InvalidInputError(
            f"{option} - reads {what} from stdin, and stdin is {state}; pipe {what} in "
            f"(e.g. `{example}`)"
        )
    return sys.stdin.buffer.read()


# The bytes of each pipe the running loader was given, by path. A pipe can be read once, and a
# loader may read its file again (its format sniffed, then parsed; a refused line's hint): the
# second read found nothing (`<(cmd)`, whose data the first had taken) or waited for a writer.
_PIPES_READ: contextvars.ContextVar[dict[str, bytes] | None] = contextvars.ContextVar(
    "semrank_pipes_read", default=None
)
Loader = TypeVar("Loader", bound=Callable[..., Any])


def reads_pipes_once(loader: Loader) -> Loader:
    """``loader``, reading each pipe once however often it (and the loaders it calls) read it."""

    @functools.wraps(loader)
    def reading_pipes_once(*args: Any, **kwargs: Any) -> Any:
        if _PIPES_READ.get() is not None:  # an outer loader keeps the bytes
            return loader(*args, **kwargs)
        token = _PIPES_READ.set({})
        try:
            return loader(*args, **kwargs)
        finally:
            _PIPES_READ.reset(token)

    return cast(Loader, reading_pipes_once)


def _pipe_bytes(path: Path) -> bytes | None:
    """The bytes of pipe ``path``, read once per loader; None where ``path`` is no pipe."""
    if not path.is_fifo():
        return None
    read = _PIPES_READ.get()
    if read is None:
        return path.read_bytes()
    if str(path) not in read:
        read[str(path)] = path.read_bytes()
    return read[str(path)]


def is_gzip(path: Path) -> bool:
    """Whether ``path`` holds gzip data, by its magic bytes: a name is no proof either way."""
    with path.open("rb") as probe:
        return probe.read(2) == GZIP_MAGIC


def open_binary(path: Path) -> IO[bytes]:
    """``path`` for reading bytes, gunzipped when it is gzip (whatever its name). A pipe is
    read whole: looking at its first bytes, then opening it again, lost them."""
    piped = _pipe_bytes(path)
    if piped is not None:
        data = io.BufferedReader(io.BytesIO(piped))  # peek()s as a file's reader does
        return cast(IO[bytes], gzip.GzipFile(fileobj=data)) if piped[:2] == GZIP_MAGIC else data
    return cast(IO[bytes], gzip.open(path, "rb")) if is_gzip(path) else path.open("rb")


def _checked(path: Path | str) -> Path:
    path = require_path(path, "path")
    if path.is_dir():
        raise DataFormatError(
            f"{path} is a folder; pass a file in it (e.g. {path / 'queries.jsonl'} or "
            f"{path / 'qrels' / 'test.tsv'} of a BEIR folder)"
        )
    problem = file_problem(path)
    if problem is not None:
        raise DataFormatError(f"{path}: {problem} (check the path)")
    return path


def _damaged(path: Path | str, exc: Exception, error: ErrorType) -> SemrankError:
    return error(f"{path}: a damaged or cut-short gzip file ({exc}); compress the data again")


def _not_utf8(path: Path | str, number: int, byte: int, column: int, error: ErrorType) -> Any:
    return error(
        f"{path}:{number}: not valid UTF-8 (byte 0x{byte:02x} at byte {column} of the line); "
        "save the file as UTF-8"
    )


def looks_like_utf16(data: bytes) -> bool:
    """A UTF-16 file: its byte-order mark, or (ASCII text without one, which is valid UTF-8)
    a NUL byte in every other place of its start."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return True
    head = data[:512]
    return len(head) >= 4 and (
        head[1::2].count(0) > len(head) // 4 or head[0::2].count(0) > len(head) // 4
    )


def refuse_utf16(path: Path | str, head: bytes, error: ErrorType) -> None:
    """ASCII text in UTF-16 without a byte-order mark is valid UTF-8: a TSV of 2 records was
    indexed as 3 documents with NUL field names (SQL Server's bcp -w writes such files)."""
    if looks_like_utf16(head):
        raise error(
            f"{path} looks like UTF-16 (Excel's 'Unicode text', PowerShell's >, bcp -w); save "
            "it as UTF-8"
        )


# Binary tables data tools write, by their first bytes, and how to make a file semrank reads.
_TO_JSONL = (
    "convert it to JSONL, e.g. with pandas: "
    "pd.read_{reader}(IN).to_json(OUT, orient='records', lines=True, force_ascii=False)"
)
_BINARY_TABLES = (
    (b"PAR1", "a Parquet file", _TO_JSONL.format(reader="parquet")),
    (b"ARROW1", "an Arrow / Feather file", _TO_JSONL.format(reader="feather")),
    (
        b"PK\x03\x04",
        "a ZIP archive (an Excel .xlsx or LibreOffice .ods workbook?)",
        "save the sheet as 'CSV UTF-8' (Excel) or as Text CSV with the UTF-8 character set "
        "(LibreOffice); a ZIP archive: unpack it",
    ),
    (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        "an Excel 97-2003 workbook (.xls)",
        "save the sheet as 'CSV UTF-8'",
    ),
)


def refuse_binary_table(path: Path | str, head: bytes, error: ErrorType) -> None:
    """A Parquet, Feather or spreadsheet file is named with how to convert it: read as text,
    its bytes were 'not valid UTF-8' with the advice to save it as UTF-8."""
    for magic, kind, fix in _BINARY_TABLES:
        if head.startswith(magic) and not _reads_as_text(head):
            raise error(
                f"{path} is {kind}, not text; semrank reads text files (JSONL, JSON, CSV, "
                f"TSV): {fix}"
            )


def _reads_as_text(head: bytes) -> bool:
    """Whether the first bytes of a file are text (a qrels line "PAR1 0 d1 1" is): UTF-8,
    without the control characters binary formats hold (a trailing character cut short by the
    end of ``head`` still counts as text)."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return not any(ord(c) < 32 and c not in "\t\n\r\f" for c in text)


def bad_byte(data: bytes, exc: UnicodeDecodeError) -> int:
    """Where in ``data`` the bad byte is: utf-8-sig reports offsets past the byte-order mark."""
    return exc.start + len(data) - len(exc.object)


def raw_lines(path: Path, error: ErrorType = DataFormatError) -> Iterator[bytes]:
    """The lines of ``path`` as bytes, line endings kept, gunzipped when it is gzip."""
    with open_binary(path) as handle:
        try:
            head = handle.peek(512)[:512]  # type: ignore[attr-defined]
            refuse_binary_table(path, head, error)
            refuse_utf16(path, head, error)
            yield from handle
        except GZIP_ERRORS as exc:
            raise _damaged(path, exc, error) from exc


def text_lines(
    path: Path | str, error: ErrorType = DataFormatError, *, records_span_lines: bool = False
) -> Iterator[str]:
    """The lines of ``path``, plain or gzip, line endings kept (as ``newline=""``). Decoded line
    by line, so that a bad byte is named with its line (a TextIOWrapper names an offset in an
    8 KB chunk); a byte-order mark (Excel's "CSV UTF-8") is not text, on the first line or
    on a later one (files joined with `cat`, one of them saved on Windows). Where a record may
    span lines (``records_span_lines``: CSV, whose quoted values hold line breaks) a later
    line need not start a record, so only the file's own mark, on its first line, is dropped."""
    path = _checked(path)
    for number, raw in enumerate(raw_lines(path, error), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            at = bad_byte(raw, exc)
            raise _not_utf8(path, number, raw[at], at + 1, error) from None
        yield line if records_span_lines and number > 1 else line.removeprefix("\ufeff")


# Where a line ends for the line-based formats (qrels, runs, topics, JSONL): old Mac files end
# lines in \r alone, which Python's text mode reads as line ends too. (CSV keeps \r as text:
# inside quotes it is a field's own.)
LINE_END = re.compile(r"\r\n|\r|\n")


def numbered_lines(path: Path | str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its line end) for every non-blank line of ``path``;
    lines end at \\n, \\r\\n or \\r."""
    number = 0
    for raw in text_lines(path):
        pieces = LINE_END.split(raw)
        for line in pieces[:-1] if LINE_END.search(raw[-1:]) else pieces:
            number += 1
            if line.strip():
                yield number, line


def pandas_index_hint(path: Path | str) -> str:
    """A hint to add to a refused line where ``path`` starts as pandas' ``to_csv`` writes a
    frame with its index (a header whose first cell is empty, then rows counting 0, 1, 2, ...
    in their first cell): a column no loader expects. "" for any other file."""
    first = [line for _number, line in itertools.islice(numbered_lines(path), 4)]
    if len(first) < 2 or not first[0].startswith(("\t", ",")):
        return ""
    delimiter = first[0][0]
    counted = [row.split(delimiter, 1)[0].strip() for row in first[1:]]
    if counted != [str(i) for i in range(len(counted))]:
        return ""
    return (
        " (its first column, unnamed and counting 0, 1, 2, ..., is pandas' index column: "
        "write with index=False)"
    )


def read_text(path: Path | str, error: ErrorType = DataFormatError) -> str:
    """The whole file as text (gzip or plain), with the errors of ``text_lines``."""
    path = _checked(path)
    with open_binary(path) as handle:
        try:
            data = handle.read()
        except GZIP_ERRORS as exc:
            raise _damaged(path, exc, error) from exc
    refuse_binary_table(path, data, error)
    refuse_utf16(path, data, error)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        at = bad_byte(data, exc)
        start = data.rfind(b"\n", 0, at) + 1
        number = data.count(b"\n", 0, at) + 1
        raise _not_utf8(path, number, data[at], at - start + 1, error) from None
