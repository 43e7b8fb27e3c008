"""The ``semrank`` command. Each stage package contributes its own sub-commands.

Flags and environment variables are read here, at the edge, and turned into the frozen config
objects the core takes.
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import sys
from typing import Any

import typer

from semrank import __version__
from semrank._launch import EXIT_INTERRUPTED, INTERRUPTED_LINE
from semrank.errors import EXIT_ENVIRONMENT, SemrankError, exit_code_for, missing_extra

app = typer.Typer(
    name="semrank",
    help="Self-hosted semantic re-ranking: cross-encoders, rerank APIs, two-stage search.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: Rich's tables cut option names at 80 columns (--max-request-tok…).
    rich_markup_mode=None,
)

# Modules that add commands through a ``register(app)`` function. They import heavy libraries
# inside their commands only, so ``semrank --help`` stays fast.
COMMAND_MODULES = (
    "semrank.models.commands",
    "semrank.runtime.commands",
    "semrank.rerank.commands",
    "semrank.eval.commands",
    "semrank.train.commands",
    "semrank.store.commands",
    "semrank.server.commands",
    "semrank.sql.commands",
    "semrank.demo",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"semrank {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """semrank: re-rank search results with cross-encoders, offline."""


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    """Entry point: errors print one readable line, never a traceback, and exit with
    ``exit_code_for`` (2: the command's input, 3: the machine or a service it needs)."""
    try:
        # Inside the try: Ctrl-C while they import rich is answered as Ctrl-C later is.
        _exit_quietly_on_a_closed_pipe()
        _output_that_cannot_fail()
        app()
    except SystemExit as exc:
        # click ends a command whose output pipe closed (`| head -1`) with status 1, which
        # says "a bug" here: 141, as a shell reports a tool stopped by SIGPIPE.
        if exc.code == 1 and type(sys.stdout).__name__ == "PacifyFlushWrapper":
            sys.exit(EXIT_CLOSED_PIPE)
        if _caused_by_ctrl_c(exc):  # typer ends a Ctrl-C with 130 and says nothing
            _say_interrupted()
        raise
    except KeyboardInterrupt:  # raised where click does not catch it
        _say_interrupted()
    except SemrankError as exc:
        _fail(str(exc), exit_code_for(exc))
    except ModuleNotFoundError as exc:
        missing = missing_extra(exc)
        if missing is None:
            raise
        _fail(str(missing), EXIT_ENVIRONMENT)
    except OSError as exc:  # the machine's, not the input's: permissions, a full disk, a port
        _fail(_os_error_text(exc), exit_code_for(exc))
    except MemoryError as exc:  # a container's or ulimit's memory limit: the machine's too
        _fail(_out_of_memory_text(exc), exit_code_for(exc))


def _caused_by_ctrl_c(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is behind ``exc`` (typer's Exit(130) raised from one)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _say_interrupted() -> None:
    """Ctrl-C ended the command with 130 and an empty stderr, as if it had ended on its own:
    one line says that it was stopped."""
    from semrank.server._logging import LOGGER_NAME, log_fields, logs_json_lines

    if logs_json_lines():  # semrank serve's JSON logs: one more JSON line, not plain text
        extra = log_fields(exit_status=EXIT_INTERRUPTED)
        logging.getLogger(LOGGER_NAME).info("interrupted", extra=extra)  # its usual stop
    else:
        typer.echo(INTERRUPTED_LINE, err=True, nl=False)
    sys.exit(EXIT_INTERRUPTED)


def _out_of_memory_text(exc: MemoryError) -> str:
    # numpy's says how much it wanted ("Unable to allocate 232. MiB for an array ..."); Python's
    # own MemoryError says nothing.
    wanted = f" ({exc})" if str(exc) else ""
    return (
        f"out of memory{wanted}: this command needs more memory than this machine or its "
        "container allows; give it more, or ask for less at once (a smaller --batch-size, "
        "--window or --top-n, fewer --workers)"
    )


def _os_error_text(exc: OSError) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        return (
            f"{str(exc.filename)[:60]!r}...: a path longer than this system allows "
            f"({exc.strerror}); pass a shorter path"
        )
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{exc}: the disk is full; free some space and run it again"
    if exc.errno is None:  # numpy's short writes ("N requested and M written") say no more
        return f"{exc}: a file could not be written; check the disk's free space"
    return str(exc)


EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE


def _exit_quietly_on_a_closed_pipe() -> None:
    """rich (tables, progress) ends the process with status 1 when its output pipe closes,
    which says "a bug" here: this process's consoles end with 141 instead, as click's do."""
    from rich.console import Console

    def closed(console: Console) -> None:
        console.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit must not fail too
        raise SystemExit(EXIT_CLOSED_PIPE)

    Console.on_broken_pipe = closed  # type: ignore[method-assign,assignment]


MIN_COLUMNS = 40  # rich draws nothing at COLUMNS=0, and only borders at 1


def _output_that_cannot_fail() -> None:
    """Tables on a stdout that is not UTF-8 (a latin-1 locale, PYTHONIOENCODING, a Windows
    file) crashed on semrank's own "—" and "…" (exit 1, a traceback): such characters become
    '?' there (stderr keeps Python's backslash escapes, which name a bad value whole). A
    COLUMNS under MIN_COLUMNS (0 printed empty tables, exit 0) or not a number is dropped: the
    terminal's own width then, or rich's 80 off a terminal."""
    from semrank._words import stdout_is_utf8

    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None and not stdout_is_utf8():
        reconfigure(errors="replace")
    columns = os.environ.get("COLUMNS", "")
    if columns and not (columns.isdigit() and int(columns) >= MIN_COLUMNS):
        del os.environ["COLUMNS"]
    if hasattr(sys.stdout, "fileno") and not isinstance(sys.stdout, _SmallWrites):
        sys.stdout = _SmallWrites(sys.stdout)


class _SmallWrites:
    """``sys.stdout``, written in pieces its buffer takes whole. One large write (a --json
    result of 2,000 hits) that a full disk or a closed pipe took only in part lost the rest
    without an error, and the command exited 0: CPython's buffered writer raises for a piece
    that fails, not for the part of a large write it could not place."""

    PIECE = 2048  # characters: at most 8 KiB of UTF-8, the buffer's size

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if len(text) <= self.PIECE:  # bytes too: click probes for a binary stream with b""
            return int(self._stream.write(text))
        for start in range(0, len(text), self.PIECE):
            self._stream.write(text[start : start + self.PIECE])
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _fail(message: str, code: int) -> None:
    from semrank.server._logging import log_fatal, logs_json_lines

    if logs_json_lines():  # semrank serve's JSON logs: one more JSON line, not plain text
        log_fatal(message, code)
        sys.exit(code)
    # NO_COLOR (no-color.org) and TERM=dumb: a pseudo-terminal's log (docker -t) kept the codes.
    plain = bool(os.environ.get("NO_COLOR")) or os.environ.get("TERM") == "dumb"
    if plain:  # secho adds a reset code even without a colour
        typer.echo(f"error: {message}", err=True)
    else:
        typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    sys.exit(code)


if __name__ == "__main__":
    main()
