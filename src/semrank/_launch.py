"""The ``semrank`` command's entry point (and ``python -m semrank``'s), kept apart from
``semrank.cli``: Ctrl-C while the CLI still imports (typer, every stage's commands: half a
second, more on a busy machine) printed a KeyboardInterrupt traceback, where Ctrl-C a moment
later says "semrank: interrupted" and exits 130. This module imports nothing heavy, so the
same line and status hold whenever Ctrl-C comes."""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130  # 128 + SIGINT: Ctrl-C, as a shell reports it
INTERRUPTED_LINE = "semrank: interrupted\n"


def main() -> None:
    try:
        from semrank.cli import main as run_command
    except KeyboardInterrupt:
        # No JSON logs yet (semrank serve sets them up later): the plain line, as cli's.
        sys.stderr.write(INTERRUPTED_LINE)
        sys.exit(EXIT_INTERRUPTED)
    run_command()
