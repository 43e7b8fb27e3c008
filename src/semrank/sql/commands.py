"""`semrank sql install`: semantic ranking callable from PostgreSQL."""

from __future__ import annotations

import typer

sql_app = typer.Typer(
    help="SQL functions for PostgreSQL (semrank.rank).", no_args_is_help=True, rich_markup_mode=None
)


@sql_app.command("install")
def install_command(
    dsn: str | None = typer.Option(
        None,
        "--dsn",
        help="postgresql://user@host:port/database (default: $SEMRANK_STORE, as the index "
        "commands read it)",
    ),
    endpoint: str | None = typer.Option(
        None,
        "--endpoint",
        help="URL of the running `semrank serve` (default http://127.0.0.1:8000).",
    ),
    api_key: str | None = typer.Option(
        None,
        "--api-key",
        help="API key the server expects; - reads it from stdin (e.g. `--api-key - < key.txt`), "
        "which keeps it out of `ps` and the shell's history.",
    ),
    timeout: float | None = typer.Option(None, "--timeout", min=0.1, help="HTTP timeout (s)."),
) -> None:
    """Install semrank.rank(query, documents, ids, model) and its settings (idempotent)."""
    from semrank.sql import install
    from semrank.store.postgres import redact

    dsn = dsn or _dsn_from_environment()
    if api_key == "-":
        api_key = _api_key_from_stdin()
    applied = install(dsn, endpoint=endpoint, api_key=api_key, timeout_s=timeout)
    state = f"applied migrations {applied}" if applied else "already up to date"
    typer.echo(f"semrank.rank installed in {redact(dsn)} ({state})")


def _api_key_from_stdin() -> str:
    """The key piped in for ``--api-key -``, without its line ending (a key given on the command
    line shows in `ps` to every user of the machine, and stays in the shell's history)."""
    from semrank._files import stdin_bytes

    piped = stdin_bytes("--api-key", "the key", "semrank sql install --api-key - < key.txt")
    # Not shown if it is refused: install() checks it (printable ASCII) without naming it.
    return piped.decode("utf-8", "replace").rstrip("\r\n")


# SEMRANK_PG_DSN: what this command read before it read SEMRANK_STORE (kept for scripts).
DSN_VARIABLES = ("SEMRANK_STORE", "SEMRANK_PG_DSN")


def _dsn_from_environment() -> str:
    """The first of ``DSN_VARIABLES`` holding a PostgreSQL DSN ("local", the index commands'
    value for the embedded store, is passed over); else an error naming what was found."""
    import os

    from semrank.errors import InvalidInputError
    from semrank.store._dsn import is_postgres_dsn, redact_dsn

    found = [(name, os.environ[name]) for name in DSN_VARIABLES if os.environ.get(name)]
    for _, value in found:
        if is_postgres_dsn(value):
            return value
    seen = "; ".join(f"${name} is {redact_dsn(value)!r}" for name, value in found)
    raise InvalidInputError(
        "give --dsn postgresql://user@host:port/database (or set $SEMRANK_STORE to one)"
        + (f"; {seen}, not a PostgreSQL DSN" if seen else "")
    )


def register(app: typer.Typer) -> None:
    """Add `semrank sql ...`."""
    app.add_typer(sql_app, name="sql")
